//! Managed Postgres and Redis services require TLS. The store connects with `sslmode=require`
//! and the session is encrypted (the Debian Postgres package serves TLS with its snakeoil
//! certificate, so this runs against the local server); a `rediss://` URL is attempted over TLS
//! rather than refused as unsupported.

mod common;

use common::test_db;
use slipway_shared::queue::QueueClient;
use slipway_shared::store::Store;

#[tokio::test]
async fn the_store_connects_over_tls_when_the_url_asks_for_it() {
    let db = test_db().await;
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(db.store().pool())
        .await
        .unwrap();
    assert_eq!(
        ssl, "on",
        "the local Postgres serves no TLS (ssl = off); Debian's package turns it on with a \
         snakeoil certificate"
    );
    let sep = if db.url().contains('?') { '&' } else { '?' };
    let store = Store::connect_with(&format!("{}{sep}sslmode=require", db.url()), 1)
        .await
        .expect("a TLS connection");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(encrypted, "the session is encrypted");
}

#[tokio::test]
async fn a_rediss_url_is_tried_over_tls() {
    // The local Redis speaks plain text, so the TLS handshake never completes (a plain-text
    // server waits for a command). A client without TLS refuses at once ("not enabled"); one
    // with TLS is still handshaking when we stop waiting.
    let url = slipway_shared::testing::redis_url().replacen("redis://", "rediss://", 1);
    let attempt = async {
        let q = QueueClient::connect(&url, "slipway-tls-probe").await?;
        q.ping().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), attempt).await {
        Err(_handshaking) => {}
        Ok(Ok(())) => panic!("a TLS session with a plain-text Redis cannot succeed"),
        Ok(Err(e)) => {
            let e = e.to_string().to_lowercase();
            assert!(!e.contains("not enabled") && !e.contains("feature"), "{e}");
        }
    }
}
