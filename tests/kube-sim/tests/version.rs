//! The API version setting: `/version`, the fields an older apiserver drops (with a `Warning`
//! header, a 400 under `fieldValidation=Strict`, a 400 for server-side apply), and what that
//! means for a rootless BuildKit pod on a node with AppArmor.

use std::time::Duration;

use http_body_util::BodyExt as _;
use kube_sim::{Delays, KubeSim, KubeVersion};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Vec<String>, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        warnings,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A rootless BuildKit Job unconfined by the 1.30 fields only (`annotation`: also by the
/// pre-1.30 annotation).
fn build_job(name: &str, annotation: bool) -> Value {
    let annotations = if annotation {
        json!({"container.apparmor.security.beta.kubernetes.io/buildkit": "unconfined"})
    } else {
        json!({})
    };
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"annotations": annotations},
            "spec": {"restartPolicy": "Never",
                "securityContext": {"runAsUser": 1000, "appArmorProfile": {"type": "Unconfined"}},
                "containers": [{"name": "buildkit", "image": "moby/buildkit:v0.23.2-rootless",
                    "command": ["buildctl-daemonless.sh"],
                    "args": ["build", "--frontend=dockerfile.v0", "--opt", "context=https://github.com/org/app.git#main"],
                    "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                    "terminationMessagePolicy": "FallbackToLogsOnError"}]}}}})
}

const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

#[tokio::test]
async fn a_1_29_apiserver_drops_apparmor_fields_with_a_warning() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .kube_version("1.29".parse::<KubeVersion>().unwrap())
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "29")
    );

    let (status, warnings, job) = raw(
        &client,
        "POST",
        JOBS,
        "application/json",
        Some(build_job("fields", false)),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        warnings,
        [
            r#"299 - "unknown field \"spec.template.spec.securityContext.appArmorProfile\"""#,
            r#"299 - "unknown field \"spec.template.spec.containers[0].securityContext.appArmorProfile\"""#,
        ]
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["securityContext"],
        json!({"runAsUser": 1000})
    );

    // A node with AppArmor confines the container: rootlesskit cannot start buildkitd, and
    // FallbackToLogsOnError makes the log tail the termination message.
    let failed = sim
        .wait_for_object("jobs", "default", "fields", T, |j| {
            j["status"]["failed"] == 1
        })
        .await;
    assert!(failed.is_ok());
    let pod = sim
        .objects("pods", Some("default"))
        .into_iter()
        .find(|p| p["metadata"]["labels"]["job-name"] == "fields")
        .unwrap();
    let message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with(
            "could not connect to unix:///run/user/1000/buildkit/buildkitd.sock after 10 trials\n"
        ) && message.contains("failed to share mount point: /: permission denied"),
        "{message}"
    );

    // With the annotation as well, the same Job builds.
    let (status, _, _) = raw(
        &client,
        "POST",
        JOBS,
        "application/json",
        Some(build_job("both", true)),
    )
    .await;
    assert_eq!(status, 201);
    sim.wait_for_object("jobs", "default", "both", T, |j| {
        j["status"]["succeeded"] == 1
    })
    .await
    .unwrap();

    // Strict field validation (kubectl's default) and server-side apply refuse instead.
    let (status, _, body) = raw(
        &client,
        "POST",
        &format!("{JOBS}?fieldValidation=Strict"),
        "application/json",
        Some(build_job("strict", true)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Job in version \"v1\" cannot be handled as a Job: strict decoding error: unknown field \"spec.template.spec.securityContext.appArmorProfile\", unknown field \"spec.template.spec.containers[0].securityContext.appArmorProfile\""
    );
    let (status, _, body) = raw(
        &client,
        "PATCH",
        &format!("{JOBS}/applied?fieldManager=t"),
        "application/apply-patch+yaml",
        Some(build_job("applied", true)),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with(".spec.template.spec.containers[name=\"buildkit\"].securityContext.appArmorProfile: field not declared in schema"),
        "{body}"
    );
}

#[tokio::test]
async fn the_default_version_is_1_33_and_keeps_the_fields() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "33");
    let (status, warnings, job) = raw(
        &client,
        "POST",
        JOBS,
        "application/json",
        Some(build_job("fields", false)),
    )
    .await;
    assert_eq!(status, 201);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        job["spec"]["template"]["spec"]["securityContext"]["appArmorProfile"],
        json!({"type": "Unconfined"})
    );
    sim.wait_for_object("jobs", "default", "fields", T, |j| {
        j["status"]["succeeded"] == 1
    })
    .await
    .unwrap();
}
