//! The API figures (issue 4): build jobs enqueued over HTTP by 32 concurrent clients, each
//! request committing its row in Postgres and pushing the job to Redis before it answers; and,
//! in the same run on the same Postgres with as many clients, its ceiling (issue 15):
//! `pgbench` single-row inserts of a job row ([`super::pg_ceiling`]), so the enqueue rate reads
//! as a ratio. Also [`BenchApi`], the in-process API every section that measures it starts.

use super::{BenchEnv, Report};
use slipway_shared::config::{CommonArgs, LogFormat, SecretUrl};
use slipway_shared::testing::{RedisPrefix, TestDb};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const REQUESTS: usize = 6_400;
const TOKEN: &str = "bench-token-0123456789";

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    // Before anything is measured: without pgbench the section has no ceiling to compare with.
    let pgbench = super::pg_ceiling::check_installed().await?;
    let (latencies, elapsed) = measure(env.redis_url.clone()).await?;
    let enqueue_per_s = latencies.len() as f64 / elapsed;
    let ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let pct = |p: f64| super::percentile(&ms, p * 100.0);
    report.note(
        "api",
        "requests",
        &format!("{} builds, {CLIENTS} concurrent clients", latencies.len()),
    );
    report.figure(
        "api",
        "api_enqueue_per_s",
        "enqueue over HTTP",
        enqueue_per_s,
        "jobs/s",
    );
    report.figure(
        "api",
        "api_enqueue_p50_ms",
        "enqueue latency p50",
        pct(0.50),
        "ms",
    );
    report.figure(
        "api",
        "api_enqueue_p99_ms",
        "enqueue latency p99",
        pct(0.99),
        "ms",
    );
    let tps = super::pg_ceiling::insert_tps(CLIENTS).await?;
    report.note(
        "api",
        "ceiling",
        &format!("{pgbench}, {CLIENTS} clients, one job-row INSERT per transaction"),
    );
    report.figure(
        "api",
        "pg_insert_tps",
        "Postgres single-row inserts (pgbench)",
        tps,
        "tx/s",
    );
    report.figure(
        "api",
        "api_enqueue_vs_pg_insert",
        "enqueue rate / insert ceiling",
        enqueue_per_s / tps,
        "x",
    );
    Ok(())
}

/// The API in-process on port 0 with real Postgres (a throw-away database) and Redis (a
/// throw-away key prefix), as the `api` and `webhook` sections measure it. Both are removed when
/// it is stopped or dropped.
pub struct BenchApi {
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    // Declared last: fields drop in order, so the database and keys go after the API.
    _prefix: RedisPrefix,
    _db: TestDb,
}

impl BenchApi {
    /// Start with `api_tokens` (`name:scope+scope:token,...`) and, to accept GitHub
    /// webhooks, their secret.
    pub async fn start(
        redis_url: &str,
        api_tokens: String,
        github_webhook_secret: Option<String>,
    ) -> anyhow::Result<Self> {
        let db = TestDb::new().await?;
        let prefix = RedisPrefix::on(redis_url);
        let config = slipway_api::Config {
            common: CommonArgs {
                database_url: SecretUrl::new(db.url()),
                redis_url: SecretUrl::new(redis_url),
                queue_prefix: prefix.name.clone(),
                listen: Some("127.0.0.1:0".parse()?),
                log_format: LogFormat::Text,
            },
            api_tokens,
            github_webhook_secret,
            max_attempts: 3,
            max_cpu: "2".into(),
            max_memory: "2Gi".into(),
            max_replicas: 5,
            max_ttl_hours: 720,
            allowed_repository_hosts: vec![],
            internal_repository_hosts: vec![],
            build_secret_names: vec![],
            relay_interval_ms: 1000,
            github: slipway_api::GithubArgs::default(),
            mcp: slipway_api::McpArgs::default(),
            ui: slipway_api::UiArgs::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = slipway_api::start(config, async {
            let _ = stopped.await;
        })
        .await?;
        Ok(BenchApi {
            addr: running.addr,
            stop,
            task: running.task,
            _prefix: prefix,
            _db: db,
        })
    }

    /// Its throw-away database (for seeding it, or reading its statistics).
    pub fn db(&self) -> &TestDb {
        &self._db
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shut the API down and wait for it, then remove its database and keys.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Sorted request latencies and the wall time of the measured phase.
async fn measure(redis_url: String) -> anyhow::Result<(Vec<Duration>, f64)> {
    let api = BenchApi::start(&redis_url, format!("bench:enqueue+read:{TOKEN}"), None).await?;
    let url = api.url("/v1/builds");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;

    // Warm up connections and the database.
    for i in 0..CLIENTS {
        post(&http, &url, i).await?;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(REQUESTS / CLIENTS);
            for i in 0..REQUESTS / CLIENTS {
                let t = Instant::now();
                post(&http, &url, CLIENTS + c * REQUESTS + i).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(REQUESTS);
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    api.stop().await;
    anyhow::ensure!(!latencies.is_empty(), "no requests measured");
    Ok((latencies, elapsed))
}

async fn post(http: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<()> {
    // Distinct commits, so every request is a new job.
    let body = serde_json::json!({
        "repository": "https://github.com/org/app.git",
        "commit": format!("{n:040x}"),
        "image": "org/app",
    });
    let resp = http.post(url).bearer_auth(TOKEN).json(&body).send().await?;
    anyhow::ensure!(
        resp.status() == reqwest::StatusCode::ACCEPTED,
        "enqueue answered {}",
        resp.status()
    );
    Ok(())
}
