//! `kube-sim`: serves the simulated Kubernetes API on loopback and writes a kubeconfig for it.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube_sim::{Delays, FaultRule, KubeSim, Override, PodScript};

/// Kubernetes API simulator for Slipway's tests and demo.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one; the kubeconfig has the real port).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "kube-sim.kubeconfig")]
    kubeconfig_out: std::path::PathBuf,
    /// Pending -> Running delay in milliseconds.
    #[arg(long, default_value_t = 300)]
    pod_start_ms: u64,
    /// Duration of the default BuildKit build output in milliseconds.
    #[arg(long, default_value_t = 3000)]
    build_ms: u64,
    /// Multiplier for durations from object specs (grace periods, deadlines, TTLs).
    #[arg(long, default_value_t = 0.1)]
    time_scale: f64,
    /// Interval of watch bookmarks in milliseconds.
    #[arg(long, default_value_t = 5000)]
    bookmark_ms: u64,
    /// Shorthand for all delays zero.
    #[arg(long)]
    zero_delays: bool,
    /// Events kept for watch replay.
    #[arg(long, default_value_t = 20_000)]
    history: usize,
    /// Make the next N BuildKit pods fail (exit 1, "failed to solve").
    #[arg(long, default_value_t = 0)]
    fail_next_builds: u32,
    /// A fault rule as JSON (repeatable), e.g. '{"verb":"list","times":2,"action":{"type":"status","code":503}}'.
    #[arg(long)]
    fault: Vec<String>,
    /// A pod override as JSON (repeatable), e.g.
    /// '{"imageContains":"app","count":1,"script":{"outcome":{"type":"oomKilled"}}}'.
    #[arg(long = "override")]
    overrides: Vec<String>,
    /// A namespace to create at start (repeatable).
    #[arg(long)]
    namespace: Vec<String>,
    /// The USER of images whose reference contains CONTAINS, as CONTAINS=USER (repeatable;
    /// images run as root otherwise, `nonroot` images as 65532).
    #[arg(long = "image-user", value_name = "CONTAINS=USER")]
    image_users: Vec<String>,
    /// Model cert-manager issuing per-Ingress certificates through ACME HTTP-01, with the
    /// ingress controller (ingress-nginx) in this namespace. Off by default.
    #[arg(long, value_name = "NAMESPACE")]
    cert_manager_ingress_namespace: Option<String>,
    /// A label a mutating admission policy sets on every namespace, as KEY=VALUE (repeatable),
    /// e.g. pod-security.kubernetes.io/enforce=restricted.
    #[arg(long = "force-namespace-label", value_name = "KEY=VALUE")]
    forced_namespace_labels: Vec<String>,
    /// The Kubernetes version to play, e.g. 1.29: `/version` reports it and writes lose the
    /// fields that version does not know (with a `Warning` header).
    #[arg(long, default_value = "1.33")]
    kube_version: kube_sim::KubeVersion,
    /// Rotate a container's current log file at this size, as the kubelet does at
    /// `containerLogMaxSize` (0: never). Later log requests see only the current file.
    #[arg(long, default_value_t = kube_sim::logs::DEFAULT_ROTATE_BYTES)]
    log_rotate_bytes: usize,
    /// A CA certificate (PEM) the simulated cluster's nodes trust besides the usual roots:
    /// containers run on the host (the source Job) get it in `GIT_SSL_CAINFO`.
    #[arg(long, value_name = "PEM")]
    trusted_ca: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let delays = if args.zero_delays {
        Delays::zero()
    } else {
        Delays {
            pod_start: Duration::from_millis(args.pod_start_ms),
            build: Duration::from_millis(args.build_ms),
            time_scale: args.time_scale,
            bookmark_interval: Duration::from_millis(args.bookmark_ms.max(50)),
        }
    };
    let mut builder = KubeSim::builder();
    for ns in &args.namespace {
        builder = builder.namespace(ns);
    }
    for rule in &args.image_users {
        let (contains, user) = rule
            .split_once('=')
            .with_context(|| format!("--image-user {rule}: expected CONTAINS=USER"))?;
        builder = builder.image_user(contains, user);
    }
    if let Some(ca) = &args.trusted_ca {
        builder = builder.trusted_ca(ca);
    }
    if let Some(ns) = &args.cert_manager_ingress_namespace {
        builder = builder.cert_manager(kube_sim::CertManagerModel::with_ingress_nginx(ns));
    }
    for label in &args.forced_namespace_labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--force-namespace-label {label}: expected KEY=VALUE"))?;
        builder = builder.force_namespace_label(k, v);
    }
    let sim = builder
        .port(args.port)
        .delays(delays)
        .history_limit(args.history)
        .kube_version(args.kube_version)
        .log_rotate_bytes(args.log_rotate_bytes)
        .kubeconfig_path(&args.kubeconfig_out)
        .start()
        .await
        .context("starting kube-sim")?;
    if args.fail_next_builds > 0 {
        sim.push_override(Override {
            image_contains: "buildkit".into(),
            count: args.fail_next_builds,
            script: PodScript::exit(1)
                .log("#1 [internal] load build definition from Dockerfile")
                .log("error: failed to solve: process \"/bin/sh -c cargo build\" did not complete successfully: exit code: 101")
                .message("failed to solve"),
        });
    }
    for f in &args.fault {
        sim.faults().add(
            serde_json::from_str::<FaultRule>(f).with_context(|| format!("parsing --fault {f}"))?,
        );
    }
    for o in &args.overrides {
        sim.push_override(
            serde_json::from_str::<Override>(o)
                .with_context(|| format!("parsing --override {o}"))?,
        );
    }
    println!(
        "kube-sim listening on {} (kubeconfig: {})",
        sim.url(),
        args.kubeconfig_out.display()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    sim.shutdown().await;
    Ok(())
}
