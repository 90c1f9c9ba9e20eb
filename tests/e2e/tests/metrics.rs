//! Slipway's metrics as the real Prometheus tools see them: every binary's `/metrics` passes
//! `promtool check metrics` with no finding, and a real Prometheus scraping the API and the
//! workers answers queries for the queue depth, job outcomes and build durations.
//!
//! The binaries run in one process here (`Stack`), so they share the process-wide recorder and
//! each `/metrics` serves what all of them registered. Each binary alone (its own process, as
//! in production) is checked by its crate's metrics test (`testing::assert_promtool_clean`):
//! only there does a help text registered before the recorder existed show as missing.

use serde_json::{Value, json};
use slipway_e2e::prometheus::Prometheus;
use slipway_e2e::{Stack, TOKEN};
use slipway_shared::testing::{check_metrics, eventually, promtool};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
const COMMIT: &str = "3333333333333333333333333333333333333333";
const PREVIEW: &str = "org%2Fapp%2342";

async fn get(stack: &Stack, path: &str) -> Value {
    stack.get_json(path).await
}

async fn post(stack: &Stack, path: &str, body: &Value) -> Value {
    let resp = stack
        .http
        .post(stack.url(path))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// A job through each worker: a pipeline (build, then launch) and the preview's teardown.
async fn run_pipeline_and_teardown(stack: &Stack) {
    post(
        stack,
        "/v1/pipelines",
        &json!({
            "preview": "org/app#42",
            "repository": "https://github.com/org/app.git",
            "commit": COMMIT,
            "launch": {"port": 8080},
        }),
    )
    .await;
    eventually(LONG, "the pipeline's launch to succeed", || async {
        let jobs = get(stack, "/v1/jobs?kind=launch").await;
        (jobs["items"][0]["state"] == "succeeded").then_some(())
    })
    .await;
    let preview_path = format!("/v1/previews/{PREVIEW}");
    post(stack, "/v1/cleanups", &json!({"preview": "org/app#42"})).await;
    eventually(LONG, "the preview to be torn down", || async {
        let p = get(stack, &preview_path).await;
        (!p["deleted_at"].is_null()).then_some(())
    })
    .await;
}

async fn metrics_of(stack: &Stack, addr: std::net::SocketAddr) -> String {
    let resp = stack
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "{addr}/metrics: {}",
        resp.status()
    );
    resp.text().await.unwrap()
}

#[tokio::test]
async fn every_binary_s_metrics_pass_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    let stack = Stack::start().await.expect("stack");
    run_pipeline_and_teardown(&stack).await;
    for (name, addr) in stack.metrics_targets() {
        let body = metrics_of(&stack, addr).await;
        let (ok, report) = check_metrics(&promtool, &body);
        assert!(
            ok && report.is_empty(),
            "promtool check metrics on {name}'s /metrics:\n{report}"
        );
        // The families a pipeline makes must be there, or the check proves little.
        for family in [
            "slipway_api_requests_total",
            "slipway_jobs_finished_total",
            "slipway_queue_events_total",
            "slipway_build_duration_seconds_bucket",
            "slipway_queue_jobs",
        ] {
            assert!(body.contains(family), "{name}: no {family} in\n{body}");
        }
    }
    stack.stop().await.expect("everything stops cleanly");
}

#[tokio::test]
async fn a_real_prometheus_scrapes_queue_depth_job_outcomes_and_build_durations() {
    let stack = Stack::start().await.expect("stack");
    let Some(prometheus) = Prometheus::start(&stack.metrics_targets()) else {
        return;
    };
    run_pipeline_and_teardown(&stack).await;
    let http = reqwest::Client::new();
    // Every target is up: Prometheus scraped and parsed every exposition.
    for (name, _) in stack.metrics_targets() {
        answered(
            &prometheus,
            &http,
            &format!("{name} up"),
            &format!("up{{job=\"{name}\"}} == 1"),
        )
        .await;
    }
    for (what, promql) in [
        (
            "the build queue's depth",
            r#"slipway_queue_jobs{job="slipway-api",queue="build",state="waiting"}"#,
        ),
        (
            "a succeeded build",
            r#"slipway_jobs_finished_total{job="slipway-worker-build",kind="build",outcome="succeeded"} >= 1"#,
        ),
        (
            "a succeeded launch",
            r#"slipway_jobs_finished_total{job="slipway-worker-launch",kind="launch",outcome="succeeded"} >= 1"#,
        ),
        (
            "a succeeded teardown",
            r#"slipway_jobs_finished_total{job="slipway-worker-cleanup",kind="cleanup",outcome="succeeded"} >= 1"#,
        ),
        (
            "the build's duration counted",
            r#"slipway_build_duration_seconds_count{job="slipway-worker-build",outcome="succeeded"} >= 1"#,
        ),
        (
            "the build's duration in buckets",
            r#"histogram_quantile(0.5, sum by (le) (slipway_build_duration_seconds_bucket{job="slipway-worker-build"})) >= 0"#,
        ),
    ] {
        answered(&prometheus, &http, what, promql).await;
    }
    stack.stop().await.expect("everything stops cleanly");
}

/// Waits until `promql` returns a non-empty vector; on timeout fails with Prometheus's log.
async fn answered(prometheus: &Prometheus, http: &reqwest::Client, what: &str, promql: &str) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if prometheus
            .query(http, promql)
            .await
            .is_some_and(|r| !r.is_empty())
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what}: `{promql}` stayed empty; Prometheus logged:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
