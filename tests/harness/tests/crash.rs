//! Crash tests with real worker processes (semantics 2 and 8): a `queue-worker` killed with
//! SIGKILL mid-job has its job resumed by another process within the rescue time, the death
//! counting as an attempt (in Redis and in the Postgres job store); SIGTERM hands the job back
//! at once.

use serde_json::json;
use slipway_core::JobKind;
use slipway_core::JobState;
use slipway_shared::queue::{QueueClient, QueueState};
use slipway_shared::store::NewJob;
use slipway_shared::testing::RedisPrefix;
use slipway_shared::testing::TestDb;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const REDIS: &str = "redis://127.0.0.1:6379";
const RESCUE: Duration = Duration::from_secs(6);

/// A worker process and the lines it printed, with when they arrived.
struct WorkerProc {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl WorkerProc {
    fn spawn(prefix: &str, name: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_queue-worker"))
            .args(["--redis-url", REDIS, "--prefix", prefix, "--kind", "build"])
            .args(["--name", name, "--concurrency", "2"])
            .args(["--rescue-time-secs", &RESCUE.as_secs_f64().to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn queue-worker");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        WorkerProc { child, lines }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When a line starting with `prefix` arrived, if it has.
    fn saw(&self, prefix: &str) -> Option<(Instant, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.starts_with(prefix))
            .cloned()
    }

    async fn wait_for(&self, prefix: &str, timeout: Duration) -> (Instant, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(hit) = self.saw(prefix) {
                return hit;
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix:?} line within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_workers(q: &QueueClient, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while q.workers(JobKind::Build).await.unwrap().len() != n {
        assert!(Instant::now() < deadline, "expected {n} live workers");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_state(q: &QueueClient, id: &str, state: QueueState) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = q.get(JobKind::Build, id).await.unwrap();
        if job.as_ref().and_then(|j| j.state) == Some(state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job never reached {state:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_sigkilled_workers_job_is_resumed_by_another_process_within_the_rescue_time() {
    let keys = RedisPrefix::on(REDIS);
    let prefix = keys.name.clone();
    let db = TestDb::new().await.unwrap();
    let store = db.store();
    let q = QueueClient::connect(REDIS, &prefix).await.unwrap();
    let with_store = ["--database-url", db.url()];
    let a = WorkerProc::spawn(&prefix, "a", &with_store);
    wait_workers(&q, 1).await;
    let job = store
        .insert_job(NewJob::new(JobKind::Build, json!({})))
        .await
        .unwrap()
        .job;
    let id = job.id;
    let sid = id.to_string();
    q.push_with_data(JobKind::Build, id, 3, json!({"sleep_ms": 3_000}))
        .await
        .unwrap();
    a.wait_for(&format!("started {sid} 1"), Duration::from_secs(10))
        .await;
    let b = WorkerProc::spawn(&prefix, "b", &with_store);
    wait_workers(&q, 2).await;

    let mut a = a;
    a.child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    a.child.wait().unwrap();

    let (at, line) = b
        .wait_for(&format!("started {sid} "), RESCUE + Duration::from_secs(10))
        .await;
    let rescue = at.duration_since(killed);
    eprintln!("rescued in {rescue:?}: {line}");
    assert!(
        rescue <= RESCUE,
        "rescue took {rescue:?}, more than {RESCUE:?}"
    );
    assert_eq!(
        line,
        format!("started {sid} 2 {}", b.pid()),
        "the death was attempt 1"
    );
    wait_state(&q, &sid, QueueState::Completed).await;
    let job = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(job.attempts_started, 2);
    assert_eq!(job.attempts_used, 2);
    assert_eq!(job.result.unwrap()["pid"], b.pid());
    // Postgres saw both attempts: the first abandoned by its dead worker, the second succeeded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get_job(id).await.unwrap().unwrap().state != JobState::Succeeded {
        assert!(Instant::now() < deadline, "store never recorded success");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let attempts = store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].outcome.as_deref(), Some("abandoned"));
    assert_eq!(attempts[1].outcome.as_deref(), Some("succeeded"));
    assert_ne!(attempts[0].worker_id, attempts[1].worker_id);
    // The dead worker drops out of the live list once its heartbeat is stale.
    wait_workers(&q, 1).await;
}

#[tokio::test]
async fn a_death_on_the_last_attempt_sends_the_job_to_the_dead_set() {
    let keys = RedisPrefix::on(REDIS);
    let prefix = keys.name.clone();
    let q = QueueClient::connect(REDIS, &prefix).await.unwrap();
    let mut a = WorkerProc::spawn(&prefix, "a", &[]);
    wait_workers(&q, 1).await;
    let id = Uuid::new_v4();
    let sid = id.to_string();
    // One attempt allowed: the worker's death uses it up.
    q.push_with_data(JobKind::Build, id, 1, json!({"sleep_ms": 30_000}))
        .await
        .unwrap();
    a.wait_for(&format!("started {sid} 1"), Duration::from_secs(10))
        .await;
    let b = WorkerProc::spawn(&prefix, "b", &[]);
    wait_workers(&q, 2).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    wait_state(&q, &sid, QueueState::Dead).await;
    let job = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(job.attempts_started, 2);
    let error = job.error.unwrap();
    assert!(error.contains("no attempts left"), "{error}");
    assert!(b.saw(&format!("started {sid}")).is_none(), "not run again");
}

#[tokio::test]
async fn sigterm_hands_running_jobs_back_for_another_process_at_once() {
    let keys = RedisPrefix::on(REDIS);
    let prefix = keys.name.clone();
    let q = QueueClient::connect(REDIS, &prefix).await.unwrap();
    let mut a = WorkerProc::spawn(&prefix, "a", &["--grace-period-secs", "1"]);
    wait_workers(&q, 1).await;
    let id = Uuid::new_v4();
    let sid = id.to_string();
    q.push_with_data(JobKind::Build, id, 3, json!({"sleep_ms": 60_000}))
        .await
        .unwrap();
    a.wait_for(&format!("started {sid} 1"), Duration::from_secs(10))
        .await;
    let status = Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let terminated = Instant::now();
    a.wait_for(&format!("cancelled {sid} 1"), Duration::from_secs(10))
        .await;
    a.wait_for("stopped", Duration::from_secs(15)).await;
    assert!(
        a.child.wait().unwrap().success(),
        "clean exit after SIGTERM"
    );
    assert!(terminated.elapsed() < Duration::from_secs(10));
    let job = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        Some(QueueState::Waiting),
        "handed back, not left active"
    );
    assert!(q.workers(JobKind::Build).await.unwrap().is_empty());

    let b = WorkerProc::spawn(&prefix, "b", &[]);
    let spawned = Instant::now();
    b.wait_for(&format!("started {sid} 2"), Duration::from_secs(15))
        .await;
    eprintln!(
        "resumed {:?} after the new worker was spawned",
        spawned.elapsed()
    );
    let job = q.get(JobKind::Build, &sid).await.unwrap().unwrap();
    assert_eq!(job.attempts_started, 2, "resumed as the next attempt");
}
