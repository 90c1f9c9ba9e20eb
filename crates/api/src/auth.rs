//! Bearer-token authentication with scopes. A handler states the scope it needs in its
//! signature (`Auth<Read>`), so no route can forget to check: no valid token -> 401, a token
//! without the scope -> 403. Tokens are compared by their SHA-256 in constant time
//! (`slipway_core::auth`).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use slipway_core::auth::Scopes;
use std::marker::PhantomData;
use std::sync::Arc;

/// A scope a route requires.
pub trait RequiredScope: Send + Sync + 'static {
    const SCOPE: Scopes;
    const NAME: &'static str;
}

/// `enqueue`: create builds, launches, cleanups and pipelines.
pub struct Enqueue;
/// `read`: inspect jobs, logs, previews and queues.
pub struct Read;
/// `admin`: retry, cancel, pause and resume.
pub struct Admin;

impl RequiredScope for Enqueue {
    const SCOPE: Scopes = Scopes::ENQUEUE;
    const NAME: &'static str = "enqueue";
}
impl RequiredScope for Read {
    const SCOPE: Scopes = Scopes::READ;
    const NAME: &'static str = "read";
}
impl RequiredScope for Admin {
    const SCOPE: Scopes = Scopes::ADMIN;
    const NAME: &'static str = "admin";
}

/// The authenticated caller, holding scope `S`.
pub struct Auth<S> {
    /// The token's name (from configuration), for logs and audit notes.
    pub name: String,
    _scope: PhantomData<S>,
}

impl<S: RequiredScope> FromRequestParts<Arc<AppState>> for Auth<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let (name, scopes) = authenticate(state, &parts.headers)?;
        if !scopes.contains(S::SCOPE) {
            return Err(ApiError::Forbidden(S::NAME));
        }
        Ok(Auth {
            name,
            _scope: PhantomData,
        })
    }
}

/// The bearer token of a request, if it carries one.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
}

/// The name and scopes of the request's token; no token or an unknown one is a 401. Every
/// front end (the `/v1` extractors, `/mcp`) authenticates through this.
pub fn authenticate(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(String, Scopes), ApiError> {
    let presented = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let (name, scopes) = state
        .tokens
        .verify(presented)
        .ok_or(ApiError::Unauthorized)?;
    Ok((name.to_owned(), scopes))
}
