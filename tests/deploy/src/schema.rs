//! Strict validation against the Kubernetes 1.33 JSON schemas with `kubernetes-validate`
//! (PyPI, pinned by `scripts/ensure-tools.sh`). Strict mode rejects unknown fields. The tool
//! only warns about a kind it has no schema for, so such a warning fails here too: every
//! document handed over must be one Kubernetes itself defines.

use serde_json::Value;
use std::process::Command;

/// Whether the validator is installed; without it the check skips, unless
/// `KUBE_SIM_REQUIRE_VALIDATE` is set (the Makefile sets it), which makes that a failure.
pub fn validator_available() -> bool {
    let ok = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("KUBE_SIM_REQUIRE_VALIDATE").is_none(),
            "kubernetes-validate is required (KUBE_SIM_REQUIRE_VALIDATE is set): run `make tools`"
        );
        eprintln!("kubernetes-validate not installed; skipping schema validation");
    }
    ok
}

/// Validates every document strictly; Ok, or the validator's report.
pub fn validate_strict(docs: &[Value]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let (kind, _, name) = crate::chart::id(doc);
        let path = dir.path().join(format!("{i:03}-{kind}-{name}.json"));
        let text = serde_json::to_vec_pretty(doc).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        files.push(path);
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .args(&files)
        .output()
        .map_err(|e| format!("running kubernetes-validate: {e}"))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !report.contains("Couldn't find schema") {
        Ok(())
    } else {
        Err(report)
    }
}
