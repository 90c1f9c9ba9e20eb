//! Human output: aligned tables and key/value blocks. Scripts use `-o json` instead.

use serde_json::Value;
use std::io::Write;

/// A value as a table cell: strings bare, null as `-`, arrays joined, the rest as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Write rows under headers, each column as wide as its widest cell.
pub fn table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| h.to_uppercase()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row.clone()))?;
    }
    Ok(())
}

/// Write `key: value` lines for the given fields of an object.
pub fn fields(out: &mut dyn Write, obj: &Value, keys: &[&str]) -> std::io::Result<()> {
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
    for k in keys {
        writeln!(out, "{:<width$} {}", format!("{k}:"), cell(&obj[*k]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["id", "state"],
            &[
                vec!["a".into(), "queued".into()],
                vec!["longer-id".into(), "ok".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID         STATE\na          queued\nlonger-id  ok\n"
        );
    }

    #[test]
    fn cells_render_json_values() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!(3)), "3");
    }
}
