//! API errors, rendered as `Status` objects with the reasons and codes a real apiserver uses.

use serde_json::{Value, json};

use crate::kinds::KindInfo;

/// An error the API returns to a client (and the library's error type).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`.
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the apiserver sets them.
    pub details: Option<Value>,
    /// `Retry-After` header value in seconds, for 429/503.
    pub retry_after: Option<u64>,
}

fn qualified(k: &KindInfo) -> String {
    if k.group.is_empty() {
        k.plural.to_string()
    } else {
        format!("{}.{}", k.plural, k.group)
    }
}

impl ApiError {
    /// A bare error.
    #[must_use]
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, k: &KindInfo, name: &str) -> Self {
        let mut d = json!({"name": name, "kind": k.plural});
        if !k.group.is_empty() {
            d["group"] = json!(k.group);
        }
        self.details = Some(d);
        self
    }

    /// 404 NotFound.
    #[must_use]
    pub fn not_found(k: &KindInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(k)),
        )
        .with_details(k, name)
    }

    /// 409 AlreadyExists.
    #[must_use]
    pub fn already_exists(k: &KindInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(k)),
        )
        .with_details(k, name)
    }

    /// 409 Conflict for a stale resourceVersion.
    #[must_use]
    pub fn conflict(k: &KindInfo, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(k)
            ),
        )
        .with_details(k, name)
    }

    /// 422 Invalid with causes `(field, message)`.
    #[must_use]
    pub fn invalid(k: &KindInfo, name: &str, causes: &[(String, String)]) -> Self {
        let msgs: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let msg = if msgs.len() == 1 {
            msgs[0].clone()
        } else {
            format!("[{}]", msgs.join(", "))
        };
        // apimachinery errors.NewInvalid: the qualified kind (`StatefulSet.apps`; a core
        // kind unqualified).
        let qualified = if k.group.is_empty() {
            k.kind.to_string()
        } else {
            format!("{}.{}", k.kind, k.group)
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {msg}"),
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m)| {
                let reason = if m.starts_with("Required") {
                    "FieldValueRequired"
                } else if m.starts_with("Unsupported") {
                    "FieldValueNotSupported"
                } else {
                    "FieldValueInvalid"
                };
                json!({"reason": reason, "message": m, "field": f})
            })
            .collect();
        let mut d = json!({"name": name, "kind": k.kind, "causes": causes});
        if !k.group.is_empty() {
            d["group"] = json!(k.group);
        }
        e.details = Some(d);
        e
    }

    /// 403 Forbidden.
    #[must_use]
    pub fn forbidden(k: &KindInfo, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", qualified(k)),
        )
        .with_details(k, name)
    }

    /// 400 BadRequest.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 410 Expired (too old resourceVersion).
    #[must_use]
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 405 MethodNotAllowed.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415 UnsupportedMediaType.
    #[must_use]
    pub fn unsupported_media(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {ct}"
            ),
        )
    }

    /// The `Status` object.
    #[must_use]
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if let Some(r) = self.retry_after {
            let d = s.get("details").cloned().unwrap_or_else(|| json!({}));
            let mut d = d;
            d["retryAfterSeconds"] = json!(r);
            s["details"] = d;
        }
        s
    }
}

/// The library's error type for setup and I/O.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An API-level error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// I/O (binding, kubeconfig file).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Building the kube client failed.
    #[error("kube client: {0}")]
    Kube(String),
    /// A `wait_for` timed out.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// JSON (de)serialization.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}
