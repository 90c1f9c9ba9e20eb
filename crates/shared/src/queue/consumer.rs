//! The consumer side of a queue: a bullmq-official `Worker` wrapped so that its rough edges are
//! covered and every job ends in exactly one explicit [`Disposition`].
//!
//! What the wrapper adds, and why:
//! - Lease renewal is ours ([`Lease`]): bullmq-official's renewal only logs a lost lock, ours
//!   notices it, fires the job's cancellation token and refuses the late result. The same renewal
//!   reads an operator's cancel request, which a pub/sub message also announces at once.
//! - The engine's event channel is unbounded: a task drains it into metrics.
//! - Deaths count as attempts: the attempt number is BullMQ's `ats` (attempts started); the
//!   engine's own stalled-count limit is disabled so every verdict goes through our runtime.
//! - Retries wait in the delayed set with the delay the runtime chose (full jitter).
//! - Hand-back at shutdown puts a running job back at the head of the wait list at once.
//! - A job deferred by its cap goes back to the delayed set with its attempt number given back.
//! - Shutdown is bounded by its own clock, never by Redis: fetching stops at once, running jobs
//!   get the grace period, then a bounded wind-down; every Redis call on the way out has a
//!   deadline ([`SETTLE_BOUND`]) and the engine's own close (whose fetch and stalled-check
//!   loops retry an unreachable Redis for as long as they are let) is not waited for beyond
//!   it. What cannot be handed back in time keeps its lock until it expires and is rescued.
//! - Live workers publish a heartbeat with their current jobs.
//!
//! Panics are caught one level up, in the runtime, so the delivery callback always returns.

use super::{LeaseTiming, QueueError, WorkerInfo, keep_completed, keep_dead, now_ms, scripts};
use bullmq::options::RedisConnectionOptions;
use bullmq::worker::WorkerEvent;
use bullmq::{QueueKeys, Worker, WorkerOptions};
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use slipway_core::{JobId, JobKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The most a Redis call on the way out (a hand-back, a result, leaving the worker registry)
/// or the engine's close may take at shutdown: Redis may be gone or stalled, and what is not
/// done by then is rescued through the lease.
pub const SETTLE_BOUND: Duration = Duration::from_secs(2);

/// How long leaving the worker registry may take at shutdown: cosmetic (a silent worker drops
/// out of listings by itself), so an idle worker behind a stalled Redis still exits in well
/// under a second.
const LEAVE_BOUND: Duration = Duration::from_millis(500);

/// How a consumer connects and paces itself.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub redis_url: String,
    pub prefix: String,
    pub kind: JobKind,
    /// Jobs run at once; also the most jobs this consumer ever holds (bounded prefetch).
    pub concurrency: usize,
    /// A dead worker's job is picked up by another within this time.
    pub rescue_time: Duration,
    /// Shown in the worker registry and in `CLIENT LIST`.
    pub worker_name: String,
    /// Budget for jobs pushed without one.
    pub default_max_attempts: u32,
}

/// Why a job's cancellation token fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// Our lock expired or was taken: another worker may run the job; our result is refused.
    LeaseLost,
    /// An operator cancelled the job.
    Cancelled(String),
    /// The worker is shutting down and its grace period is over.
    Shutdown,
}

/// How a delivered job ends in Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Succeeded: moved to the completed set with its result.
    Complete(serde_json::Value),
    /// Failed, to be retried: waits `delay` in the delayed set with its error kept.
    Retry { error: String, delay: Duration },
    /// Failed for good (permanent error, last attempt, cancelled): moved to the dead set.
    Dead { error: String },
    /// Unfinished at shutdown: back to the head of the wait list for another worker at once.
    /// Its attempt stays counted (the job store counts every attempt it started).
    HandBack,
    /// The lease is lost: touch nothing (another worker owns the job now).
    Abandon,
    /// Not started (over its cap): back to the delayed set for `delay`, its attempt number
    /// given back, so waiting consumes no attempt; other jobs get the slot meanwhile.
    Defer { delay: Duration },
}

/// One job handed to the runtime.
#[derive(Clone)]
pub struct Delivery {
    pub id: JobId,
    pub kind: JobKind,
    /// The attempt number: starts so far, including this one and any whose worker died.
    pub attempt: u32,
    /// Attempts counted against the budget, including this one.
    pub attempts_used: u32,
    pub max_attempts: u32,
    /// The small payload carried in Redis.
    pub data: serde_json::Value,
    pub enqueued_at_ms: u64,
    pub lease: Lease,
    /// The consumer's id (for attempt records).
    pub worker_id: String,
}

impl Delivery {
    /// The `traceparent` the job was pushed with ([`QueueClient::push_traced`]), if any.
    ///
    /// [`QueueClient::push_traced`]: super::QueueClient::push_traced
    pub fn traceparent(&self) -> Option<&str> {
        self.data.get(super::TRACEPARENT_KEY)?.as_str()
    }

    /// Whether this is the last attempt the budget allows.
    pub fn is_last_attempt(&self) -> bool {
        self.attempts_used >= self.max_attempts
    }
}

/// The callback a consumer runs for each job; it must always return.
pub type OnDelivery = Arc<dyn Fn(Delivery) -> BoxFuture<'static, Disposition> + Send + Sync>;

/// A worker's hold on one job, renewed in the background while the job runs.
#[derive(Clone)]
pub struct Lease(Arc<LeaseInner>);

struct LeaseInner {
    job_id: String,
    job_key: String,
    lock_key: String,
    stalled_key: String,
    token: String,
    lock_ms: u64,
    conn: ConnectionManager,
    cancel: CancellationToken,
    reason: OnceLock<CancelReason>,
    lost: AtomicBool,
    /// When the last successful renewal (or the fetch) was sent: the lock lives at least until
    /// this plus the lock duration.
    held_since_ms: AtomicU64,
}

impl Lease {
    /// Fires when the job must stop (lease lost, operator cancel, shutdown).
    pub fn cancellation(&self) -> CancellationToken {
        self.0.cancel.clone()
    }

    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.0.reason.get().cloned()
    }

    pub fn is_lost(&self) -> bool {
        self.0.lost.load(Ordering::SeqCst)
    }

    /// The lock token (unique per fetch).
    pub fn token(&self) -> &str {
        &self.0.token
    }

    pub(crate) fn cancel(&self, reason: CancelReason) {
        // A lost lease is remembered apart from the (first) reason: whatever the handler was
        // told, its result must then be refused.
        if reason == CancelReason::LeaseLost {
            self.0.lost.store(true, Ordering::SeqCst);
        }
        let _ = self.0.reason.set(reason);
        self.0.cancel.cancel();
    }

    /// Extend the lock. Ok(false): the lock is no longer ours.
    async fn renew(&self) -> Result<bool, QueueError> {
        let sent = now_ms();
        let mut conn = self.0.conn.clone();
        let reply: Vec<redis::Value> = scripts::RENEW
            .key(&self.0.lock_key)
            .key(&self.0.stalled_key)
            .key(&self.0.job_key)
            .arg(&self.0.token)
            .arg(self.0.lock_ms)
            .arg(&self.0.job_id)
            .invoke_async(&mut conn)
            .await?;
        let held = matches!(reply.first(), Some(redis::Value::Int(1)));
        if !held {
            return Ok(false);
        }
        self.0.held_since_ms.fetch_max(sent, Ordering::Relaxed);
        if let Some(v) = reply.get(1) {
            let reason: String = redis::from_redis_value(v.clone()).unwrap_or_default();
            if self.cancel_reason().is_none() {
                self.cancel(CancelReason::Cancelled(reason));
            }
        }
        Ok(true)
    }

    /// Whether we still hold the lock, checked right before a result is committed (fencing).
    /// Free when the lock was confirmed within half a lock duration (it cannot have expired and
    /// BullMQ never takes a locked job); otherwise one round trip. A Redis error counts as not
    /// held: the result is dropped and the job is rescued and run again (at-least-once).
    pub async fn confirm(&self) -> bool {
        if self.is_lost() {
            return false;
        }
        let age = now_ms().saturating_sub(self.0.held_since_ms.load(Ordering::Relaxed));
        if age < self.0.lock_ms / 2 {
            return true;
        }
        match self.renew().await {
            Ok(true) => true,
            Ok(false) => {
                self.cancel(CancelReason::LeaseLost);
                false
            }
            Err(e) => {
                warn!(job_id = %self.0.job_id, error = %e, "cannot confirm lease; result dropped");
                false
            }
        }
    }
}

struct Shared {
    kind: JobKind,
    keys: QueueKeys,
    timing: LeaseTiming,
    conn: ConnectionManager,
    worker_id: String,
    default_max_attempts: u32,
    active: Mutex<HashMap<String, Lease>>,
    /// Set when shutdown begins: a job the engine fetched after that is handed back untouched.
    stopping: AtomicBool,
}

impl Shared {
    fn active_ids(&self) -> Vec<String> {
        self.active
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn set_active(&self, id: &str, lease: Option<Lease>) {
        if let Ok(mut m) = self.active.lock() {
            match lease {
                Some(l) => {
                    m.insert(id.to_owned(), l);
                }
                None => {
                    m.remove(id);
                }
            }
        }
    }

    /// Run one job fetched by the engine, and translate its disposition into engine calls.
    async fn process(
        self: Arc<Self>,
        job: bullmq::Job,
        on_delivery: OnDelivery,
    ) -> Result<serde_json::Value, bullmq::Error> {
        let id_str = job.id().to_owned();
        let Some(token) = job.token().map(str::to_owned) else {
            return Err(bullmq::Error::Unrecoverable(
                "fetched without a lock token".into(),
            ));
        };
        let Ok(id) = id_str.parse::<JobId>() else {
            return Err(bullmq::Error::Unrecoverable(format!(
                "job id {id_str:?} is not a uuid"
            )));
        };
        let attempt = job.attempts_started().max(1);
        let job_key = self.keys.job_key(&id_str);
        let lease = Lease(Arc::new(LeaseInner {
            job_id: id_str.clone(),
            lock_key: format!("{job_key}:lock"),
            job_key: job_key.clone(),
            stalled_key: self.keys.stalled(),
            token: token.clone(),
            lock_ms: self.timing.lock.as_millis() as u64,
            conn: self.conn.clone(),
            cancel: CancellationToken::new(),
            reason: OnceLock::new(),
            lost: AtomicBool::new(false),
            // The lock was set by the fetch, which happened before now.
            held_since_ms: AtomicU64::new(job.processed_on().unwrap_or_else(now_ms)),
        }));

        // Fields bullmq-official does not parse. Only a job started before can carry them.
        let base = if attempt > 1 {
            let mut conn = self.conn.clone();
            let fields: redis::RedisResult<(Option<u32>, Option<String>)> = redis::cmd("HMGET")
                .arg(&job_key)
                .arg("sw_base")
                .arg("sw_cancel")
                .query_async(&mut conn)
                .await;
            match fields {
                Ok((b, c)) => {
                    if let Some(reason) = c {
                        lease.cancel(CancelReason::Cancelled(reason));
                    }
                    b.unwrap_or(0)
                }
                Err(e) => {
                    // Without it the budget may be over-counted, never under-counted.
                    warn!(job_id = %id_str, error = %e, "cannot read job bookkeeping fields");
                    0
                }
            }
        } else {
            0
        };

        let delivery = Delivery {
            id,
            kind: self.kind,
            attempt,
            attempts_used: attempt.saturating_sub(base).max(1),
            max_attempts: job
                .opts()
                .attempts
                .filter(|a| *a > 0)
                .unwrap_or(self.default_max_attempts),
            data: job.data().clone(),
            enqueued_at_ms: job.timestamp(),
            lease: lease.clone(),
            worker_id: self.worker_id.clone(),
        };

        self.set_active(&id_str, Some(lease.clone()));
        // Guards: even if the callback panicked, renewal stops (so the job can be rescued) and
        // the job leaves the active registry, which it does only once its disposition is
        // applied (shutdown waits for that, within its bound).
        let registered = Unregister(&self, &id_str);
        let disposition = if self.stopping.load(Ordering::SeqCst) {
            // Fetched while shutting down (a fetch already in flight): not started at all.
            Disposition::HandBack
        } else {
            let renewer = AbortOnDrop(tokio::spawn(renew_loop(
                lease.clone(),
                self.timing.renew_every,
            )));
            let disposition = on_delivery(delivery).await;
            drop(renewer);
            disposition
        };
        let applied = self.apply(job, &lease, disposition).await;
        drop(registered);
        applied
    }

    async fn apply(
        &self,
        job: bullmq::Job,
        lease: &Lease,
        disposition: Disposition,
    ) -> Result<serde_json::Value, bullmq::Error> {
        // `Error::Delayed` tells the engine the job was already moved (or must not be touched).
        match disposition {
            Disposition::Complete(v) => Ok(v),
            Disposition::Dead { error } => Err(bullmq::Error::Unrecoverable(error)),
            Disposition::Abandon => Err(bullmq::Error::Delayed),
            Disposition::Retry { error, delay } => {
                let mut conn = self.conn.clone();
                let noted: redis::RedisResult<i64> = scripts::NOTE_FAILURE
                    .key(format!("{}:lock", self.keys.job_key(job.id())))
                    .key(self.keys.job_key(job.id()))
                    .arg(lease.token())
                    .arg(&error)
                    .invoke_async(&mut conn)
                    .await;
                if let Ok(0) = noted {
                    return Err(bullmq::Error::Delayed);
                }
                let at = now_ms() + delay.as_millis() as u64;
                if let Err(e) = job.move_to_delayed(at).await {
                    // The lock lapses and the job is rescued: at-least-once still holds.
                    warn!(job_id = %job.id(), error = %e, "cannot move job to the delayed set");
                }
                Err(bullmq::Error::Delayed)
            }
            Disposition::Defer { delay } => {
                let mut conn = self.conn.clone();
                let given_back: redis::RedisResult<i64> = scripts::UNCOUNT_START
                    .key(format!("{}:lock", self.keys.job_key(job.id())))
                    .key(self.keys.job_key(job.id()))
                    .arg(lease.token())
                    .invoke_async(&mut conn)
                    .await;
                match given_back {
                    Ok(1) => {}
                    // Not ours any more: whoever holds it now decides.
                    Ok(_) => return Err(bullmq::Error::Delayed),
                    // The attempt stays counted (over-counted, never lost) and the job waits.
                    Err(e) => warn!(job_id = %job.id(), error = %e, "cannot give back the attempt"),
                }
                // BullMQ's moveToDelayed without counting an attempt made (skip-attempt).
                if let Err(e) = job
                    .move_to_delayed(now_ms() + delay.as_millis() as u64)
                    .await
                {
                    // The lock lapses and the job is rescued with the same attempt number.
                    warn!(job_id = %job.id(), error = %e, "cannot move deferred job to the delayed set");
                }
                Err(bullmq::Error::Delayed)
            }
            Disposition::HandBack => {
                // Guarded by our lock token inside the engine's script. Bounded: at shutdown
                // Redis may be stalled, and a job not handed back is rescued by its lease.
                match tokio::time::timeout(SETTLE_BOUND, job.move_to_wait(None)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(job_id = %job.id(), error = %e, "cannot hand job back"),
                    Err(_) => warn!(
                        job_id = %job.id(),
                        "hand-back timed out; the job is rescued when its lock expires"
                    ),
                }
                Err(bullmq::Error::Delayed)
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Unregister<'a>(&'a Shared, &'a str);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.set_active(self.1, None);
    }
}

async fn renew_loop(lease: Lease, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match lease.renew().await {
            Ok(true) => {}
            Ok(false) => {
                warn!(job_id = %lease.0.job_id, "lease lost; cancelling the job");
                metrics::counter!("slipway_leases_lost_total").increment(1);
                lease.cancel(CancelReason::LeaseLost);
                return;
            }
            // Keep trying: the lock may well outlive a short Redis outage.
            Err(e) => warn!(job_id = %lease.0.job_id, error = %e, "lease renewal failed"),
        }
    }
}

/// A running consumer of one queue.
pub struct Consumer {
    worker: Arc<Worker>,
    shared: Arc<Shared>,
    background: Vec<JoinHandle<()>>,
}

/// Registers the help texts of the consumer's metrics.
fn describe_metrics() {
    crate::health::metrics_handle();
    metrics::describe_counter!(
        "slipway_queue_events_total",
        "Events of the queue engine's worker loop, by job kind and event (drained, ready, \
         closed, stalled, active, progress, paused, resumed)."
    );
    metrics::describe_counter!(
        "slipway_leases_lost_total",
        "Jobs whose lease this worker lost (not renewed in time, or taken by another worker)."
    );
}

impl Consumer {
    /// Connect and start fetching. Fails if Redis is unreachable (the runtime retries).
    pub async fn start(cfg: ConsumerConfig, on_delivery: OnDelivery) -> Result<Self, QueueError> {
        if cfg.concurrency == 0 {
            return Err(QueueError::Config("concurrency must be at least 1".into()));
        }
        describe_metrics();
        let timing = LeaseTiming::from_rescue_time(cfg.rescue_time);
        let client = redis::Client::open(cfg.redis_url.as_str())?;
        let conn = ConnectionManager::new_with_config(
            client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(5)))
                .set_response_timeout(Some(Duration::from_secs(5)))
                .set_max_delay(Duration::from_secs(2)),
        )
        .await?;
        let keys = QueueKeys::new(cfg.kind.queue_name(), Some(&cfg.prefix));

        let opts = WorkerOptions::new()
            .connection(RedisConnectionOptions::new().url(cfg.redis_url.as_str()))
            .prefix(cfg.prefix.as_str())
            .name(cfg.worker_name.as_str())
            .concurrency(cfg.concurrency)
            .lock_duration(timing.lock)
            .stalled_interval(timing.stalled_interval)
            // Deaths are counted by the runtime through `ats`; the engine must not fail a job
            // on its own behind the runtime's (and Postgres's) back.
            .max_stalled_count(1_000_000)
            .drain_delay(Duration::from_secs(2))
            .run_retry_delay(Duration::from_millis(500))
            .skip_lock_renewal()
            .skip_version_check()
            .remove_on_complete(keep_completed())
            .remove_on_fail(keep_dead())
            .manual_start();

        // The engine's id is only known once the worker exists; the processor reads it lazily.
        let slot: Arc<OnceLock<Arc<Shared>>> = Arc::new(OnceLock::new());
        let proc_slot = slot.clone();
        let processor =
            move |job: bullmq::Job, _engine_token: bullmq::worker::CancellationToken| {
                let shared = proc_slot.get().cloned();
                let on_delivery = on_delivery.clone();
                async move {
                    match shared {
                        Some(shared) => shared.process(job, on_delivery).await,
                        // Unreachable: the slot is filled before the worker runs.
                        None => Err(bullmq::Error::WorkerClosed),
                    }
                }
            };
        let worker = Arc::new(Worker::with_options(cfg.kind.queue_name(), processor, opts).await?);
        let shared = Arc::new(Shared {
            kind: cfg.kind,
            keys,
            timing,
            conn,
            worker_id: worker.id().to_owned(),
            default_max_attempts: cfg.default_max_attempts.max(1),
            active: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        });
        let _ = slot.set(shared.clone());

        let info = WorkerInfo {
            id: shared.worker_id.clone(),
            name: cfg.worker_name.clone(),
            host: hostname(),
            pid: std::process::id(),
            kind: cfg.kind,
            concurrency: cfg.concurrency,
            started_at_ms: now_ms(),
            last_heartbeat_ms: 0,
            heartbeat_every_ms: timing.renew_every.as_millis() as u64,
            jobs: Vec::new(),
        };
        worker.run().await?;
        // First heartbeat before any job, so the worker is visible at once.
        heartbeat(&shared, &info).await;
        let background = vec![
            tokio::spawn(drain_events(worker.clone(), cfg.kind)),
            tokio::spawn(heartbeat_loop(shared.clone(), info)),
            tokio::spawn(cancel_listener(client, shared.clone())),
        ];
        Ok(Consumer {
            worker,
            shared,
            background,
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Ids of the jobs this consumer runs now.
    pub fn active_jobs(&self) -> Vec<String> {
        self.shared.active_ids()
    }

    /// Fire the cancellation token of every running job.
    pub fn cancel_all(&self, reason: CancelReason) {
        if let Ok(m) = self.shared.active.lock() {
            for lease in m.values() {
                lease.cancel(reason.clone());
            }
        }
    }

    /// Graceful stop, bounded whatever Redis does: fetch nothing more (at once), let running
    /// jobs finish within `grace`, then cancel the rest with [`CancelReason::Shutdown`] (the
    /// runtime hands them back) and wait up to `wind_down` for that. Returns at most
    /// `grace + wind_down + SETTLE_BOUND + 0.5 s` after the call, at once when idle: the
    /// engine's close gets [`SETTLE_BOUND`], leaving the worker registry half a second; a job
    /// still running then is left to its lease.
    pub async fn shutdown(self, grace: Duration, wind_down: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let worker = self.worker.clone();
        let total = grace + wind_down + SETTLE_BOUND;
        // Sets the engine's closing flag at once (its fetch loop stops before the next
        // fetch), then waits for its loops: not longer than we let it, below.
        let mut closing = tokio::spawn(async move {
            if let Err(e) = worker.close(total.as_millis() as u64).await {
                warn!(error = %e, "closing the queue worker failed");
            }
        });
        let started = tokio::time::Instant::now();
        wait_idle(&self.shared, started + grace).await;
        if !self.shared.active_ids().is_empty() {
            self.cancel_all(CancelReason::Shutdown);
            wait_idle(&self.shared, started + grace + wind_down).await;
        }
        let left = self.shared.active_ids();
        if !left.is_empty() {
            warn!(jobs = ?left, "jobs not handed back in time; they are rescued when their locks expire");
        }
        // The engine records the results our callback returned (its own bookkeeping, no
        // Redis needed to know it is done); its fetch loop may sit in a blocking read or a
        // retry loop against an unreachable Redis, which is not worth waiting for.
        let settle = tokio::time::Instant::now() + SETTLE_BOUND;
        loop {
            if closing.is_finished()
                || self.worker.active_count().await == 0
                || tokio::time::Instant::now() >= settle
            {
                break;
            }
            tokio::select! {
                _ = &mut closing => break,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        closing.abort();
        for task in &self.background {
            task.abort();
        }
        let mut conn = self.shared.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(super::workers_key(&self.shared.keys))
            .arg(&self.shared.worker_id)
            .ignore()
            .cmd("ZREM")
            .arg(super::workers_hb_key(&self.shared.keys))
            .arg(&self.shared.worker_id)
            .ignore();
        let leave = pipe.query_async::<()>(&mut conn);
        // Unreachable Redis: the heartbeat goes stale and readers stop listing us.
        match tokio::time::timeout(LEAVE_BOUND, leave).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(error = %e, "worker registry entry not removed"),
            Err(_) => debug!("worker registry entry not removed: Redis did not answer"),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

async fn heartbeat(shared: &Shared, info: &WorkerInfo) {
    let now = now_ms();
    let mut info = info.clone();
    info.last_heartbeat_ms = now;
    info.jobs = shared.active_ids();
    let Ok(json) = serde_json::to_string(&info) else {
        return;
    };
    let hb_key = super::workers_hb_key(&shared.keys);
    let mut conn = shared.conn.clone();
    let r: redis::RedisResult<()> = redis::pipe()
        .cmd("HSET")
        .arg(super::workers_key(&shared.keys))
        .arg(&info.id)
        .arg(json)
        .ignore()
        .cmd("ZADD")
        .arg(&hb_key)
        .arg(now)
        .arg(&info.id)
        .ignore()
        .query_async(&mut conn)
        .await;
    if let Err(e) = r {
        debug!(error = %e, "heartbeat failed");
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, info: WorkerInfo) {
    let mut tick = tokio::time::interval(shared.timing.renew_every);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        heartbeat(&shared, &info).await;
        n += 1;
        if n.is_multiple_of(100) {
            prune_dead_workers(&shared).await;
        }
    }
}

/// Forget workers silent for an hour (their records are only for inspection).
async fn prune_dead_workers(shared: &Shared) {
    let hb_key = super::workers_hb_key(&shared.keys);
    let mut conn = shared.conn.clone();
    let old: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGEBYSCORE")
        .arg(&hb_key)
        .arg("-inf")
        .arg(now_ms().saturating_sub(3_600_000))
        .arg("LIMIT")
        .arg(0)
        .arg(100)
        .query_async(&mut conn)
        .await;
    if let Ok(old) = old
        && !old.is_empty()
    {
        let _: redis::RedisResult<()> = redis::pipe()
            .cmd("HDEL")
            .arg(super::workers_key(&shared.keys))
            .arg(&old)
            .ignore()
            .cmd("ZREM")
            .arg(&hb_key)
            .arg(&old)
            .ignore()
            .query_async(&mut conn)
            .await;
    }
}

/// Wait until no job is registered as running, or `deadline`.
async fn wait_idle(shared: &Shared, deadline: tokio::time::Instant) {
    while !shared.active_ids().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Hear operator cancels at once: a message names a job; if we run it, a lease renewal reads
/// the cancel flag (with its reason) and fires the job's token. Resubscribes after a lost
/// connection; messages missed meanwhile are caught by the renewals themselves.
async fn cancel_listener(client: redis::Client, shared: Arc<Shared>) {
    use futures::StreamExt;
    let channel = super::cancel_channel(&shared.keys);
    let mut delay = Duration::from_millis(200);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    delay = Duration::from_millis(200);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(id) = msg.get_payload::<String>() else {
                            continue;
                        };
                        let lease = shared.active.lock().ok().and_then(|m| m.get(&id).cloned());
                        if let Some(lease) = lease
                            && let Err(e) = lease.renew().await
                        {
                            debug!(job_id = %id, error = %e, "cannot read cancel request");
                        }
                    }
                }
                Err(e) => debug!(error = %e, "cannot subscribe to cancel requests"),
            },
            Err(e) => debug!(error = %e, "cannot open the cancel subscription"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// bullmq-official's event channel is unbounded: drain it, so it never grows, into metrics.
async fn drain_events(worker: Arc<Worker>, kind: JobKind) {
    while let Some(event) = worker.next_event().await {
        let name = match &event {
            WorkerEvent::Completed { .. } => "completed",
            WorkerEvent::Failed { .. } => "failed",
            WorkerEvent::Error(e) => {
                debug!(error = %e, "queue engine error");
                "error"
            }
            WorkerEvent::Drained => "drained",
            WorkerEvent::Ready => "ready",
            WorkerEvent::Closed => "closed",
            WorkerEvent::Stalled { job_id } => {
                warn!(%job_id, "stalled job moved back to wait (its worker died?)");
                "stalled"
            }
            WorkerEvent::Active { .. } => "active",
            WorkerEvent::Progress { .. } => "progress",
            WorkerEvent::Paused => "paused",
            WorkerEvent::Resumed => "resumed",
        };
        metrics::counter!("slipway_queue_events_total", "kind" => kind.as_str(), "event" => name)
            .increment(1);
    }
}
