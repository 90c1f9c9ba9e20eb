//! A product binary run as a real child process, for the tests that signal it: its output
//! kept (shown when a test fails), SIGTERM sent with `kill(2)`, its exit timed by polling.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running binary; killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// process behind.
#[derive(Debug)]
pub struct Process {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Start `command` with its stdout and stderr captured.
    pub fn spawn(mut command: Command) -> std::io::Result<Process> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let output = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = sink.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        Ok(Process { child, output })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed so far (stdout and stderr, interleaved by arrival).
    pub fn output(&self) -> String {
        self.output.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Send SIGTERM, as the kubelet does when a pod is deleted.
    pub fn sigterm(&self) -> std::io::Result<()> {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| std::io::Error::other("pid out of range"))?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        Ok(())
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait (polling) up to `timeout` for the process to exit; its status, or `None` if it is
    /// still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then how long the process took to exit and how (`None`: still running after
    /// `patience`, then killed). The figure tests assert and print.
    pub async fn terminate(&mut self, patience: Duration) -> (Duration, Option<ExitStatus>) {
        let sent = Instant::now();
        if let Err(e) = self.sigterm() {
            panic!("SIGTERM to {}: {e}", self.pid());
        }
        let status = self.wait_exit(patience).await;
        let took = sent.elapsed();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        (took, status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port (bound, then released for the caller to bind).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `args` with the value following `flag` replaced by `value` (or both appended).
pub fn set_arg(args: &mut Vec<String>, flag: &str, value: &str) {
    match args.iter().position(|a| a == flag) {
        Some(i) if i + 1 < args.len() => args[i + 1] = value.to_owned(),
        _ => {
            args.push(flag.to_owned());
            args.push(value.to_owned());
        }
    }
}
