//! What simulated pods do: the scripting types, the simulator's delays, and the default
//! behaviour (BuildKit pods run their command as the BuildKit image would, see
//! [`crate::buildkit`]; other pods run until deleted).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Timing knobs. Durations from object specs (grace periods, `activeDeadlineSeconds`,
/// `ttlSecondsAfterFinished`, `progressDeadlineSeconds`, Job retry backoff) are multiplied by
/// `time_scale`, so tests can use realistic specs and still finish quickly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delays {
    /// Pending (ContainerCreating) -> Running.
    pub pod_start: Duration,
    /// Total duration of the default BuildKit build output.
    pub build: Duration,
    /// Multiplier for durations taken from object specs.
    pub time_scale: f64,
    /// Interval of watch BOOKMARK events.
    pub bookmark_interval: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Self {
            pod_start: Duration::from_millis(300),
            build: Duration::from_secs(3),
            time_scale: 0.1,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

impl Delays {
    /// No delays at all (benchmarks, fast tests); spec durations scaled by 0.01.
    #[must_use]
    pub fn zero() -> Self {
        Self {
            pod_start: Duration::ZERO,
            build: Duration::ZERO,
            time_scale: 0.01,
            bookmark_interval: Duration::from_secs(1),
        }
    }

    /// Scales a duration in seconds from an object spec to wall time.
    #[must_use]
    pub fn scaled(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.time_scale).max(0.0))
    }
}

/// What a test's script sees of a pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `batch.kubernetes.io/job-name` label, for Job pods.
    pub job_name: Option<String>,
    /// First container's image.
    pub image: String,
    /// First container's args.
    pub args: Vec<String>,
    /// First container's command.
    pub command: Vec<String>,
    /// Number of earlier failed pods of the same Job (0 for the first attempt).
    pub attempt: u32,
    /// The whole pod object.
    pub object: Value,
}

impl PodInfo {
    /// Extracts the info from a pod object.
    #[must_use]
    pub fn from_pod(pod: &Value, attempt: u32) -> Self {
        let strs = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let labels: BTreeMap<String, String> = pod
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            namespace: pod
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            name: pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            job_name: labels.get("batch.kubernetes.io/job-name").cloned(),
            labels,
            image: pod
                .pointer("/spec/containers/0/image")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            args: strs(pod.pointer("/spec/containers/0/args")),
            command: strs(pod.pointer("/spec/containers/0/command")),
            attempt,
            object: pod.clone(),
        }
    }
}

impl PodInfo {
    /// Whether the first container can write at `path`, as the container runtime mounts its
    /// filesystems: the root filesystem is read-only when the container's (effective)
    /// `securityContext.readOnlyRootFilesystem` is true (the kubelet passes it to the runtime
    /// as the CRI `readonly_rootfs`: kubernetes `pkg/kubelet/kuberuntime/security_context.go`,
    /// `convertToRuntimeSecurityContext`); a volume mounted at or above `path` decides instead,
    /// writable unless the mount says `readOnly`. Scripts use it to play an app that writes
    /// files (a pid file, a cache) and dies with `Read-only file system` when it cannot.
    #[must_use]
    pub fn writable(&self, path: &str) -> bool {
        let container = self.object.pointer("/spec/containers/0");
        let mounts = container
            .and_then(|c| c.get("volumeMounts"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // The deepest mount containing the path wins, as in the mount table.
        let covering = mounts
            .iter()
            .filter_map(|m| {
                let at = m.get("mountPath")?.as_str()?.trim_end_matches('/');
                let inside = path == at || path.starts_with(&format!("{at}/")) || at.is_empty();
                inside.then_some((at.len(), m))
            })
            .max_by_key(|(len, _)| *len);
        if let Some((_, m)) = covering {
            return !m.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
        }
        let read_only = container
            .and_then(|c| c.pointer("/securityContext/readOnlyRootFilesystem"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        !read_only
    }
}

/// How a pod ends (or does not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Outcome {
    /// The container exits with this code (0: Completed, otherwise Error).
    Exit {
        /// Exit code.
        code: i32,
    },
    /// Killed by the OOM killer (exit 137, reason OOMKilled).
    OomKilled,
    /// Runs (Ready) until deleted.
    RunForever,
    /// Image cannot be pulled: waits in ErrImagePull/ImagePullBackOff.
    ImagePullBackOff,
    /// Starts, fails, and is restarted with back-off: waiting CrashLoopBackOff.
    CrashLoopBackOff,
    /// Never scheduled: Pending with PodScheduled=False reason Unschedulable.
    Unschedulable,
}

/// One log line, printed `after` the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Delay before the line.
    #[serde(default, with = "millis")]
    pub after: Duration,
    /// The text (no trailing newline).
    pub text: String,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A pod's scripted life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodScript {
    /// Time in ContainerCreating before Running.
    #[serde(default, with = "millis")]
    pub start_delay: Duration,
    /// Log lines of the first container.
    #[serde(default)]
    pub logs: Vec<LogLine>,
    /// How it ends.
    pub outcome: Outcome,
    /// What the container wrote to its `terminationMessagePath`. The kubelet makes the
    /// termination message of it (or of the log tail, see
    /// [`crate::buildkit::termination_message`]).
    #[serde(default)]
    pub termination_message: Option<String>,
    /// Run the BuildKit container contract with this fault instead of the fields above: the
    /// pod's command decides what happens ([`crate::buildkit::run`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildkit: Option<crate::buildkit::BuildFault>,
    /// Run the first container's `sh -c` script for real, with the host's `/bin/sh` and `git`,
    /// instead of `logs` and `outcome` ([`crate::hostrun`]): its output becomes the log and its
    /// exit status the container's. Set by [`crate::buildkit::run`] for a BuildKit-image
    /// script that is not the build wrapper (the source Job); never taken from JSON.
    #[serde(skip)]
    pub host_shell: bool,
}

impl PodScript {
    /// Exits 0 with no output.
    #[must_use]
    pub fn succeed() -> Self {
        Self::exit(0)
    }

    /// Exits with `code`.
    #[must_use]
    pub fn exit(code: i32) -> Self {
        Self {
            start_delay: Duration::ZERO,
            logs: Vec::new(),
            outcome: Outcome::Exit { code },
            termination_message: None,
            buildkit: None,
            host_shell: false,
        }
    }

    /// Runs the pod's command as the BuildKit image would, with `fault` (resolved when the pod
    /// starts; for a script built from a [`PodInfo`], [`crate::buildkit::run`] does it at once).
    #[must_use]
    pub fn buildkit(fault: crate::buildkit::BuildFault) -> Self {
        Self {
            buildkit: Some(fault),
            ..Self::succeed()
        }
    }

    /// Ends with the given outcome.
    #[must_use]
    pub fn outcome(outcome: Outcome) -> Self {
        Self {
            outcome,
            ..Self::succeed()
        }
    }

    /// Runs until deleted.
    #[must_use]
    pub fn run_forever() -> Self {
        Self::outcome(Outcome::RunForever)
    }

    /// Adds a log line printed immediately after the previous one.
    #[must_use]
    pub fn log(self, text: impl Into<String>) -> Self {
        self.log_after(Duration::ZERO, text)
    }

    /// Adds a log line printed `after` the previous one.
    #[must_use]
    pub fn log_after(mut self, after: Duration, text: impl Into<String>) -> Self {
        self.logs.push(LogLine {
            after,
            text: text.into(),
        });
        self
    }

    /// Sets what the container writes to its termination-message file.
    #[must_use]
    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.termination_message = Some(m.into());
        self
    }

    /// Sets the time spent in ContainerCreating.
    #[must_use]
    pub fn start_after(mut self, d: Duration) -> Self {
        self.start_delay = d;
        self
    }

    /// The simulator's default script for a pod: the BuildKit image's contract for a `buildkit`
    /// image ([`crate::buildkit::run`]: the build wrapper through the model, any other `sh -c`
    /// script of a `moby/buildkit` image on the host), else Ready until deleted.
    #[must_use]
    pub fn default_for(pod: &PodInfo, delays: &Delays) -> Self {
        if pod.image.contains("buildkit") {
            crate::buildkit::run(pod, delays, crate::buildkit::BuildFault::None)
        } else {
            Self::run_forever()
                .start_after(delays.pod_start)
                .log(format!("{} started", pod.name))
        }
    }
}

/// A test's script: decides each pod's life from its info.
pub type Script = Arc<dyn Fn(&PodInfo) -> PodScript + Send + Sync>;

/// The deterministic fake digest of a build: sha256 over the container args.
#[must_use]
pub fn build_digest(args: &[String]) -> String {
    let mut h = Sha256::new();
    for a in args {
        h.update(a.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// A one-off override queued through the admin endpoint or [`crate::KubeSim::push_override`]:
/// the next `count` pods whose image contains `image_contains` follow `script` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// Substring of the first container's image to match ("" matches every pod).
    #[serde(default)]
    pub image_contains: String,
    /// How many pods it applies to.
    #[serde(default = "one")]
    pub count: u32,
    /// What those pods do.
    pub script: PodScript,
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: Value) -> PodInfo {
        PodInfo::from_pod(&json!({"spec": {"containers": [container]}}), 0)
    }

    #[test]
    fn a_read_only_root_is_writable_only_under_its_writable_mounts() {
        let ro = pod(
            json!({"name": "app", "securityContext": {"readOnlyRootFilesystem": true},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                {"name": "cfg", "mountPath": "/etc/app", "readOnly": true},
                {"name": "cache", "mountPath": "/etc/app/cache/"}]}),
        );
        assert!(ro.writable("/tmp"));
        assert!(ro.writable("/tmp/app.pid"));
        assert!(!ro.writable("/tmpfile"));
        assert!(!ro.writable("/var/cache/nginx"));
        assert!(!ro.writable("/etc/app/config.yaml"));
        // The deepest mount decides.
        assert!(ro.writable("/etc/app/cache/x"));

        let rw = pod(json!({"name": "app",
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app", "readOnly": true}]}));
        assert!(rw.writable("/var/cache/nginx"));
        assert!(!rw.writable("/etc/app/x"));
        assert!(pod(json!({"name": "app"})).writable("/"));
    }
}
