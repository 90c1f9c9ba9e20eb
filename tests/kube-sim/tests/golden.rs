//! Golden wire shapes: the exact paths, query strings, content types and status codes kube 5
//! uses, and the raw watch and log stream formats the simulator answers with.

use std::time::Duration;

use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchParams,
};
use kube_sim::{Delays, KubeSim, PodScript, RecordedRequest};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn last(sim: &KubeSim) -> RecordedRequest {
    sim.requests().pop().unwrap()
}

fn shape(r: &RecordedRequest) -> (String, String, String, Option<String>, u16) {
    (
        r.method.clone(),
        r.path.clone(),
        r.query.clone(),
        r.content_type.clone(),
        r.status,
    )
}

fn s(v: &str) -> String {
    v.to_string()
}

#[tokio::test]
async fn kube_request_shapes() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::succeed().log("a").log("b"))
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "g"}})).unwrap();
    let json = Some(s("application/json"));

    cms.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(
        shape(&last(&sim)),
        (
            s("POST"),
            s("/api/v1/namespaces/default/configmaps"),
            s(""),
            json.clone(),
            201
        )
    );

    cms.get("g").await.unwrap();
    assert_eq!(
        shape(&last(&sim)),
        (
            s("GET"),
            s("/api/v1/namespaces/default/configmaps/g"),
            s(""),
            None,
            200
        )
    );

    cms.list(
        &ListParams::default()
            .labels("a=b")
            .fields("metadata.name=g")
            .limit(5),
    )
    .await
    .unwrap();
    assert_eq!(
        shape(&last(&sim)),
        (
            s("GET"),
            s("/api/v1/namespaces/default/configmaps"),
            s("&fieldSelector=metadata.name%3Dg&labelSelector=a%3Db&limit=5"),
            None,
            200
        )
    );

    let cur = cms.get("g").await.unwrap();
    cms.replace("g", &PostParams::default(), &cur)
        .await
        .unwrap();
    assert_eq!(
        shape(&last(&sim)),
        (
            s("PUT"),
            s("/api/v1/namespaces/default/configmaps/g"),
            s(""),
            json.clone(),
            200
        )
    );
    let mut stale = cur.clone();
    stale.metadata.resource_version = Some("1".into());
    assert!(
        cms.replace("g", &PostParams::default(), &stale)
            .await
            .is_err()
    );
    assert_eq!(last(&sim).status, 409);

    let patches: [(Patch<Value>, &str, &str); 3] = [
        (
            Patch::Merge(json!({"data": {"a": "1"}})),
            "application/merge-patch+json",
            "",
        ),
        (
            Patch::Strategic(json!({"data": {"a": "2"}})),
            "application/strategic-merge-patch+json",
            "",
        ),
        (
            Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"b": "1"}})),
            "application/apply-patch+yaml",
            "&force=true&fieldManager=slipway",
        ),
    ];
    for (p, ct, q) in patches {
        let pp = if q.is_empty() {
            PatchParams::default()
        } else {
            PatchParams::apply("slipway").force()
        };
        cms.patch("g", &pp, &p).await.unwrap();
        let r = last(&sim);
        assert_eq!(
            (
                r.method.as_str(),
                r.content_type.as_deref(),
                r.query.as_str(),
                r.status
            ),
            ("PATCH", Some(ct), q, 200)
        );
    }
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/c", "value": "3"}])).unwrap();
    cms.patch("g", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(
        last(&sim).content_type.as_deref(),
        Some("application/json-patch+json")
    );

    cms.delete("g", &DeleteParams::background()).await.unwrap();
    let r = last(&sim);
    assert_eq!(
        shape(&r),
        (
            s("DELETE"),
            s("/api/v1/namespaces/default/configmaps/g"),
            s(""),
            json.clone(),
            200
        )
    );
    assert_eq!(r.body, r#"{"propagationPolicy":"Background"}"#);

    // Watch query as kube's WatchParams build it (kube leaves a leading `&` after `?`).
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let _ = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    let w = sim
        .requests()
        .into_iter()
        .rfind(|r| r.verb == "watch")
        .unwrap();
    assert_eq!(
        w.query,
        format!("&watch=true&timeoutSeconds=1&allowWatchBookmarks=true&resourceVersion={rv}")
    );

    // Jobs under /apis/batch/v1; pod logs with follow/tailLines/timestamps/container.
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job: Job = serde_json::from_value(
        json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": "x"}]}}}}),
    )
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    assert_eq!(last(&sim).path, "/apis/batch/v1/namespaces/default/jobs");
    let pod = sim
        .wait_for("job pod done", T, |_| {
            sim.objects("pods", Some("default"))
                .iter()
                .any(|p| p["status"]["phase"] == "Succeeded")
        })
        .await
        .map(|()| {
            sim.objects("pods", Some("default"))[0]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let lp = LogParams {
        container: Some("main".into()),
        follow: true,
        tail_lines: Some(1),
        timestamps: true,
        ..LogParams::default()
    };
    let lines: Vec<String> = pods
        .log_stream(&pod, &lp)
        .await
        .unwrap()
        .lines()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with(" b"), "{lines:?}");
    let r = last(&sim);
    assert_eq!(r.path, format!("/api/v1/namespaces/default/pods/{pod}/log"));
    assert_eq!(
        r.query,
        "&container=main&follow=true&tailLines=1&timestamps=true"
    );
}

#[tokio::test]
async fn raw_watch_and_log_formats() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::succeed().log("one").log("two"))
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let get = |path: &str| {
        http::Request::builder()
            .uri(path)
            .body(kube::client::Body::empty())
            .unwrap()
    };
    let resp = client
        .send(get(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=1",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{body}");
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["kind"], "ConfigMap");
    assert!(body.ends_with('\n'), "NDJSON lines end with a newline");

    // Expired version: 200, then one ERROR line with a 410 Status.
    let list: Value = serde_json::from_slice(
        &client
            .send(get("/api/v1/namespaces/default/configmaps"))
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
    assert!(list["metadata"]["resourceVersion"].as_str().is_some());
    sim.store().compact();
    let resp = client
        .send(get(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=2",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let ev: Value = serde_json::from_str(body.trim_end()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");

    // Logs are text/plain lines; timestamps are RFC 3339 with nanoseconds.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    sim.wait_for_object("pods", "default", "l", T, |p| {
        p["status"]["phase"] == "Succeeded"
    })
    .await
    .unwrap();
    let resp = client
        .send(get("/api/v1/namespaces/default/pods/l/log?timestamps=true"))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2);
    let (ts, text) = lines[1].split_once(' ').unwrap();
    assert_eq!(text, "two");
    assert!(
        ts.ends_with('Z') && ts.contains('.') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "{ts}"
    );

    // Errors are Status objects.
    let resp = client
        .send(get("/api/v1/namespaces/default/pods/missing"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let st: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        st,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "pods \"missing\" not found", "reason": "NotFound", "details": {"name": "missing", "kind": "pods"}, "code": 404})
    );

    // Discovery.
    let v: Value = serde_json::from_slice(
        &client
            .send(get("/version"))
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(
        (v["major"].as_str(), v["minor"].as_str()),
        (Some("1"), Some("33"))
    );
    let ver = client.apiserver_version().await.unwrap();
    assert_eq!(ver.minor, "33");
    let groups = client.list_api_groups().await.unwrap();
    for g in [
        "batch",
        "apps",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "policy",
        "autoscaling",
    ] {
        assert!(groups.groups.iter().any(|x| x.name == g), "{g}");
    }
    let core = client.list_core_api_resources("v1").await.unwrap();
    for r in [
        "pods",
        "pods/log",
        "pods/status",
        "services",
        "secrets",
        "configmaps",
        "serviceaccounts",
        "events",
        "resourcequotas",
        "limitranges",
        "namespaces",
    ] {
        assert!(core.resources.iter().any(|x| x.name == r), "{r}");
    }
    let apps = client.list_api_group_resources("apps/v1").await.unwrap();
    assert!(apps.resources.iter().any(|x| x.name == "deployments/scale"));
    let disc = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(disc.groups().any(|g| g.name() == "batch"));
}
