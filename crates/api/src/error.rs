//! API errors and their JSON form, `{"error": {"code", "message", "field"}}`.
//!
//! Validation failures (the caller's fault: 4xx with the field at fault) are kept apart from
//! unexpected failures (ours: 500/503 with a generic message; the detail goes to the log with a
//! correlation id, never to the caller, so no internal hostnames or SQL leak out).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `invalid_field`, `not_found`, `unauthorized`.
    pub code: String,
    pub message: String,
    /// The request field at fault (dotted path), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or breaks a rule (400/422).
    #[error("{message}")]
    Invalid {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but the resource is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A webhook delivery whose signature is missing or wrong.
    #[error("{0}")]
    BadSignature(String),
    #[error("this token lacks the `{0}` scope")]
    Forbidden(&'static str),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// A dependency (Postgres, Redis) is unreachable; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(code: &str, message: impl Into<String>, field: Option<String>) -> Self {
        ApiError::Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: code.to_owned(),
            message: message.into(),
            field,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>, field: Option<String>) -> Self {
        ApiError::Invalid {
            status: StatusCode::BAD_REQUEST,
            code: code.to_owned(),
            message: message.into(),
            field,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    fn parts(&self) -> (StatusCode, &str, Option<&str>) {
        match self {
            ApiError::Invalid {
                status,
                code,
                field,
                ..
            } => (*status, code, field.as_deref()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::BadSignature(_) => (StatusCode::UNAUTHORIZED, "invalid_signature", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None)
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
            ),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl ApiError {
    /// What the caller is told. An internal failure is logged here with an id the message
    /// names; its detail (SQL, hostnames) never reaches the caller.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(detail) => {
                let id = uuid::Uuid::new_v4();
                tracing::error!(error.id = %id, error = %detail, "internal error");
                format!("internal error (id {id}); the details are in the server log")
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "dependency unavailable");
                "a dependency of the API is unavailable; retry later".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The field at fault, for validation errors.
    pub fn field(&self) -> Option<&str> {
        self.parts().2
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = self.public_message();
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                field: field.map(str::to_owned),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<slipway_core::validate::ValidationError> for ApiError {
    fn from(e: slipway_core::validate::ValidationError) -> Self {
        let status = if e.code == "invalid_json" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::Invalid {
            status,
            code: e.code.to_owned(),
            message: e.message,
            field: (!e.field.is_empty()).then_some(e.field),
        }
    }
}

impl From<slipway_shared::store::StoreError> for ApiError {
    fn from(e: slipway_shared::store::StoreError) -> Self {
        use slipway_shared::store::StoreError as E;
        match e {
            E::InvalidCursor => ApiError::bad_request(
                "invalid_cursor",
                "invalid pagination cursor",
                Some("cursor".into()),
            ),
            E::NotFound { what, id } => ApiError::NotFound(format!("{what} {id} not found")),
            other if other.is_unavailable() => ApiError::Unavailable(other.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<slipway_shared::queue::QueueError> for ApiError {
    fn from(e: slipway_shared::queue::QueueError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}
