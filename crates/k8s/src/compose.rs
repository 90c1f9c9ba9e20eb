//! The objects of a compose preview (#18): the preview environment of [`crate::preview`]
//! (namespace, quota, limits, network policies, Ingress; the same pod hardening) holding one
//! workload and one Service per compose service, each named after the service so the others
//! reach it by its compose name, as on compose's default network.
//!
//! - A service that mounts a named volume is a StatefulSet (1 replica) with a
//!   `volumeClaimTemplates` entry per volume (the cluster's default StorageClass); any other is
//!   a Deployment (1 replica).
//! - A service with ports gets a ClusterIP Service with those ports (a stable address: clients
//!   that resolve a name once keep working across pod restarts). One without ports gets a
//!   headless Service (`clusterIP: None`): Kubernetes refuses a ClusterIP Service without ports
//!   but allows a headless one (kubernetes/kubernetes `pkg/apis/core/validation/validation.go`,
//!   `ValidateService`: `spec.ports` is required unless the Service is headless), and cluster
//!   DNS answers its name with the ready pods' addresses (kubernetes/website
//!   `content/en/docs/concepts/services-networking/dns-pod-service.md`, "Services: A/AAAA
//!   records"), so every port the container listens on is reachable by name, as in compose.
//! - The exposed service always has a Service port `port` for the Ingress.
//!
//! Translation of a service (compose-spec `05-services.md`): `entrypoint` -> `command`,
//! `command` -> `args`, `environment` -> `env` (with `$` escaped: the kubelet would expand
//! `$(VAR)`, compose does not), `ports` -> `containerPort`s, `healthcheck` -> an exec
//! `readinessProbe`, named volumes -> claims, `tmpfs` -> `emptyDir` of medium `Memory`, a
//! numeric `user` -> `runAsUser`/`runAsGroup`, `working_dir` -> `workingDir`, `read_only` ->
//! `readOnlyRootFilesystem`, CPU and memory limits -> resources. Names and values are checked
//! beforehand by the launch worker; the builder is pure and infallible.

use crate::preview::push_value;
use crate::preview::{
    PreviewParams, container_security, cpu_mem, env_vars, ingress_to, limit_range, namespace,
    network_policies_for, pod_labels, pod_spec, q, quota,
};
use crate::rollout::{Workload, WorkloadKind};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, ExecAction, LimitRange, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodTemplateSpec, Probe,
    ResourceQuota, ResourceRequirements, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy, ServiceBackendPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use slipway_core::compose::{HealthTest, Healthcheck};
use std::collections::BTreeMap;

/// One compose service as it runs in the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceParams {
    pub service: slipway_core::compose::Service,
    /// The image reference it runs.
    pub image: String,
    /// Requests of CPU and memory; memory is also the limit.
    pub resources: crate::preview::CpuMemory,
    /// A CPU limit the compose file sets; `None`: the LimitRange's default (the operator's
    /// per-container maximum).
    pub cpu_limit: Option<String>,
    /// The numeric `user` (`uid` or `uid:gid`).
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
}

/// Everything that decides a compose preview's objects (validated beforehand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeParams {
    /// The preview's environment: namespace, labels, host, TLS, ingress, policies, quota, pod
    /// security and pull secret, as for a single-container preview; `port`, `env` and
    /// `secret_env` are the exposed service's, `tmp_size_limit` bounds each `tmpfs`, and
    /// `progress_deadline_seconds` applies to every Deployment. The single container's
    /// `image`, `replicas`, `resources`, `health_path` and `read_only_root_filesystem` are not
    /// read.
    pub preview: PreviewParams,
    pub services: Vec<ServiceParams>,
    /// The service at the preview URL.
    pub exposed: String,
    /// Size of each named volume's claim (a quantity).
    pub volume_size: String,
}

/// A compose service's workload.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadObject {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
}

/// The objects of a compose preview.
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeObjects {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub limits: LimitRange,
    pub network_policies: Vec<NetworkPolicy>,
    /// One per compose service, in the file's order.
    pub services: Vec<Service>,
    pub ingress: Ingress,
    /// One per compose service, in the file's order.
    pub workloads: Vec<(Workload, WorkloadObject)>,
    /// Service names in start order: each level depends only on earlier ones.
    pub levels: Vec<Vec<String>>,
}

impl ComposeObjects {
    /// Every object as JSON, in apply order: the environment, the Services and Ingress (so
    /// every name resolves from the first pod on), then the workloads.
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut out = crate::preview::environment_values(
            &self.namespace,
            &self.quota,
            &self.limits,
            &self.network_policies,
        );
        for s in &self.services {
            push_value(&mut out, s);
        }
        push_value(&mut out, &self.ingress);
        for (_, w) in &self.workloads {
            match w {
                WorkloadObject::Deployment(d) => push_value(&mut out, d),
                WorkloadObject::StatefulSet(s) => push_value(&mut out, s),
            }
        }
        out
    }

    /// The workload of compose service `name`.
    pub fn workload(&self, name: &str) -> Option<&(Workload, WorkloadObject)> {
        self.workloads.iter().find(|(w, _)| w.name == name)
    }
}

/// The workload a service becomes: a StatefulSet when it mounts a named volume.
pub fn workload_of(s: &slipway_core::compose::Service) -> Workload {
    if s.volumes.is_empty() {
        Workload::deployment(&s.name)
    } else {
        Workload::stateful_set(&s.name)
    }
}

/// The Kubernetes name of a named compose volume (pod volume and claim template): compose
/// allows `_` and `.` and capitals, a volume name is a DNS-1123 label. `None` when nothing is
/// left.
pub fn volume_object_name(volume: &str) -> Option<String> {
    let mapped: String = volume
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    (!trimmed.is_empty() && trimmed.len() <= 63).then(|| trimmed.to_owned())
}

/// Service names by start level: a service comes one level after the last of its
/// `depends_on`. The services have no dependency cycle (the compose reader refuses one);
/// a dependency that is not a service is ignored.
pub fn start_levels(services: &[slipway_core::compose::Service]) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    // At most n rounds settle every level of an acyclic graph.
    for _ in 0..=services.len() {
        let mut changed = false;
        for s in services {
            let l = s
                .depends_on
                .iter()
                .filter_map(|d| level.get(d.service.as_str()).map(|l| l + 1))
                .max()
                .unwrap_or(0);
            if level.insert(&s.name, l) != Some(l) {
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let depth = level.values().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); depth];
    for s in services {
        out[level[s.name.as_str()]].push(s.name.clone());
    }
    out
}

/// `$` doubled: the kubelet expands `$(VAR)` in `env` values, `command` and `args` and turns
/// `$$` into `$` (kubernetes/kubernetes `third_party/forked/golang/expansion/expand.go`);
/// compose has already interpolated the file, so what is left is literal.
fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// The readiness probe of a compose healthcheck. Compose's `start_period` needs no field: a
/// readiness probe that fails keeps the pod unready without counting against it, which is what
/// compose does during the start period; `retries` consecutive failures after a success make
/// it unready again.
fn readiness(h: &Healthcheck) -> Probe {
    let command = match &h.test {
        HealthTest::Exec(words) => words.clone(),
        HealthTest::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
    };
    let secs = |s: u32| Some(i32::try_from(s.max(1)).unwrap_or(i32::MAX));
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|w| literal(w)).collect()),
        }),
        period_seconds: secs(h.interval_secs),
        timeout_seconds: secs(h.timeout_secs),
        failure_threshold: secs(h.retries),
        ..Default::default()
    }
}

fn tmpfs_volume(i: usize) -> String {
    format!("tmpfs-{i}")
}

fn ports_of(p: &ComposeParams, s: &ServiceParams) -> Vec<u16> {
    let mut ports = s.service.ports.clone();
    if s.service.name == p.exposed && !ports.contains(&p.preview.port) {
        ports.push(p.preview.port);
    }
    ports
}

fn container(p: &ComposeParams, s: &ServiceParams) -> Container {
    let svc = &s.service;
    let exposed = svc.name == p.exposed;
    let plain: BTreeMap<String, String> = svc
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), literal(v)))
        .collect();
    // The launch's env and secret env are the exposed service's, over the file's.
    let (mut env, secret_env) = if exposed {
        let mut env = plain;
        env.extend(p.preview.env.clone());
        (env, p.preview.secret_env.clone())
    } else {
        (plain, BTreeMap::new())
    };
    env.retain(|k, _| !secret_env.contains_key(k));
    let env = env_vars(&env, &secret_env);
    let ports = ports_of(p, s);
    let probe = match (&svc.healthcheck, exposed) {
        (Some(h), _) => Some(readiness(h)),
        // The Ingress should only send to a pod that listens.
        (None, true) => Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(p.preview.port)),
                host: None,
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        (None, false) => None,
    };
    let mut limits = BTreeMap::from([("memory".to_owned(), q(&s.resources.memory))]);
    if let Some(cpu) = &s.cpu_limit {
        limits.insert("cpu".into(), q(cpu));
    }
    let mut mounts: Vec<VolumeMount> = svc
        .volumes
        .iter()
        .filter_map(|v| {
            Some(VolumeMount {
                name: volume_object_name(&v.volume)?,
                mount_path: v.target.clone(),
                read_only: v.read_only.then_some(true),
                ..Default::default()
            })
        })
        .collect();
    mounts.extend(svc.tmpfs.iter().enumerate().map(|(i, path)| VolumeMount {
        name: tmpfs_volume(i),
        mount_path: path.clone(),
        ..Default::default()
    }));
    let words = |w: &Vec<String>| w.iter().map(|x| literal(x)).collect::<Vec<_>>();
    Container {
        name: svc.name.clone(),
        image: Some(s.image.clone()),
        command: svc.entrypoint.as_ref().map(words),
        args: svc.command.as_ref().map(words),
        working_dir: svc.working_dir.clone(),
        ports: (!ports.is_empty()).then(|| {
            ports
                .iter()
                .map(|port| ContainerPort {
                    container_port: i32::from(*port),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect()
        }),
        env: (!env.is_empty()).then_some(env),
        readiness_probe: probe,
        resources: Some(ResourceRequirements {
            requests: Some(cpu_mem("", &s.resources).into_iter().collect()),
            limits: Some(limits),
            ..Default::default()
        }),
        security_context: Some(container_security(
            &p.preview,
            svc.read_only,
            s.run_as_user,
            s.run_as_group,
        )),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    }
}

fn template(p: &ComposeParams, s: &ServiceParams) -> PodTemplateSpec {
    let svc = &s.service;
    // tmpfs is memory: it counts against the container's memory limit; bounded as `/tmp` is.
    let volumes: Vec<Volume> = (0..svc.tmpfs.len())
        .map(|i| Volume {
            name: tmpfs_volume(i),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(q(&p.preview.tmp_size_limit)),
            }),
            ..Default::default()
        })
        .collect();
    // A non-root user must be able to write its claims: the kubelet makes them group-owned
    // by `fsGroup` (only on a mismatch, so a large volume is not walked at every start).
    let fs_group = (!svc.volumes.is_empty())
        .then(|| s.run_as_group.or(s.run_as_user))
        .flatten();
    // The pods carry the preview key but not the commit (the workload does): a new commit
    // then rolls out only the services whose spec changed (a built image's digest), not a
    // database that runs the same image.
    let mut annotations = p.preview.annotations();
    annotations.remove(crate::preview::COMMIT_ANNOTATION);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(&p.preview, &svc.name)),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(pod_spec(
            &p.preview,
            vec![container(p, s)],
            (!volumes.is_empty()).then_some(volumes),
            PodSecurityContext {
                fs_group,
                fs_group_change_policy: fs_group.map(|_| "OnRootMismatch".into()),
                ..Default::default()
            },
        )),
    }
}

/// Metadata of a service's objects: the preview's labels and the service's name label.
fn meta(p: &ComposeParams, name: &str) -> ObjectMeta {
    let mut m = p.preview.meta(name);
    m.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(p.preview.selector_of(name));
    m
}

fn selector(p: &ComposeParams, name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(p.preview.selector_of(name)),
        ..Default::default()
    }
}

fn deployment(p: &ComposeParams, s: &ServiceParams) -> Deployment {
    let name = &s.service.name;
    Deployment {
        metadata: ObjectMeta {
            annotations: Some(p.preview.annotations()),
            ..meta(p, name)
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            revision_history_limit: Some(3),
            progress_deadline_seconds: Some(p.preview.progress_deadline_seconds),
            selector: selector(p, name),
            template: template(p, s),
            ..Default::default()
        }),
        status: None,
    }
}

fn stateful_set(p: &ComposeParams, s: &ServiceParams) -> StatefulSet {
    let name = &s.service.name;
    // Claim templates cannot change once the StatefulSet exists (`ValidateStatefulSetUpdate`):
    // their labels leave out the job id every launch changes.
    let mut claim_labels = p.preview.labels.clone();
    claim_labels.remove(crate::labels::JOB_ID);
    claim_labels.extend(p.preview.selector_of(name));
    let mut volumes: Vec<String> = s
        .service
        .volumes
        .iter()
        .filter_map(|v| volume_object_name(&v.volume))
        .collect();
    volumes.sort();
    volumes.dedup();
    let claims = volumes
        .iter()
        .map(|v| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(v.clone()),
                labels: Some(claim_labels.clone()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_owned(), q(&p.volume_size))])),
                    limits: None,
                }),
                ..Default::default()
            }),
            status: None,
        })
        .collect();
    StatefulSet {
        metadata: ObjectMeta {
            annotations: Some(p.preview.annotations()),
            ..meta(p, name)
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: selector(p, name),
            template: template(p, s),
            volume_claim_templates: Some(claims),
            ..Default::default()
        }),
        status: None,
    }
}

fn service(p: &ComposeParams, s: &ServiceParams) -> Service {
    let name = &s.service.name;
    let ports = ports_of(p, s);
    let headless = ports.is_empty();
    Service {
        metadata: meta(p, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: headless.then(|| "None".into()),
            selector: Some(p.preview.selector_of(name)),
            ports: (!headless).then(|| {
                ports
                    .iter()
                    .map(|port| ServicePort {
                        name: Some(format!("tcp-{port}")),
                        port: i32::from(*port),
                        target_port: Some(IntOrString::Int(i32::from(*port))),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Build every object of a compose preview. Pure.
pub fn compose_objects(p: &ComposeParams) -> ComposeObjects {
    let workloads = p
        .services
        .iter()
        .map(|s| {
            let w = workload_of(&s.service);
            let o = match w.kind {
                WorkloadKind::Deployment => WorkloadObject::Deployment(Box::new(deployment(p, s))),
                WorkloadKind::StatefulSet => {
                    WorkloadObject::StatefulSet(Box::new(stateful_set(p, s)))
                }
            };
            (w, o)
        })
        .collect();
    let services: Vec<_> = p.services.iter().map(|s| s.service.clone()).collect();
    ComposeObjects {
        namespace: namespace(&p.preview),
        quota: quota(&p.preview),
        limits: limit_range(&p.preview),
        network_policies: network_policies_for(
            &p.preview,
            p.preview.selector_of(&p.exposed),
            IntOrString::Int(i32::from(p.preview.port)),
            true,
        ),
        services: p.services.iter().map(|s| service(p, s)).collect(),
        ingress: ingress_to(
            &p.preview,
            &p.exposed,
            ServiceBackendPort {
                name: None,
                number: Some(i32::from(p.preview.port)),
            },
        ),
        workloads,
        levels: start_levels(&services),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::preview::CpuMemory;
    use serde_json::json;
    use slipway_core::compose::{Condition, Dependency, Service as ComposeService};

    pub(crate) fn params() -> ComposeParams {
        let mut preview = crate::preview::tests::params();
        preview.port = 3000;
        preview.image = "localhost:5000/org/web@sha256:aa".into();
        preview
            .labels
            .insert("slipway.dev/job-id".into(), "j1".into());
        let res = CpuMemory {
            cpu: "100m".into(),
            memory: "128Mi".into(),
        };
        let web = ComposeService {
            name: "web".into(),
            command: Some(vec!["node".into(), "server.js".into()]),
            environment: BTreeMap::from([(
                "DATABASE_URL".into(),
                "postgres://app:$(pw)@db:5432/app".into(),
            )]),
            ports: vec![3000],
            depends_on: vec![
                Dependency {
                    service: "db".into(),
                    condition: Condition::Healthy,
                },
                Dependency {
                    service: "cache".into(),
                    condition: Condition::Started,
                },
            ],
            ..Default::default()
        };
        let db = ComposeService {
            name: "db".into(),
            image: Some("postgres:16".into()),
            environment: BTreeMap::from([("POSTGRES_PASSWORD".into(), "pw".into())]),
            ports: vec![5432],
            healthcheck: Some(Healthcheck {
                test: HealthTest::Shell("pg_isready -U app".into()),
                interval_secs: 5,
                timeout_secs: 3,
                retries: 5,
                start_period_secs: 10,
            }),
            volumes: vec![slipway_core::compose::VolumeMount {
                volume: "db_data".into(),
                target: "/var/lib/postgresql/data".into(),
                read_only: false,
            }],
            tmpfs: vec!["/run/postgresql".into()],
            user: Some("999:999".into()),
            memory_bytes: Some(256 << 20),
            ..Default::default()
        };
        let cache = ComposeService {
            name: "cache".into(),
            image: Some("redis:7".into()),
            entrypoint: Some(vec!["redis-server".into()]),
            command: Some(vec!["--save".into(), "".into()]),
            healthcheck: Some(Healthcheck {
                test: HealthTest::Exec(vec!["redis-cli".into(), "ping".into()]),
                interval_secs: 2,
                timeout_secs: 1,
                retries: 3,
                start_period_secs: 0,
            }),
            working_dir: Some("/data".into()),
            read_only: true,
            cpu_millis: Some(500),
            ..Default::default()
        };
        ComposeParams {
            preview,
            services: vec![
                ServiceParams {
                    service: web,
                    image: "localhost:5000/org/web@sha256:aa".into(),
                    resources: res.clone(),
                    cpu_limit: None,
                    run_as_user: None,
                    run_as_group: None,
                },
                ServiceParams {
                    service: db,
                    image: "postgres:16".into(),
                    resources: CpuMemory {
                        cpu: "100m".into(),
                        memory: "256Mi".into(),
                    },
                    cpu_limit: None,
                    run_as_user: Some(999),
                    run_as_group: Some(999),
                },
                ServiceParams {
                    service: cache,
                    image: "redis:7".into(),
                    resources: CpuMemory {
                        cpu: "500m".into(),
                        memory: "128Mi".into(),
                    },
                    cpu_limit: Some("500m".into()),
                    run_as_user: None,
                    run_as_group: None,
                },
            ],
            exposed: "web".into(),
            volume_size: "1Gi".into(),
        }
    }

    fn value<T: serde::Serialize>(t: &T) -> serde_json::Value {
        serde_json::to_value(t).unwrap()
    }

    #[test]
    fn a_service_with_a_named_volume_is_a_stateful_set_with_a_claim_per_volume() {
        let o = compose_objects(&params());
        let (w, db) = o.workload("db").unwrap();
        assert_eq!(w, &Workload::stateful_set("db"));
        let WorkloadObject::StatefulSet(db) = db else {
            panic!("db is no StatefulSet")
        };
        let selector = json!({"app.kubernetes.io/name": "db", "slipway.dev/preview": "org-app-42"});
        let annotations = json!({"slipway.dev/preview-key": "org/app#42",
            "slipway.dev/commit": "0123456789abcdef0123456789abcdef01234567"});
        let expected = json!({
          "apiVersion": "apps/v1", "kind": "StatefulSet",
          "metadata": {"name": "db", "namespace": "slipway-pv-org-app-42-1a2b3c4d",
            "labels": {"app.kubernetes.io/managed-by": "slipway", "slipway.dev/preview": "org-app-42",
              "slipway.dev/job-id": "j1", "app.kubernetes.io/name": "db"},
            "annotations": annotations},
          "spec": {
            "replicas": 1, "serviceName": "db",
            "selector": {"matchLabels": selector},
            "template": {
              "metadata": {"labels": {"app.kubernetes.io/name": "db", "slipway.dev/preview": "org-app-42",
                "app.kubernetes.io/managed-by": "slipway"},
                "annotations": {"slipway.dev/preview-key": "org/app#42"}},
              "spec": {
                "automountServiceAccountToken": false, "enableServiceLinks": false,
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"},
                  "fsGroup": 999, "fsGroupChangePolicy": "OnRootMismatch"},
                "containers": [{
                  "name": "db", "image": "postgres:16",
                  "ports": [{"containerPort": 5432, "protocol": "TCP"}],
                  "env": [{"name": "POSTGRES_PASSWORD", "value": "pw"}],
                  "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "pg_isready -U app"]},
                    "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 5},
                  "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
                  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                    "runAsUser": 999, "runAsGroup": 999},
                  "volumeMounts": [{"name": "db-data", "mountPath": "/var/lib/postgresql/data"},
                    {"name": "tmpfs-0", "mountPath": "/run/postgresql"}]
                }],
                "volumes": [{"name": "tmpfs-0", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}]
              }
            },
            "volumeClaimTemplates": [{
              "apiVersion": "v1", "kind": "PersistentVolumeClaim",
              "metadata": {"name": "db-data", "labels": {"app.kubernetes.io/managed-by": "slipway",
                "slipway.dev/preview": "org-app-42", "app.kubernetes.io/name": "db"}},
              "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
          }
        });
        let got = value(db);
        assert_eq!(
            got,
            expected,
            "{}",
            serde_json::to_string_pretty(&got).unwrap()
        );
    }

    #[test]
    fn services_without_volumes_are_deployments_and_translate_every_field() {
        let o = compose_objects(&params());
        let (_, web) = o.workload("web").unwrap();
        let WorkloadObject::Deployment(web) = web else {
            panic!("web is no Deployment")
        };
        let web = value(web);
        assert_eq!(web["spec"]["replicas"], 1);
        assert_eq!(web["spec"]["progressDeadlineSeconds"], 300);
        let c = &web["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["args"], json!(["node", "server.js"]));
        assert!(c.get("command").is_none());
        // The launch's env and secret env are the exposed service's, after the file's; `$`
        // stays literal through the kubelet's expansion.
        assert_eq!(
            c["env"],
            json!([{"name": "DATABASE_URL", "value": "postgres://app:$$(pw)@db:5432/app"},
                {"name": "MODE", "value": "preview"},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef":
                    {"name": "db", "key": "password", "optional": false}}}])
        );
        // No healthcheck: the exposed service is ready once it listens.
        assert_eq!(
            c["readinessProbe"],
            json!({"tcpSocket": {"port": 3000}, "periodSeconds": 5, "failureThreshold": 3})
        );
        assert!(
            web["spec"]["template"]["spec"]["securityContext"]
                .get("fsGroup")
                .is_none()
        );

        let (_, cache) = o.workload("cache").unwrap();
        let WorkloadObject::Deployment(cache) = cache else {
            panic!("cache is no Deployment")
        };
        let c = &value(cache)["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["redis-server"]));
        assert_eq!(c["args"], json!(["--save", ""]));
        assert_eq!(c["workingDir"], "/data");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            c["readinessProbe"],
            json!({"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 2,
                "timeoutSeconds": 1, "failureThreshold": 3})
        );
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "500m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "128Mi"}})
        );
        assert!(c.get("ports").is_none());
        assert!(c.get("env").is_none());
    }

    #[test]
    fn services_are_named_after_compose_services_and_headless_without_ports() {
        let o = compose_objects(&params());
        let by_name = |n: &str| {
            value(
                o.services
                    .iter()
                    .find(|s| s.metadata.name.as_deref() == Some(n))
                    .unwrap(),
            )
        };
        assert_eq!(
            by_name("db")["spec"],
            json!({"type": "ClusterIP",
                "selector": {"app.kubernetes.io/name": "db", "slipway.dev/preview": "org-app-42"},
                "ports": [{"name": "tcp-5432", "port": 5432, "targetPort": 5432, "protocol": "TCP"}]})
        );
        assert_eq!(
            by_name("cache")["spec"],
            json!({"type": "ClusterIP", "clusterIP": "None",
                "selector": {"app.kubernetes.io/name": "cache", "slipway.dev/preview": "org-app-42"}})
        );
        assert_eq!(
            by_name("web")["metadata"]["labels"]["slipway.dev/job-id"],
            "j1"
        );
        let ing = value(&o.ingress);
        assert_eq!(ing["metadata"]["name"], "web");
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
            json!({"name": "web", "port": {"number": 3000}})
        );
        // An exposed service whose port the file does not list still gets it.
        let mut p = params();
        p.services[0].service.ports = vec![];
        let o = compose_objects(&p);
        assert_eq!(
            value(&o.services[0])["spec"]["ports"],
            json!([{"name": "tcp-3000", "port": 3000, "targetPort": 3000, "protocol": "TCP"}])
        );
    }

    #[test]
    fn the_preview_pods_may_reach_one_another_and_the_ingress_only_the_exposed_service() {
        let o = compose_objects(&params());
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
                "allow-dns-egress",
                "allow-within-preview"
            ]
        );
        let v: Vec<_> = o.network_policies.iter().map(value).collect();
        assert_eq!(
            v[1]["spec"]["podSelector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "web", "slipway.dev/preview": "org-app-42"}})
        );
        assert_eq!(
            v[1]["spec"]["ingress"][0]["ports"],
            json!([{"port": 3000, "protocol": "TCP"}])
        );
        let own = json!({"matchLabels": {"slipway.dev/preview": "org-app-42"}});
        assert_eq!(
            v[3]["spec"],
            json!({"podSelector": own, "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": own}]}],
                "egress": [{"to": [{"podSelector": own}]}]})
        );
    }

    #[test]
    fn a_new_commit_changes_only_the_pods_whose_spec_changes() {
        let p = params();
        let mut next = params();
        next.preview.commit = Some("f".repeat(40));
        next.preview
            .labels
            .insert("slipway.dev/job-id".into(), "j2".into());
        next.services[0].image = "localhost:5000/org/web@sha256:bb".into();
        let (a, b) = (compose_objects(&p), compose_objects(&next));
        let template = |o: &ComposeObjects, name: &str| match &o.workload(name).unwrap().1 {
            WorkloadObject::Deployment(d) => value(&d.spec.as_ref().unwrap().template),
            WorkloadObject::StatefulSet(s) => value(&s.spec.as_ref().unwrap().template),
        };
        assert_ne!(template(&a, "web"), template(&b, "web"));
        assert_eq!(template(&a, "db"), template(&b, "db"));
        assert_eq!(template(&a, "cache"), template(&b, "cache"));
        // The claim templates cannot change on a StatefulSet: the job id stays out of them.
        let claims = |o: &ComposeObjects| match &o.workload("db").unwrap().1 {
            WorkloadObject::StatefulSet(s) => {
                value(&s.spec.as_ref().unwrap().volume_claim_templates)
            }
            WorkloadObject::Deployment(_) => unreachable!(),
        };
        assert_eq!(claims(&a), claims(&b));
    }

    #[test]
    fn start_levels_follow_depends_on() {
        let p = params();
        let services: Vec<_> = p.services.iter().map(|s| s.service.clone()).collect();
        assert_eq!(
            start_levels(&services),
            vec![
                vec!["db".to_owned(), "cache".to_owned()],
                vec!["web".to_owned()]
            ]
        );
        let chain = |name: &str, dep: Option<&str>| ComposeService {
            name: name.into(),
            depends_on: dep
                .map(|d| {
                    vec![Dependency {
                        service: d.into(),
                        condition: Condition::Started,
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        // Listed before what they depend on.
        let s = vec![
            chain("a", Some("b")),
            chain("b", Some("c")),
            chain("c", None),
        ];
        assert_eq!(
            start_levels(&s),
            vec![
                vec!["c".to_owned()],
                vec!["b".to_owned()],
                vec!["a".to_owned()]
            ]
        );
        assert!(start_levels(&[]).is_empty());
    }

    #[test]
    fn volume_names_become_dns_labels() {
        assert_eq!(volume_object_name("db_data").as_deref(), Some("db-data"));
        assert_eq!(volume_object_name("Cache.v2").as_deref(), Some("cache-v2"));
        assert_eq!(volume_object_name("__"), None);
        assert_eq!(volume_object_name(&"a".repeat(64)), None);
    }

    #[test]
    fn objects_come_in_apply_order() {
        let kinds: Vec<_> = compose_objects(&params())
            .to_values()
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
                "NetworkPolicy",
                "Service",
                "Service",
                "Service",
                "Ingress",
                "Deployment",
                "StatefulSet",
                "Deployment"
            ]
        );
    }
}
