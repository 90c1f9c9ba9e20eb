//! The API binary stops promptly on SIGTERM whatever its dependencies do (issue 19): with its
//! Redis stopped or stalled, or its Postgres cut or stalled, while its relay and status feed
//! (holding its advisory lock) poll, it exits within 5 s.

use crate::helpers::{TestDb, tokens};
use slipway_shared::testing::redis_url;
use slipway_shared::testing::shutdown::{Outage, sigterm_during};
use std::process::Command;
use std::time::Duration;

async fn sigterm(outage: Outage) {
    let db = TestDb::new().await.expect("test database");
    let prefix = slipway_shared::testing::RedisPrefix::new();
    sigterm_during(
        outage,
        Duration::from_secs(5),
        db.url(),
        &redis_url(),
        &prefix.name,
        None,
        |e| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_slipway-api"));
            c.args(["--database-url", &e.database_url])
                .args(["--redis-url", &e.redis_url])
                .args(["--queue-prefix", &prefix.name])
                .args(["--listen", &e.listen.to_string()])
                .args(["--api-tokens", &tokens()])
                .args(["--relay-interval-ms", "100"])
                // The status feed runs (and leads); nothing reaches this GitHub.
                .args(["--github-token", "test-token"])
                .args(["--github-api-url", "http://127.0.0.1:9"])
                .args(["--github-status-poll-ms", "100"])
                .env("RUST_LOG", "info");
            c
        },
    )
    .await;
}

slipway_shared::outage_tests!(sigterm);
