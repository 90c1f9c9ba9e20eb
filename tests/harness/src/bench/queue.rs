//! The queue figures: enqueue rates, no-op throughput of one worker process at concurrency 50
//! over 50k pre-queued jobs, pickup latency of an idle worker at a paced 1,000 jobs/s, and the
//! rescue time of a SIGKILLed worker's job.

use super::{BenchEnv, Report, percentile};
use crate::procs::WorkerProc;
use crate::scripted::now_us;
use serde_json::json;
use slipway_core::JobKind;
use slipway_shared::queue::QueueClient;
use slipway_shared::testing::RedisPrefix;
use std::time::{Duration, Instant};
use uuid::Uuid;

const BULK: usize = 50_000;
const SINGLE: usize = 5_000;
const PACED: usize = 3_000;
const CONCURRENCY: &str = "50";

fn worker_args(env: &BenchEnv, prefix: &str, kind: JobKind, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--redis-url",
        &env.redis_url,
        "--prefix",
        prefix,
        "--kind",
        kind.as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn wait_workers(q: &QueueClient, kind: JobKind, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while q.workers(kind).await?.len() < n {
        anyhow::ensure!(Instant::now() < deadline, "worker did not register");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    // Keys under the prefix are deleted when it drops.
    let prefix = RedisPrefix::on(&env.redis_url);
    measure(env, &prefix.name, report).await
}

async fn measure(env: &BenchEnv, prefix: &str, report: &mut Report) -> anyhow::Result<()> {
    let q = QueueClient::connect(&env.redis_url, prefix).await?;

    // Enqueue, one call per job.
    eprintln!("queue: {SINGLE} single pushes");
    let started = Instant::now();
    for _ in 0..SINGLE {
        q.push(JobKind::Cleanup, Uuid::new_v4(), 3).await?;
    }
    let single = SINGLE as f64 / started.elapsed().as_secs_f64();
    report.figure(
        "queue",
        "queue_enqueue_single_per_s",
        "enqueue, one push per call",
        single,
        "jobs/s",
    );

    // Enqueue in bulk: these are the pre-queued backlog of the throughput run.
    eprintln!("queue: {BULK} bulk pushes");
    let jobs: Vec<(Uuid, u32)> = (0..BULK).map(|_| (Uuid::new_v4(), 3)).collect();
    let started = Instant::now();
    q.push_bulk(JobKind::Build, &jobs).await?;
    let bulk = BULK as f64 / started.elapsed().as_secs_f64();
    report.figure(
        "queue",
        "queue_enqueue_bulk_per_s",
        "enqueue, bulk",
        bulk,
        "jobs/s",
    );
    anyhow::ensure!(q.counts(JobKind::Build).await?.waiting == BULK as u64);

    // Throughput: one process, concurrency 50, no-op jobs.
    eprintln!("queue: draining {BULK} jobs with one worker at concurrency {CONCURRENCY}");
    let spawned = Instant::now();
    let mut worker = WorkerProc::spawn(&worker_args(
        env,
        prefix,
        JobKind::Build,
        &["--quiet", "--concurrency", CONCURRENCY],
    ))?;
    let mut first: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (done_at, done) = loop {
        let c = q.counts(JobKind::Build).await?;
        let now = Instant::now();
        if first.is_none() && c.completed > 0 {
            first = Some((now, c.completed));
        }
        if c.completed >= BULK as u64 {
            break (now, c.completed);
        }
        anyhow::ensure!(now < deadline, "throughput run did not finish: {c:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (t0, c0) = first.unwrap_or((spawned, 0));
    let processed = (done - c0) as f64 / done_at.duration_since(t0).as_secs_f64();
    worker.kill();
    report.figure(
        "queue",
        "queue_processed_per_s",
        "no-op jobs, 1 process, concurrency 50, 50k queued",
        processed,
        "jobs/s",
    );

    // Pickup latency: an idle worker, jobs pushed at a paced 1,000/s.
    eprintln!("queue: pickup latency, {PACED} jobs at 1,000/s");
    let worker = WorkerProc::spawn(&worker_args(
        env,
        prefix,
        JobKind::Launch,
        &["--quiet", "--concurrency", CONCURRENCY],
    ))?;
    wait_workers(&q, JobKind::Launch, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = tokio::time::Instant::now();
    let mut pushes = Vec::with_capacity(PACED);
    for i in 0..PACED {
        tokio::time::sleep_until(start + Duration::from_millis(i as u64)).await;
        let q = q.clone();
        pushes.push(tokio::spawn(async move {
            let data = json!({ "t_us": now_us() });
            q.push_with_data(JobKind::Launch, Uuid::new_v4(), 3, data)
                .await
        }));
    }
    for p in pushes {
        p.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies: Vec<f64> = loop {
        let l: Vec<f64> = worker
            .lines()
            .iter()
            .filter_map(|(_, l)| l.strip_prefix("pickup "))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|us| us / 1000.0)
            .collect();
        if l.len() >= PACED {
            break l;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {} pickups seen", l.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(worker);
    latencies.sort_by(f64::total_cmp);
    report.figure(
        "queue",
        "pickup_p50_ms",
        "pickup latency p50 (push to handler start)",
        percentile(&latencies, 50.0),
        "ms",
    );
    report.figure(
        "queue",
        "pickup_p99_ms",
        "pickup latency p99",
        percentile(&latencies, 99.0),
        "ms",
    );
    report.note(
        "queue",
        "pickup latency max",
        &format!("{:.3} ms", latencies.last().copied().unwrap_or(f64::NAN)),
    );

    // Rescue: SIGKILL a worker mid-job; another, already idle, starts it (default settings).
    eprintln!("queue: rescue after SIGKILL (default rescue time 15 s)");
    let mut a = WorkerProc::spawn(&worker_args(env, prefix, JobKind::Cleanup, &[]))?;
    wait_workers(&q, JobKind::Cleanup, 1).await?;
    // The single pushes earlier left jobs on this queue: clear the way with a fresh id.
    let id = Uuid::new_v4();
    q.push_with_data(JobKind::Cleanup, id, 3, json!({ "sleep_ms": 600_000 }))
        .await?;
    a.wait_for(&format!("started {id} "), Duration::from_secs(120))
        .await?;
    let b = WorkerProc::spawn(&worker_args(env, prefix, JobKind::Cleanup, &[]))?;
    wait_workers(&q, JobKind::Cleanup, 2).await?;
    // Let b drain what is left of the single-push jobs so it is idle when a dies.
    let deadline = Instant::now() + Duration::from_secs(120);
    while q.counts(JobKind::Cleanup).await?.waiting > 0 {
        anyhow::ensure!(Instant::now() < deadline, "cleanup queue did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Instant::now();
    a.kill();
    let at = b
        .wait_for(&format!("started {id} 2"), Duration::from_secs(60))
        .await?;
    let rescue = at.duration_since(killed).as_secs_f64();
    report.figure(
        "queue",
        "rescue_s",
        "rescue after SIGKILL (rescue time 15 s)",
        rescue,
        "s",
    );
    drop(b);
    q.close().await;
    Ok(())
}
