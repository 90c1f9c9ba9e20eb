//! The benchmark harness: sections measure, a [`Report`] collects a human table and the
//! [`Figures`] map that becomes the final JSON line. A later issue adds a section module and one
//! line in [`SECTIONS`]; keys are merged into the same object.

pub mod api;
pub mod auto;
pub mod build;
pub mod cap;
pub mod compose;
pub mod helm;
pub mod launch;
pub mod pg_ceiling;
pub mod queue;
pub mod redis_ceiling;
pub mod sim;
pub mod teardown;
pub mod ui;
pub mod webhook;

use futures_like::BoxFuture;
use slipway_core::{JobId, JobKind};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::Store;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The build namespace of the benchmarks' build workers.
pub const BUILD_NAMESPACE: &str = "slipway-builds";

/// Tiny local alias so sections can be listed without pulling in `futures`.
mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// Settings every section may use.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    pub redis_url: String,
    /// Redis host and port for `redis-benchmark`.
    pub redis_host: String,
    pub redis_port: u16,
}

/// The machine-readable figures, keyed by name (the last line of the output).
pub type Figures = BTreeMap<String, serde_json::Value>;

/// Rows of the human table and the figures, filled by the sections.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<(String, String, String)>,
    pub figures: Figures,
}

impl Report {
    /// Record a figure under `key` and a table row `section | what | value unit`.
    pub fn figure(&mut self, section: &str, key: &str, what: &str, value: f64, unit: &str) {
        let rounded = if value.abs() >= 100.0 {
            value.round()
        } else {
            (value * 1000.0).round() / 1000.0
        };
        self.rows
            .push((section.into(), what.into(), format!("{rounded} {unit}")));
        self.figures.insert(key.into(), serde_json::json!(rounded));
    }

    /// A table row with no figure (context such as sample sizes).
    pub fn note(&mut self, section: &str, what: &str, value: &str) {
        self.rows.push((section.into(), what.into(), value.into()));
    }

    /// The human table.
    pub fn table(&self) -> String {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max(7);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.1.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = format!("{:w0$}  {:w1$}  value\n", "section", "metric");
        out.push_str(&format!("{}  {}  -----\n", "-".repeat(w0), "-".repeat(w1)));
        for (s, m, v) in &self.rows {
            out.push_str(&format!("{s:w0$}  {m:w1$}  {v}\n"));
        }
        out
    }

    /// The final JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(&self.figures).unwrap_or_else(|_| "{}".into())
    }
}

/// The `p`-th percentile (0-100, nearest rank) of ascending `sorted`; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A benchmark section.
pub type Section = for<'a> fn(&'a BenchEnv, &'a mut Report) -> BoxFuture<'a, anyhow::Result<()>>;

/// Every section, in order. Later issues append theirs here.
pub const SECTIONS: &[(&str, Section)] = &[
    ("queue", |env, report| Box::pin(queue::run(env, report))),
    ("redis", |env, report| {
        Box::pin(redis_ceiling::run(env, report))
    }),
    ("api", |env, report| Box::pin(api::run(env, report))),
    ("sim", |env, report| Box::pin(sim::run(env, report))),
    ("launch", |env, report| Box::pin(launch::run(env, report))),
    ("build", |env, report| Box::pin(build::run(env, report))),
    ("teardown", |env, report| {
        Box::pin(teardown::run(env, report))
    }),
    ("webhook", |env, report| Box::pin(webhook::run(env, report))),
    ("cap", |env, report| Box::pin(cap::run(env, report))),
    ("ui", |env, report| Box::pin(ui::run(env, report))),
    ("auto", |env, report| Box::pin(auto::run(env, report))),
    ("compose", |env, report| Box::pin(compose::run(env, report))),
    ("helm", |env, report| Box::pin(helm::run(env, report))),
];

/// Push build job `id` and wait until `builds` build Jobs of it exist (its own, or, for a compose
/// pipeline's first job, its services'): the submit latency. A build Job the worker already
/// deleted counts once its job has ended (the simulator builds at once).
pub async fn submit_build(
    store: &Store,
    queue: &QueueClient,
    sim: &kube_sim::KubeSim,
    id: JobId,
    builds: usize,
) -> anyhow::Result<Duration> {
    let pushed = Instant::now();
    queue.push(JobKind::Build, id, 1).await?;
    let deadline = pushed + Duration::from_secs(60);
    loop {
        let ids: Vec<JobId> = match store.get_job(id).await?.and_then(|j| j.result) {
            Some(r) if r.get("builds").is_some() => r["builds"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.as_str()?.parse().ok())
                .collect(),
            _ => vec![id],
        };
        // A build Job seen, or its build already over (the simulator builds at once and the
        // worker deletes the Job once its log is stored).
        let mut created = 0;
        for j in &ids {
            let name = slipway_core::naming::build_job_name(*j, 1);
            let over = store
                .get_job(*j)
                .await?
                .is_some_and(|r| r.attempts > 0 && r.state.is_terminal());
            if over || sim.object("jobs", BUILD_NAMESPACE, &name).is_some() {
                created += 1;
            }
        }
        if created == builds {
            return Ok(pushed.elapsed());
        }
        if let Some(job) = store.get_job(id).await?.filter(|j| j.error.is_some()) {
            anyhow::bail!("pipeline {id} failed: {:?}", job.error);
        }
        anyhow::ensure!(Instant::now() < deadline, "pipeline {id}: no build Jobs");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The median, in milliseconds.
pub fn p50_ms(mut d: Vec<Duration>) -> f64 {
    d.sort();
    let ms: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    percentile(&ms, 50.0)
}

pub use slipway_shared::testing::WorkerThread;

/// The build worker against `sim`, for the database at `database_url` and the queue prefix
/// `prefix`, with the build namespace `slipway-builds`, no per-repository cap and `extra` flags.
pub async fn start_build_worker(
    env: &BenchEnv,
    database_url: &str,
    prefix: &str,
    sim: &kube_sim::KubeSim,
    extra: &[&str],
) -> anyhow::Result<WorkerThread> {
    use clap::Parser;
    let mut args = vec![
        "slipway-worker-build",
        "--database-url",
        database_url,
        "--redis-url",
        &env.redis_url,
        "--queue-prefix",
        prefix,
        "--listen",
        "127.0.0.1:0",
        "--max-per-repository",
        "0",
        "--build-namespace",
        BUILD_NAMESPACE,
    ];
    args.extend_from_slice(extra);
    let config = slipway_worker_build::Config::try_parse_from(args)?;
    start_worker(
        sim.config()?,
        move |client, on_listen, shutdown| async move {
            Ok(slipway_worker_build::run_with_client(config, client, on_listen, shutdown).await?)
        },
    )
    .await
}

/// Start a worker binary's `run_with_client(config, client, on_listen, shutdown)` on its own
/// thread (see [`WorkerThread`]) with a client for the cluster `kube_config` describes.
pub async fn start_worker<F, Fut>(kube_config: kube::Config, run: F) -> anyhow::Result<WorkerThread>
where
    F: FnOnce(
            kube::Client,
            slipway_shared::testing::OnListen,
            slipway_shared::testing::Shutdown,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    WorkerThread::start(move |on_listen, shutdown| async move {
        let client = kube::Client::try_from(kube_config)?;
        run(client, on_listen, shutdown).await
    })
    .await
    .map_err(anyhow::Error::msg)
}
