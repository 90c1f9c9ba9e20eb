//! Queue figures (counts per state, paused, oldest waiting job, live workers) and pause/resume.

use crate::auth::{Admin, Auth, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::state::AppState;
use crate::views::{QueueList, QueueView};
use axum::Json;
use axum::extract::State;
use slipway_core::JobKind;
use std::sync::Arc;

/// Every queue's figures.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = QueueList), (status = 503, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn list_queues(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
) -> Result<Json<QueueList>, ApiError> {
    Ok(Json(crate::read::queues(&state).await?))
}

/// The queue a path names, or a 404 naming the queues there are.
pub(crate) fn queue_kind(name: &str) -> Result<JobKind, ApiError> {
    name.parse().map_err(|_| {
        ApiError::NotFound(format!(
            "no queue {name:?} (queues: build, launch, cleanup)"
        ))
    })
}

/// Stop workers taking new jobs from a queue (running jobs finish).
#[utoipa::path(post, path = "/v1/queues/{queue}/pause", tag = "operate",
    params(("queue" = String, Path, description = "build, launch or cleanup")),
    responses((status = 200, body = QueueView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn pause_queue(
    State(state): State<Arc<AppState>>,
    auth: Auth<Admin>,
    ApiPath(queue): ApiPath<String>,
) -> Result<Json<QueueView>, ApiError> {
    let kind = queue_kind(&queue)?;
    state.queue.pause(kind).await?;
    tracing::info!(queue = %kind, by = %auth.name, "queue paused");
    Ok(Json(crate::read::queue(&state, kind).await?))
}

/// Let workers take jobs from a queue again.
#[utoipa::path(post, path = "/v1/queues/{queue}/resume", tag = "operate",
    params(("queue" = String, Path, description = "build, launch or cleanup")),
    responses((status = 200, body = QueueView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn resume_queue(
    State(state): State<Arc<AppState>>,
    auth: Auth<Admin>,
    ApiPath(queue): ApiPath<String>,
) -> Result<Json<QueueView>, ApiError> {
    let kind = queue_kind(&queue)?;
    state.queue.resume(kind).await?;
    tracing::info!(queue = %kind, by = %auth.name, "queue resumed");
    Ok(Json(crate::read::queue(&state, kind).await?))
}
