//! The small HTTP server every binary runs for probes and metrics:
//! `/healthz` (the process answers), `/readyz` (each dependency answers; 503 naming those that
//! do not; 503 `shutting_down` without asking anything once the process is stopping, so no new
//! traffic or work is sent its way) and `/metrics` (Prometheus text from the process-wide
//! `metrics` recorder).
//!
//! Every duration is a Prometheus histogram in seconds (`_bucket`, `_sum`, `_count`), not a
//! summary, so replicas can be summed and `histogram_quantile` works across them. Code that
//! registers metric descriptions calls [`metrics_handle`] first: a description given before the
//! recorder exists is lost, and `promtool check metrics` then reports `no help text`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors of the health server.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("health server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// One dependency `/readyz` checks.
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// Short name shown in the `/readyz` body, e.g. `postgres`.
    fn name(&self) -> &str;
    /// `Err` with a reason when the dependency is unusable.
    async fn check(&self) -> Result<(), String>;
}

/// Readiness of Postgres: `SELECT 1` through the store's pool.
#[derive(Debug, Clone)]
pub struct PostgresCheck {
    store: Store,
}

impl PostgresCheck {
    pub fn new(store: Store) -> PostgresCheck {
        PostgresCheck { store }
    }
}

#[async_trait::async_trait]
impl ReadinessCheck for PostgresCheck {
    fn name(&self) -> &str {
        "postgres"
    }
    async fn check(&self) -> Result<(), String> {
        self.store.ping().await.map_err(|e| e.to_string())
    }
}

pub use crate::queue::RedisCheck;

/// Bucket bounds (seconds) of every duration histogram: 5 ms to an hour, wide enough for a
/// probe's round trip and a build alike.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1200.0, 1800.0, 3600.0,
];
/// Bucket bounds (seconds) of the API's request durations: a request is cut off after a few
/// seconds, so the long tail buckets would only cost series.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn builder() -> PrometheusBuilder {
    let histograms = PrometheusBuilder::new()
        .set_buckets(DURATION_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("slipway_api_request_duration_seconds".into()),
                REQUEST_BUCKETS,
            )
        });
    match histograms {
        Ok(b) => b,
        // Only empty bucket lists fail, and the lists above are not empty.
        Err(e) => {
            tracing::warn!(error = %e, "histogram buckets not set; durations are summaries");
            PrometheusBuilder::new()
        }
    }
}

/// The process-wide Prometheus recorder, installed on first use. If another recorder was
/// installed first, `/metrics` serves an empty registry and a warning is logged.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = match builder().install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is empty");
                    builder().build_recorder().handle()
                }
            };
            // Histograms are drained by periodic upkeep; a plain thread outlives any runtime.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics upkeep thread not started");
            }
            handle
        })
        .clone()
}

/// A running health server.
#[derive(Debug)]
pub struct HealthServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Ends when the shutdown future completes and open requests finish.
    pub task: JoinHandle<Result<(), HealthError>>,
}

struct AppState {
    checks: Vec<Box<dyn ReadinessCheck>>,
    draining: CancellationToken,
    metrics: PrometheusHandle,
}

/// Binds `listen_addr` and serves the probes until `shutdown` completes; `/readyz` says 503
/// from the moment `draining` is cancelled (shutdown began).
pub async fn serve(
    listen_addr: SocketAddr,
    readiness: Vec<Box<dyn ReadinessCheck>>,
    draining: CancellationToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<HealthServer, HealthError> {
    let listener = tokio::net::TcpListener::bind(listen_addr)
        .await
        .map_err(|source| HealthError::Bind {
            addr: listen_addr,
            source,
        })?;
    let addr = listener.local_addr()?;
    let router = router(readiness, draining);
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    });
    tracing::info!(%addr, "health server listening");
    Ok(HealthServer { addr, task })
}

/// The probe routes, for binaries that mount them into a larger router (the API); `/readyz`
/// says 503 from the moment `draining` is cancelled.
pub fn router(readiness: Vec<Box<dyn ReadinessCheck>>, draining: CancellationToken) -> Router {
    let state = Arc::new(AppState {
        checks: readiness,
        draining,
        metrics: metrics_handle(),
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.is_cancelled() {
        // Stopping: no dependency is asked (one may be what hangs), the answer is no.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        )
            .into_response();
    }
    // Checks run concurrently so one slow dependency does not hide the others.
    let results = futures::future::join_all(state.checks.iter().map(|c| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {}s", CHECK_TIMEOUT.as_secs())),
        };
        (c.name().to_owned(), outcome)
    }))
    .await;
    let mut checks = serde_json::Map::new();
    let mut failed = Vec::new();
    for (name, outcome) in results {
        match outcome {
            Ok(()) => {
                checks.insert(name, json!("ok"));
            }
            Err(error) => {
                tracing::warn!(check = %name, %error, "readiness check failed");
                checks.insert(name.clone(), json!(error));
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "checks": checks })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "failed": failed, "checks": checks })),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
