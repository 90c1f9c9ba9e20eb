//! Migrations: concurrent processes against one empty database apply the schema exactly once.

mod common;

use common::TestDb;
use slipway_shared::store::MIGRATOR;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_processes_migrate_one_empty_database_once() {
    let db = TestDb::empty().await.unwrap();
    let bin = env!("CARGO_BIN_EXE_slipway-migrate");
    let children: Vec<_> = (0..6)
        .map(|_| {
            tokio::process::Command::new(bin)
                .env("SLIPWAY_DATABASE_URL", db.url())
                .output()
        })
        .collect();
    // All six are started before any is awaited, so they race for the lock.
    for output in futures::future::join_all(children).await {
        let output = output.unwrap();
        assert!(
            output.status.success(),
            "slipway-migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.store().pool())
            .await
            .unwrap();
    let expected: Vec<(i64, bool)> = MIGRATOR.iter().map(|m| (m.version, true)).collect();
    assert_eq!(
        applied, expected,
        "each migration recorded once, successfully"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_name IN ('jobs', 'job_attempts', 'job_logs', 'previews')",
    )
    .fetch_one(db.store().pool())
    .await
    .unwrap();
    assert_eq!(tables, 4);
}

#[tokio::test]
async fn migrate_again_is_a_no_op() {
    let db = TestDb::new().await.unwrap();
    db.store().migrate().await.unwrap();
    db.store().migrate().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(db.store().pool())
        .await
        .unwrap();
    assert_eq!(n, MIGRATOR.iter().count() as i64);
}

#[tokio::test]
async fn test_database_is_dropped_with_its_handle() {
    let db = TestDb::new().await.unwrap();
    let name = db.name().to_owned();
    let admin =
        slipway_shared::store::Store::connect_with(&slipway_shared::testing::admin_url(), 1)
            .await
            .unwrap();
    drop(db);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(admin.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "database {name} still exists");
}

#[tokio::test]
async fn an_older_release_starts_on_a_newer_schema() {
    // A newer release applied a migration this binary does not know (a rolling upgrade, or a
    // rollback): this binary still starts, and applies nothing twice.
    let db = TestDb::new().await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000000, 'from a newer release', true, '\\x00'::bytea, 1)",
    )
    .execute(db.store().pool())
    .await
    .unwrap();
    db.store()
        .migrate()
        .await
        .expect("starts on a newer schema");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(db.store().pool())
        .await
        .unwrap();
    assert_eq!(n, MIGRATOR.iter().count() as i64 + 1);
}
