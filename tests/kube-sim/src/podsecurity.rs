//! Pod Security admission (the built-in `PodSecurity` plugin), enforce mode only, by namespace
//! label, as kubernetes/kubernetes `staging/src/k8s.io/pod-security-admission` does it:
//!
//! - the level comes from `pod-security.kubernetes.io/enforce` (`privileged`, `baseline`,
//!   `restricted`; no label means privileged, the apiserver's default) and the version from
//!   `pod-security.kubernetes.io/enforce-version` (default `latest`);
//! - checks run in the order the upstream registry evaluates them (`policy/registry.go`: the
//!   baseline checks, then for `restricted` the restricted ones, each group in check-file order;
//!   the overlapping baseline checks are replaced by their restricted versions);
//! - a refused pod gets `403 Forbidden` with `pods "<name>" is forbidden: violates PodSecurity
//!   "<level>:<version>": <reason> (<detail>), ...` (`admission/admission.go`,
//!   `policy/checks.go` `AggregateCheckResult.ForbiddenDetail`).
//!
//! The checks cover what Slipway's pods and the usual violations touch: privileged, host
//! namespaces, host ports, hostPath volumes, added capabilities, seccomp (baseline), and
//! allowPrivilegeEscalation, capabilities drop ALL, restricted volume types, runAsNonRoot,
//! runAsUser=0, seccomp (restricted). Each function cites its upstream check file. Not modelled:
//! AppArmor, SELinux, procMount, sysctls, probes' host fields, Windows host process, user
//! namespaces' relaxation, exemptions, audit and warn modes.

use serde_json::Value;

/// A Pod Security level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Known privilege escalations refused.
    Baseline,
    /// Hardening best practices.
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// One failed check: upstream's `ForbiddenReason` and `ForbiddenDetail`.
type Violation = (String, String);

fn join_quote(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("\"{}\"", items.join("\", \""))
}

fn pluralize<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

/// `container "a"` / `containers "a", "b"`, as upstream's messages name them.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// One violation naming every container for which `bad` holds: `<names> must <must>`.
fn each_container(
    spec: &Value,
    bad: impl Fn(&Value) -> bool,
    reason: &str,
    must: &str,
) -> Option<Violation> {
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| bad(c))
        .map(name)
        .collect();
    (!names.is_empty()).then(|| {
        (
            reason.into(),
            format!("{} must {must}", containers_phrase(&names)),
        )
    })
}

/// Init containers then containers (upstream `visitContainers`; ephemeral ones cannot be in a
/// create).
fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn name(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn sc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.pointer(&format!("/securityContext/{field}"))
        .filter(|v| !v.is_null())
}

/// `check_privileged.go`
fn privileged(spec: &Value) -> Option<Violation> {
    each_container(
        spec,
        |c| sc(c, "privileged").and_then(Value::as_bool) == Some(true),
        "privileged",
        "not set securityContext.privileged=true",
    )
}

/// `check_hostNamespaces.go`
fn host_namespaces(spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec.get(**f).and_then(Value::as_bool) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    (!bad.is_empty()).then(|| ("host namespaces".into(), bad.join(", ")))
}

/// `check_hostPorts.go`
fn host_ports(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let mut uses = false;
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(hp) = p
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|p| *p != 0)
            {
                uses = true;
                ports.insert(hp.to_string());
            }
        }
        if uses {
            bad.push(name(c));
        }
    }
    (!bad.is_empty()).then(|| {
        let ports: Vec<String> = ports.into_iter().collect();
        (
            "hostPort".into(),
            format!(
                "{} {} {} {}",
                containers_phrase(&bad),
                pluralize("uses", "use", bad.len()),
                pluralize("hostPort", "hostPorts", ports.len()),
                ports.join(", ")
            ),
        )
    })
}

fn volumes(spec: &Value) -> Vec<&Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect()
}

/// `check_hostPathVolumes.go` (baseline; replaced by restrictedVolumes at restricted)
fn host_path_volumes(spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = volumes(spec)
        .into_iter()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "hostPath volumes".into(),
            format!(
                "{} {}",
                pluralize("volume", "volumes", bad.len()),
                join_quote(&bad)
            ),
        )
    })
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> Vec<String> {
    c.pointer("/securityContext/capabilities/add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// `check_capabilities_baseline.go` (baseline; replaced by capabilities_restricted)
fn capabilities_baseline(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let extra: Vec<String> = added_capabilities(c)
            .into_iter()
            .filter(|a| !BASELINE_CAPABILITIES.contains(&a.as_str()))
            .collect();
        if !extra.is_empty() {
            bad.push(name(c));
            caps.extend(extra);
        }
    }
    (!bad.is_empty()).then(|| {
        let caps: Vec<String> = caps.into_iter().collect();
        (
            "non-default capabilities".into(),
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers_phrase(&bad),
                join_quote(&caps)
            ),
        )
    })
}

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn seccomp_type<'a>(v: &'a Value, at: &str) -> Option<&'a str> {
    v.pointer(at)
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
}

/// `check_seccompProfile_baseline.go` (1.19+; replaced by seccompProfile_restricted) and
/// `check_seccompProfile_restricted.go` (`require` = restricted: a profile must be set).
fn seccomp(spec: &Value, require: bool) -> Option<Violation> {
    let mut bad_setters = Vec::new();
    let mut bad_values = std::collections::BTreeSet::new();
    let mut pod_set = false;
    if let Some(t) = seccomp_type(spec, "/securityContext/seccompProfile") {
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            bad_setters.push("pod".to_owned());
            bad_values.insert(t.to_owned());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match seccomp_type(c, "/securityContext/seccompProfile") {
            Some(t) if !valid_seccomp(t) => {
                explicit.push(name(c));
                bad_values.insert(t.to_owned());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        bad_setters.push(format!(
            "{} {}",
            pluralize("container", "containers", explicit.len()),
            join_quote(&explicit)
        ));
    }
    if !bad_setters.is_empty() {
        let values: Vec<String> = bad_values.into_iter().collect();
        return Some((
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                bad_setters.join(" and "),
                join_quote(&values)
            ),
        ));
    }
    (require && !implicit.is_empty()).then(|| {
        (
            "seccompProfile".into(),
            format!(
                "pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                pluralize("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        )
    })
}

/// `check_allowPrivilegeEscalation.go`
fn allow_privilege_escalation(spec: &Value) -> Option<Violation> {
    each_container(
        spec,
        |c| sc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false),
        "allowPrivilegeEscalation != false",
        "set securityContext.allowPrivilegeEscalation=false",
    )
}

/// `check_capabilities_restricted.go`
fn capabilities_restricted(spec: &Value) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = sc(c, "capabilities") else {
            missing_drop.push(name(c));
            continue;
        };
        let drops_all = caps
            .get("drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            missing_drop.push(name(c));
        }
        let extra: Vec<String> = added_capabilities(c)
            .into_iter()
            .filter(|a| a != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            adding.push(name(c));
            forbidden.extend(extra);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} {} must set securityContext.capabilities.drop=[\"ALL\"]",
            pluralize("container", "containers", missing_drop.len()),
            join_quote(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = forbidden.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps)
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities".into(), details.join("; ")))
}

/// `check_restrictedVolumes.go`: only these volume sources are allowed.
fn restricted_volumes(spec: &Value) -> Option<Violation> {
    const ALLOWED: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut bad = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    for v in volumes(spec) {
        let source = v
            .as_object()
            .and_then(|m| m.keys().find(|k| k.as_str() != "name").cloned())
            .unwrap_or_else(|| "unknown".into());
        if !ALLOWED.contains(&source.as_str()) {
            bad.push(name(v));
            types.insert(source);
        }
    }
    (!bad.is_empty()).then(|| {
        let types: Vec<String> = types.into_iter().collect();
        (
            "restricted volume types".into(),
            format!(
                "{} {} {} {} {}",
                pluralize("volume", "volumes", bad.len()),
                join_quote(&bad),
                pluralize("uses", "use", bad.len()),
                pluralize(
                    "restricted volume type",
                    "restricted volume types",
                    types.len()
                ),
                join_quote(&types)
            ),
        )
    })
}

/// `check_runAsNonRoot.go`
fn run_as_non_root(spec: &Value) -> Option<Violation> {
    let mut bad_setters = Vec::new();
    let mut pod_non_root = false;
    match spec
        .pointer("/securityContext/runAsNonRoot")
        .and_then(Value::as_bool)
    {
        Some(false) => bad_setters.push("pod".to_owned()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match sc(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        bad_setters.push(format!(
            "{} {}",
            pluralize("container", "containers", explicit.len()),
            join_quote(&explicit)
        ));
    }
    if !bad_setters.is_empty() {
        return Some((
            "runAsNonRoot != true".into(),
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                bad_setters.join(" and ")
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        (
            "runAsNonRoot != true".into(),
            format!(
                "pod or {} {} must set securityContext.runAsNonRoot=true",
                pluralize("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        )
    })
}

/// `check_runAsUser.go`
fn run_as_user(spec: &Value) -> Option<Violation> {
    let mut bad_setters = Vec::new();
    if spec
        .pointer("/securityContext/runAsUser")
        .and_then(Value::as_i64)
        == Some(0)
    {
        bad_setters.push("pod".to_owned());
    }
    let explicit: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| sc(c, "runAsUser").and_then(Value::as_i64) == Some(0))
        .map(name)
        .collect();
    if !explicit.is_empty() {
        bad_setters.push(format!(
            "{} {}",
            pluralize("container", "containers", explicit.len()),
            join_quote(&explicit)
        ));
    }
    (!bad_setters.is_empty()).then(|| {
        (
            "runAsUser=0".into(),
            format!("{} must not set runAsUser=0", bad_setters.join(" and ")),
        )
    })
}

/// The violations of `spec` at `level`, in upstream's evaluation order.
#[must_use]
pub fn violations(level: Level, spec: &Value) -> Vec<(String, String)> {
    if level == Level::Privileged {
        return Vec::new();
    }
    // Upstream orders the checks by ID, baseline first, then restricted; at restricted the
    // baseline checks a restricted one overrides drop out (`policy/registry.go`, `populate`).
    let out: Vec<Option<Violation>> = if level == Level::Baseline {
        vec![
            capabilities_baseline(spec),
            host_namespaces(spec),
            host_path_volumes(spec),
            host_ports(spec),
            privileged(spec),
            seccomp(spec, false),
        ]
    } else {
        vec![
            host_namespaces(spec),
            host_ports(spec),
            privileged(spec),
            allow_privilege_escalation(spec),
            capabilities_restricted(spec),
            restricted_volumes(spec),
            run_as_non_root(spec),
            run_as_user(spec),
            seccomp(spec, true),
        ]
    };
    out.into_iter().flatten().collect()
}

/// The enforce policy of a namespace's labels: the level and the `level:version` string.
#[must_use]
pub fn enforced(ns_labels: Option<&Value>) -> (Level, String) {
    let label = |k: &str| {
        ns_labels
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let level = label("pod-security.kubernetes.io/enforce")
        .and_then(|l| Level::parse(&l))
        .unwrap_or(Level::Privileged);
    let version =
        label("pod-security.kubernetes.io/enforce-version").unwrap_or_else(|| "latest".into());
    (level, format!("{}:{version}", level.as_str()))
}

/// Why a pod with this spec may not be created in a namespace with these labels, as the
/// text after `pods "<name>" is forbidden: `; `None` when it is admitted.
#[must_use]
pub fn refusal(ns_labels: Option<&Value>, pod_spec: &Value) -> Option<String> {
    let (level, policy) = enforced(ns_labels);
    let v = violations(level, pod_spec);
    if v.is_empty() {
        return None;
    }
    let detail: Vec<String> = v
        .into_iter()
        .map(|(reason, detail)| {
            if detail.is_empty() {
                reason
            } else {
                format!("{reason} ({detail})")
            }
        })
        .collect();
    Some(format!(
        "violates PodSecurity \"{policy}\": {}",
        detail.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bare_pod_under_restricted_gets_upstreams_message() {
        let spec = json!({"containers": [{"name": "runtime", "image": "x"}]});
        let labels = json!({"pod-security.kubernetes.io/enforce": "restricted"});
        // As reported by real clusters (e.g. redhat-developer/odo#6847).
        assert_eq!(
            refusal(Some(&labels), &spec).unwrap(),
            "violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false \
             (container \"runtime\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"runtime\" must set \
             securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or \
             container \"runtime\" must set securityContext.runAsNonRoot=true), seccompProfile \
             (pod or container \"runtime\" must set securityContext.seccompProfile.type to \
             \"RuntimeDefault\" or \"Localhost\")"
        );
        // Baseline admits it; no label is privileged.
        let baseline = json!({"pod-security.kubernetes.io/enforce": "baseline"});
        assert_eq!(refusal(Some(&baseline), &spec), None);
        assert_eq!(refusal(None, &spec), None);
    }

    #[test]
    fn baseline_refuses_host_access_and_privileges() {
        let spec = json!({"hostNetwork": true, "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}}]});
        let labels = json!({"pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "v1.29"});
        assert_eq!(
            refusal(Some(&labels), &spec).unwrap(),
            "violates PodSecurity \"baseline:v1.29\": non-default capabilities (container \"a\" \
             must not include \"NET_ADMIN\" in securityContext.capabilities.add), host namespaces \
             (hostNetwork=true), hostPath volumes (volume \"host\"), hostPort (container \"a\" \
             uses hostPort 80), privileged (container \"a\" must not set \
             securityContext.privileged=true)"
        );
    }

    #[test]
    fn restricted_admits_a_hardened_pod_and_names_each_gap() {
        let hardened = json!({"securityContext": {"runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]});
        assert!(violations(Level::Restricted, &hardened).is_empty());
        let gaps = json!({"securityContext": {"runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            "containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": false,
                "runAsNonRoot": false, "capabilities": {"drop": ["ALL"]}}}]});
        let reasons: Vec<String> = violations(Level::Restricted, &gaps)
            .into_iter()
            .map(|(r, d)| format!("{r} ({d})"))
            .collect();
        assert_eq!(
            reasons,
            [
                "restricted volume types (volume \"host\" uses restricted volume type \"hostPath\")",
                "runAsNonRoot != true (container \"app\" must not set securityContext.runAsNonRoot=false)",
                "runAsUser=0 (pod must not set runAsUser=0)",
                "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"
            ]
        );
    }

    /// No Pod Security level checks `readOnlyRootFilesystem` either way (the policy package's
    /// checks are the list in `check_*.go`; the Pod Security Standards page lists none for it),
    /// so a read-only root with a writable `/tmp` emptyDir is admitted at every level, and a
    /// writable root is not refused by restricted.
    #[test]
    fn a_read_only_root_with_a_tmp_emptydir_passes_baseline_and_restricted() {
        let spec = json!({"securityContext": {"runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
            "containers": [{"name": "app", "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": {"allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}}]});
        for level in [Level::Baseline, Level::Restricted] {
            assert!(violations(level, &spec).is_empty(), "{level:?}");
        }
        let mut writable = spec.clone();
        writable["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = json!(false);
        assert!(violations(Level::Restricted, &writable).is_empty());
    }
}
