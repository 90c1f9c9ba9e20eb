//! A worker process killed mid-build (SIGKILL): the next worker adopts its build Job, resumes
//! the log after the lines already stored (`LogSink::resume`) and stores every line exactly once.

mod common;

use common::{Harness, NS, digest_message};
use kube_sim::PodScript;
use serde_json::json;
use slipway_core::JobState;
use slipway_core::naming::build_job_name;
use slipway_shared::testing::eventually;
use std::time::Duration;

const LINES: usize = 40;

#[tokio::test]
async fn a_killed_workers_build_is_adopted_and_its_log_stored_exactly_once() {
    let h = Harness::new(Some(Box::new(|_pod| {
        let mut s = PodScript::succeed();
        for i in 0..LINES {
            s = s.log_after(Duration::from_millis(100), format!("#{i} step {i}"));
        }
        s.message(digest_message())
    })))
    .await;

    let args = h.args(&[]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway-worker-build"))
        .args(&args[1..])
        .env("KUBECONFIG", h.sim.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let id = h.enqueue_build("org/app#20", json!({})).await;
    eventually(Duration::from_secs(30), "some log lines", || async {
        (h.logs(id).await.len() >= 8).then_some(())
    })
    .await;
    child.kill().await.unwrap();
    let stored_before = h.logs(id).await.len();
    assert!(stored_before < LINES, "the build ended before the kill");

    let worker = h.start_worker(&[]).await;
    let job = h.wait_state(id, JobState::Succeeded, 60).await;
    let first = build_job_name(id, 1);
    assert_eq!(job.result.unwrap()["build_job"], first.as_str());

    // One Job only, adopted by the second attempt.
    assert_eq!(h.job_creates(), 1);
    let attempts = h.store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].outcome.as_deref(), Some("abandoned"));
    assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
    assert_eq!(attempts[1].k8s_objects, vec![first.clone()]);

    // Every line once, in order, under the Job's attempt.
    let logs = h.logs(id).await;
    let texts: Vec<String> = logs.iter().map(|l| l.text.clone()).collect();
    let expected: Vec<String> = (0..LINES).map(|i| format!("#{i} step {i}")).collect();
    assert_eq!(texts, expected);
    assert!(
        logs.iter()
            .enumerate()
            .all(|(i, l)| l.attempt == 1 && l.seq == i as i64)
    );
    h.sim
        .wait_for_gone("jobs", NS, &first, Duration::from_secs(30))
        .await
        .unwrap();
    worker.stop().await;
}
