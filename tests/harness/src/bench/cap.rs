//! The cost of the per-repository build cap (issue 14): the latency of starting an attempt
//! through `Store::start_attempt_capped` (count the repository's running builds and start, in one
//! transaction under an advisory lock) against the plain `Store::start_attempt`, and of a
//! refused start (a deferral's Postgres part), each over a few hundred jobs on a fresh database.

use super::{BenchEnv, Report, percentile};
use slipway_core::{JobId, JobKind};
use slipway_shared::store::{CappedStart, NewJob, Store};
use slipway_shared::testing::TestDb;
use std::time::Instant;

const JOBS: usize = 300;
const KEY: &str = "github.com/bench/app";

async fn jobs(store: &Store, n: usize) -> anyhow::Result<Vec<JobId>> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let payload = serde_json::json!({"repository": {"url": "https://github.com/bench/app"}});
        ids.push(
            store
                .insert_job(NewJob::new(JobKind::Build, payload))
                .await?
                .job
                .id,
        );
    }
    Ok(ids)
}

fn millis_sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

pub async fn run(_env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let store = db.store();

    let plain_ids = jobs(&store, JOBS).await?;
    let mut plain = Vec::with_capacity(JOBS);
    for id in &plain_ids {
        let t = Instant::now();
        anyhow::ensure!(store.start_attempt(*id, 1, "bench").await?.is_some());
        plain.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // Started under a cap it never reaches: the count covers up to JOBS running builds.
    let capped_ids = jobs(&store, JOBS).await?;
    let mut capped = Vec::with_capacity(JOBS);
    for id in &capped_ids {
        let t = Instant::now();
        let started = store
            .start_attempt_capped(*id, 1, "bench", JobKind::Build, KEY, 1_000_000, "waiting")
            .await?;
        capped.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(matches!(started, CappedStart::Started(_)));
    }

    // Over the cap: refused, the waiting line written once per job.
    let waiting_ids = jobs(&store, JOBS).await?;
    let mut deferred = Vec::with_capacity(JOBS);
    for id in &waiting_ids {
        let t = Instant::now();
        let started = store
            .start_attempt_capped(*id, 1, "bench", JobKind::Build, KEY, 1, "waiting")
            .await?;
        deferred.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(matches!(started, CappedStart::Waiting { .. }));
    }

    let (plain, capped, deferred) = (
        millis_sorted(plain),
        millis_sorted(capped),
        millis_sorted(deferred),
    );
    report.note(
        "cap",
        "starts",
        &format!("{JOBS} sequential starts each, one repository, up to {JOBS} running"),
    );
    report.figure(
        "cap",
        "cap_start_plain_p50_ms",
        "start_attempt p50",
        percentile(&plain, 50.0),
        "ms",
    );
    report.figure(
        "cap",
        "cap_start_capped_p50_ms",
        "start under the per-repository cap p50",
        percentile(&capped, 50.0),
        "ms",
    );
    report.figure(
        "cap",
        "cap_start_capped_p99_ms",
        "start under the per-repository cap p99",
        percentile(&capped, 99.0),
        "ms",
    );
    report.figure(
        "cap",
        "cap_defer_p50_ms",
        "start refused by the cap (deferral, Postgres part) p50",
        percentile(&deferred, 50.0),
        "ms",
    );
    Ok(())
}
