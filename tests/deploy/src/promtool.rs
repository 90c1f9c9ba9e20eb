//! `promtool` (Debian's `prometheus` package, installed by `scripts/ensure-tools.sh`): checks
//! and unit tests of the chart's alert rules (`deploy/helm/slipway/files/alerts.yaml`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The chart's rules file, relative to the repository root.
pub const RULES: &str = "deploy/helm/slipway/files/alerts.yaml";
/// The rules' unit tests (`promtool test rules`), relative to the repository root.
pub const RULE_TESTS: &str = "tests/deploy/promtool/alerts_test.yaml";
/// The Grafana dashboard, relative to the repository root.
pub const DASHBOARD: &str = "deploy/helm/slipway/files/dashboard.json";

/// `promtool`: `$PROMTOOL`, else `promtool` on `PATH`. `None` when there is none; with
/// `SLIPWAY_REQUIRE_PROMTOOL` set (the Makefile sets it) that is a failure, so CI cannot pass
/// by skipping.
pub fn promtool() -> Option<PathBuf> {
    let p = std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let ok = Command::new(&p)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(p);
    }
    assert!(
        std::env::var_os("SLIPWAY_REQUIRE_PROMTOOL").is_none(),
        "promtool is required (SLIPWAY_REQUIRE_PROMTOOL is set): run `make tools` (Debian \
         package prometheus) or set PROMTOOL=/path/to/promtool"
    );
    eprintln!("promtool not found (make tools installs it); skipping");
    None
}

/// Runs `promtool <args>`: Ok with its output, or Err with its output.
pub fn run(promtool: &Path, args: &[&Path], verb: &[&str]) -> Result<String, String> {
    let out = Command::new(promtool)
        .args(verb)
        .args(args)
        .output()
        .map_err(|e| format!("running promtool: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `promtool check rules <file>`.
pub fn check_rules(promtool: &Path, rules: &Path) -> Result<String, String> {
    run(promtool, &[rules], &["check", "rules"])
}

/// `promtool test rules <tests>`.
pub fn test_rules(promtool: &Path, tests: &Path) -> Result<String, String> {
    run(promtool, &[tests], &["test", "rules"])
}

/// The unit tests of [`RULE_TESTS`] pointed at another rules file: a copy in `dir`
/// whose `rule_files` is `rules` (absolute), for running the same tests on rendered rules.
pub fn tests_against(rules: &Path, dir: &Path) -> PathBuf {
    let text = crate::read(RULE_TESTS);
    let original = "  - ../../../deploy/helm/slipway/files/alerts.yaml\n";
    assert!(
        text.contains(original),
        "{RULE_TESTS} names its rules file as `{}`",
        original.trim()
    );
    let text = text.replacen(original, &format!("  - {}\n", rules.display()), 1);
    let path = dir.join("alerts_test.yaml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// The GitHub anchor of a Markdown heading's text: lower case, punctuation but `-` and `_`
/// dropped, spaces as `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading of a Markdown document.
pub fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}
