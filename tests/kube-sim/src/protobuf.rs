//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into the
//! JSON the simulator stores, so validation, defaulting and everything downstream see the same
//! object a JSON client would have sent.
//!
//! Typed client-go clients for built-in kinds (kubectl's `create namespace`, `create deployment`,
//! `create job`, `expose`, `run`, ...) send protobuf (client-go `rest/request.go`,
//! `UseProtobufAsDefault`). The body is the magic `k8s\0` followed by a `runtime.Unknown`
//! message whose `raw` holds the typed message (apimachinery
//! `pkg/runtime/serializer/protobuf/protobuf.go`). The typed messages are decoded with the
//! upstream `generated.proto` files vendored in `proto/` (Kubernetes 1.33, see
//! `scripts/vendor-protos.py`), compiled at first use with `protox` and read with
//! `prost-reflect`'s dynamic messages.
//!
//! The JSON is what Go's `encoding/json` writes for the decoded Go struct: field names from the
//! JSON tags (the proto name where they agree), `metav1.Time` as RFC 3339 seconds, `MicroTime`
//! with microseconds, `IntOrString` as a number or a string, `Quantity` as its string, `[]byte` as
//! base64, `RawExtension`/`FieldsV1` as the JSON they carry, a zero time as null, messages as
//! objects even when empty (Go never omits a struct). Go writes every non-pointer field on the wire, so the proto alone
//! cannot tell an explicit zero from an unset field; `proto/fields.txt` (from the Go struct tags)
//! says which scalar fields are pointers (a present zero is kept, e.g. `backoffLimit: 0`,
//! `allowPrivilegeEscalation: false`) or lack `omitempty` (kept); the zero value of every other
//! scalar is left out, as Go's `omitempty` does. Embedded structs (`json:",inline"`, e.g.
//! `Volume.volumeSource`, `Probe.handler`, `SecretKeySelector.localObjectReference`) are
//! sub-messages on the wire and their fields are written into the enclosing object. Empty lists
//! and maps are left out.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use base64::Engine as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, ReflectMessage as _, Value as Pv};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::kinds::KindInfo;

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body: `k8s` and encoding 0 (`runtime.Unknown`).
const MAGIC: &[u8] = b"k8s\0";

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";

macro_rules! protos {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../proto/", $path)))),*]
    };
}

/// The vendored upstream definitions, by import path.
static PROTOS: &[(&str, &str)] = protos![
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/schema/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/autoscaling/v2/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
];

static FIELDS: &str = include_str!("../proto/fields.txt");

/// How Go's JSON encoding treats a scalar field (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Non-pointer with `omitempty`: the zero value is left out.
    OmitZero,
    /// A pointer, or no `omitempty`: written whenever it is on the wire.
    Keep,
}

struct Schema {
    pool: DescriptorPool,
    /// `(message, proto field)` of pointer and non-`omitempty` scalar fields.
    keep: HashSet<(String, String)>,
    /// `(message, proto field)` -> JSON name where they differ.
    json_names: HashMap<(String, String), String>,
    /// `(message, proto field)` of embedded structs whose fields JSON inlines.
    inline: HashSet<(String, String)>,
}

impl Schema {
    fn presence(&self, message: &str, field: &str) -> Presence {
        if self
            .keep
            .contains(&(message.to_string(), field.to_string()))
        {
            Presence::Keep
        } else {
            Presence::OmitZero
        }
    }

    fn is_inline(&self, message: &str, field: &str) -> bool {
        self.inline
            .contains(&(message.to_string(), field.to_string()))
    }

    fn json_name<'a>(&'a self, message: &str, field: &'a str) -> &'a str {
        self.json_names
            .get(&(message.to_string(), field.to_string()))
            .map_or(field, String::as_str)
    }
}

struct Resolver;

impl protox::file::FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        let (_, src) = PROTOS
            .iter()
            .find(|(p, _)| *p == name)
            .ok_or_else(|| protox::Error::file_not_found(name))?;
        protox::file::File::from_source(name, src)
    }
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut compiler = protox::Compiler::with_file_resolver(Resolver);
        compiler.include_imports(true);
        for (path, _) in PROTOS {
            // The vendored files are fixed inputs; `tests::every_served_kind_has_a_message` compiles them.
            compiler
                .open_file(path)
                .unwrap_or_else(|e| panic!("vendored {path} does not compile: {e}"));
        }
        let mut keep = HashSet::new();
        let mut json_names = HashMap::new();
        let mut inline = HashSet::new();
        for line in FIELDS.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.split_whitespace();
            let (Some(msg), Some(field), Some(flag)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let key = (msg.to_string(), field.to_string());
            match (flag, flag.strip_prefix("json=")) {
                (_, Some(name)) => {
                    json_names.insert(key, name.to_string());
                }
                ("inline", None) => {
                    inline.insert(key);
                }
                _ => {
                    keep.insert(key);
                }
            }
        }
        Schema {
            pool: compiler.descriptor_pool(),
            keep,
            json_names,
            inline,
        }
    })
}

/// What a request body must hold.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// An object of this kind (create, update, status update).
    Object(&'static KindInfo),
    /// `meta.k8s.io/v1` `DeleteOptions` (the body of a delete).
    DeleteOptions,
}

/// The proto message of a kind: `k8s.io.api.<group's first label, or core>.<version>.<Kind>`.
fn message_name(k: &KindInfo) -> String {
    let pkg = if k.group.is_empty() {
        "core"
    } else {
        k.group.split('.').next().unwrap_or(k.group)
    };
    format!("k8s.io.api.{pkg}.{}.{}", k.version, k.kind)
}

/// Whether a `Content-Type` header names the Kubernetes protobuf media type.
#[must_use]
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "kube-sim cannot decode a protobuf body for {what}; send application/json (the simulator decodes protobuf bodies of the kinds it serves and DeleteOptions)"
        ),
    )
}

/// Decodes a protobuf request body into the JSON object a JSON client would have sent.
///
/// # Errors
/// 400 for a body that is not a Kubernetes protobuf message or whose `apiVersion`/`kind`
/// do not match the endpoint (the apiserver's messages); 415 for a body the simulator has no
/// definitions for.
pub fn decode(body: &[u8], expect: Expect) -> Result<Value, ApiError> {
    let (api_version, kind, message) = match expect {
        // Custom resources have no protobuf encoding: the apiextensions apiserver negotiates
        // JSON, YAML and CBOR only (apiextensions-apiserver `pkg/apiserver/customresource_handler.go`).
        Expect::Object(k) if k.is_custom() => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (custom resource {})",
                    k.api_version()
                ),
            ));
        }
        Expect::Object(k) => (k.api_version(), k.kind.to_string(), message_name(k)),
        Expect::DeleteOptions => (
            "meta.k8s.io/v1".to_string(),
            "DeleteOptions".to_string(),
            format!("{META}.DeleteOptions"),
        ),
    };
    let data = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request(format!(
            "provided data does not appear to be a protobuf message, expected prefix {MAGIC:?}"
        ))
    })?;
    if data.is_empty() {
        return Err(ApiError::bad_request("empty body"));
    }
    let s = schema();
    let bad = |e: prost_reflect::prost::DecodeError| ApiError::bad_request(e.to_string());
    let unknown_desc = s
        .pool
        .get_message_by_name(UNKNOWN)
        .ok_or_else(|| unsupported("runtime.Unknown"))?;
    let unknown = DynamicMessage::decode(unknown_desc, data).map_err(bad)?;
    let text = |m: &DynamicMessage, f: &str| {
        m.get_field_by_name(f)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned());
    let (mut got_version, mut got_kind) = type_meta
        .as_ref()
        .map(|t| (text(t, "apiVersion"), text(t, "kind")))
        .unwrap_or_default();
    if !text(&unknown, "contentEncoding").is_empty() {
        return Err(unsupported("a body with a content encoding"));
    }
    // Missing type information defaults to the endpoint's (copyKindDefaults).
    if got_version.is_empty() {
        got_version.clone_from(&api_version);
    }
    if got_kind.is_empty() {
        got_kind.clone_from(&kind);
    }
    // DeleteOptions is registered in every group version; client-go encodes it with the
    // client's (e.g. `v1` or `apps/v1`).
    let delete = matches!(expect, Expect::DeleteOptions);
    if !delete && got_version != api_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({got_version}) does not match the expected API version ({api_version})"
        )));
    }
    if got_kind != kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({got_kind}) does not match the expected kind ({kind})"
        )));
    }
    let desc = s
        .pool
        .get_message_by_name(&message)
        .ok_or_else(|| unsupported(&format!("{api_version} {kind}")))?;
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let msg = DynamicMessage::decode(desc, raw).map_err(bad)?;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(got_version));
    obj.insert("kind".into(), json!(got_kind));
    if let Value::Object(fields) = to_json(&msg, s).map_err(|e| unsupported(&e))? {
        obj.extend(fields);
    }
    Ok(Value::Object(obj))
}

fn rfc3339(m: &DynamicMessage, micro: bool) -> Value {
    // A zero time is written as an empty message (time_proto.go); Go's JSON writes it as null
    // (time.go), e.g. the `creationTimestamp: null` of every pod template.
    if !m.has_field_by_name("seconds") && !m.has_field_by_name("nanos") {
        return Value::Null;
    }
    let secs = m.get_field_by_name("seconds").and_then(|v| v.as_i64());
    let nanos = m.get_field_by_name("nanos").and_then(|v| v.as_i32());
    // Time keeps whole seconds (its Unmarshal drops nanos); MicroTime keeps microseconds.
    let nanos = if micro {
        u32::try_from(nanos.unwrap_or(0)).unwrap_or(0) / 1000 * 1000
    } else {
        0
    };
    let Some(t) = chrono::DateTime::from_timestamp(secs.unwrap_or(0), nanos) else {
        return Value::Null;
    };
    json!(if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    })
}

/// `RawExtension` and `FieldsV1` carry JSON; without any they are null.
fn raw_json(m: &DynamicMessage, field: &str) -> Result<Value, String> {
    let raw = m
        .get_field_by_name(field)
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&raw)
        .map_err(|_| format!("{} holding non-JSON data", m.descriptor().full_name()))
}

/// A message as Go's JSON encoding writes it.
fn to_json(m: &DynamicMessage, s: &Schema) -> Result<Value, String> {
    let desc = m.descriptor();
    let name = desc.full_name();
    match name {
        TIME => return Ok(rfc3339(m, false)),
        MICRO_TIME => return Ok(rfc3339(m, true)),
        FIELDS_V1 => return raw_json(m, "Raw"),
        RAW_EXTENSION => return raw_json(m, "raw"),
        QUANTITY => {
            return Ok(json!(
                m.get_field_by_name("string")
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ));
        }
        INT_OR_STRING => {
            let ty = m.get_field_by_name("type").and_then(|v| v.as_i64());
            return Ok(if ty == Some(1) {
                json!(
                    m.get_field_by_name("strVal")
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                )
            } else {
                json!(
                    m.get_field_by_name("intVal")
                        .and_then(|v| v.as_i32())
                        .unwrap_or(0)
                )
            });
        }
        _ if name.starts_with("k8s.io.") => {}
        // Only Kubernetes messages are mapped; anything else has no known JSON form here.
        _ => return Err(name.to_string()),
    }
    let mut out = Map::new();
    for (f, v) in m.fields() {
        let value = match v {
            Pv::Message(sub) if s.is_inline(name, f.name()) => {
                if let Value::Object(fields) = to_json(sub, s)? {
                    out.extend(fields);
                }
                continue;
            }
            Pv::Message(sub) => to_json(sub, s)?,
            Pv::List(items) => {
                let mut arr = Vec::with_capacity(items.len());
                for item in items {
                    arr.push(element(item, s)?);
                }
                if arr.is_empty() {
                    continue;
                }
                Value::Array(arr)
            }
            Pv::Map(entries) => {
                let mut obj = Map::new();
                for (k, item) in entries {
                    obj.insert(map_key(k), element(item, s)?);
                }
                if obj.is_empty() {
                    continue;
                }
                Value::Object(obj)
            }
            scalar_value => {
                if is_zero(scalar_value) && s.presence(name, f.name()) == Presence::OmitZero {
                    continue;
                }
                scalar(scalar_value)
            }
        };
        out.insert(s.json_name(name, f.name()).to_string(), value);
    }
    Ok(Value::Object(out))
}

/// A list or map element: messages as objects, scalars as they are.
fn element(v: &Pv, s: &Schema) -> Result<Value, String> {
    match v {
        Pv::Message(m) => to_json(m, s),
        other => Ok(scalar(other)),
    }
}

fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

fn is_zero(v: &Pv) -> bool {
    match v {
        Pv::Bool(b) => !b,
        Pv::I32(n) | Pv::EnumNumber(n) => *n == 0,
        Pv::I64(n) => *n == 0,
        Pv::U32(n) => *n == 0,
        Pv::U64(n) => *n == 0,
        Pv::F32(n) => *n == 0.0,
        Pv::F64(n) => *n == 0.0,
        Pv::String(s) => s.is_empty(),
        Pv::Bytes(b) => b.is_empty(),
        Pv::Message(_) | Pv::List(_) | Pv::Map(_) => false,
    }
}

fn scalar(v: &Pv) -> Value {
    match v {
        Pv::Bool(b) => json!(b),
        Pv::I32(n) | Pv::EnumNumber(n) => json!(n),
        Pv::I64(n) => json!(n),
        Pv::U32(n) => json!(n),
        Pv::U64(n) => json!(n),
        Pv::F32(n) => json!(n),
        Pv::F64(n) => json!(n),
        Pv::String(s) => json!(s),
        // Go's encoding/json writes []byte as standard base64 with padding.
        Pv::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Pv::Message(_) | Pv::List(_) | Pv::Map(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::prost::Message as _;

    use super::*;
    use crate::kinds::{KINDS, by_plural};

    /// A Kubernetes protobuf body: `msg` (proto3 JSON of the typed message, field names as in
    /// the .proto) wrapped in `runtime.Unknown` after the magic.
    fn body(api_version: &str, kind: &str, message: &str, msg: &Value) -> Vec<u8> {
        let pool = &schema().pool;
        let desc = pool.get_message_by_name(message).unwrap();
        let typed = DynamicMessage::deserialize(desc, msg.clone()).unwrap();
        let unknown = json!({
            "typeMeta": {"apiVersion": api_version, "kind": kind},
            "raw": base64::engine::general_purpose::STANDARD.encode(typed.encode_to_vec()),
        });
        let unknown =
            DynamicMessage::deserialize(pool.get_message_by_name(UNKNOWN).unwrap(), unknown)
                .unwrap();
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    fn kind(plural: &str) -> &'static KindInfo {
        &KINDS[by_plural(plural)]
    }

    fn decode_kind(plural: &str, msg: &Value) -> Result<Value, ApiError> {
        let k = kind(plural);
        decode(
            &body(&k.api_version(), k.kind, &message_name(k), msg),
            Expect::Object(k),
        )
    }

    #[test]
    fn every_served_kind_has_a_message() {
        for k in KINDS.iter().filter(|k| !k.is_custom()) {
            assert!(
                schema()
                    .pool
                    .get_message_by_name(&message_name(k))
                    .is_some(),
                "{}",
                message_name(k)
            );
        }
    }

    #[test]
    fn custom_resources_take_no_protobuf() {
        let k = kind("certificates");
        assert!(k.is_custom() && !kind("deployments").is_custom() && !kind("leases").is_custom());
        let err = decode(&[MAGIC, b"\x0a\x00"].concat(), Expect::Object(k)).unwrap_err();
        assert_eq!(err.code, 415, "{err:?}");
    }

    #[test]
    fn pointer_zeros_are_kept_and_non_pointer_zeros_left_out() {
        // As Go writes it: every non-pointer field on the wire, zero or not.
        let job = decode_kind(
            "jobs",
            &json!({
                "metadata": {"name": "j", "namespace": "", "generateName": "", "generation": 0,
                    "creationTimestamp": {}},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "containers": [{"name": "c", "image": "busybox", "stdin": false, "tty": false,
                        "terminationMessagePath": "", "resources": {},
                        "securityContext": {"allowPrivilegeEscalation": false, "privileged": false}}],
                    "restartPolicy": "Never", "hostNetwork": false, "dnsPolicy": ""}}},
                "status": {"active": 0, "failed": 0}
            }),
        )
        .unwrap();
        assert_eq!(
            job,
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "j", "creationTimestamp": null},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "containers": [{"name": "c", "image": "busybox", "resources": {},
                        "securityContext": {"allowPrivilegeEscalation": false, "privileged": false}}],
                    "restartPolicy": "Never"}}},
                "status": {}
            })
        );
    }

    #[test]
    fn well_known_types_map_to_their_json_forms() {
        let svc = decode_kind(
            "services",
            &json!({
                "metadata": {"name": "s", "creationTimestamp": {"seconds": 1_700_000_000}},
                "spec": {"ports": [
                    {"port": 80, "targetPort": {"type": 0, "intVal": 8080}},
                    {"port": 443, "targetPort": {"type": 1, "strVal": "https"}, "nodePort": 0}
                ]}
            }),
        )
        .unwrap();
        assert_eq!(svc["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": "https"}])
        );

        let pod = decode_kind(
            "pods",
            &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"memory": {"string": "64Mi"}, "cpu": {"string": "500m"}}}}]}}),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "64Mi"}})
        );

        let secret = decode_kind(
            "secrets",
            &json!({"metadata": {"name": "s"}, "data": {"k": "aGk="}, "stringData": {"x": "y"},
                "type": "Opaque", "immutable": false}),
        )
        .unwrap();
        // []byte values stay base64; `immutable` is a pointer, so an explicit false is kept.
        assert_eq!(secret["data"], json!({"k": "aGk="}));
        assert_eq!(secret["stringData"], json!({"x": "y"}));
        assert_eq!(secret["immutable"], json!(false));

        let lease = decode_kind(
            "leases",
            &json!({"metadata": {"name": "l", "managedFields": [{"manager": "m", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"Raw": base64::engine::general_purpose::STANDARD.encode(br#"{"f:spec":{}}"#)}}]},
                "spec": {"holderIdentity": "me", "renewTime": {"seconds": 1_700_000_000, "nanos": 123_456_789}}}),
        )
        .unwrap();
        assert_eq!(lease["spec"]["renewTime"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(
            lease["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:spec": {}})
        );
    }

    #[test]
    fn json_names_that_differ_from_proto_names() {
        // IngressClassParametersReference.APIGroup is `aPIGroup` in the proto, `apiGroup` in JSON.
        let s = schema();
        assert_eq!(
            s.json_name(
                "k8s.io.api.networking.v1.IngressClassParametersReference",
                "aPIGroup"
            ),
            "apiGroup"
        );
    }

    #[test]
    fn delete_options_decode_whatever_group_version_the_client_used() {
        let b = body(
            "v1",
            "DeleteOptions",
            &format!("{META}.DeleteOptions"),
            &json!({"propagationPolicy": "Foreground", "gracePeriodSeconds": 0}),
        );
        let d = decode(&b, Expect::DeleteOptions).unwrap();
        assert_eq!(d["propagationPolicy"], "Foreground");
        assert_eq!(d["gracePeriodSeconds"], 0);
    }

    #[test]
    fn wrong_envelopes_are_refused_like_the_apiserver_does() {
        let ns = kind("namespaces");
        let e = decode(b"{\"kind\":\"Namespace\"}", Expect::Object(ns)).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("does not appear to be a protobuf message")
        );
        let b = body(
            "apps/v1",
            "Namespace",
            "k8s.io.api.core.v1.Namespace",
            &json!({}),
        );
        let e = decode(&b, Expect::Object(ns)).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "the API version in the data (apps/v1) does not match the expected API version (v1)"
        );
        let e = decode(b"k8s\0", Expect::Object(ns)).unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn embedded_structs_are_inlined() {
        let pod = decode_kind(
            "pods",
            &json!({"metadata": {"name": "p"}, "spec": {
                "volumes": [{"name": "v", "volumeSource": {"secret": {"secretName": "s"}}}],
                "containers": [{"name": "c", "image": "i",
                    "env": [{"name": "E", "valueFrom": {"secretKeyRef": {
                        "localObjectReference": {"name": "s"}, "key": "k"}}}],
                    "readinessProbe": {"handler": {"httpGet": {"path": "/", "port": {"type": 0, "intVal": 80}}},
                        "periodSeconds": 5}}]}}),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "v", "secret": {"secretName": "s"}}])
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["env"][0]["valueFrom"],
            json!({"secretKeyRef": {"name": "s", "key": "k"}})
        );
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5})
        );
        let ing = decode_kind(
            "ingresses",
            &json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.com",
                "ingressRuleValue": {"http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}}]}}),
        )
        .unwrap();
        assert_eq!(ing["spec"]["rules"][0]["host"], "a.com");
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "web"
        );
    }
}
