//! The producer and operator side of the queues against a real Redis: idempotent push
//! (semantic 1) and inspection and control (semantic 7).

mod queue_support;

use queue_support::*;
use serde_json::json;
use slipway_core::JobKind;
use slipway_shared::queue::{CancelOutcome, Page, QueueState};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn pushing_the_same_id_twice_queues_it_once() {
    let p = Prefix::new();
    let q = p.client().await;
    let id = Uuid::new_v4();
    q.push(JobKind::Build, id, 3).await.unwrap();
    q.push(JobKind::Build, id, 3).await.unwrap();
    let other = Uuid::new_v4();
    q.push_bulk(JobKind::Build, &[(id, 3), (other, 3), (other, 3)])
        .await
        .unwrap();
    let c = q.counts(JobKind::Build).await.unwrap();
    assert_eq!(c.waiting, 2, "{c:?}");
    let ids = q
        .list_ids(JobKind::Build, QueueState::Waiting, Page::first(10))
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    // The Redis job id is the Postgres uuid.
    let job = q
        .get(JobKind::Build, &id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.id, id.to_string());
    assert_eq!(job.state, Some(QueueState::Waiting));
    assert_eq!(job.max_attempts, 3);
    // Queues are separate: the same id on another queue is another job.
    assert_eq!(q.counts(JobKind::Launch).await.unwrap().waiting, 0);
    // Readiness probe of Redis through the same client.
    use slipway_shared::health::ReadinessCheck;
    let check = slipway_shared::queue::RedisCheck::new(q.clone());
    assert_eq!(check.name(), "redis");
    assert_eq!(check.check().await, Ok(()));
    // Keys live under the prefix, in BullMQ's layout (the wait list KEDA would watch).
    let mut r = p.redis();
    let len: u64 = redis::cmd("LLEN")
        .arg(p.key(JobKind::Build, "wait"))
        .query(&mut r)
        .unwrap();
    assert_eq!(len, 2);
}

#[tokio::test]
async fn counts_pages_pause_and_oldest_waiting() {
    let p = Prefix::new();
    let q = p.client().await;
    let ids: Vec<Uuid> = (0..25).map(|_| Uuid::new_v4()).collect();
    let items: Vec<_> = ids.iter().map(|id| (*id, 3)).collect();
    q.push_bulk(JobKind::Launch, &items).await.unwrap();
    assert_eq!(q.counts(JobKind::Launch).await.unwrap().waiting, 25);

    let mut seen = HashSet::new();
    let mut page = Page::first(10);
    let mut sizes = Vec::new();
    loop {
        let jobs = q
            .list(JobKind::Launch, QueueState::Waiting, page)
            .await
            .unwrap();
        if jobs.is_empty() {
            break;
        }
        sizes.push(jobs.len());
        for j in jobs {
            assert_eq!(j.state, Some(QueueState::Waiting));
            assert!(seen.insert(j.id));
        }
        page = page.next();
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(seen.len(), 25);

    tokio::time::sleep(Duration::from_millis(30)).await;
    let age = q
        .oldest_waiting_age(JobKind::Launch)
        .await
        .unwrap()
        .unwrap();
    assert!(age >= Duration::from_millis(30), "{age:?}");
    assert_eq!(q.oldest_waiting_age(JobKind::Cleanup).await.unwrap(), None);

    // Pause: no worker takes anything; counts still see the jobs; resume releases them.
    q.pause(JobKind::Launch).await.unwrap();
    assert!(q.is_paused(JobKind::Launch).await.unwrap());
    let c = q.counts(JobKind::Launch).await.unwrap();
    assert!(c.paused);
    assert_eq!(c.waiting, 25);
    assert!(
        q.oldest_waiting_age(JobKind::Launch)
            .await
            .unwrap()
            .is_some()
    );
    let rec = Recorder::new("w");
    let w = RunningWorker::start(test_config(&p, JobKind::Launch), rec.clone());
    wait_workers(&q, JobKind::Launch, 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rec.total_starts(), 0, "a paused queue hands out nothing");
    q.resume(JobKind::Launch).await.unwrap();
    assert!(!q.is_paused(JobKind::Launch).await.unwrap());
    wait_until(Duration::from_secs(20), "all done after resume", || async {
        q.counts(JobKind::Launch).await.unwrap().completed == 25
    })
    .await;
    let done = q
        .list(JobKind::Launch, QueueState::Completed, Page::first(100))
        .await
        .unwrap();
    assert_eq!(done.len(), 25);
    assert_eq!(done[0].result.as_ref().unwrap()["by"], "w");
    w.stop().await;
}

#[tokio::test]
async fn dead_jobs_keep_their_error_and_can_be_retried() {
    let p = Prefix::new();
    let q = p.client().await;
    let id = Uuid::new_v4();
    // Fails permanently on attempt 1 only: the operator's retry then succeeds.
    q.push_with_data(
        JobKind::Build,
        id,
        3,
        json!({"fail": "permanent", "fail_until_attempt": 2}),
    )
    .await
    .unwrap();
    let rec = Recorder::new("w");
    let w = RunningWorker::start(test_config(&p, JobKind::Build), rec.clone());
    let sid = id.to_string();
    wait_until(Duration::from_secs(20), "job dead", || async {
        q.counts(JobKind::Build).await.unwrap().dead == 1
    })
    .await;
    let dead = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(dead.state, Some(QueueState::Dead));
    assert_eq!(dead.error.as_deref(), Some("bad input"));
    assert_eq!(dead.attempts_started, 1);
    let listed = q
        .list(JobKind::Build, QueueState::Dead, Page::first(10))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].error.as_deref(), Some("bad input"));

    assert!(q.retry_dead(JobKind::Build, &sid).await.unwrap());
    wait_until(Duration::from_secs(20), "retried job completes", || async {
        q.counts(JobKind::Build).await.unwrap().completed == 1
    })
    .await;
    let done = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    // Attempt numbers keep counting (they fence results); the budget starts afresh.
    assert_eq!(done.attempts_started, 2);
    assert_eq!(done.attempts_used, 1);
    assert_eq!(rec.starts_of(&sid).len(), 2);
    // Only dead jobs can be retried.
    assert!(!q.retry_dead(JobKind::Build, &sid).await.unwrap());
    assert!(
        !q.retry_dead(JobKind::Build, &Uuid::new_v4().to_string())
            .await
            .unwrap()
    );
    w.stop().await;
}

#[tokio::test]
async fn cancel_queued_and_running_jobs_and_see_live_workers() {
    let p = Prefix::new();
    let q = p.client().await;
    // A queued job is simply removed.
    let queued = Uuid::new_v4();
    q.push(JobKind::Cleanup, queued, 3).await.unwrap();
    assert_eq!(
        q.cancel(JobKind::Cleanup, &queued.to_string(), "operator")
            .await
            .unwrap(),
        CancelOutcome::Removed
    );
    assert!(
        q.get(JobKind::Cleanup, &queued.to_string())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        q.cancel(JobKind::Cleanup, &Uuid::new_v4().to_string(), "x")
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );

    // A running job: its worker is told, its handler's token fires, the job is dead as cancelled.
    let rec = Recorder::new("w");
    let mut cfg = test_config(&p, JobKind::Cleanup);
    cfg.worker_name = "cleanup-worker-1".into();
    let w = RunningWorker::start(cfg, rec.clone());
    let running = Uuid::new_v4();
    let rid = running.to_string();
    q.push_with_data(JobKind::Cleanup, running, 3, json!({"sleep_ms": 60_000}))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "job running", || async {
        !rec.starts_of(&rid).is_empty()
    })
    .await;
    // Live workers with their current job, refreshed by heartbeat.
    wait_until(Duration::from_secs(5), "worker lists its job", || async {
        let ws = q.workers(JobKind::Cleanup).await.unwrap();
        ws.len() == 1 && ws[0].jobs == vec![rid.clone()]
    })
    .await;
    let ws = q.workers(JobKind::Cleanup).await.unwrap();
    assert_eq!(ws[0].name, "cleanup-worker-1");
    assert_eq!(ws[0].pid, std::process::id());
    assert!(ws[0].last_heartbeat_ms > 0);
    assert!(q.workers(JobKind::Build).await.unwrap().is_empty());

    assert_eq!(
        q.cancel(JobKind::Cleanup, &rid, "superseded by a newer commit")
            .await
            .unwrap(),
        CancelOutcome::Signalled
    );
    wait_until(Duration::from_secs(10), "running job cancelled", || async {
        q.counts(JobKind::Cleanup).await.unwrap().dead == 1
    })
    .await;
    assert!(rec.was_cancelled(&rid));
    let job = q.get(JobKind::Cleanup, &rid).await.unwrap().unwrap();
    assert_eq!(job.state, Some(QueueState::Dead));
    assert_eq!(
        job.error.as_deref(),
        Some("cancelled: superseded by a newer commit")
    );
    assert_eq!(
        rec.starts_of(&rid).len(),
        1,
        "a cancelled job is not retried"
    );
    w.stop().await;
    // A stopped worker leaves the registry.
    assert!(q.workers(JobKind::Cleanup).await.unwrap().is_empty());
}

#[tokio::test]
async fn pushing_a_dead_job_again_puts_it_back_once() {
    // The job store's operator retry re-enqueues a dead job by pushing it again.
    let p = Prefix::new();
    let q = p.client().await;
    let id = Uuid::new_v4();
    let sid = id.to_string();
    q.push_with_data(
        JobKind::Build,
        id,
        1,
        json!({"fail": "transient", "fail_until_attempt": 2}),
    )
    .await
    .unwrap();
    let rec = Recorder::new("w");
    let w = RunningWorker::start(test_config(&p, JobKind::Build), rec.clone());
    wait_until(
        Duration::from_secs(20),
        "dead after its only attempt",
        || async { q.counts(JobKind::Build).await.unwrap().dead == 1 },
    )
    .await;
    q.push(JobKind::Build, id, 1).await.unwrap();
    q.push(JobKind::Build, id, 1).await.unwrap();
    wait_until(Duration::from_secs(20), "revived job completes", || async {
        q.counts(JobKind::Build).await.unwrap().completed == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.starts_of(&sid).len(), 2, "revived once, run once more");
    let c = q.counts(JobKind::Build).await.unwrap();
    assert_eq!((c.dead, c.waiting, c.active), (0, 0, 0));
    // A completed job is not run again by a duplicate push.
    q.push(JobKind::Build, id, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rec.starts_of(&sid).len(), 2);
    w.stop().await;
}

#[tokio::test]
async fn a_running_worker_hears_of_a_cancel_at_once() {
    // Renewals 20 s apart: only the notification can stop the job within seconds.
    let p = Prefix::new();
    let q = p.client().await;
    let rec = Recorder::new("w");
    let mut cfg = test_config(&p, JobKind::Build);
    cfg.rescue_time = Duration::from_secs(180);
    let w = RunningWorker::start(cfg, rec.clone());
    let id = Uuid::new_v4();
    let sid = id.to_string();
    q.push_with_data(JobKind::Build, id, 3, json!({"sleep_ms": 120_000}))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "job running", || async {
        !rec.starts_of(&sid).is_empty()
    })
    .await;
    let asked = std::time::Instant::now();
    assert_eq!(
        q.cancel(JobKind::Build, &sid, "operator").await.unwrap(),
        CancelOutcome::Signalled
    );
    wait_until(Duration::from_secs(15), "handler cancelled", || async {
        rec.was_cancelled(&sid)
    })
    .await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    wait_until(Duration::from_secs(10), "dead as cancelled", || async {
        q.counts(JobKind::Build).await.unwrap().dead == 1
    })
    .await;
    w.stop().await;
}
