//! `slipway-api`: the thin HTTP API in front of Slipway's job store and queues.
//!
//! It validates and records requests (Postgres first: a committed job is never lost), pushes
//! them onto the Redis queues, and serves inspection (jobs, attempts, logs with live tails,
//! previews, queues) and operator control (retry, cancel, pause, resume). It makes no
//! Kubernetes calls. A relay task re-pushes jobs whose push failed, so a Redis outage delays
//! jobs but loses none. With GitHub credentials, the status feed (`status_feed`) shows each
//! pull request's preview state on the PR (one replica at a time).
//!
//! `main.rs` parses [`Config`] and calls [`run`]; tests call [`run`] in-process with their own
//! shutdown future, or build the router with [`router`].

pub mod auth;
pub mod error;
pub mod extract;
mod http_metrics;
pub mod mcp;
pub mod openapi;
pub mod ops;
mod queue_metrics;
pub mod read;
mod relay;
mod routes;
mod schema;
mod state;
mod status_feed;
mod tail;
pub mod ui;
pub mod views;

pub use state::AppState;

use anyhow::Context;
use clap::Parser;
use slipway_core::auth::TokenSet;
use slipway_core::validate::Limits;
use slipway_shared::config::CommonArgs;
use slipway_shared::health::{PostgresCheck, ReadinessCheck, RedisCheck};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (bytes); larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Configuration of `slipway-api` (flags and `SLIPWAY_*` environment variables).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "slipway-api",
    version,
    about = "Slipway's enqueue and inspection API"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Bearer tokens: comma-separated `name:scope+scope:token`; the token may be given as
    /// `sha256:<hex>`. Scopes: enqueue, read, admin.
    #[arg(
        long,
        env = "SLIPWAY_API_TOKENS",
        hide_env_values = true,
        default_value = ""
    )]
    pub api_tokens: String,
    /// Secret of the GitHub webhook (`X-Hub-Signature-256`); unset turns the webhook off.
    #[arg(long, env = "SLIPWAY_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,
    #[command(flatten)]
    pub github: GithubArgs,
    /// Attempts a job gets in all (the first run plus retries).
    #[arg(long, env = "SLIPWAY_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: u32,
    /// Most CPU a launch may request per container, as a Kubernetes quantity.
    #[arg(long, env = "SLIPWAY_MAX_CPU", default_value = "2")]
    pub max_cpu: String,
    /// Most memory a launch may request per container, as a Kubernetes quantity.
    #[arg(long, env = "SLIPWAY_MAX_MEMORY", default_value = "2Gi")]
    pub max_memory: String,
    /// Most replicas a launch may ask for.
    #[arg(long, env = "SLIPWAY_MAX_REPLICAS", default_value_t = 5)]
    pub max_replicas: u32,
    /// Longest time-to-live a preview may ask for, in hours.
    #[arg(long, env = "SLIPWAY_MAX_TTL_HOURS", default_value_t = 720)]
    pub max_ttl_hours: u32,
    /// Hosts repositories may live on (comma-separated); empty allows any.
    #[arg(
        long,
        env = "SLIPWAY_ALLOWED_REPOSITORY_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_repository_hosts: Vec<String>,
    /// Internal hosts repositories may live on (comma-separated): cluster Services or private
    /// addresses, refused otherwise. Unlike the allow list, it does not restrict public hosts.
    #[arg(
        long,
        env = "SLIPWAY_INTERNAL_REPOSITORY_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub internal_repository_hosts: Vec<String>,
    /// The Secrets builds may name in `secrets.git` / `secrets.registry` (comma-separated);
    /// empty allows any. The chart sets it from the same list as the build worker's RBAC.
    #[arg(
        long,
        env = "SLIPWAY_BUILD_SECRET_NAMES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub build_secret_names: Vec<String>,
    /// How often the relay looks for jobs whose push to Redis failed.
    #[arg(long, env = "SLIPWAY_RELAY_INTERVAL_MS", default_value_t = 1000)]
    pub relay_interval_ms: u64,
    #[command(flatten)]
    pub mcp: McpArgs,
    #[command(flatten)]
    pub ui: UiArgs,
}

/// The web dashboard (`/ui`, docs/dashboard.md).
#[derive(Debug, Clone, clap::Args)]
pub struct UiArgs {
    /// When the session cookie carries `Secure`: `auto` (when the request came over HTTPS or
    /// a proxy says so with `X-Forwarded-Proto: https`), `true` or `false`.
    #[arg(
        long = "ui-secure-cookie",
        env = "SLIPWAY_UI_SECURE_COOKIE",
        value_enum,
        default_value = "auto"
    )]
    pub ui_secure_cookie: ui::SecureCookie,
    /// How long a dashboard session lasts after sign-in, in hours.
    #[arg(long, env = "SLIPWAY_UI_SESSION_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub ui_session_hours: u32,
    /// Failed dashboard sign-ins allowed per minute from one client address (the TCP peer, or
    /// what a trusted proxy says), as a burst refilled over the minute. 0: no limit.
    #[arg(
        long,
        env = "SLIPWAY_UI_LOGIN_FAILURES_PER_CLIENT",
        default_value_t = 10
    )]
    pub ui_login_failures_per_client: u32,
    /// Failed dashboard sign-ins allowed per minute from all clients together (per API
    /// replica). 0: no limit.
    #[arg(long, env = "SLIPWAY_UI_LOGIN_FAILURES_GLOBAL", default_value_t = 100)]
    pub ui_login_failures_global: u32,
    /// Proxies (IP addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For` header
    /// names the client for the sign-in limit; from any other peer the header is ignored.
    #[arg(long, env = "SLIPWAY_UI_TRUSTED_PROXIES", default_value = "")]
    pub ui_trusted_proxies: ui::TrustedProxies,
}

impl Default for UiArgs {
    fn default() -> Self {
        let limits = ui::LoginLimits::default();
        UiArgs {
            ui_secure_cookie: ui::SecureCookie::Auto,
            ui_session_hours: 12,
            ui_login_failures_per_client: limits.per_client,
            ui_login_failures_global: limits.global,
            ui_trusted_proxies: ui::TrustedProxies::default(),
        }
    }
}

impl UiArgs {
    pub fn settings(&self) -> ui::UiSettings {
        ui::UiSettings {
            secure_cookie: self.ui_secure_cookie,
            session_ttl: Duration::from_secs(u64::from(self.ui_session_hours) * 3600),
            login_limits: ui::LoginLimits {
                per_client: self.ui_login_failures_per_client,
                global: self.ui_login_failures_global,
            },
            trusted_proxies: self.ui_trusted_proxies.clone(),
        }
    }
}

/// The MCP endpoint (`/mcp`, docs/mcp.md).
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// `on` (every tool the token's scopes allow), `read-only` (only read-only tools) or
    /// `off` (no `/mcp`).
    #[arg(long = "mcp", env = "SLIPWAY_MCP", value_enum, default_value = "on")]
    pub mcp_mode: mcp::McpMode,
    /// `Host` values `/mcp` accepts (comma-separated `host` or `host:port`), against DNS
    /// rebinding; `*` accepts any. Add the public host clients use.
    #[arg(
        long,
        env = "SLIPWAY_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub mcp_allowed_hosts: Vec<String>,
    /// Browser origins `/mcp` accepts (comma-separated `scheme://host[:port|:*]`); empty
    /// refuses every request that carries an `Origin` header.
    #[arg(
        long,
        env = "SLIPWAY_MCP_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub mcp_allowed_origins: Vec<String>,
}

impl Default for McpArgs {
    fn default() -> Self {
        let d = mcp::McpSettings::default();
        McpArgs {
            mcp_mode: d.mode,
            mcp_allowed_hosts: d.allowed_hosts,
            mcp_allowed_origins: d.allowed_origins,
        }
    }
}

impl McpArgs {
    /// The endpoint's settings; empty list entries are dropped.
    pub fn settings(&self) -> mcp::McpSettings {
        let clean = |l: &[String]| {
            l.iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect()
        };
        mcp::McpSettings {
            mode: self.mcp_mode,
            allowed_hosts: clean(&self.mcp_allowed_hosts),
            allowed_origins: clean(&self.mcp_allowed_origins),
        }
    }
}

/// Where pull-request status goes: GitHub's API and how to authenticate. With neither an App
/// nor a token, nothing is reported (webhooks still work).
#[derive(Debug, Clone, clap::Args)]
pub struct GithubArgs {
    /// GitHub's REST API (GitHub Enterprise Server: `https://<host>/api/v3`).
    #[arg(
        long,
        env = "SLIPWAY_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
    /// The GitHub App's id (with `SLIPWAY_GITHUB_PRIVATE_KEY_FILE`).
    #[arg(long, env = "SLIPWAY_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// Path of the GitHub App's PEM private key.
    #[arg(long, env = "SLIPWAY_GITHUB_PRIVATE_KEY_FILE")]
    pub github_private_key_file: Option<std::path::PathBuf>,
    /// A plain token, used when no App is configured.
    #[arg(long, env = "SLIPWAY_GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// Public base URL of this API, for log links on pull requests.
    #[arg(long, env = "SLIPWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How often the status feed looks for changed previews (milliseconds).
    #[arg(long, env = "SLIPWAY_GITHUB_STATUS_POLL_MS", default_value_t = 1000)]
    pub github_status_poll_ms: u64,
}

impl Default for GithubArgs {
    /// No credentials: nothing is reported.
    fn default() -> Self {
        GithubArgs {
            github_api_url: "https://api.github.com".into(),
            github_app_id: None,
            github_private_key_file: None,
            github_token: None,
            public_url: None,
            github_status_poll_ms: 1000,
        }
    }
}

impl GithubArgs {
    /// The status reporter, when credentials are configured.
    fn reporter(&self) -> anyhow::Result<Option<slipway_github::StatusReporter>> {
        use slipway_github::{
            ClientConfig, Credentials, GithubClient, ReporterConfig, StatusReporter, StatusWriter,
            WriterConfig,
        };
        let Some(credentials) = Credentials::from_settings(
            self.github_app_id,
            self.github_private_key_file.as_deref(),
            self.github_token.as_deref(),
        )
        .context("GitHub credentials")?
        else {
            return Ok(None);
        };
        let client = GithubClient::new(ClientConfig::new(self.github_api_url.clone(), credentials))
            .context(
                "the GitHub settings (SLIPWAY_GITHUB_API_URL, SLIPWAY_GITHUB_APP_ID with \
                 SLIPWAY_GITHUB_PRIVATE_KEY_FILE, or SLIPWAY_GITHUB_TOKEN)",
            )?;
        let writer = StatusWriter::new(Arc::new(client), WriterConfig::default());
        Ok(Some(StatusReporter::start(
            Arc::new(writer),
            ReporterConfig::default(),
        )))
    }
}

/// A host list setting: trimmed, lowercased, without empty entries.
fn hosts(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

impl Config {
    /// Operator limits on requests.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        use slipway_core::quantity::{Unit, parse};
        Ok(Limits {
            max_cpu_millis: parse(&self.max_cpu, Unit::Millicores).map_err(|e| {
                anyhow::anyhow!("SLIPWAY_MAX_CPU (--max-cpu): {:?} {e}", self.max_cpu)
            })?,
            max_memory_bytes: parse(&self.max_memory, Unit::Bytes).map_err(|e| {
                anyhow::anyhow!(
                    "SLIPWAY_MAX_MEMORY (--max-memory): {:?} {e}",
                    self.max_memory
                )
            })?,
            max_replicas: self.max_replicas,
            max_ttl_hours: self.max_ttl_hours,
            allowed_repository_hosts: hosts(&self.allowed_repository_hosts),
            internal_repository_hosts: hosts(&self.internal_repository_hosts),
            build_secret_names: self
                .build_secret_names
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            ..Limits::default()
        })
    }
}

/// The default listen address of the API.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);

/// How long in-flight requests may take once shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(2);

/// How long a background task (relay, status feed) may take to stop once told: each drops its
/// round in progress and releases its lock within a bound of its own, so this only guards
/// against a bug there.
const TASK_STOP: Duration = Duration::from_secs(2);

async fn stop_within(mut task: tokio::task::JoinHandle<()>, what: &str) {
    if tokio::time::timeout(TASK_STOP, &mut task).await.is_err() {
        tracing::warn!(task = what, "did not stop in time; aborted");
        task.abort();
    }
}

/// A running API, for tests: where it listens and the task that ends after shutdown.
pub struct Running {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Connect, migrate, bind and serve until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let running = start(config, shutdown).await?;
    running.task.await.context("API task panicked")?
}

/// Like [`run`], but returns once the listener is bound (tests use port 0).
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    // The error names the variable, the entry (never its token) and the rule it breaks.
    let tokens: TokenSet = config.api_tokens.parse()?;
    if tokens.is_empty() {
        tracing::warn!("SLIPWAY_API_TOKENS is empty: every /v1 request will be refused (401)");
    }
    let limits = config.limits()?;
    // Configuration first: a bad setting is reported before any connection is tried.
    let reporter = config.github.reporter()?;
    queue_metrics::describe();
    let store = Store::connect(config.common.database_url.expose())
        .await
        .with_context(|| format!("connecting to Postgres at {}", config.common.database_url))?;
    store.migrate().await.context("migrating the database")?;
    let queue = QueueClient::connect(
        config.common.redis_url.expose(),
        &config.common.queue_prefix,
    )
    .await
    .with_context(|| format!("connecting to Redis at {}", config.common.redis_url))?;

    let cancel = tokio_util::sync::CancellationToken::new();
    let webhook_secret = config
        .github_webhook_secret
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec());
    let state = AppState::new(
        store.clone(),
        queue,
        tokens,
        limits,
        config.max_attempts,
        webhook_secret,
        cancel.clone(),
    );
    let relay = relay::spawn(
        state.clone(),
        Duration::from_millis(config.relay_interval_ms.max(50)),
    );
    let queue_gauges = queue_metrics::spawn(state.clone());
    let status = match reporter {
        Some(reporter) => {
            let feed = status_feed::spawn(
                store.clone(),
                reporter.clone(),
                status_feed::FeedConfig {
                    public_url: config
                        .github
                        .public_url
                        .clone()
                        .filter(|u| !u.trim().is_empty()),
                    poll: Duration::from_millis(config.github.github_status_poll_ms.max(50)),
                },
                cancel.clone(),
            );
            Some((reporter, feed))
        }
        None => {
            tracing::info!(
                "no GitHub App or token configured: pull requests get no status from Slipway"
            );
            None
        }
    };
    state.logs.spawn_listener(&store);

    let readiness: Vec<Box<dyn ReadinessCheck>> = vec![
        Box::new(PostgresCheck::new(store)),
        Box::new(RedisCheck::new(state.queue.clone())),
    ];
    let marks = state.clone();
    let app = router(state, &config.mcp.settings(), &config.ui.settings())
        .merge(slipway_shared::health::router(readiness, cancel.clone()));

    let addr = config.common.listen_or(DEFAULT_LISTEN);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "slipway-api listening");
    let task = tokio::spawn(async move {
        let stop = cancel.clone();
        let stopping = cancel.clone();
        // The peer address reaches handlers (the dashboard's sign-in limit is per client).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            // Readiness says no, and SSE streams, the relay and the status feed end, so
            // graceful shutdown does not wait on them.
            stop.cancel();
        });
        let mut serve = std::pin::pin!(serve.into_future());
        // In-flight requests get DRAIN once shutdown begins; one waiting on a stalled Postgres
        // or Redis is cut off then.
        let served = tokio::select! {
            served = &mut serve => Some(served),
            () = async { stopping.cancelled().await; tokio::time::sleep(DRAIN).await } => None,
        };
        match served {
            Some(r) => r.context("serving HTTP")?,
            None => tracing::warn!(
                "requests still open {} s after shutdown began; closing them",
                DRAIN.as_secs()
            ),
        }
        cancel.cancel();
        // The last requests' marks; what is not written in time the relay pushes again later.
        if tokio::time::timeout(Duration::from_secs(1), marks.marks.flushed())
            .await
            .is_err()
        {
            tracing::warn!(
                "enqueue marks not written within 1 s; the relay will push those jobs again"
            );
        }
        stop_within(relay, "relay").await;
        stop_within(queue_gauges, "queue gauges").await;
        if let Some((reporter, feed)) = status {
            stop_within(feed, "status feed").await;
            // What is pending still reaches GitHub, within a bound.
            reporter.shutdown(Duration::from_secs(2)).await;
        }
        Ok(())
    });
    Ok(Running { addr, task })
}

/// The `/v1` API, `/openapi.json`, `/mcp` and the `/ui` dashboard, with auth, body limit,
/// metrics and tracing layers.
pub fn router(state: Arc<AppState>, mcp: &mcp::McpSettings, ui: &ui::UiSettings) -> axum::Router {
    let mcp = mcp::router(state.clone(), mcp);
    let ui = ui::router(state.clone(), ui);
    let (router, mut api) = routes::router().split_for_parts();
    utoipa::Modify::modify(&openapi::CommonResponses, &mut api);
    let spec = Arc::new(api);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { axum::Json((*spec).clone()) }
            }),
        )
        .with_state(state)
        .merge(mcp)
        .merge(ui)
        .fallback(|| async { error::ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn(http_metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<_>| slipway_shared::telemetry::request_span(req),
            ),
        )
}
