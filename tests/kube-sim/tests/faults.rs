//! Fault injection: fixed statuses (429 with Retry-After, 500, 503), delays, dropped and
//! truncated watch streams, forced 410, limited by count or time window; admin endpoints.

use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube_sim::{Delays, FaultAction, FaultRule, KubeSim, PodScript};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected API error, got {other:?}"),
    }
}

async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, http::HeaderMap, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn status_faults_by_count_and_window_and_delay() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .unwrap();
    let client = sim.client_without_retries().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 429,
            retry_after: Some(7),
        })
        .verb("get")
        .resource("configmaps")
        .times(1),
    );
    let (status, headers, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/a",
        None,
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(headers.get("retry-after").unwrap(), "7");
    let s: kube::core::Status = serde_json::from_str(&body).unwrap();
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    assert!(cms.get("a").await.is_ok(), "count exhausted");

    // kube's default client retries a 429 after Retry-After.
    sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 429,
            retry_after: Some(1),
        })
        .verb("get")
        .times(1),
    );
    let retrying: Api<ConfigMap> = Api::default_namespaced(sim.client().unwrap());
    sim.recorder().clear();
    retrying.get("a").await.unwrap();
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);

    sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 500,
            retry_after: None,
        })
        .resource("configmaps")
        .times(2),
    );
    assert_eq!(code(cms.get("a").await.unwrap_err()), 500);
    assert_eq!(
        code(cms.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    assert!(cms.get("a").await.is_ok());
    // Other resources are not affected by a resource-scoped rule.
    sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 503,
            retry_after: None,
        })
        .resource("pods")
        .times(1),
    );
    assert!(cms.get("a").await.is_ok());
    sim.faults().clear();

    // Time window: 503 while it lasts, then normal service.
    sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 503,
            retry_after: None,
        })
        .path_contains("/configmaps")
        .for_duration(Duration::from_secs(2)),
    );
    assert_eq!(code(cms.get("a").await.unwrap_err()), 503);
    let deadline = Instant::now() + T;
    loop {
        match cms.get("a").await {
            Ok(_) => break,
            Err(e) => assert_eq!(code(e), 503),
        }
        assert!(Instant::now() < deadline, "window never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sim.faults().add(
        FaultRule::new(FaultAction::Delay { ms: 300 })
            .verb("get")
            .times(1),
    );
    let start = Instant::now();
    cms.get("a").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(sim.faults().is_empty());
}

#[tokio::test]
async fn watch_faults_drop_truncate_and_expire() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for n in ["a", "b", "c"] {
        cms.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    let wp = WatchParams::default().timeout(20);

    // Dropped after one event: the stream ends cleanly well before its timeout.
    sim.faults().add(
        FaultRule::new(FaultAction::DropWatch { after_events: 1 })
            .verb("watch")
            .times(1),
    );
    let events: Vec<_> =
        tokio::time::timeout(T, cms.watch(&wp, "0").await.unwrap().collect::<Vec<_>>())
            .await
            .unwrap();
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], Ok(WatchEvent::Added(_))));

    // Truncated: one whole line, then half a line and EOF.
    sim.faults().add(
        FaultRule::new(FaultAction::TruncateWatch { after_events: 1 })
            .verb("watch")
            .times(1),
    );
    let (status, _, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (first, rest) = body.split_once('\n').unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(first).is_ok());
    assert!(
        !rest.is_empty()
            && !rest.ends_with('\n')
            && serde_json::from_str::<serde_json::Value>(rest).is_err()
    );

    // Forced 410: HTTP 200 and an in-stream ERROR Status.
    sim.faults()
        .add(FaultRule::new(FaultAction::Expire).verb("watch").times(1));
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = cms.watch(&wp, &rv).await.unwrap().boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(st)) => assert_eq!((st.code, st.reason.as_str()), (410, "Expired")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sim.requests()
            .iter()
            .rfind(|r| r.verb == "watch")
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn kube_runtime_watcher_relists_after_forced_410() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::run_forever())
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(sim.client().unwrap());
    sim.faults().add(
        FaultRule::new(FaultAction::Expire)
            .verb("watch")
            .resource("pods")
            .times(1),
    );
    let mut w = watcher(pods.clone(), watcher::Config::default()).boxed();
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "late"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    let mut created = false;
    let found = tokio::time::timeout(T, async {
        loop {
            match w.next().await {
                Some(Ok(watcher::Event::InitDone)) if !created => {
                    pods.create(&PostParams::default(), &p).await.unwrap();
                    created = true;
                }
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)))
                    if pod.metadata.name.as_deref() == Some("late") =>
                {
                    return true;
                }
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(found);
    let lists = sim
        .requests()
        .iter()
        .filter(|r| r.verb == "list" && r.resource == "pods")
        .count();
    assert!(
        lists >= 2,
        "the watcher re-listed after the 410 (lists: {lists})"
    );
}

#[tokio::test]
async fn admin_endpoints_faults_and_script_overrides() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .unwrap();
    let client = sim.client_without_retries().unwrap();
    let (s, _, _) = raw(
        &client,
        "POST",
        "/_sim/faults",
        Some(json!({"verb": "list", "resource": "configmaps", "times": 1,
        "action": {"type": "status", "code": 503}})),
    )
    .await;
    assert_eq!(s, 200);
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    assert_eq!(
        code(cms.list(&ListParams::default()).await.unwrap_err()),
        503
    );
    assert!(cms.list(&ListParams::default()).await.is_ok());

    // "Fail the next build": the next BuildKit pod exits 1 with a message; the one after builds.
    let (s, _, _) = raw(&client, "POST", "/_sim/script", Some(json!({"imageContains": "buildkit", "count": 1,
        "script": {"outcome": {"type": "exit", "code": 1}, "logs": [{"text": "error: failed to solve"}],
            "terminationMessage": "failed to solve"}}))).await;
    assert_eq!(s, 200);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for name in ["b1", "b2"] {
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "moby/buildkit:v0.23.0", "command": ["buildctl-daemonless.sh"],
                "args": ["build", "--frontend=dockerfile.v0", "--opt", "context=https://github.com/org/app.git#main"],
                "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let b1 = sim
        .wait_for_object("pods", "default", "b1", T, |p| {
            p["status"]["phase"] == "Failed"
        })
        .await
        .unwrap();
    assert_eq!(
        b1["status"]["containerStatuses"][0]["state"]["terminated"]["message"],
        "failed to solve"
    );
    sim.wait_for_object("pods", "default", "b2", T, |p| {
        p["status"]["phase"] == "Succeeded"
    })
    .await
    .unwrap();
    assert_eq!(
        sim.pod_logs("default", "b1", None),
        ["error: failed to solve"]
    );

    let (s, _, body) = raw(&client, "GET", "/_sim/requests", None).await;
    assert_eq!(s, 200);
    assert!(body.contains("/_sim/") || body.contains("/api/v1/namespaces/default/pods"));
    let (s, _, body) = raw(&client, "GET", "/_sim/objects", None).await;
    assert_eq!(s, 200);
    assert!(body.contains("\"b2\""));
}
