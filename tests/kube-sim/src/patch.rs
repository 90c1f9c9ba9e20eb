//! Patch semantics: JSON merge patch, strategic merge patch (lists merged by key), JSON patch,
//! and server-side apply with field ownership (`managedFields`) and conflicts.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A field path in `fieldsV1` tokens, e.g. `["f:spec", "f:containers", "k:{\"name\":\"a\"}", "f:image"]`.
pub type FieldPath = Vec<String>;

/// The merge key of a list field, when its elements are merged rather than replaced.
fn list_key(field: &str, a: &[Value], b: &[Value]) -> Option<&'static str> {
    let all_have = |key: &str| a.iter().chain(b.iter()).all(|e| e.get(key).is_some());
    let key = match field {
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "ports" if all_have("containerPort") => "containerPort",
        "ports" => "port",
        "args" | "command" | "finalizers" | "tolerations" => return None,
        _ => "name",
    };
    (!a.is_empty() || !b.is_empty()).then_some(())?;
    all_have(key).then_some(key)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
    json_patch::patch(target, &p).map_err(|e| e.to_string())
}

/// Strategic merge patch: maps merge recursively, `null` deletes, lists of keyed objects merge
/// by their key (`name`, `containerPort`, `mountPath`, `type`), `$patch: delete|replace` honoured.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    merge_value(target, patch, "", true);
}

fn merge_value(target: &mut Value, patch: &Value, field: &str, nulls_delete: bool) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut p = p.clone();
                p.remove("$patch");
                *t = p;
                return;
            }
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() && nulls_delete {
                    t.remove(k);
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) => merge_value(existing, v, k, nulls_delete),
                    None => {
                        let mut fresh = match v {
                            Value::Object(_) => Value::Object(Map::new()),
                            _ => Value::Null,
                        };
                        if fresh.is_object() {
                            merge_value(&mut fresh, v, k, nulls_delete);
                        } else {
                            fresh = strip_directives(v);
                        }
                        t.insert(k.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p)) => {
            let Some(key) = list_key(field, t, p) else {
                *t = p.iter().map(strip_directives).collect();
                return;
            };
            for item in p {
                let Some(kv) = item.get(key) else { continue };
                let pos = t.iter().position(|e| e.get(key) == Some(kv));
                let directive = item.get("$patch").and_then(Value::as_str);
                match (pos, directive) {
                    (Some(i), Some("delete")) => {
                        t.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => merge_value(&mut t[i], item, "", nulls_delete),
                    (None, _) => t.push(strip_directives(item)),
                }
            }
        }
        (t, p) => *t = strip_directives(p),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Metadata fields that no manager owns.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The part of an object that field ownership tracks.
#[must_use]
pub fn ownable(obj: &Value, include_status: bool) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if !include_status {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SYSTEM_META {
                meta.remove(*f);
            }
        }
        if m.get("metadata")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            m.remove("metadata");
        }
    }
    o
}

/// Collects the leaf field paths of a value.
pub fn leaf_paths(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                prefix.push(format!("f:{k}"));
                match val {
                    Value::Object(inner) if !inner.is_empty() => leaf_paths(val, prefix, out),
                    Value::Array(items) => match list_key(k, items, &[]) {
                        Some(key) => {
                            for item in items {
                                let Some(kv) = item.get(key) else { continue };
                                prefix.push(format!("k:{}", serde_json::json!({ key: kv })));
                                let mut dot = prefix.clone();
                                dot.push(".".into());
                                out.insert(dot);
                                leaf_paths(item, prefix, out);
                                prefix.pop();
                            }
                        }
                        None => {
                            out.insert(prefix.clone());
                        }
                    },
                    _ => {
                        out.insert(prefix.clone());
                    }
                }
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

/// Leaf paths of an object's ownable part.
#[must_use]
pub fn fields_of(obj: &Value, include_status: bool) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    leaf_paths(&ownable(obj, include_status), &mut Vec::new(), &mut out);
    out
}

/// The value at a field path, if present.
#[must_use]
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for tok in path {
        if tok == "." {
            return Some(cur);
        } else if let Some(f) = tok.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = tok.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|e| key.iter().all(|(kk, kv)| e.get(kk) == Some(kv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes the field at a path (a keyed list element for paths ending in `.`).
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    if last == "." {
        let Some((elem, list_path)) = parent_path.split_last() else {
            return;
        };
        let Some(k) = elem.strip_prefix("k:") else {
            return;
        };
        let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
            return;
        };
        if let Some(Value::Array(list)) = value_at_mut(obj, list_path) {
            list.retain(|e| !key.iter().all(|(kk, kv)| e.get(kk) == Some(kv)));
        }
        return;
    }
    if let (Some(f), Some(Value::Object(m))) =
        (last.strip_prefix("f:"), value_at_mut(obj, parent_path))
    {
        m.remove(f);
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for tok in path {
        if let Some(f) = tok.strip_prefix("f:") {
            cur = cur.get_mut(f)?;
        } else if let Some(k) = tok.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array_mut()?
                .iter_mut()
                .find(|e| key.iter().all(|(kk, kv)| e.get(kk) == Some(kv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Converts paths to the nested `fieldsV1` JSON form.
#[must_use]
pub fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for tok in p {
            let entry = cur
                .entry(tok.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            cur = next;
        }
    }
    Value::Object(root)
}

/// Parses nested `fieldsV1` JSON back into paths.
#[must_use]
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// Human form of a field path as the apiserver prints it in conflicts: `.spec.containers[name="a"].image`.
#[must_use]
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for tok in path {
        if let Some(f) = tok.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = tok.strip_prefix("k:")
            && let Ok(m) = serde_json::from_str::<Map<String, Value>>(k)
        {
            let inner: Vec<String> = m.iter().map(|(a, b)| format!("{a}={b}")).collect();
            s.push_str(&format!("[{}]", inner.join(",")));
        }
    }
    s
}

/// One `managedFields` entry in parsed form.
#[derive(Debug, Clone, PartialEq)]
pub struct Manager {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` of the entry.
    pub api_version: String,
    /// `time` of the entry.
    pub time: String,
    /// `status` for entries made through the status subresource.
    pub subresource: Option<String>,
    /// Owned fields.
    pub fields: BTreeSet<FieldPath>,
}

/// Reads `metadata.managedFields`.
#[must_use]
pub fn read_managers(obj: &Value) -> Vec<Manager> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Manager {
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("Update")
                        .into(),
                    api_version: e
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                    time: e
                        .get("time")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .map(String::from),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `metadata.managedFields` (entries owning nothing are dropped, as the apiserver does).
pub fn write_managers(obj: &mut Value, managers: &[Manager]) {
    let arr: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = serde_json::json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if let Some(s) = &m.subresource {
                e["subresource"] = Value::String(s.clone());
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

/// Records an `Update` by `manager`: it takes ownership of every field whose value it changed.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) {
    let status_only = subresource == Some("status");
    let mut managers = old.map(read_managers).unwrap_or_default();
    let new_fields = fields_of(new, status_only);
    let changed: BTreeSet<FieldPath> = new_fields
        .into_iter()
        .filter(|p| !status_only || p.first().is_some_and(|t| t == "f:status"))
        .filter(|p| {
            old.is_none_or(|o| {
                // A list element is "changed" only by appearing; its fields count on their own.
                if p.last().is_some_and(|t| t == ".") {
                    value_at(o, p).is_none()
                } else {
                    value_at(o, p) != value_at(new, p)
                }
            })
        })
        .collect();
    if changed.is_empty() {
        write_managers(new, &managers);
        return;
    }
    for m in &mut managers {
        m.fields.retain(|p| !changed.contains(p));
    }
    let sub = subresource.map(String::from);
    match managers
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Update" && m.subresource == sub)
    {
        Some(m) => {
            m.fields.extend(changed);
            m.time = now.into();
        }
        None => managers.push(Manager {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            time: now.into(),
            subresource: sub,
            fields: changed,
        }),
    }
    write_managers(new, &managers);
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The other manager's API version.
    pub api_version: String,
    /// The field, in the apiserver's printed form.
    pub field: String,
}

/// Server-side apply of `applied` by `manager` onto `current` (None when creating).
/// Returns the merged object with updated `managedFields`, or the conflicts.
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let config_fields = fields_of(applied, false);
    let mut managers = current.map(read_managers).unwrap_or_default();
    let empty = Value::Object(Map::new());
    let cur = current.unwrap_or(&empty);

    let mut conflicts = Vec::new();
    let mut conflicted: BTreeMap<usize, BTreeSet<FieldPath>> = BTreeMap::new();
    for (i, m) in managers.iter().enumerate() {
        if m.manager == manager && m.operation == "Apply" {
            continue;
        }
        for p in m.fields.intersection(&config_fields) {
            if p.last().is_some_and(|t| t != ".") && value_at(cur, p) != value_at(applied, p) {
                conflicts.push(Conflict {
                    manager: m.manager.clone(),
                    api_version: m.api_version.clone(),
                    field: path_string(p),
                });
                conflicted.entry(i).or_default().insert(p.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for (i, paths) in conflicted {
        managers[i].fields.retain(|p| !paths.contains(p));
    }

    let mut merged = cur.clone();
    // Fields this manager applied before but no longer applies, and nobody else owns, go away.
    if let Some(prev) = managers
        .iter()
        .find(|m| m.manager == manager && m.operation == "Apply")
    {
        let others: BTreeSet<&FieldPath> = managers
            .iter()
            .filter(|m| !(m.manager == manager && m.operation == "Apply"))
            .flat_map(|m| m.fields.iter())
            .collect();
        let mut dropped: Vec<&FieldPath> = prev
            .fields
            .iter()
            .filter(|p| !config_fields.contains(*p) && !others.contains(p))
            .collect();
        // Remove deepest first so list elements go after their fields.
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            remove_at(&mut merged, p);
        }
    }
    let mut apply_body = applied.clone();
    if let Some(m) = apply_body.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SYSTEM_META {
                meta.remove(*f);
            }
        }
    }
    merge_value(&mut merged, &apply_body, "", false);

    match managers
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Apply")
    {
        Some(m) => {
            m.fields = config_fields;
            m.time = now.into();
            m.api_version = api_version.into();
        }
        None => managers.push(Manager {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            time: now.into(),
            subresource: None,
            fields: config_fields,
        }),
    }
    write_managers(&mut merged, &managers);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_lists_by_name() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
            "args": ["1", "2"]}});
        strategic_merge(
            &mut t,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"},
                {"name": "a", "$patch": "delete"}], "args": ["3"]}}),
        );
        assert_eq!(
            t,
            json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}], "args": ["3"]}})
        );
    }

    #[test]
    fn fields_v1_roundtrip() {
        let o = json!({"metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}], "replicas": 2}});
        let f = fields_of(&o, false);
        assert_eq!(from_fields_v1(&to_fields_v1(&f)), f);
        assert!(f.contains(&vec![
            "f:spec".to_string(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into()
        ]));
        assert!(!f.iter().any(|p| p[1] == "f:name" && p[0] == "f:metadata"));
    }

    #[test]
    fn apply_conflicts_and_force() {
        let now = "2026-01-01T00:00:00Z";
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1", "j": "2"}});
        let o = server_side_apply(None, &a, "alice", false, "v1", now).unwrap();
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "9"}});
        let err = server_side_apply(Some(&o), &b, "bob", false, "v1", now).unwrap_err();
        assert_eq!(err[0].field, ".data.k");
        assert_eq!(err[0].manager, "alice");
        let o2 = server_side_apply(Some(&o), &b, "bob", true, "v1", now).unwrap();
        assert_eq!(o2["data"], json!({"k": "9", "j": "2"}));
        // Alice drops `j`: nobody else owns it, so it is removed.
        let a2 =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}});
        let o3 = server_side_apply(Some(&o2), &a2, "alice", false, "v1", now).unwrap();
        assert_eq!(o3["data"], json!({"k": "9"}));
    }
}
