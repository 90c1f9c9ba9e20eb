//! `slipway-worker-build`: builds images as Kubernetes Jobs running rootless BuildKit and
//! stores their logs in Postgres.
//!
//! Before an attempt starts, the runtime holds it to the per-repository cap
//! (`SLIPWAY_BUILD_MAX_PER_REPOSITORY`, [`BuildHandler`]'s `keyed_cap`): over it the job goes
//! back to the queue, its attempt number given back, until one of the repository's builds ends.
//!
//! One attempt of a build job:
//! 1. parse the validated build (`ValidBuild`, plus `then_launch` for a pipeline's build) from
//!    the job row;
//! 2. adopt the previous attempt's Job when that attempt's worker died (its attempt is
//!    `abandoned` and its Job still runs), else wait for a slot under the global build cap,
//!    apply the build namespace's NetworkPolicy (`SLIPWAY_BUILD_NETWORK_POLICY`; also applied
//!    at start-up) and create (or adopt) the Job named `build_job_name(job, attempt)`;
//! 3. watch for its pod (failing for good when a missing Secret keeps it in `ContainerCreating`,
//!    read from its `FailedMount` Events), follow the container log into `job_logs` (batched,
//!    ordered, capped; after a drop, an error or a silent stream it is re-read from the last
//!    line taken, skipping what is held; a gap left by a rotated log file gets a `system`
//!    line);
//! 4. when the pod ends, classify: success gives the image digest from the termination message;
//!    a build error is permanent (with the failing step); OOMKilled, eviction, deadline, a
//!    builder image that cannot be pulled, API trouble, and a buildctl error that the log tail
//!    blames on a registry, the network, a git host or buildkitd are transient;
//! 5. only after the last log batch is committed, delete the Job (background propagation);
//! 6. for a pipeline's build, record and enqueue the launch of the built image.
//!
//! Cancellation (operator cancel, supersede) deletes the Job, keeping the logs already stored.
//! A worker that stops for another reason (shutdown, lost lease) leaves the Job running for the
//! next attempt to adopt.

mod config;
mod handler;
mod pipeline;
mod sink;
mod source;

pub use config::{BuildArgs, Config, DEFAULT_BUILDKIT_IMAGE, Settings};
pub use handler::BuildHandler;

use slipway_core::JobKind;
use slipway_k8s::client::{K8sError, KubeCheck, client_from_env};
use slipway_shared::worker::{self, WorkerError, WorkerOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Kubernetes(#[from] K8sError),
}

/// Run the build worker until `shutdown` resolves, with a Kubernetes client from the
/// environment (`KUBECONFIG` or in-cluster).
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
    let client = client_from_env().await?;
    run_with_client(
        config,
        client,
        |addr| tracing::info!(%addr, "probes and metrics listening"),
        shutdown,
    )
    .await
}

/// Run the build worker with the given Kubernetes client (tests pass the simulator's).
pub async fn run_with_client(
    config: Config,
    client: kube::Client,
    on_listen: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let connected = worker::connect(&config.common).await?;
    serve(config, connected, client, on_listen, shutdown).await
}

/// Run the build worker over dependencies already connected (and migrated) with
/// `slipway_shared::worker::connect`.
pub async fn serve(
    config: Config,
    connected: worker::Connected,
    client: kube::Client,
    on_listen: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    handler::describe_metrics();
    ensure_build_namespace(&client, &config.build.build_namespace).await;
    let settings = config.build.settings();
    if let Some(net) = &settings.network {
        apply_build_network_policy(&client, net).await;
    }
    let handler = Arc::new(BuildHandler::new(
        client.clone(),
        connected.store.clone(),
        connected.queue.clone(),
        settings,
    ));
    let opts = WorkerOptions {
        kind: JobKind::Build,
        common: config.common,
        worker: config.worker,
        extra_checks: vec![Box::new(KubeCheck(client))],
    };
    worker::serve(opts, connected, handler, on_listen, shutdown).await?;
    Ok(())
}

/// Create the build namespace when it is missing (the demo and tests; in production the
/// deployment creates it with its Pod Security label, and the worker may lack the right to).
/// An existing namespace is left as it is; failures are only logged.
async fn ensure_build_namespace(client: &kube::Client, name: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let ns = slipway_k8s::build::build_namespace(name);
    match api.create(&kube::api::PostParams::default(), &ns).await {
        Ok(_) => tracing::info!(namespace = name, "created the build namespace"),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            tracing::warn!(namespace = name, error = %e, "cannot create the build namespace; it must exist")
        }
    }
}

/// Apply the build namespace's NetworkPolicy at start-up. A failure is only logged here: every
/// build applies it again before its Job is created, and fails if it cannot.
async fn apply_build_network_policy(
    client: &kube::Client,
    net: &slipway_k8s::buildnet::BuildNetworkParams,
) {
    let policy = slipway_k8s::buildnet::build_network_policy(net);
    let api = slipway_k8s::client::namespaced(client, &net.namespace);
    match slipway_k8s::client::apply(&api, &policy).await {
        Ok(_) => tracing::info!(
            namespace = %net.namespace,
            policy = slipway_k8s::buildnet::BUILD_NETWORK_POLICY,
            "applied the build network policy"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot apply the build network policy yet"),
    }
}
