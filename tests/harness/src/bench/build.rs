//! The build figures (issue 5): log lines per second from a fast-talking build pod through the
//! worker into Postgres, with raw `COPY` of the same lines into the same table as the ceiling;
//! and submit latency, enqueue -> build Job created in the simulator, for 50 builds at once.

use super::{BenchEnv, Report, start_worker};
use clap::Parser;
use slipway_core::payload::BuildRequest;
use slipway_core::validate::Validate;
use slipway_core::{JobId, JobKind, JobState, Limits};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{NewJob, Store};
use slipway_shared::testing::{RedisPrefix, TestDb};
use sqlx::postgres::PgPoolCopyExt;
use std::time::{Duration, Instant};

const LINES: usize = 100_000;
const BUILDS: usize = 50;
const NAMESPACE: &str = "slipway-builds";

fn line(n: usize) -> String {
    format!(
        "#7 {}.{:03} compiling crate-{n} v0.1.{n} (registry) with a realistic amount of text",
        n / 1000,
        n % 1000
    )
}

async fn record_build(store: &Store, n: usize) -> anyhow::Result<JobId> {
    let request: BuildRequest = serde_json::from_value(serde_json::json!({
        "repository": "https://github.com/bench/app.git", "commit": format!("{n:040x}"), "image": "bench/app"
    }))?;
    let valid = request.validate(&Limits::default())?;
    let mut new = NewJob::new(JobKind::Build, serde_json::to_value(&valid)?);
    new.commit_sha = Some(valid.commit.clone());
    Ok(store.insert_job(new).await?.job.id)
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let store = db.store();

    // The ceiling: the same lines straight into job_logs with COPY (text format).
    let ceiling_job = record_build(&store, 0).await?;
    let mut data = String::with_capacity(LINES * 100);
    let ts = chrono::Utc::now().to_rfc3339();
    for n in 0..LINES {
        data.push_str(&format!(
            "{ceiling_job}\t1\t{n}\t{ts}\tstdout\t{}\n",
            line(n)
        ));
    }
    let start = Instant::now();
    let mut copy = store
        .pool()
        .copy_in_raw("COPY job_logs (job_id, attempt, seq, ts, stream, line) FROM STDIN")
        .await?;
    copy.send(data.as_bytes()).await?;
    let copied = copy.finish().await?;
    let copy_rate = copied as f64 / start.elapsed().as_secs_f64();

    // A build pod that prints LINES lines at once, followed by the worker into Postgres; the
    // other builds print nothing.
    let loud = record_build(&store, 1).await?;
    let loud_job = slipway_core::naming::build_job_name(loud, 1);
    let metadata = format!(
        "{{\"containerimage.digest\": \"sha256:{}\"}}",
        "ab".repeat(32)
    );
    let sim = kube_sim::KubeSim::builder()
        .delays(kube_sim::Delays::zero())
        // The loud pod prints its lines at once, past the kubelet's 10 MiB rotation: a follow
        // opened after that would see only the current file. This section measures storing a
        // log, so nothing rotates.
        .log_rotate_bytes(0)
        .script(move |pod| {
            let mut script = kube_sim::PodScript::succeed().message(metadata.clone());
            if pod.job_name.as_deref() == Some(loud_job.as_str()) {
                for n in 0..LINES {
                    script = script.log(line(n));
                }
            }
            script
        })
        .start()
        .await?;
    let prefix = RedisPrefix::on(&env.redis_url);
    let queue = QueueClient::connect(&env.redis_url, &prefix.name).await?;
    let config = slipway_worker_build::Config::try_parse_from([
        "slipway-worker-build",
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
        "--max-concurrent-builds",
        "100",
        // The 50 builds below are of one repository: this figure measures submit latency, not
        // the per-repository cap (the `cap` section measures its cost).
        "--max-per-repository",
        "0",
        "--build-namespace",
        NAMESPACE,
    ])?;
    let worker = start_worker(
        sim.config()?,
        move |client, on_listen, shutdown| async move {
            Ok(slipway_worker_build::run_with_client(config, client, on_listen, shutdown).await?)
        },
    )
    .await?;

    queue.push(JobKind::Build, loud, 1).await?;
    let job = wait_done(&store, loud).await?;
    let (Some(started), Some(finished)) = (job.started_at, job.finished_at) else {
        anyhow::bail!("the build has no timings");
    };
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM job_logs WHERE job_id = $1")
        .bind(loud)
        .fetch_one(store.pool())
        .await?;
    anyhow::ensure!(
        stored as usize >= LINES,
        "only {stored} of {LINES} lines stored"
    );
    let log_rate = stored as f64 / (finished - started).as_seconds_f64();
    report.note(
        "build",
        "log lines",
        &format!("{LINES} lines from one pod, and the same lines by COPY"),
    );
    report.figure(
        "build",
        "log_lines_per_s",
        "log lines into Postgres through the worker",
        log_rate,
        "lines/s",
    );
    report.figure(
        "build",
        "copy_lines_per_s",
        "raw COPY of the same lines (ceiling)",
        copy_rate,
        "lines/s",
    );

    // Submit latency: 50 builds at once, enqueue -> Job object in the simulator.
    let mut ids = Vec::with_capacity(BUILDS);
    for n in 0..BUILDS {
        ids.push(record_build(&store, 1000 + n).await?);
    }
    let pushed = Instant::now();
    queue
        .push_bulk(
            JobKind::Build,
            &ids.iter().map(|id| (*id, 1)).collect::<Vec<_>>(),
        )
        .await?;
    let mut seen: Vec<Option<Duration>> = vec![None; BUILDS];
    let deadline = pushed + Duration::from_secs(120);
    while seen.iter().any(Option::is_none) {
        anyhow::ensure!(Instant::now() < deadline, "not every build Job was created");
        for (i, id) in ids.iter().enumerate() {
            if seen[i].is_none() {
                let name = slipway_core::naming::build_job_name(*id, 1);
                // A Job is gone again once its logs are stored; either way it was created.
                let created = sim.object("jobs", NAMESPACE, &name).is_some()
                    || store
                        .get_job(*id)
                        .await?
                        .is_some_and(|j| j.state.is_terminal());
                if created {
                    seen[i] = Some(pushed.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut latencies: Vec<Duration> = seen.into_iter().flatten().collect();
    latencies.sort();
    let ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let pct = |p: f64| super::percentile(&ms, p * 100.0);
    report.figure(
        "build",
        "submit_p50_ms",
        "enqueue -> build Job created, p50 (50 at once)",
        pct(0.5),
        "ms",
    );
    report.figure(
        "build",
        "submit_p99_ms",
        "enqueue -> build Job created, p99",
        pct(0.99),
        "ms",
    );
    for id in &ids {
        wait_done(&store, *id).await?;
    }
    worker.stop().await.map_err(anyhow::Error::msg)
}

async fn wait_done(store: &Store, id: JobId) -> anyhow::Result<slipway_shared::store::JobRecord> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(job) = store.get_job(id).await?.filter(|j| j.state.is_terminal()) {
            anyhow::ensure!(
                job.state == JobState::Succeeded,
                "build {id} ended {}: {:?}",
                job.state,
                job.error
            );
            return Ok(job);
        }
        anyhow::ensure!(Instant::now() < deadline, "build {id} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
