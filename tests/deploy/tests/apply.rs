//! The rendered chart applies to the Kubernetes simulator with `kubectl apply --server-side`
//! and every Deployment becomes Available there. The simulator runs no containers, but the
//! apply goes through the API server's validation (names, selectors against template labels,
//! field validation `Strict`), creates every object of every kind the chart renders, and the
//! Deployment controller brings each rollout to Available.
//!
//! KEDA's ScaledObject is a custom resource the simulator does not serve, so it stays off here
//! (tests/chart.rs checks it). Needs Helm and kubectl (`make tools`).

use kube_sim::{Delays, KubeSim};
use serde_json::Value;
use slipway_deploy_tests::chart::{self, DEFAULT, EVERYTHING, Install, NAMESPACE, PRODUCTION};
use slipway_deploy_tests::{helm, kubectl};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::process::Command;

const T: Duration = Duration::from_secs(60);

/// The simulator's resource plural of a kind the chart renders.
fn plural(kind: &str) -> String {
    match kind {
        "Ingress" => "ingresses".into(),
        "NetworkPolicy" => "networkpolicies".into(),
        "HorizontalPodAutoscaler" => "horizontalpodautoscalers".into(),
        other => format!("{}s", other.to_ascii_lowercase()),
    }
}

/// The Secrets the chart's pods mount or read that the chart does not render (its
/// `existingSecret`s), each with the keys they use: the operator creates them before the
/// install, and without them the kubelet keeps a pod that mounts one in `ContainerCreating`.
fn external_secrets(docs: &[Value]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for d in chart::of_kind(docs, "Deployment") {
        let (_, ns, _) = chart::id(d);
        let spec = &d["spec"]["template"]["spec"];
        let mut uses = |name: &str, key: Option<&str>| {
            let rendered = chart::of_kind(docs, "Secret").any(|s| chart::id(s).2 == name);
            if !rendered && !name.is_empty() {
                let keys = out.entry((ns.clone(), name.to_owned())).or_default();
                keys.extend(key.map(String::from));
            }
        };
        for v in spec["volumes"].as_array().into_iter().flatten() {
            if let Some(name) = v["secret"]["secretName"].as_str() {
                uses(name, None);
                for item in v["secret"]["items"].as_array().into_iter().flatten() {
                    uses(name, item["key"].as_str());
                }
            }
        }
        for c in spec["containers"].as_array().into_iter().flatten() {
            for env in c["env"].as_array().into_iter().flatten() {
                let r = &env["valueFrom"]["secretKeyRef"];
                if let Some(name) = r["name"].as_str() {
                    uses(name, r["key"].as_str());
                }
            }
        }
    }
    out
}

async fn apply_and_wait(install: Install<'_>) {
    let Some(helm) = helm() else { return };
    let kubectl = kubectl();
    let manifests = chart::render_text(&helm, &install)
        .unwrap_or_else(|e| panic!("helm template ({}): {e}", install.name));
    let docs = chart::parse_documents(&manifests);
    assert!(
        !docs.iter().any(chart::is_keda),
        "{}: KEDA objects cannot be applied to the simulator",
        install.name
    );

    // The release namespace exists before the install (helm install --create-namespace).
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(20),
            ..Delays::zero()
        })
        .namespace(NAMESPACE)
        .start()
        .await
        .expect("start the simulator");
    for ((ns, name), keys) in external_secrets(&docs) {
        let data: serde_json::Map<String, Value> = keys
            .into_iter()
            .map(|k| (k, Value::String("eA==".into())))
            .collect();
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns}, "data": data});
        sim.store()
            .create(kube_sim::kinds::by_plural("secrets"), &ns, secret, None)
            .expect("create an existing Secret");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("slipway.yaml");
    std::fs::write(&file, &manifests).expect("write manifests");

    let out = tokio::time::timeout(
        T,
        Command::new(&kubectl)
            .args(["apply", "--server-side", "--field-manager=helm", "-f"])
            .arg(&file)
            .env("KUBECONFIG", sim.kubeconfig_path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl apply timed out")
    .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: kubectl apply --server-side failed:\n{}{stdout}",
        install.name,
        String::from_utf8_lossy(&out.stderr)
    );

    // Every rendered object is stored, under the name and namespace the chart gave it.
    for doc in &docs {
        let (kind, ns, name) = chart::id(doc);
        assert!(
            sim.object(&plural(&kind), &ns, &name).is_some(),
            "{}: {kind} {ns}/{name} was not created (kubectl said:\n{stdout})",
            install.name
        );
    }

    // Every Deployment rolls out to Available with all its replicas.
    for d in chart::of_kind(&docs, "Deployment") {
        let (_, ns, name) = chart::id(d);
        let want = d["spec"]["replicas"].as_u64().unwrap_or(1);
        sim.wait_for_object("deployments", &ns, &name, T, |o: &Value| {
            let available = o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True");
            available && o["status"]["availableReplicas"].as_u64() == Some(want)
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: Deployment {ns}/{name} did not become Available: {e}; status: {}",
                install.name,
                sim.object("deployments", &ns, &name)
                    .map(|o| o["status"].to_string())
                    .unwrap_or_default()
            )
        });
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_values_apply_and_every_deployment_becomes_available() {
    apply_and_wait(DEFAULT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_values_apply_and_every_deployment_becomes_available() {
    // The production example with KEDA off (a CRD the simulator does not serve); the API's HPA,
    // Ingress and the rest stay.
    apply_and_wait(Install {
        name: "values-production.yaml without KEDA",
        set: &["workerBuild.keda.enabled=false"],
        ..PRODUCTION
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_option_applies_and_every_deployment_becomes_available() {
    // Ingress with TLS, HPA, GitHub key volume, push secret in the build namespace, ...: all of
    // EVERYTHING but KEDA.
    let set: Vec<&str> = EVERYTHING
        .set
        .iter()
        .copied()
        .filter(|s| !s.contains("keda"))
        .collect();
    apply_and_wait(Install {
        name: "every option on but KEDA",
        set: &set,
        ..EVERYTHING
    })
    .await;
}
