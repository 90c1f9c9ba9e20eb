//! The probe server over real HTTP: liveness, readiness naming the failed dependency (and no
//! once shutdown began), and Prometheus metrics from the process-wide recorder.

mod common;

use std::net::SocketAddr;

use common::test_db;
use slipway_shared::health::{self, PostgresCheck, ReadinessCheck};
use slipway_shared::store::Store;
use tokio_util::sync::CancellationToken;

struct Broken;

#[async_trait::async_trait]
impl ReadinessCheck for Broken {
    fn name(&self) -> &str {
        "redis"
    }
    async fn check(&self) -> Result<(), String> {
        Err("connection refused".into())
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_over_http() {
    let db = test_db().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = health::serve(
        any_port(),
        vec![Box::new(PostgresCheck::new(db.store()))],
        CancellationToken::new(),
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    assert_ne!(server.addr.port(), 0);
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    let live = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(live.status(), 200);

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");

    metrics::counter!("slipway_health_test_total", "kind" => "build").increment(3);
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("slipway_health_test_total{kind=\"build\"} 3"),
        "metrics output: {text}"
    );

    stop.send(()).unwrap();
    server.task.await.unwrap().unwrap();
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "server stopped"
    );
}

#[tokio::test]
async fn readyz_is_503_and_names_what_failed() {
    let db = test_db().await;
    // A store whose database is gone: Postgres is unreachable for this check.
    let gone = Store::connect_with(db.url(), 1).await.unwrap();
    let name = db.name().to_owned();
    drop(db);
    let server = health::serve(
        any_port(),
        vec![Box::new(PostgresCheck::new(gone)), Box::new(Broken)],
        CancellationToken::new(),
        std::future::pending(),
    )
    .await
    .unwrap();
    let resp = reqwest::get(format!("http://{}/readyz", server.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    let failed: Vec<&str> = body["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["postgres", "redis"], "database {name}");
    assert_eq!(body["checks"]["redis"], "connection refused");
    // Liveness does not depend on dependencies.
    let live = reqwest::get(format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    server.task.abort();
}

/// A check that would hang: readiness must not ask it once the process is stopping.
struct Hanging;

#[async_trait::async_trait]
impl ReadinessCheck for Hanging {
    fn name(&self) -> &str {
        "postgres"
    }
    async fn check(&self) -> Result<(), String> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn readyz_says_no_at_once_when_shutdown_begins() {
    let draining = CancellationToken::new();
    let server = health::serve(
        any_port(),
        vec![Box::new(Hanging)],
        draining.clone(),
        std::future::pending(),
    )
    .await
    .unwrap();
    draining.cancel();
    let started = std::time::Instant::now();
    let resp = reqwest::get(format!("http://{}/readyz", server.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "shutting_down");
    // Not the 3 s check timeout: the hanging check was never asked.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let live = reqwest::get(format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
    assert_eq!(live.status(), 200, "still alive while stopping");
    server.task.abort();
}
