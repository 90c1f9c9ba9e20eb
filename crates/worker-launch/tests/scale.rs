//! Many previews at once: 50 launches enqueued together all become Available, each in its own
//! namespace; and preview keys of every hostile shape (very long, unicode, uppercase, dots,
//! slashes, leading digits, empty) give names, hosts and labels the API server accepts, and
//! objects that pass strict validation against the Kubernetes 1.33 schemas.

mod common;

use common::*;
use futures::future::join_all;
use serde_json::Value;
use slipway_core::JobState;
use slipway_core::naming::{
    is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value, preview_namespace,
};
use std::collections::HashSet;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_previews_launched_at_once_all_become_available() {
    let h = Harness::new(sim()).await;
    let w = h.worker(&["--concurrency", "50"]).await;
    let started = Instant::now();
    let ids = join_all((0..50).map(|i| {
        let h = &h;
        async move {
            h.launch(body(&format!("org/app#{i}"), "ghcr.io/org/app:v1"))
                .await
        }
    }))
    .await;
    let jobs = join_all(ids.iter().map(|id| h.finished(*id))).await;
    let took = started.elapsed();
    for j in &jobs {
        assert_eq!(j.state, JobState::Succeeded, "{:?}", j.error);
    }
    eprintln!("50 previews Available in {:.2} s", took.as_secs_f64());
    assert_eq!(h.preview_namespaces().len(), 50);
    assert_eq!(h.store.count_active_previews().await.unwrap(), 50);
    let urls: HashSet<String> = jobs
        .iter()
        .map(|j| {
            j.result.as_ref().unwrap()["url"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(urls.len(), 50, "one host each");
    w.stop().await.expect("worker stopped cleanly");
}

/// Strict validation against the Kubernetes 1.33 JSON schemas with `kubernetes-validate`
/// (`make tools`). Like the simulator's own schema test, it runs when the tool is installed and
/// `KUBE_SIM_REQUIRE_VALIDATE=1` makes its absence a failure.
fn validate_strict(objects: &[Value]) {
    let installed = std::process::Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var("KUBE_SIM_REQUIRE_VALIDATE").is_err(),
            "kubernetes-validate is required (make tools)"
        );
        eprintln!("kubernetes-validate not installed; skipping schema validation");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = dir.path().join(format!("object-{i}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(o).unwrap()).unwrap();
            path
        })
        .collect();
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every label key and value on a stored object is valid.
fn assert_labels_valid(o: &Value, what: &str) {
    for path in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(labels) = o.pointer(path).and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v.as_str().unwrap_or_default();
                assert!(is_label_key(k) && is_label_value(v), "{what}: {k}={v:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_preview_keys_give_names_the_api_server_accepts() {
    let h = Harness::new(sim()).await;
    let w = h.worker(&["--concurrency", "16"]).await;
    let keys: Vec<String> = vec![
        String::new(),
        "x".repeat(1000),
        format!("org/{}#1", "r".repeat(100)),
        "日本語のブランチ".into(),
        "😀".into(),
        "İstanbul/straße#1".into(),
        "ORG/REPO#42".into(),
        "org/repo#42".into(),
        "org/repo.js#1".into(),
        "feature.x.y".into(),
        "feature/x//y".into(),
        "123-leading-digits".into(),
        "0".into(),
        "-".into(),
        "..".into(),
        "!@#$%^&*()".into(),
        "\u{202e}evil".into(),
        "   spaced   out   ".into(),
    ];
    // The API refuses some of these (empty, too long, invisible characters); the worker must
    // cope anyway, so the payload is recorded as it is.
    let template = valid(body("placeholder", "ghcr.io/org/app:v1"));
    let ids = join_all(keys.iter().map(|k| {
        let mut payload = template.clone();
        payload["preview"] = Value::String(k.clone());
        let h = &h;
        async move { h.launch_valid(payload, None).await }
    }))
    .await;
    let mut namespaces = HashSet::new();
    let mut applied: Vec<Value> = Vec::new();
    for (key, id) in keys.iter().zip(&ids) {
        let job = h.finished(*id).await;
        assert_eq!(job.state, JobState::Succeeded, "{key:?}: {:?}", job.error);
        let ns = preview_namespace(key);
        assert!(is_dns1123_label(&ns), "{ns}");
        assert!(namespaces.insert(ns.clone()), "{key:?} shares {ns}");
        let namespace = h.sim.object("namespaces", "", &ns).expect("namespace");
        assert_eq!(
            namespace["metadata"]["annotations"]["slipway.dev/preview-key"],
            key.as_str(),
            "the key kept verbatim"
        );
        assert_labels_valid(&namespace, &ns);
        applied.push((*namespace).clone());
        for plural in [
            "resourcequotas",
            "limitranges",
            "networkpolicies",
            "deployments",
            "services",
            "ingresses",
        ] {
            applied.extend(
                h.sim
                    .objects(plural, Some(&ns))
                    .iter()
                    .map(|o| (**o).clone()),
            );
        }
        for plural in [
            "deployments",
            "services",
            "ingresses",
            "networkpolicies",
            "pods",
        ] {
            for o in h.sim.objects(plural, Some(&ns)) {
                assert_labels_valid(&o, &format!("{plural} in {ns}"));
            }
        }
        let ingress = h.sim.object("ingresses", &ns, "app").unwrap();
        let host = ingress["spec"]["rules"][0]["host"].as_str().unwrap();
        assert!(is_dns1123_subdomain(host), "{key:?}: {host}");
        assert!(host.ends_with(".192.168.49.2.nip.io"), "{host}");
        let p = h.preview(key).await;
        assert_eq!(p.status, "ready");
        assert_eq!(p.url.as_deref(), Some(format!("http://{host}").as_str()));
    }
    assert_eq!(h.preview_namespaces().len(), keys.len());
    // Everything the worker applied, as the API server stored it.
    assert_eq!(applied.len(), keys.len() * 9);
    validate_strict(&applied);
    w.stop().await.expect("worker stopped cleanly");
}
