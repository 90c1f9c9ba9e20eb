//! The runtime wired to the Postgres job store (real Redis and Postgres): every attempt is
//! recorded (semantic 3), a job the store will not start is skipped, a fenced worker records
//! nothing (semantic 2), and an operator retry runs a dead job again.

mod queue_support;

use queue_support::*;
use serde_json::json;
use slipway_core::{ErrorClass, JobKind, JobState};
use slipway_shared::queue::QueueState;
use slipway_shared::store::{JobRecord, NewJob, Store};
use slipway_shared::testing::TestDb;
use std::time::Duration;

async fn insert(store: &Store, kind: JobKind, max_attempts: i32) -> JobRecord {
    let mut new = NewJob::new(
        kind,
        json!({"repository": "https://github.com/org/app.git"}),
    );
    new.max_attempts = max_attempts;
    store.insert_job(new).await.unwrap().job
}

async fn wait_state(store: &Store, job: &JobRecord, state: JobState) -> JobRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = store.get_job(job.id).await.unwrap().unwrap();
        if now.state == state {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job never became {state}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn each_attempt_is_recorded_and_the_handler_gets_the_job_record() {
    let db = TestDb::new().await.unwrap();
    let store = db.store();
    let p = Prefix::new();
    let q = p.client().await;
    let rec = Recorder::new("a");
    let w = RunningWorker::start_with_store(
        test_config(&p, JobKind::Build),
        store.clone(),
        rec.clone(),
    );

    let job = insert(&store, JobKind::Build, 3).await;
    q.push_with_data(
        JobKind::Build,
        job.id,
        3,
        json!({"fail": "transient", "fail_until_attempt": 2}),
    )
    .await
    .unwrap();
    let done = wait_state(&store, &job, JobState::Succeeded).await;
    assert_eq!(done.attempts, 2);
    assert_eq!(done.result.as_ref().unwrap()["attempt"], 2);
    let attempts = store.attempts(job.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].outcome.as_deref(), Some("retrying"));
    assert_eq!(attempts[0].error.as_deref(), Some("boom on attempt 1"));
    assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
    assert!(
        attempts
            .iter()
            .all(|a| a.finished_at.is_some() && !a.worker_id.is_empty())
    );
    assert_eq!(
        rec.payloads.lock().unwrap()[&job.id.to_string()]["repository"],
        "https://github.com/org/app.git"
    );
    assert_eq!(
        q.get(JobKind::Build, &job.id.to_string())
            .await
            .unwrap()
            .unwrap()
            .state,
        Some(QueueState::Completed)
    );
    w.stop().await;
}

#[tokio::test]
async fn failures_are_recorded_with_their_class_and_an_operator_retry_runs_the_job_again() {
    let db = TestDb::new().await.unwrap();
    let store = db.store();
    let p = Prefix::new();
    let q = p.client().await;
    let rec = Recorder::new("a");
    let w = RunningWorker::start_with_store(
        test_config(&p, JobKind::Launch),
        store.clone(),
        rec.clone(),
    );

    // Permanent on its first run only.
    let permanent = insert(&store, JobKind::Launch, 3).await;
    q.push_with_data(
        JobKind::Launch,
        permanent.id,
        3,
        json!({"fail": "permanent", "fail_until_attempt": 2}),
    )
    .await
    .unwrap();
    // Transient every time, two attempts allowed.
    let transient = insert(&store, JobKind::Launch, 2).await;
    q.push_with_data(
        JobKind::Launch,
        transient.id,
        2,
        json!({"fail": "transient"}),
    )
    .await
    .unwrap();

    let failed = wait_state(&store, &permanent, JobState::Failed).await;
    assert_eq!(failed.error.as_deref(), Some("bad input"));
    assert_eq!(failed.error_class, Some(ErrorClass::Permanent));
    assert_eq!(failed.attempts, 1);
    let failed = wait_state(&store, &transient, JobState::Failed).await;
    assert_eq!(failed.error.as_deref(), Some("boom on attempt 2"));
    assert_eq!(failed.error_class, Some(ErrorClass::Transient));
    assert_eq!(store.attempts(transient.id).await.unwrap().len(), 2);

    // Operator retry: the store re-queues it, the relay pushes it again, Redis revives it.
    assert!(store.retry_job(permanent.id).await.unwrap());
    q.push(JobKind::Launch, permanent.id, 3).await.unwrap();
    let done = wait_state(&store, &permanent, JobState::Succeeded).await;
    assert_eq!(done.attempts, 2);
    let attempts = store.attempts(permanent.id).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.outcome.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec!["failed", "succeeded"]
    );
    w.stop().await;
}

#[tokio::test]
async fn a_job_the_store_will_not_start_is_acknowledged_and_skipped() {
    let db = TestDb::new().await.unwrap();
    let store = db.store();
    let p = Prefix::new();
    let q = p.client().await;
    let rec = Recorder::new("a");
    let w = RunningWorker::start_with_store(
        test_config(&p, JobKind::Cleanup),
        store.clone(),
        rec.clone(),
    );
    let job = insert(&store, JobKind::Cleanup, 3).await;
    assert!(
        store
            .cancel_job(job.id, JobState::Cancelled, "operator")
            .await
            .unwrap()
    );
    q.push(JobKind::Cleanup, job.id, 3).await.unwrap();
    wait_until(Duration::from_secs(20), "acknowledged in Redis", || async {
        q.counts(JobKind::Cleanup).await.unwrap().completed == 1
    })
    .await;
    assert_eq!(rec.total_starts(), 0, "the handler never ran");
    let now = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(now.state, JobState::Cancelled);
    assert!(store.attempts(job.id).await.unwrap().is_empty());
    w.stop().await;
}

#[tokio::test]
async fn a_fenced_worker_records_nothing_in_the_store() {
    let db = TestDb::new().await.unwrap();
    let store = db.store();
    let p = Prefix::new();
    let q = p.client().await;
    let rec = Recorder::new("a");
    let w = RunningWorker::start_with_store(
        test_config(&p, JobKind::Build),
        store.clone(),
        rec.clone(),
    );
    let job = insert(&store, JobKind::Build, 3).await;
    let sid = job.id.to_string();
    q.push_with_data(
        JobKind::Build,
        job.id,
        3,
        json!({"sleep_ms": 2_000, "ignore_cancel": true}),
    )
    .await
    .unwrap();
    wait_state(&store, &job, JobState::Running).await;
    let lock = p.key(JobKind::Build, &format!("{sid}:lock"));
    let mut r = p.redis();
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("thief")
        .arg("PX")
        .arg(60_000)
        .query(&mut r)
        .unwrap();
    wait_until(Duration::from_secs(10), "handler returned", || async {
        rec.returned.lock().unwrap().contains(&sid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(now.state, JobState::Running, "the late result was refused");
    assert!(now.result.is_none());
    let attempts = store.attempts(job.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].finished_at.is_none());
    let _: () = redis::cmd("DEL").arg(&lock).query(&mut r).unwrap();
    w.stop().await;
}
