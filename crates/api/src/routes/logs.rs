//! A job's log: a page of lines (JSON, or bare lines with `Accept: text/plain`), or with
//! `follow=true` a Server-Sent Events stream that sends every line from a starting point and
//! ends when the job has ended and every line was sent ([`crate::tail`], shared with the
//! dashboard).

use crate::auth::{Auth, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::views::LogsView;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

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
    /// With `follow`: also send a `progress` event (data: the job's `progress`, a
    /// `BuildProgressView` or null) whenever a build's step changes.
    progress: Option<bool>,
}

pub(crate) fn parse_position(s: &str) -> Result<(i32, i64), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_query",
            "after (a log position) must be `<attempt>:<seq>`",
            Some("after".into()),
        )
    };
    let (a, s) = s.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, s.parse().map_err(|_| bad())?))
}

/// Read a job's log, or follow it live.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), LogQuery),
    responses((status = 200, description = "JSON page; `text/plain` with `Accept: text/plain`; `text/event-stream` with `follow=true` (one event per line, id `<attempt>:<seq>`, data a `LogLineView`; with `progress=true` also `progress` events, data a `BuildProgressView` or null; an `end` event when the job ends, data `{\"state\": ...}`)",
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
        return Ok(crate::tail::follow(
            state,
            id,
            after,
            crate::tail::JsonLines {
                progress: q
                    .progress
                    .unwrap_or(false)
                    .then(crate::tail::ProgressEvents::default),
            },
        )
        .into_response());
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
