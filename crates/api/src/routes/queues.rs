//! Queue figures (counts per state, paused, oldest waiting job, live workers) and pause/resume.

use crate::auth::{Admin, Auth, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::state::AppState;
use crate::views::{QueueCountsView, QueueList, QueueView, WorkerView};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use slipway_core::JobKind;
use std::sync::Arc;

fn ms(t: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(t).ok()?)
}

async fn queue_view(state: &AppState, kind: JobKind) -> Result<QueueView, ApiError> {
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
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = QueueList), (status = 503, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn list_queues(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
) -> Result<Json<QueueList>, ApiError> {
    let mut items = Vec::new();
    for kind in JobKind::ALL {
        items.push(queue_view(&state, kind).await?);
    }
    Ok(Json(QueueList { items }))
}

fn queue_kind(name: &str) -> Result<JobKind, ApiError> {
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
    Ok(Json(queue_view(&state, kind).await?))
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
    Ok(Json(queue_view(&state, kind).await?))
}
