//! Request extractors that turn every malformed input into a clear `ApiError` instead of
//! axum's plain-text rejections: JSON bodies (content type, size, syntax, unknown or mistyped
//! fields with their path), path parameters and query strings. A NUL character, which Postgres
//! text cannot hold, is refused in paths and query strings before any handler sees it.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use slipway_core::payload::decode;

/// A JSON request payload, decoded by `slipway_core::payload::decode` (errors name the field
/// at fault). Requires `Content-Type: application/json` (or `+json`); the body size is capped
/// by the router's limit.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        decode(&bytes).map(ApiJson).map_err(ApiError::from)
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::PayloadTooLarge(crate::MAX_BODY_BYTES)
        }
        other => ApiError::bad_request("invalid_body", other.body_text(), None),
    }
}

/// The refusal of the first `(name, value)` holding a NUL character, which Postgres text cannot
/// hold (its query would fail: a 500). Named by the parameter unless the name itself holds one.
/// Every way in (query strings here, MCP tool arguments, the dashboard's queries) checks with it.
pub fn nul_refusal<'a>(
    code: &str,
    mut pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<ApiError> {
    let (name, _) = pairs.find(|(k, v)| k.contains('\0') || v.contains('\0'))?;
    let field = (!name.contains('\0')).then(|| name.to_owned());
    Some(ApiError::bad_request(
        code,
        format!(
            "{} contains a NUL character",
            field.as_deref().unwrap_or("a parameter's name")
        ),
        field,
    ))
}

/// Path parameters with a JSON error on failure.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Postgres text cannot hold NUL: refuse it here rather than fail the query (a 500).
        if parts.uri.path().contains("%00") {
            return Err(ApiError::bad_request(
                "invalid_path",
                "the path contains a NUL character (%00)",
                None,
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::bad_request("invalid_path", e.body_text(), None))
    }
}

/// A query string with a JSON error on failure.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Postgres text cannot hold NUL: a parameter with one is refused, naming it, rather
        // than failing its query (a 500).
        if let Ok(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            && let Some(e) = nul_refusal(
                "invalid_query",
                pairs.0.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
        {
            return Err(e);
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                let message = e.body_text();
                let field = query_field(&message);
                ApiError::bad_request("invalid_query", message, field)
            })
    }
}

/// The parameter a query-string rejection is about. serde_urlencoded says
/// `Failed to deserialize query string: limit: invalid digit found in string` for a value of
/// the wrong type, and ``unknown field `x`, expected ...`` or ``duplicate field `x` `` otherwise.
fn query_field(message: &str) -> Option<String> {
    let detail = message
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(message);
    let is_name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if let Some((name, _)) = detail.split_once(": ")
        && is_name(name)
    {
        return Some(name.to_owned());
    }
    for prefix in ["unknown field `", "duplicate field `", "missing field `"] {
        if let Some(rest) = detail.strip_prefix(prefix)
            && let Some((name, _)) = rest.split_once('`')
            && is_name(name)
        {
            return Some(name.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_errors_name_the_parameter() {
        for (message, field) in [
            (
                "Failed to deserialize query string: limit: invalid digit found in string",
                Some("limit"),
            ),
            (
                "Failed to deserialize query string: unknown field `bogus`, expected one of `a`",
                Some("bogus"),
            ),
            (
                "Failed to deserialize query string: duplicate field `limit`",
                Some("limit"),
            ),
            ("Failed to deserialize query string: something else", None),
        ] {
            assert_eq!(super::query_field(message).as_deref(), field, "{message}");
        }
    }
}
