//! Test support (feature `test-support`): a throw-away Postgres database, Redis key prefix or
//! private Redis server per test, [`eventually`] to wait for conditions, and [`WorkerThread`]
//! to run a worker in-process as if it were a process of its own; [`Process`] runs a product
//! binary as a real child process (SIGTERM, exit timed) and [`TcpProxy`] puts a dependency out
//! of its reach (stalled or cut) without touching the shared servers; [`assert_promtool_clean`]
//! fails a test on any finding of `promtool check metrics` in a `/metrics` body;
//! [`otlp::OtlpReceiver`] receives exported spans as a collector would.
//!
//! [`TestDb::new`] creates a uniquely named database on the server of
//! `SLIPWAY_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! migrates it and drops it again when the `TestDb` is dropped, so tests never share state
//! and leave nothing behind.

pub mod otlp;
mod process;
mod promtool;
mod proxy;
pub mod shutdown;

pub use process::{Process, free_port, set_arg};
pub use promtool::{assert_promtool_clean, check_metrics, prometheus_tool, promtool};
pub use proxy::TcpProxy;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::store::{Store, StoreError};

/// The admin URL used when `SLIPWAY_TEST_DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections each test store may open: tests run in parallel against one server.
const TEST_POOL_SIZE: u32 = 5;

/// The admin URL of the test server.
pub fn admin_url() -> String {
    std::env::var("SLIPWAY_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

/// A fresh database that is dropped (forcibly) when this value is dropped.
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
    store: Store,
}

impl TestDb {
    /// A fresh, migrated database.
    pub async fn new() -> Result<TestDb, StoreError> {
        let db = Self::empty().await?;
        db.store.migrate().await?;
        Ok(db)
    }

    /// A fresh database without migrations (for migration tests).
    pub async fn empty() -> Result<TestDb, StoreError> {
        let admin_url = admin_url();
        let name = format!("slipway_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let url = with_database(&admin_url, &name);
        let store = match Store::connect_with(&url, TEST_POOL_SIZE).await {
            Ok(store) => store,
            Err(e) => {
                drop_database(&admin_url, &name);
                return Err(e);
            }
        };
        Ok(TestDb {
            name,
            url,
            admin_url,
            store,
        })
    }

    /// Connection URL of this database (for spawning processes or extra pools).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store on this database (pool of 5 connections).
    pub fn store(&self) -> Store {
        self.store.clone()
    }
}

// Hand-written: the URLs may carry the test server's password.
impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database(&self.admin_url, &self.name);
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes, then panics naming `what`.
/// Tests wait for conditions with this instead of sleeping a fixed time.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Drops `name` from a thread with its own runtime, so it works from `Drop` inside or outside
/// an async runtime. `WITH (FORCE)` ends connections still open in pools the test kept.
fn drop_database(admin_url: &str, name: &str) {
    let admin_url = admin_url.to_owned();
    let name = name.to_owned();
    let dropper = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("test database {name} not dropped: no runtime: {e}");
                return;
            }
        };
        let result: Result<(), sqlx::Error> = runtime.block_on(async {
            let mut admin = PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            admin.close().await
        });
        if let Err(e) = result {
            eprintln!("test database {name} not dropped: {e}");
        }
    });
    if dropper.join().is_err() {
        eprintln!("test database drop thread panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t1"),
            "postgres://h:5432/t1"
        );
    }
}

/// The Helm binary the tests run: `$HELM`, else the repository's `.tools/bin/helm`
/// (`scripts/ensure-helm.sh`, pinned), else `helm` on `PATH`. `None` when there is none; with
/// `SLIPWAY_REQUIRE_HELM` set (the Makefile sets it) that is a failure, so CI cannot pass by
/// skipping.
pub fn helm() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let found = [
        std::env::var_os("HELM").map(PathBuf::from),
        Some(root.join(".tools/bin/helm")),
        Some(PathBuf::from("helm")),
    ]
    .into_iter()
    .flatten()
    .find(|p| {
        std::process::Command::new(p)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("SLIPWAY_REQUIRE_HELM").is_none(),
            "Helm is required (SLIPWAY_REQUIRE_HELM is set): run `make tools` \
             (scripts/ensure-helm.sh) or set HELM=/path/to/helm"
        );
        eprintln!("helm not found (make tools installs it); skipping");
    }
    found
}

/// The shared Redis of the test machine, unless `SLIPWAY_TEST_REDIS_URL` says otherwise.
pub fn redis_url() -> String {
    std::env::var("SLIPWAY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A test's own Redis key prefix; every key under it is deleted (never a flush) on drop.
#[derive(Debug)]
pub struct RedisPrefix {
    pub name: String,
    pub url: String,
}

impl RedisPrefix {
    /// A fresh prefix on the shared test Redis.
    pub fn new() -> Self {
        Self::on(&redis_url())
    }

    /// A fresh prefix on the Redis at `url`.
    pub fn on(url: &str) -> Self {
        RedisPrefix {
            name: format!("slipway-test-{}", uuid::Uuid::new_v4().simple()),
            url: url.to_owned(),
        }
    }
}

impl Default for RedisPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Err(e) = delete_redis_prefix(&self.url, &self.name) {
            eprintln!("test keys under {} not deleted: {e}", self.name);
        }
    }
}

/// Delete every key under `prefix:` with SCAN + UNLINK (never a flush, never blocking Redis).
/// Returns how many keys went.
pub fn delete_redis_prefix(redis_url: &str, prefix: &str) -> redis::RedisResult<usize> {
    let mut conn = redis::Client::open(redis_url)?.get_connection()?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        if !keys.is_empty() {
            deleted += redis::cmd("UNLINK").arg(&keys).query::<usize>(&mut conn)?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// A `redis-server` of the test's own on a free loopback port, which the test may stop and
/// start again (same port, same data directory) without disturbing anything else.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// `requirepass`, when the test wants a server that needs one.
    password: Option<String>,
}

impl PrivateRedis {
    /// A port and data directory, with no server running yet (for tests that start a worker
    /// before Redis); [`restart`](Self::restart) starts it.
    pub fn new() -> std::io::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(PrivateRedis {
            port,
            dir: tempfile::tempdir()?,
            child: None,
            password: None,
        })
    }

    /// Start a server that requires `password`; [`url`](Self::url) carries it.
    pub async fn start_with_password(password: &str) -> std::io::Result<Self> {
        let mut r = Self::new()?;
        r.password = Some(password.to_owned());
        r.restart().await?;
        Ok(r)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Start a server (append-only file on, so a restart keeps the data).
    pub async fn start() -> std::io::Result<Self> {
        let mut r = Self::new()?;
        r.restart().await?;
        Ok(r)
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Start the server again after [`stop`](Self::stop) (or at first); waits until it answers.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(
                self.password
                    .iter()
                    .flat_map(|pw| ["--requirepass".to_owned(), pw.clone()]),
            )
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let url = self.url();
        eventually(
            std::time::Duration::from_secs(10),
            "the private redis-server to answer",
            || {
                let url = url.clone();
                async move {
                    redis::Client::open(url.as_str())
                        .and_then(|c| c.get_connection())
                        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                        .ok()
                }
            },
        )
        .await;
        Ok(())
    }

    /// Kill the server (SIGKILL: as abrupt as a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (at most `timeout`, then panics) until job `id` is in a terminal state, and returns it.
pub async fn wait_finished(
    store: &Store,
    id: slipway_core::JobId,
    timeout: std::time::Duration,
) -> crate::store::JobRecord {
    eventually(timeout, &format!("job {id} to finish"), || async {
        store
            .get_job(id)
            .await
            .ok()
            .flatten()
            .filter(|j| j.state.is_terminal())
    })
    .await
}

/// Where a worker started by [`WorkerThread::start`] reports its probe server's address.
pub type OnListen = Box<dyn FnOnce(std::net::SocketAddr) + Send>;
/// The shutdown signal a [`WorkerThread`] passes to its worker.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A worker running on its own thread and Tokio runtime, as a worker process would: tests and
/// benchmarks drive a binary's `run_with_client(config, client, on_listen, shutdown)` this way
/// (the worker's future need not be `Send`, as in `main`). Dropping it asks the worker to stop
/// without waiting; [`WorkerThread::stop`] waits and reports how the worker ended.
pub struct WorkerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// Where the worker serves its probes and metrics.
    pub addr: std::net::SocketAddr,
}

impl WorkerThread {
    /// Start `run(on_listen, shutdown)` on a new thread with a two-thread runtime; returns once
    /// the worker called `on_listen`, or its error if it ended before.
    pub async fn start<F, Fut, E>(run: F) -> Result<WorkerThread, String>
    where
        F: FnOnce(OnListen, Shutdown) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("worker runtime: {e}"))?;
            runtime.block_on(async move {
                let on_listen: OnListen = Box::new(move |addr| {
                    let _ = ready_tx.send(addr);
                });
                let shutdown: Shutdown = Box::pin(async {
                    let _ = stopped.await;
                });
                run(on_listen, shutdown).await.map_err(|e| e.to_string())
            })
        });
        match ready_rx.await {
            Ok(addr) => Ok(WorkerThread {
                stop: Some(stop),
                thread: Some(thread),
                addr,
            }),
            Err(_) => Err(match thread.join() {
                Ok(Err(e)) => format!("the worker stopped before it listened: {e}"),
                Ok(Ok(())) => "the worker stopped before it listened".into(),
                Err(_) => "the worker panicked before it listened".into(),
            }),
        }
    }

    /// Shut the worker down gracefully and wait for it (at most a minute).
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let joined = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await
        .map_err(|_| "the worker did not stop within a minute".to_owned())?
        .map_err(|e| format!("joining the worker thread: {e}"))?;
        joined.map_err(|_| "the worker panicked".to_owned())?
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        // A test that failed early still stops its worker.
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
