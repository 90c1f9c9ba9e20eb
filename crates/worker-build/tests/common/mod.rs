//! The harness of the build worker's end-to-end tests: a fresh Postgres database, a fresh Redis
//! key prefix, the Kubernetes simulator, and the worker's `run_with_client` in-process (or the
//! binary as a child process).

#![allow(dead_code)]

use clap::Parser;
use kube_sim::{BuildFault, Delays, KubeSim, KubeSimBuilder, KubeVersion, PodInfo, PodScript};
use serde_json::{Value, json};
use slipway_core::payload::BuildRequest;
use slipway_core::validate::{Limits, Validate};
use slipway_core::{JobId, JobKind, JobState};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{JobRecord, NewJob, Store, StoredLogLine};
use slipway_shared::testing::{RedisPrefix, TestDb, eventually, redis_url};
use slipway_worker_build::Config;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "slipway-builds";
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What each pod of a test does.
pub type Script = Box<dyn Fn(&PodInfo) -> PodScript + Send + Sync + 'static>;

pub struct Harness {
    pub db: TestDb,
    pub prefix: RedisPrefix,
    pub store: Store,
    pub queue: QueueClient,
    pub sim: KubeSim,
}

pub struct Worker {
    /// Where the worker serves its probes and metrics.
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), slipway_worker_build::Error>>,
}

impl Worker {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// A successful build's termination message: buildctl metadata with a fixed digest.
pub fn digest_message() -> String {
    json!({"containerimage.digest": format!("sha256:{}", "ab".repeat(32))}).to_string()
}

/// Whether the lines are numbered 0, 1, 2, ... in order.
pub fn numbered_from_zero(logs: &[slipway_shared::store::StoredLogLine]) -> bool {
    logs.iter().enumerate().all(|(i, l)| l.seq == i as i64)
}

/// Lines the simulator's default BuildKit run prints (with a registry cache), and its last.
pub const BUILD_LINES: usize = 25;
pub const LAST_BUILD_LINE: &str = "#8 DONE 0.6s";

impl Harness {
    pub async fn new(script: Option<Script>) -> Harness {
        Harness::with_sim(script, |b| b).await
    }

    /// A harness whose simulator plays Kubernetes `version`.
    pub async fn on_version(script: Option<Script>, version: KubeVersion) -> Harness {
        Harness::with_sim(script, |b| b.kube_version(version)).await
    }

    /// A harness whose simulator `configure` adjusts (e.g. its log rotation size).
    pub async fn with_sim(
        script: Option<Script>,
        configure: impl FnOnce(KubeSimBuilder) -> KubeSimBuilder,
    ) -> Harness {
        let mut builder = KubeSim::builder().delays(Delays::zero());
        if let Some(script) = script {
            builder = builder.script(script);
        }
        let sim = configure(builder).start().await.expect("simulator");
        // No namespace: the worker creates its build namespace when it is missing.
        let db = TestDb::new().await.unwrap();
        let store = db.store();
        let prefix = RedisPrefix::new();
        let queue = QueueClient::connect(&redis_url(), &prefix.name)
            .await
            .unwrap();
        Harness {
            db,
            prefix,
            store,
            queue,
            sim,
        }
    }

    /// The worker's configuration: fast retries, short rescue time, plus `extra` flags.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "slipway-worker-build",
            "--database-url",
            self.db.url(),
            "--redis-url",
            &redis_url(),
            "--queue-prefix",
            &self.prefix.name,
            "--listen",
            "127.0.0.1:0",
            "--rescue-time-secs",
            "1",
            "--grace-period-secs",
            "1",
            "--backoff-base-ms",
            "10",
            "--backoff-factor",
            "2",
            "--backoff-cap-ms",
            "50",
            "--log-batch-ms",
            "50",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub fn config(&self, extra: &[&str]) -> Config {
        Config::try_parse_from(self.args(extra)).unwrap()
    }

    /// Run the worker in-process against the simulator.
    pub async fn start_worker(&self, extra: &[&str]) -> Worker {
        let config = self.config(extra);
        let client = self.sim.client().unwrap();
        let connected = slipway_shared::worker::connect(&config.common)
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = oneshot::channel();
        let task = tokio::spawn(slipway_worker_build::serve(
            config,
            connected,
            client,
            move |addr| {
                let _ = addr_tx.send(addr);
            },
            async {
                let _ = stopped.await;
            },
        ));
        Worker {
            addr: addr_rx.await.expect("the worker's probe address"),
            stop: Some(stop),
            task,
        }
    }

    /// Record and enqueue a build of `org/app` for `preview`, with `extra` payload fields.
    pub async fn enqueue_build(&self, preview: &str, extra: Value) -> JobId {
        self.enqueue_build_of("https://github.com/org/app", preview, extra)
            .await
    }

    /// Record and enqueue a build of `repository` for `preview`, with `extra` payload fields.
    pub async fn enqueue_build_of(&self, repository: &str, preview: &str, extra: Value) -> JobId {
        let req: BuildRequest = serde_json::from_value(json!({
            "repository": repository,
            "commit": COMMIT,
            "image": "org/app",
            "preview": preview,
        }))
        .unwrap();
        let valid = req.validate(&Limits::default()).unwrap();
        let mut payload = serde_json::to_value(&valid).unwrap();
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                p.insert(k.clone(), v.clone());
            }
        }
        self.enqueue_payload(payload, preview, COMMIT).await
    }

    /// Record and enqueue a build job with this payload.
    pub async fn enqueue_payload(&self, payload: Value, preview: &str, commit: &str) -> JobId {
        let mut new = NewJob::new(JobKind::Build, payload);
        new.preview = Some(preview.to_owned());
        new.commit_sha = Some(commit.to_owned());
        let job = self.store.insert_job(new).await.unwrap().job;
        self.queue.push(JobKind::Build, job.id, 3).await.unwrap();
        self.store.mark_enqueued(job.id).await.unwrap();
        job.id
    }

    pub async fn wait_state(&self, id: JobId, state: JobState, secs: u64) -> JobRecord {
        eventually(
            Duration::from_secs(secs),
            &format!("job {id} to be {state}"),
            || async {
                self.store
                    .get_job(id)
                    .await
                    .unwrap()
                    .filter(|j| j.state == state)
            },
        )
        .await
    }

    pub async fn logs(&self, id: JobId) -> Vec<StoredLogLine> {
        self.store.read_logs(id, None, 100_000).await.unwrap()
    }

    /// Every Job create request the simulator answered.
    pub fn job_creates(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.resource == "jobs" && r.verb == "create" && r.status < 300)
            .count()
    }
}

/// The simulator's default for a BuildKit pod: it runs the pod's command as the BuildKit image
/// would (`kube_sim::buildkit`), so the digest reaches the termination message only the way
/// the real image lets it.
pub fn default_build(pod: &PodInfo) -> PodScript {
    PodScript::default_for(pod, &Delays::zero())
}

/// The BuildKit contract with `fault`.
pub fn faulty_build(pod: &PodInfo, fault: BuildFault) -> PodScript {
    kube_sim::buildkit::run(pod, &Delays::zero(), fault)
}

/// The attempt number of a build pod, from its Job's name (`...-a<attempt>`).
pub fn job_attempt(pod: &PodInfo) -> u32 {
    pod.job_name
        .as_deref()
        .and_then(|n| n.rsplit_once("-a"))
        .and_then(|(_, a)| a.parse().ok())
        .unwrap_or(0)
}

/// Create the build namespace (the worker creates it too, when it starts; creating a Secret in
/// it first needs it).
pub async fn namespace(h: &Harness) {
    let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(h.sim.client().unwrap());
    let _ = ns
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await;
}

/// Create a Secret `name` holding `key: value` in the build namespace.
pub async fn secret(h: &Harness, name: &str, key: &str, value: &str) {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(h.sim.client().unwrap(), NS);
    secrets
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": name}, "stringData": {key: value}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Wait until no Job is left in `jobs`' namespace.
pub async fn eventually_empty(jobs: &kube::Api<k8s_openapi::api::batch::v1::Job>) {
    eventually(
        Duration::from_secs(20),
        "every Job to be deleted",
        || async {
            jobs.list(&kube::api::ListParams::default())
                .await
                .ok()
                .filter(|l| l.items.is_empty())
        },
    )
    .await;
}
