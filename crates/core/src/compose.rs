//! docker-compose files (the `compose` source, #18): a compose file read into the services a
//! preview is made of, or refused naming the field that cannot be translated to Kubernetes.
//!
//! Modelled on the Compose Specification (compose-spec/compose-spec: `05-services.md` for each
//! service attribute, `12-interpolation.md` for `${VAR}`, `15-profiles.md` for profiles,
//! `07-volumes.md` for named volumes). Pure: the build worker reads the file at the pipeline's
//! commit (the source Job) and hands the text here. Not reachable from the API yet: it refuses
//! `source.type = compose` until the launch side builds previews from these services.
//!
//! What a preview can hold is what this module accepts; everything else is refused with a
//! [`ComposeError`] naming the field (`services.web.privileged`), never silently dropped:
//! - translated: `image`, `build` (context, dockerfile, args, target), `command`,
//!   `entrypoint`, `environment`, `ports` and `expose` (container ports), `depends_on`
//!   (conditions), `healthcheck`, named volumes and `tmpfs`, `user`, `working_dir`, CPU and
//!   memory limits (`deploy.resources.limits`, `cpus`, `mem_limit`), `read_only`;
//! - ignored, because a preview has no use for them (and they change nothing a preview
//!   shows): `container_name`, `restart`, `labels`, `networks`, `hostname`, `logging`, `init`,
//!   `tty`, `stdin_open`, `stop_grace_period`, `stop_signal`, `pull_policy`, `platform`,
//!   `links` (every service is reachable by its name anyway), `x-*` extensions;
//! - refused: anything that reaches the node or another tenant (`privileged`, `network_mode`
//!   other than the default, `pid`/`ipc`/`uts`/`userns_mode: host`, `devices`, `cap_add`,
//!   `security_opt`, `sysctls`, host bind mounts, `volumes_from`, `gpus`, `runtime`), and what
//!   is not supported yet (`env_file`, `secrets`, `configs`, `extends`, `include`, UDP ports,
//!   port ranges, build secrets and SSH), and every attribute this module does not know.
//!
//! Interpolation runs with an empty environment (Slipway has no shell environment to take
//! values from): `${VAR:-default}` and `${VAR-default}` give their defaults, `${VAR:?err}` and
//! `${VAR?err}` refuse the file with `err`, an unset `${VAR}` becomes empty with a warning, and
//! `$$` is a literal `$`, all as the specification says.

use std::collections::{BTreeMap, BTreeSet};

/// A compose file that cannot become a preview: the dotted path of the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ComposeError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ComposeError {
    ComposeError {
        field: field.into(),
        message: message.into(),
    }
}

/// The services a preview is made of, in the file's order, and what was noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct App {
    pub services: Vec<Service>,
    /// Named volumes declared at the top level.
    pub volumes: BTreeSet<String>,
    /// Unset variables, services left out by profiles, ignored attributes.
    pub warnings: Vec<String>,
}

impl App {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One service: a workload and the name the others reach it by.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub build: Option<ServiceBuild>,
    /// `None`: the image's `CMD`; `Some(vec![])`: overridden to nothing.
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    /// Container ports (`ports` targets and `expose`), in order, without repeats.
    pub ports: Vec<u16>,
    pub depends_on: Vec<Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub volumes: Vec<VolumeMount>,
    /// Paths of `tmpfs` mounts.
    pub tmpfs: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub read_only: bool,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// A service's `build`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ServiceBuild {
    /// Relative to the compose file's directory (`.` by default).
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

/// How a healthcheck runs its test.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthTest {
    /// `CMD`: the words, executed directly.
    Exec(Vec<String>),
    /// `CMD-SHELL` (or a string): run by `/bin/sh -c`.
    Shell(String),
}

/// A healthcheck, its durations in whole seconds (rounded up; Docker's defaults when absent:
/// 30 s interval, 30 s timeout, 3 retries, no start period).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Healthcheck {
    pub test: HealthTest,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    pub retries: u32,
    pub start_period_secs: u32,
}

/// A named volume mounted into a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeMount {
    pub volume: String,
    pub target: String,
    pub read_only: bool,
}

type Map = serde_json::Map<String, serde_json::Value>;
use serde_json::Value;

/// Attributes read below.
const TRANSLATED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "expose",
    "depends_on",
    "healthcheck",
    "volumes",
    "tmpfs",
    "user",
    "working_dir",
    "read_only",
    "deploy",
    "cpus",
    "mem_limit",
    "profiles",
];
/// Attributes a preview has no use for.
const IGNORED: &[&str] = &[
    "container_name",
    "restart",
    "labels",
    "networks",
    "hostname",
    "logging",
    "init",
    "tty",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "pull_policy",
    "platform",
    "links",
    "annotations",
    "domainname",
    "dns",
    "dns_search",
    "dns_opt",
    "mem_reservation",
    "scale",
];
/// Attributes refused, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "privileged",
        "privileged containers are not allowed in previews",
    ),
    ("devices", "host devices are not available to previews"),
    (
        "cap_add",
        "added capabilities are not allowed in previews (they run with none)",
    ),
    (
        "security_opt",
        "security options cannot be changed in previews",
    ),
    ("sysctls", "sysctls cannot be set in previews"),
    (
        "volumes_from",
        "volumes_from is not supported; mount a named volume instead",
    ),
    ("gpus", "GPUs are not available to previews"),
    (
        "runtime",
        "another container runtime is not available to previews",
    ),
    (
        "env_file",
        "env_file is not supported yet; put the variables in `environment`",
    ),
    (
        "secrets",
        "compose secrets are not supported yet; use the launch's secret_env",
    ),
    ("configs", "compose configs are not supported yet"),
    (
        "extends",
        "extends is not supported yet; write the service out in full",
    ),
    (
        "external_links",
        "external_links reach outside the preview and are not supported",
    ),
    ("extra_hosts", "extra_hosts is not supported in previews"),
    ("cgroup_parent", "cgroup_parent cannot be set in previews"),
    ("ulimits", "ulimits cannot be set in previews"),
    (
        "use_api_socket",
        "the container engine's socket is not available to previews",
    ),
];
const HOST_ONLY: &[&str] = &["pid", "ipc", "uts", "userns_mode", "cgroup"];

/// Parse and translate a compose file.
pub fn parse(text: &str) -> Result<App, ComposeError> {
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| err("", format!("not a YAML document: {e}")))?;
    yaml.apply_merge()
        .map_err(|e| err("", format!("a YAML merge key (<<) cannot be applied: {e}")))?;
    // serde_json's maps are sorted; the file's order of services comes from the YAML mapping.
    let order: Vec<String> = yaml
        .get("services")
        .and_then(serde_norway::Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let root: Value =
        serde_json::to_value(&yaml).map_err(|e| err("", format!("not a compose file: {e}")))?;
    let mut app = App::default();
    let root = interpolate(root, "", &mut app.warnings)?;
    let Value::Object(root) = root else {
        return Err(err("", "a compose file is a mapping with `services`"));
    };
    for key in root.keys() {
        match key.as_str() {
            "services" | "volumes" | "networks" | "name" | "version" => {}
            k if k.starts_with("x-") => {}
            "include" => return Err(err("include", "include is not supported yet")),
            "secrets" | "configs" | "models" => {
                return Err(err(
                    key.clone(),
                    format!("top-level {key} are not supported yet"),
                ));
            }
            _ => return Err(err(key.clone(), "not a compose file attribute")),
        }
    }
    if let Some(volumes) = root.get("volumes") {
        let Value::Object(volumes) = volumes else {
            return Err(err("volumes", "must be a mapping of named volumes"));
        };
        for (name, v) in volumes {
            if v.get("external").and_then(Value::as_bool) == Some(true) {
                return Err(err(
                    format!("volumes.{name}.external"),
                    "external volumes do not exist in a preview's namespace",
                ));
            }
            if v.get("driver").is_some() || v.get("driver_opts").is_some() {
                return Err(err(
                    format!("volumes.{name}.driver"),
                    "volume drivers are not supported; the cluster's default storage is used",
                ));
            }
            app.volumes.insert(name.clone());
        }
    }
    let Some(Value::Object(services)) = root.get("services") else {
        return Err(err(
            "services",
            "a compose file needs a mapping of services",
        ));
    };
    let mut names: Vec<&String> = order.iter().filter(|n| services.contains_key(*n)).collect();
    names.extend(services.keys().filter(|k| !order.contains(k)));
    for name in names {
        let body = &services[name];
        let field = format!("services.{name}");
        let Value::Object(body) = body else {
            return Err(err(field, "a service is a mapping"));
        };
        if body.contains_key("profiles") {
            // 15-profiles.md: services with profiles start only when a profile is enabled.
            app.warnings.push(format!(
                "service {name} has profiles and is left out (no profile is enabled)"
            ));
            continue;
        }
        app.services.push(service(
            name,
            body,
            &field,
            &app.volumes,
            &mut app.warnings,
        )?);
    }
    if app.services.is_empty() {
        return Err(err("services", "no service to run"));
    }
    let names: BTreeSet<&str> = app.services.iter().map(|s| s.name.as_str()).collect();
    for s in &app.services {
        for d in &s.depends_on {
            let field = format!("services.{}.depends_on.{}", s.name, d.service);
            if !names.contains(d.service.as_str()) {
                return Err(err(field, "no such service"));
            }
            let target = app.service(&d.service).expect("checked");
            if d.condition == Condition::Healthy && target.healthcheck.is_none() {
                return Err(err(
                    field,
                    format!(
                        "service_healthy needs a healthcheck on service {}",
                        d.service
                    ),
                ));
            }
        }
    }
    if let Some(cycle) = dependency_cycle(&app.services) {
        return Err(err(
            format!("services.{cycle}.depends_on"),
            "the services depend on each other in a cycle",
        ));
    }
    Ok(app)
}

/// A service on a `depends_on` cycle, if there is one.
fn dependency_cycle(services: &[Service]) -> Option<String> {
    fn visit<'a>(
        s: &'a str,
        services: &'a [Service],
        state: &mut BTreeMap<&'a str, bool>,
    ) -> Option<String> {
        match state.get(s) {
            Some(true) => return None,
            Some(false) => return Some(s.to_owned()),
            None => {}
        }
        state.insert(s, false);
        if let Some(svc) = services.iter().find(|x| x.name == s) {
            for d in &svc.depends_on {
                if let Some(c) = visit(&d.service, services, state) {
                    return Some(c);
                }
            }
        }
        state.insert(s, true);
        None
    }
    let mut state = BTreeMap::new();
    services
        .iter()
        .find_map(|s| visit(&s.name, services, &mut state))
}

/// A Kubernetes Service name (DNS-1123 label), so the others reach it by its compose name.
fn service_name_ok(name: &str) -> bool {
    crate::naming::is_dns1123_label(name)
}

fn service(
    name: &str,
    body: &Map,
    field: &str,
    volumes: &BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Result<Service, ComposeError> {
    if !service_name_ok(name) {
        return Err(err(
            field,
            "a service name must be a DNS label (lowercase letters, digits and '-', at most 63): \
             it becomes the name the other services reach it by",
        ));
    }
    let f = |k: &str| format!("{field}.{k}");
    for key in body.keys() {
        let k = key.as_str();
        if TRANSLATED.contains(&k) || k.starts_with("x-") {
            continue;
        }
        if IGNORED.contains(&k) {
            warnings.push(format!("services.{name}.{k} is ignored in a preview"));
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(r, _)| *r == k) {
            return Err(err(f(k), *why));
        }
        if HOST_ONLY.contains(&k) {
            match body[k].as_str() {
                Some("host") => {
                    return Err(err(
                        f(k),
                        "the host's namespaces are not available to previews",
                    ));
                }
                _ => return Err(err(f(k), "not supported in previews")),
            }
        }
        if k == "network_mode" {
            match body[k].as_str() {
                Some("bridge" | "default") => continue,
                _ => {
                    return Err(err(
                        f(k),
                        "only the default network is supported: the services of a preview \
                         share its namespace's network",
                    ));
                }
            }
        }
        return Err(err(f(k), "not supported in previews"));
    }
    let mut s = Service {
        name: name.to_owned(),
        ..Service::default()
    };
    s.image = opt_string(body, "image", field)?;
    if let Some(b) = body.get("build") {
        s.build = Some(build(b, &f("build"))?);
    }
    if s.image.is_none() && s.build.is_none() {
        return Err(err(field, "a service needs `image` or `build`"));
    }
    s.command = words(body.get("command"), &f("command"))?;
    s.entrypoint = words(body.get("entrypoint"), &f("entrypoint"))?;
    s.environment = environment(body.get("environment"), &f("environment"))?;
    if let Some(ports) = body.get("ports") {
        let Value::Array(list) = ports else {
            return Err(err(f("ports"), "must be a list"));
        };
        for (i, p) in list.iter().enumerate() {
            let port = port(p, &format!("{}.{i}", f("ports")))?;
            if !s.ports.contains(&port) {
                s.ports.push(port);
            }
        }
    }
    if let Some(expose) = body.get("expose") {
        let Value::Array(list) = expose else {
            return Err(err(f("expose"), "must be a list"));
        };
        for (i, p) in list.iter().enumerate() {
            let field = format!("{}.{i}", f("expose"));
            let text = scalar(p).ok_or_else(|| err(&field, "must be a port"))?;
            let text = text.strip_suffix("/tcp").unwrap_or(&text).to_owned();
            let port = port_number(&text).ok_or_else(|| err(&field, "must be a TCP port"))?;
            if !s.ports.contains(&port) {
                s.ports.push(port);
            }
        }
    }
    s.depends_on = depends_on(body.get("depends_on"), &f("depends_on"))?;
    s.healthcheck = healthcheck(body.get("healthcheck"), &f("healthcheck"))?;
    if let Some(v) = body.get("volumes") {
        let Value::Array(list) = v else {
            return Err(err(f("volumes"), "must be a list"));
        };
        for (i, m) in list.iter().enumerate() {
            let field = format!("{}.{i}", f("volumes"));
            match mount(m, &field, volumes)? {
                Mount::Volume(v) => s.volumes.push(v),
                Mount::Tmpfs(path) => s.tmpfs.push(path),
            }
        }
    }
    if let Some(t) = body.get("tmpfs") {
        let list = match t {
            Value::String(p) => vec![p.clone()],
            Value::Array(l) => l
                .iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| err(f("tmpfs"), "must be a path or a list of paths"))?,
            _ => return Err(err(f("tmpfs"), "must be a path or a list of paths")),
        };
        for p in list {
            let path = p.split(':').next().unwrap_or_default().to_owned();
            if !path.starts_with('/') {
                return Err(err(f("tmpfs"), "must be absolute paths"));
            }
            s.tmpfs.push(path);
        }
    }
    s.user = opt_string(body, "user", field)?;
    s.working_dir = opt_string(body, "working_dir", field)?;
    s.read_only = match body.get("read_only") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err(f("read_only"), "must be true or false")),
    };
    resources(body, field, &mut s)?;
    Ok(s)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn opt_string(body: &Map, key: &str, field: &str) -> Result<Option<String>, ComposeError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar(v)
            .map(Some)
            .ok_or_else(|| err(format!("{field}.{key}"), "must be a string")),
    }
}

fn build(v: &Value, field: &str) -> Result<ServiceBuild, ComposeError> {
    let rel = |s: &str, what: &str| -> Result<String, ComposeError> {
        let p = s.trim_start_matches("./");
        if s.starts_with('/') || p.split('/').any(|c| c == "..") || s.contains("://") {
            return Err(err(
                format!("{field}.{what}"),
                "must be a path inside the repository (relative, without '..')",
            ));
        }
        Ok(if p.is_empty() {
            ".".to_owned()
        } else {
            p.to_owned()
        })
    };
    match v {
        Value::String(context) => Ok(ServiceBuild {
            context: rel(context, "context")?,
            ..ServiceBuild::default()
        }),
        Value::Object(b) => {
            for key in b.keys() {
                match key.as_str() {
                    "context" | "dockerfile" | "args" | "target" => {}
                    "ssh" | "secrets" => {
                        return Err(err(
                            format!("{field}.{key}"),
                            "build secrets and SSH are not supported; name the git Secret in \
                             the build options",
                        ));
                    }
                    "dockerfile_inline"
                    | "additional_contexts"
                    | "network"
                    | "extra_hosts"
                    | "privileged"
                    | "entitlements"
                    | "platforms" => {
                        return Err(err(format!("{field}.{key}"), "not supported in previews"));
                    }
                    k if k.starts_with("x-") => {}
                    "labels" | "cache_from" | "cache_to" | "pull" | "no_cache" | "shm_size"
                    | "tags" | "isolation" | "ulimits" => {}
                    _ => return Err(err(format!("{field}.{key}"), "not a build attribute")),
                }
            }
            let context = match b.get("context") {
                None => ".".to_owned(),
                Some(c) => rel(
                    c.as_str()
                        .ok_or_else(|| err(format!("{field}.context"), "must be a path"))?,
                    "context",
                )?,
            };
            let dockerfile = b
                .get("dockerfile")
                .map(|d| {
                    d.as_str()
                        .ok_or_else(|| err(format!("{field}.dockerfile"), "must be a path"))
                        .and_then(|d| rel(d, "dockerfile"))
                })
                .transpose()?;
            let args = environment(b.get("args"), &format!("{field}.args"))?;
            let target = b
                .get("target")
                .map(|t| {
                    t.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| err(format!("{field}.target"), "must be a stage name"))
                })
                .transpose()?;
            Ok(ServiceBuild {
                context,
                dockerfile,
                args,
                target,
            })
        }
        _ => Err(err(field, "must be a context path or a mapping")),
    }
}

/// `command`/`entrypoint`: a list, or a string split as a shell would split it (without a
/// shell: 05-services.md, `command`).
fn words(v: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => split_words(s)
            .map(Some)
            .ok_or_else(|| err(field, "has an unterminated quote")),
        Some(Value::Array(list)) => list
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| err(field, "must be a list of strings")),
        Some(_) => Err(err(field, "must be a string or a list")),
    }
}

/// POSIX shell word splitting (quotes and backslashes), without expansions.
pub fn split_words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => cur.push(c),
                            '\n' => {}
                            c => {
                                cur.push('\\');
                                cur.push(c);
                            }
                        },
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => cur.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

/// `environment` (and `build.args`): a mapping, or a list of `KEY=VALUE`. A variable without a
/// value takes the host's, which a preview does not have: it is left out.
fn environment(v: Option<&Value>, field: &str) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::Null => {}
                    v => {
                        let s = scalar(v).ok_or_else(|| {
                            err(
                                format!("{field}.{k}"),
                                "must be a string, number or boolean",
                            )
                        })?;
                        out.insert(k.clone(), s);
                    }
                }
            }
        }
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let s = item
                    .as_str()
                    .ok_or_else(|| err(format!("{field}.{i}"), "must be KEY=VALUE"))?;
                if let Some((k, v)) = s.split_once('=') {
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Some(_) => return Err(err(field, "must be a mapping or a list of KEY=VALUE")),
    }
    for k in out.keys() {
        if k.is_empty() || k.contains('\0') {
            return Err(err(format!("{field}.{k}"), "not a variable name"));
        }
    }
    Ok(out)
}

fn port_number(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// A `ports` entry's container port (05-services.md, `ports`).
fn port(v: &Value, field: &str) -> Result<u16, ComposeError> {
    let udp = || err(field, "UDP ports are not supported in previews");
    match v {
        Value::Object(m) => {
            if m.get("protocol").and_then(Value::as_str) == Some("udp") {
                return Err(udp());
            }
            m.get("target")
                .and_then(scalar)
                .as_deref()
                .and_then(port_number)
                .ok_or_else(|| err(format!("{field}.target"), "must be a port (1-65535)"))
        }
        v => {
            let text = scalar(v).ok_or_else(|| err(field, "must be a port mapping"))?;
            let (spec, proto) = text.split_once('/').unwrap_or((&text, "tcp"));
            if proto == "udp" {
                return Err(udp());
            }
            if proto != "tcp" {
                return Err(err(field, "the protocol must be tcp"));
            }
            // The container port is the last colon-separated part (a host IP may hold colons).
            let container = spec.rsplit(':').next().unwrap_or_default();
            if container.contains('-') {
                return Err(err(field, "port ranges are not supported in previews"));
            }
            port_number(container).ok_or_else(|| err(field, "must end in a container port"))
        }
    }
}

fn depends_on(v: Option<&Value>, field: &str) -> Result<Vec<Dependency>, ComposeError> {
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, s) in list.iter().enumerate() {
                let name = s
                    .as_str()
                    .ok_or_else(|| err(format!("{field}.{i}"), "must be a service name"))?;
                out.push(Dependency {
                    service: name.to_owned(),
                    condition: Condition::Started,
                });
            }
        }
        Some(Value::Object(m)) => {
            for (name, d) in m {
                let condition = match d.get("condition").and_then(Value::as_str) {
                    None | Some("service_started") => Condition::Started,
                    Some("service_healthy") => Condition::Healthy,
                    Some("service_completed_successfully") => Condition::CompletedSuccessfully,
                    Some(_) => {
                        return Err(err(
                            format!("{field}.{name}.condition"),
                            "must be service_started, service_healthy or \
                             service_completed_successfully",
                        ));
                    }
                };
                out.push(Dependency {
                    service: name.clone(),
                    condition,
                });
            }
        }
        Some(_) => return Err(err(field, "must be a list or a mapping of services")),
    }
    Ok(out)
}

/// A duration (11-extension.md, "Specifying durations": `1m30s`, `10s`, `500ms`) in whole
/// seconds, rounded up.
fn duration_secs(s: &str) -> Option<u32> {
    let mut total_ms: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, tail) = rest.split_at(digits);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let ms = match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            "h" => n * 3_600_000.0,
            _ => return None,
        };
        total_ms = total_ms.checked_add(ms.ceil() as u64)?;
        rest = next;
    }
    u32::try_from(total_ms.div_ceil(1000)).ok()
}

fn healthcheck(v: Option<&Value>, field: &str) -> Result<Option<Healthcheck>, ComposeError> {
    let Some(v) = v else { return Ok(None) };
    let Value::Object(m) = v else {
        return Err(err(field, "must be a mapping"));
    };
    if m.get("disable").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let test = match m.get("test") {
        None => {
            return Err(err(
                format!("{field}.test"),
                "the image's own HEALTHCHECK cannot be read; give `test`",
            ));
        }
        Some(Value::String(s)) => HealthTest::Shell(s.clone()),
        Some(Value::Array(list)) => {
            let words: Vec<String> = list
                .iter()
                .map(scalar)
                .collect::<Option<_>>()
                .ok_or_else(|| err(format!("{field}.test"), "must be a list of strings"))?;
            match words.split_first() {
                Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                    HealthTest::Exec(rest.to_vec())
                }
                Some((first, rest)) if first == "CMD-SHELL" && rest.len() == 1 => {
                    HealthTest::Shell(rest[0].clone())
                }
                Some((first, _)) if first == "NONE" => return Ok(None),
                _ => {
                    return Err(err(
                        format!("{field}.test"),
                        "a list starts with CMD (and the command), CMD-SHELL (and one string) or \
                         NONE",
                    ));
                }
            }
        }
        Some(_) => return Err(err(format!("{field}.test"), "must be a string or a list")),
    };
    let dur = |k: &str, default: u32| -> Result<u32, ComposeError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => scalar(v)
                .as_deref()
                .and_then(duration_secs)
                .ok_or_else(|| err(format!("{field}.{k}"), "must be a duration such as 10s")),
        }
    };
    let retries = match m.get("retries") {
        None | Some(Value::Null) => 3,
        Some(v) => v
            .as_u64()
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| *r >= 1)
            .ok_or_else(|| err(format!("{field}.retries"), "must be a positive number"))?,
    };
    Ok(Some(Healthcheck {
        test,
        interval_secs: dur("interval", 30)?.max(1),
        timeout_secs: dur("timeout", 30)?.max(1),
        retries,
        start_period_secs: dur("start_period", 0)?,
    }))
}

enum Mount {
    Volume(VolumeMount),
    Tmpfs(String),
}

/// A `volumes` entry: a named volume (declared at the top level) or a tmpfs; host paths are
/// refused (07-volumes.md; 05-services.md, `volumes`).
fn mount(v: &Value, field: &str, declared: &BTreeSet<String>) -> Result<Mount, ComposeError> {
    let host = || {
        err(
            field,
            "bind mounts of host paths are not available to previews; use a named volume",
        )
    };
    let (kind, source, target, read_only) = match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [target] => ("volume", None, (*target).to_owned(), false),
                [source, target] => ("?", Some((*source).to_owned()), (*target).to_owned(), false),
                [source, target, mode] => (
                    "?",
                    Some((*source).to_owned()),
                    (*target).to_owned(),
                    mode.split(',').any(|m| m == "ro"),
                ),
                _ => return Err(err(field, "must be SOURCE:TARGET[:MODE]")),
            }
        }
        Value::Object(m) => (
            match m.get("type").and_then(Value::as_str) {
                Some(t @ ("volume" | "bind" | "tmpfs")) => t,
                Some(_) => return Err(err(format!("{field}.type"), "must be volume or tmpfs")),
                None => "volume",
            },
            m.get("source").and_then(Value::as_str).map(str::to_owned),
            m.get("target")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("{field}.target"), "must be a path"))?
                .to_owned(),
            m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
        ),
        _ => return Err(err(field, "must be a string or a mapping")),
    };
    if !target.starts_with('/') {
        return Err(err(field, "the target must be an absolute path"));
    }
    match (kind, source) {
        ("tmpfs", _) => Ok(Mount::Tmpfs(target)),
        ("bind", _) => Err(host()),
        (_, Some(src)) if src.starts_with(['.', '/', '~']) || src.contains('/') => Err(host()),
        (_, Some(src)) => {
            if !declared.contains(&src) {
                return Err(err(
                    field,
                    format!("volume {src:?} is not declared under the top-level `volumes`"),
                ));
            }
            Ok(Mount::Volume(VolumeMount {
                volume: src,
                target,
                read_only,
            }))
        }
        // An anonymous volume: scratch space for the container's life.
        (_, None) => Ok(Mount::Tmpfs(target)),
    }
}

/// Compose byte values (`512m`, `1g`, `2048k`, `1gb`): 1024-based.
fn bytes(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').map_or(s.as_str(), |t| {
        if t.ends_with(['k', 'm', 'g']) || t.chars().all(|c| c.is_ascii_digit()) {
            t
        } else {
            s.as_str()
        }
    });
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n > 0.0).then_some((n * mult as f64) as u64)
}

fn resources(body: &Map, field: &str, s: &mut Service) -> Result<(), ComposeError> {
    let cpus = |v: &Value, f: String| -> Result<u64, ComposeError> {
        scalar(v)
            .and_then(|c| c.parse::<f64>().ok())
            .filter(|c| *c > 0.0 && *c <= 1024.0)
            .map(|c| (c * 1000.0).ceil() as u64)
            .ok_or_else(|| err(f, "must be a number of CPUs such as 0.5"))
    };
    let memory = |v: &Value, f: String| -> Result<u64, ComposeError> {
        scalar(v)
            .as_deref()
            .and_then(bytes)
            .ok_or_else(|| err(f, "must be a size such as 512m"))
    };
    if let Some(v) = body.get("cpus") {
        s.cpu_millis = Some(cpus(v, format!("{field}.cpus"))?);
    }
    if let Some(v) = body.get("mem_limit") {
        s.memory_bytes = Some(memory(v, format!("{field}.mem_limit"))?);
    }
    if let Some(deploy) = body.get("deploy") {
        let Value::Object(d) = deploy else {
            return Err(err(format!("{field}.deploy"), "must be a mapping"));
        };
        for key in d.keys() {
            if !matches!(
                key.as_str(),
                "resources" | "replicas" | "restart_policy" | "labels" | "mode"
            ) {
                return Err(err(
                    format!("{field}.deploy.{key}"),
                    "not supported in previews",
                ));
            }
        }
        if let Some(limits) = deploy.get("resources").and_then(|r| r.get("limits")) {
            if let Some(v) = limits.get("cpus") {
                s.cpu_millis = Some(cpus(v, format!("{field}.deploy.resources.limits.cpus"))?);
            }
            if let Some(v) = limits.get("memory") {
                s.memory_bytes = Some(memory(
                    v,
                    format!("{field}.deploy.resources.limits.memory"),
                )?);
            }
        }
    }
    Ok(())
}

/// Interpolate every string value (12-interpolation.md), with an empty environment.
fn interpolate(v: Value, field: &str, warnings: &mut Vec<String>) -> Result<Value, ComposeError> {
    Ok(match v {
        Value::String(s) => Value::String(interpolate_str(&s, field, warnings)?),
        Value::Array(list) => Value::Array(
            list.into_iter()
                .enumerate()
                .map(|(i, v)| interpolate(v, &join(field, &i.to_string()), warnings))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let f = join(field, &k);
                    Ok((k, interpolate(v, &f, warnings)?))
                })
                .collect::<Result<_, ComposeError>>()?,
        ),
        other => other,
    })
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}.{b}")
    }
}

fn interpolate_str(
    s: &str,
    field: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ComposeError> {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let c = s[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                // The matching brace, counting nested `${`.
                let mut depth = 1;
                let mut j = i + 2;
                while j < b.len() && depth > 0 {
                    match b[j] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth != 0 {
                    return Err(err(field, "an unclosed ${ in a value"));
                }
                let inner = &s[i + 2..j - 1];
                out.push_str(&braced(inner, field, warnings)?);
                i = j;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                warnings.push(format!(
                    "{field}: variable {} is not set; it is empty",
                    &s[i + 1..j]
                ));
                i = j;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `${...}`: a name and, after it, `:-`, `-`, `:?` or `?` and a word (itself interpolated).
/// Every variable is unset here.
fn braced(inner: &str, field: &str, warnings: &mut Vec<String>) -> Result<String, ComposeError> {
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, rest) = inner.split_at(name_len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(err(field, format!("invalid interpolation ${{{inner}}}")));
    }
    let word = |w: &str, warnings: &mut Vec<String>| interpolate_str(w, field, warnings);
    if let Some(d) = rest.strip_prefix(":-").or_else(|| rest.strip_prefix('-')) {
        return word(d, warnings);
    }
    if let Some(m) = rest.strip_prefix(":?").or_else(|| rest.strip_prefix('?')) {
        let m = word(m, warnings)?;
        return Err(err(
            field,
            format!(
                "required variable {name} is not set (Slipway has no environment to take it from): {m}"
            ),
        ));
    }
    if rest.is_empty() {
        warnings.push(format!("{field}: variable {name} is not set; it is empty"));
        return Ok(String::new());
    }
    Err(err(field, format!("invalid interpolation ${{{inner}}}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAILS: &str = r#"
name: shop
x-env: &env
  RAILS_ENV: development
  DATABASE_URL: postgres://app:secret@db:5432/app
services:
  web:
    build:
      context: .
      dockerfile: docker/web.Dockerfile
      args: ["RUBY_VERSION=3.3"]
      target: app
    command: bundle exec rails server -b 0.0.0.0 -p "${PORT:-3000}"
    environment:
      <<: *env
      REDIS_URL: redis://cache:6379/0
      UNSET_FROM_HOST:
    ports: ["3000:3000"]
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
    deploy: {resources: {limits: {cpus: "0.5", memory: 512M}}}
    restart: unless-stopped
  db:
    image: postgres:16.4
    environment: ["POSTGRES_PASSWORD=secret", "POSTGRES_USER=app"]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U app"]
      interval: 2s
      timeout: 1500ms
      retries: 20
      start_period: 1m30s
    volumes: ["pgdata:/var/lib/postgresql/data"]
    expose: ["5432"]
  cache:
    image: redis:7.4-alpine
    command: ["redis-server", "--save", ""]
    tmpfs: /data
  docs:
    image: nginx
    profiles: [docs]
volumes:
  pgdata: {}
"#;

    #[test]
    fn a_rails_app_with_postgres_and_redis_is_translated() {
        let app = parse(RAILS).unwrap();
        let names: Vec<&str> = app.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db", "cache"], "docs has a profile");
        let web = app.service("web").unwrap();
        assert_eq!(
            web.build,
            Some(ServiceBuild {
                context: ".".into(),
                dockerfile: Some("docker/web.Dockerfile".into()),
                args: BTreeMap::from([("RUBY_VERSION".into(), "3.3".into())]),
                target: Some("app".into()),
            })
        );
        assert_eq!(
            web.command.as_deref().unwrap(),
            [
                "bundle", "exec", "rails", "server", "-b", "0.0.0.0", "-p", "3000"
            ]
        );
        assert_eq!(
            web.environment["RAILS_ENV"], "development",
            "merge key applied"
        );
        assert_eq!(web.environment["REDIS_URL"], "redis://cache:6379/0");
        assert!(!web.environment.contains_key("UNSET_FROM_HOST"));
        assert_eq!(web.ports, [3000]);
        assert_eq!(
            web.depends_on,
            [
                Dependency {
                    service: "cache".into(),
                    condition: Condition::Started
                },
                Dependency {
                    service: "db".into(),
                    condition: Condition::Healthy
                },
            ],
            "by name"
        );
        assert_eq!(
            (web.cpu_millis, web.memory_bytes),
            (Some(500), Some(512 << 20))
        );
        let db = app.service("db").unwrap();
        assert_eq!(db.environment["POSTGRES_USER"], "app");
        assert_eq!(
            db.healthcheck,
            Some(Healthcheck {
                test: HealthTest::Shell("pg_isready -U app".into()),
                interval_secs: 2,
                timeout_secs: 2,
                retries: 20,
                start_period_secs: 90,
            })
        );
        assert_eq!(
            db.volumes,
            [VolumeMount {
                volume: "pgdata".into(),
                target: "/var/lib/postgresql/data".into(),
                read_only: false
            }]
        );
        assert_eq!(db.ports, [5432]);
        let cache = app.service("cache").unwrap();
        assert_eq!(
            cache.command.as_deref().unwrap(),
            ["redis-server", "--save", ""]
        );
        assert_eq!(cache.tmpfs, ["/data"]);
        assert!(
            app.warnings.iter().any(|w| w.contains("docs has profiles")),
            "{:?}",
            app.warnings
        );
        assert!(
            app.warnings
                .iter()
                .any(|w| w.contains("services.web.restart is ignored"))
        );
    }

    #[test]
    fn what_reaches_the_node_is_refused_naming_the_field() {
        let refused = |service: &str| {
            let text = format!("services:\n  web:\n    image: app\n{service}");
            parse(&text).unwrap_err()
        };
        for (yaml, field) in [
            ("    privileged: true\n", "services.web.privileged"),
            ("    network_mode: host\n", "services.web.network_mode"),
            ("    pid: host\n", "services.web.pid"),
            ("    devices: [\"/dev/fuse\"]\n", "services.web.devices"),
            ("    cap_add: [NET_ADMIN]\n", "services.web.cap_add"),
            ("    volumes: [\"./src:/app\"]\n", "services.web.volumes.0"),
            (
                "    volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
                "services.web.volumes.0",
            ),
            (
                "    volumes: [{type: bind, source: /etc, target: /etc}]\n",
                "services.web.volumes.0",
            ),
            ("    env_file: .env\n", "services.web.env_file"),
            ("    ports: [\"53:53/udp\"]\n", "services.web.ports.0"),
            (
                "    ports: [\"3000-3005:3000-3005\"]\n",
                "services.web.ports.0",
            ),
            ("    frobnicate: yes\n", "services.web.frobnicate"),
            (
                "    build: {context: ., ssh: [default]}\n",
                "services.web.build.ssh",
            ),
            ("    build: ../outside\n", "services.web.build.context"),
            ("    depends_on: [nope]\n", "services.web.depends_on.nope"),
            (
                "    volumes: [\"undeclared:/data\"]\n",
                "services.web.volumes.0",
            ),
        ] {
            let e = refused(yaml);
            assert_eq!(e.field, field, "{yaml}: {e}");
        }
        assert!(
            refused("    privileged: true\n")
                .message
                .contains("privileged")
        );
        let e = parse("services:\n  Web_1:\n    image: app\n").unwrap_err();
        assert_eq!(e.field, "services.Web_1");
        let e = parse("services:\n  web:\n    build: .\n    depends_on: {db: {condition: service_healthy}}\n  db:\n    image: postgres\n").unwrap_err();
        assert!(e.message.contains("needs a healthcheck"), "{e}");
        let e = parse("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    depends_on: [a]\n").unwrap_err();
        assert!(e.message.contains("cycle"), "{e}");
        assert_eq!(parse("services: {}\n").unwrap_err().field, "services");
        assert_eq!(
            parse("secrets: {}\nservices: {}\n").unwrap_err().field,
            "secrets"
        );
        assert_eq!(
            parse("services:\n  web: {}\n").unwrap_err().field,
            "services.web"
        );
        assert!(parse("[1, 2").is_err());
    }

    #[test]
    fn interpolation_follows_the_specification_with_an_empty_environment() {
        let mut w = Vec::new();
        assert_eq!(
            interpolate_str("a-${X:-dflt}-b", "f", &mut w).unwrap(),
            "a-dflt-b"
        );
        assert_eq!(
            interpolate_str("${X-${Y:-deep}}", "f", &mut w).unwrap(),
            "deep"
        );
        assert_eq!(
            interpolate_str("$$HOME and $$", "f", &mut w).unwrap(),
            "$HOME and $"
        );
        assert_eq!(
            interpolate_str("cost: $5", "f", &mut w).unwrap(),
            "cost: $5"
        );
        assert!(w.is_empty());
        assert_eq!(
            interpolate_str("x${UNSET}y$ALSO", "f", &mut w).unwrap(),
            "xy"
        );
        assert_eq!(w.len(), 2, "{w:?}");
        let e =
            interpolate_str("${TOKEN:?set the token}", "services.web.image", &mut w).unwrap_err();
        assert_eq!(e.field, "services.web.image");
        assert!(e.message.contains("set the token"), "{e}");
        assert!(interpolate_str("${unclosed", "f", &mut w).is_err());
        assert!(interpolate_str("${X/foo/bar}", "f", &mut w).is_err());
    }

    #[test]
    fn shell_words_durations_and_sizes() {
        assert_eq!(
            split_words(r#"sh -c 'echo "hi $$HOSTNAME"' "a b"\ c"#).unwrap(),
            ["sh", "-c", "echo \"hi $$HOSTNAME\"", "a b c"]
        );
        assert_eq!(split_words("'open").map(|_| ()), None);
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
        assert_eq!(duration_secs("1m30s"), Some(90));
        assert_eq!(duration_secs("500ms"), Some(1));
        assert_eq!(duration_secs("1h"), Some(3600));
        assert_eq!(duration_secs("10"), None);
        assert_eq!(duration_secs("5x"), None);
        assert_eq!(bytes("512M"), Some(512 << 20));
        assert_eq!(bytes("1gb"), Some(1 << 30));
        assert_eq!(bytes("2048k"), Some(2 << 20));
        assert_eq!(bytes("100"), Some(100));
        assert_eq!(bytes("-1m"), None);
    }

    #[test]
    fn hostile_input_is_an_error_never_a_panic() {
        for text in [
            "",
            "~",
            "services: 3",
            "services: [a]",
            "services:\n  web:\n    image: [x]\n",
            "services:\n  web:\n    image: x\n    ports: [{target: 99999}]\n",
            "services:\n  web:\n    image: x\n    healthcheck: {test: [BOGUS]}\n",
            "services:\n  web:\n    image: x\n    environment: 3\n",
            "services:\n  web:\n    image: \"${\"\n",
            "a: &a [*a]\n",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be refused");
        }
    }
}
