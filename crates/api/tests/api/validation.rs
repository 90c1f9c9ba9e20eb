//! Hostile input gets a clear 4xx JSON error naming the field, never a 5xx, a panic or a
//! half-written record.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn with(mut body: Value, key: &str, v: Value) -> Value {
    body[key] = v;
    body
}

#[tokio::test]
async fn hostile_requests_are_refused_with_the_field_at_fault() {
    let app = spawn_app().await;
    let b = build_body();
    let launch = json!({"preview": "org/app#1", "image": "org/app:1"});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/builds",
            with(b.clone(), "repository", json!("file:///etc/passwd")),
            "repository",
        ),
        (
            "/v1/builds",
            with(b.clone(), "repository", json!("/srv/git/app")),
            "repository",
        ),
        (
            "/v1/builds",
            with(
                b.clone(),
                "repository",
                json!("https://user:pw@github.com/o/a.git"),
            ),
            "repository",
        ),
        (
            "/v1/builds",
            with(b.clone(), "repository", json!("http://github.com/o/a.git")),
            "repository",
        ),
        (
            "/v1/builds",
            with(
                b.clone(),
                "repository",
                json!("ext::sh -c touch% /tmp/pwned"),
            ),
            "repository",
        ),
        (
            "/v1/builds",
            with(b.clone(), "repository", json!("-uhttps://x")),
            "repository",
        ),
        (
            "/v1/builds",
            with(b.clone(), "commit", json!("main")),
            "commit",
        ),
        (
            "/v1/builds",
            with(b.clone(), "commit", json!("0123")),
            "commit",
        ),
        ("/v1/builds", with(b.clone(), "commit", json!(42)), "commit"),
        (
            "/v1/builds",
            with(b.clone(), "context", json!("../../etc")),
            "context",
        ),
        (
            "/v1/builds",
            with(b.clone(), "dockerfile", json!("/abs/Dockerfile")),
            "dockerfile",
        ),
        (
            "/v1/builds",
            with(b.clone(), "image", json!("UPPER/Case")),
            "image",
        ),
        (
            "/v1/builds",
            with(b.clone(), "build_args", json!({"1BAD": "x"})),
            "build_args.1BAD",
        ),
        (
            "/v1/builds",
            with(b.clone(), "build_args", json!({"OK": 5})),
            "build_args.OK",
        ),
        (
            "/v1/builds",
            with(b.clone(), "secrets", json!({"git": "Not_A_Name"})),
            "secrets.git",
        ),
        (
            "/v1/builds",
            with(b.clone(), "secrets", json!({"ssh": "x"})),
            "secrets.ssh",
        ),
        ("/v1/builds", with(b.clone(), "bogus", json!(1)), "bogus"),
        (
            "/v1/builds",
            json!({"commit": SHA, "image": "org/app"}),
            "repository",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "port", json!(0)),
            "port",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "port", json!(70000)),
            "port",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "port", json!("80")),
            "port",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "env", json!({"A-B": "x"})),
            "env.A-B",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "secret_env", json!({"A": "no-slash"})),
            "secret_env.A",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "replicas", json!(1000)),
            "replicas",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "resources", json!({"cpu": "64"})),
            "resources.cpu",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "resources", json!({"memory": "1Ti"})),
            "resources.memory",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "resources", json!({"memory": "lots"})),
            "resources.memory",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "ttl_hours", json!(-1)),
            "ttl_hours",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "image", json!("not a ref")),
            "image",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "from_build", json!(uuid::Uuid::now_v7())),
            "from_build",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "preview", json!("x".repeat(500))),
            "preview",
        ),
        (
            "/v1/launches",
            with(launch.clone(), "preview", json!("a\u{0000}b")),
            "preview",
        ),
        ("/v1/launches", json!({"preview": "p"}), ""),
        ("/v1/cleanups", json!({"preview": ""}), "preview"),
        (
            "/v1/pipelines",
            json!({"preview": "p", "repository": "https://github.com/o/a.git", "commit": SHA, "launch": {"port": -5}}),
            "launch.port",
        ),
        (
            "/v1/pipelines",
            json!({"preview": "p", "repository": "https://github.com/o/a.git", "commit": SHA, "build": {"target": 7}}),
            "build.target",
        ),
    ];
    for (path, body, field) in &cases {
        let (status, v) = app.post(path, body).await;
        assert!(status.is_client_error(), "{path} {body}: {status} {v}");
        let err = &v["error"];
        assert!(err["code"].is_string() && err["message"].is_string(), "{v}");
        if !field.is_empty() {
            assert_eq!(err["field"], *field, "{path} {body}: {v}");
        }
    }
    // Nothing was recorded.
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

/// Issue #13, defect 3: SSH addresses used to be accepted, and every such build failed in
/// BuildKit with `no SSH key "default" forwarded`. Now a 422 names `repository` and says to
/// use an https URL with a token Secret, for builds and pipelines alike.
#[tokio::test]
async fn ssh_repositories_are_refused_with_what_to_use_instead() {
    let app = spawn_app().await;
    for repo in [
        "ssh://git@github.com/org/app.git",
        "git@github.com:org/app.git",
        "git://github.com/org/app.git",
    ] {
        let bodies = [
            ("/v1/builds", with(build_body(), "repository", json!(repo))),
            (
                "/v1/pipelines",
                json!({"preview": "org/app#1", "repository": repo, "commit": SHA}),
            ),
        ];
        for (path, body) in bodies {
            let (status, v) = app.post(path, &body).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {repo}: {v}"
            );
            let err = &v["error"];
            assert_eq!(err["code"], "invalid_field", "{v}");
            assert_eq!(err["field"], "repository", "{v}");
            let message = err["message"].as_str().unwrap();
            assert!(
                message.contains("https://") && message.contains("secrets.git"),
                "{repo}: {message}"
            );
        }
    }
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let app = spawn_app().await;
    let url = format!("{}/v1/builds", app.base);
    let send = |body: Vec<u8>, ctype: Option<&'static str>| {
        let mut req = app.http.post(&url).bearer_auth(ENQUEUE).body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let json = Some("application/json");
    let cases: Vec<(Vec<u8>, Option<&'static str>, StatusCode)> = vec![
        (b"{".to_vec(), json, StatusCode::BAD_REQUEST),
        (b"[]".to_vec(), json, StatusCode::BAD_REQUEST),
        (b"null".to_vec(), json, StatusCode::BAD_REQUEST),
        (vec![0xff, 0xfe, 0x00], json, StatusCode::BAD_REQUEST),
        (
            build_body().to_string().into_bytes(),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            build_body().to_string().into_bytes(),
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (vec![b' '; 300 * 1024], json, StatusCode::PAYLOAD_TOO_LARGE),
        (
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            json,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, ctype, expected) in cases {
        let len = body.len();
        let (status, v) = send(body, ctype).await;
        assert_eq!(status, expected, "{len} bytes as {ctype:?}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    // A bad Idempotency-Key header.
    let resp = app
        .http
        .post(&url)
        .bearer_auth(ENQUEUE)
        .header("Idempotency-Key", "x".repeat(300))
        .json(&build_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Unknown routes are JSON 404s too.
    let (status, v) = app.get("/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

/// A repository on an internal address or name is a 422 naming the field and the rule, on
/// every path that takes one: builds, pipelines and a repository's stored settings.
#[tokio::test]
async fn internal_repository_hosts_are_refused_naming_the_rule() {
    let app = spawn_app().await;
    let cases = [
        ("https://127.0.0.1/o/a.git", "loopback address 127.0.0.0/8"),
        ("https://10.0.0.7/o/a.git", "private address 10.0.0.0/8"),
        (
            "https://172.20.1.1/o/a.git",
            "private address 172.16.0.0/12",
        ),
        (
            "https://192.168.1.1/o/a.git",
            "private address 192.168.0.0/16",
        ),
        (
            "https://100.64.0.1/o/a.git",
            "shared (CGNAT) address 100.64.0.0/10",
        ),
        (
            "https://169.254.169.254/o/a.git",
            "link-local address (cloud metadata) 169.254.0.0/16",
        ),
        (
            "https://0.0.0.0/o/a.git",
            "\"this network\" address 0.0.0.0/8",
        ),
        ("https://[fd00::1]/o/a.git", "IPv6 address literals"),
        ("https://[::ffff:10.0.0.1]/o/a.git", "IPv6 address literals"),
        ("https://2130706433/o/a.git", "non-canonical IPv4"),
        ("https://0x7f.0.0.1/o/a.git", "non-canonical IPv4"),
        ("https://0177.0.0.1/o/a.git", "non-canonical IPv4"),
        ("https://gitea/o/a.git", "single-label name"),
        (
            "https://gitea.git.svc/o/a.git",
            "cluster-internal name (*.svc)",
        ),
        (
            "https://gitea.git.svc.cluster.local/o/a.git",
            "cluster-internal name (*.cluster.local)",
        ),
        (
            "https://metadata.google.internal/o/a.git",
            "internal name (*.internal",
        ),
    ];
    for (url, rule) in cases {
        let mut build = build_body();
        build["repository"] = json!(url);
        let pipeline =
            json!({"preview": "org/app#1", "repository": url, "commit": build["commit"]});
        for (path, body) in [("/v1/builds", build), ("/v1/pipelines", pipeline)] {
            let (status, v) = app.post(path, &body).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {url}: {v}"
            );
            assert_eq!(v["error"]["field"], "repository", "{path} {url}: {v}");
            assert_eq!(v["error"]["code"], "forbidden_value", "{path} {url}: {v}");
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(rule), "{path} {url}: {v}");
        }
    }
}

/// With an operator list of build Secrets (the chart feeds the same list to the build
/// worker's RBAC), a build, pipeline or repository setting naming another Secret is a 422.
#[tokio::test]
async fn build_secrets_off_the_operators_list_are_refused() {
    let app = spawn_app_configured(&slipway_shared::testing::redis_url(), |c| {
        c.build_secret_names = vec!["git-token".into(), " push-creds ".into()];
    })
    .await;
    let mut ok = build_body();
    ok["secrets"] = json!({"git": "git-token", "registry": "push-creds"});
    let (status, v) = app.post("/v1/builds", &ok).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let mut bad = build_body();
    bad["secrets"] = json!({"git": "someone-elses-token"});
    let (status, v) = app.post("/v1/builds", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "secrets.git", "{v}");
    assert_eq!(v["error"]["code"], "forbidden_value", "{v}");
    let pipeline = json!({"preview": "org/app#1", "repository": ok["repository"], "commit": SHA,
        "build": {"secrets": {"registry": "other-creds"}}});
    let (status, v) = app.post("/v1/pipelines", &pipeline).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "build.secrets.registry", "{v}");
    let (status, v) = app
        .call(
            reqwest::Method::PUT,
            "/v1/repositories/acme/shop",
            Some(ADMIN),
            Some(&json!({"build": {"secrets": {"git": "other"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "build.secrets.git", "{v}");
}
