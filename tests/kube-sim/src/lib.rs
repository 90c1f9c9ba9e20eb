//! Kubernetes API simulator for Slipway's tests.
//!
//! [`KubeSim`] serves a faithful subset of the Kubernetes API over plain HTTP on loopback, with
//! the controllers and kubelet behaviour Slipway depends on (Jobs, Deployments, ReplicaSets,
//! namespaces, garbage collection, pod lifecycles and logs), and refuses what a real cluster
//! refuses: Pod Security admission ([`podsecurity`]), the kubelet's `runAsNonRoot` check against
//! images' users, and optionally cert-manager's HTTP-01 issuance behind NetworkPolicies
//! ([`model`], [`netpol`]). Tests script pods, inject faults
//! and read recorded requests; `kube::Client` and `kubectl` talk to it like to a real cluster.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::SimError> {
//! use kube_sim::{Delays, KubeSim, PodScript};
//! let sim = KubeSim::builder()
//!     .delays(Delays::zero())
//!     .script(|pod| PodScript::succeed().log(format!("hello from {}", pod.name)))
//!     .start()
//!     .await?;
//! let client = sim.client()?;
//! # let _ = client; Ok(()) }
//! ```

pub mod apiversion;
pub mod bench;
pub mod buildkit;
mod core;
pub mod defaults;
pub mod dockerfile;
pub mod error;
pub mod faults;
pub mod git;
pub mod hostrun;
pub mod kinds;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod netpol;
pub mod patch;
pub mod podsecurity;
pub mod protobuf;
pub mod script;
pub mod selector;
mod server;
pub mod store;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use crate::apiversion::KubeVersion;
pub use crate::buildkit::BuildFault;
pub use crate::error::{ApiError, SimError};
pub use crate::faults::{FaultAction, FaultRule, Faults, RecordedRequest, Recorder};
pub use crate::model::{CertManagerModel, ClusterModel};
pub use crate::script::{Delays, LogLine, Outcome, Override, PodInfo, PodScript, build_digest};
pub use crate::store::{EventType, Store};

use crate::core::Core;

/// Configures and starts a [`KubeSim`].
pub struct KubeSimBuilder {
    delays: Delays,
    script: Option<script::Script>,
    history_limit: usize,
    port: u16,
    kubeconfig: Option<PathBuf>,
    namespaces: Vec<String>,
    events: bool,
    model: ClusterModel,
    forced_ns_labels: Vec<(String, String)>,
    kube_version: KubeVersion,
    log_rotate_bytes: usize,
    metrics_server: metrics::MetricsServer,
    trusted_ca: Option<PathBuf>,
}

impl KubeSimBuilder {
    /// Sets the timing knobs (default: [`Delays::default`]).
    #[must_use]
    pub fn delays(mut self, d: Delays) -> Self {
        self.delays = d;
        self
    }

    /// Scripts every pod's life (default: [`PodScript::default_for`]).
    #[must_use]
    pub fn script(mut self, f: impl Fn(&PodInfo) -> PodScript + Send + Sync + 'static) -> Self {
        self.script = Some(Arc::new(f));
        self
    }

    /// How many events watches can replay (older resourceVersions get 410 Expired).
    #[must_use]
    pub fn history_limit(mut self, n: usize) -> Self {
        self.history_limit = n;
        self
    }

    /// Port on 127.0.0.1 (default 0: any free port).
    #[must_use]
    pub fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }

    /// Creates this namespace at start (besides `default`, `kube-system`, `kube-public`).
    #[must_use]
    pub fn namespace(mut self, name: impl Into<String>) -> Self {
        self.namespaces.push(name.into());
        self
    }

    /// The Kubernetes version to play (default 1.33): `/version` reports it, and writes lose
    /// the fields an apiserver of that version does not know, with a `Warning` header
    /// ([`apiversion`]).
    #[must_use]
    pub fn kube_version(mut self, v: KubeVersion) -> Self {
        self.kube_version = v;
        self
    }

    /// Whether the kubelet and controllers record core/v1 Events (default true).
    #[must_use]
    pub fn events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }

    /// Declares the `USER` of images whose reference contains `contains` (e.g. `"1000"`,
    /// `"app"`). Without a rule an image runs as root, except `nonroot` images (65532).
    #[must_use]
    pub fn image_user(mut self, contains: impl Into<String>, user: impl Into<String>) -> Self {
        self.model.image_users.push((contains.into(), user.into()));
        self
    }

    /// Installs the cert-manager model (off by default): per-Ingress certificates issued
    /// through ACME HTTP-01 when the ingress controller can reach the solver pod.
    #[must_use]
    pub fn cert_manager(mut self, m: CertManagerModel) -> Self {
        self.model.cert_manager = Some(m);
        self
    }

    /// A mutating admission policy that sets this label on every namespace (e.g.
    /// `pod-security.kubernetes.io/enforce=restricted` enforced cluster-wide by Kyverno).
    #[must_use]
    pub fn force_namespace_label(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.forced_ns_labels.push((key.into(), value.into()));
        self
    }

    /// Rotate a container's current log file once it holds this many bytes (default 10 MiB,
    /// the kubelet's `containerLogMaxSize`; 0: never). Log requests made after a rotation see
    /// only the current file; follows already open keep reading.
    #[must_use]
    pub fn log_rotate_bytes(mut self, bytes: usize) -> Self {
        self.log_rotate_bytes = bytes;
        self
    }

    /// Installs metrics-server (default [`metrics::MetricsServer::Absent`], as on minikube
    /// without its addon): `metrics.k8s.io/v1beta1` PodMetrics of running pods.
    #[must_use]
    pub fn metrics_server(mut self, m: metrics::MetricsServer) -> Self {
        self.metrics_server = m;
        self
    }

    /// A CA certificate (PEM file) the simulated cluster's nodes trust besides the usual
    /// roots, e.g. [`git::GitServer::ca_pem_path`]: containers the kubelet runs on the host
    /// (the source Job, [`hostrun`]) get the host's CA bundle plus this CA as `GIT_SSL_CAINFO`.
    #[must_use]
    pub fn trusted_ca(mut self, pem: impl Into<PathBuf>) -> Self {
        self.trusted_ca = Some(pem.into());
        self
    }

    /// Where to write the kubeconfig (default: a temporary file removed on drop).
    #[must_use]
    pub fn kubeconfig_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(p.into());
        self
    }

    /// Binds, starts the server and controllers, creates the `default` and `kube-system`
    /// namespaces and a node, and writes the kubeconfig.
    pub async fn start(self) -> Result<KubeSim, SimError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        let addr = listener.local_addr()?;
        let core = Arc::new(Core {
            store: Store::new(self.history_limit),
            logs: logs::Logs::new(Some(self.log_rotate_bytes)),
            delays: self.delays,
            script: self.script,
            overrides: Mutex::new(Vec::new()),
            faults: Faults::default(),
            recorder: Recorder::default(),
            events: self.events,
            model: self.model,
            shutdown: CancellationToken::new(),
            kube_version: self.kube_version,
            metrics: metrics::MetricsModel::new(self.metrics_server),
            trusted_ca: self.trusted_ca,
        });
        core.store.force_namespace_labels(self.forced_ns_labels);
        core.store.set_kube_minor(self.kube_version.minor);
        let extra = self.namespaces.iter().map(String::as_str);
        for ns in ["default", "kube-system", "kube-public"]
            .into_iter()
            .chain(extra)
        {
            let obj = json!({"metadata": {"name": ns}});
            match core.store.create(kinds::idx::namespaces(), "", obj, None) {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        core.store.create(
            kinds::by_plural("nodes"),
            "",
            json!({"metadata": {"name": "kube-sim-node", "labels": {"kubernetes.io/hostname": "kube-sim-node"}}}),
            None,
        )?;
        let _ = core.store.mutate(kinds::by_plural("nodes"), "", "kube-sim-node", store::Part::Status, |n| {
            n["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.10"}],
                "nodeInfo": {"kubeletVersion": format!("v{}.0-kube-sim", self.kube_version), "architecture": "amd64", "operatingSystem": "linux",
                    "bootID": "", "containerRuntimeVersion": "containerd://2.0.0", "kernelVersion": "6.1.0",
                    "kubeProxyVersion": "", "machineID": "", "osImage": "kube-sim", "systemUUID": ""}});
        });
        let ctl = tokio::spawn(core.clone().run_controllers());
        let router = server::router(core.clone());
        let token = core.shutdown.clone();
        let srv = tokio::spawn(async move {
            use axum::serve::ListenerExt as _;
            // Streams (watch events, followed logs) are many small writes: no Nagle delays.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        let url = format!("http://{addr}");
        let (kubeconfig, tmp) = match self.kubeconfig {
            Some(p) => (p, None),
            None => {
                let dir = tempfile::tempdir()?;
                (dir.path().join("kubeconfig"), Some(dir))
            }
        };
        std::fs::write(&kubeconfig, kubeconfig_yaml(&url))?;
        Ok(KubeSim {
            core,
            addr,
            url,
            kubeconfig,
            _tmp: tmp,
            tasks: vec![ctl, srv],
        })
    }
}

/// Where a test's Kubernetes comes from: a real cluster when `SLIPWAY_REAL_CLUSTER=1` (through
/// `KUBECONFIG`, e.g. minikube), else a fresh simulator. Tests that need scripts, faults or
/// recorded requests use [`TestCluster::sim`] and skip themselves on a real cluster.
pub enum TestCluster {
    /// A real cluster reached through `KUBECONFIG`.
    Real(kube::Client),
    /// The simulator.
    Sim(KubeSim),
}

impl TestCluster {
    /// Connects to the real cluster or starts a simulator with `builder`.
    pub async fn from_env(builder: KubeSimBuilder) -> Result<Self, SimError> {
        if std::env::var("SLIPWAY_REAL_CLUSTER").is_ok_and(|v| v == "1") {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| SimError::Kube(e.to_string()))?;
            Ok(Self::Real(client))
        } else {
            Ok(Self::Sim(builder.start().await?))
        }
    }

    /// A client for whichever cluster this is.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        match self {
            Self::Real(c) => Ok(c.clone()),
            Self::Sim(s) => s.client(),
        }
    }

    /// The simulator, if this is one.
    #[must_use]
    pub fn sim(&self) -> Option<&KubeSim> {
        match self {
            Self::Real(_) => None,
            Self::Sim(s) => Some(s),
        }
    }
}

/// The kubeconfig pointing at `url` with a dummy token.
#[must_use]
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\nusers:\n- name: kube-sim\n  user:\n    token: kube-sim\n"
    )
}

/// A running simulator. Dropping it stops the server and every background task.
pub struct KubeSim {
    core: Arc<Core>,
    addr: SocketAddr,
    url: String,
    kubeconfig: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl KubeSim {
    /// A builder with default settings.
    #[must_use]
    pub fn builder() -> KubeSimBuilder {
        KubeSimBuilder {
            delays: Delays::default(),
            script: None,
            history_limit: 20_000,
            port: 0,
            kubeconfig: None,
            namespaces: Vec::new(),
            events: true,
            model: ClusterModel::default(),
            forced_ns_labels: Vec::new(),
            kube_version: KubeVersion::default(),
            log_rotate_bytes: logs::DEFAULT_ROTATE_BYTES,
            metrics_server: metrics::MetricsServer::default(),
            trusted_ca: None,
        }
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kubeconfig file (context `kube-sim`, namespace `default`).
    #[must_use]
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A `kube::Config` for the simulator (default namespace `default`), to adjust before
    /// building a client (e.g. `default_retry = false` to see 429/503 faults directly).
    pub fn config(&self) -> Result<kube::Config, SimError> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| SimError::Kube(e.to_string()))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        Ok(config)
    }

    /// A `kube::Client` for the simulator. Note that kube's default client retries 429, 503
    /// and 504 (honouring `Retry-After`), as it does against a real cluster.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        kube::Client::try_from(self.config()?).map_err(|e| SimError::Kube(e.to_string()))
    }

    /// A `kube::Client` without kube's automatic retries.
    pub fn client_without_retries(&self) -> Result<kube::Client, SimError> {
        let mut config = self.config()?;
        config.default_retry = false;
        kube::Client::try_from(config).map_err(|e| SimError::Kube(e.to_string()))
    }

    /// The fault rules (add or clear).
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.core.faults
    }

    /// Installs, stops or removes metrics-server.
    pub fn set_metrics_server(&self, m: metrics::MetricsServer) {
        self.core.metrics.set_server(m);
    }

    /// Every container of every running pod in `namespace` reports this usage to
    /// metrics-server (instead of its default share of its requests).
    pub fn set_pod_usage(&self, namespace: &str, cpu_millis: u64, memory_bytes: u64) {
        self.core.metrics.set_usage(
            namespace,
            metrics::Usage {
                cpu_millis,
                memory_bytes,
            },
        );
    }

    /// Every request served so far.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.core.recorder.all()
    }

    /// The request recorder (e.g. to clear it).
    #[must_use]
    pub fn recorder(&self) -> &Recorder {
        &self.core.recorder
    }

    /// The object store, to read (or seed) objects directly.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.core.store
    }

    /// The timing knobs in effect.
    #[must_use]
    pub fn delays(&self) -> Delays {
        self.core.delays
    }

    /// Queues a one-off override for the next matching pods.
    pub fn push_override(&self, o: Override) {
        self.core
            .overrides
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(o);
    }

    /// A stored object by resource plural (`pods`, `jobs`, ...), namespace and name.
    #[must_use]
    pub fn object(&self, plural: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let kind = kinds::KINDS.iter().position(|k| k.plural == plural)?;
        self.core.store.get(kind, ns, name).ok()
    }

    /// Typed read of a stored object.
    pub fn get<K>(&self, ns: &str, name: &str) -> Option<K>
    where
        K: k8s_openapi::Resource + serde::de::DeserializeOwned,
    {
        let kind = kinds::find_by_kind(K::API_VERSION, K::KIND)?;
        let v = self.core.store.get(kind, ns, name).ok()?;
        serde_json::from_value((*v).clone()).ok()
    }

    /// Every stored object of a plural, optionally in one namespace.
    #[must_use]
    pub fn objects(&self, plural: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        kinds::KINDS
            .iter()
            .position(|k| k.plural == plural)
            .map(|kind| self.core.store.all(kind, ns))
            .unwrap_or_default()
    }

    /// Every log line a pod's container wrote (first container when None), rotated files
    /// included.
    #[must_use]
    pub fn pod_logs(&self, ns: &str, pod: &str, container: Option<&str>) -> Vec<String> {
        self.log_buf(ns, pod, container)
            .map(|b| b.lines_from(0).into_iter().map(|(_, l)| l).collect())
            .unwrap_or_default()
    }

    /// The lines of a pod container's current log file (first container when None): what a
    /// log request sees now, after any rotation. [`KubeSim::pod_logs`] has every line.
    #[must_use]
    pub fn pod_log_file(&self, ns: &str, pod: &str, container: Option<&str>) -> Vec<String> {
        self.log_buf(ns, pod, container)
            .map(|b| b.current_file().1.into_iter().map(|(_, l)| l).collect())
            .unwrap_or_default()
    }

    fn log_buf(&self, ns: &str, pod: &str, container: Option<&str>) -> Option<Arc<logs::LogBuf>> {
        let p = self.object("pods", ns, pod)?;
        let uid = p.pointer("/metadata/uid").and_then(Value::as_str)?;
        let c = container
            .map(String::from)
            .or_else(|| {
                p.pointer("/spec/containers/0/name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_default();
        self.core.logs.get(uid, &c)
    }

    /// Waits until `cond` holds over the store, re-checking on every change.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Store) -> bool,
    ) -> Result<(), SimError> {
        let mut rx = self.core.store.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(&self.core.store) {
                return Ok(());
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(SimError::Timeout(what.into())) },
                // Time-based conditions (and lost wakeups) are re-checked periodically.
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = tokio::time::sleep_until(deadline) => return Err(SimError::Timeout(what.into())),
            }
        }
    }

    /// Waits until the object exists and satisfies `pred`; returns it.
    pub async fn wait_for_object(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Arc<Value>, SimError> {
        let what = format!("{plural} {ns}/{name}");
        self.wait_for(&what, timeout, |_| {
            self.object(plural, ns, name).is_some_and(|o| pred(&o))
        })
        .await?;
        self.object(plural, ns, name).ok_or(SimError::Timeout(what))
    }

    /// Waits until the object no longer exists.
    pub async fn wait_for_gone(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), SimError> {
        self.wait_for(&format!("{plural} {ns}/{name} gone"), timeout, |_| {
            self.object(plural, ns, name).is_none()
        })
        .await
    }

    /// Waits until at least `n` recorded requests satisfy `pred`.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&RecordedRequest) -> bool,
    ) -> Result<Vec<RecordedRequest>, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let hits: Vec<RecordedRequest> =
                self.requests().into_iter().filter(|r| pred(r)).collect();
            if hits.len() >= n {
                return Ok(hits);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SimError::Timeout(format!("{n} matching requests")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server, streams and controllers.
    pub async fn shutdown(mut self) {
        self.core.shutdown.cancel();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.core.shutdown.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}
