//! The PR status reporter against the fake GitHub server: one comment per PR under racing
//! updates, the deployment lifecycle, back-off under rate limits and errors, coalescing of
//! bursts, a full queue, and that nothing secret or internal reaches GitHub.

use std::sync::Arc;
use std::time::Duration;

use fake_github::{FakeGithub, Fault, FaultKind};
use slipway_core::BackoffPolicy;
use slipway_github::clock::ManualClock;
use slipway_github::status::DEFAULT_MARKER;
use slipway_github::{
    Applied, ClientConfig, Credentials, GithubClient, PreviewKey, PreviewState, PreviewUpdate,
    ReporterConfig, Secret, StatusReporter, StatusWriter, WriterConfig,
};

const TOKEN: &str = "ghp_statustoken0123456789abcdefghijklmn";
const REPO: &str = "octo-org/web-app";
const SHA1: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const SHA2: &str = "4f9a5b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f70";
const LOGS: &str = "https://slipway.example.com/v1/jobs/0190c1a2/logs";

struct Env {
    fake: FakeGithub,
    clock: Arc<ManualClock>,
    writer: Arc<StatusWriter>,
}

async fn env_with(max_attempts: u32) -> Env {
    let fake = FakeGithub::start().await.expect("fake starts");
    fake.add_token(TOKEN);
    let clock = Arc::new(ManualClock::new());
    let mut cfg = ClientConfig::new(fake.url(), Credentials::Token(Secret::new(TOKEN)));
    cfg.clock = clock.clone();
    cfg.retry.max_attempts = max_attempts;
    let client = Arc::new(GithubClient::new(cfg).expect("client"));
    let writer = Arc::new(StatusWriter::new(client, WriterConfig::default()));
    Env {
        fake,
        clock,
        writer,
    }
}

async fn env() -> Env {
    env_with(4).await
}

fn key(n: u64) -> PreviewKey {
    PreviewKey::new("octo-org", "web-app", n)
}

fn fast_reporter(writer: Arc<StatusWriter>, workers: usize, capacity: usize) -> StatusReporter {
    StatusReporter::start(
        writer,
        ReporterConfig {
            capacity,
            workers,
            max_attempts: 8,
            backoff: BackoffPolicy {
                base: Duration::from_millis(5),
                factor: 2,
                cap: Duration::from_millis(40),
            },
        },
    )
}

async fn flush(r: &StatusReporter) {
    tokio::time::timeout(Duration::from_secs(20), r.flush())
        .await
        .expect("the reporter drains within 20 s");
}

fn ours(fake: &FakeGithub, n: u64) -> Vec<String> {
    fake.comments(REPO, n)
        .into_iter()
        .filter(|c| c.body.contains(DEFAULT_MARKER))
        .map(|c| c.body)
        .collect()
}

fn ready(n: u64, i: usize) -> PreviewUpdate {
    PreviewUpdate::new(
        key(n),
        Some(SHA1),
        PreviewState::Ready {
            url: format!("https://pr-{n}-v{i}.preview.example.com"),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_racing_updates_leave_exactly_one_comment_with_the_latest_state() {
    let e = env().await;
    e.fake
        .add_comment(REPO, 42, "a-reviewer", "Looks good to me");
    let updates: Vec<PreviewUpdate> = (1..=20).map(|i| ready(42, i)).collect();
    // Started newest first: the lock is fair, so without the staleness check the oldest
    // update would be written last.
    let mut tasks = Vec::new();
    for u in updates.into_iter().rev() {
        let w = e.writer.clone();
        tasks.push(tokio::spawn(async move { w.apply(&u).await }));
    }
    for t in tasks {
        t.await.unwrap().expect("apply succeeds");
    }
    let bodies = ours(&e.fake, 42);
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert!(
        bodies[0].contains("https://pr-42-v20.preview.example.com"),
        "{}",
        bodies[0]
    );
    assert_eq!(e.fake.comments(REPO, 42).len(), 2, "the reviewer's stays");
    let creates = e
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/issues/42/comments"))
        .count();
    assert_eq!(creates, 1);

    // Another process (a fresh writer) finds the comment by its marker instead of adding one.
    let e2 = StatusWriter::new(
        Arc::new(
            GithubClient::new(ClientConfig::new(
                e.fake.url(),
                Credentials::Token(Secret::new(TOKEN)),
            ))
            .unwrap(),
        ),
        WriterConfig::default(),
    );
    let later = PreviewUpdate::new(key(42), Some(SHA1), PreviewState::TornDown);
    assert_eq!(e2.apply(&later).await.unwrap(), Applied::Written);
    let bodies = ours(&e.fake, 42);
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].contains("Torn down"), "{}", bodies[0]);
}

#[tokio::test]
async fn an_older_update_never_overwrites_a_newer_one() {
    let e = env().await;
    let old = ready(7, 1);
    let new = ready(7, 2);
    assert_eq!(e.writer.apply(&new).await.unwrap(), Applied::Written);
    assert_eq!(e.writer.apply(&old).await.unwrap(), Applied::Stale);
    assert!(ours(&e.fake, 7)[0].contains("pr-7-v2"));
}

#[tokio::test]
async fn duplicates_left_by_a_race_elsewhere_are_folded_into_one() {
    let e = env().await;
    let first = e
        .fake
        .add_comment(REPO, 9, "slipway[bot]", &format!("{DEFAULT_MARKER}\nold"));
    e.fake.add_comment(
        REPO,
        9,
        "slipway[bot]",
        &format!("{DEFAULT_MARKER}\nduplicate"),
    );
    e.writer.apply(&ready(9, 1)).await.unwrap();
    let comments = e.fake.comments(REPO, 9);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].id, first, "the oldest is kept");
    assert!(comments[0].body.contains("pr-9-v1"));
}

#[tokio::test]
async fn a_comment_quoting_the_marker_is_left_alone() {
    let e = env().await;
    let quoting = format!("> {DEFAULT_MARKER}\n> Ready\n\nwhy is this ready?");
    e.fake.add_comment(REPO, 10, "a-reviewer", &quoting);
    e.writer.apply(&ready(10, 1)).await.unwrap();
    let comments = e.fake.comments(REPO, 10);
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0].body, quoting);
    assert!(comments[1].body.contains("pr-10-v1"));
}

fn statuses(fake: &FakeGithub, idx: usize) -> Vec<String> {
    fake.deployments(REPO)[idx]
        .statuses
        .iter()
        .map(|s| s.state.clone())
        .collect()
}

#[tokio::test]
async fn deployment_statuses_follow_the_whole_lifecycle_and_end_inactive() {
    let e = env().await;
    let p = key(42);
    let step = |sha: &str, state: PreviewState| {
        PreviewUpdate::new(p.clone(), Some(sha), state).with_log_url(LOGS)
    };
    for u in [
        step(SHA1, PreviewState::Queued),
        step(SHA1, PreviewState::Building),
        step(SHA1, PreviewState::Deploying),
        step(
            SHA1,
            PreviewState::Ready {
                url: "https://pr-42-web-app.preview.example.com".into(),
            },
        ),
    ] {
        e.writer.apply(&u).await.unwrap();
    }
    let deps = e.fake.deployments(REPO);
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].environment, "preview/octo-org/web-app#42");
    assert_eq!(deps[0].sha, SHA1);
    assert!(deps[0].transient_environment);
    assert_eq!(statuses(&e.fake, 0), ["queued", "in_progress", "success"]);
    let success = &deps[0].statuses[2];
    assert_eq!(
        success.environment_url.as_deref(),
        Some("https://pr-42-web-app.preview.example.com")
    );
    assert_eq!(success.log_url.as_deref(), Some(LOGS));
    assert!(ours(&e.fake, 42)[0].contains("Ready"));

    // A push: a new deployment for the new commit; the old one is retired.
    for u in [
        step(SHA2, PreviewState::Queued),
        step(SHA2, PreviewState::Building),
        step(
            SHA2,
            PreviewState::Failed {
                step: "build".into(),
                message: Some("RUN cargo build exited with 101".into()),
            },
        ),
    ] {
        e.writer.apply(&u).await.unwrap();
    }
    let deps = e.fake.deployments(REPO);
    assert_eq!(deps.len(), 2);
    assert_eq!(deps[1].sha, SHA2);
    assert_eq!(
        statuses(&e.fake, 0),
        ["queued", "in_progress", "success", "inactive"]
    );
    assert_eq!(statuses(&e.fake, 1), ["queued", "in_progress", "failure"]);
    let failure = &deps[1].statuses[2];
    assert_eq!(failure.log_url.as_deref(), Some(LOGS));
    assert!(failure.description.as_deref().unwrap().contains("build"));

    // Closed: torn down.
    e.writer
        .apply(&PreviewUpdate::new(p.clone(), None, PreviewState::TornDown))
        .await
        .unwrap();
    assert_eq!(
        statuses(&e.fake, 1),
        ["queued", "in_progress", "failure", "inactive"]
    );
    let body = &ours(&e.fake, 42)[0];
    assert!(body.contains("Torn down"), "{body}");
    assert_eq!(ours(&e.fake, 42).len(), 1);
}

#[tokio::test]
async fn a_restarted_writer_retires_the_deployment_it_did_not_create() {
    let e = env().await;
    e.writer
        .apply(&PreviewUpdate::new(
            key(5),
            Some(SHA1),
            PreviewState::Ready {
                url: "https://pr-5.preview.example.com".into(),
            },
        ))
        .await
        .unwrap();
    let fresh = StatusWriter::new(
        Arc::new(
            GithubClient::new(ClientConfig::new(
                e.fake.url(),
                Credentials::Token(Secret::new(TOKEN)),
            ))
            .unwrap(),
        ),
        WriterConfig::default(),
    );
    fresh
        .apply(&PreviewUpdate::new(key(5), None, PreviewState::TornDown))
        .await
        .unwrap();
    assert_eq!(e.fake.deployments(REPO).len(), 1);
    assert_eq!(statuses(&e.fake, 0), ["success", "inactive"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_errors_are_waited_out_in_the_background() {
    // One attempt per client call, so the reporter's own retries are exercised too.
    let e = env_with(1).await;
    let r = fast_reporter(e.writer.clone(), 2, 64);
    e.fake.inject(
        Fault::new(FaultKind::RateLimit { reset_in_secs: 45 }, 1).on_path("/issues/3/comments"),
    );
    e.fake.inject(
        Fault::new(
            FaultKind::SecondaryRateLimit {
                retry_after_secs: 1,
            },
            1,
        )
        .on_path("/deployments"),
    );
    e.fake
        .inject(Fault::new(FaultKind::ServerError { status: 502 }, 2).on_path("/statuses"));
    r.report(ready(3, 1));
    flush(&r).await;
    assert_eq!(r.stats().written, 1, "{:?}", r.stats());
    assert_eq!(r.stats().failed, 0);
    assert_eq!(ours(&e.fake, 3).len(), 1);
    assert_eq!(statuses(&e.fake, 0), ["success"]);
    let faulted: Vec<u16> = e
        .fake
        .calls()
        .iter()
        .filter(|c| c.faulted)
        .map(|c| c.status)
        .collect();
    assert_eq!(faulted, [403, 429, 502, 502]);
    // With one attempt per call the client hands the limits back, and the reporter sits
    // them out (on the client's clock) instead of hammering GitHub.
    let sleeps = e.clock.sleeps();
    assert!(
        sleeps.iter().any(|s| *s >= Duration::from_secs(45)),
        "{sleeps:?}"
    );
    assert!(sleeps.contains(&Duration::from_secs(1)), "{sleeps:?}");
}

#[tokio::test]
async fn the_client_sits_out_a_rate_limit_for_the_reporter() {
    let e = env().await;
    let r = fast_reporter(e.writer.clone(), 1, 64);
    e.fake.inject(
        Fault::new(FaultKind::RateLimit { reset_in_secs: 60 }, 1).on_path("/issues/4/comments"),
    );
    r.report(ready(4, 1));
    flush(&r).await;
    assert_eq!(ours(&e.fake, 4).len(), 1);
    let sleeps = e.clock.sleeps();
    assert!(
        sleeps.iter().any(|s| *s >= Duration::from_secs(59)),
        "{sleeps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_fifty_updates_is_coalesced_and_the_last_state_wins() {
    let e = env().await;
    let r = fast_reporter(e.writer.clone(), 1, 64);
    for i in 1..=50 {
        r.report(ready(11, i));
    }
    // An older update reported after a newer one is ignored.
    let stale = ready(11, 0);
    let newest = ready(11, 51);
    r.report(newest);
    r.report(stale);
    flush(&r).await;
    let comment_writes = e
        .fake
        .calls()
        .iter()
        .filter(|c| c.path.contains("/comments") && c.method != "GET")
        .count();
    assert!(
        comment_writes <= 10,
        "{comment_writes} writes for 52 updates"
    );
    let stats = r.stats();
    assert_eq!(stats.reported, 52);
    assert!(stats.coalesced >= 40, "{stats:?}");
    let bodies = ours(&e.fake, 11);
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].contains("pr-11-v51."), "{}", bodies[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_never_blocks_and_a_full_queue_drops_the_oldest_pending_pr() {
    let e = env().await;
    let r = fast_reporter(e.writer.clone(), 1, 2);
    // PR 1's write is slow, keeping the only worker busy.
    e.fake
        .inject(Fault::new(FaultKind::Slow { millis: 1500 }, 1).on_path("/issues/1/comments"));
    r.report(ready(1, 1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while r.backlog() != (0, 1) {
        assert!(tokio::time::Instant::now() < deadline, "PR 1 never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    for n in [2, 3, 4] {
        r.report(ready(n, 1));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "report must not wait for GitHub"
    );
    flush(&r).await;
    assert_eq!(r.stats().dropped, 1);
    assert!(
        ours(&e.fake, 2).is_empty(),
        "the oldest pending PR is dropped"
    );
    assert_eq!(ours(&e.fake, 1).len(), 1);
    assert_eq!(ours(&e.fake, 3).len(), 1);
    assert_eq!(ours(&e.fake, 4).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_with_a_token_and_internal_urls_is_sanitized_everywhere() {
    let e = env().await;
    let r = fast_reporter(e.writer.clone(), 1, 64);
    let message = "\
error: failed to push registry.slipway.svc.cluster.local:5000/octo-org/web-app:ec26c3e
authentication failed with token ghs_16C7e42F292c6912E7710c838347Ae178B4a for https://x-access-token:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/octo-org/web-app.git
Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl
retrying against http://10.96.12.4:8080/v2/ and http://localhost:5000
pods \"slipway-build-0190c1a2-a1\" is forbidden: exceeded quota: slipway-quota
thread 'main' panicked at src/push.rs:88:14:
stack backtrace:
   0: rust_begin_unwind
   1: slipway_worker::push::run
";
    r.report(
        PreviewUpdate::new(
            key(77),
            Some(SHA1),
            PreviewState::Failed {
                step: "push image".into(),
                message: Some(message.into()),
            },
        )
        .with_log_url(LOGS),
    );
    flush(&r).await;
    let bodies = ours(&e.fake, 77);
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert!(body.contains("Failed at step `push image`"), "{body}");
    assert!(body.contains(&format!("[full log]({LOGS})")), "{body}");
    assert!(body.contains("error: failed to push"), "{body}");
    // Everything sent to GitHub, comment and deployment alike.
    let sent: String = e
        .fake
        .calls()
        .iter()
        .filter_map(|c| c.body.as_ref().map(|b| b.to_string()))
        .collect();
    for secret in [
        "ghs_16C7",
        "ghp_abcdef",
        "eyJhbGci",
        ".svc",
        "cluster.local",
        "10.96.12.4",
        "localhost",
        "is forbidden",
        "rust_begin_unwind",
        "slipway_worker::push",
        "x-access-token",
    ] {
        assert!(!sent.contains(secret), "{secret:?} leaked: {sent}");
    }
    let deps = e.fake.deployments(REPO);
    let failure = deps[0].statuses.last().unwrap();
    assert_eq!(failure.state, "failure");
    assert_eq!(failure.log_url.as_deref(), Some(LOGS));
}

#[tokio::test]
async fn internal_urls_are_never_published_as_preview_or_log_links() {
    let e = env().await;
    e.writer
        .apply(
            &PreviewUpdate::new(
                key(8),
                Some(SHA1),
                PreviewState::Ready {
                    url: "http://web-app.slipway-pv-app-42.svc.cluster.local:8080".into(),
                },
            )
            .with_log_url("http://slipway-api.slipway.svc:8080/v1/jobs/1/logs"),
        )
        .await
        .unwrap();
    let body = &ours(&e.fake, 8)[0];
    assert!(!body.contains("svc"), "{body}");
    let status = &e.fake.deployments(REPO)[0].statuses[0];
    assert_eq!(status.state, "success");
    assert_eq!(status.environment_url, None);
    assert_eq!(status.log_url, None);
}
