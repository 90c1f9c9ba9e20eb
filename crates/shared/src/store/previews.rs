//! The preview registry: which preview runs where, at what URL, from which image.

use slipway_core::{JobId, JobKind, JobState};
use sqlx::{Postgres, QueryBuilder};

use super::cursor;
use super::jobs::page_cursor;
use super::{PreviewFilter, PreviewPage, PreviewRecord, PreviewUpsert, Store, StoreError};

pub(super) const PREVIEW_COLUMNS: &str = "key, namespace, url, image, commit_sha, status, pods, created_at, \
     updated_at, expires_at, deleted_at, last_job_id";

impl Store {
    /// Creates or updates a preview (see [`PreviewUpsert`] for which fields are kept).
    ///
    /// `None` when refused: the writing job (`last_job_id`) has been cancelled or superseded
    /// (by a newer launch or a teardown), so a late write of a stale launch cannot bring back
    /// a torn-down preview or overwrite a newer one.
    pub async fn upsert_preview(
        &self,
        p: &PreviewUpsert,
    ) -> Result<Option<PreviewRecord>, StoreError> {
        let sql = format!(
            "INSERT INTO previews (key, namespace, url, image, commit_sha, status, pods, \
                                   expires_at, last_job_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (key) DO UPDATE SET \
               namespace = EXCLUDED.namespace, \
               url = COALESCE(EXCLUDED.url, previews.url), \
               image = COALESCE(EXCLUDED.image, previews.image), \
               commit_sha = COALESCE(EXCLUDED.commit_sha, previews.commit_sha), \
               status = EXCLUDED.status, \
               pods = EXCLUDED.pods, \
               expires_at = COALESCE(EXCLUDED.expires_at, previews.expires_at), \
               last_job_id = COALESCE(EXCLUDED.last_job_id, previews.last_job_id), \
               deleted_at = NULL, \
               updated_at = now() \
             WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = EXCLUDED.last_job_id \
                               AND state IN ('cancelled', 'superseded')) \
             RETURNING {PREVIEW_COLUMNS}"
        );
        let record = sqlx::query_as(&sql)
            .bind(&p.key)
            .bind(&p.namespace)
            .bind(&p.url)
            .bind(&p.image)
            .bind(&p.commit_sha)
            .bind(&p.status)
            .bind(&p.pods)
            .bind(p.expires_at)
            .bind(p.last_job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(record)
    }

    pub async fn get_preview(&self, key: &str) -> Result<Option<PreviewRecord>, StoreError> {
        let record = sqlx::query_as(&format!(
            "SELECT {PREVIEW_COLUMNS} FROM previews WHERE key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(record)
    }

    /// Previews newest first, `limit` (1..=1000) per page; deleted ones only if asked.
    pub async fn list_previews(
        &self,
        include_deleted: bool,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<PreviewPage, StoreError> {
        let filter = PreviewFilter {
            include_deleted,
            ..PreviewFilter::default()
        };
        self.list_previews_filtered(&filter, cursor, limit).await
    }

    /// Previews matching `filter`, newest first, `limit` (1..=1000) per page.
    pub async fn list_previews_filtered(
        &self,
        filter: &PreviewFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<PreviewPage, StoreError> {
        let limit = cursor::clamp_limit(limit);
        let mut qb: QueryBuilder<'_, Postgres> =
            QueryBuilder::new(format!("SELECT {PREVIEW_COLUMNS} FROM previews WHERE TRUE"));
        if !filter.include_deleted {
            qb.push(" AND deleted_at IS NULL");
        }
        if let Some(status) = &filter.status {
            qb.push(" AND status = ").push_bind(status.clone());
        }
        if let Some(prefix) = &filter.key_prefix {
            qb.push(" AND key LIKE ")
                .push_bind(format!("{}%", super::jobs::like_escape(prefix)));
        }
        if let Some(part) = filter
            .key_contains
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            qb.push(" AND key ILIKE ")
                .push_bind(super::jobs::like_pattern(part));
        }
        if let Some(c) = cursor {
            let (at, key) = cursor::decode(c)?;
            qb.push(" AND (created_at, key) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(key)
                .push(")");
        }
        qb.push(" ORDER BY created_at DESC, key DESC LIMIT ")
            .push_bind(limit + 1);
        let mut items: Vec<PreviewRecord> = qb.build_query_as().fetch_all(&self.pool).await?;
        let next_cursor = page_cursor(&mut items, limit, |p| cursor::encode(p.created_at, &p.key));
        Ok(PreviewPage { items, next_cursor })
    }

    /// Moves a live preview's expiry `by` later, counted from its current expiry (or from now,
    /// when it has none or is already past it), but never beyond `cap` from now (nor earlier
    /// than it was: an expiry already past the cap stays where it is). The idle
    /// limit of the cleanup worker is unaffected (`updated_at` is not touched: an extension is
    /// not a deploy). `None` when the preview is absent or ended.
    pub async fn extend_preview_expiry(
        &self,
        key: &str,
        by: std::time::Duration,
        cap: std::time::Duration,
    ) -> Result<Option<PreviewRecord>, StoreError> {
        let secs = |d: std::time::Duration| d.as_secs_f64();
        let record = sqlx::query_as(&format!(
            "UPDATE previews SET expires_at = GREATEST(expires_at, LEAST( \
               GREATEST(COALESCE(expires_at, now()), now()) + make_interval(secs => $2), \
               now() + make_interval(secs => $3))) \
             WHERE key = $1 AND deleted_at IS NULL RETURNING {PREVIEW_COLUMNS}"
        ))
        .bind(key)
        .bind(secs(by))
        .bind(secs(cap))
        .fetch_optional(&self.pool)
        .await?;
        Ok(record)
    }

    /// The preview living in `namespace` (a live one first, else the newest ended one).
    pub async fn get_preview_by_namespace(
        &self,
        namespace: &str,
    ) -> Result<Option<PreviewRecord>, StoreError> {
        let record = sqlx::query_as(&format!(
            "SELECT {PREVIEW_COLUMNS} FROM previews WHERE namespace = $1 \
             ORDER BY deleted_at IS NULL DESC, updated_at DESC LIMIT 1"
        ))
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await?;
        Ok(record)
    }

    /// How many previews are not deleted (the active previews gauge).
    pub async fn count_active_previews(&self) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar("SELECT count(*) FROM previews WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Marks a preview deleted (its namespace is gone). `false` if absent or already deleted.
    pub async fn mark_preview_deleted(&self, key: &str) -> Result<bool, StoreError> {
        self.end_preview(key, "deleted").await
    }

    /// Ends a live preview with `status` (`deleted`, or `vanished` when its namespace went
    /// outside Slipway). `false` if absent or already ended.
    pub(super) async fn end_preview(&self, key: &str, status: &str) -> Result<bool, StoreError> {
        // Its last resource reading goes with it.
        let done = sqlx::query(
            "WITH usage AS (DELETE FROM preview_usage WHERE preview = $1) \
             UPDATE previews SET deleted_at = now(), updated_at = now(), status = $2, \
                    pods = '{}' \
             WHERE key = $1 AND deleted_at IS NULL",
        )
        .bind(key)
        .bind(status)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The newest build and the newest launch of each of `previews` (those that have one), as
    /// `(preview, kind, id, state)`: two index probes per preview (`jobs_preview_created_idx`,
    /// newest first), for a page of previews at once.
    pub async fn latest_preview_jobs(
        &self,
        previews: &[String],
    ) -> Result<Vec<(String, JobKind, JobId, JobState)>, StoreError> {
        let rows: Vec<(String, String, JobId, String)> = sqlx::query_as(
            "SELECT p.key, k.kind, j.id, j.state \
             FROM unnest($1::text[]) AS p(key) \
             CROSS JOIN (VALUES ('build'), ('launch')) AS k(kind) \
             CROSS JOIN LATERAL ( \
               SELECT id, state FROM jobs WHERE preview = p.key AND kind = k.kind \
               ORDER BY created_at DESC, id DESC LIMIT 1 \
             ) j",
        )
        .bind(previews)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(preview, kind, id, state)| {
                let bad = || StoreError::InvalidArgument(format!("job {id} has {kind}/{state}"));
                Ok((
                    preview,
                    kind.parse().map_err(|_| bad())?,
                    id,
                    state.parse().map_err(|_| bad())?,
                ))
            })
            .collect()
    }
}
