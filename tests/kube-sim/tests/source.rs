//! Slipway's source Job (CONTRACT §1: the BuildKit image running `sh -c SOURCE_SCRIPT ...`)
//! run for real by the simulated kubelet with the host's `sh` and `git`, against the test git
//! host (`kube_sim::git::GitServer`), through the API as the worker would use it.

use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube_sim::git::GitServer;
use kube_sim::{Delays, KubeSim};
use serde_json::{Value, json};
use slipway_k8s::source::SOURCE_SCRIPT;

const T: Duration = Duration::from_secs(60);
const NS: &str = "slipway-builds";
const IMAGE: &str = "moby/buildkit:v0.23.2-rootless";

const PACKAGE_JSON: &str =
    "{\n  \"name\": \"app\",\n  \"scripts\": {\"start\": \"node index.js\"}\n}\n";
const WEB_PACKAGE_JSON: &str = "{\"name\": \"web\"}\n";

/// The source Job of CONTRACT §1, built here from the contract (not from the product's
/// builder), so the simulator is tested against the contract itself.
fn source_job(name: &str, args: &[&str], git_secret: Option<&str>) -> Job {
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}})];
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    let mut env = vec![
        json!({"name": "HOME", "value": "/tmp"}),
        json!({"name": "GIT_TERMINAL_PROMPT", "value": "0"}),
    ];
    if let Some(secret) = git_secret {
        volumes.push(json!({"name": "git", "secret": {"secretName": secret,
            "items": [{"key": "token", "path": "token"}]}}));
        mounts.push(
            json!({"name": "git", "mountPath": "/run/secrets/slipway-git", "readOnly": true}),
        );
        env.push(
            json!({"name": "SLIPWAY_GIT_TOKEN_FILE", "value": "/run/secrets/slipway-git/token"}),
        );
    }
    let labels = json!({"app.kubernetes.io/managed-by": "slipway", "slipway.dev/kind": "build"});
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 300,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "volumes": volumes,
                    "containers": [{
                        "name": "source",
                        "image": IMAGE,
                        "command": ["sh", "-c", SOURCE_SCRIPT, "slipway-source"],
                        "args": args,
                        "env": env,
                        "volumeMounts": mounts,
                        "securityContext": {
                            "runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }],
                },
            },
        },
    }))
    .unwrap()
}

async fn sim(git: &GitServer) -> KubeSim {
    KubeSim::builder()
        .delays(Delays::zero())
        .namespace(NS)
        .trusted_ca(git.ca_pem_path())
        .start()
        .await
        .unwrap()
}

/// Creates the Job, waits for it to end, and returns (succeeded, the pod's exit code, the
/// pod's log read through the API).
async fn run_job(sim: &KubeSim, job: &Job) -> (bool, i64, Vec<String>) {
    let client = sim.client().unwrap();
    let name = job.metadata.name.clone().unwrap();
    Api::<Job>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), job)
        .await
        .unwrap();
    sim.wait_for_object("jobs", NS, &name, T, |j| {
        j["status"]["succeeded"] == 1 || j["status"]["failed"] == 1
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await
        .unwrap();
    let pod = &list.items[0];
    let pod_name = pod.metadata.name.clone().unwrap();
    let log = pods.logs(&pod_name, &LogParams::default()).await.unwrap();
    let status = serde_json::to_value(pod.status.clone().unwrap()).unwrap();
    let code = status
        .pointer("/containerStatuses/0/state/terminated/exitCode")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let succeeded = sim.object("jobs", NS, &name).unwrap()["status"]["succeeded"] == 1;
    (succeeded, code, log.lines().map(String::from).collect())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn source_lines(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.starts_with("slipway-source "))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_source_job_prints_the_commit_entries_and_files_of_a_repository() {
    let git = GitServer::start().await.unwrap();
    let commit = git
        .create_repo(
            "org/app.git",
            &[
                ("package.json", PACKAGE_JSON),
                ("README.md", "# app\n"),
                ("web/package.json", WEB_PACKAGE_JSON),
                ("web/src/index.js", "console.log(1)\n"),
            ],
        )
        .unwrap();
    // A later commit: the Job asks for the first one by id, which is no branch's tip.
    let second = git
        .commit("org/app.git", &[("package.json", "{}\n")])
        .unwrap();
    assert_ne!(commit, second);
    assert_eq!(commit.len(), 40);
    let sim = sim(&git).await;
    let url = git.url("org/app.git");

    let job = source_job(
        "slipway-source-root-a0",
        &[
            &url,
            &commit,
            "",
            "package.json",
            "missing.txt",
            "web/package.json",
        ],
        None,
    );
    let (ok, code, log) = run_job(&sim, &job).await;
    assert!(ok && code == 0, "{log:#?}");
    assert_eq!(
        source_lines(&log),
        [
            format!("slipway-source commit {commit}"),
            "slipway-source entry blob README.md".into(),
            "slipway-source entry blob package.json".into(),
            "slipway-source entry tree web".into(),
            format!("slipway-source file package.json {}", b64(PACKAGE_JSON)),
            format!(
                "slipway-source file web/package.json {}",
                b64(WEB_PACKAGE_JSON)
            ),
            "slipway-source end".into(),
        ],
        "{log:#?}"
    );
    // Nothing else was printed (git is quiet on success).
    assert_eq!(source_lines(&log).len(), log.len(), "{log:#?}");

    // A sub-directory.
    let job = source_job(
        "slipway-source-sub-a0",
        &[&url, &commit, "web", "package.json"],
        None,
    );
    let (ok, _, log) = run_job(&sim, &job).await;
    assert!(ok, "{log:#?}");
    assert_eq!(
        source_lines(&log),
        [
            format!("slipway-source commit {commit}"),
            "slipway-source entry blob package.json".into(),
            "slipway-source entry tree src".into(),
            format!("slipway-source file package.json {}", b64(WEB_PACKAGE_JSON)),
            "slipway-source end".into(),
        ]
    );
    // The client spoke protocol v2 (how an unadvertised commit can be fetched by id).
    assert!(
        git.requests()
            .iter()
            .any(|r| r.path.ends_with("/git-upload-pack")
                && r.git_protocol.as_deref() == Some("version=2")
                && r.status == 200),
        "{:#?}",
        git.requests()
    );
}

/// A wanted path ending in `/` is every file under that directory, recursively (a Helm
/// chart), and `./` the whole tree; a missing directory is nothing, not a failure.
#[tokio::test]
async fn a_directory_is_read_whole() {
    let git = GitServer::start().await.unwrap();
    let chart = "apiVersion: v2\nname: app\nversion: 0.1.0\n";
    let deployment = "kind: Deployment\n";
    let commit = git
        .create_repo(
            "org/charts.git",
            &[
                ("deploy/chart/Chart.yaml", chart),
                ("deploy/chart/templates/deployment.yaml", deployment),
                ("deploy/preview.yaml", "replicas: 1\n"),
                ("README.md", "# app\n"),
            ],
        )
        .unwrap();
    let sim = sim(&git).await;
    let url = git.url("org/charts.git");
    let job = source_job(
        "slipway-source-dir-a0",
        &[
            &url,
            &commit,
            "",
            "deploy/chart/",
            "deploy/preview.yaml",
            "nothing/",
        ],
        None,
    );
    let (ok, code, log) = run_job(&sim, &job).await;
    assert!(ok && code == 0, "{log:#?}");
    let files: Vec<String> = source_lines(&log)
        .into_iter()
        .filter(|l| l.starts_with("slipway-source file "))
        .collect();
    assert_eq!(
        files,
        [
            format!("slipway-source file deploy/chart/Chart.yaml {}", b64(chart)),
            format!(
                "slipway-source file deploy/chart/templates/deployment.yaml {}",
                b64(deployment)
            ),
            format!(
                "slipway-source file deploy/preview.yaml {}",
                b64("replicas: 1\n")
            ),
        ],
        "{log:#?}"
    );
    // The chart in a sub-directory given as the context, read as `./`.
    let job = source_job(
        "slipway-source-dir-sub-a0",
        &[&url, &commit, "deploy/chart", "./"],
        None,
    );
    let (ok, _, log) = run_job(&sim, &job).await;
    assert!(ok, "{log:#?}");
    let files: Vec<String> = source_lines(&log)
        .into_iter()
        .filter(|l| l.starts_with("slipway-source file "))
        .map(|l| l.split(' ').nth(2).unwrap().to_owned())
        .collect();
    assert_eq!(
        files,
        ["Chart.yaml", "templates/deployment.yaml"],
        "{log:#?}"
    );
}

/// The script's partial clone (`--filter=blob:none`, then the wanted files in one fetch) reads
/// the same from a git host that allows filters (GitHub, GitLab; the test host by default) and
/// from one that does not (`uploadpack.allowFilter` unset: git's server ignores the filter and
/// sends every object).
#[tokio::test]
async fn the_partial_clone_reads_the_same_with_or_without_filters_on_the_server() {
    let git = GitServer::start().await.unwrap();
    let files = [
        ("package.json", PACKAGE_JSON),
        ("Procfile", "web: npm start\n"),
        ("assets/big.txt", "x"),
    ];
    let commit = git.create_repo("org/filtered.git", &files).unwrap();
    let plain = git.create_repo("org/plain.git", &files).unwrap();
    assert_eq!(commit, plain, "the same tree and dates: the same commit");
    let status = std::process::Command::new("git")
        .env("GIT_DIR", git.root().join("org/plain.git"))
        .args(["config", "uploadpack.allowFilter", "false"])
        .status()
        .unwrap();
    assert!(status.success());
    let sim = sim(&git).await;
    let mut logs = Vec::new();
    for (name, repo) in [("filtered", "org/filtered.git"), ("plain", "org/plain.git")] {
        let job = source_job(
            &format!("slipway-source-{name}-a0"),
            &[
                &git.url(repo),
                &commit,
                "",
                "package.json",
                "Procfile",
                "go.mod",
            ],
            None,
        );
        let (ok, code, log) = run_job(&sim, &job).await;
        assert!(ok && code == 0, "{name}: {log:#?}");
        logs.push(source_lines(&log));
    }
    let posts = |repo: &str| {
        git.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == format!("/{repo}/git-upload-pack"))
            .count()
    };
    // With filters: the commit and its trees, then both files in one request. Without: one
    // request brings everything, and the files are already there.
    assert_eq!(posts("org/filtered.git"), 2, "{:#?}", git.requests());
    assert_eq!(posts("org/plain.git"), 1, "{:#?}", git.requests());
    assert_eq!(logs[0], logs[1]);
    assert_eq!(
        logs[0],
        [
            format!("slipway-source commit {commit}"),
            "slipway-source entry blob Procfile".into(),
            "slipway-source entry tree assets".into(),
            "slipway-source entry blob package.json".into(),
            format!("slipway-source file package.json {}", b64(PACKAGE_JSON)),
            format!("slipway-source file Procfile {}", b64("web: npm start\n")),
            "slipway-source end".into(),
        ]
    );
}

#[tokio::test]
async fn a_nonexistent_commit_fails_the_source_job_with_gits_message() {
    let git = GitServer::start().await.unwrap();
    git.create_repo("org/app.git", &[("package.json", PACKAGE_JSON)])
        .unwrap();
    let sim = sim(&git).await;
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let job = source_job(
        "slipway-source-missing-a0",
        &[&git.url("org/app.git"), missing, "", "package.json"],
        None,
    );
    let (ok, code, log) = run_job(&sim, &job).await;
    assert!(!ok);
    assert_eq!(code, 128, "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("not our ref {missing}"))),
        "{log:#?}"
    );
    assert!(source_lines(&log).is_empty(), "{log:#?}");
}

#[tokio::test]
async fn a_private_repository_needs_the_token_from_the_git_secret() {
    let git = GitServer::start_requiring_token("s3cret-token")
        .await
        .unwrap();
    let commit = git
        .create_repo("org/private.git", &[("package.json", PACKAGE_JSON)])
        .unwrap();
    let sim = sim(&git).await;
    let client = sim.client().unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "git-creds"},
        "stringData": {"token": "s3cret-token", "unused": "x"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client, NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let url = git.url("org/private.git");

    let with = source_job(
        "slipway-source-token-a0",
        &[&url, &commit, "", "package.json"],
        Some("git-creds"),
    );
    let (ok, _, log) = run_job(&sim, &with).await;
    assert!(ok, "{log:#?}");
    assert_eq!(
        source_lines(&log)[0],
        format!("slipway-source commit {commit}")
    );

    let without = source_job(
        "slipway-source-notoken-a0",
        &[&url, &commit, "", "package.json"],
        None,
    );
    let (ok, code, log) = run_job(&sim, &without).await;
    assert!(!ok);
    assert_eq!(code, 128, "{log:#?}");
    let port = git.addr().port();
    assert!(
        log.iter().any(|l| l
            == &format!(
                "fatal: could not read Username for 'https://localhost:{port}': terminal prompts disabled"
            )),
        "{log:#?}"
    );
    assert!(
        git.requests()
            .iter()
            .any(|r| !r.authorized && r.status == 401)
    );
}

/// A host-run container is killed when its pod is deleted, and at the pod's
/// `activeDeadlineSeconds` (the pod then fails with reason DeadlineExceeded).
#[tokio::test]
async fn host_runs_end_with_their_pod() {
    let git = GitServer::start().await.unwrap();
    let sim = sim(&git).await;
    let pods: Api<Pod> = Api::namespaced(sim.client().unwrap(), NS);
    let marker = tempfile::tempdir().unwrap();
    let pod = |name: &str, deadline: Option<i64>| -> Pod {
        let mut spec = json!({"restartPolicy": "Never",
            "containers": [{"name": "c", "image": IMAGE,
                "command": ["sh", "-c", "echo started; sleep 20; touch \"$1/$2\"", "x"],
                "args": [marker.path().display().to_string(), name],
                "securityContext": {"runAsUser": 1000}}]});
        if let Some(d) = deadline {
            spec["activeDeadlineSeconds"] = json!(d);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    pods.create(&PostParams::default(), &pod("deleted", None))
        .await
        .unwrap();
    // 100 s at Delays::zero()'s 0.01 scale: 1 s.
    pods.create(&PostParams::default(), &pod("deadline", Some(100)))
        .await
        .unwrap();
    sim.wait_for("both started", T, |_| {
        sim.pod_logs(NS, "deleted", None) == ["started"]
            && sim.pod_logs(NS, "deadline", None) == ["started"]
    })
    .await
    .ok();
    assert_eq!(sim.pod_logs(NS, "deleted", None), ["started"]);
    pods.delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    let p = sim
        .wait_for_object("pods", NS, "deadline", T, |p| {
            p["status"]["phase"] == "Failed"
        })
        .await
        .unwrap();
    assert_eq!(p["status"]["reason"], "DeadlineExceeded");
    assert_eq!(
        p["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    assert!(sim.objects("events", Some(NS)).iter().any(|e| {
        e["reason"] == "DeadlineExceeded" && e["involvedObject"]["name"] == "deadline"
    }));
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    // Neither process got past its sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(std::fs::read_dir(marker.path()).unwrap().count(), 0);
}

/// The kubelet's checks still come first: a root image under runAsNonRoot never runs, and a
/// missing git Secret keeps the pod in ContainerCreating with FailedMount Events.
#[tokio::test]
async fn the_kubelets_checks_come_before_a_host_run() {
    let git = GitServer::start().await.unwrap();
    let commit = git
        .create_repo("org/app.git", &[("package.json", PACKAGE_JSON)])
        .unwrap();
    let sim = sim(&git).await;
    let url = git.url("org/app.git");
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client, NS);

    let mut root = source_job("slipway-source-root-user-a0", &[&url, &commit, ""], None);
    let mut v = serde_json::to_value(&root).unwrap();
    v["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("runAsUser");
    root = serde_json::from_value(v).unwrap();
    jobs.create(&PostParams::default(), &root).await.unwrap();
    let no_secret = source_job(
        "slipway-source-no-secret-a0",
        &[&url, &commit, ""],
        Some("absent"),
    );
    jobs.create(&PostParams::default(), &no_secret)
        .await
        .unwrap();

    let waiting = |job: &str| {
        sim.objects("pods", Some(NS)).into_iter().find(|p| {
            p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == job
                && p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].is_string()
        })
    };
    sim.wait_for("config error", T, |_| {
        waiting("slipway-source-root-user-a0").is_some_and(|p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CreateContainerConfigError"
        })
    })
    .await
    .unwrap();
    sim.wait_for("failed mount", T, |_| {
        sim.objects("events", Some(NS)).iter().any(|e| {
            e["reason"] == "FailedMount"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("secret \"absent\" not found"))
        })
    })
    .await
    .unwrap();
    for job in ["slipway-source-root-user-a0", "slipway-source-no-secret-a0"] {
        let pod = waiting(job).unwrap();
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(sim.pod_logs(NS, name, None).is_empty(), "{job}");
        assert_eq!(pod["status"]["phase"], "Pending", "{job}");
    }
}
