//! Container log buffers: lines with timestamps, a "finished" flag, and a change signal for
//! followers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// One container's log.
#[derive(Debug)]
pub struct LogBuf {
    lines: Mutex<Vec<(DateTime<Utc>, String)>>,
    /// Number of lines, and `usize::MAX` bit flips are avoided: finished is separate.
    changed: watch::Sender<(usize, bool)>,
}

impl LogBuf {
    fn new() -> Self {
        Self {
            lines: Mutex::new(Vec::new()),
            changed: watch::channel((0, false)).0,
        }
    }

    /// Appends a line.
    pub fn push(&self, line: String) {
        let n = {
            let mut g = self
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            g.push((Utc::now(), line));
            g.len()
        };
        self.changed.send_modify(|s| s.0 = n);
    }

    /// Marks the container as ended; followers stop.
    pub fn finish(&self) {
        self.changed.send_modify(|s| s.1 = true);
    }

    /// Whether the container has ended.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.changed.borrow().1
    }

    /// Lines from index `from`.
    #[must_use]
    pub fn lines_from(&self, from: usize) -> Vec<(DateTime<Utc>, String)> {
        let g = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// A receiver for changes.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<(usize, bool)> {
        self.changed.subscribe()
    }
}

/// All containers' logs, keyed by pod uid and container name.
#[derive(Debug, Default)]
pub struct Logs {
    map: Mutex<HashMap<(String, String), Arc<LogBuf>>>,
}

impl Logs {
    /// The buffer of a container, created on first use.
    #[must_use]
    pub fn buf(&self, pod_uid: &str, container: &str) -> Arc<LogBuf> {
        let mut g = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.entry((pod_uid.to_string(), container.to_string()))
            .or_insert_with(|| Arc::new(LogBuf::new()))
            .clone()
    }

    /// The buffer if it exists.
    #[must_use]
    pub fn get(&self, pod_uid: &str, container: &str) -> Option<Arc<LogBuf>> {
        let g = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.get(&(pod_uid.to_string(), container.to_string()))
            .cloned()
    }

    /// Finishes and forgets every buffer of a pod.
    pub fn drop_pod(&self, pod_uid: &str) {
        let mut g = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.retain(|(uid, _), b| {
            if uid == pod_uid {
                b.finish();
                false
            } else {
                true
            }
        });
    }

    /// Finishes every buffer of a pod (kept for reading).
    pub fn finish_pod(&self, pod_uid: &str) {
        let g = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((uid, _), b) in g.iter() {
            if uid == pod_uid {
                b.finish();
            }
        }
    }
}
