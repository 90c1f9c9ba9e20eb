//! The dashboard's pages: previews (home), one preview, jobs, one job, queues. Each handler
//! reads through `crate::read` and shapes the read models into rows of display strings; the
//! templates (crates/api/templates/ui) escape every one of them.

use super::UiState;
use super::actions;
use super::assets;
use super::live::{LogBlock, LogOptions, log_block};
use super::session::Session;
use crate::error::ApiError;
use crate::read;
use crate::routes::jobs::{JobFilterArgs, job_filter};
use crate::routes::previews::{
    ENDED_PREVIEW_STATUSES, PREVIEW_STATUSES, key_search, preview_filter,
};
use crate::views::{JobView, PreviewView, ResourceUseView};
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use slipway_core::auth::Scopes;
use slipway_core::{JobId, JobKind, JobState};
use slipway_shared::store::PreviewFilter;
use std::sync::Arc;

/// Rows per page unless `limit` says otherwise (1 to [`MAX_PAGE`]).
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// The page header: who is signed in (and the sign-out form's CSRF token), asset paths.
pub struct Nav {
    pub user: Option<NavUser>,
    pub htmx: &'static str,
    pub css: &'static str,
    /// The session's CSRF token for the page's forms (empty when signed out).
    pub csrf: String,
    /// Whether the session may use the `enqueue` / `admin` actions (their forms are rendered
    /// only then; the server checks again).
    pub can_enqueue: bool,
    pub can_admin: bool,
    /// What the action that led here did (a fixed message chosen by [`super::actions::notice`]).
    pub notice: Option<String>,
    pub live: &'static str,
}

pub struct NavUser {
    pub name: String,
    pub scopes: String,
    pub csrf: String,
}

impl Nav {
    pub fn anonymous() -> Nav {
        Nav {
            user: None,
            htmx: assets::HTMX_PATH,
            css: assets::CSS_PATH,
            csrf: String::new(),
            can_enqueue: false,
            can_admin: false,
            notice: None,
            live: assets::live_href(),
        }
    }

    pub fn signed_in(s: &Session) -> Nav {
        Nav {
            user: Some(NavUser {
                name: s.token_name.clone(),
                scopes: s.scopes.to_string(),
                csrf: s.csrf.clone(),
            }),
            csrf: s.csrf.clone(),
            can_enqueue: s.scopes.contains(Scopes::ENQUEUE),
            can_admin: s.scopes.contains(Scopes::ADMIN),
            ..Nav::anonymous()
        }
    }
}

/// A rendered template as an HTML response.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "ui/message.html")]
struct MessagePage {
    title: String,
    nav: Nav,
    message: String,
}

/// A page saying what went wrong, with `status`.
pub fn message_page(
    session: Option<&Session>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    render(
        status,
        &MessagePage {
            title: title.to_owned(),
            nav: session.map(Session::nav).unwrap_or_else(Nav::anonymous),
            message: message.to_owned(),
        },
    )
}

/// An API error as a page: its status and its public message (never internal detail).
pub fn error_page(session: Option<&Session>, e: ApiError) -> Response {
    let status = e.status();
    let title = status.canonical_reason().unwrap_or("Error");
    message_page(session, status, title, &e.public_message())
}

/// `/ui/<anything else>`.
pub async fn not_found(session: Session) -> Response {
    message_page(
        Some(&session),
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
    )
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&…` of the non-empty values.
pub fn href(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", enc(v)))
        })
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

pub fn preview_href(key: &str) -> String {
    href("/ui/preview", &[("key", Some(key))])
}

pub(super) fn job_href(id: uuid::Uuid) -> String {
    format!("/ui/jobs/{id}")
}

/// `3m`, `2h 5m`, `4d 3h`.
pub(super) fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

pub(super) fn ago(t: DateTime<Utc>) -> String {
    format!("{} ago", span((Utc::now() - t).num_seconds()))
}

fn until(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let d = (t - Utc::now()).num_seconds();
            if d >= 0 {
                format!("in {}", span(d))
            } else {
                format!("expired {} ago", span(-d))
            }
        }
    }
}

pub(super) fn short(commit: Option<&str>) -> String {
    commit
        .map(|c| c.chars().take(12).collect())
        .unwrap_or_default()
}

/// Only http(s) URLs become links (a `javascript:` URL would be one click from running).
fn safe_url(url: Option<&str>) -> Option<String> {
    url.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_owned)
}

fn cpu(m: i64) -> String {
    if m >= 1000 && m % 100 == 0 {
        format!("{}", m as f64 / 1000.0)
    } else {
        format!("{m}m")
    }
}

fn mem(b: i64) -> String {
    const MI: i64 = 1024 * 1024;
    if b >= 1024 * MI {
        format!("{:.1}Gi", b as f64 / (1024 * MI) as f64)
    } else {
        format!("{}Mi", b / MI)
    }
}

/// Resource use against quota, as a table cell: text, and whether to warn (80% or more).
pub struct Usage {
    pub text: String,
    pub warn: bool,
}

fn usage(u: Option<&ResourceUseView>) -> Usage {
    let Some(u) = u else {
        return Usage {
            text: "not measured yet".into(),
            warn: false,
        };
    };
    let text = match u.metrics.as_str() {
        "no_metrics_server" => "no metrics".into(),
        "ok" => {
            let part = |name: &str, used: Option<String>, limit: Option<String>, p: Option<f64>| {
                let used = used.unwrap_or_else(|| "?".into());
                match (limit, p) {
                    (Some(l), Some(p)) => format!("{name} {used} / {l} ({p}%)"),
                    (Some(l), None) => format!("{name} {used} / {l}"),
                    _ => format!("{name} {used} (no quota)"),
                }
            };
            format!(
                "{} · {}",
                part(
                    "CPU",
                    u.cpu_millis.map(cpu),
                    u.cpu_limit_millis.map(cpu),
                    u.cpu_percent
                ),
                part(
                    "memory",
                    u.memory_bytes.map(mem),
                    u.memory_limit_bytes.map(mem),
                    u.memory_percent
                ),
            )
        }
        _ => "metrics unavailable".into(),
    };
    Usage {
        text,
        warn: u.near_limit,
    }
}

/// A preview key's pull request: repository and a link to it.
pub struct PullRequest {
    pub label: String,
    pub href: String,
}

fn pull_request(key: &str) -> Option<PullRequest> {
    slipway_github::PreviewKey::parse(key).map(|k| PullRequest {
        label: format!("{}#{}", k.full_name(), k.number),
        href: format!("https://github.com/{}/pull/{}", k.full_name(), k.number),
    })
}

pub(super) fn bad_query(session: &Session, e: QueryRejection) -> Response {
    message_page(
        Some(session),
        StatusCode::BAD_REQUEST,
        "Bad request",
        &e.body_text(),
    )
}

/// The query of a list page (`?limit=` among its filters).
trait ListQuery {
    fn limit(&self) -> Option<&str>;
}

impl ListQuery for PreviewsQuery {
    fn limit(&self) -> Option<&str> {
        self.limit.as_deref()
    }
}

impl ListQuery for JobsQuery {
    fn limit(&self) -> Option<&str> {
        self.limit.as_deref()
    }
}

/// A list page's query and page size, or the 400 page saying what is wrong with them.
// The error is the response the handler returns at once; boxing it would only add a step.
#[allow(clippy::result_large_err)]
fn list_query<Q: ListQuery>(
    session: &Session,
    query: Result<Query<Q>, QueryRejection>,
) -> Result<(Q, u32), Response> {
    let Query(q) = query.map_err(|e| bad_query(session, e))?;
    let limit = page_limit(q.limit())
        .map_err(|m| message_page(Some(session), StatusCode::BAD_REQUEST, "Bad request", &m))?;
    Ok((q, limit))
}

/// The page size a `limit` asks for, or why it is refused.
fn page_limit(limit: Option<&str>) -> Result<u32, String> {
    match limit.filter(|l| !l.is_empty()) {
        None => Ok(DEFAULT_PAGE),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| format!("limit is a number from 1 to {MAX_PAGE}")),
    }
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The `done` code an action redirects with (any other query is ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Done {
    done: Option<String>,
}

impl Done {
    /// The session's page header with the action's notice.
    pub fn nav(&self, session: &Session) -> Nav {
        let mut nav = session.nav();
        nav.notice = actions::notice(self.done.as_deref(), None, None);
        nav
    }
}

// ---- Previews ----

#[derive(Debug, Default, Deserialize)]
pub struct PreviewsQuery {
    status: Option<String>,
    repository: Option<String>,
    /// Keys containing this.
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

pub struct PreviewRow {
    pub key: String,
    pub href: String,
    pub pull_request: Option<PullRequest>,
    pub status: String,
    pub url: Option<String>,
    pub commit: String,
    pub age: String,
    pub expires: String,
    pub usage: Usage,
    /// The preview's newest build and launch.
    pub build: Option<JobCell>,
    pub launch: Option<JobCell>,
}

/// A job as a table cell: its state, linking to its page.
pub struct JobCell {
    pub href: String,
    pub state: String,
}

impl JobCell {
    fn new((id, state): (JobId, JobState)) -> JobCell {
        JobCell {
            href: job_href(id),
            state: state.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/previews.html")]
struct PreviewsPage {
    title: String,
    nav: Nav,
    statuses: Vec<String>,
    status: String,
    repository: String,
    q: String,
    rows: Vec<PreviewRow>,
    next: Option<String>,
    first: Option<String>,
}

/// `GET /ui`: previews, newest first, filtered by status and repository.
pub async fn previews(
    State(state): State<Arc<UiState>>,
    session: Session,
    query: Result<Query<PreviewsQuery>, QueryRejection>,
) -> Response {
    let (q, limit) = match list_query(&session, query) {
        Ok(parsed) => parsed,
        Err(page) => return page,
    };
    let (status, repository) = (nonempty(&q.status), nonempty(&q.repository));
    let ended = status
        .as_deref()
        .is_some_and(|s| ENDED_PREVIEW_STATUSES.contains(&s));
    let search = nonempty(&q.q);
    let filter = match preview_filter(ended, status.clone(), repository.clone()).and_then(|f| {
        Ok(PreviewFilter {
            key_contains: key_search(search.clone())?,
            ..f
        })
    }) {
        Ok(f) => f,
        Err(e) => return error_page(Some(&session), e),
    };
    let cursor = nonempty(&q.cursor);
    let page = match read::previews(&state.app, &filter, cursor.as_deref(), limit).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&session), e),
    };
    let keys: Vec<String> = page.items.iter().map(|p| p.key.clone()).collect();
    let (usages, latest) = match tokio::try_join!(
        read::preview_usages(&state.app, &keys),
        read::latest_jobs(&state.app, &keys)
    ) {
        Ok(x) => x,
        Err(e) => return error_page(Some(&session), e),
    };
    let rows = page
        .items
        .iter()
        .map(|p: &PreviewView| PreviewRow {
            key: p.key.clone(),
            href: preview_href(&p.key),
            pull_request: pull_request(&p.key),
            status: p.status.clone(),
            url: safe_url(p.url.as_deref()),
            commit: short(p.commit.as_deref()),
            age: ago(p.created_at),
            expires: until(p.expires_at),
            usage: usage(usages.get(&p.key)),
            build: latest.get(&p.key).and_then(|l| l.build).map(JobCell::new),
            launch: latest.get(&p.key).and_then(|l| l.launch).map(JobCell::new),
        })
        .collect();
    let limit_s = (limit != DEFAULT_PAGE).then(|| limit.to_string());
    let filters = |cursor: Option<&str>| {
        href(
            "/ui",
            &[
                ("status", status.as_deref()),
                ("repository", repository.as_deref()),
                ("q", search.as_deref()),
                ("limit", limit_s.as_deref()),
                ("cursor", cursor),
            ],
        )
    };
    render(
        StatusCode::OK,
        &PreviewsPage {
            title: "Previews".into(),
            nav: session.nav(),
            statuses: PREVIEW_STATUSES.iter().map(|s| s.to_string()).collect(),
            status: status.clone().unwrap_or_default(),
            repository: repository.clone().unwrap_or_default(),
            q: search.clone().unwrap_or_default(),
            rows,
            next: page.next_cursor.as_deref().map(|c| filters(Some(c))),
            first: cursor.is_some().then(|| filters(None)),
        },
    )
}

// ---- One preview ----

pub struct JobRow {
    pub id: String,
    pub full_id: String,
    pub href: String,
    pub kind: String,
    pub state: String,
    pub preview: Option<(String, String)>,
    pub commit: String,
    pub created: String,
    pub attempts: String,
    pub error: String,
}

fn job_row(j: &JobView) -> JobRow {
    let id = j.id.to_string();
    JobRow {
        full_id: id.clone(),
        href: job_href(j.id),
        id: id.chars().take(8).collect(),
        kind: j.kind.to_string(),
        state: j.state.to_string(),
        preview: j.preview.as_ref().map(|p| (p.clone(), preview_href(p))),
        commit: short(j.commit.as_deref()),
        created: ago(j.created_at),
        attempts: format!("{}/{}", j.attempts.len(), j.max_attempts),
        error: j
            .error
            .as_deref()
            .map(|e| {
                let mut s: String = e.chars().take(160).collect();
                if s.len() < e.len() {
                    s.push('…');
                }
                s
            })
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "ui/preview.html")]
struct PreviewPage {
    title: String,
    nav: Nav,
    key: String,
    pull_request: Option<PullRequest>,
    status: String,
    url: Option<String>,
    namespace: String,
    image: String,
    commit: String,
    age: String,
    expires: String,
    pods: Vec<String>,
    usage: Usage,
    /// The latest jobs (`rows`, as the shared job table names them).
    rows: Vec<JobRow>,
    jobs_href: String,
    logs: Vec<LogBlock>,
    /// A live preview (not torn down): its actions are offered.
    live: bool,
    extend_hours: [u32; 3],
    /// The job table has no selection boxes here.
    selectable: bool,
    history: Vec<super::history::HistoryEvent>,
    /// What went wrong: the newest build or launch, when it failed (a launch's error is the
    /// launch worker's diagnosis: the pod's trouble and its last log line).
    problem: Option<Problem>,
}

pub struct Problem {
    pub kind: String,
    pub href: String,
    pub error: String,
    pub retrying: bool,
}

/// The newest build or launch among `jobs` (newest first), if it failed or is retrying after
/// an error.
fn problem(jobs: &[JobView]) -> Option<Problem> {
    let job = jobs.iter().find(|j| j.kind != JobKind::Cleanup)?;
    let retrying = job.state == JobState::Retrying;
    if job.state != JobState::Failed && !retrying {
        return None;
    }
    Some(Problem {
        kind: job.kind.to_string(),
        href: job_href(job.id),
        error: job
            .error
            .clone()
            .unwrap_or_else(|| "no error was recorded".into()),
        retrying,
    })
}

#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    key: Option<String>,
    done: Option<String>,
    #[serde(flatten)]
    log: LogOptions,
}

/// `GET /ui/preview?key=org/app%2342`: one preview, its latest jobs and its build and launch
/// log tails.
pub async fn preview(
    State(state): State<Arc<UiState>>,
    session: Session,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> Response {
    let (key, done, options) = match query.map(|Query(q)| (nonempty(&q.key), q.done, q.log)) {
        Ok((Some(k), done, options)) => (k, done, options),
        Ok((None, _, _)) => {
            return message_page(
                Some(&session),
                StatusCode::BAD_REQUEST,
                "Bad request",
                "key (a preview key) is required",
            );
        }
        Err(e) => return bad_query(&session, e),
    };
    let limits = match options.limits() {
        Ok(l) => l,
        Err(m) => return message_page(Some(&session), StatusCode::BAD_REQUEST, "Bad request", &m),
    };
    let detail = match read::preview_detail(&state.app, &key).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&session), e),
    };
    let mut logs = Vec::new();
    for (kind, title) in [
        (JobKind::Build, "Build log"),
        (JobKind::Launch, "Launch log"),
    ] {
        if let Some(job) = detail.latest_jobs.iter().find(|j| j.kind == kind) {
            match read::log_tail(&state.app, job.id, None, limits).await {
                Ok(tail) => logs.push(log_block(title, job, tail, &options, &|pairs| {
                    let mut all = vec![("key", Some(key.as_str()))];
                    all.extend_from_slice(pairs);
                    href("/ui/preview", &all)
                })),
                Err(e) => return error_page(Some(&session), e),
            }
        }
    }
    // The status history: the preview's newest jobs with their attempts (the jobs list's read).
    let filter = slipway_shared::store::JobFilter {
        preview: Some(detail.key.clone()),
        ..Default::default()
    };
    let history = match read::jobs(&state.app, &filter, None, super::history::HISTORY_JOBS).await {
        Ok(page) => super::history::history(&page.items),
        Err(e) => return error_page(Some(&session), e),
    };
    let p = detail.preview.as_ref();
    let mut nav = session.nav();
    nav.notice = actions::notice(done.as_deref(), None, None);
    render(
        StatusCode::OK,
        &PreviewPage {
            title: detail.key.clone(),
            nav,
            live: p.is_some_and(|p| !ENDED_PREVIEW_STATUSES.contains(&p.status.as_str())),
            extend_hours: [1, 4, crate::ops::MAX_EXTENSION_HOURS],
            selectable: false,
            pull_request: pull_request(&detail.key),
            status: p
                .map(|p| p.status.clone())
                .unwrap_or_else(|| "not launched".into()),
            url: safe_url(p.and_then(|p| p.url.as_deref())),
            namespace: p.map(|p| p.namespace.clone()).unwrap_or_default(),
            image: p.and_then(|p| p.image.clone()).unwrap_or_default(),
            commit: p.and_then(|p| p.commit.clone()).unwrap_or_default(),
            age: span(detail.age_s),
            expires: until(p.and_then(|p| p.expires_at)),
            pods: p.map(|p| p.pods.clone()).unwrap_or_default(),
            usage: usage(detail.resource_use.as_ref()),
            rows: detail.latest_jobs.iter().map(job_row).collect(),
            jobs_href: href("/ui/jobs", &[("preview", Some(&detail.key))]),
            logs,
            history,
            problem: problem(&detail.latest_jobs),
            key: detail.key,
        },
    )
}

// ---- Jobs ----

#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    kind: Option<String>,
    state: Option<String>,
    preview: Option<String>,
    /// Free text (a whole job id jumps to the job).
    q: Option<String>,
    /// Text in the error.
    error: Option<String>,
    /// What a bulk action did: its code and counts (see `actions::notice`).
    done: Option<String>,
    n: Option<String>,
    skipped: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/jobs.html")]
struct JobsPage {
    title: String,
    nav: Nav,
    kinds: Vec<String>,
    states: Vec<String>,
    kind: String,
    state: String,
    preview: String,
    q: String,
    error: String,
    /// The filter as hidden fields of the bulk form.
    filter_fields: Vec<(&'static str, String)>,
    bulk_cap: usize,
    /// How many jobs one page of a text search reads.
    search_window: i64,
    /// Rows carry selection boxes (for admins' bulk actions).
    selectable: bool,
    rows: Vec<JobRow>,
    next: Option<String>,
    first: Option<String>,
}

/// `GET /ui/jobs`: jobs, newest first, filtered by kind, state and preview.
pub async fn jobs(
    State(state): State<Arc<UiState>>,
    session: Session,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Response {
    let (q, limit) = match list_query(&session, query) {
        Ok(parsed) => parsed,
        Err(page) => return page,
    };
    let (kind, job_state, preview, cursor) = (
        nonempty(&q.kind),
        nonempty(&q.state),
        nonempty(&q.preview),
        nonempty(&q.cursor),
    );
    let (search, error) = (nonempty(&q.q), nonempty(&q.error));
    // Find by id: a whole job id goes straight to the job.
    if let Some(id) = search.as_deref().and_then(|s| s.parse::<uuid::Uuid>().ok()) {
        return axum::response::Redirect::to(&job_href(id)).into_response();
    }
    let filter = match job_filter(
        JobFilterArgs {
            kind: kind.clone(),
            state: job_state.clone(),
            preview: preview.clone(),
            q: search.clone(),
            error: error.clone(),
        },
        None,
        None,
        cursor.as_deref(),
    ) {
        Ok(f) => f,
        Err(e) => return error_page(Some(&session), e),
    };
    let page = match read::jobs(&state.app, &filter, cursor.as_deref(), limit).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&session), e),
    };
    let limit_s = (limit != DEFAULT_PAGE).then(|| limit.to_string());
    let filters = |cursor: Option<&str>| {
        href(
            "/ui/jobs",
            &[
                ("kind", kind.as_deref()),
                ("state", job_state.as_deref()),
                ("preview", preview.as_deref()),
                ("q", search.as_deref()),
                ("error", error.as_deref()),
                ("limit", limit_s.as_deref()),
                ("cursor", cursor),
            ],
        )
    };
    let filter_fields = [
        ("kind", &kind),
        ("state", &job_state),
        ("preview", &preview),
        ("q", &search),
        ("error", &error),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect();
    let mut nav = session.nav();
    let count = |v: &Option<String>| v.as_deref().and_then(|n| n.parse().ok());
    nav.notice = actions::notice(q.done.as_deref(), count(&q.n), count(&q.skipped));
    render(
        StatusCode::OK,
        &JobsPage {
            title: "Jobs".into(),
            selectable: nav.can_admin,
            nav,
            kinds: JobKind::ALL.iter().map(|k| k.to_string()).collect(),
            states: slipway_core::JobState::ALL
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            q: search.clone().unwrap_or_default(),
            error: error.clone().unwrap_or_default(),
            filter_fields,
            bulk_cap: actions::BULK_CAP,
            search_window: slipway_shared::store::TEXT_SEARCH_WINDOW,
            kind: kind.clone().unwrap_or_default(),
            state: job_state.clone().unwrap_or_default(),
            preview: preview.clone().unwrap_or_default(),
            rows: page.items.iter().map(job_row).collect(),
            next: page.next_cursor.as_deref().map(|c| filters(Some(c))),
            first: cursor.is_some().then(|| filters(None)),
        },
    )
}

// ---- One job ----

pub struct AttemptRow {
    pub attempt: i32,
    pub worker: String,
    pub outcome: String,
    pub started: String,
    pub duration: String,
    pub objects: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "ui/job.html")]
struct JobPage {
    title: String,
    nav: Nav,
    id: String,
    kind: String,
    state: String,
    preview: Option<(String, String)>,
    commit: String,
    created: String,
    error: Option<String>,
    error_class: String,
    attempts: Vec<AttemptRow>,
    log: LogBlock,
    /// Retry applies to a failed or cancelled job, cancel to an unfinished one.
    can_retry: bool,
    can_cancel: bool,
}

/// `GET /ui/jobs/{id}`: a job, its attempts, error and log tail.
pub async fn job(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path(id): Path<String>,
    done: Result<Query<Done>, QueryRejection>,
    query: Result<Query<LogOptions>, QueryRejection>,
) -> Response {
    let done = done.map(|Query(d)| d).unwrap_or_default();
    let id = match crate::routes::job_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(Some(&session), e),
    };
    let options = match query {
        Ok(Query(o)) => o,
        Err(e) => return bad_query(&session, e),
    };
    let limits = match options.limits() {
        Ok(l) => l,
        Err(m) => return message_page(Some(&session), StatusCode::BAD_REQUEST, "Bad request", &m),
    };
    let (job, tail) = match tokio::try_join!(
        read::job(&state.app, id),
        read::log_tail(&state.app, id, None, limits)
    ) {
        Ok(x) => x,
        Err(e) => return error_page(Some(&session), e),
    };
    let attempts = job
        .attempts
        .iter()
        .map(|a| AttemptRow {
            attempt: a.attempt,
            worker: a.worker_id.clone(),
            outcome: a.outcome.clone().unwrap_or_else(|| "running".into()),
            started: ago(a.started_at),
            duration: span((a.finished_at.unwrap_or_else(Utc::now) - a.started_at).num_seconds()),
            objects: a.k8s_objects.join(", "),
            error: a.error.clone().unwrap_or_default(),
        })
        .collect();
    render(
        StatusCode::OK,
        &JobPage {
            title: format!("{} job {}", job.kind, job.id),
            nav: done.nav(&session),
            can_retry: matches!(job.state, JobState::Failed | JobState::Cancelled),
            can_cancel: !job.state.is_terminal(),
            id: job.id.to_string(),
            kind: job.kind.to_string(),
            state: job.state.to_string(),
            preview: job.preview.as_ref().map(|p| (p.clone(), preview_href(p))),
            commit: job.commit.clone().unwrap_or_default(),
            created: ago(job.created_at),
            error: job.error.clone(),
            error_class: match job.error_class {
                Some(slipway_core::ErrorClass::Transient) => "transient".into(),
                Some(slipway_core::ErrorClass::Permanent) => "permanent".into(),
                None => String::new(),
            },
            attempts,
            log: log_block("Log", &job, tail, &options, &|pairs| {
                href(&job_href(job.id), pairs)
            }),
        },
    )
}

// ---- Queues ----

pub struct QueueRow {
    pub name: String,
    pub waiting: u64,
    pub active: u64,
    pub delayed: u64,
    pub failed: u64,
    pub paused: bool,
    pub oldest: String,
    pub workers: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/queues.html")]
struct QueuesPage {
    title: String,
    nav: Nav,
    rows: Vec<QueueRow>,
    chart: super::history::Chart,
}

/// `GET /ui/queues`: each queue's figures and live workers.
pub async fn queues(
    State(state): State<Arc<UiState>>,
    session: Session,
    done: Result<Query<Done>, QueryRejection>,
) -> Response {
    let done = done.map(|Query(d)| d).unwrap_or_default();
    let (list, throughput) =
        match tokio::try_join!(read::queues(&state.app), read::throughput(&state.app)) {
            Ok(x) => x,
            Err(e) => return error_page(Some(&session), e),
        };
    let rows = list
        .items
        .into_iter()
        .map(|q| QueueRow {
            name: q.queue,
            waiting: q.counts.waiting,
            active: q.counts.active,
            delayed: q.counts.delayed,
            failed: q.counts.failed,
            paused: q.paused,
            oldest: q
                .oldest_waiting_age_s
                .map(|s| span(s as i64))
                .unwrap_or_else(|| "none waiting".into()),
            workers: q
                .workers
                .iter()
                .map(|w| {
                    format!(
                        "{} ({} pid {}, {} slots, {} jobs, heartbeat {})",
                        w.id,
                        w.host,
                        w.pid,
                        w.concurrency,
                        w.jobs.len(),
                        w.last_heartbeat.map(ago).unwrap_or_else(|| "never".into())
                    )
                })
                .collect(),
        })
        .collect();
    render(
        StatusCode::OK,
        &QueuesPage {
            title: "Queues".into(),
            nav: done.nav(&session),
            rows,
            chart: super::history::chart(&throughput),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_encode_keys_and_skip_empty_values() {
        assert_eq!(preview_href("org/app#42"), "/ui/preview?key=org%2Fapp%2342");
        assert_eq!(
            href("/ui", &[("status", Some("")), ("cursor", Some("a b&c"))]),
            "/ui?cursor=a%20b%26c"
        );
        assert_eq!(safe_url(Some("javascript:alert(1)")), None);
        assert_eq!(span(3725), "1h 2m");
        assert_eq!(mem(256 * 1024 * 1024), "256Mi");
        assert_eq!(cpu(250), "250m");
    }
}
