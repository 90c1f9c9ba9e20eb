//! A small evaluator of `networking.k8s.io/v1` NetworkPolicy *ingress* rules: may a connection
//! from a given source reach a given pod on a port? Semantics from kubernetes/website
//! `content/en/docs/concepts/services-networking/network-policies.md`:
//!
//! - a pod is isolated for ingress once any policy in its namespace selects it (`podSelector`)
//!   with `Ingress` in `policyTypes` (which defaults to `Ingress`, plus `Egress` when the policy
//!   has egress rules); a pod no policy selects accepts everything;
//! - policies are additive: an isolated pod accepts a connection that at least one selecting
//!   policy's rule allows;
//! - a rule allows a connection when one of its `from` peers matches (no `from` matches every
//!   source) and one of its `ports` matches (no `ports` matches every port); a port's protocol
//!   defaults to TCP, `endPort` makes a range, a named port resolves against the target pod's
//!   container ports;
//! - a peer with only `podSelector` selects pods in the policy's own namespace, only
//!   `namespaceSelector` every pod of the matching namespaces, both together the matching pods
//!   of the matching namespaces; `ipBlock` matches the source address (IPv4 here) inside `cidr`
//!   and outside every `except`.
//!
//! Egress rules and the source pod's own egress isolation are not evaluated.

use serde_json::{Value, json};

use crate::selector::LabelSelector;

/// Where a connection comes from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Labels of the source pod's namespace (including `kubernetes.io/metadata.name`).
    pub namespace: String,
    pub namespace_labels: Value,
    /// Labels of the source pod; `None` for a source that is not a pod (a load balancer).
    pub pod_labels: Option<Value>,
    /// The source address, for `ipBlock` peers.
    pub ip: Option<std::net::Ipv4Addr>,
}

fn labelled(labels: &Value) -> Value {
    json!({"metadata": {"labels": labels}})
}

fn selects(selector: Option<&Value>, labels: &Value) -> bool {
    // An absent selector in a peer means "not constrained by this selector"; callers decide.
    selector.is_none_or(|s| LabelSelector::from_object(s).matches(&labelled(labels)))
}

fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, bits) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if bits > 32 {
        return None;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    Some((u32::from(addr) & mask, mask))
}

fn in_cidr(ip: std::net::Ipv4Addr, cidr: &str) -> bool {
    parse_cidr(cidr).is_some_and(|(net, mask)| u32::from(ip) & mask == net)
}

fn peer_matches(peer: &Value, policy_ns: &str, src: &Source) -> bool {
    if let Some(block) = peer.get("ipBlock").filter(|b| b.is_object()) {
        let Some(ip) = src.ip else { return false };
        let cidr = block.get("cidr").and_then(Value::as_str).unwrap_or("");
        let excepted = block
            .get("except")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|e| in_cidr(ip, e));
        return in_cidr(ip, cidr) && !excepted;
    }
    let pods = peer.get("podSelector").filter(|s| !s.is_null());
    let namespaces = peer.get("namespaceSelector").filter(|s| !s.is_null());
    let Some(pod_labels) = &src.pod_labels else {
        // Selectors only ever select pods.
        return false;
    };
    let ns_ok = match namespaces {
        Some(sel) => selects(Some(sel), &src.namespace_labels),
        None => src.namespace == policy_ns,
    };
    ns_ok && selects(pods, pod_labels)
}

fn port_matches(p: &Value, port: u16, protocol: &str, target: &Value) -> bool {
    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    if proto != protocol {
        return false;
    }
    match p.get("port") {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => {
            let start = n.as_u64().unwrap_or(0);
            let end = p.get("endPort").and_then(Value::as_u64).unwrap_or(start);
            (start..=end).contains(&u64::from(port))
        }
        Some(Value::String(name)) => target
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .any(|cp| {
                cp.get("name").and_then(Value::as_str) == Some(name)
                    && cp.get("containerPort").and_then(Value::as_u64) == Some(u64::from(port))
                    && cp.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
            }),
        Some(_) => false,
    }
}

fn has_ingress_type(policy: &Value) -> bool {
    match policy
        .pointer("/spec/policyTypes")
        .and_then(Value::as_array)
    {
        Some(types) => types.iter().any(|t| t == "Ingress"),
        // Default: Ingress always (plus Egress with egress rules).
        None => true,
    }
}

/// Whether `policies` (all NetworkPolicies of `target`'s namespace) let a connection from `src`
/// reach pod `target` on `port`/`protocol`.
#[must_use]
pub fn ingress_allowed(
    policies: &[&Value],
    target: &Value,
    src: &Source,
    port: u16,
    protocol: &str,
) -> bool {
    let target_labels = target
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let ns = target
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let selecting: Vec<&&Value> = policies
        .iter()
        .filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
        .filter(|p| has_ingress_type(p))
        .filter(|p| {
            let sel = p.pointer("/spec/podSelector").cloned().unwrap_or(json!({}));
            selects(Some(&sel), &target_labels)
        })
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|p| {
        p.pointer("/spec/ingress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|rule| {
                let from_ok = match rule.get("from").and_then(Value::as_array) {
                    None => true,
                    Some(peers) if peers.is_empty() => true,
                    Some(peers) => peers.iter().any(|peer| peer_matches(peer, ns, src)),
                };
                let port_ok = match rule.get("ports").and_then(Value::as_array) {
                    None => true,
                    Some(ports) if ports.is_empty() => true,
                    Some(ports) => ports
                        .iter()
                        .any(|p| port_matches(p, port, protocol, target)),
                };
                from_ok && port_ok
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "pv", "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8089}]}]}})
    }

    fn policy(spec: Value) -> Value {
        json!({"metadata": {"name": "x", "namespace": "pv"}, "spec": spec})
    }

    fn from_ns(ns: &str, labels: Value) -> Source {
        Source {
            namespace: ns.into(),
            namespace_labels: json!({"kubernetes.io/metadata.name": ns}),
            pod_labels: Some(labels),
            ip: Some("10.244.1.7".parse().unwrap()),
        }
    }

    #[test]
    fn unselected_pods_accept_everything_and_default_deny_isolates() {
        let target = pod(json!({"acme.cert-manager.io/http01-solver": "true"}));
        let src = from_ns(
            "ingress-nginx",
            json!({"app.kubernetes.io/name": "ingress-nginx"}),
        );
        assert!(ingress_allowed(&[], &target, &src, 8089, "TCP"));
        let deny = policy(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
        assert!(!ingress_allowed(&[&deny], &target, &src, 8089, "TCP"));
        // An egress-only policy does not isolate for ingress.
        let egress_only = policy(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        assert!(ingress_allowed(&[&egress_only], &target, &src, 8089, "TCP"));
    }

    #[test]
    fn rules_are_additive_and_match_peers_and_ports() {
        let target = pod(json!({"acme.cert-manager.io/http01-solver": "true"}));
        let deny = policy(json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
        let allow = policy(
            json!({"podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
            "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {"matchLabels":
                {"kubernetes.io/metadata.name": "ingress-nginx"}}}], "ports": [{"port": 8089, "protocol": "TCP"}]}]}),
        );
        let nginx = from_ns(
            "ingress-nginx",
            json!({"app.kubernetes.io/name": "ingress-nginx"}),
        );
        let other = from_ns("kube-system", json!({"app.kubernetes.io/name": "traefik"}));
        assert!(ingress_allowed(
            &[&deny, &allow],
            &target,
            &nginx,
            8089,
            "TCP"
        ));
        assert!(!ingress_allowed(
            &[&deny, &allow],
            &target,
            &other,
            8089,
            "TCP"
        ));
        assert!(!ingress_allowed(
            &[&deny, &allow],
            &target,
            &nginx,
            8080,
            "TCP"
        ));
        assert!(!ingress_allowed(
            &[&deny, &allow],
            &target,
            &nginx,
            8089,
            "UDP"
        ));
        // The app policy selects other pods: it does not admit the solver.
        let app_only = policy(
            json!({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "app"}},
            "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        );
        assert!(!ingress_allowed(
            &[&deny, &app_only],
            &target,
            &nginx,
            8089,
            "TCP"
        ));
        // Named ports and ranges.
        let named = policy(json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}));
        assert!(ingress_allowed(&[&named], &target, &other, 8089, "TCP"));
        let range = policy(
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}),
        );
        assert!(ingress_allowed(&[&range], &target, &other, 8089, "TCP"));
    }

    #[test]
    fn pod_and_namespace_selectors_and_ip_blocks() {
        let target = pod(json!({"app": "x"}));
        let same_ns_only =
            policy(json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}));
        assert!(!ingress_allowed(
            &[&same_ns_only],
            &target,
            &from_ns("other", json!({})),
            1,
            "TCP"
        ));
        assert!(ingress_allowed(
            &[&same_ns_only],
            &target,
            &from_ns("pv", json!({})),
            1,
            "TCP"
        ));
        let both = policy(json!({"podSelector": {}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "controller"}}}]}]}));
        let controller = from_ns(
            "ingress-nginx",
            json!({"app.kubernetes.io/component": "controller"}),
        );
        let webhook = from_ns(
            "ingress-nginx",
            json!({"app.kubernetes.io/component": "admission-webhook"}),
        );
        assert!(ingress_allowed(&[&both], &target, &controller, 1, "TCP"));
        assert!(!ingress_allowed(&[&both], &target, &webhook, 1, "TCP"));
        let cidr = policy(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock":
            {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}]}]}));
        let lb = Source {
            namespace: String::new(),
            namespace_labels: json!({}),
            pod_labels: None,
            ip: Some("10.1.2.3".parse().unwrap()),
        };
        assert!(ingress_allowed(&[&cidr], &target, &lb, 1, "TCP"));
        assert!(!ingress_allowed(&[&cidr], &target, &controller, 1, "TCP"));
        // A load balancer is no pod: selectors never match it.
        assert!(!ingress_allowed(&[&both], &target, &lb, 1, "TCP"));
    }
}
