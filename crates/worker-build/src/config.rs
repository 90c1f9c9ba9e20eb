//! Configuration: clap flags with `SLIPWAY_*` environment variables. The defaults work for
//! `make demo` (the simulator, or minikube with its registry addon: push to the in-cluster
//! registry service over plain HTTP, pull through `localhost:5000`).

use slipway_k8s::build::BuildResources;
use slipway_k8s::buildnet::{BuildNetworkParams, CidrList, DEFAULT_DENY_CIDRS};
use slipway_shared::config::CommonArgs;
use slipway_shared::runtime::WorkerArgs;
use std::collections::BTreeMap;
use std::time::Duration;

/// The pinned rootless BuildKit image.
pub const DEFAULT_BUILDKIT_IMAGE: &str = "moby/buildkit:v0.23.2-rootless";

/// Everything `slipway-worker-build` is configured with.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "slipway-worker-build",
    version,
    about = "Slipway's build worker: image builds as Kubernetes Jobs running rootless BuildKit"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub build: BuildArgs,
}

/// The build worker's own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Namespace the build Jobs run in. It must allow seccomp and AppArmor `Unconfined`
    /// (label it `pod-security.kubernetes.io/enforce=privileged`; see docs/worker-build.md).
    #[arg(
        long,
        env = "SLIPWAY_BUILD_NAMESPACE",
        default_value = "slipway-builds"
    )]
    pub build_namespace: String,
    /// The rootless BuildKit image (pin a version).
    #[arg(long, env = "SLIPWAY_BUILDKIT_IMAGE", default_value = DEFAULT_BUILDKIT_IMAGE)]
    pub buildkit_image: String,
    /// Registry the builder pushes to (as seen from the build pod).
    #[arg(
        long,
        env = "SLIPWAY_REGISTRY_PUSH",
        default_value = "registry.kube-system.svc.cluster.local:80"
    )]
    pub registry_push: String,
    /// Registry prefix the cluster pulls built images from (as seen by the kubelet).
    #[arg(long, env = "SLIPWAY_REGISTRY_PULL", default_value = "localhost:5000")]
    pub registry_pull: String,
    /// Push over plain HTTP (minikube's in-cluster registry).
    #[arg(long, env = "SLIPWAY_REGISTRY_INSECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub registry_insecure: bool,
    /// Registry cache import and export (`mode=max`) under `<image>:<cache tag>`.
    #[arg(long, env = "SLIPWAY_BUILD_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub build_cache: bool,
    /// Tag of the registry cache image next to each built image.
    #[arg(long, env = "SLIPWAY_BUILD_CACHE_TAG", default_value = "buildcache")]
    pub build_cache_tag: String,
    /// CPU request of the build container.
    #[arg(long, env = "SLIPWAY_BUILD_CPU_REQUEST", default_value = "500m")]
    pub build_cpu_request: String,
    /// Memory request of the build container.
    #[arg(long, env = "SLIPWAY_BUILD_MEMORY_REQUEST", default_value = "1Gi")]
    pub build_memory_request: String,
    /// CPU limit of the build container (empty: none). A build runs untrusted `RUN` steps: the
    /// limit keeps one from taking its node's every core.
    #[arg(long, env = "SLIPWAY_BUILD_CPU_LIMIT", default_value = "2")]
    pub build_cpu_limit: String,
    /// Memory limit of the build container (empty: none).
    #[arg(long, env = "SLIPWAY_BUILD_MEMORY_LIMIT", default_value = "4Gi")]
    pub build_memory_limit: String,
    /// Ephemeral-storage limit of the build container, also the `sizeLimit` of BuildKit's state
    /// emptyDir: a build that outgrows it is evicted rather than filling the node's disk and
    /// evicting its neighbours (empty: neither).
    #[arg(long, env = "SLIPWAY_BUILD_EPHEMERAL_STORAGE", default_value = "20Gi")]
    pub build_ephemeral_storage: String,
    /// Ephemeral-storage request of the build container: what the scheduler reserves on the
    /// node (empty: none).
    #[arg(
        long,
        env = "SLIPWAY_BUILD_EPHEMERAL_STORAGE_REQUEST",
        default_value = "2Gi"
    )]
    pub build_ephemeral_storage_request: String,
    /// `activeDeadlineSeconds` of a build Job.
    #[arg(long, env = "SLIPWAY_BUILD_DEADLINE_SECS", default_value_t = 1800)]
    pub build_deadline_secs: i64,
    /// `ttlSecondsAfterFinished` of a build Job (a safety net: the worker deletes Jobs itself).
    #[arg(long, env = "SLIPWAY_BUILD_TTL_SECS", default_value_t = 3600)]
    pub build_ttl_secs: i32,
    /// Lines stored per build attempt; the rest is dropped after a truncation marker.
    #[arg(long, env = "SLIPWAY_LOG_MAX_LINES", default_value_t = 100_000)]
    pub log_max_lines: u64,
    /// Longest stored line in bytes; longer lines are split.
    #[arg(long, env = "SLIPWAY_LOG_MAX_LINE_BYTES", default_value_t = 8192)]
    pub log_max_line_bytes: usize,
    /// A log batch is written when it holds this many lines...
    #[arg(long, env = "SLIPWAY_LOG_BATCH_LINES", default_value_t = 500)]
    pub log_batch_lines: usize,
    /// ...or when its oldest line is this old.
    #[arg(long, env = "SLIPWAY_LOG_BATCH_MS", default_value_t = 200)]
    pub log_batch_ms: u64,
    /// Build Jobs running at once in the build namespace, across all workers (0: no cap).
    /// Counted from the cluster before a Job is created; over the cap, the job waits.
    #[arg(long, env = "SLIPWAY_MAX_CONCURRENT_BUILDS", default_value_t = 20)]
    pub max_concurrent_builds: usize,
    /// Builds of one repository (host and path, lowercased, without `.git`) running at once,
    /// across all workers (0: no cap), so one busy repository cannot take every slot. Held in
    /// Postgres; a build over it goes back to the queue without using an attempt.
    #[arg(long, env = "SLIPWAY_BUILD_MAX_PER_REPOSITORY", default_value_t = 2)]
    pub max_per_repository: u32,
    /// How long a build over its repository's cap waits in the queue before it is tried again
    /// (drawn between half and all of it).
    #[arg(
        long,
        env = "SLIPWAY_BUILD_REPOSITORY_RECHECK_MS",
        default_value_t = 5_000
    )]
    pub repository_recheck_ms: u64,
    /// A followed log stream that delivers nothing for this long is re-opened from the last
    /// stored line (after checking the pod): a connection that died silently cannot hang a build.
    #[arg(long, env = "SLIPWAY_LOG_IDLE_SECS", default_value_t = 30)]
    pub log_idle_secs: u64,
    /// Apply the build namespace's NetworkPolicy (`slipway-build-network`, server-side, at
    /// start-up and before every build Job, so a deleted policy comes back): build pods get DNS,
    /// the registry and the internet but the denied CIDRs and the cloud metadata addresses, and
    /// no ingress (docs/network-policy.md). false: you manage the build network yourself.
    #[arg(long, env = "SLIPWAY_BUILD_NETWORK_POLICY", default_value_t = true, action = clap::ArgAction::Set)]
    pub build_network_policy: bool,
    /// CIDRs (comma-separated, IPv4 and IPv6) build pods may not reach: the cluster's pod,
    /// Service and node ranges and the API server. The metadata addresses 169.254.169.254/32
    /// and fd00:ec2::254/128 are denied whatever this says.
    #[arg(long, env = "SLIPWAY_BUILD_DENY_CIDRS", default_value = DEFAULT_DENY_CIDRS)]
    pub build_deny_cidrs: CidrList,
    /// Namespace of an in-cluster registry build pods push to (every port to its pods; empty:
    /// none). minikube's registry addon runs in kube-system.
    #[arg(
        long,
        env = "SLIPWAY_BUILD_REGISTRY_NAMESPACE",
        default_value = "kube-system"
    )]
    pub build_registry_namespace: String,
    /// Labels (`k=v,k=v`) of the registry's pods in that namespace (empty: every pod of it);
    /// the default is the selector of minikube's registry Service.
    #[arg(
        long,
        env = "SLIPWAY_BUILD_REGISTRY_POD_LABELS",
        default_value = "actual-registry=true,kubernetes.io/minikube-addons=registry",
        value_parser = parse_labels
    )]
    pub build_registry_pod_labels: BTreeMap<String, String>,
    /// The registry's addresses (CIDRs, comma-separated; every port) when it is on a denied
    /// range outside the cluster's pods, e.g. `10.1.2.3/32`.
    #[arg(long, env = "SLIPWAY_BUILD_REGISTRY_CIDRS", default_value = "")]
    pub build_registry_cidrs: CidrList,
    /// DNS servers besides the cluster DNS pods (CIDRs, port 53): NodeLocal DNSCache
    /// `169.254.20.10/32`, GKE Cloud DNS `169.254.169.254/32` (the same setting as the launch
    /// worker's).
    #[arg(long, env = "SLIPWAY_DNS_EGRESS_CIDRS", default_value = "")]
    pub dns_egress_cidrs: CidrList,
    /// A build pod whose Secret volume reports the Secret (or its key) missing for this long
    /// (its `FailedMount` Events) fails the build permanently, naming the Secret.
    #[arg(long, env = "SLIPWAY_BUILD_MOUNT_FAILURE_SECS", default_value_t = 60)]
    pub mount_failure_secs: u64,
}

/// [`BuildArgs`] in the form the handler uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    pub buildkit_image: String,
    pub registry_push: String,
    pub registry_pull: String,
    pub registry_insecure: bool,
    pub cache_tag: Option<String>,
    pub resources: BuildResources,
    pub deadline_secs: i64,
    pub ttl_secs: i32,
    pub log_max_lines: u64,
    pub log_max_line_bytes: usize,
    pub log_batch_lines: usize,
    pub log_batch_wait: Duration,
    pub max_concurrent_builds: usize,
    /// Builds of one repository running at once (0: no cap).
    pub max_per_repository: u32,
    /// How long a build over its repository's cap waits before it is tried again.
    pub repository_recheck: Duration,
    /// How often the global build cap is re-checked while waiting for a slot.
    pub slot_poll: Duration,
    /// Silence after which a followed log stream is re-opened.
    pub log_idle: Duration,
    /// How long a missing Secret may block the build pod's start before the build fails.
    pub mount_failure_after: Duration,
    /// The build namespace's NetworkPolicy, when the worker applies it.
    pub network: Option<BuildNetworkParams>,
}

/// `k=v,k=v` labels (empty: none).
fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!("{pair:?} is not a label (key=value)")),
        })
        .collect()
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl BuildArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            namespace: self.build_namespace.clone(),
            buildkit_image: self.buildkit_image.clone(),
            registry_push: self.registry_push.clone(),
            registry_pull: self.registry_pull.clone(),
            registry_insecure: self.registry_insecure,
            cache_tag: self
                .build_cache
                .then(|| non_empty(&self.build_cache_tag))
                .flatten(),
            resources: BuildResources {
                cpu_request: non_empty(&self.build_cpu_request),
                memory_request: non_empty(&self.build_memory_request),
                cpu_limit: non_empty(&self.build_cpu_limit),
                memory_limit: non_empty(&self.build_memory_limit),
                ephemeral_storage_request: non_empty(&self.build_ephemeral_storage_request),
                ephemeral_storage_limit: non_empty(&self.build_ephemeral_storage),
            },
            deadline_secs: self.build_deadline_secs.max(1),
            ttl_secs: self.build_ttl_secs.max(0),
            log_max_lines: self.log_max_lines.max(1),
            log_max_line_bytes: self.log_max_line_bytes.max(16),
            log_batch_lines: self.log_batch_lines.max(1),
            log_batch_wait: Duration::from_millis(self.log_batch_ms),
            max_concurrent_builds: self.max_concurrent_builds,
            max_per_repository: self.max_per_repository,
            repository_recheck: Duration::from_millis(self.repository_recheck_ms.max(10)),
            slot_poll: Duration::from_secs(1),
            log_idle: Duration::from_secs(self.log_idle_secs.max(1)),
            mount_failure_after: Duration::from_secs(self.mount_failure_secs),
            network: self.build_network_policy.then(|| BuildNetworkParams {
                namespace: self.build_namespace.clone(),
                deny_cidrs: self.build_deny_cidrs.0.clone(),
                dns_egress_cidrs: self.dns_egress_cidrs.0.clone(),
                registry_namespace: non_empty(&self.build_registry_namespace),
                registry_pod_labels: self.build_registry_pod_labels.clone(),
                registry_cidrs: self.build_registry_cidrs.0.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_parse_and_flags_override() {
        let c = Config::try_parse_from([
            "slipway-worker-build",
            "--database-url",
            "postgres://x@localhost/db",
        ])
        .unwrap();
        let s = c.build.settings();
        assert_eq!(s.namespace, "slipway-builds");
        assert_eq!(s.buildkit_image, DEFAULT_BUILDKIT_IMAGE);
        assert!(s.buildkit_image.ends_with("-rootless"));
        assert_eq!(s.cache_tag.as_deref(), Some("buildcache"));
        assert!(s.registry_insecure);
        assert_eq!(s.resources.cpu_limit.as_deref(), Some("2"));
        assert_eq!(s.resources.memory_limit.as_deref(), Some("4Gi"));
        assert_eq!(s.log_batch_lines, 500);
        assert_eq!(s.resources.ephemeral_storage_limit.as_deref(), Some("20Gi"));
        assert_eq!(
            s.resources.ephemeral_storage_request.as_deref(),
            Some("2Gi")
        );
        assert_eq!(s.log_idle, Duration::from_secs(30));
        assert_eq!(s.mount_failure_after, Duration::from_secs(60));
        let net = s
            .network
            .expect("the build network policy is on by default");
        assert_eq!(net.namespace, "slipway-builds");
        let denied: Vec<String> = net.deny_cidrs.iter().map(ToString::to_string).collect();
        assert_eq!(
            denied,
            [
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "169.254.0.0/16",
                "fc00::/7",
                "fe80::/10"
            ]
        );
        assert_eq!(net.registry_namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            net.registry_pod_labels,
            BTreeMap::from([
                ("actual-registry".to_owned(), "true".to_owned()),
                (
                    "kubernetes.io/minikube-addons".to_owned(),
                    "registry".to_owned()
                )
            ])
        );
        assert!(net.registry_cidrs.is_empty() && net.dns_egress_cidrs.is_empty());
        assert_eq!(s.max_per_repository, 2);
        assert_eq!(s.repository_recheck, Duration::from_secs(5));

        let c = Config::try_parse_from([
            "slipway-worker-build",
            "--database-url",
            "postgres://x@localhost/db",
            "--build-cache",
            "false",
            "--registry-insecure",
            "false",
            "--max-concurrent-builds",
            "3",
            "--build-ephemeral-storage",
            "",
            "--max-per-repository",
            "0",
        ])
        .unwrap();
        let s = c.build.settings();
        assert_eq!(s.cache_tag, None);
        assert!(!s.registry_insecure);
        assert_eq!(s.max_concurrent_builds, 3);
        assert_eq!(s.resources.ephemeral_storage_limit, None);
        assert_eq!(s.max_per_repository, 0);
    }

    #[test]
    fn network_settings_parse_and_refuse_what_the_api_would() {
        let parse = |extra: &[&str]| {
            let mut args = vec![
                "slipway-worker-build",
                "--database-url",
                "postgres://x@localhost/db",
            ];
            args.extend_from_slice(extra);
            Config::try_parse_from(args)
        };
        let s = parse(&[
            "--build-deny-cidrs",
            "10.96.0.0/12, 10.244.0.0/16,fd00::/8",
            "--build-registry-namespace",
            "",
            "--build-registry-pod-labels",
            "",
            "--build-registry-cidrs",
            "192.168.5.10/32",
            "--dns-egress-cidrs",
            "169.254.20.10/32",
        ])
        .unwrap()
        .build
        .settings();
        let net = s.network.unwrap();
        assert_eq!(net.deny_cidrs.len(), 3);
        assert_eq!(net.registry_namespace, None);
        assert!(net.registry_pod_labels.is_empty());
        assert_eq!(net.registry_cidrs[0].to_string(), "192.168.5.10/32");
        assert_eq!(net.dns_egress_cidrs[0].to_string(), "169.254.20.10/32");
        for bad in [
            ["--build-deny-cidrs", "10.0.0.1/8"],
            ["--build-registry-cidrs", "registry.local"],
            ["--dns-egress-cidrs", "169.254.20.10"],
            ["--build-registry-pod-labels", "app"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        let off = parse(&["--build-network-policy", "false"]).unwrap();
        assert!(off.build.settings().network.is_none());
    }
}
