//! The in-chart Redis, run for real: the container script the chart renders starts a real
//! `redis-server` (through a `PATH` shim that only adds a free port), which then refuses
//! clients without the password, answers Slipway's queue client given the URL the chart
//! composes, keeps the password off its command line, and fails the chart's readiness probe
//! without it (redis-cli exits 0 on a NOAUTH error, hence the probe's `grep -qx PONG`).
//!
//! Needs Helm (`make tools`) and redis-server/redis-cli (`make services`).

use serde_json::Value;
use slipway_deploy_tests::chart::{self, DEFAULT, NAMESPACE};
use slipway_deploy_tests::helm;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn container(docs: &[Value]) -> Value {
    chart::find(docs, "Deployment", "slipway-redis").expect("slipway-redis")["spec"]["template"]
        ["spec"]["containers"][0]
        .clone()
}

/// A directory with `redis-server` and `redis-cli` shims that add `port`, first on `PATH`.
fn shims(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, flag) in [("redis-server", "--port"), ("redis-cli", "-p")] {
        let real = String::from_utf8(
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let real = real.trim();
        assert!(
            !real.is_empty(),
            "{name} is not installed: run `make services`"
        );
        let path = dir.path().join(name);
        let script = if name == "redis-server" {
            // `-` (config from stdin) must stay the first or last argument.
            format!("#!/bin/sh\nexec {real} \"$@\" {flag} {port} --bind 127.0.0.1\n")
        } else {
            format!("#!/bin/sh\nexec {real} {flag} {port} \"$@\"\n")
        };
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn path_with(dir: &tempfile::TempDir) -> String {
    format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test]
async fn the_rendered_redis_requires_its_password_and_slipway_connects_with_the_composed_url() {
    let Some(helm) = helm() else { return };
    let docs = chart::render_ok(&helm, &DEFAULT);
    let c = container(&docs);
    let command: Vec<String> = serde_json::from_value(c["command"].clone()).unwrap();
    let probe: Vec<String> =
        serde_json::from_value(c["readinessProbe"]["exec"]["command"].clone()).unwrap();
    let password = "Zq8tVb3kP0aLmN5xRw2yCd7eFg9hJs1u";

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = shims(port);
    let path = path_with(&dir);
    let mut server = Command::new(&command[0])
        .args(&command[1..])
        .env("PATH", &path)
        .env("REDIS_PASSWORD", password)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the chart's Redis command");
    let cli = |auth: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new("redis-cli");
        cmd.env("PATH", &path).args(args);
        if let Some(a) = auth {
            cmd.env("REDISCLI_AUTH", a);
        }
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    slipway_shared::testing::eventually(Duration::from_secs(10), "redis-server to answer", || {
        let up = cli(Some(password), &["ping"]) == "PONG";
        async move { up.then_some(()) }
    })
    .await;

    // Without the password: refused.
    assert!(
        cli(None, &["ping"]).starts_with("NOAUTH"),
        "{}",
        cli(None, &["ping"])
    );
    assert_ne!(cli(Some("wrong"), &["ping"]), "PONG");

    // The password is on no command line of the server (the shell exec'd into it).
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.id())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(password),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );

    // The readiness probe, as the kubelet runs it (the container's env, REDISCLI_AUTH set).
    let run_probe = |auth: Option<&str>| {
        let mut cmd = Command::new(&probe[0]);
        cmd.args(&probe[1..]).env("PATH", &path);
        if let Some(a) = auth {
            cmd.env("REDISCLI_AUTH", a);
        }
        cmd.status().unwrap().success()
    };
    assert!(run_probe(Some(password)), "ready with the password");
    assert!(!run_probe(None), "not ready without it");

    // Slipway's queue client with the URL the kubelet composes from the chart's env (dependent
    // variables, as kube-sim models them), host and port pointed at this server.
    let api = chart::find(&docs, "Deployment", "slipway-api").unwrap();
    let container = &api["spec"]["template"]["spec"]["containers"][0];
    let env = kube_sim::buildkit::container_env(container, |name, key| {
        (name == "slipway-redis" && key == "password").then(|| password.to_owned())
    });
    let composed = env
        .iter()
        .find(|(n, _)| n == "SLIPWAY_REDIS_URL")
        .map(|(_, v)| v.clone())
        .expect("SLIPWAY_REDIS_URL");
    assert!(composed.contains(password), "expanded: {composed}");
    let url = composed.replace(
        &format!("slipway-redis.{NAMESPACE}.svc:6379"),
        &format!("127.0.0.1:{port}"),
    );
    let queue = slipway_shared::queue::QueueClient::connect(&url, "slipway-chart-test")
        .await
        .expect("Slipway connects with the composed URL");
    drop(queue);
    // Shown (logs, errors), the URL carries no password.
    let shown = slipway_shared::config::SecretUrl::new(&url).to_string();
    assert!(!shown.contains(password), "{shown}");

    let _ = server.kill();
    let _ = server.wait();
}
