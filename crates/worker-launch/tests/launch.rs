//! End to end against real Postgres and Redis and the simulator: a launch becomes an Available
//! rollout and a recorded URL; a redeploy is a rollout in the same namespace; a launch from a
//! build takes the built image (waiting while the build runs, failing when it failed); a
//! cancelled launch stops waiting.

mod common;

use common::*;
use kube_sim::{Outcome, PodScript};
use serde_json::json;
use slipway_core::naming::{preview_host, preview_namespace};
use slipway_core::{ErrorClass, JobKind, JobState};
use slipway_shared::store::{AttemptOutcome, NewJob};
use slipway_shared::testing::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_becomes_available_and_its_url_is_recorded() {
    let h = Harness::new(sim()).await;
    let w = h.worker(&[]).await;
    let key = "org/app#42";
    let mut b = body(key, "ghcr.io/org/app:v1");
    b["replicas"] = json!(2);
    let id = h.launch(b).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.attempts, 1);

    let ns = preview_namespace(key);
    let url = "http://pr-42-app.192.168.49.2.nip.io";
    let result = job.result.unwrap();
    assert_eq!(result["url"], url);
    assert_eq!(result["namespace"], ns.as_str());
    assert_eq!(result["image"], "ghcr.io/org/app:v1");
    let pods: Vec<String> = serde_json::from_value(result["pods"].clone()).unwrap();
    assert_eq!(pods.len(), 2);

    // The registry is the source of truth.
    let p = h.preview(key).await;
    assert_eq!(p.status, "ready");
    assert_eq!(p.url.as_deref(), Some(url));
    assert_eq!(p.namespace, ns);
    assert_eq!(p.image.as_deref(), Some("ghcr.io/org/app:v1"));
    assert_eq!(p.pods, pods);
    assert_eq!(p.last_job_id, Some(id));
    let ttl = p.expires_at.unwrap() - chrono::Utc::now();
    assert!(ttl > chrono::Duration::hours(71) && ttl <= chrono::Duration::hours(72));

    // Every object exists, labelled, applied by Slipway's field manager; the pods are Ready.
    for (plural, name) in [
        ("resourcequotas", "slipway-quota"),
        ("limitranges", "slipway-limits"),
        ("networkpolicies", "default-deny"),
        ("networkpolicies", "allow-ingress-controller"),
        ("networkpolicies", "allow-dns-egress"),
        ("deployments", "app"),
        ("services", "app"),
        ("ingresses", "app"),
    ] {
        let o = h
            .sim
            .object(plural, &ns, name)
            .unwrap_or_else(|| panic!("{plural} {name} missing"));
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "slipway"
        );
        assert_eq!(
            o["metadata"]["labels"]["slipway.dev/job-id"],
            id.to_string()
        );
        assert_eq!(o["metadata"]["managedFields"][0]["manager"], "slipway");
        assert_eq!(o["metadata"]["managedFields"][0]["operation"], "Apply");
    }
    let namespace = h.sim.object("namespaces", "", &ns).unwrap();
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    assert_eq!(
        namespace["metadata"]["annotations"]["slipway.dev/preview-key"],
        key
    );
    let ingress = h.sim.object("ingresses", &ns, "app").unwrap();
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ingress["spec"]["rules"][0]["host"],
        preview_host(key, "192.168.49.2.nip.io")
    );
    for pod in &pods {
        let o = h.sim.object("pods", &ns, pod).unwrap();
        assert_eq!(o["spec"]["containers"][0]["image"], "ghcr.io/org/app:v1");
        assert_eq!(
            o["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"],
            "/healthz"
        );
    }

    // The attempt recorded what it created; the log tells the story.
    let attempts = h.store.attempts(id).await.unwrap();
    assert!(attempts[0].k8s_objects.contains(&format!("Namespace/{ns}")));
    assert!(
        attempts[0]
            .k8s_objects
            .contains(&format!("Deployment/{ns}/app"))
    );
    let log = h.log_text(id).await;
    assert!(log.contains("launching ghcr.io/org/app:v1"), "{log}");
    assert!(log.contains(&format!("preview ready at {url}")), "{log}");
    assert!(h.logs(id).await.iter().all(|l| l.stream == "system"));
    assert_eq!(h.store.count_active_previews().await.unwrap(), 1);

    let metrics = reqwest::get(format!("http://{}/metrics", w.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("slipway_launches_total{outcome=\"succeeded\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("slipway_launch_time_to_available_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains("slipway_active_previews"), "{metrics}");
    slipway_shared::testing::assert_promtool_clean("slipway-worker-launch", &metrics);
    let ready = reqwest::get(format!("http://{}/readyz", w.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_rolls_out_in_the_same_namespace() {
    let h = Harness::new(sim()).await;
    let w = h.worker(&[]).await;
    let key = "org/app#7";
    let commit1 = "1".repeat(40);
    let commit2 = "2".repeat(40);
    let payload = |image: &str| valid(body(key, image));
    let first = h
        .launch_valid(payload("ghcr.io/org/app:v1"), Some(&commit1))
        .await;
    assert_eq!(h.finished(first).await.state, JobState::Succeeded);
    let before = h.preview(key).await;
    assert_eq!(before.commit_sha.as_deref(), Some(commit1.as_str()));

    let second = h
        .launch_valid(payload("ghcr.io/org/app:v2"), Some(&commit2))
        .await;
    let job = h.finished(second).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);

    let ns = preview_namespace(key);
    assert_eq!(
        h.preview_namespaces(),
        std::slice::from_ref(&ns),
        "one namespace"
    );
    assert_eq!(h.names("deployments", Some(&ns)), ["app"]);
    // A rollout: a second ReplicaSet; the old one scaled to zero.
    let sets = h.sim.objects("replicasets", Some(&ns));
    assert_eq!(sets.len(), 2);
    let current: Vec<_> = sets
        .iter()
        .filter(|r| r["spec"]["replicas"].as_i64() == Some(1))
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(
        current[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/org/app:v2"
    );
    let after = h.preview(key).await;
    assert_eq!(after.image.as_deref(), Some("ghcr.io/org/app:v2"));
    assert_eq!(after.commit_sha.as_deref(), Some(commit2.as_str()));
    assert_eq!(after.last_job_id, Some(second));
    assert_eq!(after.created_at, before.created_at, "the same preview row");
    assert_ne!(after.pods, before.pods, "pods of the new ReplicaSet");
    for pod in &after.pods {
        let o = h.sim.object("pods", &ns, pod).unwrap();
        assert_eq!(o["spec"]["containers"][0]["image"], "ghcr.io/org/app:v2");
    }
    let d = h.sim.object("deployments", &ns, "app").unwrap();
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["slipway.dev/commit"],
        commit2.as_str()
    );
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_from_a_build_waits_for_it_and_runs_the_built_image() {
    let h = Harness::new(sim()).await;
    let w = h.worker(&[]).await;
    // A build row as the API records it, running.
    let commit = "c".repeat(40);
    let mut build = NewJob::new(JobKind::Build, json!({"image": "org/app"}));
    build.commit_sha = Some(commit.clone());
    build.preview = Some("org/app#9".into());
    let build = h.store.insert_job(build).await.unwrap().job;
    assert!(
        h.store
            .start_attempt(build.id, 1, "test-build-worker")
            .await
            .unwrap()
            .is_some()
    );

    // A generous budget: the launch retries (with short test backoff) until the build is done.
    let launch = h
        .launch_with_budget(
            valid(json!({"preview": "org/app#9", "from_build": build.id.to_string()})),
            None,
            20,
        )
        .await;
    // The build has not finished: the launch is retried, not failed.
    let waiting = eventually(LONG, "the launch to retry", || async {
        let j = h.job(launch).await;
        (j.state == JobState::Retrying).then_some(j)
    })
    .await;
    assert!(
        waiting
            .error
            .as_deref()
            .unwrap_or("")
            .contains("has not finished"),
        "{waiting:?}"
    );
    let digest = format!("sha256:{}", "d".repeat(64));
    let result = json!({"image": "registry.local/org/app:cccc", "digest": digest,
        "pull": format!("localhost:5000/org/app@{digest}")});
    assert!(
        h.store
            .finish_attempt(build.id, 1, AttemptOutcome::Succeeded { result })
            .await
            .unwrap()
    );
    let job = h.finished(launch).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let image = format!("localhost:5000/org/app@{digest}");
    assert_eq!(job.result.unwrap()["image"], image.as_str());
    let ns = preview_namespace("org/app#9");
    let d = h.sim.object("deployments", &ns, "app").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        image.as_str()
    );
    let p = h.preview("org/app#9").await;
    assert_eq!(p.image.as_deref(), Some(image.as_str()));
    assert_eq!(
        p.commit_sha.as_deref(),
        Some(commit.as_str()),
        "the build's commit"
    );

    // A launch of a failed build fails at once.
    let failed = h
        .store
        .insert_job(NewJob::new(JobKind::Build, json!({})))
        .await
        .unwrap()
        .job;
    h.store.start_attempt(failed.id, 1, "b").await.unwrap();
    h.store
        .finish_attempt(
            failed.id,
            1,
            AttemptOutcome::Failed {
                error: "Dockerfile not found".into(),
                class: ErrorClass::Permanent,
            },
        )
        .await
        .unwrap();
    let doomed = h
        .launch(json!({"preview": "org/app#10", "from_build": failed.id.to_string()}))
        .await;
    let job = h.finished(doomed).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1);
    assert!(
        job.error
            .as_deref()
            .unwrap_or("")
            .contains("Dockerfile not found"),
        "{job:?}"
    );
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_launch_stops_waiting_and_leaves_the_objects() {
    // Pods never get scheduled, so the launch waits until it is cancelled.
    let h = Harness::new(sim().script(|_| PodScript::outcome(Outcome::Unschedulable))).await;
    let w = h.worker(&[]).await;
    let key = "org/app#11";
    let id = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    let ns = preview_namespace(key);
    eventually(
        LONG,
        "the launch to wait on an unschedulable pod",
        || async { h.log_text(id).await.contains("Unschedulable").then_some(()) },
    )
    .await;
    // What the API's cancel does: the row first, then the running worker is told.
    assert!(
        h.store
            .cancel_job(id, JobState::Cancelled, "cancelled by operator")
            .await
            .unwrap()
    );
    h.queue
        .cancel(JobKind::Launch, &id.to_string(), "cancelled by operator")
        .await
        .unwrap();
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Cancelled);
    // The worker's handler stopped: its slot is free again.
    eventually(LONG, "the worker to let go of the job", || async {
        let c = h.queue.counts(JobKind::Launch).await.ok()?;
        (c.active == 0).then_some(())
    })
    .await;
    assert_eq!(
        h.names("deployments", Some(&ns)),
        ["app"],
        "objects left for cleanup"
    );
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaunch_waits_for_a_namespace_still_terminating_from_a_teardown() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

    let h = Harness::new(sim()).await;
    let w = h.worker(&[]).await;
    let key = "org/app#12";
    let ns = preview_namespace(key);
    let first = h.launch(body(key, "ghcr.io/org/app:v1")).await;
    assert_eq!(h.finished(first).await.state, JobState::Succeeded);
    let old_uid = h.sim.object("namespaces", "", &ns).unwrap()["metadata"]["uid"].clone();

    // A teardown whose namespace is held in Terminating by a finalizer.
    let client = h.sim.client().unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let hold: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "hold",
        "finalizers": ["test.slipway.dev/hold"]}}))
    .unwrap();
    maps.create(&PostParams::default(), &hold).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    h.store.mark_preview_deleted(key).await.unwrap();

    let second = h
        .launch_with_budget(valid(body(key, "ghcr.io/org/app:v2")), None, 20)
        .await;
    let waiting = eventually(LONG, "the relaunch to retry", || async {
        let j = h.job(second).await;
        (j.state == JobState::Retrying).then_some(j)
    })
    .await;
    assert!(
        waiting
            .error
            .as_deref()
            .unwrap_or("")
            .contains("terminating"),
        "{waiting:?}"
    );
    // The teardown completes; the next attempt builds the preview afresh.
    maps.patch(
        "hold",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let job = h.finished(second).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let fresh = h.sim.object("namespaces", "", &ns).unwrap();
    assert_ne!(fresh["metadata"]["uid"], old_uid, "a new namespace");
    assert!(fresh["metadata"]["deletionTimestamp"].is_null());
    let p = h.preview(key).await;
    assert_eq!((p.status.as_str(), p.deleted_at), ("ready", None));
    assert_eq!(p.image.as_deref(), Some("ghcr.io/org/app:v2"));
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_superseded_by_a_newer_commit_gives_way_to_it() {
    // The older image's pods never get scheduled; the newer one's run.
    let h = Harness::new(sim().script(|pod| {
        if pod.image.ends_with(":old") {
            PodScript::outcome(Outcome::Unschedulable)
        } else {
            PodScript::run_forever()
        }
    }))
    .await;
    let w = h.worker(&[]).await;
    let key = "org/app#13";
    let ns = preview_namespace(key);
    let old = h
        .launch_valid(
            valid(body(key, "ghcr.io/org/app:old")),
            Some(&"a".repeat(40)),
        )
        .await;
    eventually(LONG, "the older launch to wait", || async {
        h.log_text(old)
            .await
            .contains("Unschedulable")
            .then_some(())
    })
    .await;
    // What the API does for a newer commit: record it, supersede the older, signal it.
    let new = h
        .launch_valid(
            valid(body(key, "ghcr.io/org/app:new")),
            Some(&"b".repeat(40)),
        )
        .await;
    let superseded = h
        .store
        .supersede_older(key, new, &[JobKind::Launch])
        .await
        .unwrap();
    assert_eq!(superseded, [old]);
    let _ = h
        .queue
        .cancel(JobKind::Launch, &old.to_string(), "superseded")
        .await;

    let job = h.finished(new).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(h.finished(old).await.state, JobState::Superseded);
    // The older launch stopped: it never takes the preview back.
    eventually(LONG, "the older launch to let go", || async {
        let c = h.queue.counts(JobKind::Launch).await.ok()?;
        (c.active == 0).then_some(())
    })
    .await;
    let p = h.preview(key).await;
    assert_eq!(p.status, "ready");
    assert_eq!(p.image.as_deref(), Some("ghcr.io/org/app:new"));
    assert_eq!(p.commit_sha.as_deref(), Some("b".repeat(40).as_str()));
    assert_eq!(p.last_job_id, Some(new));
    assert_eq!(h.preview_namespaces(), std::slice::from_ref(&ns));
    let d = h.sim.object("deployments", &ns, "app").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/org/app:new"
    );
    w.stop().await.expect("worker stopped cleanly");
}
