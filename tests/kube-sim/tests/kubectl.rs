//! `kubectl` (v1.32, from `PATH` or `$KUBECTL`) drives the simulator through a kubeconfig:
//! server-side apply, get, watch, logs, delete namespace.

use std::process::Stdio;
use std::time::Duration;

use kube_sim::{Delays, KubeSim};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

const T: Duration = Duration::from_secs(60);

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

async fn kubectl(sim: &KubeSim, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        T,
        Command::new(kubectl_bin())
            .args(args)
            .env("KUBECONFIG", sim.kubeconfig_path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl timed out")
    .expect("kubectl must be installed (set KUBECTL to its path)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MANIFESTS: &str = r"apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports:
        - containerPort: 80
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_watch_logs_delete_namespace() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(50),
            ..Delays::zero()
        })
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let file = file.to_str().unwrap();

    let (ok, out, err) = kubectl(&sim, &["apply", "--server-side", "-f", file]).await;
    assert!(ok, "apply failed: {err}");
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let apply = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/deployments/web"))
        .unwrap();
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        apply.query_param("fieldManager").as_deref(),
        Some("kubectl")
    );
    assert_eq!(
        apply.query_param("fieldValidation").as_deref(),
        Some("Strict")
    );

    sim.wait_for_object("deployments", "team", "web", T, |d| {
        d["status"]["availableReplicas"] == 2
    })
    .await
    .unwrap();
    let (ok, out, err) = kubectl(
        &sim,
        &["-n", "team", "get", "deployment", "web", "-o", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["status"]["readyReplicas"], 2);
    let (ok, out, _) = kubectl(&sim, &["-n", "team", "get", "deploy"]).await;
    assert!(ok && out.contains("web"), "{out}");

    // Watch pods: the two existing pods arrive as the initial state; stop it ourselves.
    let mut child = Command::new(kubectl_bin())
        .args(["-n", "team", "get", "pods", "--watch", "-o", "name"])
        .env("KUBECONFIG", sim.kubeconfig_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(T, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(line);
    }
    // After printing the list, kubectl opens the watch.
    sim.wait_for_requests(1, T, |r| {
        r.verb == "watch" && r.path == "/api/v1/namespaces/team/pods"
    })
    .await
    .unwrap();
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(seen.iter().all(|l| l.starts_with("pod/web-")), "{seen:?}");

    let pod = seen[0].trim_start_matches("pod/").to_string();
    let (ok, out, err) = kubectl(&sim, &["-n", "team", "logs", &pod]).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("{pod} started\n"));

    let (ok, out, err) = kubectl(&sim, &["delete", "namespace", "team", "--timeout=50s"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("namespace \"team\" deleted"), "{out}");
    assert!(
        sim.object("namespaces", "", "team").is_none(),
        "kubectl waited for the namespace to go"
    );
    assert!(sim.objects("pods", Some("team")).is_empty());
}
