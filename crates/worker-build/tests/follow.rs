//! How the build worker follows its pod on a cluster that behaves like a real one: a log file
//! the kubelet rotates while the follower reconnects, log streams cut several times, a stream
//! that goes silent without closing, and a Secret volume whose Secret does not exist.

mod common;

use common::{BUILD_LINES, Harness, LAST_BUILD_LINE, NS, digest_message, numbered_from_zero};
use kube_sim::{FaultAction, FaultRule, PodScript};
use serde_json::json;
use slipway_core::JobState;
use slipway_core::naming::build_job_name;
use slipway_shared::store::StoredLogLine;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn container_texts(logs: &[StoredLogLine]) -> Vec<String> {
    logs.iter()
        .filter(|l| l.stream != "system")
        .map(|l| l.text.clone())
        .collect()
}

/// The lines of the kubelet's current log file once every line is written, for the simulator's
/// rotation at `max` bytes (a CRI line is a 30-character timestamp, ` stdout F `, the text and
/// a newline).
fn current_file(all: &[String], max: usize) -> Vec<String> {
    let (mut start, mut bytes) = (0, 0);
    for (i, text) in all.iter().enumerate() {
        bytes += 30 + 10 + text.len() + 1;
        if bytes >= max {
            start = i + 1;
            bytes = 0;
        }
    }
    all[start..].to_vec()
}

#[tokio::test]
async fn a_log_rotated_while_the_follower_reconnects_is_stored_once_with_a_marker_for_the_gap() {
    const ROTATE: usize = 2000;
    let early: Vec<String> = (0..10).map(|i| format!("#1 early line {i}")).collect();
    let burst: Vec<String> = (0..60)
        .map(|i| format!("#2 burst line {i:02} {}", "x".repeat(80)))
        .collect();
    let late: Vec<String> = (0..3).map(|i| format!("#3 late line {i}")).collect();
    let all: Vec<String> = early.iter().chain(&burst).chain(&late).cloned().collect();
    let script = {
        let (early, burst, late) = (early.clone(), burst.clone(), late.clone());
        move |_: &kube_sim::PodInfo| {
            let mut s = PodScript::succeed();
            for l in &early {
                s = s.log(l.clone());
            }
            // The first stream is cut when the burst starts; the burst fills several files.
            s = s.log_after(Duration::from_secs(2), burst[0].clone());
            for l in &burst[1..] {
                s = s.log(l.clone());
            }
            for l in &late {
                s = s.log_after(Duration::from_millis(100), l.clone());
            }
            s.message(digest_message())
        }
    };
    let h = Harness::with_sim(Some(Box::new(script)), |b| b.log_rotate_bytes(ROTATE)).await;
    // The first stream is cut after the early lines; the reconnection is held back until the
    // burst has rotated the file several times.
    h.sim.faults().add(
        FaultRule::new(FaultAction::DropLogs { after_lines: 10 })
            .resource("pods/log")
            .times(1),
    );
    h.sim.faults().add(
        FaultRule::new(FaultAction::Delay { ms: 3000 })
            .resource("pods/log")
            .skip(1)
            .times(1),
    );
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#40", json!({})).await;
    h.wait_state(id, JobState::Succeeded, 60).await;

    let logs = h.logs(id).await;
    assert!(numbered_from_zero(&logs), "{logs:?}");
    let texts: Vec<&str> = logs.iter().map(|l| l.text.as_str()).collect();
    // The early lines, one marker naming the gap, then every line of the current file.
    assert_eq!(
        texts[..10],
        early.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(logs[10].stream, "system", "{texts:?}");
    assert!(
        logs[10].text.contains("may be missing") && logs[10].text.contains("rotated"),
        "{}",
        logs[10].text
    );
    let kept = current_file(&all, ROTATE);
    assert!(
        kept.len() < all.len() - 10,
        "nothing was rotated away: {kept:?}"
    );
    assert_eq!(container_texts(&logs[11..]), kept);
    assert_eq!(logs.iter().filter(|l| l.stream == "system").count(), 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_log_cut_several_times_without_rotation_is_stored_once_with_no_marker() {
    const LINES: usize = 40;
    let h = Harness::new(Some(Box::new(|_pod| {
        let mut s = PodScript::succeed();
        for i in 0..LINES {
            s = s.log_after(Duration::from_millis(50), format!("#{i} step {i}"));
        }
        s.message(digest_message())
    })))
    .await;
    h.sim.faults().add(
        FaultRule::new(FaultAction::DropLogs { after_lines: 7 })
            .resource("pods/log")
            .times(4),
    );
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#41", json!({})).await;
    h.wait_state(id, JobState::Succeeded, 60).await;

    let logs = h.logs(id).await;
    let expected: Vec<String> = (0..LINES).map(|i| format!("#{i} step {i}")).collect();
    assert_eq!(container_texts(&logs), expected);
    assert!(logs.iter().all(|l| l.stream == "stdout"), "{logs:?}");
    assert!(numbered_from_zero(&logs));
    // Each re-read resumed from the last line taken rather than from the start.
    let reads: Vec<_> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == "pods/log")
        .collect();
    assert!(reads.len() >= 5, "{reads:?}");
    assert!(reads[0].query_param("sinceTime").is_none());
    assert!(
        reads[1..]
            .iter()
            .all(|r| r.query_param("sinceTime").is_some()
                && r.query_param("timestamps").as_deref() == Some("true")),
        "{reads:?}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_stalled_log_stream_does_not_hang_the_build() {
    let h = Harness::new(None).await;
    h.sim.faults().add(
        FaultRule::new(FaultAction::StallLogs { after_lines: 5 })
            .resource("pods/log")
            .times(1),
    );
    let worker = h.start_worker(&["--log-idle-secs", "1"]).await;
    let id = h.enqueue_build("org/app#42", json!({})).await;
    let job = h.wait_state(id, JobState::Succeeded, 30).await;
    assert_eq!(job.attempts, 1);
    let logs = h.logs(id).await;
    assert_eq!(logs.len(), BUILD_LINES, "{logs:?}");
    assert!(numbered_from_zero(&logs));
    assert!(logs.iter().all(|l| l.stream == "stdout"));
    assert_eq!(logs[BUILD_LINES - 1].text, LAST_BUILD_LINE);
    worker.stop().await;
}

#[tokio::test]
async fn a_missing_git_secret_fails_the_build_for_good_naming_it() {
    let h = Harness::new(None).await;
    let worker = h.start_worker(&["--mount-failure-secs", "1"]).await;
    let started = Instant::now();
    let id = h
        .enqueue_build("org/app#43", json!({"secrets": {"git": "git-token"}}))
        .await;
    let job = h.wait_state(id, JobState::Failed, 20).await;
    // One attempt, well before the Job's deadline (1800 s, 18 s at the simulator's scale).
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(job.attempts, 1);
    let error = job.error.unwrap();
    assert!(
        error.contains("Secret \"git-token\"") && error.contains("not found"),
        "{error}"
    );
    assert!(error.contains(NS), "{error}");
    assert_eq!(h.job_creates(), 1);
    h.sim
        .wait_for_gone("jobs", NS, &build_job_name(id, 1), T)
        .await
        .unwrap();
    // It read the pod's Events to know.
    assert!(h.sim.requests().iter().any(|r| {
        r.resource == "events"
            && r.verb == "list"
            && r.query_param("fieldSelector")
                .is_some_and(|f| f.starts_with("involvedObject.uid="))
    }),);
    worker.stop().await;
}

#[tokio::test]
async fn a_secret_created_while_the_pod_waits_lets_the_build_run() {
    let h = Harness::new(None).await;
    let worker = h.start_worker(&["--mount-failure-secs", "30"]).await;
    let id = h
        .enqueue_build("org/app#44", json!({"secrets": {"git": "git-token"}}))
        .await;
    // The pod waits in ContainerCreating, reported by FailedMount Events...
    h.sim
        .wait_for("a FailedMount event", T, |_| {
            h.sim
                .objects("events", Some(NS))
                .iter()
                .any(|e| e["reason"] == "FailedMount")
        })
        .await
        .unwrap();
    // ...until the Secret appears.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(h.sim.client().unwrap(), NS);
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "git-token"}, "stringData": {"token": "t"}
    }))
    .unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap();
    let job = h.wait_state(id, JobState::Succeeded, 30).await;
    assert_eq!(job.attempts, 1);
    assert_eq!(h.logs(id).await.len(), BUILD_LINES);
    worker.stop().await;
}
