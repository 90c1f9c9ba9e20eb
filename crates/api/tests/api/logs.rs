//! Logs: pages, plain text, and a live SSE tail fed by NOTIFY that ends with the job.

use crate::helpers::*;
use chrono::Utc;
use futures::StreamExt;
use reqwest::StatusCode;
use slipway_shared::store::{AttemptOutcome, LogLine};
use std::time::Duration;

fn lines(from: i64, to: i64) -> Vec<LogLine> {
    (from..to)
        .map(|seq| LogLine {
            seq,
            ts: Utc::now(),
            stream: "stdout".into(),
            text: format!("line {seq}"),
        })
        .collect()
}

#[tokio::test]
async fn logs_are_read_in_pages_and_as_text() {
    let app = spawn_app().await;
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store.start_attempt(id, 1, "w").await.unwrap();
    app.store.append_logs(id, 1, &lines(0, 25)).await.unwrap();

    let (status, page) = app.get(&format!("/v1/jobs/{id}/logs?limit=10")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["lines"].as_array().unwrap().len(), 10);
    assert_eq!(page["lines"][0]["text"], "line 0");
    assert_eq!(page["next"], "1:9");
    assert_eq!(page["next_seq"], 10);
    assert_eq!(page["complete"], false);
    let (_, rest) = app
        .get(&format!("/v1/jobs/{id}/logs?after=1:9&limit=100"))
        .await;
    assert_eq!(rest["lines"].as_array().unwrap().len(), 15);
    assert_eq!(rest["complete"], false, "the job is still running");

    let text = app
        .http
        .get(format!("{}/v1/jobs/{id}/logs", app.base))
        .bearer_auth(READ)
        .header("Accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 25);
    assert!(text.starts_with("line 0\nline 1\n"));
    let (status, _) = app.get(&format!("/v1/jobs/{id}/logs?after=nonsense")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn follow_streams_every_line_in_order_and_ends_with_the_job() {
    let app = spawn_app().await;
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store.start_attempt(id, 1, "w").await.unwrap();
    app.store.append_logs(id, 1, &lines(0, 5)).await.unwrap();

    let resp = app
        .http
        .get(format!("{}/v1/jobs/{id}/logs?follow=true", app.base))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let reader = tokio::spawn(async move {
        let mut body = String::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        body
    });
    // A worker writes more in batches, then finishes.
    for batch in 1..4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.store
            .append_logs(id, 1, &lines(batch * 5, batch * 5 + 5))
            .await
            .unwrap();
    }
    let done = AttemptOutcome::Succeeded {
        result: serde_json::json!({}),
    };
    assert!(app.store.finish_attempt(id, 1, done).await.unwrap());
    let body = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("stream ends with the job")
        .unwrap();
    let data: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .filter(|v: &serde_json::Value| v.get("seq").is_some())
        .collect();
    let seqs: Vec<i64> = data.iter().map(|v| v["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..20).collect::<Vec<_>>(),
        "every line once, in order"
    );
    assert!(
        body.contains("id: 1:19"),
        "events carry their position for Last-Event-ID"
    );
    assert!(body.contains("event: end"), "{body}");
    assert!(body.contains("succeeded"));

    // Resuming from Last-Event-ID sends only what came after.
    let resumed = app
        .http
        .get(format!("{}/v1/jobs/{id}/logs?follow=true", app.base))
        .bearer_auth(READ)
        .header("Last-Event-ID", "1:17")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let seqs: Vec<&str> = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(seqs, ["1:18", "1:19"]);
}

/// A job that ends without writing another line still ends its tails at once: the state
/// change notifies them (the safety poll is 20 s, far beyond this test's deadline).
#[tokio::test]
async fn a_tail_ends_promptly_when_its_job_ends_without_new_lines() {
    let app = spawn_app().await;
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store.start_attempt(id, 1, "w").await.unwrap();
    app.store.append_logs(id, 1, &lines(0, 3)).await.unwrap();

    let resp = app
        .http
        .get(format!("{}/v1/jobs/{id}/logs?follow=true", app.base))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    // Read until the three stored lines arrived: the tail is now asleep waiting for news.
    let mut body = String::new();
    while !body.contains("id: 1:2") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("stored lines arrive")
            .expect("stream open")
            .unwrap();
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        app.store
            .cancel_job(id, slipway_core::JobState::Cancelled, "stop")
            .await
            .unwrap()
    );
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut rest = String::new();
        while let Some(chunk) = stream.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        rest
    })
    .await
    .expect("the tail ends within 5 s of the job's end, without a poll");
    assert!(rest.contains("event: end"), "{rest}");
    assert!(rest.contains(r#"{"state":"cancelled"}"#), "{rest}");
}
