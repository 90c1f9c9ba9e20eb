//! What the workspace builds, from `cargo metadata`: packages, where they live and their
//! binary targets.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// A workspace package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// Its directory relative to the repository root, e.g. `crates/api`.
    pub dir: String,
    /// Names of its `[[bin]]` targets.
    pub bins: Vec<String>,
}

/// Every package of the workspace (`cargo metadata --no-deps`).
pub fn packages() -> Vec<Package> {
    let root = crate::repo_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
            let dir = manifest
                .parent()
                .and_then(|d| d.strip_prefix(&root).ok())
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            let bins = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.contains(&"bin".into()))
                })
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect();
            Package {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                version: p["version"].as_str().unwrap_or_default().to_owned(),
                dir,
                bins,
            }
        })
        .collect()
}

/// The workspace's `rust-version` (`[workspace.package]` in the root Cargo.toml).
pub fn rust_version() -> String {
    crate::read("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.strip_prefix("rust-version")
                .and_then(|r| r.split('"').nth(1))
                .map(str::to_owned)
        })
        .expect("rust-version in the root Cargo.toml")
}

/// The packages `deploy/docker/cargo-release.sh` builds for the images.
pub fn release_packages() -> Vec<String> {
    let root = crate::repo_root();
    let out = Command::new("sh")
        .arg(root.join("deploy/docker/cargo-release.sh"))
        .arg("packages")
        .output()
        .expect("running cargo-release.sh packages");
    assert!(out.status.success(), "cargo-release.sh packages failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
