//! W3C trace-context propagation through the subscriber `telemetry::init` installs: a job span
//! continues the stored trace, a request span continues its caller's, garbage is ignored, and the
//! API can read back the `traceparent` to store. Spans are collected in memory with a scoped
//! subscriber, so these tests share no global state.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use slipway_shared::config::LogFormat;
use slipway_shared::telemetry;
use tracing_subscriber::EnvFilter;

const STORED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STORED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const STORED_SPAN: &str = "00f067aa0ba902b7";

/// Keeps every finished span.
#[derive(Debug, Clone, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collected {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Collected {
    fn named(&self, name: &str) -> SpanData {
        let spans = self.0.lock().unwrap();
        let found: Vec<_> = spans.iter().filter(|span| span.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
        found[0].clone()
    }
}

/// Runs `body` under the subscriber `init` would install, with an in-memory span exporter.
fn traced<T>(body: impl FnOnce() -> T) -> (T, Collected) {
    let collected = Collected::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(collected.clone())
        .build();
    let subscriber = telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("info"),
        std::io::sink,
        Some(provider.tracer("test")),
    );
    let result = tracing::subscriber::with_default(subscriber, body);
    provider.shutdown().unwrap();
    (result, collected)
}

fn hex_trace(id: TraceId) -> String {
    format!("{id:032x}")
}

fn hex_span(id: SpanId) -> String {
    format!("{id:016x}")
}

#[test]
fn telemetry_job_span_continues_the_stored_trace() {
    let (inside, collected) = traced(|| {
        let span = telemetry::job_span("job-1", "launch", 1, Some(STORED));
        span.in_scope(|| tracing::info_span!("apply").in_scope(telemetry::current_traceparent))
    });

    let job = collected.named("job");
    assert_eq!(hex_trace(job.span_context.trace_id()), STORED_TRACE);
    assert_eq!(hex_span(job.parent_span_id), STORED_SPAN);
    assert!(job.parent_span_is_remote);
    let attributes: Vec<String> = job
        .attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    for expected in ["job.id=job-1", "job.kind=launch", "job.attempt=1"] {
        assert!(
            attributes.iter().any(|a| a == expected),
            "{expected} in {attributes:?}"
        );
    }

    // Spans inside the job stay in its trace, and what the helper reports is the live span.
    let apply = collected.named("apply");
    assert_eq!(apply.span_context.trace_id(), job.span_context.trace_id());
    assert_eq!(apply.parent_span_id, job.span_context.span_id());
    assert_eq!(
        inside.as_deref(),
        Some(
            format!(
                "00-{STORED_TRACE}-{}-01",
                hex_span(apply.span_context.span_id())
            )
            .as_str()
        )
    );
}

#[test]
fn telemetry_garbage_traceparent_is_ignored() {
    for garbage in [
        "garbage",
        "",
        "00-zz-yy-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        let ((), collected) = traced(|| {
            let span = telemetry::job_span("job-2", "build", 3, Some(garbage));
            assert!(!telemetry::set_parent_from_traceparent(&span, garbage));
            span.in_scope(|| tracing::info!("still runs"));
        });
        let job = collected.named("job");
        // A new trace of its own: a root span with a fresh, valid trace id.
        assert!(job.span_context.is_valid(), "{garbage:?}");
        assert_ne!(hex_trace(job.span_context.trace_id()), STORED_TRACE);
        assert_eq!(job.parent_span_id, SpanId::INVALID, "{garbage:?}");
    }
}

#[test]
fn telemetry_job_span_without_stored_context_starts_a_trace() {
    let (traceparent, collected) = traced(|| {
        let span = telemetry::job_span("job-3", "cleanup", 1, None);
        telemetry::traceparent_of(&span)
    });
    let job = collected.named("job");
    assert_eq!(job.parent_span_id, SpanId::INVALID);
    let traceparent = traceparent.expect("a traced span has a traceparent");
    assert!(telemetry::is_valid_traceparent(&traceparent));
    assert!(traceparent.contains(&hex_trace(job.span_context.trace_id())));
}

#[test]
fn telemetry_request_span_takes_the_callers_trace_and_the_api_stores_it() {
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", http::HeaderValue::from_static(STORED));
    let (stored, collected) = traced(|| {
        let request = tracing::info_span!("request", method = "POST");
        assert!(telemetry::set_parent_from_headers(&request, &headers));
        request.in_scope(telemetry::current_traceparent)
    });
    let request = collected.named("request");
    assert_eq!(hex_span(request.parent_span_id), STORED_SPAN);
    // The value the API stores names the request span, so the job span will be its child.
    assert_eq!(
        stored.as_deref(),
        Some(
            format!(
                "00-{STORED_TRACE}-{}-01",
                hex_span(request.span_context.span_id())
            )
            .as_str()
        )
    );

    // A request without (or with a broken) header starts its own trace.
    let mut broken = http::HeaderMap::new();
    broken.insert("traceparent", http::HeaderValue::from_static("00-broken"));
    let ((), collected) = traced(|| {
        let request = tracing::info_span!("request");
        assert!(!telemetry::set_parent_from_headers(&request, &broken));
        assert!(!telemetry::set_parent_from_headers(
            &request,
            &http::HeaderMap::new()
        ));
        request.in_scope(|| ());
    });
    assert_eq!(collected.named("request").parent_span_id, SpanId::INVALID);
}

#[test]
fn telemetry_parent_cannot_be_changed_once_the_span_started() {
    let (applied, _) = traced(|| {
        let span = tracing::info_span!("late");
        span.in_scope(|| ());
        telemetry::set_parent_from_traceparent(&span, STORED)
    });
    assert!(!applied);
}

#[test]
fn telemetry_request_span_continues_the_callers_trace() {
    let request = http::Request::post("/v1/jobs?x=1")
        .header("traceparent", STORED)
        .body(())
        .unwrap();
    let (stored, collected) = traced(|| {
        let span = telemetry::request_span(&request);
        span.in_scope(telemetry::current_traceparent)
    });
    let span = collected.named("request");
    assert_eq!(hex_trace(span.span_context.trace_id()), STORED_TRACE);
    assert_eq!(hex_span(span.parent_span_id), STORED_SPAN);
    let attributes: Vec<String> = span
        .attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    for expected in ["http.method=POST", "http.path=/v1/jobs"] {
        assert!(
            attributes.iter().any(|a| a == expected),
            "{expected} in {attributes:?}"
        );
    }
    assert!(stored.is_some_and(|traceparent| traceparent.contains(STORED_TRACE)));

    let plain = http::Request::get("/healthz").body(()).unwrap();
    let ((), collected) = traced(|| telemetry::request_span(&plain).in_scope(|| ()));
    assert_eq!(collected.named("request").parent_span_id, SpanId::INVALID);
}
