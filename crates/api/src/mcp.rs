//! The MCP endpoint: AI agents list, inspect, debug and manage previews through the Model
//! Context Protocol, over Streamable HTTP at `/mcp` (the official Rust SDK, `rmcp`).
//!
//! - Stateless: every POST is served on its own (`legacy_session_mode: false`), for the
//!   2026-07-28 revision and the older ones a client negotiates with `initialize`, so any
//!   replica answers any request.
//! - The API's bearer tokens and scopes: no token or an unknown one is a 401 with
//!   `WWW-Authenticate` before MCP sees the request; a tool needing a scope the token lacks is
//!   not listed, and calling it anyway is refused (`UNAUTHORIZED`).
//! - DNS rebinding: `Host` must be one of `SLIPWAY_MCP_ALLOWED_HOSTS` and a request carrying an
//!   `Origin` must come from `SLIPWAY_MCP_ALLOWED_ORIGINS` (none by default: browsers are out).
//! - The tools read through `crate::read` and write through `crate::ops`, the JSON API's own
//!   paths, and return its read models (`crate::views`); every tool declares an
//!   `outputSchema` generated from the type it returns and answers with `structuredContent`
//!   plus the same JSON as text. Errors are tool results with `isError` and
//!   `{"error": {"code", "message", "field"}}`.

use crate::error::ApiError;
use crate::extract::nul_refusal;
use crate::read::{self, TailLimits};
use crate::state::AppState;
use crate::views::{JobView, List, LogTailView, PreviewDetailView, PreviewView, QueueList};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use slipway_core::auth::Scopes;
use slipway_core::payload::{CleanupRequest, PipelineRequest, PreviewSource};
use slipway_core::validate::Validate;
use slipway_core::{JobKind, JobState};
use slipway_shared::store::JobFilter;
use std::sync::{Arc, LazyLock};

/// `SLIPWAY_MCP`: whether `/mcp` is served, and with which tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum McpMode {
    /// No `/mcp` route.
    Off,
    /// Only the tools annotated read-only.
    ReadOnly,
    /// Every tool the token's scopes allow.
    On,
}

/// The endpoint's settings (from `Config`).
#[derive(Debug, Clone)]
pub struct McpSettings {
    pub mode: McpMode,
    /// `Host` values accepted (`host` or `host:port`); `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted (`scheme://host:port`, `:*` for any port); empty refuses every
    /// request that carries an `Origin`.
    pub allowed_origins: Vec<String>,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings {
            mode: McpMode::On,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: vec![],
        }
    }
}

/// The `/mcp` route (none when `SLIPWAY_MCP=off`), behind the bearer-token check.
pub fn router(state: Arc<AppState>, settings: &McpSettings) -> axum::Router {
    if settings.mode == McpMode::Off {
        return axum::Router::new();
    }
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(crate::MAX_BODY_BYTES)
        .with_cancellation_token(state.shutdown.child_token())
        .with_allowed_origins(settings.allowed_origins.clone())
        .enforce_origin_validation();
    config = if settings.allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(settings.allowed_hosts.clone())
    };
    let server = McpServer {
        state: state.clone(),
        read_only: settings.mode == McpMode::ReadOnly,
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    axum::Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// Who called: the token's name and scopes, put in the request's extensions for the tools.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    scopes: Scopes,
}

/// 401 with `WWW-Authenticate: Bearer` unless the request carries a known token.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    match crate::auth::authenticate(&state, req.headers()) {
        Ok((name, scopes)) => {
            req.extensions_mut().insert(Caller { name, scopes });
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// One tool: its MCP description and what it needs.
struct Spec {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    scope: Scopes,
    scope_name: &'static str,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    input: fn() -> Value,
    output: fn() -> Value,
}

/// `redeploy_preview` and `trigger_pipeline`: one operation under the two names agents know.
fn pipeline_spec(name: &'static str, title: &'static str, description: &'static str) -> Spec {
    Spec {
        name,
        title,
        description,
        scope: Scopes::ENQUEUE,
        scope_name: "enqueue",
        read_only: false,
        destructive: false,
        idempotent: true,
        input: input::<Pipeline>,
        output: output::<Enqueued>,
    }
}

/// The counter of tool calls, by tool and outcome.
pub const TOOL_CALLS: &str = "slipway_api_mcp_tool_calls_total";

/// Most items a list tool returns per call (the JSON API allows 1000; an agent's context is
/// smaller).
const MAX_LIST: u32 = 100;
const DEFAULT_LIST: u32 = 20;
/// Log tails: lines by default and at most, and the cap on their text.
const DEFAULT_TAIL: u32 = 200;
const MAX_TAIL: u32 = 2000;
/// Bytes of log text one call returns at most.
pub const LOG_BYTE_CAP: usize = 64 * 1024;

fn input<T: JsonSchema + 'static>() -> Value {
    let schema = rmcp::handler::server::common::schema_for_input::<T>()
        .expect("tool parameters are objects");
    portable(Value::Object((*schema).clone()))
}

fn output<T: JsonSchema + 'static>() -> Value {
    let schema = rmcp::handler::server::common::schema_for_output::<T>();
    portable(Value::Object((*schema).clone()))
}

/// Rewrites `"type": [T, "null"]` (schemars' spelling of an `Option`) as `anyOf` of single
/// types: the array form is valid JSON Schema, but clients that map tool schemas onto a
/// single-`type` dialect drop or refuse it (the MCP Inspector's `--strict` reports it).
fn portable(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(types)) = map.get("type").cloned() {
                    let mut branch = Map::new();
                    let keep = ["title", "description", "default", "examples"];
                    for (k, val) in std::mem::take(map) {
                        if keep.contains(&k.as_str()) {
                            map.insert(k, val);
                        } else if k != "type" {
                            branch.insert(k, val);
                        }
                    }
                    let branches = types
                        .into_iter()
                        .map(|t| {
                            if t == "null" {
                                json!({"type": "null"})
                            } else {
                                let mut b = branch.clone();
                                b.insert("type".into(), t);
                                Value::Object(b)
                            }
                        })
                        .collect();
                    map.insert("anyOf".into(), Value::Array(branches));
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

static TOOLS: LazyLock<Vec<Spec>> = LazyLock::new(|| {
    let read = |name, title, description, input: fn() -> Value, output: fn() -> Value| Spec {
        name,
        title,
        description,
        scope: Scopes::READ,
        scope_name: "read",
        read_only: true,
        destructive: false,
        idempotent: true,
        input,
        output,
    };
    vec![
        read(
            "list_preview_environments",
            "List preview environments",
            "List preview environments, newest first, with status, URL, image, commit and pods; \
             filter by status or repository. One page per call (default 20): pass `next_cursor` \
             back as `cursor` for the next.",
            input::<ListPreviews>,
            output::<List<PreviewView>>,
        ),
        read(
            "get_preview_environment",
            "Get a preview environment",
            "One preview by key (`org/app#42`), namespace or pull-request URL: status, URL, pull \
             request, image, commit, pods, age, expiry and its latest jobs. One database read.",
            input::<GetPreview>,
            output::<PreviewDetailView>,
        ),
        read(
            "get_preview_logs",
            "Get a preview's build or launch log",
            "The end of the log of a preview's latest build or launch (the latest attempt unless \
             `attempt` is given): `tail` lines (default 200), at most 64 KiB; `truncated` says \
             older lines were left out. Use it to read why a build or launch failed.",
            input::<PreviewLogs>,
            output::<LogTailView>,
        ),
        read(
            "list_jobs",
            "List jobs",
            "List build, launch and cleanup jobs, newest first, with their attempts and errors; \
             filter by kind, state, preview or text. One page per call (default 20): pass \
             `next_cursor` back as `cursor` for the next.",
            input::<ListJobs>,
            output::<List<JobView>>,
        ),
        read(
            "get_job",
            "Get a job",
            "One job by id: its request, state, attempts (worker, times, error), result and \
             error. One database read.",
            input::<GetJob>,
            output::<JobView>,
        ),
        read(
            "get_job_logs",
            "Get a job's log",
            "The end of a job's log (its latest attempt unless `attempt` is given): `tail` lines \
             (default 200), at most 64 KiB; `truncated` says older lines were left out.",
            input::<JobLogs>,
            output::<LogTailView>,
        ),
        read(
            "get_queue_status",
            "Get queue status",
            "Each queue (build, launch, cleanup): waiting, active, delayed and failed jobs, \
             whether it is paused, the oldest waiting job's age, and the live workers.",
            input::<NoParams>,
            output::<QueueList>,
        ),
        Spec {
            name: "retry_preview_deployment",
            title: "Retry a preview's failed deployment",
            description: "Run a preview's latest build or launch again when it failed (a fresh \
                          set of attempts); otherwise says why not and changes nothing. Needs \
                          the `admin` scope.",
            scope: Scopes::ADMIN,
            scope_name: "admin",
            read_only: false,
            destructive: false,
            idempotent: true,
            input: input::<RetryPreview>,
            output: output::<JobView>,
        },
        pipeline_spec(
            "redeploy_preview",
            "Redeploy a preview",
            "Build a commit of a repository and launch it as the preview (a pipeline; the same \
             as `trigger_pipeline`). Idempotent per preview and commit: asking again returns the \
             same job. A new commit supersedes the preview's unfinished older pipeline.",
        ),
        pipeline_spec(
            "trigger_pipeline",
            "Trigger a pipeline",
            "Build a commit of a repository and launch it as the preview. Idempotent per preview \
             and commit: asking again returns the same job. A new commit supersedes the \
             preview's unfinished older pipeline.",
        ),
        Spec {
            name: "delete_preview_environment",
            title: "Delete a preview environment",
            description: "Tear a preview down (its namespace and everything in it), superseding \
                          its unfinished builds and launches. Requires `confirm` equal to the \
                          preview's key.",
            scope: Scopes::ENQUEUE,
            scope_name: "enqueue",
            read_only: false,
            destructive: true,
            idempotent: true,
            input: input::<DeletePreview>,
            output: output::<Enqueued>,
        },
    ]
});

fn tool(spec: &Spec) -> Tool {
    let object = |v: Value| match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(Map::new()),
    };
    Tool::new(spec.name, spec.description, object((spec.input)()))
        .with_title(spec.title)
        .with_raw_output_schema(object((spec.output)()))
        .with_annotations(
            ToolAnnotations::with_title(spec.title)
                .read_only(spec.read_only)
                .destructive(spec.destructive)
                .idempotent(spec.idempotent)
                .open_world(false),
        )
}

/// The tool names, scopes and annotations, for docs and tests: `(name, scope, read_only,
/// destructive, idempotent)`.
pub fn tool_table() -> Vec<(&'static str, &'static str, bool, bool, bool)> {
    TOOLS
        .iter()
        .map(|s| {
            (
                s.name,
                s.scope_name,
                s.read_only,
                s.destructive,
                s.idempotent,
            )
        })
        .collect()
}

// ---- tool parameters -------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListPreviews {
    /// Only previews with this status: `deploying`, `ready`, `failed`, `deleted` or `vanished`.
    status: Option<String>,
    /// Only the pull-request previews of this repository: `owner/repo` or its URL.
    repository: Option<String>,
    /// Include torn-down previews (default false).
    include_deleted: Option<bool>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetPreview {
    /// The preview's key (`org/app#42`), its namespace, or its pull request's URL.
    preview: String,
}

/// Which of a preview's jobs a log is read from.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum LogKind {
    Build,
    Launch,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PreviewLogs {
    /// The preview's key (`org/app#42`), its namespace, or its pull request's URL.
    preview: String,
    /// `build` (default) or `launch`: the log of the preview's latest job of that kind.
    kind: Option<LogKind>,
    /// Lines from the end, 1 to 2000 (default 200).
    #[schemars(range(min = 1, max = 2000))]
    tail: Option<u32>,
    /// Include each line's time (default false).
    timestamps: Option<bool>,
    /// The attempt to read (default the latest).
    #[schemars(range(min = 1))]
    attempt: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListJobs {
    /// `build`, `launch` or `cleanup`.
    kind: Option<String>,
    /// `queued`, `running`, `retrying`, `succeeded`, `failed`, `cancelled` or `superseded`.
    state: Option<String>,
    /// A preview key, e.g. `org/app#42`.
    preview: Option<String>,
    /// Free text over errors, preview, commit, id, repository and image. A page searches at
    /// most 5,000 jobs (newest first from the cursor), so it may hold fewer matches, or none,
    /// and still have a `next_cursor` to search on.
    q: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetJob {
    /// The job's id (a UUID).
    job_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JobLogs {
    /// The job's id (a UUID).
    job_id: String,
    /// Lines from the end, 1 to 2000 (default 200).
    #[schemars(range(min = 1, max = 2000))]
    tail: Option<u32>,
    /// Include each line's time (default false).
    timestamps: Option<bool>,
    /// The attempt to read (default the latest).
    #[schemars(range(min = 1))]
    attempt: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RetryPreview {
    /// The preview's key (`org/app#42`), its namespace, or its pull request's URL.
    preview: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Pipeline {
    /// The preview's key, e.g. `org/app#42`.
    preview: String,
    /// The git repository, an `https://host/owner/repo` URL.
    repository: String,
    /// The commit to build: a full 40-character SHA.
    commit: String,
    /// What the preview is made from: `dockerfile` (default: the repository's Dockerfile),
    /// `auto` (no Dockerfile needed: the stack is detected and a Dockerfile generated), or the
    /// API's whole `source` object for a compose app or a Helm chart, e.g.
    /// `{"type": "compose", "service": "web"}` or `{"type": "helm", "chart": "deploy/chart",
    /// "service": "web", "port": 8080}`.
    #[serde(default)]
    source: Option<SourceArg>,
}

/// A source by its type alone, or as the API's `source` object.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum SourceArg {
    Kind(String),
    Object(serde_json::Map<String, Value>),
}

impl SourceArg {
    fn into_source(self) -> Result<PreviewSource, ApiError> {
        match self {
            SourceArg::Kind(kind) => Ok(PreviewSource::of(kind)),
            SourceArg::Object(o) => {
                let body = serde_json::to_vec(&o).map_err(ApiError::internal)?;
                slipway_core::payload::decode::<PreviewSource>(&body)
                    .map_err(|e| ApiError::from(e.under("source")))
            }
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeletePreview {
    /// The preview's key, e.g. `org/app#42`.
    preview: String,
    /// Must equal the preview's key: the deletion cannot be undone.
    confirm: Option<String>,
}

/// What a write tool recorded.
#[derive(Debug, Serialize, JsonSchema)]
struct Enqueued {
    /// False when an equal request was already recorded and its job is returned.
    created: bool,
    job: JobView,
}

// ---- errors ----------------------------------------------------------------------------

/// A tool's failure: a code an agent can branch on, a message it can act on, the field at fault.
#[derive(Debug)]
struct ToolError {
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ToolError {
    fn new(code: &'static str, message: impl Into<String>, field: Option<&str>) -> Self {
        ToolError {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    fn invalid(field: &str, message: impl Into<String>) -> Self {
        ToolError::new("INVALID_INPUT", message, Some(field))
    }

    fn result(self) -> CallToolResult {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.field {
            error["field"] = Value::String(f);
        }
        CallToolResult::structured_error(json!({ "error": error }))
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        let code = match &e {
            ApiError::Invalid { .. } | ApiError::PayloadTooLarge(_) => "INVALID_INPUT",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::Unauthorized | ApiError::Forbidden(_) | ApiError::BadSignature(_) => {
                "UNAUTHORIZED"
            }
            _ => "SERVER_ERROR",
        };
        ToolError {
            code,
            field: e.field().map(str::to_owned),
            message: e.public_message(),
        }
    }
}

type ToolResult = Result<Value, ToolError>;

fn to_value(v: impl Serialize) -> ToolResult {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e).into())
}

fn params<T: DeserializeOwned>(args: &Option<Map<String, Value>>) -> Result<T, ToolError> {
    let body = serde_json::to_vec(&args.clone().unwrap_or_default())
        .map_err(|e| ToolError::from(ApiError::internal(e)))?;
    slipway_core::payload::decode(&body).map_err(|e| ApiError::from(e).into())
}

fn limit(v: Option<u32>, field: &str, default: u32, max: u32) -> Result<u32, ToolError> {
    let n = v.unwrap_or(default);
    if (1..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ToolError::invalid(
            field,
            format!("{field} must be 1 to {max}"),
        ))
    }
}

fn job_id(s: &str) -> Result<uuid::Uuid, ToolError> {
    s.trim()
        .parse()
        .map_err(|_| ToolError::invalid("job_id", format!("{s:?} is not a job id (a UUID)")))
}

// ---- the server ------------------------------------------------------------------------

#[derive(Clone)]
struct McpServer {
    state: Arc<AppState>,
    read_only: bool,
}

fn caller(ctx: &RequestContext<RoleServer>) -> Option<Caller> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
}

impl McpServer {
    /// Whether this endpoint serves the tool at all (`SLIPWAY_MCP=read-only` keeps only the
    /// read-only ones).
    fn served(&self, spec: &Spec) -> bool {
        !self.read_only || spec.read_only
    }

    async fn call(
        &self,
        spec: &Spec,
        caller: &Caller,
        args: &Option<Map<String, Value>>,
    ) -> ToolResult {
        let state = &*self.state;
        match spec.name {
            "list_preview_environments" => {
                let p: ListPreviews = params(args)?;
                let limit = limit(p.limit, "limit", DEFAULT_LIST, MAX_LIST)?;
                let filter = crate::routes::preview_filter(
                    p.include_deleted.unwrap_or(false),
                    p.status,
                    p.repository,
                )?;
                to_value(read::previews(state, &filter, p.cursor.as_deref(), limit).await?)
            }
            "get_preview_environment" => {
                let p: GetPreview = params(args)?;
                to_value(read::preview_detail(state, &p.preview).await?)
            }
            "get_preview_logs" => {
                let p: PreviewLogs = params(args)?;
                let key = read::preview_key(state, &p.preview).await?;
                let kind = match p.kind.unwrap_or(LogKind::Build) {
                    LogKind::Build => JobKind::Build,
                    LogKind::Launch => JobKind::Launch,
                };
                let filter = JobFilter {
                    kind: Some(kind),
                    preview: Some(key.clone()),
                    ..JobFilter::default()
                };
                let latest = state
                    .store
                    .list_jobs(&filter, None, 1)
                    .await
                    .map_err(ApiError::from)?;
                let Some(job) = latest.items.into_iter().next() else {
                    return Err(ToolError::new(
                        "NOT_FOUND",
                        format!("preview {key:?} has no {kind} job"),
                        Some("kind"),
                    ));
                };
                let limits = tail_limits(p.tail, p.timestamps)?;
                to_value(read::log_tail(state, job.id, p.attempt, limits).await?)
            }
            "list_jobs" => {
                let p: ListJobs = params(args)?;
                let limit = limit(p.limit, "limit", DEFAULT_LIST, MAX_LIST)?;
                let args = crate::routes::JobFilterArgs {
                    kind: p.kind,
                    state: p.state,
                    preview: p.preview,
                    q: p.q,
                    error: None,
                };
                let filter = crate::routes::job_filter(args, None, None, p.cursor.as_deref())?;
                to_value(read::jobs(state, &filter, p.cursor.as_deref(), limit).await?)
            }
            "get_job" => {
                let p: GetJob = params(args)?;
                to_value(read::job(state, job_id(&p.job_id)?).await?)
            }
            "get_job_logs" => {
                let p: JobLogs = params(args)?;
                let id = job_id(&p.job_id)?;
                let limits = tail_limits(p.tail, p.timestamps)?;
                to_value(read::log_tail(state, id, p.attempt, limits).await?)
            }
            "get_queue_status" => {
                let _: NoParams = params(args)?;
                to_value(read::queues(state).await?)
            }
            "retry_preview_deployment" => {
                let p: RetryPreview = params(args)?;
                let key = read::preview_key(state, &p.preview).await?;
                self.retry_latest(&key, caller).await
            }
            "redeploy_preview" | "trigger_pipeline" => {
                let p: Pipeline = params(args)?;
                let valid = PipelineRequest {
                    source: p.source.map(SourceArg::into_source).transpose()?,
                    preview: p.preview,
                    repository: p.repository,
                    commit: p.commit,
                    build: None,
                    launch: None,
                }
                .validate(&state.limits)
                .map_err(ApiError::from)?;
                let r = crate::ops::pipeline(state, &valid).await?;
                tracing::info!(preview = %valid.preview, job.id = %r.job.id, by = %caller.name, tool = spec.name, "pipeline through MCP");
                to_value(Enqueued {
                    created: r.created,
                    job: r.job,
                })
            }
            "delete_preview_environment" => {
                let p: DeletePreview = params(args)?;
                if p.confirm.as_deref() != Some(p.preview.as_str()) {
                    return Err(ToolError::invalid(
                        "confirm",
                        format!(
                            "deleting a preview cannot be undone: call again with confirm set to \
                             the preview's key, {:?}",
                            p.preview
                        ),
                    ));
                }
                let record = state
                    .store
                    .get_preview(&p.preview)
                    .await
                    .map_err(ApiError::from)?
                    .ok_or_else(|| {
                        ToolError::new(
                            "NOT_FOUND",
                            format!(
                                "no preview has the key {:?}; list_preview_environments lists them",
                                p.preview
                            ),
                            Some("preview"),
                        )
                    })?;
                if let Some(at) = record.deleted_at {
                    return Err(ToolError::new(
                        "CONFLICT",
                        format!(
                            "preview {:?} was already torn down at {} (status {}); nothing to delete",
                            record.key,
                            at.to_rfc3339(),
                            record.status
                        ),
                        Some("preview"),
                    ));
                }
                let valid = CleanupRequest {
                    preview: record.key,
                }
                .validate(&state.limits)
                .map_err(ApiError::from)?;
                let r = crate::ops::cleanup(state, &valid, None).await?;
                tracing::info!(preview = %valid.preview, job.id = %r.job.id, by = %caller.name, "preview deletion through MCP");
                to_value(Enqueued {
                    created: r.created,
                    job: r.job,
                })
            }
            other => Err(ToolError::new(
                "SERVER_ERROR",
                format!("tool {other} has no implementation"),
                None,
            )),
        }
    }

    /// Retry the preview's newest build or launch if it failed; say why not otherwise.
    async fn retry_latest(&self, preview: &str, caller: &Caller) -> ToolResult {
        let state = &*self.state;
        let filter = JobFilter {
            preview: Some(preview.to_owned()),
            ..JobFilter::default()
        };
        // Cleanups are skipped: the newest build or launch is the deployment.
        let mut cursor = None;
        let latest = loop {
            let page = state
                .store
                .list_jobs(&filter, cursor.as_deref(), 20)
                .await
                .map_err(ApiError::from)?;
            if let Some(j) = page.items.iter().find(|j| j.kind != JobKind::Cleanup) {
                break Some(j.clone());
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break None,
            }
        };
        let Some(job) = latest else {
            return Err(ToolError::new(
                "NOT_FOUND",
                format!("preview {preview:?} has no build or launch to retry"),
                Some("preview"),
            ));
        };
        if job.state != JobState::Failed {
            return Err(ToolError::new(
                "CONFLICT",
                format!(
                    "the latest {} of {preview:?} (job {}) is {}, not failed; only a failed \
                     build or launch is retried (get_preview_environment shows its jobs)",
                    job.kind, job.id, job.state
                ),
                None,
            ));
        }
        to_value(crate::ops::retry(state, job.id, &caller.name).await?)
    }
}

fn tail_limits(tail: Option<u32>, timestamps: Option<bool>) -> Result<TailLimits, ToolError> {
    Ok(TailLimits {
        lines: limit(tail, "tail", DEFAULT_TAIL, MAX_TAIL)?,
        max_bytes: LOG_BYTE_CAP,
        timestamps: timestamps.unwrap_or(false),
    })
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("slipway", env!("CARGO_PKG_VERSION")).with_title("Slipway"),
            )
            .with_instructions(
                "Slipway builds commits and runs them as preview environments on Kubernetes. \
                 Start with list_preview_environments or get_preview_environment; when a build \
                 or launch failed, get_preview_logs shows why and retry_preview_deployment runs \
                 it again. The tools you see are the ones your token's scopes allow.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let scopes = caller(&ctx).map(|c| c.scopes).unwrap_or(Scopes::NONE);
        let tools = TOOLS
            .iter()
            .filter(|s| self.served(s) && scopes.contains(s.scope))
            .map(tool)
            .collect();
        // The list depends on the token: no shared cache may serve it to another caller.
        Ok(ListToolsResult::with_all_items(tools).with_cache_scope(CacheScope::Private))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        TOOLS
            .iter()
            .find(|s| s.name == name && self.served(s))
            .map(tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = TOOLS.iter().find(|s| s.name == request.name) else {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool {:?}; tools/list lists the tools",
                    request.name
                ),
                None,
            ));
        };
        let Some(caller) = caller(&ctx) else {
            return Ok(
                ToolError::new("UNAUTHORIZED", "missing or invalid bearer token", None)
                    .result()
                    .into(),
            );
        };
        let result = self.checked_call(spec, &caller, &request.arguments).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code,
        };
        metrics::counter!(TOOL_CALLS, "tool" => spec.name, "outcome" => outcome).increment(1);
        Ok(match result {
            Ok(value) => CallToolResult::structured(value),
            Err(e) => e.result(),
        }
        .into())
    }
}

impl McpServer {
    /// A call of a tool this endpoint serves and the caller's scopes allow, in a span naming
    /// the tool and the caller.
    async fn checked_call(
        &self,
        spec: &Spec,
        caller: &Caller,
        args: &Option<Map<String, Value>>,
    ) -> ToolResult {
        if !self.served(spec) {
            return Err(ToolError::new(
                "UNAUTHORIZED",
                format!(
                    "{} changes state, and this endpoint is read-only (SLIPWAY_MCP=read-only)",
                    spec.name
                ),
                None,
            ));
        }
        if !caller.scopes.contains(spec.scope) {
            tracing::warn!(tool = spec.name, by = %caller.name, "MCP tool refused: scope missing");
            return Err(ToolError::new(
                "UNAUTHORIZED",
                format!(
                    "this token lacks the `{}` scope that {} needs",
                    spec.scope_name, spec.name
                ),
                None,
            ));
        }
        if let Some(args) = args
            && let Some(e) = nul_refusal("invalid_input", string_args(args).into_iter())
        {
            return Err(e.into());
        }
        let span = tracing::info_span!("mcp_tool", tool = spec.name, by = %caller.name);
        tracing::Instrument::instrument(self.call(spec, caller, args), span).await
    }
}

/// Every string in a tool's arguments (values, nested keys and values), under the name of the
/// top-level argument it is in.
fn string_args(args: &Map<String, Value>) -> Vec<(&str, &str)> {
    fn strings<'a>(name: &'a str, v: &'a Value, out: &mut Vec<(&'a str, &'a str)>) {
        match v {
            Value::String(s) => out.push((name, s)),
            Value::Array(items) => items.iter().for_each(|v| strings(name, v, out)),
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.push((name, k));
                strings(name, v, out);
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (name, v) in args {
        out.push((name.as_str(), ""));
        strings(name, v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_have_no_type_unions_or_untyped_nodes() {
        fn check(name: &str, v: &Value) {
            match v {
                Value::Object(m) => {
                    assert!(
                        !matches!(m.get("type"), Some(Value::Array(_))),
                        "{name}: type union in {v}"
                    );
                    m.values().for_each(|c| check(name, c));
                }
                Value::Array(a) => a.iter().for_each(|c| check(name, c)),
                _ => {}
            }
        }
        for spec in TOOLS.iter() {
            let input = (spec.input)();
            let output = (spec.output)();
            assert_eq!(input["type"], "object", "{}", spec.name);
            assert_eq!(output["type"], "object", "{}", spec.name);
            check(spec.name, &input);
            check(spec.name, &output);
        }
    }

    #[test]
    fn nullable_types_become_any_of() {
        let v = portable(
            json!({"type": ["string", "null"], "format": "date-time", "description": "d"}),
        );
        assert_eq!(
            v,
            json!({"description": "d", "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]})
        );
    }
}
