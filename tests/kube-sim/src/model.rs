//! What the simulator knows about the world outside the API server: the users images run as
//! (for the kubelet's `runAsNonRoot` check) and an optional model of cert-manager issuing
//! per-Ingress certificates through ACME HTTP-01.
//!
//! **Images' users.** An image without `USER` runs as root, so every image runs as UID 0 unless
//! a rule says otherwise; by default images whose reference contains `nonroot` (distroless'
//! convention) run as 65532. The kubelet's check is kubernetes/kubernetes
//! `pkg/kubelet/kuberuntime/security_context_others.go` (`verifyRunAsNonRoot`): with
//! `runAsNonRoot` in effect, a non-zero `runAsUser` passes, `runAsUser: 0` fails, else the
//! image's user decides (numeric 0 or none: "will run as root"; a user name: "cannot verify").
//!
//! **cert-manager** (off unless [`CertManagerModel`] is given): for an Ingress annotated
//! `cert-manager.io/cluster-issuer` (or `issuer`), ingress-shim creates a `Certificate` named
//! after each TLS `secretName` (cert-manager `pkg/controller/certificate-shim/sync.go`), and the
//! ACME HTTP-01 solver runs a pod in the Ingress' namespace with labels
//! `acme.cert-manager.io/http01-solver=true`, `http-domain`, `http-token` and container port
//! 8089 (`pkg/issuer/acme/http/pod.go`, `http.go`). The certificate is issued (TLS Secret
//! written, `Ready=True`) only once the solver pod runs and the namespace's NetworkPolicies let
//! the ingress controller's pods reach it on TCP 8089 ([`crate::netpol`]); until then the
//! Certificate stays `Ready=False`, reason `DoesNotExist`, "Issuing certificate as Secret does
//! not exist" (`internal/controller/certificates/policies/checks.go`). Simplified: no
//! CertificateRequest, Order or Challenge objects; the solver pod is owned by the Certificate.

use std::hash::Hasher as _;

use serde_json::{Value, json};

/// The model of cert-manager's HTTP-01 issuance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertManagerModel {
    /// Namespace of the ingress controller whose pods fetch the challenge from the solver.
    pub ingress_namespace: String,
    /// Labels of the ingress controller's pods (ingress-nginx's controller by default).
    pub ingress_pod_labels: Vec<(String, String)>,
}

impl CertManagerModel {
    /// The model with minikube's `ingress` addon: ingress-nginx's controller pods in
    /// `ingress_namespace` (labels from minikube `deploy/addons/ingress/ingress-deploy.yaml.tmpl`).
    #[must_use]
    pub fn with_ingress_nginx(ingress_namespace: impl Into<String>) -> Self {
        Self {
            ingress_namespace: ingress_namespace.into(),
            ingress_pod_labels: [
                ("app.kubernetes.io/component", "controller"),
                ("app.kubernetes.io/instance", "ingress-nginx"),
                ("app.kubernetes.io/name", "ingress-nginx"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        }
    }
}

/// The simulator's knowledge of the outside world.
#[derive(Debug, Clone, Default)]
pub struct ClusterModel {
    /// (substring of the image reference, the image's `USER`), first match wins.
    pub image_users: Vec<(String, String)>,
    /// cert-manager, when installed.
    pub cert_manager: Option<CertManagerModel>,
}

impl ClusterModel {
    /// The `USER` of `image`: a rule's, else 65532 for `nonroot` images, else none (root).
    #[must_use]
    pub fn image_user(&self, image: &str) -> String {
        self.image_users
            .iter()
            .find(|(contains, _)| image.contains(contains.as_str()))
            .map(|(_, user)| user.clone())
            .unwrap_or_else(|| {
                if image.contains("nonroot") {
                    "65532".into()
                } else {
                    String::new()
                }
            })
    }
}

/// The kubelet's `verifyRunAsNonRoot` for one container of `pod` running an image whose user is
/// `image_user`: `Some(error)` when the container must not start.
#[must_use]
pub fn verify_run_as_non_root(pod: &Value, container: &Value, image_user: &str) -> Option<String> {
    let effective = |field: &str| {
        container
            .pointer(&format!("/securityContext/{field}"))
            .filter(|v| !v.is_null())
            .or_else(|| {
                pod.pointer(&format!("/spec/securityContext/{field}"))
                    .filter(|v| !v.is_null())
            })
    };
    if effective("runAsNonRoot").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or_default();
    // format.Pod: name_namespace(uid), quoted with %q.
    let who = format!(
        "{}_{}({})",
        s("/metadata/name"),
        s("/metadata/namespace"),
        s("/metadata/uid")
    );
    let cname = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(uid) = effective("runAsUser").and_then(Value::as_i64) {
        return (uid == 0).then(|| {
            format!(
                "container's runAsUser breaks non-root policy (pod: \"{who}\", container: {cname})"
            )
        });
    }
    // The image config's USER is "uid[:gid]" or "name[:group]"; none means root.
    let user = image_user.split(':').next().unwrap_or_default();
    match user.parse::<i64>() {
        Ok(0) => Some(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{who}\", container: {cname})"
        )),
        Ok(_) => None,
        Err(_) if user.is_empty() => Some(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{who}\", container: {cname})"
        )),
        Err(_) => Some(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{who}\", container: {cname})"
        )),
    }
}

/// The solver pod's identifying labels (`pod.go` `podLabels`: adler32 of the domain and the
/// token, in decimal).
#[must_use]
pub fn solver_labels(domain: &str, token: &str) -> Value {
    json!({
        "acme.cert-manager.io/http-domain": adler32(domain.as_bytes()).to_string(),
        "acme.cert-manager.io/http-token": adler32(token.as_bytes()).to_string(),
        "acme.cert-manager.io/http01-solver": "true",
    })
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for &d in data {
        a = (a + u32::from(d)) % MOD;
        b = (b + a) % MOD;
    }
    (b << 16) | a
}

/// A deterministic stand-in for the ACME token of a domain.
#[must_use]
pub fn token_for(domain: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(domain.as_bytes());
    format!("{:016x}", h.finish())
}

/// The solver pod cert-manager creates for `domain` in `ns` (`pod.go` `buildDefaultPod`, with
/// the controller's default resources from `internal/apis/config/controller/v1alpha1/defaults.go`).
#[must_use]
pub fn solver_pod(ns: &str, domain: &str, owner: &Value) -> Value {
    let token = token_for(domain);
    json!({
        "metadata": {
            "generateName": "cm-acme-http-solver-",
            "namespace": ns,
            "labels": solver_labels(domain, &token),
            "annotations": {"sidecar.istio.io/inject": "false",
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
            "ownerReferences": [{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "automountServiceAccountToken": false,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "restartPolicy": "OnFailure",
            "enableServiceLinks": false,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "acmesolver",
                "image": "quay.io/jetstack/cert-manager-acmesolver-nonroot",
                "imagePullPolicy": "IfNotPresent",
                "args": ["--listen-port=8089", format!("--domain={domain}"),
                    format!("--token={token}"), format!("--key={token}.key")],
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"}},
                "ports": [{"name": "http", "containerPort": 8089, "protocol": "TCP"}],
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_run_as_root_unless_told() {
        let mut m = ClusterModel::default();
        assert_eq!(m.image_user("ghcr.io/org/app:1"), "");
        assert_eq!(m.image_user("gcr.io/distroless/static:nonroot"), "65532");
        m.image_users.push(("org/app".into(), "app".into()));
        assert_eq!(m.image_user("ghcr.io/org/app:1"), "app");
    }

    #[test]
    fn run_as_non_root_follows_the_kubelet() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"},
            "spec": {"securityContext": {}}});
        let c = |sc: Value| json!({"name": "app", "securityContext": sc});
        assert_eq!(verify_run_as_non_root(&pod, &c(json!({})), ""), None);
        let non_root = c(json!({"runAsNonRoot": true}));
        assert_eq!(
            verify_run_as_non_root(&pod, &non_root, "").unwrap(),
            "container has runAsNonRoot and image will run as root (pod: \"p_n(u)\", container: app)"
        );
        assert!(
            verify_run_as_non_root(&pod, &non_root, "0:0")
                .unwrap()
                .contains("will run as root")
        );
        assert_eq!(verify_run_as_non_root(&pod, &non_root, "1000"), None);
        assert!(
            verify_run_as_non_root(&pod, &non_root, "node")
                .unwrap()
                .contains("non-numeric user (node)")
        );
        let with_uid = c(json!({"runAsNonRoot": true, "runAsUser": 1000}));
        assert_eq!(verify_run_as_non_root(&pod, &with_uid, ""), None);
        let uid0 = c(json!({"runAsNonRoot": true, "runAsUser": 0}));
        assert!(
            verify_run_as_non_root(&pod, &uid0, "1000")
                .unwrap()
                .starts_with("container's runAsUser breaks non-root policy")
        );
        // Pod-level settings apply when the container has none.
        let pod_level = json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"},
            "spec": {"securityContext": {"runAsNonRoot": true}}});
        assert!(verify_run_as_non_root(&pod_level, &c(json!({})), "").is_some());
    }

    #[test]
    fn solver_pods_carry_cert_managers_labels_and_port() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let owner = json!({"metadata": {"name": "preview-tls", "uid": "c1"}});
        let p = solver_pod("pv", "a.example.com", &owner);
        assert_eq!(
            p["metadata"]["labels"]["acme.cert-manager.io/http01-solver"],
            "true"
        );
        assert_eq!(
            p["spec"]["containers"][0]["ports"][0]["containerPort"],
            8089
        );
        assert_eq!(p["spec"]["containers"][0]["args"][0], "--listen-port=8089");
    }
}
