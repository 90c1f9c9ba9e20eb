//! What the cleanup worker asks of the store: which jobs exist and in what state, which
//! previews are live, expired or busy, which unfinished jobs look lost, log retention in small
//! batches, and the sweep journal.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_core::{JobId, JobState};

use super::jobs::{NON_TERMINAL, state_strs};
use super::previews::PREVIEW_COLUMNS;
use super::types::JOB_COLUMNS;
use super::{JobRecord, PreviewRecord, Store, StoreError};

/// What log retention removed in one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRetention {
    pub jobs: u64,
    pub lines: u64,
}

/// A row of `cleanup_sweeps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SweepRecord {
    pub id: i64,
    pub holder: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub report: Value,
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Live previews past their expiry ([`Store::previews_past_expiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PastExpiry {
    pub count: u64,
    /// How long ago the earliest of them expired (zero when none has).
    pub longest_overdue: Duration,
}

impl Store {
    /// The states of the jobs among `ids` that exist (an id absent from the map has no row).
    pub async fn job_states(&self, ids: &[JobId]) -> Result<HashMap<JobId, JobState>, StoreError> {
        let rows: Vec<(JobId, String)> =
            sqlx::query_as("SELECT id, state FROM jobs WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, state)| {
                let state = state
                    .parse()
                    .map_err(|_| StoreError::Decode(format!("job state {state:?}")))?;
                Ok((id, state))
            })
            .collect()
    }

    /// Preview keys with a job not yet finished (queued, running or retrying).
    pub async fn busy_previews(&self) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT preview FROM jobs WHERE state = ANY($1) AND preview IS NOT NULL",
        )
        .bind(state_strs(&NON_TERMINAL))
        .fetch_all(&self.pool)
        .await?;
        Ok(keys.into_iter().collect())
    }

    /// Previews not marked deleted.
    pub async fn live_previews(&self) -> Result<Vec<PreviewRecord>, StoreError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {PREVIEW_COLUMNS} FROM previews WHERE deleted_at IS NULL ORDER BY key"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Live previews past their time to live (`expires_at`, or `default_ttl` after the last
    /// deploy when a row has none) or idle past `idle` (no deploy for that long), and with no
    /// job of theirs still unfinished. Oldest first, at most `limit`.
    pub async fn expired_previews(
        &self,
        default_ttl: Duration,
        idle: Option<Duration>,
        limit: i64,
    ) -> Result<Vec<PreviewRecord>, StoreError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {PREVIEW_COLUMNS} FROM previews p \
             WHERE deleted_at IS NULL \
               AND (expires_at < now() \
                    OR (expires_at IS NULL AND updated_at < now() - make_interval(secs => $1)) \
                    OR ($2::float8 IS NOT NULL AND updated_at < now() - make_interval(secs => $2))) \
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.preview = p.key AND j.state = ANY($3)) \
             ORDER BY updated_at LIMIT $4"
        ))
        .bind(interval(default_ttl))
        .bind(idle.map(interval))
        .bind(state_strs(&NON_TERMINAL))
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Live previews past their expiry as [`expired_previews`](Self::expired_previews) reads it
    /// (time to live, `default_ttl` after the last deploy without one, or idle past `idle`),
    /// busy ones included: how many, and how long ago the earliest of them expired.
    pub async fn previews_past_expiry(
        &self,
        default_ttl: Duration,
        idle: Option<Duration>,
    ) -> Result<PastExpiry, StoreError> {
        // LEAST ignores NULLs: without an idle limit the time to live alone decides.
        let (count, overdue): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM max(now() - due))::float8 FROM ( \
               SELECT LEAST(COALESCE(expires_at, updated_at + make_interval(secs => $1)), \
                            updated_at + make_interval(secs => $2)) AS due \
               FROM previews WHERE deleted_at IS NULL \
             ) p WHERE due < now()",
        )
        .bind(interval(default_ttl))
        .bind(idle.map(interval))
        .fetch_one(&self.pool)
        .await?;
        Ok(PastExpiry {
            count: u64::try_from(count).unwrap_or(0),
            longest_overdue: Duration::from_secs_f64(overdue.unwrap_or(0.0).max(0.0)),
        })
    }

    /// Marks a live preview whose namespace disappeared outside Slipway. `false` if it is
    /// already deleted or absent.
    pub async fn mark_preview_vanished(&self, key: &str) -> Result<bool, StoreError> {
        self.end_preview(key, "vanished").await
    }

    /// Unfinished jobs already pushed to Redis whose row has not changed for `quiet` (and
    /// whose retry, if any, was due that long ago): the candidates for "lost by Redis".
    /// Oldest first, at most `limit`.
    pub async fn quiet_unfinished_jobs(
        &self,
        quiet: Duration,
        limit: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
             WHERE state = ANY($1) AND enqueued_at IS NOT NULL \
               AND updated_at < now() - make_interval(secs => $2) \
               AND (retry_at IS NULL OR retry_at < now() - make_interval(secs => $2)) \
             ORDER BY updated_at LIMIT $3"
        ))
        .bind(state_strs(&NON_TERMINAL))
        .bind(interval(quiet))
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Records that a job was looked at (re-pushed), so the next sweep leaves it alone for
    /// another quiet period. Its state does not change.
    pub async fn touch_job(&self, id: JobId) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET updated_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the logs of jobs that finished more than `age` ago: at most `max_jobs` jobs,
    /// each in statements of at most `batch` lines, so no statement holds many row locks or
    /// runs long, and live appends and tails are never blocked behind it.
    pub async fn expire_logs(
        &self,
        age: Duration,
        batch: i64,
        max_jobs: i64,
    ) -> Result<LogRetention, StoreError> {
        let ids: Vec<JobId> = sqlx::query_scalar(
            "SELECT id FROM jobs \
             WHERE finished_at IS NOT NULL AND logs_deleted_at IS NULL \
               AND finished_at < now() - make_interval(secs => $1) \
             ORDER BY finished_at LIMIT $2",
        )
        .bind(interval(age))
        .bind(max_jobs.max(1))
        .fetch_all(&self.pool)
        .await?;
        let mut done = LogRetention::default();
        for id in ids {
            loop {
                let deleted = sqlx::query(
                    "DELETE FROM job_logs WHERE (job_id, attempt, seq) IN ( \
                       SELECT job_id, attempt, seq FROM job_logs WHERE job_id = $1 LIMIT $2)",
                )
                .bind(id)
                .bind(batch.max(1))
                .execute(&self.pool)
                .await?
                .rows_affected();
                done.lines += deleted;
                if deleted < batch.max(1) as u64 {
                    break;
                }
            }
            sqlx::query("UPDATE jobs SET logs_deleted_at = now() WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
            done.jobs += 1;
        }
        Ok(done)
    }

    /// Journals one sweep, and forgets sweeps older than `keep`.
    pub async fn record_sweep(
        &self,
        holder: &str,
        started_at: DateTime<Utc>,
        report: &Value,
        keep: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO cleanup_sweeps (holder, started_at, report) VALUES ($1, $2, $3)")
            .bind(holder)
            .bind(started_at)
            .bind(report)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM cleanup_sweeps WHERE started_at < now() - make_interval(secs => $1)",
        )
        .bind(interval(keep))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest sweeps, newest first.
    pub async fn recent_sweeps(&self, limit: i64) -> Result<Vec<SweepRecord>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT id, holder, started_at, finished_at, report FROM cleanup_sweeps \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
