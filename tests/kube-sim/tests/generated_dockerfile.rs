//! The build Job of CONTRACT §2: the Dockerfile in a pod annotation, projected by a downwardAPI
//! volume and given to buildctl as the local named by `dockerfilekey`, while the context stays
//! the git URL. Through the API, with the simulator's default BuildKit model.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube_sim::{Delays, KubeSim};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const NS: &str = "slipway-builds";
const WRAPPER: &str =
    "buildctl-daemonless.sh \"$@\" && cat /tmp/meta/metadata.json > /dev/termination-log";
const DOCKERFILE: &str = "FROM node:22-slim\nCOPY . .\nRUN npm ci\nCMD [\"node\", \"index.js\"]\n";

/// The build Job pinned in crates/k8s/src/build.rs (`job_spec_is_pinned`) with CONTRACT §2's
/// additions: the annotation, the `dockerfile` downwardAPI volume and the buildctl flags.
fn build_job(name: &str, dockerfile: &str, local: bool) -> Job {
    let mut args = vec![
        "build",
        "--progress=plain",
        "--frontend=dockerfile.v0",
        "--opt",
        "context=https://github.com/org/app.git#0123456789abcdef0123456789abcdef01234567",
        "--opt",
        "filename=Dockerfile",
        "--opt",
        "dockerfilekey=dockerfile",
    ];
    if local {
        args.extend(["--local", "dockerfile=/run/slipway/dockerfile"]);
    }
    args.extend([
        "--output",
        "type=image,name=registry.local:5000/org/app:0123456,push=true,registry.insecure=true",
        "--metadata-file=/tmp/meta/metadata.json",
    ]);
    let unconfined = json!({"seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"}});
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS,
            "labels": {"app.kubernetes.io/managed-by": "slipway"}},
        "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": 1800,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/managed-by": "slipway"},
                    "annotations": {
                        "container.apparmor.security.beta.kubernetes.io/buildkit": "unconfined",
                        "slipway.dev/dockerfile": dockerfile}},
                "spec": {
                    "restartPolicy": "Never", "automountServiceAccountToken": false,
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                        "seccompProfile": unconfined["seccompProfile"],
                        "appArmorProfile": unconfined["appArmorProfile"]},
                    "containers": [{
                        "name": "buildkit", "image": "moby/buildkit:v0.23.2-rootless",
                        "command": ["sh", "-c", WRAPPER, "slipway-build"],
                        "args": args,
                        "env": [{"name": "BUILDKITD_FLAGS", "value": "--oci-worker-no-process-sandbox"}],
                        "volumeMounts": [
                            {"name": "buildkitd", "mountPath": "/home/user/.local/share/buildkit"},
                            {"name": "meta", "mountPath": "/tmp/meta"},
                            {"name": "dockerfile", "mountPath": "/run/slipway/dockerfile", "readOnly": true},
                        ],
                        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "privileged": false,
                            "seccompProfile": unconfined["seccompProfile"],
                            "appArmorProfile": unconfined["appArmorProfile"]},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                    "volumes": [
                        {"name": "buildkitd", "emptyDir": {"sizeLimit": "20Gi"}},
                        {"name": "meta", "emptyDir": {"sizeLimit": "1Mi"}},
                        {"name": "dockerfile", "downwardAPI": {"items": [{"path": "Dockerfile",
                            "fieldRef": {"fieldPath": "metadata.annotations['slipway.dev/dockerfile']"}}]}},
                    ],
                },
            },
        },
    }))
    .unwrap()
}

async fn run(sim: &KubeSim, job: &Job) -> (bool, Value, Vec<String>) {
    let client = sim.client().unwrap();
    let name = job.metadata.name.clone().unwrap();
    Api::<Job>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), job)
        .await
        .unwrap();
    let done = sim
        .wait_for_object("jobs", NS, &name, T, |j| {
            j["status"]["succeeded"] == 1 || j["status"]["failed"] == 1
        })
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let pod = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await
        .unwrap()
        .items
        .remove(0);
    let log = pods
        .logs(pod.metadata.name.as_deref().unwrap(), &LogParams::default())
        .await
        .unwrap();
    let status = serde_json::to_value(pod.status.unwrap()).unwrap();
    (
        done["status"]["succeeded"] == 1,
        status["containerStatuses"][0]["state"]["terminated"].clone(),
        log.lines().map(String::from).collect(),
    )
}

#[tokio::test]
async fn a_generated_dockerfile_reaches_buildkit_through_the_downward_api() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .namespace(NS)
        .start()
        .await
        .unwrap();
    let (ok, terminated, log) =
        run(&sim, &build_job("slipway-build-gen-a1", DOCKERFILE, true)).await;
    assert!(ok, "{log:#?}");
    let node = "docker.io/library/node:22-slim";
    let headers: Vec<&str> = log
        .iter()
        .filter(|l| l.starts_with('#') && l.contains(" ["))
        .map(String::as_str)
        .collect();
    assert_eq!(
        headers,
        [
            "#1 [internal] load build definition from Dockerfile".to_string(),
            format!("#2 [internal] load metadata for {node}"),
            format!("#3 [1/3] FROM {node}@{}", kube_sim::dockerfile::image_digest(node)),
            "#4 [internal] load git source https://github.com/org/app.git#0123456789abcdef0123456789abcdef01234567".into(),
            "#5 [2/3] COPY . .".into(),
            "#6 [3/3] RUN npm ci".into(),
        ],
        "{log:#?}"
    );
    assert_eq!(
        log[1],
        format!("#1 transferring dockerfile: {}B done", DOCKERFILE.len())
    );
    assert_eq!(terminated["exitCode"], 0);
    let meta: Value = serde_json::from_str(terminated["message"].as_str().unwrap()).unwrap();
    assert_eq!(meta["image.name"], "registry.local:5000/org/app:0123456");
}

#[tokio::test]
async fn a_dockerfilekey_without_its_local_fails_the_build() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .namespace(NS)
        .start()
        .await
        .unwrap();
    let (ok, terminated, log) = run(
        &sim,
        &build_job("slipway-build-nolocal-a1", DOCKERFILE, false),
    )
    .await;
    assert!(!ok);
    assert_eq!(terminated["exitCode"], 1);
    assert_eq!(
        log.last().unwrap(),
        "error: failed to solve: failed to resolve dockerfile: no access allowed to dir \"dockerfile\""
    );
    // FallbackToLogsOnError: the log's tail is the termination message.
    assert!(
        terminated["message"]
            .as_str()
            .unwrap()
            .contains("no access allowed to dir")
    );

    // An empty annotation: an empty Dockerfile.
    let (ok, _, log) = run(&sim, &build_job("slipway-build-empty-a1", "", true)).await;
    assert!(!ok);
    assert_eq!(
        log.last().unwrap(),
        "error: failed to solve: the Dockerfile cannot be empty"
    );
}

/// A Dockerfile annotation counts against the API server's 256 KiB limit on a pod template's
/// annotations: a Job whose template carries more is refused with a 422.
#[tokio::test]
async fn a_dockerfile_annotation_over_256_kib_is_refused() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .namespace(NS)
        .start()
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(sim.client().unwrap(), NS);
    let big = format!("FROM node:22\nRUN echo {}\n", "x".repeat(256 * 1024));
    let err = jobs
        .create(
            &PostParams::default(),
            &build_job("slipway-build-big-a1", &big, true),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains(
            "spec.template.metadata.annotations: Too long: may not be more than 262144 bytes"
        ),
        "{}",
        status.message
    );
    // Just under the limit (with the AppArmor annotation) is accepted.
    let fits = format!("FROM node:22\nRUN echo {}\n", "x".repeat(200 * 1024));
    jobs.create(
        &PostParams::default(),
        &build_job("slipway-build-fits-a1", &fits, true),
    )
    .await
    .unwrap();
}

/// The downwardAPI volume's items are validated as the apiserver does: a misspelt field path
/// or an absolute item path is a 422, not an empty Dockerfile at run time.
#[tokio::test]
async fn downward_api_items_are_validated() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .namespace(NS)
        .start()
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(sim.client().unwrap(), NS);
    let with_item = |name: &str, item: Value| {
        let mut v = serde_json::to_value(build_job(name, DOCKERFILE, true)).unwrap();
        v["spec"]["template"]["spec"]["volumes"][2]["downwardAPI"]["items"][0] = item;
        serde_json::from_value::<Job>(v).unwrap()
    };
    for (name, item, cause) in [
        (
            "typo",
            json!({"path": "Dockerfile", "fieldRef": {"fieldPath": "metadata.annotation['slipway.dev/dockerfile']"}}),
            "spec.template.spec.volumes[2].downwardAPI.items[0].fieldRef.fieldPath: Invalid value: \"metadata.annotation['slipway.dev/dockerfile']\": error converting fieldPath: field label does not support subscript: metadata.annotation['slipway.dev/dockerfile']",
        ),
        (
            "env-only",
            json!({"path": "Dockerfile", "fieldRef": {"fieldPath": "status.podIP"}}),
            "spec.template.spec.volumes[2].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: \"status.podIP\": supported values: \"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\"",
        ),
        (
            "unknown",
            json!({"path": "Dockerfile", "fieldRef": {"fieldPath": "metadata.generateName"}}),
            "spec.template.spec.volumes[2].downwardAPI.items[0].fieldRef.fieldPath: Invalid value: \"metadata.generateName\": error converting fieldPath: field label not supported: metadata.generateName",
        ),
        (
            "absolute",
            json!({"path": "/Dockerfile", "fieldRef": {"fieldPath": "metadata.name"}}),
            "spec.template.spec.volumes[2].downwardAPI.items[0].path: Invalid value: \"/Dockerfile\": must be a relative path",
        ),
    ] {
        let err = jobs
            .create(
                &PostParams::default(),
                &with_item(&format!("slipway-build-{name}"), item),
            )
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{err:?}")
        };
        assert_eq!(status.code, 422, "{name}");
        assert!(status.message.contains(cause), "{name}: {}", status.message);
    }
}
