//! Queue gauges on the API's `/metrics`, refreshed from Redis every [`REFRESH`] (a handful of
//! O(1) commands per queue): jobs per queue and state, the age of the oldest waiting job, live
//! workers, and whether the queue is paused. The API serves them because it is the one
//! component that always runs and already reads every queue; every replica reports the same
//! figures, so aggregate them with `max`, not `sum`. A failed refresh keeps the last values
//! and is logged; the relay and `/readyz` report Redis trouble.

use crate::state::AppState;
use slipway_core::JobKind;
use std::sync::Arc;
use std::time::Duration;

/// How often the gauges are read from Redis.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Gauge: jobs in a queue, labelled `queue` and `state` (waiting, active, delayed, dead).
pub const JOBS: &str = "slipway_queue_jobs";
/// Gauge: seconds the oldest waiting job of a queue has waited (0 when none waits).
pub const OLDEST_WAITING: &str = "slipway_queue_oldest_waiting_age_seconds";
/// Gauge: workers whose heartbeat is current, by queue.
pub const WORKERS: &str = "slipway_queue_workers";
/// Gauge: 1 while a queue is paused.
pub const PAUSED: &str = "slipway_queue_paused";

/// Registers the help texts of the API's metrics (this module's and the request metrics).
pub fn describe() {
    slipway_shared::health::metrics_handle();
    metrics::describe_gauge!(
        JOBS,
        "Jobs in a queue, by queue and state (waiting, active, delayed, dead)."
    );
    metrics::describe_gauge!(
        OLDEST_WAITING,
        metrics::Unit::Seconds,
        "How long the oldest waiting job of a queue has waited (0 when none waits)."
    );
    metrics::describe_gauge!(WORKERS, "Workers of a queue whose heartbeat is current.");
    metrics::describe_counter!(
        crate::mcp::TOOL_CALLS,
        "MCP tool calls, by tool and outcome (ok or the error code, e.g. UNAUTHORIZED)."
    );
    metrics::describe_gauge!(PAUSED, "1 while a queue is paused by an operator.");
    metrics::describe_counter!(
        "slipway_api_requests_total",
        "HTTP requests answered, by route pattern, method and status code."
    );
    metrics::describe_histogram!(
        "slipway_api_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route pattern and method."
    );
    metrics::describe_counter!(
        "slipway_api_jobs_enqueued_total",
        "Jobs recorded by the API (a repeated idempotent request not counted), by job kind."
    );
    metrics::describe_counter!(
        "slipway_api_relay_pushed_total",
        "Recorded jobs whose first push to Redis had not happened, pushed by the relay."
    );
    metrics::describe_counter!(
        "slipway_github_status_updates_total",
        "Pull-request status changes handed to the GitHub reporter."
    );
}

/// Refreshes the gauges now and every [`REFRESH`] until shutdown.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                // Bounded, so a stalled Redis delays the next reading, not every later one.
                _ = tokio::time::timeout(REFRESH, refresh(&state)) => {}
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    })
}

async fn refresh(state: &AppState) {
    for kind in JobKind::ALL {
        let queue = kind.as_str();
        let read = tokio::try_join!(
            state.queue.counts(kind),
            state.queue.oldest_waiting_age(kind),
            state.queue.workers(kind),
        );
        let (counts, oldest, workers) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, queue, "queue gauges not refreshed");
                continue;
            }
        };
        for (s, n) in [
            ("waiting", counts.waiting),
            ("active", counts.active),
            ("delayed", counts.delayed),
            ("dead", counts.dead),
        ] {
            metrics::gauge!(JOBS, "queue" => queue, "state" => s).set(n as f64);
        }
        metrics::gauge!(OLDEST_WAITING, "queue" => queue)
            .set(oldest.map_or(0.0, |d| d.as_secs_f64()));
        metrics::gauge!(WORKERS, "queue" => queue).set(workers.len() as f64);
        metrics::gauge!(PAUSED, "queue" => queue).set(if counts.paused { 1.0 } else { 0.0 });
    }
}
