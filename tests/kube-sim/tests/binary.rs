//! The `kube-sim` binary: serves on loopback, writes a kubeconfig that kube loads like any
//! other, and applies its flags (here: fail the next build, play Kubernetes 1.29).

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

#[tokio::test]
async fn binary_serves_kubeconfig_and_fails_next_build() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "--port",
            "0",
            "--zero-delays",
            "--fail-next-builds",
            "1",
            "--kube-version",
            "1.29",
            "--kubeconfig-out",
        ])
        .arg(&kc)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kc.exists() {
        assert!(Instant::now() < deadline, "no kubeconfig written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kc).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "29");
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    for name in ["b1", "b2"] {
        let j: Job = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/build": "unconfined"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "build", "image": "moby/buildkit:v0.23",
                "command": ["buildctl-daemonless.sh"], "args": ["build", "--frontend=dockerfile.v0",
                    "--opt", format!("context=https://github.com/org/{name}.git#main")]}]}}}}))
        .unwrap();
        jobs.create(&PostParams::default(), &j).await.unwrap();
        // "The next build" is the next build pod: b2's Job waits until b1's pod exists, so the
        // failure lands on b1 whatever order the Job controller would pick.
        let deadline = Instant::now() + Duration::from_secs(30);
        let selector = ListParams::default().labels(&format!("job-name={name}"));
        while pods.list(&selector).await.unwrap().items.is_empty() {
            assert!(Instant::now() < deadline, "no pod for job {name}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let outcome = |j: &Job| {
        j.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
            .map(|c| c.type_.clone())
    };
    let mut results = Vec::new();
    for name in ["b1", "b2"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = loop {
            if let Some(r) = outcome(&jobs.get(name).await.unwrap()) {
                break r;
            }
            assert!(Instant::now() < deadline, "job {name} never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        results.push(r);
    }
    assert_eq!(results, ["Failed", "Complete"]);
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
