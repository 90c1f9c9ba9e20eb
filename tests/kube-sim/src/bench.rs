//! The Job-cycle benchmark: Job create -> pod Succeeded -> logs read, through a real
//! `kube::Client` at zero delays.

use std::time::Instant;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams, WatchEvent, WatchParams};
use serde::Serialize;

use crate::{Delays, KubeSim, PodScript, SimError};

/// Benchmark results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchFigures {
    /// Cycles run.
    pub cycles: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Cycles per second.
    pub sim_job_cycles_per_s: f64,
}

fn job(name: &str) -> Result<Job, SimError> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "args": ["echo", name]}]}}}
    }))?)
}

/// Runs `n` cycles sequentially: create a Job, wait (via the client) for its pod to succeed,
/// read its logs.
pub async fn bench_job_cycles(n: usize) -> Result<BenchFigures, SimError> {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .history_limit(200_000)
        // The figure is for the Job/pod/log machinery; Events would add ~6 writes per cycle.
        .events(false)
        .script(|p| {
            PodScript::succeed()
                .log(format!("building {}", p.name))
                .log("done")
        })
        .start()
        .await?;
    let client = sim.client()?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let kerr = |e: kube::Error| SimError::Kube(e.to_string());
    let start = Instant::now();
    for i in 0..n {
        let name = format!("bench-{i}");
        jobs.create(&PostParams::default(), &job(&name)?)
            .await
            .map_err(kerr)?;
        let sel = format!("batch.kubernetes.io/job-name={name}");
        // Watch the job's pods (as a worker would) until one has succeeded.
        let wp = WatchParams::default().labels(&sel).timeout(30);
        let mut events = pods.watch(&wp, "0").await.map_err(kerr)?.boxed();
        let pod_name = loop {
            match events.try_next().await.map_err(kerr)? {
                Some(WatchEvent::Added(p) | WatchEvent::Modified(p))
                    if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded") =>
                {
                    break p.metadata.name.clone().unwrap_or_default();
                }
                Some(_) => {}
                None => return Err(SimError::Timeout(format!("job {name}"))),
            }
        };
        drop(events);
        let logs = pods
            .logs(&pod_name, &LogParams::default())
            .await
            .map_err(kerr)?;
        if !logs.contains("done") {
            return Err(SimError::Kube(format!(
                "unexpected logs for {pod_name}: {logs}"
            )));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    sim.shutdown().await;
    Ok(BenchFigures {
        cycles: n,
        seconds,
        sim_job_cycles_per_s: n as f64 / seconds,
    })
}
