//! The simulator's own speed (issue 2): Job create -> pod Succeeded -> logs read cycles
//! through a real `kube::Client` at zero delays.

use super::{BenchEnv, Report};

const CYCLES: usize = 1_000;

pub async fn run(_env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let figures = kube_sim::bench::bench_job_cycles(CYCLES).await?;
    report.note(
        "sim",
        "cycles",
        &format!("{} in {:.2} s", figures.cycles, figures.seconds),
    );
    report.figure(
        "sim",
        "sim_job_cycles_per_s",
        "Job create -> Succeeded -> logs",
        figures.sim_job_cycles_per_s,
        "cycles/s",
    );
    Ok(())
}
