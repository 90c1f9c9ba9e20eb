//! One trace per pipeline, as an OTLP receiver sees it: the caller's request to the API, the
//! build job the worker runs after taking it from Redis, the launch that build enqueues, and
//! the Kubernetes API requests each makes, all in one trace and each the child of the one before.
//!
//! The spans travel as in production: exported over OTLP/HTTP (protobuf) by the binaries'
//! exporter, received by `testing::otlp` (decoded with the official `opentelemetry-proto`
//! definitions); the trace context crosses from the API to the workers only through what they
//! share in production (the job's row in Postgres and its payload in Redis), never in memory:
//! a worker's job span is a root span that takes its parent from the delivered job.
//!
//! One test per file: it installs the process-wide subscriber.

use serde_json::{Value, json};
use slipway_e2e::{BUILD_NAMESPACE, Stack, TOKEN};
use slipway_shared::config::LogFormat;
use slipway_shared::telemetry::{self, Exporter};
use slipway_shared::testing::eventually;
use slipway_shared::testing::otlp::{OtlpReceiver, ReceivedSpan};
use std::collections::HashMap;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

const LONG: Duration = Duration::from_secs(60);
const COMMIT: &str = "4444444444444444444444444444444444444444";
/// The caller's own span (a CI system or the platform's catalog), sent as `traceparent`.
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// The spans of one trace, by id.
struct Trace(HashMap<String, ReceivedSpan>);

impl Trace {
    fn of(spans: &[ReceivedSpan], trace_id: &str) -> Trace {
        Trace(
            spans
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .map(|s| (s.span_id.clone(), s.clone()))
                .collect(),
        )
    }

    /// The spans from `span`'s parent up to the root of the trace (as far as received).
    fn ancestors(&self, span: &ReceivedSpan) -> Vec<&ReceivedSpan> {
        let mut chain = Vec::new();
        let mut parent = span.parent_span_id.as_str();
        while let Some(up) = self.0.get(parent) {
            chain.push(up);
            parent = up.parent_span_id.as_str();
        }
        chain
    }

    fn descends_from(&self, span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
        self.ancestors(span)
            .iter()
            .any(|a| a.span_id == ancestor.span_id)
    }

    /// The one `job` span of `kind`.
    fn job(&self, kind: &str) -> &ReceivedSpan {
        let jobs: Vec<_> = self
            .0
            .values()
            .filter(|s| s.name == "job" && s.attribute("job.kind") == Some(kind))
            .collect();
        assert_eq!(jobs.len(), 1, "one {kind} job span in {:#?}", self.0);
        jobs[0]
    }

    /// Kubernetes API requests (kube-rs's client spans) descending from `ancestor`, as
    /// "VERB url".
    fn kube_calls_under(&self, ancestor: &ReceivedSpan) -> Vec<String> {
        let mut calls: Vec<String> = self
            .0
            .values()
            .filter(|s| s.attribute("http.url").is_some() && self.descends_from(s, ancestor))
            .map(|s| {
                format!(
                    "{} {}",
                    s.attribute("http.method").unwrap_or("?"),
                    s.attribute("http.url").unwrap_or("?")
                )
            })
            .collect();
        calls.sort();
        calls
    }
}

async fn get(stack: &Stack, path: &str) -> Value {
    stack.get_json(path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_is_one_trace_from_the_request_through_the_queues_to_its_kubernetes_calls() {
    let (endpoint, receiver) = OtlpReceiver::start().expect("the OTLP receiver");
    let exporter = Exporter::to_endpoint(&endpoint, "slipway-e2e").expect("an exporter");
    // The binaries' own subscriber: logs as RUST_LOG says (here: off), spans to the exporter.
    let subscriber = telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        std::io::sink,
        Some(exporter.tracer()),
    );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let stack = Stack::start().await.expect("stack");
    let resp = stack
        .http
        .post(stack.url("/v1/pipelines"))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({
            "preview": "org/app#7",
            "repository": "https://github.com/org/app.git",
            "commit": COMMIT,
            "launch": {"port": 8080},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let build: Value = resp.json().await.unwrap();
    let build_id = build["id"].as_str().expect("the build job's id").to_owned();
    let launch_id = eventually(LONG, "the pipeline's launch to succeed", || async {
        let jobs = get(&stack, "/v1/jobs?kind=launch").await;
        let launch = &jobs["items"][0];
        (launch["state"] == "succeeded").then(|| launch["id"].as_str().unwrap().to_owned())
    })
    .await;
    // Every span of the pipeline has ended once the workers have stopped.
    stack.stop().await.expect("everything stops cleanly");
    exporter.force_flush();

    let spans = receiver.spans();
    let trace = Trace::of(&spans, CALLER_TRACE);
    assert!(
        receiver
            .content_types()
            .iter()
            .all(|c| c == "application/x-protobuf")
    );

    // The API's request span continues the caller's.
    let requests: Vec<_> = trace
        .0
        .values()
        .filter(|s| s.name == "request" && s.attribute("http.path") == Some("/v1/pipelines"))
        .collect();
    assert_eq!(requests.len(), 1, "the request span in {:#?}", trace.0);
    let request = requests[0];
    assert_eq!(request.parent_span_id, CALLER_SPAN);
    assert_eq!(request.attribute("http.method"), Some("POST"));

    // The build worker's job span: the request's child, through Postgres and Redis.
    let build_span = trace.job("build");
    assert_eq!(build_span.parent_span_id, request.span_id);
    assert_eq!(build_span.attribute("job.id"), Some(build_id.as_str()));
    assert_eq!(build_span.attribute("job.attempt"), Some("1"));
    // The launch it enqueued: the build's child.
    let launch_span = trace.job("launch");
    assert_eq!(launch_span.parent_span_id, build_span.span_id);
    assert_eq!(launch_span.attribute("job.id"), Some(launch_id.as_str()));
    assert_eq!(launch_span.attribute("job.attempt"), Some("1"));
    assert!(launch_span.start_unix_nano > build_span.start_unix_nano);

    // Their Kubernetes calls are theirs: the build creates its Job and reads its pod's log...
    let build_calls = trace.kube_calls_under(build_span);
    let jobs_path = format!("/apis/batch/v1/namespaces/{BUILD_NAMESPACE}/jobs");
    assert!(
        build_calls
            .iter()
            .any(|c| c.starts_with("POST ") && c.contains(&jobs_path)),
        "the build Job's creation among {build_calls:#?}"
    );
    assert!(
        build_calls
            .iter()
            .any(|c| c.starts_with("GET ") && c.contains("/log")),
        "the build pod's log among {build_calls:#?}"
    );
    let create = trace.named_under("create_build_job", build_span);
    assert!(
        trace
            .kube_calls_under(create)
            .iter()
            .any(|c| c.contains(&jobs_path)),
        "the Job is created inside create_build_job"
    );
    // ...and the launch applies the preview's objects (server-side apply: PATCH) and waits.
    let launch_calls = trace.kube_calls_under(launch_span);
    assert!(
        launch_calls
            .iter()
            .any(|c| c.starts_with("PATCH ") && c.contains("/deployments/")),
        "the Deployment's apply among {launch_calls:#?}"
    );
    let apply = trace.named_under("apply_preview", launch_span);
    let wait = trace.named_under("wait_rollout", launch_span);
    assert!(!trace.kube_calls_under(apply).is_empty());
    assert!(!trace.kube_calls_under(wait).is_empty());
}

impl Trace {
    /// The one span named `name` under `ancestor`.
    fn named_under(&self, name: &str, ancestor: &ReceivedSpan) -> &ReceivedSpan {
        let found: Vec<_> = self
            .0
            .values()
            .filter(|s| s.name == name && self.descends_from(s, ancestor))
            .collect();
        assert_eq!(found.len(), 1, "one {name} span under {ancestor:#?}");
        found[0]
    }
}
