//! `slipway-worker-launch`: turns launch jobs into running preview environments.
//!
//! For each job the [`Launcher`] reads the validated launch from the job row, resolves the image
//! (given, or the image a build job pushed), records the preview as `deploying` in the registry,
//! applies the preview's objects server-side in order (namespace first), waits for the
//! Deployment's rollout to become Available while copying pod trouble into the job's log (and,
//! with a cert-manager issuer, for the preview's Certificate to be Ready), and records the
//! preview `ready` with its URL and pods. Pods that Kubernetes refuses (Pod Security) or that
//! cannot start (a root image under `runAsNonRoot`) fail the launch at once. Everything it does is idempotent: a retry
//! or a successor of a dead worker re-applies the same objects and waits again; a re-launch of
//! the same preview is a rollout in the same namespace.
//!
//! - [`config`]: flags and settings;
//! - [`launch`]: the job handler;
//! - [`helm`]: a Helm preview's chart: rendered with Helm, checked, made the preview's;
//! - [`wait`]: waiting for the rollout (watch with a fallback poll) and explaining trouble;
//! - [`telemetry`]: the worker's metrics.
//!
//! [`run`] is what the binary calls; tests call [`run_with_client`] with a simulator's client.

pub mod config;
pub mod helm;
pub mod launch;
pub mod telemetry;
pub mod wait;

pub use config::{Config, LaunchArgs, Settings};
pub use launch::Launcher;

use slipway_core::{ErrorClass, JobKind};
use slipway_k8s::client::{K8sError, KubeCheck, client_from_env};
use slipway_shared::runtime::JobError;
use slipway_shared::store::StoreError;
use slipway_shared::worker::{self, WorkerError, WorkerOptions};
use std::future::Future;
use std::sync::Arc;

/// Everything that can go wrong in the launch worker.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
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
    /// The job cannot be launched as asked (bad payload, image, build, resources).
    #[error("{0}")]
    Invalid(String),
    /// Not possible yet, but likely later (a build still running, a namespace terminating).
    #[error("{0}")]
    NotYet(String),
    /// The rollout failed for a reason waiting or retrying will not fix.
    #[error("{0}")]
    RolloutFailed(String),
    /// The rollout did not complete in time, for no clear reason.
    #[error("{0}")]
    RolloutTimedOut(String),
    /// A newer launch of the same preview has deployed it; this one must not undo that.
    #[error("{0}")]
    Superseded(String),
    /// The job was cancelled (operator cancel, supersede, lease lost, shutdown).
    #[error("launch stopped: the job was cancelled")]
    Cancelled,
}

impl LaunchError {
    /// Transient errors are retried with backoff; permanent ones fail the job now.
    pub fn class(&self) -> ErrorClass {
        match self {
            LaunchError::Kube(e) => e.class(),
            LaunchError::Config(_)
            | LaunchError::Invalid(_)
            | LaunchError::RolloutFailed(_)
            | LaunchError::Superseded(_) => ErrorClass::Permanent,
            LaunchError::Worker(_)
            | LaunchError::Store(_)
            | LaunchError::NotYet(_)
            | LaunchError::RolloutTimedOut(_)
            | LaunchError::Cancelled => ErrorClass::Transient,
        }
    }
}

impl From<LaunchError> for JobError {
    fn from(e: LaunchError) -> JobError {
        match e.class() {
            ErrorClass::Transient => JobError::transient(e.to_string()),
            ErrorClass::Permanent => JobError::permanent(e.to_string()),
        }
    }
}

/// Run the worker until `shutdown` completes, with a Kubernetes client from the environment
/// (`KUBECONFIG`, `~/.kube/config`, or the in-cluster service account).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LaunchError> {
    let client = client_from_env().await?;
    run_with_client(
        config,
        client,
        |addr| tracing::info!(%addr, "probes and metrics listening"),
        shutdown,
    )
    .await
}

/// Run the worker with the given Kubernetes client: migrations, probes (`/healthz`,
/// `/readyz` including the Kubernetes API, `/metrics`) and the job runtime, until `shutdown`.
/// The probe server's address goes to `on_listen` (tests listen on port 0).
pub async fn run_with_client(
    config: Config,
    client: kube::Client,
    on_listen: impl FnOnce(std::net::SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LaunchError> {
    let settings = config.launch.settings()?;
    let connected = worker::connect(&config.common).await?;
    let launcher = Arc::new(Launcher::new(
        client.clone(),
        connected.store.clone(),
        settings,
    ));
    telemetry::describe();
    launcher.refresh_active_previews().await;
    let opts = WorkerOptions {
        kind: JobKind::Launch,
        common: config.common,
        worker: config.worker,
        extra_checks: vec![Box::new(KubeCheck(client))],
    };
    worker::serve(opts, connected, launcher, on_listen, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        for e in [
            LaunchError::Invalid("x".into()),
            LaunchError::RolloutFailed("x".into()),
            LaunchError::Config("x".into()),
            LaunchError::Superseded("x".into()),
        ] {
            assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
            assert_eq!(JobError::from(e).class, ErrorClass::Permanent);
        }
        for e in [
            LaunchError::NotYet("x".into()),
            LaunchError::RolloutTimedOut("x".into()),
            LaunchError::Cancelled,
        ] {
            assert_eq!(e.class(), ErrorClass::Transient, "{e}");
        }
        let api = |code| {
            LaunchError::Kube(K8sError::Api {
                verb: "apply",
                what: "Deployment ns/app".into(),
                code,
                reason: "x".into(),
                message: "y".into(),
            })
        };
        assert_eq!(api(503).class(), ErrorClass::Transient);
        assert_eq!(api(422).class(), ErrorClass::Permanent);
    }
}
