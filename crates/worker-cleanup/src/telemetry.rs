//! The cleanup worker's metrics (served on `/metrics` by the worker frame): what teardowns and
//! sweeps deleted (by kind and reason), orphans found, jobs re-queued, log lines expired, sweep
//! duration, whether this replica leads the sweeps, and the live previews past their expiry.

use std::time::Duration;

/// Counter of deleted objects, labelled `kind` (namespace, job, pod, queue-entry) and `reason`
/// (teardown, finished, abandoned, retention, orphan).
pub const DELETED: &str = "slipway_cleanup_deleted_total";
/// Counter of Slipway-labelled objects found with no live record, labelled `kind`.
pub const ORPHANS: &str = "slipway_cleanup_orphans_found_total";
/// Counter of unfinished jobs pushed to Redis again because Redis had lost them.
pub const REQUEUED: &str = "slipway_cleanup_jobs_requeued_total";
/// Counter of expired previews given a teardown.
pub const EXPIRED: &str = "slipway_cleanup_previews_expired_total";
/// Counter of live previews whose namespace vanished outside Slipway.
pub const VANISHED: &str = "slipway_cleanup_previews_vanished_total";
/// Counter of log lines removed by retention.
pub const LOG_LINES: &str = "slipway_cleanup_log_lines_deleted_total";
/// Histogram of sweep durations.
pub const SWEEP_SECONDS: &str = "slipway_cleanup_sweep_duration_seconds";
/// Counter of sweeps, labelled `outcome` (ok, partial: some step failed).
pub const SWEEPS: &str = "slipway_cleanup_sweeps_total";
/// Gauge: 1 while this replica leads the sweeps.
pub const LEADER: &str = "slipway_cleanup_leader";
/// Gauge: live previews past their expiry (time to live or idle limit), busy ones included.
pub const PAST_EXPIRY: &str = "slipway_previews_past_expiry";
/// Gauge: how long ago the earliest-expired live preview expired (0 when none has).
pub const EXPIRY_OVERDUE: &str = "slipway_preview_expiry_overdue_seconds";

/// Registers the descriptions shown on `/metrics` (installing the recorder first: a
/// description given before it exists is lost).
pub fn describe() {
    slipway_shared::health::metrics_handle();
    metrics::describe_counter!(
        DELETED,
        "Objects deleted by teardowns and sweeps, by kind and reason."
    );
    metrics::describe_counter!(
        ORPHANS,
        "Slipway-labelled objects found with no live record in Postgres."
    );
    metrics::describe_counter!(
        REQUEUED,
        "Unfinished jobs pushed to Redis again after Redis lost them."
    );
    metrics::describe_counter!(
        EXPIRED,
        "Previews torn down for their time to live or idleness."
    );
    metrics::describe_counter!(
        VANISHED,
        "Live previews whose namespace disappeared outside Slipway."
    );
    metrics::describe_counter!(LOG_LINES, "Job log lines removed by log retention.");
    metrics::describe_histogram!(
        SWEEP_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one sweep."
    );
    metrics::describe_counter!(SWEEPS, "Sweeps run by this replica, by outcome.");
    metrics::describe_gauge!(LEADER, "1 while this replica leads the sweeps.");
    metrics::describe_gauge!(
        PAST_EXPIRY,
        "Live previews past their time to live or idle limit, as Postgres holds them (read by \
         every replica each sweep interval, leading or not)."
    );
    metrics::describe_gauge!(
        EXPIRY_OVERDUE,
        metrics::Unit::Seconds,
        "How long ago the earliest-expired live preview expired (0 when none has)."
    );
}

pub fn past_expiry(p: slipway_shared::store::PastExpiry) {
    metrics::gauge!(PAST_EXPIRY).set(p.count as f64);
    metrics::gauge!(EXPIRY_OVERDUE).set(p.longest_overdue.as_secs_f64());
}

pub fn deleted(kind: &'static str, reason: &'static str, n: u64) {
    metrics::counter!(DELETED, "kind" => kind, "reason" => reason).increment(n);
}

pub fn orphans(kind: &'static str, n: u64) {
    metrics::counter!(ORPHANS, "kind" => kind).increment(n);
}

pub fn swept(took: Duration, ok: bool) {
    metrics::histogram!(SWEEP_SECONDS).record(took.as_secs_f64());
    metrics::counter!(SWEEPS, "outcome" => if ok { "ok" } else { "partial" }).increment(1);
}

pub fn leader(is: bool) {
    metrics::gauge!(LEADER).set(if is { 1.0 } else { 0.0 });
}
