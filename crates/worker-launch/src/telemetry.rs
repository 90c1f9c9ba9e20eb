//! The launch worker's metrics (served on `/metrics` by the worker frame): launches by
//! outcome, time from the start of an attempt to an Available rollout, and active previews.

use std::time::Duration;

/// Counter of finished launch attempts, labelled `outcome`.
pub const LAUNCHES: &str = "slipway_launches_total";
/// Histogram of seconds from an attempt's start to the Deployment being Available.
pub const TIME_TO_AVAILABLE: &str = "slipway_launch_time_to_available_seconds";
/// Gauge of previews in the registry that are not deleted.
pub const ACTIVE_PREVIEWS: &str = "slipway_active_previews";

/// How a launch attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed for good (image cannot be pulled, container crashes, invalid request).
    Failed,
    /// Failed for now; the runtime retries if attempts are left.
    Transient,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Transient => "transient",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Registers the descriptions shown on `/metrics` (installing the recorder first: a
/// description given before it exists is lost).
pub fn describe() {
    slipway_shared::health::metrics_handle();
    metrics::describe_counter!(LAUNCHES, "Launch attempts by outcome.");
    metrics::describe_histogram!(
        TIME_TO_AVAILABLE,
        metrics::Unit::Seconds,
        "Time from the start of a launch attempt to its Deployment being Available."
    );
    metrics::describe_gauge!(ACTIVE_PREVIEWS, "Previews in the registry, not deleted.");
}

pub fn launch_finished(outcome: Outcome) {
    metrics::counter!(LAUNCHES, "outcome" => outcome.as_str()).increment(1);
}

pub fn available_after(elapsed: Duration) {
    metrics::histogram!(TIME_TO_AVAILABLE).record(elapsed.as_secs_f64());
}

pub fn active_previews(n: u64) {
    metrics::gauge!(ACTIVE_PREVIEWS).set(n as f64);
}
