//! A build's secrets never reach its stored log or error: a Dockerfile step that prints the git
//! token (BuildKit hands it to any `RUN --mount=type=secret,id=GIT_AUTH_TOKEN`), or a tool that
//! prints registry credentials, is stored as `***`, through the real log path (simulator pod
//! log, kubelet timestamps, the worker's decoder and sink, Postgres). A Secret the worker may
//! not read fails the build rather than store an unmasked log.

mod common;

use common::{Harness, NS, faulty_build, namespace};
use kube_sim::{BuildFault, FaultAction, FaultRule, PodInfo, PodScript};
use serde_json::json;
use slipway_core::JobState;

const TOKEN: &str = "ghs_R3alLo0kingInstallat1onT0ken0123456789";
const PASSWORD: &str = "pushpass-9f8e7d6c";
/// base64("robot:pushpass-9f8e7d6c"), as `docker login` stores it.
const AUTH: &str = "cm9ib3Q6cHVzaHBhc3MtOWY4ZTdkNmM=";

/// The header BuildKit's git source sends: base64("x-access-token:" + token).
fn basic_header() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
}

/// What the `RUN` step prints: the token (with `--mount=type=secret,id=GIT_AUTH_TOKEN`), the
/// header, the registry password and auth, and an over-long line whose 64-byte cut falls
/// inside the token.
fn printed() -> Vec<String> {
    vec![
        format!("#6 12.50 GIT_AUTH_TOKEN={TOKEN}"),
        format!("#6 12.51 {TOKEN} {TOKEN}"),
        format!("#6 12.52 > Authorization: basic {}", basic_header()),
        format!("#6 12.53 password={PASSWORD} auth={AUTH}"),
        format!("#6 12.54 {}{TOKEN} end{}", "x".repeat(40), "y".repeat(60)),
    ]
}

/// The simulator's BuildKit run (its command, flags and metadata contract) with the lines of a
/// step that prints its secrets inserted after the step starts.
fn leaky(pod: &PodInfo, fault: BuildFault) -> PodScript {
    let mut s = faulty_build(pod, fault);
    let at = s
        .logs
        .iter()
        .position(|l| l.text.starts_with("#6 12.41"))
        .expect("the RUN step's first line")
        + 1;
    let lines: Vec<kube_sim::LogLine> = printed()
        .into_iter()
        .map(|text| kube_sim::LogLine {
            after: std::time::Duration::ZERO,
            text,
        })
        .collect();
    s.logs.splice(at..at, lines);
    if fault == BuildFault::RunStepFails {
        // Last, where the failure message is taken from.
        s.logs.push(kube_sim::LogLine {
            after: std::time::Duration::ZERO,
            text: format!("#6 ERROR: curl -H 'Authorization: token {TOKEN}' failed"),
        });
    }
    s
}

async fn create_secrets(h: &Harness) {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(h.sim.client().unwrap(), NS);
    let config = json!({"auths": {"registry.kube-system.svc.cluster.local:80":
        {"username": "robot", "password": PASSWORD, "auth": AUTH}}});
    for secret in [
        json!({"metadata": {"name": "git-token"}, "stringData": {"token": format!("{TOKEN}\n")}}),
        json!({"metadata": {"name": "push-creds"}, "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": config.to_string()}}),
    ] {
        secrets
            .create(
                &kube::api::PostParams::default(),
                &serde_json::from_value(secret).unwrap(),
            )
            .await
            .unwrap();
    }
}

fn secret_free(text: &str) -> bool {
    !text.contains(TOKEN)
        && !text.contains(&TOKEN[..20])
        && !text.contains(&TOKEN[20..])
        && !text.contains(&basic_header())
        && !text.contains(PASSWORD)
        && !text.contains(AUTH)
}

#[tokio::test]
async fn a_build_printing_its_git_token_and_registry_credentials_stores_stars() {
    let h = Harness::new(Some(Box::new(|pod: &PodInfo| leaky(pod, BuildFault::None)))).await;
    namespace(&h).await;
    create_secrets(&h).await;
    let worker = h.start_worker(&["--log-max-line-bytes", "64"]).await;
    let id = h
        .enqueue_build(
            "org/app#1",
            json!({"secrets": {"git": "git-token", "registry": "push-creds"}}),
        )
        .await;
    h.wait_state(id, JobState::Succeeded, 30).await;
    let logs = h.logs(id).await;
    let texts: Vec<&str> = logs.iter().map(|l| l.text.as_str()).collect();
    for t in &texts {
        assert!(secret_free(t), "a secret was stored: {t:?}");
    }
    let has = |s: &str| texts.contains(&s);
    assert!(has("#6 12.50 GIT_AUTH_TOKEN=***"), "{texts:#?}");
    assert!(has("#6 12.51 *** ***"), "{texts:#?}");
    assert!(has("#6 12.52 > Authorization: basic ***"), "{texts:#?}");
    assert!(has("#6 12.53 password=*** auth=***"), "{texts:#?}");
    // The over-long line is stored in pieces; the token is masked whole, not cut in two.
    let at = texts
        .iter()
        .position(|t| t.starts_with("#6 12.54 "))
        .unwrap();
    let want = format!("#6 12.54 {}*** end{}", "x".repeat(40), "y".repeat(60));
    let pieces = want.len().div_ceil(64);
    assert!(pieces >= 2);
    assert_eq!(texts[at..at + pieces].concat(), want, "{texts:#?}");
    worker.stop().await;
}

#[tokio::test]
async fn a_failed_build_names_its_step_without_the_token() {
    let h = Harness::new(Some(Box::new(|pod: &PodInfo| {
        leaky(pod, BuildFault::RunStepFails)
    })))
    .await;
    namespace(&h).await;
    create_secrets(&h).await;
    let worker = h.start_worker(&[]).await;
    let id = h
        .enqueue_build(
            "org/app#2",
            json!({"secrets": {"git": "git-token", "registry": "push-creds"}}),
        )
        .await;
    let job = h.wait_state(id, JobState::Failed, 30).await;
    let error = job.error.unwrap();
    assert!(secret_free(&error), "{error}");
    assert!(error.contains("Authorization: token ***"), "{error}");
    for l in h.logs(id).await {
        assert!(secret_free(&l.text), "{:?}", l.text);
    }
    worker.stop().await;
}

/// RBAC that does not let the worker read a named Secret (403) fails the build for good,
/// saying why, and stores none of its output.
#[tokio::test]
async fn a_secret_the_worker_may_not_read_fails_the_build_without_storing_its_log() {
    let h = Harness::new(Some(Box::new(|pod: &PodInfo| leaky(pod, BuildFault::None)))).await;
    namespace(&h).await;
    create_secrets(&h).await;
    h.sim.faults().add(
        FaultRule::new(FaultAction::Status {
            code: 403,
            retry_after: None,
        })
        .verb("get")
        .resource("secrets"),
    );
    let worker = h.start_worker(&[]).await;
    let id = h
        .enqueue_build("org/app#3", json!({"secrets": {"git": "git-token"}}))
        .await;
    let job = h.wait_state(id, JobState::Failed, 30).await;
    assert_eq!(job.attempts, 1);
    let error = job.error.unwrap();
    assert!(
        error.contains("may not read Secret \"git-token\"") && error.contains("not stored"),
        "{error}"
    );
    let stored: Vec<String> = h
        .logs(id)
        .await
        .into_iter()
        .filter(|l| l.stream != "system")
        .map(|l| l.text)
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
    worker.stop().await;
}
