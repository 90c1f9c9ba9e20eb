//! What a preview uses: its pods' CPU and memory as metrics-server measures them
//! (`metrics.k8s.io/v1beta1` PodMetrics) against its namespace's ResourceQuota.
//!
//! metrics-server is an add-on: a cluster without it (minikube's default) answers the metrics
//! path with 404, and one whose metrics-server is registered but down with 503 from the
//! aggregator (`kube-aggregator/pkg/apiserver/handler_proxy.go`: "service unavailable"). Both
//! are normal states, reported as [`MetricsState::Absent`] / [`MetricsState::Unavailable`],
//! never as errors. The arithmetic ([`sum_pod_metrics`], [`QuotaFigures::of`]) is pure.

use crate::client::{K8sError, get_opt, namespaced};
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;
use slipway_core::quantity::{Unit, parse_measured};
use std::collections::BTreeMap;

/// The name of the ResourceQuota every preview namespace gets (`preview::quota`).
pub const QUOTA_NAME: &str = "slipway-quota";

/// `metrics.k8s.io/v1beta1`, `pods` (kind `PodMetrics`).
pub fn pod_metrics_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
        "pods",
    )
}

/// Whether metrics-server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsState {
    /// It answered: the sums are its measurement (of the pods it reported).
    Ok,
    /// The metrics API does not exist on this cluster (404: no metrics-server).
    Absent,
    /// The metrics API is registered but not answering (503), or answered nonsense.
    Unavailable,
}

impl MetricsState {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricsState::Ok => "ok",
            MetricsState::Absent => "no_metrics_server",
            MetricsState::Unavailable => "metrics_unavailable",
        }
    }
}

/// Summed usage of the pods metrics-server reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodUsage {
    pub pods: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// Sums the containers' `usage` over the items of a PodMetricsList (or of PodMetrics objects).
/// A quantity that does not parse counts as nothing rather than failing the sample.
pub fn sum_pod_metrics<'a>(items: impl IntoIterator<Item = &'a Value>) -> PodUsage {
    let mut total = PodUsage::default();
    for item in items {
        total.pods += 1;
        let containers = item["containers"].as_array().map(Vec::as_slice);
        for container in containers.unwrap_or_default() {
            let usage = &container["usage"];
            let read = |key: &str, unit| {
                usage[key]
                    .as_str()
                    .and_then(|q| parse_measured(q, unit).ok())
                    .unwrap_or(0)
            };
            total.cpu_millis = total
                .cpu_millis
                .saturating_add(read("cpu", Unit::Millicores));
            total.memory_bytes = total
                .memory_bytes
                .saturating_add(read("memory", Unit::Bytes));
        }
    }
    total
}

/// The figures of a preview's ResourceQuota: its ceilings (`status.hard`, or `spec.hard` before
/// the quota controller has written a status) and what its pods have reserved (`status.used`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaFigures {
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_requested_millis: Option<u64>,
    pub memory_requested_bytes: Option<u64>,
}

impl QuotaFigures {
    pub fn of(quota: &ResourceQuota) -> QuotaFigures {
        let status = quota.status.as_ref();
        let hard = status
            .and_then(|s| s.hard.as_ref())
            .or_else(|| quota.spec.as_ref().and_then(|s| s.hard.as_ref()));
        let used = status.and_then(|s| s.used.as_ref());
        QuotaFigures {
            // The ceiling usage is measured against: the limits (what the pods may burst to),
            // else the requests.
            cpu_limit_millis: first_of(
                hard,
                &["limits.cpu", "requests.cpu", "cpu"],
                Unit::Millicores,
            ),
            memory_limit_bytes: first_of(
                hard,
                &["limits.memory", "requests.memory", "memory"],
                Unit::Bytes,
            ),
            cpu_requested_millis: first_of(used, &["requests.cpu", "cpu"], Unit::Millicores),
            memory_requested_bytes: first_of(used, &["requests.memory", "memory"], Unit::Bytes),
        }
    }
}

/// The first of `keys` present in `map`, read as a measured quantity.
fn first_of(map: Option<&BTreeMap<String, Quantity>>, keys: &[&str], unit: Unit) -> Option<u64> {
    let map = map?;
    keys.iter()
        .find_map(|k| map.get(*k))
        .and_then(|q| parse_measured(&q.0, unit).ok())
}

/// One reading of a preview namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSample {
    pub metrics: MetricsState,
    /// `None` unless `metrics` is [`MetricsState::Ok`].
    pub usage: Option<PodUsage>,
    /// `None` when the namespace has no quota (yet).
    pub quota: Option<QuotaFigures>,
}

/// How long metrics-server gets to answer. The client retries a 503 with backoff for minutes
/// (kube-client `RetryPolicy::server_retry`: 429, 503 and 504, 15 times from 5 ms), which is
/// what an aggregated API that is down answers: a reading must not wait for that.
pub const METRICS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the namespace's PodMetrics and its quota. `known` skips the metrics call when the
/// caller already knows metrics-server is absent or down (from another namespace this round).
/// Only a failure to read the quota (the Kubernetes API itself) is an error.
pub async fn sample(
    client: &kube::Client,
    namespace: &str,
    known: Option<MetricsState>,
) -> Result<UsageSample, K8sError> {
    let quotas: Api<ResourceQuota> = namespaced(client, namespace);
    let quota = get_opt(&quotas, QUOTA_NAME).await?;
    let (state, usage) = match known {
        Some(state) if state != MetricsState::Ok => (state, None),
        _ => pod_usage(client, namespace).await,
    };
    Ok(UsageSample {
        metrics: state,
        usage,
        quota: quota.as_ref().map(QuotaFigures::of),
    })
}

/// The namespace's PodMetrics, summed; or why there are none.
async fn pod_usage(client: &kube::Client, namespace: &str) -> (MetricsState, Option<PodUsage>) {
    let metrics: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &pod_metrics_resource());
    match tokio::time::timeout(METRICS_TIMEOUT, metrics.list(&ListParams::default())).await {
        Ok(Ok(list)) => {
            let items: Vec<Value> = list.items.into_iter().map(|o| o.data).collect();
            (MetricsState::Ok, Some(sum_pod_metrics(&items)))
        }
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => (MetricsState::Absent, None),
        Ok(Err(_)) | Err(_) => (MetricsState::Unavailable, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ResourceQuotaSpec, ResourceQuotaStatus};
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect()
    }

    #[test]
    fn pod_metrics_sum_over_pods_and_containers_in_metrics_server_units() {
        // As metrics-server writes them: nanocores and Ki.
        let items = [
            json!({"metadata": {"name": "app-1"}, "timestamp": "2026-12-07T12:00:00Z", "window": "15s",
            "containers": [
                {"name": "app", "usage": {"cpu": "120500000n", "memory": "10240Ki"}},
                {"name": "sidecar", "usage": {"cpu": "1m", "memory": "1Mi"}},
            ]}),
            json!({"metadata": {"name": "app-2"}, "containers": [
                {"name": "app", "usage": {"cpu": "0", "memory": "garbage"}}]}),
        ];
        assert_eq!(
            sum_pod_metrics(&items),
            PodUsage {
                pods: 2,
                cpu_millis: 121 + 1,
                memory_bytes: 10240 * 1024 + (1 << 20),
            }
        );
        assert_eq!(sum_pod_metrics(&[]), PodUsage::default());
    }

    #[test]
    fn quota_figures_prefer_the_status_and_the_limits() {
        let quota = ResourceQuota {
            spec: Some(ResourceQuotaSpec {
                hard: Some(map(&[("limits.cpu", "4"), ("limits.memory", "8Gi")])),
                ..Default::default()
            }),
            status: Some(ResourceQuotaStatus {
                hard: Some(map(&[
                    ("limits.cpu", "2"),
                    ("limits.memory", "4Gi"),
                    ("requests.cpu", "1"),
                ])),
                used: Some(map(&[
                    ("requests.cpu", "250m"),
                    ("requests.memory", "256Mi"),
                    ("pods", "1"),
                ])),
            }),
            ..Default::default()
        };
        assert_eq!(
            QuotaFigures::of(&quota),
            QuotaFigures {
                cpu_limit_millis: Some(2000),
                memory_limit_bytes: Some(4 << 30),
                cpu_requested_millis: Some(250),
                memory_requested_bytes: Some(256 << 20),
            }
        );
    }

    #[test]
    fn a_quota_without_status_reads_its_spec() {
        let quota = ResourceQuota {
            spec: Some(ResourceQuotaSpec {
                hard: Some(map(&[("requests.cpu", "500m"), ("requests.memory", "1Gi")])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let figures = QuotaFigures::of(&quota);
        assert_eq!(figures.cpu_limit_millis, Some(500));
        assert_eq!(figures.memory_limit_bytes, Some(1 << 30));
        assert_eq!(figures.cpu_requested_millis, None);
    }
}
