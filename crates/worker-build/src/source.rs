//! The `auto` source: before a build Job is created, read the repository at the build's commit
//! with a source Job (`slipway_k8s::source`), detect the stack (`slipway_core::detect`) and
//! say in the build log what was found and why, with the Dockerfile generated for it.
//!
//! The source Job runs in the build namespace under its network policy, with the build's own
//! git Secret, and runs none of the repository's code. It is deleted once its log is read; a
//! worker that dies meanwhile leaves it to `ttlSecondsAfterFinished` and the cleanup worker
//! (it carries the build's labels), and the next attempt reads the repository again.

use crate::handler::{BuildHandler, Ended, FollowError, Waited};
use crate::sink::LogSink;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use slipway_core::JobKind;
use slipway_core::detect::{self, Inputs, Plan, Snapshot, WANTED_FILES};
use slipway_core::naming::{source_job_name, standard_labels};
use slipway_core::validate::ValidBuild;
use slipway_k8s::client::{create_or_adopt, delete_background, get_opt};
use slipway_k8s::outcome::{PodProgress, pod_progress};
use slipway_k8s::source::{
    CONTAINER, SourceJobParams, parse_source_log, permanent_git_failure, source_job,
};
use slipway_shared::runtime::{JobContext, JobError};
use std::time::Duration;
use tracing::{info, warn};

/// The source Job's deadline: a shallow fetch of one commit.
const SOURCE_DEADLINE_SECS: i64 = 300;
/// Lines of git's own output shown when reading fails.
const SHOWN_ERROR_LINES: usize = 6;

impl BuildHandler {
    /// Read the repository and plan the build: `Ok(plan)` (its Dockerfile `None` when the
    /// repository has its own), or the attempt's error: permanent when nothing can be built
    /// from this commit (no stack, a missing commit or repository), transient otherwise.
    pub(crate) async fn plan_auto(
        &self,
        job: &JobContext,
        build: &ValidBuild,
        port: u16,
        sink: &mut LogSink,
    ) -> Result<Plan, JobError> {
        let store = |e| crate::handler::store_error("cannot store the build log", &e);
        let wanted: Vec<String> = WANTED_FILES.iter().map(|f| (*f).to_owned()).collect();
        let snap = self
            .read_repository(job, build, "auto", build.context.clone(), wanted, sink)
            .await?;
        let args: Vec<&str> = build.build_args.keys().map(String::as_str).collect();
        let inputs = Inputs {
            port,
            build_args: args,
            dir: build.context.as_deref().unwrap_or(""),
        };
        let plan = match detect::plan(&snap, &inputs) {
            Ok(plan) => plan,
            Err(e) => {
                let message = format!("source auto: {e}");
                sink.system(format!("[slipway] {message}"))
                    .await
                    .map_err(store)?;
                sink.flush().await.map_err(store)?;
                return Err(JobError::permanent(message));
            }
        };
        let mut said = vec![format!(
            "[slipway] source auto: detected {}",
            plan.stack.label()
        )];
        said.extend(plan.reasons.iter().map(|r| format!("[slipway]   - {r}")));
        if let Some(dockerfile) = &plan.dockerfile {
            said.push("[slipway] source auto: the generated Dockerfile:".to_owned());
            said.extend(dockerfile.lines().map(|l| format!("[slipway]   | {l}")));
        }
        for line in said {
            sink.system(line).await.map_err(store)?;
        }
        sink.flush().await.map_err(store)?;
        info!(stack = plan.stack.label(), commit = %snap.commit, "source auto: stack detected");
        Ok(plan)
    }

    /// Read `files` (paths relative to `subdir`; one ending in `/` is a whole directory) of
    /// the build's repository at its commit with a source Job, saying so in the build log as
    /// `[slipway] source <label>: ...` lines. A commit or repository that cannot be had fails
    /// for good with git's words; anything else is transient.
    pub(crate) async fn read_repository(
        &self,
        job: &JobContext,
        build: &ValidBuild,
        label: &str,
        subdir: Option<String>,
        files: Vec<String>,
        sink: &mut LogSink,
    ) -> Result<Snapshot, JobError> {
        let name = source_job_name(job.id, job.attempt);
        let params = SourceJobParams {
            name: name.clone(),
            namespace: self.settings.namespace.clone(),
            labels: standard_labels(Some(job.id), Some(JobKind::Build), build.preview.as_deref()),
            image: self.settings.buildkit_image.clone(),
            repository: build.remote(),
            commit: build.commit.clone(),
            context_subdir: subdir.clone(),
            files,
            git_secret: build.secrets.git.clone(),
            active_deadline_seconds: SOURCE_DEADLINE_SECS,
            ttl_seconds_after_finished: self.settings.ttl_secs,
        };
        let store = |e| crate::handler::store_error("cannot store the build log", &e);
        let dir = subdir.unwrap_or_else(|| ".".into());
        sink.system(format!(
            "[slipway] source {label}: reading {dir} of the repository at {} (Job {name})",
            build.commit
        ))
        .await
        .map_err(store)?;
        sink.flush().await.map_err(store)?;
        let jobs: Api<Job> = self.jobs();
        let object = source_job(&params);
        self.k8s_retry(&job.cancel, || create_or_adopt(&jobs, &object))
            .await?;
        let read = tokio::select! {
            r = self.read_source_pod(&name) => Some(r),
            () = job.cancel.cancelled() => None,
        };
        // Whatever happened, the Job has done its work (or never will).
        if let Err(e) = delete_background(&jobs, &name).await {
            warn!(job = %name, error = %e, "cannot delete the source Job");
        }
        let Some(read) = read else {
            return Err(JobError::transient(
                "the build was stopped while reading the repository",
            ));
        };
        let (exit_code, lines) = read?;
        let own: Vec<String> = lines
            .iter()
            .filter(|l| !l.starts_with("slipway-source "))
            .cloned()
            .collect();
        if exit_code != 0 {
            let skip = own.len().saturating_sub(SHOWN_ERROR_LINES);
            for line in &own[skip..] {
                sink.system(format!("[slipway] source {label}: {line}"))
                    .await
                    .map_err(store)?;
            }
            sink.flush().await.map_err(store)?;
            let said = own.last().map_or(String::new(), |l| format!(": {l}"));
            let message = format!(
                "reading the repository at {} failed (exit code {exit_code}){said}",
                build.commit
            );
            return Err(if permanent_git_failure(&own) {
                JobError::permanent(message)
            } else {
                JobError::transient(message)
            });
        }
        parse_source_log(lines.iter().map(String::as_str))
            .map_err(|e| JobError::transient(format!("reading the repository: {e}")))
    }

    /// Wait for the source pod to end and read its whole log: (exit code, lines).
    async fn read_source_pod(&self, name: &str) -> Result<(i32, Vec<String>), JobError> {
        let pods: Api<Pod> = self.pods();
        let pod = match self.wait_for_pod(name, CONTAINER).await {
            Ok(Waited::Pod(pod)) => pod,
            Ok(Waited::Ended(end)) => return Err(source_ended(end)),
            Err(FollowError::Kube(e)) => {
                return Err(JobError::transient(format!("watching the source pod: {e}")));
            }
            Err(FollowError::Store(e)) => {
                return Err(crate::handler::store_error(
                    "cannot store the build log",
                    &e,
                ));
            }
            Err(FollowError::Unmaskable(e)) => return Err(e),
        };
        let pod_name = pod.name_any();
        // A shallow fetch takes seconds: watch the pod until it ends (a watch wakes at once; a
        // re-read every 2 s covers a lost watch; its Job's deadline bounds the wait).
        let selector = format!("batch.kubernetes.io/job-name={name}");
        let stream =
            watcher(pods.clone(), watcher::Config::default().labels(&selector)).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(SOURCE_DEADLINE_SECS as u64 + 60);
        let mut progress = pod_progress(&pod, CONTAINER);
        let end = loop {
            match progress {
                PodProgress::Ended(end) => break end,
                PodProgress::Stuck { reason, message } => {
                    return Err(JobError::transient(format!(
                        "the source pod could not start: {reason}: {message}"
                    )));
                }
                PodProgress::Pending | PodProgress::Running => {}
            }
            progress = tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)))
                        if p.name_any() == pod_name => pod_progress(&p, CONTAINER),
                    Some(Ok(watcher::Event::Delete(p))) if p.name_any() == pod_name => {
                        return Err(source_ended(Ended::Vanished));
                    }
                    Some(Ok(_)) | Some(Err(_)) => progress,
                    None => {
                        return Err(JobError::transient("the source pod's watch ended"));
                    }
                },
                _ = tick.tick() => match get_opt(&pods, &pod_name).await {
                    Ok(Some(p)) => pod_progress(&p, CONTAINER),
                    Ok(None) => return Err(source_ended(Ended::Vanished)),
                    Err(e) => {
                        warn!(pod = %pod_name, error = %e, "cannot read the source pod; retrying");
                        progress
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(JobError::transient("the source pod did not end in time"));
                }
            };
        };
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            ..Default::default()
        };
        let text = pods.logs(&pod_name, &params).await.map_err(|e| {
            JobError::transient(format!("reading the log of source pod {pod_name}: {e}"))
        })?;
        let code = end.exit_code.unwrap_or(-1);
        Ok((code, text.lines().map(str::to_owned).collect()))
    }
}

/// The error of a source Job that ended without a pod that ran.
fn source_ended(end: Ended) -> JobError {
    match end {
        Ended::MountFailed(failure) => JobError::permanent(format!(
            "the source pod cannot start: {failure} (fix the build's git Secret)"
        )),
        Ended::Stuck { reason, message } => JobError::transient(format!(
            "the source pod could not start: {reason}: {message}"
        )),
        Ended::JobFailed { reason, message } => {
            JobError::transient(format!("the source Job failed: {reason}: {message}"))
        }
        Ended::Vanished => {
            JobError::transient("the source Job was deleted before it read the repository")
        }
        Ended::Pod(end) => JobError::transient(format!(
            "the source pod ended without a log: {:?}",
            end.reason
        )),
    }
}
