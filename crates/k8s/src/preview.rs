//! The objects of one preview environment: its own namespace with a quota, default limits and
//! network policies, and the app itself (Deployment, Service, Ingress). Workers apply them with
//! server-side apply (field manager `slipway`), so a re-launch with a new image is a rollout in
//! the same namespace and a retry simply re-applies.
//!
//! The environment (namespace, quota, limits, policies, Ingress) and the pod hardening are
//! shared with a compose preview's objects ([`crate::compose`]).
//!
//! Network policy semantics (see docs/network-policy.md): all ingress and egress of the
//! preview's pods is denied, except (1) ingress to the app port from pods in the ingress
//! controller's namespace and from the operator's ingress CIDRs (load balancers that target pod
//! IPs), (2) DNS egress (UDP and TCP 53) to the cluster DNS pods in `kube-system` and to the
//! operator's DNS CIDRs (NodeLocal DNSCache, a metadata-server resolver), (3) egress to the
//! operator's optional allow-list of CIDRs, and (4) with a cert-manager issuer, ingress from the
//! same sources to cert-manager's ACME HTTP-01 solver pods on TCP 8089, without which no
//! certificate is ever issued.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, LimitRange, LimitRangeItem, LimitRangeSpec, LocalObjectReference, Namespace,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceQuota, ResourceQuotaSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Name of the Deployment, Service and Ingress inside a preview namespace: one app a preview.
pub const APP: &str = "app";
/// Name of the container that runs the preview's image.
pub const APP_CONTAINER: &str = "app";
/// The annotation that keeps the preview key verbatim (label values are sanitized).
pub use slipway_core::naming::ANNOTATION_PREVIEW_KEY as PREVIEW_KEY_ANNOTATION;
/// The annotation recording the commit a preview runs.
pub const COMMIT_ANNOTATION: &str = "slipway.dev/commit";
const SELECTOR_LABEL: &str = "app.kubernetes.io/name";
/// The label cert-manager puts on its ACME HTTP-01 solver pods (cert-manager
/// `pkg/apis/acme/v1/types.go` `SolverIdentificationLabelKey`, value `"true"`).
pub const ACME_SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";
/// The port the solver listens on (cert-manager `pkg/issuer/acme/http/http.go`
/// `acmeSolverListenPort`).
pub const ACME_SOLVER_PORT: i32 = 8089;

/// CPU and memory as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMemory {
    pub cpu: String,
    pub memory: String,
}

/// Per-namespace ceilings (ResourceQuota) and per-container defaults (LimitRange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaParams {
    /// Total requests and limits allowed in the namespace.
    pub total: CpuMemory,
    pub max_pods: u32,
    /// Storage all PersistentVolumeClaims of the namespace may request together, and how many
    /// claims it may hold (a compose file or a chart from a pull request chooses its volumes).
    pub storage: String,
    pub max_claims: u32,
    /// Defaults for containers that state no requests or limits.
    pub default_request: CpuMemory,
    pub default_limit: CpuMemory,
}

/// TLS for the preview host: a secret holding the certificate, optionally issued by
/// cert-manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub secret_name: String,
    pub cluster_issuer: Option<String>,
}

/// Everything that decides a preview's objects (validated beforehand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewParams {
    /// The preview key verbatim, e.g. `org/app#42`.
    pub key: String,
    pub namespace: String,
    /// Full host name, e.g. `pr-42-app.192.168.49.2.nip.io`.
    pub host: String,
    /// Labels on every object (managed-by, kind, job id, preview).
    pub labels: BTreeMap<String, String>,
    /// Stable label value identifying the preview; selects its pods.
    pub preview_label: String,
    pub image: String,
    pub commit: Option<String>,
    pub port: u16,
    pub env: BTreeMap<String, String>,
    /// Env var name -> (secret name, key), read from Secrets in the preview namespace.
    pub secret_env: BTreeMap<String, (String, String)>,
    pub replicas: i32,
    /// Container requests; limits equal requests for memory so a preview cannot starve a node.
    pub resources: CpuMemory,
    pub health_path: String,
    pub run_as_non_root: bool,
    /// The container's root filesystem is read-only; a writable emptyDir of `tmp_size_limit`
    /// on the node's disk is mounted at `/tmp` (see [`TMP_VOLUME`]).
    pub read_only_root_filesystem: bool,
    /// `sizeLimit` of the `/tmp` emptyDir (a quantity): past it the kubelet evicts the pod.
    pub tmp_size_limit: String,
    pub progress_deadline_seconds: i32,
    pub ingress_class: Option<String>,
    pub tls: Option<TlsParams>,
    pub image_pull_secret: Option<String>,
    /// Namespace of the ingress controller, the only source of ingress traffic.
    pub ingress_controller_namespace: String,
    /// Extra egress destinations (CIDRs) the preview may reach.
    pub allowed_egress_cidrs: Vec<String>,
    /// DNS servers outside the cluster DNS pods (CIDRs) the preview may query on port 53:
    /// NodeLocal DNSCache (`169.254.20.10/32`), GKE Cloud DNS (`169.254.169.254/32`).
    pub dns_egress_cidrs: Vec<String>,
    /// Sources (CIDRs) besides the ingress controller's namespace that may reach the app port:
    /// load balancers that send to pod IPs directly.
    pub ingress_cidrs: Vec<String>,
    /// Pod Security Standard enforced on the namespace (`baseline` by default).
    pub pod_security_level: String,
    pub quota: QuotaParams,
}

/// The objects of one preview, in the order they should be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewObjects {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub limits: LimitRange,
    pub network_policies: Vec<NetworkPolicy>,
    pub deployment: Deployment,
    pub service: Service,
    pub ingress: Ingress,
}

/// A preview environment's own objects as JSON, in apply order (namespace first); every kind
/// of preview starts with these.
pub(crate) fn environment_values(
    namespace: &Namespace,
    quota: &ResourceQuota,
    limits: &LimitRange,
    policies: &[NetworkPolicy],
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    push_value(&mut out, namespace);
    push_value(&mut out, quota);
    push_value(&mut out, limits);
    for p in policies {
        push_value(&mut out, p);
    }
    out
}

/// `o` as JSON onto `out` (typed objects always serialize; one that did not is left out).
pub(crate) fn push_value<T: serde::Serialize>(out: &mut Vec<serde_json::Value>, o: &T) {
    if let Ok(v) = serde_json::to_value(o) {
        out.push(v);
    }
}

impl PreviewObjects {
    /// Every object as JSON, in apply order (namespace first).
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut out = environment_values(
            &self.namespace,
            &self.quota,
            &self.limits,
            &self.network_policies,
        );
        push_value(&mut out, &self.deployment);
        push_value(&mut out, &self.service);
        push_value(&mut out, &self.ingress);
        out
    }
}

pub(crate) fn q(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

pub(crate) fn cpu_mem(prefix: &str, v: &CpuMemory) -> [(String, Quantity); 2] {
    [
        (format!("{prefix}cpu"), q(&v.cpu)),
        (format!("{prefix}memory"), q(&v.memory)),
    ]
}

impl PreviewParams {
    pub(crate) fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            ..Default::default()
        }
    }

    pub(crate) fn selector(&self) -> BTreeMap<String, String> {
        self.selector_of(APP)
    }

    /// The labels that select the pods of app `name` (`app` for the single-container preview,
    /// a compose service's name).
    pub(crate) fn selector_of(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (SELECTOR_LABEL.to_owned(), name.to_owned()),
            (
                crate::labels::PREVIEW.to_owned(),
                self.preview_label.clone(),
            ),
        ])
    }

    pub(crate) fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([(PREVIEW_KEY_ANNOTATION.to_owned(), self.key.clone())]);
        if let Some(c) = &self.commit {
            a.insert(COMMIT_ANNOTATION.to_owned(), c.clone());
        }
        a
    }
}

/// Build every object of a preview. Pure.
pub fn preview_objects(p: &PreviewParams) -> PreviewObjects {
    PreviewObjects {
        namespace: namespace(p),
        quota: quota(p),
        limits: limit_range(p),
        network_policies: network_policies(p),
        deployment: deployment(p),
        service: service(p),
        ingress: ingress(p),
    }
}

pub(crate) fn namespace(p: &PreviewParams) -> Namespace {
    let mut labels = p.labels.clone();
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            p.pod_security_level.clone(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(p.namespace.clone()),
            labels: Some(labels),
            annotations: Some(p.annotations()),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub(crate) fn quota(p: &PreviewParams) -> ResourceQuota {
    let mut hard: BTreeMap<String, Quantity> = BTreeMap::new();
    hard.extend(cpu_mem("requests.", &p.quota.total));
    hard.extend(cpu_mem("limits.", &p.quota.total));
    hard.insert("pods".into(), q(&p.quota.max_pods.to_string()));
    // Storage resource quota (kubernetes/website `concepts/policy/resource-quotas.md`): the sum
    // of the claims' storage requests, and the number of claims.
    hard.insert("requests.storage".into(), q(&p.quota.storage));
    hard.insert(
        "persistentvolumeclaims".into(),
        q(&p.quota.max_claims.to_string()),
    );
    ResourceQuota {
        metadata: p.meta(crate::usage::QUOTA_NAME),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) fn limit_range(p: &PreviewParams) -> LimitRange {
    LimitRange {
        metadata: p.meta("slipway-limits"),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(cpu_mem("", &p.quota.default_limit).into_iter().collect()),
                default_request: Some(cpu_mem("", &p.quota.default_request).into_iter().collect()),
                ..Default::default()
            }],
        }),
    }
}

fn policy(p: &PreviewParams, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: p.meta(name),
        spec: Some(spec),
    }
}

pub(crate) fn namespace_peer(
    namespace: &str,
    pods: Option<BTreeMap<String, String>>,
) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_owned(),
            )])),
            ..Default::default()
        }),
        pod_selector: pods.map(|m| LabelSelector {
            match_labels: Some(m),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn ip_peers(cidrs: &[String]) -> impl Iterator<Item = NetworkPolicyPeer> + '_ {
    cidrs.iter().map(|cidr| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.clone(),
            except: None,
        }),
        ..Default::default()
    })
}

pub(crate) fn tcp_port(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

/// Egress to DNS: UDP and TCP 53 to the cluster DNS pods (`k8s-app=kube-dns` in `kube-system`;
/// CoreDNS keeps the label) and to the operator's DNS CIDRs.
pub(crate) fn dns_egress_rule(dns_cidrs: &[String]) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(
            std::iter::once(namespace_peer(
                "kube-system",
                Some(BTreeMap::from([(
                    "k8s-app".to_owned(),
                    "kube-dns".to_owned(),
                )])),
            ))
            .chain(ip_peers(dns_cidrs))
            .collect(),
        ),
        ports: Some(
            ["UDP", "TCP"]
                .map(|proto| NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some(proto.into()),
                    end_port: None,
                })
                .into(),
        ),
    }
}

/// Everything allowed to open connections to a preview: the ingress controller's pods, then
/// the operator's ingress CIDRs.
fn ingress_sources(p: &PreviewParams) -> Vec<NetworkPolicyPeer> {
    std::iter::once(namespace_peer(&p.ingress_controller_namespace, None))
        .chain(ip_peers(&p.ingress_cidrs))
        .collect()
}

fn network_policies(p: &PreviewParams) -> Vec<NetworkPolicy> {
    network_policies_for(p, p.selector(), IntOrString::Int(i32::from(p.port)), false)
}

/// The preview's policies, the ingress controller admitted to the pods `app` selects on
/// `port` (a number, or a container port's name: NetworkPolicy ports may be named).
/// `within_preview`: the preview's pods may also reach one another on any port (a compose
/// app's services, a Helm chart's workloads talk to each other); the single-container preview
/// has no such rule.
pub(crate) fn network_policies_for(
    p: &PreviewParams,
    app: BTreeMap<String, String>,
    port: IntOrString,
    within_preview: bool,
) -> Vec<NetworkPolicy> {
    let all_pods = LabelSelector::default();
    let mut out = vec![
        policy(
            p,
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..Default::default()
            },
        ),
        policy(
            p,
            "allow-ingress-controller",
            NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(app),
                    ..Default::default()
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(ingress_sources(p)),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(port),
                        protocol: Some("TCP".into()),
                        end_port: None,
                    }]),
                }]),
                ..Default::default()
            },
        ),
        policy(
            p,
            "allow-dns-egress",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![dns_egress_rule(&p.dns_egress_cidrs)]),
                ..Default::default()
            },
        ),
    ];
    if within_preview {
        // Only the preview's own pods (its label), so the ACME solver stays reachable from the
        // ingress controller alone.
        let own = || LabelSelector {
            match_labels: Some(BTreeMap::from([(
                crate::labels::PREVIEW.to_owned(),
                p.preview_label.clone(),
            )])),
            ..Default::default()
        };
        let peer = || NetworkPolicyPeer {
            pod_selector: Some(own()),
            ..Default::default()
        };
        out.push(policy(
            p,
            "allow-within-preview",
            NetworkPolicySpec {
                pod_selector: Some(own()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![peer()]),
                    ports: None,
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![peer()]),
                    ports: None,
                }]),
            },
        ));
    }
    // cert-manager's HTTP-01 solver pod runs in this namespace (the Challenge's); the ingress
    // controller must reach it or the ACME server's validation (and cert-manager's own
    // self-check) never succeeds.
    if p.tls.as_ref().is_some_and(|t| t.cluster_issuer.is_some()) {
        out.push(policy(
            p,
            "allow-acme-http01-solver",
            NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        ACME_SOLVER_LABEL.to_owned(),
                        "true".to_owned(),
                    )])),
                    ..Default::default()
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(ingress_sources(p)),
                    ports: Some(vec![tcp_port(ACME_SOLVER_PORT)]),
                }]),
                ..Default::default()
            },
        ));
    }
    if !p.allowed_egress_cidrs.is_empty() {
        out.push(policy(
            p,
            "allow-egress",
            NetworkPolicySpec {
                pod_selector: Some(all_pods),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(ip_peers(&p.allowed_egress_cidrs).collect()),
                    ports: None,
                }]),
                ..Default::default()
            },
        ));
    }
    out
}

/// The writable `/tmp` of a preview whose root filesystem is read-only: an emptyDir on the
/// node's disk (not `Memory`: tmpfs would count against the container's memory limit), which
/// the kubelet counts as the pod's local ephemeral storage and evicts the pod for exceeding
/// its `sizeLimit` (kubernetes/website `concepts/configuration/manage-resources-containers.md`,
/// "Local ephemeral storage").
pub const TMP_VOLUME: &str = "tmp";

/// Plain variables, then variables read from Secrets, as the container's `env`.
pub(crate) fn env_vars(
    env: &BTreeMap<String, String>,
    secret_env: &BTreeMap<String, (String, String)>,
) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    out.extend(secret_env.iter().map(|(k, (secret, key))| EnvVar {
        name: k.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.clone(),
                key: key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }));
    out
}

/// A preview container's security context: no privilege escalation, every capability
/// dropped, `runAsNonRoot` per the operator, and the user and root filesystem asked for.
pub(crate) fn container_security(
    p: &PreviewParams,
    read_only_root: bool,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: p.run_as_non_root.then_some(true),
        run_as_user,
        run_as_group,
        read_only_root_filesystem: read_only_root.then_some(true),
        ..Default::default()
    }
}

/// A preview pod: no service account token, no Service environment variables, the
/// RuntimeDefault seccomp profile, the operator's pull secret.
pub(crate) fn pod_spec(
    p: &PreviewParams,
    containers: Vec<Container>,
    volumes: Option<Vec<Volume>>,
    security: PodSecurityContext,
) -> PodSpec {
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..security
        }),
        image_pull_secrets: p
            .image_pull_secret
            .as_ref()
            .map(|s| vec![LocalObjectReference { name: s.clone() }]),
        containers,
        volumes,
        ..Default::default()
    }
}

/// The labels of app `name`'s pods: its selector and the managed-by mark.
pub(crate) fn pod_labels(p: &PreviewParams, name: &str) -> BTreeMap<String, String> {
    let mut labels = p.selector_of(name);
    labels.insert(
        crate::labels::MANAGED_BY.into(),
        crate::labels::MANAGED_BY_VALUE.into(),
    );
    labels
}

fn deployment(p: &PreviewParams) -> Deployment {
    let env = env_vars(&p.env, &p.secret_env);
    let pod_labels = pod_labels(p, APP);
    let container = Container {
        name: APP_CONTAINER.into(),
        image: Some(p.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(p.port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: (!env.is_empty()).then_some(env),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(p.health_path.clone()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(cpu_mem("", &p.resources).into_iter().collect()),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                q(&p.resources.memory),
            )])),
            ..Default::default()
        }),
        security_context: Some(container_security(
            p,
            p.read_only_root_filesystem,
            None,
            None,
        )),
        volume_mounts: p.read_only_root_filesystem.then(|| {
            vec![VolumeMount {
                name: TMP_VOLUME.into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    // Only with a read-only root: an unchanged pod template for everyone else (no rollout).
    let volumes = p.read_only_root_filesystem.then(|| {
        vec![Volume {
            name: TMP_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(q(&p.tmp_size_limit)),
            }),
            ..Default::default()
        }]
    });
    Deployment {
        metadata: ObjectMeta {
            annotations: Some(p.annotations()),
            ..p.meta(APP)
        },
        spec: Some(DeploymentSpec {
            replicas: Some(p.replicas),
            revision_history_limit: Some(3),
            progress_deadline_seconds: Some(p.progress_deadline_seconds),
            selector: LabelSelector {
                match_labels: Some(p.selector()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(p.annotations()),
                    ..Default::default()
                }),
                spec: Some(pod_spec(
                    p,
                    vec![container],
                    volumes,
                    PodSecurityContext::default(),
                )),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn service(p: &PreviewParams) -> Service {
    Service {
        metadata: p.meta(APP),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(p.selector()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn ingress(p: &PreviewParams) -> Ingress {
    ingress_to(
        p,
        APP,
        ServiceBackendPort {
            name: Some("http".into()),
            number: None,
        },
    )
}

/// The Ingress `name` routing the preview host to Service `name`'s `port`.
pub(crate) fn ingress_to(p: &PreviewParams, name: &str, port: ServiceBackendPort) -> Ingress {
    let mut meta = p.meta(name);
    if let Some(issuer) = p.tls.as_ref().and_then(|t| t.cluster_issuer.as_ref()) {
        meta.annotations = Some(BTreeMap::from([(
            "cert-manager.io/cluster-issuer".to_owned(),
            issuer.clone(),
        )]));
    }
    Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: p.ingress_class.clone(),
            rules: Some(vec![IngressRule {
                host: Some(p.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: name.into(),
                                port: Some(port),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            tls: p.tls.as_ref().map(|t| {
                vec![IngressTLS {
                    hosts: Some(vec![p.host.clone()]),
                    secret_name: Some(t.secret_name.clone()),
                }]
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Where the URL of a preview whose workloads are not Slipway's `app` leads (a Helm chart's
/// Service): the Service and its port, the pods behind it and the port they listen on (the
/// Service's `targetPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub service: String,
    pub port: u16,
    pub pods: BTreeMap<String, String>,
    pub target_port: IntOrString,
}

/// The objects around a preview whose workloads come from elsewhere (a Helm chart), in apply
/// order: what every preview has but its Deployment and Service, with the ingress controller
/// admitted to the backend's pods, the preview's pods to one another, and the Ingress (named
/// after the Service, as a compose preview's) sending to its Service.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameObjects {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub limits: LimitRange,
    pub network_policies: Vec<NetworkPolicy>,
    pub ingress: Ingress,
}

impl FrameObjects {
    /// Every object as JSON, in apply order (namespace first, Ingress last).
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut out = environment_values(
            &self.namespace,
            &self.quota,
            &self.limits,
            &self.network_policies,
        );
        push_value(&mut out, &self.ingress);
        out
    }
}

/// Build the objects around a preview whose URL leads to `b`. Pure.
pub fn frame_objects(p: &PreviewParams, b: &Backend) -> FrameObjects {
    FrameObjects {
        namespace: namespace(p),
        quota: quota(p),
        limits: limit_range(p),
        network_policies: network_policies_for(p, b.pods.clone(), b.target_port.clone(), true),
        ingress: ingress_to(
            p,
            &b.service,
            ServiceBackendPort {
                name: None,
                number: Some(i32::from(b.port)),
            },
        ),
    }
}

/// What the preview pod spec lacks to be admitted at Pod Security `level` ("privileged",
/// "baseline", "restricted"), given whether containers run with `runAsNonRoot`. The spec always
/// meets baseline and, but for `runAsNonRoot`, restricted: no privilege escalation, every
/// capability dropped, the RuntimeDefault seccomp profile, no host namespaces, ports or paths
/// (kubernetes/kubernetes `staging/src/k8s.io/pod-security-admission/policy`).
pub fn pod_security_gaps(level: &str, run_as_non_root: bool) -> Vec<&'static str> {
    match level {
        "restricted" if !run_as_non_root => vec!["runAsNonRoot"],
        _ => Vec::new(),
    }
}

/// The URL a preview is reached at.
pub fn preview_url(host: &str, tls: bool) -> String {
    format!("{}://{host}", if tls { "https" } else { "http" })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn params() -> PreviewParams {
        PreviewParams {
            key: "org/app#42".into(),
            namespace: "slipway-pv-org-app-42-1a2b3c4d".into(),
            host: "pr-42-app.192.168.49.2.nip.io".into(),
            labels: BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), "slipway".into()),
                ("slipway.dev/preview".into(), "org-app-42".into()),
            ]),
            preview_label: "org-app-42".into(),
            image: "localhost:5000/org/app:0123456".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            port: 8080,
            env: BTreeMap::from([("MODE".into(), "preview".into())]),
            secret_env: BTreeMap::from([("DB_PASSWORD".into(), ("db".into(), "password".into()))]),
            replicas: 2,
            resources: CpuMemory {
                cpu: "250m".into(),
                memory: "256Mi".into(),
            },
            health_path: "/healthz".into(),
            run_as_non_root: false,
            read_only_root_filesystem: false,
            tmp_size_limit: "256Mi".into(),
            progress_deadline_seconds: 300,
            ingress_class: Some("nginx".into()),
            tls: None,
            image_pull_secret: None,
            ingress_controller_namespace: "ingress-nginx".into(),
            allowed_egress_cidrs: vec![],
            dns_egress_cidrs: vec![],
            ingress_cidrs: vec![],
            pod_security_level: "baseline".into(),
            quota: QuotaParams {
                total: CpuMemory {
                    cpu: "2".into(),
                    memory: "2Gi".into(),
                },
                max_pods: 10,
                storage: "10Gi".into(),
                max_claims: 5,
                default_request: CpuMemory {
                    cpu: "100m".into(),
                    memory: "128Mi".into(),
                },
                default_limit: CpuMemory {
                    cpu: "500m".into(),
                    memory: "512Mi".into(),
                },
            },
        }
    }

    #[test]
    fn deployment_is_pinned() {
        let d = serde_json::to_value(deployment(&params())).unwrap();
        let annotations = json!({"slipway.dev/preview-key": "org/app#42",
            "slipway.dev/commit": "0123456789abcdef0123456789abcdef01234567"});
        let selector =
            json!({"app.kubernetes.io/name": "app", "slipway.dev/preview": "org-app-42"});
        let expected = json!({
          "apiVersion": "apps/v1", "kind": "Deployment",
          "metadata": {"name": "app", "namespace": "slipway-pv-org-app-42-1a2b3c4d",
            "labels": {"app.kubernetes.io/managed-by": "slipway", "slipway.dev/preview": "org-app-42"},
            "annotations": annotations},
          "spec": {
            "replicas": 2, "revisionHistoryLimit": 3, "progressDeadlineSeconds": 300,
            "selector": {"matchLabels": selector},
            "template": {
              "metadata": {"labels": {"app.kubernetes.io/name": "app", "slipway.dev/preview": "org-app-42",
                "app.kubernetes.io/managed-by": "slipway"}, "annotations": annotations},
              "spec": {
                "automountServiceAccountToken": false, "enableServiceLinks": false,
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                  "name": "app", "image": "localhost:5000/org/app:0123456",
                  "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                  "env": [{"name": "MODE", "value": "preview"},
                          {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef":
                            {"name": "db", "key": "password", "optional": false}}}],
                  "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 5, "failureThreshold": 3},
                  "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
                  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                }]
              }
            }
          }
        });
        assert_eq!(d, expected, "{}", serde_json::to_string_pretty(&d).unwrap());
    }

    #[test]
    fn namespace_quota_and_limits() {
        let o = preview_objects(&params());
        let ns = serde_json::to_value(&o.namespace).unwrap();
        assert_eq!(ns["metadata"]["name"], "slipway-pv-org-app-42-1a2b3c4d");
        assert!(ns["metadata"].get("namespace").is_none());
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(
                ns["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}")],
                "baseline"
            );
        }
        assert_eq!(
            ns["metadata"]["annotations"]["slipway.dev/preview-key"],
            "org/app#42"
        );
        let quota = serde_json::to_value(&o.quota).unwrap();
        assert_eq!(
            quota["spec"]["hard"],
            json!({"requests.cpu": "2", "requests.memory": "2Gi", "limits.cpu": "2",
                   "limits.memory": "2Gi", "pods": "10", "requests.storage": "10Gi",
                   "persistentvolumeclaims": "5"})
        );
        let limits = serde_json::to_value(&o.limits).unwrap();
        assert_eq!(
            limits["spec"]["limits"][0],
            json!({"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"},
                   "defaultRequest": {"cpu": "100m", "memory": "128Mi"}})
        );
    }

    #[test]
    fn network_policies_deny_all_but_ingress_controller_and_dns() {
        let o = preview_objects(&params());
        let names: Vec<_> = o
            .network_policies
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "default-deny",
                "allow-ingress-controller",
                "allow-dns-egress"
            ]
        );
        let v: Vec<_> = o
            .network_policies
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        assert_eq!(
            v[0]["spec"],
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        );
        assert_eq!(
            v[1]["spec"]["ingress"],
            json!([{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                    "ports": [{"port": 8080, "protocol": "TCP"}]}])
        );
        assert_eq!(
            v[2]["spec"]["egress"][0]["ports"],
            json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
        );
        let mut p = params();
        p.allowed_egress_cidrs = vec!["10.0.0.0/8".into()];
        let o = preview_objects(&p);
        let extra = serde_json::to_value(&o.network_policies[3]).unwrap();
        assert_eq!(extra["metadata"]["name"], "allow-egress");
        assert_eq!(
            extra["spec"]["egress"][0]["to"],
            json!([{"ipBlock": {"cidr": "10.0.0.0/8"}}])
        );
    }

    #[test]
    fn service_and_ingress_route_the_host_to_the_app() {
        let o = preview_objects(&params());
        let svc = serde_json::to_value(&o.service).unwrap();
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
        );
        assert_eq!(
            svc["spec"]["selector"],
            json!({"app.kubernetes.io/name": "app", "slipway.dev/preview": "org-app-42"})
        );
        let ing = serde_json::to_value(&o.ingress).unwrap();
        assert_eq!(ing["spec"]["ingressClassName"], "nginx");
        assert_eq!(
            ing["spec"]["rules"][0]["host"],
            "pr-42-app.192.168.49.2.nip.io"
        );
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
            json!({"name": "app", "port": {"name": "http"}})
        );
        assert!(ing["spec"].get("tls").is_none());
        assert!(ing["metadata"].get("annotations").is_none());

        let mut p = params();
        p.tls = Some(TlsParams {
            secret_name: "pv-tls".into(),
            cluster_issuer: Some("letsencrypt".into()),
        });
        p.image_pull_secret = Some("pull".into());
        p.run_as_non_root = true;
        let o = preview_objects(&p);
        let ing = serde_json::to_value(&o.ingress).unwrap();
        assert_eq!(
            ing["spec"]["tls"],
            json!([{"hosts": ["pr-42-app.192.168.49.2.nip.io"], "secretName": "pv-tls"}])
        );
        assert_eq!(
            ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
            "letsencrypt"
        );
        let d = serde_json::to_value(&o.deployment).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["imagePullSecrets"],
            json!([{"name": "pull"}])
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"],
            true
        );
        assert_eq!(
            preview_url(&p.host, true),
            "https://pr-42-app.192.168.49.2.nip.io"
        );
    }

    #[test]
    fn dns_and_ingress_cidrs_extend_the_allowed_peers() {
        let mut p = params();
        p.dns_egress_cidrs = vec!["169.254.20.10/32".into(), "169.254.169.254/32".into()];
        p.ingress_cidrs = vec!["10.0.0.0/16".into()];
        let o = preview_objects(&p);
        let v: Vec<_> = o
            .network_policies
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        assert_eq!(
            v[1]["spec"]["ingress"],
            json!([{"from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                {"ipBlock": {"cidr": "10.0.0.0/16"}}],
                "ports": [{"port": 8080, "protocol": "TCP"}]}])
        );
        assert_eq!(
            v[2]["spec"]["egress"],
            json!([{"to": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}},
                {"ipBlock": {"cidr": "169.254.20.10/32"}},
                {"ipBlock": {"cidr": "169.254.169.254/32"}}],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}])
        );
    }

    #[test]
    fn an_issuer_admits_the_ingress_controller_to_the_acme_solver() {
        let mut p = params();
        p.tls = Some(TlsParams {
            secret_name: "preview-tls".into(),
            cluster_issuer: None,
        });
        let names = |o: &PreviewObjects| -> Vec<String> {
            o.network_policies
                .iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect()
        };
        // A static certificate needs no solver.
        assert!(!names(&preview_objects(&p)).contains(&"allow-acme-http01-solver".to_owned()));
        p.tls = Some(TlsParams {
            secret_name: "preview-tls".into(),
            cluster_issuer: Some("letsencrypt".into()),
        });
        p.ingress_cidrs = vec!["35.191.0.0/16".into()];
        let o = preview_objects(&p);
        assert_eq!(
            names(&o),
            [
                "default-deny",
                "allow-ingress-controller",
                "allow-dns-egress",
                "allow-acme-http01-solver"
            ]
        );
        let solver = serde_json::to_value(&o.network_policies[3]).unwrap();
        assert_eq!(
            solver["spec"],
            json!({"podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                    {"ipBlock": {"cidr": "35.191.0.0/16"}}],
                    "ports": [{"port": 8089, "protocol": "TCP"}]}]})
        );
        assert_eq!(o.to_values().len(), 10);
    }

    #[test]
    fn the_pod_spec_meets_restricted_only_with_run_as_non_root() {
        assert!(pod_security_gaps("privileged", false).is_empty());
        assert!(pod_security_gaps("baseline", false).is_empty());
        assert_eq!(pod_security_gaps("restricted", false), ["runAsNonRoot"]);
        assert!(pod_security_gaps("restricted", true).is_empty());
        // What the claim rests on: the restricted fields are set in the spec.
        let mut p = params();
        p.run_as_non_root = true;
        let d = serde_json::to_value(deployment(&p)).unwrap();
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let sc = &spec["containers"][0]["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["runAsNonRoot"], true);
        for host in ["hostNetwork", "hostPID", "hostIPC", "volumes"] {
            assert!(spec.get(host).is_none(), "{host}");
        }
    }

    #[test]
    fn a_read_only_root_gets_a_size_limited_writable_tmp() {
        let mut p = params();
        p.read_only_root_filesystem = true;
        let d = serde_json::to_value(deployment(&p)).unwrap();
        let spec = &d["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        // The other controls stay as they are.
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "tmp", "mountPath": "/tmp"}])
        );
        // On the node's disk (no `medium: Memory`), bounded.
        assert_eq!(
            spec["volumes"],
            json!([{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}])
        );
        // Still within restricted (emptyDir is an allowed volume type) when non-root.
        assert!(pod_security_gaps("restricted", true).is_empty());

        // Off (the default): no field, no volume, the same pod template as before.
        let d = serde_json::to_value(deployment(&params())).unwrap();
        let spec = &d["spec"]["template"]["spec"];
        assert!(
            spec["containers"][0]["securityContext"]
                .get("readOnlyRootFilesystem")
                .is_none()
        );
        assert!(spec["containers"][0].get("volumeMounts").is_none());
        assert!(spec.get("volumes").is_none());
    }

    #[test]
    fn objects_come_in_apply_order() {
        let values = preview_objects(&params()).to_values();
        let kinds: Vec<_> = values
            .iter()
            .map(|v| v["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ResourceQuota",
                "LimitRange",
                "NetworkPolicy",
                "NetworkPolicy",
                "NetworkPolicy",
                "Deployment",
                "Service",
                "Ingress"
            ]
        );
    }

    #[test]
    fn a_frame_routes_to_the_backend_and_admits_its_pods() {
        let p = params();
        let b = Backend {
            service: "web".into(),
            port: 8080,
            pods: BTreeMap::from([("app.kubernetes.io/name".into(), "web".into())]),
            target_port: IntOrString::String("http".into()),
        };
        let f = frame_objects(&p, &b);
        let kinds: Vec<String> = f
            .to_values()
            .iter()
            .map(|v| v["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds[0], "Namespace");
        assert_eq!(kinds.last().map(String::as_str), Some("Ingress"));
        assert!(!kinds.iter().any(|k| k == "Deployment" || k == "Service"));
        let ing = serde_json::to_value(&f.ingress).unwrap();
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"],
            json!({"service": {"name": "web", "port": {"number": 8080}}})
        );
        let allow = f
            .network_policies
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some("allow-ingress-controller"))
            .map(|n| serde_json::to_value(n).unwrap())
            .unwrap();
        assert_eq!(
            allow["spec"]["podSelector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "web"}})
        );
        assert_eq!(
            allow["spec"]["ingress"][0]["ports"],
            json!([{"port": "http", "protocol": "TCP"}])
        );
        // The app's own frame is unchanged.
        let own = preview_objects(&p);
        assert_eq!(
            serde_json::to_value(&own.network_policies).unwrap(),
            serde_json::to_value(network_policies(&p)).unwrap()
        );
    }
}
