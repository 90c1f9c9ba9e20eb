//! The relay: pushes jobs whose row committed but whose push to Redis did not happen (Redis
//! was down, or the API died between commit and push). Rows are claimed with
//! `FOR UPDATE SKIP LOCKED`, so any number of API replicas can run it; a job pushed twice is
//! queued once (same id). Rows younger than [`MIN_AGE`] are their request's to push and mark.
//! It runs every interval, and at once when a push fails. A pass in
//! progress is dropped at shutdown (its transaction rolls back, its rows stay unenqueued for
//! the next pass), so a stalled Postgres or Redis cannot hold the process.

use crate::state::AppState;
use std::sync::Arc;
use std::time::Duration;

const BATCH: u32 = 200;

/// Rows younger than this are left alone: their request is still pushing them (for up to
/// `PUSH_TIMEOUT`, 2 s) or its mark is still being written ([`crate::state::EnqueueMarks`]), so
/// the relay would only push them a second time. A failed push is relayed after it.
pub const MIN_AGE: Duration = Duration::from_secs(3);

pub fn spawn(state: Arc<AppState>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            // While Redis is failing, wake-ups from failed pushes are ignored: the interval
            // paces the retries instead of every request.
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = state.relay_wake.notified(), if !failing => {}
            }
            loop {
                let pass = state.store.relay_unenqueued(BATCH, MIN_AGE, |job| {
                    let state = state.clone();
                    async move { state.push_to_queue(&job).await }
                });
                let pushed = tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    pushed = pass => pushed,
                };
                match pushed {
                    Ok(n) => {
                        failing = false;
                        if n > 0 {
                            metrics::counter!("slipway_api_relay_pushed_total").increment(n as u64);
                            tracing::info!(jobs = n, "relay pushed jobs to Redis");
                        }
                        if n < BATCH as usize {
                            break;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "relay could not push; will retry");
                        }
                        failing = true;
                        break;
                    }
                }
            }
        }
    })
}
