//! Waiting for a preview's rollout: until its workloads (the single-container preview's
//! Deployment, or each Deployment and StatefulSet of a compose or Helm preview) are rolled out
//! for their latest spec, or the deadline passes, or trouble that will not go away persists.
//!
//! Each check reads the workloads, the ReplicaSets and pods with plain GETs. Watches on the
//! namespace's pods, Deployments and StatefulSets only wake the wait early; a poll runs whatever they do, so
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
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use slipway_core::JobId;
use slipway_k8s::client::{K8sError, namespaced, wrap};
use slipway_k8s::labels;
use slipway_k8s::preview::APP;
use slipway_k8s::rollout::{
    PodTrouble, ReplicaFailure, RolloutStatus, TroubleKind, Workload, WorkloadKind,
    current_replica_set, pod_ready, pod_trouble, pods_of, replica_failure, rollout_status,
    stateful_set_failure, stateful_set_pods, stateful_set_status,
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

/// What one look found of one workload.
#[derive(Debug, Clone)]
struct WorkloadObservation {
    workload: Workload,
    status: RolloutStatus,
    /// Ready pods of its latest spec (current ReplicaSet or update revision), sorted.
    ready: Vec<String>,
    trouble: Vec<PodTrouble>,
    /// The current ReplicaSet's `ReplicaFailure`, if any (Deployments only).
    replica_failure: Option<ReplicaFailure>,
    /// The job whose apply the workload carries (its `slipway.dev/job-id` label).
    applied_by: Option<String>,
}

/// What one look at the namespace found, one entry per workload waited for, in their order.
#[derive(Debug, Clone)]
struct Observation(Vec<WorkloadObservation>);

/// A read that failed, and the workload it was about (`None`: a list of the namespace).
struct ObserveError(Option<Workload>, K8sError);

fn ready_and_trouble(mine: &[&Pod]) -> (Vec<String>, Vec<PodTrouble>) {
    let mut ready: Vec<String> = mine
        .iter()
        .filter(|p| pod_ready(p))
        .map(|p| p.name_any())
        .collect();
    ready.sort();
    (ready, mine.iter().flat_map(|p| pod_trouble(p)).collect())
}

/// A workload as read.
enum Read {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
}

/// `since`: when the wait began (Unix seconds, with a margin for clock skew); a StatefulSet's
/// `FailedCreate` Events before it are not this launch's.
async fn observe(
    client: &kube::Client,
    ns: &str,
    workloads: &[Workload],
    since: i64,
) -> Result<Observation, ObserveError> {
    // The workloads first, their pods after: a rollout read as complete then has its ready
    // pods in the list.
    let mut read = Vec::with_capacity(workloads.len());
    for w in workloads {
        let get_err = |e| {
            ObserveError(
                Some(w.clone()),
                wrap("get", format!("{} {ns}/{}", w.kind, w.name), e),
            )
        };
        read.push(match w.kind {
            WorkloadKind::Deployment => Read::Deployment(Box::new(
                namespaced::<Deployment>(client, ns)
                    .get(&w.name)
                    .await
                    .map_err(get_err)?,
            )),
            WorkloadKind::StatefulSet => Read::StatefulSet(Box::new(
                namespaced::<StatefulSet>(client, ns)
                    .get(&w.name)
                    .await
                    .map_err(get_err)?,
            )),
        });
    }
    let list_err = |what: &str, e| ObserveError(None, wrap("list", format!("{what} in {ns}"), e));
    let sets = if workloads.iter().any(|w| w.kind == WorkloadKind::Deployment) {
        namespaced::<ReplicaSet>(client, ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| list_err("ReplicaSets", e))?
            .items
    } else {
        Vec::new()
    };
    let pods = namespaced::<Pod>(client, ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| list_err("Pods", e))?
        .items;
    // A StatefulSet short of pods says why only in Events (it has no ReplicaFailure).
    let mut events: Vec<Event> = Vec::new();
    for r in &read {
        if let Read::StatefulSet(s) = r
            && stateful_set_status(s) != RolloutStatus::Complete
            && s.status.as_ref().map_or(0, |st| st.replicas)
                < s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(1)
        {
            let selector = format!(
                "involvedObject.kind=StatefulSet,involvedObject.name={},reason=FailedCreate",
                s.name_any()
            );
            events.extend(
                namespaced::<Event>(client, ns)
                    .list(&ListParams::default().fields(&selector))
                    .await
                    .map_err(|e| list_err("Events", e))?
                    .items,
            );
        }
    }
    let out = workloads
        .iter()
        .zip(read)
        .map(|(w, r)| match r {
            Read::Deployment(d) => {
                let current = current_replica_set(&d, &sets);
                let (ready, trouble) = match current {
                    Some(rs) => ready_and_trouble(&pods_of(rs, &pods)),
                    None => (Vec::new(), Vec::new()),
                };
                WorkloadObservation {
                    workload: w.clone(),
                    status: rollout_status(&d),
                    ready,
                    trouble,
                    replica_failure: current.and_then(replica_failure),
                    applied_by: d.labels().get(labels::JOB_ID).cloned(),
                }
            }
            Read::StatefulSet(s) => {
                let status = stateful_set_status(&s);
                let (ready, trouble) = if status == RolloutStatus::NotObserved {
                    (Vec::new(), Vec::new())
                } else {
                    ready_and_trouble(&stateful_set_pods(&s, &pods))
                };
                WorkloadObservation {
                    workload: w.clone(),
                    status,
                    ready,
                    trouble,
                    replica_failure: stateful_set_failure(&s, &events, since),
                    applied_by: s.labels().get(labels::JOB_ID).cloned(),
                }
            }
        })
        .collect();
    Ok(Observation(out))
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
/// latest spec; returns the ready pods of its current ReplicaSet. The single-container
/// preview: its messages name pods, not the workload.
pub async fn until_available(
    client: &kube::Client,
    ns: &str,
    job: JobId,
    limits: WaitLimits,
    log: &mut JobLog,
) -> Result<Vec<String>, LaunchError> {
    wait_for(
        client,
        ns,
        job,
        &[Workload::deployment(APP)],
        false,
        limits,
        log,
    )
    .await
}

/// Waits until every workload in `ns`, each as applied by job `job`, is rolled out for its
/// latest spec (Deployments Available, StatefulSets as `kubectl rollout status` says), the
/// deadline passes, or trouble that will not go away persists in one of them. Returns the
/// ready pods of all of them, workload by workload. Every trouble line and failure names its
/// workload (`Deployment redis: ...`).
pub async fn until_workloads_available(
    client: &kube::Client,
    ns: &str,
    job: JobId,
    workloads: &[Workload],
    limits: WaitLimits,
    log: &mut JobLog,
) -> Result<Vec<String>, LaunchError> {
    wait_for(client, ns, job, workloads, true, limits, log).await
}

async fn wait_for(
    client: &kube::Client,
    ns: &str,
    job: JobId,
    workloads: &[Workload],
    named: bool,
    limits: WaitLimits,
    log: &mut JobLog,
) -> Result<Vec<String>, LaunchError> {
    let started = Instant::now();
    let deadline = started + limits.deadline;
    // Events carry the API server's clock, in whole seconds: a small margin for skew (an
    // earlier launch's refusal is older than this one's apply).
    let since = chrono::Utc::now().timestamp() - 5;
    let wake = Arc::new(Notify::new());
    let has = |k: WorkloadKind| workloads.iter().any(|w| w.kind == k);
    let mut watches = vec![watch(namespaced::<Pod>(client, ns), wake.clone())];
    if has(WorkloadKind::Deployment) {
        watches.push(watch(namespaced::<Deployment>(client, ns), wake.clone()));
    }
    if has(WorkloadKind::StatefulSet) {
        watches.push(watch(namespaced::<StatefulSet>(client, ns), wake.clone()));
    }
    let _watches = Watches(watches);
    let pods: Api<Pod> = namespaced(client, ns);
    let prefix = |w: &Workload| {
        if named {
            format!("{w}: ")
        } else {
            String::new()
        }
    };
    let mut persistence = Persistence::default();
    let mut last_crash_lines: HashMap<String, String> = HashMap::new();
    let mut last: Option<Observation> = None;
    loop {
        let now = Instant::now();
        match observe(client, ns, workloads, since).await {
            Ok(obs) => {
                // Whatever the rollout shows, it must be of this launch's spec.
                for o in &obs.0 {
                    check_owner(o.applied_by.as_deref(), job)?;
                }
                if obs.0.iter().all(|o| o.status == RolloutStatus::Complete) {
                    return Ok(obs.0.into_iter().flat_map(|o| o.ready).collect());
                }
                for o in &obs.0 {
                    let at = prefix(&o.workload);
                    if let RolloutStatus::DeadlineExceeded(m) = &o.status {
                        log.note_once(
                            &format!("progress-deadline/{}", o.workload),
                            [format!("{at}Kubernetes reports no rollout progress: {m}")],
                        )
                        .await;
                    }
                    if let Some(f) = &o.replica_failure {
                        if f.is_permanent() {
                            return Err(LaunchError::RolloutFailed(format!(
                                "{at}Kubernetes refuses the preview's pods: {}",
                                f.message
                            )));
                        }
                        log.note_once(
                            &format!("replica-failure/{}", f.message),
                            [format!(
                                "{at}the {} cannot create pods ({}): {}",
                                match o.workload.kind {
                                    WorkloadKind::Deployment => "ReplicaSet",
                                    WorkloadKind::StatefulSet => "StatefulSet",
                                },
                                f.reason,
                                f.message
                            )],
                        )
                        .await;
                    }
                    for t in &o.trouble {
                        let key = format!(
                            "{}/{}/{}",
                            t.pod,
                            t.container.as_deref().unwrap_or(""),
                            t.reason
                        );
                        if log.noted(&key) {
                            continue;
                        }
                        let mut lines = vec![format!("{at}{}", t.describe())];
                        if t.kind == TroubleKind::CrashLoop {
                            let tail = last_lines(&pods, &t.pod, t.container.as_deref()).await;
                            if let Some(l) = tail.last() {
                                last_crash_lines.insert(t.pod.clone(), l.clone());
                            }
                            if !tail.is_empty() {
                                lines.push(format!(
                                    "{at}last {} log lines of {}:",
                                    tail.len(),
                                    t.pod
                                ));
                                lines.extend(tail.iter().map(|l| format!("  {l}")));
                            }
                        }
                        log.note_once(&key, lines).await;
                    }
                }
                let trouble: Vec<PodTrouble> =
                    obs.0.iter().flat_map(|o| o.trouble.clone()).collect();
                persistence.update(&trouble, now);
                if let Some(t) = persistence.persisting(&trouble, limits.trouble_grace, now) {
                    let line = last_crash_lines.get(&t.pod).map(String::as_str);
                    let at = obs
                        .0
                        .iter()
                        .find(|o| o.trouble.iter().any(|x| x.pod == t.pod))
                        .map(|o| prefix(&o.workload))
                        .unwrap_or_default();
                    return Err(LaunchError::RolloutFailed(format!(
                        "{at}{}",
                        fatal_message(t, line)
                    )));
                }
                last = Some(obs);
            }
            Err(ObserveError(w, e)) if e.is_not_found() => {
                let what = match (&w, named) {
                    (Some(w), true) => w.to_string(),
                    _ => "the Deployment".into(),
                };
                return Err(LaunchError::NotYet(format!(
                    "{what} disappeared while waiting for it ({e})"
                )));
            }
            Err(ObserveError(_, e)) => {
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
            return Err(timed_out(limits.deadline, last.as_ref(), named));
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
/// (it lasted until now), else transient with what was last seen of each workload not rolled
/// out.
fn timed_out(deadline: Duration, last: Option<&Observation>, named: bool) -> LaunchError {
    let secs = deadline.as_secs();
    let Some(obs) = last else {
        return LaunchError::RolloutTimedOut(format!(
            "the rollout could not be read within {secs} s"
        ));
    };
    let prefix = |w: &Workload| {
        if named {
            format!("{w}: ")
        } else {
            String::new()
        }
    };
    for o in &obs.0 {
        if let Some(t) = o.trouble.iter().find(|t| t.kind.is_fatal_when_persistent()) {
            return LaunchError::RolloutFailed(format!(
                "{}{}",
                prefix(&o.workload),
                fatal_message(t, None)
            ));
        }
    }
    let mut parts = Vec::new();
    for o in obs.0.iter().filter(|o| o.status != RolloutStatus::Complete) {
        let status = match &o.status {
            RolloutStatus::NotObserved => "the controller had not observed the latest spec".into(),
            RolloutStatus::Progressing(m) | RolloutStatus::DeadlineExceeded(m) => m.clone(),
            RolloutStatus::Complete => "complete".into(),
        };
        let mut m = if named {
            format!(
                "{} did not become available within {secs} s ({status})",
                o.workload
            )
        } else {
            format!("the Deployment did not become Available within {secs} s ({status})")
        };
        if let Some(f) = &o.replica_failure {
            m.push_str(&format!("; {}: {}", f.reason, f.message));
        }
        if !o.trouble.is_empty() {
            let seen: Vec<String> = o.trouble.iter().map(PodTrouble::describe).collect();
            m.push_str(&format!("; last seen: {}", seen.join("; ")));
        }
        parts.push(m);
    }
    LaunchError::RolloutTimedOut(parts.join("; "))
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
        let obs = |trouble| {
            Observation(vec![WorkloadObservation {
                workload: Workload::deployment(APP),
                status: RolloutStatus::Progressing("0 of 1 updated replicas are available".into()),
                ready: vec![],
                trouble,
                replica_failure: None,
                applied_by: None,
            }])
        };
        let d = Duration::from_secs(60);
        let e = timed_out(
            d,
            Some(&obs(vec![trouble(
                "a",
                TroubleKind::CrashLoop,
                "CrashLoopBackOff",
            )])),
            false,
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
            false,
        );
        assert_eq!(e.class(), ErrorClass::Transient);
        assert!(e.to_string().contains("Unschedulable"), "{e}");
        assert!(e.to_string().contains("within 60 s"), "{e}");
        assert_eq!(timed_out(d, None, false).class(), ErrorClass::Transient);
    }

    #[test]
    fn with_several_workloads_every_message_names_its_workload() {
        let w = |workload: Workload, status: RolloutStatus, trouble| WorkloadObservation {
            workload,
            status,
            ready: vec![],
            trouble,
            replica_failure: None,
            applied_by: None,
        };
        let d = Duration::from_secs(60);
        let obs = Observation(vec![
            w(Workload::deployment("web"), RolloutStatus::Complete, vec![]),
            w(
                Workload::stateful_set("db"),
                RolloutStatus::Progressing("Waiting for 1 pods to be ready".into()),
                vec![trouble("db-0", TroubleKind::Unschedulable, "Unschedulable")],
            ),
        ]);
        let e = timed_out(d, Some(&obs), true).to_string();
        assert_eq!(
            e,
            "StatefulSet db did not become available within 60 s (Waiting for 1 pods to be \
             ready); last seen: pod db-0 container app: Unschedulable"
        );
        let obs = Observation(vec![
            w(Workload::deployment("web"), RolloutStatus::Complete, vec![]),
            w(
                Workload::deployment("redis"),
                RolloutStatus::Progressing(String::new()),
                vec![trouble(
                    "redis-1",
                    TroubleKind::ImagePull,
                    "ImagePullBackOff",
                )],
            ),
        ]);
        let e = timed_out(d, Some(&obs), true);
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(
            e.to_string()
                .starts_with("Deployment redis: the image cannot be pulled"),
            "{e}"
        );
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
