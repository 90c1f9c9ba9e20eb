//! The API test harness, after zero2prod: `spawn_app()` runs the real API in-process on port
//! 0 against a fresh Postgres database and a fresh Redis key prefix, and removes both when the
//! `TestApp` is dropped.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::Value;
use slipway_api::Config;
use slipway_shared::config::{CommonArgs, LogFormat, SecretUrl};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::Store;
pub use slipway_shared::testing::{RedisPrefix, TestDb, eventually};
use std::net::SocketAddr;
use tokio::sync::oneshot;

pub const READ: &str = "reader-token-0123456789";
pub const ENQUEUE: &str = "enqueue-token-0123456789";
pub const ADMIN: &str = "admin-token-0123456789";
pub const ALL: &str = "operator-token-0123456789";
pub const WEBHOOK_SECRET: &str = "webhook-secret-for-tests";

/// Tokens of the test API: one per scope, and one with every scope.
pub fn tokens() -> String {
    format!(
        "reader:read:{READ},catalog:enqueue:{ENQUEUE},ops:admin:{ADMIN},root:read+enqueue+admin:{ALL}"
    )
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub db: TestDb,
    pub store: Store,
    pub queue: QueueClient,
    pub prefix: String,
    /// Deletes the test's Redis keys when the app is dropped.
    _redis_keys: RedisPrefix,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

pub fn config(db: &TestDb, redis_url: &str, prefix: &str) -> Config {
    Config {
        common: CommonArgs {
            database_url: SecretUrl::new(db.url()),
            redis_url: SecretUrl::new(redis_url),
            queue_prefix: prefix.to_owned(),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            log_format: LogFormat::Text,
        },
        api_tokens: tokens(),
        github_webhook_secret: Some(WEBHOOK_SECRET.into()),
        max_attempts: 3,
        max_cpu: "2".into(),
        max_memory: "2Gi".into(),
        max_replicas: 5,
        max_ttl_hours: 720,
        allowed_repository_hosts: vec![],
        internal_repository_hosts: vec![],
        build_secret_names: vec![],
        relay_interval_ms: 100,
        github: slipway_api::GithubArgs::default(),
        mcp: slipway_api::McpArgs::default(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&slipway_shared::testing::redis_url()).await
}

/// The API on a Redis of the test's choosing (the relay test runs its own).
pub async fn spawn_app_with(redis_url: &str) -> TestApp {
    spawn_app_configured(redis_url, |_| {}).await
}

/// The API with settings of the test's choosing.
pub async fn spawn_app_configured(redis_url: &str, edit: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new().await.expect("test database");
    let keys = RedisPrefix::on(redis_url);
    let prefix = keys.name.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let mut config = config(&db, redis_url, &prefix);
    edit(&mut config);
    let running = slipway_api::start(config, async {
        let _ = rx.await;
    })
    .await
    .expect("start API");
    let queue = QueueClient::connect(redis_url, &prefix)
        .await
        .expect("queue client");
    TestApp {
        addr: running.addr,
        base: format!("http://{}", running.addr),
        store: db.store(),
        db,
        queue,
        prefix,
        _redis_keys: keys,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
    }
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(ALL), None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(ALL), Some(body)).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

pub fn build_body() -> Value {
    serde_json::json!({"repository": "https://github.com/org/app.git", "commit": SHA, "image": "org/app"})
}
