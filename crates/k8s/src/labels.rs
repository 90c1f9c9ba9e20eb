//! The labels on everything Slipway creates. Their names and values are domain rules and live
//! in `slipway_core::naming`; this module adds the Kubernetes-side uses: the selector that
//! finds Slipway's objects, so cleanup can find them and never touches anything else.

pub use slipway_core::naming::{
    LABEL_JOB_ID as JOB_ID, LABEL_KIND as KIND, LABEL_MANAGED_BY as MANAGED_BY,
    LABEL_PREVIEW as PREVIEW, MANAGED_BY as MANAGED_BY_VALUE, standard_labels,
};

/// The selector that finds every object Slipway manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_managed_selector_matches_the_standard_labels() {
        let labels = super::standard_labels(None, None, None);
        let (k, v) = super::managed_selector()
            .split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .unwrap();
        assert_eq!(labels.get(&k), Some(&v));
    }
}
