//! What real clusters refuse, against the simulator that now refuses it too: pods that Pod
//! Security admission rejects and root images under `runAsNonRoot` fail a launch at once
//! (permanent, one attempt, the reason in the error); previews whose pods meet `restricted`
//! launch; with a cert-manager issuer, a preview is recorded ready on https only once its
//! certificate is issued, which needs the policy that lets the ingress controller reach the
//! ACME solver.

mod common;

use common::*;
use kube_sim::CertManagerModel;
use slipway_core::naming::preview_namespace;
use slipway_core::{ErrorClass, JobState};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_refused_by_pod_security_fail_the_launch_at_once() {
    // A cluster-wide policy (as Kyverno would) enforces restricted on every namespace, so the
    // preview's baseline label is overridden and its pods (which may run as root) are refused.
    let h = Harness::new(
        sim().force_namespace_label("pod-security.kubernetes.io/enforce", "restricted"),
    )
    .await;
    let w = h.worker(&["--deadline-secs", "20"]).await;
    let key = "org/app#31";
    let started = Instant::now();
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed, "{:?}", job.error);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1, "not retried");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "failed fast, not at the deadline"
    );
    let error = job.error.unwrap();
    assert!(
        error.contains("Kubernetes refuses the preview's pods"),
        "{error}"
    );
    assert!(
        error.contains("violates PodSecurity \"restricted:latest\""),
        "{error}"
    );
    assert!(error.contains("runAsNonRoot != true"), "{error}");
    assert_eq!(h.preview(key).await.status, "failed");
    // The simulator shows it as a real cluster would: no pods, FailedCreate on the ReplicaSet.
    let ns = preview_namespace(key);
    assert!(h.names("pods", Some(&ns)).is_empty());
    let events = h.sim.objects("events", Some(&ns));
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "FailedCreate" && e["involvedObject"]["kind"] == "ReplicaSet"),
        "{events:?}"
    );
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_image_under_run_as_non_root_fails_the_launch_at_once() {
    let h = Harness::new(sim()).await;
    let w = h
        .worker(&["--run-as-non-root", "true", "--deadline-secs", "20"])
        .await;
    let key = "org/app#32";
    let started = Instant::now();
    // An image without USER runs as root.
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed, "{:?}", job.error);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1, "not retried");
    assert!(started.elapsed() < Duration::from_secs(15));
    let error = job.error.unwrap();
    assert!(error.contains("runs as root"), "{error}");
    assert!(error.contains("CreateContainerConfigError"), "{error}");
    assert!(
        error.contains("container has runAsNonRoot and image will run as root"),
        "{error}"
    );
    let log = h.log_text(id).await;
    assert!(log.contains("CreateContainerConfigError"), "{log}");
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_meet_restricted_with_run_as_non_root() {
    let h = Harness::new(sim().image_user("org/app", "1000")).await;
    let w = h
        .worker(&[
            "--pod-security-level",
            "restricted",
            "--run-as-non-root",
            "true",
        ])
        .await;
    let key = "org/app#33";
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let ns = h
        .sim
        .object("namespaces", "", &preview_namespace(key))
        .unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(h.preview(key).await.status, "ready");
    w.stop().await.expect("worker stopped cleanly");
}

fn tls_flags(ingress_namespace: &'static str) -> Vec<&'static str> {
    vec![
        "--cluster-issuer",
        "letsencrypt",
        "--ingress-namespace",
        ingress_namespace,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_preview_is_ready_only_with_its_certificate() {
    let h = Harness::new(
        sim()
            .namespace("ingress-nginx")
            .cert_manager(CertManagerModel::with_ingress_nginx("ingress-nginx")),
    )
    .await;
    let w = h.worker(&tls_flags("ingress-nginx")).await;
    let key = "org/app#34";
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let ns = preview_namespace(key);
    let url = "https://pr-34-app.192.168.49.2.nip.io";
    assert_eq!(job.result.unwrap()["url"], url);
    // The certificate was issued before the preview was recorded ready.
    let cert = h.sim.object("certificates", &ns, "preview-tls").unwrap();
    assert_eq!(cert["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(cert["status"]["conditions"][0]["status"], "True");
    assert!(h.sim.object("secrets", &ns, "preview-tls").is_some());
    assert!(
        h.sim
            .object("networkpolicies", &ns, "allow-acme-http01-solver")
            .is_some()
    );
    let p = h.preview(key).await;
    assert_eq!((p.status.as_str(), p.url.as_deref()), ("ready", Some(url)));
    let log = h.log_text(id).await;
    assert!(
        log.contains("waiting for cert-manager to issue Certificate preview-tls"),
        "{log}"
    );
    assert!(log.contains("Certificate preview-tls is ready"), "{log}");
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unissued_certificate_keeps_the_preview_from_being_ready() {
    // The worker admits traffic from the wrong namespace: the ingress controller (in
    // ingress-nginx) cannot reach the solver, so the certificate is never issued.
    let h = Harness::new(
        sim()
            .namespace("ingress-nginx")
            .cert_manager(CertManagerModel::with_ingress_nginx("ingress-nginx")),
    )
    .await;
    let mut flags = tls_flags("kube-system");
    flags.extend(["--deadline-secs", "4"]);
    let w = h.worker(&flags).await;
    let key = "org/app#35";
    let id = h
        .launch_with_budget(valid(body(key, "ghcr.io/org/app:v1")), None, 1)
        .await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed, "{:?}", job.result);
    assert_eq!(job.error_class, Some(ErrorClass::Transient));
    let error = job.error.unwrap();
    assert!(error.contains("certificate was not issued"), "{error}");
    assert!(
        error.contains("Issuing certificate as Secret does not exist"),
        "{error}"
    );
    let p = h.preview(key).await;
    assert_ne!(p.status, "ready");
    assert_eq!(p.url, None);
    let log = h.log_text(id).await;
    assert!(
        log.contains("Certificate preview-tls: Ready=False DoesNotExist"),
        "{log}"
    );
    w.stop().await.expect("worker stopped cleanly");
}

/// An app that writes `path` when it starts, as the container runtime would let it.
fn writes_at_start(pod: &kube_sim::PodInfo, path: &str) -> kube_sim::PodScript {
    if pod.writable(path) {
        kube_sim::PodScript::run_forever().log(format!("wrote {path}"))
    } else {
        kube_sim::PodScript::outcome(kube_sim::Outcome::CrashLoopBackOff)
            .log(format!("open {path}: read-only file system"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_root_filesystem_keeps_tmp_writable_under_restricted() {
    let h = Harness::new(sim().image_user("org/", "1000").script(|pod| {
        if pod.image.contains("org/cache") {
            writes_at_start(pod, "/var/cache/app/index")
        } else {
            writes_at_start(pod, "/tmp/app.pid")
        }
    }))
    .await;
    let w = h
        .worker(&[
            "--pod-security-level",
            "restricted",
            "--run-as-non-root",
            "true",
            "--tmp-size",
            "64Mi",
            "--trouble-grace-secs",
            "1",
        ])
        .await;
    // An app that writes only under /tmp runs with a read-only root.
    let key = "org/app#34";
    let mut b = body(key, "ghcr.io/org/app:v1");
    b["read_only_root_filesystem"] = true.into();
    let id = h.launch(b).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let d = h
        .sim
        .object("deployments", &preview_namespace(key), "app")
        .unwrap();
    let spec = &d["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        c["volumeMounts"],
        serde_json::json!([{"name": "tmp", "mountPath": "/tmp"}])
    );
    assert_eq!(
        spec["volumes"],
        serde_json::json!([{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}])
    );
    assert_eq!(h.preview(key).await.status, "ready");

    // One that writes elsewhere cannot, and the launch says why.
    let key = "org/cache#1";
    let mut b = body(key, "ghcr.io/org/cache:v1");
    b["read_only_root_filesystem"] = true.into();
    let id = h.launch(b).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap();
    assert!(error.contains("read-only file system"), "{error}");

    // Without the setting the same app runs: the root stays writable, no volume is added.
    let key = "org/cache#2";
    let id = h.launch(body(key, "ghcr.io/org/cache:v1")).await;
    assert_eq!(h.finished(id).await.state, JobState::Succeeded);
    let d = h
        .sim
        .object("deployments", &preview_namespace(key), "app")
        .unwrap();
    assert!(d["spec"]["template"]["spec"].get("volumes").is_none());
    w.stop().await.expect("worker stopped cleanly");
}
