//! Sign-in, sessions and CSRF. The browser presents an API token once (`POST /ui/login`); the
//! server stores a session (the SHA-256 of a random 256-bit id, the token's name and scopes, a
//! CSRF token, an expiry) and gives the browser the id in an `HttpOnly`, `SameSite=Strict`
//! cookie scoped to `/ui`. The token itself is neither stored nor put in the cookie.

use super::UiState;
use super::pages::{self, Nav};
use crate::error::ApiError;
use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use slipway_core::auth::Scopes;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "slipway_session";

/// When the session cookie carries `Secure` (`SLIPWAY_UI_SECURE_COOKIE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecureCookie {
    /// When the request came over HTTPS: an `https` request URI, or `X-Forwarded-Proto: https`
    /// / `Forwarded: proto=https` from a TLS-terminating proxy.
    Auto,
    /// Always (the dashboard is only reached over HTTPS).
    True,
    /// Never (plain-HTTP development setups).
    False,
}

fn hash_id(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The session id the request's cookie carries, if it is well formed (64 hex digits).
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn over_https(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        });
    uri.scheme_str() == Some("https") || forwarded_proto || forwarded
}

fn cookie(value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("cookie header is ASCII")
}

/// A POST from another origin: its `Origin` header names a host other than `Host`. (Browsers
/// send `Origin` on every POST; without one the request is not a browser's cross-site form.)
fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

/// The scopes both `a` and `b` hold.
fn intersect(a: Scopes, b: Scopes) -> Scopes {
    [Scopes::ENQUEUE, Scopes::READ, Scopes::ADMIN]
        .into_iter()
        .filter(|s| a.contains(*s) && b.contains(*s))
        .fold(Scopes::NONE, |acc, s| acc | s)
}

fn parse_scopes(s: &str) -> Scopes {
    s.split('+')
        .filter_map(Scopes::from_name)
        .fold(Scopes::NONE, |acc, s| acc | s)
}

fn to_login(clear_cookie: bool) -> Response {
    let mut resp = Redirect::to("/ui/login").into_response();
    if clear_cookie {
        resp.headers_mut()
            .insert(header::SET_COOKIE, cookie("", 0, false));
    }
    resp
}

/// A signed-in browser, with the `read` scope. Extracting it from a request without a live
/// session redirects to the sign-in page.
pub struct Session {
    pub token_name: String,
    pub scopes: Scopes,
    pub csrf: String,
    id_hash: [u8; 32],
}

impl Session {
    /// The page header of this session.
    pub fn nav(&self) -> Nav {
        Nav::signed_in(self)
    }

    /// Whether a state-changing form carried this session's CSRF token (compared in constant
    /// time). A request without it is refused with [`Session::csrf_refused`].
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    /// The one check of every state-changing dashboard request: it comes from this origin,
    /// carries this session's CSRF token, and the session holds `needs`. The refusal is the
    /// 403 page to answer with.
    // The error is the response the handler returns at once; boxing it would only add a step.
    #[allow(clippy::result_large_err)]
    pub fn check_post(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
        needs: Scopes,
    ) -> Result<(), Response> {
        if cross_origin(headers) || !self.csrf_ok(csrf) {
            return Err(self.csrf_refused());
        }
        if !self.scopes.contains(needs) {
            tracing::warn!(token = %self.token_name, needs = %needs, "dashboard action refused: scope");
            return Err(pages::message_page(
                Some(self),
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("This needs the {needs} scope, which your token does not have."),
            ));
        }
        Ok(())
    }

    /// The 403 page of a state-changing request without this session's CSRF token (or from
    /// another origin).
    pub fn csrf_refused(&self) -> Response {
        pages::message_page(
            Some(self),
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not carry a valid CSRF token, or came from another site. Reload the \
             page and try again.",
        )
    }
}

impl FromRequestParts<Arc<UiState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<UiState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(id) = session_cookie(&parts.headers) else {
            return Err(to_login(false));
        };
        let id_hash = hash_id(id);
        let row = state
            .app
            .store
            .ui_session(&id_hash)
            .await
            .map_err(|e| pages::error_page(None, ApiError::from(e)))?;
        let Some(row) = row else {
            return Err(to_login(true));
        };
        // The token must still be configured, and its scopes now bound the session's: removing
        // a token (or a scope) from SLIPWAY_API_TOKENS takes effect on its sessions at once.
        let current = state
            .app
            .tokens
            .describe()
            .into_iter()
            .find(|(name, _)| *name == row.token_name)
            .map(|(_, s)| s);
        let scopes = current.map(|c| intersect(c, parse_scopes(&row.scopes)));
        match scopes {
            Some(scopes) if scopes.contains(Scopes::READ) => Ok(Session {
                token_name: row.token_name,
                scopes,
                csrf: row.csrf_token,
                id_hash,
            }),
            _ => {
                let _ = state.app.store.delete_ui_session(&id_hash).await;
                Err(to_login(true))
            }
        }
    }
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    title: String,
    nav: Nav,
    message: Option<String>,
}

fn login_form(status: StatusCode, message: Option<&str>) -> Response {
    pages::render(
        status,
        &LoginPage {
            title: "Sign in".into(),
            nav: Nav::anonymous(),
            message: message.map(str::to_owned),
        },
    )
}

/// `GET /ui/login`.
pub async fn login_page() -> Response {
    login_form(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: Option<String>,
}

/// The TCP peer's address, when the server was started with connect info (as
/// `slipway_api::start` does).
pub struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The 429 of a sign-in refused by the failed sign-in limit, with `Retry-After`.
fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0);
    let mut resp = login_form(
        StatusCode::TOO_MANY_REQUESTS,
        Some(&format!(
            "Too many failed sign-ins. Try again in {secs} seconds."
        )),
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&secs.to_string()).expect("digits"),
    );
    resp
}

/// `POST /ui/login`: a configured token with the `read` scope starts a session. Failed
/// sign-ins are limited ([`super::ratelimit`]): while limited the token is not even checked.
pub async fn login(
    State(state): State<Arc<UiState>>,
    PeerAddr(peer): PeerAddr,
    uri: axum::http::Uri,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if cross_origin(&headers) {
        return login_form(
            StatusCode::FORBIDDEN,
            Some("Sign-in from another site is refused."),
        );
    }
    let token = form.ok().and_then(|Form(f)| f.token).unwrap_or_default();
    let token = token.trim();
    if token.is_empty() {
        return login_form(StatusCode::BAD_REQUEST, Some("Enter an API token."));
    }
    let client = peer.map(|p| state.settings.trusted_proxies.client(p, &headers));
    let now = std::time::Instant::now();
    if let Some(wait) = state.login_limiter.refused(client, now) {
        tracing::warn!(client = ?client, "dashboard sign-in refused: too many failures");
        return too_many(wait);
    }
    let Some((name, scopes)) = state.app.tokens.verify(token) else {
        state.login_limiter.failed(client, now);
        return login_form(StatusCode::UNAUTHORIZED, Some("That token is not valid."));
    };
    if !scopes.contains(Scopes::READ) {
        return login_form(
            StatusCode::FORBIDDEN,
            Some("That token lacks the read scope the dashboard needs."),
        );
    }
    let id = hex::encode(rand::random::<[u8; 32]>());
    let csrf = hex::encode(rand::random::<[u8; 32]>());
    let ttl = state.settings.session_ttl;
    let expires =
        chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    if let Err(e) = state
        .app
        .store
        .create_ui_session(&hash_id(&id), name, &scopes.to_string(), &csrf, expires)
        .await
    {
        return pages::error_page(None, ApiError::from(e));
    }
    tracing::info!(token = name, "dashboard sign-in");
    let secure = match state.settings.secure_cookie {
        SecureCookie::True => true,
        SecureCookie::False => false,
        SecureCookie::Auto => over_https(&headers, &uri),
    };
    let mut resp = Redirect::to("/ui").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&id, ttl.as_secs(), secure));
    resp
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /ui/logout`: ends the session (CSRF-checked like every state-changing form).
pub async fn logout(
    State(state): State<Arc<UiState>>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) = session.check_post(&headers, csrf.as_deref(), Scopes::READ) {
        return refused;
    }
    if let Err(e) = state.app.store.delete_ui_session(&session.id_hash).await {
        return pages::error_page(Some(&session), ApiError::from(e));
    }
    tracing::info!(token = %session.token_name, "dashboard sign-out");
    to_login(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; slipway_session=zz"),
        );
        assert_eq!(session_cookie(&h), None, "not 64 hex digits");
        let id = "ab".repeat(32);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={id}")).unwrap(),
        );
        assert_eq!(session_cookie(&h), Some(id.as_str()));

        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("ui.example:8080"));
        assert!(!cross_origin(&h), "no Origin: not a cross-site form");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ui.example:8080"),
        );
        assert!(!cross_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_origin(&h));

        let uri: axum::http::Uri = "/ui/login".parse().unwrap();
        let mut h = HeaderMap::new();
        assert!(!over_https(&h, &uri));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_https(&h, &uri));
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert!(over_https(&h, &uri));

        assert_eq!(
            intersect(parse_scopes("read+admin"), Scopes::READ | Scopes::ENQUEUE).to_string(),
            "read"
        );
    }
}
