//! Every object the builders produce passes strict validation against the Kubernetes 1.33 JSON
//! schemas (`kubernetes-validate`, installed by `make tools`). Strict mode rejects unknown
//! fields, so a misspelt or misplaced field fails here rather than on a real cluster.

use slipway_k8s::build::{BuildJobParams, BuildResources, build_job};
use std::collections::BTreeMap;
use std::process::Command;

/// Validate objects strictly; panics with the validator's output when any is rejected.
fn validate_strict(objects: &[serde_json::Value]) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        let path = dir.path().join(format!("object-{i}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(obj).unwrap()).unwrap();
        files.push(path);
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
        .args(&files)
        .output()
        .expect("kubernetes-validate is not installed: run `make tools`");
    assert!(
        out.status.success(),
        "schema validation failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_validator_rejects_an_unknown_field() {
    // Proves the check below can fail.
    let bad = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x"}, "dataa": {}});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, bad.to_string()).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
        .arg(&path)
        .output()
        .expect("kubernetes-validate is not installed: run `make tools`");
    assert!(!out.status.success());
}

#[test]
fn build_jobs_pass_strict_schema_validation() {
    let full = BuildJobParams {
        name: "slipway-build-0a1b2c3d-a1".into(),
        namespace: "slipway-builds".into(),
        labels: BTreeMap::from([("app.kubernetes.io/managed-by".into(), "slipway".into())]),
        buildkit_image: "moby/buildkit:v0.23.2-rootless".into(),
        repository: "https://github.com/org/app.git".into(),
        git_ref: "0123456789abcdef0123456789abcdef01234567".into(),
        context_subdir: Some("web".into()),
        dockerfile: "Dockerfile".into(),
        build_args: BTreeMap::from([("A".into(), "1".into())]),
        target: Some("runtime".into()),
        push_ref: "registry.local:5000/org/app:1".into(),
        cache_ref: Some("registry.local:5000/org/app:buildcache".into()),
        insecure_registry: true,
        git_secret: Some("git-token".into()),
        registry_secret: Some("push-creds".into()),
        resources: BuildResources {
            cpu_request: Some("500m".into()),
            memory_request: Some("1Gi".into()),
            cpu_limit: Some("2".into()),
            memory_limit: Some("4Gi".into()),
        },
        active_deadline_seconds: 1800,
        ttl_seconds_after_finished: 3600,
    };
    let minimal = BuildJobParams {
        cache_ref: None,
        git_secret: None,
        registry_secret: None,
        target: None,
        context_subdir: None,
        resources: BuildResources::default(),
        ..full.clone()
    };
    let objects: Vec<_> = [full, minimal]
        .iter()
        .map(|p| serde_json::to_value(build_job(p)).unwrap())
        .collect();
    validate_strict(&objects);
}
