//! Enqueue: builds, launches, cleanups and pipelines. Validate, record (the row commits
//! first), push. A repeated `Idempotency-Key` (or a pipeline's preview and commit) returns the
//! existing job with 200 instead of creating another.

use crate::auth::{Auth, Enqueue};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::ops::{self, Recorded, new_job};
use crate::state::AppState;
use crate::views::JobView;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use slipway_core::payload::{BuildRequest, CleanupRequest, LaunchRequest, PipelineRequest};
use slipway_core::validate::{ImageSource, Validate};
use slipway_core::{JobId, JobKind, JobState};
use std::sync::Arc;

type Created = (StatusCode, Json<JobView>);

async fn respond(
    state: &AppState,
    created: (slipway_shared::store::JobRecord, bool),
) -> Result<Created, ApiError> {
    let (job, new) = created;
    Ok(status(Recorded {
        job: state.job_view(job).await?,
        created: new,
    }))
}

/// 202 for a job this request created, 200 for an existing one.
pub(crate) fn status(r: Recorded) -> Created {
    let status = if r.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, Json(r.job))
}

/// Enqueue an image build.
#[utoipa::path(post, path = "/v1/builds", tag = "enqueue",
    request_body(content = BuildRequest, description = "A build. `repository` is an `https://host/path` URL (`.git` optional). SSH addresses (`ssh://...`, `git@host:path`), `http://` and `git://` are refused with a 422 naming `repository`: BuildKit clones SSH addresses through an SSH agent that build Jobs do not have. Internal hosts (loopback, private, link-local, CGNAT and reserved addresses in any spelling, IPv6 literals, `*.svc`, `*.cluster.local`, `*.local`, `*.internal`, single-label names) are refused with a 422 naming the rule unless the operator allows them (`SLIPWAY_INTERNAL_REPOSITORY_HOSTS`). For a private repository, name a Secret holding an access token in `secrets.git`."),
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key")),
    responses((status = 202, body = JobView, description = "Created"), (status = 200, body = JobView, description = "Existing job for this Idempotency-Key"),
        (status = 409, body = ErrorBody, description = "The Idempotency-Key was already used for a different request"), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = ["enqueue"])))]
pub async fn create_build(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Enqueue>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<BuildRequest>,
) -> Result<Created, ApiError> {
    let valid = req.validate(&state.limits)?;
    let mut job = new_job(JobKind::Build, &valid, super::idempotency_key(&headers)?)?;
    job.preview = valid.preview.clone();
    job.commit_sha = Some(valid.commit.clone());
    let created = state.create_job(job).await?;
    respond(&state, created).await
}

/// Enqueue a preview launch (an image, or the image a build job produced).
#[utoipa::path(post, path = "/v1/launches", tag = "enqueue",
    request_body(content = LaunchRequest, description = "A launch: `preview`, and `image` or `from_build`, with the launch options."),
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key")),
    responses((status = 202, body = JobView), (status = 200, body = JobView, description = "Existing job for this Idempotency-Key"),
        (status = 409, body = ErrorBody, description = "The Idempotency-Key was already used for a different request"), (status = 422, body = ErrorBody)),
    security(("bearer" = ["enqueue"])))]
pub async fn create_launch(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Enqueue>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LaunchRequest>,
) -> Result<Created, ApiError> {
    let valid = req.validate(&state.limits)?;
    if let ImageSource::FromBuild(build_id) = &valid.source {
        check_build(&state, *build_id).await?;
    }
    let mut job = new_job(JobKind::Launch, &valid, super::idempotency_key(&headers)?)?;
    job.preview = Some(valid.preview.clone());
    let created = state.create_job(job).await?;
    if created.1 {
        state
            .supersede(&valid.preview, created.0.id, &[JobKind::Launch])
            .await?;
    }
    respond(&state, created).await
}

/// A launch `from_build` must name a build job that has not failed.
async fn check_build(state: &AppState, id: JobId) -> Result<(), ApiError> {
    let field = Some("from_build".to_owned());
    match state.store.get_job(id).await? {
        None => Err(ApiError::invalid(
            "invalid_field",
            format!("build job {id} does not exist"),
            field,
        )),
        Some(j) if j.kind != JobKind::Build => Err(ApiError::invalid(
            "invalid_field",
            format!("job {id} is a {} job, not a build", j.kind),
            field,
        )),
        Some(j) if j.state.is_terminal() && j.state != JobState::Succeeded => {
            Err(ApiError::invalid(
                "invalid_field",
                format!("build job {id} ended {} and produced no image", j.state),
                field,
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Enqueue a preview teardown.
#[utoipa::path(post, path = "/v1/cleanups", tag = "enqueue",
    request_body(content = CleanupRequest, description = "A teardown of the preview `preview`: it supersedes the preview's unfinished builds and launches."),
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key")),
    responses((status = 202, body = JobView), (status = 200, body = JobView, description = "Existing job for this Idempotency-Key"),
        (status = 409, body = ErrorBody, description = "The Idempotency-Key was already used for a different request"), (status = 422, body = ErrorBody)),
    security(("bearer" = ["enqueue"])))]
pub async fn create_cleanup(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Enqueue>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CleanupRequest>,
) -> Result<Created, ApiError> {
    let valid = req.validate(&state.limits)?;
    Ok(status(
        ops::cleanup(&state, &valid, super::idempotency_key(&headers)?).await?,
    ))
}

/// Enqueue a pipeline: build the commit, then launch the built image as the preview. One
/// pipeline per (preview, commit); a newer commit supersedes the preview's older pipeline.
#[utoipa::path(post, path = "/v1/pipelines", tag = "enqueue",
    request_body(content = PipelineRequest, description = "A pipeline: `preview`, `repository`, `commit`, optional `build` and `launch` options. `repository` is an `https://host/path` URL (`.git` optional). SSH addresses (`ssh://...`, `git@host:path`), `http://` and `git://` are refused with a 422 naming `repository`: BuildKit clones SSH addresses through an SSH agent that build Jobs do not have. Internal hosts (loopback, private, link-local, CGNAT and reserved addresses in any spelling, IPv6 literals, `*.svc`, `*.cluster.local`, `*.local`, `*.internal`, single-label names) are refused with a 422 naming the rule unless the operator allows them (`SLIPWAY_INTERNAL_REPOSITORY_HOSTS`). For a private repository, name a Secret holding an access token in `build.secrets.git`."),
    responses((status = 202, body = JobView, description = "The pipeline's build job"), (status = 200, body = JobView, description = "The existing pipeline of this preview and commit"),
        (status = 409, body = ErrorBody, description = "A pipeline of this preview and commit exists with different options"), (status = 422, body = ErrorBody)),
    security(("bearer" = ["enqueue"])))]
pub async fn create_pipeline(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Enqueue>,
    ApiJson(req): ApiJson<PipelineRequest>,
) -> Result<Created, ApiError> {
    let valid = req.validate(&state.limits)?;
    Ok(status(ops::pipeline(&state, &valid).await?))
}
