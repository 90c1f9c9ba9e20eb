//! The worker runtime against a real Redis, in process: lease and fencing (semantic 2), retries
//! (3), pickup without polling (4), bounded prefetch (6), graceful shutdown (8) and panics.

mod queue_support;

use queue_support::*;
use serde_json::json;
use slipway_core::JobKind;
use slipway_shared::queue::QueueState;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[tokio::test]
async fn a_long_job_keeps_its_lease_past_several_lock_durations() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let b = Recorder::new("b");
    let wa = RunningWorker::start(test_config(&p, JobKind::Build), a.clone());
    wait_workers(&q, JobKind::Build, 1).await;
    let id = Uuid::new_v4();
    let sid = id.to_string();
    // Lock 1.5 s: the job runs four lock durations while another worker stands by to steal it.
    q.push_with_data(JobKind::Build, id, 3, json!({"sleep_ms": 6_000}))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "a started", || async {
        !a.starts_of(&sid).is_empty()
    })
    .await;
    let wb = RunningWorker::start(test_config(&p, JobKind::Build), b.clone());
    wait_until(Duration::from_secs(20), "job completed", || async {
        q.counts(JobKind::Build).await.unwrap().completed == 1
    })
    .await;
    assert_eq!(a.starts_of(&sid).len(), 1);
    assert!(
        b.starts_of(&sid).is_empty(),
        "the job was taken from a live worker"
    );
    assert!(!a.was_cancelled(&sid));
    let job = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(job.attempts_started, 1);
    assert_eq!(job.result.unwrap()["by"], "a");
    wa.stop().await;
    wb.stop().await;
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_is_cancelled_and_its_late_result_refused() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let w = RunningWorker::start(test_config(&p, JobKind::Build), a.clone());
    let id = Uuid::new_v4();
    let sid = id.to_string();
    // The handler ignores its cancellation token and returns success late.
    q.push_with_data(
        JobKind::Build,
        id,
        3,
        json!({"sleep_ms": 2_500, "ignore_cancel": true}),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(10), "started", || async {
        !a.starts_of(&sid).is_empty()
    })
    .await;
    // Another owner takes the lock (as if ours had expired and the job been re-fetched).
    let lock = p.key(JobKind::Build, &format!("{sid}:lock"));
    let mut r = p.redis();
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("someone-else")
        .arg("PX")
        .arg(60_000)
        .query(&mut r)
        .unwrap();
    wait_until(Duration::from_secs(10), "handler returned", || async {
        a.returned.lock().unwrap().contains(&sid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Told: its token fired while it ran. Refused: the job is still active under the other
    // owner's lock, with no result and no error from us.
    assert!(
        a.was_cancelled(&sid),
        "the lost lease cancelled the handler"
    );
    let job = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(job.state, Some(QueueState::Active));
    assert!(job.result.is_none());
    assert!(job.error.is_none());
    let owner: String = redis::cmd("GET").arg(&lock).query(&mut r).unwrap();
    assert_eq!(owner, "someone-else");
    let c = q.counts(JobKind::Build).await.unwrap();
    assert_eq!((c.completed, c.dead, c.delayed), (0, 0, 0));
    // Let the stolen job go so the worker can stop cleanly.
    let _: () = redis::cmd("DEL").arg(&lock).query(&mut r).unwrap();
    w.stop().await;
}

#[tokio::test]
async fn a_result_without_a_confirmed_lease_is_refused_at_commit() {
    // The lock is taken between two renewals and the handler returns before the next one: the
    // fence check at commit time must catch it.
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let mut cfg = test_config(&p, JobKind::Launch);
    // Long renewal interval (lock 10 s, renewal every 3.3 s) so the commit comes first.
    cfg.rescue_time = Duration::from_secs(30);
    let w = RunningWorker::start(cfg, a.clone());
    let id = Uuid::new_v4();
    let sid = id.to_string();
    q.push_with_data(
        JobKind::Launch,
        id,
        3,
        json!({"sleep_ms": 6_000, "ignore_cancel": true}),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(10), "started", || async {
        !a.starts_of(&sid).is_empty()
    })
    .await;
    // Wait for a renewal to pass, then steal right after it.
    tokio::time::sleep(Duration::from_millis(3_600)).await;
    let lock = p.key(JobKind::Launch, &format!("{sid}:lock"));
    let mut r = p.redis();
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("thief")
        .arg("PX")
        .arg(60_000)
        .query(&mut r)
        .unwrap();
    wait_until(Duration::from_secs(10), "handler returned", || async {
        a.returned.lock().unwrap().contains(&sid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = q.get(JobKind::Launch, &sid).await.unwrap().unwrap();
    assert_eq!(job.state, Some(QueueState::Active));
    assert!(job.result.is_none());
    let _: () = redis::cmd("DEL").arg(&lock).query(&mut r).unwrap();
    w.stop().await;
}

#[tokio::test]
async fn transient_errors_retry_through_the_delayed_set_up_to_the_attempt_cap() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let cfg = test_config(&p, JobKind::Build);
    let backoff = cfg.backoff;
    let w = RunningWorker::start(cfg, a.clone());
    let id = Uuid::new_v4();
    let sid = id.to_string();
    q.push_with_data(JobKind::Build, id, 3, json!({"fail": "transient"}))
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), "dead after 3 attempts", || async {
        q.counts(JobKind::Build).await.unwrap().dead == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let starts = a.starts_of(&sid);
    assert_eq!(
        starts.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "exactly 3 attempts"
    );
    let job = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(job.state, Some(QueueState::Dead));
    assert_eq!(job.error.as_deref(), Some("boom on attempt 3"));
    assert_eq!(job.attempts_started, 3);

    // Between attempts the job sat in the delayed set, scheduled within the backoff ceiling.
    let mut r = p.redis();
    let events: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(p.key(JobKind::Build, "events"))
        .arg("-")
        .arg("+")
        .query(&mut r)
        .unwrap();
    let delayed: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|(eid, fields)| {
            let f: std::collections::HashMap<_, _> = fields.iter().cloned().collect();
            (f.get("event").map(String::as_str) == Some("delayed") && f.get("jobId") == Some(&sid))
                .then(|| {
                    let at: u64 = eid.split('-').next().unwrap().parse().unwrap();
                    (at, f["delay"].parse::<u64>().unwrap())
                })
        })
        .collect();
    assert_eq!(delayed.len(), 2, "two waits in the delayed set: {events:?}");
    for (i, (at, due)) in delayed.iter().enumerate() {
        let ceiling = backoff.ceiling(i as u32 + 1).as_millis() as u64;
        assert!(
            *due >= *at && due - at <= ceiling + 50,
            "wait {i}: {} ms > {ceiling}",
            due - at
        );
    }
    // And no attempt started before its due time.
    for (i, (_, due)) in delayed.iter().enumerate() {
        let gap = starts[i + 1].at.duration_since(starts[i].at).as_millis() as u64;
        let planned = due - delayed[i].0;
        assert!(
            gap + 50 >= planned,
            "attempt {} came {gap} ms after, planned {planned}",
            i + 2
        );
    }
    w.stop().await;
}

#[tokio::test]
async fn a_permanent_error_goes_straight_to_the_dead_set() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let w = RunningWorker::start(test_config(&p, JobKind::Launch), a.clone());
    let id = Uuid::new_v4();
    let sid = id.to_string();
    q.push_with_data(JobKind::Launch, id, 3, json!({"fail": "permanent"}))
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), "dead", || async {
        q.counts(JobKind::Launch).await.unwrap().dead == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.starts_of(&sid).len(), 1);
    let job = q.get(JobKind::Launch, &sid).await.unwrap().unwrap();
    assert_eq!(job.error.as_deref(), Some("bad input"));
    assert_eq!(job.attempts_started, 1);
    w.stop().await;
}

#[tokio::test]
async fn a_handler_panic_fails_the_attempt_instead_of_leaving_the_job_active() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let w = RunningWorker::start(test_config(&p, JobKind::Cleanup), a.clone());
    let id = Uuid::new_v4();
    let sid = id.to_string();
    let dead = Uuid::new_v4();
    q.push_with_data(JobKind::Cleanup, id, 3, json!({"panic_until_attempt": 2}))
        .await
        .unwrap();
    // Always panics, one attempt allowed: dead with the panic message.
    q.push_with_data(
        JobKind::Cleanup,
        dead,
        1,
        json!({"panic_until_attempt": 99}),
    )
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(20),
        "one completed, one dead",
        || async {
            let c = q.counts(JobKind::Cleanup).await.unwrap();
            c.completed == 1 && c.dead == 1
        },
    )
    .await;
    let job = q.get(JobKind::Cleanup, &sid).await.unwrap().unwrap();
    assert_eq!(job.attempts_started, 2);
    assert_eq!(job.result.unwrap()["attempt"], 2);
    let d = q
        .get(JobKind::Cleanup, &dead.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.error.as_deref(), Some("handler panicked: scripted panic"));
    assert_eq!(q.counts(JobKind::Cleanup).await.unwrap().active, 0);
    w.stop().await;
}

#[tokio::test]
async fn an_idle_worker_picks_up_a_new_job_at_once() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let w = RunningWorker::start(test_config(&p, JobKind::Build), a.clone());
    wait_workers(&q, JobKind::Build, 1).await;
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        // Idle longer than the engine's blocking timeout (2 s) now and then: a poller would show.
        tokio::time::sleep(Duration::from_millis(if i % 3 == 0 { 2_300 } else { 150 })).await;
        let id = Uuid::new_v4();
        let sid = id.to_string();
        let pushed = Instant::now();
        q.push(JobKind::Build, id, 3).await.unwrap();
        wait_until(Duration::from_secs(5), "picked up", || async {
            !a.starts_of(&sid).is_empty()
        })
        .await;
        let took = a.starts_of(&sid)[0].at.duration_since(pushed);
        worst = worst.max(took);
    }
    // Generous for a loaded machine; the benchmark measures the real figure (p99 < 5 ms).
    assert!(
        worst < Duration::from_millis(750),
        "slowest pickup {worst:?}"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_worker_never_holds_more_jobs_than_free_slots() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let mut cfg = test_config(&p, JobKind::Launch);
    cfg.concurrency = 2;
    let wa = RunningWorker::start(cfg, a.clone());
    wait_workers(&q, JobKind::Launch, 1).await;
    let items: Vec<_> = (0..8)
        .map(|_| (Uuid::new_v4(), 3, json!({"sleep_ms": 1_500})))
        .collect();
    q.push_bulk_with_data(JobKind::Launch, items).await.unwrap();
    wait_until(Duration::from_secs(10), "two running", || async {
        q.counts(JobKind::Launch).await.unwrap().active == 2
    })
    .await;
    for _ in 0..10 {
        let c = q.counts(JobKind::Launch).await.unwrap();
        assert!(c.active <= 2, "held more than its slots: {c:?}");
        assert!(c.waiting + c.active + c.completed == 8, "{c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Whatever it does not hold, a second worker can take at once.
    let b = Recorder::new("b");
    let mut cfg = test_config(&p, JobKind::Launch);
    cfg.concurrency = 2;
    let wb = RunningWorker::start(cfg, b.clone());
    wait_until(Duration::from_secs(10), "b took some", || async {
        b.total_starts() > 0
    })
    .await;
    wait_until(Duration::from_secs(30), "all done", || async {
        q.counts(JobKind::Launch).await.unwrap().completed == 8
    })
    .await;
    assert!(a.max_running.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    assert_eq!(a.total_starts() + b.total_starts(), 8, "each job ran once");
    wa.stop().await;
    wb.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_short_jobs_and_hands_back_the_rest() {
    let p = Prefix::new();
    let q = p.client().await;
    let a = Recorder::new("a");
    let mut cfg = test_config(&p, JobKind::Build);
    cfg.grace_period = Duration::from_millis(1_500);
    let wa = RunningWorker::start(cfg, a.clone());
    wait_workers(&q, JobKind::Build, 1).await;
    let short = Uuid::new_v4();
    let long = Uuid::new_v4();
    q.push_with_data(JobKind::Build, short, 3, json!({"sleep_ms": 700}))
        .await
        .unwrap();
    q.push_with_data(JobKind::Build, long, 3, json!({"sleep_ms": 60_000}))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "both running", || async {
        a.total_starts() == 2
    })
    .await;
    let stopping = Instant::now();
    wa.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    assert!(a.returned.lock().unwrap().contains(&short.to_string()));
    assert!(a.was_cancelled(&long.to_string()));
    // Handed back at once: waiting (not active, not delayed). Its attempt stays counted, as
    // the job store counts every attempt it started.
    let job = q
        .get(JobKind::Build, &long.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, Some(QueueState::Waiting));
    assert_eq!(job.attempts_started, 1);
    let c = q.counts(JobKind::Build).await.unwrap();
    assert_eq!((c.completed, c.waiting, c.active), (1, 1, 0));
    // Another worker resumes it immediately, as attempt 2.
    let b = Recorder::new("b");
    let resumed = Instant::now();
    let wb = RunningWorker::start(test_config(&p, JobKind::Build), b.clone());
    wait_until(Duration::from_secs(10), "b resumed it", || async {
        !b.starts_of(&long.to_string()).is_empty()
    })
    .await;
    assert!(resumed.elapsed() < Duration::from_secs(5));
    assert_eq!(b.starts_of(&long.to_string())[0].attempt, 2);
    let job = q
        .get(JobKind::Build, &long.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.attempts_used, 2, "the hand-back counted as attempt 1");
    wb.stop().await;
}
