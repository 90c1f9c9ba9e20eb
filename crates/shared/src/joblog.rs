//! A job attempt's `system` lines (what a worker says about its own work, beside the
//! container output), numbered within the attempt.
//!
//! Lines are best effort: a store error never fails the job. Lines that could not be stored
//! stay pending and go with the next write (appends are idempotent on `(job, attempt, seq)`),
//! and [`JobLog::note_once`] drops repeats so a pod stuck in the same state is reported once.

use crate::store::{LogLine, Store};
use chrono::Utc;
use slipway_core::JobId;
use std::collections::HashSet;

/// The longest line stored; container output can be arbitrarily long.
const MAX_LINE: usize = 2000;

/// Writes one attempt's `system` lines.
pub struct JobLog {
    store: Store,
    job: JobId,
    attempt: i32,
    next_seq: i64,
    pending: Vec<LogLine>,
    seen: HashSet<String>,
}

fn clip(text: &str) -> String {
    if text.len() <= MAX_LINE {
        return text.to_owned();
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl JobLog {
    pub fn new(store: Store, job: JobId, attempt: u32) -> JobLog {
        JobLog {
            store,
            job,
            attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
            next_seq: 1,
            pending: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Append lines now (with any still pending).
    pub async fn lines<I, S>(&mut self, lines: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for text in lines {
            self.pending.push(LogLine {
                seq: self.next_seq,
                ts: Utc::now(),
                stream: "system".into(),
                text: clip(text.as_ref()),
            });
            self.next_seq += 1;
        }
        self.flush().await;
    }

    /// Append one line.
    pub async fn line(&mut self, text: impl AsRef<str>) {
        self.lines([text]).await;
    }

    /// Append `lines` unless `key` was noted before in this attempt; returns whether it was
    /// new.
    pub async fn note_once<I, S>(&mut self, key: &str, lines: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if !self.seen.insert(key.to_owned()) {
            return false;
        }
        self.lines(lines).await;
        true
    }

    /// Whether `key` was noted in this attempt.
    pub fn noted(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    /// Store what is pending; on failure keep it for the next call.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self
            .store
            .append_logs(self.job, self.attempt, &self.pending)
            .await
        {
            Ok(_) => self.pending.clear(),
            Err(e) => tracing::warn!(error = %e, "job log lines not stored yet; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn long_lines_are_clipped_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(1500);
        let c = clip(&long);
        assert!(c.len() <= super::MAX_LINE + '…'.len_utf8());
        assert!(c.ends_with('…'));
    }
}
