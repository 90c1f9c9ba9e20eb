//! The MCP endpoint (`/mcp`) with real MCP clients against the real API (real Postgres and
//! Redis): the official Python SDK (`tests/mcp/agent.py`) lists and calls every tool with a full
//! and a read-only token, in the 2026-07-28 revision and with the older initialize handshake;
//! the MCP Inspector's CLI lists the tools in its `--strict` mode. Both are pinned and installed
//! by `scripts/ensure-tools.sh`; without them these tests fail when
//! `SLIPWAY_REQUIRE_MCP_CLIENTS=1` (as `make test` sets) and are skipped otherwise.
//! The HTTP edges (401, Host and Origin checks, `SLIPWAY_MCP=off|read-only`) are checked here
//! with plain requests.

use crate::helpers::*;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use slipway_api::mcp::{LOG_BYTE_CAP, McpMode};
use slipway_core::{ErrorClass, JobKind, JobState};
use slipway_shared::store::{AttemptOutcome, JobFilter, LogLine, PreviewUpsert};
use std::path::PathBuf;

fn require() -> bool {
    std::env::var("SLIPWAY_REQUIRE_MCP_CLIENTS").as_deref() == Ok("1")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tools_dir() -> PathBuf {
    std::env::var_os("SLIPWAY_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools"))
}

async fn preview(app: &TestApp, key: &str, namespace: &str, url: &str) {
    app.store
        .upsert_preview(&PreviewUpsert {
            key: key.into(),
            namespace: namespace.into(),
            url: Some(url.into()),
            image: Some("registry.example.test/org/app:1".into()),
            commit_sha: Some(SHA.into()),
            status: "ready".into(),
            pods: vec!["app-1".into()],
            expires_at: None,
            last_job_id: None,
        })
        .await
        .unwrap();
}

/// A pipeline for `key` whose build ran once and failed, with a log ending in `cause`.
async fn failed_build(app: &TestApp, key: &str, cause: &str) -> uuid::Uuid {
    let (status, job) = app
        .post(
            "/v1/pipelines",
            &json!({"preview": key, "repository": "https://github.com/org/app", "commit": SHA}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store.start_attempt(id, 1, "w").await.unwrap().unwrap();
    let mut lines: Vec<LogLine> = (0..20)
        .map(|seq| LogLine {
            seq,
            ts: Utc::now(),
            stream: "stdout".into(),
            text: format!("#{seq} step {seq}"),
        })
        .collect();
    lines.push(LogLine {
        seq: 20,
        ts: Utc::now(),
        stream: "stderr".into(),
        text: cause.into(),
    });
    app.store.append_logs(id, 1, &lines).await.unwrap();
    let failed = AttemptOutcome::Failed {
        error: "the build failed (exit code 1)".into(),
        class: ErrorClass::Permanent,
    };
    assert!(app.store.finish_attempt(id, 1, failed).await.unwrap());
    id
}

/// A job whose log (2000 lines of 100 bytes) is far over the tools' byte cap.
async fn big_log(app: &TestApp) -> (uuid::Uuid, i64) {
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store.start_attempt(id, 1, "w").await.unwrap().unwrap();
    for batch in 0..4 {
        let lines: Vec<LogLine> = (batch * 500..batch * 500 + 500)
            .map(|seq| LogLine {
                seq,
                ts: Utc::now(),
                stream: "stdout".into(),
                text: format!("{seq:06} {}", "x".repeat(93)),
            })
            .collect();
        app.store.append_logs(id, 1, &lines).await.unwrap();
    }
    (id, 1999)
}

#[tokio::test]
async fn the_python_sdk_lists_calls_pages_retries_and_deletes() {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import mcp, jsonschema, httpx2; from importlib.metadata import version; print(version('mcp'))"])
        .output()
        .await;
    let Some(probe) = probe.ok().filter(|o| o.status.success()) else {
        assert!(
            !require(),
            "the MCP Python SDK is not installed (run `make tools`)"
        );
        eprintln!("skipped: the MCP Python SDK is not installed (run `make tools`)");
        return;
    };
    eprintln!("mcp {}", String::from_utf8_lossy(&probe.stdout).trim());
    let app = spawn_app().await;

    for n in 1..=25 {
        preview(
            &app,
            &format!("org/many#{n}"),
            &format!("slipway-pv-org-many-{n}"),
            &format!("https://many-{n}.preview.example.test"),
        )
        .await;
    }
    preview(
        &app,
        "org/app#7",
        "slipway-pv-org-app-7-abcd1234",
        "https://pr-7-app.preview.example.test",
    )
    .await;
    // Its latest resource reading, as the cleanup worker's usage sweep stores it: 85% of its
    // CPU ceiling.
    assert!(
        app.store
            .record_preview_usage(&slipway_shared::store::PreviewUsage {
                preview: "org/app#7".into(),
                sampled_at: chrono::Utc::now(),
                metrics: "ok".into(),
                pods: Some(1),
                cpu_millis: Some(1700),
                memory_bytes: Some(256 << 20),
                cpu_limit_millis: Some(2000),
                memory_limit_bytes: Some(2 << 30),
                cpu_requested_millis: Some(500),
                memory_requested_bytes: Some(512 << 20),
            })
            .await
            .unwrap()
    );
    for key in ["org/app#20", "org/app#21"] {
        preview(
            &app,
            key,
            &format!("ns-{}", key.replace(['/', '#'], "-")),
            "https://x.example.test",
        )
        .await;
    }
    preview(
        &app,
        "org/app#22",
        "ns-org-app-22",
        "https://x.example.test",
    )
    .await;
    assert!(app.store.mark_preview_deleted("org/app#22").await.unwrap());
    let cause = r#"ERROR: failed to solve: process "/bin/sh -c npm ci" did not complete successfully: exit code: 1"#;
    let failed = failed_build(&app, "org/app#8", cause).await;
    let forged = failed_build(&app, "org/app#9", cause).await;
    let (big, big_last) = big_log(&app).await;

    let fixture = json!({
        "tokens": {"all": ALL, "read": READ},
        "sha": SHA,
        "many": 25,
        "live": {
            "key": "org/app#7",
            "namespace": "slipway-pv-org-app-7-abcd1234",
            "pull_request_url": "https://github.com/org/app/pull/7",
            "url": "https://pr-7-app.preview.example.test",
            "number": 7,
        },
        "failed": {"key": "org/app#8", "job": failed, "cause": cause},
        "forged": {"key": "org/app#9", "job": forged},
        "big_log_job": big,
        "big_log_last_seq": big_last,
        "log_byte_cap": LOG_BYTE_CAP,
        "to_delete": {"legacy": "org/app#20", "auto": "org/app#21"},
        "already_deleted": "org/app#22",
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/agent.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("SLIPWAY_MCP_URL", format!("{}/mcp", app.base))
        .env("SLIPWAY_MCP_FIXTURE", fixture.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run agent.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "the MCP client's checks failed:\n{stdout}\n{stderr}"
    );

    // What the client did is what the store holds: the failed build was retried (queued and
    // pushed again), the forged retry and delete changed nothing, and each confirmed delete
    // recorded exactly one cleanup (the refused ones none).
    let row = app.store.get_job(failed).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued);
    assert!(
        app.queue
            .get(JobKind::Build, &failed.to_string())
            .await
            .unwrap()
            .is_some(),
        "the retried build is on the queue"
    );
    let row = app.store.get_job(forged).await.unwrap().unwrap();
    assert_eq!(
        row.state,
        JobState::Failed,
        "a read-only token changed nothing"
    );
    for key in ["org/app#20", "org/app#21", "org/app#9", "org/app#22"] {
        let filter = JobFilter {
            kind: Some(JobKind::Cleanup),
            preview: Some(key.into()),
            ..JobFilter::default()
        };
        let cleanups = app.store.list_jobs(&filter, None, 10).await.unwrap().items;
        let expected = usize::from(key == "org/app#20" || key == "org/app#21");
        assert_eq!(cleanups.len(), expected, "{key}: {cleanups:?}");
    }
}

#[tokio::test]
async fn the_inspector_cli_lists_the_tools_with_no_schema_findings() {
    let tools = tools_dir();
    let node = tools.join("node22/node_modules/.bin/node");
    let inspector = tools.join(
        "mcp-inspector/node_modules/@modelcontextprotocol/inspector/clients/cli/build/index.js",
    );
    if !node.exists() || !inspector.exists() {
        assert!(
            !require(),
            "the MCP Inspector or Node 22 is not installed under {} (run `make tools`)",
            tools.display()
        );
        eprintln!("skipped: the MCP Inspector is not installed (run `make tools`)");
        return;
    }
    let app = spawn_app().await;
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&node)
        .arg(&inspector)
        // Its catalog and settings go to a directory of the test's own.
        .env("HOME", home.path())
        .env("MCP_CATALOG_PATH", home.path().join("mcp.json"))
        .env("NO_COLOR", "1")
        .arg(format!("{}/mcp", app.base))
        .args(["--transport", "http", "--method", "tools/list", "--strict"])
        .args(["--header", &format!("Authorization: Bearer {ALL}")])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the inspector");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "inspector tools/list --strict failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Not one finding, not even a warning (it prints "Schema portability: ..." or the
    // findings on stderr).
    assert!(
        !stderr.contains("Warning:")
            && !stderr.contains("Error:")
            && !stderr.contains("portability"),
        "{stderr}"
    );
    let listed: Value = serde_json::from_str(&stdout).expect("tools/list as JSON");
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 11, "{names:?}");
    for t in listed["tools"].as_array().unwrap() {
        assert_eq!(t["outputSchema"]["type"], "object", "{t}");
    }
}

/// One JSON-RPC request to `/mcp`, stateless (no initialize), as a client of the 2025-06-18
/// revision sends it.
async fn rpc(
    app: &TestApp,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn tools_list() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
}

async fn tool_names(resp: reqwest::Response) -> Vec<String> {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    // JSON, or one SSE `data:` line holding it.
    let json_text = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    let v: Value = serde_json::from_str(json_text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn mcp_refuses_without_a_token_and_from_foreign_hosts_and_origins() {
    let app = spawn_app().await;
    for token in [None, Some("not-a-token-0123456789")] {
        let resp = rpc(&app, token, &[], tools_list()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    // DNS rebinding: a page on evil.example resolving to the API's address sends its own Host,
    // and a browser sends its Origin.
    let resp = rpc(&app, Some(ALL), &[("host", "evil.example")], tools_list()).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = rpc(
        &app,
        Some(ALL),
        &[("origin", "https://evil.example")],
        tools_list(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // An enqueue-only token sees only the enqueue tools.
    let names = tool_names(rpc(&app, Some(ENQUEUE), &[], tools_list()).await).await;
    assert_eq!(
        names,
        [
            "redeploy_preview",
            "trigger_pipeline",
            "delete_preview_environment"
        ]
    );
}

#[tokio::test]
async fn mcp_off_serves_nothing_and_read_only_keeps_the_read_only_tools() {
    let redis = slipway_shared::testing::redis_url();
    let off = spawn_app_configured(&redis, |c| c.mcp.mcp_mode = McpMode::Off).await;
    let resp = rpc(&off, Some(ALL), &[], tools_list()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let ro = spawn_app_configured(&redis, |c| c.mcp.mcp_mode = McpMode::ReadOnly).await;
    let names = tool_names(rpc(&ro, Some(ALL), &[], tools_list()).await).await;
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("list_") || n.starts_with("get_")),
        "{names:?}"
    );
    // A write tool called anyway is refused and records nothing.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "trigger_pipeline",
        "arguments": {"preview": "org/app#1", "repository": "https://github.com/org/app", "commit": SHA}}});
    let resp = rpc(&ro, Some(ALL), &[], call).await;
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("UNAUTHORIZED") && text.contains("read-only"),
        "{text}"
    );
    let jobs = ro
        .store
        .list_jobs(&JobFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(jobs.items.is_empty());
}

/// Postgres text cannot hold NUL: a tool argument with one is refused as `INVALID_INPUT`
/// naming it, as the JSON API refuses it in a path or query, never a server error.
#[tokio::test]
async fn mcp_refuses_a_nul_in_any_argument_naming_it() {
    let app = spawn_app().await;
    for (tool, arguments, field) in [
        (
            "get_preview_environment",
            json!({"preview": "org/app#1\u{0}"}),
            "preview",
        ),
        ("list_jobs", json!({"preview": "a\u{0}b"}), "preview"),
        (
            "get_preview_logs",
            json!({"preview": "org/app#1", "kind": "build\u{0}"}),
            "kind",
        ),
    ] {
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        let text = rpc(&app, Some(ALL), &[], call).await.text().await.unwrap();
        assert!(
            text.contains("INVALID_INPUT")
                && text.contains(&format!("\\\"field\\\":\\\"{field}\\\"")),
            "{tool}: {text}"
        );
    }
}

/// `trigger_pipeline` takes the preview source: `auto` is recorded as an `auto` build, and a
/// source missing what it needs (a chart for `helm`) is an error naming the field that records
/// nothing.
#[tokio::test]
async fn mcp_trigger_pipeline_takes_the_source() {
    let app = spawn_app().await;
    let call = |source: &str| {
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "trigger_pipeline",
            "arguments": {"preview": "org/app#5", "repository": "https://github.com/org/app",
                          "commit": SHA, "source": source}}})
    };
    let text = rpc(&app, Some(ALL), &[], call("helm"))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("source.chart"), "{text}");
    let none = app
        .store
        .list_jobs(&JobFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(none.items.is_empty(), "a refused call records nothing");
    let text = rpc(&app, Some(ALL), &[], call("auto"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("isError\":true"), "{text}");
    let jobs = app
        .store
        .list_jobs(&JobFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1, "{text}");
    assert_eq!(jobs.items[0].payload["source"], "auto");
    // The API's whole `source` object: a compose app, and a field named when it is wrong.
    let call = |source: Value| {
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "trigger_pipeline",
            "arguments": {"preview": "org/app#6", "repository": "https://github.com/org/app",
                          "commit": SHA, "source": source}}})
    };
    let text = rpc(
        &app,
        Some(ALL),
        &[],
        call(json!({"type": "compose", "service": "Web"})),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("source.service"), "{text}");
    let text = rpc(
        &app,
        Some(ALL),
        &[],
        call(json!({"type": "compose", "services": "web"})),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("source.services"), "{text}");
    let text = rpc(
        &app,
        Some(ALL),
        &[],
        call(json!({"type": "compose", "service": "web"})),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!text.contains("isError\":true"), "{text}");
    let jobs = app
        .store
        .list_jobs(&JobFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 2, "{text}");
    assert_eq!(
        jobs.items[0].payload["composition"],
        json!({"type": "compose", "file": null, "service": "web", "port": null})
    );
}
