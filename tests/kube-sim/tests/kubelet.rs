//! The kubelet as real clusters have it: log files rotated at a size (only the current file is
//! served; an open follow keeps reading), `sinceTime` inclusive in whole seconds, fixed
//! nanosecond timestamps, log streams cut or stalled by faults, and Secret/ConfigMap volumes
//! that keep a pod in `ContainerCreating` with repeated `FailedMount` Events until their
//! object appears.

use std::time::Duration;

use futures::{AsyncBufReadExt as _, AsyncReadExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube_sim::{Delays, FaultAction, FaultRule, KubeSim, PodScript};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn pod(name: &str, volumes: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "volumes": volumes,
            "containers": [{"name": "c", "image": "worker:1"}]}
    }))
    .unwrap()
}

async fn running(sim: &KubeSim, name: &str) {
    sim.wait_for_object("pods", "default", name, T, |p| {
        p["status"]["phase"] != "Pending"
    })
    .await
    .unwrap();
}

async fn body(client: &kube::Client, path: &str) -> String {
    let req = http::Request::builder()
        .uri(path)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn texts(log: &str) -> Vec<String> {
    log.lines().map(String::from).collect()
}

#[tokio::test]
async fn a_rotated_log_serves_only_its_current_file_while_an_open_follow_reads_on() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .log_rotate_bytes(500)
        .script(|_| {
            let mut s = PodScript::succeed().log("first");
            // Written well after the follow below is open.
            s = s.log_after(
                Duration::from_secs(1),
                "line 00 ".to_string() + &"x".repeat(40),
            );
            for i in 1..31 {
                s = s.log(format!("line {i:02} {}", "x".repeat(40)));
            }
            s
        })
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(sim.client().unwrap());
    pods.create(&PostParams::default(), &pod("p", json!([])))
        .await
        .unwrap();
    running(&sim, "p").await;
    let follow = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = pods.log_stream("p", &follow).await.unwrap().lines();
    assert_eq!(lines.try_next().await.unwrap().as_deref(), Some("first"));
    let followed: Vec<String> = lines.try_collect().await.unwrap();
    assert_eq!(
        followed.len(),
        31,
        "an open follow loses nothing: {followed:?}"
    );

    // A CRI line takes 30 + 10 + text + 1 bytes: 89 for these. The file rotates once it
    // reaches 500 bytes: after `line 05` (46 + 6 * 89), then after every 6th line; `line 30`
    // is alone in the current file.
    let all = sim.pod_logs("default", "p", None);
    let current = sim.pod_log_file("default", "p", None);
    assert_eq!(all.len(), 32);
    assert_eq!(current, [format!("line 30 {}", "x".repeat(40))]);
    let plain = pods.logs("p", &LogParams::default()).await.unwrap();
    assert_eq!(texts(&plain), current);
    // A follow opened after the container ended reads the current file too, and ends.
    let late: Vec<String> = pods
        .log_stream("p", &follow)
        .await
        .unwrap()
        .lines()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(late, current);
}

#[tokio::test]
async fn since_time_is_inclusive_in_whole_seconds_and_timestamps_have_nine_digits() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| {
            let mut s = PodScript::succeed();
            for i in 0..12 {
                s = s.log_after(Duration::from_millis(150), format!("line {i}"));
            }
            s
        })
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("p", json!([])))
        .await
        .unwrap();
    sim.wait_for_object("pods", "default", "p", T, |p| {
        p["status"]["phase"] == "Succeeded"
    })
    .await
    .unwrap();
    let all = body(
        &client,
        "/api/v1/namespaces/default/pods/p/log?timestamps=true",
    )
    .await;
    let stamped: Vec<(chrono::DateTime<chrono::Utc>, String)> = all
        .lines()
        .map(|l| {
            let (ts, text) = l.split_once(' ').unwrap();
            // RFC3339NanoFixed: always nine fraction digits.
            assert_eq!(ts.len(), 30, "{ts}");
            (ts.parse().unwrap(), text.to_string())
        })
        .collect();
    assert_eq!(stamped.len(), 12);
    for (k, (ts, text)) in stamped.iter().enumerate().skip(1) {
        // sinceTime with a fraction: the API server passes whole seconds on, and the kubelet
        // keeps every line not before them, the line itself included.
        let since = ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let got = body(
            &client,
            &format!("/api/v1/namespaces/default/pods/p/log?sinceTime={since}"),
        )
        .await;
        let second = ts.timestamp();
        let expected: Vec<String> = stamped
            .iter()
            .filter(|(t, _)| t.timestamp() >= second)
            .map(|(_, l)| l.clone())
            .collect();
        assert_eq!(texts(&got), expected, "sinceTime={since}");
        assert!(texts(&got).contains(text), "line {k}");
    }
}

#[tokio::test]
async fn log_faults_cut_a_stream_or_hold_it_open_silent() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| {
            let mut s = PodScript::run_forever();
            for i in 0..5 {
                s = s.log(format!("line {i}"));
            }
            s.log_after(Duration::from_millis(200), "later")
        })
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(sim.client().unwrap());
    pods.create(&PostParams::default(), &pod("p", json!([])))
        .await
        .unwrap();
    running(&sim, "p").await;
    let follow = LogParams {
        follow: true,
        ..LogParams::default()
    };

    // dropLogs: two lines, then the connection breaks (an error, not a clean end).
    sim.faults().add(
        FaultRule::new(FaultAction::DropLogs { after_lines: 2 })
            .resource("pods/log")
            .times(1),
    );
    let mut cut = pods.log_stream("p", &follow).await.unwrap().lines();
    assert_eq!(cut.try_next().await.unwrap().as_deref(), Some("line 0"));
    assert_eq!(cut.try_next().await.unwrap().as_deref(), Some("line 1"));
    assert!(cut.try_next().await.is_err());

    // stallLogs: two lines, then silence on an open connection, whatever the container writes.
    sim.faults().add(
        FaultRule::new(FaultAction::StallLogs { after_lines: 2 })
            .resource("pods/log")
            .times(1),
    );
    let mut stalled = pods.log_stream("p", &follow).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.iter().filter(|b| **b == b'\n').count() < 2 {
        let n = stalled.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"line 0\nline 1\n");
    sim.wait_for("the later line", T, |_| {
        sim.pod_logs("default", "p", None)
            .contains(&"later".to_string())
    })
    .await
    .unwrap();
    let silent = tokio::time::timeout(Duration::from_millis(500), stalled.read(&mut buf)).await;
    assert!(silent.is_err(), "the stalled stream sent {silent:?}");

    // The rules are used up: the next request is whole.
    let whole = pods.logs("p", &LogParams::default()).await.unwrap();
    assert_eq!(whole.lines().count(), 6);
}

#[tokio::test]
async fn a_missing_secret_volume_keeps_the_pod_creating_until_the_secret_appears() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::succeed().log("mounted"))
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let volumes = json!([
        {"name": "git-auth", "secret": {"secretName": "git-token",
            "items": [{"key": "token", "path": "token"}]}},
        {"name": "maybe", "secret": {"secretName": "absent", "optional": true}},
        {"name": "conf", "configMap": {"name": "absent-too", "optional": true}},
    ]);
    let created = pods
        .create(&PostParams::default(), &pod("p", volumes))
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    let by_pod = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    let failed_mounts = || async {
        events
            .list(&by_pod)
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("FailedMount"))
            .collect::<Vec<_>>()
    };
    // One Event, repeated (its count grows with each retry), about the non-optional volume.
    sim.wait_for("repeated FailedMount", T, |_| {
        sim.objects("events", Some("default"))
            .iter()
            .any(|e| e["reason"] == "FailedMount" && e["count"].as_i64() >= Some(3))
    })
    .await
    .unwrap();
    let mounts = failed_mounts().await;
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        mounts[0].message.as_deref(),
        Some("MountVolume.SetUp failed for volume \"git-auth\" : secret \"git-token\" not found")
    );
    assert_eq!(
        mounts[0].source.as_ref().unwrap().component.as_deref(),
        Some("kubelet")
    );
    let p = pods.get("p").await.unwrap();
    let status = p.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let waiting = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    // Event field selectors are Event's own: a pod does not have them.
    let e = Api::<Pod>::default_namespaced(client.clone())
        .list(&ListParams::default().fields("involvedObject.uid=x"))
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 400));

    // A Secret without the key the volume names still fails, differently.
    let without_key: Secret = serde_json::from_value(
        json!({"metadata": {"name": "git-token"}, "data": {"other": "eA=="}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &without_key)
        .await
        .unwrap();
    sim.wait_for("the missing key reported", T, |_| {
        sim.objects("events", Some("default")).iter().any(|e| {
            e["message"]
                == "MountVolume.SetUp failed for volume \"git-auth\" : references non-existent secret key: token"
        })
    })
    .await
    .unwrap();
    assert_eq!(
        pods.get("p")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );

    // With the key, the next retry mounts it and the pod runs.
    secrets
        .replace(
            "git-token",
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "git-token"}, "data": {"token": "dA=="}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    sim.wait_for_object("pods", "default", "p", T, |p| {
        p["status"]["phase"] == "Succeeded"
    })
    .await
    .unwrap();
    assert_eq!(sim.pod_logs("default", "p", None), ["mounted"]);
}

/// The status of a pod's `Ready` condition ("True"/"False"), if set.
fn ready(p: &Value) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(String::from))
}

#[tokio::test]
async fn a_probed_container_is_ready_only_if_it_keeps_running() {
    // Each pod's name says whether its app keeps running or exits after a while.
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|pod| {
            if pod.name.starts_with("serves") {
                PodScript::run_forever().log("listening")
            } else {
                PodScript::exit(1).log_after(Duration::from_secs(2), "panic: no config")
            }
        })
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client().unwrap(), "default");
    let probe = json!({"httpGet": {"path": "/healthz", "port": 8080}});
    for (name, probed) in [
        ("serves-probed", true),
        ("exits-probed", true),
        ("exits-unprobed", false),
    ] {
        let mut c = json!({"name": "app", "image": "app:1"});
        if probed {
            c["readinessProbe"] = probe.clone();
        }
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [c]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let running_with = |want: &'static str| {
        move |p: &Value| p["status"]["phase"] == "Running" && ready(p).as_deref() == Some(want)
    };
    // An app that keeps running passes its probe; without a probe, running is ready.
    sim.wait_for_object("pods", "default", "serves-probed", T, running_with("True"))
        .await
        .unwrap();
    sim.wait_for_object("pods", "default", "exits-unprobed", T, running_with("True"))
        .await
        .unwrap();
    // One that exits never passes its probe while it runs.
    let p = sim
        .wait_for_object("pods", "default", "exits-probed", T, |p| {
            p["status"]["phase"] == "Running"
        })
        .await
        .unwrap();
    assert_eq!(ready(&p).as_deref(), Some("False"), "{p}");
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false, "{p}");
}
