//! A worker killed mid-launch (the real binary, SIGKILL while it waits for the rollout) is
//! succeeded by another that adopts what the first applied: one namespace, one Deployment, one
//! ReplicaSet, one ready preview row, and the dead attempt recorded as abandoned.

mod common;

use common::*;
use kube_sim::PodScript;
use slipway_core::JobState;
use slipway_core::naming::preview_namespace;
use slipway_shared::testing::eventually;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills the child on drop, so a failing test leaves no process behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_launch_is_succeeded_without_duplicates() {
    // Pods take a while to start, so the first worker is surely waiting when it dies.
    let h = Harness::new(
        sim().script(|_| PodScript::run_forever().start_after(Duration::from_secs(8))),
    )
    .await;
    let key = "org/app#30";
    let ns = preview_namespace(key);
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;

    let args = h.args(&[]);
    let mut first = Child(
        Command::new(env!("CARGO_BIN_EXE_slipway-worker-launch"))
            .args(&args[1..])
            .env("KUBECONFIG", h.sim.kubeconfig_path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the worker binary"),
    );
    eventually(LONG, "the first worker to wait for the rollout", || async {
        h.log_text(id).await.contains("waiting up to").then_some(())
    })
    .await;
    assert!(h.sim.object("deployments", &ns, "app").is_some());
    first.0.kill().expect("kill the first worker");
    first.0.wait().expect("reap it");

    let w = h.worker(&[]).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.attempts, 2, "the dead worker's attempt counts");
    let attempts = h.store.attempts(id).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("abandoned"));
    assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
    assert_ne!(attempts[0].worker_id, attempts[1].worker_id);

    // Adopted, not duplicated.
    assert_eq!(h.preview_namespaces(), std::slice::from_ref(&ns));
    assert_eq!(h.names("deployments", Some(&ns)), ["app"]);
    assert_eq!(h.names("services", Some(&ns)), ["app"]);
    assert_eq!(h.names("ingresses", Some(&ns)), ["app"]);
    assert_eq!(h.names("replicasets", Some(&ns)).len(), 1);
    let pods = h.names("pods", Some(&ns));
    assert_eq!(pods.len(), 1);
    let p = h.preview(key).await;
    assert_eq!(p.status, "ready");
    assert_eq!(p.pods, pods);
    assert_eq!(p.last_job_id, Some(id));
    let previews = h.store.list_previews(true, None, 100).await.unwrap();
    assert_eq!(previews.items.len(), 1);
    // Both attempts logged, each in its own sequence.
    let logs = h.logs(id).await;
    assert!(logs.iter().any(|l| l.attempt == 1));
    assert!(
        logs.iter()
            .any(|l| l.attempt == 2 && l.text.contains("ready at"))
    );
    w.stop().await.expect("worker stopped cleanly");
}
