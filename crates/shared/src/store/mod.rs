//! The Postgres job store: Slipway's system of record.
//!
//! Every job state change is one guarded `UPDATE .. WHERE state IN (..)` (plus the attempt
//! number for worker updates), so two writers racing on the same job cannot both win: the
//! loser's statement matches no row once the winner has committed. Queries are checked at run
//! time (`sqlx::query` + `.bind`), so building never needs a live database.

mod caps;
mod cleanup;
mod cursor;
mod jobs;
pub use jobs::FINISHED_PER_MINUTE_SQL;
mod logs;
mod pipelines;
mod previews;
mod repositories;
mod sessions;
mod types;
mod usage;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use caps::{CappedStart, WAITING_LINE_SEQ};
pub use cleanup::{LogRetention, PastExpiry, SweepRecord};
pub use jobs::TEXT_SEARCH_WINDOW;
pub use logs::{LogListener, LogWake};
pub use repositories::{RepositoryRecord, RepositoryUpsert};
pub use sessions::UiSession;
pub use types::{
    AttemptOutcome, AttemptRecord, Inserted, JobFilter, JobPage, JobRecord, LogLine, NewJob,
    PreviewFilter, PreviewPage, PreviewRecord, PreviewUpsert, StoredLogLine,
};
pub use usage::PreviewUsage;

/// Channel on which [`Store::append_logs`] announces new lines, and on which a job's state
/// changes that end or pause a run ([`Store::finish_attempt`], [`Store::cancel_job`],
/// [`Store::supersede_older`]) are announced from the same statement; the payload is the job
/// id either way, so a live tail re-reads the job and its lines on one kind of wake-up.
pub const LOG_CHANNEL: &str = "slipway_logs";

/// Key of the advisory lock held while migrating, so replicas starting at once apply each
/// migration exactly once. Arbitrary but fixed ("slipway" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0073_6c69_7077_6179;

/// The migrations embedded in every binary.
///
/// A database may hold migrations this binary does not know: during a rolling upgrade, or after
/// a rollback, an older release runs against a newer schema. Migrations are additive (each one
/// keeps the previous release working), so that is allowed rather than refused.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator
    });

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid pagination cursor")]
    InvalidCursor,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("stored value could not be read: {0}")]
    Decode(String),
    /// The relay's push callback failed. The `pushed` jobs before it were committed as
    /// enqueued; the rest stay for the next round.
    #[error("relay push failed after {pushed} job(s): {message}")]
    RelayPush { pushed: usize, message: String },
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to a query that failed): the
    /// caller may answer "unavailable, retry" rather than report a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            )
        )
    }
}

/// A handle on the job store. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

// Hand-written: the pool's Debug includes its connect options, password and all.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("pool_size", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .finish()
    }
}

impl Store {
    /// Connects with a pool sized for a service (10 connections).
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        Self::connect_with(database_url, 10).await
    }

    /// Connects with at most `max_connections` pooled connections (tests use few).
    pub async fn connect_with(
        database_url: &str,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        let options: PgConnectOptions = database_url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations under a session advisory lock. Any number of processes
    /// may call this at once: the first applies, the others wait and then find nothing to do.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        // sqlx's migrator locks too; ours (same session, so no deadlock) does not depend on
        // sqlx internals and also covers creating `_sqlx_migrations`.
        // `run_direct` on the connection itself: `run` takes it through `Acquire`, whose
        // higher-ranked bound makes every caller's future non-`Send`.
        let result = MIGRATOR.run_direct(&mut *conn).await;
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if unlock.is_err() {
            // A session lock dies with its connection; make sure this one is not reused.
            conn.detach();
        }
        result?;
        unlock?;
        Ok(())
    }

    /// `SELECT 1`: used by readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_output_hides_the_password() {
        let pool = PgPool::connect_lazy("postgres://slipway:hunter2@127.0.0.1:1/x").unwrap();
        let shown = format!("{:?}", Store::from_pool(pool));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
