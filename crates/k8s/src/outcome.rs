//! Reading how a build pod is doing from its status (and its Job's), and classifying how it
//! ended: a build that failed on its own (the user's Dockerfile: permanent) versus an
//! infrastructure failure (OOMKilled, Evicted, deadline, the builder image not pulled, killed
//! by a signal: transient). Pure functions over `k8s-openapi` objects, pinned by unit tests.

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

/// Classify an ended pod.
pub fn classify_end(end: &PodEnd) -> BuildVerdict {
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
        Some(code) => BuildVerdict::BuildFailed { exit_code: code },
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
            classify_end(&end(Some(0), "Completed", None)),
            BuildVerdict::Succeeded {
                message: "m".into()
            }
        );
        assert_eq!(
            classify_end(&end(Some(1), "Error", None)),
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
                    classify_end(&end(code, reason, pod_reason)),
                    BuildVerdict::Infrastructure { .. }
                ),
                "{code:?} {reason} {pod_reason:?}"
            );
        }
        let BuildVerdict::Infrastructure { reason } =
            classify_end(&end(Some(137), "OOMKilled", None))
        else {
            unreachable!()
        };
        assert!(reason.contains("OOMKilled"), "{reason}");
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
