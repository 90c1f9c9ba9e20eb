//! The `compose` source's figures (issue 18): what turning a compose file into side-by-side
//! builds costs.
//!
//! - `compose_parse_us`: reading a four-service compose file into services (pure, per call).
//! - `compose_fanout_p50_ms` against `compose_single_submit_p50_ms`: enqueue -> every service's
//!   build Job created, for a compose pipeline of two built services and two images, against
//!   enqueue -> build Job created for a plain Dockerfile build of the same repository (served
//!   over HTTPS smart HTTP on this machine), in the same run; the difference is the source Job
//!   that reads the compose file and the second hop through the queue.
//!   `compose_fanout_vs_dockerfile` is their ratio.
//! - `pipeline_join_us`: one service build's record in the pipeline's join
//!   (`Store::record_pipeline_image`, a transaction with a row lock), against `pg_insert_us`,
//!   a plain one-row `INSERT` into a table of the same shape on the same database (ceiling).

use super::{BenchEnv, Report, p50_ms, start_build_worker, submit_build};
use kube_sim::git::GitServer;
use slipway_core::payload::PipelineRequest;
use slipway_core::validate::Validate;
use slipway_core::{JobId, JobKind, Limits};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{NewJob, Store};
use slipway_shared::testing::{RedisPrefix, TestDb};
use std::time::Instant;

const ROUNDS: usize = 10;
const PARSES: usize = 5_000;
const JOINS: usize = 500;

const COMPOSE: &str = "services:
  web:
    build: ./web
    ports: [\"3000:3000\"]
    environment:
      DATABASE_URL: postgres://shop:shop@db:5432/shop
      REDIS_URL: redis://cache:6379/0
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
  worker:
    build: {context: ./worker, args: {MODE: queue}}
  db:
    image: postgres:16-alpine
    user: \"70\"
    volumes: [data:/var/lib/postgresql/data]
    healthcheck: {test: [CMD, pg_isready, -U, shop], interval: 5s}
  cache:
    image: redis:7.4-alpine
volumes:
  data: {}
";

async fn record(
    store: &Store,
    url: &str,
    commit: &str,
    preview: &str,
    compose: bool,
) -> anyhow::Result<JobId> {
    let mut body = serde_json::json!({"preview": preview, "repository": url, "commit": commit,
        "build": {"image": "bench/shop"}});
    if compose {
        body["source"] = serde_json::json!({"type": "compose", "service": "web"});
    }
    let request: PipelineRequest = serde_json::from_value(body)?;
    let limits = Limits {
        internal_repository_hosts: vec!["localhost".into()],
        ..Limits::default()
    };
    let valid = request.validate(&limits)?;
    let mut payload = serde_json::to_value(&valid.build)?;
    payload["then_launch"] = serde_json::to_value(&valid.launch)?;
    if let Some(c) = &valid.composition {
        payload["composition"] = serde_json::to_value(c)?;
    }
    let mut new = NewJob::new(JobKind::Build, payload);
    new.commit_sha = Some(valid.build.commit.clone());
    new.preview = Some(valid.preview.clone());
    Ok(store.insert_job(new).await?.job.id)
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let started = Instant::now();
    for _ in 0..PARSES {
        std::hint::black_box(slipway_core::compose::parse(std::hint::black_box(COMPOSE))?);
    }
    report.figure(
        "compose",
        "compose_parse_us",
        "read a four-service compose file into services, per call",
        started.elapsed().as_secs_f64() * 1e6 / PARSES as f64,
        "us",
    );

    let db = TestDb::new().await?;
    let store = db.store();

    // The join against a plain insert of the same shape, on the same database.
    let parent = store
        .insert_job(NewJob::new(JobKind::Build, serde_json::json!({})))
        .await?
        .job
        .id;
    let started = Instant::now();
    for i in 0..JOINS {
        store
            .record_pipeline_image(parent, &format!("svc{i}"), "img", parent)
            .await?;
    }
    let join = started.elapsed().as_secs_f64() * 1e6 / JOINS as f64;
    let pool = sqlx::PgPool::connect(db.url()).await?;
    sqlx::query(
        "CREATE TABLE bench_plain (pipeline uuid, service text, image text, built_by uuid, \
         PRIMARY KEY (pipeline, service))",
    )
    .execute(&pool)
    .await?;
    let started = Instant::now();
    for i in 0..JOINS {
        sqlx::query("INSERT INTO bench_plain VALUES ($1, $2, 'img', $1)")
            .bind(parent)
            .bind(format!("svc{i}"))
            .execute(&pool)
            .await?;
    }
    let insert = started.elapsed().as_secs_f64() * 1e6 / JOINS as f64;
    pool.close().await;

    let git = GitServer::start().await?;
    let files = [
        ("compose.yaml", COMPOSE),
        ("Dockerfile", "FROM node:22\n"),
        ("web/Dockerfile", "FROM node:22\n"),
        ("worker/Dockerfile", "FROM python:3.13\n"),
    ];
    let commit = tokio::task::block_in_place(|| git.create_repo("bench/shop.git", &files))?;
    let url = git.url("bench/shop.git");
    let sim = kube_sim::KubeSim::builder()
        .delays(kube_sim::Delays::zero())
        .trusted_ca(git.ca_pem_path())
        .start()
        .await?;
    let prefix = RedisPrefix::on(&env.redis_url);
    let queue = QueueClient::connect(&env.redis_url, &prefix.name).await?;
    let worker = start_build_worker(env, db.url(), &prefix.name, &sim, &[]).await?;
    // One of each first: namespace and policy set-up is not what is measured. Each round is
    // its own preview, so no pipeline supersedes another.
    let mut n = 0;
    let mut preview = || {
        n += 1;
        format!("bench/shop#{n}")
    };
    for (compose, builds) in [(false, 1), (true, 2)] {
        let id = record(&store, &url, &commit, &preview(), compose).await?;
        submit_build(&store, &queue, &sim, id, builds).await?;
    }
    let (mut plain, mut fanned) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let id = record(&store, &url, &commit, &preview(), false).await?;
        plain.push(submit_build(&store, &queue, &sim, id, 1).await?);
        let id = record(&store, &url, &commit, &preview(), true).await?;
        fanned.push(submit_build(&store, &queue, &sim, id, 2).await?);
    }
    worker.stop().await.map_err(anyhow::Error::msg)?;

    let (plain, fanned) = (p50_ms(plain), p50_ms(fanned));
    report.figure(
        "compose",
        "compose_single_submit_p50_ms",
        "enqueue -> build Job created, Dockerfile source, p50",
        plain,
        "ms",
    );
    report.figure(
        "compose",
        "compose_fanout_p50_ms",
        "enqueue -> both services' build Jobs created, compose source, p50",
        fanned,
        "ms",
    );
    report.figure(
        "compose",
        "compose_fanout_vs_dockerfile",
        "compose fan-out / one Dockerfile build",
        fanned / plain,
        "x",
    );
    report.figure(
        "compose",
        "pipeline_join_us",
        "one service build's record in the pipeline's join, per call",
        join,
        "us",
    );
    report.figure(
        "compose",
        "pg_insert_us",
        "a plain one-row INSERT of the same shape (ceiling), per call",
        insert,
        "us",
    );
    Ok(())
}
