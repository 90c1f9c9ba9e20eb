//! The per-repository cap on concurrent builds (`SLIPWAY_BUILD_MAX_PER_REPOSITORY`), through
//! two worker replicas, real Postgres and Redis and the simulator: a repository's builds over
//! the cap wait in the queue without using attempts while other repositories' builds run, start
//! one by one as slots free, are neither lost nor doubled, and a killed worker's slot passes
//! to the attempt that resumes its build and is freed when that build ends.

mod common;

use common::{Harness, NS, Worker, default_build, digest_message};
use kube_sim::{PodInfo, PodScript};
use serde_json::json;
use slipway_core::naming::build_job_name;
use slipway_core::{JobId, JobKind, JobState};
use slipway_shared::store::{AttemptRecord, WAITING_LINE_SEQ};
use slipway_shared::testing::eventually;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const CAP: [&str; 4] = ["--max-per-repository", "1", "--repository-recheck-ms", "50"];

fn preview_label(pod: &PodInfo) -> String {
    pod.labels
        .get("slipway.dev/preview")
        .cloned()
        .unwrap_or_default()
}

/// Deferrals counted by the workers' metrics.
async fn deferrals(workers: &[&Worker]) -> f64 {
    let mut total = 0.0;
    for w in workers {
        let text = reqwest::get(format!("http://{}/metrics", w.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total += text
            .lines()
            .filter(|l| l.starts_with("slipway_jobs_deferred_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

async fn only_attempt(h: &Harness, id: JobId) -> AttemptRecord {
    let attempts = h.store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1, "waiting used an attempt: {attempts:?}");
    attempts.into_iter().next().unwrap()
}

fn waiting_lines(logs: &[slipway_shared::store::StoredLogLine]) -> usize {
    logs.iter()
        .filter(|l| l.stream == "system" && l.text.contains("waiting"))
        .count()
}

#[tokio::test]
async fn a_busy_repository_waits_its_turn_while_another_builds() {
    let h = Harness::new(Some(Box::new(|pod| {
        if preview_label(pod).starts_with("cap-a-1") {
            PodScript::run_forever().log("long build")
        } else {
            default_build(pod)
        }
    })))
    .await;
    let mut flags = CAP.to_vec();
    flags.extend(["--concurrency", "4"]);
    let w1 = h.start_worker(&flags).await;
    let w2 = h.start_worker(&flags).await;

    let a1 = h
        .enqueue_build_of("https://github.com/cap/a", "cap/a#1", json!({}))
        .await;
    h.sim
        .wait_for_object("jobs", NS, &build_job_name(a1, 1), T, |_| true)
        .await
        .unwrap();
    // The same repository written differently is the same repository.
    let a2 = h
        .enqueue_build_of("https://GitHub.com/Cap/A.git", "cap/a#2", json!({}))
        .await;
    let a3 = h
        .enqueue_build_of("https://github.com/cap/a", "cap/a#3", json!({}))
        .await;
    let b = h
        .enqueue_build_of("https://github.com/cap/b", "cap/b#1", json!({}))
        .await;

    // B builds at once, while A's second and third wait.
    h.wait_state(b, JobState::Succeeded, 30).await;
    // Many deferrals, more than the three attempts a job has: none was counted as one. Both
    // have waited at least once (the line says so); the checks below show it said so once.
    eventually(T, "a dozen deferrals of both", || async {
        let both = waiting_lines(&h.logs(a2).await) > 0 && waiting_lines(&h.logs(a3).await) > 0;
        (both && deferrals(&[&w1, &w2]).await >= 12.0).then_some(())
    })
    .await;
    for id in [a2, a3] {
        let job = h.store.get_job(id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Queued, 0), "{id}");
        assert!(h.sim.object("jobs", NS, &build_job_name(id, 1)).is_none());
        let logs = h.logs(id).await;
        assert_eq!(logs.len(), 1, "the waiting line once: {logs:?}");
        assert_eq!(logs[0].seq, WAITING_LINE_SEQ);
        assert!(
            logs[0].text.contains("repository github.com/cap/a"),
            "{}",
            logs[0].text
        );
    }

    // The first ends: A's others start, one at a time.
    h.store
        .cancel_job(a1, JobState::Cancelled, "make room")
        .await
        .unwrap();
    h.queue
        .cancel(JobKind::Build, &a1.to_string(), "make room")
        .await
        .unwrap();
    let first = h.wait_state(a2, JobState::Succeeded, 30).await;
    let second = h.wait_state(a3, JobState::Succeeded, 30).await;
    assert_eq!((first.attempts, second.attempts), (1, 1));
    let (x, y) = (only_attempt(&h, a2).await, only_attempt(&h, a3).await);
    let (x, y) = if x.started_at <= y.started_at {
        (x, y)
    } else {
        (y, x)
    };
    assert!(
        x.finished_at.unwrap() <= y.started_at,
        "two builds of one repository ran at once: {x:?} {y:?}"
    );
    for id in [a2, a3] {
        let queued = h
            .queue
            .get(JobKind::Build, &id.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(queued.attempts_started, 1, "{queued:?}");
        let logs = h.logs(id).await;
        assert_eq!(waiting_lines(&logs), 1);
        assert!(logs.iter().all(|l| l.attempt == 1));
    }
    // Nothing lost, nothing doubled: one Job per build.
    assert_eq!(h.job_creates(), 4);
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn a_killed_workers_slot_passes_to_the_resumed_build_and_is_freed_when_it_ends() {
    const LINES: usize = 30;
    let h = Harness::new(Some(Box::new(|pod| {
        if preview_label(pod).starts_with("cap-k-1") {
            let mut s = PodScript::succeed();
            for i in 0..LINES {
                s = s.log_after(Duration::from_millis(100), format!("#{i} step {i}"));
            }
            s.message(digest_message())
        } else {
            default_build(pod)
        }
    })))
    .await;
    let args = h.args(&CAP);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway-worker-build"))
        .args(&args[1..])
        .env("KUBECONFIG", h.sim.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let k1 = h
        .enqueue_build_of("https://github.com/cap/k", "cap/k#1", json!({}))
        .await;
    eventually(T, "the first build's log", || async {
        (h.logs(k1).await.len() >= 3).then_some(())
    })
    .await;
    let k2 = h
        .enqueue_build_of("https://github.com/cap/k", "cap/k#2", json!({}))
        .await;
    eventually(T, "the second build waiting", || async {
        (waiting_lines(&h.logs(k2).await) == 1).then_some(())
    })
    .await;
    // The worker holding the repository's slot dies mid-build.
    child.kill().await.unwrap();

    let worker = h.start_worker(&CAP).await;
    let first = h.wait_state(k1, JobState::Succeeded, 60).await;
    let second = h.wait_state(k2, JobState::Succeeded, 60).await;
    assert_eq!(first.attempts, 2, "resumed once");
    let attempts = h.store.attempts(k1).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("abandoned"));
    // Waiting used no attempt, but the dead worker may have died holding k2 between a fetch
    // and its deferral (it fetches k2 every few tens of milliseconds): that fetch's attempt is
    // then rescued like any job a dead worker held, and k2 starts as attempt 2. Either way it
    // ran once.
    let k2_attempt = only_attempt(&h, k2).await;
    assert!(matches!(second.attempts, 1 | 2), "{second:?}");
    assert_eq!(k2_attempt.attempt, second.attempts);
    assert!(
        attempts[1].finished_at.unwrap() <= k2_attempt.started_at,
        "the second build started before the resumed first ended"
    );
    // The resumed build adopted the dead worker's Job: two Jobs in all.
    assert_eq!(h.job_creates(), 2);
    worker.stop().await;
}
