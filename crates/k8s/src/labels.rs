//! The labels on everything Slipway creates (DESIGN.md, Kubernetes). Cleanup selects on
//! `app.kubernetes.io/managed-by=slipway`; the other labels say which job and preview an object
//! belongs to, so drift repair can match objects to Postgres rows.

use slipway_core::JobKind;
use std::collections::BTreeMap;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "slipway";
pub const JOB_ID: &str = "slipway.dev/job-id";
pub const KIND: &str = "slipway.dev/kind";
pub const PREVIEW: &str = "slipway.dev/preview";
pub const ATTEMPT: &str = "slipway.dev/attempt";

/// The selector that finds every object Slipway manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// Labels for an object created on behalf of one job. `preview_label` must already be a valid
/// label value (see `slipway_core::naming`).
pub fn for_job(
    kind: JobKind,
    job_id: uuid::Uuid,
    preview_label: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (KIND.to_owned(), kind.as_str().to_owned()),
        (JOB_ID.to_owned(), job_id.to_string()),
    ]);
    if let Some(p) = preview_label {
        labels.insert(PREVIEW.to_owned(), p.to_owned());
    }
    labels
}
