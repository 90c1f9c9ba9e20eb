//! Reading how a build pod is doing from its status (and its Job's), and classifying how it
//! ended: a build that failed on its own (the user's Dockerfile: permanent) versus an
//! infrastructure failure (OOMKilled, Evicted, deadline, the builder image not pulled, killed
//! by a signal: transient). Pure functions over `k8s-openapi` objects, pinned by unit tests.
//!
//! buildctl exits 1 for every error (`cmd/buildctl/main.go` `handleErr`), so an exit code says
//! nothing about who failed: the log tail does. buildctl's last words are `error: <cause>`;
//! [`infrastructure_failure`] reads them (and `buildctl-daemonless.sh`'s "could not connect"
//! when buildkitd never started) with strings taken from BuildKit v0.23 and the containerd and
//! git code it wraps.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Where a build pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodProgress {
    /// Not started yet (scheduling, pulling, creating the container).
    Pending,
    /// The container cannot start for a reason that will not fix itself soon (the builder
    /// image cannot be pulled, the container config is broken, it crash-loops).
    Stuck { reason: String, message: String },
    /// The container runs: its log can be followed.
    Running,
    /// The pod ended.
    Ended(PodEnd),
}

/// How a pod ended, as its status tells it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodEnd {
    /// The container's exit code, when it terminated (an evicted pod may have none).
    pub exit_code: Option<i32>,
    /// The container's termination reason (`Completed`, `Error`, `OOMKilled`), else the pod's
    /// (`Evicted`, `DeadlineExceeded`).
    pub reason: Option<String>,
    /// The container's termination message (the build metadata on success).
    pub message: Option<String>,
    /// The pod's own status reason (`Evicted`, `DeadlineExceeded`, `Shutdown`...), if any.
    pub pod_reason: Option<String>,
    /// The pod's status message, if any.
    pub pod_message: Option<String>,
}

/// The waiting reasons that mean the container will not start without outside help.
const STUCK_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
];

fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

/// Whether the kubelet is still setting the pod up for the named container (mounting its
/// volumes, pulling its image): the container waits with reason `ContainerCreating`.
pub fn is_creating(pod: &Pod, container: &str) -> bool {
    container_status(pod, container)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .is_some_and(|w| w.reason.as_deref() == Some("ContainerCreating"))
}

/// Where the pod is, judged by the named container and the pod phase.
pub fn pod_progress(pod: &Pod, container: &str) -> PodProgress {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let pod_reason = status.and_then(|s| s.reason.clone());
    let pod_message = status.and_then(|s| s.message.clone());
    let cs = container_status(pod, container);
    let state = cs.and_then(|c| c.state.as_ref());
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        return PodProgress::Ended(PodEnd {
            exit_code: Some(t.exit_code),
            reason: t.reason.clone().or_else(|| pod_reason.clone()),
            message: t.message.clone().filter(|m| !m.is_empty()),
            pod_reason,
            pod_message,
        });
    }
    if phase == "Succeeded" || phase == "Failed" {
        return PodProgress::Ended(PodEnd {
            exit_code: None,
            reason: pod_reason.clone(),
            message: None,
            pod_reason,
            pod_message,
        });
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        return PodProgress::Running;
    }
    if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = w.reason.clone().unwrap_or_default();
        if STUCK_WAITING.contains(&reason.as_str()) {
            return PodProgress::Stuck {
                reason,
                message: w.message.clone().unwrap_or_default(),
            };
        }
    }
    // Unschedulable stays Pending: capacity may come (autoscaler, other builds ending); the
    // Job's activeDeadlineSeconds bounds the wait.
    PodProgress::Pending
}

/// The reason a Job failed (`DeadlineExceeded`, `BackoffLimitExceeded`...), when it did.
pub fn job_failure(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "FailureTarget") && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| "Failed".into()),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Whether a Job has finished (complete or failed), so it no longer holds a build slot.
pub fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// The verdict on an ended build pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildVerdict {
    /// Exit 0: the termination message should hold the build metadata.
    Succeeded { message: String },
    /// The build itself failed (the user's Dockerfile, a missing commit): retrying will not
    /// help.
    BuildFailed { exit_code: i32 },
    /// The infrastructure failed the build: worth another attempt.
    Infrastructure { reason: String },
}

/// Classify an ended pod; `log_tail` is the end of the container's log (the termination
/// message, which `FallbackToLogsOnError` fills with the log tail, is read too).
pub fn classify_end(end: &PodEnd, log_tail: &[String]) -> BuildVerdict {
    let reason = end.reason.as_deref().unwrap_or("");
    let pod_reason = end.pod_reason.as_deref().unwrap_or("");
    for infra in [
        "OOMKilled",
        "Evicted",
        "DeadlineExceeded",
        "Shutdown",
        "NodeLost",
    ] {
        if reason == infra || pod_reason == infra {
            let detail = end
                .pod_message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let what = match infra {
                "OOMKilled" => "the builder ran out of memory (OOMKilled)".to_owned(),
                "Evicted" => format!("the build pod was evicted{detail}"),
                "DeadlineExceeded" => {
                    format!("the build exceeded its deadline (DeadlineExceeded){detail}")
                }
                other => format!("the build pod was stopped ({other}){detail}"),
            };
            return BuildVerdict::Infrastructure { reason: what };
        }
    }
    match end.exit_code {
        Some(0) => BuildVerdict::Succeeded {
            message: end.message.clone().unwrap_or_default(),
        },
        // Killed by a signal (128 + n): the node or the runtime stopped it, not the build.
        Some(code) if code > 128 => BuildVerdict::Infrastructure {
            reason: format!(
                "the builder was killed by signal {} (exit code {code}{})",
                code - 128,
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(", {reason}")
                }
            ),
        },
        Some(code) => {
            let message: Vec<String> = end
                .message
                .as_deref()
                .map(|m| m.lines().map(str::to_owned).collect())
                .unwrap_or_default();
            match infrastructure_failure(log_tail).or_else(|| infrastructure_failure(&message)) {
                Some(reason) => BuildVerdict::Infrastructure { reason },
                None => BuildVerdict::BuildFailed { exit_code: code },
            }
        }
        None => BuildVerdict::Infrastructure {
            reason: format!(
                "the build pod ended without a container exit status{}",
                if pod_reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({pod_reason})")
                }
            ),
        },
    }
}

/// Whether a failed build's log blames the infrastructure (a registry's 5xx or 429, a push
/// refused for credentials that may have expired, the network, a git host that did not answer,
/// buildkitd not starting), and how to say so. `None` means the build failed on its own: the
/// user's `RUN` step, a missing base image or commit, a Dockerfile error, or anything this
/// does not recognise (retrying a build that fails the same way every time only wastes the
/// cluster).
fn infrastructure_failure(log_tail: &[String]) -> Option<String> {
    // `buildctl-daemonless.sh` when buildkitd never answered on its socket.
    if let Some(i) = log_tail
        .iter()
        .position(|l| l.starts_with("could not connect to ") && l.contains(" trials"))
    {
        let cause = log_tail[i + 1..]
            .iter()
            .map(|l| l.trim())
            .find(|l| !l.is_empty() && !l.starts_with("=========="))
            .unwrap_or("no daemon log");
        return Some(format!("BuildKit's daemon did not start: {cause}"));
    }
    // buildctl's `handleErr`: `error: <cause>`, possibly followed by more lines (git stderr).
    let start = log_tail.iter().rposition(|l| l.starts_with("error: "))?;
    let error = log_tail[start..].join("\n");
    let first = log_tail[start].trim_start_matches("error: ").trim();
    let lower = error.to_ascii_lowercase();
    // The user's own step failed (a RUN exiting non-zero): never the infrastructure's fault,
    // whatever the step printed.
    if lower.contains("did not complete successfully") {
        return None;
    }
    if let Some((method, status)) = unexpected_status(&error) {
        let pushing = lower.contains("failed to push");
        let transient =
            status >= 500 || status == 429 || (pushing && (status == 401 || status == 403));
        return transient.then(|| {
            let what = match status {
                429 => "the registry rate-limited the build".to_owned(),
                401 | 403 => {
                    "the registry refused the push credentials (expired token?)".to_owned()
                }
                _ => format!("a registry failed a {method} request"),
            };
            format!("{what}: {first}")
        });
    }
    if lower.contains("toomanyrequests") || lower.contains("429 too many requests") {
        return Some(format!("the registry rate-limited the build: {first}"));
    }
    if lower.contains("failed to fetch remote") {
        // git's own words (`fatal: unable to access '<url>': <curl error>`): the host did not
        // answer, or answered 5xx/429. A missing commit, a missing repository or refused
        // credentials stay permanent.
        const GIT_TRANSIENT: &[&str] = &[
            "could not resolve host",
            "failed to connect to",
            "connection timed out",
            "operation timed out",
            "connection reset",
            "the requested url returned error: 5",
            "the requested url returned error: 429",
            "rpc failed",
            "early eof",
            "gnutls_handshake() failed",
            "ssl_read",
            "ssl_connect",
        ];
        return GIT_TRANSIENT
            .iter()
            .any(|p| lower.contains(p))
            .then(|| format!("fetching the git repository failed: {first}"));
    }
    const NETWORK: &[&str] = &[
        "i/o timeout",
        "connection refused",
        "connection reset by peer",
        "tls handshake timeout",
        "context deadline exceeded",
        "server misbehaving",
        "network is unreachable",
        "no route to host",
        "temporary failure in name resolution",
        "unexpected eof",
        "broken pipe",
    ];
    if NETWORK.iter().any(|p| lower.contains(p)) {
        return Some(format!("the network failed the build: {first}"));
    }
    None
}

/// `unexpected status from <METHOD> request to <url>: <code> <text>` (containerd's
/// `remotes/errors.ErrUnexpectedStatus`): the method and the status code.
fn unexpected_status(error: &str) -> Option<(String, u16)> {
    let rest = &error[error.find("unexpected status from ")? + "unexpected status from ".len()..];
    let method = rest.split_whitespace().next()?.to_owned();
    let after_url = &rest[rest.find(" request to ")? + " request to ".len()..];
    let code = after_url
        .split(": ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((method, code))
}

/// The lines of a failed build's log that name the failing step: BuildKit's `ERROR:` summary
/// and the `#N ... ERROR` / `#N ... error:` lines of the failing vertex, the last `max` of them.
/// Empty when the log has none.
pub fn failing_step(log_tail: &[String], max: usize) -> Vec<String> {
    let picked: Vec<&String> = log_tail
        .iter()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("ERROR:")
                || t.starts_with("error:")
                || t.starts_with("> [")
                || (t.starts_with('#') && (t.contains(" ERROR") || t.contains(" error:")))
        })
        .collect();
    let skip = picked.len().saturating_sub(max);
    picked
        .into_iter()
        .skip(skip)
        .map(|l| l.trim().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "buildkit", "image": "moby/buildkit"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn container(state: serde_json::Value) -> serde_json::Value {
        json!([{"name": "buildkit", "image": "moby/buildkit", "imageID": "", "ready": false,
                "restartCount": 0, "state": state}])
    }

    #[test]
    fn progress_follows_the_container_state() {
        assert_eq!(
            pod_progress(&pod(json!({"phase": "Pending"})), "buildkit"),
            PodProgress::Pending
        );
        let creating = pod(json!({"phase": "Pending", "containerStatuses":
            container(json!({"waiting": {"reason": "ContainerCreating"}}))}));
        assert_eq!(pod_progress(&creating, "buildkit"), PodProgress::Pending);
        let pull = pod(json!({"phase": "Pending", "containerStatuses":
            container(json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}))}));
        assert_eq!(
            pod_progress(&pull, "buildkit"),
            PodProgress::Stuck {
                reason: "ImagePullBackOff".into(),
                message: "Back-off pulling image".into()
            }
        );
        let unsched = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]}),
        );
        // Capacity may come: waited for (the Job's deadline bounds it).
        assert_eq!(pod_progress(&unsched, "buildkit"), PodProgress::Pending);
        let running = pod(json!({"phase": "Running", "containerStatuses":
            container(json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}))}));
        assert_eq!(pod_progress(&running, "buildkit"), PodProgress::Running);
        let done = pod(json!({"phase": "Succeeded", "containerStatuses":
            container(json!({"terminated": {"exitCode": 0, "reason": "Completed", "message": "{}"}}))}));
        assert_eq!(
            pod_progress(&done, "buildkit"),
            PodProgress::Ended(PodEnd {
                exit_code: Some(0),
                reason: Some("Completed".into()),
                message: Some("{}".into()),
                pod_reason: None,
                pod_message: None,
            })
        );
        let evicted =
            pod(json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}));
        assert_eq!(
            pod_progress(&evicted, "buildkit"),
            PodProgress::Ended(PodEnd {
                exit_code: None,
                reason: Some("Evicted".into()),
                message: None,
                pod_reason: Some("Evicted".into()),
                pod_message: Some("low on memory".into()),
            })
        );
    }

    fn end(code: Option<i32>, reason: &str, pod_reason: Option<&str>) -> PodEnd {
        PodEnd {
            exit_code: code,
            reason: Some(reason.into()),
            message: Some("m".into()),
            pod_reason: pod_reason.map(Into::into),
            pod_message: None,
        }
    }

    #[test]
    fn build_errors_are_permanent_and_infrastructure_is_transient() {
        assert_eq!(
            classify_end(&end(Some(0), "Completed", None), &[]),
            BuildVerdict::Succeeded {
                message: "m".into()
            }
        );
        assert_eq!(
            classify_end(&end(Some(1), "Error", None), &[]),
            BuildVerdict::BuildFailed { exit_code: 1 }
        );
        for (code, reason, pod_reason) in [
            (Some(137), "OOMKilled", None),
            (Some(137), "Error", None),
            (Some(143), "Error", Some("DeadlineExceeded")),
            (None, "Evicted", Some("Evicted")),
            (Some(1), "Error", Some("Evicted")),
            (None, "", None),
        ] {
            assert!(
                matches!(
                    classify_end(&end(code, reason, pod_reason), &[]),
                    BuildVerdict::Infrastructure { .. }
                ),
                "{code:?} {reason} {pod_reason:?}"
            );
        }
        let BuildVerdict::Infrastructure { reason } =
            classify_end(&end(Some(137), "OOMKilled", None), &[])
        else {
            unreachable!()
        };
        assert!(reason.contains("OOMKilled"), "{reason}");
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    /// Log tails as buildctl v0.23 prints them (`--progress=plain`, then `handleErr`).
    #[test]
    fn infrastructure_failures_are_told_from_the_users_build() {
        let transient = [
            // A registry 5xx on push (containerd `ErrUnexpectedStatus`, wrapped by the image
            // exporter's "failed to push").
            "#8 exporting to image\n#8 pushing layers 1.2s done\n#8 ERROR: failed to push r.local:5000/org/app:1: unexpected status from PUT request to http://r.local:5000/v2/org/app/manifests/1: 503 Service Unavailable\nerror: failed to solve: failed to push r.local:5000/org/app:1: unexpected status from PUT request to http://r.local:5000/v2/org/app/manifests/1: 503 Service Unavailable",
            // Docker Hub's pull rate limit on the base image.
            "#2 [internal] load metadata for docker.io/library/rust:1.95-slim\n#2 ERROR: unexpected status from HEAD request to https://registry-1.docker.io/v2/library/rust/manifests/1.95-slim: 429 Too Many Requests\nerror: failed to solve: rust:1.95-slim: failed to resolve source metadata for docker.io/library/rust:1.95-slim: unexpected status from HEAD request to https://registry-1.docker.io/v2/library/rust/manifests/1.95-slim: 429 Too Many Requests",
            // An expired short-lived push token (ECR, GAR).
            "error: failed to solve: failed to push 1234.dkr.ecr.eu-west-1.amazonaws.com/app:1: unexpected status from POST request to https://1234.dkr.ecr.eu-west-1.amazonaws.com/v2/app/blobs/uploads/: 403 Forbidden",
            // buildkitd never came up (buildctl-daemonless.sh).
            "could not connect to unix:///run/user/1000/buildkit/buildkitd.sock after 10 trials\n========== log ==========\n[rootlesskit:child ] error: failed to share mount point: /: permission denied\n[rootlesskit:parent] error: child exited: exit status 1",
            // The network on a pull.
            "error: failed to solve: node:22: failed to resolve source metadata for docker.io/library/node:22: failed to do request: Head \"https://registry-1.docker.io/v2/library/node/manifests/22\": dial tcp: lookup registry-1.docker.io: i/o timeout",
            // A git host that did not answer (git's stderr follows on its own lines).
            "error: failed to solve: failed to fetch remote https://github.com/org/app.git: git stderr:\nfatal: unable to access 'https://github.com/org/app.git/': Could not resolve host: github.com\n: exit status 128",
        ];
        for tail in transient {
            assert!(
                infrastructure_failure(&lines(tail)).is_some(),
                "should be transient: {tail}"
            );
        }
        let permanent = [
            // The user's RUN step, even when what it printed looks like a network error.
            "#7 [builder 3/4] RUN npm ci\n#7 12.1 npm ERR! network i/o timeout\n#7 ERROR: process \"/bin/sh -c npm ci\" did not complete successfully: exit code: 1\nerror: failed to solve: process \"/bin/sh -c npm ci\" did not complete successfully: exit code: 1",
            // A base image that does not exist.
            "error: failed to solve: nope:1: failed to resolve source metadata for docker.io/library/nope:1: docker.io/library/nope:1: not found",
            // A commit the repository does not have.
            "error: failed to solve: failed to fetch remote https://github.com/org/app.git: git stderr:\nfatal: remote error: upload-pack: not our ref 0123456789abcdef0123456789abcdef01234567\n: exit status 128",
            // A private repository without credentials.
            "error: failed to solve: failed to fetch remote https://github.com/org/app.git: git stderr:\nfatal: could not read Username for 'https://github.com': terminal prompts disabled\n: exit status 128",
            // A Dockerfile syntax error, and buildctl refusing its arguments.
            "error: failed to solve: dockerfile parse error on line 3: unknown instruction: RUNN",
            "Incorrect Usage: flag provided but not defined: -bogus\nerror: flag provided but not defined: -bogus",
            // No buildctl error at all.
            "",
        ];
        for tail in permanent {
            assert_eq!(
                infrastructure_failure(&lines(tail)),
                None,
                "should be permanent: {tail}"
            );
        }
        let reason = infrastructure_failure(&lines(transient[0])).unwrap();
        assert!(
            reason.starts_with("a registry failed a PUT request: failed to solve: failed to push"),
            "{reason}"
        );
        let reason = infrastructure_failure(&lines(transient[3])).unwrap();
        assert_eq!(
            reason,
            "BuildKit's daemon did not start: [rootlesskit:child ] error: failed to share mount point: /: permission denied"
        );
    }

    #[test]
    fn an_exit_1_is_classified_by_its_log_tail_or_termination_message() {
        let push_503 = lines(
            "error: failed to solve: failed to push r/app:1: unexpected status from PUT request to https://r/v2/app/manifests/1: 503 Service Unavailable",
        );
        let mut e = end(Some(1), "Error", None);
        assert!(matches!(
            classify_end(&e, &push_503),
            BuildVerdict::Infrastructure { .. }
        ));
        // FallbackToLogsOnError: the termination message is the log tail.
        e.message = Some(push_503.join("\n"));
        assert!(matches!(
            classify_end(&e, &[]),
            BuildVerdict::Infrastructure { .. }
        ));
        let run = lines(
            "error: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
        );
        e.message = None;
        assert_eq!(
            classify_end(&e, &run),
            BuildVerdict::BuildFailed { exit_code: 1 }
        );
    }

    #[test]
    fn the_failing_step_comes_from_buildkit_error_lines() {
        let log: Vec<String> = [
            "#6 [builder 2/4] COPY . /src",
            "#6 DONE 0.2s",
            "#7 [builder 3/4] RUN make",
            "#7 0.41 make: *** No rule to make target 'all'.  Stop.",
            "#7 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
            "------",
            " > [builder 3/4] RUN make:",
            "------",
            "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            failing_step(&log, 3),
            vec![
                "#7 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
                "> [builder 3/4] RUN make:",
                "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
            ]
        );
        assert_eq!(failing_step(&log, 1).len(), 1);
        assert!(failing_step(&["all good".to_owned()], 3).is_empty());
    }

    #[test]
    fn job_conditions_tell_failure_and_completion() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"conditions": [{"type": "Failed", "status": "True",
                "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]}
        }))
        .unwrap();
        assert_eq!(
            job_failure(&job),
            Some((
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into()
            ))
        );
        assert!(job_finished(&job));
        let running: Job =
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"active": 1}}))
                .unwrap();
        assert_eq!(job_failure(&running), None);
        assert!(!job_finished(&running));
    }
}
