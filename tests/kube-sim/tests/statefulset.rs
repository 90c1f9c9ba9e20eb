//! StatefulSets and PersistentVolumeClaims through the API: the StatefulSet controller
//! (ordered and parallel pod management, claims from templates, scaling, rolling updates,
//! status), the PersistentVolume controller's provisioning with the default class, the
//! scheduler's handling of unbound claims, garbage collection, and apiserver validation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::{Delays, KubeSim};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn sts(name: &str, replicas: i64, extra_spec: Value) -> StatefulSet {
    let mut s = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"serviceName": name, "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "containers": [{"name": "db", "image": "postgres:16",
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    if let (Some(spec), Some(extra)) = (s["spec"].as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(s).unwrap()
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

fn i(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's `StatefulSetStatusViewer.Status` (staging/src/k8s.io/kubectl/pkg/polymorphichelpers/
/// rollout_status.go): done when the spec was observed, every replica is ready and, with a
/// RollingUpdate (partition defaulted), the updated replicas reach `replicas - partition`.
fn rollout_done(o: &Value) -> bool {
    let observed = i(o, "/status/observedGeneration");
    if observed == 0 || i(o, "/metadata/generation") > observed {
        return false;
    }
    let replicas = i(o, "/spec/replicas");
    if i(o, "/status/readyReplicas") < replicas {
        return false;
    }
    if let Some(p) = o.pointer("/spec/updateStrategy/rollingUpdate/partition") {
        return i(o, "/status/updatedReplicas") >= replicas - p.as_i64().unwrap_or(0);
    }
    o["status"]["updateRevision"] == o["status"]["currentRevision"]
}

fn events_for(sim: &KubeSim, ns: &str, name: &str) -> Vec<(String, String)> {
    sim.objects("events", Some(ns))
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn ordered_ready_pods_claims_labels_and_status() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(150),
            ..Delays::zero()
        })
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let created = sets
        .create(&PostParams::default(), &sts("db", 3, json!({})))
        .await
        .unwrap();
    let spec = created.spec.clone().unwrap();
    // SetDefaults_StatefulSet.
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let us = spec.update_strategy.clone().unwrap();
    assert_eq!(us.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(us.rolling_update.unwrap().partition, Some(0));
    let policy = spec.persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(policy.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(policy.when_scaled.as_deref(), Some("Retain"));

    // Every state seen: ordinal N+1 exists only once N is Running and Ready; a pod is created
    // only after its claim.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let v = violations.clone();
    let kind = |plural: &str| {
        kube_sim::kinds::KINDS
            .iter()
            .position(|k| k.plural == plural)
            .unwrap()
    };
    let (pods_k, pvc_k) = (kind("pods"), kind("persistentvolumeclaims"));
    sim.wait_for("three ready pods", T, move |store| {
        for n in 1..3 {
            if store.get(pods_k, "default", &format!("db-{n}")).is_ok() {
                match store.get(pods_k, "default", &format!("db-{}", n - 1)) {
                    Ok(prev) if ready(&prev) => {}
                    _ => v
                        .lock()
                        .unwrap()
                        .push(format!("db-{n} before db-{} ready", n - 1)),
                }
            }
        }
        for n in 0..3 {
            if store.get(pods_k, "default", &format!("db-{n}")).is_ok()
                && store
                    .get(pvc_k, "default", &format!("data-db-{n}"))
                    .is_err()
            {
                v.lock().unwrap().push(format!("db-{n} without its claim"));
            }
        }
        (0..3).all(|n| {
            store
                .get(pods_k, "default", &format!("db-{n}"))
                .is_ok_and(|p| ready(&p))
        })
    })
    .await
    .unwrap();
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );

    let o = sim
        .wait_for_object("statefulsets", "default", "db", T, |o| {
            i(o, "/status/readyReplicas") == 3 && i(o, "/status/availableReplicas") == 3
        })
        .await
        .unwrap();
    let rev = o["status"]["updateRevision"].as_str().unwrap().to_string();
    assert!(rev.starts_with("db-"), "{rev}");
    assert_eq!(o["status"]["currentRevision"], rev.as_str());
    assert_eq!(i(&o, "/status/replicas"), 3);
    assert_eq!(i(&o, "/status/currentReplicas"), 3);
    assert_eq!(i(&o, "/status/updatedReplicas"), 3);
    assert_eq!(i(&o, "/status/observedGeneration"), 1);
    assert!(rollout_done(&o));

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p1 = pods.get("db-1").await.unwrap();
    let labels = p1.metadata.labels.clone().unwrap();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "db-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(labels["controller-revision-hash"], rev);
    assert_eq!(labels["app"], "db");
    let owner = &p1.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("StatefulSet", "db", Some(true))
    );
    assert_eq!(owner.uid, created.metadata.uid.clone().unwrap());
    let pspec = p1.spec.unwrap();
    assert_eq!(pspec.hostname.as_deref(), Some("db-1"));
    assert_eq!(pspec.subdomain.as_deref(), Some("db"));
    let vol = pspec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(vol.persistent_volume_claim.unwrap().claim_name, "data-db-1");

    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let c = claims.get("data-db-1").await.unwrap();
    assert!(c.metadata.owner_references.is_none_or(|o| o.is_empty()));
    assert_eq!(c.metadata.labels.unwrap()["app"], "db");
    let cs = c.spec.unwrap();
    assert_eq!(cs.storage_class_name.as_deref(), Some("standard"));
    assert_eq!(cs.volume_mode.as_deref(), Some("Filesystem"));
    assert!(cs.volume_name.unwrap().starts_with("pvc-"));
    let status = c.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Bound"));
    assert_eq!(status.capacity.unwrap()["storage"].0, "1Gi");
    let ev = events_for(&sim, "default", "db");
    assert!(ev.contains(&(
        "SuccessfulCreate".into(),
        "create Claim data-db-0 Pod db-0 in StatefulSet db success".into()
    )));
    assert!(ev.contains(&(
        "SuccessfulCreate".into(),
        "create Pod db-0 in StatefulSet db successful".into()
    )));
}

#[tokio::test]
async fn parallel_creates_every_pod_at_once() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(400),
            ..Delays::zero()
        })
        .start()
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(sim.client().unwrap());
    sets.create(
        &PostParams::default(),
        &sts("cache", 3, json!({"podManagementPolicy": "Parallel"})),
    )
    .await
    .unwrap();
    let kind = kube_sim::kinds::KINDS
        .iter()
        .position(|k| k.plural == "pods")
        .unwrap();
    sim.wait_for("three pods", T, move |store| {
        (0..3).all(|n| store.get(kind, "default", &format!("cache-{n}")).is_ok())
    })
    .await
    .unwrap();
    let ready_now = (0..3)
        .filter(|n| {
            sim.object("pods", "default", &format!("cache-{n}"))
                .is_some_and(|p| ready(&p))
        })
        .count();
    assert!(
        ready_now < 3,
        "Parallel must not wait for readiness ({ready_now} ready)"
    );
    sim.wait_for_object("statefulsets", "default", "cache", T, |o| {
        i(o, "/status/readyReplicas") == 3
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rolling_update_scale_down_and_deletion_keep_claims() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(60),
            ..Delays::zero()
        })
        .namespace("preview")
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "preview");
    sets.create(&PostParams::default(), &sts("db", 3, json!({})))
        .await
        .unwrap();
    let o = sim
        .wait_for_object("statefulsets", "preview", "db", T, rollout_done)
        .await
        .unwrap();
    let old_rev = o["status"]["updateRevision"].as_str().unwrap().to_string();
    let uids: Vec<String> = (0..3)
        .map(|n| {
            sim.object("pods", "preview", &format!("db-{n}")).unwrap()["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    // Update the template: pods are replaced highest ordinal first, one at a time; kubectl's
    // rollout status condition holds only once every pod runs the new revision and is ready.
    let pods_k = kube_sim::kinds::KINDS
        .iter()
        .position(|k| k.plural == "pods")
        .unwrap();
    let sts_k = kube_sim::kinds::KINDS
        .iter()
        .position(|k| k.plural == "statefulsets")
        .unwrap();
    let seen = Arc::new(Mutex::new((Vec::<usize>::new(), Vec::<String>::new())));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}});
    let patcher = {
        let sets = sets.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            sets.patch("db", &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .unwrap();
        })
    };
    {
        let seen = seen.clone();
        let uids = uids.clone();
        sim.wait_for("the rollout", T, move |store| {
            let mut s = seen.lock().unwrap();
            for (n, uid) in uids.iter().enumerate() {
                let replaced = store
                    .get(pods_k, "preview", &format!("db-{n}"))
                    .map_or(true, |p| p["metadata"]["uid"] != uid.as_str());
                if replaced && !s.0.contains(&n) {
                    s.0.push(n);
                }
            }
            let Ok(o) = store.get(sts_k, "preview", "db") else {
                return false;
            };
            let done = i(&o, "/metadata/generation") == 2 && rollout_done(&o);
            if done {
                let all_new = (0..3).all(|n| {
                    store
                        .get(pods_k, "preview", &format!("db-{n}"))
                        .is_ok_and(|p| {
                            ready(&p) && p["spec"]["containers"][0]["image"] == "postgres:17"
                        })
                });
                if !all_new {
                    s.1.push("rollout reported done before every pod was updated".into());
                }
            }
            done
        })
        .await
        .unwrap();
    }
    patcher.await.unwrap();
    let o = sim.object("statefulsets", "preview", "db").unwrap();
    let (order, errors) = seen.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(order, vec![2, 1, 0]);
    let new_rev = o["status"]["updateRevision"].as_str().unwrap();
    assert_ne!(new_rev, old_rev);
    assert_eq!(o["status"]["currentRevision"], new_rev);
    assert_eq!(i(&o, "/status/updatedReplicas"), 3);
    assert_eq!(i(&o, "/status/currentReplicas"), 3);
    for n in 0..3 {
        let p = sim.object("pods", "preview", &format!("db-{n}")).unwrap();
        assert_eq!(p["metadata"]["labels"]["controller-revision-hash"], new_rev);
    }

    // Scale down: highest ordinals go, their claims stay.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    sim.wait_for_gone("pods", "preview", "db-1", T)
        .await
        .unwrap();
    assert!(sim.object("pods", "preview", "db-2").is_none());
    sim.wait_for_object("statefulsets", "preview", "db", T, |o| {
        i(o, "/status/replicas") == 1 && i(o, "/status/readyReplicas") == 1
    })
    .await
    .unwrap();
    assert_eq!(
        sim.objects("persistentvolumeclaims", Some("preview")).len(),
        3
    );

    // Deleting the set deletes its pods (ownerReferences), not the claims.
    sets.delete("db", &DeleteParams::default()).await.unwrap();
    sim.wait_for_gone("pods", "preview", "db-0", T)
        .await
        .unwrap();
    sim.wait_for_gone("statefulsets", "preview", "db", T)
        .await
        .unwrap();
    assert_eq!(
        sim.objects("persistentvolumeclaims", Some("preview")).len(),
        3
    );

    // The namespace takes the claims with it.
    let nss: Api<Namespace> = Api::all(client);
    nss.delete("preview", &DeleteParams::default())
        .await
        .unwrap();
    sim.wait_for_gone("namespaces", "", "preview", T)
        .await
        .unwrap();
    assert!(
        sim.objects("persistentvolumeclaims", Some("preview"))
            .is_empty()
    );
}

#[tokio::test]
async fn claims_bind_and_pods_wait_for_them() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    // A pod naming a claim that does not exist yet is unschedulable.
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app"}, "spec": {"containers": [{"name": "app", "image": "app:1"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "late"}}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = sim
        .wait_for_object("pods", "default", "app", T, |p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                })
        })
        .await
        .unwrap();
    assert_eq!(p["status"]["phase"], "Pending");
    let cond = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(
        cond["message"],
        "0/1 nodes are available: persistentvolumeclaim \"late\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    assert!(
        events_for(&sim, "default", "app")
            .iter()
            .any(|(r, _)| r == "FailedScheduling")
    );

    // A claim without a class gets the default one, is provisioned and bound; then the pod runs.
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({"apiVersion": "v1",
        "kind": "PersistentVolumeClaim", "metadata": {"name": "late"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}))
    .unwrap();
    let created = claims.create(&PostParams::default(), &claim).await.unwrap();
    assert_eq!(
        created.spec.unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let c = sim
        .wait_for_object("persistentvolumeclaims", "default", "late", T, |c| {
            c["status"]["phase"] == "Bound"
        })
        .await
        .unwrap();
    assert_eq!(c["status"]["capacity"]["storage"], "2Gi");
    assert_eq!(
        c["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"],
        "k8s.io/minikube-hostpath"
    );
    let reasons: Vec<String> = events_for(&sim, "default", "late")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        reasons.contains(&"ExternalProvisioning".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"ProvisioningSucceeded".to_string()),
        "{reasons:?}"
    );
    sim.wait_for_object("pods", "default", "app", T, ready)
        .await
        .unwrap();

    // An unknown class: Pending for good, with the PV controller's event.
    let fast: PersistentVolumeClaim = serde_json::from_value(json!({"apiVersion": "v1",
        "kind": "PersistentVolumeClaim", "metadata": {"name": "fast"},
        "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}))
    .unwrap();
    claims.create(&PostParams::default(), &fast).await.unwrap();
    sim.wait_for("ProvisioningFailed", T, |_| {
        events_for(&sim, "default", "fast").contains(&(
            "ProvisioningFailed".into(),
            "storageclass.storage.k8s.io \"fast\" not found".into(),
        ))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sim.object("persistentvolumeclaims", "default", "fast")
            .unwrap()["status"]["phase"],
        "Pending"
    );
    // A pod on it stays unschedulable: the claim is unbound.
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "waits"}, "spec": {"containers": [{"name": "app", "image": "app:1"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "fast"}}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = sim
        .wait_for_object("pods", "default", "waits", T, |p| {
            p.pointer("/status/conditions").is_some()
        })
        .await
        .unwrap();
    assert_eq!(
        p["status"]["conditions"][0]["message"],
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    assert!(p.pointer("/spec/nodeName").is_none());
}

#[tokio::test]
async fn validation_of_statefulsets_and_claims() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let err = |e: kube::Error| match e {
        kube::Error::Api(r) => (r.code, r.message),
        other => panic!("{other}"),
    };

    // volumeClaimTemplates need access modes and a storage request.
    let mut bad = sts("a", 1, json!({}));
    bad.spec.as_mut().unwrap().volume_claim_templates = Some(vec![
        serde_json::from_value(json!({
        "metadata": {"name": "data"}, "spec": {}}))
        .unwrap(),
    ]);
    let (code, msg) = err(sets.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(msg.contains("spec.volumeClaimTemplates[0].spec.accessModes: Required value: at least 1 access mode is required"), "{msg}");
    assert!(
        msg.contains("spec.volumeClaimTemplates[0].spec.resources[storage]: Required value"),
        "{msg}"
    );

    // The selector must match the template's labels.
    let bad = sts(
        "b",
        1,
        json!({"selector": {"matchLabels": {"app": "other"}}}),
    );
    let (code, msg) = err(sets.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        msg.contains("`selector` does not match template `labels`"),
        "{msg}"
    );

    // Only replicas, ordinals, template, updateStrategy, the retention policy and
    // minReadySeconds may change.
    sets.create(&PostParams::default(), &sts("c", 1, json!({})))
        .await
        .unwrap();
    for ok in [
        json!({"spec": {"replicas": 2}}),
        json!({"spec": {"minReadySeconds": 5}}),
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}),
    ] {
        sets.patch("c", &PatchParams::default(), &Patch::Merge(ok))
            .await
            .unwrap();
    }
    for bad in [
        json!({"spec": {"serviceName": "other"}}),
        json!({"spec": {"podManagementPolicy": "Parallel"}}),
        json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}]}}),
    ] {
        let (code, msg) = err(sets
            .patch("c", &PatchParams::default(), &Patch::Merge(bad))
            .await
            .unwrap_err());
        assert_eq!(code, 422);
        assert_eq!(
            msg,
            "StatefulSet.apps \"c\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        );
    }

    // A claim without access modes or size.
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client);
    let bad: PersistentVolumeClaim = serde_json::from_value(json!({"apiVersion": "v1",
        "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}, "spec": {}}))
    .unwrap();
    let (code, msg) = err(claims
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err());
    assert_eq!(code, 422);
    assert!(
        msg.contains("spec.accessModes: Required value: at least 1 access mode is required"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_deleted_pod_comes_back_on_its_claim_and_partition_holds_lower_ordinals() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(30),
            ..Delays::zero()
        })
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.create(&PostParams::default(), &sts("db", 3, json!({})))
        .await
        .unwrap();
    sim.wait_for_object("statefulsets", "default", "db", T, rollout_done)
        .await
        .unwrap();
    let claim_uid = sim
        .object("persistentvolumeclaims", "default", "data-db-1")
        .unwrap()["metadata"]["uid"]
        .clone();
    let pod_uid = sim.object("pods", "default", "db-1").unwrap()["metadata"]["uid"].clone();

    // The pod is made again under the same name, on the same claim.
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.delete("db-1", &DeleteParams::default()).await.unwrap();
    let p = sim
        .wait_for_object("pods", "default", "db-1", T, |p| {
            p["metadata"]["uid"] != pod_uid && ready(p)
        })
        .await
        .unwrap();
    assert_eq!(
        p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "data")
            .unwrap()["persistentVolumeClaim"]["claimName"],
        "data-db-1"
    );
    assert_eq!(
        sim.object("persistentvolumeclaims", "default", "data-db-1")
            .unwrap()["metadata"]["uid"],
        claim_uid
    );
    assert_eq!(
        sim.objects("persistentvolumeclaims", Some("default")).len(),
        3
    );

    // partition: 2 updates only ordinal 2; the rollout is complete for kubectl then, while
    // the current revision stays the old one.
    let old = sim.object("statefulsets", "default", "db").unwrap();
    let old_rev = old["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "db", "image": "postgres:17",
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}]}}}})),
    )
    .await
    .unwrap();
    let o = sim
        .wait_for_object("statefulsets", "default", "db", T, |o| {
            i(o, "/metadata/generation") == 2 && rollout_done(o)
        })
        .await
        .unwrap();
    assert_eq!(i(&o, "/status/updatedReplicas"), 1);
    assert_eq!(i(&o, "/status/currentReplicas"), 2);
    assert_eq!(o["status"]["currentRevision"], old_rev.as_str());
    let image = |n: i64| {
        sim.object("pods", "default", &format!("db-{n}")).unwrap()["spec"]["containers"][0]["image"]
            .clone()
    };
    assert_eq!(image(2), "postgres:17");
    assert_eq!(image(1), "postgres:16");
    assert_eq!(image(0), "postgres:16");
}

/// 1.34 lets `revisionHistoryLimit` change and names it in the refusal; 1.33 refuses it.
#[tokio::test]
async fn revision_history_limit_is_mutable_from_1_34() {
    for (version, allowed) in [("1.33", false), ("1.34", true)] {
        let sim = KubeSim::builder()
            .delays(Delays::zero())
            .kube_version(version.parse().unwrap())
            .start()
            .await
            .unwrap();
        let sets: Api<StatefulSet> = Api::default_namespaced(sim.client().unwrap());
        sets.create(&PostParams::default(), &sts("c", 1, json!({})))
            .await
            .unwrap();
        let r = sets
            .patch(
                "c",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"revisionHistoryLimit": 3}})),
            )
            .await;
        assert_eq!(r.is_ok(), allowed, "{version}: {r:?}");
        let Err(kube::Error::Api(e)) = sets
            .patch(
                "c",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"serviceName": "x"}})),
            )
            .await
        else {
            panic!("serviceName changed");
        };
        assert_eq!(
            e.message
                .contains("'updateStrategy', 'revisionHistoryLimit', "),
            allowed,
            "{}",
            e.message
        );
    }
}

async fn kubectl(sim: &KubeSim, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .args(args)
            .env("KUBECONFIG", sim.kubeconfig_path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl timed out")
    .expect("kubectl must be installed (set KUBECTL to its path)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real kubectl: `rollout status statefulset/db` (StatefulSetStatusViewer) waits through a
/// rolling update and reports it complete; `get sts,pvc` prints upstream's columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_and_get() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(100),
            ..Delays::zero()
        })
        .start()
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(sim.client().unwrap());
    sets.create(&PostParams::default(), &sts("db", 2, json!({})))
        .await
        .unwrap();
    let (ok, out, err) = kubectl(
        &sim,
        &["rollout", "status", "statefulset/db", "--timeout=30s"],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{out}"
    );
    let (ok, _, err) = kubectl(&sim, &["set", "image", "statefulset/db", "db=postgres:17"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(
        &sim,
        &["rollout", "status", "statefulset/db", "--timeout=30s"],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("Waiting for"), "{out}");
    assert!(
        out.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{out}"
    );
    for n in 0..2 {
        let p = sim.object("pods", "default", &format!("db-{n}")).unwrap();
        assert_eq!(p["spec"]["containers"][0]["image"], "postgres:17");
        assert!(ready(&p));
    }
    let (ok, out, err) = kubectl(&sim, &["get", "sts"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("NAME") && out.contains("READY"), "{out}");
    assert!(out.lines().nth(1).unwrap().contains("2/2"), "{out}");
    let (ok, out, err) = kubectl(&sim, &["get", "pvc"]).await;
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("data-db-0")).unwrap();
    for col in ["Bound", "pvc-", "1Gi", "RWO", "standard", "<unset>"] {
        assert!(line.contains(col), "{out}");
    }
}
