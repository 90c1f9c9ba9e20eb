//! The build worker end to end: real Postgres and Redis, the Kubernetes simulator, the worker's
//! `run` in-process (and once as a process that gets SIGKILLed).

mod common;

use common::{
    BUILD_LINES, COMMIT, Harness, LAST_BUILD_LINE, NS, default_build, faulty_build, job_attempt,
    numbered_from_zero,
};
use kube_sim::{BuildFault, FaultAction, FaultRule, KubeVersion, Outcome, PodInfo, PodScript};
use serde_json::json;
use slipway_core::naming::build_job_name;
use slipway_core::{JobKind, JobState};
use slipway_shared::queue::QueueState;
use slipway_shared::testing::eventually;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_build_succeeds_with_its_digest_and_complete_ordered_logs() {
    let h = Harness::new(None).await;
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#1", json!({})).await;
    let job = h.wait_state(id, JobState::Succeeded, 30).await;
    let result = job.result.unwrap();
    let digest = result["digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{result}"
    );
    assert_eq!(
        result["image"],
        format!("registry.kube-system.svc.cluster.local:80/org/app:{COMMIT}")
    );
    assert_eq!(
        result["pull"],
        format!("localhost:5000/org/app:{COMMIT}@{digest}")
    );
    let name = build_job_name(id, 1);
    assert_eq!(result["build_job"], name);
    assert!(
        result.get("detected").is_none(),
        "only an auto build says what it detected: {result}"
    );

    // The digest is the simulator's, derived from the container's args.
    let create = h
        .sim
        .requests()
        .into_iter()
        .find(|r| r.resource == "jobs" && r.verb == "create")
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&create.body).unwrap();
    let args: Vec<String> =
        serde_json::from_value(body["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    assert_eq!(digest, kube_sim::build_digest(&args));
    assert!(
        args.iter()
            .any(|a| a == &format!("context=https://github.com/org/app.git#{COMMIT}")),
        "{args:?}"
    );

    // The digest travelled buildctl -> the metadata emptyDir -> the wrapper's redirection ->
    // the termination log: the only way the simulated BuildKit image lets it through.
    let pod_spec = &body["spec"]["template"]["spec"];
    assert!(args.contains(&"--metadata-file=/tmp/meta/metadata.json".to_owned()));
    assert_eq!(pod_spec["containers"][0]["command"][0], "sh");
    assert_eq!(
        pod_spec["volumes"][1],
        json!({"name": "meta", "emptyDir": {"sizeLimit": "1Mi"}})
    );

    // Every line, in order, numbered from 0, with the kubelet's timestamps.
    let logs = h.logs(id).await;
    assert_eq!(logs.len(), BUILD_LINES, "{logs:?}");
    assert!(
        logs.iter()
            .enumerate()
            .all(|(i, l)| l.seq == i as i64 && l.attempt == 1)
    );
    assert_eq!(
        logs[0].text,
        format!("#1 [internal] load git source https://github.com/org/app.git#{COMMIT}")
    );
    assert_eq!(logs[BUILD_LINES - 1].text, LAST_BUILD_LINE);
    assert!(logs.windows(2).all(|w| w[0].ts <= w[1].ts));

    // The Job is gone (background propagation) and the attempt names it.
    h.sim.wait_for_gone("jobs", NS, &name, T).await.unwrap();
    let delete = h
        .sim
        .requests()
        .into_iter()
        .find(|r| r.resource == "jobs" && r.verb == "delete")
        .unwrap();
    assert!(
        delete.body.contains("Background") || delete.query.contains("Background"),
        "{delete:?}"
    );
    let attempts = h.store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].k8s_objects, vec![name]);
    assert_eq!(attempts[0].outcome.as_deref(), Some("succeeded"));
    let ns = h
        .sim
        .object("namespaces", "", NS)
        .expect("the build namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    // Probes answer (Kubernetes included) and the build metrics are exported.
    let ready = reqwest::get(format!("http://{}/readyz", worker.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let metrics = reqwest::get(format!("http://{}/metrics", worker.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "slipway_builds_started_total",
        "slipway_builds_finished_total{outcome=\"succeeded\"}",
        "slipway_build_duration_seconds",
        "slipway_build_log_lines_total",
        "slipway_build_log_bytes_total",
        // The ingestion lag of the batches written, and the job's enqueue-to-start wait.
        "slipway_build_log_lag_seconds_count",
        "slipway_job_queue_wait_seconds_count{kind=\"build\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    slipway_shared::testing::assert_promtool_clean("slipway-worker-build", &metrics);
    worker.stop().await;
}

#[tokio::test]
async fn a_dockerfile_failure_is_not_retried_and_names_the_failing_step() {
    let h = Harness::new(Some(Box::new(|_pod| {
        PodScript::exit(1)
            .log("#6 [builder 2/4] COPY . /src")
            .log("#6 DONE 0.2s")
            .log("#7 [builder 3/4] RUN make")
            .log("#7 0.41 make: *** No rule to make target 'all'.  Stop.")
            .log("#7 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2")
            .log("ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2")
            .message("failed to solve")
    })))
    .await;
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#2", json!({})).await;
    let job = h.wait_state(id, JobState::Failed, 30).await;
    let error = job.error.unwrap();
    assert!(error.contains("exit code 1"), "{error}");
    assert!(
        error.contains("RUN make") || error.contains("/bin/sh -c make"),
        "{error}"
    );
    assert!(error.contains("failed to solve"), "{error}");
    assert_eq!(job.attempts, 1);
    assert_eq!(h.job_creates(), 1);
    assert_eq!(h.logs(id).await.len(), 6);
    h.sim
        .wait_for_gone("jobs", NS, &build_job_name(id, 1), T)
        .await
        .unwrap();
    let q = h
        .queue
        .get(JobKind::Build, &id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.state, Some(QueueState::Dead));
    worker.stop().await;
}

#[tokio::test]
async fn an_oomkilled_build_is_retried_and_then_succeeds() {
    let h = Harness::new(Some(Box::new(|pod| {
        if job_attempt(pod) == 1 {
            PodScript::outcome(Outcome::OomKilled).log("#7 [builder 3/4] RUN cargo build")
        } else {
            default_build(pod)
        }
    })))
    .await;
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#3", json!({})).await;
    let job = h.wait_state(id, JobState::Succeeded, 30).await;
    assert_eq!(job.attempts, 2);
    let attempts = h.store.attempts(id).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("retrying"));
    assert!(
        attempts[0].error.as_deref().unwrap().contains("OOMKilled"),
        "{attempts:?}"
    );
    assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
    assert_eq!(attempts[1].k8s_objects, vec![build_job_name(id, 2)]);
    // Each attempt keeps its own log.
    let logs = h.logs(id).await;
    assert_eq!(logs.iter().filter(|l| l.attempt == 1).count(), 1);
    assert_eq!(logs.iter().filter(|l| l.attempt == 2).count(), BUILD_LINES);
    for a in [1, 2] {
        h.sim
            .wait_for_gone("jobs", NS, &build_job_name(id, a), T)
            .await
            .unwrap();
    }
    worker.stop().await;
}

#[tokio::test]
async fn three_transient_failures_end_in_the_dead_set_with_every_attempt_recorded() {
    let h = Harness::new(Some(Box::new(|_pod| {
        PodScript::outcome(Outcome::ImagePullBackOff)
    })))
    .await;
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#4", json!({})).await;
    let job = h.wait_state(id, JobState::Failed, 60).await;
    assert_eq!(job.attempts, 3);
    let attempts = h.store.attempts(id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_deref()).collect();
    assert_eq!(
        outcomes,
        vec![Some("retrying"), Some("retrying"), Some("failed")]
    );
    for a in &attempts {
        let error = a.error.as_deref().unwrap();
        assert!(
            error.contains("could not start") && error.contains("ImagePull"),
            "{a:?}"
        );
    }
    let q = eventually(T, "the job in the dead set", || async {
        h.queue
            .get(JobKind::Build, &id.to_string())
            .await
            .unwrap()
            .filter(|q| q.state == Some(QueueState::Dead))
    })
    .await;
    assert_eq!(q.attempts_started, 3);
    for a in 1..=3 {
        h.sim
            .wait_for_gone("jobs", NS, &build_job_name(id, a), T)
            .await
            .unwrap();
    }
    worker.stop().await;
}

#[tokio::test]
async fn cancel_and_supersede_delete_the_running_job_and_keep_its_logs() {
    let h = Harness::new(Some(Box::new(|_pod| {
        PodScript::run_forever().log("#1 [internal] load build definition from Dockerfile")
    })))
    .await;
    let worker = h.start_worker(&[]).await;

    // Operator cancel.
    let id = h.enqueue_build("org/app#5", json!({})).await;
    let name = build_job_name(id, 1);
    eventually(T, "the first log line", || async {
        (!h.logs(id).await.is_empty()).then_some(())
    })
    .await;
    assert!(h.sim.object("jobs", NS, &name).is_some());
    assert!(
        h.store
            .cancel_job(id, JobState::Cancelled, "cancelled by operator")
            .await
            .unwrap()
    );
    h.queue
        .cancel(JobKind::Build, &id.to_string(), "cancelled by operator")
        .await
        .unwrap();
    h.sim.wait_for_gone("jobs", NS, &name, T).await.unwrap();
    let job = h.store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(h.logs(id).await.len(), 1);

    // Superseded by a newer build of the same preview: the same path, as the API drives it.
    let old = h.enqueue_build("org/app#6", json!({})).await;
    let old_name = build_job_name(old, 1);
    eventually(T, "the old build's log", || async {
        (!h.logs(old).await.is_empty()).then_some(())
    })
    .await;
    let mut newer = slipway_shared::store::NewJob::new(JobKind::Build, json!({}));
    newer.preview = Some("org/app#6".into());
    let newer = h.store.insert_job(newer).await.unwrap().job;
    let ids = h
        .store
        .supersede_older("org/app#6", newer.id, &[JobKind::Build])
        .await
        .unwrap();
    assert_eq!(ids, vec![old]);
    h.queue
        .cancel(JobKind::Build, &old.to_string(), "superseded")
        .await
        .unwrap();
    h.sim.wait_for_gone("jobs", NS, &old_name, T).await.unwrap();
    assert_eq!(
        h.store.get_job(old).await.unwrap().unwrap().state,
        JobState::Superseded
    );
    assert_eq!(h.logs(old).await.len(), 1);
    worker.stop().await;
}

#[tokio::test]
async fn kubernetes_api_faults_are_survived() {
    // The pod takes a while to start, so the worker watches for it through the faults.
    let h = Harness::new(Some(Box::new(|pod| {
        default_build(pod).start_after(Duration::from_secs(5))
    })))
    .await;
    let faults = h.sim.faults();
    faults.add(
        FaultRule::new(FaultAction::Status {
            code: 429,
            retry_after: Some(0),
        })
        .verb("create")
        .resource("jobs")
        .times(2),
    );
    faults.add(
        FaultRule::new(FaultAction::Status {
            code: 500,
            retry_after: None,
        })
        .verb("get")
        .resource("jobs")
        .times(2),
    );
    faults.add(
        FaultRule::new(FaultAction::Status {
            code: 500,
            retry_after: None,
        })
        .verb("list")
        .resource("pods")
        .times(2),
    );
    faults.add(
        FaultRule::new(FaultAction::DropWatch { after_events: 0 })
            .verb("watch")
            .resource("pods")
            .times(1),
    );
    faults.add(
        FaultRule::new(FaultAction::TruncateWatch { after_events: 0 })
            .verb("watch")
            .resource("pods")
            .times(1),
    );
    faults.add(
        FaultRule::new(FaultAction::Expire)
            .verb("watch")
            .resource("pods")
            .times(1),
    );
    faults.add(
        FaultRule::new(FaultAction::Status {
            code: 503,
            retry_after: None,
        })
        .resource("pods/log")
        .times(2),
    );
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#7", json!({})).await;
    let job = h.wait_state(id, JobState::Succeeded, 60).await;
    assert_eq!(job.attempts, 1, "{:?}", h.store.attempts(id).await.unwrap());
    let logs = h.logs(id).await;
    assert_eq!(logs.len(), BUILD_LINES);
    assert!(numbered_from_zero(&logs));
    assert_eq!(h.job_creates(), 1);
    let faulted: Vec<_> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.status >= 429)
        .collect();
    assert!(faulted.len() >= 4, "{faulted:?}");
    let watches = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == "pods" && r.verb == "watch")
        .count();
    assert!(watches >= 1, "the pod was never watched");
    let metrics = reqwest::get(format!("http://{}/metrics", worker.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("slipway_k8s_api_errors_total{worker=\"build\",code=\"500\"}"),
        "{metrics}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn the_log_cap_ends_with_a_truncation_marker() {
    let h = Harness::new(Some(Box::new(|pod| {
        let mut s = default_build(pod);
        s.logs.truncate(10);
        s
    })))
    .await;
    let worker = h
        .start_worker(&["--log-max-lines", "4", "--log-batch-lines", "3"])
        .await;
    let id = h.enqueue_build("org/app#8", json!({})).await;
    h.wait_state(id, JobState::Succeeded, 30).await;
    let logs = h.logs(id).await;
    assert_eq!(logs.len(), 5, "{logs:?}");
    assert_eq!(logs[4].stream, "system");
    assert!(logs[4].text.contains("truncated"), "{logs:?}");
    worker.stop().await;
}

#[tokio::test]
async fn a_pipeline_build_enqueues_its_launch_once() {
    let h = Harness::new(None).await;
    let worker = h.start_worker(&[]).await;
    let then_launch = json!({"port": 8080, "env": {}, "secret_env": {}, "replicas": 1,
        "resources": {"cpu_millis": null, "memory_bytes": null}, "health_path": "/", "ttl_hours": 72});
    let id = h
        .enqueue_build("org/app#9", json!({"then_launch": then_launch}))
        .await;
    let job = h.wait_state(id, JobState::Succeeded, 30).await;
    let result = job.result.unwrap();
    let launch_id: uuid::Uuid = result["launch"]["job"].as_str().unwrap().parse().unwrap();
    let launch = h.store.get_job(launch_id).await.unwrap().unwrap();
    assert_eq!(launch.kind, JobKind::Launch);
    assert_eq!(launch.preview.as_deref(), Some("org/app#9"));
    assert_eq!(
        launch.payload["source"]["image"], result["pull"],
        "{}",
        launch.payload
    );
    assert_eq!(launch.payload["options"]["port"], 8080);
    assert!(launch.enqueued_at.is_some());
    assert!(
        h.queue
            .get(JobKind::Launch, &launch_id.to_string())
            .await
            .unwrap()
            .is_some()
    );
    worker.stop().await;
}

#[tokio::test]
async fn the_global_cap_holds_builds_back_until_a_slot_frees() {
    let h = Harness::new(Some(Box::new(|pod| {
        if pod
            .labels
            .get("slipway.dev/preview")
            .is_some_and(|p| p.starts_with("org-app-10"))
        {
            PodScript::run_forever().log("long build")
        } else {
            default_build(pod)
        }
    })))
    .await;
    let worker = h.start_worker(&["--max-concurrent-builds", "1"]).await;
    let long = h.enqueue_build("org/app#10", json!({})).await;
    h.sim
        .wait_for_object("jobs", NS, &build_job_name(long, 1), T, |_| true)
        .await
        .unwrap();
    let short = h.enqueue_build("org/app#11", json!({})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        h.sim
            .object("jobs", NS, &build_job_name(short, 1))
            .is_none()
    );
    assert_eq!(
        h.store.get_job(short).await.unwrap().unwrap().state,
        JobState::Running
    );
    h.store
        .cancel_job(long, JobState::Cancelled, "make room")
        .await
        .unwrap();
    h.queue
        .cancel(JobKind::Build, &long.to_string(), "make room")
        .await
        .unwrap();
    h.wait_state(short, JobState::Succeeded, 30).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_build_over_its_deadline_is_retried_as_an_infrastructure_failure() {
    let h = Harness::new(Some(Box::new(|pod| {
        if common::job_attempt(pod) == 1 {
            PodScript::run_forever().log("#7 [builder 3/4] RUN sleep infinity")
        } else {
            default_build(pod)
        }
    })))
    .await;
    // 100 s of deadline are 1 s in the simulator (time scale 0.01).
    let worker = h.start_worker(&["--build-deadline-secs", "100"]).await;
    let id = h.enqueue_build("org/app#12", json!({})).await;
    let job = h.wait_state(id, JobState::Succeeded, 60).await;
    assert_eq!(job.attempts, 2);
    let attempts = h.store.attempts(id).await.unwrap();
    let error = attempts[0].error.as_deref().unwrap();
    assert!(
        error.contains("DeadlineExceeded") || error.contains("signal"),
        "{error}"
    );
    assert_eq!(attempts[0].outcome.as_deref(), Some("retrying"));
    worker.stop().await;
}

/// The preview a build pod belongs to (its `slipway.dev/preview` label).
fn preview_of(pod: &PodInfo) -> String {
    pod.labels
        .get("slipway.dev/preview")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn infrastructure_failures_are_retried_and_a_failing_run_step_is_not() {
    // Each build's first attempt meets one fault of the BuildKit contract; later ones succeed.
    let h = Harness::new(Some(Box::new(|pod| {
        let preview = preview_of(pod);
        let fault = match preview.as_str() {
            p if p.contains("push") => BuildFault::PushStatus { code: 503 },
            p if p.contains("pull") => BuildFault::PullRateLimited,
            p if p.contains("daemon") => BuildFault::DaemonFails,
            _ => BuildFault::RunStepFails,
        };
        if job_attempt(pod) == 1 || fault == BuildFault::RunStepFails {
            faulty_build(pod, fault)
        } else {
            default_build(pod)
        }
    })))
    .await;
    let worker = h.start_worker(&[]).await;
    let mut transient = Vec::new();
    for (preview, cause) in [
        ("org/push#1", "a registry failed a PUT request"),
        ("org/pull#1", "the registry rate-limited the build"),
        ("org/daemon#1", "BuildKit's daemon did not start"),
    ] {
        transient.push((h.enqueue_build(preview, json!({})).await, cause));
    }
    let run = h.enqueue_build("org/run#1", json!({})).await;
    for (id, cause) in transient {
        h.wait_state(id, JobState::Succeeded, 30).await;
        // The faulted attempt was retried (a loaded machine may add an abandoned attempt).
        let attempts = h.store.attempts(id).await.unwrap();
        assert!(
            attempts
                .iter()
                .any(|a| a.outcome.as_deref() == Some("retrying")
                    && a.error.as_deref().is_some_and(|e| e.contains(cause))),
            "{cause}: {attempts:?}"
        );
    }
    let job = h.wait_state(run, JobState::Failed, 30).await;
    assert_eq!(job.attempts, 1);
    let error = job.error.unwrap();
    assert!(
        error.contains("did not complete successfully: exit code: 101"),
        "{error}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_cache_export_failure_does_not_fail_a_pushed_build() {
    let h = Harness::new(Some(Box::new(|pod| {
        faulty_build(pod, BuildFault::CacheExportFails)
    })))
    .await;
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#cache", json!({})).await;
    let job = h.wait_state(id, JobState::Succeeded, 30).await;
    assert_eq!(job.attempts, 1);
    assert!(
        job.result.unwrap()["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let logs = h.logs(id).await;
    assert!(
        logs.iter()
            .any(|l| l.text.contains("ERROR: unexpected status from PUT request")),
        "the cache export failed, visibly: {logs:?}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn an_unknown_buildctl_flag_fails_the_build_permanently() {
    // As if the pinned image's buildctl did not know a flag Slipway passes.
    let h = Harness::new(Some(Box::new(|pod| {
        let mut pod = pod.clone();
        pod.object["spec"]["containers"][0]["args"]
            .as_array_mut()
            .unwrap()
            .push(json!("--no-such-flag"));
        default_build(&pod)
    })))
    .await;
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#flag", json!({})).await;
    let job = h.wait_state(id, JobState::Failed, 30).await;
    assert_eq!(job.attempts, 1);
    let error = job.error.unwrap();
    assert!(
        error.contains("flag provided but not defined: -no-such-flag"),
        "{error}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_build_succeeds_on_kubernetes_1_29_through_the_apparmor_annotation() {
    // A 1.29 apiserver drops `appArmorProfile`; only the annotation keeps BuildKit unconfined.
    let h = Harness::on_version(None, "1.29".parse::<KubeVersion>().unwrap()).await;
    let worker = h.start_worker(&[]).await;
    let id = h.enqueue_build("org/app#129", json!({})).await;
    let job = h.wait_state(id, JobState::Succeeded, 30).await;
    assert!(
        job.result.unwrap()["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(job.attempts, 1);
    worker.stop().await;
}

#[tokio::test]
async fn the_build_network_policy_is_applied_before_each_job_and_comes_back_when_deleted() {
    use kube_sim::netpol::{Destination, Verdict, egress};
    const POLICY: &str = slipway_k8s::buildnet::BUILD_NETWORK_POLICY;
    let h = Harness::new(None).await;
    let worker = h.start_worker(&[]).await;
    // Applied at start-up, server-side with Slipway's field manager.
    h.sim
        .wait_for_object("networkpolicies", NS, POLICY, T, |_| true)
        .await
        .expect("the build network policy at start-up");
    // Deleted (by an operator, a `kubectl delete -f`, ...): the next build brings it back
    // before its Job exists.
    h.sim
        .store()
        .remove(kube_sim::kinds::by_plural("networkpolicies"), NS, POLICY)
        .expect("remove the policy");
    h.sim.recorder().clear();
    let id = h.enqueue_build("org/app#1", json!({})).await;
    h.wait_state(id, JobState::Succeeded, 30).await;
    let policy = h
        .sim
        .object("networkpolicies", NS, POLICY)
        .expect("the policy is back");
    let requests = h.sim.requests();
    let applied = requests
        .iter()
        .position(|r| r.resource == "networkpolicies" && r.verb == "patch")
        .expect("an apply of the policy");
    let created = requests
        .iter()
        .position(|r| r.resource == "jobs" && r.verb == "create")
        .expect("the Job's create");
    assert!(applied < created, "the policy is applied before the Job");
    assert!(
        requests[applied].query.contains("fieldManager=slipway"),
        "{:?}",
        requests[applied]
    );

    // What it does to the build's own pod (its labels from the Job's template).
    let create: serde_json::Value = serde_json::from_str(&requests[created].body).unwrap();
    let pod = json!({"metadata": {"namespace": NS,
        "labels": create["spec"]["template"]["metadata"]["labels"]}});
    let policies = [policy.as_ref()];
    for (addr, want) in [
        ("169.254.169.254", Verdict::Denied),
        ("fd00:ec2::254", Verdict::Denied),
        ("10.96.0.1", Verdict::Denied),
        ("140.82.112.3", Verdict::Allowed),
    ] {
        assert_eq!(
            egress(&policies, &pod, &Destination::address(addr), 443, "TCP"),
            want,
            "{addr}"
        );
    }
    worker.stop().await;
}
