//! The usage sweep: each live preview's CPU and memory, as metrics-server measures them, against
//! its namespace's quota, stored as the preview's latest reading. A cluster without
//! metrics-server (404) or with one that is down (503) is a state of the reading.

mod common;

use common::{Harness, LONG};
use kube_sim::metrics::MetricsServer;
use slipway_core::JobState;
use slipway_core::naming::preview_namespace;
use slipway_shared::store::PreviewUsage;
use slipway_shared::testing::eventually;

const KEY: &str = "org/app#30";

async fn reading(h: &Harness, key: &str) -> Option<PreviewUsage> {
    h.store
        .preview_usage(&[key.to_owned()])
        .await
        .unwrap()
        .into_iter()
        .next()
}

/// A preview launched and ready, its pods reporting 150m and 64Mi per container.
async fn ready_preview(h: &Harness) {
    let launcher = h.launch_worker().await;
    let j = h.finished(h.launch(KEY).await).await;
    assert_eq!(j.state, JobState::Succeeded, "{:?}", j.error);
    launcher.stop().await.unwrap();
    h.sim.set_pod_usage(&preview_namespace(KEY), 150, 64 << 20);
}

#[tokio::test]
async fn a_live_preview_s_usage_is_read_against_its_quota() {
    let h = Harness::new().await;
    h.sim.set_metrics_server(MetricsServer::Running);
    ready_preview(&h).await;

    // The quota controller has written what the preview's pod reserved.
    let report = h.sweeper(&[]).sweep_once().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!((report.usage_sampled, report.usage_measured), (1, 1));
    let u = reading(&h, KEY).await.expect("a reading");
    assert_eq!(u.metrics, "ok");
    assert_eq!(u.pods, Some(1));
    assert_eq!(u.cpu_millis, Some(150));
    assert_eq!(u.memory_bytes, Some(64 << 20));
    // The launch worker's default quota (crates/worker-launch/src/config.rs): limits 2 CPUs and
    // 2Gi, unless the operator says otherwise; the pod's default request is reserved.
    assert!(u.cpu_limit_millis.is_some_and(|m| m > 150), "{u:?}");
    assert!(u.memory_limit_bytes.is_some_and(|b| b > 64 << 20), "{u:?}");
    assert!(u.cpu_requested_millis.is_some_and(|m| m > 0), "{u:?}");
    assert!(u.memory_requested_bytes.is_some_and(|b| b > 0), "{u:?}");

    // A later reading replaces it.
    h.sim.set_pod_usage(&preview_namespace(KEY), 900, 512 << 20);
    h.sweeper(&[]).sweep_once().await;
    let later = reading(&h, KEY).await.unwrap();
    assert_eq!(later.cpu_millis, Some(900));
    assert!(later.sampled_at >= u.sampled_at);

    // Torn down: the reading goes with the preview and is not written again.
    let cleaner = h.cleanup_worker(&[]).await;
    let teardown = h.finished(h.cleanup(KEY).await).await;
    assert_eq!(teardown.state, JobState::Succeeded, "{:?}", teardown.error);
    cleaner.stop().await.unwrap();
    assert_eq!(reading(&h, KEY).await, None);
    let report = h.sweeper(&[]).sweep_once().await;
    assert_eq!(report.usage_sampled, 0, "{report:?}");
    assert_eq!(reading(&h, KEY).await, None);
}

#[tokio::test]
async fn without_metrics_server_the_reading_says_so_and_keeps_the_quota() {
    let h = Harness::new().await;
    ready_preview(&h).await;
    for (server, state) in [
        // minikube's default: the metrics API does not exist (404).
        (MetricsServer::Absent, "no_metrics_server"),
        // Registered but down: the aggregator's plain-text 503.
        (MetricsServer::Unavailable, "metrics_unavailable"),
    ] {
        h.sim.set_metrics_server(server);
        let report = h.sweeper(&[]).sweep_once().await;
        assert!(report.errors.is_empty(), "{server:?}: {report:?}");
        assert_eq!((report.usage_sampled, report.usage_measured), (1, 0));
        let u = reading(&h, KEY).await.expect("a reading");
        assert_eq!(u.metrics, state);
        assert_eq!((u.pods, u.cpu_millis, u.memory_bytes), (None, None, None));
        assert!(u.cpu_limit_millis.is_some(), "{u:?}");
    }
    // It comes back: measured again.
    h.sim.set_metrics_server(MetricsServer::Running);
    eventually(LONG, "a measured reading", || async {
        h.sweeper(&[]).sweep_once().await;
        let u = reading(&h, KEY).await?;
        (u.metrics == "ok").then_some(())
    })
    .await;
}
