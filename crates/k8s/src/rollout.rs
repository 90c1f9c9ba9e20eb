//! Reading a workload's rollout from the objects the API returns: whether the latest spec of a
//! Deployment or StatefulSet is rolled out (as `kubectl rollout status` decides it), which
//! ReplicaSet (Deployment) or revision (StatefulSet) and pods belong to it,
//! and which pod states explain a rollout that does not progress (an image that cannot be
//! pulled, a container that keeps crashing, a pod that cannot be scheduled, an image that runs
//! as root under `runAsNonRoot`, pods that Pod Security admission refuses).
//!
//! Pure functions over `k8s-openapi` objects: the launch worker fetches, these decide.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::ResourceExt;

/// The annotation the Deployment controller puts on each ReplicaSet with its revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Where a Deployment's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    /// The controller has not observed the latest spec yet.
    NotObserved,
    /// The rollout is under way; the message says what it waits for.
    Progressing(String),
    /// Every replica runs the latest spec and is available; no old replica is left.
    Complete,
    /// The controller gave up waiting for progress (`ProgressDeadlineExceeded`).
    DeadlineExceeded(String),
}

/// The kind of a workload a preview waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        })
    }
}

/// One workload of a preview, by kind and name (in the preview's namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

impl Workload {
    pub fn deployment(name: impl Into<String>) -> Workload {
        Workload {
            kind: WorkloadKind::Deployment,
            name: name.into(),
        }
    }

    pub fn stateful_set(name: impl Into<String>) -> Workload {
        Workload {
            kind: WorkloadKind::StatefulSet,
            name: name.into(),
        }
    }
}

/// `Deployment web`, `StatefulSet db`: how messages name a workload.
impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// The label the StatefulSet controller puts on each pod with its revision
/// (`controller-revision-hash`, `<set>-<hash>`, the ControllerRevision's name).
pub const CONTROLLER_REVISION_LABEL: &str = "controller-revision-hash";

/// The rollout status of a StatefulSet, by the rules of `kubectl rollout status`
/// (kubernetes/kubectl `pkg/polymorphichelpers/rollout_status.go`, `StatefulSetStatusViewer`):
/// the controller has observed the latest spec, `readyReplicas` reaches `replicas`, and under
/// RollingUpdate with a partition the updated replicas reach `replicas - partition`; without
/// one, the current revision is the update revision. A StatefulSet has no progress deadline.
pub fn stateful_set_status(s: &StatefulSet) -> RolloutStatus {
    let generation = s.metadata.generation.unwrap_or(0);
    let Some(status) = s.status.as_ref() else {
        return RolloutStatus::NotObserved;
    };
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || generation > observed {
        return RolloutStatus::NotObserved;
    }
    let spec = s.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    // The API server defaults the strategy to RollingUpdate; kubectl reads only that kind.
    if strategy
        .and_then(|u| u.type_.as_deref())
        .is_some_and(|t| t != "RollingUpdate")
    {
        return RolloutStatus::Progressing(
            "rollout status is only available for RollingUpdate strategy type".into(),
        );
    }
    let replicas = spec.and_then(|s| s.replicas);
    let ready = status.ready_replicas.unwrap_or(0);
    if let Some(wanted) = replicas
        && ready < wanted
    {
        return RolloutStatus::Progressing(format!(
            "Waiting for {} pods to be ready",
            wanted - ready
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if let Some(rolling) = strategy.and_then(|u| u.rolling_update.as_ref()) {
        if let (Some(wanted), Some(partition)) = (replicas, rolling.partition)
            && updated < wanted - partition
        {
            return RolloutStatus::Progressing(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods \
                 have been updated",
                wanted - partition
            ));
        }
        return RolloutStatus::Complete;
    }
    if status.update_revision != status.current_revision {
        return RolloutStatus::Progressing(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {}",
            status.update_revision.as_deref().unwrap_or("")
        ));
    }
    RolloutStatus::Complete
}

/// The pods of `s`'s latest revision: those it controls carrying its `updateRevision` (all it
/// controls until the controller has reported one).
pub fn stateful_set_pods<'a>(s: &StatefulSet, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let Some(uid) = s.metadata.uid.as_deref() else {
        return Vec::new();
    };
    let revision = s
        .status
        .as_ref()
        .and_then(|st| st.update_revision.as_deref());
    pods.iter()
        .filter(|p| controller_uid(*p) == Some(uid))
        .filter(|p| {
            revision.is_none_or(|r| {
                p.labels()
                    .get(CONTROLLER_REVISION_LABEL)
                    .map(String::as_str)
                    == Some(r)
            })
        })
        .collect()
}

/// The rollout status of `d`, by the rules of `kubectl rollout status`.
pub fn rollout_status(d: &Deployment) -> RolloutStatus {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = d.status.as_ref() else {
        return RolloutStatus::NotObserved;
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return RolloutStatus::NotObserved;
    }
    let stalled = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(c) = stalled {
        return RolloutStatus::DeadlineExceeded(c.message.clone().unwrap_or_default());
    }
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        RolloutStatus::Progressing(format!(
            "{updated} of {wanted} new replicas have been updated"
        ))
    } else if total > updated {
        RolloutStatus::Progressing(format!(
            "{} old replicas are pending termination",
            total - updated
        ))
    } else if available < updated {
        RolloutStatus::Progressing(format!(
            "{available} of {updated} updated replicas are available"
        ))
    } else {
        RolloutStatus::Complete
    }
}

fn controller_uid<K: kube::Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The ReplicaSet of `d`'s latest spec: the one it controls with the highest revision. `None`
/// until the controller has observed the latest spec (the newest ReplicaSet may still be the
/// previous rollout's).
pub fn current_replica_set<'a>(d: &Deployment, sets: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    if rollout_status(d) == RolloutStatus::NotObserved {
        return None;
    }
    let uid = d.metadata.uid.as_deref()?;
    sets.iter()
        .filter(|rs| controller_uid(*rs) == Some(uid))
        .max_by_key(|rs| revision(rs))
}

/// The pods `rs` controls.
pub fn pods_of<'a>(rs: &ReplicaSet, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let Some(uid) = rs.metadata.uid.as_deref() else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| controller_uid(*p) == Some(uid))
        .collect()
}

/// Whether the pod's `Ready` condition is true (and it is not being deleted).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What kind of trouble keeps a pod from becoming ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TroubleKind {
    /// The image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`...).
    ImagePull,
    /// The container starts and exits, again and again (`CrashLoopBackOff`).
    CrashLoop,
    /// No node can take the pod.
    Unschedulable,
    /// The container cannot be created from its spec (a missing Secret or key, a bad command).
    Config,
    /// `runAsNonRoot` is in effect and the image runs as root, or as a user name the kubelet
    /// cannot verify (kubernetes/kubernetes `pkg/kubelet/kuberuntime/security_context_others.go`
    /// `verifyRunAsNonRoot`): the same image never starts, however long one waits.
    RunAsRoot,
}

impl TroubleKind {
    /// Trouble that, when it persists, will not go away by waiting or retrying: the launch
    /// fails permanently with its reason.
    pub fn is_fatal_when_persistent(self) -> bool {
        matches!(
            self,
            TroubleKind::ImagePull | TroubleKind::CrashLoop | TroubleKind::RunAsRoot
        )
    }

    /// Trouble that is certain at first sight: no grace period before failing.
    pub fn is_certain(self) -> bool {
        self == TroubleKind::RunAsRoot
    }
}

/// A ReplicaSet's (or Deployment's) `ReplicaFailure` condition: the controller cannot create
/// (or delete) pods (kubernetes/kubernetes `pkg/controller/replicaset/replica_set_utils.go`,
/// copied to the Deployment by `pkg/controller/deployment/progress.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: String,
    /// The API's error, e.g. `pods "app-x-y" is forbidden: violates PodSecurity ...`.
    pub message: String,
}

impl ReplicaFailure {
    /// Pod Security admission refuses the pod spec itself (`violates PodSecurity`, from
    /// `staging/src/k8s.io/pod-security-admission/admission`): every retry is refused alike.
    /// Other create failures (an exhausted quota, a namespace being deleted) may pass.
    pub fn is_permanent(&self) -> bool {
        self.reason == "FailedCreate" && self.message.contains("violates PodSecurity")
    }
}

/// The `ReplicaFailure` condition of the current ReplicaSet. Only the current one: the
/// Deployment's copy of the condition (`pkg/controller/deployment/progress.go`,
/// `getReplicaFailures`) may be an old ReplicaSet's, or the last rollout's before the controller
/// has observed this one, and must not fail a launch whose own pods are admitted.
pub fn replica_failure(rs: &ReplicaSet) -> Option<ReplicaFailure> {
    rs.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| ReplicaFailure {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        })
}

/// Why a StatefulSet cannot create its pods: it has no `ReplicaFailure` condition; its
/// controller records a Warning `FailedCreate` Event on it with the API's error instead
/// (kubernetes/kubernetes `pkg/controller/statefulset/stateful_pod_control.go`,
/// `recordPodEvent`: `create Pod <pod> in StatefulSet <set> failed error: <err>`). The latest
/// such Event of `set` at or after `since` (Unix seconds; older ones may be an earlier
/// launch's), when the set has fewer pods than it wants.
pub fn stateful_set_failure(
    s: &StatefulSet,
    events: &[Event],
    since: i64,
) -> Option<ReplicaFailure> {
    let wanted = s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(1);
    let have = s.status.as_ref().map_or(0, |st| st.replicas);
    if have >= wanted {
        return None;
    }
    let name = s.metadata.name.as_deref()?;
    let time = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .or(e.first_timestamp.as_ref())
            .map(|t| t.0.as_second())
            .or_else(|| e.event_time.as_ref().map(|t| t.0.as_second()))
            .unwrap_or(0)
    };
    events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some("FailedCreate")
                && e.involved_object.kind.as_deref() == Some("StatefulSet")
                && e.involved_object.name.as_deref() == Some(name)
                && time(e) >= since
        })
        .max_by_key(|e| time(e))
        .map(|e| ReplicaFailure {
            reason: "FailedCreate".into(),
            message: e.message.clone().unwrap_or_default(),
        })
}

/// One reason one pod is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTrouble {
    pub pod: String,
    /// The container, for container states; `None` for pod conditions.
    pub container: Option<String>,
    pub kind: TroubleKind,
    /// Kubernetes' reason, e.g. `ImagePullBackOff`.
    pub reason: String,
    pub message: String,
    /// Restarts of the container so far.
    pub restarts: i32,
}

impl PodTrouble {
    /// One line for the job's log, e.g. `pod app-x container app: ImagePullBackOff: Back-off
    /// pulling image "..."`.
    pub fn describe(&self) -> String {
        let mut s = format!("pod {}", self.pod);
        if let Some(c) = &self.container {
            s.push_str(&format!(" container {c}"));
        }
        s.push_str(&format!(": {}", self.reason));
        if !self.message.is_empty() {
            s.push_str(&format!(": {}", self.message));
        }
        s
    }
}

fn waiting_kind(reason: &str) -> Option<TroubleKind> {
    match reason {
        "ErrImagePull"
        | "ImagePullBackOff"
        | "InvalidImageName"
        | "ErrImageNeverPull"
        | "RegistryUnavailable"
        | "ImageInspectError" => Some(TroubleKind::ImagePull),
        "CrashLoopBackOff" => Some(TroubleKind::CrashLoop),
        "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
            Some(TroubleKind::Config)
        }
        _ => None,
    }
}

/// The kubelet's `verifyRunAsNonRoot` errors, which come as `CreateContainerConfigError`.
fn runs_as_root(message: &str) -> bool {
    message.contains("container has runAsNonRoot and image")
        || message.contains("runAsUser breaks non-root policy")
}

fn container_trouble(pod: &str, c: &ContainerStatus) -> Option<PodTrouble> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.clone().unwrap_or_default();
    let mut kind = waiting_kind(&reason)?;
    if kind == TroubleKind::Config && runs_as_root(waiting.message.as_deref().unwrap_or("")) {
        kind = TroubleKind::RunAsRoot;
    }
    Some(PodTrouble {
        pod: pod.to_owned(),
        container: Some(c.name.clone()),
        kind,
        reason,
        message: waiting.message.clone().unwrap_or_default(),
        restarts: c.restart_count,
    })
}

/// Every reason `pod` gives for not running: waiting containers (init containers included)
/// with a known trouble reason, and an `Unschedulable` scheduling condition.
pub fn pod_trouble(pod: &Pod) -> Vec<PodTrouble> {
    let name = pod.name_any();
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<PodTrouble> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| container_trouble(&name, c))
        .collect();
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unschedulable {
        out.push(PodTrouble {
            pod: name,
            container: None,
            kind: TroubleKind::Unschedulable,
            reason: "Unschedulable".into(),
            message: c.message.clone().unwrap_or_default(),
            restarts: 0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rollout_status_follows_kubectl() {
        let d = |generation: i64, status: serde_json::Value| {
            deployment(
                json!({"metadata": {"name": "app", "generation": generation},
                "spec": {"replicas": 2, "selector": {}, "template": {}}, "status": status}),
            )
        };
        assert_eq!(
            rollout_status(&deployment(
                json!({"metadata": {"name": "app", "generation": 1}})
            )),
            RolloutStatus::NotObserved
        );
        assert_eq!(
            rollout_status(&d(
                2,
                json!({"observedGeneration": 1, "replicas": 2,
                "updatedReplicas": 2, "availableReplicas": 2})
            )),
            RolloutStatus::NotObserved
        );
        assert_eq!(
            rollout_status(&d(
                2,
                json!({"observedGeneration": 2, "replicas": 2,
                "updatedReplicas": 1, "availableReplicas": 2})
            )),
            RolloutStatus::Progressing("1 of 2 new replicas have been updated".into())
        );
        assert_eq!(
            rollout_status(&d(
                2,
                json!({"observedGeneration": 2, "replicas": 3,
                "updatedReplicas": 2, "availableReplicas": 3})
            )),
            RolloutStatus::Progressing("1 old replicas are pending termination".into())
        );
        assert_eq!(
            rollout_status(&d(
                2,
                json!({"observedGeneration": 2, "replicas": 2,
                "updatedReplicas": 2, "availableReplicas": 1})
            )),
            RolloutStatus::Progressing("1 of 2 updated replicas are available".into())
        );
        assert_eq!(
            rollout_status(&d(
                2,
                json!({"observedGeneration": 2, "replicas": 2,
                "updatedReplicas": 2, "availableReplicas": 2})
            )),
            RolloutStatus::Complete
        );
        assert_eq!(
            rollout_status(&d(
                2,
                json!({"observedGeneration": 2, "replicas": 2,
                "updatedReplicas": 2, "conditions": [{"type": "Progressing", "status": "False",
                "reason": "ProgressDeadlineExceeded", "message": "timed out"}]})
            )),
            RolloutStatus::DeadlineExceeded("timed out".into())
        );
    }

    fn rs(name: &str, uid: &str, owner: &str, revision: &str) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name, "uid": uid,
            "annotations": {REVISION_ANNOTATION: revision},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app",
                "uid": owner, "controller": true}]}}))
        .unwrap()
    }

    #[test]
    fn the_current_replica_set_is_the_newest_one_the_deployment_controls() {
        let d = deployment(
            json!({"metadata": {"name": "app", "uid": "d1", "generation": 2},
            "spec": {"selector": {}, "template": {}}, "status": {"observedGeneration": 2}}),
        );
        let sets = vec![
            rs("app-a", "r1", "d1", "1"),
            rs("app-c", "r3", "other", "9"),
            rs("app-b", "r2", "d1", "2"),
        ];
        assert_eq!(
            current_replica_set(&d, &sets).and_then(|r| r.metadata.name.as_deref()),
            Some("app-b")
        );
        let unobserved = deployment(json!({"metadata": {"name": "app", "uid": "d1",
            "generation": 3}, "status": {"observedGeneration": 2}}));
        assert!(current_replica_set(&unobserved, &sets).is_none());

        let pod = |name: &str, owner: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": owner,
                 "controller": true}]}}))
            .unwrap()
        };
        let pods = vec![pod("p1", "r1"), pod("p2", "r2"), pod("p3", "r2")];
        let names: Vec<_> = pods_of(&sets[2], &pods)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["p2", "p3"]);
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "app-1"}, "status": status})).unwrap()
    }

    #[test]
    fn trouble_is_read_from_waiting_containers_and_scheduling() {
        let pulling = pod(json!({"containerStatuses": [{"name": "app", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]}));
        let t = pod_trouble(&pulling);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].kind, TroubleKind::ImagePull);
        assert!(t[0].kind.is_fatal_when_persistent());
        assert_eq!(
            t[0].describe(),
            "pod app-1 container app: ImagePullBackOff: Back-off pulling image \"x\""
        );

        let crashing = pod(json!({"containerStatuses": [{"name": "app", "image": "x",
            "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}));
        let t = pod_trouble(&crashing);
        assert_eq!((t[0].kind, t[0].restarts), (TroubleKind::CrashLoop, 3));
        assert_eq!(t[0].describe(), "pod app-1 container app: CrashLoopBackOff");

        let config = pod(
            json!({"initContainerStatuses": [{"name": "init", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"db\" not found"}}}]}),
        );
        let t = pod_trouble(&config);
        assert_eq!(t[0].kind, TroubleKind::Config);
        assert!(!t[0].kind.is_fatal_when_persistent());

        let root = pod(json!({"containerStatuses": [{"name": "app", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message":
                "container has runAsNonRoot and image will run as root (pod: \"app-1_ns(u)\", container: app)"}}}]}));
        let t = pod_trouble(&root);
        assert_eq!(t[0].kind, TroubleKind::RunAsRoot);
        assert!(t[0].kind.is_fatal_when_persistent() && t[0].kind.is_certain());
        let named = pod(json!({"containerStatuses": [{"name": "app", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message":
                "container has runAsNonRoot and image has non-numeric user (node), cannot verify user is non-root (pod: \"p\", container: app)"}}}]}));
        assert_eq!(pod_trouble(&named)[0].kind, TroubleKind::RunAsRoot);

        let pending = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available"}]}),
        );
        let t = pod_trouble(&pending);
        assert_eq!(t[0].kind, TroubleKind::Unschedulable);
        assert_eq!(
            t[0].describe(),
            "pod app-1: Unschedulable: 0/1 nodes are available"
        );

        let creating = pod(json!({"containerStatuses": [{"name": "app", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert!(pod_trouble(&creating).is_empty());
        assert!(pod_trouble(&pod(json!(null))).is_empty());
    }

    #[test]
    fn replica_failures_come_from_the_current_replica_set_only() {
        let forbidden = "pods \"app-5d-x\" is forbidden: violates PodSecurity \"restricted:latest\": \
                         runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true)";
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "app-5d"},
            "status": {"replicas": 0, "conditions": [{"type": "ReplicaFailure", "status": "True",
                "reason": "FailedCreate", "message": forbidden}]}}))
        .unwrap();
        let f = replica_failure(&rs).unwrap();
        assert_eq!(f.reason, "FailedCreate");
        assert!(f.is_permanent());
        let quota: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "app-6e"},
            "status": {"replicas": 0, "conditions": [{"type": "ReplicaFailure", "status": "True",
                "reason": "FailedCreate",
                "message": "pods \"app-6e-x\" is forbidden: exceeded quota: slipway-quota"}]}}))
        .unwrap();
        assert!(!replica_failure(&quota).unwrap().is_permanent());
        let fine: ReplicaSet = serde_json::from_value(
            json!({"metadata": {"name": "app-7f"}, "status": {"replicas": 1}}),
        )
        .unwrap();
        assert_eq!(replica_failure(&fine), None);
    }

    fn stateful_set(v: serde_json::Value) -> StatefulSet {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn stateful_set_status_follows_kubectls_viewer() {
        let s = |generation: i64, strategy: serde_json::Value, status: serde_json::Value| {
            stateful_set(json!({"metadata": {"name": "db", "generation": generation},
                "spec": {"replicas": 2, "selector": {}, "template": {}, "serviceName": "db",
                    "updateStrategy": strategy},
                "status": status}))
        };
        let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
        assert_eq!(
            stateful_set_status(&stateful_set(json!({"metadata": {"name": "db"}}))),
            RolloutStatus::NotObserved
        );
        // observedGeneration 0 is "not observed" too, as kubectl reads it.
        assert_eq!(
            stateful_set_status(&s(1, rolling.clone(), json!({"replicas": 0}))),
            RolloutStatus::NotObserved
        );
        assert_eq!(
            stateful_set_status(&s(
                2,
                rolling.clone(),
                json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2})
            )),
            RolloutStatus::NotObserved
        );
        assert_eq!(
            stateful_set_status(&s(
                2,
                rolling.clone(),
                json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1,
                    "updatedReplicas": 2})
            )),
            RolloutStatus::Progressing("Waiting for 1 pods to be ready".into())
        );
        assert_eq!(
            stateful_set_status(&s(
                2,
                rolling.clone(),
                json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2,
                    "updatedReplicas": 1, "currentRevision": "db-a", "updateRevision": "db-b"})
            )),
            RolloutStatus::Progressing(
                "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been \
                 updated"
                    .into()
            )
        );
        assert_eq!(
            stateful_set_status(&s(
                2,
                rolling,
                json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2,
                    "updatedReplicas": 2, "currentRevision": "db-a", "updateRevision": "db-b"})
            )),
            RolloutStatus::Complete
        );
        // Without rollingUpdate parameters: the revisions decide.
        let plain = json!({"type": "RollingUpdate"});
        assert!(matches!(
            stateful_set_status(&s(
                2,
                plain.clone(),
                json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2,
                    "updatedReplicas": 2, "currentRevision": "db-a", "updateRevision": "db-b"})
            )),
            RolloutStatus::Progressing(_)
        ));
        assert_eq!(
            stateful_set_status(&s(
                2,
                plain,
                json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2,
                    "updatedReplicas": 2, "currentRevision": "db-b", "updateRevision": "db-b"})
            )),
            RolloutStatus::Complete
        );
    }

    #[test]
    fn a_stateful_sets_pods_are_those_of_its_update_revision() {
        let set = stateful_set(json!({"metadata": {"name": "db", "uid": "s1"},
            "status": {"replicas": 2, "updateRevision": "db-b"}}));
        let pod = |name: &str, owner: &str, rev: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name,
                "labels": {"controller-revision-hash": rev},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "db", "uid": owner, "controller": true}]}}))
            .unwrap()
        };
        let pods = vec![
            pod("db-0", "s1", "db-b"),
            pod("db-1", "s1", "db-a"),
            pod("other-0", "s2", "db-b"),
        ];
        let names: Vec<_> = stateful_set_pods(&set, &pods)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["db-0"]);
        assert_eq!(Workload::stateful_set("db").to_string(), "StatefulSet db");
    }

    #[test]
    fn a_stateful_sets_create_failures_come_from_its_recent_events() {
        let set = stateful_set(json!({"metadata": {"name": "db"},
            "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "db"},
            "status": {"replicas": 0}}));
        let event = |name: &str, reason: &str, at: &str, message: &str| -> Event {
            serde_json::from_value(json!({"metadata": {"name": format!("{name}.1")},
                "involvedObject": {"kind": "StatefulSet", "name": name},
                "reason": reason, "type": "Warning", "message": message,
                "lastTimestamp": at}))
            .unwrap()
        };
        let forbidden = "create Pod db-0 in StatefulSet db failed error: pods \"db-0\" is \
                         forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true";
        let events = vec![
            event("db", "FailedCreate", "2026-01-01T00:00:00Z", "old"),
            event("db", "FailedCreate", "2026-01-01T00:10:00Z", forbidden),
            event("cache", "FailedCreate", "2026-01-01T00:20:00Z", "not ours"),
            event("db", "SuccessfulCreate", "2026-01-01T00:30:00Z", "fine"),
        ];
        let since = 1_767_225_600 + 60; // 2026-01-01T00:01:00Z
        let f = stateful_set_failure(&set, &events, since).unwrap();
        assert_eq!(f.message, forbidden);
        assert!(f.is_permanent());
        // Older than the wait: an earlier launch's.
        assert_eq!(stateful_set_failure(&set, &events[..1], since), None);
        // A set that has its pods is not failing to create them.
        let full = stateful_set(json!({"metadata": {"name": "db"},
            "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "db"},
            "status": {"replicas": 1}}));
        assert_eq!(stateful_set_failure(&full, &events, since), None);
    }

    #[test]
    fn readiness_is_the_ready_condition() {
        assert!(pod_ready(&pod(
            json!({"conditions": [{"type": "Ready", "status": "True"}]})
        )));
        assert!(!pod_ready(&pod(
            json!({"conditions": [{"type": "Ready", "status": "False"}]})
        )));
        assert!(!pod_ready(&pod(json!({}))));
    }
}
