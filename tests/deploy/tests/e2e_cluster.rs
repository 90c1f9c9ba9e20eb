//! `make e2e-cluster` (scripts/e2e-cluster.sh) cannot run here, since there is no real cluster,
//! but what it does before touching a cluster can: it refuses the simulator (a pass against
//! kube-sim would prove nothing) and says what is missing, each with exit code 2 and nothing
//! installed. The script's syntax, ShellCheck and the CI workflow's actionlint are `make
//! e2e-check`. Needs kubectl (`make tools`).

use kube_sim::{Delays, KubeSim};
use slipway_deploy_tests::{kubectl, repo_root};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

/// Runs the script with `KUBECONFIG` (if any) and kubectl on `PATH`.
async fn run_script(kubeconfig: Option<PathBuf>) -> Output {
    let kubectl = kubectl();
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = kubectl.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        path = std::env::join_paths(dirs).expect("PATH");
    }
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/e2e-cluster.sh"))
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .kill_on_drop(true);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the script's precondition checks take seconds")
        .expect("run bash")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn refuses_the_simulator_before_changing_anything() {
    let sim = KubeSim::builder()
        .delays(Delays::zero())
        .start()
        .await
        .expect("start the simulator");
    let out = run_script(Some(sim.kubeconfig_path().to_path_buf())).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is the kube-sim simulator") && err.contains("needs a real cluster"),
        "{err}"
    );
    // It stopped at the check: nothing was asked of the cluster but reads.
    let writes: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes.is_empty(),
        "the script wrote to the simulator: {writes:?}"
    );
}

#[tokio::test]
async fn says_what_it_needs() {
    let out = run_script(None).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("KUBECONFIG is not set"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.kubeconfig");
    let out = run_script(Some(missing)).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not exist or is not readable"), "{err}");

    // A cluster that does not answer (a closed port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dead = dir.path().join("dead.kubeconfig");
    std::fs::write(
        &dead,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: dead\n\
             clusters: [{{name: dead, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: dead, user: {{token: x}}}}]\n\
             contexts: [{{name: dead, context: {{cluster: dead, user: dead}}}}]\n"
        ),
    )
    .expect("write kubeconfig");
    let out = run_script(Some(dead)).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not answer"), "{err}");
}
