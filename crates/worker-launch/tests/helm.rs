//! Helm previews end to end against real Postgres and Redis, the simulator and the real Helm
//! (`scripts/ensure-helm.sh`'s pinned binary): a small chart (a Deployment of the built image,
//! its Service, a ConfigMap and a StatefulSet cache) rendered with a values file and the built image, applied in
//! the preview namespace with Slipway's labels and brought to ready behind the Ingress; a chart
//! that renders a ClusterRole fails for good, naming it, with nothing applied; a chart whose
//! dependency is not vendored, one whose template does not render and one the API server
//! refuses fail for good with the reason.
//!
//! Needs Helm: `$HELM`, `.tools/bin/helm` (`make tools`) or `helm` on `PATH`. Without it these
//! tests skip, unless `SLIPWAY_REQUIRE_HELM` is set (the Makefile sets it), as tests/deploy do.

mod common;

use base64::Engine as _;
use common::*;
use kube_sim::netpol::{Source, ingress_allowed};
use serde_json::{Value, json};
use slipway_core::naming::preview_namespace;
use slipway_core::source::HelmLaunch;
use slipway_core::{ErrorClass, JobState};
use std::collections::BTreeMap;
use std::path::Path;

const REPOSITORY: &str = "localhost:5000/org/chart/web";
const TAG: &str = "abc1234@sha256:2222222222222222222222222222222222222222222222222222222222222222";

use slipway_shared::testing::helm;

const CHART_YAML: &str = "apiVersion: v2
name: web
version: 0.1.0
kubeVersion: \">=1.30.0-0\"
";

const VALUES_YAML: &str = "image:
  repository: nginx
  tag: latest
replicas: 1
greeting: hello
";

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/name: web
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/managed-by: {{ .Release.Service }}
spec:
  replicas: {{ .Values.replicas }}
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
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          ports:
            - name: http
              containerPort: 8080
          envFrom:
            - configMapRef:
                name: web-config
"#;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app.kubernetes.io/name: web
spec:
  selector:
    app.kubernetes.io/name: web
  ports:
    - name: http
      port: 8080
      targetPort: http
"#;

const CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  GREETING: {{ .Values.greeting | quote }}
  KUBE_MINOR: {{ .Capabilities.KubeVersion.Minor | quote }}
  FOUND: {{ (lookup "v1" "Secret" .Release.Namespace "anything") | len | quote }}
"#;

/// A cache the web app talks to: a StatefulSet behind a headless Service.
const CACHE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: cache
spec:
  clusterIP: None
  selector:
    app.kubernetes.io/name: cache
  ports:
    - port: 6379
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: cache
spec:
  serviceName: cache
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: cache
  template:
    metadata:
      labels:
        app.kubernetes.io/name: cache
    spec:
      containers:
        - name: redis
          image: redis:7
          ports:
            - containerPort: 6379
"#;

const PREVIEW_VALUES: &str = "replicas: 2
greeting: hello-preview
";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The chart's files (path in the chart -> content).
fn chart() -> BTreeMap<String, String> {
    [
        ("Chart.yaml", CHART_YAML),
        ("values.yaml", VALUES_YAML),
        ("templates/deployment.yaml", DEPLOYMENT),
        ("templates/service.yaml", SERVICE),
        ("templates/configmap.yaml", CONFIGMAP),
        ("templates/cache.yaml", CACHE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The launch the build side enqueues for a `helm` source: the chart and values files as read
/// at the commit, the built image as the values receive it.
fn helm_launch(key: &str, files: &BTreeMap<String, String>) -> Value {
    let helm = HelmLaunch {
        chart: "deploy/chart".into(),
        files: files.iter().map(|(k, v)| (k.clone(), b64(v))).collect(),
        values: vec![("deploy/preview.yaml".into(), b64(PREVIEW_VALUES))],
        image_repository: "image.repository".into(),
        image_tag: "image.tag".into(),
        image: REPOSITORY.into(),
        tag: TAG.into(),
        service: "web".into(),
        port: 8080,
    };
    let mut payload = valid(
        json!({"preview": key, "image": format!("{REPOSITORY}:{TAG}"),
        "port": 8080}),
    );
    payload["helm"] = serde_json::to_value(helm).unwrap();
    payload
}

async fn worker(h: &Harness, helm: &Path) -> slipway_shared::testing::WorkerThread {
    h.worker(&["--helm-binary", helm.to_str().unwrap()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_renders_with_helm_and_launches_to_ready() {
    let Some(helm) = helm() else { return };
    let h = Harness::new(sim()).await;
    let w = worker(&h, &helm).await;
    let key = "org/chart#7";
    let id = h.launch_valid(helm_launch(key, &chart()), None).await;
    let job = h.finished(id).await;
    let log = h.log_text(id).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}\n{log}", job.error);
    assert!(
        log.contains("rendered chart deploy/chart with Helm"),
        "{log}"
    );
    let ns = preview_namespace(key);

    // The chart's objects, Slipway's around them, the Ingress to the chart's Service.
    assert_eq!(h.names("deployments", Some(&ns)), ["web"]);
    assert_eq!(h.names("statefulsets", Some(&ns)), ["cache"]);
    assert_eq!(h.names("services", Some(&ns)), ["cache", "web"]);
    assert_eq!(h.names("configmaps", Some(&ns)), ["web-config"]);
    assert_eq!(h.names("ingresses", Some(&ns)), ["web"]);
    assert_eq!(h.names("resourcequotas", Some(&ns)).len(), 1);
    let ingress = h.sim.object("ingresses", &ns, "web").unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": "web", "port": {"number": 8080}})
    );

    // The values file and the built image reached the objects; `lookup` found nothing and
    // the capabilities are the cluster's (the simulator's 1.33).
    let cm = h.sim.object("configmaps", &ns, "web-config").unwrap();
    assert_eq!(cm["data"]["GREETING"], "hello-preview");
    assert_eq!(cm["data"]["KUBE_MINOR"], "33");
    assert_eq!(cm["data"]["FOUND"], "0");
    let d = h.sim.object("deployments", &ns, "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    let pods: Vec<_> = h
        .sim
        .objects("pods", Some(&ns))
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app.kubernetes.io/name"] == "web")
        .collect();
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(
            p["spec"]["containers"][0]["image"],
            format!("{REPOSITORY}:{TAG}")
        );
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "slipway");
        assert_eq!(
            labels["slipway.dev/preview"],
            d["metadata"]["labels"]["slipway.dev/preview"]
        );
        assert_eq!(labels["app.kubernetes.io/name"], "web");
    }

    // Slipway's labels on every object of the chart (Helm's managed-by replaced).
    for (plural, name) in [
        ("deployments", "web"),
        ("services", "web"),
        ("configmaps", "web-config"),
    ] {
        let o = h.sim.object(plural, &ns, name).unwrap();
        let labels = &o["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "slipway",
            "{plural}"
        );
        assert_eq!(labels["slipway.dev/job-id"], id.to_string(), "{plural}");
        assert_eq!(labels["slipway.dev/kind"], "launch", "{plural}");
        assert_eq!(o["metadata"]["managedFields"][0]["manager"], "slipway");
    }

    // The preview is recorded with the chart's ready pods; the result names the workloads.
    let preview = h.preview(key).await;
    assert_eq!(preview.status, "ready");
    assert_eq!(preview.pods.len(), 3, "{:?}", preview.pods);
    assert!(preview.pods.contains(&"cache-0".to_owned()));
    let result = job.result.unwrap();
    assert_eq!(
        result["workloads"],
        json!([{"name": "web", "kind": "Deployment"}, {"name": "cache", "kind": "StatefulSet"}])
    );
    let cache = h.sim.object("statefulsets", &ns, "cache").unwrap();
    assert_eq!(
        cache["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "slipway"
    );

    // The ingress controller reaches the Service's pods on their named port, nothing else
    // does from outside; the chart's pods reach one another.
    let policies = h.sim.objects("networkpolicies", Some(&ns));
    let policies: Vec<&Value> = policies.iter().map(|p| p.as_ref()).collect();
    let controller = Source {
        namespace: "ingress-nginx".into(),
        namespace_labels: json!({"kubernetes.io/metadata.name": "ingress-nginx"}),
        pod_labels: Some(json!({"app.kubernetes.io/name": "ingress-nginx"})),
        ip: Some("10.244.0.9".parse().unwrap()),
    };
    assert!(ingress_allowed(
        &policies,
        &pods[0],
        &controller,
        8080,
        "TCP"
    ));
    assert!(!ingress_allowed(
        &policies,
        &pods[0],
        &controller,
        9090,
        "TCP"
    ));
    let neighbour = Source {
        namespace: ns.clone(),
        namespace_labels: json!({"kubernetes.io/metadata.name": ns}),
        pod_labels: Some(pods[1]["metadata"]["labels"].clone()),
        ip: Some(
            pods[1]["status"]["podIP"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        ),
    };
    assert!(ingress_allowed(
        &policies, &pods[0], &neighbour, 8080, "TCP"
    ));
    let cache_pod = h.sim.object("pods", &ns, "cache-0").unwrap();
    assert!(ingress_allowed(
        &policies, &cache_pod, &neighbour, 6379, "TCP"
    ));
    assert!(!ingress_allowed(
        &policies,
        &cache_pod,
        &controller,
        6379,
        "TCP"
    ));
    let other = Source {
        namespace: "slipway-pv-other".into(),
        namespace_labels: json!({"kubernetes.io/metadata.name": "slipway-pv-other"}),
        pod_labels: Some(pods[1]["metadata"]["labels"].clone()),
        ip: Some("10.244.3.3".parse().unwrap()),
    };
    assert!(!ingress_allowed(&policies, &pods[0], &other, 8080, "TCP"));
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_with_a_cluster_role_fails_naming_it_and_applies_nothing() {
    let Some(helm) = helm() else { return };
    let h = Harness::new(sim()).await;
    let w = worker(&h, &helm).await;
    let mut files = chart();
    files.insert(
        "templates/rbac.yaml".into(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: \
         {{ .Release.Name }}-reader\nrules:\n  - apiGroups: [\"\"]\n    resources: [\"pods\"]\n    \
         verbs: [\"list\"]\n"
            .into(),
    );
    let key = "org/chart#8";
    let id = h.launch_valid(helm_launch(key, &files), None).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert_eq!(job.attempts, 1, "a refusal is not retried");
    let error = job.error.unwrap_or_default();
    assert!(error.contains("ClusterRole \"preview-reader\""), "{error}");
    assert!(error.contains("web/templates/rbac.yaml"), "{error}");
    assert!(error.contains("cluster-scoped"), "{error}");
    assert!(h.log_text(id).await.contains("preview-reader"));
    // Nothing of the chart (nor the preview around it) was applied.
    assert!(
        h.preview_namespaces().is_empty(),
        "{:?}",
        h.preview_namespaces()
    );
    assert!(h.names("clusterroles", None).is_empty());
    assert!(
        h.names("configmaps", Some(&preview_namespace(key)))
            .is_empty()
    );
    w.stop().await.expect("worker stopped cleanly");
}

/// A chart's volume claims must fit the preview's storage quota: one asking for more is
/// refused before anything is applied, naming the quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_claiming_more_storage_than_the_quota_fails_and_applies_nothing() {
    let Some(helm) = helm() else { return };
    let h = Harness::new(sim()).await;
    let w = worker(&h, &helm).await;
    let mut files = chart();
    files.insert(
        "templates/pvc.yaml".into(),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: uploads\nspec:\n  \
         accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 50Gi\n"
            .into(),
    );
    let key = "org/chart#9";
    let id = h.launch_valid(helm_launch(key, &files), None).await;
    let job = h.finished(id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains(
            "1 volume claims, 50Gi of storage) do not fit the preview quota of 5 \
                        claims and 10Gi of storage"
        ),
        "{error}"
    );
    assert!(h.preview_namespaces().is_empty(), "nothing was applied");
    w.stop().await.expect("worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_that_cannot_render_fail_for_good_with_the_reason() {
    let Some(helm) = helm() else { return };
    let h = Harness::new(sim()).await;
    let w = worker(&h, &helm).await;

    // A dependency from a repository, not vendored under charts/: nothing is fetched.
    let mut deps = chart();
    deps.insert(
        "Chart.yaml".into(),
        format!(
            "{CHART_YAML}dependencies:\n  - name: redis\n    version: 19.0.0\n    repository: \
             https://charts.bitnami.com/bitnami\n"
        ),
    );
    // A template that does not parse: Helm's own message (it names templates by the chart's
    // name), our temporary paths not in it.
    let mut broken = chart();
    broken.insert(
        "templates/configmap.yaml".into(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.greeting \n".into(),
    );
    let a = h
        .launch_valid(helm_launch("org/chart#9", &deps), None)
        .await;
    let b = h
        .launch_valid(helm_launch("org/chart#10", &broken), None)
        .await;
    for (id, wanted) in [
        (
            a,
            vec!["depends on redis", "charts/", "helm dependency build"],
        ),
        (
            b,
            vec![
                "helm template of deploy/chart failed",
                "unclosed action",
                "web/templates/configmap.yaml",
            ],
        ),
    ] {
        let job = h.finished(id).await;
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.error_class, Some(ErrorClass::Permanent));
        let error = job.error.unwrap_or_default();
        for w in wanted {
            assert!(error.contains(w), "{w}: {error}");
        }
        assert!(
            !error.contains("slipway-helm-"),
            "no temporary path: {error}"
        );
    }
    assert!(h.preview_namespaces().is_empty());

    // A chart that renders but that the API server refuses (a ConfigMap key that is no config
    // key): the refusal, naming the object and its template, fails the launch for good.
    let mut invalid = chart();
    invalid.insert(
        "templates/configmap.yaml".into(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n           app conf: x\n"
            .into(),
    );
    let c = h
        .launch_valid(helm_launch("org/chart#12", &invalid), None)
        .await;
    let job = h.finished(c).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    let error = job.error.unwrap_or_default();
    for w in [
        "ConfigMap",
        "web-config",
        "422",
        "data[app conf]",
        "rendered from web/templates/configmap.yaml",
    ] {
        assert!(error.contains(w), "{w}: {error}");
    }
    // The environment was applied before the refusal: the preview says it failed.
    assert_eq!(h.preview("org/chart#12").await.status, "failed");
    w.stop().await.expect("worker stopped cleanly");
}

/// A launch never undoes a newer launch of the same preview: the chart's workloads carry the
/// newer job's id, and the older launch, run after it, gives way without applying anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_launch_of_a_chart_gives_way_to_a_newer_one() {
    use slipway_core::JobKind;
    use slipway_shared::store::NewJob;
    let Some(helm) = helm() else { return };
    let h = Harness::new(sim()).await;
    let key = "org/chart#11";
    // The older job is recorded first (job ids are time-ordered) but queued last.
    let mut older = NewJob::new(JobKind::Launch, helm_launch(key, &chart()));
    older.preview = Some(key.to_owned());
    let older = h.store.insert_job(older).await.unwrap().job.id;
    let w = worker(&h, &helm).await;
    let newer = h.launch_valid(helm_launch(key, &chart()), None).await;
    assert_eq!(h.finished(newer).await.state, JobState::Succeeded);
    h.queue.push(JobKind::Launch, older, 3).await.unwrap();
    h.store.mark_enqueued(older).await.unwrap();
    let job = h.finished(older).await;
    assert_eq!(job.state, JobState::Failed, "{:?}", job.error);
    assert_eq!(job.error_class, Some(ErrorClass::Permanent));
    assert!(
        job.error
            .as_deref()
            .unwrap_or_default()
            .contains(&newer.to_string()),
        "{:?}",
        job.error
    );
    let ns = preview_namespace(key);
    for (plural, name) in [("deployments", "web"), ("configmaps", "web-config")] {
        let o = h.sim.object(plural, &ns, name).unwrap();
        assert_eq!(
            o["metadata"]["labels"]["slipway.dev/job-id"],
            newer.to_string(),
            "{plural} {name} stays the newer launch's"
        );
    }
    assert_eq!(h.preview(key).await.status, "ready");
    w.stop().await.expect("worker stopped cleanly");
}
