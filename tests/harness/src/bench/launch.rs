//! The launch figure (issue 6): 50 previews enqueued at once until every one is Available in
//! the simulator with its own delays at zero, i.e. Slipway's own overhead per rollout.

use super::{BenchEnv, Report, start_worker};
use clap::Parser;
use slipway_core::payload::LaunchRequest;
use slipway_core::validate::Validate;
use slipway_core::{JobKind, JobState, Limits};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::NewJob;
use slipway_shared::testing::{RedisPrefix, TestDb};
use std::time::{Duration, Instant};

const PREVIEWS: usize = 50;

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let store = db.store();
    let prefix = RedisPrefix::on(&env.redis_url);
    let queue = QueueClient::connect(&env.redis_url, &prefix.name).await?;
    let sim = kube_sim::KubeSim::builder()
        .delays(kube_sim::Delays::zero())
        .start()
        .await?;

    let config = slipway_worker_launch::Config::try_parse_from([
        "slipway-worker-launch",
        "--database-url",
        db.url(),
        "--redis-url",
        &env.redis_url,
        "--queue-prefix",
        &prefix.name,
        "--listen",
        "127.0.0.1:0",
        "--concurrency",
        "50",
        "--poll-ms",
        "100",
    ])?;
    let worker = start_worker(
        sim.config()?,
        move |client, on_listen, shutdown| async move {
            Ok(slipway_worker_launch::run_with_client(config, client, on_listen, shutdown).await?)
        },
    )
    .await?;

    let mut ids = Vec::with_capacity(PREVIEWS);
    for n in 0..PREVIEWS {
        let request: LaunchRequest = serde_json::from_value(serde_json::json!({
            "preview": format!("bench/app#{n}"), "image": "ghcr.io/bench/app:1.0"
        }))?;
        let valid = request.validate(&Limits::default())?;
        let mut new = NewJob::new(JobKind::Launch, serde_json::to_value(&valid)?);
        new.preview = Some(valid.preview.clone());
        ids.push((store.insert_job(new).await?.job.id, 3));
    }
    let start = Instant::now();
    queue.push_bulk(JobKind::Launch, &ids).await?;
    let deadline = start + Duration::from_secs(300);
    loop {
        let mut done = 0;
        for (id, _) in &ids {
            match store.get_job(*id).await?.map(|j| j.state) {
                Some(JobState::Succeeded) => done += 1,
                Some(s) if s.is_terminal() => anyhow::bail!("launch {id} ended {s}"),
                _ => {}
            }
        }
        if done == ids.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {PREVIEWS} previews Available"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    report.note(
        "launch",
        "previews",
        &format!("{PREVIEWS} enqueued at once, simulator delays 0"),
    );
    report.figure(
        "launch",
        "launch_50_s",
        "50 previews until all Available",
        elapsed,
        "s",
    );
    worker.stop().await.map_err(anyhow::Error::msg)
}
