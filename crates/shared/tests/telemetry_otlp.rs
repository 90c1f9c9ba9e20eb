//! OTLP export end to end: a fake collector (axum on 127.0.0.1:0, `POST /v1/traces`, protobuf
//! decoded with `opentelemetry-proto`) receives the spans of a small traced job, with the stored
//! trace as parent, from every kind of runtime a binary may call us on. The last test runs the
//! global `telemetry::start` path in a child process configured only by `OTEL_*` variables, and
//! proves that dropping the guard delivers the last spans.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use slipway_shared::config::LogFormat;
use slipway_shared::telemetry::{self, Exporter};
use tracing_subscriber::EnvFilter;

const STORED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STORED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const STORED_SPAN: &str = "00f067aa0ba902b7";
/// Set for the child process of `telemetry_init_exports_from_env_and_the_guard_flushes`.
const CHILD_VAR: &str = "SLIPWAY_TELEMETRY_TEST_CHILD";

/// A span as the collector saw it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    /// Serves on its own thread and runtime, so a test that blocks its own runtime while
    /// flushing cannot starve the collector.
    fn start() -> (String, Self) {
        let collector = Self::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/traces", post(accept))
            .with_state(collector.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        (url, collector)
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    fn named(&self, name: &str) -> Received {
        let spans = self.spans();
        let found: Vec<_> = spans.iter().filter(|span| span.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
        found[0].clone()
    }
}

async fn accept(
    State(collector): State<Collector>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    collector.content_types.lock().unwrap().push(content_type);
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = collector.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .map(|resource| attributes(&resource.attributes))
            .and_then(|mut attributes| attributes.remove("service.name"))
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            spans.push(Received {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: attributes(&span.attributes),
            });
        }
    }
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|value| value.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => text.clone(),
                Some(any_value::Value::IntValue(number)) => number.to_string(),
                Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
                other => format!("{other:?}"),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The traced operation every test exports: a job continuing the stored trace, one step inside.
fn run_a_job() {
    let span = telemetry::job_span("job-42", "build", 2, Some(STORED));
    span.in_scope(|| {
        tracing::info!("job started");
        tracing::info_span!("step", step = "clone").in_scope(|| tracing::info!("cloned"));
    });
}

/// What the collector must have received from [`run_a_job`].
fn assert_job_exported(collector: &Collector, service: &str) {
    let job = collector.named("job");
    assert_eq!(job.service, service);
    assert_eq!(job.trace_id, STORED_TRACE);
    assert_eq!(job.parent_span_id, STORED_SPAN);
    assert_eq!(job.attributes["job.id"], "job-42");
    assert_eq!(job.attributes["job.kind"], "build");
    assert_eq!(job.attributes["job.attempt"], "2");
    let step = collector.named("step");
    assert_eq!(step.trace_id, STORED_TRACE);
    assert_eq!(step.parent_span_id, job.span_id);
    // The exporter's own HTTP requests are never exported.
    assert_eq!(collector.spans().len(), 2, "{:#?}", collector.spans());
    let content_types = collector.content_types.lock().unwrap();
    assert!(
        content_types
            .iter()
            .all(|content_type| content_type == "application/x-protobuf"),
        "{content_types:?}"
    );
}

/// Exports [`run_a_job`] through an explicit exporter and a scoped subscriber.
fn export_a_job(collector_url: &str) {
    let exporter = Exporter::to_endpoint(collector_url, "slipway-test").unwrap();
    let subscriber = telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        std::io::sink,
        Some(exporter.tracer()),
    );
    tracing::subscriber::with_default(subscriber, run_a_job);
    exporter.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_exports_spans_from_a_multi_thread_runtime() {
    let (url, collector) = Collector::start();
    export_a_job(&url);
    assert_job_exported(&collector, "slipway-test");
}

#[tokio::test(flavor = "current_thread")]
async fn telemetry_exports_spans_from_a_current_thread_runtime() {
    let (url, collector) = Collector::start();
    export_a_job(&url);
    assert_job_exported(&collector, "slipway-test");
}

#[test]
fn telemetry_exports_spans_outside_any_runtime() {
    let (url, collector) = Collector::start();
    export_a_job(&url);
    assert_job_exported(&collector, "slipway-test");
}

#[test]
fn telemetry_force_flush_sends_what_is_buffered() {
    let (url, collector) = Collector::start();
    let exporter = Exporter::to_endpoint(&url, "slipway-test").unwrap();
    let subscriber = telemetry::subscriber(
        LogFormat::Text,
        EnvFilter::new("info"),
        std::io::sink,
        Some(exporter.tracer()),
    );
    tracing::subscriber::with_default(subscriber, run_a_job);
    exporter.force_flush();
    assert_job_exported(&collector, "slipway-test");
    exporter.shutdown();
}

#[test]
fn telemetry_init_exports_from_env_and_the_guard_flushes() {
    let (url, collector) = Collector::start();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "telemetry_global_subscriber_in_child_process",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_VAR, "1")
        .env(telemetry::ENDPOINT_VAR, &url)
        .env(telemetry::SERVICE_NAME_VAR, "slipway-from-env")
        .env_remove(telemetry::TRACES_ENDPOINT_VAR)
        .status()
        .unwrap();
    assert!(status.success(), "child process failed: {status}");
    assert_job_exported(&collector, "slipway-from-env");
}

/// The child half of `telemetry_init_exports_from_env_and_the_guard_flushes`: what a binary's `main`
/// does. Run directly (without the variable set by the parent) it has nothing to check.
#[test]
fn telemetry_global_subscriber_in_child_process() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _telemetry = telemetry::start(LogFormat::Json, "slipway-passed-name");
        run_a_job();
        // The guard drops here, inside the runtime, as at the end of `#[tokio::main] main`.
    });
}
