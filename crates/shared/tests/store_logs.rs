//! Job logs: batches re-sent after a worker crash end complete without duplicates, reads are
//! ordered and resumable, and each new batch wakes listeners via NOTIFY.

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{insert, test_db};
use slipway_core::JobKind;
use slipway_shared::store::{LogLine, LogWake};

fn lines(range: std::ops::Range<i64>) -> Vec<LogLine> {
    range
        .map(|seq| LogLine {
            seq,
            ts: Utc.timestamp_opt(1_764_000_000 + seq, 0).unwrap(),
            stream: if seq % 2 == 0 { "stdout" } else { "stderr" }.into(),
            text: format!("line {seq}"),
        })
        .collect()
}

#[tokio::test]
async fn logs_resent_after_a_crash_have_no_gap_and_no_duplicate() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Build, None).await;
    assert_eq!(
        store.append_logs(job.id, 1, &lines(0..40)).await.unwrap(),
        40
    );
    // The worker died after storing 0..40; its successor re-reads the pod log from the start.
    assert_eq!(
        store.append_logs(job.id, 1, &lines(0..100)).await.unwrap(),
        60
    );
    assert_eq!(
        store.append_logs(job.id, 1, &lines(0..100)).await.unwrap(),
        0
    );
    assert_eq!(store.append_logs(job.id, 1, &[]).await.unwrap(), 0);
    // Attempt 2 numbers its own lines from 0 again.
    assert_eq!(store.append_logs(job.id, 2, &lines(0..5)).await.unwrap(), 5);

    let all = store.read_logs(job.id, None, 1000).await.unwrap();
    assert_eq!(all.len(), 105);
    let keys: Vec<(i32, i64)> = all.iter().map(|l| (l.attempt, l.seq)).collect();
    let expected: Vec<(i32, i64)> = (0..100)
        .map(|s| (1, s))
        .chain((0..5).map(|s| (2, s)))
        .collect();
    assert_eq!(
        keys, expected,
        "ordered by (attempt, seq), no gap, no duplicate"
    );
    assert_eq!(all[3].text, "line 3");
    assert_eq!(all[3].stream, "stderr");
    assert_eq!(all[3].ts, Utc.timestamp_opt(1_764_000_003, 0).unwrap());

    // Paging through with `after` yields the same sequence.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.read_logs(job.id, after, 17).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.attempt, last.seq));
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn nul_bytes_in_lines_are_stored_not_rejected() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Build, None).await;
    let line = LogLine {
        seq: 0,
        ts: Utc::now(),
        stream: "stdout".into(),
        text: "a\0b".into(),
    };
    assert_eq!(store.append_logs(job.id, 1, &[line]).await.unwrap(), 1);
    let stored = store.read_logs(job.id, None, 10).await.unwrap();
    assert_eq!(stored[0].text, "a\u{FFFD}b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_batch_notifies_listeners_with_the_job_id() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Build, None).await;
    let other = insert(&store, JobKind::Build, None).await;
    let mut listener = store.log_listener().await.unwrap();

    store.append_logs(job.id, 1, &lines(0..3)).await.unwrap();
    let wake = tokio::time::timeout(Duration::from_secs(30), listener.recv())
        .await
        .expect("notification within 30 s")
        .unwrap();
    assert_eq!(wake, LogWake::Appended(job.id));

    // A batch that adds nothing new does not notify; the next real one does.
    store.append_logs(job.id, 1, &lines(0..3)).await.unwrap();
    store.append_logs(other.id, 1, &lines(0..1)).await.unwrap();
    let wake = tokio::time::timeout(Duration::from_secs(30), listener.recv())
        .await
        .expect("notification within 30 s")
        .unwrap();
    assert_eq!(wake, LogWake::Appended(other.id));
}
