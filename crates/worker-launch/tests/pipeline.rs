//! A whole pipeline on the simulator: the build worker builds the commit, records the launch
//! its request carries, and the launch worker brings the preview up with the built image (the
//! pull reference pinned to the digest). A `compose` pipeline: the build worker reads the
//! compose file from a real git host, builds the service with `build:` and enqueues one launch,
//! which brings every service up.

mod common;

use clap::Parser;
use common::*;
use serde_json::json;
use slipway_core::payload::PipelineRequest;
use slipway_core::validate::Validate;
use slipway_core::{JobKind, JobState, Limits};
use slipway_shared::store::NewJob;
use slipway_shared::testing::{WorkerThread, eventually};

/// The build worker, on its own thread and runtime like a process.
async fn build_worker(h: &Harness) -> WorkerThread {
    let build_config = slipway_worker_build::Config::try_parse_from([
        "slipway-worker-build",
        "--database-url",
        h.db.url(),
        "--redis-url",
        &h.prefix.url,
        "--queue-prefix",
        &h.prefix.name,
        "--listen",
        "127.0.0.1:0",
    ])
    .expect("build worker flags");
    let kube_config = h.sim.config().expect("sim config");
    WorkerThread::start(move |on_listen, stop| async move {
        let client = kube::Client::try_from(kube_config).map_err(|e| e.to_string())?;
        slipway_worker_build::run_with_client(build_config, client, on_listen, stop)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .expect("build worker started")
}

#[tokio::test]
async fn a_pipeline_builds_then_launches_the_built_image() {
    let h = Harness::new(sim()).await;
    let launch_worker = h.worker(&[]).await;
    let build_worker = build_worker(&h).await;

    // Record the pipeline as the API does: the build job carries the launch options.
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let request: PipelineRequest = serde_json::from_value(json!({
        "preview": "acme/shop#9", "repository": "https://github.com/acme/shop.git", "commit": sha,
        "launch": {"port": 3000}
    }))
    .unwrap();
    let valid = request.validate(&Limits::default()).unwrap();
    let mut payload = serde_json::to_value(&valid.build).unwrap();
    payload["then_launch"] = serde_json::to_value(&valid.launch).unwrap();
    let mut new = NewJob::new(JobKind::Build, payload);
    new.preview = Some(valid.preview.clone());
    new.commit_sha = Some(sha.into());
    let build = h.store.insert_job(new).await.unwrap().job;
    h.queue.push(JobKind::Build, build.id, 3).await.unwrap();

    let built = h.finished(build.id).await;
    assert_eq!(built.state, JobState::Succeeded, "{:?}", built.error);
    let result = built.result.expect("build result");
    let pull = result["pull"].as_str().expect("pull reference").to_owned();
    assert!(
        pull.contains("@sha256:"),
        "the launch pins the digest: {pull}"
    );
    let launch_id = result["launch"]["job"]
        .as_str()
        .expect("the launch the build recorded")
        .parse()
        .unwrap();

    let launched = h.finished(launch_id).await;
    assert_eq!(launched.state, JobState::Succeeded, "{:?}", launched.error);
    let preview = eventually(LONG, "the preview to be ready", || async {
        h.store
            .get_preview("acme/shop#9")
            .await
            .unwrap()
            .filter(|p| p.status == "ready")
    })
    .await;
    assert_eq!(preview.image.as_deref(), Some(pull.as_str()));
    assert_eq!(preview.commit_sha.as_deref(), Some(sha));
    assert!(
        preview
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://")),
        "{preview:?}"
    );

    build_worker
        .stop()
        .await
        .expect("build worker stopped cleanly");
    launch_worker.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_pipeline_builds_its_web_service_and_launches_every_service() {
    let git = kube_sim::git::GitServer::start().await.unwrap();
    let compose = "services:
  web:
    build: ./web
    ports: [\"3000:3000\"]
    environment:
      DATABASE_URL: postgres://app:secret@db:5432/app
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
  db:
    image: postgres:16-alpine
    user: \"70\"
    environment: {POSTGRES_PASSWORD: secret}
    volumes: [data:/var/lib/postgresql/data]
    healthcheck:
      test: [CMD, pg_isready, -U, app]
  cache:
    image: redis:7.4-alpine
    user: \"999\"
volumes:
  data: {}
";
    let sha = git
        .create_repo(
            "org/shop.git",
            &[
                ("compose.yaml", compose),
                ("web/Dockerfile", "FROM node:22\nCOPY . .\nUSER 1000\n"),
            ],
        )
        .unwrap();
    let ca = git.ca_pem_path();
    // The built web image has a numeric non-root USER; postgres and redis name theirs.
    let h = Harness::new(sim().trusted_ca(ca).image_user("org/shop/web", "1000")).await;
    let launch_worker = h.worker(&["--run-as-non-root", "true"]).await;
    let build_worker = build_worker(&h).await;

    let request: PipelineRequest = serde_json::from_value(json!({
        "preview": "org/shop#3", "repository": git.url("org/shop.git"), "commit": sha,
        "source": {"type": "compose", "service": "web"}, "launch": {"env": {"MODE": "preview"}}
    }))
    .unwrap();
    let limits = Limits {
        internal_repository_hosts: vec!["localhost".into()],
        ..Limits::default()
    };
    let valid = request.validate(&limits).unwrap();
    let mut payload = serde_json::to_value(&valid.build).unwrap();
    payload["then_launch"] = serde_json::to_value(&valid.launch).unwrap();
    payload["composition"] = serde_json::to_value(valid.composition.as_ref().unwrap()).unwrap();
    let mut new = NewJob::new(JobKind::Build, payload);
    new.preview = Some(valid.preview.clone());
    new.commit_sha = Some(sha.clone());
    let first = h.store.insert_job(new).await.unwrap().job;
    h.queue.push(JobKind::Build, first.id, 3).await.unwrap();

    let preview = eventually(LONG, "the compose preview to be ready", || async {
        h.store
            .get_preview("org/shop#3")
            .await
            .unwrap()
            .filter(|p| p.status == "ready")
    })
    .await;
    let ns = slipway_core::naming::preview_namespace("org/shop#3");
    assert_eq!(h.names("deployments", Some(&ns)), ["cache", "web"]);
    assert_eq!(h.names("statefulsets", Some(&ns)), ["db"]);
    assert_eq!(h.names("services", Some(&ns)), ["cache", "db", "web"]);
    assert_eq!(preview.pods.len(), 3, "{preview:?}");
    let image = preview.image.clone().unwrap();
    assert!(
        image.contains("/org/shop/web:") && image.contains("@sha256:"),
        "{image}"
    );
    assert_eq!(preview.commit_sha.as_deref(), Some(sha.as_str()));
    let launch = h.finished(preview.last_job_id.unwrap()).await;
    assert_eq!(launch.state, JobState::Succeeded, "{:?}", launch.error);
    assert_eq!(launch.result.unwrap()["exposed"], "web");

    build_worker
        .stop()
        .await
        .expect("build worker stopped cleanly");
    launch_worker.stop().await.expect("worker stopped cleanly");
}
