//! A Helm preview's chart (#18): rendered with the real Helm, checked, and made the preview's.
//!
//! [`render`] writes the chart and values files the build worker read at the commit into a
//! private temporary directory and runs `helm template` there: a fixed release name, the
//! preview namespace, the values files in order, then the built image through `--set-string`.
//! `helm template` talks to no cluster (helm v4.1.4 `pkg/action/install.go`: without a server
//! dry run it uses `common.DefaultCapabilities` and a fake client, so `lookup` is the
//! placeholder of `pkg/engine/funcs.go` that returns an empty map, and `getHostByName` returns
//! "" without `--enable-dns`); we pass the cluster's `--kube-version` so
//! `.Capabilities.KubeVersion` and a chart's `kubeVersion` constraint see the real cluster
//! rather than the client-go version Helm was built with (`pkg/chart/common/capabilities.go`,
//! `makeDefaultCapabilities`). It fetches nothing: without `--dependency-update` a dependency
//! missing from `charts/` fails (`pkg/cmd/install.go`, `action.CheckDependencies`), and we say
//! so first in our own words. Hooks are left out (`--no-hooks`): a preview is a render applied
//! server-side, not a Helm release, and a hook Job re-applied at every launch would fail on its
//! immutable template. Helm's environment is emptied (its homes point into the temporary
//! directory) and its run time and output are bounded.
//!
//! [`parse`] splits Helm's output into documents with the template each came from (`# Source:`),
//! and [`prepare`] refuses what a preview may not hold (permanently, naming the kind, the name
//! and the template) and makes the rest the preview's: its namespace, Slipway's labels on every
//! object and on every pod template, in Helm's install order.

use crate::LaunchError;
use base64::Engine as _;
use serde_json::{Map, Value};
use slipway_core::quantity::{self, Unit};
use slipway_core::source::HelmLaunch;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The release name every preview renders under: the namespace already tells previews apart,
/// and a fixed name keeps object names the same from one launch to the next.
pub const RELEASE: &str = "preview";

/// How long one `helm template` may run: rendering is local and takes well under a second.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The most rendered YAML accepted (a preview of a few dozen objects is tens of KiB).
pub const MAX_OUTPUT_BYTES: usize = 8 << 20;
/// The most of Helm's stderr kept for the error message.
const MAX_STDERR_BYTES: usize = 16 << 10;
/// The most characters of Helm's message put into the job's error.
const MAX_MESSAGE_CHARS: usize = 2_000;

/// How the worker runs Helm.
#[derive(Debug, Clone)]
pub struct HelmRunner {
    /// The `helm` binary (a path, or a name looked up on `PATH`).
    pub binary: PathBuf,
    pub timeout: Duration,
    pub max_output: usize,
}

impl HelmRunner {
    pub fn new(binary: impl Into<PathBuf>) -> HelmRunner {
        HelmRunner {
            binary: binary.into(),
            timeout: RENDER_TIMEOUT,
            max_output: MAX_OUTPUT_BYTES,
        }
    }
}

/// A kind a chart may render: it lives in the preview namespace and the launch worker's
/// ClusterRole lets it apply it (`deploy/helm/slipway/templates/rbac.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl AllowedKind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// What a chart may render, in Helm's install order (helm v4.1.4
/// `pkg/release/v1/util/kind_sorter.go`, `InstallOrder`): accounts and configuration before
/// the Services and workloads that use them.
///
/// - ServiceAccount: `helm create`'s chart renders one for its pods; it carries no rights
///   (a chart may render no RBAC).
/// - ConfigMap: an app's configuration.
/// - PersistentVolumeClaim: storage of the preview's own (a StatefulSet's claim templates make
///   claims through the controller anyway).
/// - Service: how the chart's pods reach each other and how the preview URL reaches the app
///   (ClusterIP only, see [`prepare`]).
/// - Deployment, StatefulSet: the workloads; each must become available.
///
/// Left out on purpose: Secret (an apply answers with the object, so a cluster-wide `patch`
/// on Secrets would read every Secret of the cluster; a preview's secrets come from the
/// launch's `secret_env`), RBAC objects (rights are the operator's), Ingress (Slipway routes
/// the preview URL itself), NetworkPolicy (the preview's policies are Slipway's), Job and
/// CronJob (a Job's pod template is immutable, so the next launch with a new image could not
/// apply it), and everything cluster-scoped.
pub const ALLOWED_KINDS: &[AllowedKind] = &[
    AllowedKind {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
    },
    AllowedKind {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
    },
    AllowedKind {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
    },
    AllowedKind {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
    },
    AllowedKind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
    },
    AllowedKind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
    },
];

/// Kinds that are cluster-scoped in Kubernetes 1.33 and kinds charts commonly render with
/// them, named as such in the refusal.
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterIssuer",
    "ClusterRole",
    "ClusterRoleBinding",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "FlowSchema",
    "IngressClass",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// One document of Helm's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The template it came from (Helm's `# Source:` line), e.g. `app/templates/svc.yaml`.
    pub source: Option<String>,
    pub object: Value,
}

/// A chart object ready to apply in the preview namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartObject {
    pub kind: AllowedKind,
    pub name: String,
    pub source: Option<String>,
    pub object: Value,
}

/// What the preview URL leads to: the chart's Service, its port, the pods behind it and the
/// port they listen on (the Service's `targetPort`: a number or a container port's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub service: String,
    pub port: u16,
    pub pod_selector: BTreeMap<String, String>,
    pub target_port: TargetPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(i32),
    Name(String),
}

/// The prepared chart: objects in apply order, the workloads to wait for, the route.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedChart {
    pub objects: Vec<ChartObject>,
    /// `(kind, name)` of every Deployment and StatefulSet.
    pub workloads: Vec<(&'static str, String)>,
    pub route: Route,
}

/// The volume claims a chart asks for: its PersistentVolumeClaims, and each StatefulSet's
/// `volumeClaimTemplates` once per replica (the controller makes one claim per template and
/// pod). `(claims, bytes of storage requested)`; a claim without a storage request, or with one
/// that is not a quantity, is refused naming it (the quota would refuse it too).
pub fn claimed_storage(objects: &[ChartObject]) -> Result<(usize, u64), LaunchError> {
    let request = |claim: &Value, what: &str| {
        let asked = claim
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                LaunchError::Invalid(format!("{what}: a volume claim needs a storage request"))
            })?;
        quantity::parse(asked, Unit::Bytes).map_err(|e| {
            LaunchError::Invalid(format!("{what}: its storage request {asked:?}: {e}"))
        })
    };
    let (mut claims, mut bytes) = (0usize, 0u64);
    for o in objects {
        let what = describe(o.kind.kind, &o.name, o.source.as_deref());
        match o.kind.kind {
            "PersistentVolumeClaim" => {
                claims += 1;
                bytes = bytes.saturating_add(request(&o.object, &what)?);
            }
            "StatefulSet" => {
                let replicas = o
                    .object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                let templates = o
                    .object
                    .pointer("/spec/volumeClaimTemplates")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for t in &templates {
                    let each = request(t, &what)?;
                    claims += usize::try_from(replicas).unwrap_or(usize::MAX);
                    bytes = bytes.saturating_add(each.saturating_mul(replicas));
                }
            }
            _ => {}
        }
    }
    Ok((claims, bytes))
}

/// A path of the chart as the payload names it: relative, no `.` or `..`, no empty parts.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.split('/').any(str::is_empty);
    ok.then(|| p.to_path_buf())
}

fn decode(what: &str, b64: &str) -> Result<Vec<u8>, LaunchError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| LaunchError::Invalid(format!("the launch's {what} is not base64: {e}")))
}

/// The dependencies `Chart.yaml` declares that are not vendored under `charts/` (as a
/// directory `charts/<name>/` or an archive `charts/<name>-<version>.tgz`).
pub fn missing_dependencies(
    chart_yaml: &str,
    files: &BTreeSet<String>,
) -> Result<Vec<String>, String> {
    let meta: Value = serde_norway::from_str(chart_yaml).map_err(|e| e.to_string())?;
    let deps = meta
        .get("dependencies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut missing = Vec::new();
    for d in deps {
        let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
        let vendored = files.iter().any(|f| {
            f.strip_prefix("charts/").is_some_and(|rest| {
                rest.strip_prefix(name)
                    .is_some_and(|tail| tail.starts_with('/') || tail.ends_with(".tgz"))
            })
        });
        if !vendored {
            missing.push(name.to_owned());
        }
    }
    Ok(missing)
}

/// Reads at most `max` bytes; `Err(())` once there is more.
async fn read_bounded<R: AsyncRead + Unpin>(r: R, max: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let mut limited = r.take(u64::try_from(max).unwrap_or(u64::MAX) + 1);
    limited.read_to_end(&mut buf).await?;
    let over = buf.len() > max;
    buf.truncate(max);
    Ok((buf, over))
}

/// Helm's message made fit for a job's log: our temporary paths replaced by the repository's,
/// control characters (colour codes) dropped, Helm's `--debug` hint left out, bounded.
pub fn clean_message(raw: &str, replacements: &[(String, String)]) -> String {
    let mut s = raw.to_owned();
    for (from, to) in replacements {
        s = s.replace(from.as_str(), to.as_str());
    }
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An ANSI sequence: ESC [ ... final byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c == '\n' || c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.contains("Use --debug flag"))
        .collect();
    let mut msg = lines.join("; ");
    if msg.chars().count() > MAX_MESSAGE_CHARS {
        msg = msg.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "...";
    }
    msg
}

/// Renders the chart of `launch` with Helm into `namespace`; the YAML Helm printed.
/// `kube_version` is the cluster's (`/version`'s `gitVersion`), when known.
pub async fn render(
    runner: &HelmRunner,
    launch: &HelmLaunch,
    namespace: &str,
    kube_version: Option<&str>,
) -> Result<String, LaunchError> {
    let chart_name = &launch.chart;
    let dir = tempfile::Builder::new()
        .prefix("slipway-helm-")
        .tempdir()
        .map_err(|e| LaunchError::NotYet(format!("no temporary directory for the chart: {e}")))?;
    let chart_dir = dir.path().join("chart");
    let values_dir = dir.path().join("values");
    let home = dir.path().join("home");
    let io = |what: &str, e: std::io::Error| {
        LaunchError::NotYet(format!("writing the chart's {what} failed: {e}"))
    };
    for d in [&chart_dir, &values_dir, &home] {
        std::fs::create_dir_all(d).map_err(|e| io("directory", e))?;
    }
    let names: BTreeSet<String> = launch.files.keys().cloned().collect();
    for (path, content) in &launch.files {
        let rel = safe_relative(path).ok_or_else(|| {
            LaunchError::Invalid(format!(
                "the chart {chart_name} holds a file at an unsafe path: {path:?}"
            ))
        })?;
        let target = chart_dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(path, e))?;
        }
        std::fs::write(&target, decode(&format!("chart file {path}"), content)?)
            .map_err(|e| io(path, e))?;
    }
    let chart_yaml = launch.files.get("Chart.yaml").ok_or_else(|| {
        LaunchError::Invalid(format!(
            "{chart_name} is not a Helm chart: it has no Chart.yaml"
        ))
    })?;
    let chart_yaml = String::from_utf8_lossy(&decode("Chart.yaml", chart_yaml)?).into_owned();
    let missing = missing_dependencies(&chart_yaml, &names).map_err(|e| {
        LaunchError::Invalid(format!("{chart_name}/Chart.yaml is not valid YAML: {e}"))
    })?;
    if !missing.is_empty() {
        return Err(LaunchError::Invalid(format!(
            "the chart {chart_name} depends on {} but does not vendor {} under {chart_name}/charts/; \
             previews fetch nothing: run `helm dependency build` and commit the charts/ directory",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        )));
    }

    let mut replacements = vec![(chart_dir.to_string_lossy().into_owned(), chart_name.clone())];
    let mut cmd = tokio::process::Command::new(&runner.binary);
    cmd.arg("template")
        .arg(RELEASE)
        .arg(&chart_dir)
        .arg("--namespace")
        .arg(namespace)
        .arg("--no-hooks");
    if let Some(v) = kube_version {
        cmd.arg("--kube-version").arg(v);
    }
    for (i, (path, content)) in launch.values.iter().enumerate() {
        let file = values_dir.join(format!("{i}.yaml"));
        std::fs::write(&file, decode(&format!("values file {path}"), content)?)
            .map_err(|e| io(path, e))?;
        replacements.insert(0, (file.to_string_lossy().into_owned(), path.clone()));
        cmd.arg("--values").arg(&file);
    }
    for (key, value) in [
        (&launch.image_repository, &launch.image),
        (&launch.image_tag, &launch.tag),
    ] {
        // `--set-string` splits on commas and reads backslashes (helm `pkg/strvals`); image
        // references hold neither.
        if value.contains([',', '\\']) || value.is_empty() {
            return Err(LaunchError::Invalid(format!(
                "the built image part {value:?} cannot be passed to Helm"
            )));
        }
        cmd.arg("--set-string").arg(format!("{key}={value}"));
    }
    replacements.push((dir.path().to_string_lossy().into_owned(), String::new()));
    cmd.env_clear()
        .env("HOME", &home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        LaunchError::Config(format!(
            "cannot run Helm ({}; SLIPWAY_HELM_BINARY): {e}",
            runner.binary.display()
        ))
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let max = runner.max_output;
    let run = async {
        let out = async {
            match stdout {
                Some(s) => read_bounded(s, max).await,
                None => Ok((Vec::new(), false)),
            }
        };
        let err = async {
            match stderr {
                Some(s) => read_bounded(s, MAX_STDERR_BYTES).await,
                None => Ok((Vec::new(), false)),
            }
        };
        let (out, err) = tokio::join!(out, err);
        (out, err)
    };
    let ((out, err), status) = match tokio::time::timeout(runner.timeout, async {
        let r = run.await;
        // Past the output limit Helm may be blocked writing: stop it rather than wait.
        if r.0.as_ref().is_ok_and(|(_, over)| *over) {
            let _ = child.start_kill();
        }
        let status = child.wait().await;
        (r, status)
    })
    .await
    {
        Ok(r) => r,
        Err(_) => {
            return Err(LaunchError::Invalid(format!(
                "helm template of {chart_name} did not finish within {} s",
                runner.timeout.as_secs()
            )));
        }
    };
    let (out, over) =
        out.map_err(|e| LaunchError::NotYet(format!("reading Helm's output: {e}")))?;
    if over {
        return Err(LaunchError::Invalid(format!(
            "helm template of {chart_name} printed more than {} MiB",
            max >> 20
        )));
    }
    let status = status.map_err(|e| LaunchError::NotYet(format!("waiting for Helm: {e}")))?;
    if !status.success() {
        let (err, _) = err.unwrap_or_default();
        let msg = clean_message(&String::from_utf8_lossy(&err), &replacements);
        return Err(LaunchError::Invalid(format!(
            "helm template of {chart_name} failed: {}",
            if msg.is_empty() {
                format!("exit {status}")
            } else {
                msg
            }
        )));
    }
    String::from_utf8(out).map_err(|_| {
        LaunchError::Invalid(format!(
            "helm template of {chart_name} printed invalid UTF-8"
        ))
    })
}

/// Splits Helm's output into its documents. Helm prints each as `---`, `# Source: <path>`,
/// the manifest (helm v4.1.4 `pkg/cmd/template.go`, `pkg/action/action.go`
/// `renderResources`); empty documents (a template that rendered nothing) are dropped.
pub fn parse(text: &str) -> Result<Vec<Rendered>, LaunchError> {
    let mut docs: Vec<(Option<String>, String)> = vec![(None, String::new())];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push((None, String::new()));
            continue;
        }
        let Some((source, body)) = docs.last_mut() else {
            continue;
        };
        if body.trim().is_empty()
            && source.is_none()
            && let Some(s) = line.strip_prefix("# Source: ")
        {
            *source = Some(s.trim().to_owned());
        }
        body.push_str(line);
        body.push('\n');
    }
    let mut out = Vec::new();
    for (source, body) in docs {
        let value: Value = serde_norway::from_str(&body).map_err(|e| {
            LaunchError::Invalid(format!(
                "Helm rendered invalid YAML{}: {e}",
                source
                    .as_deref()
                    .map(|s| format!(" in {s}"))
                    .unwrap_or_default()
            ))
        })?;
        if value.is_null() {
            continue;
        }
        out.push(Rendered {
            source,
            object: value,
        });
    }
    Ok(out)
}

fn describe(kind: &str, name: &str, source: Option<&str>) -> String {
    match source {
        Some(s) => format!("{kind} {name:?} (from {s})"),
        None => format!("{kind} {name:?}"),
    }
}

/// The labels of `v` at `pointer` (created when absent), merged with `labels` (ours win).
fn merge_labels(v: &mut Value, pointer: &str, labels: &BTreeMap<String, String>) {
    let mut cur = v;
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        let next = obj
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if next.is_null() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    if let Some(obj) = cur.as_object_mut() {
        for (k, val) in labels {
            obj.insert(k.clone(), Value::String(val.clone()));
        }
    }
}

/// `{"name": secret}` in the pod template's `imagePullSecrets`, unless the chart has it.
fn add_pull_secret(v: &mut Value, secret: &str) {
    let Some(spec) = v
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let list = spec
        .entry("imagePullSecrets")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|i| i["name"] == secret)
    {
        items.push(serde_json::json!({ "name": secret }));
    }
}

/// The label keys a selector at `pointer` uses (matchLabels and matchExpressions, or a
/// Service's plain map).
fn selector_keys(v: &Value, pointer: &str) -> Vec<String> {
    let Some(sel) = v.pointer(pointer) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = Vec::new();
    if pointer.ends_with("/selector") && v["kind"] == "Service" {
        keys.extend(
            sel.as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
    } else {
        keys.extend(
            sel.get("matchLabels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
        keys.extend(
            sel.get("matchExpressions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e["key"].as_str().map(str::to_owned)),
        );
    }
    keys
}

/// Where a chart's objects go and what Slipway adds to them.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    pub namespace: &'a str,
    /// On every object.
    pub labels: &'a BTreeMap<String, String>,
    /// On every pod template.
    pub pod_labels: &'a BTreeMap<String, String>,
    /// The operator's pull Secret (`SLIPWAY_IMAGE_PULL_SECRET`), added to every pod template's
    /// `imagePullSecrets` so the built image pulls as a single-container preview's does.
    pub image_pull_secret: Option<&'a str>,
}

/// Checks every rendered object and makes it the preview's: refused (permanent, naming the
/// kind, name and template) are cluster-scoped kinds, kinds outside [`ALLOWED_KINDS`], objects
/// naming another namespace, Services other than ClusterIP/ExternalName or with
/// `externalIPs`, selectors on Slipway's own labels, and a chart without the Service `route`
/// names at `port`. Every object gets `namespace` and `labels`; every pod template `pod_labels`
/// (the ones the preview's policies and the cleanup worker select by; not the job id, which
/// would restart every pod at every launch).
pub fn prepare(
    rendered: Vec<Rendered>,
    into: &Placement<'_>,
    service: &str,
    port: u16,
) -> Result<PreparedChart, LaunchError> {
    let Placement {
        namespace,
        labels,
        pod_labels,
        image_pull_secret,
    } = *into;
    let refuse = |what: String, why: &str| LaunchError::Invalid(format!("{what}: {why}"));
    let ours: BTreeSet<&String> = labels.keys().chain(pod_labels.keys()).collect();
    let mut objects = Vec::new();
    let mut seen = BTreeSet::new();
    for Rendered { source, object } in rendered {
        let mut object = object;
        let src = source.as_deref();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let what = describe(
            if kind.is_empty() { "an object" } else { &kind },
            &name,
            src,
        );
        if kind.is_empty() || api_version.is_empty() || !object.is_object() {
            return Err(refuse(
                what,
                "not a Kubernetes object (no apiVersion or kind)",
            ));
        }
        if name.is_empty() {
            return Err(refuse(
                what,
                "has no metadata.name (server-side apply needs one)",
            ));
        }
        if CLUSTER_SCOPED.contains(&kind.as_str()) {
            return Err(refuse(
                what,
                "is cluster-scoped; a preview holds only objects of its own namespace",
            ));
        }
        let Some(allowed) = ALLOWED_KINDS
            .iter()
            .find(|k| k.kind == kind && k.api_version() == api_version)
        else {
            let list: Vec<String> = ALLOWED_KINDS
                .iter()
                .map(|k| format!("{} {}", k.api_version(), k.kind))
                .collect();
            return Err(refuse(
                format!("{api_version} {what}"),
                &format!(
                    "is not a kind a preview may hold (allowed: {}); disable it in the preview's values",
                    list.join(", ")
                ),
            ));
        };
        match object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(refuse(
                    what,
                    &format!(
                        "names namespace {ns:?}; a preview's objects live in its own namespace \
                         (use {{{{ .Release.Namespace }}}})"
                    ),
                ));
            }
            _ => {}
        }
        if !seen.insert((kind.clone(), name.clone())) {
            return Err(refuse(what, "is rendered twice"));
        }
        let selectors: &[&str] = match kind.as_str() {
            "Deployment" | "StatefulSet" => &["/spec/selector"],
            "Service" => &["/spec/selector"],
            _ => &[],
        };
        for pointer in selectors {
            if let Some(k) = selector_keys(&object, pointer)
                .into_iter()
                .find(|k| ours.contains(k))
            {
                return Err(refuse(
                    what,
                    &format!("selects pods by {k}, a label Slipway sets on every preview object"),
                ));
            }
        }
        if kind == "Service" {
            let ty = object
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if !["ClusterIP", "ExternalName"].contains(&ty) {
                return Err(refuse(
                    what,
                    &format!(
                        "is of type {ty}, which would expose the preview outside its Ingress; \
                         use ClusterIP"
                    ),
                ));
            }
            if object
                .pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                return Err(refuse(
                    what,
                    "sets externalIPs, which a preview may not claim",
                ));
            }
        }
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(namespace.to_owned()));
        } else {
            return Err(refuse(what, "has no metadata"));
        }
        merge_labels(&mut object, "/metadata/labels", labels);
        if kind == "Deployment" || kind == "StatefulSet" {
            merge_labels(&mut object, "/spec/template/metadata/labels", pod_labels);
            if let Some(secret) = image_pull_secret {
                add_pull_secret(&mut object, secret);
            }
        }
        objects.push(ChartObject {
            kind: *allowed,
            name,
            source,
            object,
        });
    }
    let order = |k: &AllowedKind| ALLOWED_KINDS.iter().position(|a| a == k).unwrap_or(0);
    objects.sort_by_key(|o| order(&o.kind));
    let route = route(&objects, service, port)?;
    let workloads = objects
        .iter()
        .filter(|o| o.kind.group == "apps")
        .map(|o| (o.kind.kind, o.name.clone()))
        .collect();
    Ok(PreparedChart {
        objects,
        workloads,
        route,
    })
}

/// The chart's Service `service` and its port `port`: what the Ingress sends to, and the pods
/// and port the preview's ingress policy admits.
fn route(objects: &[ChartObject], service: &str, port: u16) -> Result<Route, LaunchError> {
    let services: Vec<&str> = objects
        .iter()
        .filter(|o| o.kind.kind == "Service")
        .map(|o| o.name.as_str())
        .collect();
    let svc = objects
        .iter()
        .find(|o| o.kind.kind == "Service" && o.name == service)
        .ok_or_else(|| {
            LaunchError::Invalid(format!(
                "the chart renders no Service {service:?} for the preview URL (it renders: {})",
                if services.is_empty() {
                    "no Service".to_owned()
                } else {
                    services.join(", ")
                }
            ))
        })?;
    let what = describe("Service", service, svc.source.as_deref());
    let ports = svc.object["spec"]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(p) = ports
        .iter()
        .find(|p| p["port"].as_i64() == Some(i64::from(port)))
    else {
        let has: Vec<String> = ports
            .iter()
            .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
            .collect();
        return Err(LaunchError::Invalid(format!(
            "{what} has no port {port} for the preview URL (its ports: {})",
            if has.is_empty() {
                "none".to_owned()
            } else {
                has.join(", ")
            }
        )));
    };
    let selector: BTreeMap<String, String> = svc.object["spec"]["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect();
    if selector.is_empty() {
        return Err(LaunchError::Invalid(format!(
            "{what} selects no pods; the preview URL needs a Service with a selector"
        )));
    }
    // An unset or zero targetPort is the port (kubernetes `pkg/apis/core/v1/defaults.go`,
    // `SetDefaults_Service`).
    let target_port = match &p["targetPort"] {
        Value::Number(n) if n.as_i64().is_some_and(|n| n > 0) => {
            TargetPort::Number(i32::try_from(n.as_i64().unwrap_or(0)).unwrap_or(0))
        }
        Value::String(s) if !s.is_empty() => match s.parse::<i32>() {
            Ok(n) => TargetPort::Number(n),
            Err(_) => TargetPort::Name(s.clone()),
        },
        _ => TargetPort::Number(i32::from(port)),
    };
    Ok(Route {
        service: service.to_owned(),
        port,
        pod_selector: selector,
        target_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NS: &str = "slipway-pv-org-app-42-1a2b3c4d";

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/managed-by".into(), "slipway".into()),
            ("slipway.dev/job-id".into(), "0193".into()),
            ("slipway.dev/kind".into(), "launch".into()),
            ("slipway.dev/preview".into(), "org-app-42".into()),
        ])
    }

    fn pod_labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/managed-by".into(), "slipway".into()),
            ("slipway.dev/preview".into(), "org-app-42".into()),
        ])
    }

    const CHART: &str = "---
# Source: web/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: preview-web
  labels:
    app.kubernetes.io/managed-by: Helm
---
# Source: web/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app.kubernetes.io/name: web
  ports:
    - port: 8080
      targetPort: http
---
# Source: web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: slipway-pv-org-app-42-1a2b3c4d
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: web
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
    spec:
      containers:
        - name: web
          image: registry/app:abc@sha256:00
---
# Source: web/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  MODE: preview
";

    fn placed<T>(pull: Option<&str>, f: impl FnOnce(&Placement<'_>) -> T) -> T {
        let (labels, pod_labels) = (labels(), pod_labels());
        f(&Placement {
            namespace: NS,
            labels: &labels,
            pod_labels: &pod_labels,
            image_pull_secret: pull,
        })
    }

    fn prepared(text: &str) -> Result<PreparedChart, LaunchError> {
        placed(None, |p| prepare(parse(text)?, p, "web", 8080))
    }

    fn refusal(text: &str) -> String {
        let e = prepared(text).unwrap_err();
        assert_eq!(e.class(), slipway_core::ErrorClass::Permanent, "{e}");
        e.to_string()
    }

    #[test]
    fn documents_keep_their_template_and_empty_ones_are_dropped() {
        let docs = parse("---\n# Source: a/templates/x.yaml\n\n---\n# Source: a/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].source.as_deref(), Some("a/templates/cm.yaml"));
        assert_eq!(docs[0].object["metadata"]["name"], "c");
        assert_eq!(docs[1].source, None);
        let e = parse("---\n# Source: a/templates/bad.yaml\nkind: [\n").unwrap_err();
        assert!(e.to_string().contains("a/templates/bad.yaml"), "{e}");
    }

    #[test]
    fn objects_get_the_namespace_labels_and_install_order() {
        let p = prepared(CHART).unwrap();
        let kinds: Vec<&str> = p.objects.iter().map(|o| o.kind.kind).collect();
        assert_eq!(
            kinds,
            ["ServiceAccount", "ConfigMap", "Service", "Deployment"]
        );
        for o in &p.objects {
            assert_eq!(o.object["metadata"]["namespace"], NS, "{}", o.name);
            for (k, v) in labels() {
                assert_eq!(
                    o.object["metadata"]["labels"][&k],
                    v.as_str(),
                    "{} {k}",
                    o.name
                );
            }
        }
        // Slipway's mark replaces Helm's.
        assert_eq!(
            p.objects[0].object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "slipway"
        );
        let d = &p.objects[3].object;
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"],
            json!({"app.kubernetes.io/name": "web", "app.kubernetes.io/managed-by": "slipway",
                   "slipway.dev/preview": "org-app-42"})
        );
        assert_eq!(p.workloads, [("Deployment", "web".to_owned())]);
        assert_eq!(
            p.route,
            Route {
                service: "web".into(),
                port: 8080,
                pod_selector: BTreeMap::from([("app.kubernetes.io/name".into(), "web".into())]),
                target_port: TargetPort::Name("http".into()),
            }
        );
    }

    #[test]
    fn the_pull_secret_reaches_every_pod_template_once() {
        let p = placed(Some("regcred"), |p| {
            prepare(parse(CHART).unwrap(), p, "web", 8080)
        })
        .unwrap();
        let d = &p.objects[3].object;
        assert_eq!(
            d["spec"]["template"]["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}])
        );
        let own = CHART.replace(
            "    spec:\n      containers:",
            "    spec:\n      imagePullSecrets: [{name: regcred}, {name: other}]\n      containers:",
        );
        let p = placed(Some("regcred"), |p| {
            prepare(parse(&own).unwrap(), p, "web", 8080)
        })
        .unwrap();
        assert_eq!(
            p.objects[3].object["spec"]["template"]["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}, {"name": "other"}])
        );
        assert!(
            prepared(CHART).unwrap().objects[3].object["spec"]["template"]["spec"]
                .get("imagePullSecrets")
                .is_none()
        );
    }

    #[test]
    fn cluster_scoped_objects_are_refused_by_kind_name_and_template() {
        let m = refusal(&format!(
            "{CHART}---\n# Source: web/templates/rbac.yaml\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: reader\nrules: []\n"
        ));
        assert!(m.contains("ClusterRole \"reader\""), "{m}");
        assert!(m.contains("web/templates/rbac.yaml"), "{m}");
        assert!(m.contains("cluster-scoped"), "{m}");
        for kind in [
            "Namespace",
            "CustomResourceDefinition",
            "PersistentVolume",
            "StorageClass",
        ] {
            let m = refusal(&format!(
                "---\n# Source: c/templates/x.yaml\napiVersion: v1\nkind: {kind}\nmetadata:\n  name: x\n"
            ));
            assert!(m.contains("cluster-scoped") && m.contains(kind), "{m}");
        }
    }

    #[test]
    fn a_charts_claims_and_storage_are_counted() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 8080}]\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: uploads}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 2Gi}}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: postgres}]}\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources: {requests: {storage: 3Gi}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web, ports: [{containerPort: 8080}]}]}\n";
        let chart = prepared(text).unwrap();
        // One claim of 2Gi, and one of 3Gi per StatefulSet replica.
        assert_eq!(claimed_storage(&chart.objects).unwrap(), (3, 8 << 30));
        let unbounded = text.replace("resources: {requests: {storage: 2Gi}}", "resources: {}");
        let e = claimed_storage(&prepared(&unbounded).unwrap().objects).unwrap_err();
        assert!(
            e.to_string().contains("PersistentVolumeClaim \"uploads\"")
                && e.to_string().contains("needs a storage request"),
            "{e}"
        );
    }

    #[test]
    fn kinds_outside_the_allow_list_are_refused() {
        for (api, kind) in [
            ("v1", "Secret"),
            ("networking.k8s.io/v1", "Ingress"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("batch/v1", "Job"),
            ("example.com/v1", "Widget"),
            ("extensions/v1beta1", "Deployment"),
        ] {
            let m = refusal(&format!(
                "{CHART}---\n# Source: web/templates/x.yaml\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: x\n"
            ));
            assert!(m.contains(&format!("{api} {kind} \"x\"")), "{m}");
            assert!(m.contains("not a kind a preview may hold"), "{m}");
            assert!(m.contains("web/templates/x.yaml"), "{m}");
        }
    }

    #[test]
    fn another_namespace_is_refused() {
        let m = refusal(&CHART.replace(
            "namespace: slipway-pv-org-app-42-1a2b3c4d",
            "namespace: kube-system",
        ));
        assert!(m.contains("Deployment \"web\""), "{m}");
        assert!(m.contains("kube-system"), "{m}");
        assert!(m.contains("web/templates/deployment.yaml"), "{m}");
    }

    #[test]
    fn exposing_services_and_selectors_on_slipway_labels_are_refused() {
        let m = refusal(&CHART.replace(
            "spec:\n  selector:\n    app.kubernetes.io/name: web\n  ports:",
            "spec:\n  type: NodePort\n  selector:\n    app.kubernetes.io/name: web\n  ports:",
        ));
        assert!(m.contains("NodePort"), "{m}");
        let m = refusal(&CHART.replace(
            "    matchLabels:\n      app.kubernetes.io/name: web",
            "    matchLabels:\n      app.kubernetes.io/managed-by: Helm",
        ));
        assert!(
            m.contains("selects pods by app.kubernetes.io/managed-by"),
            "{m}"
        );
    }

    #[test]
    fn the_route_needs_the_service_and_its_port() {
        let e = placed(None, |p| prepare(parse(CHART).unwrap(), p, "api", 8080)).unwrap_err();
        assert!(e.to_string().contains("no Service \"api\""), "{e}");
        assert!(e.to_string().contains("it renders: web"), "{e}");
        let e = placed(None, |p| prepare(parse(CHART).unwrap(), p, "web", 80)).unwrap_err();
        assert!(e.to_string().contains("no port 80"), "{e}");
        assert!(e.to_string().contains("its ports: 8080"), "{e}");
        let p = prepared(&CHART.replace("      targetPort: http\n", "")).unwrap();
        assert_eq!(p.route.target_port, TargetPort::Number(8080));
    }

    #[test]
    fn missing_dependencies_are_named() {
        let files: BTreeSet<String> = [
            "Chart.yaml",
            "charts/redis/Chart.yaml",
            "charts/pg-12.1.0.tgz",
        ]
        .map(String::from)
        .into();
        let chart = "apiVersion: v2\nname: a\nversion: 0.1.0\ndependencies:\n  - name: redis\n    version: 1.0.0\n  - name: pg\n    version: 12.1.0\n  - name: kafka\n    version: 1.0.0\n    repository: https://charts.example.com\n";
        assert_eq!(missing_dependencies(chart, &files).unwrap(), ["kafka"]);
        assert!(
            missing_dependencies("apiVersion: v2\nname: a\n", &files)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../x", "a//b", "", "./a"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
        assert!(safe_relative("templates/deployment.yaml").is_some());
    }

    /// A stand-in for Helm: a shell script (`/bin/sh`, absolute paths: Helm runs with an empty
    /// environment) in its own temporary directory.
    fn fake_helm(script: &str) -> (tempfile::TempDir, HelmRunner) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("helm");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, HelmRunner::new(path))
    }

    fn launch() -> HelmLaunch {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        HelmLaunch {
            chart: "deploy/chart".into(),
            files: BTreeMap::from([
                (
                    "Chart.yaml".into(),
                    b64("apiVersion: v2\nname: web\nversion: 0.1.0\n"),
                ),
                ("templates/cm.yaml".into(), b64("kind: ConfigMap\n")),
            ]),
            values: vec![("deploy/preview.yaml".into(), b64("a: 1\n"))],
            image_repository: "image.repository".into(),
            image_tag: "image.tag".into(),
            image: "localhost:5000/org/app".into(),
            tag: "abc@sha256:00".into(),
            service: "web".into(),
            port: 8080,
        }
    }

    #[tokio::test]
    async fn helm_gets_the_arguments_an_empty_environment_and_its_message_is_cleaned() {
        let (_d, runner) = fake_helm(
            "echo \"args: $*\" >&2; /usr/bin/env >&2; \
             echo \"Error: values $5 bad; template $3/templates/cm.yaml\" >&2; exit 1",
        );
        let e = render(&runner, &launch(), NS, Some("v1.33.0"))
            .await
            .unwrap_err();
        assert_eq!(e.class(), slipway_core::ErrorClass::Permanent, "{e}");
        let m = e.to_string();
        assert!(
            m.starts_with("helm template of deploy/chart failed: "),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "args: template preview deploy/chart --namespace {NS} --no-hooks --kube-version \
                 v1.33.0 --values deploy/preview.yaml --set-string \
                 image.repository=localhost:5000/org/app --set-string image.tag=abc@sha256:00"
            )),
            "{m}"
        );
        assert!(m.contains("template deploy/chart/templates/cm.yaml"), "{m}");
        assert!(!m.contains("slipway-helm-"), "no temporary path: {m}");
        // Only Helm's homes, all inside the temporary directory.
        assert!(m.contains("HELM_CACHE_HOME=/home/cache"), "{m}");
        assert!(!m.contains("PATH="), "{m}");
    }

    #[tokio::test]
    async fn helm_output_and_run_time_are_bounded() {
        let (_d, mut runner) =
            fake_helm("/usr/bin/head -c 3000000 /dev/zero | /usr/bin/tr '\\0' a");
        runner.max_output = 1 << 20;
        let e = render(&runner, &launch(), NS, None).await.unwrap_err();
        assert!(e.to_string().contains("printed more than 1 MiB"), "{e}");
        assert_eq!(e.class(), slipway_core::ErrorClass::Permanent);

        let (_d, mut runner) = fake_helm("exec /usr/bin/tail -f /dev/null");
        runner.timeout = Duration::from_millis(300);
        let e = render(&runner, &launch(), NS, None).await.unwrap_err();
        assert!(e.to_string().contains("did not finish within"), "{e}");

        let missing = HelmRunner::new("/nonexistent/helm");
        let e = render(&missing, &launch(), NS, None).await.unwrap_err();
        assert!(e.to_string().contains("SLIPWAY_HELM_BINARY"), "{e}");
    }

    #[test]
    fn helm_messages_are_cleaned() {
        let raw = "\u{1b}[31mError:\u{1b}[0m template: /tmp/slipway-helm-x/chart/templates/d.yaml:3:4: bad\n\nUse --debug flag to render out invalid YAML\n";
        let m = clean_message(
            raw,
            &[("/tmp/slipway-helm-x/chart".into(), "deploy/chart".into())],
        );
        assert_eq!(m, "Error: template: deploy/chart/templates/d.yaml:3:4: bad");
    }
}
