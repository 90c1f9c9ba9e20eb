//! Compose previews end to end against real Postgres and Redis and the simulator: a web app
//! with Postgres (a named volume: a StatefulSet and its claim) and Redis comes up level by
//! level of `depends_on`, with a Service per compose service and the Ingress on web, and the
//! network policies let the services talk to each other and nothing else in; a service that
//! cannot start fails the launch naming it; services over the preview quota are refused
//! before anything is applied.
//!
//! The simulated images run as root unless told otherwise (`image_user`), as the official
//! postgres and redis images do (they start as root and switch users). The worker runs with
//! `runAsNonRoot`, so those services must give a numeric `user:`, as they must on a cluster
//! that enforces it; the built web image has a numeric non-root USER.

mod common;

use common::*;
use kube_sim::netpol::{Destination, Source, Verdict, connection, ingress_allowed};
use serde_json::{Value, json};
use slipway_core::naming::preview_namespace;
use slipway_core::source::ComposeLaunch;
use slipway_core::{ErrorClass, JobState};
use std::collections::BTreeMap;

const WEB_IMAGE: &str = "localhost:5000/org/shop/web@sha256:1111111111111111111111111111111111111111111111111111111111111111";

const COMPOSE: &str = r#"
services:
  web:
    build: .
    ports: ["3000:3000"]
    environment:
      DATABASE_URL: postgres://app:secret@db:5432/app
      REDIS_URL: redis://redis:6379
    depends_on:
      db:
        condition: service_healthy
      redis:
        condition: service_started
  db:
    image: postgres:16
    user: "999:999"
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: secret
    ports: ["5432"]
    volumes:
      - pgdata:/var/lib/postgresql/data
    tmpfs: /var/run/postgresql
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U app"]
      interval: 2s
      retries: 5
  redis:
    image: redis:7
    user: "999"
    command: redis-server --save ""
volumes:
  pgdata: {}
"#;

/// The launch the build side enqueues for `compose` (read by the real compose reader).
fn compose_launch(key: &str, text: &str) -> Value {
    compose_launch_of(key, text, WEB_IMAGE)
}

/// The same with web built as `web_image`.
fn compose_launch_of(key: &str, text: &str, web_image: &str) -> Value {
    let app = slipway_core::compose::parse(text).expect("compose file");
    let images: BTreeMap<String, String> = app
        .services
        .iter()
        .map(|s| {
            let image = s.image.clone().unwrap_or_else(|| web_image.to_owned());
            (s.name.clone(), image)
        })
        .collect();
    let compose = ComposeLaunch {
        services: app.services,
        volumes: app.volumes.into_iter().collect(),
        images,
        exposed: "web".into(),
        port: 3000,
    };
    let mut payload = valid(json!({"preview": key, "image": web_image, "port": 3000,
        "env": {"MODE": "preview"}}));
    payload["compose"] = serde_json::to_value(compose).unwrap();
    payload
}

fn sim_with_users() -> kube_sim::KubeSimBuilder {
    sim().image_user("org/shop/web", "1000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_app_comes_up_service_by_service_with_its_volume_and_the_ingress_on_web() {
    let h = Harness::new(sim_with_users()).await;
    let w = h.worker(&["--run-as-non-root", "true"]).await;
    let key = "org/shop#5";
    let id = h.launch_valid(compose_launch(key, COMPOSE), None).await;
    let job = h.finished(id).await;
    let log = h.log_text(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}\n{log}", job.error);
    let ns = preview_namespace(key);

    // Three workloads (Postgres a StatefulSet for its volume), three Services, the Ingress.
    assert_eq!(h.names("deployments", Some(&ns)), ["redis", "web"]);
    assert_eq!(h.names("statefulsets", Some(&ns)), ["db"]);
    assert_eq!(h.names("services", Some(&ns)), ["db", "redis", "web"]);
    assert_eq!(h.names("ingresses", Some(&ns)), ["web"]);
    assert_eq!(
        h.names("persistentvolumeclaims", Some(&ns)),
        ["pgdata-db-0"]
    );
    let claim = h
        .sim
        .object("persistentvolumeclaims", &ns, "pgdata-db-0")
        .unwrap();
    assert_eq!(claim["status"]["phase"], "Bound");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    let ingress = h.sim.object("ingresses", &ns, "web").unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": "web", "port": {"number": 3000}})
    );
    // redis declares no port: headless, its name resolves to its pod.
    let redis = h.sim.object("services", &ns, "redis").unwrap();
    assert_eq!(redis["spec"]["clusterIP"], "None");
    assert!(redis["spec"].get("ports").is_none());
    let db = h.sim.object("services", &ns, "db").unwrap();
    assert_eq!(db["spec"]["ports"][0]["port"], 5432);
    for (plural, name) in [
        ("deployments", "web"),
        ("deployments", "redis"),
        ("statefulsets", "db"),
        ("services", "db"),
        ("ingresses", "web"),
        ("networkpolicies", "allow-within-preview"),
    ] {
        let o = h.sim.object(plural, &ns, name).unwrap();
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "slipway"
        );
        assert_eq!(
            o["metadata"]["labels"]["slipway.dev/job-id"],
            id.to_string()
        );
    }

    // Every service's pod is in the result and the registry; the image is web's.
    let result = job.result.unwrap();
    let pods: Vec<String> = serde_json::from_value(result["pods"].clone()).unwrap();
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(pods.contains(&"db-0".to_owned()), "{pods:?}");
    assert_eq!(
        result["services"],
        json!([{"name": "web", "kind": "Deployment"}, {"name": "db", "kind": "StatefulSet"},
            {"name": "redis", "kind": "Deployment"}])
    );
    let p = h.preview(key).await;
    assert_eq!(p.status, "ready");
    assert_eq!(p.image.as_deref(), Some(WEB_IMAGE));
    assert_eq!(p.pods, pods);

    // Start order: db and redis ready before web was applied.
    let first = log.find("started db, redis (level 1 of 2)").expect(&log);
    let second = log.find("started web (level 2 of 2)").expect(&log);
    assert!(first < second, "{log}");
    let web = h.sim.object("deployments", &ns, "web").unwrap();
    let db_pod = h.sim.object("pods", &ns, "db-0").unwrap();
    let ready_at = db_pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["lastTransitionTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let web_created = web["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(
        ready_at.as_str() <= web_created,
        "{ready_at} > {web_created}"
    );

    // The translation reached the pods.
    let spec = &db_pod["spec"];
    assert_eq!(spec["containers"][0]["securityContext"]["runAsUser"], 999);
    assert_eq!(
        spec["containers"][0]["readinessProbe"]["exec"]["command"],
        json!(["/bin/sh", "-c", "pg_isready -U app"])
    );
    let web_pod = h
        .sim
        .objects("pods", Some(&ns))
        .into_iter()
        .find(|p| p["metadata"]["labels"]["app.kubernetes.io/name"] == "web")
        .unwrap();
    let env = &web_pod["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "MODE", "value": "preview"})),
        "{env}"
    );

    // The flows the policies allow, as a NetworkPolicy plugin evaluates them.
    let policies = h.sim.objects("networkpolicies", Some(&ns));
    let policies: Vec<&Value> = policies.iter().map(|p| p.as_ref()).collect();
    let ns_labels = h.sim.object("namespaces", "", &ns).unwrap()["metadata"]["labels"].clone();
    let redis_pod = h
        .sim
        .objects("pods", Some(&ns))
        .into_iter()
        .find(|p| p["metadata"]["labels"]["app.kubernetes.io/name"] == "redis")
        .unwrap();
    let ip = |p: &Value| p["status"]["podIP"].as_str().unwrap().to_owned();
    let to = |p: &Value| Destination::pod(p, ns_labels.clone(), &ip(p));
    let from = |p: &Value, to_pod: &Value, port| {
        connection(&policies, p, &ns_labels, &ip(p), &to(to_pod), port, "TCP")
    };
    assert_eq!(from(&web_pod, &db_pod, 5432), Verdict::Allowed);
    assert_eq!(from(&web_pod, &redis_pod, 6379), Verdict::Allowed);
    assert_eq!(from(&db_pod, &web_pod, 3000), Verdict::Allowed);
    assert_eq!(
        connection(
            &policies,
            &web_pod,
            &ns_labels,
            &ip(&web_pod),
            &Destination::address("203.0.113.7"),
            443,
            "TCP"
        ),
        Verdict::Denied
    );
    let controller = Source {
        namespace: "ingress-nginx".into(),
        namespace_labels: json!({"kubernetes.io/metadata.name": "ingress-nginx"}),
        pod_labels: Some(json!({"app.kubernetes.io/name": "ingress-nginx"})),
        ip: Some("10.244.0.9".parse().unwrap()),
    };
    assert!(ingress_allowed(
        &policies,
        &web_pod,
        &controller,
        3000,
        "TCP"
    ));
    assert!(!ingress_allowed(
        &policies,
        &db_pod,
        &controller,
        5432,
        "TCP"
    ));
    let other = Source {
        namespace: "slipway-pv-other".into(),
        namespace_labels: json!({"kubernetes.io/metadata.name": "slipway-pv-other"}),
        pod_labels: Some(web_pod["metadata"]["labels"].clone()),
        ip: Some("10.244.3.3".parse().unwrap()),
    };
    assert!(!ingress_allowed(&policies, &redis_pod, &other, 6379, "TCP"));
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_start_fails_the_launch_naming_it() {
    let h = Harness::new(sim_with_users()).await;
    let w = h.worker(&["--run-as-non-root", "true"]).await;
    let key = "org/shop#6";
    // redis without `user:`: its image runs as root, which the kubelet refuses under
    // runAsNonRoot.
    let text = COMPOSE.replace("    user: \"999\"\n", "");
    let id = h.launch_valid(compose_launch(key, &text), None).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1, "not retried");
    let error = job.error.unwrap();
    assert!(error.starts_with("Deployment redis: "), "{error}");
    assert!(error.contains("runs as root"), "{error}");
    let log = h.log_text(id).await;
    assert!(
        log.contains("Deployment redis: pod redis-") && log.contains("CreateContainerConfigError"),
        "{log}"
    );
    // web, a level above, was never applied.
    let ns = preview_namespace(key);
    assert!(h.names("deployments", Some(&ns)).iter().all(|n| n != "web"));
    assert_eq!(h.preview(key).await.status, "failed");
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_over_the_preview_quota_are_refused_before_anything_is_applied() {
    let h = Harness::new(sim_with_users()).await;
    // web and redis are Deployments (two pods each during a rollout), db one: 5 pods.
    let w = h
        .worker(&["--run-as-non-root", "true", "--quota-pods", "4"])
        .await;
    let key = "org/shop#7";
    let id = h.launch_valid(compose_launch(key, COMPOSE), None).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1);
    let error = job.error.unwrap();
    assert!(
        error.contains("do not fit the preview quota of 4 pods")
            && error.contains("with service redis they need 5 pods"),
        "{error}"
    );
    assert!(h.preview_namespaces().is_empty());
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_whose_pods_pod_security_refuses_fails_the_launch_at_once() {
    // A cluster-wide policy enforces restricted; the worker runs baseline without runAsNonRoot,
    // so the StatefulSet's pod is refused. A StatefulSet has no ReplicaFailure condition: the
    // refusal is in its FailedCreate Events.
    let h = Harness::new(
        sim_with_users().force_namespace_label("pod-security.kubernetes.io/enforce", "restricted"),
    )
    .await;
    let w = h.worker(&["--deadline-secs", "20"]).await;
    let key = "org/shop#8";
    let text = "services:
  web:
    build: .
    ports: [\"3000:3000\"]
    depends_on: [db]
  db:
    image: postgres:16
    volumes: [pgdata:/var/lib/postgresql/data]
volumes:
  pgdata: {}
";
    let started = std::time::Instant::now();
    let id = h.launch_valid(compose_launch(key, text), None).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed, "{:?}", job.error);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1, "not retried");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "failed fast, not at the deadline"
    );
    let error = job.error.unwrap();
    assert!(
        error.starts_with("StatefulSet db: Kubernetes refuses the preview's pods"),
        "{error}"
    );
    assert!(error.contains("violates PodSecurity"), "{error}");
    assert_eq!(h.preview(key).await.status, "failed");
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_commit_rolls_out_web_and_leaves_the_database_running() {
    let h = Harness::new(sim_with_users()).await;
    let w = h.worker(&["--run-as-non-root", "true"]).await;
    let key = "org/shop#9";
    let first = h.launch_valid(compose_launch(key, COMPOSE), None).await;
    let job = h.finished(first).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let ns = preview_namespace(key);
    let uid = |name: &str| {
        h.sim.object("pods", &ns, name).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let db_uid = uid("db-0");

    // The next commit's build: web has a new digest, db and redis run the same images.
    let next = WEB_IMAGE.replace("sha256:1111", "sha256:2222");
    let second = h
        .launch_valid(compose_launch_of(key, COMPOSE, &next), None)
        .await;
    let job = h.finished(second).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(uid("db-0"), db_uid, "the database kept running");
    let p = h.preview(key).await;
    assert_eq!(p.image.as_deref(), Some(next.as_str()));
    assert_eq!(p.last_job_id, Some(second));
    let web = h.sim.object("deployments", &ns, "web").unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        next.as_str()
    );
    assert_eq!(
        web["metadata"]["labels"]["slipway.dev/job-id"],
        second.to_string()
    );
    assert_eq!(
        h.names("persistentvolumeclaims", Some(&ns)),
        ["pgdata-db-0"]
    );
    w.stop().await.expect("worker stopped cleanly");
}
