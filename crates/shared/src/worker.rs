//! The frame every worker binary runs in, so each worker is only its [`Handler`]: connect to
//! Postgres and migrate (under the advisory lock), serve `/healthz`, `/readyz` and `/metrics`,
//! run the job runtime until shutdown, then stop the probe server.
//!
//! Shutdown is bounded whatever the dependencies do: `/readyz` turns 503 the moment it begins,
//! the runtime stops within [`runtime::shutdown_bound`] of it (at once when idle), and the
//! probe server gets [`PROBES_STOP`] to finish its last requests.

use crate::config::CommonArgs;
use crate::health::{self, PostgresCheck, ReadinessCheck, RedisCheck};
use crate::queue::QueueClient;
use crate::runtime::{self, Handler, WorkerArgs};
use crate::store::Store;
use slipway_core::JobKind;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where workers serve probes and metrics unless `SLIPWAY_LISTEN` says otherwise.
pub const DEFAULT_WORKER_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9090);

/// How long the probe server may take to finish its open requests once the runtime stopped
/// (a readiness check can wait on a stalled dependency).
pub const PROBES_STOP: Duration = Duration::from_millis(500);

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("job store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("queue: {0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("probe server: {0}")]
    Health(#[from] health::HealthError),
}

/// A worker's dependencies, connected and migrated.
pub struct Connected {
    pub store: Store,
    pub queue: QueueClient,
}

/// Connect to Postgres (and migrate) and Redis.
pub async fn connect(common: &CommonArgs) -> Result<Connected, WorkerError> {
    let store = Store::connect(common.database_url.expose()).await?;
    store.migrate().await?;
    let queue = QueueClient::connect(common.redis_url.expose(), &common.queue_prefix).await?;
    Ok(Connected { store, queue })
}

/// What a worker binary runs as.
pub struct WorkerOptions {
    pub kind: JobKind,
    pub common: CommonArgs,
    pub worker: WorkerArgs,
    /// Readiness checks beyond Postgres and Redis (e.g. the Kubernetes API).
    pub extra_checks: Vec<Box<dyn ReadinessCheck>>,
}

/// Run a worker until `shutdown` completes: probes on `common.listen` (default
/// `0.0.0.0:9090`), readiness over Postgres, Redis and the extra checks, and the runtime with
/// `handler`. The probe server's bound address goes to `on_listen` (tests use port 0).
pub async fn serve<H: Handler>(
    opts: WorkerOptions,
    connected: Connected,
    handler: Arc<H>,
    on_listen: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    let WorkerOptions {
        kind,
        common,
        worker,
        extra_checks,
    } = opts;
    let mut checks: Vec<Box<dyn ReadinessCheck>> = vec![
        Box::new(PostgresCheck::new(connected.store.clone())),
        Box::new(RedisCheck::new(connected.queue.clone())),
    ];
    checks.extend(extra_checks);
    let draining = CancellationToken::new();
    let stop_probes = CancellationToken::new();
    let probes_stopped = stop_probes.clone();
    let mut probes = health::serve(
        common.listen_or(DEFAULT_WORKER_LISTEN),
        checks,
        draining.clone(),
        async move {
            probes_stopped.cancelled().await;
        },
    )
    .await?;
    on_listen(probes.addr);
    let mut cfg = worker.config(kind, &common);
    cfg.worker_name = format!("slipway-worker-{kind}");
    let shutdown = async move {
        shutdown.await;
        // Unready at once: no new traffic while running jobs finish.
        draining.cancel();
    };
    let result = runtime::run_with_store(cfg, connected.store, handler, shutdown).await;
    stop_probes.cancel();
    if tokio::time::timeout(PROBES_STOP, &mut probes.task)
        .await
        .is_err()
    {
        probes.task.abort();
    }
    result.map_err(WorkerError::from)
}
