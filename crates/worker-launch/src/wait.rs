//! Waiting for a preview's rollout: until its Deployment is Available for the latest spec, or
//! the deadline passes, or trouble that will not go away persists.
//!
//! Each check reads the Deployment, its ReplicaSets and pods with plain GETs. Watches on the
//! namespace's pods and Deployments only wake the wait early; a poll runs whatever they do, so
//! dropped or expired (410) watches and API errors (5xx, 429) cost at most a poll interval.
//!
//! While waiting, trouble of the current ReplicaSet's pods goes to the job's log once per pod,
//! container and reason (a crash loop with the container's last log lines). An image pull
//! failure or crash loop that lasts the trouble grace period ends the wait with a permanent
//! failure naming the reason; so do, at first sight, an image that runs as root under
//! `runAsNonRoot` and pods that Pod Security admission refuses (the ReplicaSet's
//! `ReplicaFailure`); a deadline reached without such a cause is transient.
//!
//! With a cert-manager issuer, [`until_certificate_ready`] then waits for the preview's
//! `Certificate` (ingress-shim names it after the Ingress' TLS `secretName`) to be Ready, so
//! that no preview is recorded ready on `https` without its certificate.

use crate::LaunchError;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use slipway_core::JobId;
use slipway_k8s::client::{K8sError, namespaced, wrap};
use slipway_k8s::labels;
use slipway_k8s::preview::APP;
use slipway_k8s::rollout::{
    PodTrouble, ReplicaFailure, RolloutStatus, TroubleKind, current_replica_set, pod_ready,
    pod_trouble, pods_of, replica_failure, rollout_status,
};
use slipway_shared::joblog::JobLog;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Container log lines copied into the job's log for a crash loop.
const CRASH_LOG_LINES: i64 = 20;

/// How long to wait and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct WaitLimits {
    pub deadline: Duration,
    pub trouble_grace: Duration,
    pub poll: Duration,
}

/// What one look at the namespace found.
#[derive(Debug, Clone)]
struct Observation {
    status: RolloutStatus,
    /// Ready pods of the current ReplicaSet, sorted.
    ready: Vec<String>,
    trouble: Vec<PodTrouble>,
    /// The current ReplicaSet's (or the Deployment's) `ReplicaFailure`, if any.
    replica_failure: Option<ReplicaFailure>,
    /// The job whose apply the Deployment carries (its `slipway.dev/job-id` label).
    applied_by: Option<String>,
}

async fn observe(client: &kube::Client, ns: &str) -> Result<Observation, K8sError> {
    let deployments: Api<Deployment> = namespaced(client, ns);
    let sets: Api<ReplicaSet> = namespaced(client, ns);
    let pods: Api<Pod> = namespaced(client, ns);
    let d = deployments
        .get(APP)
        .await
        .map_err(|e| wrap("get", format!("Deployment {ns}/{APP}"), e))?;
    let sets = sets
        .list(&ListParams::default())
        .await
        .map_err(|e| wrap("list", format!("ReplicaSets in {ns}"), e))?
        .items;
    let pods = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| wrap("list", format!("Pods in {ns}"), e))?
        .items;
    let current = current_replica_set(&d, &sets);
    let replica_failure = current.and_then(replica_failure);
    let (mut ready, trouble) = match current {
        Some(rs) => {
            let mine = pods_of(rs, &pods);
            let ready: Vec<String> = mine
                .iter()
                .filter(|p| pod_ready(p))
                .map(|p| p.name_any())
                .collect();
            let trouble = mine.iter().flat_map(|p| pod_trouble(p)).collect();
            (ready, trouble)
        }
        None => (Vec::new(), Vec::new()),
    };
    ready.sort();
    Ok(Observation {
        status: rollout_status(&d),
        ready,
        trouble,
        replica_failure,
        applied_by: d.labels().get(labels::JOB_ID).cloned(),
    })
}

/// Aborts the watch tasks when the wait ends, however it ends.
struct Watches(Vec<JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Every event (or error) of a watch on `api` wakes the waiter. The watcher re-lists after a
/// 410 and backs off after errors on its own.
fn watch<K>(api: Api<K>, wake: Arc<Notify>) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "watch interrupted; it resumes on its own");
            }
            wake.notify_one();
        }
    })
}

/// When each (pod, kind of trouble) was first seen, to tell persisting trouble from a blip.
#[derive(Default)]
struct Persistence(HashMap<(String, TroubleKind), Instant>);

impl Persistence {
    fn update(&mut self, trouble: &[PodTrouble], now: Instant) {
        self.0
            .retain(|(pod, kind), _| trouble.iter().any(|t| &t.pod == pod && t.kind == *kind));
        for t in trouble {
            self.0.entry((t.pod.clone(), t.kind)).or_insert(now);
        }
    }

    /// A fatal kind of trouble that has lasted `grace`.
    fn persisting<'a>(
        &self,
        trouble: &'a [PodTrouble],
        grace: Duration,
        now: Instant,
    ) -> Option<&'a PodTrouble> {
        trouble.iter().find(|t| {
            let grace = if t.kind.is_certain() {
                Duration::ZERO
            } else {
                grace
            };
            t.kind.is_fatal_when_persistent()
                && self
                    .0
                    .get(&(t.pod.clone(), t.kind))
                    .is_some_and(|since| now.duration_since(*since) >= grace)
        })
    }
}

/// The last lines of a crashing container: of its previous run when the API has it (a real
/// cluster), else of the current one.
async fn last_lines(pods: &Api<Pod>, pod: &str, container: Option<&str>) -> Vec<String> {
    for previous in [true, false] {
        let params = LogParams {
            container: container.map(str::to_owned),
            tail_lines: Some(CRASH_LOG_LINES),
            previous,
            ..LogParams::default()
        };
        if let Ok(text) = pods.logs(pod, &params).await {
            return text.lines().map(str::to_owned).collect();
        }
    }
    Vec::new()
}

/// Why a launch fails permanently for `t`.
fn fatal_message(t: &PodTrouble, last_line: Option<&str>) -> String {
    let what = match t.kind {
        TroubleKind::ImagePull => "the image cannot be pulled",
        TroubleKind::CrashLoop => "the container keeps crashing",
        TroubleKind::Unschedulable => "the pod cannot be scheduled",
        TroubleKind::Config => "the container cannot be created",
        TroubleKind::RunAsRoot => {
            "the image runs as root but preview pods must run as non-root \
             (SLIPWAY_RUN_AS_NON_ROOT); build it with a numeric non-root USER"
        }
    };
    let mut m = format!("{what}: {}", t.describe());
    if let Some(line) = last_line {
        m.push_str(&format!("; last log line: {line}"));
    }
    m
}

/// Whether the Deployment last applied by `applied_by` still carries job `ours`'s apply. A
/// newer launch of the preview (job ids are time-ordered UUIDv7) means this one is
/// superseded; an older one that overwrote ours is undone by retrying (which re-applies).
pub fn check_owner(applied_by: Option<&str>, ours: JobId) -> Result<(), LaunchError> {
    let Some(other) = applied_by.and_then(|s| s.parse::<JobId>().ok()) else {
        return Ok(());
    };
    if other == ours {
        Ok(())
    } else if other > ours {
        Err(LaunchError::Superseded(format!(
            "a newer launch of this preview (job {other}) has deployed it"
        )))
    } else {
        Err(LaunchError::NotYet(format!(
            "an older launch of this preview (job {other}) overwrote the Deployment; \
             applying again"
        )))
    }
}

/// Waits for the Deployment `app` in `ns`, as applied by job `job`, to be Available for its
/// latest spec; returns the ready pods of its current ReplicaSet.
pub async fn until_available(
    client: &kube::Client,
    ns: &str,
    job: JobId,
    limits: WaitLimits,
    log: &mut JobLog,
) -> Result<Vec<String>, LaunchError> {
    let started = Instant::now();
    let deadline = started + limits.deadline;
    let wake = Arc::new(Notify::new());
    let _watches = Watches(vec![
        watch(namespaced::<Pod>(client, ns), wake.clone()),
        watch(namespaced::<Deployment>(client, ns), wake.clone()),
    ]);
    let pods: Api<Pod> = namespaced(client, ns);
    let mut persistence = Persistence::default();
    let mut last_crash_lines: HashMap<String, String> = HashMap::new();
    let mut last: Option<Observation> = None;
    loop {
        let now = Instant::now();
        match observe(client, ns).await {
            Ok(obs) => {
                // Whatever the rollout shows, it must be of this launch's spec.
                check_owner(obs.applied_by.as_deref(), job)?;
                if obs.status == RolloutStatus::Complete {
                    return Ok(obs.ready);
                }
                if let RolloutStatus::DeadlineExceeded(m) = &obs.status {
                    log.note_once(
                        "progress-deadline",
                        [format!("Kubernetes reports no rollout progress: {m}")],
                    )
                    .await;
                }
                if let Some(f) = &obs.replica_failure {
                    if f.is_permanent() {
                        return Err(LaunchError::RolloutFailed(format!(
                            "Kubernetes refuses the preview's pods: {}",
                            f.message
                        )));
                    }
                    log.note_once(
                        &format!("replica-failure/{}", f.message),
                        [format!(
                            "the ReplicaSet cannot create pods ({}): {}",
                            f.reason, f.message
                        )],
                    )
                    .await;
                }
                for t in &obs.trouble {
                    let key = format!(
                        "{}/{}/{}",
                        t.pod,
                        t.container.as_deref().unwrap_or(""),
                        t.reason
                    );
                    if log.noted(&key) {
                        continue;
                    }
                    let mut lines = vec![t.describe()];
                    if t.kind == TroubleKind::CrashLoop {
                        let tail = last_lines(&pods, &t.pod, t.container.as_deref()).await;
                        if let Some(l) = tail.last() {
                            last_crash_lines.insert(t.pod.clone(), l.clone());
                        }
                        if !tail.is_empty() {
                            lines.push(format!("last {} log lines of {}:", tail.len(), t.pod));
                            lines.extend(tail.iter().map(|l| format!("  {l}")));
                        }
                    }
                    log.note_once(&key, lines).await;
                }
                persistence.update(&obs.trouble, now);
                if let Some(t) = persistence.persisting(&obs.trouble, limits.trouble_grace, now) {
                    let line = last_crash_lines.get(&t.pod).map(String::as_str);
                    return Err(LaunchError::RolloutFailed(fatal_message(t, line)));
                }
                last = Some(obs);
            }
            Err(e) if e.is_not_found() => {
                return Err(LaunchError::NotYet(format!(
                    "the Deployment disappeared while waiting for it ({e})"
                )));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the rollout failed; will look again");
                log.note_once(
                    &format!("api-error/{:?}", e.code()),
                    [format!(
                        "Kubernetes API error while waiting (will keep trying): {e}"
                    )],
                )
                .await;
            }
        }
        if Instant::now() >= deadline {
            return Err(timed_out(limits.deadline, last.as_ref()));
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(limits.poll) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// cert-manager's Certificate kind (`cert-manager.io/v1`), read as a dynamic object.
fn certificate_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// `(status, reason, message)` of a Certificate's `Ready` condition.
fn ready_condition(cert: &DynamicObject) -> Option<(String, String, String)> {
    let conds = cert.data.pointer("/status/conditions")?.as_array()?;
    let c = conds.iter().find(|c| c["type"] == "Ready")?;
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// Waits until cert-manager's Certificate `name` in `ns` is Ready, until `deadline`. What it
/// waits for goes to the job's log when it changes. At the deadline: transient (issuance may
/// be slow or rate-limited), naming the last condition seen.
pub async fn until_certificate_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    deadline: Instant,
    poll: Duration,
    log: &mut JobLog,
) -> Result<(), LaunchError> {
    let api = certificate_api(client, ns);
    log.line(format!(
        "waiting for cert-manager to issue Certificate {name} (the TLS Secret of the preview host)"
    ))
    .await;
    let mut last = String::from("the Certificate does not exist (is cert-manager installed?)");
    loop {
        match api.get_opt(name).await {
            Ok(Some(cert)) => match ready_condition(&cert) {
                Some((status, _, _)) if status == "True" => {
                    log.line(format!("Certificate {name} is ready")).await;
                    return Ok(());
                }
                Some((status, reason, message)) => {
                    last = format!("Ready={status} {reason}: {message}");
                    log.note_once(
                        &format!("certificate/{last}"),
                        [format!("Certificate {name}: {last}")],
                    )
                    .await;
                }
                None => last = "the Certificate has no Ready condition yet".into(),
            },
            Ok(None) => {}
            Err(e) => {
                let e = wrap("get", format!("Certificate {ns}/{name}"), e);
                if e.class() == slipway_core::ErrorClass::Permanent {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "reading the Certificate failed; will look again");
            }
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::RolloutTimedOut(format!(
                "the preview runs but its certificate was not issued in time: Certificate {name}: {last}"
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The error at the deadline: permanent if an image pull failure or crash loop is going on
/// (it lasted until now), else transient with what was last seen.
fn timed_out(deadline: Duration, last: Option<&Observation>) -> LaunchError {
    let secs = deadline.as_secs();
    let Some(obs) = last else {
        return LaunchError::RolloutTimedOut(format!(
            "the rollout could not be read within {secs} s"
        ));
    };
    if let Some(t) = obs
        .trouble
        .iter()
        .find(|t| t.kind.is_fatal_when_persistent())
    {
        return LaunchError::RolloutFailed(fatal_message(t, None));
    }
    let status = match &obs.status {
        RolloutStatus::NotObserved => "the controller had not observed the latest spec".into(),
        RolloutStatus::Progressing(m) | RolloutStatus::DeadlineExceeded(m) => m.clone(),
        RolloutStatus::Complete => "complete".into(),
    };
    let mut m = format!("the Deployment did not become Available within {secs} s ({status})");
    if let Some(f) = &obs.replica_failure {
        m.push_str(&format!("; {}: {}", f.reason, f.message));
    }
    if !obs.trouble.is_empty() {
        let seen: Vec<String> = obs.trouble.iter().map(PodTrouble::describe).collect();
        m.push_str(&format!("; last seen: {}", seen.join("; ")));
    }
    LaunchError::RolloutTimedOut(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_core::ErrorClass;

    fn trouble(pod: &str, kind: TroubleKind, reason: &str) -> PodTrouble {
        PodTrouble {
            pod: pod.into(),
            container: Some("app".into()),
            kind,
            reason: reason.into(),
            message: String::new(),
            restarts: 0,
        }
    }

    #[test]
    fn only_fatal_trouble_that_lasts_the_grace_period_counts() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let mut p = Persistence::default();
        let pull = vec![
            trouble("a", TroubleKind::ImagePull, "ErrImagePull"),
            trouble("b", TroubleKind::Unschedulable, "Unschedulable"),
        ];
        p.update(&pull, t0);
        assert!(
            p.persisting(&pull, grace, t0 + Duration::from_secs(5))
                .is_none()
        );
        // The reason changes within the kind (ErrImagePull -> ImagePullBackOff): still the
        // same trouble, timed from its first sight.
        let backoff = vec![
            trouble("a", TroubleKind::ImagePull, "ImagePullBackOff"),
            trouble("b", TroubleKind::Unschedulable, "Unschedulable"),
        ];
        p.update(&backoff, t0 + Duration::from_secs(6));
        let found = p.persisting(&backoff, grace, t0 + Duration::from_secs(10));
        assert_eq!(found.map(|t| t.pod.as_str()), Some("a"));
        // Trouble that went away starts over.
        p.update(&[], t0 + Duration::from_secs(11));
        p.update(&backoff, t0 + Duration::from_secs(12));
        assert!(
            p.persisting(&backoff, grace, t0 + Duration::from_secs(13))
                .is_none()
        );
        // Unschedulable never becomes fatal.
        let stuck = vec![trouble("b", TroubleKind::Unschedulable, "Unschedulable")];
        p.update(&stuck, t0);
        assert!(
            p.persisting(&stuck, grace, t0 + Duration::from_secs(100))
                .is_none()
        );
    }

    #[test]
    fn an_image_running_as_root_is_fatal_at_first_sight() {
        let t0 = Instant::now();
        let mut p = Persistence::default();
        let root = vec![trouble(
            "a",
            TroubleKind::RunAsRoot,
            "CreateContainerConfigError",
        )];
        p.update(&root, t0);
        let found = p.persisting(&root, Duration::from_secs(30), t0);
        assert_eq!(found.map(|t| t.kind), Some(TroubleKind::RunAsRoot));
        assert!(fatal_message(found.unwrap(), None).contains("runs as root"));
    }

    #[test]
    fn the_deadline_is_permanent_only_with_a_clear_cause() {
        let obs = |trouble| Observation {
            status: RolloutStatus::Progressing("0 of 1 updated replicas are available".into()),
            ready: vec![],
            trouble,
            replica_failure: None,
            applied_by: None,
        };
        let d = Duration::from_secs(60);
        let e = timed_out(
            d,
            Some(&obs(vec![trouble(
                "a",
                TroubleKind::CrashLoop,
                "CrashLoopBackOff",
            )])),
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("keeps crashing"), "{e}");
        let e = timed_out(
            d,
            Some(&obs(vec![trouble(
                "a",
                TroubleKind::Unschedulable,
                "Unschedulable",
            )])),
        );
        assert_eq!(e.class(), ErrorClass::Transient);
        assert!(e.to_string().contains("Unschedulable"), "{e}");
        assert!(e.to_string().contains("within 60 s"), "{e}");
        assert_eq!(timed_out(d, None).class(), ErrorClass::Transient);
    }

    #[test]
    fn a_newer_launch_wins_and_an_older_one_is_undone() {
        let older = uuid::Uuid::now_v7();
        let ours = uuid::Uuid::now_v7();
        let newer = uuid::Uuid::now_v7();
        assert!(check_owner(None, ours).is_ok());
        assert!(check_owner(Some("not-a-uuid"), ours).is_ok());
        assert!(check_owner(Some(&ours.to_string()), ours).is_ok());
        let e = check_owner(Some(&newer.to_string()), ours).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains(&newer.to_string()), "{e}");
        let e = check_owner(Some(&older.to_string()), ours).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Transient);
    }
}
