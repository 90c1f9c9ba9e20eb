//! GitHub pull-request previews: repository settings (`/v1/repositories`) and the webhook
//! (`POST /v1/webhooks/github`).
//!
//! The webhook checks `X-Hub-Signature-256` over the raw body before anything else, drops
//! redeliveries by `X-GitHub-Delivery`, and only records and enqueues: an opened, reopened or
//! synchronized pull request becomes a pipeline (idempotent per preview and commit; a newer
//! commit supersedes), a closed one a cleanup. A well-signed delivery Slipway cannot use is
//! acknowledged with `202` and logged, never answered with a 5xx GitHub would retry.

use crate::auth::{Admin, Auth, Read};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use slipway_core::payload::{BuildOptions, LaunchOptions, PipelineRequest, PreviewSource};
use slipway_core::validate::{ValidCleanup, Validate};
use slipway_github::{
    Action, PreviewMode, RepoSettings, WebhookEvent, decide, parse_delivery, verify_signature,
};
use slipway_shared::store::{RepositoryRecord, RepositoryUpsert};
use std::sync::Arc;
use utoipa::ToSchema;

/// Settings of one repository, as `PUT` takes them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryRequest {
    /// Default true.
    pub(crate) enabled: Option<bool>,
    /// `automatic` (default: every pull request) or `label` (only those with `label`).
    pub(crate) mode: Option<String>,
    pub(crate) label: Option<String>,
    /// Build pull requests from forks (default false: their code is untrusted).
    pub(crate) build_forks: Option<bool>,
    /// Build options of every pipeline (context, dockerfile, build_args, target, ...).
    #[schema(value_type = Option<Object>)]
    pub(crate) build: Option<BuildOptions>,
    /// Launch options of every pipeline (port, env, secret_env, resources, ttl_hours,
    /// read_only_root_filesystem, ...).
    pub(crate) launch: Option<LaunchOptions>,
    /// The preview source of every pipeline: `{"type": "dockerfile"}` (default) or
    /// `{"type": "auto"}` (no Dockerfile needed).
    pub(crate) source: Option<PreviewSource>,
}

/// A repository's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryView {
    owner: String,
    name: String,
    enabled: bool,
    mode: String,
    label: Option<String>,
    build_forks: bool,
    #[schema(value_type = Object)]
    build: Value,
    #[schema(value_type = Object)]
    launch: Value,
    /// The preview source; absent: the repository's Dockerfile.
    #[schema(value_type = Option<Object>)]
    source: Option<Value>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<RepositoryRecord> for RepositoryView {
    fn from(r: RepositoryRecord) -> Self {
        RepositoryView {
            owner: r.owner,
            name: r.name,
            enabled: r.enabled,
            mode: r.mode,
            label: r.label,
            build_forks: r.build_forks,
            build: r.build_options,
            launch: r.launch_options,
            source: r.source,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// GitHub's rule for owner and repository names (owners at most 39 characters).
fn check_name(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s != "."
        && s != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_field",
            format!("not a GitHub {field} name"),
            Some(field.into()),
        ))
    }
}

/// The pipeline request a pull request of this repository makes.
fn pipeline_request(
    r: &RepositoryRecord,
    preview: String,
    repository: String,
    commit: String,
) -> Result<PipelineRequest, serde_json::Error> {
    let empty = |v: &Value| v.as_object().is_none_or(|o| o.is_empty());
    Ok(PipelineRequest {
        source: r.source.clone().map(serde_json::from_value).transpose()?,
        preview,
        repository,
        commit,
        build: if empty(&r.build_options) {
            None
        } else {
            Some(serde_json::from_value(r.build_options.clone())?)
        },
        launch: if empty(&r.launch_options) {
            None
        } else {
            Some(serde_json::from_value(r.launch_options.clone())?)
        },
    })
}

/// Set how a repository's pull requests get previews.
#[utoipa::path(put, path = "/v1/repositories/{owner}/{repo}", tag = "github", request_body = RepositoryRequest,
    params(("owner" = String, Path, description = "GitHub owner"), ("repo" = String, Path, description = "Repository name")),
    responses((status = 200, body = RepositoryView), (status = 422, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn put_repository(
    State(state): State<Arc<AppState>>,
    auth: Auth<Admin>,
    ApiPath((owner, repo)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<RepositoryRequest>,
) -> Result<Json<RepositoryView>, ApiError> {
    let saved = save_repository(&state, &owner, &repo, req, &auth.name).await?;
    Ok(Json(saved.into()))
}

/// Validate and store a repository's settings (the JSON API's `PUT` and the dashboard's edit
/// form): names as GitHub allows them, the mode and its label, and options that make a valid
/// pipeline now rather than at the first push. Each refusal names its field.
pub(crate) async fn save_repository(
    state: &AppState,
    owner: &str,
    repo: &str,
    req: RepositoryRequest,
    by: &str,
) -> Result<RepositoryRecord, ApiError> {
    let (owner, repo) = (owner.to_owned(), repo.to_owned());
    check_name("owner", &owner, 39)?;
    check_name("repo", &repo, 100)?;
    let mode = req.mode.unwrap_or_else(|| "automatic".into());
    let label = req
        .label
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty());
    match (mode.as_str(), &label) {
        ("automatic", _) => {}
        ("label", Some(l)) if l.chars().count() <= 50 && !l.chars().any(char::is_control) => {}
        ("label", _) => {
            return Err(ApiError::invalid(
                "invalid_field",
                "label mode needs a label of 1 to 50 characters",
                Some("label".into()),
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "invalid_field",
                "mode is `automatic` or `label`",
                Some("mode".into()),
            ));
        }
    }
    let build_options = serde_json::to_value(&req.build).map_err(ApiError::internal)?;
    let launch_options = serde_json::to_value(&req.launch).map_err(ApiError::internal)?;
    let source = req
        .source
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(ApiError::internal)?;
    let record = RepositoryUpsert {
        owner: owner.clone(),
        name: repo.clone(),
        enabled: req.enabled.unwrap_or(true),
        mode,
        label,
        build_forks: req.build_forks.unwrap_or(false),
        build_options: if build_options.is_null() {
            json!({})
        } else {
            build_options
        },
        launch_options: if launch_options.is_null() {
            json!({})
        } else {
            launch_options
        },
        source,
    };
    // The options must make a valid pipeline, checked now rather than at the first push.
    let probe = RepositoryRecord {
        owner: owner.clone(),
        name: repo.clone(),
        enabled: record.enabled,
        mode: record.mode.clone(),
        label: record.label.clone(),
        build_forks: record.build_forks,
        build_options: record.build_options.clone(),
        launch_options: record.launch_options.clone(),
        source: record.source.clone(),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    let sample = pipeline_request(
        &probe,
        format!("{owner}/{repo}#1"),
        format!("https://github.com/{owner}/{repo}.git"),
        "0".repeat(40),
    )
    .map_err(ApiError::internal)?;
    sample.validate(&state.limits)?;
    let saved = state.store.upsert_repository(&record).await?;
    tracing::info!(repository = %format!("{owner}/{repo}"), by, "repository settings saved");
    Ok(saved)
}

/// One repository's settings.
#[utoipa::path(get, path = "/v1/repositories/{owner}/{repo}", tag = "github",
    params(("owner" = String, Path, description = "GitHub owner"), ("repo" = String, Path, description = "Repository name")),
    responses((status = 200, body = RepositoryView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn get_repository(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
    ApiPath((owner, repo)): ApiPath<(String, String)>,
) -> Result<Json<RepositoryView>, ApiError> {
    let r = state
        .store
        .get_repository(&owner, &repo)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("repository {owner}/{repo} is not configured"))
        })?;
    Ok(Json(r.into()))
}

/// Every configured repository.
#[utoipa::path(get, path = "/v1/repositories", tag = "github",
    responses((status = 200, body = Object, description = "`{\"items\": [RepositoryView]}`")),
    security(("bearer" = ["read"])))]
pub async fn list_repositories(
    State(state): State<Arc<AppState>>,
    _auth: Auth<Read>,
) -> Result<Json<Value>, ApiError> {
    let items: Vec<RepositoryView> = state
        .store
        .list_repositories()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "items": items })))
}

fn settings(r: &RepositoryRecord) -> RepoSettings {
    RepoSettings {
        enabled: r.enabled,
        mode: match (&*r.mode, &r.label) {
            ("label", Some(l)) => PreviewMode::Label(l.clone()),
            _ => PreviewMode::Automatic,
        },
        build_forks: r.build_forks,
    }
}

fn acknowledged(status: StatusCode, body: Value) -> (StatusCode, Json<Value>) {
    (status, Json(body))
}

/// Receive a GitHub webhook delivery (HMAC-SHA256 signed; no bearer token).
#[utoipa::path(post, path = "/v1/webhooks/github", tag = "github", request_body = Object,
    params(("X-Hub-Signature-256" = String, Header, description = "sha256=<HMAC of the body>"),
        ("X-GitHub-Event" = String, Header, description = "ping, pull_request, ..."),
        ("X-GitHub-Delivery" = String, Header, description = "Delivery id (redeliveries are ignored)")),
    responses((status = 200, description = "ping, or a redelivery"), (status = 202, description = "recorded, enqueued or ignored"),
        (status = 401, body = ErrorBody, description = "missing or wrong signature"),
        (status = 404, body = ErrorBody, description = "webhooks are not enabled (`SLIPWAY_GITHUB_WEBHOOK_SECRET` is unset)")))]
pub async fn github_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let secret = state.webhook_secret.as_deref().ok_or_else(|| {
        ApiError::NotFound(
            "GitHub webhooks are not enabled (set SLIPWAY_GITHUB_WEBHOOK_SECRET)".into(),
        )
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify_signature(secret, &body, header("x-hub-signature-256"))
        .map_err(|e| ApiError::BadSignature(e.to_string()))?;
    let event_name = header("x-github-event").unwrap_or("");
    let delivery = parse_delivery(header("x-github-event"), header("x-github-delivery"), &body);
    if let Some(id) = &delivery.id
        && !state.store.record_delivery(id, event_name).await?
    {
        return Ok(acknowledged(
            StatusCode::OK,
            json!({"status": "duplicate", "delivery": id}),
        ));
    }
    let outcome = handle_event(&state, &delivery.event).await;
    if outcome.is_err() {
        // Not handled: let a redelivery try again.
        if let Some(id) = &delivery.id {
            let _ = state.store.forget_delivery(id).await;
        }
    }
    outcome
}

async fn handle_event(
    state: &AppState,
    event: &WebhookEvent,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let pr = match event {
        WebhookEvent::Ping { .. } => {
            return Ok(acknowledged(StatusCode::OK, json!({"status": "pong"})));
        }
        WebhookEvent::Ignored { event, action } => {
            return Ok(acknowledged(
                StatusCode::ACCEPTED,
                json!({"status": "ignored", "event": event, "action": action}),
            ));
        }
        WebhookEvent::Unusable { reason } => {
            tracing::warn!(%reason, "unusable GitHub delivery acknowledged");
            return Ok(acknowledged(
                StatusCode::ACCEPTED,
                json!({"status": "ignored", "why": reason}),
            ));
        }
        WebhookEvent::PullRequest(pr) => pr,
    };
    let record = state
        .store
        .get_repository(&pr.repo.owner, &pr.repo.name)
        .await?;
    let ignored = |why: String| {
        tracing::info!(repository = %pr.repo.full_name, number = pr.number, %why, "pull request event ignored");
        Ok(acknowledged(
            StatusCode::ACCEPTED,
            json!({"status": "ignored", "why": why}),
        ))
    };
    match decide(event, record.as_ref().map(settings).as_ref()) {
        Action::Ignore { why } => ignored(why),
        Action::Cleanup { preview } => {
            let valid = ValidCleanup {
                preview: preview.to_string(),
            };
            let job = crate::ops::cleanup(state, &valid, None).await?.job;
            Ok(acknowledged(
                StatusCode::ACCEPTED,
                json!({"status": "cleanup", "job": job}),
            ))
        }
        Action::Pipeline {
            preview,
            repository,
            sha,
            fork,
        } => {
            let Some(record) = record else {
                return ignored("repository is not configured".into());
            };
            // A fork's code is untrusted: no git token, no secret env (docs/github.md).
            let request = match pipeline_request(&record, preview.to_string(), repository, sha) {
                Ok(r) if fork => r.for_untrusted_code(),
                Ok(r) => r,
                Err(e) => return ignored(format!("stored repository options are unusable: {e}")),
            };
            let valid = match request.validate(&state.limits) {
                Ok(v) => v,
                Err(e) => return ignored(format!("pipeline refused: {e}")),
            };
            let job = crate::ops::pipeline(state, &valid).await?.job;
            Ok(acknowledged(
                StatusCode::ACCEPTED,
                json!({"status": "pipeline", "job": job}),
            ))
        }
    }
}
