//! Why a pod cannot mount its volumes, read from its Events.
//!
//! A pod whose Secret (or ConfigMap) volume names an object that does not exist never leaves
//! `ContainerCreating`: its status says nothing more, and only its Events tell. The kubelet
//! records each failed `MountVolume.SetUp` as a `Warning` Event with reason `FailedMount` and the
//! message `MountVolume.SetUp failed for volume "<volume>" : <error>`
//! (`pkg/volume/util/operationexecutor/operation_executor.go`, `generateVolumeMsg`), where the
//! error of a missing object is `secret "<name>" not found` (the kubelet's secret manager) and
//! that of a missing key `references non-existent secret key: <key>`
//! (`pkg/volume/secret/secret.go`, `MakePayload`). It retries with back-off, so the same Event
//! repeats (its `count` grows) until the object appears. Pure functions, pinned by unit tests.

use k8s_openapi::api::core::v1::{Event, Pod};

/// A volume that cannot be mounted because the object it names is missing (or lacks a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFailure {
    /// The pod's volume.
    pub volume: String,
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    /// The object the volume names.
    pub object: String,
    /// The kubelet's error (`secret "x" not found`, `references non-existent secret key: k`).
    pub error: String,
    /// Seconds between the first and the last report of this failure (the kubelet's clock).
    pub reported_for_secs: u64,
}

impl std::fmt::Display for MountFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} \"{}\" (volume \"{}\"): {}",
            self.kind, self.object, self.volume, self.error
        )
    }
}

/// The volume's source object: (`Secret` or `ConfigMap`, name).
fn volume_source(pod: &Pod, volume: &str) -> Option<(&'static str, String)> {
    let v = pod
        .spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == volume)?;
    if let Some(s) = &v.secret {
        return Some(("Secret", s.secret_name.clone().unwrap_or_default()));
    }
    v.config_map.as_ref().map(|c| ("ConfigMap", c.name.clone()))
}

/// The volumes of `pod` whose Secret or ConfigMap is missing (or lacks a key), from the pod's
/// Events (`events` may hold other objects' Events: they are ignored).
pub fn missing_objects(pod: &Pod, events: &[Event]) -> Vec<MountFailure> {
    let uid = pod.metadata.uid.as_deref();
    let mut out: Vec<MountFailure> = Vec::new();
    for e in events {
        if e.involved_object.uid.as_deref() != uid
            || e.reason.as_deref() != Some("FailedMount")
            || e.type_.as_deref() != Some("Warning")
        {
            continue;
        }
        let Some(rest) = e
            .message
            .as_deref()
            .and_then(|m| m.strip_prefix("MountVolume.SetUp failed for volume \""))
        else {
            continue;
        };
        let Some((volume, error)) = rest.split_once("\" : ") else {
            continue;
        };
        let not_found = (error.starts_with("secret \"") || error.starts_with("configmap \""))
            && error.ends_with("\" not found");
        let missing = not_found || error.contains("references non-existent");
        if !missing {
            continue;
        }
        let Some((kind, object)) = volume_source(pod, volume) else {
            continue;
        };
        let first = e.first_timestamp.as_ref().map(|t| t.0.as_second());
        let last = e.last_timestamp.as_ref().map(|t| t.0.as_second());
        let span = match (first, last) {
            (Some(f), Some(l)) => u64::try_from(l - f).unwrap_or(0),
            _ => 0,
        };
        match out.iter_mut().find(|f| f.volume == volume) {
            Some(f) => f.reported_for_secs = f.reported_for_secs.max(span),
            None => out.push(MountFailure {
                volume: volume.to_owned(),
                kind,
                object,
                error: error.to_owned(),
                reported_for_secs: span,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "b", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "buildkit", "image": "x"}], "volumes": [
                {"name": "buildkitd", "emptyDir": {}},
                {"name": "git-auth", "secret": {"secretName": "git-token",
                    "items": [{"key": "token", "path": "token"}]}},
                {"name": "conf", "configMap": {"name": "cfg"}},
            ]}
        }))
        .unwrap()
    }

    fn event(uid: &str, reason: &str, message: &str, first: &str, last: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": "b", "namespace": "ns", "uid": uid},
            "reason": reason, "message": message, "type": "Warning",
            "firstTimestamp": first, "lastTimestamp": last, "count": 7,
        }))
        .unwrap()
    }

    #[test]
    fn a_missing_secret_is_named_with_its_volume_and_how_long_it_was_reported() {
        let events = [
            event(
                "u1",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"git-auth\" : secret \"git-token\" not found",
                "2026-12-07T10:00:00Z",
                "2026-12-07T10:01:03Z",
            ),
            // Another pod's, and a mount failure that is not a missing object.
            event(
                "u2",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"git-auth\" : secret \"git-token\" not found",
                "2026-12-07T10:00:00Z",
                "2026-12-07T10:30:00Z",
            ),
            event(
                "u1",
                "FailedMount",
                "Unable to attach or mount volumes: unmounted volumes=[git-auth]: timed out waiting for the condition",
                "2026-12-07T10:00:00Z",
                "2026-12-07T10:02:00Z",
            ),
            event(
                "u1",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"conf\" : configmap \"cfg\" not found",
                "2026-12-07T10:00:30Z",
                "2026-12-07T10:00:30Z",
            ),
        ];
        let found = missing_objects(&pod(), &events);
        assert_eq!(
            found,
            [
                MountFailure {
                    volume: "git-auth".into(),
                    kind: "Secret",
                    object: "git-token".into(),
                    error: "secret \"git-token\" not found".into(),
                    reported_for_secs: 63,
                },
                MountFailure {
                    volume: "conf".into(),
                    kind: "ConfigMap",
                    object: "cfg".into(),
                    error: "configmap \"cfg\" not found".into(),
                    reported_for_secs: 0,
                },
            ]
        );
        assert_eq!(
            found[0].to_string(),
            "Secret \"git-token\" (volume \"git-auth\"): secret \"git-token\" not found"
        );
    }

    #[test]
    fn a_secret_without_the_key_counts_and_other_events_do_not() {
        let key = event(
            "u1",
            "FailedMount",
            "MountVolume.SetUp failed for volume \"git-auth\" : references non-existent secret key: token",
            "2026-12-07T10:00:00Z",
            "2026-12-07T10:00:10Z",
        );
        let found = missing_objects(&pod(), &[key]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].object, "git-token");
        assert_eq!(found[0].reported_for_secs, 10);
        let pulled = event(
            "u1",
            "Pulled",
            "Container image \"x\" already present on machine",
            "2026-12-07T10:00:00Z",
            "2026-12-07T10:00:00Z",
        );
        assert!(missing_objects(&pod(), &[pulled]).is_empty());
    }
}
