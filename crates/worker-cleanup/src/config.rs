//! Configuration of the cleanup worker: the common and runtime flags every worker takes, plus
//! how long teardowns may wait and what the sweeps keep. Every flag has a `SLIPWAY_*` variable;
//! durations are whole seconds (or hours/days where that is the natural unit).

use clap::{Args, Parser};
use slipway_shared::config::CommonArgs;
use slipway_shared::runtime::WorkerArgs;
use std::time::Duration;

/// `slipway-worker-cleanup` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "slipway-worker-cleanup",
    about = "Tears previews down, collects finished build Jobs and repairs drift between \
             Postgres, Redis and the cluster."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub cleanup: CleanupArgs,
}

/// Teardown deadlines and sweep policies.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Namespace of the build Jobs (the build worker's `SLIPWAY_BUILD_NAMESPACE`).
    #[arg(
        long,
        env = "SLIPWAY_BUILD_NAMESPACE",
        default_value = "slipway-builds"
    )]
    pub build_namespace: String,

    /// Seconds a torn-down namespace may stay terminating before the teardown attempt fails
    /// (and is retried) saying what holds it.
    #[arg(
        long,
        env = "SLIPWAY_NAMESPACE_DELETE_DEADLINE_SECS",
        default_value_t = 120
    )]
    pub namespace_delete_deadline_secs: u64,

    /// Seconds between sweeps (0 turns the sweeps off; teardowns still run).
    #[arg(long, env = "SLIPWAY_SWEEP_INTERVAL_SECS", default_value_t = 60.0)]
    pub sweep_interval_secs: f64,

    /// Time to live of a preview whose launch set none, counted from its last deploy.
    #[arg(
        long,
        env = "SLIPWAY_PREVIEW_DEFAULT_TTL_HOURS",
        default_value_t = 72.0
    )]
    pub preview_default_ttl_hours: f64,

    /// A preview not redeployed for this many hours is torn down whatever its TTL (0: off).
    #[arg(long, env = "SLIPWAY_PREVIEW_IDLE_HOURS", default_value_t = 0.0)]
    pub preview_idle_hours: f64,

    /// Seconds a Slipway-labelled namespace, Job or pod with no live record in Postgres is
    /// left alone before it is deleted (a launch records its preview just after creating).
    #[arg(long, env = "SLIPWAY_ORPHAN_GRACE_SECS", default_value_t = 600.0)]
    pub orphan_grace_secs: f64,

    /// Seconds after which a build Job is deleted even if its job never finished (reported).
    #[arg(long, env = "SLIPWAY_BUILD_RETENTION_SECS", default_value_t = 86_400.0)]
    pub build_retention_secs: f64,

    /// Days a finished job's logs are kept (0: forever).
    #[arg(long, env = "SLIPWAY_LOG_RETENTION_DAYS", default_value_t = 30.0)]
    pub log_retention_days: f64,

    /// Seconds an unfinished job's row must be unchanged before queue repair checks that
    /// Redis still holds it (and pushes it again if not).
    #[arg(long, env = "SLIPWAY_QUEUE_REPAIR_AFTER_SECS", default_value_t = 300.0)]
    pub queue_repair_after_secs: f64,

    /// This replica's name in the sweep journal (default: `$HOSTNAME`, the pod name, with the
    /// process id and a random suffix).
    #[arg(long, env = "SLIPWAY_REPLICA_NAME")]
    pub replica_name: Option<String>,
}

/// Sweep policies as durations, checked once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub build_namespace: String,
    pub namespace_delete_deadline: Duration,
    /// `None`: sweeps are off.
    pub sweep_interval: Option<Duration>,
    pub default_ttl: Duration,
    pub idle: Option<Duration>,
    pub orphan_grace: Duration,
    pub build_retention: Duration,
    /// `None`: logs are kept forever.
    pub log_retention: Option<Duration>,
    pub queue_repair_after: Duration,
    /// Poll period while waiting for a namespace to go.
    pub poll: Duration,
}

/// A non-negative, finite number of seconds.
fn seconds(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{name} must be a non-negative number, got {v}"))
}

/// `Some` when positive: zero turns the policy off.
fn optional(name: &str, v: f64) -> Result<Option<Duration>, String> {
    let d = seconds(name, v)?;
    Ok((!d.is_zero()).then_some(d))
}

impl CleanupArgs {
    pub fn settings(&self) -> Result<Settings, String> {
        if !slipway_core::naming::is_dns1123_label(&self.build_namespace) {
            return Err(format!(
                "SLIPWAY_BUILD_NAMESPACE {:?} is not a valid namespace name",
                self.build_namespace
            ));
        }
        Ok(Settings {
            build_namespace: self.build_namespace.clone(),
            namespace_delete_deadline: Duration::from_secs(
                self.namespace_delete_deadline_secs.max(1),
            ),
            sweep_interval: optional("SLIPWAY_SWEEP_INTERVAL_SECS", self.sweep_interval_secs)?,
            default_ttl: seconds(
                "SLIPWAY_PREVIEW_DEFAULT_TTL_HOURS",
                self.preview_default_ttl_hours * 3600.0,
            )?,
            idle: optional(
                "SLIPWAY_PREVIEW_IDLE_HOURS",
                self.preview_idle_hours * 3600.0,
            )?,
            orphan_grace: seconds("SLIPWAY_ORPHAN_GRACE_SECS", self.orphan_grace_secs)?,
            build_retention: seconds("SLIPWAY_BUILD_RETENTION_SECS", self.build_retention_secs)?,
            log_retention: optional(
                "SLIPWAY_LOG_RETENTION_DAYS",
                self.log_retention_days * 86_400.0,
            )?,
            queue_repair_after: seconds(
                "SLIPWAY_QUEUE_REPAIR_AFTER_SECS",
                self.queue_repair_after_secs,
            )?,
            poll: Duration::from_millis(200),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["slipway-worker-cleanup", "--database-url", "postgres://x/y"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("flags")
    }

    #[test]
    fn defaults_are_usable() {
        let s = parse(&[]).cleanup.settings().unwrap();
        assert_eq!(s.build_namespace, "slipway-builds");
        assert_eq!(s.sweep_interval, Some(Duration::from_secs(60)));
        assert_eq!(s.default_ttl, Duration::from_secs(72 * 3600));
        assert_eq!(s.idle, None);
        assert_eq!(s.log_retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(s.orphan_grace, Duration::from_secs(600));
    }

    #[test]
    fn zero_turns_policies_off_and_bad_values_are_refused() {
        let s = parse(&["--sweep-interval-secs", "0", "--log-retention-days", "0"])
            .cleanup
            .settings()
            .unwrap();
        assert_eq!(s.sweep_interval, None);
        assert_eq!(s.log_retention, None);
        let e = parse(&["--orphan-grace-secs=-1"])
            .cleanup
            .settings()
            .unwrap_err();
        assert!(e.contains("SLIPWAY_ORPHAN_GRACE_SECS"), "{e}");
        let e = parse(&["--build-namespace", "Not_A_Name"])
            .cleanup
            .settings()
            .unwrap_err();
        assert!(e.contains("not a valid namespace"), "{e}");
    }
}
