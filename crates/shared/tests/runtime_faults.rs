//! Faults (semantic 5) against real Redis: a private `redis-server` that the test starts, kills
//! and restarts on its own port (the shared Redis on 6379 is never touched), and a 100k backlog
//! that must be fetched as easily as a small one.

mod queue_support;

use queue_support::*;
use slipway_core::JobKind;
use slipway_shared::testing::PrivateRedis;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[tokio::test]
async fn workers_wait_for_redis_and_survive_its_restart() {
    let mut redis = PrivateRedis::new().unwrap();
    let p = Prefix::on(&redis.url());
    let rec = Recorder::new("a");
    let mut cfg = test_config(&p, JobKind::Build);
    cfg.concurrency = 2;
    // Started while Redis is down: the worker keeps retrying instead of exiting.
    let w = RunningWorker::start(cfg, rec.clone());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        !w.task.is_finished(),
        "the worker gave up while Redis was down"
    );
    redis.restart().await.unwrap();
    let q = p.client().await;
    wait_workers(&q, JobKind::Build, 1).await;
    let first = Uuid::new_v4();
    q.push(JobKind::Build, first, 3).await.unwrap();
    wait_until(Duration::from_secs(20), "first job done", || async {
        q.counts(JobKind::Build)
            .await
            .map(|c| c.completed == 1)
            .unwrap_or(false)
    })
    .await;

    // Redis dies and comes back (twice). Jobs pushed afterwards are still run.
    for round in 0..2 {
        redis.stop();
        assert!(
            q.push(JobKind::Build, Uuid::new_v4(), 3).await.is_err(),
            "Redis is down"
        );
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert!(
            !w.task.is_finished(),
            "the worker died with Redis (round {round})"
        );
        redis.restart().await.unwrap();
        let id = Uuid::new_v4();
        wait_until(Duration::from_secs(20), "push after restart", || async {
            q.push(JobKind::Build, id, 3).await.is_ok()
        })
        .await;
        let sid = id.to_string();
        wait_until(
            Duration::from_secs(30),
            "job after restart runs",
            || async { !rec.starts_of(&sid).is_empty() },
        )
        .await;
    }
    wait_until(
        Duration::from_secs(20),
        "worker heartbeats again",
        || async {
            q.workers(JobKind::Build)
                .await
                .map(|w| w.len() == 1)
                .unwrap_or(false)
        },
    )
    .await;
    w.stop().await;
}

async fn time_to_complete(q: &slipway_shared::queue::QueueClient, n: u64) -> Duration {
    let started = Instant::now();
    wait_until(Duration::from_secs(120), "batch processed", || async {
        q.counts(JobKind::Cleanup).await.unwrap().completed >= n
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn a_large_backlog_is_fetched_as_easily_as_a_small_one() {
    const BATCH: u64 = 3_000;
    const BACKLOG: usize = 100_000;
    let fresh = |n: usize| -> Vec<(Uuid, u32)> { (0..n).map(|_| (Uuid::new_v4(), 3)).collect() };

    // Baseline: a small queue.
    let small = Prefix::new();
    let qs = small.client().await;
    qs.push_bulk(JobKind::Cleanup, &fresh(BATCH as usize))
        .await
        .unwrap();
    let mut cfg = test_config(&small, JobKind::Cleanup);
    cfg.concurrency = 50;
    let w = RunningWorker::start(cfg, Recorder::new("small"));
    let baseline = time_to_complete(&qs, BATCH).await;
    w.stop().await;

    // The same work at the head of a 100k backlog.
    let big = Prefix::new();
    let qb = big.client().await;
    let pushing = Instant::now();
    qb.push_bulk(JobKind::Cleanup, &fresh(BACKLOG))
        .await
        .unwrap();
    let push_time = pushing.elapsed();
    assert_eq!(
        qb.counts(JobKind::Cleanup).await.unwrap().waiting,
        BACKLOG as u64
    );
    let mut cfg = test_config(&big, JobKind::Cleanup);
    cfg.concurrency = 50;
    let w = RunningWorker::start(cfg, Recorder::new("big"));
    let with_backlog = time_to_complete(&qb, BATCH).await;
    w.stop().await;
    eprintln!(
        "pushed {BACKLOG} in {push_time:?}; {BATCH} jobs: {baseline:?} from a small queue, \
         {with_backlog:?} from a {BACKLOG} backlog"
    );
    assert!(
        with_backlog < baseline * 3 + Duration::from_secs(2),
        "fetching slowed down with the backlog: {with_backlog:?} vs {baseline:?}"
    );
    let c = qb.counts(JobKind::Cleanup).await.unwrap();
    assert_eq!(c.waiting + c.completed + c.active, BACKLOG as u64, "{c:?}");
}
