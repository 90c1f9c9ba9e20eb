//! The whole of Slipway in one test process: the API (with the GitHub webhook and status feed),
//! the build, launch and cleanup workers, each on its own thread and runtime as if a process,
//! against real Postgres and Redis, the Kubernetes simulator and a fake GitHub.
//!
//! [`Stack::start`] brings everything up on fresh resources (a new database, a new Redis key
//! prefix, a new simulator and fake GitHub); dropping the stack stops it. [`Stack::start_with`]
//! takes [`Options`]: more API tokens, the simulator's timing and metrics-server, the sweeps'
//! interval.

pub mod prometheus;

use anyhow::Context;
use clap::Parser;
use fake_github::FakeGithub;
use kube_sim::metrics::MetricsServer;
use kube_sim::{Delays, KubeSim};
use slipway_harness::bench::{WorkerThread, start_worker};
use slipway_shared::testing::{RedisPrefix, TestDb};
use std::net::SocketAddr;

/// The API token the tests use (every scope).
pub const TOKEN: &str = "e2e-operator-token-0123456789";
/// The GitHub webhook secret.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";
/// The token Slipway presents to (fake) GitHub.
pub const GITHUB_TOKEN: &str = "ghs_e2e_token_0123456789";
/// Domain of preview hosts (public-looking, so the PR comment shows the URL).
pub const PREVIEW_DOMAIN: &str = "preview.example.com";
/// Where log links on the PR point.
pub const PUBLIC_URL: &str = "https://slipway.example.com";
pub const BUILD_NAMESPACE: &str = "slipway-builds";

/// What may differ between stacks; [`Options::default`] is what [`Stack::start`] runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// API tokens besides [`TOKEN`] (`name:scopes:token` entries of `SLIPWAY_API_TOKENS`).
    pub extra_tokens: Vec<String>,
    /// The simulator's delays (default: none at all).
    pub delays: Delays,
    /// The simulator's metrics-server (default: absent).
    pub metrics_server: MetricsServer,
    /// Seconds between the cleanup worker's sweeps (its default, 60, when `None`).
    pub sweep_interval_secs: Option<f64>,
    /// A git host the stack builds from (`kube_sim::git::GitServer`): the simulated nodes trust
    /// its CA and the API lets repositories live on `localhost`.
    pub git_ca: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_tokens: Vec::new(),
            delays: Delays::zero(),
            metrics_server: MetricsServer::Absent,
            sweep_interval_secs: None,
            git_ca: None,
        }
    }
}

/// Everything, running.
pub struct Stack {
    pub db: TestDb,
    pub prefix: RedisPrefix,
    pub sim: KubeSim,
    pub github: FakeGithub,
    pub api: SocketAddr,
    pub http: reqwest::Client,
    api_stop: Option<tokio::sync::oneshot::Sender<()>>,
    api_task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    workers: Vec<WorkerThread>,
}

/// The flags every binary takes, for this stack's database and Redis.
fn common(bin: &str, db: &TestDb, prefix: &RedisPrefix) -> Vec<String> {
    [
        bin,
        "--database-url",
        db.url(),
        "--redis-url",
        &prefix.url,
        "--queue-prefix",
        &prefix.name,
        "--listen",
        "127.0.0.1:0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Flags of the workers: quick retries, so a test does not wait out production backoff.
const WORKER_FLAGS: &[&str] = &[
    "--rescue-time-secs",
    "3",
    "--grace-period-secs",
    "2",
    "--backoff-base-ms",
    "100",
    "--backoff-cap-ms",
    "500",
];

impl Stack {
    pub async fn start() -> anyhow::Result<Stack> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> anyhow::Result<Stack> {
        let db = TestDb::new().await?;
        let prefix = RedisPrefix::new();
        let mut sim = KubeSim::builder()
            .delays(options.delays)
            .metrics_server(options.metrics_server)
            .namespace(BUILD_NAMESPACE);
        if let Some(ca) = &options.git_ca {
            sim = sim.trusted_ca(ca.clone());
        }
        let sim = sim.start().await?;
        let tokens = std::iter::once(format!("e2e:enqueue+read+admin:{TOKEN}"))
            .chain(options.extra_tokens.iter().cloned())
            .collect::<Vec<_>>()
            .join(",");
        let github = FakeGithub::start().await?;
        github.add_token(GITHUB_TOKEN);

        let api_config = slipway_api::Config::try_parse_from(with(
            common("slipway-api", &db, &prefix),
            &[
                "--api-tokens",
                &tokens,
                "--github-webhook-secret",
                WEBHOOK_SECRET,
                "--github-api-url",
                &github.url(),
                "--github-token",
                GITHUB_TOKEN,
                "--public-url",
                PUBLIC_URL,
                "--github-status-poll-ms",
                "100",
                "--relay-interval-ms",
                "100",
                "--internal-repository-hosts",
                if options.git_ca.is_some() {
                    "localhost"
                } else {
                    ""
                },
            ],
        ))?;
        let (api_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = slipway_api::start(api_config, async {
            let _ = stopped.await;
        })
        .await?;

        let mut workers = Vec::new();
        let build = slipway_worker_build::Config::try_parse_from(with(
            with(common("slipway-worker-build", &db, &prefix), WORKER_FLAGS),
            &["--build-namespace", BUILD_NAMESPACE],
        ))?;
        workers.push(
            start_worker(sim.config()?, move |client, on_listen, stop| async move {
                Ok(slipway_worker_build::run_with_client(build, client, on_listen, stop).await?)
            })
            .await
            .context("build worker")?,
        );
        // Helm previews render with the pinned Helm the tests find (`make tools`).
        let helm = slipway_shared::testing::helm()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "helm".into());
        let launch = slipway_worker_launch::Config::try_parse_from(with(
            with(common("slipway-worker-launch", &db, &prefix), WORKER_FLAGS),
            &[
                "--preview-domain",
                PREVIEW_DOMAIN,
                "--poll-ms",
                "100",
                "--helm-binary",
                &helm,
            ],
        ))?;
        workers.push(
            start_worker(sim.config()?, move |client, on_listen, stop| async move {
                Ok(slipway_worker_launch::run_with_client(launch, client, on_listen, stop).await?)
            })
            .await
            .context("launch worker")?,
        );
        let sweep = options.sweep_interval_secs.map(|s| s.to_string());
        let mut cleanup_flags = vec!["--build-namespace", BUILD_NAMESPACE];
        if let Some(s) = &sweep {
            cleanup_flags.extend(["--sweep-interval-secs", s.as_str()]);
        }
        let cleanup = slipway_worker_cleanup::Config::try_parse_from(with(
            with(common("slipway-worker-cleanup", &db, &prefix), WORKER_FLAGS),
            &cleanup_flags,
        ))?;
        workers.push(
            start_worker(sim.config()?, move |client, on_listen, stop| async move {
                Ok(
                    slipway_worker_cleanup::run_with_client(cleanup, client, on_listen, stop)
                        .await?,
                )
            })
            .await
            .context("cleanup worker")?,
        );

        Ok(Stack {
            db,
            prefix,
            sim,
            github,
            api: running.addr,
            http: reqwest::Client::new(),
            api_stop: Some(api_stop),
            api_task: Some(running.task),
            workers,
        })
    }

    /// Where each binary serves `/metrics`, by binary name: the API, then the build, launch and
    /// cleanup workers.
    pub fn metrics_targets(&self) -> Vec<(&'static str, SocketAddr)> {
        let names = [
            "slipway-worker-build",
            "slipway-worker-launch",
            "slipway-worker-cleanup",
        ];
        std::iter::once(("slipway-api", self.api))
            .chain(names.into_iter().zip(self.workers.iter().map(|w| w.addr)))
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// `GET path` on the API with the test token: its JSON, or `Null` unless it succeeded.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the API answers");
        if !resp.status().is_success() {
            return serde_json::Value::Null;
        }
        resp.json().await.expect("a JSON body")
    }

    /// Stop the workers and the API, and say if any of them failed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for w in self.workers.drain(..) {
            w.stop().await.map_err(anyhow::Error::msg)?;
        }
        if let Some(tx) = self.api_stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.api_task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(tx) = self.api_stop.take() {
            let _ = tx.send(());
        }
    }
}
