//! The table of API resources the simulator serves. Storage is generic: adding a kind is one
//! line here; only the controllers give some kinds behaviour.

/// One served resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name used in paths.
    pub plural: &'static str,
    /// Singular resource name.
    pub singular: &'static str,
    /// The object's `kind`.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names advertised in discovery (used by kubectl).
    pub short_names: &'static [&'static str],
    /// Whether the kind has a `/status` subresource (status is then ignored on the main resource).
    pub has_status: bool,
    /// Whether the kind has a `/scale` subresource.
    pub has_scale: bool,
}

impl KindInfo {
    /// Whether the kind is a custom resource (served by the apiextensions apiserver, which
    /// accepts no protobuf): built-in groups are the core group, the unqualified ones
    /// (`apps`, `batch`, ...) and those under `k8s.io`.
    #[must_use]
    pub fn is_custom(&self) -> bool {
        self.group.contains('.') && !self.group.ends_with(".k8s.io")
    }

    /// `group/version`, or just `version` for the core group.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path prefix for this kind's group version (`/api/v1` or `/apis/g/v`).
    #[must_use]
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path, optionally inside a namespace.
    #[must_use]
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => {
                format!("{}/namespaces/{ns}/{}", self.prefix(), self.plural)
            }
            _ => format!("{}/{}", self.prefix(), self.plural),
        }
    }
}

#[allow(clippy::too_many_arguments)] // one table row per call keeps the table readable
const fn k(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    has_status: bool,
    has_scale: bool,
) -> KindInfo {
    KindInfo {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        has_status,
        has_scale,
    }
}

/// Every kind the simulator serves.
pub static KINDS: &[KindInfo] = &[
    k(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        true,
        false,
    ),
    k("", "v1", "pods", "pod", "Pod", true, &["po"], true, false),
    k(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        true,
        false,
    ),
    k(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        &[],
        false,
        false,
    ),
    k(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
        false,
    ),
    k(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
        false,
    ),
    k(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        false,
        false,
    ),
    k(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        &["quota"],
        true,
        false,
    ),
    k(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        &["limits"],
        false,
        false,
    ),
    k(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
        false,
    ),
    k(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        true,
        false,
    ),
    k("batch", "v1", "jobs", "job", "Job", true, &[], true, false),
    k(
        "batch",
        "v1",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        &["cj"],
        true,
        false,
    ),
    k(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
        true,
    ),
    k(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        true,
        true,
    ),
    k(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        true,
        true,
    ),
    k(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        true,
        false,
    ),
    k(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        &["ing"],
        true,
        false,
    ),
    k(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
        false,
    ),
    k(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
        false,
    ),
    k(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        true,
        false,
    ),
    // cert-manager's CRD (cert-manager `deploy/crds/cert-manager.io_certificates.yaml`):
    // served so clients can read Certificates; the optional cert-manager model writes them.
    k(
        "cert-manager.io",
        "v1",
        "certificates",
        "certificate",
        "Certificate",
        true,
        &["cert", "certs"],
        true,
        false,
    ),
    k(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        false,
        false,
    ),
];

/// Index of a kind in [`KINDS`], by group, version and plural.
#[must_use]
pub fn find(group: &str, version: &str, plural: &str) -> Option<usize> {
    KINDS
        .iter()
        .position(|k| k.group == group && k.version == version && k.plural == plural)
}

/// Index of a kind in [`KINDS`] by `apiVersion` and `kind`.
#[must_use]
pub fn find_by_kind(api_version: &str, kind: &str) -> Option<usize> {
    KINDS
        .iter()
        .position(|k| k.api_version() == api_version && k.kind == kind)
}

/// Index of a kind by plural name alone (first match), for callers that know it is unique.
#[must_use]
pub fn by_plural(plural: &str) -> usize {
    KINDS.iter().position(|k| k.plural == plural).unwrap_or(0)
}

/// Well-known kind indices used by the controllers.
pub mod idx {
    use super::by_plural;
    /// Namespaces.
    #[must_use]
    pub fn namespaces() -> usize {
        by_plural("namespaces")
    }
    /// Pods.
    #[must_use]
    pub fn pods() -> usize {
        by_plural("pods")
    }
    /// Jobs.
    #[must_use]
    pub fn jobs() -> usize {
        by_plural("jobs")
    }
    /// Deployments.
    #[must_use]
    pub fn deployments() -> usize {
        by_plural("deployments")
    }
    /// ReplicaSets.
    #[must_use]
    pub fn replicasets() -> usize {
        by_plural("replicasets")
    }
    /// Events.
    #[must_use]
    pub fn events() -> usize {
        by_plural("events")
    }
}
