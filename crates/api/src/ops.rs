//! The write paths every front end shares: the JSON API's handlers, the GitHub webhook and the
//! MCP tools call these, so validation, idempotency keys and supersede rules exist once.

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::JobView;
use slipway_core::validate::{ValidCleanup, ValidPipeline};
use slipway_core::{JobId, JobKind};
use slipway_shared::store::{JobRecord, NewJob};

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
