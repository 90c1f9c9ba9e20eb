//! Records read from and written to the store, and their row decoding.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_core::{ErrorClass, JobId, JobKind, JobState};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

/// A job to record. Build with [`NewJob::new`] and set the optional fields.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Defaults to a fresh UUIDv7 (time-ordered, so indexes stay append-mostly).
    pub id: JobId,
    pub kind: JobKind,
    pub preview: Option<String>,
    pub commit_sha: Option<String>,
    pub payload: Value,
    pub max_attempts: i32,
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` of the request that created the job.
    pub trace_context: Option<String>,
}

impl NewJob {
    pub fn new(kind: JobKind, payload: Value) -> NewJob {
        NewJob {
            id: uuid::Uuid::now_v7(),
            kind,
            preview: None,
            commit_sha: None,
            payload,
            max_attempts: 3,
            idempotency_key: None,
            trace_context: None,
        }
    }
}

/// The result of [`crate::store::Store::insert_job`].
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    pub job: JobRecord,
    /// `false` when the idempotency key (or id) already named a job, which is returned instead.
    pub created: bool,
}

/// A row of `jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    pub preview: Option<String>,
    pub commit_sha: Option<String>,
    pub payload: Value,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub error_class: Option<ErrorClass>,
    /// Highest attempt number started; attempt numbers are never reused for a job.
    pub attempts: i32,
    /// Attempt budget of the current run.
    pub max_attempts: i32,
    /// Attempts used before the latest operator retry ([`crate::store::Store::retry_job`]);
    /// the current run's attempts are `attempt_base + 1 ..= attempt_base + max_attempts`.
    pub attempt_base: i32,
    pub idempotency_key: Option<String>,
    pub trace_context: Option<String>,
    /// When a `retrying` job is due again.
    pub retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub enqueued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// A running build's progress ([`crate::store::Store::append_logs_with_progress`]).
    pub progress: Option<Value>,
}

impl JobRecord {
    /// Whether another attempt fits in the current run's budget.
    pub fn has_attempts_left(&self) -> bool {
        self.attempts < self.attempt_base + self.max_attempts
    }
}

/// The columns of `jobs`, in the order [`JobRecord`] reads them.
pub(crate) const JOB_COLUMNS: &str = "id, kind, state, preview, commit_sha, payload, result, \
     error, error_class, attempts, max_attempts, attempt_base, idempotency_key, trace_context, \
     retry_at, created_at, enqueued_at, started_at, finished_at, updated_at, progress";

fn decode_err(column: &str, e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    }
}

pub(crate) fn error_class_str(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Transient => "transient",
        ErrorClass::Permanent => "permanent",
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown error class {0:?}")]
struct UnknownErrorClass(String);

fn parse_error_class(s: &str) -> Result<ErrorClass, UnknownErrorClass> {
    match s {
        "transient" => Ok(ErrorClass::Transient),
        "permanent" => Ok(ErrorClass::Permanent),
        other => Err(UnknownErrorClass(other.to_owned())),
    }
}

impl<'r> FromRow<'r, PgRow> for JobRecord {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let kind: String = row.try_get("kind")?;
        let state: String = row.try_get("state")?;
        let error_class: Option<String> = row.try_get("error_class")?;
        Ok(JobRecord {
            id: row.try_get("id")?,
            kind: kind.parse().map_err(|e| decode_err("kind", e))?,
            state: state.parse().map_err(|e| decode_err("state", e))?,
            preview: row.try_get("preview")?,
            commit_sha: row.try_get("commit_sha")?,
            payload: row.try_get("payload")?,
            result: row.try_get("result")?,
            error: row.try_get("error")?,
            error_class: error_class
                .as_deref()
                .map(parse_error_class)
                .transpose()
                .map_err(|e| decode_err("error_class", e))?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            attempt_base: row.try_get("attempt_base")?,
            idempotency_key: row.try_get("idempotency_key")?,
            trace_context: row.try_get("trace_context")?,
            retry_at: row.try_get("retry_at")?,
            created_at: row.try_get("created_at")?,
            enqueued_at: row.try_get("enqueued_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            updated_at: row.try_get("updated_at")?,
            progress: row.try_get("progress")?,
        })
    }
}

/// Filters of `GET /v1/jobs`; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    pub kind: Option<JobKind>,
    pub state: Option<JobState>,
    pub preview: Option<String>,
    /// Inclusive lower bound on `created_at`.
    pub created_after: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `created_at`.
    pub created_before: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the error, preview, commit, id or the payload's
    /// `repository` / `image` / `from_build`.
    pub q: Option<String>,
    /// Case-insensitive substring of the error alone.
    pub error: Option<String>,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub items: Vec<JobRecord>,
    /// Opaque; pass back to get the next page. `None` on the last page.
    pub next_cursor: Option<String>,
}

/// How a worker's attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Succeeded {
        result: Value,
    },
    /// A transient failure with attempts left; the job waits until `retry_at`. If the run's
    /// budget is already spent the store records `failed` (transient) instead, so a job can
    /// never wait for an attempt it is not allowed.
    Retrying {
        error: String,
        retry_at: DateTime<Utc>,
    },
    Failed {
        error: String,
        class: ErrorClass,
    },
    Cancelled {
        reason: String,
    },
}

/// A row of `job_attempts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct AttemptRecord {
    pub job_id: JobId,
    pub attempt: i32,
    pub worker_id: String,
    /// Names of the Kubernetes objects this attempt created (for cleanup and adoption).
    pub k8s_objects: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `succeeded`, `retrying`, `failed`, `cancelled`, `superseded`, or `abandoned` (a later
    /// attempt started while this one was open: its worker died). `None` while running.
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// A log line as a worker sends it. `seq` numbers lines within one attempt from 0 or 1; a
/// worker taking a log over numbers its lines after the stored ones, and a retried batch
/// re-sends the same numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: i64,
    pub ts: DateTime<Utc>,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub text: String,
}

/// A log line as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct StoredLogLine {
    pub attempt: i32,
    pub seq: i64,
    pub ts: DateTime<Utc>,
    pub stream: String,
    #[sqlx(rename = "line")]
    pub text: String,
}

/// Insert-or-update of a preview. Optional fields left `None` keep their stored value;
/// `namespace`, `status` and `pods` are always replaced. Upserting a deleted preview revives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreviewUpsert {
    pub key: String,
    pub namespace: String,
    pub url: Option<String>,
    pub image: Option<String>,
    pub commit_sha: Option<String>,
    pub status: String,
    pub pods: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<JobId>,
}

/// A row of `previews`: the service registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct PreviewRecord {
    pub key: String,
    pub namespace: String,
    pub url: Option<String>,
    pub image: Option<String>,
    pub commit_sha: Option<String>,
    pub status: String,
    pub pods: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<JobId>,
}

/// Filters of the preview list; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreviewFilter {
    /// Include torn-down previews.
    pub include_deleted: bool,
    /// Exact status, e.g. `ready` or `failed`.
    pub status: Option<String>,
    /// Keys starting with this (matched literally), e.g. `org/app#` for a repository's pull
    /// requests.
    pub key_prefix: Option<String>,
    /// Keys containing this, case-insensitively (matched literally).
    pub key_contains: Option<String>,
}

/// One page of previews, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewPage {
    pub items: Vec<PreviewRecord>,
    pub next_cursor: Option<String>,
}
