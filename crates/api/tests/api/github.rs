//! GitHub pull-request previews through the webhook: signatures, redeliveries, each action,
//! label mode, fork policy, and a burst of pull requests. Payloads follow GitHub's documented
//! shapes (`fake_github::payloads`).

use crate::helpers::*;
use fake_github::payloads::{self, PullRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn deliver(
    app: &TestApp,
    body: &str,
    headers: Vec<(&'static str, String)>,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/webhooks/github", app.base))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn send(app: &TestApp, event: &str, body: &str) -> (StatusCode, Value) {
    deliver(
        app,
        body,
        payloads::headers(WEBHOOK_SECRET.as_bytes(), event, body.as_bytes()),
    )
    .await
}

async fn configure(app: &TestApp, repo: &str, settings: Value) {
    let resp = app
        .http
        .put(format!("{}/v1/repositories/{repo}", app.base))
        .bearer_auth(ADMIN)
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
}

fn pr(action: &str, number: u64, sha: &str) -> PullRequest {
    PullRequest::new(action, "acme", "shop", number, sha)
}

const SHA2: &str = "89abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn signatures_are_checked_before_anything_is_recorded() {
    let app = spawn_app().await;
    configure(&app, "acme/shop", json!({})).await;
    let body = pr("opened", 1, SHA).body();
    let good = payloads::headers(WEBHOOK_SECRET.as_bytes(), "pull_request", body.as_bytes());
    let without = |name: &str| {
        good.iter()
            .filter(|(k, _)| *k != name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut wrong = without("x-hub-signature-256");
    wrong.push((
        "x-hub-signature-256",
        payloads::signature(b"another secret", body.as_bytes()),
    ));
    let (s1, v1) = deliver(&app, &body, without("x-hub-signature-256")).await;
    let (s2, _) = deliver(&app, &body, wrong).await;
    let (s3, _) = deliver(
        &app,
        &body.replace("\"number\":1", "\"number\":2"),
        good.clone(),
    )
    .await;
    assert_eq!([s1, s2, s3], [StatusCode::UNAUTHORIZED; 3], "{v1}");
    assert_eq!(v1["error"]["code"], "invalid_signature");
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        0,
        "nothing recorded: {jobs}"
    );
    // The same delivery, correctly signed, is accepted once; its redelivery is ignored.
    let (s, v) = deliver(&app, &body, good.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "pipeline");
    let (s, v) = deliver(&app, &body, good).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
}

#[tokio::test]
async fn pull_request_actions_drive_pipelines_and_cleanups() {
    let app = spawn_app().await;
    let (s, v) = send(&app, "ping", &payloads::ping("acme", "shop")).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("pong")));
    // Unknown repositories are ignored.
    let (s, v) = send(&app, "pull_request", &pr("opened", 7, SHA).body()).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored")),
        "{v}"
    );

    configure(
        &app,
        "acme/shop",
        json!({"launch": {"port": 3000, "read_only_root_filesystem": true},
               "build": {"dockerfile": "web.Dockerfile"}}),
    )
    .await;
    let (_, opened) = send(&app, "pull_request", &pr("opened", 7, SHA).body()).await;
    assert_eq!(opened["status"], "pipeline", "{opened}");
    let build = &opened["job"];
    assert_eq!(build["preview"], "acme/shop#7");
    assert_eq!(build["commit"], SHA);
    assert_eq!(build["request"]["dockerfile"], "web.Dockerfile");
    assert_eq!(build["request"]["then_launch"]["port"], 3000);
    // The repository's hardening is carried into the webhook's pipeline.
    assert_eq!(
        build["request"]["then_launch"]["read_only_root_filesystem"],
        true
    );

    // A push supersedes the running pipeline.
    let (_, pushed) = send(&app, "pull_request", &pr("synchronize", 7, SHA2).body()).await;
    assert_eq!(pushed["status"], "pipeline");
    let (_, old) = app
        .get(&format!("/v1/jobs/{}", build["id"].as_str().unwrap()))
        .await;
    assert_eq!(old["state"], "superseded");
    // Reopening at the same commit is the same pipeline (idempotent per preview and sha).
    let (_, reopened) = send(&app, "pull_request", &pr("reopened", 7, SHA2).body()).await;
    assert_eq!(reopened["job"]["id"], pushed["job"]["id"]);

    let mut closed = pr("closed", 7, SHA2);
    closed.merged = true;
    let (s, v) = send(&app, "pull_request", &closed.body()).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("cleanup")),
        "{v}"
    );
    assert_eq!(v["job"]["kind"], "cleanup");
    let (_, newest) = app
        .get(&format!(
            "/v1/jobs/{}",
            pushed["job"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        newest["state"], "superseded",
        "teardown supersedes the preview's build"
    );
    // Other events are acknowledged and ignored; unusable ones too, never a 5xx.
    let (s, _) = send(&app, "issues", "{\"action\": \"opened\"}").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, v) = send(
        &app,
        "pull_request",
        "{\"action\": \"opened\", \"number\": \"x\"}",
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
}

#[tokio::test]
async fn label_mode_and_fork_policy_decide_what_is_built() {
    let app = spawn_app().await;
    configure(
        &app,
        "acme/shop",
        json!({"mode": "label", "label": "preview"}),
    )
    .await;
    let (_, v) = send(&app, "pull_request", &pr("opened", 1, SHA).body()).await;
    assert_eq!(v["status"], "ignored", "no label yet: {v}");
    let mut labeled = pr("labeled", 1, SHA);
    labeled.labels = vec!["preview".into()];
    labeled.label = Some("preview".into());
    let (_, v) = send(&app, "pull_request", &labeled.body()).await;
    assert_eq!(v["status"], "pipeline", "{v}");
    let mut unlabeled = pr("unlabeled", 1, SHA);
    unlabeled.label = Some("preview".into());
    let (_, v) = send(&app, "pull_request", &unlabeled.body()).await;
    assert_eq!(
        v["status"], "cleanup",
        "removing the label tears the preview down: {v}"
    );

    configure(&app, "acme/shop", json!({})).await;
    let mut fork = pr("opened", 2, SHA);
    fork.fork = Some("mallory/shop".into());
    let (_, v) = send(&app, "pull_request", &fork.body()).await;
    assert_eq!(
        v["status"], "ignored",
        "forks are not built by default: {v}"
    );
    configure(&app, "acme/shop", json!({"build_forks": true})).await;
    let mut fork = pr("synchronize", 2, SHA2);
    fork.fork = Some("mallory/shop".into());
    let (_, v) = send(&app, "pull_request", &fork.body()).await;
    assert_eq!(v["status"], "pipeline", "{v}");
    configure(&app, "acme/shop", json!({"enabled": false})).await;
    let (_, v) = send(&app, "pull_request", &pr("opened", 3, SHA).body()).await;
    assert_eq!(v["status"], "ignored", "{v}");
}

#[tokio::test]
async fn fifty_pull_requests_at_once_are_fifty_pipelines() {
    let app = spawn_app().await;
    configure(&app, "acme/shop", json!({})).await;
    let results = futures::future::join_all((1..=50).map(|n| {
        let body = pr("opened", n, SHA).body();
        let app = &app;
        async move { send(app, "pull_request", &body).await }
    }))
    .await;
    assert!(
        results
            .iter()
            .all(|(s, v)| *s == StatusCode::ACCEPTED && v["status"] == "pipeline"),
        "{results:?}"
    );
    let (_, jobs) = app.get("/v1/jobs?kind=build&limit=100").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn repository_settings_are_validated_and_readable() {
    let app = spawn_app().await;
    let put = |repo: &str, body: Value| {
        let req = app
            .http
            .put(format!("{}/v1/repositories/{repo}", app.base))
            .bearer_auth(ADMIN)
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    for (repo, body, field) in [
        ("acme/shop", json!({"mode": "label"}), "label"),
        ("acme/shop", json!({"mode": "sometimes"}), "mode"),
        ("acme/shop", json!({"launch": {"port": 0}}), "launch.port"),
        (
            "acme/shop",
            json!({"launch": {"read_only_root_filesystem": "yes"}}),
            "launch.read_only_root_filesystem",
        ),
        (
            "acme/shop",
            json!({"build": {"dockerfile": "/etc/passwd"}}),
            "build.dockerfile",
        ),
        ("ac me/shop", json!({}), "owner"),
        ("acme/sh%20op", json!({}), "repo"),
        (
            "acme/shop",
            json!({"source": {"type": "compose"}}),
            "source.service",
        ),
        (
            "acme/shop",
            json!({"source": {"kind": "auto"}}),
            "source.kind",
        ),
        (
            "acme/shop",
            json!({"source": {"type": "auto"}, "build": {"dockerfile": "web.Dockerfile"}}),
            "build.dockerfile",
        ),
    ] {
        let (s, v) = put(repo, body).await;
        assert!(s.is_client_error(), "{repo}: {v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    let (s, v) = put(
        "Acme/Shop",
        json!({"mode": "label", "label": "preview",
               "launch": {"port": 8081, "read_only_root_filesystem": true}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, got) = app.get("/v1/repositories/acme/shop").await;
    assert_eq!(got["mode"], "label");
    assert_eq!(got["launch"]["port"], 8081);
    assert_eq!(got["launch"]["read_only_root_filesystem"], true);
    let (_, list) = app.get("/v1/repositories").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let resp = app
        .http
        .put(format!("{}/v1/repositories/acme/shop", app.base))
        .bearer_auth(READ)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

/// A repository set to the `auto` source makes its pull requests' pipelines `auto` builds.
#[tokio::test]
async fn a_repository_with_the_auto_source_makes_auto_pipelines() {
    let app = spawn_app().await;
    configure(
        &app,
        "acme/shop",
        json!({"source": {"type": "auto"}, "build": {"context": "web"}, "launch": {"port": 3000}}),
    )
    .await;
    let (_, got) = app.get("/v1/repositories/acme/shop").await;
    assert_eq!(got["source"], json!({"type": "auto"}), "{got}");
    let (_, opened) = send(&app, "pull_request", &pr("opened", 9, SHA).body()).await;
    assert_eq!(opened["status"], "pipeline", "{opened}");
    let request = &opened["job"]["request"];
    assert_eq!(request["source"], "auto", "{request}");
    assert_eq!(request["context"], "web");
    assert_eq!(request["then_launch"]["port"], 3000);
    // Back to the Dockerfile: the stored source is replaced, not merged.
    configure(&app, "acme/shop", json!({"source": {"type": "dockerfile"}})).await;
    let (_, pushed) = send(&app, "pull_request", &pr("synchronize", 9, SHA2).body()).await;
    assert_eq!(pushed["job"]["request"]["source"], "dockerfile", "{pushed}");
}

/// A fork's code is untrusted: its pipeline keeps the registry push credential but loses the
/// git token and the preview's secret env; the base repository's own pull requests keep both.
#[tokio::test]
async fn a_fork_pipeline_gets_no_git_token_and_no_secret_env() {
    let app = spawn_app().await;
    configure(
        &app,
        "acme/shop",
        json!({
            "build_forks": true,
            "build": {"secrets": {"git": "git-token", "registry": "push-creds"}},
            "launch": {"env": {"MODE": "preview"}, "secret_env": {"DB_PASSWORD": "db/password"}},
        }),
    )
    .await;
    let payload = |v: &Value| {
        let id: slipway_core::JobId = v["job"]["id"].as_str().unwrap().parse().unwrap();
        let store = app.store.clone();
        async move { store.get_job(id).await.unwrap().unwrap().payload }
    };
    let (_, own) = send(&app, "pull_request", &pr("opened", 1, SHA).body()).await;
    assert_eq!(own["status"], "pipeline", "{own}");
    let own = payload(&own).await;
    assert_eq!(own["secrets"]["git"], "git-token", "{own}");
    assert_eq!(
        own["then_launch"]["secret_env"]["DB_PASSWORD"],
        json!({"secret": "db", "key": "password"}),
        "{own}"
    );

    let mut fork = pr("opened", 2, SHA2);
    fork.fork = Some("mallory/shop".into());
    let (_, v) = send(&app, "pull_request", &fork.body()).await;
    assert_eq!(v["status"], "pipeline", "{v}");
    let p = payload(&v).await;
    assert!(
        p["secrets"]["git"].is_null(),
        "no git token for a fork: {p}"
    );
    assert_eq!(
        p["secrets"]["registry"], "push-creds",
        "the push credential stays: {p}"
    );
    assert_eq!(
        p["then_launch"]["secret_env"],
        json!({}),
        "no secret env for a fork: {p}"
    );
    assert_eq!(
        p["then_launch"]["env"]["MODE"], "preview",
        "plain env stays: {p}"
    );
}
