//! The HTTP front: fault layer and request recording, path routing, the verbs, watch and log
//! streams, discovery, and the `/_sim` admin endpoints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::core::Core;
use crate::error::ApiError;
use crate::faults::{FaultAction, FaultRule, RecordedRequest};
use crate::kinds::{KINDS, KindInfo, idx};
use crate::patch;
use crate::protobuf;
use crate::script::Override;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{DeleteOpts, EventType, Part, Propagation, now_rfc3339};

/// The axum router serving the simulated API.
pub fn router(core: Arc<Core>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(core)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Version,
    ApiVersions,
    ApiGroups,
    Group(String),
    Resources(String, String),
    OpenApiRoot,
    OpenApiGroup(String, String),
    Object {
        kind: usize,
        ns: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
    /// `metrics.k8s.io/v1beta1` pods (metrics-server, through the aggregator).
    PodMetrics {
        ns: Option<String>,
        name: Option<String>,
    },
    Unknown,
}

fn parse_route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["openapi", "v3"] => return Route::OpenApiRoot,
        ["openapi", "v3", "api", v] => return Route::OpenApiGroup(String::new(), (*v).into()),
        ["openapi", "v3", "apis", g, v] => return Route::OpenApiGroup((*g).into(), (*v).into()),
        ["api"] => return Route::ApiVersions,
        ["apis"] => return Route::ApiGroups,
        ["api", v] => return Route::Resources(String::new(), (*v).into()),
        ["apis", g] => return Route::Group((*g).into()),
        ["apis", g, v] => return Route::Resources((*g).into(), (*v).into()),
        ["apis", "metrics.k8s.io", "v1beta1", "pods"] => {
            return Route::PodMetrics {
                ns: None,
                name: None,
            };
        }
        [
            "apis",
            "metrics.k8s.io",
            "v1beta1",
            "namespaces",
            ns,
            "pods",
            name @ ..,
        ] if name.len() <= 1 => {
            return Route::PodMetrics {
                ns: Some((*ns).into()),
                name: name.first().map(|n| (*n).into()),
            };
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::Unknown,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, res, tail @ ..]
            if crate::kinds::find(group, version, res).is_some_and(|k| KINDS[k].namespaced) =>
        {
            (
                Some((*ns).to_string()),
                std::iter::once(*res)
                    .chain(tail.iter().copied())
                    .collect::<Vec<_>>(),
            )
        }
        _ => (None, rest.to_vec()),
    };
    let Some(kind) = rest
        .first()
        .and_then(|r| crate::kinds::find(group, version, r))
    else {
        return Route::Unknown;
    };
    if rest.len() > 3 {
        return Route::Unknown;
    }
    Route::Object {
        kind,
        ns,
        name: rest.get(1).map(|s| (*s).to_string()),
        sub: rest.get(2).map(|s| (*s).to_string()),
    }
}

fn classify(method: &Method, route: &Route, q: &HashMap<String, String>) -> (String, String) {
    let Route::Object {
        kind, name, sub, ..
    } = route
    else {
        return (String::new(), String::new());
    };
    let mut resource = KINDS[*kind].plural.to_string();
    if let Some(s) = sub {
        resource = format!("{resource}/{s}");
    }
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", false) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "",
    };
    (verb.into(), resource)
}

/// What a protobuf body decodes to: the object of the endpoint's kind for a create, update or
/// status update, `DeleteOptions` for a delete. Patches and `/scale` have no protobuf form here.
fn body_expect(method: &Method, route: &Route) -> Option<protobuf::Expect> {
    let Route::Object { kind, sub, .. } = route else {
        return None;
    };
    match (method, sub.as_deref()) {
        (&Method::DELETE, None) => Some(protobuf::Expect::DeleteOptions),
        (&Method::POST | &Method::PUT, None | Some("status")) => {
            Some(protobuf::Expect::Object(&KINDS[*kind]))
        }
        _ => None,
    }
}

/// metrics-server's PodMetrics, or what the aggregator answers without it (crate::metrics).
fn pod_metrics(ctx: &Ctx, ns: Option<&str>, name: Option<&str>) -> Result<Response, ApiError> {
    use crate::metrics::MetricsServer;
    match ctx.core.metrics.server() {
        MetricsServer::Absent => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        MetricsServer::Unavailable => {
            let mut r = Response::new(Body::from("service unavailable\n"));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(r);
        }
        MetricsServer::Running => {}
    }
    if ctx.method != Method::GET {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ));
    }
    let now = crate::store::now_rfc3339();
    let pods = ctx.core.store.all(crate::kinds::idx::pods(), ns);
    let metrics = pods
        .iter()
        .filter(|p| {
            name.is_none_or(|n| p.pointer("/metadata/name").and_then(Value::as_str) == Some(n))
        })
        .filter_map(|p| ctx.core.metrics.pod_metrics(p, &now));
    match name {
        Some(name) => metrics
            .into_iter()
            .next()
            .map(|m| json_response(200, &m))
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("podmetrics.metrics.k8s.io \"{name}\" not found"),
                )
            }),
        None => Ok(json_response(
            200,
            &json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {}, "items": metrics.collect::<Vec<_>>()}),
        )),
    }
}

/// `POST /_sim/metrics`: `{"server": "running"|"unavailable"|"absent"}` and/or
/// `{"namespace": "...", "cpu": "150m", "memory": "64Mi"}` (per container of its running pods).
#[derive(serde::Deserialize)]
struct MetricsAdmin {
    server: Option<crate::metrics::MetricsServer>,
    namespace: Option<String>,
    cpu: Option<String>,
    memory: Option<String>,
}

fn json_response(code: u16, v: &(impl serde::Serialize + ?Sized)) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

async fn handle(State(core): State<Arc<Core>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let hdr = |h: header::HeaderName| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    if path.starts_with("/_sim") {
        return admin(&core, &parts.method, &path, &bytes);
    }
    let route = parse_route(&path);
    let (verb, resource) = classify(&parts.method, &route, &q);
    // An older apiserver's decoder drops the fields it does not know (crate::apiversion).
    let (bytes, warnings, refused) = drop_unknown_fields(
        &core,
        &parts.method,
        &route,
        &q,
        hdr(header::CONTENT_TYPE).as_deref(),
        bytes,
    );
    let mut watch_fault = None;
    let mut early = None;
    for action in core.faults.take(&verb, &resource, &path) {
        match action {
            FaultAction::Delay { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            FaultAction::Status { code, retry_after } => {
                let reason = match code {
                    429 => "TooManyRequests",
                    500 => "InternalError",
                    503 => "ServiceUnavailable",
                    504 => "Timeout",
                    409 => "Conflict",
                    410 => "Expired",
                    _ => "Unknown",
                };
                let mut e = ApiError::new(code, reason, format!("injected fault: {code} {reason}"));
                e.retry_after = retry_after;
                early = Some(e);
            }
            FaultAction::Expire if verb != "watch" => {
                early = Some(ApiError::expired(1, core.store.resource_version()))
            }
            other => watch_fault = Some(other),
        }
    }
    let ctx = Ctx {
        core: core.clone(),
        method: parts.method.clone(),
        q,
        body: bytes.clone(),
        content_type: hdr(header::CONTENT_TYPE),
        expect: body_expect(&parts.method, &route),
        user_agent: hdr(header::USER_AGENT),
        table: crate::table::wants_table(hdr(header::ACCEPT).as_deref()),
        watch_fault,
    };
    let early = early.or(refused);
    let mut resp = match early {
        Some(e) => error_response(&e),
        None => match dispatch(&ctx, &route).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
    };
    if resp.status().is_success() {
        for w in warnings {
            if let Ok(v) = HeaderValue::from_str(&w) {
                resp.headers_mut().append(header::WARNING, v);
            }
        }
    }
    core.recorder.push(RecordedRequest {
        method: parts.method.to_string(),
        path,
        query,
        verb,
        resource,
        content_type: ctx.content_type.clone(),
        accept: hdr(header::ACCEPT),
        body: String::from_utf8_lossy(&bytes[..bytes.len().min(65536)]).into_owned(),
        status: resp.status().as_u16(),
    });
    resp
}

/// Drops from a write's JSON body the fields the simulated version does not know; returns the
/// body, the `Warning` headers to send, and the error for `fieldValidation=Strict` or an
/// apply patch (which always checks its schema).
fn drop_unknown_fields(
    core: &Core,
    method: &Method,
    route: &Route,
    q: &HashMap<String, String>,
    content_type: Option<&str>,
    bytes: Bytes,
) -> (Bytes, Vec<String>, Option<ApiError>) {
    let Route::Object { kind, ns, name, .. } = route else {
        return (bytes, Vec::new(), None);
    };
    let ct = content_type.unwrap_or("application/json");
    if !(*method == Method::POST || *method == Method::PUT || *method == Method::PATCH)
        || ct.contains("json-patch")
        || ct.contains("protobuf")
    {
        return (bytes, Vec::new(), None);
    }
    let k = &KINDS[*kind];
    // Most writes cannot hold an unknown field: do not parse their bodies twice.
    if !crate::apiversion::may_drop(k.plural, core.kube_version) {
        return (bytes, Vec::new(), None);
    }
    let Ok(mut body) = serde_json::from_slice::<Value>(&bytes) else {
        return (bytes, Vec::new(), None);
    };
    let dropped = crate::apiversion::drop_unknown_fields(k.plural, &mut body, core.kube_version);
    if dropped.is_empty() {
        return (bytes, Vec::new(), None);
    }
    let api_version = k.api_version();
    if ct.contains("apply-patch") {
        let name = name.clone().unwrap_or_default();
        let paths: Vec<String> = dropped
            .iter()
            .map(|d| format!("{}: field not declared in schema", d.smd_path))
            .collect();
        let e = ApiError::bad_request(format!(
            "failed to create typed patch object ({}/{name}; {api_version}, Kind={}): {}",
            ns.clone().unwrap_or_default(),
            k.kind,
            paths.join(", ")
        ));
        return (bytes, Vec::new(), Some(e));
    }
    match q.get("fieldValidation").map(String::as_str) {
        Some("Strict") => {
            let fields: Vec<String> = dropped
                .iter()
                .map(|d| format!("unknown field \"{}\"", d.json_path))
                .collect();
            let e = ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                fields.join(", "),
                kind = k.kind,
                version = k.version,
            ));
            (bytes, Vec::new(), Some(e))
        }
        Some("Ignore") => (
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            Vec::new(),
            None,
        ),
        _ => (
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            dropped
                .iter()
                .map(crate::apiversion::warning_header)
                .collect(),
            None,
        ),
    }
}

struct Ctx {
    core: Arc<Core>,
    method: Method,
    q: HashMap<String, String>,
    body: Bytes,
    content_type: Option<String>,
    /// What a protobuf body of this request decodes to (`None`: the simulator cannot decode one).
    expect: Option<protobuf::Expect>,
    user_agent: Option<String>,
    /// `kubectl get` asked for a `meta.k8s.io/v1` Table.
    table: bool,
    watch_fault: Option<FaultAction>,
}

impl Ctx {
    /// `dryRun=All`: validate and answer, store nothing.
    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn param(&self, k: &str) -> Option<&str> {
        self.q.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// The request body as JSON: JSON as sent, a Kubernetes protobuf body decoded to the JSON a
    /// JSON client would have sent (see [`protobuf`]), anything else 415.
    fn body_json(&self) -> Result<Value, ApiError> {
        let ct = self.content_type.as_deref().unwrap_or_default();
        if protobuf::is_protobuf(ct) {
            return match self.expect {
                Some(expect) => protobuf::decode(&self.body, expect),
                None => Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "kube-sim cannot decode a protobuf body for this request; send application/json (the simulator decodes protobuf bodies of the kinds it serves and DeleteOptions)",
                )),
            };
        }
        if ct.contains("cbor") {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, {}; got {ct}",
                    protobuf::MEDIA_TYPE
                ),
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("couldn't decode the request body: {e}")))
    }

    /// The field manager of a non-apply write: the query parameter, else the user agent's product.
    fn manager(&self) -> String {
        if let Some(m) = self.param("fieldManager") {
            return m.to_string();
        }
        self.user_agent
            .as_deref()
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }
}

async fn dispatch(ctx: &Ctx, route: &Route) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    match route {
        Route::Version => Ok(json_response(200, &version(ctx.core.kube_version))),
        Route::ApiVersions => Ok(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        )),
        Route::ApiGroups => Ok(json_response(200, &api_groups())),
        Route::Group(g) => {
            let groups = api_groups();
            let found = groups["groups"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == g.as_str()))
                .cloned();
            let mut v = found.ok_or_else(not_found)?;
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            Ok(json_response(200, &v))
        }
        Route::Resources(g, v) => resources(g, v)
            .map(|r| json_response(200, &r))
            .ok_or_else(not_found),
        Route::OpenApiRoot => Ok(json_response(200, &openapi_root())),
        Route::OpenApiGroup(g, v) => openapi_group(g, v)
            .map(|r| json_response(200, &r))
            .ok_or_else(not_found),
        Route::Unknown => Err(not_found()),
        Route::PodMetrics { ns, name } => pod_metrics(ctx, ns.as_deref(), name.as_deref()),
        Route::Object {
            kind,
            ns,
            name,
            sub,
        } => {
            let kind = *kind;
            let k = &KINDS[kind];
            let ns_s = ns.clone().unwrap_or_default();
            if k.namespaced && ns.is_none() && (name.is_some() || ctx.method != Method::GET) {
                return Err(not_found());
            }
            match (&ctx.method, name, sub.as_deref()) {
                (&Method::GET, None, None) => {
                    if ctx.param("watch").is_some_and(|w| w == "true" || w == "1") {
                        watch(ctx, kind, ns.clone())
                    } else {
                        list(ctx, kind, ns.as_deref())
                    }
                }
                (&Method::POST, None, None) => {
                    let obj = ctx.body_json()?;
                    let created = ctx.core.store.create_opts(
                        kind,
                        &ns_s,
                        obj,
                        Some(&ctx.manager()),
                        ctx.dry_run(),
                    )?;
                    Ok(json_response(201, &*created))
                }
                (&Method::DELETE, None, None) => delete_collection(ctx, kind, ns.as_deref()),
                (&Method::GET, Some(n), None) => {
                    let o = ctx.core.store.get(kind, &ns_s, n)?;
                    if ctx.table {
                        let meta = json!({"resourceVersion": o["metadata"]["resourceVersion"]});
                        return Ok(json_response(
                            200,
                            &crate::table::table(k, &[&*o], meta, ctx.param("includeObject")),
                        ));
                    }
                    Ok(json_response(200, &*o))
                }
                (&Method::GET, Some(n), Some("status")) if k.has_status => {
                    Ok(json_response(200, &*ctx.core.store.get(kind, &ns_s, n)?))
                }
                (&Method::PUT, Some(n), None) => Ok(json_response(
                    200,
                    &*ctx.core.store.update_opts(
                        kind,
                        &ns_s,
                        n,
                        ctx.body_json()?,
                        Part::Main,
                        Some(&ctx.manager()),
                        ctx.dry_run(),
                    )?,
                )),
                (&Method::PUT, Some(n), Some("status")) if k.has_status => Ok(json_response(
                    200,
                    &*ctx.core.store.update_opts(
                        kind,
                        &ns_s,
                        n,
                        ctx.body_json()?,
                        Part::Status,
                        Some(&ctx.manager()),
                        ctx.dry_run(),
                    )?,
                )),
                (&Method::PUT, Some(n), Some("finalize")) if kind == idx::namespaces() => {
                    Ok(json_response(200, &*ctx.core.store.get(kind, &ns_s, n)?))
                }
                (&Method::PATCH, Some(n), None) => patch_object(ctx, kind, &ns_s, n, Part::Main),
                (&Method::PATCH, Some(n), Some("status")) if k.has_status => {
                    patch_object(ctx, kind, &ns_s, n, Part::Status)
                }
                (&Method::DELETE, Some(n), None) => delete_one(ctx, kind, &ns_s, n),
                (&Method::GET, Some(n), Some("log")) if kind == idx::pods() => {
                    logs(ctx, &ns_s, n).await
                }
                (m, Some(n), Some("scale")) if k.has_scale => scale(ctx, m, kind, &ns_s, n),
                _ => Err(ApiError::method_not_allowed()),
            }
        }
    }
}

fn version(v: crate::apiversion::KubeVersion) -> Value {
    json!({"major": v.major.to_string(), "minor": v.minor.to_string(), "gitVersion": format!("v{v}.0-kube-sim"), "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
        "platform": "linux/amd64"})
}

/// The OpenAPI v3 index: one entry per group version (kubectl reads it to learn that PATCH
/// accepts `fieldValidation`, so `kubectl apply` validates on the server).
fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for k in KINDS {
        let key = k.prefix().trim_start_matches('/').to_string();
        let url = format!("/openapi/v3/{key}?hash=kube-sim");
        paths.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document for a group version: paths with their verbs, the
/// group-version-kind extension and the query parameters, no schemas.
fn openapi_group(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&KindInfo> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for k in kinds {
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|n| json!({"name": n, "in": "query", "schema": {"type": if *n == "force" { "boolean" } else { "string" }}}))
            .collect();
        let op = |id: &str| {
            json!({"operationId": id, "x-kubernetes-group-version-kind": gvk, "parameters": params,
            "responses": {"200": {"description": "OK"}}})
        };
        let coll = if k.namespaced {
            k.collection_path(Some("{namespace}"))
        } else {
            k.collection_path(None)
        };
        paths.insert(
            coll.clone(),
            json!({"get": op("list"), "post": op("create"), "delete": op("deletecollection")}),
        );
        paths.insert(format!("{coll}/{{name}}"), json!({"get": op("read"), "put": op("replace"), "patch": op("patch"), "delete": op("delete")}));
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": {}}}),
    )
}

fn api_groups() -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for k in KINDS.iter().filter(|k| !k.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| g == k.group) {
            Some((_, vs)) if !vs.iter().any(|v| v == k.version) => vs.push(k.version.into()),
            Some(_) => {}
            None => groups.push((k.group.into(), vec![k.version.into()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resources(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&KindInfo> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for k in kinds {
        out.push(json!({"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": k.short_names}));
        if k.has_status {
            out.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.has_scale {
            out.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if k.plural == "pods" {
            out.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
        if k.plural == "namespaces" {
            out.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
    )
}

fn selectors(ctx: &Ctx, kind: usize) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let l = LabelSelector::parse(ctx.param("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let f = FieldSelector::parse_for(
        KINDS[kind].kind,
        ctx.param("fieldSelector").unwrap_or_default(),
    )
    .map_err(ApiError::bad_request)?;
    Ok((l, f))
}

fn list(ctx: &Ctx, kind: usize, ns: Option<&str>) -> Result<Response, ApiError> {
    let (l, f) = selectors(ctx, kind)?;
    let limit = ctx.param("limit").and_then(|s| s.parse::<usize>().ok());
    let r = ctx
        .core
        .store
        .list(kind, ns, &l, &f, limit, ctx.param("continue"))?;
    let k = &KINDS[kind];
    let mut meta = json!({"resourceVersion": r.resource_version.to_string()});
    if let Some(c) = r.continue_token {
        meta["continue"] = json!(c);
        if let Some(n) = r.remaining {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let items: Vec<&Value> = r.items.iter().map(AsRef::as_ref).collect();
    if ctx.table {
        return Ok(json_response(
            200,
            &crate::table::table(k, &items, meta, ctx.param("includeObject")),
        ));
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", k.kind), "apiVersion": k.api_version(), "metadata": meta, "items": items}),
    ))
}

fn delete_opts(ctx: &Ctx) -> Result<DeleteOpts, ApiError> {
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        ctx.body_json()?
    };
    let prop = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| ctx.param("propagationPolicy"))
        .map(|p| {
            Propagation::parse(p)
                .ok_or_else(|| ApiError::bad_request(format!("invalid propagationPolicy: {p}")))
        })
        .transpose()?;
    let prop = prop.or_else(
        || match body.get("orphanDependents").and_then(Value::as_bool) {
            Some(true) => Some(Propagation::Orphan),
            Some(false) => Some(Propagation::Background),
            None => None,
        },
    );
    Ok(DeleteOpts {
        propagation: prop,
        grace_period: body
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| ctx.param("gracePeriodSeconds").and_then(|s| s.parse().ok())),
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: ctx.dry_run()
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All")),
    })
}

fn delete_one(ctx: &Ctx, kind: usize, ns: &str, name: &str) -> Result<Response, ApiError> {
    let opts = delete_opts(ctx)?;
    let (obj, gone) = ctx.core.store.delete(kind, ns, name, &opts)?;
    if gone {
        let k = &KINDS[kind];
        let mut details = json!({"name": name, "kind": k.plural, "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)});
        if !k.group.is_empty() {
            details["group"] = json!(k.group);
        }
        Ok(json_response(
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
        ))
    } else {
        Ok(json_response(200, &*obj))
    }
}

fn delete_collection(ctx: &Ctx, kind: usize, ns: Option<&str>) -> Result<Response, ApiError> {
    let (l, f) = selectors(ctx, kind)?;
    let opts = delete_opts(ctx)?;
    let r = ctx.core.store.list(kind, ns, &l, &f, None, None)?;
    let mut items = Vec::new();
    for o in r.items {
        let ons = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let on = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Ok((obj, _)) = ctx.core.store.delete(kind, ons, on, &opts) {
            items.push((*obj).clone());
        }
    }
    let k = &KINDS[kind];
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", k.kind), "apiVersion": k.api_version(),
            "metadata": {"resourceVersion": ctx.core.store.resource_version().to_string()}, "items": items}),
    ))
}

fn patch_object(
    ctx: &Ctx,
    kind: usize,
    ns: &str,
    name: &str,
    part: Part,
) -> Result<Response, ApiError> {
    let k = &KINDS[kind];
    let ct = ctx.content_type.clone().unwrap_or_default();
    let ct = ct.split(';').next().unwrap_or_default().trim().to_string();
    let store = &ctx.core.store;
    if ct == "application/apply-patch+yaml" {
        let Some(manager) = ctx.param("fieldManager") else {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        };
        let applied: Value = serde_json::from_slice(&ctx.body)
            .or_else(|_| serde_norway::from_slice(&ctx.body))
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        crate::defaults::check_shape(&applied)?;
        if applied
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(|x| x != k.kind)
            || applied
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_none_or(|x| x != k.api_version())
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                applied
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                k.api_version()
            )));
        }
        if applied
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        // The applied object becomes the created or updated one, whose namespace must be the
        // request's (apiserver `pkg/registry/rest` `BeforeCreate`/`BeforeUpdate`:
        // `EnsureObjectNamespaceMatchesRequestNamespace`).
        if k.namespaced
            && applied
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty() && n != ns)
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let force = ctx.param("force") == Some("true");
        let now = now_rfc3339();
        let current = match store.get(kind, ns, name) {
            Ok(c) => Some(c),
            Err(e) if e.code == 404 && part == Part::Main => None,
            Err(e) => return Err(e),
        };
        if part == Part::Status {
            // Apply to /status: the applied status merges into the current one (ownership of
            // status fields is not tracked).
            let cur = current.ok_or_else(|| ApiError::not_found(k, name))?;
            let mut new = (*cur).clone();
            if let Some(st) = applied.get("status") {
                if !new.get("status").is_some_and(Value::is_object) {
                    new["status"] = json!({});
                }
                patch::strategic_merge(&mut new["status"], st);
            }
            return Ok(json_response(
                200,
                &*store.update_opts(kind, ns, name, new, part, Some(manager), ctx.dry_run())?,
            ));
        }
        let merged = patch::server_side_apply(
            current.as_deref(),
            &applied,
            manager,
            force,
            &k.api_version(),
            &now,
        )
        .map_err(|conflicts| conflict_error(k, name, &conflicts))?;
        return match current {
            None => {
                let mut obj = merged;
                obj["metadata"]["name"] = json!(name);
                Ok(json_response(
                    201,
                    &*store.create_opts(kind, ns, obj, None, ctx.dry_run())?,
                ))
            }
            Some(_) => Ok(json_response(
                200,
                &*store.update_opts(kind, ns, name, merged, part, None, ctx.dry_run())?,
            )),
        };
    }
    let cur = store.get(kind, ns, name)?;
    let mut new = (*cur).clone();
    let body = ctx.body_json()?;
    match ct.as_str() {
        "application/merge-patch+json" => patch::merge_patch(&mut new, &body),
        "application/strategic-merge-patch+json" => patch::strategic_merge(&mut new, &body),
        "application/json-patch+json" => {
            patch::json_patch(&mut new, &body).map_err(|e| ApiError::new(422, "Invalid", e))?
        }
        other => return Err(ApiError::unsupported_media(other)),
    }
    // A patch carries a resourceVersion precondition only if it sets one explicitly.
    let explicit_rv = body.pointer("/metadata/resourceVersion").is_some();
    if !explicit_rv {
        crate::defaults::check_shape(&new)?;
        new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
    }
    Ok(json_response(
        200,
        &*store.update_opts(
            kind,
            ns,
            name,
            new,
            part,
            Some(&ctx.manager()),
            ctx.dry_run(),
        )?,
    ))
}

fn conflict_error(k: &KindInfo, name: &str, conflicts: &[patch::Conflict]) -> ApiError {
    let n = conflicts.len();
    let list: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager, c.api_version, c.field
            )
        })
        .collect();
    let msg = if n == 1 {
        format!("Apply failed with 1 conflict: {}", list[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", list.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version), "field": c.field}))
        .collect();
    let mut e = ApiError::new(409, "Conflict", msg);
    let mut d = json!({"name": name, "kind": k.plural, "causes": causes});
    if !k.group.is_empty() {
        d["group"] = json!(k.group);
    }
    e.details = Some(d);
    e
}

fn scale(ctx: &Ctx, m: &Method, kind: usize, ns: &str, name: &str) -> Result<Response, ApiError> {
    let store = &ctx.core.store;
    let to_scale = |o: &Value| {
        let sel = o
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            });
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"], "uid": o["metadata"]["uid"],
                "resourceVersion": o["metadata"]["resourceVersion"], "creationTimestamp": o["metadata"]["creationTimestamp"]},
            "spec": {"replicas": o.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
            "status": {"replicas": o.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": sel.unwrap_or_default()}})
    };
    let cur = store.get(kind, ns, name)?;
    let replicas = match *m {
        Method::GET => return Ok(json_response(200, &to_scale(&cur))),
        Method::PUT => ctx
            .body_json()?
            .pointer("/spec/replicas")
            .and_then(Value::as_i64),
        Method::PATCH => {
            let mut sc = to_scale(&cur);
            let body = ctx.body_json()?;
            let ct = ctx.content_type.clone().unwrap_or_default();
            if ct.starts_with("application/json-patch+json") {
                patch::json_patch(&mut sc, &body).map_err(|e| ApiError::new(422, "Invalid", e))?;
            } else {
                patch::merge_patch(&mut sc, &body);
            }
            sc.pointer("/spec/replicas").and_then(Value::as_i64)
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let replicas = replicas.ok_or_else(|| ApiError::bad_request("spec.replicas is required"))?;
    // The writer takes ownership of spec.replicas, so a later apply of another value conflicts.
    let mut new = (*cur).clone();
    new["spec"]["replicas"] = json!(replicas);
    let updated = store.update_opts(
        kind,
        ns,
        name,
        new,
        Part::Main,
        Some(&ctx.manager()),
        ctx.dry_run(),
    )?;
    Ok(json_response(200, &to_scale(&updated)))
}

type Tx = mpsc::Sender<Result<Bytes, Infallible>>;

/// The sending side of one watch stream, applying drop/truncate faults.
struct WatchOut {
    tx: Tx,
    sent: usize,
    limit: Option<usize>,
    truncate: bool,
}

impl WatchOut {
    /// Sends one event line; false when the stream must end.
    async fn emit(&mut self, v: &Value) -> bool {
        let mut s = v.to_string();
        if self.limit.is_some_and(|l| self.sent >= l) {
            if self.truncate {
                s.truncate(s.len() / 2);
                let _ = self.tx.send(Ok(Bytes::from(s))).await;
            }
            return false;
        }
        self.sent += 1;
        s.push('\n');
        self.tx.send(Ok(Bytes::from(s))).await.is_ok()
    }

    /// Sends a line that faults do not count (bookmarks, errors).
    async fn raw(&self, v: &Value) -> bool {
        self.tx
            .send(Ok(Bytes::from(format!("{v}\n"))))
            .await
            .is_ok()
    }
}

fn watch(ctx: &Ctx, kind: usize, ns: Option<String>) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(ctx, kind)?;
    let core = ctx.core.clone();
    let timeout = ctx
        .param("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let bookmarks = ctx.param("allowWatchBookmarks") == Some("true");
    let initial = ctx.param("sendInitialEvents") == Some("true");
    let rv: Option<u64> = match ctx.param("resourceVersion") {
        None | Some("0") => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    let fault = ctx.watch_fault.clone();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let k = KINDS[kind];
    let table = ctx.table;
    let include = ctx.param("includeObject").map(String::from);
    // Watch events carry the object, or a one-row Table for kubectl's printers.
    let wrap = move |o: &Value| -> Value {
        if table {
            let meta = json!({"resourceVersion": o["metadata"]["resourceVersion"]});
            crate::table::table(&k, &[o], meta, include.as_deref())
        } else {
            o.clone()
        }
    };
    let (limit, truncate) = match &fault {
        Some(FaultAction::DropWatch { after_events }) => (Some(*after_events), false),
        Some(FaultAction::TruncateWatch { after_events }) => (Some(*after_events), true),
        _ => (None, false),
    };
    let mut out = WatchOut {
        tx,
        sent: 0,
        limit,
        truncate,
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        if matches!(fault, Some(FaultAction::Expire)) {
            let e = ApiError::expired(rv.unwrap_or(1), core.store.resource_version());
            out.raw(&json!({"type": "ERROR", "object": e.to_status()}))
                .await;
            return;
        }
        let ns_match = |o: &Value| {
            ns.as_deref()
                .is_none_or(|n| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(n))
        };
        let matches = |o: &Value| ns_match(o) && labels.matches(o) && fields.matches(o);
        let mut cursor = match rv {
            Some(r) => r,
            None => {
                let (items, r) = core.store.all_at(kind, ns.as_deref());
                for o in items {
                    if matches(&o)
                        && !out
                            .emit(&json!({"type": "ADDED", "object": wrap(&o)}))
                            .await
                    {
                        return;
                    }
                }
                if initial && bookmarks {
                    let b = json!({"type": "BOOKMARK", "object": {"kind": k.kind, "apiVersion": k.api_version(),
                        "metadata": {"resourceVersion": r.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
                    if !out.raw(&b).await {
                        return;
                    }
                }
                r
            }
        };
        let mut changes = core.store.subscribe();
        let mut bookmark =
            tokio::time::interval(core.delays.bookmark_interval.max(Duration::from_millis(50)));
        bookmark.tick().await;
        loop {
            match core.store.events_since(cursor) {
                Err(e) => {
                    out.raw(&json!({"type": "ERROR", "object": e.to_status()}))
                        .await;
                    return;
                }
                Ok(evs) => {
                    for ev in evs {
                        cursor = ev.rv;
                        if ev.kind != kind {
                            continue;
                        }
                        let now_m = matches(&ev.object);
                        let old_m = ev.old.as_deref().is_some_and(matches);
                        let ty = match ev.etype {
                            EventType::Added if now_m => "ADDED",
                            EventType::Modified if now_m && old_m => "MODIFIED",
                            EventType::Modified if now_m => "ADDED",
                            EventType::Modified if old_m => "DELETED",
                            EventType::Deleted if now_m || old_m => "DELETED",
                            _ => continue,
                        };
                        if !out
                            .emit(&json!({"type": ty, "object": wrap(&ev.object)}))
                            .await
                        {
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = out.tx.closed() => return,
                () = core.shutdown.cancelled() => return,
                _ = bookmark.tick() => {
                    if bookmarks {
                        let b = json!({"type": "BOOKMARK", "object": {"kind": k.kind, "apiVersion": k.api_version(),
                            "metadata": {"resourceVersion": cursor.to_string()}}});
                        if !out.raw(&b).await { return; }
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The kubelet writes log timestamps as `RFC3339NanoFixed` (nine fraction digits;
/// `pkg/kubelet/kuberuntime/logs/logs.go` `timeFormatOut`, `pkg/kubelet/types/constants.go`).
fn kubelet_nano(ts: &chrono::DateTime<chrono::Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

async fn logs(ctx: &Ctx, ns: &str, name: &str) -> Result<Response, ApiError> {
    let core = ctx.core.clone();
    let pod = core.store.get(idx::pods(), ns, name)?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let container = match ctx.param("container") {
        Some(c) if containers.iter().any(|x| x == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let cstatus = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c["name"] == container.as_str()))
        .cloned();
    let waiting = match &cstatus {
        None => Some("ContainerCreating".to_string()),
        Some(c) => c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .map(String::from),
    };
    if let Some(reason) = waiting
        && reason != "CrashLoopBackOff"
    {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let buf = core.logs.get(&uid, &container);
    let follow = ctx.param("follow") == Some("true");
    let timestamps = ctx.param("timestamps") == Some("true");
    let tail = ctx.param("tailLines").and_then(|s| s.parse::<usize>().ok());
    // The API server parses sinceTime as RFC 3339 (fractions accepted) but passes it on to the
    // kubelet re-formatted with `time.RFC3339`, whole seconds: the fraction is cut off
    // (`pkg/registry/core/pod/strategy.go`, `LogLocation`).
    let since_time = ctx
        .param("sinceTime")
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&chrono::Utc)))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("invalid sinceTime: {e}")))?
        .map(|t| chrono::Timelike::with_nanosecond(&t, 0).unwrap_or(t));
    let since_secs = ctx
        .param("sinceSeconds")
        .and_then(|s| s.parse::<i64>().ok());
    let since = match (since_time, since_secs) {
        (Some(t), _) => Some(t),
        (None, Some(s)) => Some(chrono::Utc::now() - chrono::Duration::seconds(s)),
        _ => None,
    };
    let limit_bytes = ctx
        .param("limitBytes")
        .and_then(|s| s.parse::<usize>().ok());
    let fmt = move |(ts, line): &(chrono::DateTime<chrono::Utc>, String)| {
        if timestamps {
            format!("{} {line}\n", kubelet_nano(ts))
        } else {
            format!("{line}\n")
        }
    };
    // A new request reads the current file only: rotated files are not served.
    let (file_start, mut initial) = buf.as_ref().map(|b| b.current_file()).unwrap_or_default();
    let next = file_start + initial.len();
    if let Some(s) = since {
        // The kubelet skips a line only when its timestamp is before `since`: inclusive.
        initial.retain(|(t, _)| *t >= s);
    }
    if let Some(t) = tail {
        let skip = initial.len().saturating_sub(t);
        initial.drain(..skip);
    }
    let (line_limit, stall) = match &ctx.watch_fault {
        Some(FaultAction::DropLogs { after_lines }) => (Some(*after_lines), false),
        Some(FaultAction::StallLogs { after_lines }) => (Some(*after_lines), true),
        _ => (None, false),
    };
    let plain = |body: Body| {
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    };
    let buf = buf.filter(|_| follow);
    if buf.is_none() && line_limit.is_none() {
        let mut text: String = initial.iter().map(fmt).collect();
        if let Some(lb) = limit_bytes {
            text.truncate(lb);
        }
        return Ok(plain(Body::from(text)));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    tokio::spawn(async move {
        let mut sent = 0usize;
        // Sends a line; false once the stream must stop sending (client gone, or a fault).
        let send = async |l: &(chrono::DateTime<chrono::Utc>, String), sent: &mut usize| {
            if line_limit.is_some_and(|n| *sent >= n) {
                return false;
            }
            *sent += 1;
            tx.send(Ok(Bytes::from(fmt(l)))).await.is_ok()
        };
        'stream: {
            for l in &initial {
                if !send(l, &mut sent).await {
                    break 'stream;
                }
            }
            let Some(buf) = buf else { break 'stream };
            let mut next = next;
            let mut changes = buf.subscribe();
            loop {
                let finished = buf.finished();
                let new = buf.lines_from(next);
                next += new.len();
                for l in &new {
                    if !send(l, &mut sent).await {
                        break 'stream;
                    }
                }
                if finished {
                    break 'stream;
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { break 'stream },
                    () = tx.closed() => return,
                    () = core.shutdown.cancelled() => return,
                }
            }
        }
        if stall {
            // Hold the connection open, silent, until the client gives up.
            tokio::select! {
                () = tx.closed() => {}
                () = core.shutdown.cancelled() => {}
            }
        } else if line_limit.is_some_and(|n| sent >= n) {
            // Cut the connection mid-body: the client sees an incomplete response, as when a
            // connection breaks, never a clean end it could take for the whole log. The lines
            // sent go out first: hyper drops what it has not flushed when a body fails.
            while tx.capacity() < tx.max_capacity() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx
                .send(Err(std::io::Error::other("injected fault: log stream cut")))
                .await;
        }
    });
    Ok(plain(Body::from_stream(ReceiverStream::new(rx))))
}

fn admin(core: &Arc<Core>, method: &Method, path: &str, body: &Bytes) -> Response {
    let bad = |m: String| json_response(400, &json!({"error": m}));
    match (method.as_str(), path) {
        ("GET", "/_sim/health") => json_response(200, &json!({"ok": true})),
        ("POST", "/_sim/faults") => match serde_json::from_slice::<FaultRule>(body) {
            Ok(r) => {
                core.faults.add(r);
                json_response(200, &json!({"rules": core.faults.len()}))
            }
            Err(e) => bad(e.to_string()),
        },
        ("DELETE", "/_sim/faults") => {
            core.faults.clear();
            json_response(200, &json!({"rules": 0}))
        }
        ("POST", "/_sim/script") => match serde_json::from_slice::<Override>(body) {
            Ok(o) => {
                let mut g = core
                    .overrides
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                g.push(o);
                json_response(200, &json!({"overrides": g.len()}))
            }
            Err(e) => bad(e.to_string()),
        },
        ("DELETE", "/_sim/script") => {
            core.overrides
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            json_response(200, &json!({"overrides": 0}))
        }
        ("POST", "/_sim/metrics") => match serde_json::from_slice::<MetricsAdmin>(body) {
            Ok(m) => {
                if let Some(server) = m.server {
                    core.metrics.set_server(server);
                }
                if let (Some(ns), Some(cpu), Some(memory)) = (m.namespace, m.cpu, m.memory) {
                    let (Some(cpu_millis), Some(memory_bytes)) = (
                        crate::metrics::quantity(&json!(cpu), true),
                        crate::metrics::quantity(&json!(memory), false),
                    ) else {
                        return json_response(
                            400,
                            &json!({"error": "cpu and memory must be quantities"}),
                        );
                    };
                    core.metrics.set_usage(
                        &ns,
                        crate::metrics::Usage {
                            cpu_millis,
                            memory_bytes,
                        },
                    );
                }
                json_response(200, &json!({"ok": true}))
            }
            Err(e) => json_response(400, &json!({"error": e.to_string()})),
        },
        ("GET", "/_sim/requests") => json_response(
            200,
            &serde_json::to_value(core.recorder.all()).unwrap_or_default(),
        ),
        ("GET", "/_sim/objects") => {
            let items: Vec<Value> = core
                .store
                .snapshot()
                .into_iter()
                .map(|(_, v)| (*v).clone())
                .collect();
            json_response(200, &json!({"items": items}))
        }
        _ => json_response(404, &json!({"error": "unknown admin endpoint"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            parse_route("/api/v1/namespaces/a/pods/p/log"),
            Route::Object {
                kind: idx::pods(),
                ns: Some("a".into()),
                name: Some("p".into()),
                sub: Some("log".into())
            }
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/a"),
            Route::Object {
                kind: idx::namespaces(),
                ns: None,
                name: Some("a".into()),
                sub: None
            }
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/a/status"),
            Route::Object {
                kind: idx::namespaces(),
                ns: None,
                name: Some("a".into()),
                sub: Some("status".into())
            }
        );
        assert_eq!(
            parse_route("/apis/batch/v1/jobs"),
            Route::Object {
                kind: idx::jobs(),
                ns: None,
                name: None,
                sub: None
            }
        );
        assert_eq!(
            parse_route("/apis/batch/v1"),
            Route::Resources("batch".into(), "v1".into())
        );
        assert_eq!(parse_route("/apis/nope/v1/things"), Route::Unknown);
    }

    #[test]
    fn go_time_format() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.120000000Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(kubelet_nano(&t), "2026-01-02T03:04:05.120000000Z");
    }
}
