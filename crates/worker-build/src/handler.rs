//! The build handler: one attempt of one build job (see the crate documentation).

use crate::config::Settings;
use crate::pipeline::ServiceBuild;
use crate::sink::{LogSink, SinkLimits};
use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use slipway_core::mask::Masker;
use slipway_core::naming::{build_job_name, standard_labels};
use slipway_core::source::Composition;
use slipway_core::validate::{
    BuildSource, ImageSource, ValidBuild, ValidLaunch, ValidLaunchOptions,
};
use slipway_core::{ErrorClass, ImageRef, JobId, JobKind};
use slipway_k8s::build::{BuildJobParams, CONTAINER, build_job, parse_build_metadata};
use slipway_k8s::buildnet::build_network_policy;
use slipway_k8s::client::{
    K8sError, apply, create_or_adopt, delete_background, get_opt, namespaced,
};
use slipway_k8s::labels;
use slipway_k8s::logs::LogDecoder;
use slipway_k8s::mounts::{MountFailure, missing_objects};
use slipway_k8s::outcome::{
    BuildVerdict, PodEnd, PodProgress, classify_end, failing_step, is_creating, job_failure,
    job_finished, pod_progress,
};
use slipway_shared::queue::QueueClient;
use slipway_shared::runtime::{Handler, JobContext, JobError, KeyedCap};
use slipway_shared::store::{JobRecord, Store, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

/// Consecutive Kubernetes API failures (or log streams that end while the build runs) that a
/// follower survives before it gives the attempt up as transient.
const MAX_FOLLOW_ERRORS: u32 = 20;

/// The build worker's [`Handler`].
pub struct BuildHandler {
    client: kube::Client,
    pub(crate) store: Store,
    pub(crate) queue: QueueClient,
    pub(crate) settings: Settings,
}

/// The Job an attempt works with.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    /// The attempt the logs are stored under: the Job's own attempt, which is an earlier one
    /// when this attempt adopted a dead worker's Job.
    log_attempt: u32,
    /// The Job already exists (a dead worker's attempt, or this very attempt run before).
    exists: bool,
}

/// How the build ended, as seen from the cluster.
#[derive(Debug)]
pub(crate) enum Ended {
    Pod(PodEnd),
    Stuck {
        reason: String,
        message: String,
    },
    /// The pod cannot start: a Secret (or ConfigMap) its volumes name is missing.
    MountFailed(MountFailure),
    JobFailed {
        reason: String,
        message: String,
    },
    Vanished,
}

/// How one log stream ended.
enum StreamEnd {
    /// The server ended it; the decoder holds any last partial line.
    Eof(LogDecoder),
    /// Nothing arrived for the idle time: the connection may be dead.
    Idle,
}

#[derive(Debug)]
pub(crate) enum FollowError {
    Kube(String),
    Store(StoreError),
    /// The build's Secrets could not be read to mask them: its log must not be stored.
    Unmaskable(JobError),
}

pub(crate) enum Waited {
    Pod(Box<Pod>),
    Ended(Ended),
}

/// Registers the help texts of the build worker's own metrics (the runtime describes the job
/// metrics every worker serves).
pub(crate) fn describe_metrics() {
    slipway_shared::health::metrics_handle();
    metrics::describe_counter!(
        "slipway_builds_started_total",
        "Build attempts started (a build Job created or adopted)."
    );
    metrics::describe_counter!(
        "slipway_builds_finished_total",
        "Build attempts ended, by outcome (succeeded, failed, transient_failure, stopped)."
    );
    metrics::describe_histogram!(
        "slipway_build_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of a build attempt, from its start to its outcome, by outcome."
    );
    metrics::describe_histogram!(
        "slipway_build_slot_wait_seconds",
        metrics::Unit::Seconds,
        "Time a build waited for a slot under the global cap on running build Jobs."
    );
    metrics::describe_counter!(
        "slipway_build_log_lines_total",
        "Build log lines stored in Postgres."
    );
    metrics::describe_histogram!(
        crate::sink::LOG_LAG,
        metrics::Unit::Seconds,
        "Build log ingestion lag: for each batch of lines written to Postgres, the time from \
         its oldest line's timestamp (the container runtime's, as the kubelet reports it) to \
         the batch's commit."
    );
    metrics::describe_counter!(
        "slipway_build_log_bytes_total",
        metrics::Unit::Bytes,
        "Bytes of build log lines stored in Postgres."
    );
    metrics::describe_counter!(
        "slipway_k8s_api_errors_total",
        "Kubernetes API calls of the build worker that failed, by worker and HTTP status code \
         (transport: no response)."
    );
}

fn note_k8s_error(code: Option<u16>) {
    let code = code.map_or_else(|| "transport".to_owned(), |c| c.to_string());
    metrics::counter!("slipway_k8s_api_errors_total", "worker" => "build", "code" => code)
        .increment(1);
}

fn kube_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn job_error(e: &K8sError) -> JobError {
    JobError {
        class: e.class(),
        message: e.to_string(),
    }
}

pub(crate) fn store_error(what: &str, e: &StoreError) -> JobError {
    JobError::transient(format!("{what}: {e}"))
}

/// The key of the per-repository cap: the build's normalized repository URL. A payload
/// without one is left uncapped (it fails on its own when it runs).
fn repository_cap_key(record: &JobRecord) -> Option<String> {
    let url = record.payload.get("repository")?.get("url")?.as_str()?;
    Some(slipway_core::naming::repository_key(url))
}

/// A build job's payload: the build, and what follows it for a pipeline.
#[derive(Debug)]
pub(crate) struct BuildPayload {
    pub build: ValidBuild,
    /// A pipeline's build: the launch options of what follows.
    pub then_launch: Option<ValidLaunchOptions>,
    /// A pipeline whose preview is a compose app or a Helm chart.
    pub composition: Option<Composition>,
    /// One service's build of a compose pipeline.
    pub compose_build: Option<ServiceBuild>,
}

/// Parse a build job's payload: the `ValidBuild` beside `then_launch`, `composition` (a
/// pipeline's first job) or `compose_build` (a compose service's build).
pub(crate) fn parse_payload(payload: &Value) -> Result<BuildPayload, JobError> {
    let mut payload = payload.clone();
    let mut take = |key: &str| {
        payload
            .as_object_mut()
            .and_then(|o| o.remove(key))
            .filter(|v| !v.is_null())
    };
    let then_launch = take("then_launch")
        .map(serde_json::from_value::<ValidLaunchOptions>)
        .transpose()
        .map_err(|e| JobError::permanent(format!("invalid pipeline launch options: {e}")))?;
    let composition = take("composition")
        .map(serde_json::from_value::<Composition>)
        .transpose()
        .map_err(|e| JobError::permanent(format!("invalid pipeline source: {e}")))?;
    let compose_build = take("compose_build")
        .map(serde_json::from_value::<ServiceBuild>)
        .transpose()
        .map_err(|e| JobError::permanent(format!("invalid compose service build: {e}")))?;
    let build: ValidBuild = serde_json::from_value(payload)
        .map_err(|e| JobError::permanent(format!("invalid build payload: {e}")))?;
    Ok(BuildPayload {
        build,
        then_launch,
        composition,
        compose_build,
    })
}

/// The error of a build that failed on its own: the failing step from the log, else the
/// termination message's last lines (`FallbackToLogsOnError`), and the exit code.
pub(crate) fn build_failure_message(
    exit_code: i32,
    tail: &[String],
    message: Option<&str>,
) -> String {
    let mut step = failing_step(tail, 3);
    if step.is_empty()
        && let Some(m) = message
    {
        let lines: Vec<&str> = m.lines().filter(|l| !l.trim().is_empty()).collect();
        let skip = lines.len().saturating_sub(3);
        step = lines[skip..].iter().map(|l| l.trim().to_owned()).collect();
    }
    if step.is_empty()
        && let Some(last) = tail.iter().rev().find(|l| !l.trim().is_empty())
    {
        step.push(last.trim().to_owned());
    }
    if step.is_empty() {
        format!("the build failed (exit code {exit_code})")
    } else {
        format!(
            "the build failed (exit code {exit_code}): {}",
            step.join(" | ")
        )
    }
}

/// The Job parameters of this build.
pub(crate) fn job_params(
    s: &Settings,
    build: &ValidBuild,
    name: &str,
    job_id: JobId,
    generated_dockerfile: Option<String>,
) -> BuildJobParams {
    let registry = s.registry_push.trim_end_matches('/');
    let cache_ref = s.cache_tag.as_ref().map(|tag| {
        if registry.is_empty() {
            format!("{}:{tag}", build.image)
        } else {
            format!("{registry}/{}:{tag}", build.image)
        }
    });
    BuildJobParams {
        name: name.to_owned(),
        namespace: s.namespace.clone(),
        labels: standard_labels(Some(job_id), Some(JobKind::Build), build.preview.as_deref()),
        buildkit_image: s.buildkit_image.clone(),
        repository: build.remote(),
        git_ref: build.commit.clone(),
        context_subdir: build.context.clone(),
        dockerfile: build.dockerfile.clone(),
        build_args: build.build_args.clone(),
        target: build.target.clone(),
        push_ref: build.image_reference(&s.registry_push),
        cache_ref,
        insecure_registry: s.registry_insecure,
        git_secret: build.secrets.git.clone(),
        registry_secret: build.secrets.registry.clone(),
        resources: s.resources.clone(),
        active_deadline_seconds: s.deadline_secs,
        ttl_seconds_after_finished: s.ttl_secs,
        generated_dockerfile,
    }
}

impl BuildHandler {
    pub fn new(client: kube::Client, store: Store, queue: QueueClient, settings: Settings) -> Self {
        BuildHandler {
            client,
            store,
            queue,
            settings,
        }
    }

    pub(crate) fn sink_limits(&self) -> SinkLimits {
        SinkLimits {
            batch_lines: self.settings.log_batch_lines,
            batch_wait: self.settings.log_batch_wait,
            max_lines: self.settings.log_max_lines,
        }
    }

    pub(crate) fn jobs(&self) -> Api<Job> {
        namespaced(&self.client, &self.settings.namespace)
    }

    fn network_policies(&self) -> Api<NetworkPolicy> {
        namespaced(&self.client, &self.settings.namespace)
    }

    pub(crate) fn pods(&self) -> Api<Pod> {
        namespaced(&self.client, &self.settings.namespace)
    }

    /// Retry a Kubernetes call while its errors are transient, a few times, with backoff.
    pub(crate) async fn k8s_retry<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut op: F,
    ) -> Result<T, JobError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, K8sError>>,
    {
        let mut wait = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    note_k8s_error(e.code());
                    if e.class() == ErrorClass::Permanent || tries >= 6 {
                        return Err(job_error(&e));
                    }
                    warn!(error = %e, ?wait, "Kubernetes API call failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(job_error(&e)),
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(3));
                    tries += 1;
                }
            }
        }
    }

    /// Which Job this attempt works with: the Job of the previous attempt when that attempt's
    /// worker died and its Job still runs (adopt it, store its log under its attempt), else
    /// this attempt's own.
    async fn pick_target(&self, job: &JobContext, record: &JobRecord) -> Result<Target, JobError> {
        let own_name = build_job_name(job.id, job.attempt);
        let jobs = self.jobs();
        let own = self
            .k8s_retry(&job.cancel, || get_opt(&jobs, &own_name))
            .await?;
        let own = Target {
            exists: own.is_some(),
            name: own_name,
            log_attempt: job.attempt,
        };
        if own.exists || job.attempt <= 1 {
            return Ok(own);
        }
        let attempts = self
            .store
            .attempts(job.id)
            .await
            .map_err(|e| store_error("cannot read the job's attempts", &e))?;
        let Some(prev) = attempts
            .iter()
            .filter(|a| a.attempt > record.attempt_base && (a.attempt as u32) < job.attempt)
            .max_by_key(|a| a.attempt)
        else {
            return Ok(own);
        };
        if prev.outcome.as_deref() != Some("abandoned") {
            return Ok(own);
        }
        // The previous attempt may itself have adopted an earlier attempt's Job.
        let Some((name, log_attempt)) = (1..=prev.attempt as u32).rev().find_map(|k| {
            let name = build_job_name(job.id, k);
            prev.k8s_objects.contains(&name).then_some((name, k))
        }) else {
            return Ok(own);
        };
        let existing = self
            .k8s_retry(&job.cancel, || get_opt(&jobs, &name))
            .await?;
        let ours = |j: &Job| {
            j.labels().get(labels::JOB_ID).map(String::as_str)
                == Some(job.id.hyphenated().to_string().as_str())
        };
        match existing {
            Some(j)
                if ours(&j)
                    && j.metadata.deletion_timestamp.is_none()
                    && job_failure(&j).is_none() =>
            {
                info!(job = %name, from_attempt = log_attempt, "adopting the build Job of a worker that died");
                Ok(Target {
                    name,
                    log_attempt,
                    exists: true,
                })
            }
            Some(j) if ours(&j) => {
                // It failed (or is going away) meanwhile: the dead attempt's failure is its own.
                let _ = delete_background(&jobs, &name).await;
                Ok(own)
            }
            _ => Ok(own),
        }
    }

    /// Wait until the build namespace runs fewer unfinished Slipway build Jobs than the global
    /// cap. The cluster itself is the count, so a worker that dies holds no slot; two workers
    /// checking at the same instant may overshoot the cap by one Job each, which is acceptable
    /// for a flood guard.
    async fn wait_for_slot(&self, cancel: &CancellationToken) -> Result<(), JobError> {
        let max = self.settings.max_concurrent_builds;
        if max == 0 {
            return Ok(());
        }
        let selector = format!(
            "{}={},{}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE,
            labels::KIND,
            JobKind::Build.as_str()
        );
        let jobs = self.jobs();
        let mut waiting_since: Option<Instant> = None;
        loop {
            match jobs.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => {
                    let active = list
                        .items
                        .iter()
                        .filter(|j| j.metadata.deletion_timestamp.is_none() && !job_finished(j))
                        .count();
                    if active < max {
                        if let Some(since) = waiting_since {
                            metrics::histogram!("slipway_build_slot_wait_seconds")
                                .record(since.elapsed().as_secs_f64());
                        }
                        return Ok(());
                    }
                    if waiting_since.is_none() {
                        info!(active, max, "build cap reached; waiting for a slot");
                        waiting_since = Some(Instant::now());
                    }
                }
                Err(e) => {
                    note_k8s_error(kube_code(&e));
                    warn!(error = %e, "cannot count running builds; retrying");
                }
            }
            let jitter = Duration::from_millis(rand::random_range(0..250));
            tokio::select! {
                () = cancel.cancelled() => {
                    return Err(JobError::transient("stopped while waiting for a build slot"));
                }
                () = tokio::time::sleep(self.settings.slot_poll + jitter) => {}
            }
        }
    }

    /// Wait for the Job's pod to start (or end, or get stuck), or for the Job to fail or
    /// vanish without one. Watches the pods (the watcher re-lists after a 410 or a dropped
    /// watch and backs off on errors) and checks the Job every two seconds, and the Events of a
    /// pod still being created: a Secret volume whose Secret is missing keeps the pod in
    /// `ContainerCreating` until the deadline, so after `mount_failure_after` of `FailedMount`
    /// reports the build ends, naming the Secret.
    pub(crate) async fn wait_for_pod(
        &self,
        name: &str,
        container: &str,
    ) -> Result<Waited, FollowError> {
        let selector = format!("batch.kubernetes.io/job-name={name}");
        let stream =
            watcher(self.pods(), watcher::Config::default().labels(&selector)).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(2),
            Duration::from_secs(2),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let jobs = self.jobs();
        let mut errors = 0u32;
        // The pod being created, and when this worker first saw each of its missing objects.
        let mut pending: Option<Pod> = None;
        let mut first_seen: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    None => return Err(FollowError::Kube("the pod watch ended".into())),
                    Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                        errors = 0;
                        if pod_progress(&pod, container) != PodProgress::Pending {
                            return Ok(Waited::Pod(Box::new(pod)));
                        }
                        // Only a pod on its node mounts volumes; an unscheduled one has no
                        // mount Events to read.
                        pending = is_creating(&pod, container).then_some(pod);
                    }
                    Some(Ok(watcher::Event::Delete(_))) => {
                        errors = 0;
                        pending = None;
                    }
                    Some(Ok(_)) => errors = 0,
                    Some(Err(e)) => {
                        let code = match &e {
                            watcher::Error::InitialListFailed(k)
                            | watcher::Error::WatchStartFailed(k)
                            | watcher::Error::WatchFailed(k) => kube_code(k),
                            watcher::Error::WatchError(s) => Some(s.code),
                            _ => None,
                        };
                        note_k8s_error(code);
                        errors += 1;
                        warn!(error = %e, errors, "watching the build pod failed; retrying");
                        if errors >= MAX_FOLLOW_ERRORS {
                            return Err(FollowError::Kube(format!("watching the build pod: {e}")));
                        }
                    }
                },
                _ = tick.tick() => {
                    match get_opt(&jobs, name).await {
                        Ok(None) => return Ok(Waited::Ended(Ended::Vanished)),
                        Ok(Some(job)) => {
                            if let Some((reason, message)) = job_failure(&job) {
                                // A pod that ran tells more (and has the log): prefer it.
                                let listed = self.pods().list(&ListParams::default().labels(&selector)).await;
                                if let Some(pod) = listed.ok().and_then(|l| l.items.into_iter().find(|p| {
                                    pod_progress(p, container) != PodProgress::Pending
                                })) {
                                    return Ok(Waited::Pod(Box::new(pod)));
                                }
                                return Ok(Waited::Ended(Ended::JobFailed { reason, message }));
                            }
                        }
                        Err(e) => note_k8s_error(e.code()),
                    }
                    if let Some(pod) = &pending
                        && let Some(failure) = self.missing_mount(pod, &mut first_seen).await
                    {
                        return Ok(Waited::Ended(Ended::MountFailed(failure)));
                    }
                }
            }
        }
    }

    /// A missing Secret (or ConfigMap) that has kept `pod` from starting for at least
    /// `mount_failure_after`: by this worker's clock since it first saw the report, or by the
    /// kubelet's own reports (a Job adopted from a dead worker may have waited long already).
    async fn missing_mount(
        &self,
        pod: &Pod,
        first_seen: &mut HashMap<String, Instant>,
    ) -> Option<MountFailure> {
        let uid = pod.metadata.uid.as_deref()?;
        let events: Api<Event> = namespaced(&self.client, &self.settings.namespace);
        let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
        let listed = match events.list(&params).await {
            Ok(l) => l.items,
            Err(e) => {
                note_k8s_error(kube_code(&e));
                warn!(error = %e, "cannot read the build pod's events");
                return None;
            }
        };
        let limit = self.settings.mount_failure_after;
        for failure in missing_objects(pod, &listed) {
            let since = *first_seen.entry(failure.volume.clone()).or_insert_with(|| {
                info!(missing = %failure, "the build pod is waiting for a missing object");
                Instant::now()
            });
            let reported = Duration::from_secs(failure.reported_for_secs);
            if since.elapsed().max(reported) >= limit {
                return Some(failure);
            }
        }
        None
    }

    /// Read the container log into the sink, from where the sink left off (`sinceTime`, with
    /// `timestamps=true`), until the stream ends or stays silent for `log_idle`. `follow` is
    /// false for a complete read of a container that has ended. A stream cut mid-line leaves
    /// its partial line in the decoder: it is re-read, unless the read was complete.
    async fn stream_log(
        &self,
        pod: &str,
        sink: &mut LogSink,
        follow: bool,
        masker: &Arc<Masker>,
    ) -> Result<StreamEnd, FollowError> {
        let since_time = sink.since().map(|secs| {
            k8s_openapi::jiff::Timestamp::from_second(secs)
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        });
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            follow,
            timestamps: true,
            since_time,
            ..Default::default()
        };
        let reader = self.pods().log_stream(pod, &params).await.map_err(|e| {
            note_k8s_error(kube_code(&e));
            FollowError::Kube(format!("following the log of pod {pod}: {e}"))
        })?;
        let mut reader = std::pin::pin!(reader);
        let mut decoder =
            LogDecoder::new(true, self.settings.log_max_line_bytes).with_masker(masker.clone());
        let mut buf = vec![0u8; 64 * 1024];
        sink.start_read();
        let idle = self.settings.log_idle;
        let mut silent_until = tokio::time::Instant::now() + idle;
        loop {
            let deadline = sink.deadline();
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) => return Ok(StreamEnd::Eof(decoder)),
                    Ok(n) => {
                        silent_until = tokio::time::Instant::now() + idle;
                        for line in decoder.feed(&buf[..n]) {
                            sink.push(line).await.map_err(FollowError::Store)?;
                        }
                    }
                    Err(e) => {
                        note_k8s_error(None);
                        return Err(FollowError::Kube(format!("reading the log of pod {pod}: {e}")));
                    }
                },
                () = tokio::time::sleep_until(silent_until) => return Ok(StreamEnd::Idle),
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    sink.flush().await.map_err(FollowError::Store)?;
                }
            }
        }
    }

    /// Follow the build to its end: wait for the pod, follow its log, and whenever a stream
    /// ends or goes silent while the container still runs, follow again from the last line
    /// taken. Once the container has ended, one last complete read takes what the streams
    /// before may have missed, and marks lines that are gone.
    async fn follow(
        &self,
        name: &str,
        sink: &mut LogSink,
        build: &ValidBuild,
        masker: &mut Option<Arc<Masker>>,
    ) -> Result<Ended, FollowError> {
        let mut errors = 0u32;
        let mut taken = sink.taken();
        // The pod as last read, when it is known to have started: no need to wait for it again.
        let mut known: Option<Box<Pod>> = None;
        loop {
            let pod = match known.take() {
                Some(pod) => pod,
                None => match self.wait_for_pod(name, CONTAINER).await? {
                    Waited::Pod(pod) => pod,
                    Waited::Ended(ended) => return Ok(ended),
                },
            };
            let pod_name = pod.name_any();
            let ended = match pod_progress(&pod, CONTAINER) {
                PodProgress::Stuck { reason, message } => {
                    return Ok(Ended::Stuck { reason, message });
                }
                PodProgress::Pending => continue,
                PodProgress::Running => None,
                PodProgress::Ended(end) => Some(end),
            };
            let follow = ended.is_none();
            // The pod has started, so its Secret volumes were mounted: read their values
            // once, before the first line is stored.
            let mask = match masker {
                Some(m) => m.clone(),
                None => {
                    let m = Arc::new(self.read_masker(build).await?);
                    *masker = Some(m.clone());
                    m
                }
            };
            let read = match (ended, self.stream_log(&pod_name, sink, follow, &mask).await) {
                (Some(end), Ok(StreamEnd::Eof(decoder))) => {
                    // A complete read: the container wrote its last line before it began.
                    for line in decoder.finish() {
                        sink.push(line).await.map_err(FollowError::Store)?;
                    }
                    sink.end_complete_read().await.map_err(FollowError::Store)?;
                    return Ok(Ended::Pod(end));
                }
                (_, read) => read,
            };
            let last_error = match read {
                Ok(end) => match get_opt(&self.pods(), &pod_name).await {
                    Ok(Some(pod)) => match (pod_progress(&pod, CONTAINER), end) {
                        // It ended meanwhile: the next round reads the rest completely.
                        (PodProgress::Ended(_), _) => {
                            known = Some(Box::new(pod));
                            continue;
                        }
                        // Silence is not an error: builds have quiet steps. Re-open it, in
                        // case the connection died.
                        (_, StreamEnd::Idle) => {
                            info!(pod = %pod_name, "the log stream was silent; following it again");
                            known = Some(Box::new(pod));
                            continue;
                        }
                        (_, StreamEnd::Eof(_)) => {
                            format!("the log stream of pod {pod_name} ended early")
                        }
                    },
                    Ok(None) => {
                        return Ok(match get_opt(&self.jobs(), name).await {
                            Ok(Some(job)) => match job_failure(&job) {
                                Some((reason, message)) => Ended::JobFailed { reason, message },
                                None => Ended::Vanished,
                            },
                            _ => Ended::Vanished,
                        });
                    }
                    Err(e) => {
                        note_k8s_error(e.code());
                        e.to_string()
                    }
                },
                Err(e @ (FollowError::Store(_) | FollowError::Unmaskable(_))) => return Err(e),
                Err(FollowError::Kube(e)) => e,
            };
            // A stream that delivered new lines is progress, not a failure streak.
            if sink.taken() > taken {
                taken = sink.taken();
                errors = 0;
            }
            errors += 1;
            if errors >= MAX_FOLLOW_ERRORS {
                return Err(FollowError::Kube(last_error));
            }
            warn!(error = %last_error, errors, "following the build log again");
            let wait =
                Duration::from_millis(100 * 2u64.pow(errors.min(5))).min(Duration::from_secs(3));
            tokio::time::sleep(wait).await;
        }
    }

    /// The values of the build's Secrets, to mask in its log: the git token and the registry
    /// credentials (see `slipway_core::mask`). A Secret that cannot be read fails the build:
    /// forbidden (RBAC does not list it) or gone (deleted after the pod mounted it) are
    /// permanent; anything else is retried, then transient. The values stay in the masker,
    /// whose `Debug` never shows them.
    async fn read_masker(&self, build: &ValidBuild) -> Result<Masker, FollowError> {
        let mut masker = Masker::none();
        let secrets: Api<Secret> = namespaced(&self.client, &self.settings.namespace);
        let named = [
            (
                build.secrets.git.as_deref(),
                slipway_k8s::build::GIT_SECRET_KEY,
            ),
            (build.secrets.registry.as_deref(), ".dockerconfigjson"),
        ];
        for (name, key) in named {
            let Some(name) = name else { continue };
            let ns = &self.settings.namespace;
            let gone = || {
                FollowError::Unmaskable(JobError::permanent(format!(
                    "Secret \"{name}\" in namespace {ns} was deleted while the build ran: its \
                     values cannot be masked, so the build log is not stored"
                )))
            };
            let secret = match get_opt(&secrets, name).await {
                Ok(Some(s)) => s,
                Ok(None) => return Err(gone()),
                Err(e) if e.code() == Some(403) => {
                    note_k8s_error(e.code());
                    return Err(FollowError::Unmaskable(JobError::permanent(format!(
                        "the build worker may not read Secret \"{name}\" in namespace {ns} \
                         ({e}), so its values cannot be masked and the build log is not stored; \
                         list it in the chart's buildNamespace.secretNames"
                    ))));
                }
                Err(e) if e.class() == ErrorClass::Permanent => {
                    note_k8s_error(e.code());
                    return Err(FollowError::Unmaskable(job_error(&e)));
                }
                Err(e) => {
                    note_k8s_error(e.code());
                    let never = CancellationToken::new();
                    match self.k8s_retry(&never, || get_opt(&secrets, name)).await {
                        Ok(Some(s)) => s,
                        Ok(None) => return Err(gone()),
                        Err(e) => return Err(FollowError::Unmaskable(e)),
                    }
                }
            };
            let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) else {
                warn!(secret = %name, key, "the build's Secret has no such key; nothing to mask");
                continue;
            };
            if key == ".dockerconfigjson" {
                if let Err(e) = masker.add_docker_config(&value.0) {
                    warn!(secret = %name, error = %e, "the registry Secret is not a docker config; masking it whole");
                    masker.add(&value.0);
                }
            } else {
                masker.add_git_token(&value.0);
            }
        }
        if masker.too_short() > 0 {
            warn!(
                values = masker.too_short(),
                min_len = slipway_core::mask::MIN_MASKED_LEN,
                "secret values shorter than the minimum are not masked in the build log"
            );
        }
        Ok(masker)
    }

    /// Whether the job was stopped for good (cancelled or superseded) in the job store. The
    /// store is written before the queue is told, so a cancel is already visible here.
    async fn stopped_for_good(&self, id: JobId) -> bool {
        for _ in 0..3 {
            match self.store.get_job(id).await {
                Ok(Some(j)) => return j.state.is_terminal(),
                Ok(None) => return true,
                Err(e) => {
                    warn!(error = %e, "cannot read the job's state; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        false
    }

    async fn delete_job(&self, name: &str) {
        let jobs = self.jobs();
        let never = CancellationToken::new();
        match self
            .k8s_retry(&never, || delete_background(&jobs, name))
            .await
        {
            Ok(_) => info!(job = %name, "build Job deleted"),
            // ttlSecondsAfterFinished and the cleanup worker are the safety net.
            Err(e) => warn!(job = %name, error = %e.message, "cannot delete the build Job"),
        }
    }

    /// One attempt of a build, up to its result (without the pipeline's launch). `port` is the
    /// port the image will serve on (the pipeline's launch port), for a generated Dockerfile.
    async fn build(
        &self,
        job: &JobContext,
        record: &JobRecord,
        build: &ValidBuild,
        port: u16,
    ) -> Result<Value, JobError> {
        let target = self.pick_target(job, record).await?;
        let name = target.name.clone();
        let mut sink = LogSink::resume(
            self.store.clone(),
            job.id,
            target.log_attempt as i32,
            self.sink_limits(),
        )
        .await
        .map_err(|e| store_error("cannot read the stored build log", &e))?;
        let mut detected = None;
        if !target.exists {
            self.wait_for_slot(&job.cancel).await?;
            // Untrusted build steps never run without the namespace's network policy: it is
            // applied (idempotently) before every new Job, so a deleted policy comes back.
            if let Some(net) = &self.settings.network {
                let policy = build_network_policy(net);
                let api = self.network_policies();
                self.k8s_retry(&job.cancel, || apply(&api, &policy)).await?;
            }
            let generated = if build.source == BuildSource::Auto {
                let plan = self
                    .plan_auto(job, build, port, &mut sink)
                    .instrument(info_span!("plan_auto"))
                    .await?;
                detected = Some(json!({
                    "stack": plan.stack.label(),
                    "start": plan.start,
                    "generated_dockerfile": plan.dockerfile.is_some(),
                }));
                plan.dockerfile
            } else {
                None
            };
            let object = build_job(&job_params(&self.settings, build, &name, job.id, generated));
            let jobs = self.jobs();
            let (_, existed) = self
                .k8s_retry(&job.cancel, || create_or_adopt(&jobs, &object))
                .instrument(info_span!("create_build_job", k8s.job = %name))
                .await?;
            info!(job = %name, adopted = existed, "build Job created");
        }
        self.store
            .record_attempt_objects(job.id, job.attempt as i32, std::slice::from_ref(&name))
            .await
            .map_err(|e| store_error("cannot record the build Job", &e))?;

        let mut masker: Option<Arc<Masker>> = None;
        let followed = {
            let follow = self
                .follow(&name, &mut sink, build, &mut masker)
                .instrument(info_span!("follow_build", k8s.job = %name));
            tokio::select! {
                r = follow => Some(r),
                () = job.cancel.cancelled() => None,
            }
        };
        let flushed = sink.flush().await;
        let Some(followed) = followed else {
            if self.stopped_for_good(job.id).await {
                info!(job = %name, "build cancelled; deleting its Job");
                self.delete_job(&name).await;
            }
            return Err(JobError::transient("the build was stopped before it ended"));
        };
        if let Err(e) = flushed {
            // The Job stays (ttlSecondsAfterFinished): its log could not be saved.
            return Err(store_error("cannot store the build log", &e));
        }
        let tail = sink.tail();
        let verdict = match followed {
            Err(FollowError::Store(e)) => {
                return Err(store_error("cannot store the build log", &e));
            }
            Err(FollowError::Kube(e)) => Err(JobError::transient(format!(
                "lost track of the build on the Kubernetes API: {e}"
            ))),
            Err(FollowError::Unmaskable(e)) => Err(e),
            Ok(Ended::Pod(end)) => match classify_end(&end, &tail) {
                BuildVerdict::Succeeded { message } => parse_build_metadata(&message)
                    .map(|meta| {
                        let mut result = json!({
                            "image": build.image_reference(&self.settings.registry_push),
                            "digest": meta.digest,
                            "pull": format!("{}@{}", build.image_reference(&self.settings.registry_pull), meta.digest),
                            "build_job": name,
                        });
                        // What an `auto` build detected (absent for the repository's Dockerfile).
                        if let Some(d) = detected.take() {
                            result["detected"] = d;
                        }
                        result
                    })
                    .map_err(|e| JobError::permanent(format!("the build ended but {e}"))),
                BuildVerdict::BuildFailed { exit_code } => Err(JobError::permanent(
                    build_failure_message(exit_code, &tail, end.message.as_deref()),
                )),
                BuildVerdict::Infrastructure { reason } => Err(JobError::transient(reason)),
            },
            Ok(Ended::Stuck { reason, message }) => Err(JobError::transient(format!(
                "the build pod could not start: {reason}: {message}"
            ))),
            Ok(Ended::MountFailed(failure)) => Err(JobError::permanent(format!(
                "the build pod cannot start: {failure} (create it in namespace {}, or fix the \
                 build's secrets)",
                self.settings.namespace
            ))),
            Ok(Ended::JobFailed { reason, message }) => Err(JobError::transient(format!(
                "the build Job failed: {reason}: {message}"
            ))),
            Ok(Ended::Vanished) => Err(JobError::transient(
                "the build Job was deleted before the build ended",
            )),
        };
        // The final batch is committed: the Job can go.
        self.delete_job(&name).await;
        // The termination message (the log's tail on failure) reaches the job's error.
        verdict.map_err(|mut e| {
            if let Some(m) = &masker {
                e.message = m.mask_str(&e.message).into_owned();
            }
            e
        })
    }

    /// Record and enqueue the launch that follows a pipeline's build: one per build job (the
    /// idempotency key is derived from the build job's id, so a retried build does not enqueue
    /// a second).
    async fn enqueue_launch(
        &self,
        job: &JobContext,
        record: &JobRecord,
        build: &ValidBuild,
        result: &Value,
        options: ValidLaunchOptions,
    ) -> Result<Value, JobError> {
        // A build superseded (or cancelled) meanwhile must not launch its image over the newer
        // one's: the job store refuses its result anyway.
        self.still_ours(job.id, "its launch was enqueued").await?;
        let pull = result["pull"].as_str().unwrap_or_default();
        let image: ImageRef = pull.parse().map_err(|e| {
            JobError::permanent(format!(
                "the built image {pull:?} is not a valid reference: {e}"
            ))
        })?;
        let launch = ValidLaunch {
            preview: crate::pipeline::preview_of(build, record)?,
            source: ImageSource::Image(image),
            options,
            compose: None,
            helm: None,
        };
        let launched = self.submit_launch(record, build, job.id, &launch).await?;
        Ok(json!({"job": launched, "image": pull}))
    }
}

#[async_trait::async_trait]
impl Handler for BuildHandler {
    fn keyed_cap(&self) -> Option<KeyedCap> {
        (self.settings.max_per_repository > 0).then_some(KeyedCap {
            limit: self.settings.max_per_repository,
            key: repository_cap_key,
            what: "repository",
            recheck: self.settings.repository_recheck,
        })
    }

    async fn handle(&self, job: JobContext) -> Result<Value, JobError> {
        let record = job
            .record
            .clone()
            .ok_or_else(|| JobError::permanent("the build worker needs the job store's record"))?;
        let BuildPayload {
            build,
            then_launch,
            composition,
            compose_build,
        } = parse_payload(&record.payload)?;
        // A compose pipeline's first job builds nothing: it starts the services' builds.
        if let (Some(Composition::Compose(spec)), Some(options)) = (&composition, &then_launch) {
            return self
                .start_compose(&job, &record, &build, spec, options.clone())
                .instrument(info_span!("start_compose"))
                .await;
        }
        metrics::counter!("slipway_builds_started_total").increment(1);
        let started = Instant::now();
        let port = then_launch
            .as_ref()
            .map_or(slipway_core::validate::DEFAULT_PORT, |l| l.port);
        let result = self.build(&job, &record, &build, port).await;
        let outcome = match &result {
            Ok(_) => "succeeded",
            Err(_) if job.cancel.is_cancelled() => "stopped",
            Err(e) if e.class == ErrorClass::Permanent => "failed",
            Err(_) => "transient_failure",
        };
        metrics::counter!("slipway_builds_finished_total", "outcome" => outcome).increment(1);
        metrics::histogram!("slipway_build_duration_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        let mut value = result?;
        if let Some(part) = &compose_build {
            value["launch"] = self
                .join_compose(&job, &record, &build, part, &value)
                .await?;
        } else if let Some(options) = then_launch {
            value["launch"] = match &composition {
                Some(Composition::Helm(spec)) => {
                    self.launch_helm(&job, &record, &build, spec, options, &value)
                        .instrument(info_span!("launch_helm"))
                        .await?
                }
                _ => {
                    self.enqueue_launch(&job, &record, &build, &value, options)
                        .await?
                }
            };
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        use clap::Parser;
        crate::Config::try_parse_from(["w", "--database-url", "postgres://x@localhost/db"])
            .unwrap()
            .build
            .settings()
    }

    #[test]
    fn a_valid_build_maps_to_the_job_parameters() {
        use slipway_core::payload::BuildRequest;
        use slipway_core::validate::{Limits, Validate};
        let req: BuildRequest = serde_json::from_value(json!({
            "repository": "https://github.com/org/app",
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "context": "web",
            "dockerfile": "docker/Dockerfile",
            "image": "org/app",
            "tag": "v1",
            "build_args": {"A": "1"},
            "target": "Runtime",
            "secrets": {"git": "git-token", "registry": "push-creds"},
            "preview": "org/app#1",
        }))
        .unwrap();
        let build = req.validate(&Limits::default()).unwrap();
        let id: JobId = "0190a5b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b".parse().unwrap();
        let name = build_job_name(id, 2);
        let p = job_params(&settings(), &build, &name, id, None);
        assert_eq!(p.name, "slipway-build-0190a5b2c3d47e8f9a0b1c2d3e4f5a6b-a2");
        assert_eq!(p.namespace, "slipway-builds");
        assert_eq!(p.repository, "https://github.com/org/app.git");
        assert_eq!(
            p.git_context(),
            "https://github.com/org/app.git#0123456789abcdef0123456789abcdef01234567:web"
        );
        assert_eq!(p.dockerfile, "docker/Dockerfile");
        assert_eq!(p.target.as_deref(), Some("runtime"));
        assert_eq!(
            p.push_ref,
            "registry.kube-system.svc.cluster.local:80/org/app:v1"
        );
        assert_eq!(
            p.cache_ref.as_deref(),
            Some("registry.kube-system.svc.cluster.local:80/org/app:buildcache")
        );
        assert!(p.insecure_registry);
        assert_eq!(p.git_secret.as_deref(), Some("git-token"));
        assert_eq!(p.registry_secret.as_deref(), Some("push-creds"));
        assert_eq!(p.active_deadline_seconds, 1800);
        assert_eq!(p.ttl_seconds_after_finished, 3600);
        assert_eq!(p.labels[labels::JOB_ID], id.hyphenated().to_string());
        assert_eq!(p.labels[labels::KIND], "build");
        assert_eq!(p.labels[labels::MANAGED_BY], "slipway");
        assert!(p.labels.contains_key(labels::PREVIEW));
        let job = build_job(&p);
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.contains(&"build-arg:A=1".to_owned()), "{args:?}");
        assert!(
            args.contains(&"--metadata-file=/tmp/meta/metadata.json".to_owned()),
            "{args:?}"
        );
    }

    /// A fork's pipeline (as the webhook records it) builds with the registry credential
    /// mounted for the push and no git token anywhere in the Job.
    #[test]
    fn a_fork_build_job_has_no_git_secret() {
        use slipway_core::payload::PipelineRequest;
        use slipway_core::validate::{Limits, Validate};
        let req: PipelineRequest = serde_json::from_value(json!({
            "preview": "org/app#7",
            "repository": "https://github.com/org/app.git",
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "build": {"secrets": {"git": "git-token", "registry": "push-creds"}},
            "launch": {"secret_env": {"DB": "db/password"}},
        }))
        .unwrap();
        let id: JobId = "0190a5b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b".parse().unwrap();
        let job_of = |req: PipelineRequest| {
            let valid = req.validate(&Limits::default()).unwrap();
            serde_json::to_value(build_job(&job_params(
                &settings(),
                &valid.build,
                &build_job_name(id, 1),
                id,
                None,
            )))
            .unwrap()
            .to_string()
        };
        let trusted = job_of(req.clone());
        assert!(trusted.contains("git-token") && trusted.contains("GIT_AUTH_TOKEN"));
        let fork = job_of(req.for_untrusted_code());
        assert!(!fork.contains("git-token"), "{fork}");
        assert!(!fork.contains("GIT_AUTH_TOKEN"), "{fork}");
        assert!(!fork.contains("git-auth"), "{fork}");
        assert!(
            fork.contains("push-creds") && fork.contains("docker-config"),
            "{fork}"
        );
    }

    #[test]
    fn a_build_failure_names_the_failing_step() {
        let tail: Vec<String> = [
            "#7 [builder 3/4] RUN make",
            "#7 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
            "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
        ]
        .map(String::from)
        .to_vec();
        let m = build_failure_message(1, &tail, None);
        assert!(
            m.starts_with("the build failed (exit code 1): #7 ERROR"),
            "{m}"
        );
        assert!(m.contains("failed to solve"), "{m}");
        // No BuildKit error lines: the termination message's last lines, then the last line.
        let m = build_failure_message(1, &["plain".into()], Some("a\nb\nfailed to solve\n"));
        assert_eq!(m, "the build failed (exit code 1): a | b | failed to solve");
        let m = build_failure_message(2, &["last words".into()], None);
        assert_eq!(m, "the build failed (exit code 2): last words");
        assert_eq!(
            build_failure_message(3, &[], None),
            "the build failed (exit code 3)"
        );
    }

    #[test]
    fn payloads_parse_with_and_without_a_following_launch() {
        use slipway_core::payload::BuildRequest;
        use slipway_core::validate::{Limits, Validate};
        let req: BuildRequest = serde_json::from_value(json!({
            "repository": "https://github.com/org/app",
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "image": "org/app",
            "preview": "org/app#1",
        }))
        .unwrap();
        let valid = req.validate(&Limits::default()).unwrap();
        let payload = serde_json::to_value(&valid).unwrap();
        let parsed = parse_payload(&payload).unwrap();
        assert_eq!(parsed.build, valid);
        assert!(parsed.then_launch.is_none() && parsed.composition.is_none());
        let mut with_launch = payload.clone();
        with_launch["then_launch"] = json!({"port": 8080, "env": {}, "secret_env": {},
            "replicas": 1, "resources": {"cpu_millis": null, "memory_bytes": null},
            "health_path": "/", "ttl_hours": 72});
        assert_eq!(
            parse_payload(&with_launch)
                .unwrap()
                .then_launch
                .unwrap()
                .port,
            8080
        );
        with_launch["composition"] = json!({"type": "compose", "file": null,
            "service": "web", "port": null});
        assert!(matches!(
            parse_payload(&with_launch).unwrap().composition,
            Some(Composition::Compose(_))
        ));
        let err = parse_payload(&json!({"nope": 1})).unwrap_err();
        assert_eq!(err.class, ErrorClass::Permanent);
    }
}
