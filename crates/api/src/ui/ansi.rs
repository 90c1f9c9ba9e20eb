//! ANSI colour codes in log lines, made safe for HTML: SGR sequences (`ESC [ … m`) become
//! segments with fixed CSS classes (`ansi-fg-1`, `ansi-bold`); every other escape sequence and
//! control character is dropped. The text of a segment is escaped by the template like any
//! other string, so a log line can carry colour but never markup.

/// A run of text with the classes its colour maps to (empty: plain).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    pub class: String,
    pub text: String,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Style {
    /// 0-7 normal, 8-15 bright.
    fg: Option<u8>,
    bold: bool,
}

impl Style {
    fn class(self) -> String {
        let mut c = Vec::new();
        if let Some(n) = self.fg {
            c.push(format!("ansi-fg-{n}"));
        }
        if self.bold {
            c.push("ansi-bold".to_owned());
        }
        c.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let codes: Vec<u32> = if params.is_empty() {
            vec![0]
        } else {
            params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut i = 0;
        while i < codes.len() {
            match codes[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                c @ 30..=37 => self.fg = Some((c - 30) as u8),
                39 => self.fg = None,
                c @ 90..=97 => self.fg = Some((c - 90 + 8) as u8),
                // 256-colour and true-colour forms: their arguments are skipped, not read as
                // codes of their own.
                38 | 48 => {
                    i += match codes.get(i + 1) {
                        Some(5) => 2,
                        Some(2) => 4,
                        _ => 0,
                    };
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// Split a log line into styled segments, without escape sequences or control characters.
pub fn segments(line: &str) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut style = Style::default();
    let mut text = String::new();
    let flush = |out: &mut Vec<Segment>, text: &mut String, style: Style| {
        if !text.is_empty() {
            out.push(Segment {
                class: style.class(),
                text: std::mem::take(text),
            });
        }
    };
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameter and intermediate bytes, then one final byte in @..~.
                let mut params = String::new();
                let mut fin = None;
                for p in chars.by_ref() {
                    if ('@'..='~').contains(&p) {
                        fin = Some(p);
                        break;
                    }
                    params.push(p);
                }
                if fin == Some('m') {
                    let before = style;
                    style.apply(&params);
                    if style != before {
                        flush(&mut out, &mut text, before);
                    }
                }
            } else {
                // A two-character escape (or a lone ESC at the end): dropped.
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            text.push(c);
        }
    }
    flush(&mut out, &mut text, style);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(class: &str, text: &str) -> Segment {
        Segment {
            class: class.into(),
            text: text.into(),
        }
    }

    #[test]
    fn colours_become_classes_and_other_escapes_vanish() {
        assert_eq!(
            segments("\u{1b}[1;31merror\u{1b}[0m: bad \u{1b}[92mthing\u{1b}[39m!"),
            vec![
                seg("ansi-fg-1 ansi-bold", "error"),
                seg("", ": bad "),
                seg("ansi-fg-10", "thing"),
                seg("", "!"),
            ]
        );
        assert_eq!(
            segments("a\u{1b}[2Kb\u{1b}]0;title\u{7}c\rd\u{1b}"),
            vec![seg("", "ab0;titlecd")]
        );
        assert_eq!(
            segments("\u{1b}[38;5;196mx\u{1b}[m"),
            vec![seg("", "x")],
            "256-colour arguments are not read as codes"
        );
        assert_eq!(segments("<script>\t"), vec![seg("", "<script>\t")]);
        assert!(segments("").is_empty());
    }
}
