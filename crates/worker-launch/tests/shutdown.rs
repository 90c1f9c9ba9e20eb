//! The launch worker binary stops promptly on SIGTERM whatever its dependencies do (issue 19):
//! idle, with its Redis stopped or stalled or its Postgres cut or stalled, it exits within
//! 5 s; while a launch waits for its rollout it turns unready at once, hands the job back
//! after its grace period and exits.

mod common;

use common::*;
use kube_sim::PodScript;
use slipway_core::JobKind;
use slipway_shared::queue::QueueState;
use slipway_shared::testing::shutdown::{Outage, sigterm_during, sigterm_watching_readiness};
use slipway_shared::testing::{Process, eventually, free_port, redis_url, set_arg};
use std::process::Command;
use std::time::Duration;

/// What the issue asks of an idle worker, generous for a shared machine.
const IDLE_BOUND: Duration = Duration::from_secs(5);

fn command(h: &Harness, args: Vec<String>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway-worker-launch"));
    c.args(&args[1..])
        .env("KUBECONFIG", h.sim.kubeconfig_path())
        .env("RUST_LOG", "info");
    c
}

async fn idle(outage: Outage) {
    let h = Harness::new(sim()).await;
    sigterm_during(
        outage,
        IDLE_BOUND,
        h.db.url(),
        &redis_url(),
        &h.prefix.name,
        Some(JobKind::Launch),
        |e| {
            let mut args = h.args(&[]);
            e.idle_worker_args(&mut args);
            command(&h, args)
        },
    )
    .await;
}

/// The worker idle: SIGTERMed during each outage.
mod idle {
    slipway_shared::outage_tests!(super::idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_launch_is_handed_back_within_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(3);
    // Pods never start: the launch waits for its rollout until the worker stops.
    let h = Harness::new(
        sim().script(|_| PodScript::run_forever().start_after(Duration::from_secs(3600))),
    )
    .await;
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let mut args = h.args(&[]);
    set_arg(&mut args, "--listen", &listen);
    set_arg(
        &mut args,
        "--grace-period-secs",
        &GRACE.as_secs().to_string(),
    );
    let mut worker = Process::spawn(command(&h, args)).unwrap();
    let id = h.launch(body("org/app#19", "ghcr.io/org/app:v1")).await;
    eventually(LONG, "the launch to wait for the rollout", || async {
        h.log_text(id).await.contains("waiting up to").then_some(())
    })
    .await;

    let stopped = sigterm_watching_readiness(&mut worker, listen.parse().unwrap()).await;
    let not_ready = stopped
        .not_ready_after
        .expect("/readyz said 503 while stopping");
    assert!(
        not_ready < Duration::from_secs(1),
        "unready after {not_ready:?}"
    );
    assert!(
        stopped.exited_after < GRACE + Duration::from_secs(5),
        "exited {:?} after SIGTERM",
        stopped.exited_after
    );
    let queued = h.queue.get(JobKind::Launch, &id.to_string()).await.unwrap();
    assert_eq!(
        queued.and_then(|j| j.state),
        Some(QueueState::Waiting),
        "handed back for the next worker"
    );
}
