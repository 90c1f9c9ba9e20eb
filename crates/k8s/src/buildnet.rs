//! The build namespace's NetworkPolicy: what a build pod, which runs the `RUN` steps of a
//! Dockerfile a pull request may have written, can reach (docs/network-policy.md).
//!
//! NetworkPolicies only allow (kubernetes/website
//! `content/en/docs/concepts/services-networking/network-policies.md`): once a policy selects a
//! pod for a direction, only what some rule allows gets through. So "the internet but not the
//! cluster" is written as an allow of `0.0.0.0/0` and `::/0` with the cluster's ranges and the
//! cloud metadata addresses in `except`, and what must stay reachable inside those ranges (DNS,
//! the registry) gets rules of its own, which policies add up. The policy:
//!
//! - selects the build pods (Slipway's `managed-by` and `kind=build` labels, which the build
//!   worker puts on every build Job's pods), for `Ingress` and `Egress`, with no ingress rule:
//!   nothing may connect to a build pod;
//! - allows DNS (UDP and TCP 53) to the cluster DNS pods and to the operator's DNS CIDRs;
//! - allows the registry: the pods of its namespace (optionally only those with given labels)
//!   and its CIDRs, on every port;
//! - allows every other address except the denied CIDRs (by default the private, shared and
//!   link-local ranges where pods, Services, nodes and the API server live) and, always, the
//!   metadata addresses `169.254.169.254/32` and `fd00:ec2::254/128`.
//!
//! Upstream's API validation (kubernetes/kubernetes `pkg/apis/networking/validation`) wants
//! every `except` strictly inside its `cidr`: a denied `/0` therefore drops that family's
//! ipBlock altogether instead of being written as an except.

use crate::preview::{dns_egress_rule, ip_peers, namespace_peer};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The policy's name, the same whether the chart installs it or the worker re-applies it.
pub const BUILD_NETWORK_POLICY: &str = "slipway-build-network";
/// Cloud metadata endpoints: denied whatever the operator's CIDRs say (AWS, GCP and Azure
/// answer on `169.254.169.254`; AWS's IPv6 endpoint is `fd00:ec2::254`).
pub const METADATA_CIDRS: [&str; 2] = ["169.254.169.254/32", "fd00:ec2::254/128"];
/// The default denied ranges: RFC 1918 private, RFC 6598 shared (100.64/10, used by some
/// managed clusters for pods), IPv4 link-local, IPv6 unique-local and link-local.
pub const DEFAULT_DENY_CIDRS: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,\
                                      169.254.0.0/16,fc00::/7,fe80::/10";

/// An IPv4 or IPv6 CIDR in canonical form (no bits set after the prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn prefix_len(&self) -> u8 {
        self.bits
    }

    fn as_u128(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn width(&self) -> u8 {
        if self.is_ipv4() { 32 } else { 128 }
    }

    fn mask(bits: u8, width: u8) -> u128 {
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if bits == 0 {
            0
        } else {
            all & (all << (width - bits))
        }
    }

    /// Whether `ip` is inside this block (never across families).
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
            && Self::as_u128(ip) & Self::mask(self.bits, self.width()) == Self::as_u128(self.addr)
    }

    /// Whether `other` lies wholly inside this block.
    pub fn contains(&self, other: &Cidr) -> bool {
        other.bits >= self.bits && self.contains_ip(other.addr)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8 or fc00::/7)");
        let (addr, bits) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        if bits > width {
            return Err(bad());
        }
        let cidr = Cidr { addr, bits };
        if Self::as_u128(addr) & !Self::mask(bits, width) & Self::mask(width, width) != 0 {
            return Err(format!(
                "{s:?} has bits set after the /{bits} prefix (write its network address)"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// A comma-separated list of CIDRs, as a setting holds it (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(CidrList)
    }
}

/// Everything that decides the build namespace's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildNetworkParams {
    pub namespace: String,
    /// Ranges the build pods may not reach (besides the metadata addresses, always denied):
    /// the cluster's pod, Service and node ranges.
    pub deny_cidrs: Vec<Cidr>,
    /// DNS servers besides the cluster DNS pods (port 53 only).
    pub dns_egress_cidrs: Vec<Cidr>,
    /// The registry's namespace, when it runs in the cluster (every port to its pods).
    pub registry_namespace: Option<String>,
    /// Only the registry's pods in that namespace (empty: every pod of the namespace).
    pub registry_pod_labels: BTreeMap<String, String>,
    /// The registry's addresses (every port), e.g. a registry on a private network.
    pub registry_cidrs: Vec<Cidr>,
}

/// The labels that select build pods: those the build worker puts on every build Job's pod
/// template (`slipway_core::naming::standard_labels` with kind `build`).
pub fn build_pod_selector() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            crate::labels::MANAGED_BY.to_owned(),
            crate::labels::MANAGED_BY_VALUE.to_owned(),
        ),
        (
            crate::labels::KIND.to_owned(),
            slipway_core::JobKind::Build.as_str().to_owned(),
        ),
    ])
}

fn strings(cidrs: &[Cidr]) -> Vec<String> {
    cidrs.iter().map(ToString::to_string).collect()
}

/// The `0.0.0.0/0` or `::/0` block with this family's denied ranges excepted; `None` when a
/// `/0` of the family is denied (nothing of it is allowed).
fn internet_block(p: &BuildNetworkParams, ipv4: bool) -> Option<NetworkPolicyPeer> {
    let mut except: Vec<Cidr> = Vec::new();
    for c in p.deny_cidrs.iter().filter(|c| c.is_ipv4() == ipv4) {
        if c.prefix_len() == 0 {
            return None;
        }
        if !except.contains(c) {
            except.push(*c);
        }
    }
    for m in METADATA_CIDRS {
        let m: Cidr = m.parse().expect("a constant CIDR");
        // Listed even where a denied range covers it (overlapping excepts are valid): the
        // chart writes the same list without computing containment.
        if m.is_ipv4() == ipv4 && !except.contains(&m) {
            except.push(m);
        }
    }
    Some(NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: if ipv4 { "0.0.0.0/0" } else { "::/0" }.to_owned(),
            except: Some(strings(&except)),
        }),
        ..Default::default()
    })
}

/// The build namespace's NetworkPolicy. Pure.
pub fn build_network_policy(p: &BuildNetworkParams) -> NetworkPolicy {
    let mut egress = vec![dns_egress_rule(&strings(&p.dns_egress_cidrs))];
    let registry: Vec<NetworkPolicyPeer> = p
        .registry_namespace
        .iter()
        .map(|ns| {
            namespace_peer(
                ns,
                (!p.registry_pod_labels.is_empty()).then(|| p.registry_pod_labels.clone()),
            )
        })
        .chain(ip_peers(&strings(&p.registry_cidrs)))
        .collect();
    if !registry.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(registry),
            ports: None,
        });
    }
    let internet: Vec<NetworkPolicyPeer> = [true, false]
        .into_iter()
        .filter_map(|v4| internet_block(p, v4))
        .collect();
    if !internet.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(internet),
            ports: None,
        });
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(BUILD_NETWORK_POLICY.to_owned()),
            namespace: Some(p.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_owned(),
                "slipway".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(build_pod_selector()),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: None,
            egress: Some(egress),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn params() -> BuildNetworkParams {
        BuildNetworkParams {
            namespace: "slipway-builds".into(),
            deny_cidrs: DEFAULT_DENY_CIDRS.parse::<CidrList>().unwrap().0,
            dns_egress_cidrs: vec![],
            registry_namespace: Some("kube-system".into()),
            registry_pod_labels: BTreeMap::from([(
                "kubernetes.io/minikube-addons".into(),
                "registry".into(),
            )]),
            registry_cidrs: vec![],
        }
    }

    #[test]
    fn cidrs_parse_canonical_blocks_of_both_families() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains_ip("10.244.1.7".parse().unwrap()));
        assert!(!c.contains_ip("11.0.0.1".parse().unwrap()));
        assert!(
            !c.contains_ip("::a00:1".parse().unwrap()),
            "never across families"
        );
        let v6: Cidr = "fc00::/7".parse().unwrap();
        assert!(v6.contains_ip("fd00:ec2::254".parse().unwrap()));
        assert!(v6.contains(&"fd00:ec2::254/128".parse().unwrap()));
        assert!(!v6.contains(&"::/0".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains_ip("1.2.3.4".parse().unwrap())
        );
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0",
            "10.0.0.0/33",
            "fc00::/129",
            "x/8",
            "fc00::1/7",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            " 10.0.0.0/8 , ,fc00::/7"
                .parse::<CidrList>()
                .unwrap()
                .0
                .len(),
            2
        );
        assert_eq!("".parse::<CidrList>().unwrap(), CidrList::default());
        assert_eq!(
            "fd00:0ec2:0::254/128".parse::<Cidr>().unwrap().to_string(),
            "fd00:ec2::254/128"
        );
    }

    #[test]
    fn the_policy_is_pinned() {
        let v = serde_json::to_value(build_network_policy(&params())).unwrap();
        let expected = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "slipway-build-network", "namespace": "slipway-builds",
                "labels": {"app.kubernetes.io/part-of": "slipway"}},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "slipway",
                    "slipway.dev/kind": "build"}},
                "policyTypes": ["Ingress", "Egress"],
                "egress": [
                    {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                             "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                             "podSelector": {"matchLabels": {"kubernetes.io/minikube-addons": "registry"}}}]},
                    {"to": [
                        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12",
                            "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "169.254.169.254/32"]}},
                        {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10", "fd00:ec2::254/128"]}}]}
                ]
            }
        });
        assert_eq!(v, expected, "{}", serde_json::to_string_pretty(&v).unwrap());
    }

    #[test]
    fn metadata_addresses_are_denied_whatever_the_operator_denies() {
        let mut p = params();
        p.deny_cidrs = "10.96.0.0/12".parse::<CidrList>().unwrap().0;
        let v = serde_json::to_value(build_network_policy(&p)).unwrap();
        let internet = &v["spec"]["egress"][2]["to"];
        assert_eq!(
            internet[0]["ipBlock"]["except"],
            json!(["10.96.0.0/12", "169.254.169.254/32"])
        );
        assert_eq!(
            internet[1]["ipBlock"],
            json!({"cidr": "::/0", "except": ["fd00:ec2::254/128"]})
        );
        // A denied /0 leaves its family out (an except must lie strictly inside its cidr).
        p.deny_cidrs = "::/0,10.0.0.0/8,10.0.0.0/8,169.254.169.254/32"
            .parse::<CidrList>()
            .unwrap()
            .0;
        let v = serde_json::to_value(build_network_policy(&p)).unwrap();
        assert_eq!(
            v["spec"]["egress"][2]["to"],
            json!([{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]}}])
        );
    }

    #[test]
    fn registry_and_dns_cidrs_get_their_own_rules() {
        let mut p = params();
        p.registry_namespace = None;
        p.registry_cidrs = "10.1.2.3/32".parse::<CidrList>().unwrap().0;
        p.dns_egress_cidrs = "169.254.20.10/32".parse::<CidrList>().unwrap().0;
        let v = serde_json::to_value(build_network_policy(&p)).unwrap();
        assert_eq!(
            v["spec"]["egress"][0]["to"][1],
            json!({"ipBlock": {"cidr": "169.254.20.10/32"}})
        );
        assert_eq!(
            v["spec"]["egress"][1],
            json!({"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}]})
        );
        // A registry namespace without labels admits every pod of it.
        p.registry_namespace = Some("registry".into());
        p.registry_pod_labels.clear();
        p.registry_cidrs.clear();
        let v = serde_json::to_value(build_network_policy(&p)).unwrap();
        assert_eq!(
            v["spec"]["egress"][1],
            json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "registry"}}}]})
        );
        // No registry at all: DNS and the internet only.
        p.registry_namespace = None;
        let v = serde_json::to_value(build_network_policy(&p)).unwrap();
        assert_eq!(v["spec"]["egress"].as_array().unwrap().len(), 2);
        assert!(v["spec"].get("ingress").is_none(), "no ingress rule at all");
    }

    #[test]
    fn it_selects_the_pods_of_build_jobs() {
        let labels = slipway_core::naming::standard_labels(
            Some(uuid::Uuid::nil()),
            Some(slipway_core::JobKind::Build),
            Some("org/app#1"),
        );
        for (k, v) in build_pod_selector() {
            assert_eq!(labels.get(&k), Some(&v), "{k}");
        }
        let launch =
            slipway_core::naming::standard_labels(None, Some(slipway_core::JobKind::Launch), None);
        assert!(
            !build_pod_selector()
                .iter()
                .all(|(k, v)| launch.get(k) == Some(v))
        );
    }
}
