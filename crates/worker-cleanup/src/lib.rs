//! `slipway-worker-cleanup`: tears previews down and keeps Postgres, Redis and the cluster in
//! agreement.
//!
//! Two things run in one process:
//! - the **teardown** handler ([`teardown::Teardown`]) takes `cleanup` jobs from the queue like
//!   any worker (retries, leases, cancel): it deletes a preview's namespace, waits until it is
//!   gone and marks the preview deleted;
//! - the **sweeper** ([`sweep::Sweeper`]) runs periodic sweeps (finished build Jobs, expired
//!   previews, orphans, queue repair, log retention) on exactly one replica at a time: the one
//!   holding a Postgres advisory lock. Any number of replicas may run; all take teardowns.
//!
//! - [`config`]: flags and settings;
//! - [`teardown`]: the job handler and the namespace removal it shares with the sweeps;
//! - [`sweep`]: the sweeps and their leadership;
//! - [`telemetry`]: the worker's metrics.
//!
//! [`run`] is what the binary calls; tests call [`run_with_client`] with a simulator's client.

pub mod config;
pub mod sweep;
pub mod teardown;
pub mod telemetry;

pub use config::{CleanupArgs, Config, Settings};
pub use sweep::{Report, Sweeper};
pub use teardown::Teardown;

use slipway_core::JobKind;
use slipway_k8s::client::{K8sError, KubeCheck, client_from_env};
use slipway_shared::enqueue::Submitter;
use slipway_shared::queue::QueueError;
use slipway_shared::store::StoreError;
use slipway_shared::worker::{self, WorkerError, WorkerOptions};
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything that can go wrong in the cleanup worker.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The worker's configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The worker could not start or run (Postgres, Redis, probe server).
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A Kubernetes request failed.
    #[error(transparent)]
    Kube(#[from] K8sError),
    /// A job store request failed.
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    /// A queue request failed.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// Run the worker until `shutdown` completes, with a Kubernetes client from the environment
/// (`KUBECONFIG`, `~/.kube/config`, or the in-cluster service account).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CleanupError> {
    let client = client_from_env().await?;
    run_with_client(
        config,
        client,
        |addr| tracing::info!(%addr, "probes and metrics listening"),
        shutdown,
    )
    .await
}

/// This replica's name in the sweep journal: as configured, else the pod name in Kubernetes plus
/// the process id and a random suffix, so two replicas on one host differ.
fn holder_name(configured: Option<String>) -> String {
    if let Some(name) = configured.filter(|n| !n.trim().is_empty()) {
        return name;
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "slipway-worker-cleanup".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..6])
}

/// Run the worker with the given Kubernetes client: migrations, probes (`/healthz`, `/readyz`
/// including the Kubernetes API, `/metrics`), the teardown handler and the sweeper, until
/// `shutdown`. The probe server's address goes to `on_listen` (tests listen on port 0).
pub async fn run_with_client(
    config: Config,
    client: kube::Client,
    on_listen: impl FnOnce(std::net::SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CleanupError> {
    let settings = config.cleanup.settings().map_err(CleanupError::Config)?;
    let connected = worker::connect(&config.common).await?;
    telemetry::describe();
    let teardown = Arc::new(Teardown::new(
        client.clone(),
        connected.store.clone(),
        settings.clone(),
    ));
    let stop_sweeps = CancellationToken::new();
    let sweeps = settings.sweep_interval.map(|interval| {
        let sweeper = Sweeper::new(
            client.clone(),
            Submitter::new(connected.store.clone(), connected.queue.clone()),
            settings.clone(),
            holder_name(config.cleanup.replica_name.clone()),
        );
        tokio::spawn(sweeper.run(interval, stop_sweeps.clone()))
    });
    let opts = WorkerOptions {
        kind: JobKind::Cleanup,
        common: config.common,
        worker: config.worker,
        extra_checks: vec![Box::new(KubeCheck(client))],
    };
    let stopping = stop_sweeps.clone();
    let shutdown = async move {
        shutdown.await;
        // Sweeps stop as soon as shutdown begins, not after the teardowns' grace.
        stopping.cancel();
    };
    let served = worker::serve(opts, connected, teardown, on_listen, shutdown).await;
    stop_sweeps.cancel();
    if let Some(mut task) = sweeps {
        // The sweeper drops its round and releases its lock within its own bound; this one
        // only guards against a bug there.
        if tokio::time::timeout(2 * slipway_shared::leader::RELEASE_BOUND, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("the sweeper did not stop in time");
            task.abort();
        }
    }
    served?;
    Ok(())
}
