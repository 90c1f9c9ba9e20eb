//! A small evaluator of `networking.k8s.io/v1` NetworkPolicy: may a connection from a given
//! source reach a given pod on a port (ingress), and may a given pod reach a given address or pod
//! on a port (egress)? Semantics from kubernetes/website
//! `content/en/docs/concepts/services-networking/network-policies.md` and the API types'
//! documentation (kubernetes/kubernetes `staging/src/k8s.io/api/networking/v1/types.go`):
//!
//! - a pod is isolated for a direction once any policy in its namespace selects it
//!   (`podSelector`) with that direction in `policyTypes`. An absent `policyTypes` means
//!   `Ingress`, plus `Egress` when the policy has egress rules (types.go, `PolicyTypes`). A pod
//!   no policy isolates for a direction allows everything in it;
//! - policies are additive: an isolated pod allows a connection that at least one selecting
//!   policy's rule allows; a connection needs the source's egress *and* the destination's
//!   ingress to allow it;
//! - a rule allows a connection when one of its peers (`from` / `to`) matches (none matches
//!   every peer) and one of its `ports` matches (none matches every port); a port's protocol
//!   defaults to TCP, `endPort` makes a range, a named port resolves against the destination
//!   pod's container ports (so it never matches an address that is no pod);
//! - a peer with only `podSelector` selects pods in the policy's own namespace, only
//!   `namespaceSelector` every pod of the matching namespaces, both together the matching pods
//!   of the matching namespaces; selectors only ever select pods;
//! - `ipBlock` matches an address (IPv4 or IPv6) inside `cidr` and outside every `except`.
//!   Upstream says ipBlocks "should be cluster-external IPs, since Pod IPs are ephemeral and
//!   unpredictable", and that whether a Service's rewrite (DNAT) happens before or after policy
//!   is "not defined": so whether an ipBlock matches a *pod's* IP depends on the network plugin
//!   (Calico matches it, Cilium does not). [`egress`] evaluates both readings and answers
//!   [`Verdict::DependsOnPlugin`] when they differ; a Service ClusterIP is evaluated as the
//!   caller gives it (pass the backing pod for the usual after-DNAT evaluation);
//! - "traffic to and from the node where a Pod is running is always allowed, regardless of the
//!   IP address of the Pod or the node": a destination marked `node_local` is always allowed.
//!
//! Not modelled: SCTP specifics, ports of ICMP, host-network pods as peers (plugin-defined).

use serde_json::{Value, json};
use std::net::IpAddr;

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
    pub ip: Option<IpAddr>,
}

/// Where a connection goes to.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The destination pod's namespace and its labels; empty for an address that is no pod.
    pub namespace: String,
    pub namespace_labels: Value,
    /// The destination pod (labels and container ports); `None` for an address outside the
    /// cluster's pods (a node, a Service ClusterIP before DNAT, the internet).
    pub pod: Option<Value>,
    pub ip: IpAddr,
    /// The address is the source pod's own node (always allowed, see the module docs).
    pub node_local: bool,
}

impl Destination {
    /// An address that is no pod.
    pub fn address(ip: &str) -> Destination {
        Destination {
            namespace: String::new(),
            namespace_labels: json!({}),
            pod: None,
            ip: ip.parse().expect("an IP address"),
            node_local: false,
        }
    }

    /// A pod (its `metadata.namespace` names the namespace, whose labels are given) at `ip`.
    pub fn pod(pod: &Value, namespace_labels: Value, ip: &str) -> Destination {
        Destination {
            namespace: pod
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            namespace_labels,
            pod: Some(pod.clone()),
            ip: ip.parse().expect("an IP address"),
            node_local: false,
        }
    }
}

/// What a network plugin that implements NetworkPolicy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Allowed or denied depending on whether the plugin matches pod IPs against `ipBlock`s.
    DependsOnPlugin,
}

fn labelled(labels: &Value) -> Value {
    json!({"metadata": {"labels": labels}})
}

fn selects(selector: Option<&Value>, labels: &Value) -> bool {
    // An absent selector in a peer means "not constrained by this selector"; callers decide.
    selector.is_none_or(|s| LabelSelector::from_object(s).matches(&labelled(labels)))
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Whether `ip` is inside `cidr` (IPv4 or IPv6; never across families; a malformed CIDR
/// matches nothing).
pub fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((addr, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let width = if net.is_ipv4() { 32 } else { 128 };
    if net.is_ipv4() != ip.is_ipv4() || bits > width {
        return false;
    }
    let shift = width - bits;
    let keep = |v: u128| if shift >= 128 { 0 } else { v >> shift };
    keep(as_u128(ip)) == keep(as_u128(net))
}

fn ip_block_matches(block: &Value, ip: IpAddr) -> bool {
    let cidr = block.get("cidr").and_then(Value::as_str).unwrap_or("");
    let excepted = block
        .get("except")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|e| in_cidr(ip, e));
    in_cidr(ip, cidr) && !excepted
}

/// A peer against the other end of the connection: its namespace (and labels), its pod's
/// labels when it is a pod, and its address. `pod_ip_blocks`: whether ipBlocks match pod IPs.
fn peer_matches(
    peer: &Value,
    policy_ns: &str,
    (namespace, namespace_labels, pod_labels, ip): (&str, &Value, Option<&Value>, Option<IpAddr>),
    pod_ip_blocks: bool,
) -> bool {
    if let Some(block) = peer.get("ipBlock").filter(|b| b.is_object()) {
        if pod_labels.is_some() && !pod_ip_blocks {
            return false;
        }
        return ip.is_some_and(|ip| ip_block_matches(block, ip));
    }
    let pods = peer.get("podSelector").filter(|s| !s.is_null());
    let namespaces = peer.get("namespaceSelector").filter(|s| !s.is_null());
    let Some(pod_labels) = pod_labels else {
        // Selectors only ever select pods.
        return false;
    };
    let ns_ok = match namespaces {
        Some(sel) => selects(Some(sel), namespace_labels),
        None => namespace == policy_ns,
    };
    ns_ok && selects(pods, pod_labels)
}

fn port_matches(p: &Value, port: u16, protocol: &str, target: Option<&Value>) -> bool {
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
            .and_then(|t| t.pointer("/spec/containers"))
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

fn has_type(policy: &Value, direction: &str) -> bool {
    match policy
        .pointer("/spec/policyTypes")
        .and_then(Value::as_array)
    {
        Some(types) => types.iter().any(|t| t == direction),
        // Default: Ingress always, Egress when the policy has egress rules.
        None => {
            direction == "Ingress"
                || policy
                    .pointer("/spec/egress")
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty())
        }
    }
}

/// The policies of `pod`'s namespace that select it for `direction`.
fn selecting<'a>(policies: &[&'a Value], pod: &Value, direction: &str) -> Vec<&'a Value> {
    let labels = pod
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    policies
        .iter()
        .copied()
        .filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
        .filter(|p| has_type(p, direction))
        .filter(|p| {
            let sel = p.pointer("/spec/podSelector").cloned().unwrap_or(json!({}));
            selects(Some(&sel), &labels)
        })
        .collect()
}

fn rule_allows(
    rule: &Value,
    peers_key: &str,
    peer_ok: impl Fn(&Value) -> bool,
    port_ok: impl Fn(&Value) -> bool,
) -> bool {
    let peers = match rule.get(peers_key).and_then(Value::as_array) {
        None => true,
        Some(peers) if peers.is_empty() => true,
        Some(peers) => peers.iter().any(peer_ok),
    };
    let ports = match rule.get("ports").and_then(Value::as_array) {
        None => true,
        Some(ports) if ports.is_empty() => true,
        Some(ports) => ports.iter().any(port_ok),
    };
    peers && ports
}

/// Whether `policies` (all NetworkPolicies of `target`'s namespace) let a connection from `src`
/// reach pod `target` on `port`/`protocol`. ipBlocks match pod sources' IPs here (Calico's
/// reading); see [`egress`] for both readings.
#[must_use]
pub fn ingress_allowed(
    policies: &[&Value],
    target: &Value,
    src: &Source,
    port: u16,
    protocol: &str,
) -> bool {
    let ns = target
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let selecting = selecting(policies, target, "Ingress");
    if selecting.is_empty() {
        return true;
    }
    let other = (
        src.namespace.as_str(),
        &src.namespace_labels,
        src.pod_labels.as_ref(),
        src.ip,
    );
    selecting.iter().any(|p| {
        p.pointer("/spec/ingress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|rule| {
                rule_allows(
                    rule,
                    "from",
                    |peer| peer_matches(peer, ns, other, true),
                    |pp| port_matches(pp, port, protocol, Some(target)),
                )
            })
    })
}

fn egress_allowed(
    policies: &[&Value],
    from: &Value,
    to: &Destination,
    port: u16,
    protocol: &str,
    pod_ip_blocks: bool,
) -> bool {
    if to.node_local {
        return true;
    }
    let ns = from
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let selecting = selecting(policies, from, "Egress");
    if selecting.is_empty() {
        return true;
    }
    let pod_labels = to.pod.as_ref().map(|p| {
        p.pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}))
    });
    let other = (
        to.namespace.as_str(),
        &to.namespace_labels,
        pod_labels.as_ref(),
        Some(to.ip),
    );
    selecting.iter().any(|p| {
        p.pointer("/spec/egress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|rule| {
                rule_allows(
                    rule,
                    "to",
                    |peer| peer_matches(peer, ns, other, pod_ip_blocks),
                    |pp| port_matches(pp, port, protocol, to.pod.as_ref()),
                )
            })
    })
}

/// Whether `policies` (NetworkPolicies of any namespace; those of `from`'s namespace count)
/// let pod `from` open a connection to `to` on `port`/`protocol`: its egress side only. Under
/// both readings of ipBlocks against pod IPs; they differ only for a pod destination.
#[must_use]
pub fn egress(
    policies: &[&Value],
    from: &Value,
    to: &Destination,
    port: u16,
    protocol: &str,
) -> Verdict {
    let matching = egress_allowed(policies, from, to, port, protocol, true);
    let ignoring = egress_allowed(policies, from, to, port, protocol, false);
    match (matching, ignoring) {
        (true, true) => Verdict::Allowed,
        (false, false) => Verdict::Denied,
        _ => Verdict::DependsOnPlugin,
    }
}

/// A whole pod-to-pod connection: `from`'s egress and the destination pod's ingress must both
/// allow it (for an address that is no pod, egress alone decides).
#[must_use]
pub fn connection(
    policies: &[&Value],
    from: &Value,
    from_namespace_labels: &Value,
    from_ip: &str,
    to: &Destination,
    port: u16,
    protocol: &str,
) -> Verdict {
    let out = egress(policies, from, to, port, protocol);
    let Some(target) = &to.pod else {
        return out;
    };
    let src = Source {
        namespace: from
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        namespace_labels: from_namespace_labels.clone(),
        pod_labels: Some(
            from.pointer("/metadata/labels")
                .cloned()
                .unwrap_or_else(|| json!({})),
        ),
        ip: from_ip.parse().ok(),
    };
    if to.node_local || ingress_allowed(policies, target, &src, port, protocol) {
        out
    } else {
        Verdict::Denied
    }
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

    fn build_pod() -> Value {
        json!({"metadata": {"name": "b", "namespace": "builds",
            "labels": {"app.kubernetes.io/managed-by": "slipway", "slipway.dev/kind": "build"}},
            "spec": {"containers": [{"name": "buildkit"}]}})
    }

    fn in_builds(spec: Value) -> Value {
        json!({"metadata": {"name": "x", "namespace": "builds"}, "spec": spec})
    }

    fn dns_pod() -> Value {
        json!({"metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"containers": [{"name": "coredns", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}})
    }

    fn kube_system() -> Value {
        json!({"kubernetes.io/metadata.name": "kube-system"})
    }

    #[test]
    fn cidrs_of_both_families() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("10.244.1.7"), "10.0.0.0/8"));
        assert!(!in_cidr(ip("11.0.0.1"), "10.0.0.0/8"));
        assert!(in_cidr(ip("1.2.3.4"), "0.0.0.0/0"));
        assert!(in_cidr(ip("fd00:ec2::254"), "fc00::/7"));
        assert!(in_cidr(ip("2606:4700::1"), "::/0"));
        assert!(
            !in_cidr(ip("2606:4700::1"), "0.0.0.0/0"),
            "never across families"
        );
        assert!(!in_cidr(ip("10.0.0.1"), "::/0"));
        assert!(in_cidr(ip("169.254.169.254"), "169.254.169.254/32"));
        assert!(!in_cidr(ip("169.254.169.253"), "169.254.169.254/32"));
        assert!(!in_cidr(ip("10.0.0.1"), "10.0.0.0/33"));
        assert!(!in_cidr(ip("10.0.0.1"), "nonsense"));
    }

    #[test]
    fn egress_isolation_follows_policy_types() {
        let pod = build_pod();
        let public = Destination::address("140.82.112.3");
        // No policy, or an ingress-only one (policyTypes absent, no egress rules): not isolated.
        assert_eq!(egress(&[], &pod, &public, 443, "TCP"), Verdict::Allowed);
        let ingress_only = in_builds(json!({"podSelector": {}}));
        assert_eq!(
            egress(&[&ingress_only], &pod, &public, 443, "TCP"),
            Verdict::Allowed
        );
        // Egress rules without policyTypes isolate for egress (the API's default).
        let implied = in_builds(
            json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
        );
        assert_eq!(
            egress(&[&implied], &pod, &public, 443, "TCP"),
            Verdict::Denied
        );
        let deny = in_builds(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        assert_eq!(egress(&[&deny], &pod, &public, 443, "TCP"), Verdict::Denied);
        // Policies of other namespaces, or selecting other pods, do not isolate.
        let elsewhere = json!({"metadata": {"name": "x", "namespace": "other"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]}});
        let others = in_builds(
            json!({"podSelector": {"matchLabels": {"slipway.dev/kind": "launch"}},
            "policyTypes": ["Egress"]}),
        );
        assert_eq!(
            egress(&[&elsewhere, &others], &pod, &public, 443, "TCP"),
            Verdict::Allowed
        );
        // The node a pod runs on is always reachable.
        let node = Destination {
            node_local: true,
            ..Destination::address("192.168.49.2")
        };
        assert_eq!(egress(&[&deny], &pod, &node, 8443, "TCP"), Verdict::Allowed);
    }

    #[test]
    fn egress_rules_add_up_over_ip_blocks_selectors_and_ports() {
        let pod = build_pod();
        let deny = in_builds(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        let dns = in_builds(
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}),
        );
        let internet = in_builds(
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]}},
                   {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7"]}}]}]}),
        );
        let all = [&deny, &dns, &internet];
        let coredns = Destination::pod(&dns_pod(), kube_system(), "10.244.0.3");
        for proto in ["UDP", "TCP"] {
            assert_eq!(egress(&all, &pod, &coredns, 53, proto), Verdict::Allowed);
        }
        // DNS's rule allows port 53 only, and only to the DNS pods.
        assert_eq!(egress(&all, &pod, &coredns, 9153, "TCP"), Verdict::Denied);
        let other_system = Destination::pod(
            &json!({"metadata": {"name": "m", "namespace": "kube-system", "labels": {"k8s-app": "metrics"}}}),
            kube_system(),
            "10.244.0.9",
        );
        assert_eq!(
            egress(&all, &pod, &other_system, 53, "UDP"),
            Verdict::Denied
        );
        for (addr, want) in [
            ("140.82.112.3", Verdict::Allowed),
            ("2606:50c0:8000::153", Verdict::Allowed),
            ("169.254.169.254", Verdict::Denied),
            ("10.96.0.1", Verdict::Denied),
            ("fd00:ec2::254", Verdict::Denied),
            ("169.254.169.253", Verdict::Allowed),
        ] {
            assert_eq!(
                egress(&all, &pod, &Destination::address(addr), 443, "TCP"),
                want,
                "{addr}"
            );
        }
        // A pod outside the excepted ranges is matched by 0.0.0.0/0 only where the plugin
        // applies ipBlocks to pod IPs.
        let pod_on_public_ip = Destination::pod(&dns_pod(), kube_system(), "34.1.2.3");
        assert_eq!(
            egress(&[&deny, &internet], &pod, &pod_on_public_ip, 80, "TCP"),
            Verdict::DependsOnPlugin
        );
        // endPort ranges and named ports (which resolve against the destination pod only).
        let ranged = in_builds(json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}));
        let public = Destination::address("140.82.112.3");
        assert_eq!(
            egress(&[&ranged], &pod, &public, 8080, "TCP"),
            Verdict::Allowed
        );
        assert_eq!(
            egress(&[&ranged], &pod, &public, 8101, "TCP"),
            Verdict::Denied
        );
        let named = in_builds(json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}));
        assert_eq!(
            egress(&[&named], &pod, &coredns, 53, "UDP"),
            Verdict::Allowed
        );
        assert_eq!(egress(&[&named], &pod, &public, 53, "UDP"), Verdict::Denied);
    }

    #[test]
    fn a_connection_needs_both_ends() {
        let pod = build_pod();
        let ns_labels = json!({"kubernetes.io/metadata.name": "builds"});
        let redis = json!({"metadata": {"name": "r", "namespace": "slipway",
            "labels": {"app.kubernetes.io/component": "redis"}}});
        let to = Destination::pod(
            &redis,
            json!({"kubernetes.io/metadata.name": "slipway"}),
            "10.244.0.20",
        );
        assert_eq!(
            connection(&[], &pod, &ns_labels, "10.244.1.7", &to, 6379, "TCP"),
            Verdict::Allowed
        );
        let isolated = json!({"metadata": {"name": "x", "namespace": "slipway"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
        assert_eq!(
            connection(
                &[&isolated],
                &pod,
                &ns_labels,
                "10.244.1.7",
                &to,
                6379,
                "TCP"
            ),
            Verdict::Denied
        );
    }
}
