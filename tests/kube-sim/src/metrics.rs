//! The resource metrics API (`metrics.k8s.io/v1beta1`) as metrics-server serves it through the
//! API aggregator, and the ResourceQuota controller's `status`.
//!
//! **metrics-server** is an add-on ([`MetricsServer`]): without it the group does not exist and
//! the apiserver answers 404 like any unknown path; registered but down, the aggregator answers
//! `503` with the plain-text body `service unavailable`
//! (kubernetes `staging/src/k8s.io/kube-aggregator/pkg/apiserver/handler_proxy.go`,
//! `proxyError(w, req, "service unavailable", http.StatusServiceUnavailable)` when the
//! APIService is not `Available`). Running, it lists `PodMetrics` of the namespace's *running*
//! pods (types: kubernetes/website `content/en/docs/reference/external-api/metrics.v1beta1.md`:
//! `timestamp`, `window`, `containers[].usage` with `cpu` and `memory`), CPU in nanocores
//! (`…n`) and memory in `Ki`, as metrics-server formats them. Usage is settable per namespace
//! ([`crate::KubeSim::set_pod_usage`]); otherwise a container uses a tenth of its CPU request
//! and half of its memory request (5m and 16Mi without requests): plausible, not measured.
//!
//! **ResourceQuota status** (kubernetes `pkg/controller/resourcequota/resource_quota_controller.go`
//! `syncResourceQuota`: `status.hard` = `spec.hard`, `status.used` for each resource in `hard`;
//! pod usage from `pkg/quota/v1/evaluator/core/pods.go`: pods in a terminal phase do not
//! count, a pod's request is its containers' sum or its largest init container's, whichever
//! is larger). Computed for `pods`, `requests.cpu`/`cpu`, `requests.memory`/`memory`,
//! `limits.cpu` and `limits.memory`; other resources in `hard` are reported as used `0`.
//! Admission-time enforcement is not simulated.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

/// Whether (and how) metrics-server is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsServer {
    /// Not installed (minikube's default: the `metrics-server` addon is off): 404.
    #[default]
    Absent,
    /// Registered but not available: 503 from the aggregator.
    Unavailable,
    /// Installed and answering.
    Running,
}

/// Per-container usage set by a test, by namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// The metrics-server model's state.
#[derive(Debug, Default)]
pub struct MetricsModel {
    server: Mutex<MetricsServer>,
    usage: Mutex<HashMap<String, Usage>>,
}

impl MetricsModel {
    pub fn new(server: MetricsServer) -> Self {
        Self {
            server: Mutex::new(server),
            usage: Mutex::default(),
        }
    }

    pub fn server(&self) -> MetricsServer {
        *self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_server(&self, server: MetricsServer) {
        *self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = server;
    }

    /// Every container of every running pod in `namespace` uses this much.
    pub fn set_usage(&self, namespace: &str, usage: Usage) {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(namespace.to_owned(), usage);
    }

    fn usage_in(&self, namespace: &str) -> Option<Usage> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(namespace)
            .copied()
    }

    /// The `PodMetrics` of `pod` (running pods only), as metrics-server renders it.
    pub fn pod_metrics(&self, pod: &Value, now: &str) -> Option<Value> {
        if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
            return None;
        }
        let ns = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let set = self.usage_in(ns);
        let containers: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let usage = set.unwrap_or_else(|| {
                    let requests = &c["resources"]["requests"];
                    Usage {
                        cpu_millis: quantity(&requests["cpu"], true).map_or(5, |m| (m / 10).max(1)),
                        memory_bytes: quantity(&requests["memory"], false)
                            .map_or(16 << 20, |b| b / 2),
                    }
                });
                json!({
                    "name": c["name"],
                    "usage": {
                        "cpu": format!("{}n", usage.cpu_millis * 1_000_000),
                        "memory": format!("{}Ki", usage.memory_bytes.div_ceil(1024)),
                    }
                })
            })
            .collect();
        Some(json!({
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": pod["metadata"]["name"],
                "namespace": ns,
                "creationTimestamp": now,
                "labels": pod["metadata"]["labels"],
            },
            "timestamp": now,
            "window": "15s",
            "containers": containers,
        }))
    }
}

/// A quantity in millicores (`cpu`) or bytes, rounded up; `None` if absent or unreadable.
/// Exact: the value is `digits × 2^pow2 × 10^pow10`, kept in integers (in floating point
/// `700m` came out as 701 millicores).
pub fn quantity(v: &Value, cpu: bool) -> Option<u64> {
    let s = v.as_str()?;
    let (num, pow2, pow10): (&str, u32, i32) = [
        ("Ki", 10, 0),
        ("Mi", 20, 0),
        ("Gi", 30, 0),
        ("Ti", 40, 0),
        ("n", 0, -9),
        ("u", 0, -6),
        ("m", 0, -3),
        ("k", 0, 3),
        ("M", 0, 6),
        ("G", 0, 9),
        ("T", 0, 12),
    ]
    .iter()
    .find_map(|(suffix, p2, p10)| s.strip_suffix(suffix).map(|n| (n, *p2, *p10)))
    .unwrap_or((s, 0, 0));
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty()
        || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    let mut value = digits.checked_mul(1u128 << pow2)?;
    let exp = pow10 + if cpu { 3 } else { 0 } - i32::try_from(frac.len()).ok()?;
    let ten = 10u128.checked_pow(exp.unsigned_abs())?;
    value = if exp >= 0 {
        value.checked_mul(ten)?
    } else {
        value.div_ceil(ten)
    };
    u64::try_from(value).ok()
}

/// The `status` the ResourceQuota controller writes for `quota` given the namespace's pods.
pub fn quota_status(quota: &Value, pods: &[std::sync::Arc<Value>]) -> Value {
    let hard = quota
        .pointer("/spec/hard")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let counted: Vec<&Value> = pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| {
            !matches!(
                p.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let sum = |section: &str, resource: &str, cpu: bool| -> u64 {
        counted
            .iter()
            .map(|p| pod_amount(p, section, resource, cpu))
            .sum()
    };
    let mut used = serde_json::Map::new();
    if let Some(hard) = hard.as_object() {
        for key in hard.keys() {
            let value = match key.as_str() {
                "pods" => counted.len().to_string(),
                "requests.cpu" | "cpu" => format_cpu(sum("requests", "cpu", true)),
                "requests.memory" | "memory" => sum("requests", "memory", false).to_string(),
                "limits.cpu" => format_cpu(sum("limits", "cpu", true)),
                "limits.memory" => sum("limits", "memory", false).to_string(),
                _ => "0".to_owned(),
            };
            used.insert(key.clone(), Value::String(value));
        }
    }
    json!({"hard": hard, "used": used})
}

/// A pod's amount of `resource` under `resources.<section>`: the containers' sum or the
/// largest init container's, whichever is larger (pods.go `PodUsageFunc`).
fn pod_amount(pod: &Value, section: &str, resource: &str, cpu: bool) -> u64 {
    let of = |list: &str| -> Vec<u64> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| quantity(&c["resources"][section][resource], cpu).unwrap_or(0))
            .collect()
    };
    let containers: u64 = of("containers").iter().sum();
    let init = of("initContainers").into_iter().max().unwrap_or(0);
    containers.max(init)
}

fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pod(phase: &str, cpu: &str, memory: &str) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "app", "resources": {
                "requests": {"cpu": cpu, "memory": memory},
                "limits": {"cpu": "1", "memory": "1Gi"}}}],
                "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2"}}}]},
            "status": {"phase": phase},
        }))
    }

    #[test]
    fn quota_status_counts_live_pods_and_the_larger_of_containers_and_init() {
        let quota = json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4",
            "requests.memory": "4Gi", "limits.cpu": "8", "limits.memory": "8Gi", "services": "5"}}});
        let pods = [
            pod("Running", "250m", "128Mi"),
            pod("Pending", "250m", "128Mi"),
            pod("Succeeded", "250m", "128Mi"),
        ];
        let status = quota_status(&quota, &pods);
        assert_eq!(status["hard"], quota["spec"]["hard"]);
        assert_eq!(
            status["used"],
            json!({"pods": "2", "requests.cpu": "4", "requests.memory": (256u64 << 20).to_string(),
                "limits.cpu": "2", "limits.memory": (2u64 << 30).to_string(), "services": "0"})
        );
    }

    #[test]
    fn quantities_are_read_exactly_and_rounded_up() {
        let q = |s: &str, cpu| quantity(&json!(s), cpu);
        assert_eq!(q("700m", true), Some(700));
        assert_eq!(q("0.1", true), Some(100));
        assert_eq!(q("2", true), Some(2000));
        assert_eq!(q("1203489n", true), Some(2));
        assert_eq!(q("128Mi", false), Some(128 << 20));
        assert_eq!(q("1.5Gi", false), Some(3 << 29));
        assert_eq!(q("100m", false), Some(1));
        assert_eq!(q("12x", false), None);
        assert_eq!(q(".", false), None);
    }

    #[test]
    fn running_pods_report_set_or_default_usage_in_metrics_server_units() {
        let model = MetricsModel::new(MetricsServer::Running);
        let running = pod("Running", "200m", "128Mi");
        let m = model.pod_metrics(&running, "2026-12-07T12:00:00Z").unwrap();
        assert_eq!(m["containers"][0]["usage"]["cpu"], "20000000n");
        assert_eq!(m["containers"][0]["usage"]["memory"], "65536Ki");
        assert!(
            model
                .pod_metrics(&pod("Pending", "1", "1Gi"), "t")
                .is_none()
        );
        model.set_usage(
            "ns",
            Usage {
                cpu_millis: 150,
                memory_bytes: 64 << 20,
            },
        );
        let m = model.pod_metrics(&running, "t").unwrap();
        assert_eq!(m["containers"][0]["usage"]["cpu"], "150000000n");
        assert_eq!(m["containers"][0]["usage"]["memory"], "65536Ki");
    }
}
