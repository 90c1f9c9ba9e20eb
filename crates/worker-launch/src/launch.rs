//! The launch job handler: from a validated launch to a ready, recorded preview.
//!
//! Order matters for crash safety: the preview row is written (`deploying`) and the object
//! names recorded on the attempt *before* anything is applied, so the registry always knows of
//! a namespace that may exist; then the objects are applied namespace first; then the rollout
//! is awaited; then the row becomes `ready`. Every step is idempotent, so a retry or the
//! successor of a dead worker runs the same steps again and adopts what is there.
//!
//! A compose preview (`launch.compose`) takes the same steps with a workload and a Service per
//! compose service: the environment, every Service and the Ingress first, then the workloads
//! level by level of `depends_on`, each level awaited (ready) before the next is applied. The
//! exposed service's workload carries the job id the owner check reads.
//!
//! A Helm preview (`launch.helm`) renders, checks and prepares its chart first ([`crate::helm`];
//! a refused chart leaves nothing in the cluster), then applies the environment, the chart's
//! objects in Helm's install order and the Ingress to the chart's Service, and waits for every
//! Deployment and StatefulSet the chart renders; each carries the job id the owner check reads.

use crate::LaunchError;
use crate::config::Settings;
use crate::helm::{self, ChartObject, HelmRunner, Placement, PreparedChart, TargetPort};
use crate::telemetry::{self, Outcome};
use crate::wait::{self, WaitLimits};
use chrono::Utc;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use slipway_core::naming::{label_value, preview_host, preview_namespace};
use slipway_core::quantity::{format_cpu, format_memory};
use slipway_core::source::{ComposeLaunch, HelmLaunch};
use slipway_core::validate::{ImageSource, ValidLaunch};
use slipway_core::{ErrorClass, JobId, JobKind, JobState};
use slipway_k8s::client::{FIELD_MANAGER, K8sError, apply, get_opt, namespaced, wrap};
use slipway_k8s::compose::{
    ComposeObjects, ComposeParams, ServiceParams, WorkloadObject, compose_objects,
    volume_object_name, workload_of,
};
use slipway_k8s::labels::{self, standard_labels};
use slipway_k8s::preview::{
    APP, Backend, CpuMemory, FrameObjects, PreviewObjects, PreviewParams, frame_objects,
    preview_objects, preview_url,
};
use slipway_k8s::rollout::{Workload, WorkloadKind};
use slipway_shared::joblog::JobLog;
use slipway_shared::runtime::{Handler, JobContext, JobError};
use slipway_shared::store::{JobRecord, PreviewUpsert, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Preview row states this worker writes.
pub const STATUS_DEPLOYING: &str = "deploying";
pub const STATUS_READY: &str = "ready";
pub const STATUS_FAILED: &str = "failed";

/// Tries of one Kubernetes request within an attempt before the attempt itself fails (and the
/// runtime retries it with backoff).
const API_TRIES: u32 = 4;

/// The launch worker's [`Handler`].
pub struct Launcher {
    client: kube::Client,
    store: Store,
    settings: Arc<Settings>,
}

/// The image to run and the commit it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub image: String,
    pub commit: Option<String>,
}

impl Launcher {
    pub fn new(client: kube::Client, store: Store, settings: Settings) -> Launcher {
        Launcher {
            client,
            store,
            settings: Arc::new(settings),
        }
    }

    /// Sets the active previews gauge from the registry (best effort).
    pub async fn refresh_active_previews(&self) {
        match self.store.count_active_previews().await {
            Ok(n) => telemetry::active_previews(u64::try_from(n).unwrap_or(0)),
            Err(e) => tracing::debug!(error = %e, "active previews not counted"),
        }
    }

    async fn launch(&self, job: &JobContext, log: &mut JobLog) -> Result<Value, LaunchError> {
        let started = Instant::now();
        let record = job.record.as_ref().ok_or_else(|| {
            LaunchError::Invalid("the job row was not passed to the handler".into())
        })?;
        let launch: ValidLaunch = serde_json::from_value(record.payload.clone()).map_err(|e| {
            LaunchError::Invalid(format!("the job's payload is not a valid launch: {e}"))
        })?;
        let resolved = resolve_image(&self.store, &self.settings, &launch, record).await?;
        let (params, plan) = match (&launch.compose, &launch.helm) {
            (None, None) => {
                let params = preview_params(&self.settings, job.id, &launch, &resolved)?;
                let objects = preview_objects(&params);
                (params, Plan::Single(Box::new(objects)))
            }
            (None, Some(h)) => {
                let params = preview_params(&self.settings, job.id, &launch, &resolved)?;
                log.line(format!(
                    "launching chart {} with {} as preview {:?} in namespace {} (attempt {})",
                    h.chart, resolved.image, launch.preview, params.namespace, job.attempt
                ))
                .await;
                let plan = self.helm_plan(h, &params, log).await?;
                (params, plan)
            }
            (Some(c), _) => {
                let cp = compose_params(&self.settings, job.id, &launch, c, &resolved)?;
                let objects = compose_objects(&cp);
                (cp.preview, Plan::Compose(Box::new(objects)))
            }
        };
        let url = preview_url(&params.host, self.settings.tls.is_some());
        match &plan {
            Plan::Single(_) => {
                log.line(format!(
                    "launching {} as preview {:?} in namespace {} (attempt {})",
                    resolved.image, launch.preview, params.namespace, job.attempt
                ))
                .await;
            }
            Plan::Compose(o) => {
                let names: Vec<&str> = o.workloads.iter().map(|(w, _)| w.name.as_str()).collect();
                log.line(format!(
                    "launching compose services {} as preview {:?} in namespace {} (attempt \
                     {}); {} at the preview URL runs {}",
                    names.join(", "),
                    launch.preview,
                    params.namespace,
                    job.attempt,
                    plan.exposed().name,
                    resolved.image
                ))
                .await;
            }
            Plan::Helm(_) => {}
        }

        // A newer launch of this preview may already have deployed it: never undo that.
        let exposed = plan.exposed();
        for w in plan.owned() {
            self.not_newer(&params.namespace, &w, job.id).await?;
        }

        // The registry first: whatever gets created from here on is known to cleanup.
        let row = |status: &str, pods: Vec<String>| PreviewUpsert {
            key: launch.preview.clone(),
            namespace: params.namespace.clone(),
            url: None,
            image: Some(resolved.image.clone()),
            commit_sha: resolved.commit.clone(),
            status: status.to_owned(),
            pods,
            expires_at: None,
            last_job_id: Some(job.id),
        };
        if self
            .store
            .upsert_preview(&row(STATUS_DEPLOYING, Vec::new()))
            .await?
            .is_none()
        {
            return Err(taken_over(job.id));
        }
        let attempt = i32::try_from(job.attempt).unwrap_or(i32::MAX);
        self.store
            .record_attempt_objects(job.id, attempt, &value_names(&plan.values()))
            .await?;

        let rollout = async {
            let started = tokio::time::Instant::now();
            let ns = params.namespace.as_str();
            let span = tracing::info_span!("apply_preview", k8s.namespace = %ns);
            let pods = match &plan {
                Plan::Single(o) => {
                    self.rollout_single(o, ns, job.id, log)
                        .instrument(span)
                        .await?
                }
                Plan::Helm(h) => {
                    self.rollout_helm(h, ns, job.id, log)
                        .instrument(span)
                        .await?
                }
                Plan::Compose(o) => {
                    self.rollout_compose(o, ns, job.id, log)
                        .instrument(span)
                        .await?
                }
            };
            self.until_certificate(ns, started, log).await?;
            Ok::<_, LaunchError>(pods)
        };
        let pods = match rollout.await {
            Ok(pods) => pods,
            Err(e) => {
                // A preview that will not come up says so in the registry; one that may still
                // come up on a retry stays `deploying`; one a newer launch took over is its.
                let settled = (e.class() == ErrorClass::Permanent || job.is_last_attempt)
                    && !matches!(e, LaunchError::Superseded(_));
                if settled
                    && let Err(se) = self
                        .store
                        .upsert_preview(&row(STATUS_FAILED, Vec::new()))
                        .await
                {
                    tracing::warn!(error = %se, "preview not marked failed");
                }
                return Err(e);
            }
        };
        telemetry::available_after(started.elapsed());
        let ttl = chrono::Duration::hours(i64::from(launch.options.ttl_hours));
        if self
            .store
            .upsert_preview(&PreviewUpsert {
                url: Some(url.clone()),
                expires_at: Some(Utc::now() + ttl),
                ..row(STATUS_READY, pods.clone())
            })
            .await?
            .is_none()
        {
            return Err(taken_over(job.id));
        }
        log.line(format!(
            "available: {}; preview ready at {url}",
            pods.join(", ")
        ))
        .await;
        let mut result = json!({
            "url": url,
            "namespace": params.namespace,
            "pods": pods,
            "image": resolved.image,
        });
        if let Plan::Compose(o) = &plan {
            let services: Vec<Value> = o
                .workloads
                .iter()
                .map(|(w, _)| json!({"name": w.name, "kind": w.kind.to_string()}))
                .collect();
            result["services"] = json!(services);
            result["exposed"] = json!(exposed.name);
        }
        if let Plan::Helm(h) = &plan {
            let workloads: Vec<Value> = h
                .workloads()
                .iter()
                .map(|w| json!({"name": w.name, "kind": w.kind.to_string()}))
                .collect();
            result["workloads"] = json!(workloads);
            result["service"] = json!(h.chart.route.service);
        }
        Ok(result)
    }

    /// With cert-manager, the URL is https only once its certificate is issued; the launch
    /// deadline (from `started`) bounds both waits.
    async fn until_certificate(
        &self,
        ns: &str,
        started: tokio::time::Instant,
        log: &mut JobLog,
    ) -> Result<(), LaunchError> {
        if let Some(tls) = self
            .settings
            .tls
            .as_ref()
            .filter(|t| t.cluster_issuer.is_some())
        {
            wait::until_certificate_ready(
                &self.client,
                ns,
                &tls.secret_name,
                started + self.settings.deadline,
                self.settings.poll,
                log,
            )
            .await?;
        }
        Ok(())
    }

    /// A single-container preview's rollout: every object applied, then its Deployment
    /// awaited. Returns the ready pods.
    async fn rollout_single(
        &self,
        o: &PreviewObjects,
        ns: &str,
        job: JobId,
        log: &mut JobLog,
    ) -> Result<Vec<String>, LaunchError> {
        self.apply_all(o).await?;
        log.line(format!(
            "applied {} objects; waiting up to {} s for Deployment {} to become available",
            o.to_values().len(),
            self.settings.deadline.as_secs(),
            APP
        ))
        .await;
        let limits = self.wait_limits(self.settings.deadline);
        wait::until_available(&self.client, ns, job, limits, log)
            .instrument(tracing::info_span!("wait_rollout", k8s.namespace = %ns))
            .await
    }

    /// How long and how often a rollout is awaited, within `deadline`.
    fn wait_limits(&self, deadline: Duration) -> WaitLimits {
        WaitLimits {
            deadline,
            trouble_grace: self.settings.trouble_grace,
            poll: self.settings.poll,
        }
    }

    /// Fails when workload `w` in `ns` was applied by a newer launch than `job` (a launch never
    /// undoes a newer one); an older launch's objects are simply replaced.
    async fn not_newer(&self, ns: &str, w: &Workload, job: JobId) -> Result<(), LaunchError> {
        let current = retrying(|| applied_by(&self.client, ns, w)).await?;
        wait::check_owner(current.as_deref(), job).or_else(|e| match e {
            LaunchError::NotYet(_) => Ok(()),
            other => Err(other),
        })
    }

    /// A compose preview's rollout: the environment, the Services and the Ingress, then the
    /// workloads level by level of `depends_on`, each level ready before the next is applied
    /// (compose's `service_started` and `service_healthy` both mean ready here). One deadline
    /// bounds all levels. Returns the ready pods of every service.
    async fn rollout_compose(
        &self,
        o: &ComposeObjects,
        ns: &str,
        job: JobId,
        log: &mut JobLog,
    ) -> Result<Vec<String>, LaunchError> {
        let started = tokio::time::Instant::now();
        let name = self
            .apply_environment(&o.namespace, &o.quota, &o.limits, &o.network_policies)
            .await?;
        for s in &o.services {
            self.apply_in(&name, s).await?;
        }
        self.apply_in(&name, &o.ingress).await?;
        let mut pods = Vec::new();
        for (i, level) in o.levels.iter().enumerate() {
            let mut workloads = Vec::new();
            for service in level {
                let Some((w, obj)) = o.workload(service) else {
                    continue;
                };
                // A newer launch may have taken over while the last level was awaited.
                self.not_newer(&name, w, job).await?;
                match obj {
                    WorkloadObject::Deployment(d) => self.apply_in(&name, d.as_ref()).await?,
                    WorkloadObject::StatefulSet(s) => self.apply_in(&name, s.as_ref()).await?,
                }
                workloads.push(w.clone());
            }
            let remaining = self.settings.deadline.saturating_sub(started.elapsed());
            log.line(format!(
                "started {} (level {} of {}); waiting up to {} s for {} to be ready",
                level.join(", "),
                i + 1,
                o.levels.len(),
                remaining.as_secs(),
                if level.len() == 1 { "it" } else { "them" }
            ))
            .await;
            let limits = self.wait_limits(remaining);
            let ready =
                wait::until_workloads_available(&self.client, ns, job, &workloads, limits, log)
                    .instrument(tracing::info_span!("wait_rollout", k8s.namespace = %ns))
                    .await?;
            log.line(format!("ready: {}", ready.join(", "))).await;
            pods.extend(ready);
        }
        Ok(pods)
    }

    /// Renders, checks and prepares a Helm preview's chart (nothing is applied yet, so a chart
    /// that is refused leaves no trace in the cluster).
    async fn helm_plan(
        &self,
        h: &HelmLaunch,
        params: &PreviewParams,
        log: &mut JobLog,
    ) -> Result<Plan, LaunchError> {
        // `.Capabilities.KubeVersion` of the cluster the preview runs on; without it Helm
        // assumes the version it was built against.
        let kube_version = match self.client.apiserver_version().await {
            Ok(v) => Some(v.git_version),
            Err(e) => {
                tracing::debug!(error = %e, "no cluster version for Helm; using its default");
                None
            }
        };
        let runner = HelmRunner::new(&self.settings.helm_binary);
        let text = helm::render(&runner, h, &params.namespace, kube_version.as_deref())
            .instrument(tracing::info_span!("helm_template", chart = %h.chart))
            .await?;
        let pod_labels: BTreeMap<String, String> = params
            .labels
            .iter()
            .filter(|(k, _)| [labels::MANAGED_BY, labels::PREVIEW].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let chart = helm::prepare(
            helm::parse(&text)?,
            &Placement {
                namespace: &params.namespace,
                labels: &params.labels,
                pod_labels: &pod_labels,
                image_pull_secret: params.image_pull_secret.as_deref(),
            },
            &h.service,
            h.port,
        )?;
        if chart.workloads.is_empty() {
            return Err(LaunchError::Invalid(format!(
                "the chart {} renders no Deployment or StatefulSet",
                h.chart
            )));
        }
        let (claims, bytes) = helm::claimed_storage(&chart.objects)?;
        check_storage(&self.settings, claims, bytes, || {
            format!("the chart {}'s volume claims", h.chart)
        })?;
        let summary: Vec<String> = chart
            .objects
            .iter()
            .map(|o| format!("{} {}", o.kind.kind, o.name))
            .collect();
        log.line(format!(
            "rendered chart {} with Helm ({} values file(s), {}={}, {}={}): {}",
            h.chart,
            h.values.len(),
            h.image_repository,
            h.image,
            h.image_tag,
            h.tag,
            summary.join(", ")
        ))
        .await;
        let r = &chart.route;
        let backend = Backend {
            service: r.service.clone(),
            port: r.port,
            pods: r.pod_selector.clone(),
            target_port: match &r.target_port {
                TargetPort::Number(n) => IntOrString::Int(*n),
                TargetPort::Name(n) => IntOrString::String(n.clone()),
            },
        };
        Ok(Plan::Helm(Box::new(HelmPlan {
            frame: frame_objects(params, &backend),
            chart,
        })))
    }

    /// A Helm preview's rollout: the environment, the chart's objects in Helm's install order,
    /// the Ingress to the chart's Service, then every Deployment and StatefulSet awaited
    /// together. Returns their ready pods.
    async fn rollout_helm(
        &self,
        h: &HelmPlan,
        ns: &str,
        job: JobId,
        log: &mut JobLog,
    ) -> Result<Vec<String>, LaunchError> {
        let f = &h.frame;
        let name = self
            .apply_environment(&f.namespace, &f.quota, &f.limits, &f.network_policies)
            .await?;
        for o in &h.chart.objects {
            self.apply_chart_object(&name, o).await?;
        }
        self.apply_in(&name, &h.frame.ingress).await?;
        let workloads = h.workloads();
        let names: Vec<String> = workloads.iter().map(ToString::to_string).collect();
        log.line(format!(
            "applied {} objects; waiting up to {} s for {} to become available",
            value_names(&Plan::helm_values(h)).len(),
            self.settings.deadline.as_secs(),
            names.join(", ")
        ))
        .await;
        let limits = self.wait_limits(self.settings.deadline);
        wait::until_workloads_available(&self.client, ns, job, &workloads, limits, log)
            .instrument(tracing::info_span!("wait_rollout", k8s.namespace = %ns))
            .await
    }

    /// Server-side apply of one chart object; a refusal names the template it came from.
    async fn apply_chart_object(&self, ns: &str, o: &ChartObject) -> Result<(), LaunchError> {
        let gvk = GroupVersionKind::gvk(o.kind.group, o.kind.version, o.kind.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, o.kind.plural);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let what = format!("{} {ns}/{}", o.kind.kind, o.name);
        let applied = retrying(|| async {
            api.patch(&o.name, &params, &Patch::Apply(&o.object))
                .await
                .map_err(|e| wrap("apply", what.clone(), e))
        })
        .await;
        match applied {
            Ok(_) => Ok(()),
            Err(e) if e.class() == ErrorClass::Permanent => {
                Err(LaunchError::Invalid(match &o.source {
                    Some(src) => format!("{e} (rendered from {src})"),
                    None => e.to_string(),
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies every object, namespace first. A namespace still terminating from an earlier
    /// teardown cannot take new objects yet: transient.
    async fn apply_all(&self, o: &PreviewObjects) -> Result<(), LaunchError> {
        let name = self
            .apply_environment(&o.namespace, &o.quota, &o.limits, &o.network_policies)
            .await?;
        self.apply_in(&name, &o.deployment).await?;
        self.apply_in(&name, &o.service).await?;
        self.apply_in(&name, &o.ingress).await?;
        Ok(())
    }

    /// Applies a preview's environment (namespace first, then its quota, limit range and
    /// network policies); returns the namespace's name.
    async fn apply_environment(
        &self,
        namespace: &Namespace,
        quota: &ResourceQuota,
        limits: &LimitRange,
        policies: &[NetworkPolicy],
    ) -> Result<String, LaunchError> {
        let name = self.apply_namespace(namespace).await?;
        self.apply_in(&name, quota).await?;
        self.apply_in(&name, limits).await?;
        for p in policies {
            self.apply_in(&name, p).await?;
        }
        Ok(name)
    }

    /// Applies the namespace; returns its name.
    async fn apply_namespace(&self, namespace: &Namespace) -> Result<String, LaunchError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = retrying(|| apply(&namespaces, namespace)).await?;
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            return Err(LaunchError::NotYet(format!(
                "namespace {} is still terminating from an earlier teardown",
                ns.name_any()
            )));
        }
        Ok(ns.name_any())
    }

    async fn apply_in<K>(&self, ns: &str, obj: &K) -> Result<(), LaunchError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let api: Api<K> = namespaced(&self.client, ns);
        retrying(|| apply(&api, obj)).await?;
        Ok(())
    }
}

/// Runs a Kubernetes request, again after a short pause when it fails transiently, so an API
/// blip does not cost a whole attempt.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, K8sError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, K8sError>>,
{
    let mut pause = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        match op().await {
            Err(e) if e.class() == ErrorClass::Transient && tries < API_TRIES => {
                tracing::debug!(error = %e, ?pause, "Kubernetes request failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 4;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// What a launch applies: one container, a compose app, or a Helm chart.
enum Plan {
    Single(Box<PreviewObjects>),
    Compose(Box<ComposeObjects>),
    Helm(Box<HelmPlan>),
}

/// A Helm preview: the objects every preview has around the chart's prepared objects.
struct HelmPlan {
    frame: FrameObjects,
    chart: PreparedChart,
}

impl HelmPlan {
    /// Every Deployment and StatefulSet of the chart.
    fn workloads(&self) -> Vec<Workload> {
        self.chart
            .workloads
            .iter()
            .map(|(kind, name)| match *kind {
                "StatefulSet" => Workload::stateful_set(name.clone()),
                _ => Workload::deployment(name.clone()),
            })
            .collect()
    }
}

impl Plan {
    fn values(&self) -> Vec<Value> {
        match self {
            Plan::Single(o) => o.to_values(),
            Plan::Compose(o) => o.to_values(),
            Plan::Helm(h) => Plan::helm_values(h),
        }
    }

    /// In apply order: the frame, the chart's objects, the Ingress last.
    fn helm_values(h: &HelmPlan) -> Vec<Value> {
        let mut values = h.frame.to_values();
        let ingress = values.pop();
        values.extend(h.chart.objects.iter().map(|o| o.object.clone()));
        values.extend(ingress);
        values
    }

    /// The workloads whose job-id label says which launch deployed the preview: the one at
    /// the preview URL, or every one of a chart (whose Service may front any of them).
    fn owned(&self) -> Vec<Workload> {
        match self {
            Plan::Helm(h) => h.workloads(),
            _ => vec![self.exposed()],
        }
    }

    /// The workload at the preview URL, whose job-id label tells who deployed the preview.
    fn exposed(&self) -> Workload {
        match self {
            Plan::Single(_) => Workload::deployment(APP),
            Plan::Helm(h) => h
                .workloads()
                .into_iter()
                .next()
                .unwrap_or_else(|| Workload::deployment(APP)),
            Plan::Compose(o) => o
                .workloads
                .iter()
                .find(|(w, _)| o.ingress.metadata.name.as_deref() == Some(w.name.as_str()))
                .map(|(w, _)| w.clone())
                .unwrap_or_else(|| Workload::deployment(APP)),
        }
    }
}

/// The job id on workload `w` (`None` when it does not exist or carries none).
async fn applied_by(
    client: &kube::Client,
    ns: &str,
    w: &Workload,
) -> Result<Option<String>, K8sError> {
    let label = |l: &BTreeMap<String, String>| l.get(labels::JOB_ID).cloned();
    Ok(match w.kind {
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = namespaced(client, ns);
            get_opt(&api, &w.name)
                .await?
                .and_then(|d| label(d.labels()))
        }
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = namespaced(client, ns);
            get_opt(&api, &w.name)
                .await?
                .and_then(|s| label(s.labels()))
        }
    })
}

/// `Kind/namespace/name` of every object, as recorded on the attempt.
pub fn object_names(o: &PreviewObjects) -> Vec<String> {
    value_names(&o.to_values())
}

/// `Kind/namespace/name` of every object given as JSON.
pub fn value_names(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            let kind = v["kind"].as_str().unwrap_or("Object");
            let name = v["metadata"]["name"].as_str().unwrap_or("");
            match v["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{kind}/{ns}/{name}"),
                None => format!("{kind}/{name}"),
            }
        })
        .collect()
}

/// The image of a launch: given, or what a build job pushed. A build that has not finished
/// yet makes the launch wait (transient); one that ended without an image fails it.
pub async fn resolve_image(
    store: &Store,
    settings: &Settings,
    launch: &ValidLaunch,
    record: &JobRecord,
) -> Result<ResolvedImage, LaunchError> {
    match &launch.source {
        ImageSource::Image(image) => Ok(ResolvedImage {
            image: image.to_string(),
            commit: record.commit_sha.clone(),
        }),
        ImageSource::FromBuild(id) => {
            let build = store
                .get_job(*id)
                .await?
                .ok_or_else(|| LaunchError::Invalid(format!("build job {id} does not exist")))?;
            let image = built_image(&build, settings)?;
            Ok(ResolvedImage {
                image,
                commit: record.commit_sha.clone().or(build.commit_sha.clone()),
            })
        }
    }
}

/// The pull reference of a build job's result: `pull` when the build worker gave one, else
/// `image@digest` with the push registry prefix swapped for the pull prefix.
pub fn built_image(build: &JobRecord, settings: &Settings) -> Result<String, LaunchError> {
    let id: JobId = build.id;
    if build.kind != JobKind::Build {
        return Err(LaunchError::Invalid(format!(
            "job {id} is a {} job, not a build",
            build.kind
        )));
    }
    match build.state {
        JobState::Succeeded => {}
        JobState::Failed | JobState::Cancelled | JobState::Superseded => {
            let why = build.error.as_deref().unwrap_or("no image");
            return Err(LaunchError::Invalid(format!(
                "build job {id} ended {} and produced no image: {why}",
                build.state
            )));
        }
        other => {
            return Err(LaunchError::NotYet(format!(
                "build job {id} has not finished yet ({other})"
            )));
        }
    }
    let result = build.result.as_ref().unwrap_or(&Value::Null);
    let text = |k: &str| {
        result
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let reference = match (text("pull"), text("image"), text("digest")) {
        (Some(pull), _, _) => pull.to_owned(),
        (None, Some(image), digest) => {
            let image = match (&settings.registry_push, &settings.registry_pull) {
                (Some(push), Some(pull)) => match image.strip_prefix(push.trim_end_matches('/')) {
                    Some(rest) if rest.starts_with('/') => {
                        format!("{}{rest}", pull.trim_end_matches('/'))
                    }
                    _ => image.to_owned(),
                },
                _ => image.to_owned(),
            };
            match digest {
                Some(d) => format!("{image}@{d}"),
                None => image,
            }
        }
        (None, None, _) => {
            return Err(LaunchError::Invalid(format!(
                "build job {id} succeeded but its result names no image"
            )));
        }
    };
    slipway_core::image::parse(&reference)
        .map(|r| r.to_string())
        .map_err(|e| {
            LaunchError::Invalid(format!(
                "build job {id} produced an unusable image reference: {e}"
            ))
        })
}

/// CPU and memory limits of cert-manager's ACME HTTP-01 solver pod (cert-manager
/// `internal/apis/config/controller/v1alpha1/defaults.go`).
const SOLVER_CPU_MILLIS: u64 = 100;
const SOLVER_MEMORY_BYTES: u64 = 64 << 20;

/// The rolling update's extra pods: maxSurge 25 %, rounded up.
fn surge(replicas: u64) -> u64 {
    replicas.div_ceil(4)
}

/// Everything that decides the preview's objects, with the operator's defaults and ceilings
/// applied: a launch may ask for less than the maximum, never more.
pub fn preview_params(
    s: &Settings,
    job: JobId,
    launch: &ValidLaunch,
    image: &ResolvedImage,
) -> Result<PreviewParams, LaunchError> {
    let o = &launch.options;
    let cpu = o.resources.cpu_millis.unwrap_or(s.default_cpu_millis);
    let memory = o.resources.memory_bytes.unwrap_or(s.default_memory_bytes);
    if cpu > s.max_cpu_millis {
        return Err(LaunchError::Invalid(format!(
            "resources.cpu {} is above this cluster's limit of {} per container",
            format_cpu(cpu),
            format_cpu(s.max_cpu_millis)
        )));
    }
    if memory > s.max_memory_bytes {
        return Err(LaunchError::Invalid(format!(
            "resources.memory {} is above this cluster's limit of {} per container",
            format_memory(memory),
            format_memory(s.max_memory_bytes)
        )));
    }
    let replicas = u64::from(o.replicas);
    let pods = replicas + surge(replicas);
    // cert-manager's HTTP-01 solver pod runs in the preview namespace while a certificate is
    // issued, with its own limits (cert-manager's defaults: 100m CPU, 64Mi memory).
    let solver = u64::from(s.tls.as_ref().is_some_and(|t| t.cluster_issuer.is_some()));
    // Containers get the LimitRange's default CPU limit (the per-container maximum), which
    // the quota counts too.
    let fits = pods + solver <= u64::from(s.quota.max_pods)
        && pods * cpu.max(s.max_cpu_millis) + solver * SOLVER_CPU_MILLIS <= s.quota_cpu_millis
        && pods * memory + solver * SOLVER_MEMORY_BYTES <= s.quota_memory_bytes;
    if !fits {
        return Err(LaunchError::Invalid(format!(
            "{replicas} replicas (with {} more during a rollout) of {} CPU and {} memory do \
             not fit the preview quota of {} pods, {} CPU and {} memory",
            surge(replicas),
            format_cpu(cpu),
            format_memory(memory),
            s.quota.max_pods,
            s.quota.total.cpu,
            s.quota.total.memory
        )));
    }
    Ok(environment(s, job, launch, image, cpu, memory))
}

/// The preview's parameters once its resources are checked.
fn environment(
    s: &Settings,
    job: JobId,
    launch: &ValidLaunch,
    image: &ResolvedImage,
    cpu: u64,
    memory: u64,
) -> PreviewParams {
    let o = &launch.options;
    let key = &launch.preview;
    PreviewParams {
        key: key.clone(),
        namespace: preview_namespace(key),
        host: preview_host(key, &s.domain),
        labels: standard_labels(Some(job), Some(JobKind::Launch), Some(key)),
        preview_label: label_value(key),
        image: image.image.clone(),
        commit: image.commit.clone(),
        // A Helm preview's URL leads to the chart's Service port.
        port: launch.helm.as_ref().map_or(o.port, |h| h.port),
        env: o.env.clone(),
        secret_env: o
            .secret_env
            .iter()
            .map(|(k, r)| (k.clone(), (r.secret.clone(), r.key.clone())))
            .collect(),
        replicas: i32::try_from(o.replicas).unwrap_or(i32::MAX),
        resources: CpuMemory {
            cpu: format_cpu(cpu),
            memory: format_memory(memory),
        },
        health_path: o.health_path.clone(),
        run_as_non_root: s.run_as_non_root,
        read_only_root_filesystem: o.read_only_root_filesystem,
        tmp_size_limit: s.tmp_size_limit.clone(),
        progress_deadline_seconds: i32::try_from(s.deadline.as_secs()).unwrap_or(i32::MAX),
        ingress_class: s.ingress_class.clone(),
        tls: s.tls.clone(),
        image_pull_secret: s.image_pull_secret.clone(),
        ingress_controller_namespace: s.ingress_namespace.clone(),
        allowed_egress_cidrs: s.egress_cidrs.clone(),
        dns_egress_cidrs: s.dns_egress_cidrs.clone(),
        ingress_cidrs: s.ingress_cidrs.clone(),
        pod_security_level: s.pod_security_level.clone(),
        quota: s.quota.clone(),
    }
}

/// A compose `user`: `uid` or `uid:gid`, numeric. Kubernetes runs containers by number
/// (`runAsUser`, `runAsGroup`); a name would need the image's `/etc/passwd`, which only the
/// runtime reads, and the kubelet cannot then verify `runAsNonRoot` either.
fn numeric_user(service: &str, user: &str) -> Result<(i64, Option<i64>), LaunchError> {
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let num = |v: &str| v.parse::<i64>().ok().filter(|n| *n >= 0);
    match (num(uid), gid.map(num)) {
        (Some(u), None) => Ok((u, None)),
        (Some(u), Some(Some(g))) => Ok((u, Some(g))),
        _ => Err(LaunchError::Invalid(format!(
            "service {service}: user {user:?} is not numeric; a preview runs containers by user \
             id (Kubernetes' runAsUser), so give the id the image's user has, e.g. \
             `user: \"999\"` or `user: \"999:999\"`"
        ))),
    }
}

/// Everything that decides a compose preview's objects, with the operator's defaults and
/// ceilings: a service's CPU and memory limits are clamped as a launch's resources are (above
/// the per-container maximum is refused), and all services must fit the preview quota with a
/// Deployment's rollout surge before anything is applied.
pub fn compose_params(
    s: &Settings,
    job: JobId,
    launch: &ValidLaunch,
    c: &ComposeLaunch,
    image: &ResolvedImage,
) -> Result<ComposeParams, LaunchError> {
    let o = &launch.options;
    let default_cpu = o.resources.cpu_millis.unwrap_or(s.default_cpu_millis);
    let default_memory = o.resources.memory_bytes.unwrap_or(s.default_memory_bytes);
    let invalid = |m: String| Err(LaunchError::Invalid(m));
    if default_cpu > s.max_cpu_millis || default_memory > s.max_memory_bytes {
        return invalid(format!(
            "resources {} CPU and {} memory are above this cluster's limit of {} CPU and {} \
             memory per container",
            format_cpu(default_cpu),
            format_memory(default_memory),
            format_cpu(s.max_cpu_millis),
            format_memory(s.max_memory_bytes)
        ));
    }
    if !c.services.iter().any(|svc| svc.name == c.exposed) {
        return invalid(format!(
            "the exposed service {:?} is not a service of the compose file",
            c.exposed
        ));
    }
    // Which service mounts each volume, and the Kubernetes name each volume gets.
    let mut mounted_by: BTreeMap<&str, &str> = BTreeMap::new();
    let mut k8s_names: BTreeMap<String, &str> = BTreeMap::new();
    let mut services = Vec::new();
    let mut used = (0u64, 0u64, 0u64);
    let solver = u64::from(s.tls.as_ref().is_some_and(|t| t.cluster_issuer.is_some()));
    for svc in &c.services {
        let name = &svc.name;
        // A Service name is a DNS-1035 label: a letter first.
        if !(slipway_core::naming::is_dns1123_label(name)
            && name.starts_with(|ch: char| ch.is_ascii_lowercase()))
        {
            return invalid(format!(
                "service {name}: a compose service becomes a Kubernetes Service of its name, \
                 which must start with a letter"
            ));
        }
        // A one-shot service (migrations) would exit and be restarted as a crash loop.
        if let Some(d) = svc
            .depends_on
            .iter()
            .find(|d| d.condition == slipway_core::compose::Condition::CompletedSuccessfully)
        {
            return invalid(format!(
                "service {name} waits for {} to complete successfully: a preview runs every \
                 service as a long-running workload, so one-shot services are not supported \
                 yet; run that step in the service's own start command",
                d.service
            ));
        }
        let Some(img) = c.images.get(name) else {
            return invalid(format!("service {name}: the launch names no image for it"));
        };
        for v in &svc.volumes {
            if let Some(other) = mounted_by.insert(&v.volume, name)
                && other != name
            {
                return invalid(format!(
                    "volume {} is mounted by services {other} and {name}: in a preview each \
                     named volume is one service's own claim (ReadWriteOnce), so services \
                     cannot share it",
                    v.volume
                ));
            }
            let Some(k) = volume_object_name(&v.volume).filter(|k| !k.starts_with("tmpfs-")) else {
                return invalid(format!(
                    "service {name}: volume {:?} has no usable Kubernetes name",
                    v.volume
                ));
            };
            if let Some(other) = k8s_names.insert(k.clone(), &v.volume)
                && other != v.volume
            {
                return invalid(format!(
                    "volumes {other:?} and {:?} both become {k:?} in Kubernetes; rename one",
                    v.volume
                ));
            }
        }
        let cpu = svc.cpu_millis.unwrap_or(default_cpu);
        let memory = svc.memory_bytes.unwrap_or(default_memory);
        if cpu > s.max_cpu_millis {
            return invalid(format!(
                "service {name}: a CPU limit of {} is above this cluster's limit of {} per \
                 container",
                format_cpu(cpu),
                format_cpu(s.max_cpu_millis)
            ));
        }
        if memory > s.max_memory_bytes {
            return invalid(format!(
                "service {name}: a memory limit of {} is above this cluster's limit of {} per \
                 container",
                format_memory(memory),
                format_memory(s.max_memory_bytes)
            ));
        }
        let (run_as_user, run_as_group) = match svc.user.as_deref() {
            Some(u) => {
                let (uid, gid) = numeric_user(name, u)?;
                if uid == 0 && s.run_as_non_root {
                    return invalid(format!(
                        "service {name}: user 0 is root, and preview pods must run as non-root \
                         (SLIPWAY_RUN_AS_NON_ROOT)"
                    ));
                }
                (Some(uid), gid)
            }
            None => (None, None),
        };
        // A Deployment has one more pod during a rollout (maxSurge 25 % of 1, rounded up); a
        // StatefulSet replaces its pod in place. A container without a CPU limit gets the
        // LimitRange's default, the per-container maximum, which the quota counts.
        let pods = match workload_of(svc).kind {
            WorkloadKind::Deployment => 1 + surge(1),
            WorkloadKind::StatefulSet => 1,
        };
        let cpu_limit = svc.cpu_millis.unwrap_or(s.max_cpu_millis);
        used = (
            used.0 + pods,
            used.1 + pods * cpu_limit,
            used.2 + pods * memory,
        );
        let fits = used.0 + solver <= u64::from(s.quota.max_pods)
            && used.1 + solver * SOLVER_CPU_MILLIS <= s.quota_cpu_millis
            && used.2 + solver * SOLVER_MEMORY_BYTES <= s.quota_memory_bytes;
        if !fits {
            return invalid(format!(
                "the compose services do not fit the preview quota of {} pods, {} CPU and {} \
                 memory: with service {name} they need {} pods, {} CPU and {} memory (a \
                 Deployment counts one more pod during a rollout; a container without a CPU \
                 limit counts the per-container maximum of {})",
                s.quota.max_pods,
                s.quota.total.cpu,
                s.quota.total.memory,
                used.0 + solver,
                format_cpu(used.1 + solver * SOLVER_CPU_MILLIS),
                format_memory(used.2 + solver * SOLVER_MEMORY_BYTES),
                format_cpu(s.max_cpu_millis)
            ));
        }
        services.push(ServiceParams {
            service: svc.clone(),
            image: img.clone(),
            resources: CpuMemory {
                cpu: format_cpu(cpu),
                memory: format_memory(memory),
            },
            cpu_limit: svc.cpu_millis.map(format_cpu),
            run_as_user,
            run_as_group,
        });
    }
    // Each named volume is one claim of the configured size; they must fit the storage quota.
    let claims: BTreeSet<&str> = c
        .services
        .iter()
        .flat_map(|svc| svc.volumes.iter().map(|v| v.volume.as_str()))
        .collect();
    check_storage(
        s,
        claims.len(),
        claims.len() as u64 * s.volume_bytes,
        || {
            format!(
                "the compose file's {} named volumes of {} each",
                claims.len(),
                s.volume_size
            )
        },
    )?;
    let mut preview = environment(s, job, launch, image, default_cpu, default_memory);
    preview.port = c.port;
    preview.replicas = 1;
    Ok(ComposeParams {
        preview,
        services,
        exposed: c.exposed.clone(),
        volume_size: s.volume_size.clone(),
    })
}

/// Refuses volume claims beyond the preview quota's (`SLIPWAY_PREVIEW_QUOTA_CLAIMS`,
/// `SLIPWAY_PREVIEW_QUOTA_STORAGE`): `claims` claims requesting `bytes` together, described by
/// `what`. Checked before anything is applied; the ResourceQuota enforces the same.
pub fn check_storage(
    s: &Settings,
    claims: usize,
    bytes: u64,
    what: impl FnOnce() -> String,
) -> Result<(), LaunchError> {
    if claims > s.quota.max_claims as usize || bytes > s.quota_storage_bytes {
        return Err(LaunchError::Invalid(format!(
            "{} ({claims} volume claims, {} of storage) do not fit the preview quota of {} \
             claims and {} of storage",
            what(),
            format_memory(bytes),
            s.quota.max_claims,
            s.quota.storage
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Handler for Launcher {
    async fn handle(&self, job: JobContext) -> Result<Value, JobError> {
        let mut log = JobLog::new(self.store.clone(), job.id, job.attempt);
        let cancel = job.cancel.clone();
        let result = tokio::select! {
            r = self.launch(&job, &mut log) => r,
            () = cancel.cancelled() => Err(LaunchError::Cancelled),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Succeeded,
            Err(LaunchError::Cancelled) => Outcome::Cancelled,
            Err(e) if e.class() == ErrorClass::Permanent => Outcome::Failed,
            Err(_) => Outcome::Transient,
        };
        telemetry::launch_finished(outcome);
        match result {
            Ok(v) => {
                self.refresh_active_previews().await;
                Ok(v)
            }
            Err(e) => {
                let retry = if e.class() == ErrorClass::Transient && !job.is_last_attempt {
                    " (will retry)"
                } else {
                    ""
                };
                log.line(format!("launch failed{retry}: {e}")).await;
                Err(e.into())
            }
        }
    }
}

/// The preview row refused this launch's write: the job was superseded (by a newer launch or
/// a teardown) or cancelled while it ran.
fn taken_over(id: slipway_core::JobId) -> LaunchError {
    LaunchError::Superseded(format!(
        "launch {id} was superseded or cancelled; the preview is no longer its to write"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;
    use slipway_core::LaunchRequest;
    use slipway_core::validate::{Limits, Validate};

    fn settings(extra: &[&str]) -> Settings {
        let mut args = vec!["w", "--database-url", "postgres://h/d"];
        args.extend_from_slice(extra);
        Config::try_parse_from(args)
            .unwrap()
            .launch
            .settings()
            .unwrap()
    }

    fn launch(body: Value) -> ValidLaunch {
        let req: LaunchRequest = serde_json::from_value(body).unwrap();
        req.validate(&Limits::default()).unwrap()
    }

    fn build(state: JobState, result: Option<Value>) -> JobRecord {
        let now = Utc::now();
        JobRecord {
            id: uuid::Uuid::now_v7(),
            kind: JobKind::Build,
            state,
            preview: None,
            commit_sha: Some("a".repeat(40)),
            payload: json!({}),
            result,
            error: Some("Dockerfile: no such file".into()),
            error_class: None,
            attempts: 1,
            max_attempts: 3,
            attempt_base: 0,
            idempotency_key: None,
            trace_context: None,
            retry_at: None,
            created_at: now,
            enqueued_at: None,
            started_at: None,
            finished_at: None,
            updated_at: now,
            progress: None,
        }
    }

    #[test]
    fn built_images_come_from_the_build_result() {
        let s = settings(&[]);
        let digest = format!("sha256:{}", "b".repeat(64));
        let pull = build(
            JobState::Succeeded,
            Some(
                json!({"image": "registry:5000/org/app:abc", "digest": digest,
                "pull": "localhost:5000/org/app@".to_owned() + &digest}),
            ),
        );
        assert_eq!(
            built_image(&pull, &s).unwrap(),
            format!("localhost:5000/org/app@{digest}")
        );
        let no_pull = build(
            JobState::Succeeded,
            Some(json!({"image": "registry:5000/org/app:abc", "digest": digest})),
        );
        assert_eq!(
            built_image(&no_pull, &s).unwrap(),
            format!("registry:5000/org/app:abc@{digest}")
        );
        let mapped = settings(&[
            "--registry-push",
            "registry:5000",
            "--registry-pull",
            "localhost:5000/",
        ]);
        assert_eq!(
            built_image(&no_pull, &mapped).unwrap(),
            format!("localhost:5000/org/app:abc@{digest}")
        );
        let running = build(JobState::Running, None);
        assert_eq!(
            built_image(&running, &s).unwrap_err().class(),
            ErrorClass::Transient
        );
        let failed = build(JobState::Failed, None);
        let e = built_image(&failed, &s).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("no such file"), "{e}");
        let empty = build(JobState::Succeeded, Some(json!({})));
        assert_eq!(
            built_image(&empty, &s).unwrap_err().class(),
            ErrorClass::Permanent
        );
        let bad = build(JobState::Succeeded, Some(json!({"pull": "Not An Image"})));
        assert_eq!(
            built_image(&bad, &s).unwrap_err().class(),
            ErrorClass::Permanent
        );
        let mut launch_job = build(JobState::Succeeded, Some(json!({"pull": "x/y:1"})));
        launch_job.kind = JobKind::Launch;
        assert!(built_image(&launch_job, &s).is_err());
    }

    #[test]
    fn params_apply_defaults_and_ceilings() {
        let s = settings(&["--preview-domain", "192.168.49.2.nip.io"]);
        let image = ResolvedImage {
            image: "ghcr.io/org/app:1".into(),
            commit: None,
        };
        let id = uuid::Uuid::now_v7();
        let l = launch(
            json!({"preview": "org/app#42", "image": "ghcr.io/org/app:1",
            "secret_env": {"DB": "db/password"}}),
        );
        let p = preview_params(&s, id, &l, &image).unwrap();
        assert_eq!(p.host, "pr-42-app.192.168.49.2.nip.io");
        assert!(p.namespace.starts_with("slipway-pv-org-app-42-"));
        assert_eq!(
            p.resources,
            CpuMemory {
                cpu: "100m".into(),
                memory: "128Mi".into()
            }
        );
        assert_eq!(p.secret_env["DB"], ("db".into(), "password".into()));
        assert_eq!(p.labels["slipway.dev/kind"], "launch");
        assert_eq!(p.labels["slipway.dev/job-id"], id.to_string());
        assert_eq!(p.progress_deadline_seconds, 300);
        assert_eq!(p.ingress_class.as_deref(), Some("nginx"));
        assert_eq!(p.ingress_controller_namespace, "ingress-nginx");

        let asked = launch(
            json!({"preview": "org/app#42", "image": "ghcr.io/org/app:1",
            "resources": {"cpu": "250m", "memory": "256Mi"}, "replicas": 2}),
        );
        let p = preview_params(&s, id, &asked, &image).unwrap();
        assert_eq!(
            p.resources,
            CpuMemory {
                cpu: "250m".into(),
                memory: "256Mi".into()
            }
        );
        assert_eq!(p.replicas, 2);

        for too_much in [
            json!({"preview": "k", "image": "a:1", "resources": {"cpu": "2"}}),
            json!({"preview": "k", "image": "a:1", "resources": {"memory": "2Gi"}}),
        ] {
            let e = preview_params(&s, id, &launch(too_much), &image).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Permanent);
        }
        let small = settings(&["--quota-cpu", "2", "--quota-pods", "3"]);
        let e = preview_params(
            &small,
            id,
            &launch(json!({"preview": "k", "image": "a:1", "replicas": 3})),
            &image,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("do not fit the preview quota"),
            "{e}"
        );
    }

    fn compose(text: &str) -> ComposeLaunch {
        let app = slipway_core::compose::parse(text).unwrap();
        let images = app
            .services
            .iter()
            .map(|s| (s.name.clone(), s.image.clone().unwrap_or("web:1".into())))
            .collect();
        ComposeLaunch {
            services: app.services,
            volumes: app.volumes.into_iter().collect(),
            images,
            exposed: "web".into(),
            port: 3000,
        }
    }

    fn compose_error(s: &Settings, text: &str) -> String {
        let l = launch(json!({"preview": "org/app#1", "image": "web:1"}));
        let image = ResolvedImage {
            image: "web:1".into(),
            commit: None,
        };
        let e = compose_params(s, uuid::Uuid::now_v7(), &l, &compose(text), &image).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
        e.to_string()
    }

    #[test]
    fn compose_params_clamp_each_service_and_check_users_volumes_and_the_quota() {
        let s = settings(&[]);
        let l = launch(json!({"preview": "org/app#1", "image": "web:1",
            "resources": {"memory": "256Mi"}, "env": {"MODE": "preview"}}));
        let image = ResolvedImage {
            image: "web:1".into(),
            commit: None,
        };
        let text = "services:\n  web:\n    image: web:1\n  db:\n    image: postgres:16\n    \
                    user: '999:998'\n    cpus: 0.5\n    volumes: [data:/var/lib/data]\n\
                    volumes:\n  data: {}\n";
        let p = compose_params(&s, uuid::Uuid::now_v7(), &l, &compose(text), &image).unwrap();
        assert_eq!(p.preview.port, 3000);
        assert_eq!(p.preview.env["MODE"], "preview");
        assert_eq!(p.volume_size, "1Gi");
        let web = &p.services[0];
        // The launch's resources are every container's default.
        assert_eq!(web.resources.memory, "256Mi");
        assert_eq!(web.cpu_limit, None);
        let db = &p.services[1];
        assert_eq!((db.run_as_user, db.run_as_group), (Some(999), Some(998)));
        assert_eq!(db.cpu_limit.as_deref(), Some("500m"));
        assert_eq!(db.resources.cpu, "500m");

        let m = compose_error(&s, "services:\n  web:\n    image: web:1\n    user: node\n");
        assert!(
            m.starts_with("service web: user \"node\" is not numeric"),
            "{m}"
        );
        let m = compose_error(
            &s,
            "services:\n  web:\n    image: web:1\n    mem_limit: 2g\n",
        );
        assert!(
            m.contains("service web: a memory limit of 2Gi is above"),
            "{m}"
        );
        let m = compose_error(
            &s,
            "services:\n  web:\n    image: web:1\n    volumes: [v:/a]\n  worker:\n    \
             image: w:1\n    volumes: [v:/b]\nvolumes:\n  v: {}\n",
        );
        assert!(m.contains("mounted by services web and worker"), "{m}");
        let m = compose_error(
            &s,
            "services:\n  web:\n    image: web:1\n    depends_on:\n      migrate:\n        \
             condition: service_completed_successfully\n  migrate:\n    image: m:1\n",
        );
        assert!(
            m.contains("service web waits for migrate to complete successfully"),
            "{m}"
        );
        let m = compose_error(&s, "services:\n  api:\n    image: a:1\n");
        assert!(m.contains("exposed service \"web\""), "{m}");
        let strict = settings(&["--run-as-non-root", "true"]);
        let m = compose_error(
            &strict,
            "services:\n  web:\n    image: web:1\n    user: '0'\n",
        );
        assert!(m.contains("service web: user 0 is root"), "{m}");
        // Named volumes count against the storage quota: claims and bytes.
        let two = "services:\n  web:\n    image: web:1\n  a:\n    image: a:1\n    volumes: \
                   [x:/x]\n  b:\n    image: b:1\n    volumes: [y:/y]\nvolumes:\n  x: {}\n  y: {}\n";
        assert!(compose_params(&s, uuid::Uuid::now_v7(), &l, &compose(two), &image).is_ok());
        let m = compose_error(&settings(&["--quota-claims", "1"]), two);
        assert!(
            m.contains(
                "2 named volumes of 1Gi each (2 volume claims, 2Gi of storage) do not \
                        fit the preview quota of 1 claims and 10Gi of storage"
            ),
            "{m}"
        );
        let m = compose_error(&settings(&["--quota-storage", "1500Mi"]), two);
        assert!(m.contains("2Gi of storage) do not fit"), "{m}");
        // 8 CPU of quota: each container without a CPU limit counts the 1-CPU maximum, each
        // Deployment twice.
        let m = compose_error(
            &s,
            "services:\n  web:\n    image: web:1\n  a:\n    image: a:1\n  b:\n    \
             image: b:1\n  c:\n    image: c:1\n  d:\n    image: d:1\n",
        );
        assert!(
            m.contains("with service d they need 10 pods, 10 CPU"),
            "{m}"
        );
    }

    #[test]
    fn every_object_is_named_for_the_attempt_record() {
        let s = settings(&[]);
        let l = launch(json!({"preview": "org/app#1", "image": "a:1"}));
        let image = ResolvedImage {
            image: "a:1".into(),
            commit: None,
        };
        let p = preview_params(&s, uuid::Uuid::now_v7(), &l, &image).unwrap();
        let names = object_names(&preview_objects(&p));
        let ns = &p.namespace;
        assert_eq!(names[0], format!("Namespace/{ns}"));
        assert!(names.contains(&format!("Deployment/{ns}/app")));
        assert!(names.contains(&format!("Ingress/{ns}/app")));
        assert_eq!(names.len(), 9);
    }
}
