//! Reading: one job with attempts, filtered and paginated lists, previews, queues.

use crate::helpers::*;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use slipway_shared::store::{AttemptOutcome, PreviewUpsert};
use std::collections::HashSet;

#[tokio::test]
async fn a_job_shows_its_attempts_errors_and_timings() {
    let app = spawn_app().await;
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id = job["id"].as_str().unwrap().parse().unwrap();
    // Play a worker: attempt 1 fails transiently, attempt 2 succeeds.
    app.store
        .start_attempt(id, 1, "worker-a")
        .await
        .unwrap()
        .unwrap();
    let retry_at = Utc::now();
    let outcome = AttemptOutcome::Retrying {
        error: "registry timeout".into(),
        retry_at,
    };
    assert!(app.store.finish_attempt(id, 1, outcome).await.unwrap());
    app.store
        .start_attempt(id, 2, "worker-b")
        .await
        .unwrap()
        .unwrap();
    let result = json!({"image": "r/org/app:1", "digest": format!("sha256:{}", "a".repeat(64))});
    assert!(
        app.store
            .finish_attempt(
                id,
                2,
                AttemptOutcome::Succeeded {
                    result: result.clone()
                }
            )
            .await
            .unwrap()
    );

    let (status, v) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["result"], result);
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"], "retrying");
    assert_eq!(attempts[0]["error"], "registry timeout");
    assert_eq!(attempts[0]["worker_id"], "worker-a");
    assert_eq!(attempts[1]["outcome"], "succeeded");
    assert!(v["started_at"].is_string() && v["finished_at"].is_string());

    for bad in [
        "/v1/jobs/not-a-uuid",
        &format!("/v1/jobs/{}", uuid::Uuid::now_v7()),
    ] {
        let (status, v) = app.get(bad).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn lists_filter_and_paginate_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let mut all = HashSet::new();
    for i in 0..7 {
        let (_, v) = app
            .post(
                "/v1/launches",
                &json!({"preview": format!("org/app#{}", i % 2), "image": "org/app:1"}),
            )
            .await;
        all.insert(v["id"].as_str().unwrap().to_owned());
    }
    let (_, b) = app.post("/v1/builds", &build_body()).await;
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?kind=launch&limit=3&cursor={c}"),
            None => "/v1/jobs?kind=launch&limit=3".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["kind"], "launch");
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "repeat"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // Launches of one preview supersede the older ones, but every job is still listed.
    assert_eq!(seen, all);
    let (_, v) = app.get("/v1/jobs?preview=org%2Fapp%230&state=queued").await;
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        1,
        "only the newest launch of #0 is queued: {v}"
    );
    let (_, v) = app
        .get(&format!("/v1/jobs?q={}", &b["id"].as_str().unwrap()[..13]))
        .await;
    assert_eq!(v["items"][0]["id"], b["id"]);
    for bad in [
        "/v1/jobs?state=bogus",
        "/v1/jobs?kind=x",
        "/v1/jobs?limit=0",
        "/v1/jobs?cursor=zzz",
        "/v1/jobs?created_after=yesterday",
        "/v1/jobs?nope=1",
    ] {
        let (status, v) = app.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v["error"]["code"].is_string());
    }
}

#[tokio::test]
async fn previews_are_listed_and_shown_by_encoded_key() {
    let app = spawn_app().await;
    let (_, job) = app
        .post(
            "/v1/launches",
            &json!({"preview": "org/app#42", "image": "org/app:1"}),
        )
        .await;
    app.store
        .upsert_preview(&PreviewUpsert {
            key: "org/app#42".into(),
            namespace: "slipway-pv-org-app-42-abcd1234".into(),
            url: Some("http://pr-42-app.example.test".into()),
            image: Some("org/app:1".into()),
            commit_sha: Some(SHA.into()),
            status: "ready".into(),
            pods: vec!["app-1".into(), "app-2".into()],
            expires_at: None,
            last_job_id: job["id"].as_str().unwrap().parse().ok(),
        })
        .await
        .unwrap();
    let (status, v) = app.get("/v1/previews/org%2Fapp%2342").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["url"], "http://pr-42-app.example.test");
    assert_eq!(v["pods"], json!(["app-1", "app-2"]));
    assert_eq!(v["commit"], SHA);
    let (_, list) = app.get("/v1/previews").await;
    assert_eq!(list["items"][0]["key"], "org/app#42");
    let (status, _) = app.get("/v1/previews/org%2Fnope%231").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn previews_filter_by_status_and_repository() {
    let app = spawn_app().await;
    for (key, status) in [
        ("org/app#1", "ready"),
        ("org/app#2", "failed"),
        ("org/app_x#3", "ready"),
        ("org/other#4", "ready"),
    ] {
        app.store
            .upsert_preview(&PreviewUpsert {
                key: key.into(),
                namespace: format!("ns-{}", key.replace(['/', '#'], "-")),
                status: status.into(),
                ..PreviewUpsert::default()
            })
            .await
            .unwrap();
    }
    let keys = |v: &serde_json::Value| -> HashSet<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, v) = app.get("/v1/previews?repository=org%2Fapp").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // `_` is matched literally: org/app_x is another repository.
    assert_eq!(
        keys(&v),
        HashSet::from(["org/app#1".into(), "org/app#2".into()])
    );
    let (_, v) = app
        .get("/v1/previews?repository=https%3A%2F%2Fgithub.com%2Forg%2Fapp.git&status=ready")
        .await;
    assert_eq!(keys(&v), HashSet::from(["org/app#1".into()]));
    let (_, v) = app.get("/v1/previews?status=failed").await;
    assert_eq!(keys(&v), HashSet::from(["org/app#2".into()]));
    let (status, v) = app.get("/v1/previews?repository=app").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "repository");
}

#[tokio::test]
async fn queues_show_counts_and_the_oldest_waiting_job() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.post(
            "/v1/cleanups",
            &json!({"preview": format!("p-{}", uuid::Uuid::new_v4())}),
        )
        .await;
    }
    let (status, v) = app.get("/v1/queues").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|q| q["queue"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["build", "launch", "cleanup"]
    );
    let cleanup = &items[2];
    assert_eq!(cleanup["counts"]["waiting"], 3, "{cleanup}");
    assert_eq!(cleanup["paused"], false);
    assert!(cleanup["oldest_waiting_age_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(items[0]["counts"]["waiting"], 0);
    assert!(items[0]["oldest_waiting_age_s"].is_null());
}
