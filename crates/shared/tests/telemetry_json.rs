//! JSON log lines (`--log-format json`) carry the job span's fields on every line a job writes,
//! including lines from spans nested inside the job span; text lines carry them too.

use std::io;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde_json::Value;
use slipway_shared::config::LogFormat;
use slipway_shared::telemetry;
use tracing_subscriber::EnvFilter;

const STORED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A `MakeWriter` whose lines land in a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Runs a small job under a scoped subscriber and returns what it logged.
fn log_a_job(format: LogFormat) -> String {
    log_a_traced_job(format, None)
}

/// [`log_a_job`], with spans also going to `tracer`.
fn log_a_traced_job(format: LogFormat, tracer: Option<SdkTracer>) -> String {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = telemetry::subscriber(
        format,
        EnvFilter::new("info"),
        move || writer.clone(),
        tracer,
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("before the job");
        let span = telemetry::job_span(
            "0193a1b2-0000-7000-8000-000000000001",
            "build",
            2,
            Some(STORED),
        );
        span.in_scope(|| {
            tracing::info!(step = "clone", "job started");
            tracing::info_span!("push", image = "registry/app:abc").in_scope(|| {
                tracing::warn!(bytes = 42_u64, retried = true, "pushed");
            });
        });
        tracing::info!("after the job");
    });
    buffer.text()
}

#[test]
fn telemetry_json_lines_carry_the_job_fields() {
    let output = log_a_job(LogFormat::Json);
    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len(), 4, "{output}");

    let outside = [&lines[0], &lines[3]];
    for line in outside {
        assert!(line.get("job.id").is_none(), "{line}");
    }
    // Without export there is no trace to point to.
    assert!(
        lines.iter().all(|line| line.get("trace_id").is_none()),
        "{output}"
    );

    let started = &lines[1];
    let pushed = &lines[2];
    for line in [started, pushed] {
        assert_eq!(
            line["job.id"], "0193a1b2-0000-7000-8000-000000000001",
            "{line}"
        );
        assert_eq!(line["job.kind"], "build", "{line}");
        assert_eq!(line["job.attempt"], 2, "{line}");
        assert_eq!(line["target"], "telemetry_json", "{line}");
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
    assert_eq!(started["message"], "job started");
    assert_eq!(started["step"], "clone");
    assert_eq!(started["span"], "job");
    assert_eq!(started["level"], "INFO");

    // The nested span's fields join the job's, and event fields keep their JSON types.
    assert_eq!(pushed["message"], "pushed");
    assert_eq!(pushed["span"], "push");
    assert_eq!(pushed["image"], "registry/app:abc");
    assert_eq!(pushed["bytes"], 42);
    assert_eq!(pushed["retried"], true);
    assert_eq!(pushed["level"], "WARN");
}

#[test]
fn telemetry_text_lines_carry_the_job_fields() {
    let output = log_a_job(LogFormat::Text);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 4, "{output}");
    for line in &lines[1..3] {
        assert!(
            line.contains("0193a1b2-0000-7000-8000-000000000001"),
            "{line}"
        );
        assert!(line.contains("build"), "{line}");
        assert!(line.contains("job.attempt"), "{line}");
    }
}

#[test]
fn telemetry_json_lines_carry_the_trace_id_when_exporting() {
    let provider = SdkTracerProvider::builder().build();
    let output = log_a_traced_job(LogFormat::Json, Some(provider.tracer("test")));
    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{output}");
    for line in &lines[1..3] {
        assert_eq!(
            line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{line}"
        );
        assert_eq!(
            line["job.id"], "0193a1b2-0000-7000-8000-000000000001",
            "{line}"
        );
    }
    assert!(lines[0].get("trace_id").is_none(), "{output}");
}
