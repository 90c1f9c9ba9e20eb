//! The cleanup job handler: tear one preview down.
//!
//! A preview is its namespace (every object a launch creates lives in it), so teardown is:
//! delete the namespace with background propagation, wait until the API server no longer has
//! it, then mark the preview deleted in Postgres. Only a namespace Slipway labelled as its own
//! (and, when annotated, for this very preview) is deleted; anything else of the same name is
//! refused, permanently. A namespace still terminating at the deadline fails the attempt
//! transiently with what holds it (finalizers, conditions), so it is retried and, after the
//! last attempt, the job says why. Every step is idempotent: a retry, or a successor of a
//! worker that died mid-teardown, finds the namespace terminating or gone and carries on.

use crate::config::Settings;
use crate::telemetry;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Value, json};
use slipway_core::naming::{ANNOTATION_PREVIEW_KEY, preview_namespace};
use slipway_core::validate::ValidCleanup;
use slipway_k8s::client::{K8sError, delete_background, get_opt};
use slipway_k8s::labels;
use slipway_shared::joblog::JobLog;
use slipway_shared::runtime::{Handler, JobContext, JobError};
use slipway_shared::store::Store;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Tears previews down.
pub struct Teardown {
    client: kube::Client,
    store: Store,
    settings: Settings,
}

/// Why a namespace was not (yet) removed.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Kube(#[from] K8sError),
    #[error("namespace {0} exists but was not created by Slipway; refusing to delete it")]
    NotOurs(String),
    #[error(
        "namespace {namespace} belongs to preview {owner:?}, not {preview:?}; refusing to delete it"
    )]
    OtherPreview {
        namespace: String,
        owner: String,
        preview: String,
    },
    #[error("namespace {namespace} is still terminating {waited} s after its deletion: {why}")]
    StuckTerminating {
        namespace: String,
        waited: u64,
        why: String,
    },
    #[error("teardown stopped: the job was cancelled")]
    Cancelled,
}

impl From<TeardownError> for JobError {
    fn from(e: TeardownError) -> JobError {
        match &e {
            TeardownError::Kube(k) => match k.class() {
                slipway_core::ErrorClass::Transient => JobError::transient(e.to_string()),
                slipway_core::ErrorClass::Permanent => JobError::permanent(e.to_string()),
            },
            TeardownError::NotOurs(_) | TeardownError::OtherPreview { .. } => {
                JobError::permanent(e.to_string())
            }
            TeardownError::StuckTerminating { .. } | TeardownError::Cancelled => {
                JobError::transient(e.to_string())
            }
        }
    }
}

/// What removing one namespace found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removed {
    /// It was there and is gone now.
    Deleted,
    /// It was not there.
    Absent,
}

/// Delete the namespace `name` of preview `preview` (when it is Slipway's) and wait until it is
/// gone, at most `deadline`. (The orphan sweep deletes without waiting: the next sweep sees.)
async fn remove_namespace(
    client: &kube::Client,
    name: &str,
    preview: Option<&str>,
    deadline: Duration,
    poll: Duration,
    cancel: &CancellationToken,
) -> Result<Removed, TeardownError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let Some(ns) = get_opt(&api, name).await? else {
        return Ok(Removed::Absent);
    };
    check_ours(&ns, preview)?;
    if ns.metadata.deletion_timestamp.is_none() && !delete_background(&api, name).await? {
        return Ok(Removed::Absent);
    }
    let started = Instant::now();
    loop {
        let Some(ns) = get_opt(&api, name).await? else {
            return Ok(Removed::Deleted);
        };
        if started.elapsed() >= deadline {
            return Err(TeardownError::StuckTerminating {
                namespace: name.to_owned(),
                waited: started.elapsed().as_secs(),
                why: what_holds(&ns),
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(TeardownError::Cancelled),
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Refuse a namespace Slipway did not create, or one created for another preview.
fn check_ours(ns: &Namespace, preview: Option<&str>) -> Result<(), TeardownError> {
    let name = ns.name_any();
    if ns.labels().get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGED_BY_VALUE) {
        return Err(TeardownError::NotOurs(name));
    }
    if let (Some(want), Some(owner)) = (preview, ns.annotations().get(ANNOTATION_PREVIEW_KEY))
        && owner != want
    {
        return Err(TeardownError::OtherPreview {
            namespace: name,
            owner: owner.clone(),
            preview: want.to_owned(),
        });
    }
    Ok(())
}

/// A short account of why a namespace is still there: its finalizers and the namespace
/// controller's conditions (which name the finalizers and resources that remain).
pub fn what_holds(ns: &Namespace) -> String {
    let mut parts = Vec::new();
    if let Some(status) = &ns.status {
        for c in status.conditions.iter().flatten() {
            if c.status == "True"
                && let Some(m) = c.message.as_deref().filter(|m| !m.is_empty())
            {
                parts.push(format!("{}: {m}", c.type_));
            }
        }
    }
    let finalizers: Vec<&str> = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .into_iter()
        .flatten()
        .chain(ns.metadata.finalizers.iter().flatten())
        .map(String::as_str)
        .collect();
    if !finalizers.is_empty() {
        parts.push(format!("finalizers {}", finalizers.join(", ")));
    }
    if parts.is_empty() {
        "objects in it are still being deleted (look for finalizers on its resources)".to_owned()
    } else {
        parts.join("; ")
    }
}

impl Teardown {
    pub fn new(client: kube::Client, store: Store, settings: Settings) -> Self {
        Teardown {
            client,
            store,
            settings,
        }
    }

    async fn teardown(&self, job: &JobContext, log: &mut JobLog) -> Result<Value, JobError> {
        let record = job
            .record
            .as_ref()
            .ok_or_else(|| JobError::permanent("the cleanup worker needs the job's record"))?;
        let cleanup: ValidCleanup = serde_json::from_value(record.payload.clone())
            .map_err(|e| JobError::permanent(format!("the cleanup payload is unreadable: {e}")))?;
        let preview = cleanup.preview.as_str();
        let row = self
            .store
            .get_preview(preview)
            .await
            .map_err(|e| JobError::transient(format!("job store: {e}")))?;
        // The row names the namespace a launch used; the derived name covers a launch that
        // died before recording it. Usually they are the same.
        let mut namespaces = vec![preview_namespace(preview)];
        if let Some(r) = &row
            && !namespaces.contains(&r.namespace)
        {
            namespaces.push(r.namespace.clone());
        }
        let started = Instant::now();
        let mut deleted = Vec::new();
        for ns in &namespaces {
            log.line(format!("deleting namespace {ns} and everything in it"))
                .await;
            let removed = remove_namespace(
                &self.client,
                ns,
                Some(preview),
                self.settings.namespace_delete_deadline,
                self.settings.poll,
                &job.cancel,
            )
            .await;
            match removed {
                Ok(Removed::Deleted) => {
                    telemetry::deleted("namespace", "teardown", 1);
                    log.line(format!(
                        "namespace {ns} is gone ({:.1} s)",
                        started.elapsed().as_secs_f64()
                    ))
                    .await;
                    deleted.push(ns.clone());
                }
                Ok(Removed::Absent) => log.line(format!("namespace {ns} does not exist")).await,
                Err(e) => {
                    log.line(e.to_string()).await;
                    return Err(e.into());
                }
            }
        }
        let marked = self
            .store
            .mark_preview_deleted(preview)
            .await
            .map_err(|e| JobError::transient(format!("job store: {e}")))?;
        log.line(format!("preview {preview} torn down")).await;
        Ok(json!({
            "preview": preview,
            "namespaces": namespaces,
            "deleted": deleted,
            "preview_marked_deleted": marked,
            "seconds": started.elapsed().as_secs_f64(),
        }))
    }
}

#[async_trait::async_trait]
impl Handler for Teardown {
    async fn handle(&self, job: JobContext) -> Result<Value, JobError> {
        let mut log = JobLog::new(self.store.clone(), job.id, job.attempt);
        self.teardown(&job, &mut log).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceSpec, NamespaceStatus};
    use std::collections::BTreeMap;

    fn ns(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some("slipway-pv-app-1-abcd1234".into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<BTreeMap<_, _>>(),
        );
        n.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<BTreeMap<_, _>>(),
        );
        n
    }

    #[test]
    fn only_slipways_namespace_of_this_preview_is_deleted() {
        let ours = [(labels::MANAGED_BY, labels::MANAGED_BY_VALUE)];
        assert!(check_ours(&ns(&ours, &[]), Some("org/app#1")).is_ok());
        assert!(
            check_ours(
                &ns(&ours, &[(ANNOTATION_PREVIEW_KEY, "org/app#1")]),
                Some("org/app#1")
            )
            .is_ok()
        );
        let e = check_ours(&ns(&[], &[]), Some("org/app#1")).unwrap_err();
        assert!(matches!(e, TeardownError::NotOurs(_)));
        assert!(e.to_string().contains("not created by Slipway"));
        let e = check_ours(&ns(&[(labels::MANAGED_BY, "helm")], &[]), None).unwrap_err();
        assert!(matches!(e, TeardownError::NotOurs(_)));
        let e = check_ours(
            &ns(&ours, &[(ANNOTATION_PREVIEW_KEY, "org/other#2")]),
            Some("org/app#1"),
        )
        .unwrap_err();
        assert!(matches!(e, TeardownError::OtherPreview { .. }), "{e}");
    }

    #[test]
    fn errors_are_classified() {
        use slipway_core::ErrorClass;
        let stuck = TeardownError::StuckTerminating {
            namespace: "n".into(),
            waited: 1,
            why: "x".into(),
        };
        assert_eq!(JobError::from(stuck).class, ErrorClass::Transient);
        assert_eq!(
            JobError::from(TeardownError::NotOurs("n".into())).class,
            ErrorClass::Permanent
        );
        let api = |code| {
            TeardownError::Kube(K8sError::Api {
                verb: "delete",
                what: "Namespace n".into(),
                code,
                reason: "x".into(),
                message: "y".into(),
            })
        };
        assert_eq!(JobError::from(api(500)).class, ErrorClass::Transient);
        assert_eq!(JobError::from(api(403)).class, ErrorClass::Permanent);
    }

    #[test]
    fn what_holds_a_namespace_is_said() {
        let mut n = ns(&[], &[]);
        assert!(what_holds(&n).contains("finalizers on its resources"));
        n.spec = Some(NamespaceSpec {
            finalizers: Some(vec!["kubernetes".into()]),
        });
        n.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            conditions: Some(vec![NamespaceCondition {
                type_: "NamespaceFinalizersRemaining".into(),
                status: "True".into(),
                message: Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".into()),
                ..Default::default()
            }]),
        });
        let why = what_holds(&n);
        assert!(why.contains("example.com/hold"), "{why}");
        assert!(why.contains("finalizers kubernetes"), "{why}");
    }
}
