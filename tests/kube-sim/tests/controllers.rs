//! Controller and kubelet behaviour: Jobs, Deployments/ReplicaSets, namespaces, garbage
//! collection, pod phases and failure modes, logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube_sim::{Delays, KubeSim, Outcome, PodScript};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn job(name: &str, extra_spec: Value) -> Job {
    let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "worker:1", "args": ["run", name]}]}}}});
    if let (Some(spec), Some(extra)) = (j["spec"].as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(j).unwrap()
}

fn cond<'a>(o: &'a Value, ty: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
}

fn job_pods(sim: &KubeSim, job: &str) -> Vec<Arc<Value>> {
    sim.objects("pods", Some("default"))
        .into_iter()
        .filter(|p| {
            p.pointer("/metadata/labels/batch.kubernetes.io~1job-name")
                .and_then(Value::as_str)
                == Some(job)
        })
        .collect()
}

#[tokio::test]
async fn job_runs_pod_to_success_with_logs_and_termination_message() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|p| {
            PodScript::succeed()
                .start_after(Duration::from_millis(50))
                .log("step 1")
                .log_after(Duration::from_millis(30), "step 2")
                .log("done")
                .message(format!(
                    "{{\"job\":\"{}\"}}",
                    p.job_name.clone().unwrap_or_default()
                ))
        })
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let created = jobs
        .create(&PostParams::default(), &job("build-1", json!({})))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let labels = created
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels["batch.kubernetes.io/job-name"], "build-1");
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(created.spec.as_ref().unwrap().backoff_limit, Some(6));

    // The pod appears with the job's labels and a controller ownerReference; logs are refused
    // while it is still ContainerCreating.
    sim.wait_for("job pod", T, |_| !job_pods(&sim, "build-1").is_empty())
        .await
        .unwrap();
    let pod_name = job_pods(&sim, "build-1")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pod_name.starts_with("build-1-"));
    let pod = pods.get(&pod_name).await.unwrap();
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Job", uid.as_str(), Some(true))
    );
    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
        && pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_none_or(|c| c[0].state.as_ref().unwrap().waiting.is_some())
    {
        match pods.logs(&pod_name, &LogParams::default()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 400);
                assert!(
                    s.message.contains("is waiting to start: ContainerCreating"),
                    "{}",
                    s.message
                );
            }
            Ok(_) => {} // it started in between
            Err(e) => panic!("{e:?}"),
        }
    }

    // Follow streams every line and ends when the container ends.
    sim.wait_for_object("pods", "default", &pod_name, T, |p| {
        p["status"]["phase"] != "Pending"
    })
    .await
    .unwrap();
    let lp = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let lines: Vec<String> = pods
        .log_stream(&pod_name, &lp)
        .await
        .unwrap()
        .lines()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(lines, ["step 1", "step 2", "done"]);

    let done = sim
        .wait_for_object("jobs", "default", "build-1", T, |j| {
            cond(j, "Complete").is_some()
        })
        .await
        .unwrap();
    assert_eq!(
        cond(&done, "Complete").unwrap()["reason"],
        "CompletionsReached"
    );
    assert!(cond(&done, "SuccessCriteriaMet").is_some());
    let typed: Job = jobs.get("build-1").await.unwrap();
    let st = typed.status.unwrap();
    assert_eq!((st.succeeded, st.active, st.failed), (Some(1), None, None));
    assert!(st.completion_time.is_some() && st.start_time.is_some());

    let pod = pods.get(&pod_name).await.unwrap();
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let term = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(term.message.as_deref(), Some("{\"job\":\"build-1\"}"));

    // tailLines, timestamps and sinceTime.
    let tail = pods
        .logs(
            &pod_name,
            &LogParams {
                tail_lines: Some(1),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, "done\n");
    let ts = pods
        .logs(
            &pod_name,
            &LogParams {
                timestamps: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    let first = ts.lines().next().unwrap();
    let (stamp, text) = first.split_once(' ').unwrap();
    assert_eq!(text, "step 1");
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp}"
    );
    let future = pods
        .logs(
            &pod_name,
            &LogParams {
                since_time: Some(jiff_now_plus_hour()),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(future, "");
    let e = pods
        .logs(
            &pod_name,
            &LogParams {
                container: Some("nope".into()),
                ..LogParams::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 400));

    // Events as the controllers and kubelet record them, readable through the API.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::default_namespaced(sim.client().unwrap());
    let evs = events.list(&ListParams::default()).await.unwrap().items;
    let reasons = |kind: &str, name: &str| -> Vec<String> {
        evs.iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some(kind)
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .filter_map(|e| e.reason.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(reasons("Job", "build-1"), ["Completed", "SuccessfulCreate"]);
    assert_eq!(
        reasons("Pod", &pod_name),
        ["Created", "Pulled", "Scheduled", "Started"]
    );
}

fn jiff_now_plus_hour() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1)
}

#[tokio::test]
async fn job_retries_then_fails_with_backoff_limit_exceeded() {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(move |p| {
            seen.lock().unwrap().push(p.attempt);
            PodScript::exit(3).log("boom")
        })
        .start()
        .await
        .unwrap();
    let jobs: Api<Job> = Api::default_namespaced(sim.client().unwrap());
    jobs.create(
        &PostParams::default(),
        &job("flaky", json!({"backoffLimit": 2})),
    )
    .await
    .unwrap();
    let done = sim
        .wait_for_object("jobs", "default", "flaky", T, |j| {
            cond(j, "Failed").is_some()
        })
        .await
        .unwrap();
    let failed = cond(&done, "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(cond(&done, "FailureTarget").is_some());
    assert_eq!(done["status"]["failed"], 3);
    assert_eq!(*attempts.lock().unwrap(), [0, 1, 2]);
    let pods = job_pods(&sim, "flaky");
    assert_eq!(pods.len(), 3);
    for p in pods {
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
    }
}

#[tokio::test]
async fn job_deadline_and_ttl() {
    let sim = KubeSim::builder()
        .delays(Delays {
            time_scale: 0.05,
            ..Delays::zero()
        })
        .script(|p| {
            if p.job_name.as_deref() == Some("slow") {
                PodScript::run_forever()
            } else {
                PodScript::succeed()
            }
        })
        .start()
        .await
        .unwrap();
    let jobs: Api<Job> = Api::default_namespaced(sim.client().unwrap());
    jobs.create(
        &PostParams::default(),
        &job("slow", json!({"activeDeadlineSeconds": 2})),
    )
    .await
    .unwrap();
    let done = sim
        .wait_for_object("jobs", "default", "slow", T, |j| {
            cond(j, "Failed").is_some()
        })
        .await
        .unwrap();
    assert_eq!(cond(&done, "Failed").unwrap()["reason"], "DeadlineExceeded");
    assert_eq!(
        cond(&done, "Failed").unwrap()["message"],
        "Job was active longer than specified deadline"
    );
    // The running pod is deleted.
    sim.wait_for("deadline pods gone", T, |_| {
        job_pods(&sim, "slow").is_empty()
    })
    .await
    .unwrap();

    jobs.create(
        &PostParams::default(),
        &job("short", json!({"ttlSecondsAfterFinished": 1})),
    )
    .await
    .unwrap();
    sim.wait_for_object("jobs", "default", "short", T, |j| {
        cond(j, "Complete").is_some()
    })
    .await
    .unwrap();
    sim.wait_for_gone("jobs", "default", "short", T)
        .await
        .unwrap();
    // TTL deletion cascades to the pods.
    sim.wait_for("ttl pods gone", T, |_| job_pods(&sim, "short").is_empty())
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_a_job_orphans_its_pods_by_default() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|_| PodScript::run_forever())
        .start()
        .await
        .unwrap();
    let jobs: Api<Job> = Api::default_namespaced(sim.client().unwrap());
    jobs.create(&PostParams::default(), &job("keep", json!({})))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("drop", json!({})))
        .await
        .unwrap();
    sim.wait_for("pods", T, |_| {
        job_pods(&sim, "keep").len() == 1 && job_pods(&sim, "drop").len() == 1
    })
    .await
    .unwrap();

    jobs.delete("keep", &DeleteParams::default()).await.unwrap();
    sim.wait_for_gone("jobs", "default", "keep", T)
        .await
        .unwrap();
    let orphan = job_pods(&sim, "keep");
    assert_eq!(orphan.len(), 1, "pods survive a default Job delete");
    assert!(
        orphan[0].pointer("/metadata/ownerReferences").is_none(),
        "and lose their ownerReference"
    );
    let rec = sim
        .requests()
        .into_iter()
        .find(|r| r.verb == "delete" && r.path.ends_with("/jobs/keep"))
        .unwrap();
    assert_eq!(rec.body, "{}", "kube sends no propagationPolicy by default");

    jobs.delete("drop", &DeleteParams::background())
        .await
        .unwrap();
    sim.wait_for("background GC", T, |_| job_pods(&sim, "drop").is_empty())
        .await
        .unwrap();
}

#[tokio::test]
async fn deployment_replicaset_pods_status_scale_and_foreground_delete() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .script(|p| {
            if p.image.contains("missing") {
                PodScript::outcome(Outcome::ImagePullBackOff)
            } else {
                PodScript::run_forever()
            }
        })
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let d = |name: &str, image: &str, extra: Value| {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}}});
        if let (Some(spec), Some(extra)) = (d["spec"].as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        d
    };
    deps.patch(
        "web",
        &PatchParams::apply("test"),
        &Patch::Apply(d("web", "nginx:1", json!({}))),
    )
    .await
    .unwrap();
    let avail = |o: &Value| cond(o, "Available").is_some() && o["status"]["availableReplicas"] == 3;
    let done = sim
        .wait_for_object("deployments", "default", "web", T, avail)
        .await
        .unwrap();
    let typed: Deployment = serde_json::from_value((*done).clone()).unwrap();
    let st = typed.status.unwrap();
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.updated_replicas,
            st.observed_generation
        ),
        (Some(3), Some(3), Some(3), Some(1))
    );
    sim.wait_for_object("deployments", "default", "web", T, |o| {
        o["status"]["conditions"].as_array().is_some_and(|a| {
            a.iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable")
        })
    })
    .await
    .unwrap();
    let rs = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 1);
    let hash = rs[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );

    // Scale subresource.
    let scale = deps.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    deps.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    // The scaler now owns replicas: re-applying 3 conflicts.
    let e = deps
        .patch(
            "web",
            &PatchParams::apply("test"),
            &Patch::Apply(d("web", "nginx:1", json!({}))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(s) if s.code == 409 && s.message.contains(".spec.replicas"))
    );
    sim.wait_for("scaled down", T, |_| {
        sim.objects("pods", Some("default"))
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .count()
            == 1
    })
    .await
    .unwrap();

    // Template change: new ReplicaSet, old one scaled to zero.
    deps.patch(
        "web",
        &PatchParams::apply("test"),
        &Patch::Apply(d("web", "nginx:2", json!({"replicas": 1}))),
    )
    .await
    .unwrap();
    sim.wait_for_object("deployments", "default", "web", T, |o| {
        o["status"]["updatedReplicas"] == 1
            && o["metadata"]["generation"] == o["status"]["observedGeneration"]
            && o["status"]["availableReplicas"] == 1
            && o["status"]["replicas"] == 1
    })
    .await
    .unwrap();
    assert_eq!(sim.objects("replicasets", Some("default")).len(), 2);

    // Never-ready pods: ProgressDeadlineExceeded.
    deps.patch(
        "stuck",
        &PatchParams::apply("test"),
        &Patch::Apply(d(
            "stuck",
            "missing:1",
            json!({"replicas": 1, "progressDeadlineSeconds": 10}),
        )),
    )
    .await
    .unwrap();
    let stuck = sim
        .wait_for_object("deployments", "default", "stuck", T, |o| {
            o["status"]["conditions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["reason"] == "ProgressDeadlineExceeded"))
        })
        .await
        .unwrap();
    let av = stuck["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Available")
        .unwrap()
        .clone();
    assert_eq!(
        (av["status"].as_str(), av["reason"].as_str()),
        (Some("False"), Some("MinimumReplicasUnavailable"))
    );
    let pod = sim
        .objects("pods", Some("default"))
        .into_iter()
        .find(|p| p["metadata"]["labels"]["app"] == "stuck")
        .unwrap();
    sim.wait_for_object(
        "pods",
        "default",
        pod["metadata"]["name"].as_str().unwrap(),
        T,
        |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff",
    )
    .await
    .unwrap();

    // Foreground delete: the Deployment stays (with the finalizer) until its dependents are gone.
    deps.delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    let d = sim.object("deployments", "default", "web");
    if let Some(d) = d {
        assert!(
            d["metadata"]["finalizers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "foregroundDeletion")
        );
    }
    sim.wait_for_gone("deployments", "default", "web", T)
        .await
        .unwrap();
    assert!(
        sim.objects("replicasets", Some("default"))
            .iter()
            .all(|r| r["metadata"]["labels"]["app"] != "web")
    );

    // Orphan delete keeps the ReplicaSet.
    deps.delete("stuck", &DeleteParams::orphan()).await.unwrap();
    sim.wait_for_gone("deployments", "default", "stuck", T)
        .await
        .unwrap();
    let rs = sim.objects("replicasets", Some("default"));
    assert!(rs.iter().any(|r| r["metadata"]["labels"]["app"] == "stuck"
        && r.pointer("/metadata/ownerReferences").is_none()));
}

#[tokio::test]
async fn namespace_lifecycle() {
    let sim = KubeSim::builder()
        .delays(Delays {
            time_scale: 0.01,
            ..Delays::zero()
        })
        .script(|_| PodScript::run_forever())
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
    let ns = nss.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team-a");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    sim.wait_for_object("pods", "team-a", "p", T, |p| {
        p["status"]["phase"] == "Running"
    })
    .await
    .unwrap();

    // Hold the namespace in Terminating with a finalizer on the ConfigMap.
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["test/hold"]}})),
    )
    .await
    .unwrap();
    let deleted = nss
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    let ns = deleted
        .left()
        .expect("namespace deletion returns the Terminating namespace");
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let e = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap(),
        )
        .await
        .unwrap_err();
    match e {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert!(
                s.message.contains("because it is being terminated"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    sim.wait_for_gone("pods", "team-a", "p", T).await.unwrap();
    assert!(
        sim.object("namespaces", "", "team-a").is_some(),
        "still terminating while content remains"
    );
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    sim.wait_for_gone("namespaces", "", "team-a", T)
        .await
        .unwrap();
}

#[tokio::test]
async fn kubelet_failure_modes_and_graceful_deletion() {
    let sim = KubeSim::builder()
        .delays(Delays {
            time_scale: 0.02,
            ..Delays::zero()
        })
        .script(|p| match p.name.as_str() {
            "oom" => PodScript::outcome(Outcome::OomKilled),
            "pull" => PodScript::outcome(Outcome::ImagePullBackOff),
            "crash" => PodScript::outcome(Outcome::CrashLoopBackOff).log("panic!"),
            "unsched" => PodScript::outcome(Outcome::Unschedulable),
            _ => PodScript::run_forever().log("serving"),
        })
        .start()
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(sim.client().unwrap());
    for name in ["oom", "pull", "crash", "unsched", "web"] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"restartPolicy": if name == "oom" { "Never" } else { "Always" },
            "containers": [{"name": "c", "image": "img:1"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let w = |name: &'static str, pred: fn(&Value) -> bool| {
        sim.wait_for_object("pods", "default", name, T, pred)
    };
    let oom = w("oom", |p| p["status"]["phase"] == "Failed")
        .await
        .unwrap();
    assert_eq!(
        oom["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "OOMKilled"
    );
    assert_eq!(
        oom["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    w("pull", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await
    .unwrap();
    let crash = w("crash", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await
    .unwrap();
    assert_eq!(crash["status"]["containerStatuses"][0]["restartCount"], 1);
    assert_eq!(
        crash["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    let un = w("unsched", |p| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await
    .unwrap();
    let c = &un["status"]["conditions"][0];
    assert_eq!(
        (
            c["type"].as_str(),
            c["status"].as_str(),
            c["reason"].as_str()
        ),
        (Some("PodScheduled"), Some("False"), Some("Unschedulable"))
    );
    assert_eq!(un["status"]["phase"], "Pending");
    let web = w("web", |p| p["status"]["phase"] == "Running")
        .await
        .unwrap();
    assert!(
        web["status"]["podIP"]
            .as_str()
            .unwrap()
            .starts_with("10.244.")
    );
    assert!(cond(&web, "Ready").is_some());

    // Graceful deletion: first a deletionTimestamp, then gone after the (scaled) grace period.
    let r = pods.delete("web", &DeleteParams::default()).await.unwrap();
    let pending = r.left().expect("running pod is deleted gracefully");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(30));
    sim.wait_for_gone("pods", "default", "web", T)
        .await
        .unwrap();
    // A finalizer holds a pod past its grace period until it is removed.
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["test/hold"]},
        "spec": {"containers": [{"name": "c", "image": "img:1"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    w("held", |p| p["status"]["phase"] == "Running")
        .await
        .unwrap();
    pods.delete(
        "held",
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_millis(500),
        sim.wait_for_gone("pods", "default", "held", T),
    )
    .await
    .expect_err("still held by its finalizer");
    pods.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    sim.wait_for_gone("pods", "default", "held", T)
        .await
        .unwrap();
    // A terminated pod goes at once.
    assert!(
        pods.delete("oom", &DeleteParams::default())
            .await
            .unwrap()
            .is_right()
    );
}

#[tokio::test]
async fn default_behaviour_buildkit_builds_other_pods_serve() {
    let sim = KubeSim::builder()
        .delays(Delays {
            build: Duration::from_millis(200),
            ..Delays::zero()
        })
        .start()
        .await
        .unwrap();
    let jobs: Api<Job> = Api::default_namespaced(sim.client().unwrap());
    let args = [
        "build",
        "--frontend=dockerfile.v0",
        "--opt",
        "context=https://github.com/org/app.git#0123",
        "--output",
        "type=image,name=registry.local/app:abc,push=true",
        "--metadata-file=/tmp/meta/metadata.json",
    ];
    // The BuildKit image's contract (kube_sim::buildkit): buildctl writes its metadata to an
    // emptyDir, the wrapper copies it into the termination log; AppArmor unconfined.
    let j: Job = serde_json::from_value(json!({"metadata": {"name": "build"}, "spec": {"backoffLimit": 0,
        "template": {"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
        "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 1000},
            "containers": [{"name": "c", "image": "moby/buildkit:v0.23.0-rootless",
                "command": ["sh", "-c", "buildctl-daemonless.sh \"$@\" && cat /tmp/meta/metadata.json > /dev/termination-log", "b"],
                "args": args, "volumeMounts": [{"name": "meta", "mountPath": "/tmp/meta"}]}],
            "volumes": [{"name": "meta", "emptyDir": {}}]}}}}))
    .unwrap();
    jobs.create(&PostParams::default(), &j).await.unwrap();
    sim.wait_for_object("jobs", "default", "build", T, |j| {
        cond(j, "Complete").is_some()
    })
    .await
    .unwrap();
    let pod = &job_pods(&sim, "build")[0];
    let msg = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        .as_str()
        .unwrap();
    let meta: Value = serde_json::from_str(msg).unwrap();
    let expected =
        kube_sim::build_digest(&args.iter().map(|s| (*s).to_string()).collect::<Vec<_>>());
    assert_eq!(meta["containerimage.digest"], expected.as_str());
    assert_eq!(meta["image.name"], "registry.local/app:abc");
    let logs = sim.pod_logs("default", pod["metadata"]["name"].as_str().unwrap(), None);
    assert!(logs.iter().any(|l| l.contains("exporting to image")));
    assert!(logs.len() > 10);

    let pods: Api<Pod> = Api::default_namespaced(sim.client().unwrap());
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "api"}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let api = sim
        .wait_for_object("pods", "default", "api", T, |p| cond(p, "Ready").is_some())
        .await
        .unwrap();
    assert_eq!(api["status"]["phase"], "Running");
}
