//! The launch worker's test harness: a fresh Postgres database, a fresh Redis prefix, a
//! Kubernetes simulator, and the worker itself run in-process through `run_with_client` (the
//! same path as the binary, with the simulator's client).

#![allow(dead_code)]

use clap::Parser;
use kube_sim::{Delays, KubeSim, KubeSimBuilder};
use serde_json::{Value, json};
use slipway_core::validate::Validate;
use slipway_core::{JobId, JobKind, LaunchRequest, Limits};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{JobRecord, NewJob, PreviewRecord, Store, StoredLogLine};
use slipway_shared::testing::{RedisPrefix, TestDb, WorkerThread, wait_finished};
use slipway_worker_launch::Config;
use std::time::Duration;

/// Generous: the machine is small and shared.
pub const LONG: Duration = Duration::from_secs(90);

pub struct Harness {
    pub db: TestDb,
    pub store: Store,
    pub prefix: RedisPrefix,
    pub queue: QueueClient,
    pub sim: KubeSim,
}

/// A simulator with no delays and the default pod behaviour (pods become Ready).
pub fn sim() -> KubeSimBuilder {
    KubeSim::builder().delays(Delays::zero())
}

impl Harness {
    pub async fn new(sim: KubeSimBuilder) -> Harness {
        let db = TestDb::new().await.expect("test database");
        let prefix = RedisPrefix::new();
        let queue = QueueClient::connect(&prefix.url, &prefix.name)
            .await
            .expect("redis");
        let sim = sim.start().await.expect("simulator");
        Harness {
            store: db.store(),
            db,
            prefix,
            queue,
            sim,
        }
    }

    /// The worker's flags: short timings for tests, replaced or extended by `extra` (flag/value
    /// pairs).
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "slipway-worker-launch",
            "--database-url",
            self.db.url(),
            "--redis-url",
            &self.prefix.url,
            "--queue-prefix",
            &self.prefix.name,
            "--listen",
            "127.0.0.1:0",
            "--concurrency",
            "8",
            "--rescue-time-secs",
            "3",
            "--grace-period-secs",
            "2",
            "--backoff-base-ms",
            "200",
            "--backoff-factor",
            "2",
            "--backoff-cap-ms",
            "1000",
            "--preview-domain",
            "192.168.49.2.nip.io",
            "--deadline-secs",
            "60",
            "--trouble-grace-secs",
            "1",
            "--poll-ms",
            "250",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        // `extra` comes in flag/value pairs; a flag given there replaces the default.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| a == pair[0]) {
                args.drain(i..i + 2);
            }
            args.extend(pair.iter().map(|s| (*s).to_owned()));
        }
        args
    }

    pub fn config(&self, extra: &[&str]) -> Config {
        Config::try_parse_from(self.args(extra)).expect("worker flags")
    }

    /// Start a worker in-process against the simulator (on its own thread and runtime, like
    /// a process of its own).
    pub async fn worker(&self, extra: &[&str]) -> WorkerThread {
        let config = self.config(extra);
        let kube_config = self.sim.config().expect("sim config");
        WorkerThread::start(move |on_listen, stop| async move {
            let client = kube::Client::try_from(kube_config).map_err(|e| e.to_string())?;
            slipway_worker_launch::run_with_client(config, client, on_listen, stop)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .expect("worker started")
    }

    /// Record and queue a launch whose payload is the validated form of `body` (as the API
    /// records it).
    pub async fn launch(&self, body: Value) -> JobId {
        self.launch_valid(valid(body), None).await
    }

    /// Record and queue a launch with this payload as it is (no validation).
    pub async fn launch_valid(&self, payload: Value, commit: Option<&str>) -> JobId {
        self.launch_with_budget(payload, commit, 3).await
    }

    /// Like [`Harness::launch_valid`] with `attempts` attempts in all.
    pub async fn launch_with_budget(
        &self,
        payload: Value,
        commit: Option<&str>,
        attempts: u32,
    ) -> JobId {
        let mut job = NewJob::new(JobKind::Launch, payload.clone());
        job.preview = payload["preview"].as_str().map(str::to_owned);
        job.commit_sha = commit.map(str::to_owned);
        job.max_attempts = attempts as i32;
        let id = self.store.insert_job(job).await.unwrap().job.id;
        self.queue
            .push(JobKind::Launch, id, attempts)
            .await
            .unwrap();
        self.store.mark_enqueued(id).await.unwrap();
        id
    }

    pub async fn job(&self, id: JobId) -> JobRecord {
        self.store.get_job(id).await.unwrap().expect("job row")
    }

    /// Wait until the job is in a terminal state.
    pub async fn finished(&self, id: JobId) -> JobRecord {
        wait_finished(&self.store, id, LONG).await
    }

    pub async fn preview(&self, key: &str) -> PreviewRecord {
        self.store
            .get_preview(key)
            .await
            .unwrap()
            .expect("preview row")
    }

    pub async fn logs(&self, id: JobId) -> Vec<StoredLogLine> {
        self.store.read_logs(id, None, 10_000).await.unwrap()
    }

    pub async fn log_text(&self, id: JobId) -> String {
        self.logs(id)
            .await
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Names of the simulator's objects of `plural` in `ns` (all namespaces for `None`).
    pub fn names(&self, plural: &str, ns: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = self
            .sim
            .objects(plural, ns)
            .iter()
            .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
            .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_owned())
            .collect();
        names.sort();
        names
    }

    /// Preview namespaces in the simulator.
    pub fn preview_namespaces(&self) -> Vec<String> {
        self.names("namespaces", None)
            .into_iter()
            .filter(|n| n.starts_with("slipway-pv-"))
            .collect()
    }
}

/// The payload the API records for a launch request body.
pub fn valid(body: Value) -> Value {
    let req: LaunchRequest = serde_json::from_value(body).expect("launch request");
    let valid = req.validate(&Limits::default()).expect("valid launch");
    serde_json::to_value(&valid).unwrap()
}

/// A launch body for `key` running `image`.
pub fn body(key: &str, image: &str) -> Value {
    json!({"preview": key, "image": image, "port": 8080, "health_path": "/healthz",
           "env": {"MODE": "preview"}})
}
