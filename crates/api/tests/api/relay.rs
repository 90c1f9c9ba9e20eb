//! A committed job is never lost: with Redis down the API still accepts the job (the row
//! commits), the relay pushes it once Redis is back, and a worker runs it. The test runs its own Redis server on
//! a free port, so stopping it disturbs nothing else.

use crate::helpers::*;
use reqwest::StatusCode;
use slipway_core::JobKind;
use slipway_shared::queue::QueueState;
use slipway_shared::runtime::{Handler, JobContext, JobError, RuntimeConfig, run_with_store};
use slipway_shared::testing::PrivateRedis;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn jobs_accepted_while_redis_is_down_are_pushed_when_it_returns() {
    let mut redis = PrivateRedis::start()
        .await
        .expect("redis-server is installed (make services)");
    let app = spawn_app_with(&redis.url()).await;
    redis.stop();

    let (status, job) = app.post("/v1/builds", &build_body()).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the row committed, so the job is accepted: {job}"
    );
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let row = app.store.get_job(id).await.unwrap().unwrap();
    assert!(row.enqueued_at.is_none(), "not pushed while Redis is down");

    redis.restart().await.unwrap();
    let row = eventually(
        Duration::from_secs(30),
        "the relay to push the job",
        || async {
            app.store
                .get_job(id)
                .await
                .unwrap()
                .filter(|r| r.enqueued_at.is_some())
        },
    )
    .await;
    assert_eq!(row.state, slipway_core::JobState::Queued);
    // The test's own client reconnects lazily after the restart, so ask until it answers.
    let queued = eventually(Duration::from_secs(10), "the job in Redis", || async {
        app.queue
            .get(JobKind::Build, &id.to_string())
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(queued.state, Some(QueueState::Waiting));

    // And it runs: a worker on that Redis takes it and Postgres records the success.
    struct Done;
    #[async_trait::async_trait]
    impl Handler for Done {
        async fn handle(&self, _job: JobContext) -> Result<serde_json::Value, JobError> {
            Ok(serde_json::json!({"ran": true}))
        }
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = RuntimeConfig::new(JobKind::Build, redis.url(), app.prefix.clone());
    let worker = tokio::spawn(run_with_store(
        cfg,
        app.store.clone(),
        Arc::new(Done),
        async {
            let _ = stopped.await;
        },
    ));
    let row = eventually(Duration::from_secs(30), "the job to run", || async {
        app.store
            .get_job(id)
            .await
            .unwrap()
            .filter(|r| r.state == slipway_core::JobState::Succeeded)
    })
    .await;
    assert_eq!(row.result, Some(serde_json::json!({"ran": true})));
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    drop(redis);
}
