//! The preview registry: list, one preview by key (URL-encoded in the path), and teardown.

use crate::auth::{Auth, Enqueue, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::views::{JobView, List, PreviewView};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use slipway_core::payload::CleanupRequest;
use slipway_core::validate::Validate;
use slipway_shared::store::PreviewFilter;
use std::sync::Arc;

/// Query of `GET /v1/previews`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// Include torn-down previews.
    include_deleted: Option<bool>,
    /// Only previews with this status: `deploying`, `ready`, `failed`, `deleted` or
    /// `vanished` (the last two with `include_deleted`); anything else is a 400 naming it.
    status: Option<String>,
    /// Only the pull-request previews of this repository: `owner/repo` or its URL (matches
    /// keys `owner/repo#<number>`).
    repository: Option<String>,
    /// Only previews whose key contains this (case-insensitive), e.g. `app#4`.
    q: Option<String>,
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// List previews, newest first.
#[utoipa::path(get, path = "/v1/previews", tag = "previews", params(PreviewQuery),
    responses((status = 200, body = List<PreviewView>), (status = 400, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn list_previews(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<Json<List<PreviewView>>, ApiError> {
    let limit = super::page_limit(q.limit, 50, 1000)?;
    let filter = PreviewFilter {
        key_contains: key_search(q.q)?,
        ..preview_filter(q.include_deleted.unwrap_or(false), q.status, q.repository)?
    };
    Ok(Json(
        crate::read::previews(&state, &filter, q.cursor.as_deref(), limit).await?,
    ))
}

/// Every status a preview record can have: the launch worker's `deploying`, `ready` and
/// `failed`; the ends `deleted` (torn down) and `vanished` (its namespace went outside Slipway).
pub(crate) const PREVIEW_STATUSES: [&str; 5] =
    ["deploying", "ready", "failed", "deleted", "vanished"];

/// The statuses of an ended preview (listed only with `include_deleted`).
pub(crate) const ENDED_PREVIEW_STATUSES: [&str; 2] = ["deleted", "vanished"];

/// The preview list's filter; a repository that is not `owner/repo` (or its URL) is refused
/// naming the field.
pub(crate) fn preview_filter(
    include_deleted: bool,
    status: Option<String>,
    repository: Option<String>,
) -> Result<PreviewFilter, ApiError> {
    let key_prefix = repository
        .map(|r| {
            crate::read::repository_prefix(&r).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "repository is `owner/repo` or its `https://host/owner/repo` URL",
                    Some("repository".into()),
                )
            })
        })
        .transpose()?;
    if let Some(s) = &status
        && !PREVIEW_STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("status is one of {}", PREVIEW_STATUSES.join(", ")),
            Some("status".into()),
        ));
    }
    Ok(PreviewFilter {
        include_deleted,
        status,
        key_prefix,
        key_contains: None,
    })
}

/// The preview list's key search (`q`): a substring of the key, at most 1024 bytes. It is
/// matched by a scan of the previews newest first (there are thousands, not millions).
pub(crate) fn key_search(q: Option<String>) -> Result<Option<String>, ApiError> {
    let q = q.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if q.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(ApiError::bad_request(
            "too_long",
            "q is longer than 1024 bytes",
            Some("q".into()),
        ));
    }
    Ok(q)
}

/// One preview: URL, namespace, image, commit, status and pods.
#[utoipa::path(get, path = "/v1/previews/{key}", tag = "previews",
    params(("key" = String, Path, description = "Preview key, URL-encoded (`org%2Fapp%2342`)")),
    responses((status = 200, body = PreviewView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn get_preview(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<PreviewView>, ApiError> {
    Ok(Json(crate::read::preview(&state, &key).await?))
}

/// Tear a preview down (the same as `POST /v1/cleanups`).
#[utoipa::path(delete, path = "/v1/previews/{key}", tag = "previews",
    params(("key" = String, Path, description = "Preview key, URL-encoded")),
    responses((status = 202, body = JobView, description = "The cleanup job"), (status = 200, body = JobView), (status = 422, body = ErrorBody)),
    security(("bearer" = ["enqueue"])))]
pub async fn delete_preview(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Enqueue>,
    headers: HeaderMap,
    ApiPath(key): ApiPath<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let valid = CleanupRequest { preview: key }.validate(&state.limits)?;
    let key = super::idempotency_key(&headers)?;
    Ok(super::enqueue::status(
        crate::ops::cleanup(&state, &valid, key).await?,
    ))
}

/// Body of `POST /v1/previews/{key}/extend`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Hours to add to the preview's expiry, 1 to 24. Counted from its current expiry (from
    /// now when it has none or has passed); the expiry never goes beyond 168 hours from now
    /// (or the operator's longest time to live, when shorter).
    #[schema(minimum = 1, maximum = 24)]
    pub hours: u32,
}

/// Keep a live preview longer: move its expiry later.
#[utoipa::path(post, path = "/v1/previews/{key}/extend", tag = "previews",
    params(("key" = String, Path, description = "Preview key, URL-encoded")),
    request_body = ExtendRequest,
    responses((status = 200, body = PreviewView, description = "The preview with its new expiry"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The preview was torn down"),
        (status = 422, body = ErrorBody)),
    security(("bearer" = ["enqueue"])))]
pub async fn extend_preview(
    State(state): State<Arc<AppState>>,
    auth: Auth<Enqueue>,
    ApiPath(key): ApiPath<String>,
    ApiJson(req): ApiJson<ExtendRequest>,
) -> Result<Json<PreviewView>, ApiError> {
    Ok(Json(
        crate::ops::extend_expiry(&state, &key, req.hours, &auth.name).await?,
    ))
}
