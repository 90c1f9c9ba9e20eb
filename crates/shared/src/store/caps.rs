//! A cap on the jobs of one kind running at once per key (the per-repository build cap), held
//! across every worker replica.
//!
//! The slots of a key are its jobs in state `running` that started under the cap (their
//! `cap_key`), so nothing separate can leak: a slot ends with the job's state (success,
//! failure, cancel, a retry's back-off), and a dead worker's slot passes to the attempt that
//! resumes its job (the job counts itself out). The count and the start happen in one
//! transaction under a transaction-scoped advisory lock on the key, so two workers cannot both
//! take a key's last slot.

use slipway_core::{JobId, JobKind, JobState};

use super::jobs::{NON_TERMINAL, start_attempt_in, state_strs};
use super::{JobRecord, LOG_CHANNEL, Store, StoreError};

/// The log sequence number of the line saying a job waits for its cap: before the attempt's
/// own lines (numbered from 0), and one per attempt number, so repeated deferrals of the same
/// attempt write it once.
pub const WAITING_LINE_SEQ: i64 = -1;

/// What [`Store::start_attempt_capped`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CappedStart {
    /// The attempt started (as [`Store::start_attempt`] would have) and holds a slot.
    Started(Box<JobRecord>),
    /// Refused for the same reasons [`Store::start_attempt`] refuses (stale, over budget,
    /// terminal).
    Refused,
    /// The key's slots are all taken: nothing changed but the waiting line.
    Waiting {
        /// Jobs of the key running now (other than this one).
        running: i64,
    },
}

impl Store {
    /// Starts attempt `attempt` unless `limit` jobs of `kind` with `key` are running already
    /// (this job excluded: a resumed job keeps the slot its dead worker held). Over the cap,
    /// nothing changes except `waiting_line`, stored once per attempt number as a `system`
    /// line of that attempt (sequence [`WAITING_LINE_SEQ`]), if the job could start at all.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_attempt_capped(
        &self,
        id: JobId,
        attempt: i32,
        worker_id: &str,
        kind: JobKind,
        key: &str,
        limit: u32,
        waiting_line: &str,
    ) -> Result<CappedStart, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serializes the starts of one key (and, on a 64-bit hash collision, of two keys:
        // harmless); released at commit.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("slipway-cap:{}:{key}", kind.as_str()))
            .execute(&mut *tx)
            .await?;
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs \
             WHERE kind = $1 AND state = $2 AND cap_key = $3 AND id <> $4",
        )
        .bind(kind.as_str())
        .bind(JobState::Running.as_str())
        .bind(key)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if running < i64::from(limit) {
            let started = start_attempt_in(&mut *tx, id, attempt, worker_id, Some(key)).await?;
            tx.commit().await?;
            return Ok(started.map_or(CappedStart::Refused, |job| {
                CappedStart::Started(Box::new(job))
            }));
        }
        // Only a job that could start waits; anything else is refused as a start would be.
        let startable: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND state = ANY($3) \
             AND attempts < $2 AND $2 <= attempt_base + max_attempts)",
        )
        .bind(id)
        .bind(attempt)
        .bind(state_strs(&NON_TERMINAL))
        .fetch_one(&mut *tx)
        .await?;
        if !startable {
            tx.commit().await?;
            return Ok(CappedStart::Refused);
        }
        let noted = sqlx::query(
            "INSERT INTO job_logs (job_id, attempt, seq, ts, stream, line) \
             VALUES ($1, $2, $3, now(), 'system', $4) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(attempt)
        .bind(WAITING_LINE_SEQ)
        .bind(waiting_line)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if noted > 0 {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(LOG_CHANNEL)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(CappedStart::Waiting { running })
    }

    /// Jobs of `kind` with cap key `key` running now (inspection and tests).
    pub async fn running_with_cap_key(&self, kind: JobKind, key: &str) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = $1 AND state = $2 AND cap_key = $3",
        )
        .bind(kind.as_str())
        .bind(JobState::Running.as_str())
        .bind(key)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
