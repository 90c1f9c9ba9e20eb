//! Previews of repositories without a Dockerfile (`source: auto`), through the whole of
//! Slipway: real git repositories created here and served over HTTPS smart HTTP
//! (`kube_sim::git::GitServer`), the API, the build worker's source Job (run by the simulated
//! kubelet with the host's git), the generated Dockerfile built by the simulated BuildKit, the
//! launch worker, Postgres and Redis. A Node.js app and a Python app each reach ready.

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
    let resp = stack
        .http
        .post(stack.url("/v1/pipelines"))
        .bearer_auth(TOKEN)
        .json(&json!({"preview": key, "repository": url, "commit": commit,
                      "source": {"type": "auto"}, "launch": {"port": port}}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let build: Value = resp.json().await.unwrap();
    assert_eq!(status.as_u16(), 202, "{build}");
    let id = build["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/previews/{}", urlencoding(key));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let preview = get(stack, &path).await;
        if preview["status"] == "ready" {
            return (get(stack, &format!("/v1/jobs/{id}")).await, preview);
        }
        let job = get(stack, &format!("/v1/jobs/{id}")).await;
        assert!(
            !matches!(job["state"].as_str(), Some("failed" | "cancelled")),
            "the build ended {}: {job}",
            job["state"]
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} not ready: {preview} {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
