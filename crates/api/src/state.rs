//! Shared state of the API handlers, the enqueue path (record, then push, then mark), and the
//! hub that fans Postgres log notifications out to live tails.
//!
//! The enqueue path per request: one `INSERT ... ON CONFLICT DO NOTHING RETURNING` (the
//! idempotency check and the insert in one statement, one commit), the push to Redis (BullMQ's
//! add script), and the `enqueued_at` mark, which [`EnqueueMarks`] writes off the request path,
//! many jobs per statement. The row still commits before the push; a job pushed but not yet
//! marked is left alone by the relay for [`crate::relay::MIN_AGE`].

use crate::error::ApiError;
use crate::views::JobView;
use slipway_core::auth::TokenSet;
use slipway_core::validate::Limits;
use slipway_core::{JobId, JobKind};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{JobRecord, LogWake, NewJob, Store};
use std::sync::Arc;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
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
    /// Records pushes of new jobs (`enqueued_at`) in batches.
    pub marks: EnqueueMarks,
}

/// Redis calls an operator's bulk action makes at once.
pub const BULK_CONCURRENCY: usize = 16;

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
            marks: EnqueueMarks::spawn(store.clone()),
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
        let budget = u32::try_from(job.max_attempts).unwrap_or(1);
        let pushed = self
            .bounded_push(self.queue.push_new(
                job.kind,
                job.id,
                budget,
                job.trace_context.as_deref(),
            ))
            .await;
        self.after_push(&job, pushed, true).await;
        Ok((job, true))
    }

    /// Push a recorded job to its queue and mark it enqueued. A failure is logged and left to
    /// the relay: the row stays `enqueued_at IS NULL` and is pushed when Redis is back.
    pub async fn push(&self, job: &JobRecord) {
        let pushed = self.push_to_queue(job).await;
        self.after_push(job, pushed, false).await;
    }

    /// [`push`](Self::push) for many jobs (an operator's bulk retry): a few pushes at a time,
    /// and the enqueued marks through [`EnqueueMarks`], many rows per `UPDATE`.
    pub async fn push_many(&self, jobs: &[JobRecord]) {
        use futures::StreamExt;
        futures::stream::iter(jobs)
            .for_each_concurrent(BULK_CONCURRENCY, |job| async move {
                let pushed = self.push_to_queue(job).await;
                self.after_push(job, pushed, true).await;
            })
            .await;
    }

    /// Mark a pushed job enqueued (`batched`: through [`EnqueueMarks`], off the request path),
    /// or leave a job whose push failed to the relay, waking it.
    async fn after_push(&self, job: &JobRecord, pushed: Result<(), PushError>, batched: bool) {
        match pushed {
            Ok(()) if batched => self.marks.mark(job.id),
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
        self.bounded_push(self.queue.push_traced(
            job.kind,
            job.id,
            budget,
            job.trace_context.as_deref(),
        ))
        .await
    }

    async fn bounded_push(
        &self,
        push: impl Future<Output = Result<(), slipway_shared::queue::QueueError>>,
    ) -> Result<(), PushError> {
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
        if job.attempts == 0 {
            // No attempt has started (a job just created): nothing to read.
            return Ok(JobView::new(job, Vec::new()));
        }
        let attempts = self.store.attempts(job.id).await?;
        Ok(JobView::new(job, attempts))
    }
}

/// Writes `enqueued_at` for the jobs the enqueue path pushed, many per statement: while one
/// batch is written the next gathers, so under load many requests share one `UPDATE` and one
/// commit instead of each paying its own, and no request waits for it. Order is kept: the row
/// committed before the push, and the mark comes after it. A mark that fails, or never happens
/// because the process stops first, leaves the row `enqueued_at IS NULL`, and the relay pushes
/// it again, which the queue absorbs (same id); a job a worker already started is not relayed
/// (it is no longer `queued`).
pub struct EnqueueMarks {
    tx: mpsc::UnboundedSender<Mark>,
}

enum Mark {
    Job(JobId),
    /// Answered once every mark sent before it is written (or failed).
    Flush(oneshot::Sender<()>),
}

/// The most jobs one `UPDATE` marks.
const MARK_BATCH: usize = 512;

impl EnqueueMarks {
    /// Start the writer; it ends when the last sender (the state) is dropped.
    fn spawn(store: Store) -> EnqueueMarks {
        let (tx, mut rx) = mpsc::unbounded_channel::<Mark>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MARK_BATCH);
            let mut ids = Vec::with_capacity(MARK_BATCH);
            while rx.recv_many(&mut batch, MARK_BATCH).await > 0 {
                let mut flushes = Vec::new();
                for m in batch.drain(..) {
                    match m {
                        Mark::Job(id) => ids.push(id),
                        Mark::Flush(done) => flushes.push(done),
                    }
                }
                if let Err(e) = store.mark_enqueued_many(&ids).await {
                    tracing::warn!(jobs = ids.len(), error = %e,
                        "could not mark jobs enqueued; the relay will push them again");
                }
                ids.clear();
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        EnqueueMarks { tx }
    }

    /// Queue the mark of a pushed job.
    pub fn mark(&self, id: JobId) {
        if self.tx.send(Mark::Job(id)).is_err() {
            // Only after the writer is gone (shutdown): the relay covers the row.
            tracing::debug!(job.id = %id, "enqueue mark dropped; the relay will push the job again");
        }
    }

    /// Wait until every mark queued so far is written (at shutdown, within a bound).
    pub async fn flushed(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Mark::Flush(done)).is_ok() {
            let _ = wait.await;
        }
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
