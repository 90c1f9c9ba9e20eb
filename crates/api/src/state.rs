//! Shared state of the API handlers, the enqueue path (record, then push), and the hub that
//! fans Postgres log notifications out to live tails.

use crate::error::ApiError;
use crate::views::JobView;
use slipway_core::auth::TokenSet;
use slipway_core::validate::Limits;
use slipway_core::{JobId, JobKind};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{JobRecord, LogWake, NewJob, Store};
use std::sync::Arc;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

/// How long a request waits for Redis before leaving the push to the relay.
const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A push that did not happen (the relay retries it).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Queue(slipway_shared::queue::QueueError),
    #[error("Redis did not answer within {}s", PUSH_TIMEOUT.as_secs())]
    Timeout,
}

pub struct AppState {
    pub store: Store,
    pub queue: QueueClient,
    pub tokens: TokenSet,
    pub limits: Limits,
    pub max_attempts: u32,
    /// `SLIPWAY_GITHUB_WEBHOOK_SECRET`; `None` turns the GitHub webhook off.
    pub webhook_secret: Option<Vec<u8>>,
    /// Wakes the relay at once when a push failed.
    pub relay_wake: Notify,
    pub logs: LogHub,
    /// Cancelled at shutdown: ends live tails.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(
        store: Store,
        queue: QueueClient,
        tokens: TokenSet,
        limits: Limits,
        max_attempts: u32,
        webhook_secret: Option<Vec<u8>>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(AppState {
            store,
            queue,
            tokens,
            limits,
            max_attempts,
            webhook_secret,
            relay_wake: Notify::new(),
            logs: LogHub::new(shutdown.clone()),
            shutdown,
        })
    }

    /// Record a job and push it. Returns the job and whether it was created (`false`: the
    /// idempotency key named an existing job, returned as it is).
    pub async fn create_job(&self, mut new: NewJob) -> Result<(JobRecord, bool), ApiError> {
        new.max_attempts = i32::try_from(self.max_attempts).unwrap_or(3);
        // The worker's job span continues the trace of the request that created the job.
        new.trace_context = slipway_shared::telemetry::current_traceparent();
        let payload = new.payload.clone();
        let inserted = self.store.insert_job(new).await?;
        if !inserted.created {
            if inserted.job.payload != payload {
                return Err(ApiError::Conflict(
                    "this Idempotency-Key was already used for a different request".into(),
                ));
            }
            return Ok((inserted.job, false));
        }
        let job = inserted.job;
        metrics::counter!("slipway_api_jobs_enqueued_total", "kind" => job.kind.as_str())
            .increment(1);
        self.push(&job).await;
        Ok((job, true))
    }

    /// Push a recorded job to its queue and mark it enqueued. A failure is logged and left to
    /// the relay: the row stays `enqueued_at IS NULL` and is pushed when Redis is back.
    pub async fn push(&self, job: &JobRecord) {
        match self.push_to_queue(job).await {
            Ok(()) => {
                if let Err(e) = self.store.mark_enqueued(job.id).await {
                    // The relay will push it again; the queue ignores the duplicate id.
                    tracing::warn!(job.id = %job.id, error = %e, "could not mark job enqueued");
                }
            }
            Err(e) => {
                tracing::warn!(job.id = %job.id, job.kind = %job.kind, error = %e,
                    "push to Redis failed; the relay will retry");
                self.relay_wake.notify_one();
            }
        }
    }

    /// Put a job on its queue (idempotent by id; a job an operator retried is revived from
    /// the dead set). Bounded in time: a request never hangs on an unreachable Redis.
    pub async fn push_to_queue(&self, job: &JobRecord) -> Result<(), PushError> {
        let budget = u32::try_from(job.max_attempts).unwrap_or(1);
        let push = self
            .queue
            .push_traced(job.kind, job.id, budget, job.trace_context.as_deref());
        match tokio::time::timeout(PUSH_TIMEOUT, push).await {
            Ok(result) => result.map_err(PushError::Queue),
            Err(_) => Err(PushError::Timeout),
        }
    }

    /// Supersede the older unfinished jobs of `preview` of `kinds`, telling their workers.
    pub async fn supersede(
        &self,
        preview: &str,
        keep: JobId,
        kinds: &[JobKind],
    ) -> Result<(), ApiError> {
        let ids = self.store.supersede_older(preview, keep, kinds).await?;
        for id in ids {
            tracing::info!(job.id = %id, by = %keep, preview, "superseded");
            for kind in kinds {
                let reason = format!("superseded by job {keep}");
                if let Err(e) = self.queue.cancel(*kind, &id.to_string(), &reason).await {
                    // The worker also checks Postgres before finishing, so this is only late.
                    tracing::warn!(job.id = %id, error = %e, "could not signal supersede to the queue");
                }
            }
        }
        Ok(())
    }

    /// A job by id, or a 404.
    pub async fn job(&self, id: JobId) -> Result<JobRecord, ApiError> {
        self.store
            .get_job(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("job {id} not found")))
    }

    /// A job with its attempts, as the API shows it.
    pub async fn job_view(&self, job: JobRecord) -> Result<JobView, ApiError> {
        let attempts = self.store.attempts(job.id).await?;
        Ok(JobView::new(job, attempts))
    }
}

/// One Postgres listener per API process, fanned out to every live log tail.
pub struct LogHub {
    tx: broadcast::Sender<LogWake>,
    shutdown: CancellationToken,
}

impl LogHub {
    fn new(shutdown: CancellationToken) -> Self {
        LogHub {
            tx: broadcast::channel(1024).0,
            shutdown,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LogWake> {
        self.tx.subscribe()
    }

    /// Listen on `slipway_logs` until shutdown, reconnecting with a pause after failures.
    pub fn spawn_listener(&self, store: &Store) {
        let (tx, store, stop) = (self.tx.clone(), store.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let mut listener = match store.log_listener().await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "log listener cannot connect; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        }
                    }
                };
                // Tails re-read after a (re)connect, in case they missed notifications.
                let _ = tx.send(LogWake::Reconnected);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        wake = listener.recv() => match wake {
                            Ok(w) => { let _ = tx.send(w); }
                            Err(e) => {
                                tracing::warn!(error = %e, "log listener failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
        });
    }
}
