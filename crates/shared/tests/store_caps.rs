//! The keyed cap on running jobs (the per-repository build cap) in the job store: counted and
//! taken atomically across concurrent starts, freed with the job's state, passed on to the
//! attempt that resumes a dead worker's job, and its waiting line written once per attempt.

mod common;

use chrono::Utc;
use common::{insert, test_db};
use slipway_core::{ErrorClass, JobKind, JobState};
use slipway_shared::store::{AttemptOutcome, CappedStart, Store, WAITING_LINE_SEQ};

async fn start(store: &Store, id: slipway_core::JobId, attempt: i32, key: &str) -> CappedStart {
    store
        .start_attempt_capped(id, attempt, "w", JobKind::Build, key, 1, "waiting")
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_starts_never_exceed_the_cap() {
    let db = test_db().await;
    let store = db.store();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(insert(&store, JobKind::Build, None).await.id);
    }
    // Twelve workers start twelve jobs of one key at the same instant, limit 3.
    let starts = ids.iter().map(|id| {
        let store = store.clone();
        let id = *id;
        tokio::spawn(async move {
            store
                .start_attempt_capped(id, 1, "w", JobKind::Build, "github.com/org/app", 3, "w")
                .await
                .unwrap()
        })
    });
    let results = futures::future::join_all(starts).await;
    let started = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), CappedStart::Started(_)))
        .count();
    assert_eq!(started, 3);
    assert_eq!(
        store
            .running_with_cap_key(JobKind::Build, "github.com/org/app")
            .await
            .unwrap(),
        3
    );
    // Another key and another kind are not held back.
    let other = insert(&store, JobKind::Build, None).await.id;
    assert!(matches!(
        start(&store, other, 1, "github.com/org/other").await,
        CappedStart::Started(_)
    ));
}

#[tokio::test]
async fn a_slot_ends_with_the_job_and_passes_to_a_resumed_attempt() {
    let db = test_db().await;
    let store = db.store();
    let key = "github.com/org/app";
    let a = insert(&store, JobKind::Build, None).await.id;
    let b = insert(&store, JobKind::Build, None).await.id;
    assert!(matches!(
        start(&store, a, 1, key).await,
        CappedStart::Started(_)
    ));
    assert_eq!(
        start(&store, b, 1, key).await,
        CappedStart::Waiting { running: 1 }
    );
    // Waiting changed nothing about the job but its log.
    let waiting = store.get_job(b).await.unwrap().unwrap();
    assert_eq!((waiting.state, waiting.attempts), (JobState::Queued, 0));

    // Its worker died: the resumed attempt of the same job keeps the slot, the other waits.
    assert!(matches!(
        start(&store, a, 2, key).await,
        CappedStart::Started(_)
    ));
    assert!(matches!(
        start(&store, b, 1, key).await,
        CappedStart::Waiting { .. }
    ));

    // A retry's back-off frees the slot; so does the end of the job.
    let retrying = AttemptOutcome::Retrying {
        error: "503".into(),
        retry_at: Utc::now(),
    };
    assert!(store.finish_attempt(a, 2, retrying).await.unwrap());
    assert!(matches!(
        start(&store, b, 1, key).await,
        CappedStart::Started(_)
    ));
    assert!(matches!(
        start(&store, a, 3, key).await,
        CappedStart::Waiting { .. }
    ));
    let failed = AttemptOutcome::Failed {
        error: "step 3".into(),
        class: ErrorClass::Permanent,
    };
    assert!(store.finish_attempt(b, 1, failed).await.unwrap());
    assert!(matches!(
        start(&store, a, 3, key).await,
        CappedStart::Started(_)
    ));

    // A cancelled job frees its slot too.
    let c = insert(&store, JobKind::Build, None).await.id;
    assert!(matches!(
        start(&store, c, 1, key).await,
        CappedStart::Waiting { .. }
    ));
    store
        .cancel_job(a, JobState::Cancelled, "operator")
        .await
        .unwrap();
    assert!(matches!(
        start(&store, c, 1, key).await,
        CappedStart::Started(_)
    ));
}

#[tokio::test]
async fn the_waiting_line_is_written_once_per_attempt_and_not_for_a_finished_job() {
    let db = test_db().await;
    let store = db.store();
    let key = "github.com/org/app";
    let a = insert(&store, JobKind::Build, None).await.id;
    let b = insert(&store, JobKind::Build, None).await.id;
    assert!(matches!(
        start(&store, a, 1, key).await,
        CappedStart::Started(_)
    ));
    for _ in 0..5 {
        assert!(matches!(
            start(&store, b, 1, key).await,
            CappedStart::Waiting { .. }
        ));
    }
    let logs = store.read_logs(b, None, 100).await.unwrap();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(
        (logs[0].attempt, logs[0].seq, logs[0].stream.as_str()),
        (1, WAITING_LINE_SEQ, "system")
    );
    assert_eq!(logs[0].text, "waiting");

    // A cancelled job does not wait: it is refused as a start would refuse it.
    store
        .cancel_job(b, JobState::Cancelled, "operator")
        .await
        .unwrap();
    assert_eq!(start(&store, b, 2, key).await, CappedStart::Refused);
    assert_eq!(store.read_logs(b, None, 100).await.unwrap().len(), 1);
}

/// A start that waited for its key's lock while the slot's holder finished is dated after that
/// finish: its transaction began before the finish, so the transaction's `now()` would date it
/// earlier, and two builds of a repository under a cap of 1 would seem to have overlapped.
#[tokio::test]
async fn a_start_that_waited_for_the_lock_is_dated_after_the_finish_it_waited_for() {
    use sqlx::Connection;
    let db = test_db().await;
    let store = db.store();
    let key = "github.com/org/app";
    let x = insert(&store, JobKind::Build, None).await.id;
    let y = insert(&store, JobKind::Build, None).await.id;
    assert!(matches!(
        start(&store, x, 1, key).await,
        CappedStart::Started(_)
    ));

    // Hold the key's lock (as a concurrent start would) so y's start begins, then waits.
    let mut holder = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("slipway-cap:build:{key}"))
        .execute(&mut *held)
        .await
        .unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { start(&store, y, 1, key).await })
    };
    let watcher = sqlx::PgPool::connect(db.url()).await.unwrap();
    slipway_shared::testing::eventually(
        std::time::Duration::from_secs(10),
        "y's start waiting for the key's lock",
        || {
            let q = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'",
            )
            .fetch_one(&watcher);
            async move { (q.await.unwrap() == 1).then_some(()) }
        },
    )
    .await;

    // The slot's holder finishes, then the lock is let go: y starts in the freed slot.
    let done = AttemptOutcome::Succeeded {
        result: serde_json::json!({}),
    };
    assert!(store.finish_attempt(x, 1, done).await.unwrap());
    held.commit().await.unwrap();
    assert!(matches!(waiting.await.unwrap(), CappedStart::Started(_)));
    let finished = store.attempts(x).await.unwrap()[0].finished_at.unwrap();
    let started = store.attempts(y).await.unwrap()[0].started_at;
    assert!(
        finished <= started,
        "x finished {finished}, y started {started}"
    );
    let job_started = store.get_job(y).await.unwrap().unwrap().started_at.unwrap();
    assert!(finished <= job_started, "job started {job_started}");
}
