//! What real clusters refuse: Pod Security admission by namespace label (403 with upstream's
//! message, the ReplicaSet's FailedCreate Events and ReplicaFailure condition, copied onto the
//! Deployment), the kubelet's runAsNonRoot check against the image's user, a mutating policy
//! that forces namespace labels, and the cert-manager model that issues a certificate only
//! when NetworkPolicies let the ingress controller reach the ACME solver.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, PostParams};
use kube_sim::{CertManagerModel, Delays, KubeSim};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn cond<'a>(o: &'a Value, ty: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

async fn namespace(client: &kube::Client, name: &str, labels: Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn bare_pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/org/app:1"}]}}))
    .unwrap()
}

#[tokio::test]
async fn pod_security_refuses_pods_by_namespace_label() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    namespace(
        &client,
        "strict",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    namespace(
        &client,
        "base",
        json!({"pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await;
    let strict: Api<Pod> = Api::namespaced(client.clone(), "strict");
    let err = strict
        .create(&PostParams::default(), &bare_pod("p"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status.message.starts_with(
            "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false (container \"app\" must set"
        ),
        "{}",
        status.message
    );
    // Baseline admits it; a privileged container is refused there too.
    let base: Api<Pod> = Api::namespaced(client.clone(), "base");
    base.create(&PostParams::default(), &bare_pod("ok"))
        .await
        .unwrap();
    let privileged: Pod = serde_json::from_value(json!({"metadata": {"name": "priv"},
        "spec": {"containers": [{"name": "app", "image": "x",
            "securityContext": {"privileged": true}}]}}))
    .unwrap();
    let err = base
        .create(&PostParams::default(), &privileged)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("violates PodSecurity \"baseline:latest\": privileged (container \"app\""),
        "{err}"
    );
    // No label: privileged, anything goes.
    Api::<Pod>::namespaced(client, "default")
        .create(&PostParams::default(), &privileged)
        .await
        .unwrap();
}

fn deployment(ns: &str) -> Deployment {
    serde_json::from_value(json!({"metadata": {"name": "app", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "app", "image": "ghcr.io/org/app:1"}]}}}}))
    .unwrap()
}

#[tokio::test]
async fn refused_pods_show_as_failed_create_and_replica_failure() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .force_namespace_label("pod-security.kubernetes.io/enforce", "restricted")
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    // The policy overrides what the namespace asks for.
    namespace(
        &client,
        "pv",
        json!({"pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await;
    let ns = sim.object("namespaces", "", "pv").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    Api::<Deployment>::namespaced(client, "pv")
        .create(&PostParams::default(), &deployment("pv"))
        .await
        .unwrap();
    let d = sim
        .wait_for_object("deployments", "pv", "app", T, |d| {
            cond(d, "ReplicaFailure").is_some()
        })
        .await
        .unwrap();
    let c = cond(&d, "ReplicaFailure").unwrap();
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!("True"), &json!("FailedCreate"))
    );
    let msg = c["message"].as_str().unwrap();
    assert!(msg.starts_with("pods \"app-"), "{msg}");
    assert!(
        msg.contains("is forbidden: violates PodSecurity \"restricted:latest\""),
        "{msg}"
    );
    let sets = sim.objects("replicasets", Some("pv"));
    let rs_cond = cond(&sets[0], "ReplicaFailure").unwrap();
    assert_eq!(rs_cond["message"], c["message"]);
    let events = sim.objects("events", Some("pv"));
    let failed: Vec<&Value> = events
        .iter()
        .map(AsRef::as_ref)
        .filter(|e: &&Value| e["reason"] == "FailedCreate")
        .collect();
    assert!(!failed.is_empty());
    assert_eq!(failed[0]["type"], "Warning");
    assert_eq!(failed[0]["source"]["component"], "replicaset-controller");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Error creating: pods \"app-")
    );
    assert!(sim.objects("pods", Some("pv")).is_empty());
}

fn non_root_pod(name: &str, image: &str, sc: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image, "securityContext": sc}]}}))
    .unwrap()
}

#[tokio::test]
async fn run_as_non_root_against_a_root_image_is_a_config_error() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .image_user("org/named", "app")
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client().unwrap(), "default");
    let non_root = json!({"runAsNonRoot": true});
    for (name, image, sc) in [
        ("root", "ghcr.io/org/app:1", non_root.clone()),
        ("named", "ghcr.io/org/named:1", non_root.clone()),
        (
            "distroless",
            "gcr.io/distroless/static:nonroot",
            non_root.clone(),
        ),
        (
            "uid",
            "ghcr.io/org/app:1",
            json!({"runAsNonRoot": true, "runAsUser": 1000}),
        ),
    ] {
        pods.create(&PostParams::default(), &non_root_pod(name, image, sc))
            .await
            .unwrap();
    }
    let waiting = |p: &Value| {
        p.pointer("/status/containerStatuses/0/state/waiting/reason")
            .and_then(Value::as_str)
            == Some("CreateContainerConfigError")
    };
    let root = sim
        .wait_for_object("pods", "default", "root", T, waiting)
        .await
        .unwrap();
    let uid = root["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        root["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"root_default({uid})\", container: app)"
        )
    );
    assert_eq!(root["status"]["phase"], "Pending");
    let named = sim
        .wait_for_object("pods", "default", "named", T, waiting)
        .await
        .unwrap();
    assert!(
        named["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("image has non-numeric user (app), cannot verify user is non-root")
    );
    for running in ["distroless", "uid"] {
        sim.wait_for_object("pods", "default", running, T, |p| {
            p["status"]["phase"] == "Running"
        })
        .await
        .unwrap();
    }
    let events = sim.objects("events", Some("default"));
    assert!(events.iter().any(|e| {
        e["reason"] == "Failed"
            && e["involvedObject"]["name"] == "root"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Error: container has runAsNonRoot"))
    }));
}

fn tls_ingress() -> Ingress {
    serde_json::from_value(json!({"metadata": {"name": "app", "namespace": "pv",
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
        "spec": {"ingressClassName": "nginx",
            "tls": [{"hosts": ["a.example.com"], "secretName": "pv-tls"}],
            "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}}))
    .unwrap()
}

fn policy(v: Value) -> NetworkPolicy {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn cert_manager_issues_only_when_the_solver_is_reachable() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .namespace("ingress-nginx")
        .namespace("pv")
        .cert_manager(CertManagerModel::with_ingress_nginx("ingress-nginx"))
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "pv");
    let deny = policy(json!({"metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}));
    policies
        .create(&PostParams::default(), &deny)
        .await
        .unwrap();
    Api::<Ingress>::namespaced(client.clone(), "pv")
        .create(&PostParams::default(), &tls_ingress())
        .await
        .unwrap();
    // ingress-shim: a Certificate named after the secretName; the solver pod runs.
    let cert = sim
        .wait_for_object("certificates", "pv", "pv-tls", T, |_| true)
        .await
        .unwrap();
    assert_eq!(cert["apiVersion"], "cert-manager.io/v1");
    assert_eq!(cert["spec"]["dnsNames"], json!(["a.example.com"]));
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    sim.wait_for("a running solver pod", T, |_| {
        sim.objects("pods", Some("pv")).iter().any(|p| {
            p["metadata"]["labels"]["acme.cert-manager.io/http01-solver"] == "true"
                && p["status"]["phase"] == "Running"
        })
    })
    .await
    .unwrap();
    // Default deny: the ingress controller cannot reach it, nothing is issued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cert = sim.object("certificates", "pv", "pv-tls").unwrap();
    let ready = cond(&cert, "Ready").unwrap();
    assert_eq!(
        (&ready["status"], &ready["reason"], &ready["message"]),
        (
            &json!("False"),
            &json!("DoesNotExist"),
            &json!("Issuing certificate as Secret does not exist")
        )
    );
    assert!(sim.object("secrets", "pv", "pv-tls").is_none());
    // A policy for the wrong port changes nothing; the right one issues the certificate.
    let wrong = policy(json!({"metadata": {"name": "wrong"}, "spec": {
        "podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels":
            {"kubernetes.io/metadata.name": "ingress-nginx"}}}], "ports": [{"port": 8080}]}]}}));
    policies
        .create(&PostParams::default(), &wrong)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.object("secrets", "pv", "pv-tls").is_none());
    let right = policy(json!({"metadata": {"name": "solver"}, "spec": {
        "podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels":
            {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ports": [{"port": 8089, "protocol": "TCP"}]}]}}));
    policies
        .create(&PostParams::default(), &right)
        .await
        .unwrap();
    let cert = sim
        .wait_for_object("certificates", "pv", "pv-tls", T, |c| {
            cond(c, "Ready").is_some_and(|r| r["status"] == "True")
        })
        .await
        .unwrap();
    assert_eq!(cond(&cert, "Ready").unwrap()["reason"], "Ready");
    let secret = sim.object("secrets", "pv", "pv-tls").unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    sim.wait_for("the solver pod gone", T, |_| {
        sim.objects("pods", Some("pv")).iter().all(|p| {
            p["metadata"]["labels"]["acme.cert-manager.io/http01-solver"] != "true"
                || p["metadata"]["deletionTimestamp"].is_string()
        })
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn without_the_model_annotated_ingresses_get_no_certificate() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .namespace("pv")
        .start()
        .await
        .unwrap();
    Api::<Ingress>::namespaced(sim.client().unwrap(), "pv")
        .create(&PostParams::default(), &tls_ingress())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sim.objects("certificates", Some("pv")).is_empty());
}
