//! The latest resource reading of each live preview (`preview_usage`): written by the cleanup
//! worker's sweeps, read by the API's views. A reading for a preview that has ended is refused,
//! and ending a preview removes its reading.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// One reading of a preview's namespace. Millicores and bytes; `None` where not known.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PreviewUsage {
    pub preview: String,
    pub sampled_at: DateTime<Utc>,
    /// `ok`, `no_metrics_server` or `metrics_unavailable`.
    pub metrics: String,
    pub pods: Option<i32>,
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub cpu_limit_millis: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    pub cpu_requested_millis: Option<i64>,
    pub memory_requested_bytes: Option<i64>,
}

const COLUMNS: &str = "preview, sampled_at, metrics, pods, cpu_millis, memory_bytes, \
     cpu_limit_millis, memory_limit_bytes, cpu_requested_millis, memory_requested_bytes";

impl Store {
    /// Stores `usage` as its preview's latest reading. `false` (nothing written) when the
    /// preview is not live: a reading taken while it was being torn down must not outlive it.
    pub async fn record_preview_usage(&self, usage: &PreviewUsage) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO preview_usage ({COLUMNS}) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
             WHERE EXISTS (SELECT 1 FROM previews WHERE key = $1 AND deleted_at IS NULL) \
             ON CONFLICT (preview) DO UPDATE SET \
               sampled_at = EXCLUDED.sampled_at, metrics = EXCLUDED.metrics, \
               pods = EXCLUDED.pods, cpu_millis = EXCLUDED.cpu_millis, \
               memory_bytes = EXCLUDED.memory_bytes, \
               cpu_limit_millis = EXCLUDED.cpu_limit_millis, \
               memory_limit_bytes = EXCLUDED.memory_limit_bytes, \
               cpu_requested_millis = EXCLUDED.cpu_requested_millis, \
               memory_requested_bytes = EXCLUDED.memory_requested_bytes \
             WHERE preview_usage.sampled_at <= EXCLUDED.sampled_at"
        ))
        .bind(&usage.preview)
        .bind(usage.sampled_at)
        .bind(&usage.metrics)
        .bind(usage.pods)
        .bind(usage.cpu_millis)
        .bind(usage.memory_bytes)
        .bind(usage.cpu_limit_millis)
        .bind(usage.memory_limit_bytes)
        .bind(usage.cpu_requested_millis)
        .bind(usage.memory_requested_bytes)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The latest readings of `previews` (those that have one), in no particular order.
    pub async fn preview_usage(
        &self,
        previews: &[String],
    ) -> Result<Vec<PreviewUsage>, StoreError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM preview_usage WHERE preview = ANY($1)"
        ))
        .bind(previews)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
