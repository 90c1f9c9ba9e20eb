//! The write paths every front end shares: the JSON API's handlers, the GitHub webhook, the
//! MCP tools and the dashboard's actions call these, so validation, idempotency keys and
//! supersede rules exist once.

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{JobView, PreviewView};
use slipway_core::image::ImageRef;
use slipway_core::validate::{ImageSource, ValidCleanup, ValidLaunch, ValidPipeline};
use slipway_core::{JobId, JobKind, JobState};
use slipway_shared::store::{JobRecord, NewJob};
use std::time::Duration;

/// Repository settings: validated and stored by the one function the JSON API's `PUT
/// /v1/repositories/{owner}/{repo}` and the dashboard's edit form share (it lives with the
/// request type it validates).
pub(crate) use crate::routes::github::{RepositoryRequest, save_repository};

/// A job as recorded: its view, and whether this call created it (`false`: an idempotency key
/// named an existing job, returned as it is).
pub struct Recorded {
    pub job: JobView,
    pub created: bool,
}

async fn recorded(
    state: &AppState,
    (job, created): (JobRecord, bool),
) -> Result<Recorded, ApiError> {
    Ok(Recorded {
        job: state.job_view(job).await?,
        created,
    })
}

/// A new job of `kind` with the validated request as its payload; an idempotency key is
/// scoped to the kind, so a client reusing one key across kinds gets two jobs, not a mix-up.
pub fn new_job(
    kind: JobKind,
    payload: &impl serde::Serialize,
    key: Option<String>,
) -> Result<NewJob, ApiError> {
    let payload = serde_json::to_value(payload).map_err(ApiError::internal)?;
    let mut job = NewJob::new(kind, payload);
    job.idempotency_key = key.map(|k| format!("{kind}:{k}"));
    Ok(job)
}

/// Record a cleanup; it supersedes the preview's unfinished builds and launches.
pub async fn cleanup(
    state: &AppState,
    valid: &ValidCleanup,
    key: Option<String>,
) -> Result<Recorded, ApiError> {
    let mut job = new_job(JobKind::Cleanup, valid, key)?;
    job.preview = Some(valid.preview.clone());
    record_superseding(state, job, &valid.preview).await
}

/// Record a pipeline's build (carrying the launch options); one pipeline per (preview,
/// commit), and a new one supersedes the preview's older unfinished builds and launches.
pub async fn pipeline(state: &AppState, valid: &ValidPipeline) -> Result<Recorded, ApiError> {
    let mut payload = serde_json::to_value(&valid.build).map_err(ApiError::internal)?;
    payload["then_launch"] = serde_json::to_value(&valid.launch).map_err(ApiError::internal)?;
    if let Some(composition) = &valid.composition {
        payload["composition"] = serde_json::to_value(composition).map_err(ApiError::internal)?;
    }
    let mut job = NewJob::new(JobKind::Build, payload);
    job.idempotency_key = Some(format!("pipeline:{}:{}", valid.preview, valid.build.commit));
    job.preview = Some(valid.preview.clone());
    job.commit_sha = Some(valid.build.commit.clone());
    record_superseding(state, job, &valid.preview).await
}

/// Record `job` for `preview`; once created, it supersedes the preview's unfinished builds and
/// launches (a new pipeline replaces an older one, a teardown stops both).
async fn record_superseding(
    state: &AppState,
    job: NewJob,
    preview: &str,
) -> Result<Recorded, ApiError> {
    let created = state.create_job(job).await?;
    if created.1 {
        state
            .supersede(preview, created.0.id, &[JobKind::Build, JobKind::Launch])
            .await?;
    }
    recorded(state, created).await
}

/// Run a failed or cancelled job again with a fresh set of attempts, and push it. `by` names
/// the caller (a token's name) for the log.
pub async fn retry(state: &AppState, id: JobId, by: &str) -> Result<JobView, ApiError> {
    if !state.store.retry_job(id).await? {
        return Err(match state.store.get_job(id).await? {
            None => ApiError::NotFound(format!("job {id} not found")),
            Some(j) => ApiError::Conflict(format!(
                "job {id} is {}; only failed or cancelled jobs can be retried",
                j.state
            )),
        });
    }
    let job = state.job(id).await?;
    tracing::info!(job.id = %id, by, "operator retry");
    state.push(&job).await;
    state.job_view(job).await
}

/// Cancel a queued, retrying or running job; a running worker is told through the queue and
/// stops. `by` names the caller (a token's name) for the log and the job's error.
pub async fn cancel(state: &AppState, id: JobId, by: &str) -> Result<JobView, ApiError> {
    let reason = format!("cancelled by {by}");
    if !state
        .store
        .cancel_job(id, JobState::Cancelled, &reason)
        .await?
    {
        return Err(match state.store.get_job(id).await? {
            None => ApiError::NotFound(format!("job {id} not found")),
            Some(j) => ApiError::Conflict(format!("job {id} already ended {}", j.state)),
        });
    }
    let job = state.job(id).await?;
    // Postgres already says cancelled, which fences the worker; the queue signal stops it now.
    if let Err(e) = state.queue.cancel(job.kind, &id.to_string(), &reason).await {
        tracing::warn!(job.id = %id, error = %e, "could not signal the cancel to the queue");
    }
    tracing::info!(job.id = %id, by, "operator cancel");
    state.job_view(job).await
}

/// Bring a live preview up again as it is: a new launch of the image it is recorded as running
/// (the digest-pinned reference its last launch resolved), with the options of that launch.
/// It supersedes the preview's unfinished launches, rolls the pods, and restarts the preview's
/// time to live and idle clock as any deploy does. It neither rebuilds nor moves to another
/// commit (a pipeline does that). Refused (409) for a torn-down preview and for one with no
/// image yet (no launch has resolved one).
pub async fn redeploy(state: &AppState, key: &str, by: &str) -> Result<Recorded, ApiError> {
    let record = state
        .store
        .get_preview(key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("preview {key:?} not found")))?;
    if record.deleted_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "preview {key:?} was torn down ({}); only a live preview can be redeployed: start \
             a new pipeline to bring it back",
            record.status
        )));
    }
    let no_image = || {
        ApiError::Conflict(format!(
            "preview {key:?} has no image yet (no build or launch has finished); there is \
             nothing to redeploy"
        ))
    };
    let image: ImageRef = record
        .image
        .as_deref()
        .ok_or_else(no_image)?
        .parse()
        .map_err(|_| no_image())?;
    let last = match record.last_job_id {
        Some(id) => state.store.get_job(id).await?,
        None => None,
    }
    .filter(|j| j.kind == JobKind::Launch)
    .ok_or_else(no_image)?;
    let mut launch: ValidLaunch =
        serde_json::from_value(last.payload.clone()).map_err(ApiError::internal)?;
    launch.source = ImageSource::Image(image);
    let mut job = new_job(JobKind::Launch, &launch, None)?;
    job.preview = Some(record.key.clone());
    job.commit_sha = record.commit_sha.clone();
    let created = state.create_job(job).await?;
    state
        .supersede(&record.key, created.0.id, &[JobKind::Launch])
        .await?;
    tracing::info!(preview = %record.key, job.id = %created.0.id, by, "operator redeploy");
    recorded(state, created).await
}

/// Most hours one extension adds.
pub const MAX_EXTENSION_HOURS: u32 = 24;
/// How far ahead an extension may push an expiry: a week, or the operator's longest time to
/// live (`SLIPWAY_MAX_TTL_HOURS`) when that is shorter.
pub const EXPIRY_CAP_HOURS: u32 = 168;

/// Move a live preview's expiry `hours` (1 to [`MAX_EXTENSION_HOURS`]) later, counted from its
/// current expiry (from now when it has none or has passed), at most [`EXPIRY_CAP_HOURS`]
/// from now. The cleanup worker's idle limit, when the operator sets one, still applies.
pub async fn extend_expiry(
    state: &AppState,
    key: &str,
    hours: u32,
    by: &str,
) -> Result<PreviewView, ApiError> {
    if !(1..=MAX_EXTENSION_HOURS).contains(&hours) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("hours is a whole number from 1 to {MAX_EXTENSION_HOURS}"),
            Some("hours".into()),
        ));
    }
    let cap = EXPIRY_CAP_HOURS.min(state.limits.max_ttl_hours.max(1));
    let hour = Duration::from_secs(3600);
    match state
        .store
        .extend_preview_expiry(key, hour * hours, hour * cap)
        .await?
    {
        Some(record) => {
            tracing::info!(preview = %key, hours, expires_at = ?record.expires_at, by, "operator extended expiry");
            Ok(record.into())
        }
        None => Err(match state.store.get_preview(key).await? {
            None => ApiError::NotFound(format!("preview {key:?} not found")),
            Some(r) => ApiError::Conflict(format!(
                "preview {key:?} was torn down ({}); there is no expiry to extend",
                r.status
            )),
        }),
    }
}

/// Bulk retry (the dashboard's): the failed or cancelled jobs among `ids` go back to the queue
/// in one `UPDATE` and are pushed; the others are left. The ids retried.
pub async fn retry_many(state: &AppState, ids: &[JobId], by: &str) -> Result<Vec<JobId>, ApiError> {
    let jobs = state.store.retry_jobs(ids).await?;
    for job in &jobs {
        tracing::info!(job.id = %job.id, by, "operator retry");
    }
    state.push_many(&jobs).await;
    Ok(jobs.iter().map(|j| j.id).collect())
}

/// Bulk cancel (the dashboard's): the unfinished jobs among `ids` are cancelled in one
/// `UPDATE`, and their workers told through the queue; the others are left. The ids cancelled.
pub async fn cancel_many(
    state: &AppState,
    ids: &[JobId],
    by: &str,
) -> Result<Vec<JobId>, ApiError> {
    use futures::StreamExt;
    let reason = format!("cancelled by {by}");
    let moved = state
        .store
        .cancel_jobs(ids, JobState::Cancelled, &reason)
        .await?;
    futures::stream::iter(&moved)
        .for_each_concurrent(crate::state::BULK_CONCURRENCY, |(id, kind)| {
            let reason = &reason;
            async move {
                if let Err(e) = state.queue.cancel(*kind, &id.to_string(), reason).await {
                    tracing::warn!(job.id = %id, error = %e, "could not signal the cancel to the queue");
                }
                tracing::info!(job.id = %id, by, "operator cancel");
            }
        })
        .await;
    Ok(moved.into_iter().map(|(id, _)| id).collect())
}
