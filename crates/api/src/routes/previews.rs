//! The preview registry: list, one preview by key (URL-encoded in the path), and teardown.

use crate::auth::{Auth, Enqueue, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::views::{JobView, List, PreviewView};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use slipway_core::payload::CleanupRequest;
use slipway_core::validate::Validate;
use std::sync::Arc;

/// Query of `GET /v1/previews`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// Include torn-down previews.
    include_deleted: Option<bool>,
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
    let page = state
        .store
        .list_previews(
            q.include_deleted.unwrap_or(false),
            q.cursor.as_deref(),
            limit,
        )
        .await?;
    Ok(Json(List {
        items: page.items.into_iter().map(PreviewView::from).collect(),
        next_cursor: page.next_cursor,
    }))
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
    let p = state
        .store
        .get_preview(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("preview {key:?} not found")))?;
    Ok(Json(p.into()))
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
    super::enqueue::cleanup(&state, &valid, super::idempotency_key(&headers)?).await
}
