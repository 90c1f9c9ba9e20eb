//! kube-runtime helpers the workers will use work against the simulator: the watcher with
//! list+watch and with streaming lists (`sendInitialEvents`), and `await_condition`.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt as _, conditions, wait::await_condition, watcher};
use kube_sim::{Delays, KubeSim, PodScript};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}}))
    .unwrap()
}

#[tokio::test]
async fn watcher_streaming_lists_and_list_watch() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::run_forever())
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(sim.client().unwrap());
    pods.create(&PostParams::default(), &pod("before"))
        .await
        .unwrap();
    for cfg in [
        watcher::Config::default().labels("app=x"),
        watcher::Config::default().labels("app=x").streaming_lists(),
    ] {
        let streaming = cfg.initial_list_strategy == watcher::InitialListStrategy::StreamingList;
        let mut w = watcher(pods.clone(), cfg).boxed();
        let mut init_seen = Vec::new();
        let name = if streaming { "after-2" } else { "after-1" };
        let found = tokio::time::timeout(T, async {
            while let Some(ev) = w.next().await {
                match ev.unwrap() {
                    watcher::Event::InitApply(p) => init_seen.push(p.metadata.name.unwrap()),
                    watcher::Event::InitDone => {
                        pods.create(&PostParams::default(), &pod(name))
                            .await
                            .unwrap();
                    }
                    watcher::Event::Apply(p) if p.metadata.name.as_deref() == Some(name) => {
                        return true;
                    }
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap();
        assert!(found);
        assert!(init_seen.contains(&"before".to_string()), "{init_seen:?}");
    }
    let initial = sim.requests().into_iter().any(|r| {
        r.verb == "watch" && r.query_param("sendInitialEvents").as_deref() == Some("true")
    });
    assert!(initial, "the streaming watcher used sendInitialEvents");
}

#[tokio::test]
async fn await_condition_and_applied_objects_stream() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .namespace("slipway-builds")
        .script(|_| PodScript::succeed().log("ok"))
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "slipway-builds");
    let j: Job = serde_json::from_value(
        json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "x"}]}}}}),
    )
    .unwrap();
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let done = tokio::time::timeout(
        T,
        await_condition(jobs.clone(), "j", conditions::is_job_completed()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(done.is_some());

    let pods: Api<Pod> = Api::namespaced(client, "slipway-builds");
    let mut applied = watcher(
        pods,
        watcher::Config::default().labels("batch.kubernetes.io/job-name=j"),
    )
    .applied_objects()
    .boxed();
    let p = tokio::time::timeout(T, applied.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Succeeded"));
}
