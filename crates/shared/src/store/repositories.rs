//! Repository settings for GitHub pull-request previews, and the record of webhook deliveries
//! already handled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;

use super::{Store, StoreError};

/// How a repository's pull requests get previews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct RepositoryRecord {
    pub owner: String,
    pub name: String,
    pub enabled: bool,
    /// `automatic` (every pull request) or `label` (only those carrying `label`).
    pub mode: String,
    pub label: Option<String>,
    /// Whether pull requests from forks are built (their code is untrusted).
    pub build_forks: bool,
    pub build_options: Value,
    pub launch_options: Value,
    /// The preview source (`{"type": ...}`); `None` is the repository's Dockerfile.
    pub source: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an operator sets for a repository.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryUpsert {
    pub owner: String,
    pub name: String,
    pub enabled: bool,
    pub mode: String,
    pub label: Option<String>,
    pub build_forks: bool,
    pub build_options: Value,
    pub launch_options: Value,
    pub source: Option<Value>,
}

const REPOSITORY_COLUMNS: &str = "owner, name, enabled, mode, label, build_forks, \
     build_options, launch_options, source, created_at, updated_at";

impl Store {
    /// Creates or replaces a repository's settings (names are stored lowercased).
    pub async fn upsert_repository(
        &self,
        r: &RepositoryUpsert,
    ) -> Result<RepositoryRecord, StoreError> {
        let sql = format!(
            "INSERT INTO repositories (owner, name, enabled, mode, label, build_forks, \
                                       build_options, launch_options, source) \
             VALUES (lower($1), lower($2), $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (owner, name) DO UPDATE SET enabled = EXCLUDED.enabled, \
               mode = EXCLUDED.mode, label = EXCLUDED.label, \
               build_forks = EXCLUDED.build_forks, build_options = EXCLUDED.build_options, \
               launch_options = EXCLUDED.launch_options, source = EXCLUDED.source, \
               updated_at = now() \
             RETURNING {REPOSITORY_COLUMNS}"
        );
        let record = sqlx::query_as(&sql)
            .bind(&r.owner)
            .bind(&r.name)
            .bind(r.enabled)
            .bind(&r.mode)
            .bind(&r.label)
            .bind(r.build_forks)
            .bind(&r.build_options)
            .bind(&r.launch_options)
            .bind(&r.source)
            .fetch_one(&self.pool)
            .await?;
        Ok(record)
    }

    /// A repository's settings (case-insensitive names), `None` when Slipway does not serve it.
    pub async fn get_repository(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<RepositoryRecord>, StoreError> {
        let sql = format!(
            "SELECT {REPOSITORY_COLUMNS} FROM repositories \
             WHERE owner = lower($1) AND name = lower($2)"
        );
        Ok(sqlx::query_as(&sql)
            .bind(owner)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every configured repository, by name.
    pub async fn list_repositories(&self) -> Result<Vec<RepositoryRecord>, StoreError> {
        let sql = format!("SELECT {REPOSITORY_COLUMNS} FROM repositories ORDER BY owner, name");
        Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
    }

    /// Records a webhook delivery id; `false` when it was seen before (a redelivery).
    pub async fn record_delivery(&self, id: &str, event: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO github_deliveries (id, event) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(event)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets a delivery whose handling failed, so GitHub's redelivery is handled again.
    pub async fn forget_delivery(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM github_deliveries WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
