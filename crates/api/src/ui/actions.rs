//! The dashboard's actions: redeploy, extend and delete a preview (`enqueue`); retry and cancel
//! jobs, one or in bulk, pause and resume queues, edit repository settings (`admin`).
//!
//! Every handler starts with [`checked`]: same origin, the session's CSRF token, the scope
//! (403 pages otherwise), and no NUL in any field. The work itself is `crate::ops` (or the
//! queue client, as `/v1/queues` uses it), the same paths the JSON API and MCP take. Success
//! answers `303` back to the page the action belongs to, with a `done` code the page turns
//! into a fixed notice ([`notice`]); a refusal is a 4xx page naming what was wrong.

use super::UiState;
use super::pages::{self, Nav, message_page, render};
use super::session::Session;
use crate::error::ApiError;
use crate::ops;
use crate::routes::{JobFilterArgs, job_filter};
use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use slipway_core::auth::Scopes;
use slipway_core::payload::{BuildOptions, CleanupRequest, LaunchOptions, PreviewSource};
use slipway_core::validate::Validate;
use slipway_core::{JobId, JobState};
use slipway_shared::store::JobRecord;
use std::sync::Arc;

/// Most jobs one bulk action touches.
pub const BULK_CAP: usize = 1000;

/// A posted form's fields, in order (repeated names, such as `ids`, stay repeated).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

type Posted = Result<Form<Vec<(String, String)>>, FormRejection>;

/// The guard of every action: the form parses, comes from this origin with the session's CSRF
/// token, the session holds `needs`, and no field holds a NUL (which Postgres text cannot).
// The error is the response the handler returns at once; boxing it would only add a step.
#[allow(clippy::result_large_err)]
fn checked(
    session: &Session,
    headers: &HeaderMap,
    form: Posted,
    needs: Scopes,
) -> Result<Fields, Response> {
    let fields = form.map(|Form(f)| Fields(f)).unwrap_or(Fields(Vec::new()));
    session.check_post(headers, fields.get("csrf"), needs)?;
    if let Some(e) = crate::extract::nul_refusal(
        "invalid_field",
        fields.0.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        return Err(refused(session, e));
    }
    Ok(fields)
}

/// An error as a page whose message names the field it is about.
fn refused(session: &Session, e: ApiError) -> Response {
    let status = e.status();
    let message = match &e {
        ApiError::Invalid {
            field: Some(f),
            message,
            ..
        } => format!("{f}: {message}"),
        other => other.public_message(),
    };
    message_page(
        Some(session),
        status,
        status.canonical_reason().unwrap_or("Refused"),
        &message,
    )
}

fn bad_field(session: &Session, field: &str, message: &str) -> Response {
    refused(
        session,
        ApiError::bad_request("invalid_field", message, Some(field.to_owned())),
    )
}

fn back(to: String) -> Response {
    Redirect::to(&to).into_response()
}

fn with_done(href: &str, done: &str) -> String {
    let sep = if href.contains('?') { '&' } else { '?' };
    format!("{href}{sep}done={done}")
}

/// The fixed message of a `done` code an action redirected with (`None` for anything else:
/// a link cannot make a page say what it likes).
pub fn notice(done: Option<&str>, n: Option<u32>, skipped: Option<u32>) -> Option<String> {
    let (n, skipped) = (n.unwrap_or(0), skipped.unwrap_or(0));
    let jobs = |n: u32| {
        if n == 1 {
            "1 job".into()
        } else {
            format!("{n} jobs")
        }
    };
    let skipped = if skipped > 0 {
        format!(
            "; {} skipped (not in a state that allows it)",
            jobs(skipped)
        )
    } else {
        String::new()
    };
    Some(match done? {
        "redeploy" => "Redeploy enqueued: a new launch of the preview's image (below).".into(),
        "extend" => "Expiry extended.".into(),
        "delete" => "Teardown enqueued: the cleanup job is below.".into(),
        "retry" => "Job queued again.".into(),
        "cancel" => "Job cancelled.".into(),
        "bulk-retry" => format!("Retried {}{skipped}.", jobs(n)),
        "bulk-cancel" => format!("Cancelled {}{skipped}.", jobs(n)),
        "pause" => "Queue paused: workers take no new jobs from it.".into(),
        "resume" => "Queue resumed.".into(),
        "repository" => "Repository settings saved.".into(),
        _ => return None,
    })
}

// ---- Preview actions (enqueue) ----

/// A preview action's form, checked ([`checked`] with `enqueue`), and its `key`.
#[allow(clippy::result_large_err)]
fn checked_preview(
    session: &Session,
    headers: &HeaderMap,
    form: Posted,
) -> Result<(Fields, String), Response> {
    let fields = checked(session, headers, form, Scopes::ENQUEUE)?;
    let key = fields
        .get("key")
        .map(str::to_owned)
        .ok_or_else(|| bad_field(session, "key", "key (the preview's key) is required"))?;
    Ok((fields, key))
}

/// `POST /ui/preview/redeploy` (`key`): [`ops::redeploy`].
pub async fn redeploy(
    State(state): State<Arc<UiState>>,
    session: Session,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    let (_, key) = match checked_preview(&session, &headers, form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match ops::redeploy(&state.app, &key, &session.token_name).await {
        Ok(_) => back(with_done(&pages::preview_href(&key), "redeploy")),
        Err(e) => refused(&session, e),
    }
}

/// `POST /ui/preview/extend` (`key`, `hours`): [`ops::extend_expiry`].
pub async fn extend(
    State(state): State<Arc<UiState>>,
    session: Session,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    let (fields, key) = match checked_preview(&session, &headers, form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(hours) = fields.get("hours").and_then(|h| h.parse::<u32>().ok()) else {
        return bad_field(
            &session,
            "hours",
            &format!(
                "hours is a whole number from 1 to {}",
                ops::MAX_EXTENSION_HOURS
            ),
        );
    };
    match ops::extend_expiry(&state.app, &key, hours, &session.token_name).await {
        Ok(_) => back(with_done(&pages::preview_href(&key), "extend")),
        Err(e) => refused(&session, e),
    }
}

/// `POST /ui/preview/delete` (`key`, `confirm`): with `confirm` equal to the key, enqueue the
/// teardown ([`ops::cleanup`]); anything else is a 400 and changes nothing.
pub async fn delete(
    State(state): State<Arc<UiState>>,
    session: Session,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    let (fields, key) = match checked_preview(&session, &headers, form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    // The typed confirmation is compared exactly (untrimmed): it must be the key itself.
    let confirm = fields
        .0
        .iter()
        .find(|(k, _)| k == "confirm")
        .map(|(_, v)| v);
    if confirm.map(String::as_str) != Some(key.as_str()) {
        return bad_field(
            &session,
            "confirm",
            &format!(
                "deleting a preview cannot be undone: type its key, {key}, exactly to confirm. \
                 Nothing was deleted."
            ),
        );
    }
    let record = match state.app.store.get_preview(&key).await {
        Ok(r) => r,
        Err(e) => return refused(&session, e.into()),
    };
    match record {
        None => {
            return refused(
                &session,
                ApiError::NotFound(format!("preview {key:?} not found")),
            );
        }
        Some(r) if r.deleted_at.is_some() => {
            return refused(
                &session,
                ApiError::Conflict(format!(
                    "preview {key:?} was already torn down ({}); nothing to delete",
                    r.status
                )),
            );
        }
        Some(_) => {}
    }
    let valid = match (CleanupRequest {
        preview: key.clone(),
    })
    .validate(&state.app.limits)
    {
        Ok(v) => v,
        Err(e) => return refused(&session, e.into()),
    };
    match ops::cleanup(&state.app, &valid, None).await {
        Ok(r) => {
            tracing::info!(preview = %key, job.id = %r.job.id, by = %session.token_name, "preview deletion through the dashboard");
            back(with_done(&pages::preview_href(&key), "delete"))
        }
        Err(e) => refused(&session, e),
    }
}

// ---- Job actions (admin) ----

#[allow(clippy::result_large_err)]
fn job_id(session: &Session, id: &str) -> Result<JobId, Response> {
    crate::routes::job_id(id).map_err(|e| refused(session, e))
}

/// `POST /ui/jobs/{id}/retry`: [`ops::retry`].
pub async fn retry(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    job_action(&state, &session, &id, &headers, form, JobOp::Retry).await
}

/// `POST /ui/jobs/{id}/cancel`: [`ops::cancel`].
pub async fn cancel(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    job_action(&state, &session, &id, &headers, form, JobOp::Cancel).await
}

/// Retry or cancel one job (`admin`), then back to its page.
async fn job_action(
    state: &UiState,
    session: &Session,
    id: &str,
    headers: &HeaderMap,
    form: Posted,
    op: JobOp,
) -> Response {
    if let Err(r) = checked(session, headers, form, Scopes::ADMIN) {
        return r;
    }
    let id = match job_id(session, id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let (done, result) = match op {
        JobOp::Retry => (
            "retry",
            ops::retry(&state.app, id, &session.token_name).await,
        ),
        JobOp::Cancel => (
            "cancel",
            ops::cancel(&state.app, id, &session.token_name).await,
        ),
    };
    match result {
        Ok(_) => back(with_done(&format!("/ui/jobs/{id}"), done)),
        Err(e) => refused(session, e),
    }
}

/// What a job action (one job or in bulk) does.
#[derive(Clone, Copy, PartialEq)]
enum JobOp {
    Retry,
    Cancel,
}

impl JobOp {
    /// The states a job must be in for the operation to apply.
    fn states(self) -> &'static [JobState] {
        match self {
            JobOp::Retry => &[JobState::Failed, JobState::Cancelled],
            JobOp::Cancel => &[JobState::Queued, JobState::Running, JobState::Retrying],
        }
    }

    fn name(self) -> &'static str {
        match self {
            JobOp::Retry => "retry",
            JobOp::Cancel => "cancel",
        }
    }
}

/// The jobs page's filter fields, carried through a bulk action.
const FILTER_FIELDS: [&str; 5] = ["kind", "state", "preview", "q", "error"];

#[derive(Template)]
#[template(path = "ui/bulk.html")]
struct BulkPage {
    title: String,
    nav: Nav,
    op: &'static str,
    /// `selected` or `filter`.
    target: String,
    ids: Vec<String>,
    filters: Vec<(&'static str, String)>,
    count: usize,
    /// More jobs match than [`BULK_CAP`].
    capped: bool,
    /// Matching jobs the operation does not apply to (selected ones only).
    skipped: usize,
    cap: usize,
    back: String,
}

/// `POST /ui/jobs/bulk`: retry or cancel the selected jobs (`ids`) or every job matching the
/// jobs page's filter (`target=filter`), at most [`BULK_CAP`]. Without `confirm` it answers a
/// page saying how many jobs it would touch (a bounded read, never a count over all jobs);
/// with `confirm=<n>` it acts on at most `n` of them, newest first.
pub async fn bulk(
    State(state): State<Arc<UiState>>,
    session: Session,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    let fields = match checked(&session, &headers, form, Scopes::ADMIN) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let op = match fields.get("op") {
        Some("retry") => JobOp::Retry,
        Some("cancel") => JobOp::Cancel,
        _ => return bad_field(&session, "op", "op is retry or cancel"),
    };
    let filters: Vec<(&'static str, String)> = FILTER_FIELDS
        .iter()
        .filter_map(|f| fields.get(f).map(|v| (*f, v.to_owned())))
        .collect();
    let back_href = {
        let pairs: Vec<(&str, Option<&str>)> = filters
            .iter()
            .map(|(k, v)| (*k, Some(v.as_str())))
            .collect();
        pages::href("/ui/jobs", &pairs)
    };
    // Without `target`: the selection when ids were posted, else the filter.
    let target = match fields.get("target") {
        Some(t) => t.to_owned(),
        None if fields.all("ids").next().is_some() => "selected".into(),
        None => "filter".into(),
    };
    let (eligible, skipped, capped) = match target.as_str() {
        "selected" => {
            let mut ids = Vec::new();
            for s in fields.all("ids") {
                match s.parse::<JobId>() {
                    Ok(id) => ids.push(id),
                    Err(_) => {
                        return bad_field(&session, "ids", &format!("{s:?} is not a job id"));
                    }
                }
            }
            ids.sort();
            ids.dedup();
            if ids.is_empty() {
                return bad_field(&session, "ids", "select at least one job");
            }
            if ids.len() > BULK_CAP {
                return bad_field(&session, "ids", &format!("at most {BULK_CAP} jobs at once"));
            }
            let states = match state.app.store.job_states(&ids).await {
                Ok(s) => s,
                Err(e) => return refused(&session, e.into()),
            };
            let eligible: Vec<JobId> = ids
                .iter()
                .filter(|id| states.get(id).is_some_and(|s| op.states().contains(s)))
                .copied()
                .collect();
            let skipped = ids.len() - eligible.len();
            (eligible, skipped, false)
        }
        "filter" => match matching(&state, &fields, op).await {
            Ok((jobs, capped)) => (jobs.iter().map(|j| j.id).collect(), 0, capped),
            Err(e) => return refused(&session, e),
        },
        _ => return bad_field(&session, "target", "target is selected or filter"),
    };

    let Some(confirm) = fields.get("confirm") else {
        return render(
            StatusCode::OK,
            &BulkPage {
                title: format!("Bulk {}", op.name()),
                nav: session.nav(),
                op: op.name(),
                ids: if target == "selected" {
                    eligible.iter().map(|i| i.to_string()).collect()
                } else {
                    Vec::new()
                },
                target,
                filters,
                count: eligible.len(),
                capped,
                skipped,
                cap: BULK_CAP,
                back: back_href,
            },
        );
    };
    let Some(confirmed) = confirm.parse::<usize>().ok().filter(|n| *n <= BULK_CAP) else {
        return bad_field(
            &session,
            "confirm",
            &format!("confirm is the number of jobs shown, 0 to {BULK_CAP}"),
        );
    };
    // Never more than the operator saw and agreed to: jobs that came to match since are left,
    // and so are those that moved on meanwhile (finished, or retried/cancelled by another).
    let chosen: Vec<JobId> = eligible.into_iter().take(confirmed).collect();
    let result = match op {
        JobOp::Retry => ops::retry_many(&state.app, &chosen, &session.token_name).await,
        JobOp::Cancel => ops::cancel_many(&state.app, &chosen, &session.token_name).await,
    };
    let acted = match result {
        Ok(ids) => ids.len(),
        Err(e) => return refused(&session, e),
    };
    let done = acted as u32;
    let not_done = (skipped + chosen.len() - acted) as u32;
    tracing::info!(op = op.name(), done, skipped = not_done, by = %session.token_name, "operator bulk action");
    let done_href = with_done(&back_href, &format!("bulk-{}", op.name()));
    back(format!("{done_href}&n={done}&skipped={not_done}"))
}

/// The jobs matching the jobs page's filter that `op` applies to, newest first, at most
/// [`BULK_CAP`], and whether more match. One keyset read per applicable state, each bounded
/// by the cap (the `(state, created_at)` index), never a count over every job.
async fn matching(
    state: &UiState,
    fields: &Fields,
    op: JobOp,
) -> Result<(Vec<JobRecord>, bool), ApiError> {
    let arg = |name: &str| fields.get(name).map(str::to_owned);
    let filter = job_filter(
        JobFilterArgs {
            kind: arg("kind"),
            state: arg("state"),
            preview: arg("preview"),
            q: arg("q"),
            error: arg("error"),
        },
        None,
        None,
        None,
    )?;
    let states: Vec<JobState> = op
        .states()
        .iter()
        .copied()
        .filter(|s| filter.state.is_none_or(|f| f == *s))
        .collect();
    let mut jobs = Vec::new();
    let mut more = false;
    for s in states {
        let mut f = filter.clone();
        f.state = Some(s);
        let page = state.app.store.list_jobs(&f, None, BULK_CAP as u32).await?;
        more |= page.next_cursor.is_some();
        jobs.extend(page.items);
    }
    jobs.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
    if jobs.len() > BULK_CAP {
        jobs.truncate(BULK_CAP);
        more = true;
    }
    Ok((jobs, more))
}

// ---- Queue actions (admin) ----

async fn queue_action(
    state: Arc<UiState>,
    session: Session,
    queue: String,
    headers: HeaderMap,
    form: Posted,
    pause: bool,
) -> Response {
    if let Err(r) = checked(&session, &headers, form, Scopes::ADMIN) {
        return r;
    }
    let kind = match crate::routes::queues::queue_kind(&queue) {
        Ok(k) => k,
        Err(e) => return refused(&session, e),
    };
    let result = if pause {
        state.app.queue.pause(kind).await
    } else {
        state.app.queue.resume(kind).await
    };
    if let Err(e) = result {
        return refused(&session, e.into());
    }
    let what = if pause { "pause" } else { "resume" };
    tracing::info!(queue = %kind, by = %session.token_name, "queue {what}d through the dashboard");
    back(with_done("/ui/queues", what))
}

/// `POST /ui/queues/{queue}/pause`.
pub async fn pause(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path(queue): Path<String>,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    queue_action(state, session, queue, headers, form, true).await
}

/// `POST /ui/queues/{queue}/resume`.
pub async fn resume(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path(queue): Path<String>,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    queue_action(state, session, queue, headers, form, false).await
}

// ---- Repository settings (admin) ----

/// `POST /ui/repositories/{owner}/{repo}`: the settings form, validated and stored by
/// [`ops::save_repository`] (the JSON API's `PUT`). `build` and `launch` are JSON objects
/// (empty: none); a refusal names the field.
pub async fn edit_repository(
    State(state): State<Arc<UiState>>,
    session: Session,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    form: Posted,
) -> Response {
    let fields = match checked(&session, &headers, form, Scopes::ADMIN) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let build: Option<BuildOptions> = match json_field(&fields, "build") {
        Ok(v) => v,
        Err(m) => return bad_field(&session, "build", &m),
    };
    let launch: Option<LaunchOptions> = match json_field(&fields, "launch") {
        Ok(v) => v,
        Err(m) => return bad_field(&session, "launch", &m),
    };
    // The select gives the type; compose and helm take their settings as JSON beside it.
    let source_settings: Option<serde_json::Map<String, serde_json::Value>> =
        match json_field(&fields, "source_settings") {
            Ok(v) => v,
            Err(m) => return bad_field(&session, "source_settings", &m),
        };
    let source = match fields.get("source").filter(|s| !s.is_empty()) {
        None => None,
        Some(kind) => {
            let mut object = source_settings.unwrap_or_default();
            object.insert("type".into(), kind.into());
            let body = serde_json::to_vec(&object).unwrap_or_default();
            match slipway_core::payload::decode::<PreviewSource>(&body) {
                Ok(s) => Some(s),
                Err(e) => return refused(&session, ApiError::from(e.under("source"))),
            }
        }
    };
    let req = ops::RepositoryRequest {
        // Checkboxes are sent only when ticked.
        enabled: Some(fields.get("enabled").is_some()),
        mode: fields.get("mode").map(str::to_owned),
        label: fields.get("label").map(str::to_owned),
        build_forks: Some(fields.get("build_forks").is_some()),
        build,
        launch,
        // The form's select; an old form without it keeps the default.
        source,
    };
    match ops::save_repository(&state.app, &owner, &repo, req, &session.token_name).await {
        Ok(_) => back(with_done("/ui/repositories", "repository")),
        Err(e) => refused(&session, e),
    }
}

/// A JSON object field (`{}` or empty: none), or why it is refused.
fn json_field<T: serde::de::DeserializeOwned>(
    fields: &Fields,
    name: &str,
) -> Result<Option<T>, String> {
    match fields.get(name) {
        None | Some("{}") => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("{name} is a JSON object of {name} options: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_fixed_messages() {
        assert_eq!(
            notice(Some("bulk-retry"), Some(3), Some(1)).as_deref(),
            Some("Retried 3 jobs; 1 job skipped (not in a state that allows it).")
        );
        assert_eq!(notice(Some("<b>hi</b>"), None, None), None);
        assert_eq!(notice(None, None, None), None);
        assert_eq!(with_done("/ui/jobs", "x"), "/ui/jobs?done=x");
        assert_eq!(
            with_done("/ui/jobs?kind=build", "x"),
            "/ui/jobs?kind=build&done=x"
        );
    }
}
