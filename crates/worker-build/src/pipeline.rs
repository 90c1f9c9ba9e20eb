//! The `compose` and `helm` sources (#18): what a pipeline's build job does beyond building one
//! image.
//!
//! - **compose**: the pipeline's first job builds nothing itself. It reads the compose file at
//!   the commit (a source Job), translates it ([`slipway_core::compose::parse`], refusing what
//!   cannot run in a preview, naming the field), and records one build job per service with
//!   `build:` (idempotency key `pipeline-compose:<first job>:<service>`, so a retry records
//!   none twice). Each of those builds, once its image is pushed, records it in the pipeline's
//!   join (`Store::record_pipeline_image`); the build that completes the set records and pushes
//!   the one launch (key `pipeline-launch:<first job>`). A compose file with no `build:` at all
//!   is launched by the first job directly.
//! - **helm**: the build is the repository's Dockerfile as usual; once its image is pushed, the
//!   chart directory and the values files are read at the commit and travel in the launch's
//!   payload ([`HelmLaunch`]), which renders them with Helm.

use crate::handler::{BuildHandler, store_error};
use crate::sink::LogSink;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use slipway_core::compose::{self, App};
use slipway_core::source::{COMPOSE_FILES, ComposeLaunch, ComposeSpec, HelmLaunch, HelmSpec};
use slipway_core::validate::{
    ImageSource, ValidBuild, ValidLaunch, ValidLaunchOptions, rel_path, target,
};
use slipway_core::{ImageRef, JobId, JobKind};
use slipway_shared::enqueue::Submitter;
use slipway_shared::runtime::{JobContext, JobError};
use slipway_shared::store::{JobRecord, NewJob};
use std::collections::BTreeMap;
use tracing::info;

/// Most bytes of a chart and its values files together (they travel in the launch's payload).
pub const MAX_CHART_BYTES: usize = 1 << 20;

/// A compose service's build, recorded by its pipeline's first job: the payload key
/// `compose_build` beside the build itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBuild {
    /// The pipeline's first job: the join's key and the launch's idempotency key.
    pub pipeline: JobId,
    pub service: String,
    /// Every service that is built: the launch waits for all of their images.
    pub built: Vec<String>,
    /// The launch to record once they are all built (`images` holds the services that are
    /// not built).
    pub launch: ComposeLaunch,
    pub options: ValidLaunchOptions,
}

/// The repository path of a service's build context: `context` of a compose file at `file`
/// is relative to the file's directory (compose-spec `build.md`: "a relative path is resolved
/// from the Compose file's parent folder"). `None` is the repository's root; a context that
/// leaves the repository is refused.
fn service_context(file: &str, context: &str, field: &str) -> Result<Option<String>, String> {
    if context.contains("://") || context.starts_with("git@") {
        return Err(format!(
            "{field}: remote build contexts are not supported; use a directory of the \
             repository"
        ));
    }
    if context.starts_with('/') {
        return Err(format!(
            "{field}: must be relative to the compose file's directory"
        ));
    }
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for seg in context.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{field}: leaves the repository"));
                }
            }
            s => parts.push(s),
        }
    }
    rel_path(&parts.join("/"), field, true).map_err(|e| format!("{field}: {}", e.message))
}

/// The compose file's path: the one the source names, or the first of [`COMPOSE_FILES`] the
/// repository has.
fn compose_file<'a>(spec: &'a ComposeSpec, files: &BTreeMap<String, Vec<u8>>) -> Option<&'a str> {
    match &spec.file {
        Some(f) => files.contains_key(f).then_some(f.as_str()),
        None => COMPOSE_FILES
            .iter()
            .copied()
            .find(|f| files.contains_key(*f)),
    }
}

/// The builds and the launch a compose file makes, or why it cannot be a preview. Pure.
pub(crate) fn plan_compose(
    parent: &ValidBuild,
    spec: &ComposeSpec,
    file: &str,
    app: &App,
    options: &ValidLaunchOptions,
) -> Result<(Vec<(String, ValidBuild)>, ComposeLaunch), String> {
    let names = || {
        app.services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let exposed = app.service(&spec.service).ok_or_else(|| {
        format!(
            "source.service: {file} has no service {:?} (its services: {})",
            spec.service,
            names()
        )
    })?;
    let port = spec
        .port
        .or_else(|| exposed.ports.first().copied())
        .unwrap_or(options.port);
    let mut builds = Vec::new();
    let mut images = BTreeMap::new();
    for s in &app.services {
        let field = format!("services.{}", s.name);
        match (&s.build, &s.image) {
            (Some(b), _) => {
                let context = service_context(file, &b.context, &format!("{field}.build.context"))?;
                let dockerfile = match &b.dockerfile {
                    Some(d) => rel_path(d, &format!("{field}.build.dockerfile"), false)
                        .map_err(|e| format!("{}: {}", e.field, e.message))?
                        .unwrap_or_default(),
                    None => parent.dockerfile.clone(),
                };
                let target = b
                    .target
                    .as_deref()
                    .map(|t| target(t, &format!("{field}.build.target")))
                    .transpose()
                    .map_err(|e| format!("{}: {}", e.field, e.message))?;
                let mut build = parent.clone();
                build.context = context;
                build.dockerfile = dockerfile;
                build.target = target;
                build.build_args = b.args.clone();
                build.image = format!("{}/{}", parent.image, s.name);
                builds.push((s.name.clone(), build));
            }
            (None, Some(image)) => {
                let r: ImageRef = image
                    .parse()
                    .map_err(|e| format!("{field}.image: not an image reference: {e}"))?;
                images.insert(s.name.clone(), r.to_string());
            }
            (None, None) => {
                return Err(format!("{field}: a service needs `image` or `build`"));
            }
        }
    }
    Ok((
        builds,
        ComposeLaunch {
            services: app.services.clone(),
            volumes: app.volumes.iter().cloned().collect(),
            images,
            exposed: spec.service.clone(),
            port,
        },
    ))
}

/// The preview a pipeline's build is for.
pub(crate) fn preview_of(build: &ValidBuild, record: &JobRecord) -> Result<String, JobError> {
    build
        .preview
        .clone()
        .or_else(|| record.preview.clone())
        .ok_or_else(|| JobError::permanent("a pipeline's build has no preview"))
}

/// The launch of a compose app: every service, the exposed one's image the launch's own.
fn compose_launch(
    preview: String,
    options: ValidLaunchOptions,
    launch: ComposeLaunch,
) -> Result<ValidLaunch, JobError> {
    let exposed: ImageRef = launch
        .images
        .get(&launch.exposed)
        .map(String::as_str)
        .unwrap_or_default()
        .parse()
        .map_err(|e| JobError::permanent(format!("the exposed service's image: {e}")))?;
    Ok(ValidLaunch {
        preview,
        source: ImageSource::Image(exposed),
        options,
        compose: Some(launch),
        helm: None,
    })
}

/// The repository and the `tag@digest` a chart's values receive for a pushed image
/// `registry/org/app@sha256:...` built with `tag`.
fn split_image(pull: &str, tag: &str) -> Result<(String, String), JobError> {
    let r: ImageRef = pull.parse().map_err(|e| {
        JobError::permanent(format!(
            "the built image {pull:?} is not a valid reference: {e}"
        ))
    })?;
    let tag = r.tag.as_deref().unwrap_or(tag);
    let tag = match &r.digest {
        Some(d) => format!("{tag}@{d}"),
        None => tag.to_owned(),
    };
    Ok((r.name(), tag))
}

impl BuildHandler {
    /// The build log of this attempt, to add `system` lines to.
    async fn resume_sink(&self, job: &JobContext) -> Result<LogSink, JobError> {
        let attempt = i32::try_from(job.attempt).unwrap_or(i32::MAX);
        LogSink::resume(self.store.clone(), job.id, attempt, self.sink_limits())
            .await
            .map_err(|e| store_error("cannot read the stored build log", &e))
    }

    /// Fails when the job ended (superseded or cancelled) meanwhile: what it would record next
    /// belongs to a newer pipeline, or to none.
    pub(crate) async fn still_ours(&self, id: JobId, what: &str) -> Result<(), JobError> {
        match self.store.get_job(id).await {
            Ok(Some(j)) if j.state.is_terminal() => Err(JobError::permanent(format!(
                "the build ended {} before {what}",
                j.state
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(store_error("cannot read the job", &e)),
        }
    }

    /// Record and push the launch of the pipeline whose first job is `pipeline` (its id keys
    /// the launch, so no retry or second build records another), superseding the preview's
    /// older launches.
    pub(crate) async fn submit_launch(
        &self,
        record: &JobRecord,
        build: &ValidBuild,
        pipeline: JobId,
        launch: &ValidLaunch,
    ) -> Result<JobId, JobError> {
        let payload = serde_json::to_value(launch)
            .map_err(|e| JobError::permanent(format!("cannot encode the launch: {e}")))?;
        let mut new = NewJob::new(JobKind::Launch, payload);
        new.preview = Some(launch.preview.clone());
        new.commit_sha = Some(build.commit.clone());
        new.max_attempts = record.max_attempts;
        new.idempotency_key = Some(format!("pipeline-launch:{pipeline}"));
        new.trace_context = record.trace_context.clone();
        let launched = Submitter::new(self.store.clone(), self.queue.clone())
            .submit(new, &[JobKind::Launch])
            .await
            .map_err(|e| store_error("cannot record the pipeline's launch", &e))?
            .job;
        info!(launch = %launched.id, "pipeline launch enqueued");
        Ok(launched.id)
    }

    /// A compose pipeline's first job: read and translate the compose file, then record the
    /// services' builds (or, with none to build, the launch).
    pub(crate) async fn start_compose(
        &self,
        job: &JobContext,
        record: &JobRecord,
        build: &ValidBuild,
        spec: &ComposeSpec,
        options: ValidLaunchOptions,
    ) -> Result<Value, JobError> {
        let mut sink = self.resume_sink(job).await?;
        let store = |e| store_error("cannot store the build log", &e);
        let wanted: Vec<String> = match &spec.file {
            Some(f) => vec![f.clone()],
            None => COMPOSE_FILES.iter().map(|f| (*f).to_owned()).collect(),
        };
        let snap = self
            .read_repository(job, build, "compose", None, wanted.clone(), &mut sink)
            .await?;
        let fail = |message: String| JobError::permanent(format!("source compose: {message}"));
        let Some(file) = compose_file(spec, &snap.files) else {
            let why = if snap.too_large.is_empty() {
                format!(
                    "no compose file at the commit (looked for {})",
                    wanted.join(", ")
                )
            } else {
                format!("{} is larger than 256 KiB", snap.too_large.join(", "))
            };
            sink.system(format!("[slipway] source compose: {why}"))
                .await
                .map_err(store)?;
            sink.flush().await.map_err(store)?;
            return Err(fail(why));
        };
        let text = String::from_utf8_lossy(&snap.files[file]).into_owned();
        let planned = compose::parse(&text)
            .map_err(|e| format!("{file}: {e}"))
            .and_then(|app| {
                plan_compose(build, spec, file, &app, &options).map(|plan| (app, plan))
            });
        let (app, (builds, launch)) = match planned {
            Ok(p) => p,
            Err(why) => {
                sink.system(format!("[slipway] source compose: {why}"))
                    .await
                    .map_err(store)?;
                sink.flush().await.map_err(store)?;
                return Err(fail(why));
            }
        };
        let mut said = vec![format!(
            "[slipway] source compose: {file}: {} services; {} at the preview URL on port {}",
            app.services.len(),
            launch.exposed,
            launch.port
        )];
        for s in &app.services {
            let what = match (&s.build, s.image.as_deref()) {
                (Some(b), _) => format!(
                    "built from {}",
                    if b.context.is_empty() {
                        "."
                    } else {
                        b.context.as_str()
                    }
                ),
                (None, Some(i)) => format!("image {i}"),
                (None, None) => String::new(),
            };
            said.push(format!("[slipway]   - {}: {what}", s.name));
        }
        said.extend(
            app.warnings
                .iter()
                .map(|w| format!("[slipway]   note: {w}")),
        );
        for line in said {
            sink.system(line).await.map_err(store)?;
        }
        sink.flush().await.map_err(store)?;
        self.still_ours(job.id, "its services' builds were recorded")
            .await?;
        let preview = preview_of(build, record)?;
        let submitter = Submitter::new(self.store.clone(), self.queue.clone());
        let mut result = json!({
            "compose": {
                "file": file,
                "services": app.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                "exposed": launch.exposed,
                "port": launch.port,
            },
        });
        if builds.is_empty() {
            let valid = compose_launch(preview, options, launch)?;
            let launched = self.submit_launch(record, build, job.id, &valid).await?;
            result["launch"] = json!({"job": launched});
            return Ok(result);
        }
        let built: Vec<String> = builds.iter().map(|(s, _)| s.clone()).collect();
        let mut ids = serde_json::Map::new();
        for (service, child) in builds {
            let mut payload = serde_json::to_value(&child)
                .map_err(|e| JobError::permanent(format!("cannot encode a build: {e}")))?;
            payload["compose_build"] = serde_json::to_value(ServiceBuild {
                pipeline: job.id,
                service: service.clone(),
                built: built.clone(),
                launch: launch.clone(),
                options: options.clone(),
            })
            .map_err(|e| JobError::permanent(format!("cannot encode a build: {e}")))?;
            let mut new = NewJob::new(JobKind::Build, payload);
            new.preview = Some(preview.clone());
            new.commit_sha = Some(build.commit.clone());
            new.max_attempts = record.max_attempts;
            new.idempotency_key = Some(format!("pipeline-compose:{}:{service}", job.id));
            new.trace_context = record.trace_context.clone();
            // Sibling builds run side by side: none supersedes another.
            let child = submitter
                .submit(new, &[])
                .await
                .map_err(|e| store_error("cannot record a service's build", &e))?
                .job;
            sink.system(format!(
                "[slipway] source compose: service {service}: build job {}",
                child.id
            ))
            .await
            .map_err(store)?;
            ids.insert(service, json!(child.id));
        }
        sink.flush().await.map_err(store)?;
        info!(builds = ids.len(), "compose builds enqueued");
        result["builds"] = Value::Object(ids);
        Ok(result)
    }

    /// A compose service's build has pushed its image: join it, and record the launch when it
    /// completes the set.
    pub(crate) async fn join_compose(
        &self,
        job: &JobContext,
        record: &JobRecord,
        build: &ValidBuild,
        part: &ServiceBuild,
        result: &Value,
    ) -> Result<Value, JobError> {
        self.still_ours(job.id, "its image was joined").await?;
        let pull = result["pull"].as_str().unwrap_or_default();
        let images = self
            .store
            .record_pipeline_image(part.pipeline, &part.service, pull, job.id)
            .await
            .map_err(|e| store_error("cannot record the service's image", &e))?;
        let waiting: Vec<&String> = part
            .built
            .iter()
            .filter(|s| !images.contains_key(*s))
            .collect();
        if !waiting.is_empty() {
            info!(?waiting, "compose build joined; others still building");
            return Ok(json!({"waiting_for": waiting}));
        }
        let mut launch = part.launch.clone();
        launch.images.extend(images);
        let valid = compose_launch(preview_of(build, record)?, part.options.clone(), launch)?;
        let launched = self
            .submit_launch(record, build, part.pipeline, &valid)
            .await?;
        Ok(json!({"job": launched}))
    }

    /// A Helm pipeline's build has pushed its image: read the chart and the values files at
    /// the commit and record the launch that renders them.
    pub(crate) async fn launch_helm(
        &self,
        job: &JobContext,
        record: &JobRecord,
        build: &ValidBuild,
        spec: &HelmSpec,
        options: ValidLaunchOptions,
        result: &Value,
    ) -> Result<Value, JobError> {
        let mut sink = self.resume_sink(job).await?;
        let store = |e| store_error("cannot store the build log", &e);
        let chart_dir = if spec.chart == "." {
            String::new()
        } else {
            format!("{}/", spec.chart)
        };
        let mut wanted = vec![if chart_dir.is_empty() {
            "./".to_owned()
        } else {
            chart_dir.clone()
        }];
        wanted.extend(spec.values.iter().cloned());
        let snap = self
            .read_repository(job, build, "helm", None, wanted, &mut sink)
            .await?;
        let checked = helm_files(spec, &chart_dir, &snap.files, &snap.too_large);
        let (files, values) = match checked {
            Ok(x) => x,
            Err(why) => {
                sink.system(format!("[slipway] source helm: {why}"))
                    .await
                    .map_err(store)?;
                sink.flush().await.map_err(store)?;
                return Err(JobError::permanent(format!("source helm: {why}")));
            }
        };
        sink.system(format!(
            "[slipway] source helm: chart {} ({} files), values files: {}",
            spec.chart,
            files.len(),
            if values.is_empty() {
                "none".to_owned()
            } else {
                spec.values.join(", ")
            }
        ))
        .await
        .map_err(store)?;
        sink.flush().await.map_err(store)?;
        self.still_ours(job.id, "its launch was enqueued").await?;
        let pull = result["pull"].as_str().unwrap_or_default();
        let (image, tag) = split_image(pull, &build.tag)?;
        let preview = preview_of(build, record)?;
        let valid = ValidLaunch {
            preview,
            source: ImageSource::Image(pull.parse().map_err(|e| {
                JobError::permanent(format!("the built image {pull:?} is not valid: {e}"))
            })?),
            options,
            compose: None,
            helm: Some(HelmLaunch {
                chart: spec.chart.clone(),
                files,
                values,
                image_repository: spec.image_repository.clone(),
                image_tag: spec.image_tag.clone(),
                image,
                tag,
                service: spec.service.clone(),
                port: spec.port,
            }),
        };
        let launched = self.submit_launch(record, build, job.id, &valid).await?;
        Ok(json!({"job": launched, "image": pull}))
    }
}

type ChartFiles = (BTreeMap<String, String>, Vec<(String, String)>);

/// The chart's files (relative to its directory) and the values files, base64, from what the
/// source Job read; or why they cannot be rendered. Pure.
pub(crate) fn helm_files(
    spec: &HelmSpec,
    chart_dir: &str,
    read: &BTreeMap<String, Vec<u8>>,
    too_large: &[String],
) -> Result<ChartFiles, String> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    if let Some(big) = too_large.first() {
        return Err(format!("{big} is larger than 256 KiB"));
    }
    let mut total = 0usize;
    let mut files = BTreeMap::new();
    for (path, bytes) in read {
        if let Some(rel) = path.strip_prefix(chart_dir) {
            total += bytes.len();
            files.insert(rel.to_owned(), b64(bytes));
        }
    }
    if !files.contains_key("Chart.yaml") {
        return Err(format!(
            "no chart at {}: it has no Chart.yaml at the commit",
            spec.chart
        ));
    }
    let mut values = Vec::new();
    for v in &spec.values {
        let bytes = read
            .get(v)
            .ok_or_else(|| format!("source.values: {v} is not in the repository at the commit"))?;
        total += bytes.len();
        values.push((v.clone(), b64(bytes)));
    }
    if total > MAX_CHART_BYTES {
        return Err(format!(
            "the chart and its values files hold {total} bytes, more than the {MAX_CHART_BYTES} \
             a preview takes"
        ));
    }
    Ok((files, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_core::payload::PipelineRequest;
    use slipway_core::validate::{Limits, Validate};

    fn pipeline(source: Value) -> slipway_core::validate::ValidPipeline {
        let req: PipelineRequest = serde_json::from_value(json!({
            "preview": "org/app#3", "repository": "https://git.example/org/app",
            "commit": "0123456789abcdef0123456789abcdef01234567", "source": source,
        }))
        .unwrap();
        req.validate(&Limits::default()).unwrap()
    }

    const COMPOSE: &str = "services:
  web:
    build:
      context: ./web
      dockerfile: prod.Dockerfile
      target: Runtime
      args: {NODE_ENV: production}
    ports: [\"3000:3000\"]
    depends_on: [db, cache]
  db:
    image: postgres:16-alpine
  cache:
    image: redis:7.4
";

    #[test]
    fn a_compose_file_plans_a_build_per_built_service_and_one_launch() {
        let p = pipeline(json!({"type": "compose", "service": "web", "file": "app/compose.yaml"}));
        let Some(slipway_core::source::Composition::Compose(spec)) = &p.composition else {
            panic!()
        };
        let app = compose::parse(COMPOSE).unwrap();
        let (builds, launch) =
            plan_compose(&p.build, spec, "app/compose.yaml", &app, &p.launch).unwrap();
        assert_eq!(builds.len(), 1);
        let (name, web) = &builds[0];
        assert_eq!(name, "web");
        assert_eq!(web.context.as_deref(), Some("app/web"));
        assert_eq!(web.dockerfile, "prod.Dockerfile");
        assert_eq!(web.target.as_deref(), Some("runtime"));
        assert_eq!(web.build_args["NODE_ENV"], "production");
        assert_eq!(web.image, "org/app/web");
        assert_eq!(web.commit, p.build.commit);
        assert_eq!(launch.exposed, "web");
        assert_eq!(launch.port, 3000, "the exposed service's first port");
        assert_eq!(
            launch.images,
            BTreeMap::from([
                ("cache".to_owned(), "redis:7.4".to_owned()),
                ("db".to_owned(), "postgres:16-alpine".to_owned()),
            ])
        );
        assert_eq!(launch.services.len(), 3);
    }

    #[test]
    fn what_a_compose_file_cannot_give_is_named() {
        let p = pipeline(json!({"type": "compose", "service": "api"}));
        let Some(slipway_core::source::Composition::Compose(spec)) = &p.composition else {
            panic!()
        };
        let app = compose::parse(COMPOSE).unwrap();
        let e = plan_compose(&p.build, spec, "compose.yaml", &app, &p.launch).unwrap_err();
        assert!(
            e.starts_with("source.service:") && e.contains("web, db, cache"),
            "{e}"
        );
        // compose::parse refuses contexts with `..`; a plan refuses what leaves the repository
        // anyway, and remote contexts.
        let spec = ComposeSpec {
            file: None,
            service: "web".into(),
            port: None,
        };
        let mut escaping = compose::parse("services:\n  web:\n    build: .\n").unwrap();
        escaping.services[0].build.as_mut().unwrap().context = "../..".into();
        let e = plan_compose(&p.build, &spec, "compose.yaml", &escaping, &p.launch).unwrap_err();
        assert!(e.contains("services.web.build.context"), "{e}");
        escaping.services[0].build.as_mut().unwrap().context = "https://github.com/o/r.git".into();
        let e = plan_compose(&p.build, &spec, "compose.yaml", &escaping, &p.launch).unwrap_err();
        assert!(e.contains("remote build contexts"), "{e}");
    }

    #[test]
    fn service_contexts_resolve_from_the_compose_files_directory() {
        let f = "services.web.build.context";
        assert_eq!(service_context("compose.yaml", ".", f).unwrap(), None);
        assert_eq!(
            service_context("compose.yaml", "./web/", f)
                .unwrap()
                .as_deref(),
            Some("web")
        );
        assert_eq!(
            service_context("a/b/compose.yaml", "../c", f)
                .unwrap()
                .as_deref(),
            Some("a/c")
        );
        assert_eq!(service_context("a/compose.yaml", "..", f).unwrap(), None);
        assert!(service_context("compose.yaml", "..", f).is_err());
        assert!(service_context("compose.yaml", "/srv", f).is_err());
    }

    #[test]
    fn a_charts_files_are_taken_relative_to_its_directory() {
        let p = pipeline(
            json!({"type": "helm", "chart": "deploy/chart", "service": "web",
            "values": ["deploy/preview.yaml"]}),
        );
        let Some(slipway_core::source::Composition::Helm(spec)) = &p.composition else {
            panic!()
        };
        let read = BTreeMap::from([
            (
                "deploy/chart/Chart.yaml".to_owned(),
                b"name: app\n".to_vec(),
            ),
            (
                "deploy/chart/templates/d.yaml".to_owned(),
                b"kind: Deployment\n".to_vec(),
            ),
            ("deploy/preview.yaml".to_owned(), b"replicas: 1\n".to_vec()),
        ]);
        let (files, values) = helm_files(spec, "deploy/chart/", &read, &[]).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["Chart.yaml", "templates/d.yaml"]
        );
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].0, "deploy/preview.yaml");
        let mut no_chart = read.clone();
        no_chart.remove("deploy/chart/Chart.yaml");
        let e = helm_files(spec, "deploy/chart/", &no_chart, &[]).unwrap_err();
        assert!(e.contains("no Chart.yaml"), "{e}");
        let mut no_values = read.clone();
        no_values.remove("deploy/preview.yaml");
        let e = helm_files(spec, "deploy/chart/", &no_values, &[]).unwrap_err();
        assert!(e.starts_with("source.values: deploy/preview.yaml"), "{e}");
        let mut huge = read;
        huge.insert("deploy/chart/big".into(), vec![b'x'; MAX_CHART_BYTES]);
        assert!(helm_files(spec, "deploy/chart/", &huge, &[]).is_err());
    }

    #[test]
    fn the_values_get_the_pushed_image_by_digest() {
        let (repo, tag) = split_image(
            "registry.local:5000/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "abc",
        )
        .unwrap();
        assert_eq!(repo, "registry.local:5000/org/app");
        assert_eq!(
            tag,
            "abc@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
    }
}
