//! Rendering `deploy/helm/slipway` with `helm template` and reading what comes out.

use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The chart's directory, relative to the repository root.
pub const CHART: &str = "deploy/helm/slipway";
/// Release name and namespace every render uses.
pub const RELEASE: &str = "slipway";
pub const NAMESPACE: &str = "slipway";

/// One way of installing the chart: values files (relative to the chart) and `--set-json`
/// pairs (`key=<JSON>`, so strings, numbers and booleans keep their types).
#[derive(Debug, Clone, Copy)]
pub struct Install<'a> {
    pub name: &'a str,
    pub files: &'a [&'a str],
    pub set: &'a [&'a str],
    /// The Secrets it reads without rendering them (its `existingSecret`s).
    pub existing_secrets: &'a [&'a str],
}

impl<'a> Install<'a> {
    /// The default values with `set` on top.
    pub const fn defaults_with(name: &'a str, set: &'a [&'a str]) -> Install<'a> {
        Install {
            name,
            files: &[],
            set,
            existing_secrets: &[],
        }
    }
}

/// The defaults (minikube).
pub const DEFAULT: Install<'static> = Install::defaults_with("default values", &[]);

/// The production example.
pub const PRODUCTION: Install<'static> = Install {
    name: "values-production.yaml",
    files: &["values-production.yaml"],
    set: &[],
    existing_secrets: &["slipway-secrets", "slipway-github-app"],
};

/// Every optional object on: the API ingress with TLS, HPAs, KEDA on every worker with a Redis
/// password, GitHub secrets (the key as a mounted file), a push secret, preview TLS.
pub const EVERYTHING: Install<'static> = Install {
    name: "every option on",
    files: &[],
    set: &[
        "api.ingress.enabled=true",
        r#"api.ingress.tlsSecretName="api-tls""#,
        "api.autoscaling.enabled=true",
        "workerBuild.keda.enabled=true",
        "workerLaunch.keda.enabled=true",
        "workerCleanup.keda.enabled=true",
        r#"keda.redis.passwordSecret.name="redis-auth""#,
        r#"secrets.apiTokens.value="ops:read+enqueue+admin:0123456789abcdef0123""#,
        r#"secrets.githubWebhookSecret.value="webhook-secret""#,
        r#"secrets.githubToken.existingSecret="github""#,
        r#"secrets.githubPrivateKey.existingSecret="github""#,
        r#"api.github.appId="42""#,
        r#"registry.pushSecret.name="registry-push""#,
        "registry.pushSecret.create=true",
        r#"registry.pushSecret.dockerConfigJson="{\"auths\":{}}""#,
        r#"preview.clusterIssuer="letsencrypt""#,
        r#"preview.tlsSecret="preview-tls""#,
        r#"preview.imagePullSecret="registry-pull""#,
        r#"image.pullSecrets=["slipway-pull"]"#,
    ],
    existing_secrets: &["github", "redis-auth"],
};

/// The `helm` arguments that select `install`'s values.
fn value_args(install: &Install<'_>) -> Vec<String> {
    let chart = crate::repo_root().join(CHART);
    let mut args = Vec::new();
    for f in install.files {
        args.push("-f".to_owned());
        args.push(chart.join(f).display().to_string());
    }
    for s in install.set {
        args.push("--set-json".to_owned());
        args.push((*s).to_owned());
    }
    args
}

/// Runs `helm <verb> [release] <chart> --namespace <ns> <values>`: stdout, or helm's output.
fn run_helm(helm: &Path, verb: &[&str], install: &Install<'_>) -> Result<String, String> {
    let out = Command::new(helm)
        .args(verb)
        .arg(crate::repo_root().join(CHART))
        .args(["--namespace", NAMESPACE])
        .args(value_args(install))
        .output()
        .map_err(|e| format!("running helm: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// The YAML `helm template` prints, or helm's error output.
pub fn render_text(helm: &Path, install: &Install<'_>) -> Result<String, String> {
    run_helm(helm, &["template", RELEASE], install)
}

/// `helm template` of the chart: the documents, or helm's error output.
pub fn render(helm: &Path, install: &Install<'_>) -> Result<Vec<Value>, String> {
    render_text(helm, install).map(|yaml| parse_documents(&yaml))
}

/// Like [`render`], panicking with helm's message (and the install's name) on failure.
pub fn render_ok(helm: &Path, install: &Install<'_>) -> Vec<Value> {
    render(helm, install).unwrap_or_else(|e| panic!("helm template ({}): {e}", install.name))
}

/// `helm lint --strict` with `install`'s values: Ok, or its output.
pub fn lint_strict(helm: &Path, install: &Install<'_>) -> Result<(), String> {
    run_helm(helm, &["lint", "--strict"], install).map(|_| ())
}

/// Every non-empty document of a multi-document YAML stream, as JSON values.
pub fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("helm printed invalid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kind`, `metadata.namespace` (empty for cluster-scoped) and `metadata.name` of a document.
pub fn id(doc: &Value) -> (String, String, String) {
    let s = |p: &str| {
        doc.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

/// The monitoring objects on: the PrometheusRule (with a label for the Operator's ruleSelector)
/// and the Grafana dashboard's ConfigMap. Not in [`EVERYTHING`]: the simulator the apply test
/// uses has no PrometheusRule kind (a CRD).
pub const MONITORING: Install<'static> = Install::defaults_with(
    "monitoring on",
    &[
        "metrics.prometheusRule.enabled=true",
        r#"metrics.prometheusRule.labels={"release":"kube-prometheus-stack"}"#,
        "metrics.grafanaDashboard.enabled=true",
    ],
);

/// Whether a document belongs to the Prometheus Operator (a CRD: no Kubernetes schema covers it).
pub fn is_prometheus_operator(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
}

/// The documents of one kind.
pub fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

/// The document of `kind` named `name` (in any namespace), if rendered.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// Whether a document belongs to KEDA (a CRD: no Kubernetes schema covers it).
pub fn is_keda(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("keda.sh/"))
}
