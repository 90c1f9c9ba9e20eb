//! The Redis queues `build`, `launch` and `cleanup`: the only code that touches Redis for jobs.
//!
//! The engine is `bullmq-official` (BullMQ's Lua scripts and key layout, so existing BullMQ tools
//! can read our queues). This module adds what Slipway needs on top of it:
//! - the producer and operator side, [`QueueClient`]: idempotent push by job id (the Postgres
//!   uuid), counts, paginated listings, a job with its attempts and error, retry of a dead job,
//!   cancel of a queued or running job, pause/resume, live workers, age of the oldest waiting job;
//! - the consumer side, [`Consumer`], used by the worker runtime: bounded prefetch, our own lease
//!   renewal that notices a lost lock, a fence check before results are committed, operator
//!   cancellation, hand-back at shutdown, retries through the delayed set, a worker heartbeat
//!   registry and the engine's event channel drained into metrics.
//!
//! Vocabulary: BullMQ's `failed` set is Slipway's dead set; `ats` (attempts started) is the
//! attempt number, so a worker that died mid-job used up an attempt.

mod consumer;
mod scripts;

pub use consumer::{
    CancelReason, Consumer, ConsumerConfig, Delivery, Disposition, Lease, OnDelivery, SETTLE_BOUND,
};

use bullmq::types::{KeepJobs, RemoveOnFinish};
use bullmq::{BulkJob, JobOptions, Queue, QueueKeys, QueueOptions};
use serde::{Deserialize, Serialize};
use slipway_core::{JobId, JobKind};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key of a job's Redis payload that carries the `traceparent` of the request that created
/// it. Postgres holds the same value (`trace_context`), but the worker needs it before its first
/// store call: a span's parent cannot change once the span has been entered.
pub const TRACEPARENT_KEY: &str = "traceparent";

/// The Redis payload of a job: its `traceparent`, when it has one.
pub fn traced_data(traceparent: Option<&str>) -> serde_json::Value {
    match traceparent {
        Some(traceparent) => serde_json::json!({ TRACEPARENT_KEY: traceparent }),
        None => serde_json::json!({}),
    }
}

/// Everything that can go wrong talking to the queues.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("queue engine: {0}")]
    Engine(#[from] bullmq::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid queue configuration: {0}")]
    Config(String),
}

/// A refused password is a configuration error, not an outage: say so at once. The queue
/// engine treats it as a lost connection and retries it for most of a minute, which looked like
/// a hang (a chart whose Redis Secret and URL disagree). Anything else (Redis down, slow) is
/// left to the engine's own connection handling.
async fn check_credentials(redis_url: &str) -> Result<(), QueueError> {
    let client = redis::Client::open(redis_url)?;
    let probe = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Err(e)) if is_auth_error(&e) => Err(QueueError::Config(format!(
            "Redis refused the credentials in the Redis URL (SLIPWAY_REDIS_URL): {e}"
        ))),
        _ => Ok(()),
    }
}

fn is_auth_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// The backoff type recorded on every job. Retries are scheduled by the runtime (full jitter from
/// `BackoffPolicy`), so BullMQ's own backoff never runs; the name only tells BullMQ tools why.
const BACKOFF_NAME: &str = "slipway-full-jitter";

/// Keep finished jobs around for idempotency and inspection, bounded so Redis does not grow
/// without end (Postgres is the record; these are the transport's copies).
fn keep_completed() -> RemoveOnFinish {
    RemoveOnFinish::Options(KeepJobs {
        age: Some(24 * 3600),
        count: Some(100_000),
        limit: None,
    })
}

fn keep_dead() -> RemoveOnFinish {
    RemoveOnFinish::Options(KeepJobs {
        age: Some(14 * 24 * 3600),
        count: Some(100_000),
        limit: None,
    })
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lock duration, lock renewal and stalled-check interval derived from the rescue time.
///
/// A dead worker's lock expires at most one lock duration after its last renewal; bullmq-official
/// moves a job back to wait at the first stalled check that finds it both marked (by an earlier
/// check) and unlocked. Its checker runs at half the configured rate (each run sets a
/// `stalled-check` key that lives exactly one interval, so the next tick finds it still there;
/// measured on Redis 7: configured 1 s, runs 2 s apart), so one effective period is two
/// intervals. Worst case: lock + 2 x interval = rescue/3 + rescue/3,
/// leaving a third of the rescue time for pickup and a loaded machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub lock: Duration,
    pub renew_every: Duration,
    pub stalled_interval: Duration,
}

impl LeaseTiming {
    pub fn from_rescue_time(rescue: Duration) -> Self {
        let rescue = rescue.max(Duration::from_millis(900));
        let lock = rescue / 3;
        LeaseTiming {
            lock,
            // Three renewals per lock duration: two may be missed before the lease is at risk.
            renew_every: lock / 3,
            stalled_interval: rescue / 6,
        }
    }
}

/// Where a job is in Redis. `Waiting` includes jobs parked by a paused queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Waiting,
    Active,
    Delayed,
    Completed,
    Dead,
}

impl QueueState {
    pub const ALL: [QueueState; 5] = [
        QueueState::Waiting,
        QueueState::Active,
        QueueState::Delayed,
        QueueState::Completed,
        QueueState::Dead,
    ];

    fn bull_type(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::Active => "active",
            QueueState::Delayed => "delayed",
            QueueState::Completed => "completed",
            QueueState::Dead => "failed",
        }
    }

    fn from_bull(state: bullmq::JobState) -> Option<Self> {
        use bullmq::JobState as B;
        match state {
            B::Waiting | B::Prioritized | B::WaitingChildren => Some(QueueState::Waiting),
            B::Active => Some(QueueState::Active),
            B::Delayed => Some(QueueState::Delayed),
            B::Completed => Some(QueueState::Completed),
            B::Failed => Some(QueueState::Dead),
            B::Unknown => None,
        }
    }
}

/// Jobs per state in one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub waiting: u64,
    pub active: u64,
    pub delayed: u64,
    pub completed: u64,
    pub dead: u64,
    pub paused: bool,
}

/// A page of a listing: `offset` jobs skipped, at most `limit` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

impl Page {
    pub fn first(limit: u64) -> Self {
        Page { offset: 0, limit }
    }
    pub fn next(self) -> Self {
        Page {
            offset: self.offset + self.limit,
            limit: self.limit,
        }
    }
}

/// One job as Redis knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedJob {
    pub id: String,
    pub kind: JobKind,
    pub state: Option<QueueState>,
    /// Attempts started, including ones whose worker died (the current attempt number).
    pub attempts_started: u32,
    /// Attempts counted against the current budget (those before an operator retry excluded).
    pub attempts_used: u32,
    pub max_attempts: u32,
    /// The last error: the reason of a dead job, or the error of the last failed attempt.
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub data: serde_json::Value,
    pub enqueued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// A cancel request not yet acted on.
    pub cancel_requested: Option<String>,
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The job was waiting or delayed and is gone from the queue.
    Removed,
    /// The job is running; its worker was told at once (pub/sub, with the flag read at every
    /// lease renewal as a fallback) and stops it.
    Signalled,
    /// No such job, or it had already finished.
    NotFound,
}

/// A live worker as seen through its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub kind: JobKind,
    pub concurrency: usize,
    pub started_at_ms: u64,
    pub last_heartbeat_ms: u64,
    pub heartbeat_every_ms: u64,
    pub jobs: Vec<String>,
}

pub(crate) fn workers_key(keys: &QueueKeys) -> String {
    keys.get("sw:workers")
}

pub(crate) fn workers_hb_key(keys: &QueueKeys) -> String {
    keys.get("sw:workers:hb")
}

/// Pub/sub channel on which `cancel` names a running job, so its worker hears of it at once
/// (the flag in the job hash, read at every renewal, covers messages lost while disconnected).
pub(crate) fn cancel_channel(keys: &QueueKeys) -> String {
    keys.get("sw:cancel")
}

/// The producer and operator side of the queues.
#[derive(Clone)]
pub struct QueueClient {
    queues: HashMap<JobKind, Queue>,
    prefix: String,
}

impl QueueClient {
    /// Connect to Redis at `redis_url`; every key lives under `prefix` (e.g. `slipway`).
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<Self, QueueError> {
        check_credentials(redis_url).await?;
        let mut queues = HashMap::new();
        for kind in JobKind::ALL {
            let opts = QueueOptions::new()
                .connection(bullmq::options::RedisConnectionOptions::new().url(redis_url))
                .prefix(prefix)
                .skip_version_check();
            queues.insert(kind, Queue::with_options(kind.queue_name(), opts).await?);
        }
        Ok(QueueClient {
            queues,
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn queue(&self, kind: JobKind) -> &Queue {
        // Every kind is inserted by `connect`.
        &self.queues[&kind]
    }

    fn conn(&self, kind: JobKind) -> bullmq::redis_connection::AnyConnection {
        self.queue(kind).connection().connection()
    }

    fn job_options(job_id: &str, attempt_budget: u32) -> JobOptions {
        JobOptions::new()
            .job_id(job_id)
            .attempts(attempt_budget.max(1))
            .backoff(bullmq::types::BackoffStrategy::Custom(BACKOFF_NAME.into()))
    }

    /// Queue a job carrying the W3C `traceparent` of the request that created it (the job
    /// row's `trace_context`), so the worker's job span continues that trace from its first
    /// instant; see [`Delivery::traceparent`]. Otherwise like [`push`](Self::push).
    pub async fn push_traced(
        &self,
        kind: JobKind,
        job_id: JobId,
        attempt_budget: u32,
        traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        self.push_with_data(kind, job_id, attempt_budget, traced_data(traceparent))
            .await
    }

    /// Queue a job. Idempotent by id: pushing an id that is queued, running or completed
    /// queues nothing. A job in the dead set is put back with a fresh budget: the job store
    /// re-enqueues a job after an operator retry, and its push must not be a no-op.
    pub async fn push(
        &self,
        kind: JobKind,
        job_id: JobId,
        attempt_budget: u32,
    ) -> Result<(), QueueError> {
        self.push_with_data(kind, job_id, attempt_budget, serde_json::json!({}))
            .await
    }

    /// [`push_traced`](Self::push_traced) for a job recorded a moment ago: its fresh id cannot
    /// be in the dead set, so the dead-set check (and revive) is left out. The API's enqueue
    /// path.
    pub async fn push_new(
        &self,
        kind: JobKind,
        job_id: JobId,
        attempt_budget: u32,
        traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        let options = Self::job_options(&job_id.to_string(), attempt_budget);
        self.add(kind, traced_data(traceparent), options).await
    }

    /// Adds one job to `kind`'s queue: what every push comes down to.
    async fn add(
        &self,
        kind: JobKind,
        data: serde_json::Value,
        options: JobOptions,
    ) -> Result<(), QueueError> {
        self.queue(kind)
            .add(kind.as_str(), data)
            .options(options)
            .await?;
        Ok(())
    }

    /// Like [`push`](Self::push), with a small payload carried in Redis (the job record in
    /// Postgres is the real payload; this is for hints and tests).
    pub async fn push_with_data(
        &self,
        kind: JobKind,
        job_id: JobId,
        attempt_budget: u32,
        data: serde_json::Value,
    ) -> Result<(), QueueError> {
        let id = job_id.to_string();
        let ids = std::slice::from_ref(&id);
        // Both in flight at once on the multiplexed connection: one round trip. A job found
        // dead is one the add left alone.
        let add = self.add(kind, data, Self::job_options(&id, attempt_budget));
        let (added, dead) = tokio::join!(add, self.dead_among(kind, ids));
        added?;
        self.revive(kind, dead?).await
    }

    /// The ones among `ids` that sit in the dead set (one pipelined check).
    async fn dead_among(&self, kind: JobKind, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let failed = self.queue(kind).keys().failed();
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("ZSCORE").arg(&failed).arg(id);
        }
        let scores: Vec<Option<f64>> = pipe.query_async(&mut self.conn(kind)).await?;
        Ok(ids
            .iter()
            .zip(scores)
            .filter(|(_, score)| score.is_some())
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn revive(&self, kind: JobKind, dead: Vec<String>) -> Result<(), QueueError> {
        for id in dead {
            self.retry_dead(kind, &id).await?;
        }
        Ok(())
    }

    /// Queue many jobs, pipelined in chunks. Idempotent by id like [`push`](Self::push).
    pub async fn push_bulk(&self, kind: JobKind, jobs: &[(JobId, u32)]) -> Result<(), QueueError> {
        let items: Vec<_> = jobs
            .iter()
            .map(|(id, budget)| (*id, *budget, serde_json::json!({})))
            .collect();
        self.push_bulk_with_data(kind, items).await
    }

    /// [`push_bulk`](Self::push_bulk) with a payload per job.
    pub async fn push_bulk_with_data(
        &self,
        kind: JobKind,
        jobs: Vec<(JobId, u32, serde_json::Value)>,
    ) -> Result<(), QueueError> {
        // Bounded chunks: add_bulk sends a whole chunk at once over the multiplexed connection.
        const CHUNK: usize = 2_000;
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let mut ids = Vec::with_capacity(CHUNK);
            let chunk: Vec<BulkJob> = jobs
                .by_ref()
                .take(CHUNK)
                .map(|(id, budget, data)| {
                    let id = id.to_string();
                    let job =
                        BulkJob::with_options(kind.as_str(), data, Self::job_options(&id, budget));
                    ids.push(id);
                    job
                })
                .collect();
            let (added, dead) = tokio::join!(
                self.queue(kind).add_bulk(chunk),
                self.dead_among(kind, &ids)
            );
            added?;
            self.revive(kind, dead?).await?;
        }
        Ok(())
    }

    /// Jobs per state. A handful of O(1) commands, whatever the queue size.
    pub async fn counts(&self, kind: JobKind) -> Result<QueueCounts, QueueError> {
        let q = self.queue(kind);
        let c = q.get_job_counts().await?;
        Ok(QueueCounts {
            waiting: c.waiting + c.paused + c.prioritized + c.waiting_children,
            active: c.active,
            delayed: c.delayed,
            completed: c.completed,
            dead: c.failed,
            paused: q.is_paused().await?,
        })
    }

    /// Job ids in a state, newest first, one page at a time (a range read: cheap at any size).
    pub async fn list_ids(
        &self,
        kind: JobKind,
        state: QueueState,
        page: Page,
    ) -> Result<Vec<String>, QueueError> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let start = page.offset as i64;
        let end = start + page.limit as i64 - 1;
        let mut ids = self
            .queue(kind)
            .get_ranges(&[state.bull_type()], start, end, false)
            .await?;
        // `waiting` reads both the wait and the paused list; only one is non-empty at a time,
        // but keep the page size honest.
        ids.truncate(page.limit as usize);
        Ok(ids)
    }

    /// Jobs in a state with their details, one page at a time.
    pub async fn list(
        &self,
        kind: JobKind,
        state: QueueState,
        page: Page,
    ) -> Result<Vec<QueuedJob>, QueueError> {
        let ids = self.list_ids(kind, state, page).await?;
        let keys = self.queue(kind).keys();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(keys.job_key(id));
        }
        let hashes: Vec<HashMap<String, String>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn(kind)).await?
        };
        Ok(ids
            .into_iter()
            .zip(hashes)
            .filter(|(_, h)| !h.is_empty())
            .map(|(id, h)| parse_job(kind, id, Some(state), &h))
            .collect())
    }

    /// One job with its attempts, state and error; `None` if Redis does not know it.
    pub async fn get(&self, kind: JobKind, id: &str) -> Result<Option<QueuedJob>, QueueError> {
        let q = self.queue(kind);
        let hash: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(q.keys().job_key(id))
            .query_async(&mut self.conn(kind))
            .await?;
        if hash.is_empty() {
            return Ok(None);
        }
        let state = QueueState::from_bull(q.get_job_state(id).await?);
        Ok(Some(parse_job(kind, id.to_owned(), state, &hash)))
    }

    /// Put a dead job back in the queue with a fresh attempt budget. False if it is not dead.
    pub async fn retry_dead(&self, kind: JobKind, id: &str) -> Result<bool, QueueError> {
        let q = self.queue(kind);
        let keys = q.keys();
        let reset: i64 = scripts::RESET_BUDGET
            .key(keys.job_key(id))
            .key(keys.failed())
            .arg(id)
            .invoke_async(&mut self.conn(kind))
            .await?;
        if reset != 1 {
            return Ok(false);
        }
        let Some(mut job) = q.get_job(id).await? else {
            return Ok(false);
        };
        job.retry(
            "failed",
            Some(bullmq::RetryOptions {
                reset_attempts_made: true,
                // Attempt numbers keep counting up: they fence results in Postgres.
                reset_attempts_started: false,
            }),
        )
        .await?;
        Ok(true)
    }

    /// Cancel a job: a waiting or delayed job is removed; a running job's worker is told and
    /// stops, and the job goes to the dead set as cancelled.
    pub async fn cancel(
        &self,
        kind: JobKind,
        id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, QueueError> {
        let q = self.queue(kind);
        let state = q.get_job_state(id).await?;
        use bullmq::JobState as B;
        match state {
            B::Completed | B::Failed | B::Unknown => return Ok(CancelOutcome::NotFound),
            B::Active => {}
            _ => {
                // Removal is refused while the job is locked, i.e. it just became active.
                if q.remove(id).await? {
                    return Ok(CancelOutcome::Removed);
                }
            }
        }
        let flagged: i64 = scripts::FLAG_CANCEL
            .key(q.keys().job_key(id))
            .arg(if reason.is_empty() {
                "cancelled"
            } else {
                reason
            })
            .invoke_async(&mut self.conn(kind))
            .await?;
        if flagged != 1 {
            return Ok(CancelOutcome::NotFound);
        }
        // Best effort: without it the worker still sees the flag at its next renewal.
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(cancel_channel(q.keys()))
            .arg(id)
            .query_async(&mut self.conn(kind))
            .await;
        if let Err(e) = published {
            tracing::debug!(error = %e, "cancel notification not published");
        }
        Ok(CancelOutcome::Signalled)
    }

    /// Stop handing out jobs of this kind (running ones continue).
    pub async fn pause(&self, kind: JobKind) -> Result<(), QueueError> {
        Ok(self.queue(kind).pause().await?)
    }

    pub async fn resume(&self, kind: JobKind) -> Result<(), QueueError> {
        Ok(self.queue(kind).resume().await?)
    }

    pub async fn is_paused(&self, kind: JobKind) -> Result<bool, QueueError> {
        Ok(self.queue(kind).is_paused().await?)
    }

    /// Workers whose heartbeat is fresh (within three of their heartbeat intervals).
    pub async fn workers(&self, kind: JobKind) -> Result<Vec<WorkerInfo>, QueueError> {
        let keys = self.queue(kind).keys();
        let now = now_ms();
        let mut conn = self.conn(kind);
        // Heartbeats older than a minute belong to dead workers whatever their interval.
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(workers_hb_key(keys))
            .arg(now.saturating_sub(60_000))
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(workers_key(keys))
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        let mut out: Vec<WorkerInfo> = raw
            .into_iter()
            .flatten()
            .filter_map(|s| serde_json::from_str::<WorkerInfo>(&s).ok())
            .filter(|w| now.saturating_sub(w.last_heartbeat_ms) <= 3 * w.heartbeat_every_ms)
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// How long the oldest waiting job has waited (None when nothing waits). O(1): the oldest
    /// job sits at the consuming end of the wait (or paused) list.
    pub async fn oldest_waiting_age(&self, kind: JobKind) -> Result<Option<Duration>, QueueError> {
        let keys = self.queue(kind).keys();
        let mut conn = self.conn(kind);
        for list in [keys.wait(), keys.paused()] {
            let id: Option<String> = redis::cmd("LINDEX")
                .arg(&list)
                .arg(-1)
                .query_async(&mut conn)
                .await?;
            if let Some(id) = id {
                let ts: Option<u64> = redis::cmd("HGET")
                    .arg(keys.job_key(&id))
                    .arg("timestamp")
                    .query_async(&mut conn)
                    .await?;
                if let Some(ts) = ts {
                    return Ok(Some(Duration::from_millis(now_ms().saturating_sub(ts))));
                }
            }
        }
        Ok(None)
    }

    /// The ones among `ids` Redis does not hold at all (no job hash): lost with Redis's data,
    /// or trimmed. One pipelined round trip.
    pub async fn missing(&self, kind: JobKind, ids: &[JobId]) -> Result<Vec<JobId>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.queue(kind).keys();
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("EXISTS").arg(keys.job_key(&id.to_string()));
        }
        let found: Vec<i64> = pipe.query_async(&mut self.conn(kind)).await?;
        Ok(ids
            .iter()
            .zip(found)
            .filter(|(_, n)| *n == 0)
            .map(|(id, _)| *id)
            .collect())
    }

    /// Put back a job Redis lost, keeping its attempt numbering: `attempts_started` attempts
    /// (of which `base` before the latest operator retry) were already started, so its next
    /// delivery is attempt `attempts_started + 1` with `budget` attempts for the run, and its
    /// results stay fenced in Postgres. The job becomes due after a short delay, so the
    /// bookkeeping is written before any worker can fetch it.
    pub async fn restore(
        &self,
        kind: JobKind,
        job_id: JobId,
        budget: u32,
        attempts_started: u32,
        base: u32,
        traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        if attempts_started == 0 {
            return self.push_traced(kind, job_id, budget, traceparent).await;
        }
        let id = job_id.to_string();
        let options = Self::job_options(&id, budget).delay(Duration::from_millis(500));
        self.add(kind, traced_data(traceparent), options).await?;
        let _: () = redis::cmd("HSET")
            .arg(self.queue(kind).keys().job_key(&id))
            .arg("ats")
            .arg(attempts_started)
            .arg("sw_base")
            .arg(base)
            .query_async(&mut self.conn(kind))
            .await?;
        Ok(())
    }

    /// Trim the transport's copies of finished jobs beyond their retention (completed: a
    /// day; dead: two weeks; Postgres keeps the record) and the event stream. BullMQ trims
    /// on each completion; this covers queues that went quiet. Returns how many jobs went.
    pub async fn trim_finished(&self, kind: JobKind) -> Result<usize, QueueError> {
        const LIMIT: u32 = 1_000;
        let q = self.queue(kind);
        let completed = q.clean(24 * 3600 * 1000, LIMIT, "completed").await?;
        let dead = q.clean(14 * 24 * 3600 * 1000, LIMIT, "failed").await?;
        q.trim_events(10_000).await?;
        Ok(completed.len() + dead.len())
    }

    /// Check Redis is reachable (for readiness probes).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn(JobKind::Build);
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Close the connections.
    pub async fn close(&self) {
        for q in self.queues.values() {
            q.close().await;
        }
    }
}

/// `/readyz` check of Redis: a PING through the queue client's connection.
#[derive(Clone)]
pub struct RedisCheck {
    client: QueueClient,
}

impl RedisCheck {
    pub fn new(client: QueueClient) -> Self {
        RedisCheck { client }
    }
}

#[async_trait::async_trait]
impl crate::health::ReadinessCheck for RedisCheck {
    fn name(&self) -> &str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        self.client.ping().await.map_err(|e| e.to_string())
    }
}

fn parse_u32(h: &HashMap<String, String>, k: &str) -> u32 {
    h.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn parse_job(
    kind: JobKind,
    id: String,
    state: Option<QueueState>,
    h: &HashMap<String, String>,
) -> QueuedJob {
    let ats = parse_u32(h, "ats");
    let used = ats.saturating_sub(parse_u32(h, "sw_base"));
    let max_attempts = h
        .get("opts")
        .and_then(|o| serde_json::from_str::<JobOptions>(o).ok())
        .and_then(|o| o.attempts)
        .unwrap_or(0);
    let error = h.get("failedReason").filter(|s| !s.is_empty()).cloned();
    let result = h
        .get("returnvalue")
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str(s).ok());
    QueuedJob {
        id,
        kind,
        state,
        attempts_started: ats,
        attempts_used: used,
        max_attempts,
        error,
        result,
        data: h
            .get("data")
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(serde_json::Value::Null),
        enqueued_at_ms: h.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0),
        started_at_ms: h.get("processedOn").and_then(|t| t.parse().ok()),
        finished_at_ms: h.get("finishedOn").and_then(|t| t.parse().ok()),
        cancel_requested: h.get("sw_cancel").cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_timing_meets_the_rescue_time_with_the_half_rate_stalled_check() {
        for secs in [3, 6, 15, 60] {
            let rescue = Duration::from_secs(secs);
            let t = LeaseTiming::from_rescue_time(rescue);
            // Worst case: lock expiry, then one effective (doubled) stalled period.
            let worst = t.lock + 2 * t.stalled_interval;
            assert!(worst < rescue, "{t:?} misses {rescue:?}");
            assert!(t.renew_every * 3 <= t.lock, "{t:?} renews too rarely");
        }
        let t = LeaseTiming::from_rescue_time(Duration::from_secs(15));
        assert_eq!(t.lock, Duration::from_secs(5));
        assert_eq!(t.stalled_interval, Duration::from_millis(2_500));
    }
}
