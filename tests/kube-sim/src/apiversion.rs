//! The Kubernetes version the simulator plays (`/version`, the node's kubelet version) and the
//! fields an apiserver of that version does not know.
//!
//! An apiserver decodes a JSON body into its own Go types, so a field newer than it is
//! dropped. With `fieldValidation=Warn` (the default since 1.23 when the parameter is absent,
//! per the API reference of every write) each dropped field gets a `Warning: 299 - "unknown
//! field \"<path>\""` response header (apiserver `pkg/endpoints/handlers/rest.go`
//! `addStrictDecodingWarnings`, apimachinery `util/net` `NewWarningHeader`); `Strict` refuses
//! the request with 400 `... strict decoding error: unknown field "<path>"`; `Ignore` drops it
//! silently. Server-side apply always validates against the schema and refuses unknown fields
//! (KEP-2885, "Apply Patch").
//!
//! Modelled fields: `appArmorProfile` in the pod and container security contexts (1.30,
//! KEP-24 AppArmor GA).

use serde_json::Value;

/// A Kubernetes version (`major.minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    /// Always 1.
    pub major: u32,
    /// The minor version, e.g. 33.
    pub minor: u32,
}

impl Default for KubeVersion {
    fn default() -> Self {
        Self {
            major: 1,
            minor: 33,
        }
    }
}

impl std::str::FromStr for KubeVersion {
    type Err = String;

    /// `1.29`, `v1.29` or `1.29.3`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.trim_start_matches('v').split('.');
        let major = parts.next().and_then(|p| p.parse().ok());
        let minor = parts.next().and_then(|p| p.parse().ok());
        match (major, minor) {
            (Some(1), Some(minor)) => Ok(Self { major: 1, minor }),
            _ => Err(format!(
                "not a Kubernetes version: {s:?} (expected e.g. 1.29)"
            )),
        }
    }
}

impl std::fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Where a kind keeps its pod spec, as a path of object keys.
/// Whether a write of `plural` can hold a field `version` does not know: callers skip parsing
/// bodies that cannot (every write at 1.30+).
#[must_use]
pub fn may_drop(plural: &str, version: KubeVersion) -> bool {
    version.minor < 30 && pod_spec_path(plural).is_some()
}

fn pod_spec_path(plural: &str) -> Option<&'static [&'static str]> {
    Some(match plural {
        "pods" => &["spec"],
        "jobs" | "deployments" | "replicasets" | "statefulsets" | "daemonsets" => {
            &["spec", "template", "spec"]
        }
        "cronjobs" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "podtemplates" => &["template", "spec"],
        _ => return None,
    })
}

/// One field the version does not know, in the two spellings apiservers use: the JSON
/// decoder's (`spec.containers[0].x`) and structured-merge-diff's (`.spec.containers[name="c"].x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// As the strict JSON decoder and the warnings spell it.
    pub json_path: String,
    /// As server-side apply's schema check spells it.
    pub smd_path: String,
}

/// Removes from `obj` (a `plural` object or apply patch) the fields `version` does not know;
/// returns them.
pub fn drop_unknown_fields(
    plural: &str,
    obj: &mut Value,
    version: KubeVersion,
) -> Vec<UnknownField> {
    let mut dropped = Vec::new();
    if !may_drop(plural, version) {
        return dropped;
    }
    let Some(path) = pod_spec_path(plural) else {
        return dropped;
    };
    let mut spec = &mut *obj;
    for key in path {
        match spec.get_mut(*key) {
            Some(v) => spec = v,
            None => return dropped,
        }
    }
    let base = path.join(".");
    if let Some(sc) = spec
        .get_mut("securityContext")
        .and_then(Value::as_object_mut)
        && sc.remove("appArmorProfile").is_some()
    {
        dropped.push(UnknownField {
            json_path: format!("{base}.securityContext.appArmorProfile"),
            smd_path: format!(".{base}.securityContext.appArmorProfile"),
        });
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, c) in cs.iter_mut().enumerate() {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            if let Some(sc) = c.get_mut("securityContext").and_then(Value::as_object_mut)
                && sc.remove("appArmorProfile").is_some()
            {
                dropped.push(UnknownField {
                    json_path: format!("{base}.{list}[{i}].securityContext.appArmorProfile"),
                    smd_path: format!(
                        ".{base}.{list}[name=\"{name}\"].securityContext.appArmorProfile"
                    ),
                });
            }
        }
    }
    dropped
}

/// The `Warning` header value for one dropped field (code 299, agent `-`, quoted text).
#[must_use]
pub fn warning_header(field: &UnknownField) -> String {
    let text = format!("unknown field \"{}\"", field.json_path);
    format!(
        "299 - \"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_parse() {
        assert_eq!("1.29".parse::<KubeVersion>().unwrap().minor, 29);
        assert_eq!("v1.30.2".parse::<KubeVersion>().unwrap().minor, 30);
        assert!("2.0".parse::<KubeVersion>().is_err());
        assert_eq!(KubeVersion::default().to_string(), "1.33");
    }

    #[test]
    fn a_1_29_apiserver_drops_apparmor_fields() {
        let mut job = json!({"spec": {"template": {"spec": {
            "securityContext": {"runAsUser": 1000, "appArmorProfile": {"type": "Unconfined"}},
            "containers": [{"name": "b", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]}}}});
        let v129: KubeVersion = "1.29".parse().unwrap();
        assert!(drop_unknown_fields("jobs", &mut job.clone(), KubeVersion::default()).is_empty());
        let dropped = drop_unknown_fields("jobs", &mut job, v129);
        assert_eq!(
            dropped
                .iter()
                .map(|d| d.json_path.as_str())
                .collect::<Vec<_>>(),
            [
                "spec.template.spec.securityContext.appArmorProfile",
                "spec.template.spec.containers[0].securityContext.appArmorProfile"
            ]
        );
        assert_eq!(
            dropped[1].smd_path,
            ".spec.template.spec.containers[name=\"b\"].securityContext.appArmorProfile"
        );
        assert_eq!(
            job["spec"]["template"]["spec"]["securityContext"],
            json!({"runAsUser": 1000})
        );
        assert_eq!(
            warning_header(&dropped[0]),
            r#"299 - "unknown field \"spec.template.spec.securityContext.appArmorProfile\"""#
        );
    }
}
