//! Job logs: idempotent batched appends, ordered reads and a NOTIFY-driven wake-up for tails.

use chrono::{DateTime, Utc};
use slipway_core::JobId;
use sqlx::postgres::PgListener;

use super::cursor;
use super::{LOG_CHANNEL, LogLine, Store, StoreError, StoredLogLine};

/// What a [`LogListener`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWake {
    /// New lines were stored for this job.
    Appended(JobId),
    /// The listening connection was lost and re-established; notifications may have been
    /// missed, so tails should re-read from their last position.
    Reconnected,
}

/// A live subscription to the `slipway_logs` channel (one dedicated connection).
pub struct LogListener {
    inner: PgListener,
}

impl std::fmt::Debug for LogListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogListener").finish_non_exhaustive()
    }
}

impl LogListener {
    /// Waits for the next notification. Payloads that are not job ids are skipped.
    pub async fn recv(&mut self) -> Result<LogWake, StoreError> {
        loop {
            match self.inner.try_recv().await? {
                None => return Ok(LogWake::Reconnected),
                Some(n) => {
                    if let Ok(id) = n.payload().parse::<JobId>() {
                        return Ok(LogWake::Appended(id));
                    }
                    tracing::debug!(payload = n.payload(), "ignoring foreign log notification");
                }
            }
        }
    }
}

/// Postgres `text` cannot hold NUL; container output sometimes does.
fn clean(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

impl Store {
    /// Stores a batch of lines of one attempt in a single multi-row insert; lines already
    /// stored (same attempt and seq, e.g. a batch retried after an error) are skipped. If any
    /// line is new, one notification with the job id goes out on `slipway_logs` when the
    /// batch commits. Returns how many lines were new.
    pub async fn append_logs(
        &self,
        job_id: JobId,
        attempt: i32,
        lines: &[LogLine],
    ) -> Result<u64, StoreError> {
        self.append_logs_with_progress(job_id, attempt, lines, None)
            .await
    }

    /// [`Store::append_logs`], recording in the same transaction the job's build `progress`
    /// (only while that attempt is running: a stale or fenced worker records nothing). A
    /// changed progress is announced like new lines, so live tails show it.
    pub async fn append_logs_with_progress(
        &self,
        job_id: JobId,
        attempt: i32,
        lines: &[LogLine],
        progress: Option<&serde_json::Value>,
    ) -> Result<u64, StoreError> {
        if lines.is_empty() && progress.is_none() {
            return Ok(0);
        }
        let seqs: Vec<i64> = lines.iter().map(|l| l.seq).collect();
        let tss: Vec<DateTime<Utc>> = lines.iter().map(|l| l.ts).collect();
        let streams: Vec<String> = lines.iter().map(|l| clean(&l.stream)).collect();
        let texts: Vec<String> = lines.iter().map(|l| clean(&l.text)).collect();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO job_logs (job_id, attempt, seq, ts, stream, line) \
             SELECT $1, $2, l.seq, l.ts, l.stream, l.line \
             FROM UNNEST($3::bigint[], $4::timestamptz[], $5::text[], $6::text[]) \
                  AS l(seq, ts, stream, line) \
             ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(&seqs)
        .bind(&tss)
        .bind(&streams)
        .bind(&texts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut progressed = 0;
        if let Some(progress) = progress {
            progressed = sqlx::query(
                "UPDATE jobs SET progress = $2 \
                 WHERE id = $1 AND state = 'running' AND attempts = $3 \
                   AND progress IS DISTINCT FROM $2",
            )
            .bind(job_id)
            .bind(progress)
            .bind(attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if inserted > 0 || progressed > 0 {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(LOG_CHANNEL)
                .bind(job_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Lines of a job ordered by (attempt, seq), strictly after `after` if given.
    pub async fn read_logs(
        &self,
        job_id: JobId,
        after: Option<(i32, i64)>,
        limit: u32,
    ) -> Result<Vec<StoredLogLine>, StoreError> {
        let (attempt, seq) = after.unwrap_or((i32::MIN, i64::MIN));
        let lines = sqlx::query_as(
            "SELECT attempt, seq, ts, stream, line FROM job_logs \
             WHERE job_id = $1 AND (attempt, seq) > ($2, $3) \
             ORDER BY attempt, seq LIMIT $4",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(seq)
        .bind(cursor::clamp_limit_logs(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(lines)
    }

    /// The last `limit` lines of one attempt, in (seq) order: where a follower that takes over
    /// an attempt's log resumes.
    pub async fn log_tail(
        &self,
        job_id: JobId,
        attempt: i32,
        limit: u32,
    ) -> Result<Vec<StoredLogLine>, StoreError> {
        let mut lines: Vec<StoredLogLine> = sqlx::query_as(
            "SELECT attempt, seq, ts, stream, line FROM job_logs \
             WHERE job_id = $1 AND attempt = $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        lines.reverse();
        Ok(lines)
    }

    /// Opens a listener on `slipway_logs` (for live tails such as SSE).
    pub async fn log_listener(&self) -> Result<LogListener, StoreError> {
        let mut inner = PgListener::connect_with(&self.pool).await?;
        inner.listen(LOG_CHANNEL).await?;
        Ok(LogListener { inner })
    }
}
