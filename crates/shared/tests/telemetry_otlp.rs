//! OTLP export end to end: a receiver (`testing::otlp`: `POST /v1/traces` on 127.0.0.1:0,
//! protobuf decoded with `opentelemetry-proto`) receives the spans of a small traced job, with the stored
//! trace as parent, from every kind of runtime a binary may call us on. The last test runs the
//! global `telemetry::start` path in a child process configured only by `OTEL_*` variables, and
//! proves that dropping the guard delivers the last spans.

use std::process::Command;

use slipway_shared::config::LogFormat;
use slipway_shared::telemetry::{self, Exporter};
use slipway_shared::testing::otlp::OtlpReceiver as Collector;
use tracing_subscriber::EnvFilter;

const STORED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STORED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const STORED_SPAN: &str = "00f067aa0ba902b7";
/// Set for the child process of `telemetry_init_exports_from_env_and_the_guard_flushes`.
const CHILD_VAR: &str = "SLIPWAY_TELEMETRY_TEST_CHILD";

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
    let content_types = collector.content_types();
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
    let (url, collector) = Collector::start().unwrap();
    export_a_job(&url);
    assert_job_exported(&collector, "slipway-test");
}

#[tokio::test(flavor = "current_thread")]
async fn telemetry_exports_spans_from_a_current_thread_runtime() {
    let (url, collector) = Collector::start().unwrap();
    export_a_job(&url);
    assert_job_exported(&collector, "slipway-test");
}

#[test]
fn telemetry_exports_spans_outside_any_runtime() {
    let (url, collector) = Collector::start().unwrap();
    export_a_job(&url);
    assert_job_exported(&collector, "slipway-test");
}

#[test]
fn telemetry_force_flush_sends_what_is_buffered() {
    let (url, collector) = Collector::start().unwrap();
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
    let (url, collector) = Collector::start().unwrap();
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

/// Log lines written to a shared buffer.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn telemetry_exports_kubernetes_request_spans_without_logging_them() {
    let (url, collector) = Collector::start().unwrap();
    let exporter = Exporter::to_endpoint(&url, "slipway-test").unwrap();
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        move || writer.clone(),
        Some(exporter.tracer()),
    );
    tracing::subscriber::with_default(subscriber, || {
        let job = telemetry::job_span("job-7", "launch", 1, Some(STORED));
        job.in_scope(|| {
            // What kube-rs's client makes for each request (debug level, its own target).
            tracing::debug_span!(
                target: telemetry::KUBE_CLIENT_SPAN_TARGET,
                "HTTP",
                http.method = "PATCH",
                otel.name = "patch",
            )
            .in_scope(|| tracing::info!("inside the request"));
            // Any other debug span stays out of both.
            tracing::debug_span!("chatty").in_scope(|| {});
        });
    });
    exporter.shutdown();
    let job = collector.named("job");
    let request = collector.named("patch");
    assert_eq!(request.parent_span_id, job.span_id);
    assert_eq!(request.trace_id, STORED_TRACE);
    assert_eq!(request.attribute("http.method"), Some("PATCH"));
    assert_eq!(collector.spans().len(), 2, "{:#?}", collector.spans());
    let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("inside the request"), "{logged}");
    assert!(
        !logged.contains("PATCH"),
        "the request span is not logged: {logged}"
    );
}
