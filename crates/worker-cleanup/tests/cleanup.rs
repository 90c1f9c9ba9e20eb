//! The cleanup worker end to end, against real Postgres and Redis and the Kubernetes simulator:
//! teardowns (of a launched preview, through API faults, of a namespace that will not go),
//! each sweep (finished build Jobs, expired previews, orphans, queue repair, log retention)
//! and the sweep leadership across replicas.

mod common;

use common::{BUILD_NAMESPACE, Harness, LONG, managed};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::{FaultAction, FaultRule};
use serde_json::json;
use slipway_core::naming::{build_job_name, preview_namespace};
use slipway_core::{JobKind, JobState};
use slipway_shared::store::{AttemptOutcome, LogLine, NewJob, PreviewUpsert};
use slipway_shared::testing::eventually;
use std::collections::HashSet;

#[tokio::test]
async fn a_launched_preview_is_torn_down() {
    let h = Harness::new().await;
    let launcher = h.launch_worker().await;
    let cleaner = h.cleanup_worker(&[]).await;
    let key = "org/app#7";
    let ns = preview_namespace(key);

    let launch = h.finished(h.launch(key).await).await;
    assert_eq!(launch.state, JobState::Succeeded, "{:?}", launch.error);
    assert!(h.has_namespace(&ns));
    assert!(!h.sim.objects("ingresses", Some(&ns)).is_empty());

    let cleanup = h.finished(h.cleanup(key).await).await;
    assert_eq!(cleanup.state, JobState::Succeeded, "{:?}", cleanup.error);
    assert!(!h.has_namespace(&ns), "the namespace is gone");
    assert!(
        h.sim.objects("ingresses", Some(&ns)).is_empty(),
        "its route too"
    );
    let preview = h.store.get_preview(key).await.unwrap().unwrap();
    assert_eq!(preview.status, "deleted");
    assert!(preview.deleted_at.is_some());
    let result = cleanup.result.unwrap();
    assert_eq!(result["deleted"], json!([ns]));
    let log = h.log_text(cleanup.id).await;
    assert!(log.contains(&format!("namespace {ns} is gone")), "{log}");

    // Tearing down again is a no-op that succeeds.
    let again = h.finished(h.cleanup(key).await).await;
    assert_eq!(again.state, JobState::Succeeded);
    assert_eq!(again.result.unwrap()["deleted"], json!([]));
    cleaner.stop().await.unwrap();
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn a_teardown_is_retried_when_the_api_fails() {
    let h = Harness::new().await;
    let key = "org/app#8";
    let ns = preview_namespace(key);
    h.create_namespace(&ns, managed(), json!({"slipway.dev/preview-key": key}))
        .await;
    // The first attempt's delete fails with a server error; the retry goes through.
    h.sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 500,
            retry_after: None,
        })
        .verb("delete")
        .resource("namespaces")
        .times(1),
    );
    let cleaner = h.cleanup_worker(&[]).await;
    let job = h.finished(h.cleanup(key).await).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.attempts, 2, "one failed attempt, one that worked");
    assert!(!h.has_namespace(&ns));
    let attempts = h.store.attempts(job.id).await.unwrap();
    assert!(
        attempts[0].error.as_deref().unwrap_or("").contains("500"),
        "{attempts:?}"
    );
    cleaner.stop().await.unwrap();
}

#[tokio::test]
async fn a_namespace_stuck_terminating_is_reported_and_retried() {
    let h = Harness::new().await;
    let key = "org/app#9";
    let ns = preview_namespace(key);
    // An object with a finalizer nobody removes holds the namespace in Terminating.
    h.create_held_namespace(&ns, managed()).await;
    let cms: Api<ConfigMap> = Api::namespaced(h.sim.client().unwrap(), &ns);

    let cleaner = h
        .cleanup_worker(&["--namespace-delete-deadline-secs", "1"])
        .await;
    let job = h.finished(h.cleanup(key).await).await;
    assert_eq!(job.state, JobState::Failed, "three attempts, all stuck");
    assert_eq!(job.attempts, 3);
    let error = job.error.unwrap_or_default();
    assert!(error.contains("still terminating"), "{error}");
    assert!(h.has_namespace(&ns), "nothing pretends it is gone");
    let preview_log = h.log_text(job.id).await;
    assert!(preview_log.contains("still terminating"), "{preview_log}");

    // Once the finalizer is removed, an operator retry finishes the teardown.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(h.store.retry_job(job.id).await.unwrap());
    h.queue.push(JobKind::Cleanup, job.id, 3).await.unwrap();
    let retried = eventually(LONG, "the retried teardown", || async {
        h.store
            .get_job(job.id)
            .await
            .ok()
            .flatten()
            .filter(|j| j.state == JobState::Succeeded)
    })
    .await;
    assert_eq!(retried.attempts, 4, "attempt numbers keep counting");
    assert!(!h.has_namespace(&ns));
    cleaner.stop().await.unwrap();
}

#[tokio::test]
async fn a_namespace_slipway_did_not_create_is_never_torn_down() {
    let h = Harness::new().await;
    let key = "org/app#10";
    let ns = preview_namespace(key);
    h.create_namespace(&ns, json!({"team": "payments"}), json!({}))
        .await;
    let cleaner = h.cleanup_worker(&[]).await;
    let job = h.finished(h.cleanup(key).await).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.attempts, 1, "refused at once, not retried");
    assert!(
        job.error.unwrap().contains("not created by Slipway"),
        "says why"
    );
    assert!(h.has_namespace(&ns));
    cleaner.stop().await.unwrap();
}

/// A build Job as the build worker creates it, for job `id` attempt 1.
async fn build_job(h: &Harness, id: slipway_core::JobId) -> String {
    let name = build_job_name(id, 1);
    let jobs: Api<Job> = Api::namespaced(h.sim.client().unwrap(), BUILD_NAMESPACE);
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "slipway",
            "slipway.dev/kind": "build",
            "slipway.dev/job-id": id.hyphenated().to_string(),
        }},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {
                "app.kubernetes.io/managed-by": "slipway",
                "slipway.dev/kind": "build",
                "slipway.dev/job-id": id.hyphenated().to_string(),
            }},
            "spec": {"restartPolicy": "Never",
                     // Exits 0 at once: only a finished Job matters here (without a command
                     // the image runs its daemon entrypoint until deleted).
                     "containers": [{"name": "buildkit", "image": "moby/buildkit:rootless",
                                     "command": ["sh", "-c", "true"]}]}
        }}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    h.sim
        .wait_for_object("jobs", BUILD_NAMESPACE, &name, LONG, |j| {
            j["status"]["succeeded"].as_i64() == Some(1)
        })
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn finished_build_jobs_are_collected_only_once_their_logs_are_stored() {
    let h = Harness::new().await;
    let sweeper = h.sweeper(&["--orphan-grace-secs", "3600"]);
    // A build whose worker is still storing the log of its finished Job.
    let id = h
        .store
        .insert_job(NewJob::new(JobKind::Build, json!({})))
        .await
        .unwrap()
        .job
        .id;
    h.store.start_attempt(id, 1, "w1").await.unwrap().unwrap();
    let name = build_job(&h, id).await;
    // And a Job whose build no longer exists at all, still within the grace period.
    let stray = build_job(&h, uuid::Uuid::now_v7()).await;

    let report = sweeper.sweep_once().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(report.deleted.is_empty(), "{report:?}");
    assert_eq!(report.orphans_found.get("job"), Some(&1));
    assert!(h.sim.object("jobs", BUILD_NAMESPACE, &name).is_some());

    // The worker stores the last lines, then finishes the attempt.
    h.store
        .append_logs(
            id,
            1,
            &[LogLine {
                seq: 1,
                ts: chrono::Utc::now(),
                stream: "stdout".into(),
                text: "#9 DONE".into(),
            }],
        )
        .await
        .unwrap();
    assert!(
        h.store
            .finish_attempt(
                id,
                1,
                AttemptOutcome::Succeeded {
                    result: json!({"digest": "sha256:1"})
                }
            )
            .await
            .unwrap()
    );
    let report = sweeper.sweep_once().await;
    assert_eq!(report.deleted.get("job/finished"), Some(&1), "{report:?}");
    h.sim
        .wait_for_gone("jobs", BUILD_NAMESPACE, &name, LONG)
        .await
        .unwrap();
    assert_eq!(h.log_text(id).await, "#9 DONE", "the log stays");
    assert!(h.sim.object("jobs", BUILD_NAMESPACE, &stray).is_some());

    // Past the grace period the stray goes too.
    let report = h.sweeper(&["--orphan-grace-secs", "0"]).sweep_once().await;
    assert_eq!(report.deleted.get("job/orphan"), Some(&1), "{report:?}");
}

#[tokio::test]
async fn an_expired_preview_is_collected_and_a_redeployed_one_kept() {
    let h = Harness::new().await;
    let launcher = h.launch_worker().await;
    let cleaner = h.cleanup_worker(&[]).await;
    let (old, fresh) = ("org/app#20", "org/app#21");
    for key in [old, fresh] {
        let j = h.finished(h.launch(key).await).await;
        assert_eq!(j.state, JobState::Succeeded, "{:?}", j.error);
    }
    // Both outlive their time to live...
    sqlx::query("UPDATE previews SET expires_at = now() - interval '1 minute'")
        .execute(h.store.pool())
        .await
        .unwrap();
    // ...but one is redeployed, which resets its clock.
    let j = h.finished(h.launch(fresh).await).await;
    assert_eq!(j.state, JobState::Succeeded);

    let report = h.sweeper(&[]).sweep_once().await;
    assert_eq!(report.previews_expired, 1, "{report:?}");
    eventually(LONG, "the expired preview torn down", || async {
        let p = h.store.get_preview(old).await.ok().flatten()?;
        p.deleted_at.is_some().then_some(())
    })
    .await;
    assert!(!h.has_namespace(&preview_namespace(old)));
    assert!(h.has_namespace(&preview_namespace(fresh)));
    let kept = h.store.get_preview(fresh).await.unwrap().unwrap();
    assert_eq!(kept.status, "ready");
    // A second sweep does not enqueue the same teardown again.
    let report = h.sweeper(&[]).sweep_once().await;
    assert_eq!(report.previews_expired, 0, "{report:?}");
    cleaner.stop().await.unwrap();
    launcher.stop().await.unwrap();
}

#[tokio::test]
async fn orphan_namespaces_are_collected_after_the_grace_period_and_foreign_ones_left() {
    let h = Harness::new().await;
    let orphan = preview_namespace("org/gone#1");
    let foreign = preview_namespace("org/theirs#1");
    h.create_namespace(&orphan, managed(), json!({})).await;
    // Same name pattern, not Slipway's label: never touched.
    h.create_namespace(&foreign, json!({}), json!({})).await;
    // A live preview whose namespace someone deleted by hand.
    h.store
        .upsert_preview(&PreviewUpsert {
            key: "org/vanished#1".into(),
            namespace: preview_namespace("org/vanished#1"),
            status: "ready".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let report = h
        .sweeper(&["--orphan-grace-secs", "3600"])
        .sweep_once()
        .await;
    assert_eq!(
        report.orphans_found.get("namespace"),
        Some(&1),
        "{report:?}"
    );
    assert!(
        report.deleted.is_empty(),
        "within the grace period: {report:?}"
    );
    assert_eq!(report.previews_vanished, 1);
    let vanished = h
        .store
        .get_preview("org/vanished#1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(vanished.status, "vanished");
    assert!(vanished.deleted_at.is_some());

    let report = h.sweeper(&["--orphan-grace-secs", "0"]).sweep_once().await;
    assert_eq!(
        report.deleted.get("namespace/orphan"),
        Some(&1),
        "{report:?}"
    );
    h.sim
        .wait_for_gone("namespaces", "", &orphan, LONG)
        .await
        .unwrap();
    assert!(h.has_namespace(&foreign));
    assert!(
        h.has_namespace(BUILD_NAMESPACE),
        "the build namespace stays"
    );
}

#[tokio::test]
async fn a_job_redis_lost_is_queued_again_and_completes_once() {
    let h = Harness::new().await;
    // Recorded and marked enqueued, but Redis lost it (as after a restart without data).
    let lost = h.cleanup_lost_by_redis("org/lost#1").await;
    // And one whose worker died mid-attempt while Redis lost it: attempt 1 stays open.
    let died = h.cleanup_lost_by_redis("org/lost#2").await;
    h.store.start_attempt(died, 1, "dead-worker").await.unwrap();
    // A job Redis still holds is left alone.
    let held = h.cleanup("org/held#1").await;
    for id in [lost, died, held] {
        h.age_job(id, 600).await;
    }

    let report = h
        .sweeper(&["--queue-repair-after-secs", "300"])
        .sweep_once()
        .await;
    assert_eq!(report.jobs_requeued, 2, "{report:?}");
    // Pushed again with their request's trace, for the worker's job span to continue.
    for id in [lost, died] {
        let queued = h
            .queue
            .get(JobKind::Cleanup, &id.to_string())
            .await
            .unwrap()
            .expect("queued again");
        assert_eq!(queued.data["traceparent"], common::TRACEPARENT);
    }
    // Touched: the next sweep leaves them for another quiet period.
    let report = h
        .sweeper(&["--queue-repair-after-secs", "300"])
        .sweep_once()
        .await;
    assert_eq!(report.jobs_requeued, 0, "{report:?}");

    let cleaner = h.cleanup_worker(&[]).await;
    for id in [lost, died, held] {
        let j = h.finished(id).await;
        assert_eq!(j.state, JobState::Succeeded, "{:?}", j.error);
    }
    assert_eq!(h.job(lost).await.attempts, 1, "ran once");
    let attempts = h.store.attempts(died).await.unwrap();
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.clone()))
        .collect();
    assert_eq!(attempts.len(), 2, "{outcomes:?}");
    assert_eq!(
        attempts[1].attempt, 2,
        "numbering continues after the lost attempt"
    );
    assert_eq!(
        attempts[0].outcome.as_deref(),
        Some("abandoned"),
        "{outcomes:?}"
    );
    cleaner.stop().await.unwrap();
}

#[tokio::test]
async fn old_logs_are_removed_and_recent_ones_kept() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = h
            .store
            .insert_job(NewJob::new(JobKind::Build, json!({})))
            .await
            .unwrap()
            .job
            .id;
        h.store.start_attempt(id, 1, "w").await.unwrap();
        let lines: Vec<LogLine> = (1..=1200)
            .map(|seq| LogLine {
                seq,
                ts: chrono::Utc::now(),
                stream: "stdout".into(),
                text: format!("line {seq}"),
            })
            .collect();
        h.store.append_logs(id, 1, &lines).await.unwrap();
        h.store
            .finish_attempt(id, 1, AttemptOutcome::Succeeded { result: json!({}) })
            .await
            .unwrap();
        ids.push(id);
    }
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '40 days' WHERE id = $1")
        .bind(ids[0])
        .execute(h.store.pool())
        .await
        .unwrap();
    let report = h
        .sweeper(&["--log-retention-days", "30"])
        .sweep_once()
        .await;
    assert_eq!((report.log_jobs, report.log_lines), (1, 1200), "{report:?}");
    assert!(
        h.store
            .read_logs(ids[0], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.store.read_logs(ids[1], None, 5000).await.unwrap().len(),
        1200
    );
    let report = h
        .sweeper(&["--log-retention-days", "30"])
        .sweep_once()
        .await;
    assert_eq!(report.log_jobs, 0, "done once");
}

#[tokio::test]
async fn of_two_replicas_exactly_one_sweeps_and_the_other_takes_over() {
    let h = Harness::new().await;
    let flags = |name: &'static str| ["--sweep-interval-secs", "0.1", "--replica-name", name];
    let a = h.cleanup_worker(&flags("replica-a")).await;
    let b = h.cleanup_worker(&flags("replica-b")).await;
    let sweeps = eventually(LONG, "ten sweeps", || async {
        let s = h.store.recent_sweeps(100).await.ok()?;
        (s.len() >= 10).then_some(s)
    })
    .await;
    let holders: HashSet<&str> = sweeps.iter().map(|s| s.holder.as_str()).collect();
    assert_eq!(holders.len(), 1, "only one replica sweeps: {holders:?}");
    let leader = holders.into_iter().next().unwrap().to_owned();
    let metrics = reqwest::get(format!("http://{}/metrics", a.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "slipway_cleanup_sweeps_total",
        "slipway_cleanup_sweep_duration_seconds",
        "slipway_cleanup_leader",
        // Read by every replica, leading or not.
        "slipway_previews_past_expiry 0",
        "slipway_preview_expiry_overdue_seconds 0",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    slipway_shared::testing::assert_promtool_clean("slipway-worker-cleanup", &metrics);

    // The leader stops; the other replica takes over.
    let (stopped, other) = if leader == "replica-a" {
        (a, "replica-b")
    } else {
        (b, "replica-a")
    };
    stopped.stop().await.unwrap();
    eventually(LONG, "the other replica sweeping", || async {
        let s = h.store.recent_sweeps(1).await.ok()?;
        (s.first()?.holder == other).then_some(())
    })
    .await;
}
