//! Previews of repositories without a Dockerfile (`source: auto`), through the whole of
//! Slipway: real git repositories created here and served over HTTPS smart HTTP
//! (`kube_sim::git::GitServer`), the API, the build worker's source Job (run by the simulated
//! kubelet with the host's git), the generated Dockerfile built by the simulated BuildKit, the
//! launch worker, Postgres and Redis. A Node.js app and a Python app each reach ready; a
//! compose app (web built from its Dockerfile, postgres and redis from their images) reaches
//! ready with every service, and a compose field that cannot run is refused naming it; a Helm
//! chart is rendered by the pinned Helm with the built image and reaches ready, and a chart
//! holding a cluster-scoped object is refused naming it.

use kube_sim::git::GitServer;
use serde_json::{Value, json};
use slipway_e2e::{Stack, TOKEN};
use std::time::Duration;

async fn get(stack: &Stack, path: &str) -> Value {
    stack
        .http
        .get(stack.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Enqueue an `auto` pipeline and wait for its preview: (the build job, the preview).
async fn preview_of(
    stack: &Stack,
    key: &str,
    url: &str,
    commit: &str,
    port: u16,
) -> (Value, Value) {
    pipeline_preview(stack, key, url, commit, json!({"type": "auto"}), port).await
}

/// Enqueue a pipeline of `source` and wait for its preview: (the first job, the preview).
async fn pipeline_preview(
    stack: &Stack,
    key: &str,
    url: &str,
    commit: &str,
    source: Value,
    port: u16,
) -> (Value, Value) {
    let (first, outcome) = pipeline_outcome(
        stack,
        json!({"preview": key, "repository": url, "commit": commit,
               "source": source, "launch": {"port": port}}),
    )
    .await;
    let preview = outcome.unwrap_or_else(|failed| panic!("the launch failed: {failed}"));
    (get(stack, &format!("/v1/jobs/{first}")).await, preview)
}

fn urlencoding(s: &str) -> String {
    s.replace('/', "%2F").replace('#', "%23")
}

async fn log_text(stack: &Stack, job: &str) -> String {
    stack
        .http
        .get(stack.url(&format!("/v1/jobs/{job}/logs?limit=10000")))
        .bearer_auth(TOKEN)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_node_app_and_a_python_app_without_dockerfiles_are_previewed() {
    let git = GitServer::start().await.unwrap();
    let node = git
        .create_repo(
            "org/node-app.git",
            &[
                (
                    "package.json",
                    r#"{"name": "hello", "scripts": {"start": "node server.js"}, "dependencies": {"express": "4.21.1"}}"#,
                ),
                ("package-lock.json", "{\"lockfileVersion\": 3}"),
                (
                    "server.js",
                    "require('express')().get('/', (q, r) => r.send('hi')).listen(process.env.PORT)\n",
                ),
            ],
        )
        .unwrap();
    let python = git
        .create_repo(
            "org/py-app.git",
            &[
                ("requirements.txt", "flask==3.0.3\ngunicorn==23.0.0\n"),
                (
                    "app.py",
                    "from flask import Flask\napp = Flask(__name__)\n@app.get('/')\ndef hi():\n    return 'hi'\n",
                ),
            ],
        )
        .unwrap();
    let stack = Stack::start_with(slipway_e2e::Options {
        git_ca: Some(git.ca_pem_path()),
        ..Default::default()
    })
    .await
    .expect("stack");

    let (build, preview) = preview_of(
        &stack,
        "org/node-app#1",
        &git.url("org/node-app.git"),
        &node,
        3000,
    )
    .await;
    assert_eq!(build["result"]["detected"]["stack"], "Node.js", "{build}");
    assert_eq!(build["result"]["detected"]["start"], "npm run start");
    assert_eq!(preview["commit"], node.as_str());
    assert!(
        preview["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http")),
        "{preview}"
    );
    let log = log_text(&stack, build["id"].as_str().unwrap()).await;
    assert!(
        log.contains("[slipway] source auto: detected Node.js"),
        "{log}"
    );
    assert!(log.contains("[slipway]   | ENV PORT=3000"), "{log}");
    assert!(
        log.contains("[slipway]   | CMD [\"npm\", \"run\", \"start\"]"),
        "{log}"
    );
    // The simulated BuildKit read the generated Dockerfile: its steps are in the log.
    assert!(
        log.lines()
            .any(|l| l.starts_with('#') && l.contains("RUN npm ci")),
        "{log}"
    );

    let (build, preview) = preview_of(
        &stack,
        "org/py-app#1",
        &git.url("org/py-app.git"),
        &python,
        8000,
    )
    .await;
    assert_eq!(build["result"]["detected"]["stack"], "Python", "{build}");
    assert_eq!(
        build["result"]["detected"]["start"],
        "exec gunicorn --bind \"0.0.0.0:$PORT\" app:app"
    );
    assert_eq!(preview["status"], "ready");
    let log = log_text(&stack, build["id"].as_str().unwrap()).await;
    assert!(
        log.lines().any(|l| l.starts_with('#')
            && l.contains("RUN pip install --no-cache-dir -r requirements.txt")),
        "{log}"
    );
    // Both previews run the images their builds pushed.
    let previews = get(&stack, "/v1/previews").await;
    assert_eq!(previews["items"].as_array().unwrap().len(), 2, "{previews}");
    stack.stop().await.unwrap();
}

/// The files of an example under `examples/` (docs/sources.md's worked examples), at their
/// paths in this repository.
fn example(dir: &str) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    let mut stack = vec![root.join("examples").join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                files.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn a_compose_app_is_previewed_with_every_service_and_a_bad_one_refused() {
    let git = GitServer::start().await.unwrap();
    let files = example("compose-shop");
    let listed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let shop = git.create_repo("org/shop.git", &listed).unwrap();
    let bad = git
        .create_repo(
            "org/bad.git",
            &[(
                "docker-compose.yml",
                "services:\n  web:\n    image: nginx:1.27\n    network_mode: host\n",
            )],
        )
        .unwrap();
    let stack = Stack::start_with(slipway_e2e::Options {
        git_ca: Some(git.ca_pem_path()),
        ..Default::default()
    })
    .await
    .expect("stack");

    let (first, preview) = pipeline_preview(
        &stack,
        "org/shop#4",
        &git.url("org/shop.git"),
        &shop,
        json!({"type": "compose", "service": "web",
               "file": "examples/compose-shop/compose.yaml"}),
        8080,
    )
    .await;
    assert_eq!(first["result"]["compose"]["exposed"], "web", "{first}");
    assert_eq!(first["result"]["compose"]["port"], 3000, "{first}");
    let web_build = first["result"]["builds"]["web"].as_str().unwrap();
    let web_build = get(&stack, &format!("/v1/jobs/{web_build}")).await;
    assert_eq!(web_build["state"], "succeeded", "{web_build}");
    assert_eq!(
        web_build["request"]["context"], "examples/compose-shop/web",
        "the context is relative to the compose file: {web_build}"
    );
    assert_eq!(preview["commit"], shop.as_str());
    let image = preview["image"].as_str().unwrap();
    assert!(
        image.contains("/org/shop/web:"),
        "the preview runs web's image: {image}"
    );
    assert!(
        preview["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http")),
        "{preview}"
    );
    // Every service is a workload and a Service of its name in the preview's namespace; the
    // URL routes to web.
    let ns = preview["namespace"].as_str().unwrap();
    for (kind, name) in [
        ("deployments", "web"),
        ("deployments", "cache"),
        ("statefulsets", "db"),
        ("services", "web"),
        ("services", "db"),
        ("services", "cache"),
    ] {
        assert!(
            stack.sim.object(kind, ns, name).is_some(),
            "{kind}/{name} in {ns}"
        );
    }
    let ingresses = stack.sim.objects("ingresses", Some(ns));
    let backend = &ingresses[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "web", "{backend}");
    assert_eq!(backend["port"]["number"], 3000, "{backend}");
    assert_eq!(preview["pods"].as_array().unwrap().len(), 3, "{preview}");

    // A service that would share the node's network: the pipeline fails for good, naming it,
    // and no preview is made.
    let resp = stack
        .http
        .post(stack.url("/v1/pipelines"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"preview": "org/bad#1", "repository": git.url("org/bad.git"),
                      "commit": bad, "source": {"type": "compose", "service": "web"}}),
        )
        .send()
        .await
        .unwrap();
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let job = get(&stack, &format!("/v1/jobs/{id}")).await;
        if job["state"] == "failed" {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("services.web.network_mode"), "{error}");
    let log = log_text(&stack, id).await;
    assert!(log.contains("services.web.network_mode"), "{log}");
    stack.stop().await.unwrap();
}

/// Post a pipeline and wait for its preview to be ready, or for its launch to fail: its first
/// job's id, and the preview (ready) or the failed launch job. A failed build fails the test.
async fn pipeline_outcome(stack: &Stack, body: Value) -> (String, Result<Value, Value>) {
    let key = body["preview"].as_str().unwrap().to_owned();
    let resp = stack
        .http
        .post(stack.url("/v1/pipelines"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let first: Value = resp.json().await.unwrap();
    let first = first["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let preview = get(stack, &format!("/v1/previews/{}", urlencoding(&key))).await;
        if preview["status"] == "ready" {
            return (first, Ok(preview));
        }
        let launches = get(
            stack,
            &format!("/v1/jobs?preview={}&kind=launch", urlencoding(&key)),
        )
        .await;
        if let Some(failed) = launches["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["state"] == "failed")
        {
            return (first, Err(failed.clone()));
        }
        let job = get(stack, &format!("/v1/jobs/{first}")).await;
        assert!(
            !matches!(job["state"].as_str(), Some("failed" | "cancelled")),
            "the build ended {}: {job}",
            job["state"]
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key}: neither ready nor failed: {preview}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_helm_chart_is_previewed_with_the_built_image_and_a_cluster_scoped_one_refused() {
    if slipway_shared::testing::helm().is_none() {
        return;
    }
    let git = GitServer::start().await.unwrap();
    let mut files = example("helm-app");
    let commit = {
        let listed: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        git.create_repo("org/app.git", &listed).unwrap()
    };
    // The same chart with a ClusterRole beside its objects.
    files.push((
        "examples/helm-app/chart/templates/clusterrole.yaml".into(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: app-reader\nrules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get]\n".into(),
    ));
    let bad = {
        let listed: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        git.create_repo("org/bad.git", &listed).unwrap()
    };
    let stack = Stack::start_with(slipway_e2e::Options {
        git_ca: Some(git.ca_pem_path()),
        ..Default::default()
    })
    .await
    .expect("stack");
    let source = json!({"type": "helm", "chart": "examples/helm-app/chart", "service": "web",
                        "port": 8080, "values": ["examples/helm-app/preview-values.yaml"]});
    let preview = pipeline_outcome(
        &stack,
        json!({"preview": "org/app#2", "repository": git.url("org/app.git"), "commit": commit,
               "source": source, "build": {"context": "examples/helm-app"}}),
    )
    .await
    .1
    .unwrap_or_else(|failed| panic!("the Helm launch failed: {failed}"));
    assert_eq!(preview["commit"], commit.as_str());
    let ns = preview["namespace"].as_str().unwrap();
    // The chart's objects, with the built image and the preview's values.
    let web = stack
        .sim
        .object("deployments", ns, "web")
        .expect("Deployment web");
    let image = web["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.contains("/org/app:") && image.contains(&format!("{commit}@sha256:")),
        "the pods run the built image, by digest: {image}"
    );
    assert_eq!(preview["image"].as_str().unwrap(), image, "{preview}");
    assert_eq!(
        web["metadata"]["labels"]["app.kubernetes.io/managed-by"], "slipway",
        "{web}"
    );
    let config = stack.sim.object("configmaps", ns, "web-config").unwrap();
    assert_eq!(config["data"]["MESSAGE"], "hello from a Slipway preview");
    assert!(stack.sim.object("services", ns, "web").is_some());
    let ingresses = stack.sim.objects("ingresses", Some(ns));
    let backend = &ingresses[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(
        (&backend["name"], &backend["port"]["number"]),
        (&json!("web"), &json!(8080))
    );

    // A ClusterRole in the chart: the launch fails for good, naming it, and applies nothing of
    // the chart.
    let failed = pipeline_outcome(
        &stack,
        json!({"preview": "org/bad#1", "repository": git.url("org/bad.git"), "commit": bad,
               "source": source, "build": {"context": "examples/helm-app"}}),
    )
    .await
    .1
    .expect_err("a chart with a ClusterRole is refused");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("ClusterRole") && error.contains("app-reader"),
        "{error}"
    );
    assert_eq!(
        failed["attempts"].as_array().map(Vec::len),
        Some(1),
        "permanent: {failed}"
    );
    let bad_ns = slipway_core::naming::preview_namespace("org/bad#1");
    assert!(stack.sim.object("deployments", &bad_ns, "web").is_none());
    assert!(
        stack
            .sim
            .object("configmaps", &bad_ns, "web-config")
            .is_none()
    );
    stack.stop().await.unwrap();
}
