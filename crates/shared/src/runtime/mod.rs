//! The worker runtime every worker binary reuses: pull jobs of one kind from its queue, run them
//! through a [`Handler`] with a concurrency limit, and settle each attempt.
//!
//! - Bounded prefetch: a worker holds at most `concurrency` jobs (the queue engine takes a slot
//!   before it fetches).
//! - Leases are renewed while a handler runs, however long. A lost lease fires the handler's
//!   cancellation token and its late result is refused (fencing).
//! - A panicking handler fails its attempt instead of leaving the job active.
//! - Transient errors retry after a full-jitter delay spent in Redis's delayed set; permanent
//!   errors and the last attempt go to the dead set with the error kept. A worker that died
//!   mid-job used up an attempt.
//! - Graceful shutdown, bounded whatever Redis, Postgres or Kubernetes do: stop fetching at once,
//!   let running jobs finish within the grace period, then cancel the rest, give them
//!   [`SHUTDOWN_ABORT`] to stop and hand them back so another worker resumes them at once. The
//!   runtime returns at most [`shutdown_bound`] after shutdown begins (at once when idle); a job
//!   that could not be handed back by then is rescued through its lease. No retry loop of an
//!   unreachable dependency is waited on: a store write in flight when its job is cancelled gets
//!   [`SETTLE_BOUND`], then the job stops.
//! - Redis loss is survived: the connection is retried with backoff at start, the engine and our
//!   lease renewal reconnect on their own; no job error ends the process.
//! - With a job store ([`run_with_store`]), Postgres records every attempt: `start_attempt`
//!   before the handler (refused: the job was cancelled, finished or superseded, so it is
//!   acknowledged and skipped) and `finish_attempt` after it (refused: the result is dropped).
//!   Postgres is written before Redis, and only while the lease is confirmed, so a fenced
//!   worker never records a result. While Postgres is unreachable the job waits in its slot,
//!   lease renewed, and the write is retried with backoff.
//! - A handler may cap the jobs running at once per key ([`Handler::keyed_cap`], e.g. builds
//!   per repository): the start is refused in Postgres while the key's slots are taken, and
//!   the job goes back to the delayed set with its attempt number given back, so waiting
//!   consumes no attempt and frees this worker's slot for other keys' jobs.

use crate::queue::{CancelReason, Consumer, ConsumerConfig, Delivery, Disposition};
use crate::store::{AttemptOutcome, CappedStart, JobRecord, Store, StoreError};
use backon::BackoffBuilder;
use futures::FutureExt;
use slipway_core::{BackoffPolicy, ErrorClass, JobId, JobKind};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

pub use crate::queue::QueueError;
pub use crate::queue::SETTLE_BOUND;

/// At shutdown, how long a cancelled handler may take to stop (at most; the configured abort
/// grace when shorter) before it is dropped and its job handed back.
pub const SHUTDOWN_ABORT: Duration = Duration::from_secs(5);

/// The longest a worker's runtime takes to stop after shutdown begins, with `grace` for running
/// jobs: the grace, the cancelled jobs' stop and hand-back, the engine's close and leaving the
/// worker registry. Deployments give the process more than this (Kubernetes:
/// `terminationGracePeriodSeconds`).
pub fn shutdown_bound(grace: Duration) -> Duration {
    grace + SHUTDOWN_ABORT + 3 * SETTLE_BOUND
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub kind: JobKind,
    pub redis_url: String,
    pub prefix: String,
    pub concurrency: usize,
    /// Budget for jobs pushed without one (each push normally carries its own).
    pub max_attempts: u32,
    /// A dead worker's job is picked up by another within this time.
    pub rescue_time: Duration,
    /// At shutdown, how long running jobs may take to finish before they are handed back.
    pub grace_period: Duration,
    /// How long a cancelled handler may take to stop before it is dropped.
    pub abort_grace: Duration,
    pub backoff: BackoffPolicy,
    pub worker_name: String,
}

impl RuntimeConfig {
    /// Defaults: concurrency 4, 3 attempts, rescue 15 s, grace 30 s, DESIGN.md backoff.
    pub fn new(kind: JobKind, redis_url: impl Into<String>, prefix: impl Into<String>) -> Self {
        RuntimeConfig {
            kind,
            redis_url: redis_url.into(),
            prefix: prefix.into(),
            concurrency: 4,
            max_attempts: 3,
            rescue_time: Duration::from_secs(15),
            grace_period: Duration::from_secs(30),
            abort_grace: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
            worker_name: format!("slipway-worker-{}", kind.as_str()),
        }
    }
}

/// Worker-runtime settings as command-line flags and `SLIPWAY_*` variables; flatten into a
/// binary's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Jobs run at once by this worker.
    #[arg(long, env = "SLIPWAY_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Attempts per job, in all (a worker that dies mid-job uses one up).
    #[arg(long, env = "SLIPWAY_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// A dead worker's job is resumed by another within this many seconds.
    #[arg(long, env = "SLIPWAY_RESCUE_TIME_SECS", default_value_t = 15.0)]
    pub rescue_time_secs: f64,
    /// Seconds running jobs get to finish at shutdown before they are handed back.
    #[arg(long, env = "SLIPWAY_GRACE_PERIOD_SECS", default_value_t = 30.0)]
    pub grace_period_secs: f64,
    /// Retry backoff base in milliseconds (full jitter).
    #[arg(long, env = "SLIPWAY_BACKOFF_BASE_MS", default_value_t = 2_000)]
    pub backoff_base_ms: u64,
    /// Retry backoff growth factor.
    #[arg(long, env = "SLIPWAY_BACKOFF_FACTOR", default_value_t = 4)]
    pub backoff_factor: u32,
    /// Retry backoff cap in milliseconds.
    #[arg(long, env = "SLIPWAY_BACKOFF_CAP_MS", default_value_t = 60_000)]
    pub backoff_cap_ms: u64,
}

impl WorkerArgs {
    pub fn into_config(
        self,
        kind: JobKind,
        redis_url: impl Into<String>,
        prefix: impl Into<String>,
    ) -> RuntimeConfig {
        let mut cfg = RuntimeConfig::new(kind, redis_url, prefix);
        cfg.concurrency = self.concurrency.max(1);
        cfg.max_attempts = self.max_attempts.max(1);
        cfg.rescue_time = Duration::from_secs_f64(self.rescue_time_secs.max(1.0));
        cfg.grace_period = Duration::from_secs_f64(self.grace_period_secs.max(0.0));
        cfg.backoff = BackoffPolicy {
            base: Duration::from_millis(self.backoff_base_ms),
            factor: self.backoff_factor.max(1),
            cap: Duration::from_millis(self.backoff_cap_ms),
        };
        cfg
    }
}

impl WorkerArgs {
    /// The runtime configuration from these flags and the flags every binary takes.
    pub fn config(self, kind: JobKind, common: &crate::config::CommonArgs) -> RuntimeConfig {
        self.into_config(kind, common.redis_url.expose(), common.queue_prefix.clone())
    }
}

/// What a handler gets for one attempt of one job.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: JobId,
    pub kind: JobKind,
    /// 1-based and strictly increasing across the job's life (deaths included): use it to name
    /// per-attempt objects and to fence results in Postgres.
    pub attempt: u32,
    pub max_attempts: u32,
    /// No retry follows a transient failure of this attempt.
    pub is_last_attempt: bool,
    /// The small payload carried in Redis.
    pub data: serde_json::Value,
    /// The job's row (payload, preview, trace context) as `start_attempt` returned it; `Some`
    /// whenever the runtime runs with a job store.
    pub record: Option<JobRecord>,
    /// Fires when the handler must stop: lease lost, operator cancel, or shutdown after grace.
    pub cancel: CancellationToken,
}

/// A failed attempt: its class decides between retry and the dead set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub class: ErrorClass,
    pub message: String,
}

impl JobError {
    pub fn transient(message: impl Into<String>) -> Self {
        JobError {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError {
            class: ErrorClass::Permanent,
            message: message.into(),
        }
    }
}

/// A cap on the jobs running at once per key, across every worker (see [`Handler::keyed_cap`]).
#[derive(Debug, Clone)]
pub struct KeyedCap {
    /// Most jobs of one key running at once (at least 1).
    pub limit: u32,
    /// A job's key, from its record; `None` leaves the job uncapped.
    pub key: fn(&JobRecord) -> Option<String>,
    /// What a key names, for the job's log (e.g. `repository`).
    pub what: &'static str,
    /// How long a job over the cap waits in the delayed set before it is tried again (each
    /// wait drawn between half and all of it, so waiting jobs do not return in lockstep).
    pub recheck: Duration,
}

impl KeyedCap {
    fn waiting_line(&self, key: &str) -> String {
        format!(
            "[slipway] waiting: {} {key} already has {} job(s) running, its cap; this job \
             starts when one ends (waiting uses no attempt)",
            self.what, self.limit
        )
    }

    fn delay(&self) -> Duration {
        let ms = self.recheck.as_millis().max(2) as u64;
        Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2))
    }
}

/// The work itself.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, job: JobContext) -> Result<serde_json::Value, JobError>;

    /// A cap on this handler's jobs running at once per key, held in the job store (so only
    /// with [`run_with_store`]); `None` (the default): no cap.
    fn keyed_cap(&self) -> Option<KeyedCap> {
        None
    }
}

/// Run a worker without a job store (Redis only) until `shutdown` resolves, then shut down
/// gracefully. See [`run_with_store`].
pub async fn run<H, S>(cfg: RuntimeConfig, handler: Arc<H>, shutdown: S) -> Result<(), QueueError>
where
    H: Handler,
    S: Future<Output = ()> + Send,
{
    run_inner(cfg, None, handler, shutdown).await
}

/// Run a worker that records every attempt in the job store, until `shutdown` resolves, then
/// shut down gracefully. Only returns once every job this worker held is finished or handed
/// back. Redis being down is waited out.
pub async fn run_with_store<H, S>(
    cfg: RuntimeConfig,
    store: Store,
    handler: Arc<H>,
    shutdown: S,
) -> Result<(), QueueError>
where
    H: Handler,
    S: Future<Output = ()> + Send,
{
    run_inner(cfg, Some(store), handler, shutdown).await
}

/// Histogram: enqueue-to-start latency of a job's first attempt, by kind ([`record_queue_wait`]).
pub const QUEUE_WAIT: &str = "slipway_job_queue_wait_seconds";

/// Records how long a job waited from its enqueue to the start of its first attempt. Later
/// attempts are left out: a retry waits its backoff on purpose, and a redelivery after a worker
/// died waits for the lease. With a job store both ends are Postgres' clock (the row's
/// `created_at` and the `started_at` the start just set), so clock skew between the API and
/// the worker cannot bend it, and the wait for a relay push is included; without one, the
/// push's timestamp in Redis and this host's clock.
fn record_queue_wait(d: &Delivery, record: Option<&JobRecord>) {
    if d.attempt != 1 {
        return;
    }
    let waited = match record {
        Some(r) => r
            .started_at
            .and_then(|started| (started - r.created_at).to_std().ok()),
        None => (d.enqueued_at_ms > 0)
            .then(|| crate::queue::now_ms().saturating_sub(d.enqueued_at_ms))
            .map(Duration::from_millis),
    };
    if let Some(waited) = waited {
        metrics::histogram!(QUEUE_WAIT, "kind" => d.kind.as_str()).record(waited.as_secs_f64());
    }
}

/// Registers the help texts of the runtime's metrics (every worker serves them).
fn describe_metrics() {
    crate::health::metrics_handle();
    metrics::describe_counter!(
        "slipway_jobs_started_total",
        "Attempts started by this worker, by job kind."
    );
    metrics::describe_counter!(
        "slipway_jobs_finished_total",
        "Attempts ended by this worker, by job kind and outcome (succeeded, skipped, retrying, \
         dead, handed_back, fenced)."
    );
    metrics::describe_histogram!(
        "slipway_job_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of an attempt from delivery to its outcome, by job kind and outcome."
    );
    metrics::describe_histogram!(
        QUEUE_WAIT,
        metrics::Unit::Seconds,
        "Time from a job's enqueue to the start of its first attempt, by job kind: from the \
         job's creation to its start, both by Postgres' clock (without a job store, from its \
         push to Redis). Includes waiting for a relay push and for a cap."
    );
    metrics::describe_counter!(
        "slipway_jobs_deferred_total",
        "Deliveries put back in the queue without an attempt because their key (a \
         repository) was at its cap, by job kind."
    );
}

async fn run_inner<H, S>(
    cfg: RuntimeConfig,
    store: Option<Store>,
    handler: Arc<H>,
    shutdown: S,
) -> Result<(), QueueError>
where
    H: Handler,
    S: Future<Output = ()> + Send,
{
    describe_metrics();
    let cfg = Arc::new(cfg);
    let on_delivery: crate::queue::OnDelivery = {
        let cfg = cfg.clone();
        Arc::new(move |d: Delivery| process(handler.clone(), cfg.clone(), store.clone(), d).boxed())
    };
    let consumer_cfg = ConsumerConfig {
        redis_url: cfg.redis_url.clone(),
        prefix: cfg.prefix.clone(),
        kind: cfg.kind,
        concurrency: cfg.concurrency,
        rescue_time: cfg.rescue_time,
        worker_name: cfg.worker_name.clone(),
        default_max_attempts: cfg.max_attempts,
    };
    tokio::pin!(shutdown);

    let mut delays = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times(),
    );
    let consumer = loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            started = Consumer::start(consumer_cfg.clone(), on_delivery.clone()) => match started {
                Ok(c) => break c,
                Err(QueueError::Config(msg)) => return Err(QueueError::Config(msg)),
                Err(e) => {
                    let wait = delays.next().unwrap_or(Duration::from_secs(10));
                    warn!(error = %e, ?wait, "cannot reach the queue; retrying");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    };
    info!(worker_id = consumer.worker_id(), kind = %cfg.kind, concurrency = cfg.concurrency, "worker started");
    shutdown.await;
    info!(
        running = consumer.active_jobs().len(),
        grace = ?cfg.grace_period,
        "shutting down: no new jobs"
    );
    consumer
        .shutdown(cfg.grace_period, shutdown_abort(&cfg) + SETTLE_BOUND)
        .await;
    info!("worker stopped");
    Ok(())
}

/// How long a handler cancelled by shutdown may take to stop.
fn shutdown_abort(cfg: &RuntimeConfig) -> Duration {
    cfg.abort_grace.min(SHUTDOWN_ABORT)
}

/// The result recorded in Redis for a job the store would not start.
const SKIPPED_KEY: &str = "skipped";

fn outcome_label(d: &Disposition) -> &'static str {
    match d {
        Disposition::Complete(v)
            if v.get(SKIPPED_KEY).is_some() && v.as_object().is_some_and(|o| o.len() == 1) =>
        {
            "skipped"
        }
        Disposition::Complete(_) => "succeeded",
        Disposition::Retry { .. } => "retrying",
        Disposition::Dead { .. } => "dead",
        Disposition::HandBack => "handed_back",
        Disposition::Abandon => "fenced",
        Disposition::Defer { .. } => "deferred",
    }
}

async fn process<H: Handler>(
    handler: Arc<H>,
    cfg: Arc<RuntimeConfig>,
    store: Option<Store>,
    d: Delivery,
) -> Disposition {
    // Continues the trace of the request that created the job: its Kubernetes calls and log
    // lines belong to that trace.
    let span = crate::telemetry::job_span(d.id, d.kind, d.attempt, d.traceparent());
    async move {
        let kind = d.kind.as_str();
        let started = Instant::now();
        let disposition = run_attempt(&*handler, &cfg, store.as_ref(), &d).await;
        if let Disposition::Defer { delay } = &disposition {
            // Not an attempt: counted in `slipway_jobs_deferred_total` only.
            tracing::debug!(?delay, "over its cap; back to the queue");
            return disposition;
        }
        let outcome = outcome_label(&disposition);
        metrics::counter!("slipway_jobs_finished_total", "kind" => kind, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("slipway_job_duration_seconds", "kind" => kind, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        match &disposition {
            Disposition::Retry { error, delay } => {
                warn!(%error, ?delay, "attempt failed; retrying later")
            }
            Disposition::Dead { error } => warn!(%error, "job failed for good"),
            Disposition::Abandon => warn!("lease lost; result refused"),
            other => info!(outcome = outcome_label(other), "attempt finished"),
        }
        disposition
    }
    .instrument(span)
    .await
}

/// How an attempt ended, before it is recorded.
enum Verdict {
    Succeeded(serde_json::Value),
    Retry { error: String, delay: Duration },
    Failed { error: String, class: ErrorClass },
    Cancelled { reason: String },
    HandBack,
    Fenced,
}

async fn run_attempt<H: Handler>(
    handler: &H,
    cfg: &RuntimeConfig,
    store: Option<&Store>,
    d: &Delivery,
) -> Disposition {
    if d.attempts_used > d.max_attempts {
        // The previous attempt was the last one and its worker died: close it and the job.
        let error = format!(
            "no attempts left: the worker running attempt {} of {} stopped without finishing it",
            d.attempt.saturating_sub(1),
            d.max_attempts
        );
        if let Some(store) = store {
            let outcome = AttemptOutcome::Failed {
                error: error.clone(),
                class: ErrorClass::Transient,
            };
            let attempt = d.attempt.saturating_sub(1) as i32;
            let _ = with_store(d, || store.finish_attempt(d.id, attempt, outcome.clone())).await;
        }
        return Disposition::Dead { error };
    }
    let record = match store {
        None => None,
        Some(store) => {
            let attempt = d.attempt as i32;
            let cap = handler.keyed_cap();
            let started = match &cap {
                Some(cap) => with_store(d, || start_capped(store, cap, d)).await,
                None => with_store(d, || store.start_attempt(d.id, attempt, &d.worker_id))
                    .await
                    .map(Ok),
            };
            let started = match started {
                Some(Err(delay)) => return Disposition::Defer { delay },
                Some(Ok(record)) => Some(record),
                None => None,
            };
            match started {
                Some(Some(record)) => Some(record),
                // Cancelled, finished, superseded or a stale duplicate: acknowledge and skip.
                Some(None) => {
                    return Disposition::Complete(serde_json::json!({
                        SKIPPED_KEY: "the job store did not start this attempt"
                    }));
                }
                None => return stopped_disposition(d),
            }
        }
    };
    let verdict = attempt_verdict(handler, cfg, d, record).await;
    settle(store, d, verdict).await
}

/// Start the attempt under `cap`: `Err(delay)` when the job must wait that long for a slot.
async fn start_capped(
    store: &Store,
    cap: &KeyedCap,
    d: &Delivery,
) -> Result<Result<Option<JobRecord>, Duration>, StoreError> {
    let attempt = d.attempt as i32;
    let Some(job) = store.get_job(d.id).await? else {
        return Ok(Ok(None));
    };
    let Some(key) = (cap.key)(&job) else {
        return Ok(Ok(store.start_attempt(d.id, attempt, &d.worker_id).await?));
    };
    let line = cap.waiting_line(&key);
    let limit = cap.limit.max(1);
    let started = store
        .start_attempt_capped(d.id, attempt, &d.worker_id, d.kind, &key, limit, &line)
        .await?;
    Ok(match started {
        CappedStart::Started(record) => Ok(Some(*record)),
        CappedStart::Refused => Ok(None),
        CappedStart::Waiting { running } => {
            tracing::debug!(%key, running, limit, "over the cap; deferred");
            metrics::counter!("slipway_jobs_deferred_total", "kind" => d.kind.as_str())
                .increment(1);
            Err(cap.delay())
        }
    })
}

/// What to do with a job whose cancellation fired while the runtime itself was waiting.
fn stopped_disposition(d: &Delivery) -> Disposition {
    match d.lease.cancel_reason() {
        Some(CancelReason::Cancelled(r)) => Disposition::Dead {
            error: format!("cancelled: {r}"),
        },
        Some(CancelReason::Shutdown) | None => Disposition::HandBack,
        Some(CancelReason::LeaseLost) => Disposition::Abandon,
    }
}

/// Retry a store call with backoff while the lease holds; `None` once the job must stop. A call
/// in flight when the job's cancellation fires (or made after) gets [`SETTLE_BOUND`] more and
/// is not retried: Postgres may be gone or stalled, and shutdown must not wait on it.
async fn with_store<T, F, Fut>(d: &Delivery, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let cancel = d.lease.cancellation();
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let bounded = async {
            cancel.cancelled().await;
            tokio::time::sleep(SETTLE_BOUND).await;
        };
        let result = tokio::select! {
            r = op() => r,
            () = bounded => {
                warn!("job store did not answer before the job had to stop");
                return None;
            }
        };
        match result {
            Ok(v) => return Some(v),
            Err(_) if cancel.is_cancelled() => return None,
            Err(e) => {
                let wait = delays.next().unwrap_or(Duration::from_secs(5));
                warn!(error = %e, ?wait, "job store unavailable; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn attempt_verdict<H: Handler>(
    handler: &H,
    cfg: &RuntimeConfig,
    d: &Delivery,
    record: Option<JobRecord>,
) -> Verdict {
    metrics::counter!("slipway_jobs_started_total", "kind" => d.kind.as_str()).increment(1);
    record_queue_wait(d, record.as_ref());
    let cancel = d.lease.cancellation();
    let ctx = JobContext {
        id: d.id,
        kind: d.kind,
        attempt: d.attempt,
        max_attempts: d.max_attempts,
        is_last_attempt: d.is_last_attempt(),
        data: d.data.clone(),
        record,
        cancel: cancel.clone(),
    };
    let work = AssertUnwindSafe(handler.handle(ctx)).catch_unwind();
    // A handler that ignores its cancellation token is dropped after the abort grace (shorter
    // at shutdown, which has a bound to keep).
    let stopped = async {
        cancel.cancelled().await;
        let patience = match d.lease.cancel_reason() {
            Some(CancelReason::Shutdown) => shutdown_abort(cfg),
            _ => cfg.abort_grace,
        };
        tokio::time::sleep(patience).await;
    };
    let outcome = tokio::select! {
        r = work => Some(r),
        () = stopped => None,
    };
    if d.lease.is_lost() {
        return Verdict::Fenced;
    }
    let reason = d.lease.cancel_reason();
    let (class, message) = match outcome {
        None => {
            return match reason {
                Some(CancelReason::Cancelled(r)) => Verdict::Cancelled { reason: r },
                Some(CancelReason::LeaseLost) => Verdict::Fenced,
                Some(CancelReason::Shutdown) | None => Verdict::HandBack,
            };
        }
        Some(Ok(Ok(value))) => {
            return if d.lease.confirm().await {
                Verdict::Succeeded(value)
            } else {
                Verdict::Fenced
            };
        }
        Some(Ok(Err(e))) => (e.class, e.message),
        Some(Err(panic)) => (
            ErrorClass::Transient,
            format!("handler panicked: {}", panic_message(&*panic)),
        ),
    };
    match reason {
        Some(CancelReason::Shutdown) => return Verdict::HandBack,
        Some(CancelReason::Cancelled(r)) => return Verdict::Cancelled { reason: r },
        _ => {}
    }
    if !d.lease.confirm().await {
        return Verdict::Fenced;
    }
    if class == ErrorClass::Permanent || d.is_last_attempt() {
        Verdict::Failed {
            error: message,
            class,
        }
    } else {
        Verdict::Retry {
            error: message,
            delay: cfg.backoff.delay(d.attempts_used),
        }
    }
}

/// Record the verdict in the store (first: it is the system of record), then tell Redis.
async fn settle(store: Option<&Store>, d: &Delivery, verdict: Verdict) -> Disposition {
    let (outcome, disposition) = match verdict {
        Verdict::Fenced => return Disposition::Abandon,
        // The attempt stays open in the store; the next start closes it as abandoned.
        Verdict::HandBack => return Disposition::HandBack,
        Verdict::Succeeded(result) => (
            AttemptOutcome::Succeeded {
                result: result.clone(),
            },
            Disposition::Complete(result),
        ),
        Verdict::Retry { error, delay } => (
            AttemptOutcome::Retrying {
                error: error.clone(),
                retry_at: chrono::Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()),
            },
            Disposition::Retry { error, delay },
        ),
        Verdict::Failed { error, class } => (
            AttemptOutcome::Failed {
                error: error.clone(),
                class,
            },
            Disposition::Dead { error },
        ),
        Verdict::Cancelled { reason } => (
            AttemptOutcome::Cancelled {
                reason: reason.clone(),
            },
            Disposition::Dead {
                error: format!("cancelled: {reason}"),
            },
        ),
    };
    let Some(store) = store else {
        return disposition;
    };
    let attempt = d.attempt as i32;
    match with_store(d, || store.finish_attempt(d.id, attempt, outcome.clone())).await {
        Some(true) => disposition,
        // Fenced in the store (cancelled or superseded meanwhile): drop the result, and stop
        // the job in Redis too.
        Some(false) => match disposition {
            Disposition::Dead { .. } => disposition,
            _ => Disposition::Dead {
                error: "the job store refused this attempt's result (cancelled or superseded meanwhile)"
                    .into(),
            },
        },
        // The job must stop before the store could be written: run it again later.
        None => match d.lease.cancel_reason() {
            Some(CancelReason::Shutdown) => Disposition::HandBack,
            _ => Disposition::Abandon,
        },
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_bound_is_the_grace_plus_eleven_seconds() {
        // Pinned: the chart's terminationGracePeriodSeconds (and its test) and the docs say so.
        assert_eq!(
            shutdown_bound(Duration::from_secs(30)),
            Duration::from_secs(41)
        );
        // The consumer's own bound fits: grace, wind-down (abort + settle), engine close and
        // leaving the registry.
        let grace = Duration::from_secs(30);
        let consumer = grace + SHUTDOWN_ABORT + SETTLE_BOUND + SETTLE_BOUND;
        assert!(consumer + Duration::from_millis(500) <= shutdown_bound(grace));
    }
}
