//! The simulator's shared state and its background behaviour: the kubelet (pod lifecycles from
//! scripts), the Job, Deployment, ReplicaSet and Namespace controllers, and the garbage collector.
//! One task consumes the store's event history in order; pods run in their own tasks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::faults::{Faults, Recorder};
use crate::kinds::{KINDS, idx};
use crate::logs::Logs;
use crate::script::{Delays, Outcome, Override, PodInfo, PodScript, Script};
mod statefulset;

use crate::store::{
    DeleteOpts, EventType, Part, Propagation, Store, now_rfc3339, owner_refs, random_suffix,
};

/// Everything the server, controllers and handles share.
pub struct Core {
    /// Objects and history.
    pub store: Store,
    /// Container logs.
    pub logs: Logs,
    /// Timing.
    pub delays: Delays,
    /// The test's script, if any.
    pub script: Option<Script>,
    /// Queued one-off overrides.
    pub overrides: Mutex<Vec<Override>>,
    /// Fault rules.
    pub faults: Faults,
    /// Request log.
    pub recorder: Recorder,
    /// Whether controllers and the kubelet record core/v1 Events.
    pub events: bool,
    /// Images' users and the optional cert-manager model.
    pub model: crate::model::ClusterModel,
    /// Cancelled when the simulator shuts down; ends streams and background tasks.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The Kubernetes version played (`/version`, fields an older apiserver drops).
    pub kube_version: crate::apiversion::KubeVersion,
    /// metrics-server, if installed.
    pub metrics: crate::metrics::MetricsModel,
    /// A CA certificate (PEM) the simulated cluster's nodes trust besides the usual roots:
    /// containers run on the host get it as `GIT_SSL_CAINFO` ([`crate::hostrun`]).
    pub trusted_ca: Option<std::path::PathBuf>,
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or_default()
}

fn controller_uid(v: &Value) -> Option<String> {
    owner_refs(v)
        .into_iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid").and_then(Value::as_str).map(String::from))
}

fn owner_of_kind(v: &Value, kind: &str) -> Option<String> {
    owner_refs(v)
        .into_iter()
        .find(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .and_then(|r| r.get("name").and_then(Value::as_str).map(String::from))
}

fn condition(ty: &str, status: bool, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    json!({"type": ty, "status": if status { "True" } else { "False" }, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now})
}

fn has_condition(v: &Value, ty: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(ty) && c["status"] == "True")
        })
}

fn pod_ready(p: &Value) -> bool {
    has_condition(p, "Ready")
}

fn pod_terminal(p: &Value) -> bool {
    matches!(s(p, "/status/phase"), "Succeeded" | "Failed")
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

/// Sets or replaces a condition, keeping `lastTransitionTime` when the status is unchanged.
fn set_condition(obj: &mut Value, cond: Value, probe: bool) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let conds = obj["status"]
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else {
        return;
    };
    let mut cond = cond;
    if !probe && let Some(m) = cond.as_object_mut() {
        m.remove("lastProbeTime");
    }
    match conds.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(existing) => {
            if existing["status"] == cond["status"]
                && existing["reason"] == cond["reason"]
                && existing["message"] == cond["message"]
            {
                return;
            }
            if existing["status"] == cond["status"] {
                cond["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = cond;
        }
        None => conds.push(cond),
    }
}

/// In-memory controller bookkeeping (the real controllers keep this in their caches too).
#[derive(Default)]
struct CtlState {
    job_started: HashMap<String, Instant>,
    job_finished: HashMap<String, Instant>,
    job_next_pod: HashMap<String, Instant>,
    deploy_progress: HashMap<String, (Instant, i64)>,
    foreground: HashSet<(usize, String, String)>,
    terminating_ns: HashSet<String>,
    pods_running: HashSet<String>,
    /// Jobs with time-based work pending (deadline, retry backoff, TTL): uid -> (ns, name).
    timed_jobs: HashMap<String, (String, String)>,
    /// Deployments still progressing: uid -> (ns, name).
    deploy_keys: HashMap<String, (String, String)>,
    /// ReplicaSets whose pod creation failed, retried after a pause: uid -> (ns, name, when).
    rs_retry: HashMap<String, (String, String, Instant)>,
    /// StatefulSets to sync again at a time (failed creates, minReadySeconds): uid -> (ns,
    /// name, when).
    sts_retry: HashMap<String, (String, String, Instant)>,
    /// StatefulSet revisions' templates (the ControllerRevisions): "ns/revision" -> template.
    sts_revisions: HashMap<String, Value>,
    /// When each StatefulSet pod was first seen Running and Ready (minReadySeconds).
    sts_ready_since: HashMap<String, Instant>,
    /// Claims the PersistentVolume controller has looked at.
    claims_seen: HashSet<String>,
    /// Claims being provisioned: uid -> (ns, name, bound at).
    claims_pending: HashMap<String, (String, String, Instant)>,
    /// Certificates of the cert-manager model still being issued: (ns, name).
    pending_certs: HashSet<(String, String)>,
}

impl Core {
    /// Records a core/v1 Event about `obj` (best effort, like the real recorders).
    fn event(&self, obj: &Value, etype: &str, reason: &str, message: &str, component: &str) {
        let ns = s(obj, "/metadata/namespace");
        if !self.events || ns.is_empty() {
            return;
        }
        let name = s(obj, "/metadata/name");
        let now = now_rfc3339();
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(16)
            .collect();
        let kubelet = component == "kubelet";
        let ev = json!({
            "metadata": {"name": format!("{name}.{suffix}")},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name, "namespace": ns,
                "uid": s(obj, "/metadata/uid"), "resourceVersion": s(obj, "/metadata/resourceVersion")},
            "reason": reason,
            "message": message,
            "type": etype,
            "source": if kubelet { json!({"component": component, "host": "kube-sim-node"}) } else { json!({"component": component}) },
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": if kubelet { "kube-sim-node" } else { "" },
        });
        let _ = self.store.create(idx::events(), ns, ev, None);
    }

    /// Records a repeated core/v1 Event the way client-go's event correlator does
    /// (`staging/src/k8s.io/client-go/tools/record/events_cache.go`, `eventLogger`): an Event
    /// identical to an earlier one (same object, type, reason, message and source) bumps that
    /// Event's `count` and `lastTimestamp` instead of creating another.
    fn event_repeated(
        &self,
        obj: &Value,
        etype: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let ns = s(obj, "/metadata/namespace");
        if !self.events || ns.is_empty() {
            return;
        }
        let uid = s(obj, "/metadata/uid");
        let same = self
            .store
            .all(idx::events(), Some(ns))
            .into_iter()
            .find(|e| {
                s(e, "/involvedObject/uid") == uid
                    && s(e, "/type") == etype
                    && s(e, "/reason") == reason
                    && s(e, "/message") == message
                    && s(e, "/source/component") == component
            });
        match same {
            Some(e) => {
                let _ = self.store.mutate(
                    idx::events(),
                    ns,
                    s(&e, "/metadata/name"),
                    Part::Main,
                    |e| {
                        let count = i(e, "/count").max(1) + 1;
                        e["count"] = json!(count);
                        e["lastTimestamp"] = json!(now_rfc3339());
                    },
                );
            }
            None => self.event(obj, etype, reason, message, component),
        }
    }

    /// Why each Secret or ConfigMap volume of a pod cannot be set up, as `(volume, error)`:
    /// the object is missing (`secret "x" not found`, from the kubelet's secret manager) or
    /// lacks a key the volume lists (`references non-existent secret key: k`). Volumes marked
    /// `optional: true` never fail (`pkg/volume/secret/secret.go` and
    /// `pkg/volume/configmap/configmap.go`, `SetUpAt` and `MakePayload`).
    fn mount_failures(&self, pod: &Value, ns: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let volumes = pod.pointer("/spec/volumes").and_then(Value::as_array);
        for v in volumes.into_iter().flatten() {
            let (source, plural, what, key_error) = if let Some(src) = v.get("secret") {
                (
                    src,
                    "secrets",
                    "secret",
                    "references non-existent secret key",
                )
            } else if let Some(src) = v.get("configMap") {
                (
                    src,
                    "configmaps",
                    "configmap",
                    "configmap references non-existent config key",
                )
            } else {
                continue;
            };
            if source.get("optional").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = s(
                source,
                if what == "secret" {
                    "/secretName"
                } else {
                    "/name"
                },
            );
            let vol = s(v, "/name").to_string();
            let Ok(obj) = self.store.get(crate::kinds::by_plural(plural), ns, name) else {
                out.push((vol, format!("{what} \"{name}\" not found")));
                continue;
            };
            let items = source.get("items").and_then(Value::as_array);
            let has = |k: &str| {
                ["/data", "/stringData", "/binaryData"]
                    .iter()
                    .any(|p| obj.pointer(p).and_then(|d| d.get(k)).is_some())
            };
            if let Some(key) = items
                .into_iter()
                .flatten()
                .map(|it| s(it, "/key"))
                .find(|k| !has(k))
            {
                out.push((vol, format!("{key_error}: {key}")));
            }
        }
        out
    }

    /// The kubelet mounts a pod's volumes before it pulls images or starts containers
    /// (`WaitForAttachAndMount`). A failed `MountVolume.SetUp` is recorded as a `FailedMount`
    /// Warning (`pkg/volume/util/operationexecutor/operation_generator.go`, message built by
    /// `generateVolumeMsg` in `operation_executor.go`) and retried with exponential back-off,
    /// 0.5 s doubling up to 2 min 2 s (`pkg/util/goroutinemap/exponentialbackoff`), scaled by
    /// `time_scale`; the pod stays Pending in ContainerCreating until every mount succeeds, and
    /// starts once the missing object appears. Returns false when the pod went away (or the
    /// simulator stopped) meanwhile.
    async fn mount_volumes(&self, pod: &Value, ns: &str, name: &str, uid: &str) -> bool {
        let mut backoff = 0.5f64;
        loop {
            let failures = self.mount_failures(pod, ns);
            if failures.is_empty() {
                return true;
            }
            for (vol, err) in &failures {
                self.event_repeated(
                    pod,
                    "Warning",
                    "FailedMount",
                    &format!("MountVolume.SetUp failed for volume \"{vol}\" : {err}"),
                    "kubelet",
                );
            }
            tokio::select! {
                () = tokio::time::sleep(self.delays.scaled(backoff)) => {}
                () = self.shutdown.cancelled() => return false,
            }
            if !self.alive(ns, name, uid) {
                return false;
            }
            backoff = (backoff * 2.0).min(122.0);
        }
    }

    /// The script for a new pod: queued override, else the test's script, else the default; a
    /// BuildKit contract script is run against the pod's command here.
    fn script_for(&self, info: &PodInfo) -> PodScript {
        let s = self.chosen_script(info);
        match s.buildkit {
            Some(fault) => {
                let run = crate::buildkit::run(info, &self.delays, fault);
                PodScript {
                    start_delay: s.start_delay.max(run.start_delay),
                    ..run
                }
            }
            None => s,
        }
    }

    fn chosen_script(&self, info: &PodInfo) -> PodScript {
        {
            let mut g = self
                .overrides
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(pos) = g
                .iter()
                .position(|o| o.count > 0 && info.image.contains(&o.image_contains))
            {
                let o = &mut g[pos];
                o.count -= 1;
                let script = o.script.clone();
                if o.count == 0 {
                    g.remove(pos);
                }
                return script;
            }
        }
        match &self.script {
            Some(f) => f(info),
            None => PodScript::default_for(info, &self.delays),
        }
    }

    /// Runs the controllers until the process ends.
    pub async fn run_controllers(self: Arc<Self>) {
        let mut st = CtlState::default();
        let mut rx = self.store.subscribe();
        let mut cursor = self.store.resource_version();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match self.store.events_since(cursor) {
                Ok(events) => {
                    for ev in events {
                        cursor = ev.rv;
                        // A bug in one reconcile must not stop every controller: log and go on.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.on_event(
                                &mut st,
                                ev.kind,
                                ev.etype,
                                &ev.object,
                                ev.old.as_deref(),
                            );
                        }));
                        if r.is_err() {
                            tracing::error!(rv = ev.rv, "kube-sim controller panicked on an event");
                        }
                    }
                }
                Err(_) => {
                    // The controllers fell behind the history: resync everything.
                    cursor = self.store.resource_version();
                    self.resync(&mut st);
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tick.tick() => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.on_tick(&mut st)));
                    if r.is_err() {
                        tracing::error!("kube-sim controller panicked on a tick");
                    }
                }
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    fn resync(self: &Arc<Self>, st: &mut CtlState) {
        for kind in [
            idx::namespaces(),
            idx::pods(),
            idx::jobs(),
            idx::replicasets(),
            idx::deployments(),
            statefulset::statefulsets(),
            statefulset::claims(),
        ] {
            for o in self.store.all(kind, None) {
                self.on_event(st, kind, EventType::Modified, &o, None);
            }
        }
    }

    fn on_event(
        self: &Arc<Self>,
        st: &mut CtlState,
        kind: usize,
        et: EventType,
        obj: &Value,
        old: Option<&Value>,
    ) {
        let ns = s(obj, "/metadata/namespace").to_string();
        let name = s(obj, "/metadata/name").to_string();
        let uid = s(obj, "/metadata/uid").to_string();
        if et == EventType::Deleted {
            self.collect_dependents(&uid);
            for r in owner_refs(obj) {
                self.check_foreground(st, r.get("uid").and_then(Value::as_str).unwrap_or_default());
            }
            if kind == idx::pods() {
                st.pods_running.remove(&uid);
                self.logs.drop_pod(&uid);
            }
            if kind == statefulset::claims() {
                st.claims_seen.remove(&uid);
                st.claims_pending.remove(&uid);
            }
            if kind == statefulset::statefulsets() {
                st.sts_retry.remove(&uid);
            }
            if kind == idx::pods() {
                st.sts_ready_since.remove(&uid);
            }
            if kind == idx::jobs() {
                st.job_started.remove(&uid);
                st.job_finished.remove(&uid);
                st.timed_jobs.remove(&uid);
                st.job_next_pod.remove(&uid);
            }
            if KINDS[kind].namespaced && st.terminating_ns.contains(&ns) {
                self.reconcile_namespace(st, &ns);
            }
        }
        if deleting(obj)
            && obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|f| f == "foregroundDeletion"))
        {
            st.foreground.insert((kind, ns.clone(), name.clone()));
            self.check_foreground(st, &uid);
        }
        if kind == idx::pods() || kind == crate::kinds::by_plural("resourcequotas") {
            self.reconcile_quotas(&ns);
        }
        if kind == idx::pods() {
            if et != EventType::Deleted && !st.pods_running.contains(&uid) && !deleting(obj) {
                st.pods_running.insert(uid.clone());
                tokio::spawn(self.clone().run_pod(ns.clone(), name.clone(), uid.clone()));
            }
            if et == EventType::Modified && deleting(obj) && !old.is_some_and(deleting) {
                let grace = i(obj, "/metadata/deletionGracePeriodSeconds");
                let wait = self.delays.scaled(grace as f64);
                let core = self.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = core.shutdown.cancelled() => return,
                    }
                    core.logs.finish_pod(&uid);
                    // The containers are gone; the object goes once its finalizers are removed.
                    let mut changes = core.store.subscribe();
                    loop {
                        match core.store.get(idx::pods(), &ns, &name) {
                            Ok(p) if s(&p, "/metadata/uid") == uid => {
                                let held = p
                                    .pointer("/metadata/finalizers")
                                    .and_then(Value::as_array)
                                    .is_some_and(|a| !a.is_empty());
                                if !held {
                                    core.store.remove(idx::pods(), &ns, &name);
                                    return;
                                }
                            }
                            _ => return,
                        }
                        tokio::select! {
                            r = changes.changed() => if r.is_err() { return },
                            () = core.shutdown.cancelled() => return,
                        }
                    }
                });
                return;
            }
            if let Some(job) = owner_of_kind(obj, "Job") {
                self.reconcile_job(st, &ns, &job);
            }
            if let Some(rs) = owner_of_kind(obj, "ReplicaSet") {
                self.reconcile_rs(st, &ns, &rs);
            }
            if let Some(set) = owner_of_kind(obj, "StatefulSet") {
                self.reconcile_sts(st, &ns, &set);
            }
        } else if kind == statefulset::statefulsets() && et != EventType::Deleted {
            self.reconcile_sts(st, &ns, &name);
        } else if kind == statefulset::claims() && et != EventType::Deleted {
            self.on_claim(st, obj);
        } else if kind == idx::jobs() && et != EventType::Deleted {
            self.reconcile_job(st, &ns, &name);
        } else if kind == idx::replicasets() && et != EventType::Deleted {
            self.reconcile_rs(st, &ns, &name);
        } else if kind == idx::deployments() && et != EventType::Deleted {
            self.reconcile_deployment(st, &ns, &name);
        } else if kind == crate::kinds::by_plural("ingresses") && et != EventType::Deleted {
            self.on_ingress(st, obj);
        } else if kind == idx::namespaces() && et != EventType::Deleted && deleting(obj) {
            st.terminating_ns.insert(name.clone());
            self.reconcile_namespace(st, &name);
        }
    }

    /// The ResourceQuota controller: each quota's `status` from the namespace's pods
    /// ([`crate::metrics::quota_status`]). Unchanged statuses are not written, so its own
    /// writes do not loop.
    fn reconcile_quotas(&self, ns: &str) {
        let quotas = self
            .store
            .all(crate::kinds::by_plural("resourcequotas"), Some(ns));
        if quotas.is_empty() {
            return;
        }
        let pods = self.store.all(idx::pods(), Some(ns));
        for quota in quotas {
            let status = crate::metrics::quota_status(&quota, &pods);
            let name = s(&quota, "/metadata/name");
            let _ = self.store.mutate(
                crate::kinds::by_plural("resourcequotas"),
                ns,
                name,
                Part::Status,
                |q| q["status"] = status,
            );
        }
    }

    fn on_tick(self: &Arc<Self>, st: &mut CtlState) {
        let now = Instant::now();
        let timed: Vec<(String, String, String)> = st
            .timed_jobs
            .iter()
            .map(|(u, (n, m))| (u.clone(), n.clone(), m.clone()))
            .collect();
        for (uid, ns, name) in timed {
            match self.store.get(idx::jobs(), &ns, &name) {
                Ok(j) if s(&j, "/metadata/uid") == uid => {
                    let due = j.pointer("/spec/activeDeadlineSeconds").is_some()
                        || j.pointer("/spec/ttlSecondsAfterFinished").is_some()
                        || st.job_next_pod.get(&uid).is_some_and(|t| *t <= now);
                    if due {
                        self.reconcile_job(st, &ns, &name);
                    }
                }
                _ => {
                    st.timed_jobs.remove(&uid);
                }
            }
        }
        let pending: Vec<(String, String)> = st.deploy_keys.values().cloned().collect();
        for (ns, name) in pending {
            self.reconcile_deployment(st, &ns, &name);
        }
        let due: Vec<(String, String)> = st
            .rs_retry
            .values()
            .filter(|(_, _, at)| *at <= now)
            .map(|(n, m, _)| (n.clone(), m.clone()))
            .collect();
        for (ns, name) in due {
            st.rs_retry.retain(|_, (n, m, _)| !(n == &ns && m == &name));
            self.reconcile_rs(st, &ns, &name);
        }
        let due: Vec<(String, String)> = st
            .sts_retry
            .values()
            .filter(|(_, _, at)| *at <= now)
            .map(|(n, m, _)| (n.clone(), m.clone()))
            .collect();
        for (ns, name) in due {
            st.sts_retry
                .retain(|_, (n, m, _)| !(n == &ns && m == &name));
            self.reconcile_sts(st, &ns, &name);
        }
        self.bind_due_claims(st);
        self.issue_certificates(st);
        for ns in st.terminating_ns.clone() {
            self.reconcile_namespace(st, &ns);
        }
        for (kind, ns, name) in st.foreground.clone() {
            match self.store.get(kind, &ns, &name) {
                Ok(o) => self.check_foreground(st, s(&o, "/metadata/uid")),
                Err(_) => {
                    st.foreground.remove(&(kind, ns, name));
                }
            }
        }
    }

    // ---- cert-manager model (crate::model) ----

    /// ingress-shim: a Certificate per TLS secretName of an annotated Ingress, and the ACME
    /// HTTP-01 solver pods for its hosts.
    fn on_ingress(&self, st: &mut CtlState, ing: &Value) {
        if self.model.cert_manager.is_none() || deleting(ing) {
            return;
        }
        let (issuer, issuer_kind) = match (
            ing.pointer("/metadata/annotations/cert-manager.io~1cluster-issuer")
                .and_then(Value::as_str),
            ing.pointer("/metadata/annotations/cert-manager.io~1issuer")
                .and_then(Value::as_str),
        ) {
            (Some(i), _) => (i, "ClusterIssuer"),
            (None, Some(i)) => (i, "Issuer"),
            (None, None) => return,
        };
        let ns = s(ing, "/metadata/namespace");
        let certs = crate::kinds::by_plural("certificates");
        for tls in ing
            .pointer("/spec/tls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let secret = s(tls, "/secretName");
            let hosts: Vec<String> = tls
                .get("hosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect();
            if secret.is_empty() || hosts.is_empty() || self.store.get(certs, ns, secret).is_ok() {
                continue;
            }
            let cert = json!({
                "metadata": {"name": secret, "namespace": ns,
                    "labels": ing.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
                    "ownerReferences": [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                        "name": s(ing, "/metadata/name"), "uid": s(ing, "/metadata/uid"),
                        "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"dnsNames": hosts, "secretName": secret,
                    "issuerRef": {"name": issuer, "kind": issuer_kind, "group": "cert-manager.io"},
                    "usages": ["digital signature", "key encipherment"]},
            });
            let Ok(created) = self.store.create(certs, ns, cert, None) else {
                continue;
            };
            let _ = self.store.mutate(certs, ns, secret, Part::Status, |c| {
                let now = now_rfc3339();
                c["status"] = json!({"conditions": [
                    {"type": "Ready", "status": "False", "reason": "DoesNotExist",
                     "message": "Issuing certificate as Secret does not exist",
                     "lastTransitionTime": now, "observedGeneration": 1},
                    {"type": "Issuing", "status": "True", "reason": "DoesNotExist",
                     "message": "Issuing certificate as Secret does not exist",
                     "lastTransitionTime": now, "observedGeneration": 1}]});
            });
            self.event(
                ing,
                "Normal",
                "CreateCertificate",
                &format!("Successfully created Certificate \"{secret}\""),
                "cert-manager-ingress-shim",
            );
            for host in &hosts {
                let pod = crate::model::solver_pod(ns, host, &created);
                if let Err(e) = self.store.create(idx::pods(), ns, pod, None) {
                    tracing::debug!(error = %e.message, "kube-sim: the ACME solver pod was refused");
                }
            }
            st.pending_certs
                .insert((ns.to_string(), secret.to_string()));
        }
    }

    /// Issues each pending Certificate whose solver pods run and are reachable from the
    /// ingress controller on TCP 8089 under the namespace's NetworkPolicies.
    fn issue_certificates(&self, st: &mut CtlState) {
        let Some(cm) = &self.model.cert_manager else {
            return;
        };
        // Runs every controller tick: nothing to build while no certificate waits.
        if st.pending_certs.is_empty() {
            return;
        }
        let certs = crate::kinds::by_plural("certificates");
        let policies_kind = crate::kinds::by_plural("networkpolicies");
        let src_ns_labels = self
            .store
            .get(idx::namespaces(), "", &cm.ingress_namespace)
            .ok()
            .and_then(|n| n.pointer("/metadata/labels").cloned())
            .unwrap_or_else(|| json!({"kubernetes.io/metadata.name": cm.ingress_namespace}));
        let src = crate::netpol::Source {
            namespace: cm.ingress_namespace.clone(),
            namespace_labels: src_ns_labels,
            pod_labels: Some(Value::Object(
                cm.ingress_pod_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            )),
            ip: Some(std::net::Ipv4Addr::new(10, 244, 0, 5).into()),
        };
        for (ns, name) in st.pending_certs.clone() {
            let Ok(cert) = self.store.get(certs, &ns, &name) else {
                st.pending_certs.remove(&(ns, name));
                continue;
            };
            let solvers: Vec<Arc<Value>> = self
                .store
                .owned(s(&cert, "/metadata/uid"), idx::pods())
                .into_iter()
                .filter(|p| !deleting(p))
                .collect();
            let policies = self.store.all(policies_kind, Some(&ns));
            let policy_refs: Vec<&Value> = policies.iter().map(AsRef::as_ref).collect();
            let reachable = !solvers.is_empty()
                && solvers.iter().all(|p| {
                    s(p, "/status/phase") == "Running"
                        && crate::netpol::ingress_allowed(&policy_refs, p, &src, 8089, "TCP")
                });
            if !reachable {
                continue;
            }
            let secret = json!({"metadata": {"name": name, "namespace": ns,
                    "annotations": {"cert-manager.io/certificate-name": name,
                        "cert-manager.io/issuer-name": s(&cert, "/spec/issuerRef/name"),
                        "cert-manager.io/issuer-kind": s(&cert, "/spec/issuerRef/kind")}},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t", "tls.key": "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t"}});
            let _ = self
                .store
                .create(crate::kinds::by_plural("secrets"), &ns, secret, None);
            let _ = self.store.mutate(certs, &ns, &name, Part::Status, |c| {
                let now = now_rfc3339();
                c["status"] = json!({"conditions": [
                    {"type": "Ready", "status": "True", "reason": "Ready",
                     "message": "Certificate is up to date and has not expired",
                     "lastTransitionTime": now, "observedGeneration": 1}],
                    "notBefore": now, "revision": 1});
            });
            for p in &solvers {
                let _ = self.store.delete(
                    idx::pods(),
                    &ns,
                    s(p, "/metadata/name"),
                    &DeleteOpts::default(),
                );
            }
            st.pending_certs.remove(&(ns, name));
        }
    }

    // ---- garbage collection ----

    fn collect_dependents(&self, owner_uid: &str) {
        if owner_uid.is_empty() {
            return;
        }
        for (kind, dep) in self.store.dependents(owner_uid) {
            let opts = DeleteOpts {
                propagation: Some(Propagation::Background),
                ..DeleteOpts::default()
            };
            let _ = self.store.delete(
                kind,
                s(&dep, "/metadata/namespace"),
                s(&dep, "/metadata/name"),
                &opts,
            );
        }
    }

    fn check_foreground(&self, st: &mut CtlState, owner_uid: &str) {
        let Some((kind, ns, name)) = st
            .foreground
            .iter()
            .find(|(k, n, nm)| {
                self.store
                    .get(*k, n, nm)
                    .is_ok_and(|o| s(&o, "/metadata/uid") == owner_uid)
            })
            .cloned()
        else {
            return;
        };
        let deps = self.store.dependents(owner_uid);
        if deps.is_empty() {
            st.foreground.remove(&(kind, ns.clone(), name.clone()));
            let _ = self.store.mutate(kind, &ns, &name, Part::Main, |o| {
                if let Some(a) = o
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    a.retain(|f| f != "foregroundDeletion");
                }
            });
        } else {
            for (k, dep) in deps {
                if !deleting(&dep) {
                    let opts = DeleteOpts {
                        propagation: Some(Propagation::Foreground),
                        ..DeleteOpts::default()
                    };
                    let _ = self.store.delete(
                        k,
                        s(&dep, "/metadata/namespace"),
                        s(&dep, "/metadata/name"),
                        &opts,
                    );
                }
            }
        }
    }

    fn reconcile_namespace(&self, st: &mut CtlState, ns: &str) {
        if self.store.get(idx::namespaces(), "", ns).is_err() {
            st.terminating_ns.remove(ns);
            return;
        }
        let content = self.store.in_namespace(ns);
        if content.is_empty() {
            st.terminating_ns.remove(ns);
            self.store.remove(idx::namespaces(), "", ns);
            return;
        }
        for (kind, o) in content {
            if !deleting(&o) {
                let opts = DeleteOpts {
                    propagation: Some(Propagation::Background),
                    ..DeleteOpts::default()
                };
                let _ = self.store.delete(kind, ns, s(&o, "/metadata/name"), &opts);
            }
        }
    }

    // ---- kubelet ----

    fn alive(&self, ns: &str, name: &str, uid: &str) -> bool {
        self.store
            .get(idx::pods(), ns, name)
            .is_ok_and(|p| s(&p, "/metadata/uid") == uid && !deleting(&p))
    }

    fn set_pod_status(&self, ns: &str, name: &str, uid: &str, f: impl FnOnce(&mut Value)) -> bool {
        if !self.alive(ns, name, uid) {
            return false;
        }
        self.store
            .mutate(idx::pods(), ns, name, Part::Status, f)
            .is_ok()
    }

    async fn run_pod(self: Arc<Self>, ns: String, name: String, uid: String) {
        let Ok(pod) = self.store.get(idx::pods(), &ns, &name) else {
            return;
        };
        if s(&pod, "/metadata/uid") != uid
            || s(&pod, "/status/phase") != "Pending"
            || pod.pointer("/spec/nodeName").is_some()
        {
            return;
        }
        let attempt = owner_of_kind(&pod, "Job")
            .and_then(|j| self.store.get(idx::jobs(), &ns, &j).ok())
            .map_or(0, |j| u32::try_from(i(&j, "/status/failed")).unwrap_or(0));
        let info = PodInfo::from_pod(&pod, attempt);
        let script = self.script_for(&info);
        let containers: Vec<(String, String)> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|c| (s(c, "/name").to_string(), s(c, "/image").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let main = containers.first().map(|c| c.0.clone()).unwrap_or_default();
        for (c, _) in &containers {
            let _ = self.logs.buf(&uid, c);
        }
        let now = now_rfc3339();
        if script.outcome == Outcome::Unschedulable {
            self.set_pod_status(&ns, &name, &uid, |p| {
                set_condition(p, condition("PodScheduled", false, "Unschedulable",
                    "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."), true);
            });
            self.event(&pod, "Warning", "FailedScheduling",
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
                "default-scheduler");
            return;
        }
        // VolumeBinding PreFilter: a pod whose claims are missing or unbound is
        // UnschedulableAndUnresolvable; it is retried once its claims are Bound.
        let mut changes = self.store.subscribe();
        let mut reported: Option<String> = None;
        loop {
            let Ok(cur) = self.store.get(idx::pods(), &ns, &name) else {
                return;
            };
            if s(&cur, "/metadata/uid") != uid || deleting(&cur) {
                return;
            }
            let Some(why) = self.unbound_claims(&cur) else {
                break;
            };
            if reported.as_deref() != Some(why.as_str()) {
                // schedule_one.go FitError: "0/N nodes are available: <PreFilter reason>."
                // plus the preemption post-filter's verdict.
                let msg = format!(
                    "0/1 nodes are available: {why}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                );
                self.set_pod_status(&ns, &name, &uid, |p| {
                    set_condition(
                        p,
                        condition("PodScheduled", false, "Unschedulable", &msg),
                        true,
                    );
                });
                self.event(
                    &pod,
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    "default-scheduler",
                );
                reported = Some(why);
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = self.shutdown.cancelled() => return,
            }
        }
        if reported.is_some() {
            self.set_pod_status(&ns, &name, &uid, |p| {
                set_condition(p, condition("PodScheduled", true, "", ""), false);
                clean_conditions(p);
            });
        }
        let _ = self.store.mutate(idx::pods(), &ns, &name, Part::Main, |p| {
            p["spec"]["nodeName"] = json!("kube-sim-node");
        });
        self.event(
            &pod,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {ns}/{name} to kube-sim-node"),
            "default-scheduler",
        );
        let status = |state: Value, ready: bool, started: bool, extra: Option<(&str, Value)>| {
            let cs: Vec<Value> = containers
                .iter()
                .map(|(c, img)| {
                    let mut v = json!({"name": c, "image": img, "imageID": "", "ready": ready, "started": started,
                        "restartCount": 0, "state": state});
                    if ready || started {
                        v["imageID"] = json!(format!("{img}@sha256:{}", hex::encode(Sha256::digest(img.as_bytes()))));
                        v["containerID"] = json!(format!("containerd://{}", hex::encode(Sha256::digest(format!("{uid}{c}").as_bytes()))));
                    }
                    if let Some((k, val)) = &extra {
                        v[*k] = val.clone();
                    }
                    v
                })
                .collect();
            cs
        };
        let creating = status(
            json!({"waiting": {"reason": "ContainerCreating"}}),
            false,
            false,
            None,
        );
        self.set_pod_status(&ns, &name, &uid, |p| {
            p["status"]["hostIP"] = json!("10.0.0.10");
            p["status"]["hostIPs"] = json!([{"ip": "10.0.0.10"}]);
            p["status"]["startTime"] = json!(now);
            p["status"]["containerStatuses"] = json!(creating);
            set_condition(
                p,
                condition("PodReadyToStartContainers", false, "", ""),
                false,
            );
            set_condition(p, condition("Initialized", true, "", ""), false);
            set_condition(
                p,
                condition(
                    "Ready",
                    false,
                    "ContainersNotReady",
                    &format!("containers with unready status: [{main}]"),
                ),
                false,
            );
            set_condition(
                p,
                condition(
                    "ContainersReady",
                    false,
                    "ContainersNotReady",
                    &format!("containers with unready status: [{main}]"),
                ),
                false,
            );
            set_condition(p, condition("PodScheduled", true, "", ""), false);
            clean_conditions(p);
        });
        if !self.mount_volumes(&pod, &ns, &name, &uid).await {
            return;
        }
        tokio::time::sleep(script.start_delay).await;
        if script.outcome == Outcome::ImagePullBackOff {
            let image = containers.first().map(|c| c.1.clone()).unwrap_or_default();
            let pulling = status(
                json!({"waiting": {"reason": "ErrImagePull",
                "message": format!("failed to pull and unpack image \"{image}\": not found")}}),
                false,
                false,
                None,
            );
            self.set_pod_status(&ns, &name, &uid, |p| {
                p["status"]["containerStatuses"] = json!(pulling)
            });
            self.event(
                &pod,
                "Warning",
                "Failed",
                &format!("Failed to pull image \"{image}\": not found"),
                "kubelet",
            );
            tokio::time::sleep(self.delays.pod_start).await;
            let backoff = status(
                json!({"waiting": {"reason": "ImagePullBackOff",
                "message": format!("Back-off pulling image \"{image}\"")}}),
                false,
                false,
                None,
            );
            self.set_pod_status(&ns, &name, &uid, |p| {
                p["status"]["containerStatuses"] = json!(backoff)
            });
            self.event(
                &pod,
                "Normal",
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
                "kubelet",
            );
            return;
        }
        // pkg/kubelet/kuberuntime: the container config is generated (and runAsNonRoot
        // verified against the image's user) before the container is created; a failure
        // leaves it waiting in CreateContainerConfigError with a Warning Failed Event.
        let specs: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let refusal = specs.iter().find_map(|c| {
            let img = s(c, "/image");
            crate::model::verify_run_as_non_root(&pod, c, &self.model.image_user(img))
                .map(|e| (s(c, "/name").to_string(), img.to_string(), e))
        });
        if let Some((cname, img, err)) = refusal {
            self.event(
                &pod,
                "Normal",
                "Pulled",
                &format!("Container image \"{img}\" already present on machine"),
                "kubelet",
            );
            let waiting: Vec<Value> = containers
                .iter()
                .map(|(c, image)| {
                    let state = if *c == cname {
                        json!({"waiting": {"reason": "CreateContainerConfigError", "message": err}})
                    } else {
                        json!({"waiting": {"reason": "ContainerCreating"}})
                    };
                    json!({"name": c, "image": image, "imageID": "", "ready": false,
                        "started": false, "restartCount": 0, "state": state})
                })
                .collect();
            self.set_pod_status(&ns, &name, &uid, |p| {
                p["status"]["containerStatuses"] = json!(waiting);
            });
            self.event(
                &pod,
                "Warning",
                "Failed",
                &format!("Error: {err}"),
                "kubelet",
            );
            return;
        }
        for (c, img) in &containers {
            self.event(
                &pod,
                "Normal",
                "Pulled",
                &format!("Container image \"{img}\" already present on machine"),
                "kubelet",
            );
            self.event(
                &pod,
                "Normal",
                "Created",
                &format!("Created container: {c}"),
                "kubelet",
            );
            self.event(
                &pod,
                "Normal",
                "Started",
                &format!("Started container {c}"),
                "kubelet",
            );
        }
        let started_at = now_rfc3339();
        // Without a readiness probe a running container is Ready at once; with one, only once a
        // probe passes (kubelet `pkg/kubelet/prober/worker.go`: results start as Failure when a
        // probe is set). The simulator cannot probe the app, so a scripted app that runs on
        // passes its probes and one that exits (a crash at start) never does.
        let probed = pod["spec"]["containers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c.get("readinessProbe").is_some()));
        let ready = !probed || script.outcome == Outcome::RunForever;
        let running = status(
            json!({"running": {"startedAt": started_at}}),
            ready,
            true,
            None,
        );
        let ip_n = Sha256::digest(uid.as_bytes());
        let pod_ip = format!("10.244.{}.{}", ip_n[0], ip_n[1].max(2));
        if !self.set_pod_status(&ns, &name, &uid, |p| {
            p["status"]["phase"] = json!("Running");
            p["status"]["podIP"] = json!(pod_ip);
            p["status"]["podIPs"] = json!([{"ip": pod_ip}]);
            p["status"]["containerStatuses"] = json!(running);
            set_condition(
                p,
                condition("PodReadyToStartContainers", true, "", ""),
                false,
            );
            for c in ["Ready", "ContainersReady"] {
                let cond = if ready {
                    condition(c, true, "", "")
                } else {
                    condition(
                        c,
                        false,
                        "ContainersNotReady",
                        &format!("containers with unready status: [{main}]"),
                    )
                };
                set_condition(p, cond, false);
            }
            clean_conditions(p);
        }) {
            return;
        }
        let log = self.logs.buf(&uid, &main);
        // The pod's own deadline (`pkg/kubelet/active_deadline.go`), from its start.
        let pod_failure: Option<(&str, &str)>;
        let (code, reason, log_lines) = if script.host_shell {
            let (end, lines) = self.run_on_host(&pod, &ns, &name, &uid, log.clone()).await;
            match end {
                crate::hostrun::End::Gone => return,
                crate::hostrun::End::Exit(code) => {
                    pod_failure = None;
                    (code, if code == 0 { "Completed" } else { "Error" }, lines)
                }
                crate::hostrun::End::DeadlineExceeded => {
                    pod_failure = Some((
                        "DeadlineExceeded",
                        "Pod was active on the node longer than the specified deadline",
                    ));
                    (137, "Error", lines)
                }
            }
        } else {
            pod_failure = None;
            for line in &script.logs {
                if !line.after.is_zero() {
                    tokio::time::sleep(line.after).await;
                }
                if !self.alive(&ns, &name, &uid) {
                    return;
                }
                log.push(line.text.clone());
            }
            let (code, reason) = match &script.outcome {
                Outcome::RunForever | Outcome::ImagePullBackOff | Outcome::Unschedulable => return,
                Outcome::Exit { code } => (*code, if *code == 0 { "Completed" } else { "Error" }),
                Outcome::OomKilled => (137, "OOMKilled"),
                Outcome::CrashLoopBackOff => (1, "Error"),
            };
            (
                code,
                reason,
                script.logs.iter().map(|l| l.text.clone()).collect(),
            )
        };
        let finished_at = now_rfc3339();
        let mut term = json!({"exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at,
            "containerID": format!("containerd://{}", hex::encode(Sha256::digest(format!("{uid}{main}").as_bytes())))});
        if let Some(m) = crate::buildkit::termination_message(
            script.termination_message.as_deref(),
            s(&pod, "/spec/containers/0/terminationMessagePolicy"),
            code,
            &log_lines,
        ) {
            term["message"] = json!(m);
        }
        for (c, _) in &containers {
            self.logs.buf(&uid, c).finish();
        }
        // With restartPolicy Always (Deployment pods) a container that exits is restarted with
        // back-off rather than ending the pod.
        let always = s(&pod, "/spec/restartPolicy") == "Always";
        if script.outcome == Outcome::CrashLoopBackOff || always {
            self.event(
                &pod,
                "Warning",
                "BackOff",
                &format!("Back-off restarting failed container {main} in pod {name}_{ns}({uid})"),
                "kubelet",
            );
            let waiting = status(
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 10s restarting failed container={main} pod={name}")}}),
                false,
                false,
                Some(("lastState", json!({"terminated": term}))),
            );
            self.set_pod_status(&ns, &name, &uid, |p| {
                let mut waiting = waiting;
                for c in waiting.iter_mut() {
                    c["restartCount"] = json!(1);
                }
                p["status"]["containerStatuses"] = json!(waiting);
                for c in ["Ready", "ContainersReady"] {
                    set_condition(
                        p,
                        condition(
                            c,
                            false,
                            "ContainersNotReady",
                            &format!("containers with unready status: [{main}]"),
                        ),
                        false,
                    );
                }
                clean_conditions(p);
            });
            return;
        }
        let ok = code == 0 && pod_failure.is_none();
        if let Some((reason, message)) = pod_failure {
            // pkg/kubelet/active_deadline.go: the kubelet records it as a Normal Event.
            self.event(&pod, "Normal", reason, message, "kubelet");
        }
        let terminated = status(json!({"terminated": term}), false, false, None);
        self.set_pod_status(&ns, &name, &uid, |p| {
            p["status"]["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
            if let Some((reason, message)) = pod_failure {
                p["status"]["reason"] = json!(reason);
                p["status"]["message"] = json!(message);
            }
            p["status"]["containerStatuses"] = json!(terminated);
            let why = if ok { "PodCompleted" } else { "PodFailed" };
            set_condition(
                p,
                condition("PodReadyToStartContainers", false, "", ""),
                false,
            );
            set_condition(p, condition("Ready", false, why, ""), false);
            set_condition(p, condition("ContainersReady", false, why, ""), false);
            clean_conditions(p);
        });
    }

    /// Runs the pod's first container on the host ([`crate::hostrun`]) until it exits, the pod
    /// goes away or its `activeDeadlineSeconds` (scaled, counted from now: the container
    /// started moments ago) passes.
    async fn run_on_host(
        &self,
        pod: &Value,
        ns: &str,
        name: &str,
        uid: &str,
        log: Arc<crate::logs::LogBuf>,
    ) -> (crate::hostrun::End, Vec<String>) {
        let object = |plural: &str, obj: &str| {
            self.store
                .get(crate::kinds::by_plural(plural), ns, obj)
                .ok()
                .map(|o| (*o).clone())
        };
        let prepared = match crate::hostrun::prepare(pod, object, self.trusted_ca.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                log.push(e.clone());
                return (crate::hostrun::End::Exit(128), vec![e]);
            }
        };
        let deadline = pod
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_f64)
            .map(|s| Instant::now() + self.delays.scaled(s));
        crate::hostrun::run(
            prepared,
            log,
            deadline,
            || self.alive(ns, name, uid),
            || {
                let grace = self
                    .store
                    .get(idx::pods(), ns, name)
                    .ok()
                    .and_then(|p| p.pointer("/metadata/deletionGracePeriodSeconds")?.as_f64())
                    .unwrap_or(30.0);
                self.delays.scaled(grace)
            },
            self.shutdown.clone(),
        )
        .await
    }

    // ---- Job controller ----

    fn reconcile_job(&self, st: &mut CtlState, ns: &str, name: &str) {
        let Ok(job) = self.store.get(idx::jobs(), ns, name) else {
            return;
        };
        if deleting(&job) {
            return;
        }
        let uid = s(&job, "/metadata/uid").to_string();
        let pods: Vec<Arc<Value>> = self
            .store
            .owned(&uid, idx::pods())
            .into_iter()
            .filter(|p| controller_uid(p).as_deref() == Some(uid.as_str()))
            .collect();
        let active: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| !pod_terminal(p) && !deleting(p))
            .collect();
        let succeeded = pods
            .iter()
            .filter(|p| s(p, "/status/phase") == "Succeeded")
            .count() as i64;
        let failed_now = pods
            .iter()
            .filter(|p| s(p, "/status/phase") == "Failed")
            .count() as i64;
        let succeeded = succeeded.max(i(&job, "/status/succeeded"));
        let failed = failed_now.max(i(&job, "/status/failed"));
        let ready = active.iter().filter(|p| pod_ready(p)).count() as i64;
        let terminating = pods
            .iter()
            .filter(|p| deleting(p) && !pod_terminal(p))
            .count() as i64;
        let finished = has_condition(&job, "Complete") || has_condition(&job, "Failed");
        let now = Instant::now();
        if finished {
            st.job_started.remove(&uid);
            st.job_next_pod.remove(&uid);
            if job.pointer("/spec/ttlSecondsAfterFinished").is_some() {
                st.timed_jobs
                    .insert(uid.clone(), (ns.to_string(), name.to_string()));
            } else {
                st.timed_jobs.remove(&uid);
            }
            if let Some(ttl) = job
                .pointer("/spec/ttlSecondsAfterFinished")
                .and_then(Value::as_f64)
            {
                let at = *st.job_finished.entry(uid.clone()).or_insert(now);
                if now.duration_since(at) >= self.delays.scaled(ttl) {
                    st.job_finished.remove(&uid);
                    let opts = DeleteOpts {
                        propagation: Some(Propagation::Background),
                        ..DeleteOpts::default()
                    };
                    let _ = self.store.delete(idx::jobs(), ns, name, &opts);
                }
            }
            return;
        }
        let started = *st.job_started.entry(uid.clone()).or_insert(now);
        let completions = job
            .pointer("/spec/completions")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let parallelism = job
            .pointer("/spec/parallelism")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let backoff_limit = job
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_i64)
            .unwrap_or(6);
        let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        let mut conds: Vec<Value> = Vec::new();
        let mut end = false;
        if succeeded >= completions {
            conds.push(condition(
                "SuccessCriteriaMet",
                true,
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            conds.push(condition(
                "Complete",
                true,
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            end = true;
        } else if failed > backoff_limit {
            conds.push(condition(
                "FailureTarget",
                true,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
            conds.push(condition(
                "Failed",
                true,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
            end = true;
        } else if job
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_f64)
            .is_some_and(|ads| now.duration_since(started) >= self.delays.scaled(ads))
        {
            conds.push(condition(
                "FailureTarget",
                true,
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
            conds.push(condition(
                "Failed",
                true,
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
            end = true;
        }
        let mut created = 0i64;
        if end || suspended {
            for p in &active {
                let _ = self.store.delete(
                    idx::pods(),
                    ns,
                    s(p, "/metadata/name"),
                    &DeleteOpts::default(),
                );
            }
        } else {
            let want = parallelism.min(completions - succeeded);
            let missing = want - active.len() as i64 - terminating;
            if missing > 0 {
                // Retry backoff after failures: 10s doubling, scaled.
                let last_failed = i(&job, "/status/failed");
                if failed > last_failed
                    || (failed > 0 && !st.job_next_pod.contains_key(&uid) && active.is_empty())
                {
                    let secs = 10.0 * 2f64.powi(i32::try_from(failed - 1).unwrap_or(0).clamp(0, 6));
                    st.job_next_pod
                        .insert(uid.clone(), now + self.delays.scaled(secs.min(360.0)));
                }
                let may = st.job_next_pod.get(&uid).is_none_or(|t| *t <= now);
                if may {
                    st.job_next_pod.remove(&uid);
                    for _ in 0..missing {
                        if self.create_job_pod(&job).is_ok() {
                            created += 1;
                        }
                    }
                }
            }
        }
        let active_n = if end || suspended {
            0
        } else {
            active.len() as i64 + created
        };
        let start_time = job
            .pointer("/status/startTime")
            .cloned()
            .unwrap_or_else(|| json!(now_rfc3339()));
        let _ = self.store.mutate(idx::jobs(), ns, name, Part::Status, |j| {
            if !j.get("status").is_some_and(Value::is_object) {
                j["status"] = json!({});
            }
            let st = &mut j["status"];
            st["startTime"] = start_time;
            let set_or_remove = |st: &mut Value, f: &str, n: i64| {
                if n > 0 {
                    st[f] = json!(n);
                } else if let Some(m) = st.as_object_mut() {
                    m.remove(f);
                }
            };
            set_or_remove(st, "active", active_n);
            set_or_remove(st, "succeeded", succeeded);
            set_or_remove(st, "failed", failed);
            st["ready"] = json!(if end { 0 } else { ready });
            st["terminating"] = json!(terminating);
            st["uncountedTerminatedPods"] = json!({});
            if end && succeeded >= completions {
                st["completionTime"] = json!(now_rfc3339());
            }
            for c in conds {
                set_condition(j, c, true);
            }
        });
        let ttl = job.pointer("/spec/ttlSecondsAfterFinished").is_some();
        let timed = if end {
            ttl
        } else {
            job.pointer("/spec/activeDeadlineSeconds").is_some()
                || st.job_next_pod.contains_key(&uid)
        };
        if timed {
            st.timed_jobs
                .insert(uid.clone(), (ns.to_string(), name.to_string()));
        } else {
            st.timed_jobs.remove(&uid);
        }
        if end {
            let (ty, reason, msg) = if succeeded >= completions {
                ("Normal", "Completed", "Job completed")
            } else if failed > backoff_limit {
                (
                    "Warning",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            } else {
                (
                    "Warning",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            };
            self.event(&job, ty, reason, msg, "job-controller");
            st.job_started.remove(&uid);
            if ttl {
                st.job_finished.insert(uid.clone(), now);
            }
        }
    }

    fn create_job_pod(&self, job: &Value) -> Result<(), crate::ApiError> {
        let ns = s(job, "/metadata/namespace");
        let name = s(job, "/metadata/name");
        let tpl = job
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut pod = json!({
            "metadata": tpl.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "spec": tpl.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        pod["metadata"]["name"] = json!(format!("{name}-{}", random_suffix(5)));
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": s(job, "/metadata/uid"),
            "controller": true, "blockOwnerDeletion": true,
        }]);
        let created = self.store.create(idx::pods(), ns, pod, None)?;
        self.event(
            job,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod: {}", s(&created, "/metadata/name")),
            "job-controller",
        );
        Ok(())
    }

    // ---- ReplicaSet controller ----

    fn reconcile_rs(&self, st: &mut CtlState, ns: &str, name: &str) {
        let Ok(rs) = self.store.get(idx::replicasets(), ns, name) else {
            return;
        };
        if deleting(&rs) {
            return;
        }
        let uid = s(&rs, "/metadata/uid").to_string();
        let want = i(&rs, "/spec/replicas");
        let pods: Vec<Arc<Value>> = self
            .store
            .owned(&uid, idx::pods())
            .into_iter()
            .filter(|p| {
                controller_uid(p).as_deref() == Some(uid.as_str())
                    && !deleting(p)
                    && !pod_terminal(p)
            })
            .collect();
        let have = pods.len() as i64;
        let mut create_err: Option<String> = None;
        if have < want {
            let tpl = rs
                .pointer("/spec/template")
                .cloned()
                .unwrap_or_else(|| json!({}));
            for _ in have..want {
                let mut pod = json!({
                    "metadata": tpl.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    "spec": tpl.get("spec").cloned().unwrap_or_else(|| json!({})),
                });
                pod["metadata"]["name"] = json!(format!("{name}-{}", random_suffix(5)));
                pod["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true,
                }]);
                match self.store.create(idx::pods(), ns, pod, None) {
                    Ok(p) => self.event(
                        &rs,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", s(&p, "/metadata/name")),
                        "replicaset-controller",
                    ),
                    Err(e) => {
                        // pkg/controller/controller_utils.go: a Warning FailedCreate Event
                        // "Error creating: <err>"; the sync fails and is retried later.
                        self.event(
                            &rs,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {}", e.message),
                            "replicaset-controller",
                        );
                        create_err = Some(e.message.clone());
                        st.rs_retry.insert(
                            uid.clone(),
                            (
                                ns.to_string(),
                                name.to_string(),
                                Instant::now() + self.delays.scaled(10.0),
                            ),
                        );
                        break;
                    }
                }
            }
        } else if have > want {
            let mut victims = pods.clone();
            victims.sort_by_key(|p| pod_ready(p));
            for p in victims
                .iter()
                .take(usize::try_from(have - want).unwrap_or(0))
            {
                let _ = self.store.delete(
                    idx::pods(),
                    ns,
                    s(p, "/metadata/name"),
                    &DeleteOpts::default(),
                );
            }
        }
        let pods: Vec<Arc<Value>> = self
            .store
            .owned(&uid, idx::pods())
            .into_iter()
            .filter(|p| {
                controller_uid(p).as_deref() == Some(uid.as_str())
                    && !deleting(p)
                    && !pod_terminal(p)
            })
            .collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let gen_ = i(&rs, "/metadata/generation");
        let old_conds = rs.pointer("/status/conditions").cloned();
        if create_err.is_none() {
            st.rs_retry.remove(&uid);
        }
        let _ = self
            .store
            .mutate(idx::replicasets(), ns, name, Part::Status, |r| {
                r["status"] = json!({"replicas": pods.len(), "fullyLabeledReplicas": pods.len(),
                "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": gen_});
                if ready == 0
                    && let Some(m) = r["status"].as_object_mut()
                {
                    m.remove("readyReplicas");
                    m.remove("availableReplicas");
                }
                // pkg/controller/replicaset/replica_set_utils.go calculateStatus: a failed
                // create sets ReplicaFailure (reason FailedCreate, the error as message) unless
                // one is there already; a clean sync removes it.
                let failure = old_conds.as_ref().and_then(|c| {
                    c.as_array()
                        .and_then(|a| a.iter().find(|x| x["type"] == "ReplicaFailure").cloned())
                });
                match (&create_err, failure) {
                    (Some(_), Some(existing)) => r["status"]["conditions"] = json!([existing]),
                    (Some(msg), None) => {
                        let mut c = condition("ReplicaFailure", true, "FailedCreate", msg);
                        if let Some(m) = c.as_object_mut() {
                            m.remove("lastProbeTime");
                        }
                        r["status"]["conditions"] = json!([c]);
                    }
                    (None, _) => {}
                }
            });
        if let Some(d) = owner_of_kind(&rs, "Deployment") {
            self.reconcile_deployment(st, ns, &d);
        }
    }

    // ---- Deployment controller ----

    fn reconcile_deployment(&self, st: &mut CtlState, ns: &str, name: &str) {
        let Ok(d) = self.store.get(idx::deployments(), ns, name) else {
            return;
        };
        let uid = s(&d, "/metadata/uid").to_string();
        if deleting(&d) {
            st.deploy_progress.remove(&uid);
            st.deploy_keys.remove(&uid);
            return;
        }
        let replicas = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let tpl = d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let hash = template_hash(&tpl);
        let owned: Vec<Arc<Value>> = self
            .store
            .owned(&uid, idx::replicasets())
            .into_iter()
            .filter(|r| controller_uid(r).as_deref() == Some(uid.as_str()))
            .collect();
        let rs_name = format!("{name}-{hash}");
        let mut new_rs = owned
            .iter()
            .find(|r| s(r, "/metadata/labels/pod-template-hash") == hash)
            .cloned();
        let mut created = false;
        if new_rs.is_none() {
            let revision = owned
                .iter()
                .filter_map(|r| {
                    s(
                        r,
                        "/metadata/annotations/deployment.kubernetes.io~1revision",
                    )
                    .parse::<i64>()
                    .ok()
                })
                .max()
                .unwrap_or(0)
                + 1;
            let mut t = tpl.clone();
            if !t.get("metadata").is_some_and(Value::is_object) {
                t["metadata"] = json!({});
            }
            if !t["metadata"].get("labels").is_some_and(Value::is_object) {
                t["metadata"]["labels"] = json!({});
            }
            t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = d
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if !selector.get("matchLabels").is_some_and(Value::is_object) {
                selector["matchLabels"] = json!({});
            }
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({
                "metadata": {
                    "name": rs_name,
                    "labels": t["metadata"]["labels"].clone(),
                    "annotations": {
                        "deployment.kubernetes.io/revision": revision.to_string(),
                        "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                        "deployment.kubernetes.io/max-replicas": (replicas + (replicas + 3) / 4).to_string(),
                    },
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                        "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": t},
            });
            new_rs = self.store.create(idx::replicasets(), ns, rs, None).ok();
            created = true;
            self.event(
                &d,
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                "deployment-controller",
            );
        }
        let Some(new_rs) = new_rs else { return };
        let new_name = s(&new_rs, "/metadata/name").to_string();
        if i(&new_rs, "/spec/replicas") != replicas {
            let _ = self
                .store
                .mutate(idx::replicasets(), ns, &new_name, Part::Main, |r| {
                    r["spec"]["replicas"] = json!(replicas);
                    r["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                        json!(replicas.to_string());
                });
        }
        for r in &owned {
            if s(r, "/metadata/name") != new_name && i(r, "/spec/replicas") > 0 {
                let _ = self.store.mutate(
                    idx::replicasets(),
                    ns,
                    s(r, "/metadata/name"),
                    Part::Main,
                    |r| {
                        r["spec"]["replicas"] = json!(0);
                    },
                );
            }
        }
        let all: Vec<Arc<Value>> = self
            .store
            .owned(&uid, idx::replicasets())
            .into_iter()
            .filter(|r| controller_uid(r).as_deref() == Some(uid.as_str()))
            .collect();
        let sum = |f: &str| {
            all.iter()
                .map(|r| i(r, &format!("/status/{f}")))
                .sum::<i64>()
        };
        let total = sum("replicas");
        let ready = sum("readyReplicas");
        let available = sum("availableReplicas");
        let new_now = all
            .iter()
            .find(|r| s(r, "/metadata/name") == new_name)
            .cloned()
            .unwrap_or(new_rs);
        let updated = i(&new_now, "/status/replicas");
        let new_available = i(&new_now, "/status/availableReplicas");
        let max_unavailable = replicas / 4;
        let now = Instant::now();
        let deadline = d
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_f64)
            .unwrap_or(600.0);
        let complete = updated == replicas && new_available == replicas && total == replicas;
        let progress = if complete {
            st.deploy_progress.remove(&uid);
            st.deploy_keys.remove(&uid);
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            )
        } else {
            st.deploy_keys
                .insert(uid.clone(), (ns.to_string(), name.to_string()));
            let entry = st
                .deploy_progress
                .entry(uid.clone())
                .or_insert((now, new_available));
            if entry.1 != new_available {
                *entry = (now, new_available);
            }
            if now.duration_since(entry.0) >= self.delays.scaled(deadline) {
                condition(
                    "Progressing",
                    false,
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                )
            } else if created {
                condition(
                    "Progressing",
                    true,
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{new_name}\""),
                )
            } else {
                condition(
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{new_name}\" is progressing."),
                )
            }
        };
        let avail_cond = if available >= replicas - max_unavailable {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        // pkg/controller/deployment/progress.go getReplicaFailures: the new ReplicaSet's
        // ReplicaFailure condition (else an old one's) is copied onto the Deployment, and
        // removed when no ReplicaSet has one.
        let rs_failure = std::iter::once(&new_now).chain(all.iter()).find_map(|r| {
            r.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["type"] == "ReplicaFailure").cloned())
        });
        let gen_ = i(&d, "/metadata/generation");
        let _ = self.store.mutate(idx::deployments(), ns, name, Part::Status, |o| {
            let conds = o.pointer("/status/conditions").cloned();
            let mut stt = json!({"observedGeneration": gen_, "replicas": total, "updatedReplicas": updated,
                "readyReplicas": ready, "availableReplicas": available,
                "unavailableReplicas": (replicas - available).max(0)});
            if let Some(m) = stt.as_object_mut() {
                m.retain(|k, v| k == "observedGeneration" || v.as_i64() != Some(0));
                if let Some(c) = conds {
                    m.insert("conditions".into(), c);
                }
            }
            o["status"] = stt;
            // Keep times stable when nothing changed, like the real controller's lastUpdateTime.
            for mut c in [avail_cond, progress] {
                let ty = c["type"].clone();
                let prev = o.pointer("/status/conditions").and_then(Value::as_array).and_then(|a| a.iter().find(|x| x["type"] == ty)).cloned();
                if let Some(p) = &prev
                    && p["status"] == c["status"] && p["reason"] == c["reason"] && p["message"] == c["message"] {
                        continue;
                    }
                c["lastUpdateTime"] = c["lastTransitionTime"].clone();
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastProbeTime");
                }
                set_condition(o, c, false);
            }
            match &rs_failure {
                Some(f) => {
                    let mut c = f.clone();
                    c["lastUpdateTime"] = c["lastTransitionTime"].clone();
                    set_condition(o, c, false);
                }
                None => {
                    if let Some(a) = o.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                        a.retain(|c| c["type"] != "ReplicaFailure");
                    }
                }
            }
        });
    }
}

/// Removes empty reasons/messages, which the real status omits.
fn clean_conditions(p: &mut Value) {
    if let Some(conds) = p
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in conds {
            if let Some(m) = c.as_object_mut() {
                m.retain(|_, v| v.as_str() != Some(""));
            }
        }
    }
}

/// A pod-template-hash: ten characters from the safe alphabet, derived from the template.
#[must_use]
pub fn template_hash(tpl: &Value) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let h = Sha256::digest(tpl.to_string().as_bytes());
    h.iter()
        .take(10)
        .map(|b| CHARS[usize::from(*b) % CHARS.len()] as char)
        .collect()
}
