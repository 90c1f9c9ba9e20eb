//! `kube-sim-bench`: 1,000 Job create -> pod Succeeded -> logs cycles through a real
//! `kube::Client` at zero delays; prints one JSON line.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let figures = kube_sim::bench::bench_job_cycles(n)
        .await
        .context("benchmark")?;
    println!(
        "{}",
        serde_json::json!({"sim_job_cycles_per_s": (figures.sim_job_cycles_per_s * 10.0).round() / 10.0,
        "cycles": figures.cycles, "seconds": (figures.seconds * 1000.0).round() / 1000.0})
    );
    Ok(())
}
