//! Reading jobs and operating on them: list with filters and cursor pagination, one job with
//! its attempts, retry of a failed or cancelled job, cancel of an unfinished one.

use crate::auth::{Admin, Auth, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::views::{JobView, List};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use slipway_core::{JobKind, JobState};
use slipway_shared::store::JobFilter;
use std::sync::Arc;

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// `build`, `launch` or `cleanup`.
    kind: Option<String>,
    /// A job state, e.g. `failed`.
    state: Option<String>,
    /// A preview key, e.g. `org/app#42`.
    preview: Option<String>,
    /// Created at or after (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// Free text over errors, preview, commit, id, repository and image. A page searches at
    /// most 5,000 jobs (newest first from the cursor), so it may hold fewer matches, or none,
    /// and still have a `next_cursor` to search on.
    q: Option<String>,
    /// Text in the job's error (case-insensitive substring, 3 to 1024 bytes; trigram-indexed).
    #[param(min_length = 3, max_length = 1024)]
    error: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

fn parse_field<T: std::str::FromStr>(field: &str, v: Option<String>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    v.map(|s| {
        s.parse::<T>().map_err(|e| {
            ApiError::bad_request("invalid_query", e.to_string(), Some(field.to_owned()))
        })
    })
    .transpose()
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = List<JobView>), (status = 400, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn list_jobs(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<List<JobView>>, ApiError> {
    let limit = super::page_limit(q.limit, 50, 1000)?;
    let filter = job_filter(
        JobFilterArgs {
            kind: q.kind,
            state: q.state,
            preview: q.preview,
            q: q.q,
            error: q.error,
        },
        q.created_after,
        q.created_before,
        q.cursor.as_deref(),
    )?;
    Ok(Json(
        crate::read::jobs(&state, &filter, q.cursor.as_deref(), limit).await?,
    ))
}

/// The text filters of a job list, as a client gives them.
pub(crate) struct JobFilterArgs {
    pub kind: Option<String>,
    pub state: Option<String>,
    pub preview: Option<String>,
    pub q: Option<String>,
    pub error: Option<String>,
}

/// The job list's filter (the JSON API's and the MCP tool's): kind and state parsed, text
/// bounded, each refusal naming its field.
pub(crate) fn job_filter(
    args: JobFilterArgs,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    cursor: Option<&str>,
) -> Result<JobFilter, ApiError> {
    for (field, v) in [
        ("preview", args.preview.as_deref()),
        ("q", args.q.as_deref()),
        ("error", args.error.as_deref()),
        ("cursor", cursor),
    ] {
        if v.is_some_and(|s| s.len() > 1024) {
            return Err(ApiError::bad_request(
                "too_long",
                format!("{field} is longer than 1024 bytes"),
                Some(field.into()),
            ));
        }
    }
    let error = args.error.map(|e| e.trim().to_owned());
    // The trigram index that makes the search cheap needs three characters to match on.
    if error.as_ref().is_some_and(|e| e.chars().count() < 3) {
        return Err(ApiError::bad_request(
            "too_short",
            "error needs at least 3 characters to search for",
            Some("error".into()),
        ));
    }
    Ok(JobFilter {
        kind: parse_field::<JobKind>("kind", args.kind)?,
        state: parse_field::<JobState>("state", args.state)?,
        preview: args.preview,
        created_after,
        created_before,
        q: args.q,
        error,
    })
}

/// One job with its attempts, result and error.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = super::job_id(&id)?;
    Ok(Json(crate::read::job(&state, id).await?))
}

/// Run a failed or cancelled job again, with a fresh set of attempts.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "operate", params(("id" = String, Path, description = "Job id")),
    responses((status = 202, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn retry_job(
    State(state): State<Arc<AppState>>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<String>,
) -> Result<(axum::http::StatusCode, Json<JobView>), ApiError> {
    let id = super::job_id(&id)?;
    let view = crate::ops::retry(&state, id, &auth.name).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(view)))
}

/// Cancel a queued, retrying or running job (a running worker is told and stops).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "operate", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn cancel_job(
    State(state): State<Arc<AppState>>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = super::job_id(&id)?;
    Ok(Json(crate::ops::cancel(&state, id, &auth.name).await?))
}
