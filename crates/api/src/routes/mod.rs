//! The `/v1` routes. Each handler carries its `#[utoipa::path]` annotation and is registered
//! through `utoipa_axum::routes!`, so the served routes and `/openapi.json` cannot diverge.

mod enqueue;
pub(crate) mod github;
pub(crate) mod jobs;
pub(crate) mod logs;
pub(crate) mod previews;
pub(crate) mod queues;

pub(crate) use jobs::{JobFilterArgs, job_filter};
pub(crate) use previews::preview_filter;

use crate::state::AppState;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(enqueue::create_build))
        .routes(routes!(enqueue::create_launch))
        .routes(routes!(enqueue::create_cleanup))
        .routes(routes!(enqueue::create_pipeline))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(logs::get_logs))
        .routes(routes!(previews::list_previews))
        .routes(routes!(previews::get_preview, previews::delete_preview))
        .routes(routes!(previews::extend_preview))
        .routes(routes!(queues::list_queues))
        .routes(routes!(queues::pause_queue))
        .routes(routes!(queues::resume_queue))
        .routes(routes!(github::list_repositories))
        .routes(routes!(github::get_repository, github::put_repository))
        .merge(
            // GitHub sends pull request payloads of up to 25 MB; the rest of the API keeps the
            // small default limit.
            OpenApiRouter::new()
                .routes(routes!(github::github_webhook))
                .layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_MAX_BODY_BYTES)),
        )
}

/// Largest webhook delivery accepted (GitHub caps payloads at 25 MB).
pub const WEBHOOK_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// The `Idempotency-Key` header, bounded and printable.
pub(crate) fn idempotency_key(
    headers: &axum::http::HeaderMap,
) -> Result<Option<String>, crate::error::ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        crate::error::ApiError::bad_request(
            "invalid_header",
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            Some("Idempotency-Key".into()),
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// Parse a job id from a path segment.
pub(crate) fn job_id(s: &str) -> Result<uuid::Uuid, crate::error::ApiError> {
    s.parse().map_err(|_| {
        crate::error::ApiError::NotFound(format!("job {s:?} not found (not a job id)"))
    })
}

/// A page size from the query: `default` when absent, else 1 to `max`.
pub(crate) fn page_limit(
    limit: Option<u32>,
    default: u32,
    max: u32,
) -> Result<u32, crate::error::ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(crate::error::ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {max}"),
            Some("limit".into()),
        ))
    }
}
