//! The dashboard's live log and its download: `GET /ui/jobs/{id}/log/stream` (the shared
//! [`crate::tail`] follow, written for `/ui/assets/live.js`) and `GET /ui/jobs/{id}/log.txt`
//! (the whole log as text, paged from the store as it is sent).
//!
//! A stream's line events carry the line already split into ANSI segments by the server
//! ([`super::ansi`]), `{"stream", "ts", "segments": [{"class", "text"}]}`, so the browser
//! never interprets escape sequences or markup: live.js puts each segment's text into a span
//! with `textContent`. A `progress` event carries a running build's progress when it changes,
//! and the `end` event the job's final state.

use super::UiState;
use super::ansi;
use super::pages::error_page;
use super::session::Session;
use crate::error::ApiError;
use crate::tail::{self, TailFormat};
use crate::views::LogLineView;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slipway_shared::store::JobRecord;
use std::sync::Arc;

/// Lines per store read while a download is written.
const DOWNLOAD_PAGE: u32 = 2000;

/// The dashboard's line format, with the job's progress as its own event.
struct UiLines {
    progress: tail::ProgressEvents,
}

impl TailFormat for UiLines {
    fn line(&mut self, line: &LogLineView) -> String {
        serde_json::json!({
            "stream": line.stream,
            "ts": ts_text(line.ts),
            "segments": ansi::segments(&line.text),
        })
        .to_string()
    }

    fn job(&mut self, job: &JobRecord) -> Option<Event> {
        self.progress.event(job)
    }
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// Start after this position (`<attempt>:<seq>`, the last line the page shows).
    after: Option<String>,
}

/// `GET /ui/jobs/{id}/log/stream`: the job's lines after `after` (or `Last-Event-ID`) as
/// Server-Sent Events until the job ends.
pub async fn stream(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path(id): Path<String>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return super::pages::bad_query(&session, e),
    };
    let result = async {
        let id = crate::routes::job_id(&id)?;
        state.app.job(id).await?;
        let after = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(query.after)
            .map(|s| crate::routes::logs::parse_position(&s))
            .transpose()?;
        Ok::<_, ApiError>((id, after))
    }
    .await;
    match result {
        Ok((id, after)) => tail::follow(
            state.app.clone(),
            id,
            after,
            UiLines {
                progress: tail::ProgressEvents::default(),
            },
        )
        .into_response(),
        Err(e) => error_page(Some(&session), e),
    }
}

/// `GET /ui/jobs/{id}/log.txt`: every line of every attempt, as `text/plain`, an attachment.
/// The body is written page by page from the store, so a huge log is never held in memory.
pub async fn download(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let id = match crate::routes::job_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(Some(&session), e),
    };
    if let Err(e) = state.app.job(id).await {
        return error_page(Some(&session), e);
    }
    let app = state.app.clone();
    let pages = futures::stream::unfold(Some(None), move |after| {
        let app = app.clone();
        async move {
            let after: Option<(i32, i64)> = after?;
            match crate::read::log_page(&app, id, after, DOWNLOAD_PAGE).await {
                Ok(page) => {
                    if page.lines.is_empty() {
                        return None;
                    }
                    let mut chunk = String::new();
                    for l in &page.lines {
                        chunk.push_str(&l.text);
                        chunk.push('\n');
                    }
                    let last = page.lines.last().map(|l| (l.attempt, l.seq));
                    let next = (page.lines.len() as u32 == DOWNLOAD_PAGE).then_some(last);
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                // The response has begun: cut it short (the client sees a broken download,
                // never a silently partial one that looks complete).
                Err(e) => Some((Err(std::io::Error::other(e.public_message())), None)),
            }
        }
    });
    let disposition = format!("attachment; filename=\"job-{id}.log.txt\"");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).expect("a uuid is a valid header value"),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response()
}

// ---- The log block of the job and preview pages ----

/// Tail lengths a page offers (`tail=`), the first the default.
pub const TAIL_CHOICES: [u32; 4] = [200, 1000, 5000, 100];

/// A page's log options, from its query: `tail` (lines) and `timestamps` (`1` shows them).
#[derive(Debug, Default, Deserialize)]
pub struct LogOptions {
    tail: Option<String>,
    timestamps: Option<String>,
}

impl LogOptions {
    fn lines(&self) -> Result<u32, String> {
        match self.tail.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(TAIL_CHOICES[0]),
            Some(t) => t
                .parse()
                .ok()
                .filter(|n| TAIL_CHOICES.contains(n))
                .ok_or_else(|| {
                    let mut choices = TAIL_CHOICES;
                    choices.sort_unstable();
                    format!(
                        "tail must be one of {}",
                        choices.map(|c| c.to_string()).join(", ")
                    )
                }),
        }
    }

    fn timestamps(&self) -> bool {
        self.timestamps.as_deref() == Some("1")
    }

    /// The tail's limits: the chosen line count, and 320 bytes a line on average at most.
    pub fn limits(&self) -> Result<crate::read::TailLimits, String> {
        let lines = self.lines()?;
        Ok(crate::read::TailLimits {
            lines,
            max_bytes: lines as usize * 320,
            timestamps: true,
        })
    }
}

pub struct LogLine {
    pub stream: String,
    pub ts: String,
    pub segments: Vec<ansi::Segment>,
}

/// A running build's progress as a page shows it (live.js updates it from `progress` events).
pub struct ProgressBlock {
    /// "step 2 of 7", or a note before the first step.
    pub step: String,
    pub name: String,
    /// When the build started (RFC 3339) and the time since, for the elapsed clock.
    pub since: String,
    pub elapsed: String,
}

/// One link of the tail-length choice.
pub struct TailLink {
    pub label: String,
    pub href: String,
    pub current: bool,
}

/// A job's log tail as a page shows it.
pub struct LogBlock {
    pub title: String,
    pub job_id: String,
    pub job_href: String,
    pub state: String,
    pub attempt: String,
    pub error: Option<String>,
    pub truncated: bool,
    pub lines: Vec<LogLine>,
    /// The live stream, starting after the last line shown.
    pub stream_href: String,
    /// The job has ended: live.js does not open the stream.
    pub ended: bool,
    pub timestamps: bool,
    pub timestamps_href: String,
    pub tail_links: Vec<TailLink>,
    pub download_href: String,
    /// Shown for a build that has not ended.
    pub progress: Option<ProgressBlock>,
}

/// How a log line's time is shown (the same in the page and in live.js's lines).
fn ts_text(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

/// `42s`, `3m 07s`, `1h 02m`: a build's elapsed time (live.js formats it the same way).
pub fn elapsed(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn progress_block(job: &crate::views::JobView) -> Option<ProgressBlock> {
    if job.kind != slipway_core::JobKind::Build || job.state.is_terminal() {
        return None;
    }
    let now = chrono::Utc::now();
    let since = job.started_at.unwrap_or(now);
    let (step, name) = match &job.progress {
        Some(p) if job.state == slipway_core::JobState::Running => {
            (format!("step {} of {}", p.step, p.steps), p.name.clone())
        }
        _ => ("waiting for the first step".to_owned(), String::new()),
    };
    Some(ProgressBlock {
        step,
        name,
        since: job.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        elapsed: if job.started_at.is_some() {
            elapsed((now - since).num_seconds())
        } else {
            String::new()
        },
    })
}

/// A page's own URL with extra query pairs.
pub type PageLink<'a> = dyn Fn(&[(&str, Option<&str>)]) -> String + 'a;

/// Shapes a job's tail for a page; `link` builds the page's own URL with extra query pairs
/// (for the tail and timestamp choices).
pub fn log_block(
    title: &str,
    job: &crate::views::JobView,
    tail: crate::views::LogTailView,
    options: &LogOptions,
    link: &PageLink<'_>,
) -> LogBlock {
    let lines_now = options.lines().unwrap_or(TAIL_CHOICES[0]);
    let timestamps = options.timestamps();
    let tail_s = (lines_now != TAIL_CHOICES[0]).then(|| lines_now.to_string());
    let ts_s = timestamps.then_some("1");
    // The stream starts after the last line shown; with none shown, at the attempt's start
    // (its first line may be the capped start's note at seq -1), or at the log's start.
    let after = match (tail.lines.last(), tail.attempt) {
        (Some(l), Some(a)) => Some(format!("{a}:{}", l.seq)),
        (None, Some(a)) => Some(format!("{a}:{}", i64::MIN)),
        _ => None,
    };
    let id = tail.job_id;
    LogBlock {
        title: title.to_owned(),
        job_id: id.to_string(),
        job_href: super::pages::job_href(id),
        stream_href: super::pages::href(
            &format!("/ui/jobs/{id}/log/stream"),
            &[("after", after.as_deref())],
        ),
        download_href: format!("/ui/jobs/{id}/log.txt"),
        ended: job.state.is_terminal(),
        timestamps,
        timestamps_href: link(&[
            ("tail", tail_s.as_deref()),
            ("timestamps", (!timestamps).then_some("1")),
        ]),
        tail_links: {
            let mut choices = TAIL_CHOICES;
            choices.sort_unstable();
            choices
                .iter()
                .map(|&n| {
                    let t = n.to_string();
                    TailLink {
                        href: link(&[
                            ("tail", (n != TAIL_CHOICES[0]).then_some(t.as_str())),
                            ("timestamps", ts_s),
                        ]),
                        label: t,
                        current: n == lines_now,
                    }
                })
                .collect()
        },
        progress: progress_block(job),
        state: tail.state,
        attempt: tail
            .attempt
            .map(|a| format!("attempt {a}"))
            .unwrap_or_else(|| "not started".into()),
        error: tail.error,
        truncated: tail.truncated,
        lines: tail
            .lines
            .into_iter()
            .map(|l| LogLine {
                segments: ansi::segments(&l.text),
                ts: l.ts.map(ts_text).unwrap_or_default(),
                stream: l.stream,
            })
            .collect(),
    }
}
