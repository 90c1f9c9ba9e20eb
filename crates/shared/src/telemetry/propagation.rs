//! W3C trace-context propagation between `tracing` spans and `traceparent` strings: the API
//! stores the request's `traceparent` with each job, and the worker's job span continues that
//! trace. Malformed values are ignored, never an error or a panic: a bad header must not cost a
//! request or a job.

use std::collections::HashMap;
use std::fmt::Display;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header (and carrier key) name.
pub const TRACEPARENT: &str = "traceparent";

/// The remote span context a valid `traceparent` describes.
fn parse(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.trim().to_owned())]);
    // A fresh base context: whatever is active on this thread is no part of the caller's trace.
    let context = TraceContextPropagator::new().extract_with_context(&Context::new(), &carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Whether `traceparent` is a well-formed W3C `traceparent` value with non-zero ids.
pub fn is_valid_traceparent(traceparent: &str) -> bool {
    parse(traceparent).is_some()
}

/// The `traceparent` of the current span, for the API to store with the job it enqueues.
/// `None` without an OpenTelemetry layer (export off) or outside any span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// The `traceparent` of `span`; see [`current_traceparent`]. Fixes the span's parent.
pub fn traceparent_of(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the remote span `traceparent` names. Returns whether it did: `false`
/// for a malformed value, without an OpenTelemetry layer, or once the span's OpenTelemetry
/// context exists (it is fixed when the span is first entered or its context read, which
/// [`job_span`], [`request_span`] and [`traceparent_of`] do): call it right after creating the
/// span.
pub fn set_parent_from_traceparent(span: &Span, traceparent: &str) -> bool {
    match parse(traceparent) {
        Some(parent) => span.set_parent(parent).is_ok(),
        None => false,
    }
}

/// The valid `traceparent` of an incoming request, if any (to store, or to pass to
/// [`set_parent_from_traceparent`]).
pub fn extract_traceparent(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(TRACEPARENT)?.to_str().ok()?.trim();
    is_valid_traceparent(value).then(|| value.to_owned())
}

/// Makes the span of an incoming request a child of the caller's span, when the request
/// carries a valid `traceparent`. Returns whether it did.
pub fn set_parent_from_headers(span: &Span, headers: &http::HeaderMap) -> bool {
    extract_traceparent(headers)
        .is_some_and(|traceparent| set_parent_from_traceparent(span, &traceparent))
}

/// The span a worker runs one job attempt in: fields `job.id`, `job.kind`, `job.attempt` (on
/// every log line inside it), continuing the trace of `traceparent` (the job's stored
/// `trace_context`) when it is valid. A root span: the job belongs to the request's trace, not
/// to whatever the worker loop was doing. With export on, its log lines also carry `trace_id`.
pub fn job_span(
    id: impl Display,
    kind: impl Display,
    attempt: u32,
    traceparent: Option<&str>,
) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "job",
        job.id = %id,
        job.kind = %kind,
        job.attempt = attempt,
        trace_id = tracing::field::Empty,
    );
    if let Some(traceparent) = traceparent {
        set_parent_from_traceparent(&span, traceparent);
    }
    record_trace_id(&span);
    span
}

/// The span of one incoming HTTP request (fields `http.method`, `http.path`, and `trace_id`
/// with export on), child of the caller's span when the request carries a valid
/// `traceparent`. Fits `tower_http::trace::TraceLayer::make_span_with`.
pub fn request_span<B>(request: &http::Request<B>) -> Span {
    let span = tracing::info_span!(
        "request",
        http.method = %request.method(),
        http.path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    set_parent_from_headers(&span, request.headers());
    record_trace_id(&span);
    span
}

/// Puts the span's trace id on its log lines, so they can be matched with the exported trace.
/// Must come after any `set_parent`: reading the context fixes the span's parent.
fn record_trace_id(span: &Span) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn validates_traceparents() {
        assert!(is_valid_traceparent(VALID));
        assert!(is_valid_traceparent(&format!(" {VALID} ")));
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ü",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn headers_yield_only_valid_traceparents() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(extract_traceparent(&headers), None);
        headers.insert(TRACEPARENT, http::HeaderValue::from_static(VALID));
        assert_eq!(extract_traceparent(&headers).as_deref(), Some(VALID));
        headers.insert(TRACEPARENT, http::HeaderValue::from_static("00-nope"));
        assert_eq!(extract_traceparent(&headers), None);
    }

    #[test]
    fn without_a_layer_helpers_do_nothing() {
        let span = job_span("j", "build", 1, Some(VALID));
        assert_eq!(traceparent_of(&span), None);
        assert!(!set_parent_from_traceparent(&span, VALID));
        assert_eq!(current_traceparent(), None);
    }
}
