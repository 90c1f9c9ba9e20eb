//! OTLP span export over HTTP/protobuf: reqwest with rustls on the `ring` provider (no gRPC, no
//! OpenSSL, no aws-lc), a batch span processor on the Tokio runtime, and a shutdown that flushes
//! without dead-locking the runtime it runs on.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Base URL of the collector; spans go to `<endpoint>/v1/traces`. Its presence turns export on.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Full URL for spans only; overrides [`ENDPOINT_VAR`] and also turns export on.
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Overrides the service name a binary passes.
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
/// `true` turns export off whatever the endpoint (the OpenTelemetry SDK switch).
pub const SDK_DISABLED_VAR: &str = "OTEL_SDK_DISABLED";

/// The HTTP client's own limits; the exporter also bounds each export (OTLP default 10 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why span export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The TLS or HTTP client could not be built.
    #[error("OTLP HTTP client: {0}")]
    Client(String),
    /// The exporter rejected its configuration (e.g. an invalid endpoint URL).
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// A running span export pipeline. Feed [`Exporter::tracer`] to [`super::subscriber`]; call
/// [`Exporter::shutdown`] on exit so buffered spans are sent.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Exporter {
    /// Export as the standard `OTEL_EXPORTER_OTLP_*` variables say (endpoint, headers, timeout,
    /// compression; `OTEL_TRACES_SAMPLER` too), or `None` when no endpoint is set or
    /// `OTEL_SDK_DISABLED=true`. The service name is `OTEL_SERVICE_NAME` if set, else
    /// `service_name`.
    pub fn from_env(service_name: &str) -> Result<Option<Self>, ExportError> {
        let disabled =
            env_value(SDK_DISABLED_VAR).is_some_and(|value| value.eq_ignore_ascii_case("true"));
        if disabled
            || (env_value(ENDPOINT_VAR).is_none() && env_value(TRACES_ENDPOINT_VAR).is_none())
        {
            return Ok(None);
        }
        let name = env_value(SERVICE_NAME_VAR).unwrap_or_else(|| service_name.to_owned());
        // No explicit endpoint: the exporter resolves the variables itself, per the OTLP spec.
        Self::build(None, &name).map(Some)
    }

    /// Export to the collector at `endpoint` (a base URL, like [`ENDPOINT_VAR`]) as
    /// `service_name`, whatever the environment says about either.
    pub fn to_endpoint(endpoint: &str, service_name: &str) -> Result<Self, ExportError> {
        let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        Self::build(Some(traces), service_name)
    }

    fn build(traces_endpoint: Option<String>, service_name: &str) -> Result<Self, ExportError> {
        let mut builder = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(http_client()?);
        if let Some(url) = traces_endpoint {
            builder = builder.with_endpoint(url);
        }
        let exporter = builder.build()?;
        // `Resource::builder` keeps OTEL_RESOURCE_ATTRIBUTES; the name is set explicitly last.
        let resource = Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        let provider = SdkTracerProvider::builder().with_resource(resource);
        // On a multi-thread runtime the batch task shares it. Without one, or on a
        // current-thread runtime (which a blocking flush would stall), the SDK gives the task
        // its own thread and runtime.
        let provider = match Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => provider
                .with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build()),
            _ => provider.with_span_processor(
                BatchSpanProcessor::builder(exporter, runtime::TokioCurrentThread).build(),
            ),
        }
        .build();
        let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
        Ok(Self { provider, tracer })
    }

    /// The tracer for the `tracing-opentelemetry` layer.
    pub fn tracer(&self) -> SdkTracer {
        self.tracer.clone()
    }

    /// Sends the spans buffered so far and waits for the collector's answer. Failures are
    /// logged, never fatal.
    pub fn force_flush(&self) {
        let provider = &self.provider;
        if let Err(error) = block_outside_runtime(|| provider.force_flush()) {
            tracing::warn!(%error, "OTLP span flush failed");
        }
    }

    /// Sends the buffered spans and stops the pipeline. Failures are logged, never fatal.
    pub fn shutdown(self) {
        let provider = self.provider;
        if let Err(error) = block_outside_runtime(|| provider.shutdown()) {
            tracing::warn!(%error, "OTLP span export shutdown failed");
        }
    }
}

/// Runs a blocking SDK call. The SDK waits for its batch task with a plain `block_on`; on a
/// multi-thread runtime worker that task may be queued behind us, so the worker is handed
/// over first. Elsewhere the task runs on another thread and blocking is harmless.
fn block_outside_runtime<T>(call: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(call),
        _ => call(),
    }
}

/// reqwest 0.13's default TLS would pull aws-lc-rs: configure rustls with `ring` (already used
/// by kube) and the platform's certificate verifier instead.
fn http_client() -> Result<reqwest_otlp::Client, ExportError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ExportError::Client(error.to_string()))?
        .with_platform_verifier()
        .map_err(|error| ExportError::Client(error.to_string()))?
        .with_no_client_auth();
    reqwest_otlp::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|error| ExportError::Client(error.to_string()))
}

/// A set, non-blank environment variable.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_client_builds_with_ring_rustls() {
        // A version skew between our rustls and reqwest's would surface here as an
        // "unknown TLS backend" error.
        http_client().unwrap();
    }

    #[test]
    fn invalid_endpoint_is_an_error_not_a_panic() {
        assert!(Exporter::to_endpoint("not a url", "test").is_err());
    }
}
