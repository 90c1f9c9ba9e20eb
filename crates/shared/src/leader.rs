//! Leadership among replicas through a Postgres session advisory lock.
//!
//! Several replicas may run a periodic task (the cleanup sweeps); exactly one should. Each
//! replica keeps trying `pg_try_advisory_lock` on a connection of its own (outside the pool,
//! so pool recycling can neither keep nor drop the lock behind our back). The holder checks its
//! connection before each round of work: a replica whose connection died (or whose database
//! restarted) has lost the lock with it, and says so before doing anything. A replica that
//! stops releases the lock by closing its connection, so another takes over at its next try;
//! the close is bounded ([`RELEASE_BOUND`]): against a stalled server the connection is dropped
//! instead, and the session (with the lock) ends when the server notices.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::store::{Store, StoreError};

/// How long [`Leadership::release`] waits for the server to see the session closed.
pub const RELEASE_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// Derives a lock key from a name, so each leader-elected task has its own lock.
pub fn lock_key(name: &str) -> i64 {
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// One replica's claim on a named leadership.
pub struct Leadership {
    options: PgConnectOptions,
    key: i64,
    holder: Option<PgConnection>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("key", &self.key)
            .field("leader", &self.holder.is_some())
            .finish()
    }
}

impl Leadership {
    /// A claim on the leadership `name` in the store's database (not yet tried).
    pub fn new(store: &Store, name: &str) -> Leadership {
        Leadership {
            options: store.pool().connect_options().as_ref().clone(),
            key: lock_key(name),
            holder: None,
        }
    }

    /// Whether this replica leads now: confirms a held lock is still held (its connection
    /// answers) or tries to take it. An error means "not leader" for this round.
    pub async fn check(&mut self) -> Result<bool, StoreError> {
        if let Some(conn) = self.holder.as_mut() {
            match sqlx::query("SELECT 1").execute(&mut *conn).await {
                Ok(_) => return Ok(true),
                Err(e) => {
                    // The session (and with it the lock) is gone or unusable.
                    self.holder = None;
                    return Err(e.into());
                }
            }
        }
        let mut conn = PgConnection::connect_with(&self.options).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(&mut conn)
            .await?;
        if got {
            self.holder = Some(conn);
        } else {
            let _ = conn.close().await;
        }
        Ok(got)
    }

    /// Whether this replica held the lock at its last check.
    pub fn is_leader(&self) -> bool {
        self.holder.is_some()
    }

    /// Gives the leadership up (another replica takes it at its next try), within
    /// [`RELEASE_BOUND`].
    pub async fn release(&mut self) {
        if let Some(conn) = self.holder.take() {
            // Closing the session releases every lock it holds. Past the bound the connection
            // is dropped: its socket closes, and the session ends with it.
            if tokio::time::timeout(RELEASE_BOUND, conn.close())
                .await
                .is_err()
            {
                tracing::warn!("leadership connection did not close in time; dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(lock_key("slipway-cleanup"), lock_key("slipway-cleanup"));
        assert_ne!(
            lock_key("slipway-cleanup"),
            lock_key("slipway-github-status")
        );
        // Pinned: a change would let old and new replicas lead at once during an upgrade.
        assert_eq!(lock_key(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
    }
}
