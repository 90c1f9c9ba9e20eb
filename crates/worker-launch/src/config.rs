//! Configuration of the launch worker: the common and runtime flags every worker takes, plus
//! what shapes a preview environment (domain, ingress, TLS, pull secret, quota and default
//! limits, pod security, egress) and how long a rollout may take. Every flag has a `SLIPWAY_*`
//! variable; the defaults work against the simulator and minikube.

use crate::LaunchError;
use clap::{Args, Parser};
use slipway_core::quantity::{self, Unit};
use slipway_k8s::preview::{self, CpuMemory, QuotaParams, TlsParams};
use slipway_shared::config::CommonArgs;
use slipway_shared::runtime::WorkerArgs;
use std::time::Duration;

/// `slipway-worker-launch` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "slipway-worker-launch",
    about = "Brings up preview environments on Kubernetes and records their URLs."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// What shapes a preview and its rollout.
#[derive(Debug, Clone, Args)]
pub struct LaunchArgs {
    /// DNS domain under which preview hosts are created (`<slug>.<domain>`).
    #[arg(
        long,
        env = "SLIPWAY_PREVIEW_DOMAIN",
        default_value = "preview.localhost"
    )]
    pub preview_domain: String,

    /// Ingress class of the preview Ingress; empty leaves the cluster default. The default is
    /// ingress-nginx's class (minikube's `ingress` addon).
    #[arg(long, env = "SLIPWAY_INGRESS_CLASS", default_value = "nginx")]
    pub ingress_class: String,

    /// Namespace of the ingress controller, whose pods may reach a preview (and its ACME
    /// solver).
    #[arg(
        long,
        env = "SLIPWAY_INGRESS_NAMESPACE",
        default_value = "ingress-nginx"
    )]
    pub ingress_namespace: String,

    /// CIDRs that may also reach a preview's app port (comma-separated): load balancers that
    /// send straight to pod IPs (AWS ALB/NLB in IP mode, GKE container-native load balancing).
    #[arg(long, env = "SLIPWAY_INGRESS_CIDRS", value_delimiter = ',')]
    pub ingress_cidrs: Vec<String>,

    /// DNS servers preview pods may query on port 53 besides the cluster DNS pods
    /// (comma-separated CIDRs): NodeLocal DNSCache `169.254.20.10/32`, GKE Cloud DNS
    /// `169.254.169.254/32`.
    #[arg(long, env = "SLIPWAY_DNS_EGRESS_CIDRS", value_delimiter = ',')]
    pub dns_egress_cidrs: Vec<String>,

    /// Name of the TLS Secret of preview hosts (in each preview namespace). With it, URLs
    /// are https.
    #[arg(long, env = "SLIPWAY_PREVIEW_TLS_SECRET")]
    pub tls_secret: Option<String>,

    /// cert-manager ClusterIssuer that issues the TLS Secret (implies TLS; the Secret is
    /// named `preview-tls` unless `SLIPWAY_PREVIEW_TLS_SECRET` says otherwise).
    #[arg(long, env = "SLIPWAY_PREVIEW_CLUSTER_ISSUER")]
    pub cluster_issuer: Option<String>,

    /// Name of an image pull Secret the preview pods use (referenced, never read).
    #[arg(long, env = "SLIPWAY_IMAGE_PULL_SECRET")]
    pub image_pull_secret: Option<String>,

    /// Registry prefix builds push to; a built image under it is pulled through
    /// `SLIPWAY_REGISTRY_PULL` instead (minikube pushes to the in-cluster service and pulls
    /// `localhost:5000`).
    #[arg(long, env = "SLIPWAY_REGISTRY_PUSH")]
    pub registry_push: Option<String>,

    /// Registry prefix preview pods pull built images from.
    #[arg(long, env = "SLIPWAY_REGISTRY_PULL")]
    pub registry_pull: Option<String>,

    /// CPU of all pods of one preview together (ResourceQuota requests and limits).
    #[arg(long, env = "SLIPWAY_PREVIEW_QUOTA_CPU", default_value = "8")]
    pub quota_cpu: String,

    /// Memory of all pods of one preview together.
    #[arg(long, env = "SLIPWAY_PREVIEW_QUOTA_MEMORY", default_value = "8Gi")]
    pub quota_memory: String,

    /// Pods in one preview namespace.
    #[arg(long, env = "SLIPWAY_PREVIEW_QUOTA_PODS", default_value_t = 20)]
    pub quota_pods: u32,

    /// Storage all volume claims of one preview may request together (a compose file's named
    /// volumes, a chart's claims).
    #[arg(long, env = "SLIPWAY_PREVIEW_QUOTA_STORAGE", default_value = "10Gi")]
    pub quota_storage: String,

    /// Volume claims in one preview namespace.
    #[arg(long, env = "SLIPWAY_PREVIEW_QUOTA_CLAIMS", default_value_t = 5)]
    pub quota_claims: u32,

    /// CPU request of a container that asks for none.
    #[arg(long, env = "SLIPWAY_PREVIEW_DEFAULT_CPU", default_value = "100m")]
    pub default_cpu: String,

    /// Memory request of a container that asks for none.
    #[arg(long, env = "SLIPWAY_PREVIEW_DEFAULT_MEMORY", default_value = "128Mi")]
    pub default_memory: String,

    /// The most CPU one container may have (the LimitRange's default limit): a launch may ask
    /// for less, never more.
    #[arg(long, env = "SLIPWAY_PREVIEW_MAX_CPU", default_value = "1")]
    pub max_cpu: String,

    /// The most memory one container may have.
    #[arg(long, env = "SLIPWAY_PREVIEW_MAX_MEMORY", default_value = "1Gi")]
    pub max_memory: String,

    /// Pod Security Standard enforced on preview namespaces.
    #[arg(long, env = "SLIPWAY_POD_SECURITY_LEVEL", default_value = "baseline",
          value_parser = ["privileged", "baseline", "restricted"])]
    pub pod_security_level: String,

    /// CIDRs preview pods may reach besides cluster DNS (comma-separated; none by default).
    #[arg(long, env = "SLIPWAY_PREVIEW_EGRESS_CIDRS", value_delimiter = ',')]
    pub egress_cidrs: Vec<String>,

    /// Run preview containers with `runAsNonRoot` (images that run as root then fail to
    /// start).
    #[arg(long, env = "SLIPWAY_RUN_AS_NON_ROOT", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub run_as_non_root: bool,

    /// `sizeLimit` of the writable `/tmp` emptyDir a preview with a read-only root filesystem
    /// (`read_only_root_filesystem`) gets; past it the kubelet evicts the pod.
    #[arg(long, env = "SLIPWAY_PREVIEW_TMP_SIZE", default_value = "256Mi")]
    pub tmp_size: String,

    /// Size of each named volume of a compose preview (a PersistentVolumeClaim of the default
    /// StorageClass per volume and service).
    #[arg(long, env = "SLIPWAY_PREVIEW_VOLUME_SIZE", default_value = "1Gi")]
    pub volume_size: String,

    /// Seconds a rollout (and, with a cert-manager issuer, the preview's certificate) may take
    /// to become Available (Ready) before the attempt fails (transient).
    #[arg(long, env = "SLIPWAY_LAUNCH_DEADLINE_SECS", default_value_t = 300)]
    pub deadline_secs: u64,

    /// Seconds an image pull failure or crash loop must persist before the launch fails
    /// permanently with its reason.
    #[arg(long, env = "SLIPWAY_LAUNCH_TROUBLE_GRACE_SECS", default_value_t = 30)]
    pub trouble_grace_secs: u64,

    /// Milliseconds between status polls while waiting (watch events wake the wait sooner).
    #[arg(long, env = "SLIPWAY_LAUNCH_POLL_MS", default_value_t = 2_000)]
    pub poll_ms: u64,

    /// The Helm binary that renders `helm` previews' charts (`helm template`; a path, or a
    /// name looked up on `PATH`). The worker-launch image ships the pinned Helm at
    /// `/usr/local/bin/helm`.
    #[arg(long, env = "SLIPWAY_HELM_BINARY", default_value = "helm")]
    pub helm_binary: String,
}

/// Settings checked and converted once at start, shared by every job.
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub ingress_class: Option<String>,
    pub ingress_namespace: String,
    pub tls: Option<TlsParams>,
    pub image_pull_secret: Option<String>,
    pub registry_push: Option<String>,
    pub registry_pull: Option<String>,
    pub quota: QuotaParams,
    /// Per-container ceilings, in millicores and bytes.
    pub max_cpu_millis: u64,
    pub max_memory_bytes: u64,
    /// Requests of a container that asks for none.
    pub default_cpu_millis: u64,
    pub default_memory_bytes: u64,
    /// What all pods of a preview may request together.
    pub quota_cpu_millis: u64,
    pub quota_memory_bytes: u64,
    pub quota_storage_bytes: u64,
    pub pod_security_level: String,
    pub egress_cidrs: Vec<String>,
    pub dns_egress_cidrs: Vec<String>,
    pub ingress_cidrs: Vec<String>,
    pub run_as_non_root: bool,
    /// `sizeLimit` of a read-only preview's `/tmp` (a formatted quantity).
    pub tmp_size_limit: String,
    /// Claim size of a compose preview's named volume (a formatted quantity).
    pub volume_size: String,
    pub volume_bytes: u64,
    pub deadline: Duration,
    pub trouble_grace: Duration,
    pub poll: Duration,
    /// The Helm binary of `helm` previews.
    pub helm_binary: std::path::PathBuf,
}

fn parse_quantity(value: &str, unit: Unit, flag: &str) -> Result<u64, LaunchError> {
    quantity::parse(value, unit)
        .map_err(|e| LaunchError::Config(format!("{flag}: {value:?} is not a quantity: {e}")))
}

/// Trimmed, non-empty CIDRs; anything that is not `a.b.c.d/n` or an IPv6 `.../n` is refused
/// (the API server would refuse the NetworkPolicy at every launch).
fn cidrs(values: &[String], flag: &str) -> Result<Vec<String>, LaunchError> {
    values
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(|c| {
            let ok = c.split_once('/').is_some_and(|(addr, bits)| {
                let max = if addr.contains(':') { 128 } else { 32 };
                addr.parse::<std::net::IpAddr>().is_ok()
                    && bits.parse::<u8>().is_ok_and(|b| b <= max)
            });
            if ok {
                Ok(c.to_owned())
            } else {
                Err(LaunchError::Config(format!(
                    "{flag}: {c:?} is not a CIDR (e.g. 169.254.20.10/32)"
                )))
            }
        })
        .collect()
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl LaunchArgs {
    /// Checks the quantities and normalizes the optional names.
    pub fn settings(&self) -> Result<Settings, LaunchError> {
        let cpu = |v: &str, flag| parse_quantity(v, Unit::Millicores, flag);
        let mem = |v: &str, flag| parse_quantity(v, Unit::Bytes, flag);
        let max_cpu_millis = cpu(&self.max_cpu, "SLIPWAY_PREVIEW_MAX_CPU")?;
        let max_memory_bytes = mem(&self.max_memory, "SLIPWAY_PREVIEW_MAX_MEMORY")?;
        let default_cpu = cpu(&self.default_cpu, "SLIPWAY_PREVIEW_DEFAULT_CPU")?;
        let default_memory = mem(&self.default_memory, "SLIPWAY_PREVIEW_DEFAULT_MEMORY")?;
        let quota_cpu = cpu(&self.quota_cpu, "SLIPWAY_PREVIEW_QUOTA_CPU")?;
        let quota_memory = mem(&self.quota_memory, "SLIPWAY_PREVIEW_QUOTA_MEMORY")?;
        if default_cpu > max_cpu_millis || default_memory > max_memory_bytes {
            return Err(LaunchError::Config(
                "the default CPU and memory must not exceed the per-container maximum".into(),
            ));
        }
        if max_cpu_millis > quota_cpu || max_memory_bytes > quota_memory {
            return Err(LaunchError::Config(
                "the per-container maximum must fit in the preview quota".into(),
            ));
        }
        if self.deadline_secs == 0 {
            return Err(LaunchError::Config(
                "SLIPWAY_LAUNCH_DEADLINE_SECS must be at least 1".into(),
            ));
        }
        let tmp_bytes = mem(&self.tmp_size, "SLIPWAY_PREVIEW_TMP_SIZE")?;
        if tmp_bytes == 0 {
            return Err(LaunchError::Config(
                "SLIPWAY_PREVIEW_TMP_SIZE must be more than 0".into(),
            ));
        }
        let volume_bytes = mem(&self.volume_size, "SLIPWAY_PREVIEW_VOLUME_SIZE")?;
        if volume_bytes == 0 {
            return Err(LaunchError::Config(
                "SLIPWAY_PREVIEW_VOLUME_SIZE must be more than 0".into(),
            ));
        }
        let quota_storage = mem(&self.quota_storage, "SLIPWAY_PREVIEW_QUOTA_STORAGE")?;
        if volume_bytes > quota_storage {
            return Err(LaunchError::Config(
                "SLIPWAY_PREVIEW_VOLUME_SIZE must fit in SLIPWAY_PREVIEW_QUOTA_STORAGE".into(),
            ));
        }
        let gaps = preview::pod_security_gaps(&self.pod_security_level, self.run_as_non_root);
        if !gaps.is_empty() {
            return Err(LaunchError::Config(format!(
                "SLIPWAY_POD_SECURITY_LEVEL={} cannot admit preview pods without {}: set \
                 SLIPWAY_RUN_AS_NON_ROOT=true (and build images with a numeric non-root USER) or \
                 choose baseline; otherwise Kubernetes refuses every preview's pods",
                self.pod_security_level,
                gaps.join(", ")
            )));
        }
        let tls_secret = non_empty(&self.tls_secret);
        let issuer = non_empty(&self.cluster_issuer);
        let tls = match (tls_secret, issuer) {
            (None, None) => None,
            (secret, issuer) => Some(TlsParams {
                secret_name: secret.unwrap_or_else(|| "preview-tls".into()),
                cluster_issuer: issuer,
            }),
        };
        Ok(Settings {
            domain: self.preview_domain.trim().to_owned(),
            ingress_class: Some(self.ingress_class.trim().to_owned()).filter(|c| !c.is_empty()),
            ingress_namespace: self.ingress_namespace.clone(),
            tls,
            image_pull_secret: non_empty(&self.image_pull_secret),
            registry_push: non_empty(&self.registry_push),
            registry_pull: non_empty(&self.registry_pull),
            quota: QuotaParams {
                total: CpuMemory {
                    cpu: quantity::format_cpu(quota_cpu),
                    memory: quantity::format_memory(quota_memory),
                },
                max_pods: self.quota_pods.max(1),
                storage: quantity::format_memory(quota_storage),
                max_claims: self.quota_claims,
                default_request: CpuMemory {
                    cpu: quantity::format_cpu(default_cpu),
                    memory: quantity::format_memory(default_memory),
                },
                default_limit: CpuMemory {
                    cpu: quantity::format_cpu(max_cpu_millis),
                    memory: quantity::format_memory(max_memory_bytes),
                },
            },
            max_cpu_millis,
            max_memory_bytes,
            default_cpu_millis: default_cpu,
            default_memory_bytes: default_memory,
            quota_cpu_millis: quota_cpu,
            quota_memory_bytes: quota_memory,
            quota_storage_bytes: quota_storage,
            pod_security_level: self.pod_security_level.clone(),
            egress_cidrs: cidrs(&self.egress_cidrs, "SLIPWAY_PREVIEW_EGRESS_CIDRS")?,
            dns_egress_cidrs: cidrs(&self.dns_egress_cidrs, "SLIPWAY_DNS_EGRESS_CIDRS")?,
            ingress_cidrs: cidrs(&self.ingress_cidrs, "SLIPWAY_INGRESS_CIDRS")?,
            run_as_non_root: self.run_as_non_root,
            tmp_size_limit: quantity::format_memory(tmp_bytes),
            volume_size: quantity::format_memory(volume_bytes),
            volume_bytes,
            deadline: Duration::from_secs(self.deadline_secs),
            trouble_grace: Duration::from_secs(self.trouble_grace_secs),
            poll: Duration::from_millis(self.poll_ms.max(50)),
            helm_binary: match self.helm_binary.trim() {
                "" => {
                    return Err(LaunchError::Config(
                        "SLIPWAY_HELM_BINARY must name the Helm binary".into(),
                    ));
                }
                b => b.into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, clap::Error> {
        let mut args = vec!["slipway-worker-launch", "--database-url", "postgres://h/d"];
        args.extend_from_slice(extra);
        Config::try_parse_from(args)
    }

    #[test]
    fn defaults_give_working_settings() {
        let s = parse(&[]).unwrap().launch.settings().unwrap();
        assert_eq!(s.domain, "preview.localhost");
        assert_eq!(s.ingress_class.as_deref(), Some("nginx"));
        assert_eq!(s.ingress_namespace, "ingress-nginx");
        assert!(s.dns_egress_cidrs.is_empty() && s.ingress_cidrs.is_empty());
        assert_eq!(s.tls, None);
        assert_eq!(s.pod_security_level, "baseline");
        assert_eq!(s.quota.total.cpu, "8");
        assert_eq!(s.quota.default_limit.memory, "1Gi");
        assert_eq!(s.quota.default_request.cpu, "100m");
        assert_eq!((s.max_cpu_millis, s.max_memory_bytes), (1000, 1 << 30));
        assert!(s.egress_cidrs.is_empty());
        assert_eq!(s.deadline, Duration::from_secs(300));
        assert_eq!(s.tmp_size_limit, "256Mi");
        assert_eq!(s.helm_binary, std::path::PathBuf::from("helm"));
        assert_eq!(s.volume_size, "1Gi");
        let e = parse(&["--volume-size", "0"])
            .unwrap()
            .launch
            .settings()
            .unwrap_err();
        assert!(e.to_string().contains("SLIPWAY_PREVIEW_VOLUME_SIZE"), "{e}");
    }

    #[test]
    fn the_tmp_size_is_a_positive_quantity() {
        let s = parse(&["--tmp-size", "1Gi"])
            .unwrap()
            .launch
            .settings()
            .unwrap();
        assert_eq!(s.tmp_size_limit, "1Gi");
        for bad in ["lots", "0", "1.5.2Mi"] {
            let e = parse(&["--tmp-size", bad])
                .unwrap()
                .launch
                .settings()
                .unwrap_err();
            assert!(
                e.to_string().contains("SLIPWAY_PREVIEW_TMP_SIZE"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn flags_shape_the_settings() {
        let s = parse(&[
            "--ingress-class",
            "",
            "--cluster-issuer",
            "letsencrypt",
            "--egress-cidrs",
            "10.0.0.0/8, 192.168.0.0/16",
            "--pod-security-level",
            "restricted",
            "--run-as-non-root",
            "true",
            "--dns-egress-cidrs",
            "169.254.20.10/32,169.254.169.254/32",
            "--ingress-cidrs",
            "10.0.0.0/16",
        ])
        .unwrap()
        .launch
        .settings()
        .unwrap();
        assert_eq!(s.ingress_class, None);
        assert_eq!(
            s.tls,
            Some(TlsParams {
                secret_name: "preview-tls".into(),
                cluster_issuer: Some("letsencrypt".into())
            })
        );
        assert_eq!(s.egress_cidrs, ["10.0.0.0/8", "192.168.0.0/16"]);
        assert_eq!(s.pod_security_level, "restricted");
        assert_eq!(
            s.dns_egress_cidrs,
            ["169.254.20.10/32", "169.254.169.254/32"]
        );
        assert_eq!(s.ingress_cidrs, ["10.0.0.0/16"]);
        assert!(parse(&["--pod-security-level", "lax"]).is_err());
    }

    #[test]
    fn a_pod_security_level_the_previews_cannot_meet_is_refused() {
        // restricted refuses pods that may run as root: every launch would be refused.
        let e = parse(&["--pod-security-level", "restricted"])
            .unwrap()
            .launch
            .settings()
            .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("SLIPWAY_POD_SECURITY_LEVEL=restricted"), "{m}");
        assert!(m.contains("SLIPWAY_RUN_AS_NON_ROOT=true"), "{m}");
        for ok in [
            vec!["--pod-security-level", "baseline"],
            vec!["--pod-security-level", "privileged"],
            vec![
                "--pod-security-level",
                "restricted",
                "--run-as-non-root",
                "true",
            ],
        ] {
            assert!(parse(&ok).unwrap().launch.settings().is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        for bad in [
            vec!["--max-cpu", "lots"],
            vec!["--default-cpu", "2", "--max-cpu", "1"],
            vec!["--max-memory", "8Gi", "--quota-memory", "4Gi"],
            vec!["--deadline-secs", "0"],
            vec!["--dns-egress-cidrs", "169.254.20.10"],
            vec!["--ingress-cidrs", "10.0.0.0/33"],
            vec!["--helm-binary", " "],
        ] {
            let cfg = parse(&bad).unwrap();
            assert!(cfg.launch.settings().is_err(), "{bad:?}");
        }
    }
}
