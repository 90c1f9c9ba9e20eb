//! The preview registry: upsert keeps what is not restated, delete is a soft delete that an
//! upsert revives, and listing pages through every preview once.

mod common;

use std::collections::HashSet;

use chrono::{Duration as ChronoDuration, Utc};
use common::{insert, test_db};
use slipway_core::JobKind;
use slipway_shared::store::{PreviewUpsert, StoreError};

fn preview(key: &str) -> PreviewUpsert {
    PreviewUpsert {
        key: key.into(),
        namespace: format!("slipway-pv-{}", key.replace(['/', '#'], "-")),
        status: "launching".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn upsert_get_and_soft_delete() {
    let db = test_db().await;
    let store = db.store();
    let job = insert(&store, JobKind::Launch, Some("org/app#42")).await;
    let expires = Utc::now() + ChronoDuration::hours(72);
    let mut p = preview("org/app#42");
    p.image = Some("registry/org/app@sha256:1".into());
    p.commit_sha = Some("abc".into());
    p.expires_at = Some(expires);
    p.last_job_id = Some(job.id);
    let created = store.upsert_preview(&p).await.unwrap().expect("written");
    assert_eq!(created.status, "launching");
    assert!(created.url.is_none());

    // A later update restates only what changed; the rest is kept.
    let mut ready = preview("org/app#42");
    ready.status = "ready".into();
    ready.url = Some("http://pr-42-app.example".into());
    ready.pods = vec!["app-1".into(), "app-2".into()];
    let updated = store
        .upsert_preview(&ready)
        .await
        .unwrap()
        .expect("written");
    assert_eq!(updated.status, "ready");
    assert_eq!(updated.url.as_deref(), Some("http://pr-42-app.example"));
    assert_eq!(updated.image.as_deref(), Some("registry/org/app@sha256:1"));
    assert_eq!(updated.commit_sha.as_deref(), Some("abc"));
    assert_eq!(updated.last_job_id, Some(job.id));
    assert_eq!(updated.pods, vec!["app-1", "app-2"]);
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(
        updated.expires_at.map(|t| t.timestamp_micros()),
        Some(expires.timestamp_micros())
    );
    assert_eq!(
        store.get_preview("org/app#42").await.unwrap(),
        Some(updated)
    );
    assert!(store.get_preview("nope").await.unwrap().is_none());

    assert!(store.mark_preview_deleted("org/app#42").await.unwrap());
    assert!(
        !store.mark_preview_deleted("org/app#42").await.unwrap(),
        "already deleted"
    );
    assert!(!store.mark_preview_deleted("nope").await.unwrap());
    let deleted = store.get_preview("org/app#42").await.unwrap().unwrap();
    assert!(deleted.deleted_at.is_some());
    assert!(deleted.pods.is_empty());
    assert!(
        store
            .list_previews(false, None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store
            .list_previews(true, None, 10)
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Launching it again revives it.
    let revived = store
        .upsert_preview(&preview("org/app#42"))
        .await
        .unwrap()
        .expect("written");
    assert!(revived.deleted_at.is_none());
}

#[tokio::test]
async fn listing_pages_through_every_preview_once() {
    let db = test_db().await;
    let store = db.store();
    let mut keys = HashSet::new();
    for i in 0..12 {
        let key = format!("org/app#{i}");
        store.upsert_preview(&preview(&key)).await.unwrap();
        keys.insert(key);
    }
    // Identical timestamps must still page by key.
    sqlx::query("UPDATE previews SET created_at = '2026-01-01T00:00:00Z'")
        .execute(store.pool())
        .await
        .unwrap();
    store.mark_preview_deleted("org/app#3").await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_previews(true, cursor.as_deref(), 5)
            .await
            .unwrap();
        seen.extend(page.items.into_iter().map(|p| p.key));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), keys);
    let live = store.list_previews(false, None, 100).await.unwrap();
    assert_eq!(live.items.len(), 11);
    assert!(live.next_cursor.is_none());
    assert!(matches!(
        store.list_previews(true, Some("x"), 5).await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn a_superseded_or_cancelled_launch_cannot_write_the_preview() {
    let db = test_db().await;
    let store = db.store();
    let key = "org/app#7";
    let old = insert(&store, JobKind::Launch, Some(key)).await;
    let mut write = preview(key);
    write.last_job_id = Some(old.id);
    write.status = "deploying".into();
    assert!(store.upsert_preview(&write).await.unwrap().is_some());

    // A teardown supersedes the launch and deletes the preview...
    let cleanup = insert(&store, JobKind::Cleanup, Some(key)).await;
    let superseded = store
        .supersede_older(key, cleanup.id, &[JobKind::Launch])
        .await
        .unwrap();
    assert_eq!(superseded, vec![old.id]);
    assert!(store.mark_preview_deleted(key).await.unwrap());
    // ...so the old launch's late `ready` does not bring it back.
    write.status = "ready".into();
    assert!(store.upsert_preview(&write).await.unwrap().is_none());
    let row = store.get_preview(key).await.unwrap().unwrap();
    assert_eq!(row.status, "deleted");
    assert!(row.deleted_at.is_some());

    // A cancelled launch is refused too; a live one writes.
    let cancelled = insert(&store, JobKind::Launch, Some(key)).await;
    assert!(
        store
            .cancel_job(cancelled.id, slipway_core::JobState::Cancelled, "operator")
            .await
            .unwrap()
    );
    write.last_job_id = Some(cancelled.id);
    assert!(store.upsert_preview(&write).await.unwrap().is_none());
    let live = insert(&store, JobKind::Launch, Some(key)).await;
    write.last_job_id = Some(live.id);
    let row = store
        .upsert_preview(&write)
        .await
        .unwrap()
        .expect("written");
    assert_eq!(row.status, "ready");
    assert!(row.deleted_at.is_none());
}

/// The gauge of previews past their expiry reads expiry as the sweep does: an explicit
/// `expires_at`, the default time to live after the last deploy without one, or the idle limit;
/// deleted previews do not count.
#[tokio::test]
async fn previews_past_expiry_counts_live_ones_and_the_longest_overdue() {
    let db = test_db().await;
    let store = db.store();
    let (ttl, idle) = (
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(1800),
    );
    let none = store.previews_past_expiry(ttl, Some(idle)).await.unwrap();
    assert_eq!((none.count, none.longest_overdue.as_secs()), (0, 0));
    for key in ["org/a#1", "org/a#2", "org/a#3", "org/a#4", "org/a#5"] {
        store
            .upsert_preview(&preview(key))
            .await
            .unwrap()
            .expect("written");
    }
    let set = |key: &'static str, sql: &'static str| {
        let pool = store.pool().clone();
        async move {
            sqlx::query(sql).bind(key).execute(&pool).await.unwrap();
        }
    };
    // Expired 10 minutes ago by its own time to live.
    set("org/a#1", "UPDATE previews SET expires_at = now() - interval '10 minutes', updated_at = now() WHERE key = $1").await;
    // No expiry of its own: the default hour after its last deploy, 2 hours ago.
    set(
        "org/a#2",
        "UPDATE previews SET updated_at = now() - interval '2 hours' WHERE key = $1",
    )
    .await;
    // Expires tomorrow, but idle for 40 minutes (the idle limit is 30).
    set("org/a#3", "UPDATE previews SET expires_at = now() + interval '1 day', updated_at = now() - interval '40 minutes' WHERE key = $1").await;
    // Not yet: deployed a moment ago.
    set(
        "org/a#4",
        "UPDATE previews SET expires_at = now() + interval '1 day' WHERE key = $1",
    )
    .await;
    // Long expired, but deleted.
    set("org/a#5", "UPDATE previews SET expires_at = now() - interval '1 day', deleted_at = now() WHERE key = $1").await;

    let past = store.previews_past_expiry(ttl, Some(idle)).await.unwrap();
    assert_eq!(past.count, 3, "{past:?}");
    // The one deployed 2 hours ago went idle (30 minutes) before its time to live (1 hour).
    let overdue = past.longest_overdue.as_secs();
    assert!(
        (5390..5460).contains(&overdue),
        "idle since 90 minutes: {past:?}"
    );
    // Without an idle limit the idle one is not past its expiry, and the default time to
    // live decides for the other.
    let past = store.previews_past_expiry(ttl, None).await.unwrap();
    assert_eq!(past.count, 2, "{past:?}");
    let overdue = past.longest_overdue.as_secs();
    assert!(
        (3590..3660).contains(&overdue),
        "expired an hour ago: {past:?}"
    );
}

/// An extension moves a live preview's expiry later from its current expiry (or from now when
/// it has none or is past it), never beyond the cap from now, leaves `updated_at` (the idle
/// clock) alone, and refuses ended or unknown previews.
#[tokio::test]
async fn extending_an_expiry_counts_from_the_later_of_now_and_the_expiry_and_is_capped() {
    let db = test_db().await;
    let store = db.store();
    let hour = std::time::Duration::from_secs(3600);
    let cap = 168 * hour;
    for key in ["org/e#1", "org/e#2", "org/e#3", "org/e#4", "org/e#5"] {
        store
            .upsert_preview(&preview(key))
            .await
            .unwrap()
            .expect("written");
    }
    let pool = store.pool().clone();
    let set = |key: &'static str, sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql).bind(key).execute(&pool).await.unwrap();
        }
    };
    set(
        "org/e#1",
        "UPDATE previews SET expires_at = now() + interval '2 hours' WHERE key = $1",
    )
    .await;
    set(
        "org/e#2",
        "UPDATE previews SET expires_at = now() - interval '5 hours' WHERE key = $1",
    )
    .await;
    set(
        "org/e#3",
        "UPDATE previews SET expires_at = now() + interval '167 hours' WHERE key = $1",
    )
    .await;
    set(
        "org/e#5",
        "UPDATE previews SET expires_at = now() + interval '200 hours' WHERE key = $1",
    )
    .await;
    store.mark_preview_deleted("org/e#4").await.unwrap();
    let before = store.get_preview("org/e#1").await.unwrap().unwrap();

    let hours_from_now = |r: &slipway_shared::store::PreviewRecord| {
        (r.expires_at.unwrap() - Utc::now()).num_minutes() as f64 / 60.0
    };
    let one = store
        .extend_preview_expiry("org/e#1", 4 * hour, cap)
        .await
        .unwrap()
        .expect("live");
    assert!(
        (5.9..6.01).contains(&hours_from_now(&one)),
        "2h + 4h: {one:?}"
    );
    assert_eq!(
        one.updated_at, before.updated_at,
        "an extension is not a deploy"
    );
    let two = store
        .extend_preview_expiry("org/e#2", hour, cap)
        .await
        .unwrap()
        .expect("live");
    assert!(
        (0.9..1.01).contains(&hours_from_now(&two)),
        "from now, not from the past: {two:?}"
    );
    let three = store
        .extend_preview_expiry("org/e#3", 24 * hour, cap)
        .await
        .unwrap()
        .expect("live");
    assert!(
        (167.9..168.01).contains(&hours_from_now(&three)),
        "capped at 168h: {three:?}"
    );
    let five = store
        .extend_preview_expiry("org/e#5", hour, cap)
        .await
        .unwrap()
        .expect("live");
    assert!(
        (199.9..200.01).contains(&hours_from_now(&five)),
        "never shortened: {five:?}"
    );
    assert!(
        store
            .extend_preview_expiry("org/e#4", hour, cap)
            .await
            .unwrap()
            .is_none(),
        "a deleted preview is not extended"
    );
    assert!(
        store
            .extend_preview_expiry("org/none#1", hour, cap)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_preview("org/e#4")
            .await
            .unwrap()
            .unwrap()
            .expires_at
            .is_none(),
        "nothing written to the deleted one"
    );
}
