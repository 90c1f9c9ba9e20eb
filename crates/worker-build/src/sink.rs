//! Where a build's log lines go: numbered from 0 per attempt, batched (by size and by age) into
//! `job_logs`, capped with a truncation marker, and the last lines kept in memory to explain a
//! failure.
//!
//! Re-following a log from its start ([`LogSink::restart`]) numbers the lines from 0 again: the
//! store skips the ones it already holds, so a stream re-read after a drop or a worker's death
//! leaves neither a gap nor a duplicate.

use chrono::Utc;
use slipway_core::JobId;
use slipway_k8s::logs::DecodedLine;
use slipway_shared::store::{LogLine, Store, StoreError};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// How many of the last lines are kept for the failure message.
const TAIL_LINES: usize = 60;

/// Batching and cap settings.
#[derive(Debug, Clone, Copy)]
pub struct SinkLimits {
    pub batch_lines: usize,
    pub batch_wait: Duration,
    pub max_lines: u64,
}

pub struct LogSink {
    store: Store,
    job_id: JobId,
    attempt: i32,
    limits: SinkLimits,
    batch: Vec<LogLine>,
    oldest: Option<Instant>,
    next_seq: i64,
    truncated: bool,
    tail: VecDeque<String>,
}

impl LogSink {
    pub fn new(store: Store, job_id: JobId, attempt: i32, limits: SinkLimits) -> Self {
        LogSink {
            store,
            job_id,
            attempt,
            limits,
            batch: Vec::new(),
            oldest: None,
            next_seq: 0,
            truncated: false,
            tail: VecDeque::new(),
        }
    }

    /// Start over from the first line (the log is re-read from its start). Unwritten lines
    /// are dropped: the re-read delivers them again.
    pub fn restart(&mut self) {
        self.batch.clear();
        self.oldest = None;
        self.next_seq = 0;
        self.truncated = false;
        self.tail.clear();
    }

    /// When the pending batch must be written, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.limits.batch_wait)
    }

    /// Lines read since the last restart (stored, or dropped past the cap).
    pub fn lines_read(&self) -> i64 {
        self.next_seq
    }

    /// The last lines seen (for the failure message), capped or not.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Add a line; writes the batch when it is full.
    pub async fn push(&mut self, line: DecodedLine) -> Result<(), StoreError> {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.text.clone());
        let cap = i64::try_from(self.limits.max_lines).unwrap_or(i64::MAX);
        let ts = line.ts.unwrap_or_else(Utc::now);
        if self.next_seq < cap {
            self.batch.push(LogLine {
                seq: self.next_seq,
                ts,
                stream: "stdout".into(),
                text: line.text,
            });
        } else if !self.truncated {
            self.truncated = true;
            self.batch.push(LogLine {
                seq: self.next_seq,
                ts,
                stream: "system".into(),
                text: format!(
                    "[slipway] log truncated: only the first {} lines of this build are stored",
                    self.limits.max_lines
                ),
            });
        } else {
            return Ok(());
        }
        self.next_seq += 1;
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        if self.batch.len() >= self.limits.batch_lines {
            self.flush().await?;
        }
        Ok(())
    }

    /// Write the pending batch (retrying briefly while Postgres is unreachable).
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            self.oldest = None;
            return Ok(());
        }
        let mut wait = Duration::from_millis(100);
        let mut tries = 0;
        let inserted = loop {
            match self
                .store
                .append_logs(self.job_id, self.attempt, &self.batch)
                .await
            {
                Ok(n) => break n,
                Err(e) if tries < 6 && e.is_unavailable() => {
                    tracing::warn!(error = %e, ?wait, "cannot store log lines; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(3));
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if inserted > 0 {
            // Bytes of the new lines: all of them unless some were already stored.
            let bytes: usize = self.batch.iter().map(|l| l.text.len()).sum();
            let bytes = bytes as u64 * inserted / self.batch.len() as u64;
            metrics::counter!("slipway_build_log_lines_total").increment(inserted);
            metrics::counter!("slipway_build_log_bytes_total").increment(bytes);
        }
        self.batch.clear();
        self.oldest = None;
        Ok(())
    }
}
