//! A handler scripted by its job's Redis payload, so tests and the benchmark can make a real
//! worker process sleep, fail, panic or report pickup latency:
//! `{"sleep_ms": 3000, "fail": "transient"|"permanent", "fail_until_attempt": 2,
//!   "panic_until_attempt": 2, "ignore_cancel": true, "t_us": <push time, unix µs>}`.
//!
//! It prints one line per event on stdout (`started <id> <attempt> <pid>`, `finished <id>
//! <attempt>`, `cancelled <id> <attempt>`, `pickup <id> <µs>`) for the parent test to read.

use serde_json::Value;
use slipway_shared::runtime::{Handler, JobContext, JobError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// See the module docs. `quiet` drops the per-job lines (for throughput runs).
pub struct Scripted {
    pub quiet: bool,
}

fn u64_field(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

#[async_trait::async_trait]
impl Handler for Scripted {
    async fn handle(&self, job: JobContext) -> Result<Value, JobError> {
        let d = &job.data;
        if let Some(t) = u64_field(d, "t_us") {
            println!("pickup {} {}", job.id, now_us().saturating_sub(t));
        }
        if !self.quiet {
            println!("started {} {} {}", job.id, job.attempt, std::process::id());
        }
        if let Some(until) = u64_field(d, "panic_until_attempt")
            && u64::from(job.attempt) < until
        {
            panic!("scripted panic on attempt {}", job.attempt);
        }
        if let Some(ms) = u64_field(d, "sleep_ms") {
            let sleep = tokio::time::sleep(Duration::from_millis(ms));
            if d.get("ignore_cancel").and_then(Value::as_bool) == Some(true) {
                sleep.await;
            } else {
                tokio::select! {
                    () = sleep => {}
                    () = job.cancel.cancelled() => {
                        println!("cancelled {} {}", job.id, job.attempt);
                        return Err(JobError::transient("cancelled"));
                    }
                }
            }
        }
        let fail_now = match u64_field(d, "fail_until_attempt") {
            Some(until) => u64::from(job.attempt) < until,
            None => true,
        };
        match d.get("fail").and_then(Value::as_str) {
            Some("transient") if fail_now => {
                return Err(JobError::transient(format!(
                    "scripted transient failure on attempt {}",
                    job.attempt
                )));
            }
            Some("permanent") if fail_now => {
                return Err(JobError::permanent("scripted permanent failure"));
            }
            _ => {}
        }
        if !self.quiet {
            println!("finished {} {}", job.id, job.attempt);
        }
        Ok(serde_json::json!({ "attempt": job.attempt, "pid": std::process::id() }))
    }
}
