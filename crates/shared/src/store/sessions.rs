//! Dashboard sessions (`ui_sessions`): created at sign-in, read on every dashboard request,
//! deleted at sign-out. Rows are keyed by the SHA-256 of the session id the browser holds.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// A live dashboard session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UiSession {
    pub token_name: String,
    /// `read+enqueue+admin` (as `Scopes` prints them).
    pub scopes: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Records a session; expired sessions are removed on the way (sign-ins are rare, so this
    /// bounds the table without a sweeper).
    pub async fn create_ui_session(
        &self,
        id_hash: &[u8; 32],
        token_name: &str,
        scopes: &str,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= now()")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, token_name, scopes, csrf_token, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id_hash[..])
        .bind(token_name)
        .bind(scopes)
        .bind(csrf_token)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unexpired session with this id hash.
    pub async fn ui_session(&self, id_hash: &[u8; 32]) -> Result<Option<UiSession>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT token_name, scopes, csrf_token, created_at, expires_at FROM ui_sessions \
             WHERE id_hash = $1 AND expires_at > now()",
        )
        .bind(&id_hash[..])
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Ends a session; `false` when there was none.
    pub async fn delete_ui_session(&self, id_hash: &[u8; 32]) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(&id_hash[..])
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
