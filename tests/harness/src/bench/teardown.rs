//! The teardown figure (issue 7): a launched preview's cleanup enqueued until its namespace is
//! gone from the simulator (delays at zero), i.e. Slipway's own overhead per teardown: the
//! queue pickup, the delete, the wait for the namespace to go and the registry update.

use super::{BenchEnv, Report, percentile, start_worker};
use clap::Parser;
use slipway_core::naming::preview_namespace;
use slipway_core::payload::LaunchRequest;
use slipway_core::validate::Validate;
use slipway_core::{JobKind, JobState, Limits};
use slipway_shared::enqueue::Submitter;
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{NewJob, Store};
use slipway_shared::testing::{RedisPrefix, TestDb};
use std::time::{Duration, Instant};

const PREVIEWS: usize = 10;

/// Flags both workers take: this run's database and Redis, probes on port 0.
fn args(bin: &str, db: &TestDb, env: &BenchEnv, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        bin,
        "--database-url",
        db.url(),
        "--redis-url",
        &env.redis_url,
        "--queue-prefix",
        prefix,
        "--listen",
        "127.0.0.1:0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

async fn wait_job(store: &Store, id: slipway_core::JobId) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match store.get_job(id).await?.map(|j| j.state) {
            Some(JobState::Succeeded) => return Ok(()),
            Some(s) if s.is_terminal() => anyhow::bail!("job {id} ended {s}"),
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let store = db.store();
    let prefix = RedisPrefix::on(&env.redis_url);
    let queue = QueueClient::connect(&env.redis_url, &prefix.name).await?;
    let submitter = Submitter::new(store.clone(), queue);
    let sim = kube_sim::KubeSim::builder()
        .delays(kube_sim::Delays::zero())
        .start()
        .await?;

    let launch = slipway_worker_launch::Config::try_parse_from(args(
        "slipway-worker-launch",
        &db,
        env,
        &prefix.name,
        &["--concurrency", "10", "--poll-ms", "100"],
    ))?;
    let cleanup = slipway_worker_cleanup::Config::try_parse_from(args(
        "slipway-worker-cleanup",
        &db,
        env,
        &prefix.name,
        &["--sweep-interval-secs", "0"],
    ))?;
    let launcher = start_worker(sim.config()?, move |client, on_listen, stop| async move {
        Ok(slipway_worker_launch::run_with_client(launch, client, on_listen, stop).await?)
    })
    .await?;
    let cleaner = start_worker(sim.config()?, move |client, on_listen, stop| async move {
        Ok(slipway_worker_cleanup::run_with_client(cleanup, client, on_listen, stop).await?)
    })
    .await?;

    let keys: Vec<String> = (0..PREVIEWS).map(|n| format!("bench/app#{n}")).collect();
    let mut launches = Vec::new();
    for key in &keys {
        let request: LaunchRequest = serde_json::from_value(
            serde_json::json!({"preview": key, "image": "ghcr.io/bench/app:1.0"}),
        )?;
        let valid = request.validate(&Limits::default())?;
        let mut new = NewJob::new(JobKind::Launch, serde_json::to_value(&valid)?);
        new.preview = Some(key.clone());
        launches.push(submitter.submit(new, &[]).await?.job.id);
    }
    for id in launches {
        wait_job(&store, id).await?;
    }

    // One teardown at a time: the latency a closed pull request waits for.
    let mut took = Vec::with_capacity(PREVIEWS);
    for key in &keys {
        let ns = preview_namespace(key);
        anyhow::ensure!(sim.object("namespaces", "", &ns).is_some(), "{ns} missing");
        let mut new = NewJob::new(JobKind::Cleanup, serde_json::json!({ "preview": key }));
        new.preview = Some(key.clone());
        let start = Instant::now();
        submitter
            .submit(new, &[JobKind::Build, JobKind::Launch])
            .await?;
        sim.wait_for_gone("namespaces", "", &ns, Duration::from_secs(120))
            .await?;
        took.push(start.elapsed().as_secs_f64());
    }
    took.sort_by(f64::total_cmp);
    report.note(
        "teardown",
        "previews",
        &format!("{PREVIEWS} launched, then torn down one at a time; simulator delays 0"),
    );
    report.figure(
        "teardown",
        "teardown_s",
        "cleanup enqueued until namespace gone (p50)",
        percentile(&took, 50.0),
        "s",
    );
    report.figure(
        "teardown",
        "teardown_max_s",
        "cleanup enqueued until namespace gone (max)",
        percentile(&took, 100.0),
        "s",
    );
    cleaner.stop().await.map_err(anyhow::Error::msg)?;
    launcher.stop().await.map_err(anyhow::Error::msg)
}
