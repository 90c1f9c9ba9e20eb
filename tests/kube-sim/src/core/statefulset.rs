//! The StatefulSet controller (kubernetes `pkg/controller/statefulset`: `stateful_set.go`,
//! `stateful_set_control.go`, `stateful_set_utils.go`, `stateful_pod_control.go`) and the
//! PersistentVolume controller's dynamic provisioning of claims
//! (`pkg/controller/volume/persistentvolume/pv_controller.go`) with minikube's hostpath
//! provisioner, and the scheduler's VolumeBinding PreFilter
//! (`pkg/scheduler/framework/plugins/volumebinding/volume_binding.go`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Core, CtlState, controller_uid, deleting, i, pod_ready, s, template_hash};
use crate::defaults::{DEFAULT_PROVISIONER, DEFAULT_STORAGE_CLASS};
use crate::kinds::{by_plural, idx};
use crate::store::{DeleteOpts, Part};

const COMPONENT: &str = "statefulset-controller";

/// `isRunningAndReady` (stateful_set_utils.go): phase Running and the Ready condition.
fn running_and_ready(p: &Value) -> bool {
    s(p, "/status/phase") == "Running" && pod_ready(p)
}

fn failed(p: &Value) -> bool {
    matches!(s(p, "/status/phase"), "Failed" | "Succeeded")
}

/// `getPodRevision`: the `controller-revision-hash` label.
fn pod_revision(p: &Value) -> &str {
    s(p, "/metadata/labels/controller-revision-hash")
}

pub(super) fn statefulsets() -> usize {
    by_plural("statefulsets")
}

pub(super) fn claims() -> usize {
    by_plural("persistentvolumeclaims")
}

impl Core {
    /// One sync of a StatefulSet (`defaultStatefulSetControl.updateStatefulSet`).
    pub(super) fn reconcile_sts(&self, st: &mut CtlState, ns: &str, name: &str) {
        let Ok(set) = self.store.get(statefulsets(), ns, name) else {
            return;
        };
        let uid = s(&set, "/metadata/uid").to_string();
        if deleting(&set) {
            st.sts_retry.remove(&uid);
            return;
        }
        let replicas = set
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0);
        let start = i(&set, "/spec/ordinals/start").max(0);
        let tpl = set
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        // A ControllerRevision's name is `<set>-<hash of the template>`; the pods carry it in
        // `controller-revision-hash` (history.go / stateful_set_utils.go newRevision).
        let update_rev = format!("{name}-{}", template_hash(&tpl));
        st.sts_revisions
            .entry(format!("{ns}/{update_rev}"))
            .or_insert_with(|| tpl.clone());
        let current_rev = match s(&set, "/status/currentRevision") {
            "" => update_rev.clone(),
            r => r.to_string(),
        };
        let parallel = s(&set, "/spec/podManagementPolicy") == "Parallel";
        let rolling = s(&set, "/spec/updateStrategy/type") != "OnDelete";
        let partition = i(&set, "/spec/updateStrategy/rollingUpdate/partition").max(0);

        let by_ordinal = |pods: &[Arc<Value>]| -> BTreeMap<i64, Arc<Value>> {
            pods.iter()
                .filter_map(|p| {
                    let n = s(p, "/metadata/name").strip_prefix(&format!("{name}-"))?;
                    Some((n.parse::<i64>().ok()?, p.clone()))
                })
                .collect()
        };
        let owned = |core: &Self| -> Vec<Arc<Value>> {
            core.store
                .owned(&uid, idx::pods())
                .into_iter()
                .filter(|p| controller_uid(p).as_deref() == Some(uid.as_str()))
                .collect()
        };
        let pods = by_ordinal(&owned(self));
        let mut retry = false;
        'sync: {
            // Replicas in ordinal order (processReplica): a failed pod is deleted and made
            // again; a missing one is created with its claims; with OrderedReady nothing after
            // a pod that is not Running and Ready.
            for ord in start..start + replicas {
                match pods.get(&ord) {
                    Some(p) if failed(p) && !deleting(p) => {
                        self.delete_sts_pod(&set, p);
                        if !parallel {
                            break 'sync;
                        }
                        continue;
                    }
                    Some(p) => {
                        if !parallel && (deleting(p) || !running_and_ready(p)) {
                            break 'sync;
                        }
                    }
                    None => {
                        let rev = if rolling && ord - start < partition {
                            current_rev.clone()
                        } else {
                            update_rev.clone()
                        };
                        let rev_tpl = st
                            .sts_revisions
                            .get(&format!("{ns}/{rev}"))
                            .cloned()
                            .unwrap_or_else(|| tpl.clone());
                        if !self.create_sts_pod(st, &set, ord, &rev, &rev_tpl) || !parallel {
                            break 'sync;
                        }
                    }
                }
            }
            // Condemned pods (ordinals past the replicas), highest first; with OrderedReady one
            // at a time and only while every other pod is Running and Ready.
            let condemned: Vec<&Arc<Value>> = pods
                .iter()
                .rev()
                .filter(|(o, _)| **o < start || **o >= start + replicas)
                .map(|(_, p)| p)
                .collect();
            for p in &condemned {
                if deleting(p) {
                    if !parallel {
                        break 'sync;
                    }
                    continue;
                }
                if !parallel
                    && pods.iter().any(|(o, q)| {
                        (start..start + replicas).contains(o) && !running_and_ready(q)
                    })
                {
                    break 'sync;
                }
                self.delete_sts_pod(&set, p);
                if !parallel {
                    break 'sync;
                }
            }
            if !condemned.is_empty() {
                break 'sync;
            }
            // RollingUpdate: from the highest ordinal down to the partition, delete one pod not
            // at the update revision, and wait for each to come back Running and Ready.
            if rolling {
                for ord in (start + partition..start + replicas).rev() {
                    let Some(p) = pods.get(&ord) else {
                        break 'sync;
                    };
                    if pod_revision(p) != update_rev && !deleting(p) {
                        self.delete_sts_pod(&set, p);
                        break 'sync;
                    }
                    if deleting(p) || !running_and_ready(p) {
                        break 'sync;
                    }
                }
            }
        }

        // Status (updateStatefulSet / computeReplicaStatus) from the pods after this sync.
        let pods = owned(self);
        let min_ready = i(&set, "/spec/minReadySeconds");
        let now = Instant::now();
        let (mut ready, mut available, mut current, mut updated) = (0i64, 0i64, 0i64, 0i64);
        for p in &pods {
            let puid = s(p, "/metadata/uid").to_string();
            if running_and_ready(p) {
                ready += 1;
                let since = *st.sts_ready_since.entry(puid).or_insert(now);
                if min_ready <= 0 || now >= since + self.delays.scaled(min_ready as f64) {
                    available += 1;
                } else {
                    retry = true;
                }
            } else {
                st.sts_ready_since.remove(&puid);
            }
            if !deleting(p) {
                if pod_revision(p) == current_rev {
                    current += 1;
                }
                if pod_revision(p) == update_rev {
                    updated += 1;
                }
            }
        }
        let count = pods.len() as i64;
        let (mut cur_rev, mut cur_count) = (current_rev, current);
        // completeRollingUpdate: every pod updated and ready ends the rollout.
        if rolling && updated == count && ready == count {
            cur_rev.clone_from(&update_rev);
            cur_count = updated;
        }
        let gen_ = i(&set, "/metadata/generation");
        let collisions = i(&set, "/status/collisionCount");
        let _ = self
            .store
            .mutate(statefulsets(), ns, name, Part::Status, |o| {
                let mut status = json!({
                    "observedGeneration": gen_, "replicas": count, "readyReplicas": ready,
                    "currentReplicas": cur_count, "updatedReplicas": updated,
                    "currentRevision": cur_rev, "updateRevision": update_rev,
                    "collisionCount": collisions, "availableReplicas": available,
                });
                // omitempty fields of StatefulSetStatus.
                if let Some(m) = status.as_object_mut() {
                    for f in ["readyReplicas", "currentReplicas", "updatedReplicas"] {
                        if m[f] == 0 {
                            m.remove(f);
                        }
                    }
                }
                o["status"] = status;
            });
        if retry {
            st.sts_retry.insert(
                uid,
                (
                    ns.to_string(),
                    name.to_string(),
                    Instant::now() + std::time::Duration::from_millis(50),
                ),
            );
        } else {
            st.sts_retry.remove(&uid);
        }
    }

    fn delete_sts_pod(&self, set: &Value, p: &Value) {
        let pod = s(p, "/metadata/name");
        let set_name = s(set, "/metadata/name");
        if self
            .store
            .delete(
                idx::pods(),
                s(p, "/metadata/namespace"),
                pod,
                &DeleteOpts::default(),
            )
            .is_ok()
        {
            // stateful_pod_control.go recordPodEvent.
            self.event(
                set,
                "Normal",
                "SuccessfulDelete",
                &format!("delete Pod {pod} in StatefulSet {set_name} successful"),
                COMPONENT,
            );
        }
    }

    /// `newVersionedStatefulSetPod` and `CreateStatefulPod`: the claims first, then the pod.
    /// Returns false when a create failed (the sync stops and is retried).
    fn create_sts_pod(
        &self,
        st: &mut CtlState,
        set: &Value,
        ord: i64,
        rev: &str,
        tpl: &Value,
    ) -> bool {
        let ns = s(set, "/metadata/namespace");
        let set_name = s(set, "/metadata/name");
        let set_uid = s(set, "/metadata/uid");
        let pod_name = format!("{set_name}-{ord}");
        let mut pod = json!({
            "metadata": tpl.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "spec": tpl.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        pod["metadata"]["name"] = json!(pod_name);
        if !pod["metadata"].get("labels").is_some_and(Value::is_object) {
            pod["metadata"]["labels"] = json!({});
        }
        // initIdentity / updateIdentity / newVersionedStatefulSetPod.
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
        // PodIndexLabel: beta (on by default) in 1.28, GA in 1.32.
        if self.kube_version.minor >= 28 {
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!(ord.to_string());
        }
        pod["metadata"]["labels"]["controller-revision-hash"] = json!(rev);
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "StatefulSet", "name": set_name, "uid": set_uid,
            "controller": true, "blockOwnerDeletion": true,
        }]);
        pod["spec"]["hostname"] = json!(pod_name);
        let service = s(set, "/spec/serviceName");
        if !service.is_empty() {
            pod["spec"]["subdomain"] = json!(service);
        }
        // updateStorage: a claim per template replaces a pod volume of the same name.
        let templates = set
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let when_deleted = s(
            set,
            "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
        ) == "Delete";
        for t in &templates {
            let tname = s(t, "/metadata/name");
            let claim = format!("{tname}-{set_name}-{ord}");
            if !pod["spec"].get("volumes").is_some_and(Value::is_array) {
                pod["spec"]["volumes"] = json!([]);
            }
            if let Some(vols) = pod["spec"]["volumes"].as_array_mut() {
                vols.retain(|v| v["name"] != tname);
                vols.push(json!({"name": tname, "persistentVolumeClaim": {"claimName": claim}}));
            }
            if self.store.get(claims(), ns, &claim).is_ok() {
                continue;
            }
            let mut pvc = json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "labels": t.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({}))},
                "spec": t.get("spec").cloned().unwrap_or_else(|| json!({})),
            });
            if let Some(a) = t.pointer("/metadata/annotations") {
                pvc["metadata"]["annotations"] = a.clone();
            }
            if !pvc["metadata"]["labels"].is_object() {
                pvc["metadata"]["labels"] = json!({});
            }
            // getPersistentVolumeClaims: the selector's matchLabels are added to the claim.
            if let Some(ml) = set
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
            {
                for (k, v) in ml {
                    pvc["metadata"]["labels"][k] = v.clone();
                }
            }
            // With the default Retain/Retain policy the claim has no owner: it outlives the
            // pod and the set, and goes with the namespace.
            if when_deleted {
                pvc["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "name": set_name,
                    "uid": set_uid, "controller": true, "blockOwnerDeletion": true,
                }]);
            }
            match self.store.create(claims(), ns, pvc, None) {
                Ok(_) => self.event(
                    set,
                    "Normal",
                    "SuccessfulCreate",
                    &format!(
                        "create Claim {claim} Pod {pod_name} in StatefulSet {set_name} success"
                    ),
                    COMPONENT,
                ),
                Err(e) => {
                    self.event(
                        set,
                        "Warning",
                        "FailedCreate",
                        &format!(
                            "create Claim {claim} for Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                            e.message
                        ),
                        COMPONENT,
                    );
                    self.sts_retry_later(st, set);
                    return false;
                }
            }
        }
        match self.store.create(idx::pods(), ns, pod, None) {
            Ok(_) => {
                self.event(
                    set,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                    COMPONENT,
                );
                true
            }
            Err(e) => {
                self.event(
                    set,
                    "Warning",
                    "FailedCreate",
                    &format!(
                        "create Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                        e.message
                    ),
                    COMPONENT,
                );
                self.sts_retry_later(st, set);
                false
            }
        }
    }

    fn sts_retry_later(&self, st: &mut CtlState, set: &Value) {
        st.sts_retry.insert(
            s(set, "/metadata/uid").to_string(),
            (
                s(set, "/metadata/namespace").to_string(),
                s(set, "/metadata/name").to_string(),
                Instant::now() + self.delays.scaled(10.0),
            ),
        );
    }

    // ---- PersistentVolume controller + minikube's hostpath provisioner ----

    /// A new or changed claim: an unbound claim of the default class is provisioned after a
    /// (scaled) second; one naming an unknown class gets `ProvisioningFailed`; one with
    /// `storageClassName: ""` waits for a PersistentVolume that never comes (`FailedBinding`).
    pub(super) fn on_claim(&self, st: &mut CtlState, pvc: &Value) {
        if deleting(pvc) || s(pvc, "/status/phase") != "Pending" {
            return;
        }
        let uid = s(pvc, "/metadata/uid").to_string();
        if !st.claims_seen.insert(uid.clone()) {
            return;
        }
        let ns = s(pvc, "/metadata/namespace").to_string();
        let name = s(pvc, "/metadata/name").to_string();
        match s(pvc, "/spec/storageClassName") {
            "" => self.event(
                pvc,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
                "persistentvolume-controller",
            ),
            DEFAULT_STORAGE_CLASS => {
                // pv_controller.go provisionClaim for an out-of-tree provisioner: the claim is
                // annotated with it and an ExternalProvisioning event is recorded.
                let _ = self.store.mutate(claims(), &ns, &name, Part::Main, |c| {
                    if !c["metadata"]
                        .get("annotations")
                        .is_some_and(Value::is_object)
                    {
                        c["metadata"]["annotations"] = json!({});
                    }
                    let a = &mut c["metadata"]["annotations"];
                    a["volume.beta.kubernetes.io/storage-provisioner"] = json!(DEFAULT_PROVISIONER);
                    a["volume.kubernetes.io/storage-provisioner"] = json!(DEFAULT_PROVISIONER);
                });
                self.event(pvc, "Normal", "ExternalProvisioning",
                    &format!("Waiting for a volume to be created either by the external provisioner '{DEFAULT_PROVISIONER}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."),
                    "persistentvolume-controller");
                st.claims_pending
                    .insert(uid, (ns, name, Instant::now() + self.delays.scaled(1.0)));
            }
            other => self.event(
                pvc,
                "Warning",
                "ProvisioningFailed",
                &format!("storageclass.storage.k8s.io \"{other}\" not found"),
                "persistentvolume-controller",
            ),
        }
    }

    /// Claims whose provisioning time has come are bound to a new volume `pvc-<uid>`.
    pub(super) fn bind_due_claims(&self, st: &mut CtlState) {
        let now = Instant::now();
        let due: Vec<(String, String, String)> = st
            .claims_pending
            .iter()
            .filter(|(_, (_, _, at))| *at <= now)
            .map(|(u, (n, m, _))| (u.clone(), n.clone(), m.clone()))
            .collect();
        for (uid, ns, name) in due {
            st.claims_pending.remove(&uid);
            let Ok(pvc) = self.store.get(claims(), &ns, &name) else {
                continue;
            };
            if s(&pvc, "/metadata/uid") != uid || deleting(&pvc) {
                continue;
            }
            let volume = format!("pvc-{uid}");
            self.event(
                &pvc,
                "Normal",
                "Provisioning",
                &format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
                &format!(
                    "{DEFAULT_PROVISIONER}_minikube_{}",
                    &uid[..8.min(uid.len())]
                ),
            );
            let _ = self.store.mutate(claims(), &ns, &name, Part::Main, |c| {
                c["spec"]["volumeName"] = json!(volume);
                let a = &mut c["metadata"]["annotations"];
                a["pv.kubernetes.io/bind-completed"] = json!("yes");
                a["pv.kubernetes.io/bound-by-controller"] = json!("yes");
            });
            let _ = self.store.mutate(claims(), &ns, &name, Part::Status, |c| {
                let modes = c
                    .pointer("/spec/accessModes")
                    .cloned()
                    .unwrap_or_else(|| json!([]));
                let size = c
                    .pointer("/spec/resources/requests/storage")
                    .cloned()
                    .unwrap_or(Value::Null);
                c["status"] =
                    json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}});
            });
            self.event(
                &pvc,
                "Normal",
                "ProvisioningSucceeded",
                &format!("Successfully provisioned volume {volume}"),
                &format!(
                    "{DEFAULT_PROVISIONER}_minikube_{}",
                    &uid[..8.min(uid.len())]
                ),
            );
        }
    }

    /// The scheduler's VolumeBinding PreFilter for a pod's claims: `None` when every claim is
    /// Bound, else the reason it cannot be scheduled (a missing claim, an unbound one).
    pub(super) fn unbound_claims(&self, pod: &Value) -> Option<String> {
        let ns = s(pod, "/metadata/namespace");
        let volumes = pod.pointer("/spec/volumes").and_then(Value::as_array);
        let mut unbound = false;
        for v in volumes.into_iter().flatten() {
            let claim = s(v, "/persistentVolumeClaim/claimName");
            if claim.is_empty() {
                continue;
            }
            match self.store.get(claims(), ns, claim) {
                Err(_) => return Some(format!("persistentvolumeclaim \"{claim}\" not found")),
                Ok(c) if deleting(&c) => {
                    return Some(format!(
                        "persistentvolumeclaim \"{claim}\" is being deleted"
                    ));
                }
                Ok(c) if s(&c, "/status/phase") != "Bound" => unbound = true,
                Ok(_) => {}
            }
        }
        unbound.then(|| "pod has unbound immediate PersistentVolumeClaims".to_string())
    }
}
