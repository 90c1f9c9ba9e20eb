//! Where a build's log lines go: numbered from 0 per attempt, batched (by size and by age) into
//! `job_logs`, capped with a truncation marker, and the last lines kept in memory to explain a
//! failure.
//!
//! A log is read in several streams when a stream drops, goes silent or a worker takes over a
//! dead worker's Job. Each re-read resumes from the last line taken: the handler asks the
//! kubelet for the lines since that line's second ([`LogSink::since`]; `sinceTime` is inclusive
//! and whole seconds by the time it reaches the kubelet), and the sink skips what it already
//! holds (earlier timestamps, and the lines of the last timestamp it took, by text), then
//! numbers the rest after them. The store's seq key is therefore never relied on to drop
//! duplicates, so a log file that rotated meanwhile cannot renumber lines into it.
//!
//! Without a rotation a re-read always starts at or before the last line taken. If its first
//! line is later, the kubelet no longer has that line (its file was rotated; the log API serves
//! only the current file) and lines between may be lost: a `system` line says so, with the two
//! timestamps. Never a silent gap.
//!
//! The sink also reads BuildKit's step headers as they pass ([`ProgressTracker`]) and stores
//! the build's progress with the next batch, in the same transaction: one write per batch at
//! most, and only when the step changed.

use chrono::{DateTime, SubsecRound, Utc};
use slipway_core::JobId;
use slipway_core::progress::ProgressTracker;
use slipway_k8s::logs::DecodedLine;
use slipway_shared::store::{LogLine, Store, StoreError};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Histogram: time from the oldest container line of a batch to the batch's commit.
pub const LOG_LAG: &str = "slipway_build_log_lag_seconds";

/// How many of the last lines are kept for the failure message.
const TAIL_LINES: usize = 60;

/// Stored lines read back when an attempt's log is taken over.
const RESUME_LINES: u32 = 1000;

/// Batching and cap settings.
#[derive(Debug, Clone, Copy)]
pub struct SinkLimits {
    pub batch_lines: usize,
    pub batch_wait: Duration,
    pub max_lines: u64,
}

/// Postgres keeps microseconds: compare timestamps at that precision.
fn micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.trunc_subsecs(6)
}

/// The `system` line marking lines the kubelet no longer has: after `last` (the last line
/// taken) and before `next` (the first line of the re-read), if there is one.
fn gap_text(last: DateTime<Utc>, next: Option<DateTime<Utc>>) -> String {
    let span = match next {
        Some(next) => format!("between {} and {}", last.to_rfc3339(), next.to_rfc3339()),
        None => format!("after {}", last.to_rfc3339()),
    };
    format!(
        "[slipway] log lines {span} may be missing: the container's log file was rotated \
         before they were read"
    )
}

/// The progress of one re-read against what was taken before it.
#[derive(Debug)]
struct Reread {
    /// The re-read delivered a line at or before the last line taken: it overlaps, no gap.
    anchored: bool,
    /// Texts of the lines taken at the last timestamp, not yet seen again.
    unmatched: Vec<String>,
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
    /// The timestamp of the last container line taken (stored, pending, or dropped past the
    /// cap), to the microsecond.
    last_ts: Option<DateTime<Utc>>,
    /// The texts of the container lines taken at `last_ts`, in order.
    at_last: Vec<String>,
    /// Set while a re-read is still delivering lines that were taken before.
    reread: Option<Reread>,
    /// New container lines taken, over every read (progress, for the follower).
    taken: u64,
    /// BuildKit's progress over the attempt's lines (the stored ones read back on resume).
    progress: ProgressTracker,
    /// A progress change not yet stored (written with the next batch).
    pending_progress: Option<serde_json::Value>,
}

impl LogSink {
    /// A sink that continues the attempt's stored log, if any: its lines are numbered after
    /// the stored ones and a re-read skips what is stored.
    pub async fn resume(
        store: Store,
        job_id: JobId,
        attempt: i32,
        limits: SinkLimits,
    ) -> Result<Self, StoreError> {
        let stored = store.log_tail(job_id, attempt, RESUME_LINES).await?;
        let mut sink = LogSink {
            store,
            job_id,
            attempt,
            limits,
            batch: Vec::new(),
            oldest: None,
            next_seq: 0,
            truncated: false,
            tail: VecDeque::new(),
            last_ts: None,
            at_last: Vec::new(),
            reread: None,
            taken: 0,
            progress: ProgressTracker::new(),
            pending_progress: None,
        };
        if let Some(last) = stored.last() {
            sink.next_seq = last.seq + 1;
            sink.truncated = u64::try_from(sink.next_seq).unwrap_or(0) > limits.max_lines;
        }
        for line in stored.iter().filter(|l| l.stream != "system") {
            sink.remember(micros(line.ts), &line.text);
            sink.progress.push(&line.text);
        }
        Ok(sink)
    }

    /// Where the next read should start (`sinceTime`, in Unix seconds): the second of the last
    /// line taken, rounded down, so the read includes that line. None: read from the start.
    pub fn since(&self) -> Option<i64> {
        self.last_ts.map(|t| t.timestamp())
    }

    /// A new read of the log begins (from [`LogSink::since`]). Unwritten lines are kept: they
    /// were taken, and the read skips them.
    pub fn start_read(&mut self) {
        self.reread = self.last_ts.map(|_| Reread {
            anchored: false,
            unmatched: self.at_last.clone(),
        });
    }

    /// A complete read ended (the container had ended before it began). If it never reached
    /// back to the last line taken, the lines after that line are gone: say so.
    pub async fn end_complete_read(&mut self) -> Result<(), StoreError> {
        if let (Some(r), Some(last)) = (self.reread.take(), self.last_ts)
            && !r.anchored
        {
            self.take(Utc::now(), "system", gap_text(last, None))
                .await?;
        }
        Ok(())
    }

    /// When the pending batch must be written, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.limits.batch_wait)
    }

    /// New container lines taken so far (over every read).
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The last lines seen (for the failure message), capped or not.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    fn remember(&mut self, ts: DateTime<Utc>, text: &str) {
        if self.last_ts != Some(ts) {
            self.last_ts = Some(ts);
            self.at_last.clear();
        }
        self.at_last.push(text.to_owned());
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_owned());
    }

    /// Add a line of the container's log; writes the batch when it is full. During a re-read,
    /// lines taken before are skipped, and a gap before the first new line is marked.
    pub async fn push(&mut self, line: DecodedLine) -> Result<(), StoreError> {
        let ts = micros(line.ts.unwrap_or_else(Utc::now));
        if let (Some(r), Some(last)) = (self.reread.as_mut(), self.last_ts) {
            if ts < last {
                r.anchored = true;
                return Ok(());
            }
            if ts == last {
                r.anchored = true;
                if let Some(i) = r.unmatched.iter().position(|t| *t == line.text) {
                    r.unmatched.remove(i);
                    return Ok(());
                }
            }
            let anchored = r.anchored;
            self.reread = None;
            if !anchored {
                self.take(ts, "system", gap_text(last, Some(ts))).await?;
            }
        }
        self.remember(ts, &line.text);
        self.taken += 1;
        if self.progress.push(&line.text)
            && let Some(p) = self.progress.progress()
        {
            // The step began when its header was written (the container's clock).
            self.pending_progress = Some(serde_json::json!({
                "step": p.step,
                "steps": p.steps,
                "name": p.name,
                "step_started_at": ts,
            }));
            self.oldest.get_or_insert_with(Instant::now);
        }
        self.take(ts, "stdout", line.text).await
    }

    /// Add a line of the worker's own (`system`), stamped now; it does not move where the next
    /// read of the container's log starts.
    pub async fn system(&mut self, text: impl Into<String>) -> Result<(), StoreError> {
        self.take(Utc::now(), "system", text.into()).await
    }

    /// Number and batch a line (or drop it past the cap, after one truncation marker).
    async fn take(
        &mut self,
        ts: DateTime<Utc>,
        stream: &str,
        text: String,
    ) -> Result<(), StoreError> {
        let cap = i64::try_from(self.limits.max_lines).unwrap_or(i64::MAX);
        if self.next_seq < cap {
            self.batch.push(LogLine {
                seq: self.next_seq,
                ts,
                stream: stream.into(),
                text,
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
        if self.batch.is_empty() && self.pending_progress.is_none() {
            self.oldest = None;
            return Ok(());
        }
        let mut wait = Duration::from_millis(100);
        let mut tries = 0;
        let inserted = loop {
            match self
                .store
                .append_logs_with_progress(
                    self.job_id,
                    self.attempt,
                    &self.batch,
                    self.pending_progress.as_ref(),
                )
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
        // The lag of the batch's oldest container line (`system` lines are ours, stamped now or
        // with a gap's bounds). Lines read late (a stalled stream re-opened, a dead worker's Job
        // taken over) show here; the two clocks are the node's and this worker's.
        let oldest = self
            .batch
            .iter()
            .filter(|l| l.stream != "system")
            .map(|l| l.ts)
            .min();
        if let Some(oldest) = oldest {
            let lag = (Utc::now() - oldest).to_std().unwrap_or_default();
            metrics::histogram!(LOG_LAG).record(lag.as_secs_f64());
        }
        if inserted > 0 {
            // Bytes of the new lines: all of them unless some were already stored.
            let bytes: usize = self.batch.iter().map(|l| l.text.len()).sum();
            let bytes = bytes as u64 * inserted / self.batch.len() as u64;
            metrics::counter!("slipway_build_log_lines_total").increment(inserted);
            metrics::counter!("slipway_build_log_bytes_total").increment(bytes);
        }
        self.batch.clear();
        self.pending_progress = None;
        self.oldest = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;
    use slipway_core::JobKind;
    use slipway_shared::store::NewJob;
    use slipway_shared::testing::TestDb;

    const LIMITS: SinkLimits = SinkLimits {
        batch_lines: 100,
        batch_wait: Duration::from_secs(1),
        max_lines: 1000,
    };

    /// Line `i` at 10:00:00 + i × 100 ms, with a nanosecond part Postgres cannot keep.
    fn line(i: i64) -> DecodedLine {
        let ts = Utc.timestamp_opt(1_796_637_600, 0).unwrap()
            + chrono::TimeDelta::milliseconds(100 * i)
            + chrono::TimeDelta::nanoseconds(789);
        DecodedLine {
            ts: Some(ts),
            text: format!("line {i}"),
        }
    }

    async fn read(sink: &mut LogSink, lines: impl IntoIterator<Item = i64>) {
        sink.start_read();
        for i in lines {
            sink.push(line(i)).await.unwrap();
        }
        sink.flush().await.unwrap();
    }

    /// A dead worker stored lines 0..=24; its successor resumes the attempt's log.
    async fn taken_over() -> (TestDb, Store, JobId, LogSink) {
        let db = TestDb::new().await.unwrap();
        let store = db.store();
        let job = store
            .insert_job(NewJob::new(JobKind::Build, json!({})))
            .await
            .unwrap()
            .job;
        let mut first = LogSink::resume(store.clone(), job.id, 1, LIMITS)
            .await
            .unwrap();
        read(&mut first, 0..25).await;
        let sink = LogSink::resume(store.clone(), job.id, 1, LIMITS)
            .await
            .unwrap();
        (db, store, job.id, sink)
    }

    /// BuildKit's step headers become the job's progress, stored with the batch that carries
    /// them; output lines change nothing; a successor continues from the stored lines.
    #[tokio::test]
    async fn step_headers_are_recorded_as_the_builds_progress() {
        let db = TestDb::new().await.unwrap();
        let store = db.store();
        let job = store
            .insert_job(NewJob::new(JobKind::Build, json!({})))
            .await
            .unwrap()
            .job;
        store.start_attempt(job.id, 1, "w").await.unwrap();
        let at = |i: i64, text: &str| DecodedLine {
            ts: Some(Utc.timestamp_opt(1_796_637_600 + i, 0).unwrap()),
            text: text.into(),
        };
        let progress =
            |store: Store| async move { store.get_job(job.id).await.unwrap().unwrap().progress };
        let mut sink = LogSink::resume(store.clone(), job.id, 1, LIMITS)
            .await
            .unwrap();
        sink.start_read();
        for (i, text) in [
            "#1 [internal] load build definition from Dockerfile",
            "#1 DONE 0.0s",
            "#4 [builder 1/3] FROM docker.io/library/rust:1.85",
            "#5 [stage-1 1/2] FROM docker.io/library/debian:bookworm-slim",
            "#5 CACHED",
            "#6 [builder 2/3] RUN cargo build --release",
        ]
        .iter()
        .enumerate()
        {
            sink.push(at(i as i64, text)).await.unwrap();
        }
        assert_eq!(
            progress(store.clone()).await,
            None,
            "nothing before the flush"
        );
        sink.flush().await.unwrap();
        let p = progress(store.clone()).await.expect("progress stored");
        assert_eq!(
            (p["step"].as_u64(), p["steps"].as_u64()),
            (Some(3), Some(5))
        );
        assert_eq!(p["name"], "[builder 2/3] RUN cargo build --release");
        assert_eq!(p["step_started_at"], "2026-12-07T10:00:05Z");

        // Output alone stores no progress change; a new step does, in its batch.
        sink.push(at(6, "#6 12.3    Compiling serde v1.0.219"))
            .await
            .unwrap();
        sink.flush().await.unwrap();
        assert_eq!(progress(store.clone()).await, Some(p.clone()));

        // A successor reads the stored lines back, so its next step counts on from there.
        let mut next = LogSink::resume(store.clone(), job.id, 1, LIMITS)
            .await
            .unwrap();
        next.start_read();
        next.push(at(6, "#6 12.3    Compiling serde v1.0.219"))
            .await
            .unwrap();
        next.push(at(7, "#7 [builder 3/3] COPY . .")).await.unwrap();
        next.flush().await.unwrap();
        let p = progress(store.clone()).await.unwrap();
        assert_eq!(
            (p["step"].as_u64(), p["steps"].as_u64()),
            (Some(4), Some(5))
        );
    }

    #[tokio::test]
    async fn a_successor_resumes_after_the_stored_lines_without_duplicates() {
        let (_db, store, id, mut sink) = taken_over().await;
        // Resumes from line 24's second (10:00:02), which starts at line 20.
        assert_eq!(sink.since(), Some(1_796_637_602));
        // The kubelet re-sends lines 20..=24, then the new ones.
        read(&mut sink, 20..40).await;
        let stored = store.read_logs(id, None, 1000).await.unwrap();
        let texts: Vec<String> = stored.iter().map(|l| l.text.clone()).collect();
        assert_eq!(
            texts,
            (0..40).map(|i| format!("line {i}")).collect::<Vec<_>>()
        );
        assert!(stored.iter().enumerate().all(|(i, l)| l.seq == i as i64));
        // A complete read that only repeats what is held adds nothing, and no marker.
        read(&mut sink, 38..40).await;
        sink.end_complete_read().await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(store.read_logs(id, None, 1000).await.unwrap().len(), 40);
    }

    #[tokio::test]
    async fn a_successor_marks_the_lines_rotated_away_before_it_read_them() {
        let (_db, store, id, mut sink) = taken_over().await;
        // The file now starts at line 31: lines 25..=30 are gone.
        read(&mut sink, 31..35).await;
        let stored = store.read_logs(id, None, 1000).await.unwrap();
        assert_eq!(stored.len(), 25 + 1 + 4);
        let marker = &stored[25];
        assert_eq!((marker.seq, marker.stream.as_str()), (25, "system"));
        assert!(
            marker.text.contains("may be missing")
                && marker.text.contains("10:00:02.400")
                && marker.text.contains("10:00:03.100"),
            "{}",
            marker.text
        );
        assert_eq!(stored[26].text, "line 31");
        assert_eq!(stored[29].seq, 29);
    }

    #[tokio::test]
    async fn a_last_read_that_never_reaches_back_says_what_may_be_missing() {
        let (_db, store, id, mut sink) = taken_over().await;
        read(&mut sink, []).await;
        sink.end_complete_read().await.unwrap();
        sink.flush().await.unwrap();
        let stored = store.read_logs(id, None, 1000).await.unwrap();
        assert_eq!(stored.len(), 26);
        assert_eq!(stored[25].stream, "system");
        assert!(
            stored[25].text.contains("after 2026"),
            "{}",
            stored[25].text
        );
    }
}
