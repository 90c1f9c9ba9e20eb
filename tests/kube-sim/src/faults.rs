//! Fault injection rules (matched before routing) and the request recorder.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a matching fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum FaultAction {
    /// Answer with this status and a `Status` body (429 adds `Retry-After`).
    Status {
        /// HTTP code: 429, 500, 503, ...
        code: u16,
        /// `Retry-After` seconds.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Delay the request, then serve it normally.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// End a watch stream cleanly after this many events.
    DropWatch {
        /// Events sent before the stream ends.
        after_events: usize,
    },
    /// Cut a watch stream in the middle of a line after this many events.
    TruncateWatch {
        /// Whole events sent before the partial one.
        after_events: usize,
    },
    /// Answer a watch with HTTP 200 and an in-stream 410 Expired ERROR event.
    Expire,
    /// Cut a log stream (`pods/log`) after this many lines: the connection breaks mid-body
    /// and the client sees an incomplete response (a network cut, a proxy's timeout).
    DropLogs {
        /// Lines sent before the stream ends.
        after_lines: usize,
    },
    /// Send this many lines of a log stream (`pods/log`), then hold the connection open and
    /// send nothing more, whatever the container writes: a connection that died silently
    /// (no FIN, no RST) as a client without a read timeout sees it.
    StallLogs {
        /// Lines sent before the stream goes silent.
        after_lines: usize,
    },
}

/// A fault rule: which requests, what happens, how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`); None matches all.
    #[serde(default)]
    pub verb: Option<String>,
    /// Resource plural (`pods`, `jobs`, `pods/log`, ...); None matches all.
    #[serde(default)]
    pub resource: Option<String>,
    /// Substring of the path; None matches all.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// The effect.
    pub action: FaultAction,
    /// Apply to this many requests, then expire; None for unlimited.
    #[serde(default)]
    pub times: Option<u32>,
    /// Apply only for this long from when the rule is added.
    #[serde(default)]
    pub for_ms: Option<u64>,
    /// Let this many matching requests through untouched before the rule applies (they do
    /// not count against `times`).
    #[serde(default)]
    pub skip: Option<u32>,
}

impl FaultRule {
    /// A rule matching every request.
    #[must_use]
    pub fn new(action: FaultAction) -> Self {
        Self {
            verb: None,
            resource: None,
            path_contains: None,
            action,
            times: None,
            for_ms: None,
            skip: None,
        }
    }
    /// Only this verb.
    #[must_use]
    pub fn verb(mut self, v: &str) -> Self {
        self.verb = Some(v.into());
        self
    }
    /// Only this resource (plural, or `pods/log`).
    #[must_use]
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.into());
        self
    }
    /// Only paths containing `s`.
    #[must_use]
    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.into());
        self
    }
    /// Only the next `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
    /// Let the first `n` matching requests through first.
    #[must_use]
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = Some(n);
        self
    }
    /// Only during the next `d`.
    #[must_use]
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.for_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

/// The active fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<(FaultRule, Option<Instant>)>>,
}

impl Faults {
    /// Adds a rule.
    pub fn add(&self, rule: FaultRule) {
        let until = rule
            .for_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((rule, until));
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Number of rules still active.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether no rule is active.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The actions of the rules matching a request (consuming one use of each).
    pub fn take(&self, verb: &str, resource: &str, path: &str) -> Vec<FaultAction> {
        let mut g = self
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        g.retain(|(r, until)| until.is_none_or(|u| u > now) && r.times != Some(0));
        let mut out = Vec::new();
        for (r, _) in g.iter_mut() {
            let ok = r.verb.as_deref().is_none_or(|v| v == verb)
                && r.resource.as_deref().is_none_or(|x| x == resource)
                && r.path_contains.as_deref().is_none_or(|p| path.contains(p));
            if ok {
                if let Some(s) = r.skip.as_mut().filter(|s| **s > 0) {
                    *s -= 1;
                    continue;
                }
                if let Some(t) = r.times.as_mut() {
                    *t -= 1;
                }
                out.push(r.action.clone());
            }
        }
        g.retain(|(r, _)| r.times != Some(0));
        out
    }
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Raw query string ("" if none).
    pub query: String,
    /// Kubernetes verb, as matched by faults ("" for discovery and admin).
    pub verb: String,
    /// Resource plural, with `/sub` for subresources.
    pub resource: String,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Accept` header.
    pub accept: Option<String>,
    /// Request body (UTF-8 lossy, first 64 KiB).
    pub body: String,
    /// Response status code.
    pub status: u16,
}

impl RecordedRequest {
    /// The value of a query parameter.
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// Most requests the recorder keeps (the oldest are dropped), so a long-running `kube-sim`
/// does not grow without bound.
pub const RECORDER_LIMIT: usize = 50_000;

/// The request log.
#[derive(Debug, Default)]
pub struct Recorder {
    reqs: Mutex<std::collections::VecDeque<RecordedRequest>>,
}

impl Recorder {
    /// Appends a request.
    pub fn push(&self, r: RecordedRequest) {
        let mut g = self
            .reqs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.len() >= RECORDER_LIMIT {
            g.pop_front();
        }
        g.push_back(r);
    }
    /// A copy of every recorded request, oldest first.
    #[must_use]
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.reqs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.reqs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}
