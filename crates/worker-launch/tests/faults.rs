//! Kubernetes API faults are survived: 503s and 500s on apply are retried (within the attempt,
//! then by the runtime with backoff, re-applying idempotently), and dropped watches, expired
//! (410) watches and failing reads while waiting do not stop the launch.

mod common;

use common::*;
use kube_sim::{FaultAction, FaultRule};
use slipway_core::JobState;
use slipway_core::naming::preview_namespace;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_applies_are_retried_until_the_launch_succeeds() {
    let h = Harness::new(sim()).await;
    // Enough 500s on the Deployment's apply to use up the first attempt's own tries.
    h.sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 500,
            retry_after: None,
        })
        .verb("patch")
        .resource("deployments")
        .times(5),
    );
    // And 503s on the namespace's.
    h.sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 503,
            retry_after: None,
        })
        .verb("patch")
        .resource("namespaces")
        .times(2),
    );
    let w = h.worker(&[]).await;
    let key = "org/app#20";
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert!(job.attempts >= 2, "the first attempt failed: {job:?}");
    let attempts = h.store.attempts(id).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("retrying"));
    assert!(
        attempts[0].error.as_deref().unwrap_or("").contains("500"),
        "{attempts:?}"
    );
    let ns = preview_namespace(key);
    assert_eq!(h.preview_namespaces(), std::slice::from_ref(&ns));
    assert_eq!(h.names("deployments", Some(&ns)), ["app"]);
    assert_eq!(h.preview(key).await.status, "ready");
    let patches = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.resource == "deployments")
        .count();
    assert!(patches >= 6, "applied again after the faults: {patches}");
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_watches_and_failing_reads_do_not_stop_the_wait() {
    let h = Harness::new(sim()).await;
    let faults = h.sim.faults();
    // Every watch either ends early, ends mid-line or expires (410), for a while.
    faults.add(
        FaultRule::new(FaultAction::DropWatch { after_events: 1 })
            .verb("watch")
            .times(3),
    );
    faults.add(
        FaultRule::new(FaultAction::TruncateWatch { after_events: 1 })
            .verb("watch")
            .times(3),
    );
    faults.add(FaultRule::new(FaultAction::Expire).verb("watch").times(3));
    // Reads of the Deployment fail for a while; lists of pods are rate limited.
    faults.add(
        FaultRule::new(FaultAction::Status {
            code: 503,
            retry_after: None,
        })
        .verb("get")
        .resource("deployments")
        .times(4),
    );
    faults.add(
        FaultRule::new(FaultAction::Status {
            code: 429,
            retry_after: Some(1),
        })
        .verb("list")
        .resource("pods")
        .times(2),
    );
    let w = h.worker(&[]).await;
    let key = "org/app#21";
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.attempts, 1, "survived within the attempt");
    assert_eq!(h.preview(key).await.status, "ready");
    assert!(
        h.sim.requests().iter().any(|r| r.verb == "watch"),
        "the wait watched"
    );
    w.stop().await.expect("worker stopped cleanly");
}
