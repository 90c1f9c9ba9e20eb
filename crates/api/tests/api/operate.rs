//! Operator control: retry, cancel, pause and resume, preview teardown.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use slipway_core::{ErrorClass, JobKind};
use slipway_shared::queue::QueueState;
use slipway_shared::store::AttemptOutcome;

#[tokio::test]
async fn a_failed_job_is_retried_with_fresh_attempts_and_pushed_again() {
    let app = spawn_app().await;
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let (status, v) = app.post(&format!("/v1/jobs/{id}/retry"), &json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a queued job cannot be retried: {v}"
    );

    app.store.start_attempt(id, 1, "w").await.unwrap().unwrap();
    let failed = AttemptOutcome::Failed {
        error: "Dockerfile step 3 failed".into(),
        class: ErrorClass::Permanent,
    };
    assert!(app.store.finish_attempt(id, 1, failed).await.unwrap());
    let (status, v) = app.post(&format!("/v1/jobs/{id}/retry"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "queued");
    assert!(v["error"].is_null());
    let row = app.store.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        row.attempt_base, 1,
        "the next run numbers its attempts after the first"
    );
    assert!(row.enqueued_at.is_some(), "pushed again");
    let queued = app
        .queue
        .get(JobKind::Build, &id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.state, Some(QueueState::Waiting));

    let (status, _) = app
        .post(
            &format!("/v1/jobs/{}/retry", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_queued_job_is_cancelled_and_leaves_the_queue() {
    let app = spawn_app().await;
    let (_, job) = app
        .post(
            "/v1/launches",
            &json!({"preview": "org/a#1", "image": "org/a:1"}),
        )
        .await;
    let id = job["id"].as_str().unwrap();
    let (status, v) = app.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "cancelled");
    assert!(
        v["error"].as_str().unwrap().contains("root"),
        "who cancelled is recorded: {v}"
    );
    let queued = app.queue.get(JobKind::Launch, id).await.unwrap();
    assert!(
        queued
            .as_ref()
            .is_none_or(|j| j.state != Some(QueueState::Waiting)),
        "{queued:?}"
    );
    let (status, v) = app.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "already ended: {v}");
    // A cancelled job can be retried.
    let (status, _) = app.post(&format!("/v1/jobs/{id}/retry"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn queues_pause_and_resume() {
    let app = spawn_app().await;
    let (status, v) = app.post("/v1/queues/launch/pause", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["paused"], true);
    assert!(app.queue.is_paused(JobKind::Launch).await.unwrap());
    assert!(!app.queue.is_paused(JobKind::Build).await.unwrap());
    let (_, v) = app.get("/v1/queues").await;
    assert_eq!(v["items"][1]["paused"], true);
    let (status, v) = app.post("/v1/queues/launch/resume", &json!({})).await;
    assert_eq!(
        (status, v["paused"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (status, v) = app.post("/v1/queues/bogus/pause", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn deleting_a_preview_enqueues_its_cleanup_and_supersedes_its_launch() {
    let app = spawn_app().await;
    let (_, launch) = app
        .post(
            "/v1/launches",
            &json!({"preview": "org/app#5", "image": "org/app:1"}),
        )
        .await;
    let resp = app
        .http
        .delete(format!("{}/v1/previews/org%2Fapp%235", app.base))
        .bearer_auth(ENQUEUE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let cleanup: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(cleanup["kind"], "cleanup");
    assert_eq!(cleanup["preview"], "org/app#5");
    let (_, old) = app
        .get(&format!("/v1/jobs/{}", launch["id"].as_str().unwrap()))
        .await;
    assert_eq!(old["state"], "superseded");
}
