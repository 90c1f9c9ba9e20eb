//! The contract test: schemathesis, a property-based fuzzer driven by the served
//! `/openapi.json`, calls every operation of an API on a fresh database with generated valid
//! and invalid requests and fails on any finding of its checks:
//! - `not_a_server_error`: no 5xx;
//! - `status_code_conformance`: every status sent is documented for its operation;
//! - `content_type_conformance`: every response's content type is documented;
//! - `negative_data_rejection`: a request the document forbids (a wrong type, a value out of
//!   range, a missing content type) is refused with a 4xx.
//!
//! schemathesis is pinned and installed by `scripts/ensure-tools.sh`; without it the test
//! fails when `SLIPWAY_REQUIRE_SCHEMATHESIS=1` (as `make test` sets) and is skipped otherwise.
//! The run is bounded (`--max-time`, examples per operation) and seeded; set
//! `SLIPWAY_CONTRACT_SEED` to explore other inputs, `SLIPWAY_CONTRACT_MAX_TIME` (seconds) for
//! a longer run.

use crate::helpers::*;

#[tokio::test]
async fn schemathesis_finds_nothing_over_every_operation() {
    let version = tokio::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .await;
    let Some(version) = version.ok().filter(|o| o.status.success()) else {
        assert!(
            std::env::var("SLIPWAY_REQUIRE_SCHEMATHESIS").as_deref() != Ok("1"),
            "schemathesis is not installed (run `make tools`)"
        );
        eprintln!("skipped: schemathesis is not installed (run `make tools`)");
        return;
    };
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
    let app = spawn_app().await;
    let seed = std::env::var("SLIPWAY_CONTRACT_SEED").unwrap_or_else(|_| "15".into());
    let max_time = std::env::var("SLIPWAY_CONTRACT_MAX_TIME").unwrap_or_else(|_| "60".into());
    // Its own directory: schemathesis reads a `schemathesis.toml` from, and writes reports to,
    // the working directory.
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("schemathesis")
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .args(["run", &format!("{}/openapi.json", app.base)])
        .args(["--header", &format!("Authorization: Bearer {ALL}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,negative_data_rejection",
        ])
        .args(["--max-examples", "10", "--max-time", &max_time, "--seed", &seed])
        // One worker: CPython 3.11.7's `ast` is not thread-safe (gh-106905), and Hypothesis
        // parses lambdas with it; concurrent workers failed a run with "AST constructor
        // recursion depth mismatch".
        // A followed log (`follow=true`, SSE) of a job no worker runs never ends: schemathesis
        // reads an event stream until the request timeout and judges what arrived.
        .args(["--workers", "1", "--request-timeout", "5"])
        .args(["--generation-database", "none", "--no-color"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems (seed {seed}):\n{stdout}\n{stderr}"
    );
    // Every operation was selected and tested (its summary: `Selected: 20/20`, `Tested: 20`).
    assert!(
        stdout.contains("Selected: 20/20") && stdout.contains("Tested: 20"),
        "{stdout}"
    );
}
