//! Process-wide tracing set-up: `RUST_LOG` filtering (default `info`), text or flat JSON log
//! lines, and OTLP span export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Binaries call [`start`] (or [`init`] then [`shutdown`] on exit) once. The trace-context helpers
//! ([`current_traceparent`], [`job_span`], [`extract_traceparent`], ...) carry a request's W3C
//! trace from the API, through the job's stored `trace_context`, into the worker's job span.
//! Without an endpoint no OpenTelemetry layer is installed: the helpers then return `None` or do
//! nothing, and logging costs what it always did.
//!
//! ```no_run
//! use slipway_shared::config::LogFormat;
//! use slipway_shared::telemetry;
//!
//! #[tokio::main]
//! async fn main() {
//!     // Kept to the end of `main`: dropping it sends the spans still buffered.
//!     let _telemetry = telemetry::start(LogFormat::Json, "slipway-worker-build");
//!     // A worker, for each job it runs (`trace_context` as the API stored it):
//!     let span = telemetry::job_span("0193…", "build", 1, Some("00-4bf9…-00f0…-01"));
//!     let _entered = span.enter();
//!     tracing::info!("job started");
//! }
//! ```

mod export;
mod json;
mod propagation;

use std::io;
use std::sync::Mutex;

use opentelemetry_sdk::trace::SdkTracer;
use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

pub use export::{
    ENDPOINT_VAR, ExportError, Exporter, SDK_DISABLED_VAR, SERVICE_NAME_VAR, TRACES_ENDPOINT_VAR,
};
pub use json::FlatJson;
pub use propagation::{
    TRACEPARENT, current_traceparent, extract_traceparent, is_valid_traceparent, job_span,
    request_span, set_parent_from_headers, set_parent_from_traceparent, traceparent_of,
};

/// The exporter of the installed global subscriber, kept so [`shutdown`] can flush it.
static EXPORTER: Mutex<Option<Exporter>> = Mutex::new(None);

/// Installs the global subscriber, with OTLP export if the environment asks for it. Returns
/// `false` if a subscriber was already installed (tests call this repeatedly; the first call
/// wins). Call [`shutdown`] before exiting, or use [`start`], so the last spans are sent.
pub fn init(format: LogFormat, service_name: &str) -> bool {
    // A broken exporter configuration must not stop the service: log it once logging works.
    let (exporter, export_error) = match Exporter::from_env(service_name) {
        Ok(exporter) => (exporter, None),
        Err(error) => (None, Some(error)),
    };
    let tracer = exporter.as_ref().map(Exporter::tracer);
    let installed = subscriber(format, default_filter(), io::stdout, tracer)
        .try_init()
        .is_ok();
    if !installed {
        // Another subscriber won; this exporter would never see a span.
        if let Some(exporter) = exporter {
            exporter.shutdown();
        }
        return false;
    }
    let otlp = exporter.is_some();
    if let Some(exporter) = exporter {
        *EXPORTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(exporter);
    }
    tracing::info!(service = service_name, otlp, "telemetry initialised");
    if let Some(error) = export_error {
        tracing::warn!(%error, "OTLP span export disabled");
    }
    true
}

/// Flushes and stops span export of the subscriber [`init`] installed (no-op without one).
/// Safe to call from async code on any Tokio runtime flavour, and more than once.
pub fn shutdown() {
    let exporter = EXPORTER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
}

/// [`init`], returning a guard that calls [`shutdown`] when dropped: keep it alive in `main`
/// (`let _telemetry = telemetry::start(format, "slipway-api");`).
pub fn start(format: LogFormat, service_name: &str) -> TelemetryGuard {
    TelemetryGuard {
        installed: init(format, service_name),
    }
}

/// Flushes pending spans when dropped; see [`start`].
#[must_use = "dropping the guard stops span export at once"]
#[derive(Debug)]
pub struct TelemetryGuard {
    // Only the call that installed the subscriber owns its exporter.
    installed: bool,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if self.installed {
            shutdown();
        }
    }
}

/// `RUST_LOG`, or `info` when it is unset or invalid (rather than silencing everything).
pub fn default_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The subscriber [`init`] installs, built without installing it: log lines in `format` to
/// `writer`, filtered by `filter`, and spans to `tracer` when given. Tests use it with
/// [`tracing::subscriber::with_default`] and their own writer or tracer.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    tracer: Option<SdkTracer>,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt_layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(writer)
            .boxed(),
    };
    // Each layer has its own filter: the export also takes the Kubernetes client's request
    // spans (debug level), which would only be noise in the log lines.
    let otel_layer = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(export_filter(&filter).and(not_exporter_internals()))
    });
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(otel_layer)
}

/// The target of kube-rs's `HTTP` span, one per request to the Kubernetes API (its tower
/// `TraceLayer`, `kube-client` `client/builder.rs`: `debug_span!("HTTP", http.method, http.url,
/// http.status_code, otel.kind = "client", ...)`).
pub const KUBE_CLIENT_SPAN_TARGET: &str = "kube_client::client::builder";

/// What is exported: what the log filter lets through, and every Kubernetes API request.
fn export_filter(log_filter: &EnvFilter) -> EnvFilter {
    let kube = format!("{KUBE_CLIENT_SPAN_TARGET}=debug");
    // Both parse: the log filter printed is its own directives, and the target is fixed.
    EnvFilter::try_new(log_filter.to_string())
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(kube.parse().expect("a valid directive"))
}

/// Spans of the HTTP stack and of OpenTelemetry itself are not exported: the exporter runs on
/// that stack, so exporting them would feed every export into the next one.
fn not_exporter_internals() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
        .with_target("opentelemetry_http", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("rustls", LevelFilter::OFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_init_is_harmless() {
        let first = init(LogFormat::Json, "test");
        assert!(
            !init(LogFormat::Text, "test"),
            "the first call ({first}) wins"
        );
        // Nothing was exported from this process; shutting down twice is fine.
        shutdown();
        shutdown();
    }
}
