//! Container log buffers: lines with timestamps, a "finished" flag, a change signal for
//! followers, and size-based rotation.
//!
//! Rotation follows the kubelet's container log manager
//! (`pkg/kubelet/logs/container_log_manager.go`): once the current file of a running container
//! reaches the size limit (`containerLogMaxSize`, 10 MiB by default) it is renamed and the
//! runtime reopens an empty file. The log API reads only the current file
//! (`pkg/kubelet/kuberuntime/logs/logs.go`, `ReadLogs`), so a request made after a rotation
//! no longer sees the older lines, while a follow already open drains the old file and then
//! reopens the new one (`waitLogs` reports the rename, `ReadLogs` reopens the path): it loses
//! nothing. The kubelet checks sizes every `containerLogMonitorInterval` (10 s); the simulator
//! checks on every write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The kubelet's default `containerLogMaxSize` (10 MiB).
pub const DEFAULT_ROTATE_BYTES: usize = 10 << 20;

/// The size a line takes in the runtime's CRI log file:
/// `<RFC 3339 nanos> stdout F <text>\n` (`parseCRILog` in the kubelet's `logs.go`); the
/// timestamp is always 30 bytes (`2026-01-02T03:04:05.123456789Z`).
fn cri_line_len(text: &str) -> usize {
    30 + " stdout F ".len() + text.len() + 1
}

#[derive(Debug, Default)]
struct Inner {
    lines: Vec<(DateTime<Utc>, String)>,
    /// Index of the first line of the current file (earlier lines are in rotated files).
    file_start: usize,
    /// Bytes in the current file.
    file_bytes: usize,
}

/// One container's log.
#[derive(Debug)]
pub struct LogBuf {
    inner: Mutex<Inner>,
    /// Rotate the current file once it holds this many bytes (None: never).
    rotate_bytes: Option<usize>,
    /// Number of lines, and whether the container has ended.
    changed: watch::Sender<(usize, bool)>,
}

impl LogBuf {
    fn new(rotate_bytes: Option<usize>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            rotate_bytes,
            changed: watch::channel((0, false)).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a line (rotating the current file when it reached the size limit).
    pub fn push(&self, line: String) {
        let n = {
            let mut g = self.lock();
            if let Some(max) = self.rotate_bytes {
                g.file_bytes += cri_line_len(&line);
                if g.file_bytes >= max {
                    // This line closes the file; the next one starts a new current file.
                    g.file_start = g.lines.len() + 1;
                    g.file_bytes = 0;
                }
            }
            g.lines.push((Utc::now(), line));
            g.lines.len()
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

    /// Lines from index `from` (over every file: what an open follow reads).
    #[must_use]
    pub fn lines_from(&self, from: usize) -> Vec<(DateTime<Utc>, String)> {
        let g = self.lock();
        g.lines.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// The current file: the index of its first line and its lines (what a new request reads).
    #[must_use]
    pub fn current_file(&self) -> (usize, Vec<(DateTime<Utc>, String)>) {
        let g = self.lock();
        (g.file_start, g.lines[g.file_start..].to_vec())
    }

    /// A receiver for changes.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<(usize, bool)> {
        self.changed.subscribe()
    }
}

/// All containers' logs, keyed by pod uid and container name.
#[derive(Debug)]
pub struct Logs {
    map: Mutex<HashMap<(String, String), Arc<LogBuf>>>,
    rotate_bytes: Option<usize>,
}

impl Default for Logs {
    fn default() -> Self {
        Self::new(Some(DEFAULT_ROTATE_BYTES))
    }
}

impl Logs {
    /// Logs whose files rotate at `rotate_bytes` (None: never).
    #[must_use]
    pub fn new(rotate_bytes: Option<usize>) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            rotate_bytes: rotate_bytes.filter(|b| *b > 0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<LogBuf>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The buffer of a container, created on first use.
    #[must_use]
    pub fn buf(&self, pod_uid: &str, container: &str) -> Arc<LogBuf> {
        let rotate = self.rotate_bytes;
        self.lock()
            .entry((pod_uid.to_string(), container.to_string()))
            .or_insert_with(|| Arc::new(LogBuf::new(rotate)))
            .clone()
    }

    /// The buffer if it exists.
    #[must_use]
    pub fn get(&self, pod_uid: &str, container: &str) -> Option<Arc<LogBuf>> {
        self.lock()
            .get(&(pod_uid.to_string(), container.to_string()))
            .cloned()
    }

    /// Finishes and forgets every buffer of a pod.
    pub fn drop_pod(&self, pod_uid: &str) {
        self.lock().retain(|(uid, _), b| {
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
        for ((uid, _), b) in self.lock().iter() {
            if uid == pod_uid {
                b.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_file_starts_after_a_rotation_and_followers_keep_every_line() {
        let b = LogBuf::new(Some(200));
        for i in 0..10 {
            b.push(format!("line {i} {}", "x".repeat(40)));
        }
        let (start, current) = b.current_file();
        assert!(start > 0 && start < 10, "{start}");
        assert_eq!(current.len(), 10 - start);
        assert_eq!(b.lines_from(0).len(), 10);
        let never = LogBuf::new(None);
        for i in 0..100 {
            never.push(format!("{i}"));
        }
        assert_eq!(never.current_file().0, 0);
    }
}
