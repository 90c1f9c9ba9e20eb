//! A small Dockerfile reader: stages and their instructions, enough to check
//! `deploy/docker/Dockerfile` against the workspace (it is not a general parser: no heredocs,
//! no escape directive).

/// One instruction, keyword upper-cased, arguments with line continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
}

/// One `FROM` stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, if any.
    pub name: Option<String>,
    /// The base image (or earlier stage) as written.
    pub base: String,
    /// `--platform=...` as written.
    pub platform: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The arguments of every instruction with `keyword`.
    pub fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.args.as_str())
            .collect()
    }
}

/// A parsed Dockerfile: the global `ARG`s before the first `FROM`, and the stages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerfile {
    pub global_args: Vec<String>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// The default of a global `ARG name=value`.
    pub fn global_arg(&self, name: &str) -> Option<&str> {
        self.global_args.iter().find_map(|a| {
            a.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.trim_matches('"'))
        })
    }
}

/// Joins continuation lines (a trailing `\`) and drops comment and blank lines, as Docker does
/// (comment lines inside a continuation are dropped too).
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body.trim_end());
            current.push(' ');
        } else {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current).trim().to_owned());
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

pub fn parse(text: &str) -> Dockerfile {
    let mut df = Dockerfile::default();
    for line in logical_lines(text) {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let mut platform = None;
            let mut words = Vec::new();
            for w in args.split_whitespace() {
                match w.strip_prefix("--platform=") {
                    Some(p) => platform = Some(p.to_owned()),
                    None => words.push(w.to_owned()),
                }
            }
            let name = match words.as_slice() {
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some(name.clone()),
                _ => None,
            };
            df.stages.push(Stage {
                name,
                base: words.first().cloned().unwrap_or_default(),
                platform,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = df.stages.last_mut() {
            stage.instructions.push(Instruction { keyword, args });
        } else if keyword == "ARG" {
            df.global_args.push(args);
        }
    }
    df
}

/// The arguments of an exec-form instruction (`["a", "b"]`), or `None` for the shell form.
pub fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str(args).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_instructions_and_continuations() {
        let df = parse(
            "# syntax=docker/dockerfile:1\nARG V=1.2\nFROM --platform=$BUILDPLATFORM rust:${V} AS build\n\
             RUN a \\\n  # a comment inside\n  && b\nFROM scratch AS app\nCOPY --from=build /out/x /x\n\
             ENTRYPOINT [\"/x\"]\n",
        );
        assert_eq!(df.global_arg("V"), Some("1.2"));
        let build = df.stage("build").unwrap();
        assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(build.base, "rust:${V}");
        assert_eq!(build.all("RUN"), vec!["a && b"]);
        let app = df.stage("app").unwrap();
        assert_eq!(app.all("COPY"), vec!["--from=build /out/x /x"]);
        assert_eq!(exec_form(app.all("ENTRYPOINT")[0]).unwrap(), vec!["/x"]);
        assert_eq!(exec_form("/x --flag"), None);
    }
}
