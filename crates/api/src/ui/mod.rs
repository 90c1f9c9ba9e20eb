//! The web dashboard under `/ui` (docs/dashboard.md): server-rendered HTML from compile-time
//! checked askama templates (every value escaped unless a template says otherwise, and none
//! does), with htmx vendored into the binary. Read views work without JavaScript.
//!
//! Invariants:
//! - Pages read through `crate::read` only (the JSON API's and MCP's read models); the
//!   dashboard has no queries or write logic of its own. Sessions are stored through
//!   `slipway_shared::store` (the only SQL writer).
//! - Every route but sign-in and the static assets requires a session ([`session::Session`]),
//!   whose scopes are the token's, re-checked against the configured tokens on each request.
//! - Every state-changing form carries the session's CSRF token and is refused (403) without
//!   it; cross-origin POSTs (an `Origin` that is not the `Host`) are refused too; an action
//!   the session's scopes do not allow is neither rendered nor accepted (403). One check does
//!   all three for every action (`Session::check_post`, through `actions::checked`).
//! - Actions write through `crate::ops` (or the queue client, as `/v1/queues` does).
//! - Failed sign-ins are limited per client address and in all ([`ratelimit`]); while
//!   limited, sign-in answers 429 without checking the token.
//! - Every response carries [`security_headers`]: a CSP without inline scripts or styles,
//!   `X-Frame-Options: DENY`, `nosniff` and a referrer policy.

mod actions;
mod ansi;
mod assets;
mod history;
mod live;
mod pages;
mod ratelimit;
mod repositories;
mod session;

pub use ratelimit::{LoginLimits, TrustedProxies};
pub use session::SecureCookie;

use crate::state::AppState;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get, post};
use std::sync::Arc;
use std::time::Duration;

/// How the dashboard is configured (`SLIPWAY_UI_*`).
#[derive(Debug, Clone)]
pub struct UiSettings {
    /// When session cookies carry `Secure`.
    pub secure_cookie: SecureCookie,
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Failed sign-ins allowed per minute, per client address and in all.
    pub login_limits: LoginLimits,
    /// The proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: TrustedProxies,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            secure_cookie: SecureCookie::Auto,
            session_ttl: Duration::from_secs(12 * 3600),
            login_limits: LoginLimits::default(),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

pub(crate) struct UiState {
    app: Arc<AppState>,
    settings: UiSettings,
    login_limiter: ratelimit::LoginLimiter,
}

/// The policy of every dashboard response: scripts and styles only from this origin (so no
/// inline script or style runs, whatever a page contains), no framing, forms only to here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Adds the security headers to every `/ui` response (pages, redirects, errors, assets); pages
/// are not cached (they show live state and the CSRF token), assets set their own lifetime.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Refuses a request whose query or path holds a NUL character (Postgres text cannot hold
/// one; its query would fail) with a 400 page naming the parameter, as the JSON API's
/// extractors do ([`crate::extract::nul_refusal`]).
async fn refuse_nul(req: Request, next: Next) -> Response {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let path = req.uri().path();
    let path_nul = path.contains("%00").then_some(("path", "\0"));
    let refusal = crate::extract::nul_refusal(
        "invalid_query",
        pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(path_nul),
    );
    match refusal {
        Some(e) => pages::message_page(
            None,
            StatusCode::BAD_REQUEST,
            "Bad request",
            &e.public_message(),
        ),
        None => next.run(req).await,
    }
}

/// The `/ui` routes, with their own state and the security headers on every response.
pub fn router(app: Arc<AppState>, settings: &UiSettings) -> Router {
    let state = Arc::new(UiState {
        app,
        settings: settings.clone(),
        login_limiter: ratelimit::LoginLimiter::new(
            settings.login_limits,
            std::time::Instant::now(),
        ),
    });
    Router::new()
        .route("/ui", get(pages::previews))
        .route("/ui/", get(pages::previews))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/preview", get(pages::preview))
        .route("/ui/preview/redeploy", post(actions::redeploy))
        .route("/ui/preview/extend", post(actions::extend))
        .route("/ui/preview/delete", post(actions::delete))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/bulk", post(actions::bulk))
        .route("/ui/jobs/{id}", get(pages::job))
        .route("/ui/jobs/{id}/retry", post(actions::retry))
        .route("/ui/jobs/{id}/cancel", post(actions::cancel))
        .route("/ui/jobs/{id}/log/stream", get(live::stream))
        .route("/ui/jobs/{id}/log.txt", get(live::download))
        .route("/ui/queues", get(pages::queues))
        .route("/ui/queues/{queue}/pause", post(actions::pause))
        .route("/ui/queues/{queue}/resume", post(actions::resume))
        .route("/ui/repositories", get(repositories::repositories))
        .route(
            "/ui/repositories/{owner}/{repo}",
            post(actions::edit_repository),
        )
        .route(assets::HTMX_PATH, get(assets::htmx))
        .route(assets::CSS_PATH, get(assets::css))
        .route(assets::LIVE_PATH, get(assets::live))
        .route("/ui/{*rest}", any(pages::not_found))
        .layer(axum::middleware::from_fn(refuse_nul))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}
