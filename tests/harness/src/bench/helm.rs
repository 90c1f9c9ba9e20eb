//! The `helm` source's figures (issue 18): what rendering a chart in the launch worker costs.
//!
//! - `helm_render_p50_ms`: the launch worker's render of `examples/helm-app` (the chart and a
//!   values file written to a private directory, the pinned Helm run with an empty environment
//!   and bounded output, its YAML read back), p50.
//! - `helm_template_p50_ms`: the ceiling, timed in the same run: the same `helm template` of the
//!   same chart directory run directly.
//! - `helm_render_vs_template`: their ratio.
//!
//! Without Helm (`make tools`) the section fails and says so.

use super::{BenchEnv, Report, p50_ms};
use base64::Engine as _;
use slipway_core::source::HelmLaunch;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

const ROUNDS: usize = 10;
const NAMESPACE: &str = "slipway-pv-bench";

/// Every file under `dir`, by its path relative to `dir`, base64.
fn files(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir)?.to_string_lossy().into_owned();
                let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&path)?);
                out.insert(rel, b64);
            }
        }
    }
    Ok(out)
}

pub async fn run(_env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let helm = slipway_shared::testing::helm()
        .ok_or_else(|| anyhow::anyhow!("helm not found: run `make tools`"))?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/helm-app");
    let values = std::fs::read(example.join("preview-values.yaml"))?;
    let launch = HelmLaunch {
        chart: "examples/helm-app/chart".into(),
        files: files(&example.join("chart"))?,
        values: vec![(
            "examples/helm-app/preview-values.yaml".into(),
            base64::engine::general_purpose::STANDARD.encode(&values),
        )],
        image_repository: "image.repository".into(),
        image_tag: "image.tag".into(),
        image: "registry.bench:5000/bench/app".into(),
        tag: format!("{}@sha256:{}", "0".repeat(40), "1".repeat(64)),
        service: "web".into(),
        port: 8080,
    };
    let runner = slipway_worker_launch::helm::HelmRunner::new(&helm);
    let (mut rendered, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let yaml =
            slipway_worker_launch::helm::render(&runner, &launch, NAMESPACE, Some("v1.33.0"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        rendered.push(started.elapsed());
        anyhow::ensure!(yaml.contains("kind: Deployment"), "no Deployment: {yaml}");
        let started = Instant::now();
        let out = tokio::process::Command::new(&helm)
            .args(["template", "preview"])
            .arg(example.join("chart"))
            .args([
                "--namespace",
                NAMESPACE,
                "--no-hooks",
                "--kube-version",
                "v1.33.0",
            ])
            .arg("--values")
            .arg(example.join("preview-values.yaml"))
            .output()
            .await?;
        direct.push(started.elapsed());
        anyhow::ensure!(out.status.success(), "helm template failed");
    }
    let (rendered, direct) = (p50_ms(rendered), p50_ms(direct));
    report.figure(
        "helm",
        "helm_render_p50_ms",
        "the launch worker's render of examples/helm-app, p50",
        rendered,
        "ms",
    );
    report.figure(
        "helm",
        "helm_template_p50_ms",
        "the same `helm template` run directly (ceiling), p50",
        direct,
        "ms",
    );
    report.figure(
        "helm",
        "helm_render_vs_template",
        "render / helm template alone",
        rendered / direct,
        "x",
    );
    Ok(())
}
