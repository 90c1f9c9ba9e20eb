//! The API surface through a real `kube::Client`: CRUD, selectors, pagination, Status errors,
//! watch semantics and every patch type, deserialized into `k8s-openapi` types.

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube_sim::{Delays, KubeSim, PodScript};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn api_err(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

async fn sim() -> KubeSim {
    KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::run_forever())
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn crud_defaults_and_errors() {
    let sim = sim().await;
    let client = sim.client().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let created = cms
        .create(&PostParams::default(), &cm("one", json!({"a": "1"})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(
        meta.managed_fields.as_ref().is_some_and(|m| !m.is_empty()),
        "create records managedFields"
    );

    // AlreadyExists
    let e = api_err(
        cms.create(&PostParams::default(), &cm("one", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"one\" already exists");

    // NotFound
    let e = api_err(cms.get("missing").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "configmaps \"missing\" not found")
    );
    assert_eq!(e.details.unwrap().name, "missing");

    // Invalid name
    let e = api_err(
        cms.create(&PostParams::default(), &cm("Bad_Name", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let causes = e.details.unwrap().causes;
    assert_eq!(causes[0].field, "metadata.name");
    assert!(
        e.message
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value"),
        "{}",
        e.message
    );

    // Missing required field (pod without containers)
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let bad: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}))
            .unwrap();
    let e = api_err(pods.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert_eq!(e.details.unwrap().causes[0].field, "spec.containers");

    // Job names become label values: at most 63 characters; restartPolicy must be Never/OnFailure.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::default_namespaced(client.clone());
    let long = "j".repeat(64);
    let job = |name: &str, policy: &str| -> k8s_openapi::api::batch::v1::Job {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"template": {"spec": {"restartPolicy": policy,
            "containers": [{"name": "c", "image": "x"}]}}}}))
        .unwrap()
    };
    let e = api_err(
        jobs.create(&PostParams::default(), &job(&long, "Never"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.details.unwrap().causes[0].field.as_str()),
        (422, "metadata.name")
    );
    let e = api_err(
        jobs.create(&PostParams::default(), &job("ok", "Always"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.details.unwrap().causes[0].reason,
        "FieldValueNotSupported"
    );

    // Update with a stale resourceVersion conflicts; with the fresh one it succeeds.
    let mut stale = created.clone();
    let mut fresh = cms.get("one").await.unwrap();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = cms
        .replace("one", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    stale.data = Some([("k".to_string(), "x".to_string())].into());
    let e = api_err(
        cms.replace("one", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("the object has been modified"));

    // Create in a missing namespace.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let e = api_err(
        other
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );

    // Service gets a clusterIP; delete of a plain object returns a Status.
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .unwrap();
    let svc = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let spec = svc.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    assert_eq!(spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    let del = cms.delete("one", &DeleteParams::default()).await.unwrap();
    assert!(del.is_right(), "immediate delete returns a Status");
    assert!(cms.get_opt("one").await.unwrap().is_none());

    // Cluster-scoped and grouped kinds.
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()));
    let deps: Api<Deployment> = Api::default_namespaced(client);
    assert!(
        deps.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn list_selectors_and_pagination() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client().unwrap());
    for i in 0..7 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        cms.create(
            &PostParams::default(),
            &cm(
                &format!("cm-{i}"),
                json!({"tier": tier, "n": i.to_string()}),
            ),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect::<Vec<_>>()
    };
    let l = cms
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(names(l), ["cm-0", "cm-2", "cm-4", "cm-6"]);
    let l = cms
        .list(&ListParams::default().labels("tier!=front,n notin (1)"))
        .await
        .unwrap();
    assert_eq!(names(l), ["cm-3", "cm-5"]);
    let l = cms
        .list(&ListParams::default().labels("n in (0,6),tier"))
        .await
        .unwrap();
    assert_eq!(names(l), ["cm-0", "cm-6"]);
    let l = cms
        .list(&ListParams::default().labels("!tier"))
        .await
        .unwrap();
    assert!(l.items.is_empty());
    let l = cms
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .unwrap();
    assert_eq!(names(l), ["cm-3"]);
    let e = api_err(
        cms.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);

    // Pagination: 3 + 3 + 1 with continue tokens; the list carries a resourceVersion.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.metadata.resource_version.is_some());
        let cont = page.metadata.continue_.clone();
        seen.extend(names(page));
        match cont {
            Some(c) if !c.is_empty() => lp = ListParams::default().limit(3).continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn watch_replays_history_bookmarks_and_expires() {
    let sim = KubeSim::builder()
        .delays(Delays {
            bookmark_interval: Duration::from_millis(100),
            ..Delays::zero()
        })
        .history_limit(50)
        .start()
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client().unwrap());
    let first = cms
        .create(&PostParams::default(), &cm("w0", json!({})))
        .await
        .unwrap();
    let rv0 = first.metadata.resource_version.clone().unwrap();
    cms.create(&PostParams::default(), &cm("w1", json!({})))
        .await
        .unwrap();
    cms.delete("w0", &DeleteParams::default()).await.unwrap();

    // Replay from rv0: ADDED w1, DELETED w0, then bookmarks.
    let wp = WatchParams::default().timeout(5);
    let mut stream = cms.watch(&wp, &rv0).await.unwrap().boxed();
    let mut got = Vec::new();
    let mut bookmark = false;
    while let Some(ev) = tokio::time::timeout(T, stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match ev {
            WatchEvent::Added(c) => got.push(format!("A {}", c.metadata.name.unwrap())),
            WatchEvent::Deleted(c) => got.push(format!("D {}", c.metadata.name.unwrap())),
            WatchEvent::Modified(c) => got.push(format!("M {}", c.metadata.name.unwrap())),
            WatchEvent::Bookmark(b) => {
                assert!(!b.metadata.resource_version.is_empty());
                bookmark = true;
                break;
            }
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(got, ["A w1", "D w0"]);
    assert!(bookmark, "periodic bookmarks arrive");

    // timeoutSeconds ends the stream.
    let start = std::time::Instant::now();
    let wp1 = WatchParams::default().timeout(1);
    let rv_now = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let n = cms
        .watch(&wp1, &rv_now)
        .await
        .unwrap()
        .filter(|e| std::future::ready(!matches!(e, Ok(WatchEvent::Bookmark(_)))))
        .count()
        .await;
    assert_eq!(n, 0);
    assert!(start.elapsed() >= Duration::from_millis(900));

    // Push the old version out of history: the watch answers 200, then ERROR 410 Expired.
    for i in 0..60 {
        cms.create(&PostParams::default(), &cm(&format!("f-{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
            assert!(s.message.starts_with("too old resource version"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let rec = sim
        .requests()
        .into_iter()
        .rfind(|r| r.verb == "watch")
        .unwrap();
    assert_eq!(rec.status, 200);
}

#[tokio::test]
async fn watch_with_selectors_turns_relabels_into_add_and_delete() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client().unwrap());
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().labels("app=x").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("a", json!({"app": "y"})))
        .await
        .unwrap();
    let pp = PatchParams::default();
    cms.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(T, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            _ => {}
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn patches_merge_strategic_json_and_server_side_apply() {
    let sim = sim().await;
    let client = sim.client().unwrap();
    let deps: Api<Deployment> = Api::default_namespaced(client);
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "app", "image": "nginx:1"}, {"name": "side", "image": "envoy:1"}]}}}});
    // SSA without a field manager is rejected.
    let e = api_err(
        deps.patch("web", &PatchParams::default(), &Patch::Apply(&d))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    // SSA creates when missing.
    let ssa = PatchParams::apply("slipway");
    let created = deps.patch("web", &ssa, &Patch::Apply(&d)).await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(2));
    let mf = created.metadata.managed_fields.unwrap();
    assert!(mf.iter().any(
        |m| m.manager.as_deref() == Some("slipway") && m.operation.as_deref() == Some("Apply")
    ));

    // Strategic merge: containers merged by name.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "envoy:2"}]}}}});
    let p = deps
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let cs = p.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        cs.iter()
            .map(|c| c.image.clone().unwrap())
            .collect::<Vec<_>>(),
        ["nginx:1", "envoy:2"]
    );
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );

    // Merge patch replaces lists wholesale.
    let mp = json!({"metadata": {"annotations": {"x": "1"}}});
    let p = deps
        .patch("web", &PatchParams::default(), &Patch::Merge(mp))
        .await
        .unwrap();
    assert_eq!(p.metadata.annotations.unwrap()["x"], "1");
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "metadata change keeps generation"
    );

    // JSON patch.
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]))
            .unwrap();
    let p = deps
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().replicas, Some(5));
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 9}]))
            .unwrap();
    assert_eq!(
        api_err(
            deps.patch("web", &PatchParams::default(), &Patch::<()>::Json(bad))
                .await
                .unwrap_err()
        )
        .code,
        422
    );

    // Other managers now own replicas (JSON patch) and the sidecar image (strategic patch):
    // re-applying the original config conflicts on both.
    let e = api_err(
        deps.patch("web", &ssa, &Patch::Apply(&d))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message
            .starts_with("Apply failed with 2 conflicts: conflict with"),
        "{}",
        e.message
    );
    assert!(e.message.contains(": .spec.replicas"), "{}", e.message);
    assert!(
        e.message
            .contains(r#".spec.template.spec.containers[name="side"].image"#),
        "{}",
        e.message
    );
    let causes = e.details.unwrap().causes;
    assert!(causes.iter().all(|c| c.reason == "FieldManagerConflict"));
    // Forced apply takes both back.
    let p = deps
        .patch("web", &ssa.clone().force(), &Patch::Apply(&d))
        .await
        .unwrap();
    assert_eq!(p.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        p.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[1]
            .image
            .as_deref(),
        Some("envoy:1")
    );
    // Applying without the sidecar and the label removes both: the applier owned them alone.
    let mut d2 = d.clone();
    d2["spec"]["template"]["spec"]["containers"] = json!([{"name": "app", "image": "nginx:1"}]);
    d2["metadata"]["labels"] = json!({});
    let p = deps.patch("web", &ssa, &Patch::Apply(&d2)).await.unwrap();
    assert!(
        p.metadata.labels.clone().unwrap_or_default().is_empty(),
        "label the applier dropped is removed"
    );
    let names: Vec<String> = p
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["app"]);
    // Same manager, same config: a no-op keeps the resourceVersion.
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client().unwrap());
    let c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, "data": {"a": "1"}});
    let first = cms.patch("conf", &ssa, &Patch::Apply(&c)).await.unwrap();
    let again = cms.patch("conf", &ssa, &Patch::Apply(&c)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        first.metadata.resource_version
    );

    // Status subresource: main-resource writes ignore status; /status writes only status.
    let st = deps
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().replicas, Some(7));
    assert_eq!(st.spec.unwrap().replicas, Some(2));
    let applied =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "status": {"readyReplicas": 4}});
    let st = deps
        .patch_status("web", &ssa, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().unwrap().ready_replicas, Some(4));
    assert_eq!(st.spec.unwrap().replicas, Some(2));
}

async fn roundtrip<K>(client: &kube::Client, obj: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::default_namespaced(client.clone());
    let o: K = serde_json::from_value(obj).unwrap();
    let name = o.meta().name.clone().unwrap();
    let created = api.create(&PostParams::default(), &o).await.unwrap();
    assert!(created.meta().uid.is_some());
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get(&name)
            .await
            .unwrap()
            .meta()
            .labels
            .as_ref()
            .unwrap()["x"],
        "y"
    );
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt(&name).await.unwrap().is_none());
}

async fn roundtrip_cluster<K>(client: &kube::Client, obj: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let o: K = serde_json::from_value(obj).unwrap();
    let name = o.meta().name.clone().unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get(&name)
            .await
            .unwrap()
            .meta()
            .labels
            .as_ref()
            .unwrap()["x"],
        "y"
    );
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt(&name).await.unwrap().is_none());
}

#[tokio::test]
async fn every_generic_kind_round_trips() {
    use k8s_openapi::api::{
        autoscaling::v2 as hpa, core::v1 as core, networking::v1 as net, policy::v1 as policy,
        rbac::v1 as rbac,
    };
    let sim = sim().await;
    let c = sim.client().unwrap();
    roundtrip::<core::Secret>(
        &c,
        json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}}),
    )
    .await;
    roundtrip::<core::ServiceAccount>(&c, json!({"metadata": {"name": "sa"}})).await;
    roundtrip::<core::Event>(&c, json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started"})).await;
    roundtrip::<core::ResourceQuota>(
        &c,
        json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "10"}}}),
    )
    .await;
    roundtrip::<core::LimitRange>(
        &c,
        json!({"metadata": {"name": "l"}, "spec": {"limits": [{"type": "Container"}]}}),
    )
    .await;
    roundtrip::<net::Ingress>(
        &c,
        json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.example.com"}]}}),
    )
    .await;
    roundtrip::<net::NetworkPolicy>(
        &c,
        json!({"metadata": {"name": "np"}, "spec": {"podSelector": {}}}),
    )
    .await;
    roundtrip::<rbac::Role>(&c, json!({"metadata": {"name": "r"}, "rules": []})).await;
    roundtrip::<rbac::RoleBinding>(&c, json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}})).await;
    roundtrip::<policy::PodDisruptionBudget>(
        &c,
        json!({"metadata": {"name": "pdb"}, "spec": {"minAvailable": 1}}),
    )
    .await;
    roundtrip::<hpa::HorizontalPodAutoscaler>(
        &c,
        json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 3,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}),
    )
    .await;
    roundtrip_cluster::<rbac::ClusterRole>(&c, json!({"metadata": {"name": "cr"}})).await;
    roundtrip_cluster::<rbac::ClusterRoleBinding>(&c, json!({"metadata": {"name": "crb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cr"}})).await;
}

#[tokio::test]
async fn delete_collection_and_logs_of_a_waiting_container() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::run_forever().start_after(Duration::from_secs(600)))
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        cms.create(&PostParams::default(), &cm(n, json!({"g": l})))
            .await
            .unwrap();
    }
    let gone = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("g=x"),
        )
        .await
        .unwrap();
    let list = gone.left().unwrap();
    assert_eq!(list.items.len(), 2);
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);

    let pods: Api<Pod> = Api::default_namespaced(client);
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "slow"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    sim.wait_for_object("pods", "default", "slow", T, |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    })
    .await
    .unwrap();
    let e = api_err(
        pods.logs("slow", &kube::api::LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        e.message,
        "container \"c\" in pod \"slow\" is waiting to start: ContainerCreating"
    );
}

#[tokio::test]
async fn dry_run_validates_without_storing() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client().unwrap());
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let out = cms.create(&dry, &cm("ghost", json!({}))).await.unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("ghost"));
    assert!(cms.get_opt("ghost").await.unwrap().is_none());
    let e = api_err(cms.create(&dry, &cm("Bad!", json!({}))).await.unwrap_err());
    assert_eq!(e.code, 422, "dry runs still validate");

    cms.create(&PostParams::default(), &cm("real", json!({"a": "1"})))
        .await
        .unwrap();
    let before = cms.get("real").await.unwrap();
    let patched = cms
        .patch(
            "real",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["a"], "2");
    let after = cms.get("real").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.metadata.labels.unwrap()["a"], "1");
    cms.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(cms.get_opt("real").await.unwrap().is_some());
}

#[tokio::test]
async fn malformed_shapes_are_rejected_not_fatal() {
    let sim = sim().await;
    let client = sim.client().unwrap();
    let send = |method: &str, path: &str, ct: &str, body: serde_json::Value| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(kube::client::Body::from(body.to_string().into_bytes()))
            .unwrap();
        let client = client.clone();
        async move { client.send(req).await.unwrap().status().as_u16() }
    };
    let jobs = "/apis/batch/v1/namespaces/default/jobs";
    assert_eq!(
        send("POST", jobs, "application/json", json!({"metadata": "x"})).await,
        400
    );
    let bad_tpl = json!({"metadata": {"name": "j"}, "spec": {"template": {"metadata": "x", "spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(send("POST", jobs, "application/json", bad_tpl).await, 400);
    let svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [80]}});
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            svc
        )
        .await,
        400
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    let path = "/api/v1/namespaces/default/configmaps/c";
    assert_eq!(
        send(
            "PATCH",
            path,
            "application/merge-patch+json",
            json!({"metadata": "x"})
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/c?fieldManager=t",
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": ["x"]})
        )
        .await,
        400
    );
    // Still serving, controllers still running.
    let pods: Api<Pod> = Api::default_namespaced(client);
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "ok"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    sim.wait_for_object("pods", "default", "ok", T, |p| {
        p["status"]["phase"] == "Running"
    })
    .await
    .unwrap();
}

/// A length-delimited protobuf field (wire type 2); every length here is under 128.
fn pb_field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u8::try_from(bytes.len()).unwrap();
    assert!(len < 128);
    [&[tag << 3 | 2, len][..], bytes].concat()
}

/// A Kubernetes protobuf body, written by hand from the upstream definitions
/// (apimachinery runtime/generated.proto `Unknown` and `TypeMeta`).
fn pb_body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        pb_field(1, api_version.as_bytes()),
        pb_field(2, kind.as_bytes()),
    ]
    .concat();
    [b"k8s\0".to_vec(), pb_field(1, &type_meta), pb_field(2, raw)].concat()
}

#[tokio::test]
async fn protobuf_bodies_are_decoded_and_other_media_types_refused() {
    let sim = sim().await;
    let client = sim.client().unwrap();
    let send = |method: &str, path: &str, ct: &str, body: Vec<u8>| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(kube::client::Body::from(body))
            .unwrap();
        let client = client.clone();
        async move {
            let resp = client.send(req).await.unwrap();
            let code = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                code,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    const PB: &str = "application/vnd.kubernetes.protobuf";
    // core/v1 ConfigMap: metadata = 1 (ObjectMeta: name = 1), data = 2 (map entries: key 1, value 2).
    let configmap = [
        pb_field(1, &pb_field(1, b"from-pb")),
        pb_field(2, &[pb_field(1, b"k"), pb_field(2, b"v")].concat()),
    ]
    .concat();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, created) = send("POST", cms, PB, pb_body("v1", "ConfigMap", &configmap)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["data"], json!({"k": "v"}));
    let stored = sim.object("configmaps", "default", "from-pb").unwrap();
    assert_eq!(stored["data"], json!({"k": "v"}));
    assert_eq!(stored["metadata"]["namespace"], "default");

    // The apiserver's check of the body's apiVersion against the endpoint's.
    let (code, status) = send("POST", cms, PB, pb_body("apps/v1", "ConfigMap", &configmap)).await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    );
    let (code, _) = send("POST", cms, PB, b"{\"kind\":\"ConfigMap\"}".to_vec()).await;
    assert_eq!(
        code, 400,
        "a JSON body labelled protobuf is not decoded as JSON"
    );

    // Bodies the simulator has no protobuf form for: an honest 415 Status, nothing written.
    let (code, status) = send(
        "PATCH",
        &format!("{cms}/from-pb"),
        PB,
        pb_body("v1", "ConfigMap", &configmap),
    )
    .await;
    assert_eq!(code, 415);
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("UnsupportedMediaType"))
    );
    let (code, status) = send("POST", cms, "application/cbor", vec![0xa0]).await;
    assert_eq!((code, status["code"].as_i64()), (415, Some(415)));

    // DeleteOptions in protobuf (meta/v1: propagationPolicy = 4): the policy is honoured.
    let deploy: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    .unwrap();
    deploy.create(&PostParams::default(), &d).await.unwrap();
    sim.wait_for("a replicaset", T, |_| {
        !sim.objects("replicasets", Some("default")).is_empty()
    })
    .await
    .unwrap();
    let (code, _) = send(
        "DELETE",
        "/apis/apps/v1/namespaces/default/deployments/d",
        PB,
        pb_body("v1", "DeleteOptions", &pb_field(4, b"Orphan")),
    )
    .await;
    assert_eq!(code, 200);
    sim.wait_for_gone("deployments", "default", "d", T)
        .await
        .unwrap();
    assert_eq!(
        sim.objects("replicasets", Some("default")).len(),
        1,
        "orphaned, not collected"
    );
}

#[tokio::test]
async fn service_target_port_zero_defaults_to_the_port() {
    // Go clients write an unset IntOrString as 0 (JSON and protobuf alike); the apiserver
    // defaults 0 and "" to the port (pkg/apis/core/v1/defaults.go, SetDefaults_Service).
    let sim = sim().await;
    let svcs: Api<Service> = Api::default_namespaced(sim.client().unwrap());
    let s: Service = serde_json::from_value(json!({"metadata": {"name": "s"},
        "spec": {"ports": [{"name": "a", "port": 80, "targetPort": 0}, {"name": "b", "port": 81, "targetPort": ""}]}}))
    .unwrap();
    let s = svcs.create(&PostParams::default(), &s).await.unwrap();
    let ports = s.spec.unwrap().ports.unwrap();
    let target = |i: usize| serde_json::to_value(&ports[i].target_port).unwrap();
    assert_eq!((target(0), target(1)), (json!(80), json!(81)));
}

#[tokio::test]
async fn a_service_needs_ports_unless_it_is_headless() {
    // ValidateService (pkg/apis/core/validation/validation.go): `spec.ports` is required
    // unless the Service is headless or ExternalName; several ports each need a name.
    let sim = sim().await;
    let svcs: Api<Service> = Api::default_namespaced(sim.client().unwrap());
    let svc = |name: &str, spec: serde_json::Value| -> Service {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let headless = svcs
        .create(
            &PostParams::default(),
            &svc(
                "redis",
                json!({"clusterIP": "None", "selector": {"app": "redis"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    for (name, spec, field) in [
        ("noports", json!({"selector": {"app": "x"}}), "spec.ports"),
        (
            "unnamed",
            json!({"ports": [{"name": "a", "port": 80}, {"port": 81}]}),
            "spec.ports[1].name",
        ),
    ] {
        let e = svcs
            .create(&PostParams::default(), &svc(name, spec))
            .await
            .unwrap_err();
        let status = api_err(e);
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        assert!(status.message.contains(field), "{}", status.message);
        assert!(
            status.message.contains("Required value"),
            "{}",
            status.message
        );
    }
}

#[tokio::test]
async fn network_policy_ip_blocks_are_validated_as_upstream() {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let sim = KubeSim::builder().start().await.unwrap();
    let client = sim.client().unwrap();
    let api: Api<NetworkPolicy> = Api::default_namespaced(client);
    let policy = |name: &str, block: serde_json::Value| -> NetworkPolicy {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"podSelector": {},
            "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": block}]}]}}),
        )
        .unwrap()
    };
    // Overlapping excepts are fine (upstream checks each against `cidr` only), both families.
    let ok = policy(
        "ok",
        json!({"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16", "169.254.169.254/32"]}),
    );
    api.create(&PostParams::default(), &ok).await.unwrap();
    let v6 = policy(
        "v6",
        json!({"cidr": "::/0", "except": ["fc00::/7", "fd00:ec2::254/128"]}),
    );
    api.create(&PostParams::default(), &v6).await.unwrap();
    for (name, block, field) in [
        (
            "outside",
            json!({"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}),
            "spec.egress[0].to[0].ipBlock.except[0]",
        ),
        (
            "same",
            json!({"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}),
            "spec.egress[0].to[0].ipBlock.except[0]",
        ),
        (
            "family",
            json!({"cidr": "0.0.0.0/0", "except": ["fc00::/7"]}),
            "spec.egress[0].to[0].ipBlock.except[0]",
        ),
        (
            "bad-cidr",
            json!({"cidr": "10.0.0.0/33"}),
            "spec.egress[0].to[0].ipBlock.cidr",
        ),
    ] {
        let e = api_err(
            api.create(&PostParams::default(), &policy(name, block))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{name}");
        assert_eq!(e.details.unwrap().causes[0].field, field, "{name}");
    }
    // An update is validated too.
    let bad = policy("ok", json!({"cidr": "0.0.0.0/0", "except": ["0.0.0.0/0"]}));
    let e = api_err(
        api.patch(
            "ok",
            &kube::api::PatchParams::apply("test").force(),
            &kube::api::Patch::Apply(&bad),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    sim.shutdown().await;
}

/// A Secret's `stringData` is merged into `data` (base64) on write and never read back
/// (`Convert_v1_Secret_To_core_Secret`, pkg/apis/core/v1/conversion.go).
#[tokio::test]
async fn secret_string_data_is_merged_into_data_and_not_returned() {
    let sim = sim().await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(sim.client().unwrap(), "default");
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s"}, "data": {"a": "b2xk", "keep": "eA=="},
        "stringData": {"a": "new", "token": "t0k"}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let got = secrets.get("s").await.unwrap();
    assert!(got.string_data.is_none());
    let data = got.data.unwrap();
    assert_eq!(data["a"].0, b"new", "stringData overwrites data");
    assert_eq!(data["keep"].0, b"x");
    assert_eq!(data["token"].0, b"t0k");
}

/// What a Helm preview's launch relies on for the kinds a chart may render: server-side apply
/// of each as a dynamic object creates it and, unchanged, is a no-op; a body naming another
/// namespace than the URL is a 400 (kubernetes/apiserver `pkg/endpoints/handlers/rest.go`,
/// `checkName`/namespace check in the patch handler); a ConfigMap with a key that is no config
/// key is a 422 on create and on update (`ValidateConfigMap`, `IsConfigMapKey`).
#[tokio::test]
async fn chart_kinds_apply_server_side_and_config_maps_are_validated() {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let sim = sim().await;
    let client = sim.client().unwrap();
    let ns = "default";
    let objects = [
        ("", "v1", "ServiceAccount", "serviceaccounts", json!({})),
        (
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            json!({"data": {"app.conf": "x=1"}}),
        ),
        (
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            json!({"spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            "",
            "v1",
            "Service",
            "services",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": "http"}]}}),
        ),
        (
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            json!({"spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}}),
        ),
        (
            "apps",
            "v1",
            "Deployment",
            "deployments",
            json!({"spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry/app:1"}]}}}}),
        ),
    ];
    let params = PatchParams::apply("slipway").force();
    for (group, version, kind, plural, body) in objects {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let mut obj = body.clone();
        obj["apiVersion"] = json!(ar.api_version);
        obj["kind"] = json!(kind);
        obj["metadata"] = json!({"name": "web", "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "slipway"}});
        let first = api
            .patch("web", &params, &Patch::Apply(&obj))
            .await
            .unwrap();
        let again = api
            .patch("web", &params, &Patch::Apply(&obj))
            .await
            .unwrap();
        // The spec is unchanged (controllers may write status, and bind a claim, meanwhile).
        if kind != "PersistentVolumeClaim" {
            assert_eq!(
                first.metadata.generation, again.metadata.generation,
                "{kind}: an unchanged apply changes nothing"
            );
        }
        assert_eq!(
            again.metadata.managed_fields.unwrap()[0].manager.as_deref(),
            Some("slipway"),
            "{kind}"
        );
        let mut elsewhere = obj.clone();
        elsewhere["metadata"]["namespace"] = json!("kube-system");
        let e = api_err(
            api.patch("web", &params, &Patch::Apply(&elsewhere))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 400, "{kind}: {}", e.message);
        assert!(
            e.message.contains("does not match the namespace"),
            "{}",
            e.message
        );
    }

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    let cms: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let bad = |key: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"}, "data": {key: "v"}});
    let e = api_err(
        cms.patch("bad", &params, &Patch::Apply(&bad("app conf")))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.reason.as_str()),
        (422, "Invalid"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("data[app conf]: Invalid value: \"app conf\": a valid config key must consist of alphanumeric characters"),
        "{}",
        e.message
    );
    let e = api_err(
        cms.patch(
            "web",
            &params,
            &Patch::Apply(&json!({"apiVersion": "v1",
        "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"..x": "v"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{}", e.message);
    assert!(
        e.message.contains("must not start with '..'"),
        "{}",
        e.message
    );
    let big = "x".repeat(1024 * 1024 + 1);
    let e = api_err(
        cms.patch(
            "big",
            &params,
            &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "big"}, "data": {"a": big}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{}", e.message);
    assert!(
        e.message.contains("may not be more than 1048576 bytes"),
        "{}",
        e.message
    );
}
