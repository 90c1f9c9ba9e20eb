//! Pods that will not come up: an image that cannot be pulled and a container that keeps
//! crashing fail the launch at once (one attempt, permanent) with the reason in the error and
//! the job's log; a rollout stuck without a clear cause (an unschedulable pod) times out
//! transiently and is retried.

mod common;

use common::*;
use kube_sim::{Outcome, PodScript};
use slipway_core::naming::preview_namespace;
use slipway_core::{ErrorClass, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_launch_for_good() {
    let h = Harness::new(sim().script(|pod| {
        if pod.image.contains("missing") {
            PodScript::outcome(Outcome::ImagePullBackOff)
        } else {
            PodScript::run_forever()
        }
    }))
    .await;
    let w = h.worker(&[]).await;
    let key = "org/app#1";
    let id = h.launch(body(key, "ghcr.io/org/missing:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1, "not retried");
    let error = job.error.unwrap();
    assert!(error.contains("cannot be pulled"), "{error}");
    assert!(error.contains("ImagePullBackOff"), "{error}");

    let logs = h.logs(id).await;
    let text = h.log_text(id).await;
    assert!(text.contains("ImagePullBackOff"), "{text}");
    assert!(text.contains("ghcr.io/org/missing:v1"), "{text}");
    // Each pod state is reported once, however often it was seen.
    let pull_notes = logs
        .iter()
        .filter(|l| l.text.starts_with("pod ") && l.text.contains(": ImagePullBackOff:"))
        .count();
    assert_eq!(pull_notes, 1, "{text}");
    assert!(
        text.contains("launch failed: the image cannot be pulled"),
        "{text}"
    );

    let p = h.preview(key).await;
    assert_eq!(p.status, "failed");
    assert_eq!(p.namespace, preview_namespace(key));
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_container_fails_the_launch_with_its_last_log_lines() {
    let h = Harness::new(sim().script(|_| {
        PodScript::outcome(Outcome::CrashLoopBackOff)
            .log("starting app")
            .log("panic: DATABASE_URL is not set")
    }))
    .await;
    let w = h.worker(&[]).await;
    let id = h.launch(body("org/app#2", "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1, "not retried");
    let error = job.error.unwrap();
    assert!(error.contains("keeps crashing"), "{error}");
    assert!(error.contains("CrashLoopBackOff"), "{error}");
    assert!(error.contains("DATABASE_URL is not set"), "{error}");

    let logs = h.logs(id).await;
    let text = h.log_text(id).await;
    assert!(text.contains("CrashLoopBackOff"), "{text}");
    assert!(text.contains("  starting app"), "{text}");
    assert!(text.contains("  panic: DATABASE_URL is not set"), "{text}");
    let crash_notes = logs
        .iter()
        .filter(|l| l.text.starts_with("pod ") && l.text.contains(": CrashLoopBackOff"))
        .count();
    assert_eq!(crash_notes, 1, "{text}");
    assert_eq!(h.preview("org/app#2").await.status, "failed");
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_stuck_without_a_clear_cause_times_out_and_is_retried() {
    let h = Harness::new(sim().script(|_| PodScript::outcome(Outcome::Unschedulable))).await;
    let w = h.worker(&["--deadline-secs", "2"]).await;
    let id = h.launch(body("org/app#3", "ghcr.io/org/app:v1")).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Transient));
    assert_eq!(job.attempts, 3, "every attempt was used");
    let error = job.error.unwrap();
    assert!(
        error.contains("did not become Available within 2 s"),
        "{error}"
    );
    assert!(error.contains("Unschedulable"), "{error}");
    let attempts = h.store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts[..2]
            .iter()
            .all(|a| a.outcome.as_deref() == Some("retrying"))
    );
    // Every attempt re-applied into the same namespace: still one Deployment and one pod.
    let ns = preview_namespace("org/app#3");
    assert_eq!(h.preview_namespaces(), std::slice::from_ref(&ns));
    assert_eq!(h.names("deployments", Some(&ns)), ["app"]);
    assert_eq!(h.names("pods", Some(&ns)).len(), 1);
    assert_eq!(h.preview("org/app#3").await.status, "failed");
    w.stop().await.expect("worker stopped cleanly");
}
