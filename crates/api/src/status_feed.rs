//! The GitHub status feed: pull requests show what their previews are doing.
//!
//! One API replica at a time (the holder of the `slipway-github-status` advisory lock) polls
//! Postgres for previews whose jobs changed, derives each one's state from its jobs and preview
//! row ([`slipway_github::progress`]) and hands it to the [`StatusReporter`], which edits the
//! PR's one comment and drives its Deployment in the background (coalescing, retries, rate
//! limits). Deriving from Postgres rather than shipping events means a missed or repeated
//! change cannot leave a PR showing a stale state, the order of comment edits is the order in
//! which one process observed Postgres, and a new leader shows the truth at once (it re-reads
//! the last minutes). Builds and launches never wait for GitHub: nothing here is on their path.
//!
//! Only previews of enabled repositories with GitHub keys (`owner/repo#number`) are reported.

use chrono::{DateTime, Utc};
use slipway_github::{JobFacts, PreviewKey, PreviewUpdate, StatusReporter, progress};
use slipway_shared::leader::Leadership;
use slipway_shared::store::{JobFilter, Store, StoreError};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How far back a new leader looks, so a change made while no replica led is still shown.
const RESYNC: Duration = Duration::from_secs(15 * 60);
/// Re-read this much before the cursor: a transaction that began earlier can commit later.
const OVERLAP: Duration = Duration::from_secs(5);
/// Previews handled per poll.
const BATCH: i64 = 500;

/// Settings of the feed.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Public base URL of this API; log links on the PR point at `<url>/v1/jobs/<id>/logs`.
    pub public_url: Option<String>,
    pub poll: Duration,
}

/// What was last reported for a preview, so an unchanged state is not sent again.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    changed: DateTime<Utc>,
    progress: Option<(PreviewKey, slipway_github::Progress)>,
}

struct Feed {
    store: Store,
    reporter: StatusReporter,
    cfg: FeedConfig,
    shown: HashMap<String, Shown>,
}

/// Run the feed until `cancel`.
pub fn spawn(
    store: Store,
    reporter: StatusReporter,
    cfg: FeedConfig,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let feed = Feed {
        store,
        reporter,
        cfg,
        shown: HashMap::new(),
    };
    tokio::spawn(feed.run(cancel))
}

impl Feed {
    async fn run(mut self, cancel: CancellationToken) {
        let mut leadership = Leadership::new(&self.store, "slipway-github-status");
        let mut cursor: Option<DateTime<Utc>> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
            // Dropped at shutdown: Postgres may be what it waits on, and the next leader
            // re-reads what it missed.
            let round = self.round(&mut leadership, &mut cursor);
            tokio::select! {
                _ = cancel.cancelled() => break,
                () = round => {}
            }
        }
        leadership.release().await;
    }

    /// One poll: check the leadership and, when leading, report what changed since `cursor`.
    async fn round(&mut self, leadership: &mut Leadership, cursor: &mut Option<DateTime<Utc>>) {
        let leads = leadership.check().await.unwrap_or_else(|e| {
            warn!(error = %e, "cannot check the GitHub status leadership");
            false
        });
        if !leads {
            if cursor.take().is_some() {
                info!("no longer reporting pull-request status (another replica does)");
            }
            self.shown.clear();
            return;
        }
        let since = match *cursor {
            Some(c) => c,
            None => {
                info!("reporting pull-request status to GitHub");
                Utc::now() - RESYNC
            }
        };
        // What was shown long ago is only needed again if it changes, which re-reads it.
        let horizon = Utc::now() - RESYNC;
        self.shown.retain(|_, s| s.changed >= horizon);
        match self.poll(since).await {
            Ok(next) => *cursor = Some(next.max(since)),
            Err(e) => {
                warn!(error = %e, "GitHub status feed: reading changes failed");
                *cursor = Some(since);
            }
        }
    }

    /// Report every preview changed since `since`; returns the next cursor.
    async fn poll(&mut self, since: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
        let changed = self.store.previews_changed_since(since, BATCH).await?;
        let mut next = since;
        for (key, at) in changed {
            next = next.max(at - OVERLAP);
            if self.shown.get(&key).is_some_and(|s| s.changed >= at) {
                continue;
            }
            let progress = self.progress(&key).await?;
            let previous = self.shown.insert(
                key.clone(),
                Shown {
                    changed: at,
                    progress: progress.clone(),
                },
            );
            let Some((preview, p)) = progress else {
                continue;
            };
            if previous.and_then(|s| s.progress) == Some((preview.clone(), p.clone())) {
                continue;
            }
            let mut update = PreviewUpdate::new(preview, p.sha.as_deref(), p.state.clone());
            update.at = p.at;
            if let Some(base) = &self.cfg.public_url {
                update = update.with_log_url(format!(
                    "{}/v1/jobs/{}/logs",
                    base.trim_end_matches('/'),
                    p.job
                ));
            }
            debug!(preview = %key, state = ?p.state, "pull-request status changed");
            metrics::counter!("slipway_github_status_updates_total").increment(1);
            self.reporter.report(update);
        }
        Ok(next)
    }

    /// What the PR of preview `key` should show; `None` when it is not a GitHub preview of an
    /// enabled repository, or there is nothing to show.
    async fn progress(
        &self,
        key: &str,
    ) -> Result<Option<(PreviewKey, slipway_github::Progress)>, StoreError> {
        let Some(preview) = PreviewKey::parse(key) else {
            return Ok(None);
        };
        match self
            .store
            .get_repository(&preview.owner, &preview.repo)
            .await?
        {
            Some(r) if r.enabled => {}
            _ => return Ok(None),
        }
        let filter = JobFilter {
            preview: Some(key.to_owned()),
            ..JobFilter::default()
        };
        let jobs = self.store.list_jobs(&filter, None, 20).await?;
        let facts: Vec<JobFacts> = jobs
            .items
            .into_iter()
            .map(|j| JobFacts {
                id: j.id,
                kind: j.kind,
                state: j.state,
                commit: j.commit_sha,
                error: j.error,
                updated_at: j.updated_at,
            })
            .collect();
        let url = self
            .store
            .get_preview(key)
            .await?
            .filter(|p| p.deleted_at.is_none())
            .and_then(|p| p.url);
        Ok(progress(&facts, url.as_deref()).map(|p| (preview, p)))
    }
}
