//! Pipelines with the `compose` and `helm` sources, through the build worker's real reading
//! path (real git repositories served over HTTPS by `kube_sim::git::GitServer`, the source Job
//! run by the simulated kubelet with the host's `sh` and `git`): a compose file becomes one
//! build job per built service and, when the last of them has pushed its image, exactly one
//! launch; a chart is read after the build and travels in the launch's payload.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::Harness;
use kube_sim::git::GitServer;
use serde_json::{Value, json};
use slipway_core::payload::PipelineRequest;
use slipway_core::validate::{Limits, ValidLaunch, Validate};
use slipway_core::{JobId, JobKind, JobState};
use slipway_shared::store::{JobFilter, JobRecord};
use slipway_shared::testing::eventually;

const PREVIEW: &str = "org/shop#7";

const COMPOSE: &str = "services:
  web:
    build: ./web
    ports: [\"3000:3000\"]
    environment:
      DATABASE_URL: postgres://app@db:5432/app
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
  worker:
    build:
      context: ./worker
      dockerfile: worker.Dockerfile
      args: {MODE: queue}
  db:
    image: postgres:16-alpine
    user: \"70\"
    volumes: [data:/var/lib/postgresql/data]
    healthcheck:
      test: [CMD, pg_isready, -U, app]
  cache:
    image: redis:7.4-alpine
volumes:
  data: {}
";

async fn harness(git: &GitServer) -> Harness {
    let ca = git.ca_pem_path();
    Harness::with_sim(None, move |b| b.trusted_ca(ca)).await
}

/// Record and enqueue a pipeline's first job as the API does (`ops::pipeline`).
async fn enqueue_pipeline(h: &Harness, url: &str, commit: &str, source: Value) -> JobId {
    let req: PipelineRequest = serde_json::from_value(json!({
        "preview": PREVIEW, "repository": url, "commit": commit, "source": source,
        "launch": {"env": {"MODE": "preview"}},
    }))
    .unwrap();
    let limits = Limits {
        internal_repository_hosts: vec!["localhost".into()],
        ..Limits::default()
    };
    let valid = req.validate(&limits).unwrap();
    let mut payload = serde_json::to_value(&valid.build).unwrap();
    payload["then_launch"] = serde_json::to_value(&valid.launch).unwrap();
    payload["composition"] = serde_json::to_value(valid.composition.as_ref().unwrap()).unwrap();
    h.enqueue_payload(payload, PREVIEW, commit).await
}

async fn jobs(h: &Harness, kind: JobKind) -> Vec<JobRecord> {
    let filter = JobFilter {
        kind: Some(kind),
        ..JobFilter::default()
    };
    h.store.list_jobs(&filter, None, 100).await.unwrap().items
}

fn texts(logs: &[slipway_shared::store::StoredLogLine]) -> Vec<String> {
    logs.iter().map(|l| l.text.clone()).collect()
}

#[tokio::test]
async fn a_compose_file_becomes_a_build_per_service_and_one_launch() {
    let git = GitServer::start().await.unwrap();
    let commit = git
        .create_repo(
            "org/shop.git",
            &[
                ("compose.yaml", COMPOSE),
                ("web/Dockerfile", "FROM node:22\nCOPY . .\n"),
                ("worker/worker.Dockerfile", "FROM python:3.13\n"),
            ],
        )
        .unwrap();
    let h = harness(&git).await;
    let worker = h.start_worker(&[]).await;
    let url = git.url("org/shop.git");
    let first = enqueue_pipeline(
        &h,
        &url,
        &commit,
        json!({"type": "compose", "service": "web"}),
    )
    .await;
    let job = h.wait_state(first, JobState::Succeeded, 60).await;
    let result = job.result.unwrap();
    assert_eq!(result["compose"]["file"], "compose.yaml", "{result}");
    assert_eq!(result["compose"]["exposed"], "web");
    assert_eq!(result["compose"]["port"], 3000, "web's first port");
    let builds = result["builds"].as_object().unwrap();
    assert_eq!(builds.len(), 2, "{result}");
    // The first job's log says what the file holds.
    let lines = texts(&h.logs(first).await);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("compose.yaml: 4 services; web at the preview URL on port 3000")),
        "{lines:#?}"
    );

    // Each built service is its own build job, with compose's context, Dockerfile and args.
    let mut children = Vec::new();
    for (service, id) in builds {
        let id: JobId = id.as_str().unwrap().parse().unwrap();
        let child = h.wait_state(id, JobState::Succeeded, 60).await;
        assert_eq!(child.preview.as_deref(), Some(PREVIEW));
        children.push((service.clone(), child));
    }
    let (_, web) = children.iter().find(|(s, _)| s == "web").unwrap();
    assert_eq!(web.payload["context"], "web");
    assert_eq!(web.payload["image"], "org/shop/web");
    let (_, w) = children.iter().find(|(s, _)| s == "worker").unwrap();
    assert_eq!(w.payload["dockerfile"], "worker.Dockerfile");
    assert_eq!(w.payload["build_args"]["MODE"], "queue");

    // Exactly one launch, by whichever build finished last, with every service's image.
    let launches = eventually(Duration::from_secs(30), "the compose launch", || async {
        let l = jobs(&h, JobKind::Launch).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(launches.len(), 1, "{launches:#?}");
    assert_eq!(
        launches[0].idempotency_key.as_deref(),
        Some(format!("pipeline-launch:{first}").as_str())
    );
    let launch: ValidLaunch = serde_json::from_value(launches[0].payload.clone()).unwrap();
    let compose = launch.compose.as_ref().unwrap();
    assert_eq!(compose.exposed, "web");
    assert_eq!(compose.services.len(), 4);
    assert_eq!(compose.volumes, ["data"]);
    let web_pull = web.result.as_ref().unwrap()["pull"].as_str().unwrap();
    assert_eq!(compose.images["web"], web_pull);
    assert_eq!(
        compose.images["worker"],
        w.result.as_ref().unwrap()["pull"].as_str().unwrap()
    );
    assert!(
        compose.images["db"].contains("postgres:16-alpine"),
        "{compose:?}"
    );
    assert_eq!(
        launch.source,
        slipway_core::validate::ImageSource::Image(web_pull.parse().unwrap())
    );
    assert_eq!(launch.options.env["MODE"], "preview");
    // One build said it waits for its sibling, the other recorded the launch.
    let said: Vec<&Value> = children
        .iter()
        .map(|(_, c)| &c.result.as_ref().unwrap()["launch"])
        .collect();
    assert_eq!(
        said.iter().filter(|v| v.get("job").is_some()).count(),
        1,
        "{said:?}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_compose_field_that_cannot_run_fails_the_pipeline_naming_it() {
    let git = GitServer::start().await.unwrap();
    let commit = git
        .create_repo(
            "org/shop.git",
            &[(
                "deploy/docker-compose.yml",
                "services:\n  web:\n    image: nginx:1.27\n    privileged: true\n",
            )],
        )
        .unwrap();
    let h = harness(&git).await;
    let worker = h.start_worker(&[]).await;
    let id = enqueue_pipeline(
        &h,
        &git.url("org/shop.git"),
        &commit,
        json!({"type": "compose", "service": "web", "file": "deploy/docker-compose.yml"}),
    )
    .await;
    let job = h.wait_state(id, JobState::Failed, 60).await;
    let error = job.error.unwrap();
    assert!(error.contains("services.web.privileged"), "{error}");
    assert_eq!(job.attempts, 1, "permanent: no retry");
    assert!(jobs(&h, JobKind::Launch).await.is_empty());
    assert_eq!(jobs(&h, JobKind::Build).await.len(), 1, "no service build");

    // No compose file at all: what was looked for.
    let id = enqueue_pipeline(
        &h,
        &git.url("org/shop.git"),
        &commit,
        json!({"type": "compose", "service": "web"}),
    )
    .await;
    let job = h.wait_state(id, JobState::Failed, 60).await;
    let error = job.error.unwrap();
    assert!(
        error.contains("no compose file") && error.contains("docker-compose.yml"),
        "{error}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_compose_file_of_images_only_is_launched_by_the_first_job() {
    let git = GitServer::start().await.unwrap();
    let commit = git
        .create_repo(
            "org/shop.git",
            &[(
                "compose.yml",
                "services:\n  web:\n    image: nginxinc/nginx-unprivileged:1.27\n    ports: [8080]\n",
            )],
        )
        .unwrap();
    let h = harness(&git).await;
    let worker = h.start_worker(&[]).await;
    let id = enqueue_pipeline(
        &h,
        &git.url("org/shop.git"),
        &commit,
        json!({"type": "compose", "service": "web"}),
    )
    .await;
    let job = h.wait_state(id, JobState::Succeeded, 60).await;
    let result = job.result.unwrap();
    assert!(result.get("builds").is_none(), "{result}");
    let launches = jobs(&h, JobKind::Launch).await;
    assert_eq!(launches.len(), 1);
    assert_eq!(result["launch"]["job"], json!(launches[0].id));
    let launch: ValidLaunch = serde_json::from_value(launches[0].payload.clone()).unwrap();
    assert_eq!(launch.compose.unwrap().port, 8080);
    worker.stop().await;
}

const CHART: &str = "apiVersion: v2\nname: shop\nversion: 0.1.0\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";

#[tokio::test]
async fn a_helm_pipeline_builds_then_reads_its_chart_into_the_launch() {
    let git = GitServer::start().await.unwrap();
    let commit = git
        .create_repo(
            "org/shop.git",
            &[
                ("Dockerfile", "FROM node:22\n"),
                ("deploy/chart/Chart.yaml", CHART),
                ("deploy/chart/values.yaml", "image:\n  repository: x\n"),
                ("deploy/chart/templates/deployment.yaml", DEPLOYMENT),
                ("deploy/preview-values.yaml", "replicaCount: 1\n"),
            ],
        )
        .unwrap();
    let h = harness(&git).await;
    let worker = h.start_worker(&[]).await;
    let id = enqueue_pipeline(
        &h,
        &git.url("org/shop.git"),
        &commit,
        json!({"type": "helm", "chart": "deploy/chart", "service": "web", "port": 8080,
               "values": ["deploy/preview-values.yaml"],
               "image_values": {"repository": "web.image.repo", "tag": "web.image.tag"}}),
    )
    .await;
    let job = h.wait_state(id, JobState::Succeeded, 60).await;
    let result = job.result.unwrap();
    let pull = result["pull"].as_str().unwrap();
    let launches = jobs(&h, JobKind::Launch).await;
    assert_eq!(launches.len(), 1);
    let launch: ValidLaunch = serde_json::from_value(launches[0].payload.clone()).unwrap();
    let helm = launch.helm.unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        helm.files.keys().collect::<Vec<_>>(),
        ["Chart.yaml", "templates/deployment.yaml", "values.yaml"]
    );
    assert_eq!(helm.files["Chart.yaml"], b64(CHART));
    assert_eq!(
        helm.values,
        [(
            "deploy/preview-values.yaml".to_owned(),
            b64("replicaCount: 1\n")
        )]
    );
    assert_eq!(
        (helm.image_repository.as_str(), helm.image_tag.as_str()),
        ("web.image.repo", "web.image.tag")
    );
    // `<registry>/org/shop:<commit>@<digest>`: the repository, then `<commit>@<digest>`.
    let (named, digest) = pull.split_once('@').unwrap();
    assert_eq!(named, format!("{}:{commit}", helm.image));
    assert!(helm.image.ends_with("/org/shop"), "{}", helm.image);
    assert_eq!(helm.tag, format!("{commit}@{digest}"));
    assert_eq!((helm.service.as_str(), helm.port), ("web", 8080));
    let lines = texts(&h.logs(id).await);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("source helm: chart deploy/chart (3 files)")),
        "{lines:#?}"
    );

    // A chart directory without Chart.yaml: the build fails for good, naming it.
    let id = enqueue_pipeline(
        &h,
        &git.url("org/shop.git"),
        &commit,
        json!({"type": "helm", "chart": "deploy/charts/missing", "service": "web"}),
    )
    .await;
    let job = h.wait_state(id, JobState::Failed, 60).await;
    let error = job.error.unwrap();
    assert!(
        error.contains("no chart at deploy/charts/missing"),
        "{error}"
    );
    assert_eq!(jobs(&h, JobKind::Launch).await.len(), 1, "no second launch");
    worker.stop().await;
}
