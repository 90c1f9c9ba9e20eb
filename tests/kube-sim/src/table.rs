//! `meta.k8s.io/v1` Table output, which `kubectl get` asks for (`Accept: ...;as=Table`), with
//! the printer columns kubectl shows for the kinds Slipway uses (NAME and AGE for the rest).

use serde_json::{Value, json};

use crate::kinds::KindInfo;

/// Whether an Accept header asks for a Table.
#[must_use]
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .next()
            .is_some_and(|first| first.contains("as=Table"))
    })
}

fn col(name: &str, ty: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": name, "priority": 0})
}

fn age(obj: &Value) -> String {
    let Some(ts) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
    else {
        return "<unknown>".into();
    };
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn pod_status(p: &Value) -> String {
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for c in statuses.into_iter().flatten() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return r.into();
        }
        if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            return r.into();
        }
    }
    s(p, "/status/phase").into()
}

fn columns_and_cells(kind: &KindInfo, o: &Value) -> (Vec<Value>, Vec<Value>) {
    let name = json!(s(o, "/metadata/name"));
    match kind.plural {
        "pods" => {
            let cs = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = cs
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            (
                vec![
                    col("Name", "string"),
                    col("Ready", "string"),
                    col("Status", "string"),
                    col("Restarts", "string"),
                    col("Age", "string"),
                ],
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(o)),
                    json!(restarts.to_string()),
                    json!(age(o)),
                ],
            )
        }
        "deployments" => (
            vec![
                col("Name", "string"),
                col("Ready", "string"),
                col("Up-to-date", "integer"),
                col("Available", "integer"),
                col("Age", "string"),
            ],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
                json!(age(o)),
            ],
        ),
        "replicasets" => (
            vec![
                col("Name", "string"),
                col("Desired", "integer"),
                col("Current", "integer"),
                col("Ready", "integer"),
                col("Age", "string"),
            ],
            vec![
                name,
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                json!(age(o)),
            ],
        ),
        // pkg/printers/internalversion/printers.go: statefulSetColumnDefinitions and
        // persistentVolumeClaimColumnDefinitions (access modes abbreviated as
        // `GetAccessModesAsString` does; an unset attributes class is `<unset>`).
        "statefulsets" => (
            vec![
                col("Name", "string"),
                col("Ready", "string"),
                col("Age", "string"),
            ],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                json!(age(o)),
            ],
        ),
        "persistentvolumeclaims" => {
            let bound = s(o, "/status/phase") == "Bound";
            let modes: Vec<&str> = o
                .pointer("/status/accessModes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| match m.as_str()? {
                    "ReadWriteOnce" => Some("RWO"),
                    "ReadOnlyMany" => Some("ROX"),
                    "ReadWriteMany" => Some("RWX"),
                    "ReadWriteOncePod" => Some("RWOP"),
                    _ => None,
                })
                .collect();
            let vac = match s(o, "/spec/volumeAttributesClassName") {
                "" => "<unset>",
                v => v,
            };
            (
                vec![
                    col("Name", "string"),
                    col("Status", "string"),
                    col("Volume", "string"),
                    col("Capacity", "string"),
                    col("Access Modes", "string"),
                    col("StorageClass", "string"),
                    col("VolumeAttributesClass", "string"),
                    col("Age", "string"),
                ],
                vec![
                    name,
                    json!(s(o, "/status/phase")),
                    json!(s(o, "/spec/volumeName")),
                    json!(if bound {
                        s(o, "/status/capacity/storage")
                    } else {
                        ""
                    }),
                    json!(modes.join(",")),
                    json!(s(o, "/spec/storageClassName")),
                    json!(vac),
                    json!(age(o)),
                ],
            )
        }
        "jobs" => {
            let conds = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let is = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let status = if is("Complete") {
                "Complete"
            } else if is("Failed") {
                "Failed"
            } else if o.pointer("/spec/suspend") == Some(&json!(true)) {
                "Suspended"
            } else {
                "Running"
            };
            (
                vec![
                    col("Name", "string"),
                    col("Status", "string"),
                    col("Completions", "string"),
                    col("Age", "string"),
                ],
                vec![
                    name,
                    json!(status),
                    json!(format!(
                        "{}/{}",
                        i(o, "/status/succeeded"),
                        o.pointer("/spec/completions")
                            .and_then(Value::as_i64)
                            .unwrap_or(1)
                    )),
                    json!(age(o)),
                ],
            )
        }
        "namespaces" => (
            vec![
                col("Name", "string"),
                col("Status", "string"),
                col("Age", "string"),
            ],
            vec![name, json!(s(o, "/status/phase")), json!(age(o))],
        ),
        "services" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            (
                vec![
                    col("Name", "string"),
                    col("Type", "string"),
                    col("Cluster-IP", "string"),
                    col("External-IP", "string"),
                    col("Port(s)", "string"),
                    col("Age", "string"),
                ],
                vec![
                    name,
                    json!(s(o, "/spec/type")),
                    json!(s(o, "/spec/clusterIP")),
                    json!("<none>"),
                    json!(ports.join(",")),
                    json!(age(o)),
                ],
            )
        }
        _ => (
            vec![col("Name", "string"), col("Age", "string")],
            vec![name, json!(age(o))],
        ),
    }
}

/// A Table of `objs`. `include_object` is the request's `includeObject` (default
/// `PartialObjectMetadata`).
#[must_use]
pub fn table(
    kind: &KindInfo,
    objs: &[&Value],
    list_meta: Value,
    include_object: Option<&str>,
) -> Value {
    let mut columns = columns_and_cells(kind, &json!({})).0;
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let (cols, cells) = columns_and_cells(kind, o);
            columns = cols;
            let mut row = json!({"cells": cells});
            match include_object {
                Some("None") => {}
                Some("Object") => row["object"] = (*o).clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({}))});
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}
