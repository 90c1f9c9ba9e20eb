//! A reader for the blocks of `deploy/docker/docker-bake.hcl`: `target`, `group` and
//! `variable` blocks with their `key = value` lines. It reads the file as written there (one
//! attribute a line, blocks closed by a `}` at the start of a line), not HCL in general.

use std::collections::BTreeMap;

/// One block: `target "api" { ... }` is kind `target`, name `api`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: String,
    pub name: String,
    /// Attribute name -> its value as written (quotes kept).
    pub attrs: BTreeMap<String, String>,
}

impl Block {
    /// A string attribute without its quotes.
    pub fn string(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(|v| v.trim_matches('"'))
    }

    /// A list attribute (`["a", "b"]`) as its items without quotes.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.attrs
            .get(key)
            .map(|v| {
                v.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .map(|s| s.trim().trim_matches('"').to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The top-level blocks of a bake file.
pub fn parse(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut depth = 0usize;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if current.is_none() {
            let mut words = t.split_whitespace();
            if let (Some(kind), Some(name), Some("{")) = (words.next(), words.next(), words.next())
            {
                current = Some(Block {
                    kind: kind.to_owned(),
                    name: name.trim_matches('"').to_owned(),
                    attrs: BTreeMap::new(),
                });
                depth = 1;
            }
            continue;
        }
        let opens = t.matches('{').count();
        let closes = t.matches('}').count();
        if depth == 1
            && let Some((k, v)) = t.split_once('=')
            && !k.trim().contains(' ')
            && let Some(b) = current.as_mut()
        {
            b.attrs.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        depth = (depth + opens).saturating_sub(closes);
        if depth == 0 {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// The block of `kind` named `name`.
pub fn find<'a>(blocks: &'a [Block], kind: &str, name: &str) -> Option<&'a Block> {
    blocks.iter().find(|b| b.kind == kind && b.name == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_and_attributes() {
        let blocks = super::parse(
            "variable \"TAG\" {\n  default = \"dev\"\n}\n# c\ngroup \"all\" {\n  targets = [\"a\", \"b\"]\n}\n\
             target \"a\" {\n  inherits = [\"_c\"]\n  labels = {\n    \"x\" = \"y\"\n  }\n  target = \"a\"\n}\n",
        );
        assert_eq!(blocks.len(), 3);
        assert_eq!(
            super::find(&blocks, "variable", "TAG")
                .unwrap()
                .string("default"),
            Some("dev")
        );
        assert_eq!(
            super::find(&blocks, "group", "all")
                .unwrap()
                .list("targets"),
            vec!["a", "b"]
        );
        let a = super::find(&blocks, "target", "a").unwrap();
        assert_eq!(a.string("target"), Some("a"));
        assert!(
            !a.attrs.contains_key("\"x\""),
            "nested attributes are not the block's"
        );
    }
}
