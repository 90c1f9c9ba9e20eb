//! Process-wide tracing set-up: `RUST_LOG` filtering (default `info`) with text or JSON output.
//!
//! OTLP export (`OTEL_EXPORTER_OTLP_ENDPOINT`) is not wired yet; it will be added here as an
//! extra layer so binaries keep calling [`init`] unchanged.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber. Returns `false` if one was already installed (tests call
/// this repeatedly; the first call wins).
pub fn init(format: LogFormat, service_name: &str) -> bool {
    // An invalid RUST_LOG falls back to `info` rather than silencing everything.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(true))
            .try_init()
            .is_ok(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
            .is_ok(),
    };
    if installed {
        tracing::info!(service = service_name, "telemetry initialised");
    }
    installed
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
    }
}
