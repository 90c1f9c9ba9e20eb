//! The pull-request status reporter: what a preview is doing, shown on its PR.
//!
//! [`StatusWriter`] writes one update: it keeps ONE comment per PR, found again by a hidden
//! marker and edited in place, and drives a GitHub Deployment through its statuses. Updates of
//! one PR are serialized in-process by a keyed lock, and the comment is searched for before
//! one is created, so racing updates never duplicate it; an update older than the last one
//! written is skipped.
//!
//! [`StatusReporter`] runs the writer in the background: `report` never blocks and never
//! fails; bursts coalesce (only the latest state per PR is written); failed writes are
//! retried with backoff, honouring GitHub's rate limits; a full queue drops the oldest PR's
//! pending state, never a newer one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_core::BackoffPolicy;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::PreviewKey;
use crate::client::{
    ClientError, DeploymentState, GithubClient, NewDeployment, NewDeploymentStatus,
};
use crate::clock::Clock;
use crate::sanitize::{safe_url, sanitize, truncate};

/// The hidden marker that identifies Slipway's comment on a PR.
pub const DEFAULT_MARKER: &str = "<!-- slipway-preview -->";

/// Failures writing a status to GitHub (the reporter retries them; callers never see them).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl StatusError {
    fn is_retryable(&self) -> bool {
        match self {
            StatusError::Client(e) => e.is_retryable(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            StatusError::Client(e) => e.retry_after(),
        }
    }
}

/// Where a preview is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewState {
    Queued,
    Building,
    Deploying,
    Ready {
        url: String,
    },
    /// `step` is the failing step (`build`, `launch`, ...); `message` is sanitized before it
    /// is shown, and the full log is linked through the update's `log_url`.
    Failed {
        step: String,
        message: Option<String>,
    },
    TornDown,
}

impl PreviewState {
    fn deployment_state(&self) -> DeploymentState {
        match self {
            PreviewState::Queued => DeploymentState::Queued,
            PreviewState::Building | PreviewState::Deploying => DeploymentState::InProgress,
            PreviewState::Ready { .. } => DeploymentState::Success,
            PreviewState::Failed { .. } => DeploymentState::Failure,
            PreviewState::TornDown => DeploymentState::Inactive,
        }
    }

    fn headline(&self) -> String {
        match self {
            PreviewState::Queued => "⏳ Queued".into(),
            PreviewState::Building => "🔨 Building".into(),
            PreviewState::Deploying => "🚀 Deploying".into(),
            PreviewState::Ready { .. } => "✅ Ready".into(),
            PreviewState::Failed { step, .. } => {
                format!("❌ Failed at step `{}`", inline_code(&sanitize(step)))
            }
            PreviewState::TornDown => "🧹 Torn down".into(),
        }
    }
}

// Orders updates created in this process: the later created wins.
static SEQ: AtomicU64 = AtomicU64::new(1);

/// One state change of a preview, as the pipeline reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewUpdate {
    pub preview: PreviewKey,
    /// The commit being previewed (`None` for a teardown that does not know it).
    pub sha: Option<String>,
    pub state: PreviewState,
    /// A public link to the full log (Slipway's API), shown on the comment and deployment.
    pub log_url: Option<String>,
    pub at: DateTime<Utc>,
    seq: u64,
}

impl PreviewUpdate {
    pub fn new(preview: PreviewKey, sha: Option<&str>, state: PreviewState) -> Self {
        PreviewUpdate {
            preview,
            sha: sha.map(str::to_owned),
            state,
            log_url: None,
            at: Utc::now(),
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn with_log_url(mut self, url: impl Into<String>) -> Self {
        self.log_url = Some(url.into());
        self
    }

    /// The order of creation; a lower one never overwrites a higher one.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub marker: String,
    /// Deployments go to `<prefix>/<owner>/<repo>#<number>`.
    pub environment_prefix: String,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            marker: DEFAULT_MARKER.into(),
            environment_prefix: "preview".into(),
        }
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// A newer update was already written.
    Stale,
}

#[derive(Default)]
struct PrRecord {
    comment_id: Option<u64>,
    last_seq: u64,
    first_at: Option<DateTime<Utc>>,
    last_url: Option<String>,
    deployment: Option<DeploymentRecord>,
}

struct DeploymentRecord {
    id: u64,
    sha: String,
    last_state: Option<DeploymentState>,
}

/// Writes updates to GitHub, one PR at a time.
pub struct StatusWriter {
    client: Arc<GithubClient>,
    cfg: WriterConfig,
    // The keyed lock: one async mutex per PR (a few hundred bytes each, kept for the
    // process's life so a cached comment id survives).
    prs: Mutex<HashMap<PreviewKey, Arc<tokio::sync::Mutex<PrRecord>>>>,
}

impl StatusWriter {
    pub fn new(client: Arc<GithubClient>, cfg: WriterConfig) -> Self {
        StatusWriter {
            client,
            cfg,
            prs: Mutex::new(HashMap::new()),
        }
    }

    /// The deployment environment of a preview.
    pub fn environment(&self, p: &PreviewKey) -> String {
        format!("{}/{p}", self.cfg.environment_prefix)
    }

    /// Writes `update` (comment, then deployment status) unless a newer one was written.
    pub async fn apply(&self, update: &PreviewUpdate) -> Result<Applied, StatusError> {
        let record = {
            let mut prs = self.prs.lock().unwrap_or_else(|p| p.into_inner());
            prs.entry(update.preview.clone()).or_default().clone()
        };
        let mut rec = record.lock().await;
        if update.seq <= rec.last_seq {
            return Ok(Applied::Stale);
        }
        rec.first_at.get_or_insert(update.at);
        match &update.state {
            PreviewState::Ready { url } => rec.last_url = safe_url(url),
            PreviewState::TornDown => rec.last_url = None,
            _ => {}
        }
        let body = self.render(update, &rec);
        self.upsert_comment(&mut rec, &update.preview, &body)
            .await?;
        self.drive_deployment(&mut rec, update).await?;
        rec.last_seq = update.seq;
        Ok(Applied::Written)
    }

    async fn upsert_comment(
        &self,
        rec: &mut PrRecord,
        p: &PreviewKey,
        body: &str,
    ) -> Result<(), StatusError> {
        if let Some(id) = rec.comment_id {
            match self
                .client
                .update_issue_comment(&p.owner, &p.repo, id, body)
                .await
            {
                Ok(_) => return Ok(()),
                // Someone deleted it: find or create it again.
                Err(ClientError::Api { status: 404, .. }) => rec.comment_id = None,
                Err(e) => return Err(e.into()),
            }
        }
        let comments = self
            .client
            .list_issue_comments(&p.owner, &p.repo, p.number)
            .await?;
        // Ours start with the marker; a comment merely quoting it is not ours.
        let ours: Vec<_> = comments
            .into_iter()
            .filter(|c| {
                c.body
                    .as_deref()
                    .is_some_and(|b| b.trim_start().starts_with(&self.cfg.marker))
            })
            .collect();
        let mut kept: Option<usize> = None;
        for (i, c) in ours.iter().enumerate() {
            match self
                .client
                .update_issue_comment(&p.owner, &p.repo, c.id, body)
                .await
            {
                Ok(_) => {
                    kept = Some(i);
                    break;
                }
                // Gone meanwhile, or not ours to edit: try the next one.
                Err(ClientError::Api {
                    status: 403 | 404, ..
                }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        match kept {
            Some(i) => {
                let keep = &ours[i];
                rec.comment_id = Some(keep.id);
                // Another process may have raced us to create one: keep the oldest only (and
                // never touch a comment of another author).
                let author = keep.user.as_ref().map(|u| u.login.as_str());
                for dup in ours[i + 1..]
                    .iter()
                    .filter(|d| d.user.as_ref().map(|u| u.login.as_str()) == author)
                {
                    if let Err(e) = self
                        .client
                        .delete_issue_comment(&p.owner, &p.repo, dup.id)
                        .await
                    {
                        tracing::warn!(preview = %p, error = %e, "could not delete a duplicate comment");
                    }
                }
            }
            None => {
                let c = self
                    .client
                    .create_issue_comment(&p.owner, &p.repo, p.number, body)
                    .await?;
                rec.comment_id = Some(c.id);
            }
        }
        Ok(())
    }

    async fn drive_deployment(
        &self,
        rec: &mut PrRecord,
        u: &PreviewUpdate,
    ) -> Result<(), StatusError> {
        let p = &u.preview;
        let env = self.environment(p);
        let log_url = u.log_url.as_deref().and_then(safe_url);
        let target = u.state.deployment_state();
        if target == DeploymentState::Inactive {
            let id = match &rec.deployment {
                Some(d) if d.last_state == Some(DeploymentState::Inactive) => return Ok(()),
                Some(d) => Some(d.id),
                // Not known in this process (a restart): the newest of the environment.
                None => self
                    .client
                    .list_deployments(&p.owner, &p.repo, &env, None)
                    .await?
                    .first()
                    .map(|d| d.id),
            };
            if let Some(id) = id {
                self.post_status(p, id, target, log_url, None, "Preview torn down")
                    .await?;
                if let Some(d) = rec.deployment.as_mut() {
                    d.last_state = Some(target);
                }
            }
            return Ok(());
        }
        let Some(sha) = u.sha.as_deref() else {
            return Ok(());
        };
        let current = rec.deployment.as_ref().filter(|d| d.sha == sha);
        if current.is_none() {
            // A new commit (or a restart): reuse a deployment GitHub has for this sha, create
            // one otherwise, and retire the one it supersedes.
            let listed = self
                .client
                .list_deployments(&p.owner, &p.repo, &env, None)
                .await?;
            let previous = match &rec.deployment {
                Some(d) if d.last_state != Some(DeploymentState::Inactive) => Some(d.id),
                Some(_) => None,
                None => listed.iter().find(|d| d.sha != sha).map(|d| d.id),
            };
            let id = match listed.iter().find(|d| d.sha == sha) {
                Some(d) => d.id,
                None => {
                    self.client
                        .create_deployment(&p.owner, &p.repo, &NewDeployment::preview(sha, &env))
                        .await?
                        .id
                }
            };
            if let Some(old) = previous.filter(|old| *old != id) {
                self.post_status(
                    p,
                    old,
                    DeploymentState::Inactive,
                    None,
                    None,
                    "Superseded by a newer commit",
                )
                .await?;
            }
            rec.deployment = Some(DeploymentRecord {
                id,
                sha: sha.to_owned(),
                last_state: None,
            });
        }
        let Some(d) = rec.deployment.as_mut() else {
            return Ok(());
        };
        if d.last_state == Some(target) {
            return Ok(());
        }
        let env_url = match &u.state {
            PreviewState::Ready { url } => safe_url(url),
            _ => None,
        };
        let description = match &u.state {
            PreviewState::Failed { step, .. } => format!("Failed at step {}", sanitize(step)),
            other => strip_emoji(&other.headline()),
        };
        let id = d.id;
        self.post_status(p, id, target, log_url, env_url, &description)
            .await?;
        d.last_state = Some(target);
        Ok(())
    }

    async fn post_status(
        &self,
        p: &PreviewKey,
        deployment_id: u64,
        state: DeploymentState,
        log_url: Option<String>,
        environment_url: Option<String>,
        description: &str,
    ) -> Result<(), StatusError> {
        let status = NewDeploymentStatus {
            state,
            log_url,
            description: Some(truncate(description, 140)),
            environment_url,
            auto_inactive: false,
        };
        self.client
            .create_deployment_status(&p.owner, &p.repo, deployment_id, &status)
            .await?;
        Ok(())
    }

    /// The comment's Markdown. Every dynamic part is sanitized.
    fn render(&self, u: &PreviewUpdate, rec: &PrRecord) -> String {
        let mut rows: Vec<(String, String)> = vec![("Status".into(), u.state.headline())];
        match &u.state {
            PreviewState::Ready { url } => {
                let shown = safe_url(url).unwrap_or_else(|| "(not publicly reachable)".into());
                rows.push(("Preview".into(), shown));
            }
            PreviewState::TornDown => {
                rows.push(("Preview".into(), "deleted".into()));
            }
            _ => {
                if let Some(url) = &rec.last_url {
                    rows.push(("Previous preview".into(), url.clone()));
                }
            }
        }
        if let Some(sha) = &u.sha {
            let short: String = sha.chars().take(12).collect();
            // A bare hex sha is linked to the commit by GitHub; anything else is quoted.
            let shown = if short.len() >= 7 && short.bytes().all(|b| b.is_ascii_hexdigit()) {
                short
            } else {
                format!("`{}`", inline_code(&sanitize(&short)))
            };
            rows.push(("Commit".into(), shown));
        }
        if let Some(log) = u.log_url.as_deref().and_then(safe_url) {
            rows.push(("Logs".into(), format!("[full log]({log})")));
        }
        if let Some(first) = rec.first_at {
            rows.push(("Started".into(), stamp(first)));
        }
        rows.push(("Updated".into(), stamp(u.at)));

        let mut out = format!(
            "{}\n### Slipway preview for `{}`\n\n| | |\n|---|---|\n",
            self.cfg.marker,
            inline_code(&u.preview.to_string())
        );
        for (k, v) in rows {
            out.push_str(&format!("| **{k}** | {} |\n", v.replace('|', "\\|")));
        }
        if let PreviewState::Failed {
            message: Some(m), ..
        } = &u.state
        {
            let clean = truncate(&sanitize(m), 1500).replace("```", "'''");
            if !clean.is_empty() {
                out.push_str(&format!("\n```text\n{clean}\n```\n"));
            }
            out.push_str("\nThe full log has the details.\n");
        }
        out
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn inline_code(s: &str) -> String {
    s.replace('`', "'")
}

fn strip_emoji(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii() || c.is_alphanumeric())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Settings of the background reporter.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// PRs with a pending update; when full, the oldest PR's pending update is dropped.
    pub capacity: usize,
    /// Concurrent writers (different PRs only; one PR is never written twice at once).
    pub workers: usize,
    /// Attempts per update, counting the first.
    pub max_attempts: u32,
    pub backoff: BackoffPolicy,
}

impl Default for ReporterConfig {
    fn default() -> Self {
        ReporterConfig {
            capacity: 1024,
            workers: 4,
            max_attempts: 6,
            backoff: BackoffPolicy {
                base: Duration::from_secs(1),
                factor: 4,
                cap: Duration::from_secs(60),
            },
        }
    }
}

/// Counters of the reporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReporterStats {
    pub reported: u64,
    /// Replaced by a newer state of the same PR before being written.
    pub coalesced: u64,
    /// Dropped because the queue was full.
    pub dropped: u64,
    pub written: u64,
    /// Given up after retries or because GitHub refused for good.
    pub failed: u64,
}

#[derive(Default)]
struct Queue {
    latest: HashMap<PreviewKey, PreviewUpdate>,
    order: VecDeque<PreviewKey>,
    busy: HashSet<PreviewKey>,
    stats: ReporterStats,
}

struct Shared {
    writer: Arc<StatusWriter>,
    // The client's clock, so tests wait out minutes of rate limit in no time.
    clock: Arc<dyn Clock>,
    cfg: ReporterConfig,
    queue: Mutex<Queue>,
    work: Notify,
    idle: Notify,
    cancel: CancellationToken,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle callers report to; cheap to clone. Workers stop when the last clone is dropped
/// or on [`StatusReporter::shutdown`].
#[derive(Clone)]
pub struct StatusReporter {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl StatusReporter {
    /// Starts the workers on the current tokio runtime.
    pub fn start(writer: Arc<StatusWriter>, cfg: ReporterConfig) -> Self {
        let cancel = CancellationToken::new();
        let workers = cfg.workers.max(1);
        let shared = Arc::new(Shared {
            clock: writer.client.clock(),
            writer,
            cfg,
            queue: Mutex::new(Queue::default()),
            work: Notify::new(),
            idle: Notify::new(),
            cancel: cancel.clone(),
        });
        for _ in 0..workers {
            tokio::spawn(worker(shared.clone()));
        }
        StatusReporter {
            shared,
            _guard: Arc::new(cancel.drop_guard()),
        }
    }

    /// Queues `update`; returns at once and never fails. A pending older state of the same PR
    /// is replaced (coalescing); an older update than the pending one is ignored.
    pub fn report(&self, update: PreviewUpdate) {
        let mut q = self.shared.queue();
        q.stats.reported += 1;
        let key = update.preview.clone();
        if let Some(pending) = q.latest.get_mut(&key) {
            if update.seq > pending.seq {
                *pending = update;
            }
            q.stats.coalesced += 1;
        } else {
            if q.latest.len() >= self.shared.cfg.capacity.max(1)
                && let Some(oldest) = q.order.pop_front()
            {
                q.latest.remove(&oldest);
                q.stats.dropped += 1;
                tracing::warn!(preview = %oldest, "status queue full; dropped a pending update");
            }
            q.order.push_back(key.clone());
            q.latest.insert(key, update);
        }
        drop(q);
        self.shared.work.notify_one();
    }

    /// PRs with an update waiting, and PRs being written now.
    pub fn backlog(&self) -> (usize, usize) {
        let q = self.shared.queue();
        (q.latest.len(), q.busy.len())
    }

    pub fn stats(&self) -> ReporterStats {
        self.shared.queue().stats
    }

    /// Waits until nothing is pending or being written (wrap it in a timeout).
    pub async fn flush(&self) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let q = self.shared.queue();
                if q.latest.is_empty() && q.busy.is_empty() {
                    return;
                }
            }
            // Re-check now and then in case a wake-up raced the check above.
            let _ = tokio::time::timeout(Duration::from_millis(200), idle).await;
        }
    }

    /// Flushes for at most `grace`, then stops the workers.
    pub async fn shutdown(self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.flush()).await;
        self.shared.cancel.cancel();
    }
}

async fn worker(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut q = shared.queue();
            let pos = q.order.iter().position(|k| !q.busy.contains(k));
            match pos.and_then(|i| q.order.remove(i)) {
                Some(key) => {
                    let update = q.latest.remove(&key);
                    q.busy.insert(key);
                    update
                }
                None => None,
            }
        };
        let Some(update) = next else {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = shared.work.notified() => continue,
            }
        };
        let outcome = write_with_retries(&shared, &update).await;
        let mut q = shared.queue();
        q.busy.remove(&update.preview);
        match outcome {
            Some(true) => q.stats.written += 1,
            Some(false) => q.stats.failed += 1,
            None => {}
        }
        let idle = q.latest.is_empty() && q.busy.is_empty();
        let more = !q.latest.is_empty();
        drop(q);
        if idle {
            shared.idle.notify_waiters();
        }
        if more {
            // A PR that was busy may have a pending update another worker skipped.
            shared.work.notify_one();
        }
        if shared.cancel.is_cancelled() {
            return;
        }
    }
}

/// `Some(true)` written, `Some(false)` given up, `None` superseded or stopped.
async fn write_with_retries(shared: &Shared, update: &PreviewUpdate) -> Option<bool> {
    let max = shared.cfg.max_attempts.max(1);
    for attempt in 1..=max {
        match shared.writer.apply(update).await {
            Ok(_) => return Some(true),
            Err(e) if !e.is_retryable() || attempt == max => {
                tracing::warn!(preview = %update.preview, attempt, error = %e, "giving up a PR status update");
                return Some(false);
            }
            Err(e) => {
                let wait = e
                    .retry_after()
                    .unwrap_or_else(|| shared.cfg.backoff.delay(attempt));
                tracing::info!(preview = %update.preview, attempt, error = %e, wait_ms = wait.as_millis() as u64, "PR status update failed; retrying");
                if newer_pending(shared, update) {
                    return None;
                }
                tokio::select! {
                    _ = shared.cancel.cancelled() => return None,
                    _ = shared.clock.sleep(wait) => {}
                }
                // A newer state arrived meanwhile: it replaces this one.
                if newer_pending(shared, update) {
                    return None;
                }
            }
        }
    }
    Some(false)
}

fn newer_pending(shared: &Shared, update: &PreviewUpdate) -> bool {
    shared
        .queue()
        .latest
        .get(&update.preview)
        .is_some_and(|p| p.seq > update.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientConfig, Credentials, Secret};

    fn writer() -> StatusWriter {
        let c = GithubClient::new(ClientConfig::new(
            "http://127.0.0.1:1",
            Credentials::Token(Secret::new("t")),
        ))
        .unwrap();
        StatusWriter::new(Arc::new(c), WriterConfig::default())
    }

    #[test]
    fn render_failed_is_sanitized_and_links_the_log() {
        let w = writer();
        let u = PreviewUpdate::new(
            PreviewKey::new("o", "r", 7),
            Some("0123456789abcdef0123456789abcdef01234567"),
            PreviewState::Failed {
                step: "build".into(),
                message: Some(
                    "push to http://registry.slipway.svc:5000 failed with ghp_abcdefghijklmnopqrstuvwxyz0123456789".into(),
                ),
            },
        )
        .with_log_url("https://slipway.example.com/v1/jobs/1/logs");
        let body = w.render(&u, &PrRecord::default());
        assert!(body.starts_with(DEFAULT_MARKER));
        assert!(body.contains("Failed at step `build`"));
        assert!(body.contains("[full log](https://slipway.example.com/v1/jobs/1/logs)"));
        assert!(!body.contains("ghp_"));
        assert!(!body.contains(".svc"));
        assert!(body.contains("| **Commit** | 0123456789ab |"));
    }

    #[test]
    fn seq_is_monotonic() {
        let a = PreviewUpdate::new(PreviewKey::new("o", "r", 1), None, PreviewState::Queued);
        let b = PreviewUpdate::new(PreviewKey::new("o", "r", 1), None, PreviewState::Queued);
        assert!(b.seq() > a.seq());
    }
}
