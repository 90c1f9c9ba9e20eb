//! Helpers shared by the queue and runtime tests: a private key prefix per test on the shared
//! Redis (deleted on drop, never FLUSHALL), polling with timeouts, a scripted in-process handler
//! that records what it saw, and a runtime started in the background with its own shutdown.
#![allow(dead_code)]

use serde_json::{Value, json};
use slipway_core::{BackoffPolicy, JobKind};
use slipway_shared::queue::QueueClient;
use slipway_shared::runtime::{self, Handler, JobContext, JobError, RuntimeConfig};
use slipway_shared::testing::RedisPrefix;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const REDIS: &str = "redis://127.0.0.1:6379";

/// A test's own key prefix (deleted when it drops, via `testing::RedisPrefix`) with queue
/// conveniences.
pub struct Prefix {
    pub name: String,
    pub url: String,
    _keys: RedisPrefix,
}

impl Prefix {
    pub fn new() -> Self {
        Self::on(REDIS)
    }
    pub fn on(url: &str) -> Self {
        let keys = RedisPrefix::on(url);
        Prefix {
            name: keys.name.clone(),
            url: url.to_owned(),
            _keys: keys,
        }
    }
    pub async fn client(&self) -> QueueClient {
        QueueClient::connect(&self.url, &self.name).await.unwrap()
    }
    pub fn key(&self, kind: JobKind, suffix: &str) -> String {
        format!("{}:{}:{}", self.name, kind.queue_name(), suffix)
    }
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

/// Poll `cond` every 25 ms until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What the recording handler saw of one attempt.
#[derive(Debug, Clone)]
pub struct Seen {
    pub attempt: u32,
    pub at: Instant,
    pub worker: String,
}

/// A handler scripted by job data (`sleep_ms`, `fail`, `fail_until_attempt`,
/// `panic_until_attempt`, `ignore_cancel`) that records starts, cancellations and concurrency.
pub struct Recorder {
    pub name: String,
    pub starts: Mutex<HashMap<String, Vec<Seen>>>,
    pub cancelled: Mutex<Vec<String>>,
    pub returned: Mutex<Vec<String>>,
    /// The job-store payload each job arrived with (`JobContext::record`).
    pub payloads: Mutex<HashMap<String, Value>>,
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
}

impl Recorder {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Recorder {
            name: name.to_owned(),
            starts: Mutex::default(),
            cancelled: Mutex::default(),
            returned: Mutex::default(),
            payloads: Mutex::default(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        })
    }
    pub fn starts_of(&self, id: &str) -> Vec<Seen> {
        self.starts
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
    pub fn total_starts(&self) -> usize {
        self.starts.lock().unwrap().values().map(Vec::len).sum()
    }
    pub fn was_cancelled(&self, id: &str) -> bool {
        self.cancelled.lock().unwrap().iter().any(|c| c == id)
    }
}

struct RunningGuard<'a>(&'a AtomicUsize);
impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn num(d: &Value, k: &str) -> Option<u64> {
    d.get(k).and_then(Value::as_u64)
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, job: JobContext) -> Result<Value, JobError> {
        let id = job.id.to_string();
        self.starts
            .lock()
            .unwrap()
            .entry(id.clone())
            .or_default()
            .push(Seen {
                attempt: job.attempt,
                at: Instant::now(),
                worker: self.name.clone(),
            });
        if let Some(record) = &job.record {
            self.payloads
                .lock()
                .unwrap()
                .insert(id.clone(), record.payload.clone());
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let _guard = RunningGuard(&self.running);
        let d = &job.data;
        if let Some(until) = num(d, "panic_until_attempt")
            && u64::from(job.attempt) < until
        {
            panic!("scripted panic");
        }
        if let Some(ms) = num(d, "sleep_ms") {
            let sleep = tokio::time::sleep(Duration::from_millis(ms));
            if d.get("ignore_cancel").and_then(Value::as_bool) == Some(true) {
                sleep.await;
                if job.cancel.is_cancelled() {
                    self.cancelled.lock().unwrap().push(id.clone());
                }
            } else {
                tokio::select! {
                    () = sleep => {}
                    () = job.cancel.cancelled() => {
                        self.cancelled.lock().unwrap().push(id.clone());
                        return Err(JobError::transient("stopped: cancelled"));
                    }
                }
            }
        }
        let fail_now = num(d, "fail_until_attempt").is_none_or(|u| u64::from(job.attempt) < u);
        match d.get("fail").and_then(Value::as_str) {
            Some("transient") if fail_now => {
                return Err(JobError::transient(format!(
                    "boom on attempt {}",
                    job.attempt
                )));
            }
            Some("permanent") if fail_now => return Err(JobError::permanent("bad input")),
            _ => {}
        }
        self.returned.lock().unwrap().push(id);
        Ok(json!({ "by": self.name, "attempt": job.attempt }))
    }
}

/// Short timings for tests: rescue 4.5 s (lock 1.5 s, renewal every 0.5 s), quick backoff.
pub fn test_config(prefix: &Prefix, kind: JobKind) -> RuntimeConfig {
    let mut cfg = RuntimeConfig::new(kind, prefix.url.clone(), prefix.name.clone());
    cfg.concurrency = 4;
    cfg.rescue_time = Duration::from_millis(4_500);
    cfg.grace_period = Duration::from_secs(2);
    cfg.abort_grace = Duration::from_secs(2);
    cfg.backoff = BackoffPolicy {
        base: Duration::from_millis(300),
        factor: 2,
        cap: Duration::from_secs(2),
    };
    cfg
}

/// A runtime running in the background.
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), slipway_shared::queue::QueueError>>,
}

impl RunningWorker {
    pub fn start<H: Handler>(cfg: RuntimeConfig, handler: Arc<H>) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(runtime::run(cfg, handler, async move {
            let _ = rx.await;
        }));
        RunningWorker {
            stop: Some(tx),
            task,
        }
    }

    /// A runtime that records attempts in `store`.
    pub fn start_with_store<H: Handler>(
        cfg: RuntimeConfig,
        store: slipway_shared::store::Store,
        handler: Arc<H>,
    ) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(runtime::run_with_store(cfg, store, handler, async move {
            let _ = rx.await;
        }));
        RunningWorker {
            stop: Some(tx),
            task,
        }
    }

    /// Signal shutdown and wait for the runtime to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("runtime did not stop in time")
            .expect("runtime task panicked")
            .expect("runtime failed");
    }
}

/// Wait until `n` workers of `kind` are registered (i.e. started and fetching).
pub async fn wait_workers(client: &QueueClient, kind: JobKind, n: usize) {
    wait_until(Duration::from_secs(20), "workers registered", || async {
        client
            .workers(kind)
            .await
            .map(|w| w.len() >= n)
            .unwrap_or(false)
    })
    .await;
}
