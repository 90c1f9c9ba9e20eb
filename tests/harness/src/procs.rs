//! Child worker processes for the benchmark: spawn a `queue-worker`, read its stdout lines as
//! they arrive, kill it on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the sibling `queue-worker` binary is (same target directory as the running binary).
pub fn queue_worker_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("queue-worker");
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release -p slipway-harness`",
        path.display()
    );
    Ok(path)
}

/// A running worker process and the lines it printed, each with its arrival time.
pub struct WorkerProc {
    pub child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl WorkerProc {
    pub fn spawn(args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(queue_worker_path()?)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push((Instant::now(), line));
                }
            }
        });
        Ok(WorkerProc { child, lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Wait for a line starting with `prefix`.
    pub async fn wait_for(&self, prefix: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self
                .lines()
                .into_iter()
                .find(|(_, l)| l.starts_with(prefix))
            {
                return Ok(at);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no {prefix:?} line in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill();
    }
}
