//! The periodic sweeps, run by one replica at a time (the holder of a Postgres advisory lock).
//!
//! Each sweep compares what exists with what Postgres says should, and acts only on objects
//! Slipway labelled as its own (`app.kubernetes.io/managed-by=slipway`):
//! - **builds**: build Jobs of finished jobs are deleted (a job finishes only after its log is
//!   stored); a Job still running for a finished job is deleted too; a Job of an unfinished
//!   job is kept (a later attempt may adopt it) unless it is older than the retention time;
//!   Jobs and pods whose job does not exist are orphans;
//! - **previews**: a live preview past its time to live, or idle past the idle limit, with no
//!   job of its own in flight, gets a teardown job (idempotent per deploy);
//! - **orphans**: preview namespaces with no live preview and no job in flight are deleted
//!   after the grace period; a live preview whose namespace vanished is marked so;
//! - **queue**: unfinished jobs whose row has been quiet for a while and that Redis no longer
//!   holds (Redis lost its data) are pushed again with their attempt numbering; finished copies
//!   in Redis beyond their retention are trimmed;
//! - **logs**: logs of jobs finished longer ago than the retention are removed in small
//!   batches;
//! - **usage**: each live preview's CPU and memory (metrics-server's PodMetrics) and its
//!   quota are read and stored as its latest reading (`preview_usage`); without
//!   metrics-server the reading says so.
//!
//! A step that fails is reported and the others still run. Every sweep is journaled in
//! `cleanup_sweeps` (holder, time, counts) and counted in the metrics. Every replica, leading
//! or not, also reads the live previews past their expiry each round into two gauges, so the
//! alert on them does not depend on the sweeps working.

use crate::CleanupError;
use crate::config::Settings;
use crate::telemetry;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::Api;
use serde::Serialize;
use serde_json::json;
use slipway_core::naming::{NAMESPACE_PREFIX, preview_namespace};
use slipway_core::{JobId, JobKind};
use slipway_k8s::client::{delete_background, get_opt, list, namespaced};
use slipway_k8s::labels;
use slipway_k8s::usage::{self, UsageSample};
use slipway_shared::enqueue::Submitter;
use slipway_shared::leader::Leadership;
use slipway_shared::store::{NewJob, PreviewUsage};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

/// The advisory lock the sweeping replica holds.
pub const LEADERSHIP: &str = "slipway-cleanup-sweeps";

/// How long the sweep journal is kept.
const JOURNAL_KEEP: Duration = Duration::from_secs(7 * 86_400);

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Deleted objects by `<kind>/<reason>`.
    pub deleted: BTreeMap<String, u64>,
    /// Orphans found by kind (including those still within the grace period).
    pub orphans_found: BTreeMap<String, u64>,
    pub previews_expired: u64,
    pub previews_vanished: u64,
    pub jobs_requeued: u64,
    pub queue_entries_trimmed: u64,
    pub log_jobs: u64,
    pub log_lines: u64,
    /// Live previews whose resource use was read (whether or not metrics-server answered).
    pub usage_sampled: u64,
    /// Of those, the ones metrics-server measured.
    pub usage_measured: u64,
    /// Steps that failed, with why.
    pub errors: Vec<String>,
}

impl Report {
    fn deleted(&mut self, kind: &'static str, reason: &'static str) {
        *self.deleted.entry(format!("{kind}/{reason}")).or_default() += 1;
        telemetry::deleted(kind, reason, 1);
    }

    fn orphan(&mut self, kind: &'static str) {
        *self.orphans_found.entry(kind.to_owned()).or_default() += 1;
        telemetry::orphans(kind, 1);
    }

    /// Whether the sweep changed anything (quiet sweeps log at debug level).
    pub fn did_something(&self) -> bool {
        !self.deleted.is_empty()
            || !self.orphans_found.is_empty()
            || self.previews_expired + self.previews_vanished + self.jobs_requeued > 0
            || self.queue_entries_trimmed + self.log_lines > 0
            || !self.errors.is_empty()
    }
}

/// The stored form of a reading.
fn usage_row(preview: &str, sampled_at: DateTime<Utc>, sample: &UsageSample) -> PreviewUsage {
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let quota = sample.quota.unwrap_or_default();
    PreviewUsage {
        preview: preview.to_owned(),
        sampled_at,
        metrics: sample.metrics.as_str().to_owned(),
        pods: sample
            .usage
            .map(|u| i32::try_from(u.pods).unwrap_or(i32::MAX)),
        cpu_millis: sample.usage.map(|u| signed(u.cpu_millis)),
        memory_bytes: sample.usage.map(|u| signed(u.memory_bytes)),
        cpu_limit_millis: quota.cpu_limit_millis.map(signed),
        memory_limit_bytes: quota.memory_limit_bytes.map(signed),
        cpu_requested_millis: quota.cpu_requested_millis.map(signed),
        memory_requested_bytes: quota.memory_requested_bytes.map(signed),
    }
}

/// Runs the sweeps.
pub struct Sweeper {
    client: kube::Client,
    submitter: Submitter,
    settings: Settings,
    holder: String,
}

fn age(created: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    created
        .and_then(|c| (now - c).to_std().ok())
        .unwrap_or_default()
}

fn created(meta: &kube::api::ObjectMeta) -> Option<DateTime<Utc>> {
    // k8s-openapi's time is jiff's; the store's is chrono's.
    let t = meta.creation_timestamp.as_ref()?.0;
    DateTime::from_timestamp_millis(t.as_millisecond())
}

fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
}

impl Sweeper {
    pub fn new(
        client: kube::Client,
        submitter: Submitter,
        settings: Settings,
        holder: String,
    ) -> Self {
        Sweeper {
            client,
            submitter,
            settings,
            holder,
        }
    }

    /// Sweep every `interval` while this replica holds the leadership, until `shutdown`. A
    /// round in progress (a leadership check, a sweep, its journal entry) is dropped when
    /// `shutdown` fires: Postgres or the Kubernetes API may be what it waits on, and every
    /// step is idempotent, so the next leader redoes what was cut short. The lock is released
    /// within `leader::RELEASE_BOUND`, or with the session when the connection is dropped.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut leadership = Leadership::new(&self.submitter.store, LEADERSHIP);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_leader = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let round = self.round(&mut leadership, &mut was_leader);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                () = round => {}
            }
        }
        leadership.release().await;
        telemetry::leader(false);
    }

    /// One round: read the previews past their expiry, check the leadership and, when
    /// leading, sweep and journal the sweep.
    async fn round(&self, leadership: &mut Leadership, was_leader: &mut bool) {
        // Every replica, leading or not: with no leader (or a leader whose sweeps fail) the
        // gauge still shows previews outliving their expiry, and `max` over replicas reads it.
        let s = &self.settings;
        match self
            .submitter
            .store
            .previews_past_expiry(s.default_ttl, s.idle)
            .await
        {
            Ok(p) => telemetry::past_expiry(p),
            Err(e) => warn!(error = %e, "cannot read the previews past their expiry"),
        }
        let leads = match leadership.check().await {
            Ok(leads) => leads,
            Err(e) => {
                warn!(error = %e, "cannot check the sweep leadership; not sweeping this round");
                false
            }
        };
        telemetry::leader(leads);
        if leads != *was_leader {
            info!(holder = %self.holder, leads, "sweep leadership changed");
            *was_leader = leads;
        }
        if !leads {
            return;
        }
        let started_at = Utc::now();
        let started = Instant::now();
        let report = self.sweep_once().await;
        telemetry::swept(started.elapsed(), report.errors.is_empty());
        let journal = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
        if let Err(e) = self
            .submitter
            .store
            .record_sweep(&self.holder, started_at, &journal, JOURNAL_KEEP)
            .await
        {
            warn!(error = %e, "sweep not journaled");
        }
        if report.did_something() {
            info!(took_ms = started.elapsed().as_millis() as u64, report = %journal, "sweep done");
        } else {
            tracing::debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "sweep found nothing to do"
            );
        }
    }

    /// One sweep of every kind; a failing step is reported and the others still run.
    pub async fn sweep_once(&self) -> Report {
        // A root span per sweep: its Kubernetes calls and the teardowns it enqueues are one
        // trace, not one per request.
        let span = tracing::info_span!(parent: None, "sweep", holder = %self.holder);
        self.sweep_steps().instrument(span).await
    }

    async fn sweep_steps(&self) -> Report {
        let mut report = Report::default();
        if let Err(e) = self.builds(&mut report).await {
            report.errors.push(format!("builds: {e}"));
        }
        if let Err(e) = self.expired_previews(&mut report).await {
            report.errors.push(format!("previews: {e}"));
        }
        if let Err(e) = self.orphan_namespaces(&mut report).await {
            report.errors.push(format!("orphans: {e}"));
        }
        if let Err(e) = self.queue_repair(&mut report).await {
            report.errors.push(format!("queue: {e}"));
        }
        if let Err(e) = self.logs(&mut report).await {
            report.errors.push(format!("logs: {e}"));
        }
        if let Err(e) = self.usage(&mut report).await {
            report.errors.push(format!("usage: {e}"));
        }
        for e in &report.errors {
            warn!(error = %e, "sweep step failed");
        }
        report
    }

    /// Build Jobs and their pods in the build namespace.
    async fn builds(&self, report: &mut Report) -> Result<(), CleanupError> {
        let s = &self.settings;
        let selector = format!(
            "{},{}={}",
            labels::managed_selector(),
            labels::KIND,
            JobKind::Build.as_str()
        );
        let jobs_api: Api<Job> = namespaced(&self.client, &s.build_namespace);
        let jobs = list(&jobs_api, &selector).await?;
        let id_of = |j: &Job| {
            j.labels()
                .get(labels::JOB_ID)
                .and_then(|v| v.parse::<JobId>().ok())
        };
        let ids: Vec<JobId> = jobs.iter().filter_map(id_of).collect();
        let states = self.submitter.store.job_states(&ids).await?;
        let now = Utc::now();
        let names: HashSet<String> = jobs.iter().map(|j| j.name_any()).collect();
        for job in &jobs {
            if job.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = job.name_any();
            let age = age(created(&job.metadata), now);
            let reason = match id_of(job).and_then(|id| states.get(&id)) {
                None => {
                    report.orphan("job");
                    (age >= s.orphan_grace).then_some("orphan")
                }
                Some(state) if state.is_terminal() => Some(if job_finished(job) {
                    "finished"
                } else {
                    "abandoned"
                }),
                Some(state) if age >= s.build_retention => {
                    warn!(job = %name, %state, age_s = age.as_secs(),
                        "build Job past its retention while its job is unfinished; deleting it");
                    Some("retention")
                }
                Some(_) => None,
            };
            if let Some(reason) = reason
                && delete_background(&jobs_api, &name).await?
            {
                report.deleted("job", reason);
            }
        }
        // Pods whose Job is gone (a Job deleted without propagation orphans them).
        let pods_api: Api<Pod> = namespaced(&self.client, &s.build_namespace);
        for pod in list(&pods_api, &selector).await? {
            let owned = pod
                .owner_references()
                .iter()
                .any(|o| o.kind == "Job" && names.contains(&o.name));
            if owned || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            report.orphan("pod");
            if age(created(&pod.metadata), now) >= s.orphan_grace
                && delete_background(&pods_api, &pod.name_any()).await?
            {
                report.deleted("pod", "orphan");
            }
        }
        Ok(())
    }

    /// Teardowns for previews past their time to live or idle limit.
    async fn expired_previews(&self, report: &mut Report) -> Result<(), CleanupError> {
        let s = &self.settings;
        let expired = self
            .submitter
            .store
            .expired_previews(s.default_ttl, s.idle, 100)
            .await?;
        for p in expired {
            let mut new = NewJob::new(JobKind::Cleanup, json!({ "preview": p.key }));
            new.preview = Some(p.key.clone());
            // One teardown per deploy: a redeploy moves `updated_at`, and with it the key.
            new.idempotency_key = Some(format!(
                "expire:{}:{}",
                p.key,
                p.updated_at.timestamp_micros()
            ));
            let inserted = self
                .submitter
                .submit(new, &[JobKind::Build, JobKind::Launch])
                .await?;
            if inserted.created {
                info!(preview = %p.key, expires_at = ?p.expires_at, updated_at = %p.updated_at,
                    job.id = %inserted.job.id, "preview expired; teardown enqueued");
                report.previews_expired += 1;
                metrics::counter!(telemetry::EXPIRED).increment(1);
            }
        }
        Ok(())
    }

    /// Preview namespaces nobody owns any more, and previews whose namespace vanished.
    async fn orphan_namespaces(&self, report: &mut Report) -> Result<(), CleanupError> {
        let s = &self.settings;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespaces = list(&api, &labels::managed_selector()).await?;
        let store = &self.submitter.store;
        let live = store.live_previews().await?;
        let busy = store.busy_previews().await?;
        let mut owned: HashSet<String> = busy.iter().map(|k| preview_namespace(k)).collect();
        for p in &live {
            owned.insert(p.namespace.clone());
            owned.insert(preview_namespace(&p.key));
        }
        let now = Utc::now();
        let present: HashSet<String> = namespaces.iter().map(|n| n.name_any()).collect();
        for ns in &namespaces {
            let name = ns.name_any();
            // Only preview namespaces: the build namespace is Slipway's too, and permanent.
            if name == s.build_namespace
                || !name.starts_with(NAMESPACE_PREFIX)
                || owned.contains(&name)
                || ns.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            report.orphan("namespace");
            if age(created(&ns.metadata), now) >= s.orphan_grace
                && delete_background(&api, &name).await?
            {
                info!(namespace = %name, "orphan preview namespace deleted");
                report.deleted("namespace", "orphan");
            }
        }
        for p in live {
            if busy.contains(&p.key) || present.contains(&p.namespace) {
                continue;
            }
            // Not among the labelled ones; make sure it is really gone, not just relabelled.
            if get_opt(&api, &p.namespace).await?.is_some() {
                continue;
            }
            if store.mark_preview_vanished(&p.key).await? {
                warn!(preview = %p.key, namespace = %p.namespace,
                    "the preview's namespace vanished outside Slipway; marked it");
                report.previews_vanished += 1;
                metrics::counter!(telemetry::VANISHED).increment(1);
            }
        }
        Ok(())
    }

    /// The resource use of every live preview (PodMetrics against its quota), stored as its
    /// latest reading for the API and dashboard. A cluster without metrics-server is a state
    /// of the reading, not a failure.
    async fn usage(&self, report: &mut Report) -> Result<(), CleanupError> {
        /// Namespaces read at once: two small GETs each.
        const PARALLEL: usize = 8;
        let store = &self.submitter.store;
        let mut live = store.live_previews().await?.into_iter();
        let Some(first) = live.next() else {
            return Ok(());
        };
        // The first namespace tells whether metrics-server answers at all: if not, the others
        // are not asked this round (a down one costs a timeout each).
        let first_at = Utc::now();
        let first_sample = usage::sample(&self.client, &first.namespace, None).await;
        let known = first_sample.as_ref().ok().map(|s| s.metrics);
        let rest = futures::stream::iter(live)
            .map(|p| async move {
                let sampled_at = Utc::now();
                let sample = usage::sample(&self.client, &p.namespace, known).await;
                (p, sampled_at, sample)
            })
            .buffer_unordered(PARALLEL);
        let mut readings =
            std::pin::pin!(futures::stream::iter([(first, first_at, first_sample)]).chain(rest));
        let mut first_error = None;
        while let Some((p, sampled_at, sample)) = readings.next().await {
            let sample = match sample {
                Ok(sample) => sample,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let row = usage_row(&p.key, sampled_at, &sample);
            if store.record_preview_usage(&row).await? {
                report.usage_sampled += 1;
                if sample.usage.is_some() {
                    report.usage_measured += 1;
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Jobs Redis lost, pushed again; finished copies trimmed.
    async fn queue_repair(&self, report: &mut Report) -> Result<(), CleanupError> {
        let store = &self.submitter.store;
        let queue = &self.submitter.queue;
        let quiet = store
            .quiet_unfinished_jobs(self.settings.queue_repair_after, 500)
            .await?;
        let mut by_kind: HashMap<JobKind, Vec<JobId>> = HashMap::new();
        for j in &quiet {
            by_kind.entry(j.kind).or_default().push(j.id);
        }
        for (kind, ids) in by_kind {
            let missing: HashSet<JobId> = queue.missing(kind, &ids).await?.into_iter().collect();
            for job in quiet.iter().filter(|j| missing.contains(&j.id)) {
                let count = |n: i32| u32::try_from(n).unwrap_or(0);
                queue
                    .restore(
                        kind,
                        job.id,
                        count(job.max_attempts).max(1),
                        count(job.attempts),
                        count(job.attempt_base),
                        job.trace_context.as_deref(),
                    )
                    .await?;
                store.touch_job(job.id).await?;
                warn!(job.id = %job.id, job.kind = %kind, state = %job.state, attempts = job.attempts,
                    "Redis had lost this unfinished job; pushed it again");
                report.jobs_requeued += 1;
                metrics::counter!(telemetry::REQUEUED, "kind" => kind.as_str()).increment(1);
            }
        }
        for kind in JobKind::ALL {
            let trimmed = queue.trim_finished(kind).await? as u64;
            if trimmed > 0 {
                report.queue_entries_trimmed += trimmed;
                telemetry::deleted("queue-entry", "retention", trimmed);
            }
        }
        Ok(())
    }

    /// Logs past their retention.
    async fn logs(&self, report: &mut Report) -> Result<(), CleanupError> {
        let Some(age) = self.settings.log_retention else {
            return Ok(());
        };
        let done = self.submitter.store.expire_logs(age, 5_000, 200).await?;
        report.log_jobs += done.jobs;
        report.log_lines += done.lines;
        metrics::counter!(telemetry::LOG_LINES).increment(done.lines);
        Ok(())
    }
}
