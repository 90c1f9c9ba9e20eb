//! Helpers for the checks of `deploy/`: locating the tools (Helm, kubectl, kubernetes-validate,
//! promtool) with the same "fail in CI, skip elsewhere" rule as the rest of the workspace,
//! rendering the chart, strict schema validation, and small parsers for the Dockerfile, the bake
//! file and `cargo metadata`. The checks themselves are the integration tests in `tests/`.

pub mod bake;
pub mod chart;
pub mod dockerfile;
pub mod promtool;
pub mod schema;
pub mod workspace;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (this crate lives in `tests/deploy`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/deploy sits two levels below the repository root")
        .to_path_buf()
}

/// A file of the repository as text.
pub fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn runs(program: &Path, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

pub use slipway_shared::testing::helm;

/// `kubectl`: `$KUBECTL` or `kubectl` on `PATH` (`make tools` installs it).
pub fn kubectl() -> PathBuf {
    let k = std::env::var_os("KUBECTL").map_or_else(|| PathBuf::from("kubectl"), PathBuf::from);
    assert!(
        runs(&k, "version")
            || Command::new(&k)
                .args(["version", "--client"])
                .output()
                .is_ok(),
        "kubectl is required: run `make tools` or set KUBECTL=/path/to/kubectl"
    );
    k
}
