//! Slipway's Kubernetes layer. It owns every Kubernetes type the workers use:
//!
//! - [`labels`]: the labels every object Slipway creates carries, so that cleanup can find them
//!   and never touches anything else;
//! - [`build`]: the pure builder of a build Job (rootless BuildKit) and the parser of the
//!   BuildKit metadata that comes back in the container's termination message;
//! - [`buildnet`]: the pure builder of the build namespace's NetworkPolicy (DNS, the registry
//!   and the internet but the cluster's ranges and the cloud metadata addresses) and CIDRs;
//! - [`preview`]: the pure builder of a preview environment (namespace, quota, limits, network
//!   policies, Deployment, Service, Ingress);
//! - [`compose`]: the pure builder of a compose preview (the same environment, a Deployment or
//!   StatefulSet and a Service per compose service, their start order);
//! - [`client`]: idempotent operations (create-or-adopt, server-side apply, background delete)
//!   and the transient/permanent classification of Kubernetes errors;
//! - [`logs`]: decoding a container's log stream into ordered, bounded, valid UTF-8 lines;
//! - [`rollout`]: reading a Deployment's or StatefulSet's rollout status, its current pods, and
//!   the pod states that explain a stuck rollout;
//! - [`outcome`]: where a build pod is and how it ended (build failure versus infrastructure);
//! - [`mounts`]: which Secret or ConfigMap a pod stuck in `ContainerCreating` is missing, from
//!   its `FailedMount` Events;
//! - [`usage`]: a preview namespace's CPU and memory as metrics-server measures them
//!   (`metrics.k8s.io` PodMetrics; its absence is a state, not an error) against its quota.
//!
//! Builders are pure functions from plain parameter structs to `k8s-openapi` objects: no client,
//! no clock, no randomness, so unit tests pin their output exactly.

pub mod build;
pub mod buildnet;
pub mod client;
pub mod compose;
pub mod labels;
pub mod logs;
pub mod mounts;
pub mod outcome;
pub mod preview;
pub mod rollout;
#[cfg(test)]
mod schema_tests;
pub mod source;
pub mod usage;
