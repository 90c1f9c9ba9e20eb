//! Jobs and their attempts: insert, read, list, relay to Redis, and every state change.
//!
//! State changes are single statements whose `WHERE` names the states (and attempt) they move
//! from; under READ COMMITTED a concurrent writer blocked on the row re-checks that `WHERE`
//! against the committed row, so exactly one of two racing transitions can match.

use std::fmt::Display;
use std::future::Future;

use chrono::{DateTime, Utc};
use slipway_core::{ErrorClass, JobId, JobKind, JobState};
use sqlx::{Postgres, QueryBuilder};

use super::cursor;
use super::types::{JOB_COLUMNS, error_class_str};
use super::{
    AttemptOutcome, AttemptRecord, Inserted, JobFilter, JobPage, JobRecord, LOG_CHANNEL, NewJob,
    Store, StoreError,
};

/// [`Store::finished_per_minute`]'s query (`$1`: minutes), public so a test can check its plan.
pub const FINISHED_PER_MINUTE_SQL: &str = "SELECT date_trunc('minute', finished_at) AS minute, count(*) AS n FROM jobs \
     WHERE finished_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1) \
     GROUP BY 1 ORDER BY 1";

pub(super) const NON_TERMINAL: [JobState; 3] =
    [JobState::Queued, JobState::Running, JobState::Retrying];

/// The `as_str()` forms of `states`, for `state = ANY($n)`.
pub(super) fn state_strs(states: &[JobState]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// `s` matched literally by `LIKE`/`ILIKE` (its `%`, `_` and `\` escaped).
pub(super) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An `ILIKE` pattern matching user text `q` literally anywhere (a substring search).
pub(super) fn like_pattern(q: &str) -> String {
    format!("%{}%", like_escape(q))
}

/// How many jobs one page of a free-text search (`JobFilter::q`) reads at most.
pub const TEXT_SEARCH_WINDOW: i64 = 5_000;

/// The indexed conditions of a job list: kind, state, preview, creation bounds, the error
/// filter (trigram-indexed) and the cursor's position (`(created_at, id)` strictly before).
fn push_job_conditions(
    qb: &mut QueryBuilder<'_, Postgres>,
    filter: &JobFilter,
    after: Option<(DateTime<Utc>, JobId)>,
) {
    if let Some(kind) = filter.kind {
        qb.push(" AND kind = ").push_bind(kind.as_str());
    }
    if let Some(state) = filter.state {
        qb.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(preview) = &filter.preview {
        qb.push(" AND preview = ").push_bind(preview.clone());
    }
    if let Some(after) = filter.created_after {
        qb.push(" AND created_at >= ").push_bind(after);
    }
    if let Some(before) = filter.created_before {
        qb.push(" AND created_at < ").push_bind(before);
    }
    if let Some(e) = filter
        .error
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        qb.push(" AND error ILIKE ").push_bind(like_pattern(e));
    }
    if let Some((at, id)) = after {
        qb.push(" AND (created_at, id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
}

impl Store {
    /// Records a new job in state `queued`, not yet enqueued. If its idempotency key (or id)
    /// already names a job, that job is returned with `created = false`; concurrent inserts
    /// of one key all get the same job.
    pub async fn insert_job(&self, new: NewJob) -> Result<Inserted, StoreError> {
        if new.max_attempts < 1 {
            return Err(StoreError::InvalidArgument(format!(
                "max_attempts must be at least 1, not {}",
                new.max_attempts
            )));
        }
        let insert = format!(
            "INSERT INTO jobs (id, kind, state, preview, commit_sha, payload, max_attempts, \
             idempotency_key, trace_context) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING RETURNING {JOB_COLUMNS}"
        );
        // ON CONFLICT waits for a concurrent inserter of the same key to commit; if that one
        // rolled back instead, neither insert nor lookup sees a row, so try again.
        for _ in 0..5 {
            let inserted: Option<JobRecord> = sqlx::query_as(&insert)
                .bind(new.id)
                .bind(new.kind.as_str())
                .bind(JobState::Queued.as_str())
                .bind(&new.preview)
                .bind(&new.commit_sha)
                .bind(&new.payload)
                .bind(new.max_attempts)
                .bind(&new.idempotency_key)
                .bind(&new.trace_context)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(job) = inserted {
                return Ok(Inserted { job, created: true });
            }
            if let Some(key) = &new.idempotency_key {
                let existing: Option<JobRecord> = sqlx::query_as(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1"
                ))
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                if let Some(job) = existing {
                    return Ok(Inserted {
                        job,
                        created: false,
                    });
                }
            }
            if let Some(job) = self.get_job(new.id).await? {
                return Ok(Inserted {
                    job,
                    created: false,
                });
            }
        }
        Err(StoreError::InvalidArgument(format!(
            "job {} conflicts with a job that could not be read back",
            new.id
        )))
    }

    pub async fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let job = sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(job)
    }

    /// Jobs matching `filter`, newest first, `limit` (1..=1000) per page. `cursor` is the
    /// previous page's `next_cursor`; rows inserted meanwhile never shift later pages.
    ///
    /// The free-text filter (`q`) matches substrings of seven fields, which no index serves,
    /// so one page reads at most [`TEXT_SEARCH_WINDOW`] jobs (those the other filters select,
    /// newest first, from the cursor on). A page can then hold fewer than `limit` matches, or
    /// none, and still carry a `next_cursor`: the next window. A rare text costs a bounded
    /// read per page instead of a read of every job.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<JobPage, StoreError> {
        let limit = cursor::clamp_limit(limit);
        let after = match cursor {
            Some(c) => {
                let (at, id) = cursor::decode(c)?;
                let id: JobId = id.parse().map_err(|_| StoreError::InvalidCursor)?;
                Some((at, id))
            }
            None => None,
        };
        let text = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        // The last job of this page's search window; `None` when fewer jobs remain.
        let window_end: Option<(DateTime<Utc>, JobId)> = match text {
            None => None,
            Some(_) => {
                let mut qb = QueryBuilder::new("SELECT created_at, id FROM jobs WHERE TRUE");
                push_job_conditions(&mut qb, filter, after);
                qb.push(" ORDER BY created_at DESC, id DESC OFFSET ")
                    .push_bind(TEXT_SEARCH_WINDOW - 1)
                    .push(" LIMIT 1");
                qb.build_query_as().fetch_optional(&self.pool).await?
            }
        };
        let mut qb: QueryBuilder<'_, Postgres> =
            QueryBuilder::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE TRUE"));
        push_job_conditions(&mut qb, filter, after);
        if let Some(q) = text {
            let pat = like_pattern(q);
            qb.push(" AND (");
            let fields = [
                "error",
                "preview",
                "commit_sha",
                "id::text",
                "payload->>'repository'",
                "payload->>'image'",
                "payload->>'from_build'",
            ];
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    qb.push(" OR ");
                }
                qb.push(*field).push(" ILIKE ").push_bind(pat.clone());
            }
            qb.push(")");
        }
        if let Some((at, id)) = window_end {
            qb.push(" AND (created_at, id) >= (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(limit + 1);
        let mut items: Vec<JobRecord> = qb.build_query_as().fetch_all(&self.pool).await?;
        let mut next_cursor = page_cursor(&mut items, limit, |j| {
            cursor::encode(j.created_at, &j.id.to_string())
        });
        if next_cursor.is_none() {
            // The window held no more matches; older jobs are the next window's.
            next_cursor = window_end.map(|(at, id)| cursor::encode(at, &id.to_string()));
        }
        Ok(JobPage { items, next_cursor })
    }

    /// Records that a job was pushed to Redis (idempotent; the first time is kept).
    pub async fn mark_enqueued(&self, id: JobId) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET enqueued_at = COALESCE(enqueued_at, now()), updated_at = now() \
             WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "job",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// [`mark_enqueued`](Self::mark_enqueued) for many jobs in one statement (one round trip,
    /// one commit). Ids of jobs that no longer exist are ignored; returns how many rows it
    /// touched.
    pub async fn mark_enqueued_many(&self, ids: &[JobId]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE jobs SET enqueued_at = COALESCE(enqueued_at, now()), updated_at = now() \
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Pushes up to `limit` queued jobs that are not yet enqueued and were created at least
    /// `min_age` ago, oldest first, and marks those pushed. Rows are locked `FOR UPDATE SKIP
    /// LOCKED` for the transaction, so several relays may run at once and each job is pushed by
    /// one of them. A crash between push and commit pushes the job again later, which the queue
    /// absorbs (same id, queued once). `min_age` leaves alone the rows whose request is still
    /// pushing and marking them, so the normal path is not pushed twice.
    ///
    /// If `push` fails, the jobs pushed before it are committed as enqueued and
    /// [`StoreError::RelayPush`] is returned.
    pub async fn relay_unenqueued<F, Fut, E>(
        &self,
        limit: u32,
        min_age: std::time::Duration,
        mut push: F,
    ) -> Result<usize, StoreError>
    where
        F: FnMut(JobRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let mut tx = self.pool.begin().await?;
        let jobs: Vec<JobRecord> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE enqueued_at IS NULL AND state = $1 \
               AND created_at <= now() - make_interval(secs => $3) \
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        ))
        .bind(JobState::Queued.as_str())
        .bind(cursor::clamp_limit(limit))
        .bind(min_age.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        let mut pushed: Vec<JobId> = Vec::with_capacity(jobs.len());
        let mut failure = None;
        for job in jobs {
            let id = job.id;
            match push(job).await {
                Ok(()) => pushed.push(id),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if !pushed.is_empty() {
            sqlx::query(
                "UPDATE jobs SET enqueued_at = now(), updated_at = now() WHERE id = ANY($1)",
            )
            .bind(&pushed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        match failure {
            None => Ok(pushed.len()),
            Some(message) => Err(StoreError::RelayPush {
                pushed: pushed.len(),
                message,
            }),
        }
    }

    /// Starts attempt `attempt` of a job for `worker_id`: `queued | retrying | running` with a
    /// lower attempt number and the attempt within the run's budget becomes `running`. An
    /// attempt still open below this one is closed as `abandoned` (its worker died). Returns
    /// the updated job, or `None` if refused (stale, duplicate, over budget, or terminal).
    pub async fn start_attempt(
        &self,
        id: JobId,
        attempt: i32,
        worker_id: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        start_attempt_in(&self.pool, id, attempt, worker_id, None).await
    }

    /// Ends attempt `attempt` with `outcome`, only if the job is `running` that very attempt.
    /// Returns `false` if refused: a stale or fenced worker, or a job cancelled meanwhile.
    /// The change is announced on [`LOG_CHANNEL`] when it commits (live tails end on it).
    pub async fn finish_attempt(
        &self,
        id: JobId,
        attempt: i32,
        outcome: AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let (state, result, error, class, retry_at) = match outcome {
            AttemptOutcome::Succeeded { result } => {
                (JobState::Succeeded, Some(result), None, None, None)
            }
            AttemptOutcome::Retrying { error, retry_at } => (
                JobState::Retrying,
                None,
                Some(error),
                Some(ErrorClass::Transient),
                Some(retry_at),
            ),
            AttemptOutcome::Failed { error, class } => {
                (JobState::Failed, None, Some(error), Some(class), None)
            }
            AttemptOutcome::Cancelled { reason } => {
                (JobState::Cancelled, None, Some(reason), None, None)
            }
        };
        // A `retrying` outcome with no attempt left in the budget is recorded as `failed`.
        let sql = "WITH j AS ( \
               UPDATE jobs SET \
                 state = CASE WHEN $3::text = $9::text AND attempts >= attempt_base + max_attempts \
                              THEN $10::text ELSE $3::text END, \
                 result = $4, error = $5, error_class = $6, \
                 retry_at = CASE WHEN $3::text = $9::text AND attempts < attempt_base + max_attempts \
                                 THEN $7::timestamptz ELSE NULL END, \
                 finished_at = CASE WHEN $3::text = $9::text AND attempts < attempt_base + max_attempts \
                                    THEN NULL ELSE now() END, \
                 updated_at = now() \
               WHERE id = $1 AND state = $8 AND attempts = $2 \
               RETURNING id, state \
             ), closed AS ( \
               UPDATE job_attempts a SET finished_at = now(), outcome = j.state, error = $5 \
               FROM j WHERE a.job_id = j.id AND a.attempt = $2 \
             ) SELECT count(*) FROM (SELECT pg_notify($11, id::text) FROM j) n";
        let moved: i64 = sqlx::query_scalar(sql)
            .bind(id)
            .bind(attempt)
            .bind(state.as_str())
            .bind(result)
            .bind(error)
            .bind(class.map(error_class_str))
            .bind(retry_at)
            .bind(JobState::Running.as_str())
            .bind(JobState::Retrying.as_str())
            .bind(JobState::Failed.as_str())
            .bind(LOG_CHANNEL)
            .fetch_one(&self.pool)
            .await?;
        Ok(moved == 1)
    }

    /// Moves a job from any non-terminal state to `Cancelled` or `Superseded` with `reason`,
    /// closing its open attempt. `false` if the job is already terminal (or absent).
    /// Announced on [`LOG_CHANNEL`] like [`Store::finish_attempt`].
    pub async fn cancel_job(
        &self,
        id: JobId,
        state: JobState,
        reason: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.cancel_jobs(&[id], state, reason).await?.len() == 1)
    }

    /// [`cancel_job`](Self::cancel_job) for many jobs in one statement (an operator's bulk
    /// cancel): the ones that moved, with their kinds (for the queue's cancel signal). Each is
    /// announced on [`LOG_CHANNEL`], so its open log tails end.
    pub async fn cancel_jobs(
        &self,
        ids: &[JobId],
        state: JobState,
        reason: &str,
    ) -> Result<Vec<(JobId, JobKind)>, StoreError> {
        if !matches!(state, JobState::Cancelled | JobState::Superseded) {
            return Err(StoreError::InvalidArgument(format!(
                "a job can be cancelled into cancelled or superseded, not {state}"
            )));
        }
        let sql = "WITH j AS ( \
               UPDATE jobs SET state = $2, error = $3, retry_at = NULL, finished_at = now(), \
                      updated_at = now() \
               WHERE id = ANY($1) AND state = ANY($4) \
               RETURNING id, kind, state \
             ), closed AS ( \
               UPDATE job_attempts a SET finished_at = now(), outcome = j.state, error = $3 \
               FROM j WHERE a.job_id = j.id AND a.finished_at IS NULL \
             ) SELECT j.id, j.kind FROM j, LATERAL (SELECT pg_notify($5, j.id::text)) n \
               ORDER BY j.id";
        let rows: Vec<(JobId, String)> = sqlx::query_as(sql)
            .bind(ids)
            .bind(state.as_str())
            .bind(reason)
            .bind(state_strs(&NON_TERMINAL))
            .bind(LOG_CHANNEL)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(id, kind)| {
                kind.parse::<JobKind>()
                    .map(|k| (id, k))
                    .map_err(|_| StoreError::InvalidArgument(format!("job {id} has kind {kind:?}")))
            })
            .collect()
    }

    /// Supersedes the non-terminal jobs of `preview` with one of `kinds` created before `keep`
    /// (a newer commit replaces them). Returns their ids, for deleting their Kubernetes Jobs.
    /// Each is announced on [`LOG_CHANNEL`] like [`Store::finish_attempt`].
    pub async fn supersede_older(
        &self,
        preview: &str,
        keep: JobId,
        kinds: &[JobKind],
    ) -> Result<Vec<JobId>, StoreError> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let reason = format!("superseded by job {keep}");
        let sql = "WITH j AS ( \
               UPDATE jobs SET state = $5, error = $4, retry_at = NULL, finished_at = now(), \
                      updated_at = now() \
               WHERE preview = $1 AND id <> $2 AND kind = ANY($3) AND state = ANY($6) \
                 AND (created_at, id) < (SELECT k.created_at, k.id FROM jobs k WHERE k.id = $2) \
               RETURNING id, state \
             ), closed AS ( \
               UPDATE job_attempts a SET finished_at = now(), outcome = j.state, error = $4 \
               FROM j WHERE a.job_id = j.id AND a.finished_at IS NULL \
             ) SELECT id FROM (SELECT id, pg_notify($7, id::text) FROM j) n ORDER BY id";
        let ids = sqlx::query_scalar(sql)
            .bind(preview)
            .bind(keep)
            .bind(kinds)
            .bind(reason)
            .bind(JobState::Superseded.as_str())
            .bind(state_strs(&NON_TERMINAL))
            .bind(LOG_CHANNEL)
            .fetch_all(&self.pool)
            .await?;
        Ok(ids)
    }

    /// Previews whose jobs changed at or after `since`, with the latest change of each,
    /// oldest change first, at most `limit` (the GitHub status feed's work list).
    pub async fn previews_changed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT preview, max(updated_at) AS changed FROM jobs \
             WHERE updated_at >= $1 AND preview IS NOT NULL \
             GROUP BY preview ORDER BY changed LIMIT $2",
        )
        .bind(since)
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Jobs finished per minute over the last `minutes` minutes (the current minute included),
    /// oldest first; minutes without a finish are absent. A range scan of `jobs_finished_idx`,
    /// bounded by the jobs finished in that window.
    pub async fn finished_per_minute(
        &self,
        minutes: i32,
    ) -> Result<Vec<(chrono::DateTime<chrono::Utc>, i64)>, StoreError> {
        let rows = sqlx::query_as(FINISHED_PER_MINUTE_SQL)
            .bind(minutes.max(1))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// Operator retry: a `failed` or `cancelled` job goes back to `queued`, not enqueued, with
    /// a fresh run of `max_attempts` attempts numbered after the ones already used.
    pub async fn retry_job(&self, id: JobId) -> Result<bool, StoreError> {
        Ok(self.retry_jobs(&[id]).await?.len() == 1)
    }

    /// [`retry_job`](Self::retry_job) for many jobs in one statement (an operator's bulk
    /// retry): the jobs that moved, as they are now (to be pushed).
    pub async fn retry_jobs(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, StoreError> {
        let jobs = sqlx::query_as(&format!(
            "UPDATE jobs SET state = $2, attempt_base = attempts, result = NULL, error = NULL, \
                    error_class = NULL, retry_at = NULL, enqueued_at = NULL, started_at = NULL, \
                    finished_at = NULL, updated_at = now() \
             WHERE id = ANY($1) AND state = ANY($3) RETURNING {JOB_COLUMNS}"
        ))
        .bind(ids)
        .bind(JobState::Queued.as_str())
        .bind(state_strs(&[JobState::Failed, JobState::Cancelled]))
        .fetch_all(&self.pool)
        .await?;
        Ok(jobs)
    }

    /// The attempts of a job, first to last.
    pub async fn attempts(&self, id: JobId) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT job_id, attempt, worker_id, k8s_objects, started_at, finished_at, outcome, \
                    error \
             FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The attempts of several jobs in one query (for lists), keyed by job id.
    pub async fn attempts_for(
        &self,
        ids: &[JobId],
    ) -> Result<std::collections::HashMap<JobId, Vec<AttemptRecord>>, StoreError> {
        let rows: Vec<AttemptRecord> = sqlx::query_as(
            "SELECT job_id, attempt, worker_id, k8s_objects, started_at, finished_at, outcome, \
                    error \
             FROM job_attempts WHERE job_id = ANY($1) ORDER BY job_id, attempt",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_job: std::collections::HashMap<JobId, Vec<AttemptRecord>> =
            std::collections::HashMap::new();
        for row in rows {
            by_job.entry(row.job_id).or_default().push(row);
        }
        Ok(by_job)
    }

    /// Adds Kubernetes object names to an attempt (set union, so repeating is harmless).
    pub async fn record_attempt_objects(
        &self,
        id: JobId,
        attempt: i32,
        names: &[String],
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE job_attempts SET k8s_objects = \
               ARRAY(SELECT DISTINCT x FROM unnest(k8s_objects || $3::text[]) AS x ORDER BY x) \
             WHERE job_id = $1 AND attempt = $2",
        )
        .bind(id)
        .bind(attempt)
        .bind(names)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "attempt",
                id: format!("{id}/{attempt}"),
            });
        }
        Ok(())
    }
}

/// Trims a `limit + 1` fetch to `limit` rows and returns the cursor after the last one kept,
/// or `None` when there was no extra row (the last page).
pub(crate) fn page_cursor<T>(
    items: &mut Vec<T>,
    limit: i64,
    encode: impl Fn(&T) -> String,
) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(encode)
    } else {
        None
    }
}

/// [`Store::start_attempt`] on any connection (the capped start runs it inside its
/// transaction), recording `cap_key` on the job (`None` clears it: uncapped). Start times are
/// this statement's (`statement_timestamp()`), not the transaction's: the capped start's
/// transaction begins before it waits for its key's lock, and a start must not be dated
/// before the finish of the job whose slot it took.
pub(super) async fn start_attempt_in<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    id: JobId,
    attempt: i32,
    worker_id: &str,
    cap_key: Option<&str>,
) -> Result<Option<JobRecord>, StoreError> {
    let sql = format!(
        "WITH j AS ( \
           UPDATE jobs SET state = $4, attempts = $2, started_at = COALESCE(started_at, statement_timestamp()), \
                  retry_at = NULL, cap_key = $6, progress = NULL, updated_at = now() \
           WHERE id = $1 AND state = ANY($5) AND attempts < $2 \
                 AND $2 <= attempt_base + max_attempts \
           RETURNING {JOB_COLUMNS} \
         ), abandoned AS ( \
           UPDATE job_attempts SET finished_at = now(), outcome = 'abandoned', \
                  error = COALESCE(error, 'worker lost: a later attempt started') \
           WHERE job_id IN (SELECT id FROM j) AND attempt < $2 AND finished_at IS NULL \
         ), opened AS ( \
           INSERT INTO job_attempts (job_id, attempt, worker_id, started_at) \
           SELECT id, $2, $3, statement_timestamp() FROM j \
           ON CONFLICT (job_id, attempt) DO UPDATE SET worker_id = EXCLUDED.worker_id, \
                  started_at = EXCLUDED.started_at, finished_at = NULL, outcome = NULL, error = NULL \
         ) SELECT * FROM j"
    );
    let job = sqlx::query_as(&sql)
        .bind(id)
        .bind(attempt)
        .bind(worker_id)
        .bind(JobState::Running.as_str())
        .bind(state_strs(&NON_TERMINAL))
        .bind(cap_key)
        .fetch_optional(db)
        .await?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
