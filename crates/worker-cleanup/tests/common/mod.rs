//! The cleanup worker's test harness: a fresh Postgres database, a fresh Redis prefix, a
//! Kubernetes simulator, and workers (cleanup, and launch where a test needs a real preview)
//! run in-process through their `run_with_client`, each on its own thread and runtime like a
//! process of its own (`WorkerThread`). Sweeps can also be run one at a time through [`Harness::sweeper`].

#![allow(dead_code)]

use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube_sim::{Delays, KubeSim};
use serde_json::{Value, json};
use slipway_core::validate::Validate;
use slipway_core::{JobId, JobKind, LaunchRequest, Limits};
use slipway_shared::enqueue::Submitter;
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{JobRecord, NewJob, Store};
use slipway_shared::testing::{RedisPrefix, TestDb, WorkerThread, wait_finished};
use slipway_worker_cleanup::{Config, Sweeper};
use std::time::Duration;

/// Generous: the machine is small and shared.
pub const LONG: Duration = Duration::from_secs(90);
pub const BUILD_NAMESPACE: &str = "slipway-builds";

/// The trace context of the jobs [`Harness::cleanup_lost_by_redis`] records.
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

pub struct Harness {
    pub db: TestDb,
    pub store: Store,
    pub prefix: RedisPrefix,
    pub queue: QueueClient,
    pub sim: KubeSim,
}

/// Flags shared by every worker in these tests: this harness's database and Redis, probes on
/// port 0, short retry timings.
fn common_args(h: &Harness, bin: &str) -> Vec<String> {
    [
        bin,
        "--database-url",
        h.db.url(),
        "--redis-url",
        &h.prefix.url,
        "--queue-prefix",
        &h.prefix.name,
        "--listen",
        "127.0.0.1:0",
        "--concurrency",
        "8",
        "--rescue-time-secs",
        "3",
        "--grace-period-secs",
        "2",
        "--backoff-base-ms",
        "100",
        "--backoff-factor",
        "2",
        "--backoff-cap-ms",
        "500",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// `defaults` then `extra` (flag/value pairs); a flag given in `extra` replaces the default.
fn merge(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    for pair in extra.chunks(2) {
        if let Some(i) = args.iter().position(|a| a == pair[0]) {
            args.drain(i..i + 2);
        }
        args.extend(pair.iter().map(|s| (*s).to_owned()));
    }
    args
}

impl Harness {
    pub async fn new() -> Harness {
        let db = TestDb::new().await.expect("test database");
        let prefix = RedisPrefix::new();
        let queue = QueueClient::connect(&prefix.url, &prefix.name)
            .await
            .expect("redis");
        let sim = KubeSim::builder()
            .delays(Delays::zero())
            .namespace(BUILD_NAMESPACE)
            .start()
            .await
            .expect("simulator");
        Harness {
            store: db.store(),
            db,
            prefix,
            queue,
            sim,
        }
    }

    /// The cleanup worker's configuration: sweeps off unless `extra` turns them on.
    pub fn cleanup_config(&self, extra: &[&str]) -> Config {
        Config::try_parse_from(self.cleanup_args(extra)).expect("cleanup flags")
    }

    /// The cleanup worker's flags (the first is the program name), for the binary too.
    pub fn cleanup_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = common_args(self, "slipway-worker-cleanup");
        args.extend(
            [
                "--build-namespace",
                BUILD_NAMESPACE,
                "--namespace-delete-deadline-secs",
                "30",
                "--sweep-interval-secs",
                "0",
            ]
            .map(str::to_owned),
        );
        merge(args, extra)
    }

    pub async fn cleanup_worker(&self, extra: &[&str]) -> WorkerThread {
        let config = self.cleanup_config(extra);
        let kube = self.sim.config().unwrap();
        WorkerThread::start(move |on_listen, stop| async move {
            let client = kube::Client::try_from(kube).map_err(|e| e.to_string())?;
            slipway_worker_cleanup::run_with_client(config, client, on_listen, stop)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .expect("cleanup worker started")
    }

    pub async fn launch_worker(&self) -> WorkerThread {
        let mut args = common_args(self, "slipway-worker-launch");
        args.extend(
            [
                "--preview-domain",
                "preview.test",
                "--deadline-secs",
                "60",
                "--trouble-grace-secs",
                "1",
                "--poll-ms",
                "100",
            ]
            .map(str::to_owned),
        );
        let config = slipway_worker_launch::Config::try_parse_from(args).expect("launch flags");
        let kube = self.sim.config().unwrap();
        WorkerThread::start(move |on_listen, stop| async move {
            let client = kube::Client::try_from(kube).map_err(|e| e.to_string())?;
            slipway_worker_launch::run_with_client(config, client, on_listen, stop)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .expect("launch worker started")
    }

    /// A sweeper to run one sweep at a time (`sweep_once`), with these cleanup flags.
    pub fn sweeper(&self, extra: &[&str]) -> Sweeper {
        let settings = self.cleanup_config(extra).cleanup.settings().unwrap();
        Sweeper::new(
            self.sim.client().unwrap(),
            self.submitter(),
            settings,
            "test-sweeper".into(),
        )
    }

    pub fn submitter(&self) -> Submitter {
        Submitter::new(self.store.clone(), self.queue.clone())
    }

    /// Record and queue a job as the API does.
    pub async fn enqueue(&self, kind: JobKind, preview: &str, payload: Value) -> JobId {
        let mut job = NewJob::new(kind, payload);
        job.preview = Some(preview.to_owned());
        self.submitter()
            .submit(job, &[])
            .await
            .expect("job recorded")
            .job
            .id
    }

    /// Launch `image` as preview `key` (the launch worker must be running).
    pub async fn launch(&self, key: &str) -> JobId {
        let req: LaunchRequest = serde_json::from_value(
            json!({"preview": key, "image": "registry.test/app:1", "port": 8080}),
        )
        .unwrap();
        let valid = req.validate(&Limits::default()).unwrap();
        self.enqueue(JobKind::Launch, key, serde_json::to_value(&valid).unwrap())
            .await
    }

    pub async fn cleanup(&self, key: &str) -> JobId {
        self.enqueue(JobKind::Cleanup, key, json!({ "preview": key }))
            .await
    }

    /// A cleanup recorded (with [`TRACEPARENT`] as its request's trace) and marked enqueued whose Redis entry is gone (as after a Redis
    /// restart without data): nothing but queue repair will run it.
    pub async fn cleanup_lost_by_redis(&self, key: &str) -> JobId {
        let mut job = NewJob::new(JobKind::Cleanup, json!({ "preview": key }));
        job.preview = Some(key.to_owned());
        job.trace_context = Some(TRACEPARENT.to_owned());
        let id = self.store.insert_job(job).await.unwrap().job.id;
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

    pub async fn log_text(&self, id: JobId) -> String {
        self.store
            .read_logs(id, None, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the simulator has the namespace (terminating or not).
    pub fn has_namespace(&self, name: &str) -> bool {
        self.sim.object("namespaces", "", name).is_some()
    }

    /// Create a namespace with these labels and annotations.
    pub async fn create_namespace(&self, name: &str, labels: Value, annotations: Value) {
        let api: Api<Namespace> = Api::all(self.sim.client().unwrap());
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels, "annotations": annotations}
        }))
        .unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
    }

    /// A managed preview namespace holding a ConfigMap `held` with a finalizer nobody removes:
    /// deleted, it stays Terminating, so a teardown of it waits.
    pub async fn create_held_namespace(&self, name: &str, labels: Value) {
        self.create_namespace(name, labels, json!({})).await;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.sim.client().unwrap(), name);
        let held = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]}
        }))
        .unwrap();
        cms.create(&PostParams::default(), &held).await.unwrap();
    }

    /// Make a row look untouched for `secs` (sweeps act on age).
    pub async fn age_job(&self, id: JobId, secs: i64) {
        sqlx::query("UPDATE jobs SET updated_at = now() - make_interval(secs => $2) WHERE id = $1")
            .bind(id)
            .bind(secs as f64)
            .execute(self.store.pool())
            .await
            .unwrap();
    }
}

/// The labels Slipway puts on its namespaces.
pub fn managed() -> Value {
    json!({"app.kubernetes.io/managed-by": "slipway"})
}
