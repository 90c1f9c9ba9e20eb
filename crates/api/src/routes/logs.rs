//! A job's log: a page of lines (JSON, or bare lines with `Accept: text/plain`), or with
//! `follow=true` a Server-Sent Events stream that sends every line from a starting point and
//! ends when the job has ended and every line was sent. Tails wake on Postgres `NOTIFY` from
//! the workers' batched inserts, with a slow poll as a safety net; each event's `id` is the
//! line's `<attempt>:<seq>`, so a reconnecting client resumes with `Last-Event-ID`.

use crate::auth::{Auth, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::read::position;
use crate::state::AppState;
use crate::views::{LogLineView, LogsView};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slipway_core::JobId;
use slipway_shared::store::LogWake;
use std::sync::Arc;
use std::time::Duration;

/// Query of `GET /v1/jobs/{id}/logs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Start after this position (`<attempt>:<seq>`, the `next` of a previous page).
    after: Option<String>,
    /// Lines per page, 1 to 10000 (default 1000). Not used with `follow`.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Stream lines as Server-Sent Events until the job ends.
    follow: Option<bool>,
}

fn parse_position(s: &str) -> Result<(i32, i64), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_query",
            "a log position is `<attempt>:<seq>`",
            Some("after".into()),
        )
    };
    let (a, s) = s.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, s.parse().map_err(|_| bad())?))
}

/// Read a job's log, or follow it live.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), LogQuery),
    responses((status = 200, description = "JSON page; `text/plain` with `Accept: text/plain`; `text/event-stream` with `follow=true` (one event per line, id `<attempt>:<seq>`, data a `LogLineView`; an `end` event when the job ends)",
            content((LogsView = "application/json"), (String = "text/plain"), (String = "text/event-stream"))),
        (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn get_logs(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = super::job_id(&id)?;
    // A 404 for an unknown job, before the query is judged.
    state.job(id).await?;
    // Last-Event-ID (an SSE reconnect) wins over `after`.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let after = resume.or(q.after).map(|s| parse_position(&s)).transpose()?;
    // Checked with `follow` too, where it is not used: the query is as strict as the document.
    let limit = super::page_limit(q.limit, 1000, 10_000)?;
    if q.follow.unwrap_or(false) {
        return Ok(follow(state, id, after).into_response());
    }
    let view = crate::read::log_page(&state, id, after, limit).await?;
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    if wants_text {
        let mut body = String::new();
        for l in &view.lines {
            body.push_str(&l.text);
            body.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    Ok(Json(view).into_response())
}

const BATCH: u32 = 500;
/// Safety net for a missed notification, and how soon a tail notices its job ended.
const POLL: Duration = Duration::from_secs(1);

fn follow(state: Arc<AppState>, id: JobId, after: Option<(i32, i64)>) -> impl IntoResponse {
    let stream = async_stream(state, id, after);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn async_stream(
    state: Arc<AppState>,
    id: JobId,
    mut after: Option<(i32, i64)>,
) -> impl futures::Stream<Item = Result<Event, std::convert::Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut wakes = state.logs.subscribe();
        loop {
            // Check the state before reading, so lines written before the job ended are all
            // read before the stream ends.
            let ended = match state.store.get_job(id).await {
                Ok(Some(job)) => job.state.is_terminal().then_some(job.state),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(job.id = %id, error = %e, "log tail cannot read the job");
                    None
                }
            };
            // Drain everything stored so far.
            loop {
                let lines = match state.store.read_logs(id, after, BATCH).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(job.id = %id, error = %e, "log tail cannot read lines");
                        break;
                    }
                };
                let n = lines.len() as u32;
                for line in lines {
                    let view = LogLineView::from(line);
                    after = Some((view.attempt, view.seq));
                    let data = serde_json::to_string(&view).unwrap_or_default();
                    if tx
                        .send(Event::default().id(position(&view)).data(data))
                        .await
                        .is_err()
                    {
                        return; // the client went away
                    }
                }
                if n < BATCH {
                    break;
                }
            }
            if let Some(final_state) = ended {
                let _ = tx
                    .send(
                        Event::default()
                            .event("end")
                            .data(format!("{{\"state\":\"{final_state}\"}}")),
                    )
                    .await;
                return;
            }
            // Sleep until our job's lines arrive, a reconnect, the poll tick, or shutdown.
            let deadline = tokio::time::sleep(POLL);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = &mut deadline => break,
                    wake = wakes.recv() => match wake {
                        Ok(LogWake::Appended(job)) if job != id => continue,
                        // Ours, a reconnect (notifications may be lost) or lag: re-read.
                        _ => break,
                    },
                }
            }
        }
    });
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}
