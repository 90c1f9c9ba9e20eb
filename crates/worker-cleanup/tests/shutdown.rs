//! The cleanup worker binary stops promptly on SIGTERM whatever its dependencies do (issue 19):
//! idle (sweeping, holding the sweep lock), with its Redis stopped or stalled or its Postgres
//! cut or stalled, it exits within 5 s; with a teardown running it turns unready at once, hands
//! the job back after its grace period, exits, and leaves the sweep lock free for a successor.

mod common;

use common::{Harness, managed};
use slipway_core::JobKind;
use slipway_core::naming::preview_namespace;
use slipway_shared::leader::lock_key;
use slipway_shared::queue::QueueState;
use slipway_shared::testing::shutdown::{Outage, sigterm_during, sigterm_watching_readiness};
use slipway_shared::testing::{Process, eventually, free_port, redis_url, set_arg};
use slipway_worker_cleanup::sweep::LEADERSHIP;
use sqlx::Connection;
use std::process::Command;
use std::time::Duration;

/// What the issue asks of an idle worker, generous for a shared machine.
const IDLE_BOUND: Duration = Duration::from_secs(5);

fn command(h: &Harness, args: Vec<String>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway-worker-cleanup"));
    c.args(&args[1..])
        .env("KUBECONFIG", h.sim.kubeconfig_path())
        .env("RUST_LOG", "info");
    c
}

/// Sweeping every second, so the sweeper holds its lock and has rounds in flight.
const SWEEPING: [&str; 2] = ["--sweep-interval-secs", "1"];

async fn idle(outage: Outage) {
    let h = Harness::new().await;
    sigterm_during(
        outage,
        IDLE_BOUND,
        h.db.url(),
        &redis_url(),
        &h.prefix.name,
        Some(JobKind::Cleanup),
        |e| {
            let mut args = h.cleanup_args(&SWEEPING);
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
async fn a_running_teardown_is_handed_back_and_the_sweep_lock_freed() {
    const GRACE: Duration = Duration::from_secs(3);
    let h = Harness::new().await;
    // A namespace held in Terminating by a finalizer nobody removes: the teardown waits.
    let key = "org/app#19";
    let ns = preview_namespace(key);
    h.create_held_namespace(&ns, managed()).await;

    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let mut args = h.cleanup_args(&SWEEPING);
    set_arg(&mut args, "--listen", &listen);
    set_arg(
        &mut args,
        "--grace-period-secs",
        &GRACE.as_secs().to_string(),
    );
    set_arg(&mut args, "--namespace-delete-deadline-secs", "600");
    let mut worker = Process::spawn(command(&h, args)).unwrap();
    eventually(
        Duration::from_secs(60),
        "a sweep (the lock held)",
        || async { (!h.store.recent_sweeps(1).await.unwrap().is_empty()).then_some(()) },
    )
    .await;
    let id = h.cleanup(key).await;
    eventually(Duration::from_secs(60), "the teardown to wait", || async {
        h.log_text(id)
            .await
            .contains("deleting namespace")
            .then_some(())
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
    let queued = h
        .queue
        .get(JobKind::Cleanup, &id.to_string())
        .await
        .unwrap();
    assert_eq!(
        queued.and_then(|j| j.state),
        Some(QueueState::Waiting),
        "handed back for the next worker"
    );
    // The sweep lock went with the worker: a successor takes it at once.
    let mut successor = sqlx::PgConnection::connect(h.db.url()).await.unwrap();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(LEADERSHIP))
        .fetch_one(&mut successor)
        .await
        .unwrap();
    assert!(got, "the sweep lock is free");
    successor.close().await.unwrap();
}
