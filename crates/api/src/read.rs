//! The read queries behind every view: the JSON API's handlers, the MCP tools and the
//! dashboard call these and get the read models of `crate::views`, so a job, a preview, a log
//! or a queue looks the same everywhere and is read by one query.

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{
    JobView, List, LogLineView, LogTailLine, LogTailView, LogsView, PreviewDetailView, PreviewView,
    PullRequestRef, QueueCountsView, QueueList, QueueView, ResourceUseView, WorkerView,
};
use chrono::{DateTime, Utc};
use slipway_core::{JobId, JobKind};
use slipway_shared::store::{JobFilter, PreviewFilter, PreviewRecord};

/// A page of jobs, newest first, each with its attempts (one query for all attempts).
pub async fn jobs(
    state: &AppState,
    filter: &JobFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<List<JobView>, ApiError> {
    let page = state.store.list_jobs(filter, cursor, limit).await?;
    let ids: Vec<_> = page.items.iter().map(|j| j.id).collect();
    let mut attempts = state.store.attempts_for(&ids).await?;
    let items = page
        .items
        .into_iter()
        .map(|job| {
            let a = attempts.remove(&job.id).unwrap_or_default();
            JobView::new(job, a)
        })
        .collect();
    Ok(List {
        items,
        next_cursor: page.next_cursor,
    })
}

/// One job with its attempts, or a 404.
pub async fn job(state: &AppState, id: JobId) -> Result<JobView, ApiError> {
    let job = state.job(id).await?;
    state.job_view(job).await
}

/// A page of previews, newest first.
pub async fn previews(
    state: &AppState,
    filter: &PreviewFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<List<PreviewView>, ApiError> {
    let page = state
        .store
        .list_previews_filtered(filter, cursor, limit)
        .await?;
    Ok(List {
        items: page.items.into_iter().map(PreviewView::from).collect(),
        next_cursor: page.next_cursor,
    })
}

/// The latest resource readings of `keys` (those that have one), by preview key: one query for
/// a whole page of previews (the dashboard's list shows use against quota per row).
pub async fn preview_usages(
    state: &AppState,
    keys: &[String],
) -> Result<std::collections::HashMap<String, ResourceUseView>, ApiError> {
    Ok(state
        .store
        .preview_usage(keys)
        .await?
        .into_iter()
        .map(|u| (u.preview.clone(), ResourceUseView::from(u)))
        .collect())
}

/// The newest build and launch of a preview (the previews list shows their states).
#[derive(Debug, Clone, Default)]
pub struct LatestJobs {
    pub build: Option<(JobId, slipway_core::JobState)>,
    pub launch: Option<(JobId, slipway_core::JobState)>,
}

/// [`LatestJobs`] of `keys` (those with a build or launch), by preview key: one query for a
/// whole page of previews.
pub async fn latest_jobs(
    state: &AppState,
    keys: &[String],
) -> Result<std::collections::HashMap<String, LatestJobs>, ApiError> {
    let mut out: std::collections::HashMap<String, LatestJobs> = Default::default();
    for (preview, kind, id, job_state) in state.store.latest_preview_jobs(keys).await? {
        let slot = out.entry(preview).or_default();
        match kind {
            JobKind::Build => slot.build = Some((id, job_state)),
            JobKind::Launch => slot.launch = Some((id, job_state)),
            JobKind::Cleanup => {}
        }
    }
    Ok(out)
}

/// The repository filter of the preview list as a key prefix: GitHub previews are keyed
/// `<owner>/<repo>#<number>`, so `owner/repo` (or its `https://host/owner/repo(.git)` URL)
/// selects that repository's pull-request previews.
pub fn repository_prefix(repository: &str) -> Option<String> {
    let r = repository.trim();
    let path = match r.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p)?,
        None => r,
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, repo) = path.split_once('/')?;
    // GitHub's owner and repository names: letters, digits, `-`, `_` and `.` (so no byte
    // Postgres refuses, such as NUL, reaches the query).
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if !name(owner) || !name(repo) {
        return None;
    }
    Some(format!("{owner}/{repo}#"))
}

/// One preview by key, or a 404.
pub async fn preview(state: &AppState, key: &str) -> Result<PreviewView, ApiError> {
    Ok(preview_record(state, key).await?.into())
}

async fn preview_record(state: &AppState, key: &str) -> Result<PreviewRecord, ApiError> {
    state
        .store
        .get_preview(key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("preview {key:?} not found")))
}

/// The preview a reference names: its key (`org/app#42`), its namespace, or its pull
/// request's URL (`https://github.com/org/app/pull/42`, which is the key `org/app#42`).
pub async fn find_preview(state: &AppState, reference: &str) -> Result<PreviewRecord, ApiError> {
    let reference = reference.trim();
    if let Some(p) = state.store.get_preview(reference).await? {
        return Ok(p);
    }
    if let Some(key) = pull_request_key(reference)
        && let Some(p) = state.store.get_preview(&key).await?
    {
        return Ok(p);
    }
    if let Some(p) = state.store.get_preview_by_namespace(reference).await? {
        return Ok(p);
    }
    Err(ApiError::NotFound(format!(
        "no preview has the key, namespace or pull-request URL {reference:?}"
    )))
}

/// `https://<host>/<owner>/<repo>/pull/<n>` -> `<owner>/<repo>#<n>`.
pub fn pull_request_key(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (_, path) = rest.split_once('/')?;
    let path = path.split(['?', '#']).next()?;
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [owner, repo, "pull" | "pulls", n] if !owner.is_empty() && !repo.is_empty() => {
            let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
            Some(format!("{owner}/{repo}#{n}"))
        }
        _ => None,
    }
}

/// How many of a preview's jobs its detail shows.
pub const LATEST_JOBS: u32 = 5;

/// A preview by key, namespace or pull-request URL, with its pull request, age and latest
/// jobs. A preview no launch has recorded yet (its first build is queued, running or failed)
/// is found by its key through its jobs.
pub async fn preview_detail(
    state: &AppState,
    reference: &str,
) -> Result<PreviewDetailView, ApiError> {
    let record = match find_preview(state, reference).await {
        Ok(r) => Some(r),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let key = match &record {
        Some(r) => r.key.clone(),
        None => pull_request_key(reference).unwrap_or_else(|| reference.trim().to_owned()),
    };
    let filter = JobFilter {
        preview: Some(key.clone()),
        ..JobFilter::default()
    };
    let latest = jobs(state, &filter, None, LATEST_JOBS).await?.items;
    if record.is_none() && latest.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no preview has the key, namespace or pull-request URL {reference:?}"
        )));
    }
    let pull_request = slipway_github::PreviewKey::parse(&key).map(|k| PullRequestRef {
        repository: k.full_name(),
        number: k.number,
    });
    let first_seen = record
        .as_ref()
        .map(|r| r.created_at)
        .or_else(|| latest.iter().map(|j| j.created_at).min())
        .unwrap_or_else(Utc::now);
    let resource_use = match &record {
        Some(r) if r.deleted_at.is_none() => preview_usages(state, std::slice::from_ref(&r.key))
            .await?
            .remove(&r.key),
        _ => None,
    };
    Ok(PreviewDetailView {
        key,
        preview: record.map(PreviewView::from),
        pull_request,
        age_s: (Utc::now() - first_seen).num_seconds().max(0),
        resource_use,
        latest_jobs: latest,
    })
}

/// The key of the preview a reference names (see [`preview_detail`]): a recorded preview's, or
/// else a key (or pull-request URL) that has jobs.
pub async fn preview_key(state: &AppState, reference: &str) -> Result<String, ApiError> {
    Ok(preview_detail(state, reference).await?.key)
}

fn ms(t: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(t).ok()?)
}

/// One queue's figures and live workers.
pub async fn queue(state: &AppState, kind: JobKind) -> Result<QueueView, ApiError> {
    let (counts, age, workers) = tokio::try_join!(
        state.queue.counts(kind),
        state.queue.oldest_waiting_age(kind),
        state.queue.workers(kind),
    )?;
    Ok(QueueView {
        queue: kind.queue_name().to_owned(),
        counts: QueueCountsView {
            waiting: counts.waiting,
            active: counts.active,
            delayed: counts.delayed,
            completed: counts.completed,
            failed: counts.dead,
        },
        paused: counts.paused,
        oldest_waiting_age_s: age.map(|d| d.as_secs_f64()),
        workers: workers
            .into_iter()
            .map(|w| WorkerView {
                id: w.id,
                host: w.host,
                pid: w.pid,
                concurrency: w.concurrency,
                started_at: ms(w.started_at_ms),
                last_heartbeat: ms(w.last_heartbeat_ms),
                jobs: w.jobs,
            })
            .collect(),
    })
}

/// Every queue's figures.
/// Jobs finished per minute over the last hour (the current minute last), zeros included.
pub async fn throughput(state: &AppState) -> Result<crate::views::ThroughputView, ApiError> {
    const MINUTES: i32 = 60;
    let counts: std::collections::HashMap<_, _> = state
        .store
        .finished_per_minute(MINUTES)
        .await?
        .into_iter()
        .collect();
    let now = Utc::now();
    let this_minute = now
        - chrono::Duration::seconds(now.timestamp() % 60)
        - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
    // The window ends at Postgres's latest minute if its clock is ahead of ours.
    let this_minute = counts
        .keys()
        .copied()
        .max()
        .map_or(this_minute, |m| m.max(this_minute));
    let minutes = (0..MINUTES)
        .rev()
        .map(|back| {
            let minute = this_minute - chrono::Duration::minutes(i64::from(back));
            crate::views::MinuteCount {
                minute,
                finished: counts.get(&minute).copied().unwrap_or(0),
            }
        })
        .collect();
    Ok(crate::views::ThroughputView { minutes })
}

pub async fn queues(state: &AppState) -> Result<QueueList, ApiError> {
    let mut items = Vec::new();
    for kind in JobKind::ALL {
        items.push(queue(state, kind).await?);
    }
    Ok(QueueList { items })
}

/// `<attempt>:<seq>` of a log line: where the next page starts.
pub fn position(line: &LogLineView) -> String {
    format!("{}:{}", line.attempt, line.seq)
}

/// A page of a job's log after `after`, `limit` lines.
pub async fn log_page(
    state: &AppState,
    id: JobId,
    after: Option<(i32, i64)>,
    limit: u32,
) -> Result<LogsView, ApiError> {
    let job = state.job(id).await?;
    let lines: Vec<LogLineView> = state
        .store
        .read_logs(id, after, limit)
        .await?
        .into_iter()
        .map(LogLineView::from)
        .collect();
    let complete = job.state.is_terminal() && (lines.len() as u32) < limit;
    let last = lines.last();
    Ok(LogsView {
        next: last
            .map(position)
            .or_else(|| after.map(|(a, s)| format!("{a}:{s}"))),
        next_seq: last
            .map(|l| l.seq + 1)
            .or(after.map(|(_, s)| s + 1))
            .unwrap_or(0),
        complete,
        lines,
    })
}

/// What a log tail may hold: the last `lines` lines of one attempt, at most `max_bytes` of
/// text in all.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    pub lines: u32,
    pub max_bytes: usize,
    pub timestamps: bool,
}

/// The end of one attempt's log (the job's latest attempt unless `attempt` is given), newest
/// lines kept when the byte cap cuts; `truncated` says lines were left out.
pub async fn log_tail(
    state: &AppState,
    id: JobId,
    attempt: Option<i32>,
    limits: TailLimits,
) -> Result<LogTailView, ApiError> {
    let job = state.job(id).await?;
    let attempts = state.store.attempts(id).await?;
    let attempt = match attempt {
        Some(a) if attempts.iter().any(|x| x.attempt == a) => Some(a),
        Some(a) => {
            return Err(ApiError::invalid(
                "invalid_field",
                format!(
                    "job {id} has no attempt {a} (its attempts: {})",
                    if attempts.is_empty() {
                        "none yet".to_owned()
                    } else {
                        attempts
                            .iter()
                            .map(|x| x.attempt.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                Some("attempt".into()),
            ));
        }
        None => attempts.iter().map(|a| a.attempt).max(),
    };
    let mut lines = Vec::new();
    let mut truncated = false;
    if let Some(a) = attempt {
        // One line more than asked: its presence says older lines were left out.
        let mut stored = state.store.log_tail(id, a, limits.lines + 1).await?;
        if stored.len() > limits.lines as usize {
            stored.remove(0);
            truncated = true;
        }
        let mut budget = limits.max_bytes;
        for line in stored.into_iter().rev() {
            let mut text = line.text;
            if text.len() > budget {
                if !lines.is_empty() {
                    truncated = true;
                    break;
                }
                // The newest line alone is over the cap: its start is kept.
                let mut cut = budget;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                truncated = true;
            }
            budget -= text.len();
            lines.push(LogTailLine {
                seq: line.seq,
                ts: limits.timestamps.then_some(line.ts),
                stream: line.stream,
                text,
            });
        }
        lines.reverse();
    }
    Ok(LogTailView {
        job_id: job.id,
        kind: job.kind.to_string(),
        state: job.state.to_string(),
        attempt,
        error: job.error,
        lines,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pull_request_urls_name_their_preview() {
        use super::pull_request_key as key;
        assert_eq!(
            key("https://github.com/org/app/pull/42").as_deref(),
            Some("org/app#42")
        );
        assert_eq!(
            key("https://ghe.example.com/org/app/pull/7/files?x=1").as_deref(),
            None
        );
        assert_eq!(
            key("https://ghe.example.com/org/app/pull/7/").as_deref(),
            Some("org/app#7")
        );
        for bad in [
            "org/app#1",
            "https://github.com/org/app",
            "https://github.com/org/app/pull/0",
        ] {
            assert_eq!(key(bad), None, "{bad}");
        }
    }

    #[test]
    fn repositories_become_key_prefixes() {
        use super::repository_prefix as p;
        assert_eq!(p("org/app").as_deref(), Some("org/app#"));
        assert_eq!(
            p("https://github.com/org/app.git").as_deref(),
            Some("org/app#")
        );
        assert_eq!(
            p("https://github.com/org/app/").as_deref(),
            Some("org/app#")
        );
        assert_eq!(p("app"), None);
        assert_eq!(p("a/b/c"), None);
        // Only GitHub's name characters: nothing Postgres refuses (NUL) or LIKE reads.
        for bad in ["o\0rg/app", "org/a%p", "org/a#1", "/app", "org/ap p"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(p(" org/my.app_2-x/ ").as_deref(), Some("org/my.app_2-x#"));
    }
}
