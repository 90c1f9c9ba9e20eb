//! Bearer-token authentication with scopes. A handler states the scope it needs in its
//! signature (`Auth<Read>`), so no route can forget to check: no valid token -> 401, a token
//! without the scope -> 403. Tokens are compared by their SHA-256 in constant time
//! (`slipway_core::auth`).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use slipway_core::auth::Scope;
use std::marker::PhantomData;
use std::sync::Arc;

/// A scope a route requires.
pub trait RequiredScope: Send + Sync + 'static {
    const SCOPE: Scope;
}

/// `enqueue`: create builds, launches, cleanups and pipelines.
pub struct Enqueue;
/// `read`: inspect jobs, logs, previews and queues.
pub struct Read;
/// `admin`: retry, cancel, pause and resume.
pub struct Admin;

impl RequiredScope for Enqueue {
    const SCOPE: Scope = Scope::Enqueue;
}
impl RequiredScope for Read {
    const SCOPE: Scope = Scope::Read;
}
impl RequiredScope for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// The authenticated caller, holding scope `S`.
pub struct Auth<S> {
    /// The token's name (from configuration), for logs and audit notes.
    pub name: String,
    _scope: PhantomData<S>,
}

impl<S: RequiredScope> FromRequestParts<Arc<AppState>> for Auth<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let token = state.tokens.verify(presented).ok_or(ApiError::Unauthorized)?;
        if !token.scopes.contains(S::SCOPE) {
            return Err(ApiError::Forbidden(S::SCOPE.as_str()));
        }
        Ok(Auth { name: token.name.clone(), _scope: PhantomData })
    }
}
