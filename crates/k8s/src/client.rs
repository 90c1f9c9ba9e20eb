//! Small, idempotent Kubernetes operations the workers are built from, and the classification of
//! Kubernetes errors into transient (retry) and permanent (fail now).
//!
//! Every create is "create or adopt": objects have deterministic names, so a worker that resumes
//! a dead worker's attempt finds the object and carries on instead of making a second one. An
//! object of that name that Slipway did not create for this job is never adopted.

use crate::labels;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use slipway_core::ErrorClass;
use std::fmt::Debug;

/// The field manager of every server-side apply Slipway makes.
pub use slipway_core::naming::FIELD_MANAGER;

/// A failed Kubernetes operation.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The API server answered with a failure Status.
    #[error("Kubernetes API {verb} {what}: {code} {reason}: {message}")]
    Api {
        verb: &'static str,
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// The request did not get an answer (connection refused or reset, timeout, TLS, decoding).
    #[error("Kubernetes API {verb} {what}: {source}")]
    Transport {
        verb: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
    /// An object with our deterministic name exists but belongs to someone else.
    #[error("{what} exists but is not Slipway's object for job {job_id}; refusing to adopt it")]
    NotOurs { what: String, job_id: String },
}

impl K8sError {
    fn from_kube(verb: &'static str, what: impl Into<String>, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => K8sError::Api {
                verb,
                what: what.into(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => K8sError::Transport {
                verb,
                what: what.into(),
                source: other,
            },
        }
    }

    /// The HTTP status code, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            K8sError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Transient: the server was unreachable, overloaded or failing (5xx, 429, timeouts,
    /// conflicts that a re-read resolves, a namespace still terminating). Permanent: the request
    /// itself is wrong (invalid, forbidden, not found) and would fail again.
    pub fn class(&self) -> ErrorClass {
        match self {
            K8sError::Transport { .. } => ErrorClass::Transient,
            K8sError::NotOurs { .. } => ErrorClass::Permanent,
            K8sError::Api { code, reason, .. } => match code {
                408 | 409 | 429 | 500..=599 => ErrorClass::Transient,
                // A create in a namespace that is being deleted: the next attempt recreates it.
                403 if reason == "Forbidden" && self.to_string().contains("terminat") => {
                    ErrorClass::Transient
                }
                _ => ErrorClass::Permanent,
            },
        }
    }
}

fn describe<K: Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{} {ns}/{name}", K::kind(&())),
        None => format!("{} {name}", K::kind(&())),
    }
}

/// Create `obj`, or adopt the existing object of the same name if it carries this job's id
/// label. Returns the object and whether it already existed.
pub async fn create_or_adopt<K>(api: &Api<K>, obj: &K) -> Result<(K, bool), K8sError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.name_any();
    let what = describe::<K>(obj.namespace().as_deref(), &name);
    match api.create(&PostParams::default(), obj).await {
        Ok(created) => Ok((created, false)),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api
                .get(&name)
                .await
                .map_err(|e| K8sError::from_kube("get", &what, e))?;
            let ours = obj.labels().get(labels::JOB_ID);
            if ours.is_some() && existing.labels().get(labels::JOB_ID) == ours {
                Ok((existing, true))
            } else {
                Err(K8sError::NotOurs {
                    what,
                    job_id: ours.cloned().unwrap_or_default(),
                })
            }
        }
        Err(e) => Err(K8sError::from_kube("create", what, e)),
    }
}

/// Server-side apply with Slipway's field manager. `force` takes over fields another manager
/// owns (Slipway is the owner of everything it applies).
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, K8sError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.name_any();
    let what = describe::<K>(obj.namespace().as_deref(), &name);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj))
        .await
        .map_err(|e| K8sError::from_kube("apply", what, e))
}

/// Delete with background propagation (a Job's pods go too; the API's default would orphan
/// them). Returns false when the object was already gone.
pub async fn delete_background<K>(api: &Api<K>, name: &str) -> Result<bool, K8sError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(K8sError::from_kube("delete", describe::<K>(None, name), e)),
    }
}

/// Every object matching the label `selector`, read in pages of 500 so a large cluster is
/// never one huge response.
pub async fn list<K>(api: &Api<K>, selector: &str) -> Result<Vec<K>, K8sError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut params = kube::api::ListParams::default().labels(selector).limit(500);
    let mut out = Vec::new();
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| K8sError::from_kube("list", describe::<K>(None, selector), e))?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Get an object, `None` when it does not exist.
pub async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, K8sError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| K8sError::from_kube("get", describe::<K>(None, name), e))
}

/// A namespaced `Api` for `K`.
pub fn namespaced<K>(client: &kube::Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), namespace)
}

/// Wrap a raw kube error for a custom call site.
pub fn wrap(verb: &'static str, what: impl Into<String>, e: kube::Error) -> K8sError {
    K8sError::from_kube(verb, what, e)
}

/// A client from the environment, as `kubectl` would pick it: `KUBECONFIG` (or
/// `~/.kube/config`) when present, else the in-cluster service account.
pub async fn client_from_env() -> Result<kube::Client, K8sError> {
    kube::Client::try_default()
        .await
        .map_err(|e| K8sError::from_kube("connect", "to the Kubernetes API", e))
}

/// Readiness of the Kubernetes API: `GET /version` answers.
#[derive(Clone)]
pub struct KubeCheck(pub kube::Client);

#[async_trait::async_trait]
impl slipway_shared::health::ReadinessCheck for KubeCheck {
    fn name(&self) -> &str {
        "kubernetes"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_err(code: u16, reason: &str, message: &str) -> K8sError {
        K8sError::Api {
            verb: "create",
            what: "Job b/x".into(),
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn server_trouble_is_transient_and_bad_requests_are_permanent() {
        for code in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(
                api_err(code, "x", "y").class(),
                ErrorClass::Transient,
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 410, 422] {
            assert_eq!(
                api_err(code, "x", "y").class(),
                ErrorClass::Permanent,
                "{code}"
            );
        }
        let terminating = api_err(
            403,
            "Forbidden",
            "unable to create new content in namespace pv because it is being terminated",
        );
        assert_eq!(terminating.class(), ErrorClass::Transient);
        let not_ours = K8sError::NotOurs {
            what: "Job b/x".into(),
            job_id: "1".into(),
        };
        assert_eq!(not_ours.class(), ErrorClass::Permanent);
        assert!(api_err(404, "NotFound", "").is_not_found());
    }
}
