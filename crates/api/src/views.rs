//! What the API returns: jobs with their attempts, previews, log pages and lists. Field names
//! are the contract of DESIGN.md.
//!
//! These are the read models of every view: the JSON API, the MCP tools (`crate::mcp`) and the
//! dashboard serialise these same types, built by the same queries (`crate::read`). Each
//! derives both `utoipa::ToSchema` (for `/openapi.json`) and `schemars::JsonSchema` (for the MCP
//! tools' `outputSchema`), so neither schema can drift from what is sent.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_shared::store::{AttemptRecord, JobRecord, PreviewRecord, PreviewUsage, StoredLogLine};
use utoipa::ToSchema;

/// A job as returned by every endpoint.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct JobView {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// `build`, `launch` or `cleanup`.
    #[schema(value_type = String)]
    #[schemars(with = "String")]
    pub kind: slipway_core::JobKind,
    /// `queued`, `running`, `retrying`, `succeeded`, `failed`, `cancelled` or `superseded`.
    #[schema(value_type = String)]
    #[schemars(with = "String")]
    pub state: slipway_core::JobState,
    pub preview: Option<String>,
    pub commit: Option<String>,
    /// The validated request, defaults applied.
    #[schema(value_type = Object)]
    #[schemars(schema_with = "crate::schema::object")]
    pub request: Value,
    /// Every attempt, first to last.
    pub attempts: Vec<AttemptView>,
    pub max_attempts: i32,
    /// A build: `image` and `digest`; a launch: `url`, `namespace`, `pods`.
    #[schema(value_type = Option<Object>)]
    #[schemars(schema_with = "crate::schema::object_or_null")]
    pub result: Option<Value>,
    pub error: Option<String>,
    /// `transient` or `permanent`, when the job failed.
    #[schema(value_type = Option<String>)]
    #[schemars(with = "Option<String>")]
    pub error_class: Option<slipway_core::ErrorClass>,
    pub created_at: DateTime<Utc>,
    pub enqueued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When a `retrying` job runs again.
    pub retry_at: Option<DateTime<Utc>>,
    /// A build's progress through its Dockerfile steps, as the build worker last read it from
    /// BuildKit's output; null before the first step and for other kinds. While the job is
    /// `running` it is the current step; after, the step it ended on.
    pub progress: Option<BuildProgressView>,
    pub links: JobLinks,
}

/// "Step n of m" of a build (docs/dashboard.md says how steps are counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, JsonSchema)]
pub struct BuildProgressView {
    /// Steps started so far, cached ones included.
    pub step: u32,
    /// Steps of every build stage seen so far.
    pub steps: u32,
    /// The latest step, e.g. `[builder 2/5] RUN cargo build`.
    pub name: String,
    /// When the latest step began.
    pub step_started_at: Option<DateTime<Utc>>,
}

impl BuildProgressView {
    /// The job's stored progress, if it has a readable one.
    pub fn of(job: &JobRecord) -> Option<Self> {
        job.progress
            .as_ref()
            .and_then(|p| serde_json::from_value(p.clone()).ok())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub logs: String,
}

/// One attempt of a job.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct AttemptView {
    pub attempt: i32,
    pub worker_id: String,
    /// `succeeded`, `retrying`, `failed`, `cancelled`, `superseded`, `abandoned` (its worker
    /// died), or null while running.
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// Kubernetes objects this attempt created.
    pub k8s_objects: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        AttemptView {
            attempt: a.attempt,
            worker_id: a.worker_id,
            outcome: a.outcome,
            error: a.error,
            k8s_objects: a.k8s_objects,
            started_at: a.started_at,
            finished_at: a.finished_at,
        }
    }
}

impl JobView {
    pub fn new(job: JobRecord, attempts: Vec<AttemptRecord>) -> Self {
        let self_ = format!("/v1/jobs/{}", job.id);
        let progress = BuildProgressView::of(&job);
        JobView {
            progress,
            links: JobLinks {
                logs: format!("{self_}/logs"),
                self_,
            },
            id: job.id,
            kind: job.kind,
            state: job.state,
            preview: job.preview,
            commit: job.commit_sha,
            request: job.payload,
            attempts: attempts.into_iter().map(AttemptView::from).collect(),
            max_attempts: job.max_attempts,
            result: job.result,
            error: job.error,
            error_class: job.error_class,
            created_at: job.created_at,
            enqueued_at: job.enqueued_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            retry_at: job.retry_at,
        }
    }
}

/// A page of a list. `next_cursor` is opaque; pass it back as `cursor` for the next page.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct List<T: ToSchema + JsonSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A preview environment, as the registry records it.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct PreviewView {
    pub key: String,
    pub namespace: String,
    pub url: Option<String>,
    pub status: String,
    pub image: Option<String>,
    pub commit: Option<String>,
    pub pods: Vec<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub last_job_id: Option<uuid::Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<PreviewRecord> for PreviewView {
    fn from(p: PreviewRecord) -> Self {
        PreviewView {
            key: p.key,
            namespace: p.namespace,
            url: p.url,
            status: p.status,
            image: p.image,
            commit: p.commit_sha,
            pods: p.pods,
            last_job_id: p.last_job_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
            expires_at: p.expires_at,
            deleted_at: p.deleted_at,
        }
    }
}

/// One stored log line.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct LogLineView {
    pub attempt: i32,
    pub seq: i64,
    pub ts: DateTime<Utc>,
    /// `stdout`, `stderr` or `system` (Slipway's own notes).
    pub stream: String,
    pub text: String,
}

impl From<StoredLogLine> for LogLineView {
    fn from(l: StoredLogLine) -> Self {
        LogLineView {
            attempt: l.attempt,
            seq: l.seq,
            ts: l.ts,
            stream: l.stream,
            text: l.text,
        }
    }
}

/// A page of a job's log.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct LogsView {
    pub lines: Vec<LogLineView>,
    /// Pass back as `after` to read on (`<attempt>:<seq>` of the last line returned).
    pub next: Option<String>,
    /// The `seq` after the last line returned (within its attempt).
    pub next_seq: i64,
    /// True when the job has finished and there is nothing more to read.
    pub complete: bool,
}

/// One queue's figures.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct QueueView {
    pub queue: String,
    pub counts: QueueCountsView,
    pub paused: bool,
    /// Seconds the oldest waiting job has waited.
    pub oldest_waiting_age_s: Option<f64>,
    pub workers: Vec<WorkerView>,
}

#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct QueueCountsView {
    pub waiting: u64,
    pub active: u64,
    pub delayed: u64,
    pub completed: u64,
    /// The dead set: jobs that failed for good.
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct WorkerView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub concurrency: usize,
    pub started_at: Option<DateTime<Utc>>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Ids of the jobs it runs now.
    pub jobs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct QueueList {
    pub items: Vec<QueueView>,
}

/// The pull request a preview belongs to (GitHub previews are keyed `<owner>/<repo>#<number>`).
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct PullRequestRef {
    /// `owner/repo`.
    pub repository: String,
    pub number: u64,
}

/// A preview with what a person or an agent asks next: its pull request, age and latest jobs.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct PreviewDetailView {
    /// The preview's key.
    pub key: String,
    /// The registry's record; null while no launch has recorded the preview (its first build
    /// is queued, running or failed).
    pub preview: Option<PreviewView>,
    /// Null when the key is not a pull request's (`<owner>/<repo>#<number>`).
    pub pull_request: Option<PullRequestRef>,
    /// Seconds since the preview was first recorded.
    pub age_s: i64,
    /// CPU and memory in use against the namespace quota, as the cleanup worker last read them
    /// (every sweep, a minute by default); null before the first reading or once the preview
    /// has ended. The API never asks Kubernetes.
    pub resource_use: Option<ResourceUseView>,
    /// The preview's newest jobs (builds, launches, cleanups), newest first, at most five.
    pub latest_jobs: Vec<JobView>,
}

/// A preview's latest resource reading: its pods' usage as metrics-server measured it, against
/// its namespace quota's ceilings (limits, else requests). Millicores and bytes.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct ResourceUseView {
    pub sampled_at: DateTime<Utc>,
    /// `ok`; `no_metrics_server` (the cluster has none: a normal state, shown as "no metrics")
    /// or `metrics_unavailable` (it did not answer), with the usage fields null.
    pub metrics: String,
    pub pods: Option<i32>,
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub cpu_limit_millis: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    /// What the pods reserved (their requests) in the quota.
    pub cpu_requested_millis: Option<i64>,
    pub memory_requested_bytes: Option<i64>,
    /// Usage as a percentage of the ceiling; null when either is unknown.
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// CPU or memory at 80% of its ceiling or more.
    pub near_limit: bool,
}

/// The share of its ceiling at which a preview's use is flagged.
pub const NEAR_LIMIT_PERCENT: f64 = 80.0;

impl From<PreviewUsage> for ResourceUseView {
    fn from(u: PreviewUsage) -> Self {
        let percent = |used: Option<i64>, limit: Option<i64>| match (used, limit) {
            (Some(used), Some(limit)) if limit > 0 => {
                Some((used as f64 * 1000.0 / limit as f64).round() / 10.0)
            }
            _ => None,
        };
        let cpu_percent = percent(u.cpu_millis, u.cpu_limit_millis);
        let memory_percent = percent(u.memory_bytes, u.memory_limit_bytes);
        let near_limit = [cpu_percent, memory_percent]
            .iter()
            .flatten()
            .any(|p| *p >= NEAR_LIMIT_PERCENT);
        ResourceUseView {
            sampled_at: u.sampled_at,
            metrics: u.metrics,
            pods: u.pods,
            cpu_millis: u.cpu_millis,
            memory_bytes: u.memory_bytes,
            cpu_limit_millis: u.cpu_limit_millis,
            memory_limit_bytes: u.memory_limit_bytes,
            cpu_requested_millis: u.cpu_requested_millis,
            memory_requested_bytes: u.memory_requested_bytes,
            cpu_percent,
            memory_percent,
            near_limit,
        }
    }
}

/// One line of a log tail.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct LogTailLine {
    pub seq: i64,
    /// When the line was written; present only when timestamps were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<DateTime<Utc>>,
    /// `stdout`, `stderr` or `system` (Slipway's own notes).
    pub stream: String,
    pub text: String,
}

/// The end of one attempt's log, bounded in lines and bytes.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct LogTailView {
    #[schema(value_type = String, format = Uuid)]
    pub job_id: uuid::Uuid,
    /// `build`, `launch` or `cleanup`.
    pub kind: String,
    pub state: String,
    /// The attempt shown; null when the job has not started.
    pub attempt: Option<i32>,
    /// The job's error, when it failed.
    pub error: Option<String>,
    /// Oldest first.
    pub lines: Vec<LogTailLine>,
    /// True when older lines (beyond the line count or the byte cap) were left out.
    pub truncated: bool,
}

/// Jobs finished per minute, oldest minute first, every minute of the window present.
#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct ThroughputView {
    pub minutes: Vec<MinuteCount>,
}

#[derive(Debug, Clone, Serialize, ToSchema, JsonSchema)]
pub struct MinuteCount {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    pub finished: i64,
}
