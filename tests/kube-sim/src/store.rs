//! The object store: one generic map of JSON objects keyed by kind, namespace and name, a global
//! resourceVersion counter, and a bounded event history that watches replay from.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::defaults;
use crate::error::ApiError;
use crate::kinds::{KINDS, KindInfo, idx};
use crate::patch;
use crate::selector::{FieldSelector, LabelSelector};

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change in the history.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Kind index into [`KINDS`].
    pub kind: usize,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// What happened.
    pub etype: EventType,
    /// The object after the change (the last state for deletions).
    pub object: Arc<Value>,
    /// The object before the change, for modifications.
    pub old: Option<Arc<Value>>,
}

/// Propagation policy of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Owner goes now, dependents are collected afterwards.
    Background,
    /// Owner stays (with a `foregroundDeletion` finalizer) until dependents are gone.
    Foreground,
    /// Dependents lose their ownerReference and stay.
    Orphan,
}

impl Propagation {
    /// Parses the DeleteOptions value.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Background" => Some(Self::Background),
            "Foreground" => Some(Self::Foreground),
            "Orphan" => Some(Self::Orphan),
            _ => None,
        }
    }
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `propagationPolicy`; `None` means the kind's default.
    pub propagation: Option<Propagation>,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`: report what would happen, change nothing.
    pub dry_run: bool,
}

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource (status ignored for kinds with a status subresource).
    Main,
    /// The `/status` subresource (only status changes).
    Status,
}

/// Result of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    /// Matching objects in name order.
    pub items: Vec<Arc<Value>>,
    /// The store's resourceVersion when listed.
    pub resource_version: u64,
    /// Continue token, when `limit` cut the list short.
    pub continue_token: Option<String>,
    /// Remaining item count after this page.
    pub remaining: Option<usize>,
}

type Key = (usize, String, String);

struct Inner {
    objects: BTreeMap<Key, Arc<Value>>,
    /// ownerReference uid -> dependents, so GC and controllers need not scan everything.
    owners: HashMap<String, BTreeSet<Key>>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    compacted: u64,
}

fn owner_uids(v: &Value) -> impl Iterator<Item = &str> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

impl Inner {
    fn put(&mut self, key: Key, obj: Arc<Value>) {
        if let Some(old) = self.objects.get(&key).cloned() {
            self.unindex(&key, &old);
        }
        for uid in owner_uids(&obj) {
            self.owners
                .entry(uid.to_string())
                .or_default()
                .insert(key.clone());
        }
        self.objects.insert(key, obj);
    }

    fn take(&mut self, key: &Key) -> Option<Arc<Value>> {
        let old = self.objects.remove(key)?;
        self.unindex(key, &old);
        Some(old)
    }

    fn unindex(&mut self, key: &Key, old: &Value) {
        for uid in owner_uids(old) {
            if let Some(set) = self.owners.get_mut(uid) {
                set.remove(key);
                if set.is_empty() {
                    self.owners.remove(uid);
                }
            }
        }
    }

    fn dependents(&self, owner_uid: &str) -> Vec<(Key, Arc<Value>)> {
        self.owners
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.objects.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

/// The shared object store.
pub struct Store {
    inner: Mutex<Inner>,
    notify: watch::Sender<u64>,
    /// Labels a mutating admission policy sets on every namespace (see
    /// [`Store::force_namespace_labels`]).
    forced_ns_labels: Mutex<Vec<(String, String)>>,
    /// The minor Kubernetes version played, for version-dependent validation.
    kube_minor: std::sync::atomic::AtomicU32,
}

/// RFC 3339 timestamp with second precision, as `metav1.Time` serializes.
#[must_use]
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Random lowercase alphanumerics for generateName suffixes and the like.
#[must_use]
pub fn random_suffix(n: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

impl Store {
    /// An empty store keeping `history_limit` events for watch replay.
    #[must_use]
    pub fn new(history_limit: usize) -> Self {
        let (notify, _) = watch::channel(1);
        Self {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                owners: HashMap::new(),
                rv: 1,
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                compacted: 1,
            }),
            notify,
            forced_ns_labels: Mutex::new(Vec::new()),
            kube_minor: std::sync::atomic::AtomicU32::new(33),
        }
    }

    /// The minor Kubernetes version whose validation rules apply (default 33).
    pub fn set_kube_minor(&self, minor: u32) {
        self.kube_minor
            .store(minor, std::sync::atomic::Ordering::Relaxed);
    }

    /// Models a mutating admission policy (a Kyverno `mutate` rule, a MutatingAdmissionPolicy)
    /// that sets these labels on every namespace created or updated from now on, whatever the
    /// request says: e.g. `pod-security.kubernetes.io/enforce=restricted` cluster-wide.
    pub fn force_namespace_labels(&self, labels: Vec<(String, String)>) {
        *self
            .forced_ns_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = labels;
    }

    fn apply_forced_ns_labels(&self, kind: usize, obj: &mut Value) {
        if kind != idx::namespaces() {
            return;
        }
        let forced = self
            .forced_ns_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if forced.is_empty() {
            return;
        }
        let meta = meta_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in forced {
            labels[k] = json!(v);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the simulator, so recover the guard.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver that changes whenever the resourceVersion advances.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The current resourceVersion.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Events after `rv` (oldest first), or 410 Expired if history no longer reaches back.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, ApiError> {
        let g = self.lock();
        if rv < g.compacted {
            return Err(ApiError::expired(rv, g.compacted));
        }
        let start = g.history.partition_point(|e| e.rv <= rv);
        Ok(g.history.iter().skip(start).cloned().collect())
    }

    /// Drops all history up to now, so older resourceVersions are expired (for tests).
    pub fn compact(&self) {
        let mut g = self.lock();
        g.history.clear();
        g.compacted = g.rv;
    }

    fn push_event(
        g: &mut Inner,
        kind: usize,
        ns: &str,
        etype: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(Event {
            rv: g.rv,
            kind,
            namespace: ns.to_string(),
            etype,
            object,
            old,
        });
        g.history.push_back(ev);
        while g.history.len() > g.history_limit {
            if let Some(e) = g.history.pop_front() {
                g.compacted = e.rv;
            }
        }
    }

    fn commit(&self, g: MutexGuard<'_, Inner>) {
        let rv = g.rv;
        drop(g);
        self.notify.send_replace(rv);
    }

    /// Gets one object.
    pub fn get(&self, kind: usize, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        let ns = if KINDS[kind].namespaced { ns } else { "" };
        self.lock()
            .objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&KINDS[kind], name))
    }

    /// Every object of a kind (any namespace when `ns` is None).
    #[must_use]
    pub fn all(&self, kind: usize, ns: Option<&str>) -> Vec<Arc<Value>> {
        let g = self.lock();
        g.objects
            .range((kind, String::new(), String::new())..)
            .take_while(|((k, _, _), _)| *k == kind)
            .filter(|((_, n, _), _)| ns.is_none_or(|x| x == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every object of a kind with the resourceVersion they were read at (one consistent view,
    /// for a watch's initial state).
    #[must_use]
    pub fn all_at(&self, kind: usize, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let g = self.lock();
        let items = g
            .objects
            .range((kind, String::new(), String::new())..)
            .take_while(|((k, _, _), _)| *k == kind)
            .filter(|((_, n, _), _)| ns.is_none_or(|x| x == n))
            .map(|(_, v)| v.clone())
            .collect();
        (items, g.rv)
    }

    /// Lists with selectors and pagination.
    pub fn list(
        &self,
        kind: usize,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListResult, ApiError> {
        let start: Option<(String, String)> = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
                let v: Value = serde_json::from_slice(&raw)
                    .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
                Some((
                    v.get("ns")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                    v.get("start")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                ))
            }
            None => None,
        };
        let g = self.lock();
        let rv = g.rv;
        let mut matching = g
            .objects
            .range((kind, String::new(), String::new())..)
            .take_while(|((k, _, _), _)| *k == kind)
            .filter(|((_, n, name), _)| {
                ns.is_none_or(|x| x == n)
                    && start
                        .as_ref()
                        .is_none_or(|(sn, sname)| (n, name) > (sn, sname))
            })
            .filter(|(_, v)| labels.matches(v) && fields.matches(v));
        let mut items = Vec::new();
        let mut last: Option<Key> = None;
        let lim = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        for (k, v) in matching.by_ref() {
            if items.len() == lim {
                break;
            }
            items.push(v.clone());
            last = Some(k.clone());
        }
        let remaining = matching.count();
        // `by_ref` consumed one element past the page when it broke out; count it back in.
        let more = items.len() == lim
            && (remaining > 0 || self.has_after(&g, kind, ns, last.as_ref(), labels, fields));
        let (continue_token, remaining) = if more {
            let (_, lns, lname) = last.unwrap_or_default();
            let tok = json!({"rv": rv, "ns": lns, "start": lname});
            let left = g
                .objects
                .range((kind, String::new(), String::new())..)
                .take_while(|((k, _, _), _)| *k == kind)
                .filter(|((_, n, name), v)| {
                    ns.is_none_or(|x| x == n)
                        && (n, name) > (&lns, &lname)
                        && labels.matches(v)
                        && fields.matches(v)
                })
                .count();
            (
                Some(base64::engine::general_purpose::STANDARD.encode(tok.to_string())),
                Some(left),
            )
        } else {
            (None, None)
        };
        Ok(ListResult {
            items,
            resource_version: rv,
            continue_token,
            remaining,
        })
    }

    fn has_after(
        &self,
        g: &Inner,
        kind: usize,
        ns: Option<&str>,
        last: Option<&Key>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> bool {
        let Some((_, lns, lname)) = last else {
            return false;
        };
        g.objects
            .range((kind, String::new(), String::new())..)
            .take_while(|((k, _, _), _)| *k == kind)
            .any(|((_, n, name), v)| {
                ns.is_none_or(|x| x == n)
                    && (n, name) > (lns, lname)
                    && labels.matches(v)
                    && fields.matches(v)
            })
    }

    /// Creates an object, applying the apiserver's defaults and validation.
    pub fn create(
        &self,
        kind: usize,
        ns: &str,
        obj: Value,
        manager: Option<&str>,
    ) -> Result<Arc<Value>, ApiError> {
        self.create_opts(kind, ns, obj, manager, false)
    }

    /// Create, optionally as a dry run (`dryRun=All`: validated and defaulted, not stored).
    pub fn create_opts(
        &self,
        kind: usize,
        ns: &str,
        mut obj: Value,
        manager: Option<&str>,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let k = &KINDS[kind];
        defaults::check_shape(&obj)?;
        obj["apiVersion"] = json!(k.api_version());
        obj["kind"] = json!(k.kind);
        let ns = if k.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let mut g = self.lock();
        {
            let meta = meta_mut(&mut obj);
            if meta
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
                && let Some(gen_name) = meta.get("generateName").and_then(Value::as_str)
            {
                let name = format!("{gen_name}{}", random_suffix(5));
                meta.insert("name".into(), json!(name));
            }
            if k.namespaced {
                match meta.get("namespace").and_then(Value::as_str) {
                    Some(m) if !m.is_empty() && m != ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {}
                }
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
        }
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                k,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        if k.namespaced {
            match g
                .objects
                .get(&(idx::namespaces(), String::new(), ns.clone()))
            {
                None => return Err(ApiError::not_found(&KINDS[idx::namespaces()], &ns)),
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(
                        k,
                        &name,
                        &format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let key = (kind, ns.clone(), name.clone());
        if g.objects.contains_key(&key) {
            return Err(ApiError::already_exists(k, &name));
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let now = now_rfc3339();
        {
            let meta = meta_mut(&mut obj);
            meta.insert("uid".into(), json!(uid));
            meta.insert("creationTimestamp".into(), json!(now));
            meta.insert("generation".into(), json!(1));
            for f in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
                "selfLink",
            ] {
                meta.remove(f);
            }
            // Server-side apply passes no manager and brings its own managedFields.
            if manager.is_some() {
                meta.remove("managedFields");
            }
        }
        self.apply_forced_ns_labels(kind, &mut obj);
        defaults::on_create(kind, &mut obj)?;
        // Pod Security admission, by the namespace's labels (validating admission runs after
        // defaulting and name generation, so the refusal names the generated pod).
        if kind == idx::pods() {
            let ns_labels = g
                .objects
                .get(&(idx::namespaces(), String::new(), ns.clone()))
                .and_then(|n| n.pointer("/metadata/labels").cloned());
            let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
            if let Some(why) = crate::podsecurity::refusal(ns_labels.as_ref(), &spec) {
                return Err(ApiError::forbidden(k, &name, &why));
            }
        }
        if let Some(m) = manager {
            patch::record_update(None, &mut obj, m, &k.api_version(), &now, None);
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        g.rv += 1;
        let rv = g.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        g.put(key, obj.clone());
        Self::push_event(&mut g, kind, &ns, EventType::Added, obj.clone(), None);
        self.commit(g);
        Ok(obj)
    }

    /// Replaces an object (PUT), honouring a resourceVersion precondition in the body.
    pub fn update(
        &self,
        kind: usize,
        ns: &str,
        name: &str,
        obj: Value,
        part: Part,
        manager: Option<&str>,
    ) -> Result<Arc<Value>, ApiError> {
        self.update_opts(kind, ns, name, obj, part, manager, false)
    }

    /// Update, optionally as a dry run (`dryRun=All`: the result is returned, not stored).
    #[allow(clippy::too_many_arguments)] // mirrors the request's parameters one to one
    pub fn update_opts(
        &self,
        kind: usize,
        ns: &str,
        name: &str,
        mut obj: Value,
        part: Part,
        manager: Option<&str>,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let k = &KINDS[kind];
        let ns = if k.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let mut g = self.lock();
        let key = (kind, ns.clone(), name.to_string());
        let Some(cur) = g.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(k, name));
        };
        defaults::check_shape(&obj)?;
        if let Some(body_name) = meta_str(&obj, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        // rest.BeforeUpdate: EnsureObjectNamespaceMatchesRequestNamespace, as on create (an
        // apply or patch is an update of the patched object).
        if k.namespaced
            && let Some(body_ns) = meta_str(&obj, "namespace").filter(|s| !s.is_empty())
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let Some(want) = meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty())
            && Some(want) != meta_str(&cur, "resourceVersion")
        {
            return Err(ApiError::conflict(k, name));
        }
        if let Some(want) = meta_str(&obj, "uid").filter(|s| !s.is_empty())
            && Some(want) != meta_str(&cur, "uid")
        {
            return Err(ApiError::conflict(k, name));
        }
        let mut new = match part {
            Part::Status => {
                let mut n = (*cur).clone();
                match obj.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                n
            }
            Part::Main => {
                obj["apiVersion"] = json!(k.api_version());
                obj["kind"] = json!(k.kind);
                if k.has_status {
                    match cur.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                let cur_meta = cur.get("metadata").cloned().unwrap_or_else(|| json!({}));
                let meta = meta_mut(&mut obj);
                for f in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "namespace",
                    "name",
                ] {
                    match cur_meta.get(f) {
                        Some(v) => meta.insert(f.into(), v.clone()),
                        None => meta.remove(f),
                    };
                }
                if meta.get("managedFields").is_none()
                    && let Some(mf) = cur_meta.get("managedFields")
                {
                    meta.insert("managedFields".into(), mf.clone());
                }
                self.apply_forced_ns_labels(kind, &mut obj);
                defaults::on_update(
                    kind,
                    &cur,
                    &mut obj,
                    self.kube_minor.load(std::sync::atomic::Ordering::Relaxed),
                )?;
                obj
            }
        };
        meta_mut(&mut new).insert(
            "resourceVersion".into(),
            cur["metadata"]["resourceVersion"].clone(),
        );
        if let Some(m) = manager {
            let now = now_rfc3339();
            let sub = (part == Part::Status).then_some("status");
            patch::record_update(Some(&cur), &mut new, m, &k.api_version(), &now, sub);
        }
        if new == *cur {
            return Ok(cur);
        }
        if part == Part::Main && spec_changed(&cur, &new) {
            let gen_now = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(gen_now + 1));
        }
        if dry_run {
            return Ok(Arc::new(new));
        }
        g.rv += 1;
        let rv = g.rv;
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        // Removing the last finalizer of an object being deleted completes the deletion.
        let finished = new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            && !(kind == idx::namespaces() || kind == idx::pods());
        let new = Arc::new(new);
        if finished {
            g.take(&key);
            Self::push_event(
                &mut g,
                kind,
                &ns,
                EventType::Deleted,
                new.clone(),
                Some(cur),
            );
        } else {
            g.put(key, new.clone());
            Self::push_event(
                &mut g,
                kind,
                &ns,
                EventType::Modified,
                new.clone(),
                Some(cur),
            );
        }
        self.commit(g);
        Ok(new)
    }

    /// Read-modify-write for controllers: `f` edits a copy; unchanged objects are not written.
    pub fn mutate(
        &self,
        kind: usize,
        ns: &str,
        name: &str,
        part: Part,
        f: impl FnOnce(&mut Value),
    ) -> Result<Arc<Value>, ApiError> {
        let cur = self.get(kind, ns, name)?;
        let mut new = (*cur).clone();
        f(&mut new);
        if new == *cur {
            return Ok(cur);
        }
        self.update(kind, ns, name, new, part, None)
    }

    /// Starts deleting an object. Returns the object as the API reports it and whether it is gone.
    pub fn delete(
        &self,
        kind: usize,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let k = &KINDS[kind];
        let ns = if k.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let mut g = self.lock();
        let key = (kind, ns.clone(), name.to_string());
        let Some(cur) = g.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(k, name));
        };
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != meta_str(&cur, "uid")
        {
            return Err(ApiError::conflict(k, name));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != meta_str(&cur, "resourceVersion")
        {
            return Err(ApiError::conflict(k, name));
        }
        let uid = meta_str(&cur, "uid").unwrap_or_default().to_string();
        // Jobs keep their pods by default, as the batch/v1 API does for compatibility.
        let default = if kind == idx::jobs() {
            Propagation::Orphan
        } else {
            Propagation::Background
        };
        let policy = opts.propagation.unwrap_or(default);
        if policy == Propagation::Orphan && !opts.dry_run {
            Self::orphan_dependents(&mut g, &uid);
        }
        let already = cur.pointer("/metadata/deletionTimestamp").is_some();
        let mut new = (*cur).clone();
        let mut keep = false;
        if !already {
            let now = now_rfc3339();
            if kind == idx::pods() {
                let phase = cur
                    .pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("Pending");
                let scheduled = cur.pointer("/spec/nodeName").is_some();
                let grace = opts.grace_period.unwrap_or_else(|| {
                    cur.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                });
                if grace > 0 && scheduled && !matches!(phase, "Succeeded" | "Failed") {
                    let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                    let meta = meta_mut(&mut new);
                    meta.insert(
                        "deletionTimestamp".into(),
                        json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    );
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    keep = true;
                }
            }
            if kind == idx::namespaces() {
                let meta = meta_mut(&mut new);
                meta.insert("deletionTimestamp".into(), json!(now));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                new["status"] = json!({"phase": "Terminating"});
                keep = true;
            }
            if policy == Propagation::Foreground {
                let meta = meta_mut(&mut new);
                let fins = meta.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = fins.as_array_mut()
                    && !a.iter().any(|f| f == "foregroundDeletion")
                {
                    a.push(json!("foregroundDeletion"));
                }
            }
            let has_finalizers = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if has_finalizers {
                let meta = meta_mut(&mut new);
                meta.entry("deletionTimestamp")
                    .or_insert_with(|| json!(now));
                meta.entry("deletionGracePeriodSeconds")
                    .or_insert_with(|| json!(0));
                keep = true;
            }
        } else {
            keep = true;
        }
        if opts.dry_run {
            return Ok((if keep { Arc::new(new) } else { cur }, !keep));
        }
        g.rv += 1;
        let rv = g.rv;
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        let new = Arc::new(new);
        if keep {
            if already {
                // Nothing changes for a repeated delete; undo the version bump.
                g.rv -= 1;
                return Ok((cur, false));
            }
            g.put(key, new.clone());
            Self::push_event(
                &mut g,
                kind,
                &ns,
                EventType::Modified,
                new.clone(),
                Some(cur),
            );
            self.commit(g);
            Ok((new, false))
        } else {
            g.take(&key);
            Self::push_event(
                &mut g,
                kind,
                &ns,
                EventType::Deleted,
                new.clone(),
                Some(cur),
            );
            self.commit(g);
            Ok((new, true))
        }
    }

    /// Removes an object now (the end of graceful or finalized deletion).
    pub fn remove(&self, kind: usize, ns: &str, name: &str) -> Option<Arc<Value>> {
        let ns = if KINDS[kind].namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let mut g = self.lock();
        let key = (kind, ns.clone(), name.to_string());
        let cur = g.take(&key)?;
        g.rv += 1;
        let mut last = (*cur).clone();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(g.rv.to_string()));
        let last = Arc::new(last);
        Self::push_event(
            &mut g,
            kind,
            &ns,
            EventType::Deleted,
            last.clone(),
            Some(cur),
        );
        self.commit(g);
        Some(last)
    }

    fn orphan_dependents(g: &mut Inner, owner_uid: &str) {
        let keys: Vec<Key> = g
            .dependents(owner_uid)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let Some(cur) = g.objects.get(&key).cloned() else {
                continue;
            };
            let mut new = (*cur).clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                if refs.is_empty() {
                    meta_mut(&mut new).remove("ownerReferences");
                }
            }
            g.rv += 1;
            meta_mut(&mut new).insert("resourceVersion".into(), json!(g.rv.to_string()));
            let new = Arc::new(new);
            g.put(key.clone(), new.clone());
            Self::push_event(g, key.0, &key.1, EventType::Modified, new, Some(cur));
        }
    }

    /// Objects (any kind) whose ownerReferences name `owner_uid`.
    #[must_use]
    pub fn dependents(&self, owner_uid: &str) -> Vec<(usize, Arc<Value>)> {
        self.lock()
            .dependents(owner_uid)
            .into_iter()
            .map(|((k, _, _), v)| (k, v))
            .collect()
    }

    /// Objects of `kind` whose controller ownerReference is `owner_uid`.
    #[must_use]
    pub fn owned(&self, owner_uid: &str, kind: usize) -> Vec<Arc<Value>> {
        self.lock()
            .dependents(owner_uid)
            .into_iter()
            .filter(|((k, _, _), v)| {
                *k == kind
                    && owner_refs(v).iter().any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(owner_uid)
                            && r.get("controller").and_then(Value::as_bool) == Some(true)
                    })
            })
            .map(|(_, v)| v)
            .collect()
    }

    /// Every namespaced object in `ns` (any kind).
    #[must_use]
    pub fn in_namespace(&self, ns: &str) -> Vec<(usize, Arc<Value>)> {
        self.lock()
            .objects
            .iter()
            .filter(|((k, n, _), _)| KINDS[*k].namespaced && n == ns)
            .map(|((k, _, _), v)| (*k, v.clone()))
            .collect()
    }

    /// Every stored object with its kind.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(&'static KindInfo, Arc<Value>)> {
        self.lock()
            .objects
            .iter()
            .map(|((k, _, _), v)| (&KINDS[*k], v.clone()))
            .collect()
    }
}

/// The ownerReferences of an object.
#[must_use]
pub fn owner_refs(v: &Value) -> Vec<Value> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(a) != strip(b)
}
