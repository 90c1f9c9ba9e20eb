//! A committed job is never lost: with Redis down the API still accepts the job (the row
//! commits), and the relay pushes it once Redis is back. The test runs its own Redis server on
//! a free port, so stopping it disturbs nothing else.

use crate::helpers::*;
use reqwest::StatusCode;
use slipway_core::JobKind;
use slipway_shared::queue::QueueState;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct OwnRedis {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start_on(port: u16, dir: tempfile::TempDir) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make services)");
        let r = OwnRedis { port, child: Some(child), dir };
        r.wait_ready();
        r
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port, tempfile::tempdir().unwrap())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(c) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = c.get_connection() {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("own redis-server did not start");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(mut self) -> Self {
        self.stop();
        let (port, dir) = (self.port, std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()));
        Self::start_on(port, dir)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn jobs_accepted_while_redis_is_down_are_pushed_when_it_returns() {
    let mut redis = OwnRedis::start();
    let app = spawn_app_with(&redis.url()).await;
    redis.stop();

    let (status, job) = app.post("/v1/builds", &build_body()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the row committed, so the job is accepted: {job}");
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let row = app.store.get_job(id).await.unwrap().unwrap();
    assert!(row.enqueued_at.is_none(), "not pushed while Redis is down");

    let redis = redis.restart();
    let row = eventually(Duration::from_secs(30), "the relay to push the job", || async {
        app.store.get_job(id).await.unwrap().filter(|r| r.enqueued_at.is_some())
    })
    .await;
    assert_eq!(row.state, slipway_core::JobState::Queued);
    let queued = app.queue.get(JobKind::Build, &id.to_string()).await.unwrap().expect("in Redis");
    assert_eq!(queued.state, Some(QueueState::Waiting));
    drop(redis);
}
