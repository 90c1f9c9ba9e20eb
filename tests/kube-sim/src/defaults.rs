//! Defaulting and validation the apiserver applies on create and update, for the fields Slipway
//! relies on. Unknown kinds only get their name checked.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::kinds::{KINDS, idx};
use crate::selector::LabelSelector;

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Whether `s` is a DNS-1123 label.
#[must_use]
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain.
#[must_use]
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn invalid_value(v: &str, msg: &str) -> String {
    format!("Invalid value: \"{v}\": {msg}")
}

/// Paths that must hold JSON objects when present; the simulator (like the apiserver's typed
/// decoding) refuses other shapes there instead of tripping over them later.
const OBJECT_PATHS: &[&str] = &[
    "/metadata",
    "/metadata/labels",
    "/metadata/annotations",
    "/spec",
    "/status",
    "/spec/selector",
    "/spec/template",
    "/spec/template/metadata",
    "/spec/template/metadata/labels",
    "/spec/template/spec",
];

/// Rejects objects whose well-known fields have the wrong JSON type (400 BadRequest).
pub fn check_shape(obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    for p in OBJECT_PATHS {
        if let Some(v) = obj.pointer(p).filter(|v| !v.is_object() && !v.is_null()) {
            let field = p.trim_start_matches('/').replace('/', ".");
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go struct field of type object: {field}",
                match v {
                    Value::String(_) => "string",
                    Value::Array(_) => "array",
                    Value::Number(_) => "number",
                    _ => "bool",
                }
            )));
        }
    }
    for list in [
        "/spec/containers",
        "/spec/template/spec/containers",
        "/spec/ports",
    ] {
        if let Some(v) = obj.pointer(list).filter(|v| !v.is_null()) {
            let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_object));
            if !ok {
                let field = list.trim_start_matches('/').replace('/', ".");
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal {field}: expected a list of objects"
                )));
            }
        }
    }
    Ok(())
}

/// Applies create-time validation and defaults (uid and name are already set).
pub fn on_create(kind: usize, obj: &mut Value) -> Result<(), ApiError> {
    let k = &KINDS[kind];
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut causes: Vec<(String, String)> = Vec::new();
    let label_named = kind == idx::namespaces() || k.plural == "services";
    if label_named && !is_dns_label(&name) {
        causes.push((
            "metadata.name".into(),
            invalid_value(&name, DNS1123_LABEL_MSG),
        ));
    } else if !label_named && !is_dns_subdomain(&name) {
        causes.push((
            "metadata.name".into(),
            invalid_value(&name, DNS1123_SUBDOMAIN_MSG),
        ));
    }
    causes.extend(annotation_causes(obj));
    // Status written on create is discarded for kinds with a status subresource.
    if k.has_status
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    match k.plural {
        "namespaces" => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            let labels = obj["metadata"]
                .as_object_mut()
                .map(|m| m.entry("labels").or_insert_with(|| json!({})));
            if let Some(l) = labels.and_then(Value::as_object_mut) {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        "pods" => {
            validate_pod_spec(obj.get("spec"), "spec", &mut causes);
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            let qos = "BestEffort";
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "jobs" => {
            // The name becomes a label value, so it is limited to 63 characters.
            if name.len() > 63 {
                causes.push((
                    "metadata.name".into(),
                    format!("Invalid value: \"{name}\": must be no more than 63 characters"),
                ));
            }
            let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
                causes.push(("spec.template".into(), "Required value".into()));
                return finish(k, &name, causes);
            };
            match spec
                .pointer("/template/spec/restartPolicy")
                .and_then(Value::as_str)
            {
                Some("Never" | "OnFailure") => {}
                Some(other) => causes.push((
                    "spec.template.spec.restartPolicy".into(),
                    format!(
                        "Unsupported value: \"{other}\": supported values: \"OnFailure\", \"Never\""
                    ),
                )),
                None => causes.push((
                    "spec.template.spec.restartPolicy".into(),
                    "Required value: valid values: \"OnFailure\", \"Never\"".into(),
                )),
            }
            validate_pod_spec(
                spec.pointer("/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
            for (f, v) in [
                ("parallelism", json!(1)),
                ("completions", json!(1)),
                ("backoffLimit", json!(6)),
                ("completionMode", json!("NonIndexed")),
                ("suspend", json!(false)),
                ("podReplacementPolicy", json!("TerminatingOrFailed")),
                ("manualSelector", Value::Null),
            ] {
                if !v.is_null() && spec.get(f).is_none() {
                    spec[f] = v;
                }
            }
            let job_labels = json!({
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            });
            if spec.get("selector").is_none() {
                spec["selector"] =
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            }
            if let Some(tpl) = spec.get_mut("template").filter(|t| t.is_object()) {
                if !tpl.get("metadata").is_some_and(Value::is_object) {
                    tpl["metadata"] = json!({});
                }
                let tm = &mut tpl["metadata"];
                if !tm.get("labels").is_some_and(Value::is_object) {
                    tm["labels"] = json!({});
                }
                if let (Some(l), Some(add)) = (tm["labels"].as_object_mut(), job_labels.as_object())
                {
                    for (a, b) in add {
                        l.insert(a.clone(), b.clone());
                    }
                }
                if let Some(ps) = tpl.get_mut("spec") {
                    default_pod_spec(ps);
                }
            }
            let has_labels = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .is_some_and(|l| !l.is_empty());
            if !has_labels && let Some(m) = obj["metadata"].as_object_mut() {
                m.insert("labels".into(), json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name}));
            }
        }
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" => {
            let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
                causes.push(("spec.selector".into(), "Required value".into()));
                return finish(k, &name, causes);
            };
            validate_workload(spec, &mut causes);
            if k.plural != "daemonsets" && spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            if k.plural == "deployments" {
                // SetDefaults_Deployment (pkg/apis/apps/v1/defaults.go): an empty type is
                // RollingUpdate (Go clients send `strategy: {}`), then each absent rollingUpdate
                // field is 25%.
                if !spec.get("strategy").is_some_and(Value::is_object) {
                    spec["strategy"] = json!({});
                }
                let strategy = &mut spec["strategy"];
                if strategy
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    strategy["type"] = json!("RollingUpdate");
                }
                if strategy["type"] == "RollingUpdate" {
                    if !strategy.get("rollingUpdate").is_some_and(Value::is_object) {
                        strategy["rollingUpdate"] = json!({});
                    }
                    for f in ["maxUnavailable", "maxSurge"] {
                        if strategy["rollingUpdate"].get(f).is_none_or(Value::is_null) {
                            strategy["rollingUpdate"][f] = json!("25%");
                        }
                    }
                }
                for (f, v) in [
                    ("revisionHistoryLimit", 10),
                    ("progressDeadlineSeconds", 600),
                ] {
                    if spec.get(f).is_none() {
                        spec[f] = json!(v);
                    }
                }
            }
            if k.plural == "statefulsets" {
                default_statefulset(spec, &mut causes);
            }
            if let Some(ps) = spec.pointer_mut("/template/spec") {
                default_pod_spec(ps);
            }
        }
        "persistentvolumeclaims" => {
            let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
                causes.push((
                    "spec.accessModes".into(),
                    "Required value: at least 1 access mode is required".into(),
                ));
                return finish(k, &name, causes);
            };
            default_claim_spec(spec, "spec", &mut causes);
            // DefaultStorageClass admission (plugin/pkg/admission/storage/storageclass/setdefault):
            // a claim without `storageClassName` gets the cluster's default class, the one
            // minikube's storage-provisioner addon installs.
            if spec.get("storageClassName").is_none_or(Value::is_null) {
                spec["storageClassName"] = json!(DEFAULT_STORAGE_CLASS);
            }
            // SetDefaults_PersistentVolumeClaim (pkg/apis/core/v1/defaults.go).
            obj["status"] = json!({"phase": "Pending"});
        }
        "secrets" => {
            merge_string_data(obj);
            // SetDefaults_Secret (pkg/apis/core/v1/defaults.go).
            if obj
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                obj["type"] = json!("Opaque");
            }
        }
        "services" => {
            let spec = obj.get_mut("spec").filter(|s| s.is_object());
            let Some(spec) = spec else {
                causes.push(("spec.ports".into(), "Required value".into()));
                return finish(k, &name, causes);
            };
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                let h = uid
                    .bytes()
                    .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
                let ip = format!("10.96.{}.{}", (h >> 8) % 256, (h % 254) + 1);
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            for (f, v) in [
                ("sessionAffinity", json!("None")),
                ("ipFamilies", json!(["IPv4"])),
                ("ipFamilyPolicy", json!("SingleStack")),
                ("internalTrafficPolicy", json!("Cluster")),
            ] {
                if spec.get(f).is_none() {
                    spec[f] = v;
                }
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter(|p| p.is_object()) {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    // SetDefaults_Service (pkg/apis/core/v1/defaults.go): a targetPort of 0 or
                    // "" (what Go clients send for an unset one) is the port.
                    if p.get("targetPort")
                        .is_none_or(|t| t.is_null() || *t == json!(0) || *t == json!(""))
                    {
                        p["targetPort"] = p.get("port").cloned().unwrap_or(json!(80));
                    }
                }
            }
            // ValidateService (pkg/apis/core/validation/validation.go): ports are required
            // unless the Service is headless (`clusterIP: None`) or ExternalName, and with more
            // than one port each needs a name (validateServicePort's requireName).
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
            let ports: Vec<Value> = spec
                .get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if ports.is_empty() && !headless && !external {
                causes.push(("spec.ports".into(), "Required value".into()));
            }
            if ports.len() > 1 {
                for (i, p) in ports.iter().enumerate() {
                    if p.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        causes.push((format!("spec.ports[{i}].name"), "Required value".into()));
                    }
                }
            }
            obj["status"] = json!({"loadBalancer": {}});
        }
        "networkpolicies" => validate_network_policy(obj, &mut causes),
        "configmaps" => validate_config_map(obj, &mut causes),
        _ => {}
    }
    finish(k, &name, causes)
}

/// `IsConfigMapKey` (kubernetes/apimachinery `pkg/util/validation/validation.go`): at most 253
/// bytes of `[-._a-zA-Z0-9]`, not `.` or `..` and not starting with `..`.
fn config_key_problems(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".to_owned());
    }
    let charset = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !charset {
        out.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. \
             'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
             '[-._a-zA-Z0-9]+')"
                .to_owned(),
        );
    }
    if key == "." {
        out.push("must not be '.'".to_owned());
    } else if key == ".." {
        out.push("must not be '..'".to_owned());
    } else if key.starts_with("..") {
        out.push("must not start with '..'".to_owned());
    }
    out
}

/// `ValidateConfigMap` (kubernetes/kubernetes `pkg/apis/core/validation/validation.go`): every
/// key of `data` and `binaryData` a config key, no key in both, the values together at most
/// `MaxSecretSize` (1 MiB; `binaryData` counted decoded).
fn validate_config_map(obj: &Value, causes: &mut Vec<(String, String)>) {
    const MAX: usize = 1024 * 1024;
    let data = obj.get("data").and_then(Value::as_object);
    let binary = obj.get("binaryData").and_then(Value::as_object);
    let mut total = 0;
    for (field, map) in [("data", data), ("binaryData", binary)] {
        for (key, value) in map.into_iter().flatten() {
            for msg in config_key_problems(key) {
                causes.push((format!("{field}[{key}]"), invalid_value(key, &msg)));
            }
            if field == "data" && binary.is_some_and(|b| b.contains_key(key)) {
                causes.push((
                    format!("data[{key}]"),
                    invalid_value(key, "duplicate of key present in binaryData"),
                ));
            }
            let text = value.as_str().unwrap_or_default();
            // base64 in JSON: three bytes per four characters, less the padding.
            total += if field == "binaryData" {
                (text.len() / 4 * 3)
                    .saturating_sub(text.bytes().rev().take_while(|b| *b == b'=').count())
            } else {
                text.len()
            };
        }
    }
    if total > MAX {
        causes.push((
            "<nil>".to_owned(),
            format!("Too long: may not be more than {MAX} bytes"),
        ));
    }
}

/// A CIDR as (network, prefix length, family width), parsed like Go's `net.ParseCIDR`: the
/// address may have host bits set (the legacy fields accept that).
fn parse_cidr(s: &str) -> Option<(u128, u32, u32)> {
    let (addr, bits) = s.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    let (value, width) = match addr {
        std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        std::net::IpAddr::V6(a) => (u128::from(a), 128),
    };
    if bits > width {
        return None;
    }
    let host = width - bits;
    let net = if host >= 128 {
        0
    } else {
        (value >> host) << host
    };
    Some((net, bits, width))
}

/// `ValidateIPBlock` (kubernetes/kubernetes `pkg/apis/networking/validation/validation.go`):
/// `cidr` is required and a CIDR; every `except` is a CIDR and a strict subset of `cidr`
/// ("must be a strict subset of `cidr`": inside it and with a longer prefix). Overlapping
/// excepts are not checked upstream and are accepted here.
fn validate_network_policy(obj: &Value, causes: &mut Vec<(String, String)>) {
    for dir in ["ingress", "egress"] {
        let peers = if dir == "ingress" { "from" } else { "to" };
        let rules = obj
            .pointer(&format!("/spec/{dir}"))
            .and_then(Value::as_array);
        for (r, rule) in rules.into_iter().flatten().enumerate() {
            let list = rule.get(peers).and_then(Value::as_array);
            for (i, peer) in list.into_iter().flatten().enumerate() {
                let Some(block) = peer.get("ipBlock").filter(|b| b.is_object()) else {
                    continue;
                };
                let at = format!("spec.{dir}[{r}].{peers}[{i}].ipBlock");
                let cidr = block.get("cidr").and_then(Value::as_str).unwrap_or("");
                if cidr.is_empty() {
                    causes.push((format!("{at}.cidr"), "Required value".into()));
                    continue;
                }
                let Some((net, bits, width)) = parse_cidr(cidr) else {
                    causes.push((
                        format!("{at}.cidr"),
                        invalid_value(
                            cidr,
                            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                        ),
                    ));
                    continue;
                };
                let excepts = block.get("except").and_then(Value::as_array);
                for (j, e) in excepts.into_iter().flatten().enumerate() {
                    let e = e.as_str().unwrap_or("");
                    let path = format!("{at}.except[{j}]");
                    match parse_cidr(e) {
                        None => causes.push((
                            path,
                            invalid_value(
                                e,
                                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                            ),
                        )),
                        Some((enet, ebits, ewidth)) => {
                            let host = width - bits;
                            let inside =
                                ewidth == width && (host >= 128 || (enet >> host) << host == net);
                            if !inside || bits >= ebits {
                                causes.push((
                                    path,
                                    invalid_value(e, "must be a strict subset of `cidr`"),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The total size of an object's annotations (keys and values) is at most 256 KiB, for the
/// object and for a workload's pod template (apimachinery `pkg/api/validation/objectmeta.go`,
/// `TotalAnnotationSizeLimitB`, `ValidateAnnotationsSize`, reported as `field.TooLong`:
/// `Too long: may not be more than 262144 bytes`).
fn annotation_causes(obj: &Value) -> Vec<(String, String)> {
    const LIMIT: usize = 256 * 1024;
    let mut causes = Vec::new();
    for (ptr, field) in [
        ("/metadata/annotations", "metadata.annotations"),
        (
            "/spec/template/metadata/annotations",
            "spec.template.metadata.annotations",
        ),
    ] {
        let size: usize = obj
            .pointer(ptr)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                    .sum()
            })
            .unwrap_or(0);
        if size > LIMIT {
            causes.push((
                field.to_owned(),
                format!("Too long: may not be more than {LIMIT} bytes"),
            ));
        }
    }
    causes
}

fn finish(
    k: &crate::kinds::KindInfo,
    name: &str,
    causes: Vec<(String, String)>,
) -> Result<(), ApiError> {
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(k, name, &causes))
    }
}

/// The default StorageClass: minikube's `storage-provisioner` addon installs `standard`
/// (`deploy/addons/storageclass/storageclass.yaml` in kubernetes/minikube), annotated
/// `storageclass.beta.kubernetes.io/is-default-class: "true"`, provisioner
/// `k8s.io/minikube-hostpath`, no `volumeBindingMode` (so `Immediate`).
pub const DEFAULT_STORAGE_CLASS: &str = "standard";
/// Its provisioner.
pub const DEFAULT_PROVISIONER: &str = "k8s.io/minikube-hostpath";

/// SetDefaults_StatefulSet (pkg/apis/apps/v1/defaults.go) and the parts of
/// ValidateStatefulSetSpec (pkg/apis/apps/validation/validation.go) a client can trip on.
fn default_statefulset(spec: &mut Value, causes: &mut Vec<(String, String)>) {
    match spec.get("podManagementPolicy").and_then(Value::as_str) {
        None | Some("") => spec["podManagementPolicy"] = json!("OrderedReady"),
        Some("OrderedReady" | "Parallel") => {}
        Some(other) => causes.push((
            "spec.podManagementPolicy".into(),
            format!("Invalid value: \"{other}\": must be 'OrderedReady' or 'Parallel'"),
        )),
    }
    if !spec.get("updateStrategy").is_some_and(Value::is_object) {
        spec["updateStrategy"] = json!({});
    }
    let us = &mut spec["updateStrategy"];
    if us
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        us["type"] = json!("RollingUpdate");
    }
    match us["type"].as_str().unwrap_or_default() {
        "RollingUpdate" => {
            if !us.get("rollingUpdate").is_some_and(Value::is_object) {
                us["rollingUpdate"] = json!({});
            }
            if us["rollingUpdate"]
                .get("partition")
                .is_none_or(Value::is_null)
            {
                us["rollingUpdate"]["partition"] = json!(0);
            }
            if us["rollingUpdate"]["partition"].as_i64().unwrap_or(0) < 0 {
                causes.push((
                    "spec.updateStrategy.rollingUpdate.partition".into(),
                    format!(
                        "Invalid value: {}: must be greater than or equal to 0",
                        us["rollingUpdate"]["partition"]
                    ),
                ));
            }
        }
        "OnDelete" => {
            if us.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                causes.push((
                    "spec.updateStrategy.rollingUpdate".into(),
                    "Invalid value: \"null\": only allowed for updateStrategy 'RollingUpdate'"
                        .into(),
                ));
            }
        }
        other => causes.push((
            "spec.updateStrategy".into(),
            format!("Invalid value: \"{other}\": must be 'RollingUpdate' or 'OnDelete'"),
        )),
    }
    if spec.get("revisionHistoryLimit").is_none() {
        spec["revisionHistoryLimit"] = json!(10);
    }
    // StatefulSetAutoDeletePVC (beta, on by default since 1.27; GA 1.32): Retain/Retain.
    if !spec
        .get("persistentVolumeClaimRetentionPolicy")
        .is_some_and(Value::is_object)
    {
        spec["persistentVolumeClaimRetentionPolicy"] = json!({});
    }
    for f in ["whenDeleted", "whenScaled"] {
        let p = &mut spec["persistentVolumeClaimRetentionPolicy"];
        match p.get(f).and_then(Value::as_str) {
            None | Some("") => p[f] = json!("Retain"),
            Some("Retain" | "Delete") => {}
            Some(other) => causes.push((
                format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                format!("Unsupported value: \"{other}\": supported values: \"Retain\", \"Delete\""),
            )),
        }
    }
    if i64_at(spec, "/replicas") < 0 {
        causes.push((
            "spec.replicas".into(),
            format!(
                "Invalid value: {}: must be greater than or equal to 0",
                spec["replicas"]
            ),
        ));
    }
    let restart = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if restart != "Always" {
        causes.push((
            "spec.template.spec.restartPolicy".into(),
            format!("Unsupported value: \"{restart}\": supported values: \"Always\""),
        ));
    }
    if spec
        .pointer("/template/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        causes.push((
            "spec.template.spec.activeDeadlineSeconds".into(),
            format!(
                "Invalid value: {}: must not be specified",
                spec["template"]["spec"]["activeDeadlineSeconds"]
            ),
        ));
    }
    // The claims a StatefulSet creates are validated as PersistentVolumeClaims are; the sim
    // refuses an invalid template at create (stricter than a FailedCreate at sync time).
    if let Some(tpls) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for (n, t) in tpls.iter_mut().enumerate() {
            let at = format!("spec.volumeClaimTemplates[{n}]");
            if t.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push((
                    format!("{at}.metadata.name"),
                    "Required value: name or generateName is required".into(),
                ));
            }
            if !t.get("spec").is_some_and(Value::is_object) {
                t["spec"] = json!({});
            }
            default_claim_spec(&mut t["spec"], &format!("{at}.spec"), causes);
        }
    }
}

fn i64_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or_default()
}

/// ValidatePersistentVolumeClaimSpec (pkg/apis/core/validation/validation.go): at least one
/// access mode, a storage request; SetDefaults_PersistentVolumeClaimSpec: `volumeMode:
/// Filesystem`.
fn default_claim_spec(spec: &mut Value, at: &str, causes: &mut Vec<(String, String)>) {
    let modes = spec.get("accessModes").and_then(Value::as_array);
    if modes.is_none_or(Vec::is_empty) {
        causes.push((
            format!("{at}.accessModes"),
            "Required value: at least 1 access mode is required".into(),
        ));
    }
    for m in modes.into_iter().flatten() {
        let m = m.as_str().unwrap_or_default();
        if !matches!(
            m,
            "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod"
        ) {
            causes.push((format!("{at}.accessModes"), format!("Unsupported value: \"{m}\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"")));
        }
    }
    let storage = spec.pointer("/resources/requests/storage");
    match storage {
        None => causes.push((format!("{at}.resources[storage]"), "Required value".into())),
        Some(q) => {
            let text = q.as_str().map_or_else(|| q.to_string(), String::from);
            let bytes = q
                .as_u64()
                .or_else(|| crate::metrics::quantity(&json!(text), false));
            if bytes.is_none_or(|v| v == 0) {
                causes.push((
                    format!("{at}.resources[storage]"),
                    format!("Invalid value: \"{text}\": must be greater than zero"),
                ));
            }
        }
    }
    if spec.get("volumeMode").is_none_or(Value::is_null) {
        spec["volumeMode"] = json!("Filesystem");
    }
}

/// Update-time validation of immutable fields.
/// A Secret's `stringData` is write-only: the API server merges it into `data` (base64 on the
/// wire), overwriting keys of the same name, and never returns it
/// (`Convert_v1_Secret_To_core_Secret` in `pkg/apis/core/v1/conversion.go`; the internal type
/// has no StringData).
fn merge_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

pub fn on_update(
    kind: usize,
    cur: &Value,
    new: &mut Value,
    kube_minor: u32,
) -> Result<(), ApiError> {
    let k = &KINDS[kind];
    if k.plural == "secrets" {
        merge_string_data(new);
    }
    let name = cur
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == idx::jobs() {
        for f in ["/spec/selector", "/spec/template", "/spec/completions"] {
            if let (Some(a), Some(b)) = (cur.pointer(f), new.pointer(f))
                && a != b
            {
                let field = f.trim_start_matches('/').replace('/', ".");
                return finish(
                    k,
                    name,
                    vec![(field, "Invalid value: field is immutable".into())],
                );
            }
        }
    }
    let mut causes = annotation_causes(new);
    if k.plural == "configmaps" {
        validate_config_map(new, &mut causes);
    }
    finish(k, name, causes)?;
    if k.plural == "statefulsets" {
        // ValidateStatefulSetUpdate (pkg/apis/apps/validation/validation.go): only these spec
        // fields may change; 1.34 made `revisionHistoryLimit` mutable too (the message names it
        // from then on).
        let history_mutable = kube_minor >= 34;
        let strip = |v: &Value| {
            let mut s = v.get("spec").cloned().unwrap_or_else(|| json!({}));
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
                if history_mutable {
                    m.remove("revisionHistoryLimit");
                }
            }
            s
        };
        let mut next = new.clone();
        if let Some(spec) = next.get_mut("spec").filter(|s| s.is_object()) {
            // The update is defaulted before it is validated.
            let mut ignored = Vec::new();
            default_statefulset(spec, &mut ignored);
        }
        if strip(cur) != strip(&next) {
            let fields = if history_mutable {
                "'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds'"
            } else {
                "'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds'"
            };
            return finish(
                k,
                name,
                vec![(
                    "spec".into(),
                    format!(
                        "Forbidden: updates to statefulset spec for fields other than {fields} are forbidden"
                    ),
                )],
            );
        }
    }
    if k.plural == "persistentvolumeclaims"
        && let (Some(a), Some(b)) = (cur.get("spec"), new.get("spec"))
    {
        // ValidatePersistentVolumeClaimUpdate: only a larger storage request (expansion), and
        // `volumeAttributesClassName`, may change; the sim refuses every other change.
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v
                .pointer_mut("/resources/requests")
                .and_then(Value::as_object_mut)
            {
                m.remove("storage");
            }
            if let Some(m) = v.as_object_mut() {
                m.remove("volumeAttributesClassName");
                m.remove("volumeName");
            }
            v
        };
        if strip(a) != strip(b) {
            return finish(k, name, vec![("spec".into(), "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into())]);
        }
    }
    if kind == idx::namespaces() {
        new["spec"] = cur.get("spec").cloned().unwrap_or_else(|| json!({}));
    }
    if k.plural == "networkpolicies" {
        // ValidateNetworkPolicyUpdate validates the new spec as a create does.
        let mut causes = Vec::new();
        validate_network_policy(new, &mut causes);
        finish(k, name, causes)?;
    }
    if kind == idx::pods()
        && let (Some(a), Some(b)) = (
            cur.pointer("/spec/containers"),
            new.pointer("/spec/containers"),
        )
    {
        let strip_images = |v: &Value| {
            let mut v = v.clone();
            if let Some(arr) = v.as_array_mut() {
                for c in arr {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("image");
                    }
                }
            }
            v
        };
        if strip_images(a) != strip_images(b) {
            return finish(k, name, vec![("spec".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into())]);
        }
    }
    Ok(())
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<(String, String)>) {
    if let Some(spec) = spec {
        validate_downward_api_volumes(spec, at, causes);
    }
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push((format!("{at}.containers"), "Required value".into())),
        Some(cs) if cs.is_empty() => {
            causes.push((format!("{at}.containers"), "Required value".into()))
        }
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => causes.push((
                        format!("{at}.containers[{i}].name"),
                        "Required value".into(),
                    )),
                    Some(n) if !is_dns_label(n) => {
                        causes.push((
                            format!("{at}.containers[{i}].name"),
                            invalid_value(n, DNS1123_LABEL_MSG),
                        ));
                    }
                    Some(_) => {}
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push((
                        format!("{at}.containers[{i}].image"),
                        "Required value".into(),
                    ));
                }
            }
        }
    }
}

/// `downwardAPI` volume items (kubernetes `pkg/apis/core/validation/validation.go`,
/// `validateDownwardAPIVolumeFile` and `validateObjectFieldSelector`; `fieldRef.apiVersion`
/// defaults to `v1`): `path` a relative path without `..` (`validateLocalDescendingPath`);
/// `fieldPath` one of the volume's expressions, or `metadata.annotations['KEY']` /
/// `metadata.labels['KEY']`; a path the downward API has elsewhere (env only) is
/// `Unsupported value`, an unknown one fails conversion (`pkg/apis/core/pods/helpers.go`,
/// `ConvertDownwardAPIFieldLabel`: `field label not supported`, `field label does not support
/// subscript`). Subscript keys are not checked.
fn validate_downward_api_volumes(spec: &Value, at: &str, causes: &mut Vec<(String, String)>) {
    const VOLUME: &[&str] = &[
        "metadata.annotations",
        "metadata.labels",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
    ];
    // ConvertDownwardAPIFieldLabel's other labels (the env's), `spec.host` read as `spec.nodeName`.
    const ENV_ONLY: &[&str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.serviceAccountName",
        "spec.schedulerName",
        "status.phase",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
        "spec.terminationGracePeriodSeconds",
    ];
    for (vi, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let Some(d) = v.get("downwardAPI") else {
            continue;
        };
        for (ii, item) in d["items"].as_array().into_iter().flatten().enumerate() {
            let here = format!("{at}.volumes[{vi}].downwardAPI.items[{ii}]");
            let path = item["path"].as_str().unwrap_or_default();
            if path.is_empty() {
                causes.push((format!("{here}.path"), "Required value".into()));
            } else if path.starts_with('/') {
                causes.push((
                    format!("{here}.path"),
                    invalid_value(path, "must be a relative path"),
                ));
            } else if path.split('/').any(|p| p == "..") {
                causes.push((
                    format!("{here}.path"),
                    invalid_value(path, "must not contain '..'"),
                ));
            }
            let Some(fp) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) else {
                continue;
            };
            let at_fp = format!("{here}.fieldRef.fieldPath");
            let subscripted = fp
                .find("['")
                .filter(|i| *i > 0 && fp.ends_with("']"))
                .map(|i| &fp[..i]);
            let converted = if fp == "spec.host" {
                "spec.nodeName"
            } else {
                fp
            };
            match subscripted {
                Some("metadata.annotations" | "metadata.labels") => {}
                Some(_) => causes.push((
                    at_fp,
                    invalid_value(
                        fp,
                        &format!(
                            "error converting fieldPath: field label does not support subscript: {fp}"
                        ),
                    ),
                )),
                None if VOLUME.contains(&fp) => {}
                None if ENV_ONLY.contains(&converted) => {
                    let fp = converted;
                    let supported: Vec<String> =
                        VOLUME.iter().map(|v| format!("\"{v}\"")).collect();
                    causes.push((
                        at_fp,
                        format!(
                            "Unsupported value: \"{fp}\": supported values: {}",
                            supported.join(", ")
                        ),
                    ));
                }
                _ => causes.push((
                    at_fp,
                    invalid_value(
                        fp,
                        &format!("error converting fieldPath: field label not supported: {fp}"),
                    ),
                )),
            }
        }
    }
}

fn validate_workload(spec: &Value, causes: &mut Vec<(String, String)>) {
    let Some(sel) = spec.get("selector") else {
        causes.push(("spec.selector".into(), "Required value".into()));
        return;
    };
    let selector = LabelSelector::from_object(sel);
    let tpl_labels = spec
        .pointer("/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let probe = json!({"metadata": {"labels": tpl_labels}});
    if selector.is_empty() {
        causes.push((
            "spec.selector".into(),
            "Invalid value: {}: empty selector is invalid for deployment".into(),
        ));
    } else if !selector.matches(&probe) {
        causes.push((
            "spec.template.metadata.labels".into(),
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                tpl_labels
            ),
        ));
    }
    validate_pod_spec(spec.pointer("/template/spec"), "spec.template.spec", causes);
}

/// Pod spec defaults a real apiserver fills in.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    for (f, v) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("serviceAccountName", json!("default")),
        ("serviceAccount", json!("default")),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
    ] {
        if spec.get(f).is_none() {
            spec[f] = v;
        }
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if !c.is_object() {
                    continue;
                }
                let image = c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let latest = !image.rsplit('/').next().unwrap_or_default().contains(':')
                    || image.ends_with(":latest");
                let pull = if latest && !image.contains('@') {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                for (f, v) in [
                    ("terminationMessagePath", json!("/dev/termination-log")),
                    ("terminationMessagePolicy", json!("File")),
                    ("imagePullPolicy", json!(pull)),
                    ("resources", json!({})),
                ] {
                    if c.get(f).is_none() {
                        c[f] = v;
                    }
                }
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter(|p| p.is_object()) {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                    }
                }
            }
        }
    }
}
