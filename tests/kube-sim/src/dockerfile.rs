//! Just enough of BuildKit's Dockerfile frontend to print a real Dockerfile's build steps the
//! way BuildKit's plain progress shows them (moby/buildkit v0.23.2):
//!
//! - parsing (`frontend/dockerfile/parser/parser.go`): comments, line continuations (a
//!   trailing `\`; continuation lines are joined without their leading whitespace stripped,
//!   comment and empty lines inside skipped), one instruction per logical line; a file with no
//!   instructions is `file with no instructions`, an unknown keyword `dockerfile parse error on
//!   line N: unknown instruction: X` (`instructions/parse.go`); heredocs and the `escape`
//!   directive are not modelled (refused);
//! - stages (`dockerfile2llb/convert.go`): `FROM image [AS name]`, global `ARG`s before the
//!   first `FROM`, the target (`--opt target=`, else the last stage) and the stages it needs
//!   (`FROM <stage>`, `COPY --from=<stage|index>`); a stage is named `stage-N` when unnamed in
//!   a multi-stage file, and has no name in a single-stage one;
//! - step headers (`prefixCommand`): `[<stage> i/total] ` with `i` padded to the width of
//!   `total` (`%*d`, width `1+log10(total)`), where `total` counts the `FROM` of an image (not
//!   of `scratch` or another stage) and each `RUN`, `COPY`, `ADD` and `WORKDIR`; the text is the
//!   instruction as written (`uppercaseCmd(processCmdEnv(...))`: keyword upper-cased, words
//!   through the shell lexer: quotes removed, `$VAR`/`${VAR}` of the Dockerfile's `ARG`s and
//!   `ENV`s expanded; a variable the Dockerfile does not set expands to nothing, as for a base
//!   image without it); `FROM` shows the normalized reference (`docker.io/library/node:22`)
//!   pinned to a digest.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// `FROM` an image (the normalized reference, without digest).
    From(String),
    /// `RUN` (the shell-form command line as written).
    Run(String),
    /// `COPY`/`ADD`; true when it reads the build context (no `--from`).
    Copy(bool),
    /// `WORKDIR`.
    Workdir,
}

/// One vertex of the build, in print order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The progress header, e.g. `[2/3] RUN npm ci`.
    pub header: String,
    /// What it does.
    pub kind: StepKind,
    /// The instruction's first line in the Dockerfile (1-based).
    pub line: usize,
    /// The instruction as written (continuations joined).
    pub original: String,
}

/// The build of a Dockerfile: base images to resolve and steps to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Base images whose metadata is loaded (`[internal] load metadata for ...`): as written
    /// (after `ARG` expansion) and normalized.
    pub bases: Vec<(String, String)>,
    /// Steps of the needed stages, dependencies first.
    pub steps: Vec<Step>,
}

struct Instruction {
    keyword: String,
    rest: String,
    original: String,
    line: usize,
}

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn parse(text: &str) -> Result<Vec<Instruction>, String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let is_comment = |l: &str| l.trim_start().starts_with('#');
    let continued = |l: &str| -> Option<String> {
        let t = l.trim_end_matches([' ', '\t', '\r']);
        t.strip_suffix('\\').map(str::to_owned)
    };
    let mut out = Vec::new();
    let mut i = 0;
    let mut directives_allowed = true;
    while i < lines.len() {
        let raw = lines[i].trim_end_matches('\r');
        i += 1;
        if is_comment(raw) {
            let t = raw.trim_start().trim_start_matches('#').trim_start();
            if directives_allowed && t.to_ascii_lowercase().starts_with("escape") {
                return Err("kube-sim: the escape parser directive is not modelled".into());
            }
            continue;
        }
        let first = raw.trim_start();
        if first.trim().is_empty() {
            continue;
        }
        directives_allowed = false;
        let start = i;
        let mut line = String::new();
        match continued(first) {
            None => line.push_str(first.trim_end()),
            Some(part) => {
                line.push_str(&part);
                while i < lines.len() {
                    let next = lines[i].trim_end_matches('\r');
                    i += 1;
                    if is_comment(next) || next.trim().is_empty() {
                        continue;
                    }
                    match continued(next) {
                        Some(part) => line.push_str(&part),
                        None => {
                            line.push_str(next.trim_end());
                            break;
                        }
                    }
                }
            }
        }
        let (word, rest) = line
            .split_once([' ', '\t'])
            .map_or((line.as_str(), ""), |(w, r)| (w, r.trim_start()));
        let keyword = word.to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(format!(
                "dockerfile parse error on line {start}: unknown instruction: {word}"
            ));
        }
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") && rest.contains("<<") {
            return Err("kube-sim: heredocs are not modelled".into());
        }
        out.push(Instruction {
            keyword,
            rest: rest.to_owned(),
            original: line.clone(),
            line: start,
        });
    }
    if out.is_empty() {
        return Err("file with no instructions".into());
    }
    Ok(out)
}

/// A simplified `shell.Lex.ProcessWord`: quotes removed, backslash escapes, `$VAR`, `${VAR}`,
/// `${VAR:-default}`, `${VAR-default}`; `None` on an unterminated quote (the caller keeps the
/// text as written, as `processCmdEnv` does on an error).
fn process_word(s: &str, env: &BTreeMap<String, String>) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let var = |chars: &[char], i: &mut usize, out: &mut String| -> Option<()> {
        // chars[*i] == '$'
        let j = *i + 1;
        if chars.get(j) == Some(&'{') {
            let end = chars[j..].iter().position(|&c| c == '}')? + j;
            let inner: String = chars[j + 1..end].iter().collect();
            let (name, default) = match inner.split_once(":-").or_else(|| inner.split_once('-')) {
                Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
                None => (inner.clone(), None),
            };
            match (env.get(&name), default) {
                (Some(v), _) if !v.is_empty() => out.push_str(v),
                (_, Some(d)) => out.push_str(&d),
                (Some(v), None) => out.push_str(v),
                (None, None) => {}
            }
            *i = end + 1;
        } else {
            let mut k = j;
            while k < chars.len() && (chars[k].is_ascii_alphanumeric() || chars[k] == '_') {
                k += 1;
            }
            if k == j {
                out.push('$');
                *i = j;
            } else {
                let name: String = chars[j..k].iter().collect();
                if let Some(v) = env.get(&name) {
                    out.push_str(v);
                }
                *i = k;
            }
        }
        Some(())
    };
    while i < chars.len() {
        match chars[i] {
            '\'' => {
                let end = chars[i + 1..].iter().position(|&c| c == '\'')? + i + 1;
                out.extend(&chars[i + 1..end]);
                i = end + 1;
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i)? {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' if matches!(chars.get(i + 1), Some('$' | '"' | '\\')) => {
                            out.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' => var(&chars, &mut i, &mut out)?,
                        c => {
                            out.push(*c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' if i + 1 < chars.len() => {
                out.push(chars[i + 1]);
                i += 2;
            }
            '$' => var(&chars, &mut i, &mut out)?,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `reference.ParseNormalizedNamed` + `TagNameOnly`: Docker Hub's domain and `library/`
/// added, `:latest` when neither tag nor digest.
#[must_use]
pub fn normalize(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (name, None),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        repo.to_owned()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match (tag, digest) {
        (_, Some(d)) => match tag {
            Some(t) => format!("{full}:{t}@{d}"),
            None => format!("{full}@{d}"),
        },
        (Some(t), None) => format!("{full}:{t}"),
        (None, None) => format!("{full}:latest"),
    }
}

/// The digest the simulated registry resolves `reference` to (deterministic).
#[must_use]
pub fn image_digest(reference: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(reference.as_bytes()))
    )
}

struct Stage {
    name: Option<String>,
    /// The `FROM` operand after global-ARG expansion.
    base: String,
    from_line: usize,
    from_original: String,
    body: Vec<Instruction>,
}

/// Plans the build of `text` for `target` (None: the last stage) with `build_args`
/// (`--opt build-arg:NAME=VALUE`). Errors are BuildKit's messages.
pub fn plan(
    text: &str,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Result<Plan, String> {
    let instructions = parse(text)?;
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.rest.split_whitespace().collect();
            let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
            let (base, name) = match words.as_slice() {
                [b] => (*b, None),
                [b, as_, n] if as_.eq_ignore_ascii_case("as") => (*b, Some(n.to_ascii_lowercase())),
                _ => {
                    return Err(format!(
                        "dockerfile parse error on line {}: FROM requires either one or three arguments",
                        ins.line
                    ));
                }
            };
            stages.push(Stage {
                name,
                base: process_word(base, &global).unwrap_or_else(|| base.to_owned()),
                from_line: ins.line,
                from_original: ins.original.clone(),
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(ins);
        } else if ins.keyword == "ARG" {
            for (k, v) in arg_defs(&ins.rest) {
                let v = build_args.get(&k).cloned().or(v).unwrap_or_default();
                global.insert(k, v);
            }
        } else {
            return Err(format!(
                "dockerfile parse error on line {}: no build stage in current context",
                ins.line
            ));
        }
    }
    let index_of = |name: &str| -> Option<usize> {
        stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&name.to_ascii_lowercase()))
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < stages.len()))
    };
    let target_index = match target {
        Some(t) => index_of(t).ok_or_else(|| format!("target stage {t:?} could not be found"))?,
        None => stages.len() - 1,
    };
    // The stages the target needs, dependencies first.
    fn visit(
        i: usize,
        stages: &[Stage],
        index_of: &dyn Fn(&str) -> Option<usize>,
        seen: &mut BTreeSet<usize>,
        order: &mut Vec<usize>,
    ) {
        if !seen.insert(i) {
            return;
        }
        let mut deps = Vec::new();
        if let Some(d) = index_of(&stages[i].base).filter(|d| *d < i) {
            deps.push(d);
        }
        for ins in &stages[i].body {
            if ins.keyword == "COPY" || ins.keyword == "ADD" {
                for w in ins.rest.split_whitespace() {
                    if let Some(from) = w.strip_prefix("--from=")
                        && let Some(d) = index_of(from).filter(|d| *d < i)
                    {
                        deps.push(d);
                    }
                }
            }
        }
        for d in deps {
            visit(d, stages, index_of, seen, order);
        }
        order.push(i);
    }
    let mut order = Vec::new();
    visit(
        target_index,
        &stages,
        &index_of,
        &mut BTreeSet::new(),
        &mut order,
    );
    let single = stages.len() == 1;
    let mut bases = Vec::new();
    let mut steps = Vec::new();
    for i in order {
        let st = &stages[i];
        let from_stage = index_of(&st.base).filter(|d| *d < i).is_some();
        let scratch = st.base.eq_ignore_ascii_case("scratch");
        let counted = |k: &str| matches!(k, "ADD" | "COPY" | "RUN" | "WORKDIR");
        let total = usize::from(!from_stage && !scratch)
            + st.body.iter().filter(|b| counted(&b.keyword)).count();
        let width = if total == 0 {
            0
        } else {
            1 + total.ilog10() as usize
        };
        let stage_name = if single {
            String::new()
        } else {
            st.name.clone().unwrap_or_else(|| format!("stage-{i}"))
        };
        let mut index = 0;
        let mut prefix = |text: String| -> String {
            if total == 0 {
                return text;
            }
            index += 1;
            let name = if stage_name.is_empty() {
                String::new()
            } else {
                format!("{stage_name} ")
            };
            format!("[{name}{index:>width$}/{total}] {text}")
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        if !from_stage && !scratch {
            let reference = normalize(&st.base);
            if !bases.iter().any(|(_, r)| *r == reference) {
                bases.push((st.base.clone(), reference.clone()));
            }
            let pinned = if reference.contains('@') {
                reference.clone()
            } else {
                format!("{reference}@{}", image_digest(&reference))
            };
            steps.push(Step {
                header: prefix(format!("FROM {pinned}")),
                kind: StepKind::From(reference),
                line: st.from_line,
                original: st.from_original.clone(),
            });
        }
        for ins in &st.body {
            match ins.keyword.as_str() {
                "ARG" => {
                    for (k, v) in arg_defs(&ins.rest) {
                        let v = build_args
                            .get(&k)
                            .cloned()
                            .or(v)
                            .or_else(|| global.get(&k).cloned())
                            .unwrap_or_default();
                        env.insert(k, v);
                    }
                }
                "ENV" => {
                    for (k, v) in env_defs(&ins.rest) {
                        let v = process_word(&v, &env).unwrap_or(v);
                        env.insert(k, v);
                    }
                }
                k if counted(k) => {
                    let text =
                        process_word(&ins.original, &env).unwrap_or_else(|| ins.original.clone());
                    let (word, rest) = text.split_once(' ').unwrap_or((&text, ""));
                    let shown = if rest.is_empty() {
                        word.to_ascii_uppercase()
                    } else {
                        format!("{} {rest}", word.to_ascii_uppercase())
                    };
                    let kind = match k {
                        "RUN" => StepKind::Run(ins.rest.clone()),
                        "WORKDIR" => StepKind::Workdir,
                        _ => StepKind::Copy(
                            !ins.rest
                                .split_whitespace()
                                .any(|w| w.starts_with("--from=")),
                        ),
                    };
                    steps.push(Step {
                        header: prefix(shown),
                        kind,
                        line: ins.line,
                        original: ins.original.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(Plan { bases, steps })
}

/// `ARG NAME[=default] ...`.
fn arg_defs(rest: &str) -> Vec<(String, Option<String>)> {
    rest.split_whitespace()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.trim_matches('"').to_owned())),
            None => (w.to_owned(), None),
        })
        .collect()
}

/// `ENV K=V ...` or the legacy `ENV K V`.
fn env_defs(rest: &str) -> Vec<(String, String)> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (k, v) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        return vec![(k.to_owned(), v.trim().to_owned())];
    }
    // Words split on unquoted whitespace.
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in rest.chars() {
        match (quote, c) {
            (None, ' ' | '\t') => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
        .into_iter()
        .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(text: &str) -> Vec<String> {
        plan(text, None, &BTreeMap::new())
            .unwrap()
            .steps
            .into_iter()
            .map(|s| s.header)
            .collect()
    }

    #[test]
    fn single_stage_headers_follow_prefix_command() {
        let d = image_digest("docker.io/library/node:22");
        assert_eq!(
            headers(
                "# syntax comment\nFROM node:22\nENV NODE_ENV=production\nCOPY . .\nRUN npm ci \\\n    --omit=dev\nCMD [\"node\", \"index.js\"]\n"
            ),
            [
                format!("[1/3] FROM docker.io/library/node:22@{d}"),
                "[2/3] COPY . .".into(),
                "[3/3] RUN npm ci     --omit=dev".into(),
            ]
        );
        // Ten steps or more: the index is padded to the total's width.
        let mut many = String::from("FROM alpine\n");
        for i in 0..10 {
            many.push_str(&format!("RUN echo \"step $N\" {i}\n"));
        }
        let h = headers(&many);
        assert!(h[0].starts_with("[ 1/11] FROM docker.io/library/alpine:latest@sha256:"));
        assert_eq!(h[1], "[ 2/11] RUN echo step  0");
        assert_eq!(h[10], "[11/11] RUN echo step  9");
    }

    #[test]
    fn stages_are_named_and_only_needed_ones_built() {
        let text = "ARG V=22\nFROM node:${V} AS build\nWORKDIR /app\nRUN npm run build\n\
            FROM alpine AS unused\nRUN true\n\
            FROM gcr.io/distroless/nodejs22:nonroot\nCOPY --from=build /app /app\n";
        let p = plan(text, None, &BTreeMap::new()).unwrap();
        let bases: Vec<&str> = p.bases.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            bases,
            [
                "docker.io/library/node:22",
                "gcr.io/distroless/nodejs22:nonroot"
            ]
        );
        assert_eq!(p.bases[0].0, "node:22");
        let h: Vec<String> = p.steps.iter().map(|s| s.header.clone()).collect();
        assert!(h[0].starts_with("[build 1/3] FROM docker.io/library/node:22@"));
        assert_eq!(h[1], "[build 2/3] WORKDIR /app");
        assert_eq!(h[2], "[build 3/3] RUN npm run build");
        assert!(h[3].starts_with("[stage-2 1/2] FROM gcr.io/distroless/nodejs22:nonroot@"));
        assert_eq!(h[4], "[stage-2 2/2] COPY --from=build /app /app");
        assert_eq!(p.steps[4].kind, StepKind::Copy(false));
    }

    #[test]
    fn empty_and_unknown_files_fail_as_buildkit_does() {
        assert_eq!(
            plan("# only a comment\n\n", None, &BTreeMap::new()).unwrap_err(),
            "file with no instructions"
        );
        assert_eq!(
            plan("FROM a\nBOGUS x\n", None, &BTreeMap::new()).unwrap_err(),
            "dockerfile parse error on line 2: unknown instruction: BOGUS"
        );
        assert_eq!(normalize("ghcr.io/o/a:1"), "ghcr.io/o/a:1");
        assert_eq!(normalize("o/a"), "docker.io/o/a:latest");
        assert_eq!(normalize("localhost:5000/a"), "localhost:5000/a:latest");
    }
}
