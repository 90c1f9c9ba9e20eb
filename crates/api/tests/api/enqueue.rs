//! Enqueue: each kind is recorded and pushed; repeats are idempotent; newer work supersedes.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use slipway_core::{JobKind, JobState};
use std::time::Duration;

#[tokio::test]
async fn each_kind_is_recorded_then_pushed_to_its_queue() {
    let app = spawn_app().await;
    let (status, build) = app.post("/v1/builds", &build_body()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{build}");
    assert_eq!(build["kind"], "build");
    assert_eq!(build["state"], "queued");
    assert_eq!(build["commit"], SHA);
    assert_eq!(
        build["request"]["dockerfile"], "Dockerfile",
        "defaults applied: {build}"
    );
    let id = build["id"].as_str().unwrap();
    assert_eq!(build["links"]["self"], format!("/v1/jobs/{id}"));
    assert_eq!(build["links"]["logs"], format!("/v1/jobs/{id}/logs"));

    let launches = [
        json!({"preview": "org/app#1", "image": "ghcr.io/org/app:1.0", "port": 3000}),
        json!({"preview": "org/app#2", "from_build": id}),
    ];
    let mut ids = vec![(JobKind::Build, id.to_owned())];
    for body in &launches {
        let (status, v) = app.post("/v1/launches", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        ids.push((JobKind::Launch, v["id"].as_str().unwrap().to_owned()));
    }
    let (status, v) = app
        .post("/v1/cleanups", &json!({"preview": "org/app#9"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    ids.push((JobKind::Cleanup, v["id"].as_str().unwrap().to_owned()));
    let (status, v) = app
        .post("/v1/pipelines", &json!({"preview": "org/app#3", "repository": "https://github.com/org/app.git", "commit": SHA,
            "launch": {"port": 8081}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["kind"], "build");
    assert_eq!(
        v["request"]["then_launch"]["port"], 8081,
        "the launch rides with the build: {v}"
    );
    ids.push((JobKind::Build, v["id"].as_str().unwrap().to_owned()));

    for (kind, id) in ids {
        let queued = app.queue.get(kind, &id).await.unwrap();
        assert!(queued.is_some(), "{kind} job {id} is in Redis");
        // The mark is written off the request path, in a batch, right after the push.
        let row = eventually(
            Duration::from_secs(10),
            "the job marked enqueued",
            || async {
                app.store
                    .get_job(id.parse().unwrap())
                    .await
                    .unwrap()
                    .filter(|r| r.enqueued_at.is_some())
            },
        )
        .await;
        assert_eq!(row.kind, kind);
    }
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_job() {
    let app = spawn_app().await;
    let key = "catalog-request-42".to_owned();
    let send = |body: serde_json::Value| {
        let (app, key) = (&app, key.clone());
        async move {
            let resp = app
                .http
                .post(format!("{}/v1/builds", app.base))
                .bearer_auth(ENQUEUE)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                resp.status(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (s1, first) = send(build_body()).await;
    let (s2, again) = send(build_body()).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(first["id"], again["id"]);
    // The same key with a different request is a client bug, not a silent reuse.
    let mut other = build_body();
    other["image"] = json!("org/other");
    let (s3, err) = send(other).await;
    assert_eq!(s3, StatusCode::CONFLICT, "{err}");
    // Ten concurrent repeats: one job.
    let results = futures::future::join_all((0..10).map(|_| send(build_body()))).await;
    assert!(
        results
            .iter()
            .all(|(s, v)| *s == StatusCode::OK && v["id"] == first["id"])
    );
    let (_, list) = app.get("/v1/jobs?kind=build").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_pipeline_is_idempotent_per_preview_and_commit_and_a_new_commit_supersedes() {
    let app = spawn_app().await;
    let body = |sha: &str| json!({"preview": "org/app#7", "repository": "https://github.com/org/app.git", "commit": sha});
    let (s1, first) = app.post("/v1/pipelines", &body(SHA)).await;
    let (s2, again) = app.post("/v1/pipelines", &body(SHA)).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(first["id"], again["id"]);

    let newer = "89abcdef0123456789abcdef0123456789abcdef";
    let (s3, second) = app.post("/v1/pipelines", &body(newer)).await;
    assert_eq!(s3, StatusCode::ACCEPTED);
    assert_ne!(second["id"], first["id"]);
    let (_, old) = app
        .get(&format!("/v1/jobs/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(old["state"], "superseded", "{old}");
    assert!(
        old["error"]
            .as_str()
            .unwrap()
            .contains(second["id"].as_str().unwrap())
    );
    // Gone from the queue too, so no worker starts it.
    let queued = app
        .queue
        .get(JobKind::Build, first["id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(
        queued
            .as_ref()
            .is_none_or(|j| j.state != Some(slipway_shared::queue::QueueState::Waiting)),
        "{queued:?}"
    );
    // The newer pipeline is untouched.
    let row = app
        .store
        .get_job(second["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, JobState::Queued);
}

#[tokio::test]
async fn a_pipeline_names_its_source() {
    let app = spawn_app().await;
    let body = |source: Value| json!({"preview": "org/app#8", "repository": "https://github.com/org/app.git", "commit": SHA, "source": source});
    let (s, job) = app
        .post("/v1/pipelines", &body(json!({"type": "auto"})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["request"]["source"], "auto", "{job}");
    // A compose app and a Helm chart: the first job carries the validated source.
    let body = |source: Value, pr: u32| json!({"preview": format!("org/app#{pr}"), "repository": "https://github.com/org/app.git", "commit": SHA, "source": source});
    let (s, job) = app
        .post(
            "/v1/pipelines",
            &body(
                json!({"type": "compose", "service": "web", "file": "deploy/compose.yaml"}),
                9,
            ),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        job["request"]["composition"],
        json!({"type": "compose", "file": "deploy/compose.yaml", "service": "web", "port": null}),
        "{job}"
    );
    let (s, job) = app
        .post(
            "/v1/pipelines",
            &body(
                json!({"type": "helm", "chart": "deploy/chart", "service": "web",
                         "values": ["deploy/preview.yaml"]}),
                10,
            ),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["request"]["composition"]["type"], "helm", "{job}");
    assert_eq!(
        job["request"]["composition"]["image_repository"],
        "image.repository"
    );
    assert_eq!(
        job["request"]["composition"]["port"], 8080,
        "the launch port"
    );
    let body = |source: Value| json!({"preview": "org/app#8", "repository": "https://github.com/org/app.git", "commit": SHA, "source": source});
    for (source, field) in [
        (json!({"type": "helm"}), "source.chart"),
        (json!({"type": "compose"}), "source.service"),
        (
            json!({"type": "compose", "service": "web", "chart": "c"}),
            "source.chart",
        ),
        (json!({"type": "kustomize"}), "source.type"),
        (json!({"type": 3}), "source.type"),
        (json!({}), "source.type"),
        (json!("auto"), "source"),
    ] {
        let (s, err) = app.post("/v1/pipelines", &body(source.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{source}: {err}");
        assert_eq!(err["error"]["field"], field, "{source}: {err}");
    }
}

#[tokio::test]
async fn a_launch_from_a_missing_or_failed_build_is_refused() {
    let app = spawn_app().await;
    let missing = uuid::Uuid::now_v7();
    let (status, v) = app
        .post(
            "/v1/launches",
            &json!({"preview": "p", "from_build": missing}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "from_build");
    let (_, cleanup) = app.post("/v1/cleanups", &json!({"preview": "p"})).await;
    let (status, v) = app
        .post(
            "/v1/launches",
            &json!({"preview": "p", "from_build": cleanup["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a build")
    );
}
