//! The worker frame: probes answer while the runtime runs a job end to end through Postgres and
//! Redis, and shutdown stops both.

use slipway_core::{JobKind, JobState};
use slipway_shared::config::{CommonArgs, LogFormat, SecretUrl};
use slipway_shared::runtime::{Handler, JobContext, JobError, WorkerArgs};
use slipway_shared::store::NewJob;
use slipway_shared::testing::{RedisPrefix, TestDb, eventually, redis_url};
use slipway_shared::worker::{self, WorkerOptions};
use std::sync::Arc;
use std::time::Duration;

struct Echo;

#[async_trait::async_trait]
impl Handler for Echo {
    async fn handle(&self, job: JobContext) -> Result<serde_json::Value, JobError> {
        Ok(serde_json::json!({"attempt": job.attempt}))
    }
}

#[tokio::test]
async fn a_worker_serves_probes_and_runs_jobs_until_shutdown() {
    let db = TestDb::new().await.unwrap();
    let prefix = RedisPrefix::new();
    let common = CommonArgs {
        database_url: SecretUrl::new(db.url()),
        redis_url: SecretUrl::new(redis_url()),
        queue_prefix: prefix.name.clone(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        log_format: LogFormat::Text,
    };
    let worker_args = WorkerArgs {
        concurrency: 2,
        max_attempts: 3,
        rescue_time_secs: 15.0,
        grace_period_secs: 5.0,
        backoff_base_ms: 10,
        backoff_factor: 2,
        backoff_cap_ms: 100,
    };
    let connected = worker::connect(&common).await.unwrap();
    let (store, queue) = (connected.store.clone(), connected.queue.clone());
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = WorkerOptions {
        kind: JobKind::Cleanup,
        common,
        worker: worker_args,
        extra_checks: vec![],
    };
    let task = tokio::spawn(worker::serve(
        opts,
        connected,
        Arc::new(Echo),
        move |a| {
            let _ = addr_tx.send(a);
        },
        async {
            let _ = stopped.await;
        },
    ));
    let addr = addr_rx.await.unwrap();
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

    let job = store
        .insert_job(NewJob::new(JobKind::Cleanup, serde_json::json!({})))
        .await
        .unwrap()
        .job;
    queue.push(JobKind::Cleanup, job.id, 3).await.unwrap();
    let done = eventually(Duration::from_secs(30), "the job to succeed", || async {
        store
            .get_job(job.id)
            .await
            .unwrap()
            .filter(|j| j.state == JobState::Succeeded)
    })
    .await;
    assert_eq!(done.result, Some(serde_json::json!({"attempt": 1})));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("shutdown")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "probes stopped"
    );
}
