//! Build progress read from BuildKit's plain progress output ("step n of m"), one log line at a
//! time. Pure: no I/O, no clock.
//!
//! The format, as upstream writes it (moby/buildkit `util/progress/progressui/printer.go`,
//! `textMux.printVtx`): every line of a vertex starts `#<index> `; when the printer switches to
//! a vertex it prints `#<index> <vertex name>` (again when it comes back to it, after
//! `#<index> ...` for the one it leaves), then the vertex's events, statuses
//! (`#<index> <id> <bytes> <secs>s done`), its output lines (`#<index> <secs> <text>`), and at
//! its end `#<index> CACHED`, `#<index> DONE <secs>s`, `#<index> ERROR: <msg>` or
//! `#<index> CANCELED`. Vertices of parallel stages interleave. The Dockerfile frontend names
//! each instruction's vertex `[<stage> <n>/<m>] <instruction>` (`[<n>/<m>]` for an unnamed
//! single stage, `[stage-1 <n>/<m>]` for an unnamed later stage, a platform first in
//! multi-platform builds: `[linux/arm64 builder 2/5]`), with `<n>` padded to the width of
//! `<m>` (`frontend/dockerfile/dockerfile2llb/convert.go`, `prefixCommand`: `%*d/%d]`, so
//! `[ 1/12]` and `[builder  3/10]`); its other vertices are `[internal] …`, `[auth] …` and the
//! like, which are not steps.
//!
//! Progress counts the instruction steps of every stage seen so far: `steps` is the sum of
//! each stage's `m`, `step` the number of distinct steps started (cached ones included), and
//! `name` the vertex named last. A stage's total is known from its first step's header, and
//! BuildKit announces every stage's `FROM` step early, so totals settle quickly.

use std::collections::{BTreeMap, BTreeSet};

/// Where a build is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildProgress {
    /// Steps started so far (1-based: the step being worked on, in a sequential build).
    pub step: u32,
    /// Steps of all stages seen so far.
    pub steps: u32,
    /// The latest step's vertex name, e.g. `[builder 2/5] RUN cargo build`.
    pub name: String,
}

/// Reads BuildKit plain progress lines and keeps the progress they imply.
#[derive(Debug, Default, Clone)]
pub struct ProgressTracker {
    /// Steps per stage (`m` of `[stage n/m]`).
    totals: BTreeMap<String, u32>,
    /// Steps started: (stage, n).
    started: BTreeSet<(String, u32)>,
    name: Option<String>,
}

/// `[<prefix…> n/m] rest`: the stage (prefix tokens joined) and n, m.
fn step_of(name: &str) -> Option<(String, u32, u32)> {
    let inner = name.strip_prefix('[')?;
    let (inner, _) = inner.split_once(']')?;
    let mut tokens: Vec<&str> = inner.split_whitespace().collect();
    let (n, m) = tokens.pop()?.split_once('/')?;
    let (n, m): (u32, u32) = (n.parse().ok()?, m.parse().ok()?);
    if n == 0 || n > m {
        return None;
    }
    Some((tokens.join(" "), n, m))
}

impl ProgressTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one log line; `true` if the progress changed. Lines that are not BuildKit's
    /// (the build's own output, Slipway's notes) are ignored.
    pub fn push(&mut self, line: &str) -> bool {
        let Some(rest) = line.strip_prefix('#') else {
            return false;
        };
        let Some((index, rest)) = rest.split_once(' ') else {
            return false;
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let rest = rest.trim_end();
        let Some((stage, n, m)) = step_of(rest) else {
            return false;
        };
        let before = (self.totals.get(&stage).copied(), self.name.clone());
        let total = self.totals.entry(stage.clone()).or_insert(m);
        *total = (*total).max(m);
        let new_step = self.started.insert((stage.clone(), n));
        self.name = Some(rest.to_owned());
        new_step || before != (self.totals.get(&stage).copied(), self.name.clone())
    }

    /// The progress so far; `None` before the first step.
    pub fn progress(&self) -> Option<BuildProgress> {
        let name = self.name.clone()?;
        Some(BuildProgress {
            step: self.started.len() as u32,
            steps: self.totals.values().sum(),
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (ProgressTracker, Vec<Option<BuildProgress>>) {
        let mut t = ProgressTracker::new();
        let mut seen = Vec::new();
        for line in text.lines() {
            if t.push(line) {
                seen.push(t.progress());
            }
        }
        (t, seen)
    }

    #[test]
    fn a_single_stage_build_counts_its_steps_and_ignores_everything_else() {
        let (t, seen) = read(
            "#0 building with \"default\" instance using docker driver\n\
             \n\
             #1 [internal] load build definition from Dockerfile\n\
             #1 transferring dockerfile: 215B done\n\
             #1 DONE 0.0s\n\
             \n\
             #2 [internal] load metadata for docker.io/library/alpine:3.20\n\
             #2 DONE 0.9s\n\
             \n\
             #3 [1/3] FROM docker.io/library/alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d\n\
             #3 resolve docker.io/library/alpine:3.20@sha256:beef 0.0s done\n\
             #3 CACHED\n\
             \n\
             #4 [2/3] RUN apk add --no-cache curl\n\
             #4 0.231 fetch https://dl-cdn.alpinelinux.org/alpine/v3.20/main/x86_64/APKINDEX.tar.gz\n\
             #4 1.402 OK: 13 MiB in 22 packages\n\
             #4 DONE 1.5s\n\
             \n\
             #5 [3/3] COPY app /app\n\
             #5 DONE 0.1s\n\
             \n\
             #6 exporting to image\n\
             #6 exporting layers 0.1s done\n\
             #6 DONE 0.2s\n",
        );
        let p = t.progress().unwrap();
        assert_eq!((p.step, p.steps), (3, 3));
        assert_eq!(p.name, "[3/3] COPY app /app");
        // One change per step header; output, DONE, CACHED and internal vertices change nothing.
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].as_ref().unwrap().step, 1);
    }

    #[test]
    fn stages_add_up_and_interleaved_parallel_steps_count_once() {
        let (t, _) = read(
            "#4 [builder 1/4] FROM docker.io/library/rust:1.85@sha256:aa\n\
             #5 [stage-1 1/3] FROM docker.io/library/debian:bookworm-slim@sha256:bb\n\
             #5 CACHED\n\
             #6 [builder 2/4] WORKDIR /src\n\
             #6 CACHED\n\
             #7 [builder 3/4] COPY . .\n\
             #8 [stage-1 2/3] RUN apt-get update\n\
             #8 0.512 Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]\n\
             #7 DONE 0.3s\n\
             #8 ...\n\
             \n\
             #9 [builder 4/4] RUN cargo build --release\n\
             #9 12.07    Compiling serde v1.0.219\n\
             #9 ...\n\
             \n\
             #8 [stage-1 2/3] RUN apt-get update\n\
             #8 DONE 3.1s\n",
        );
        let p = t.progress().unwrap();
        assert_eq!(p.steps, 4 + 3, "both stages' totals");
        assert_eq!(p.step, 6, "the re-printed header of #8 is not a new step");
        assert_eq!(p.name, "[stage-1 2/3] RUN apt-get update");
    }

    #[test]
    fn platform_prefixed_names_and_odd_lines() {
        assert_eq!(
            step_of("[linux/arm64 builder 2/5] RUN make"),
            Some(("linux/arm64 builder".into(), 2, 5))
        );
        assert_eq!(step_of("[2/5] RUN make"), Some((String::new(), 2, 5)));
        // Upstream pads the step number to the width of the total.
        assert_eq!(step_of("[ 1/12] RUN make"), Some((String::new(), 1, 12)));
        assert_eq!(
            step_of("[builder  3/10] RUN make"),
            Some(("builder".into(), 3, 10))
        );
        assert_eq!(step_of("[internal] load .dockerignore"), None);
        assert_eq!(step_of("[builder 6/5] RUN make"), None);
        assert_eq!(step_of("[builder 0/5] RUN make"), None);
        let mut t = ProgressTracker::new();
        for line in [
            "",
            "#",
            "#x [1/2] RUN a",
            "# [1/2] RUN a",
            "[1/2] RUN a",
            "#3 0.12 [1/2] not a header but output",
            "[slipway] log lines may be missing",
        ] {
            assert!(!t.push(line), "{line:?}");
        }
        assert_eq!(t.progress(), None);
    }
}
