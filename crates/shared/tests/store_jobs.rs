//! The job store's contract: idempotent inserts, guarded state changes that two racing
//! writers cannot both win, fencing of stale attempts, terminal states that never move
//! (except an operator retry), relay exactly-once, pagination and filters.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use common::{insert, test_db};
use serde_json::json;
use slipway_core::{ErrorClass, JobId, JobKind, JobState};
use slipway_shared::store::{
    AttemptOutcome, JobFilter, NewJob, Store, StoreError, TEXT_SEARCH_WINDOW,
};

fn failed(error: &str) -> AttemptOutcome {
    AttemptOutcome::Failed {
        error: error.into(),
        class: ErrorClass::Permanent,
    }
}

fn retrying() -> AttemptOutcome {
    AttemptOutcome::Retrying {
        error: "k8s 503".into(),
        retry_at: Utc::now() + ChronoDuration::seconds(2),
    }
}

async fn state(store: &Store, id: JobId) -> JobState {
    store.get_job(id).await.unwrap().unwrap().state
}

#[tokio::test]
async fn insert_and_read_back() {
    let db = test_db().await;
    let store = db.store();
    let mut new = NewJob::new(JobKind::Build, json!({"repository": "r", "commit": "abc"}));
    new.preview = Some("org/app#1".into());
    new.commit_sha = Some("abc".into());
    new.trace_context = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let ins = store.insert_job(new.clone()).await.unwrap();
    assert!(ins.created);
    let job = store.get_job(new.id).await.unwrap().unwrap();
    assert_eq!(job, ins.job);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.kind, JobKind::Build);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.max_attempts, 3);
    assert!(job.enqueued_at.is_none());
    assert_eq!(job.payload["commit"], "abc");
    assert!(store.get_job(uuid::Uuid::now_v7()).await.unwrap().is_none());

    // The same id again is the same job, not an error.
    let again = store.insert_job(new).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.job.id, job.id);

    let mut bad = NewJob::new(JobKind::Build, json!({}));
    bad.max_attempts = 0;
    assert!(matches!(
        store.insert_job(bad).await,
        Err(StoreError::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_of_one_idempotency_key_make_one_job() {
    let db = test_db().await;
    let store = db.store();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut new = NewJob::new(JobKind::Build, json!({"n": i}));
                new.idempotency_key = Some("pipeline:org/app#1:abc:build".into());
                store.insert_job(new).await.unwrap()
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: HashSet<JobId> = results.iter().map(|r| r.job.id).collect();
    assert_eq!(ids.len(), 1, "all callers got the same job");
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_job_runs_retries_and_succeeds_with_attempts_recorded() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Build, None).await;

    let started = store.start_attempt(job.id, 1, "w1").await.unwrap().unwrap();
    assert_eq!(started.state, JobState::Running);
    assert_eq!(started.attempts, 1);
    let first_start = started.started_at.unwrap();
    store
        .record_attempt_objects(job.id, 1, &["slipway-build-x-a1".into(), "pod-1".into()])
        .await
        .unwrap();
    store
        .record_attempt_objects(job.id, 1, &["pod-1".into()])
        .await
        .unwrap();
    assert!(store.finish_attempt(job.id, 1, retrying()).await.unwrap());
    let j = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Retrying);
    assert_eq!(j.error_class, Some(ErrorClass::Transient));
    assert!(j.retry_at.is_some() && j.finished_at.is_none());

    let again = store.start_attempt(job.id, 2, "w2").await.unwrap().unwrap();
    assert_eq!(
        again.started_at,
        Some(first_start),
        "started_at is the first start"
    );
    assert!(
        store
            .finish_attempt(
                job.id,
                2,
                AttemptOutcome::Succeeded {
                    result: json!({"digest": "sha256:1"})
                }
            )
            .await
            .unwrap()
    );
    let j = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Succeeded);
    assert_eq!(j.result, Some(json!({"digest": "sha256:1"})));
    assert!(j.finished_at.is_some() && j.error.is_none() && j.retry_at.is_none());

    let attempts = store.attempts(job.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].worker_id, "w1");
    assert_eq!(attempts[0].outcome.as_deref(), Some("retrying"));
    assert_eq!(attempts[0].error.as_deref(), Some("k8s 503"));
    assert_eq!(attempts[0].k8s_objects, vec!["pod-1", "slipway-build-x-a1"]);
    assert_eq!(attempts[1].worker_id, "w2");
    assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
    assert!(attempts.iter().all(|a| a.finished_at.is_some()));

    assert!(matches!(
        store.record_attempt_objects(job.id, 9, &[]).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_racing_on_one_attempt_never_both_win() {
    let db = test_db().await;
    let store = db.store();
    for round in 0..15 {
        let job = insert(&store, JobKind::Build, None).await;
        let (a, b) = tokio::join!(
            tokio::spawn({
                let s = store.clone();
                async move { s.start_attempt(job.id, 1, "a").await.unwrap() }
            }),
            tokio::spawn({
                let s = store.clone();
                async move { s.start_attempt(job.id, 1, "b").await.unwrap() }
            }),
        );
        let winners = [a.unwrap(), b.unwrap()];
        assert_eq!(
            winners.iter().filter(|w| w.is_some()).count(),
            1,
            "round {round}: exactly one start wins"
        );

        let (a, b) = tokio::join!(
            tokio::spawn({
                let s = store.clone();
                async move {
                    s.finish_attempt(job.id, 1, AttemptOutcome::Succeeded { result: json!(1) })
                        .await
                        .unwrap()
                }
            }),
            tokio::spawn({
                let s = store.clone();
                async move { s.finish_attempt(job.id, 1, failed("boom")).await.unwrap() }
            }),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a ^ b, "round {round}: exactly one finish wins ({a}, {b})");
        let expected = if a {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        assert_eq!(state(&store, job.id).await, expected);
        let attempts = store.attempts(job.id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome.as_deref(), Some(expected.as_str()));
    }
}

#[tokio::test]
async fn stale_attempts_are_fenced() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Launch, None).await;
    store
        .start_attempt(job.id, 1, "dead")
        .await
        .unwrap()
        .unwrap();
    // The worker of attempt 1 died; attempt 2 resumes the still-running job.
    let resumed = store
        .start_attempt(job.id, 2, "alive")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resumed.state, JobState::Running);
    assert_eq!(resumed.attempts, 2);
    // Attempt 1 can neither restart nor finish.
    assert!(
        store
            .start_attempt(job.id, 1, "dead")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .start_attempt(job.id, 2, "dup")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .finish_attempt(job.id, 1, AttemptOutcome::Succeeded { result: json!({}) })
            .await
            .unwrap()
    );
    assert_eq!(state(&store, job.id).await, JobState::Running);
    let attempts = store.attempts(job.id).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("abandoned"));
    assert!(attempts[0].finished_at.is_some());
    assert!(attempts[1].outcome.is_none());
    // A finish for an attempt that never started is refused too.
    assert!(!store.finish_attempt(job.id, 3, failed("x")).await.unwrap());
    assert!(
        store
            .finish_attempt(job.id, 2, failed("bad manifest"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_attempt_budget_is_enforced() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Build, None).await;
    for attempt in 1..=2 {
        store
            .start_attempt(job.id, attempt, "w")
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .finish_attempt(job.id, attempt, retrying())
                .await
                .unwrap()
        );
    }
    store.start_attempt(job.id, 3, "w").await.unwrap().unwrap();
    // A "retry" from the last attempt is recorded as failed: no attempt 4 exists to wait for.
    assert!(store.finish_attempt(job.id, 3, retrying()).await.unwrap());
    let j = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.error.as_deref(), Some("k8s 503"));
    assert!(j.finished_at.is_some() && j.retry_at.is_none());
    assert!(!j.has_attempts_left());
    assert!(store.start_attempt(job.id, 4, "w").await.unwrap().is_none());

    // Attempt numbers beyond the budget are refused even on a live job.
    let other = insert(&store, JobKind::Build, None).await;
    assert!(
        store
            .start_attempt(other.id, 4, "w")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn terminal_jobs_never_move_except_by_operator_retry() {
    let db = test_db().await;
    let store = db.store();
    let mut ids = Vec::new();

    let succeeded = insert(&store, JobKind::Build, None).await;
    store
        .start_attempt(succeeded.id, 1, "w")
        .await
        .unwrap()
        .unwrap();
    store
        .finish_attempt(
            succeeded.id,
            1,
            AttemptOutcome::Succeeded { result: json!({}) },
        )
        .await
        .unwrap();
    ids.push((succeeded.id, JobState::Succeeded));

    let failed_job = insert(&store, JobKind::Build, None).await;
    store
        .start_attempt(failed_job.id, 1, "w")
        .await
        .unwrap()
        .unwrap();
    store
        .finish_attempt(failed_job.id, 1, failed("x"))
        .await
        .unwrap();
    ids.push((failed_job.id, JobState::Failed));

    let cancelled = insert(&store, JobKind::Build, None).await;
    assert!(
        store
            .cancel_job(cancelled.id, JobState::Cancelled, "user")
            .await
            .unwrap()
    );
    ids.push((cancelled.id, JobState::Cancelled));

    let superseded = insert(&store, JobKind::Build, None).await;
    assert!(
        store
            .cancel_job(superseded.id, JobState::Superseded, "new")
            .await
            .unwrap()
    );
    ids.push((superseded.id, JobState::Superseded));

    for (id, terminal) in &ids {
        let (id, terminal) = (*id, *terminal);
        assert!(
            store.start_attempt(id, 2, "w").await.unwrap().is_none(),
            "{terminal}"
        );
        assert!(
            store.start_attempt(id, 1, "w").await.unwrap().is_none(),
            "{terminal}"
        );
        for attempt in [1, 2] {
            assert!(
                !store
                    .finish_attempt(id, attempt, failed("late"))
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .finish_attempt(
                        id,
                        attempt,
                        AttemptOutcome::Cancelled { reason: "x".into() }
                    )
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store
                .cancel_job(id, JobState::Cancelled, "again")
                .await
                .unwrap()
        );
        assert!(
            !store
                .cancel_job(id, JobState::Superseded, "again")
                .await
                .unwrap()
        );
        assert_eq!(state(&store, id).await, terminal);
        let retried = store.retry_job(id).await.unwrap();
        assert_eq!(
            retried,
            matches!(terminal, JobState::Failed | JobState::Cancelled),
            "only failed and cancelled jobs can be retried ({terminal})"
        );
    }
    assert!(!store.retry_job(ids[0].0).await.unwrap(), "succeeded stays");
    assert_eq!(state(&store, ids[0].0).await, JobState::Succeeded);
    assert_eq!(state(&store, ids[3].0).await, JobState::Superseded);

    // A live job cannot be "retried", and cancel only takes the two cancel states.
    let live = insert(&store, JobKind::Build, None).await;
    assert!(!store.retry_job(live.id).await.unwrap());
    assert!(matches!(
        store.cancel_job(live.id, JobState::Succeeded, "no").await,
        Err(StoreError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn operator_retry_opens_a_fresh_run_after_the_old_attempts() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Build, None).await;
    store.mark_enqueued(job.id).await.unwrap();
    store.start_attempt(job.id, 1, "w").await.unwrap().unwrap();
    store
        .finish_attempt(job.id, 1, failed("dockerfile"))
        .await
        .unwrap();

    assert!(store.retry_job(job.id).await.unwrap());
    let j = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert!(j.enqueued_at.is_none(), "the relay pushes it again");
    assert!(j.error.is_none() && j.error_class.is_none() && j.finished_at.is_none());
    assert_eq!((j.attempts, j.attempt_base, j.max_attempts), (1, 1, 3));
    assert!(j.has_attempts_left());
    // Old attempt numbers stay fenced; the new run has attempts 2..=4.
    assert!(store.start_attempt(job.id, 1, "w").await.unwrap().is_none());
    assert!(store.start_attempt(job.id, 5, "w").await.unwrap().is_none());
    let run = store.start_attempt(job.id, 2, "w").await.unwrap().unwrap();
    assert_eq!(run.state, JobState::Running);
    assert_eq!(store.attempts(job.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn cancel_closes_the_open_attempt_and_fences_the_worker() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Build, None).await;
    store.start_attempt(job.id, 1, "w").await.unwrap().unwrap();
    assert!(
        store
            .cancel_job(job.id, JobState::Cancelled, "operator")
            .await
            .unwrap()
    );
    let j = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(j.error.as_deref(), Some("operator"));
    let a = &store.attempts(job.id).await.unwrap()[0];
    assert_eq!(a.outcome.as_deref(), Some("cancelled"));
    assert!(a.finished_at.is_some());
    assert!(
        !store
            .finish_attempt(job.id, 1, AttemptOutcome::Succeeded { result: json!({}) })
            .await
            .unwrap(),
        "the worker's late success is refused"
    );

    // A worker may also report its own attempt as cancelled.
    let other = insert(&store, JobKind::Build, None).await;
    store
        .start_attempt(other.id, 1, "w")
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .finish_attempt(
                other.id,
                1,
                AttemptOutcome::Cancelled {
                    reason: "told".into()
                }
            )
            .await
            .unwrap()
    );
    assert_eq!(state(&store, other.id).await, JobState::Cancelled);
}

#[tokio::test]
async fn supersede_older_cancels_only_older_live_jobs_of_that_preview_and_kinds() {
    let db = test_db().await;
    let store = db.store();
    let p = "org/app#42";
    let old_build = insert(&store, JobKind::Build, Some(p)).await;
    let old_launch = insert(&store, JobKind::Launch, Some(p)).await;
    store
        .start_attempt(old_launch.id, 1, "w")
        .await
        .unwrap()
        .unwrap();
    let old_cleanup = insert(&store, JobKind::Cleanup, Some(p)).await;
    let old_done = insert(&store, JobKind::Build, Some(p)).await;
    store
        .cancel_job(old_done.id, JobState::Cancelled, "x")
        .await
        .unwrap();
    let other_preview = insert(&store, JobKind::Build, Some("org/app#7")).await;
    let keep = insert(&store, JobKind::Build, Some(p)).await;
    let newer = insert(&store, JobKind::Build, Some(p)).await;

    let mut got = store
        .supersede_older(p, keep.id, &[JobKind::Build, JobKind::Launch])
        .await
        .unwrap();
    got.sort();
    let mut want = vec![old_build.id, old_launch.id];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(state(&store, old_build.id).await, JobState::Superseded);
    assert_eq!(state(&store, old_launch.id).await, JobState::Superseded);
    assert_eq!(
        store.attempts(old_launch.id).await.unwrap()[0]
            .outcome
            .as_deref(),
        Some("superseded")
    );
    assert_eq!(state(&store, old_cleanup.id).await, JobState::Queued);
    assert_eq!(state(&store, old_done.id).await, JobState::Cancelled);
    assert_eq!(state(&store, other_preview.id).await, JobState::Queued);
    assert_eq!(state(&store, keep.id).await, JobState::Queued);
    assert_eq!(state(&store, newer.id).await, JobState::Queued);
    // Again with every kind: only the older cleanup is left to supersede.
    assert!(
        store
            .supersede_older(p, keep.id, &JobKind::ALL)
            .await
            .unwrap()
            .len()
            == 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_relays_push_each_job_exactly_once() {
    let db = test_db().await;
    let store = db.store();
    let mut all = HashSet::new();
    for i in 0..60 {
        all.insert(insert(&store, JobKind::ALL[i % 3], None).await.id);
    }
    // Not relayed: already enqueued, or no longer queued.
    let enqueued = insert(&store, JobKind::Build, None).await;
    store.mark_enqueued(enqueued.id).await.unwrap();
    let cancelled = insert(&store, JobKind::Build, None).await;
    store
        .cancel_job(cancelled.id, JobState::Cancelled, "x")
        .await
        .unwrap();

    let pushed: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let relay = |store: Store, pushed: Arc<Mutex<Vec<JobId>>>| async move {
        let mut total = 0;
        loop {
            let n = store
                .relay_unenqueued(7, Duration::ZERO, |job| {
                    let pushed = pushed.clone();
                    async move {
                        // Yield so the two relays interleave.
                        tokio::task::yield_now().await;
                        pushed.lock().unwrap().push(job.id);
                        Ok::<(), std::convert::Infallible>(())
                    }
                })
                .await
                .unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(relay(store.clone(), pushed.clone())),
        tokio::spawn(relay(store.clone(), pushed.clone())),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let pushed = pushed.lock().unwrap().clone();
    assert_eq!(a + b, 60);
    assert_eq!(pushed.len(), 60, "no job pushed twice");
    assert_eq!(pushed.iter().copied().collect::<HashSet<_>>(), all);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE enqueued_at IS NULL AND state = 'queued'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
}

/// The relay leaves rows younger than its minimum age (their request is still pushing and
/// marking them); a batch mark keeps the first mark's time and ignores vanished ids.
#[tokio::test]
async fn the_relay_skips_rows_being_pushed_and_batch_marks_keep_the_first_time() {
    let db = test_db().await;
    let store = db.store();
    let old = insert(&store, JobKind::Build, None).await;
    sqlx::query("UPDATE jobs SET created_at = now() - interval '1 minute' WHERE id = $1")
        .bind(old.id)
        .execute(store.pool())
        .await
        .unwrap();
    let fresh = insert(&store, JobKind::Build, None).await;
    let mut seen = Vec::new();
    let n = store
        .relay_unenqueued(10, Duration::from_secs(30), |job| {
            seen.push(job.id);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!((n, seen), (1, vec![old.id]), "only the row older than 30 s");
    let first = store.get_job(old.id).await.unwrap().unwrap().enqueued_at;
    assert!(first.is_some());

    let touched = store
        .mark_enqueued_many(&[old.id, fresh.id, uuid::Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(touched, 2, "the unknown id is ignored");
    let old_after = store.get_job(old.id).await.unwrap().unwrap();
    assert_eq!(
        old_after.enqueued_at, first,
        "the first mark's time is kept"
    );
    let fresh = store.get_job(fresh.id).await.unwrap().unwrap();
    assert!(fresh.enqueued_at.is_some());
    assert_eq!(store.mark_enqueued_many(&[]).await.unwrap(), 0);
}

#[tokio::test]
async fn a_failed_push_keeps_the_rest_for_the_next_round() {
    let db = test_db().await;
    let store = db.store();
    for _ in 0..3 {
        insert(&store, JobKind::Build, None).await;
    }
    let mut calls = 0;
    let err = store
        .relay_unenqueued(10, Duration::ZERO, |_job| {
            calls += 1;
            let fail = calls == 2;
            async move { if fail { Err("redis down") } else { Ok(()) } }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RelayPush { pushed: 1, .. }),
        "{err}"
    );
    let n = store
        .relay_unenqueued(10, Duration::ZERO, |_job| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert_eq!(n, 2, "the unpushed two are relayed next time");
    assert!(matches!(
        store.mark_enqueued(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn pagination_returns_every_row_once_newest_first() {
    let db = test_db().await;
    let store = db.store();
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(insert(&store, JobKind::ALL[i % 3], None).await.id);
    }
    // Same created_at for several rows: the id tiebreak must still page correctly.
    sqlx::query("UPDATE jobs SET created_at = '2026-01-01T00:00:00Z' WHERE id = ANY($1)")
        .bind(&ids[5..12])
        .execute(store.pool())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_jobs(&JobFilter::default(), cursor.as_deref(), 5)
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 5);
        seen.extend(page.items.iter().map(|j| (j.created_at, j.id)));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    let unique: HashSet<JobId> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(unique, ids.iter().copied().collect());
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        seen, sorted,
        "newest first, id descending within a timestamp"
    );
    assert!(matches!(
        store
            .list_jobs(&JobFilter::default(), Some("garbage!"), 5)
            .await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn filters_select_by_kind_state_preview_time_and_text() {
    let db = test_db().await;
    let store = db.store();
    let b1 = insert(&store, JobKind::Build, Some("org/app#1")).await;
    let l1 = insert(&store, JobKind::Launch, Some("org/app#1")).await;
    let mut special = NewJob::new(
        JobKind::Build,
        json!({"repository": "https://github.com/acme/Widget_50%.git", "image": "acme/widget"}),
    );
    special.preview = Some("acme/widget#9".into());
    special.commit_sha = Some("deadbeef".into());
    let b2 = store.insert_job(special).await.unwrap().job;
    store.start_attempt(b2.id, 1, "w").await.unwrap().unwrap();
    store
        .finish_attempt(b2.id, 1, failed("Dockerfile: COPY failed: no such file"))
        .await
        .unwrap();

    let ids = |page: slipway_shared::store::JobPage| -> HashSet<JobId> {
        page.items.into_iter().map(|j| j.id).collect()
    };
    let list = |f: JobFilter| {
        let store = store.clone();
        async move { store.list_jobs(&f, None, 100).await.unwrap() }
    };
    let set = |v: &[JobId]| v.iter().copied().collect::<HashSet<_>>();

    assert_eq!(
        ids(list(JobFilter {
            kind: Some(JobKind::Build),
            ..Default::default()
        })
        .await),
        set(&[b1.id, b2.id])
    );
    assert_eq!(
        ids(list(JobFilter {
            state: Some(JobState::Failed),
            ..Default::default()
        })
        .await),
        set(&[b2.id])
    );
    assert_eq!(
        ids(list(JobFilter {
            preview: Some("org/app#1".into()),
            ..Default::default()
        })
        .await),
        set(&[b1.id, l1.id])
    );
    assert_eq!(
        ids(list(JobFilter {
            kind: Some(JobKind::Launch),
            preview: Some("org/app#1".into()),
            state: Some(JobState::Queued),
            ..Default::default()
        })
        .await),
        set(&[l1.id])
    );
    for q in [
        "copy FAILED",
        "widget_50%",
        "DEADBEEF",
        "acme/widget#9",
        &b2.id.to_string()[24..],
    ] {
        assert_eq!(
            ids(list(JobFilter {
                q: Some(q.into()),
                ..Default::default()
            })
            .await),
            set(&[b2.id]),
            "q={q}"
        );
    }
    // LIKE wildcards in q are literal.
    assert!(
        list(JobFilter {
            q: Some("5_%".into()),
            ..Default::default()
        })
        .await
        .items
        .is_empty()
    );
    let now = Utc::now();
    assert_eq!(
        list(JobFilter {
            created_after: Some(now + ChronoDuration::hours(1)),
            ..Default::default()
        })
        .await
        .items
        .len(),
        0
    );
    assert_eq!(
        list(JobFilter {
            created_after: Some(now - ChronoDuration::hours(1)),
            created_before: Some(now + ChronoDuration::hours(1)),
            ..Default::default()
        })
        .await
        .items
        .len(),
        3
    );
}

#[tokio::test]
async fn attempts_for_many_jobs_come_back_grouped_in_order() {
    let db = common::test_db().await;
    let store = db.store();
    let a = common::insert(&store, JobKind::Build, None).await;
    let b = common::insert(&store, JobKind::Build, None).await;
    let c = common::insert(&store, JobKind::Build, None).await;
    store.start_attempt(a.id, 1, "w1").await.unwrap().unwrap();
    store.start_attempt(a.id, 2, "w2").await.unwrap().unwrap();
    store.start_attempt(b.id, 1, "w3").await.unwrap().unwrap();
    let by_job = store.attempts_for(&[a.id, b.id, c.id]).await.unwrap();
    let numbers = |id| {
        by_job.get(&id).map(|v: &Vec<_>| {
            v.iter()
                .map(|r: &slipway_shared::store::AttemptRecord| r.attempt)
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(numbers(a.id), Some(vec![1, 2]));
    assert_eq!(numbers(b.id), Some(vec![1]));
    assert_eq!(numbers(c.id), None);
}

/// State changes that end or pause a run announce the job on `slipway_logs` (live tails wake
/// on it), each from its own statement's transaction.
#[tokio::test]
async fn state_changes_are_announced_to_log_tails() {
    let db = test_db().await;
    let store = db.store();
    let mut listener = store.log_listener().await.unwrap();
    async fn next(l: &mut slipway_shared::store::LogListener) -> LogWake {
        tokio::time::timeout(Duration::from_secs(10), l.recv())
            .await
            .expect("a notification")
            .unwrap()
    }
    use slipway_shared::store::LogWake;
    let a = insert(&store, JobKind::Build, Some("org/app#1")).await;
    store.start_attempt(a.id, 1, "w").await.unwrap();
    assert!(store.finish_attempt(a.id, 1, retrying()).await.unwrap());
    assert_eq!(next(&mut listener).await, LogWake::Appended(a.id), "finish");
    assert!(
        store
            .cancel_job(a.id, JobState::Cancelled, "stop")
            .await
            .unwrap()
    );
    assert_eq!(next(&mut listener).await, LogWake::Appended(a.id), "cancel");
    let b = insert(&store, JobKind::Build, Some("org/app#2")).await;
    let c = insert(&store, JobKind::Build, Some("org/app#2")).await;
    let superseded = store
        .supersede_older("org/app#2", c.id, &[JobKind::Build])
        .await
        .unwrap();
    assert_eq!(superseded, [b.id]);
    assert_eq!(
        next(&mut listener).await,
        LogWake::Appended(b.id),
        "supersede"
    );
    // A refused change announces nothing: the next notification is a later one.
    assert!(
        !store
            .cancel_job(a.id, JobState::Cancelled, "again")
            .await
            .unwrap()
    );
    store.start_attempt(c.id, 1, "w").await.unwrap();
    assert!(store.finish_attempt(c.id, 1, failed("x")).await.unwrap());
    assert_eq!(next(&mut listener).await, LogWake::Appended(c.id));
}

/// The queues page's chart: finishes counted per minute, from jobs_finished_idx.
#[tokio::test]
async fn finished_per_minute_counts_recent_finishes_through_its_index() {
    let db = test_db().await;
    let store = db.store();
    for _ in 0..3 {
        let j = insert(&store, JobKind::Launch, None).await;
        store.start_attempt(j.id, 1, "w").await.unwrap();
        assert!(store.finish_attempt(j.id, 1, failed("x")).await.unwrap());
    }
    let unfinished = insert(&store, JobKind::Launch, None).await;
    store.start_attempt(unfinished.id, 1, "w").await.unwrap();
    let old = insert(&store, JobKind::Launch, None).await;
    store
        .cancel_job(old.id, JobState::Cancelled, "x")
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = $1")
        .bind(old.id)
        .execute(store.pool())
        .await
        .unwrap();
    let per_minute = store.finished_per_minute(60).await.unwrap();
    let total: i64 = per_minute.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3, "{per_minute:?}");
    assert!(
        per_minute.windows(2).all(|w| w[0].0 < w[1].0),
        "oldest first"
    );

    // With sequential scans ruled out, the plan shows whether the index serves the query (a
    // tiny table would otherwise hide a missing or mismatched index).
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        slipway_shared::store::FINISHED_PER_MINUTE_SQL
    ))
    .bind(60)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("jobs_finished_idx")),
        "{plan:#?}"
    );
}

#[tokio::test]
async fn a_text_search_reads_one_window_of_jobs_per_page() {
    let db = common::test_db().await;
    let store = db.store();
    // The only match is the oldest job; a window of newer jobs that do not match lies above it.
    let old = insert(&store, JobKind::Build, Some("acme/needle#1")).await;
    sqlx::query("UPDATE jobs SET created_at = now() - interval '1 day' WHERE id = $1")
        .bind(old.id)
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, kind, preview, created_at) \
         SELECT gen_random_uuid(), 'launch', 'org/hay#' || i, now() - i * interval '1 ms' \
         FROM generate_series(1, $1) AS i",
    )
    .bind(TEXT_SEARCH_WINDOW + 5)
    .execute(store.pool())
    .await
    .unwrap();
    let filter = JobFilter {
        q: Some("NEEDLE".into()),
        ..Default::default()
    };
    // The first window holds only newer jobs: no match, but a cursor to go on.
    let first = store.list_jobs(&filter, None, 50).await.unwrap();
    assert!(first.items.is_empty());
    let cursor = first.next_cursor.expect("a cursor to the next window");
    let second = store.list_jobs(&filter, Some(&cursor), 50).await.unwrap();
    assert_eq!(
        second.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![old.id]
    );
    assert_eq!(second.next_cursor, None, "the last window ends the search");
    // Without text, the list is not windowed: a full page at once.
    let plain = store
        .list_jobs(&JobFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(plain.items.len(), 50);
}

#[tokio::test]
async fn bulk_cancel_and_retry_move_only_the_jobs_they_apply_to() {
    let db = test_db().await;
    let store = db.store();
    let running = insert(&store, JobKind::Build, None).await;
    store
        .start_attempt(running.id, 1, "w")
        .await
        .unwrap()
        .unwrap();
    let queued = insert(&store, JobKind::Launch, None).await;
    let failed = insert(&store, JobKind::Cleanup, None).await;
    store
        .start_attempt(failed.id, 1, "w")
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .finish_attempt(failed.id, 1, self::failed("boom"))
            .await
            .unwrap()
    );
    let all = [running.id, queued.id, failed.id, uuid::Uuid::now_v7()];
    let mut moved = store
        .cancel_jobs(&all, JobState::Cancelled, "bulk by ops")
        .await
        .unwrap();
    moved.sort();
    let mut expected = vec![(running.id, JobKind::Build), (queued.id, JobKind::Launch)];
    expected.sort();
    assert_eq!(moved, expected, "the failed and the unknown one are left");
    assert_eq!(state(&store, failed.id).await, JobState::Failed);
    let a = &store.attempts(running.id).await.unwrap()[0];
    assert_eq!(
        a.outcome.as_deref(),
        Some("cancelled"),
        "its attempt is closed"
    );

    let retried = store.retry_jobs(&all).await.unwrap();
    let mut ids: Vec<JobId> = retried.iter().map(|j| j.id).collect();
    ids.sort();
    assert_eq!(ids.len(), 3, "two cancelled and one failed");
    assert!(
        retried
            .iter()
            .all(|j| j.state == JobState::Queued && j.error.is_none())
    );
    assert!(
        store.retry_jobs(&all).await.unwrap().is_empty(),
        "queued ones are left"
    );
    assert!(
        store
            .cancel_jobs(&all, JobState::Failed, "no")
            .await
            .is_err()
    );
}

/// A compose pipeline's service builds join on the pipeline's row: recording again replaces,
/// and of many builds recording at once, exactly the set's last sees it complete (never none).
#[tokio::test]
async fn pipeline_images_join_so_the_last_build_sees_every_image() {
    let db = test_db().await;
    let store = db.store();
    let parent = NewJob::new(JobKind::Build, json!({}));
    let parent = store.insert_job(parent).await.unwrap().job.id;
    let services: Vec<String> = (0..8).map(|i| format!("svc{i}")).collect();
    let mut tasks = Vec::new();
    for s in &services {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let seen = store
                .record_pipeline_image(parent, &s, &format!("img/{s}"), uuid::Uuid::now_v7())
                .await
                .unwrap();
            seen.len()
        }));
    }
    let mut complete = 0;
    for t in tasks {
        if t.await.unwrap() == services.len() {
            complete += 1;
        }
    }
    assert_eq!(complete, 1, "exactly one build saw the whole set");
    // A retried build records again: the set is the same size, its image replaced.
    let seen = store
        .record_pipeline_image(parent, "svc0", "img/svc0-again", uuid::Uuid::now_v7())
        .await
        .unwrap();
    assert_eq!(seen.len(), services.len());
    assert_eq!(seen["svc0"], "img/svc0-again");
    let missing = store
        .record_pipeline_image(uuid::Uuid::now_v7(), "web", "img", uuid::Uuid::now_v7())
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}
