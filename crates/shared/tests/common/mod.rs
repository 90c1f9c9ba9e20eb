//! Helpers shared by the `store_*` integration tests. The reusable part (a throw-away database
//! per test) lives in the library behind the `test-support` feature so other crates' tests can
//! use it too; this module only adds conveniences.
#![allow(dead_code)]

use serde_json::json;
use slipway_core::JobKind;
use slipway_shared::store::{JobRecord, NewJob, Store};
pub use slipway_shared::testing::TestDb;

/// A fresh migrated database; panics (failing the test) if Postgres is unreachable.
pub async fn test_db() -> TestDb {
    TestDb::new().await.expect("create test database")
}

/// Inserts a job of `kind` for `preview` and returns it.
pub async fn insert(store: &Store, kind: JobKind, preview: Option<&str>) -> JobRecord {
    let mut new = NewJob::new(
        kind,
        json!({"repository": "https://github.com/org/app.git"}),
    );
    new.preview = preview.map(str::to_owned);
    store.insert_job(new).await.expect("insert job").job
}
