//! `promtool check metrics` (Debian package `prometheus`) on a binary's `/metrics`: each
//! binary's tests pipe its exposition through it and fail on any finding. With
//! `SLIPWAY_REQUIRE_PROMTOOL` set (the Makefile sets it) a missing tool is a failure, so a run
//! without it cannot pass by skipping.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A tool of the `prometheus` package: `$name` (upper-cased, e.g. `$PROMTOOL`) or `name` on `PATH`, if it runs. `None` when it does
/// not; with `SLIPWAY_REQUIRE_PROMTOOL` set that is a failure.
pub fn prometheus_tool(name: &str) -> Option<PathBuf> {
    let program =
        std::env::var_os(name.to_uppercase()).map_or_else(|| PathBuf::from(name), PathBuf::from);
    let runs = Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some(program);
    }
    assert!(
        std::env::var_os("SLIPWAY_REQUIRE_PROMTOOL").is_none(),
        "{name} is required (SLIPWAY_REQUIRE_PROMTOOL is set): run `make tools` (Debian package \
         `prometheus`) or set {}=/path/to/{name}",
        name.to_uppercase()
    );
    eprintln!("{name} not found (Debian package `prometheus`); skipping");
    None
}

/// `promtool`, or `None` (test skipped) when it is missing and not required.
pub fn promtool() -> Option<PathBuf> {
    prometheus_tool("promtool")
}

/// `promtool check metrics` on an exposition: what it reports (empty when it finds nothing),
/// with the exit status.
pub fn check_metrics(promtool: &PathBuf, exposition: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = exposition.to_owned();
    // Written from a thread so a promtool that answers early cannot deadlock the pipe.
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child.wait_with_output().expect("promtool runs");
    writer.join().expect("writer").expect("writing to promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report.trim().to_owned())
}

/// Fails the test on any finding of `promtool check metrics` in `exposition` (`who` names the
/// binary in the message). Does nothing when promtool is missing and not required.
pub fn assert_promtool_clean(who: &str, exposition: &str) {
    let Some(promtool) = promtool() else { return };
    let (ok, report) = check_metrics(&promtool, exposition);
    assert!(
        ok && report.is_empty(),
        "promtool check metrics on {who}'s /metrics:\n{report}"
    );
}
