//! The REST client against the fake GitHub server: authentication (plain token, GitHub App
//! JWT -> cached installation token), `Link` pagination, rate-limit back-off, bounded `5xx`
//! retries, and that no token leaks into errors.

use std::sync::Arc;
use std::time::Duration;

use fake_github::{FakeConfig, FakeGithub, Fault, FaultKind};
use slipway_github::client::{DeploymentState, NewDeployment, NewDeploymentStatus};
use slipway_github::clock::ManualClock;
use slipway_github::{ClientConfig, ClientError, Credentials, GithubClient, Secret};

const TOKEN: &str = "ghp_testtoken0123456789abcdefghijklmnopq";
const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 51234567;
const KEY: &str = include_str!("fixtures/test-app-key.pem");
const KEY_PKCS8: &str = include_str!("fixtures/test-app-key-pkcs8.pem");
const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

async fn fake() -> FakeGithub {
    let f = FakeGithub::start().await.expect("fake github starts");
    f.add_token(TOKEN);
    f
}

fn token_client(f: &FakeGithub, clock: Arc<ManualClock>) -> GithubClient {
    let mut cfg = ClientConfig::new(f.url(), Credentials::Token(Secret::new(TOKEN)));
    cfg.clock = clock;
    GithubClient::new(cfg).expect("client")
}

fn app_client(f: &FakeGithub, clock: Arc<ManualClock>, pem: &str) -> GithubClient {
    f.register_app(APP_ID, KEY).expect("register app");
    f.install(APP_ID, "octo-org/web-app", INSTALLATION);
    let mut cfg = ClientConfig::new(
        f.url(),
        Credentials::App {
            app_id: APP_ID,
            private_key_pem: Secret::new(pem),
        },
    );
    cfg.clock = clock;
    GithubClient::new(cfg).expect("client")
}

#[tokio::test]
async fn comments_are_paginated_through_link_headers() {
    let f = fake().await;
    let c = token_client(&f, Arc::new(ManualClock::new()));
    f.add_comment("octo-org/web-app", 42, "someone", "LGTM");
    for i in 0..7 {
        c.create_issue_comment("octo-org", "web-app", 42, &format!("comment {i}"))
            .await
            .unwrap();
    }
    let all = c
        .list_issue_comments("octo-org", "web-app", 42)
        .await
        .unwrap();
    let bodies: Vec<_> = all.iter().map(|c| c.body.clone().unwrap()).collect();
    let mut want = vec!["LGTM".to_owned()];
    want.extend((0..7).map(|i| format!("comment {i}")));
    assert_eq!(bodies, want);
    // Pages of 3: the client had to follow `next` twice.
    let gets = f
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET" && c.path.ends_with("/issues/42/comments"))
        .count();
    assert_eq!(gets, 3);

    let first = all[1].id;
    let updated = c
        .update_issue_comment("octo-org", "web-app", first, "edited")
        .await
        .unwrap();
    assert_eq!(updated.body.as_deref(), Some("edited"));
    c.delete_issue_comment("octo-org", "web-app", first)
        .await
        .unwrap();
    assert_eq!(f.comments("octo-org/web-app", 42).len(), 7);
    match c
        .update_issue_comment("octo-org", "web-app", first, "again")
        .await
    {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn app_installation_token_is_cached_and_renewed_before_expiry() {
    let f = fake().await;
    let clock = Arc::new(ManualClock::new());
    let c = Arc::new(app_client(&f, clock.clone(), KEY));
    // Many concurrent calls: one installation look-up, one token.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.create_issue_comment("octo-org", "web-app", 1, &format!("c{i}"))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for _ in 0..5 {
        c.list_issue_comments("octo-org", "web-app", 1)
            .await
            .unwrap();
    }
    assert_eq!(f.tokens_issued(), 1);
    let calls = f.calls();
    let lookups = calls
        .iter()
        .filter(|c| c.path == "/repos/octo-org/web-app/installation")
        .count();
    assert_eq!(lookups, 1);
    assert!(calls.iter().any(|c| c.auth == format!("jwt:{APP_ID}")));
    assert!(
        calls
            .iter()
            .filter(|c| c.path.contains("/issues/"))
            .all(|c| c.auth == format!("installation:{INSTALLATION}")),
        "repository calls use the installation token"
    );

    // 50 minutes on: still valid for more than the 5-minute margin.
    let advance = |d: Duration| {
        clock.advance(d);
        f.advance_clock(d);
    };
    advance(Duration::from_secs(50 * 60));
    c.create_issue_comment("octo-org", "web-app", 1, "later")
        .await
        .unwrap();
    assert_eq!(f.tokens_issued(), 1);
    // 57 minutes on: within 5 minutes of the hour, so it is renewed.
    advance(Duration::from_secs(7 * 60));
    c.create_issue_comment("octo-org", "web-app", 1, "renewed")
        .await
        .unwrap();
    assert_eq!(f.tokens_issued(), 2);
    // And after that the new one is reused.
    advance(Duration::from_secs(30 * 60));
    c.create_issue_comment("octo-org", "web-app", 1, "reused")
        .await
        .unwrap();
    assert_eq!(f.tokens_issued(), 2);
    // The old token has expired at GitHub: the comments were all written with a live one.
    assert!(f.calls().iter().all(|c| c.status < 400), "{:?}", f.calls());
}

#[tokio::test]
async fn a_known_installation_skips_the_lookup_and_pkcs8_keys_work() {
    let f = fake().await;
    let c = app_client(&f, Arc::new(ManualClock::new()), KEY_PKCS8);
    c.set_installation("octo-org", "web-app", INSTALLATION);
    c.create_issue_comment("octo-org", "web-app", 3, "hi")
        .await
        .unwrap();
    assert!(!f.calls().iter().any(|c| c.path.ends_with("/installation")));
    // A repository the App is not installed on.
    match c.create_issue_comment("other", "repo", 1, "x").await {
        Err(ClientError::NotInstalled(r)) => assert_eq!(r, "other/repo"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn primary_rate_limit_403_is_waited_out_until_the_reset() {
    let f = fake().await;
    let clock = Arc::new(ManualClock::new());
    let c = token_client(&f, clock.clone());
    f.inject(Fault::new(FaultKind::RateLimit { reset_in_secs: 30 }, 1).on_path("/comments"));
    c.create_issue_comment("octo-org", "web-app", 5, "after the limit")
        .await
        .unwrap();
    let statuses: Vec<u16> = f.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![403, 201]);
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 1, "{sleeps:?}");
    // Until X-RateLimit-Reset (30 s ahead, whole seconds) plus one.
    assert!(
        (Duration::from_secs(29)..=Duration::from_secs(32)).contains(&sleeps[0]),
        "{sleeps:?}"
    );
}

#[tokio::test]
async fn secondary_rate_limit_429_honours_retry_after() {
    let f = fake().await;
    let clock = Arc::new(ManualClock::new());
    let c = token_client(&f, clock.clone());
    f.inject(
        Fault::new(
            FaultKind::SecondaryRateLimit {
                retry_after_secs: 7,
            },
            2,
        )
        .on_method("POST"),
    );
    c.create_issue_comment("octo-org", "web-app", 5, "x")
        .await
        .unwrap();
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_secs(7), Duration::from_secs(7)]
    );
    let statuses: Vec<u16> = f.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 429, 201]);
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_cap_is_returned_not_slept() {
    let f = fake().await;
    let clock = Arc::new(ManualClock::new());
    let mut cfg = ClientConfig::new(f.url(), Credentials::Token(Secret::new(TOKEN)));
    cfg.clock = clock.clone();
    cfg.retry.max_rate_limit_wait = Duration::from_secs(10);
    let c = GithubClient::new(cfg).unwrap();
    f.inject(Fault::new(
        FaultKind::SecondaryRateLimit {
            retry_after_secs: 600,
        },
        1,
    ));
    match c.create_issue_comment("octo-org", "web-app", 5, "x").await {
        Err(e @ ClientError::RateLimited { .. }) => {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(600)));
            assert!(e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    assert!(clock.sleeps().is_empty());
    assert_eq!(f.calls().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_bounded_backoff() {
    let f = fake().await;
    let clock = Arc::new(ManualClock::new());
    let c = token_client(&f, clock.clone());
    f.inject(Fault::new(FaultKind::ServerError { status: 502 }, 2));
    c.create_issue_comment("octo-org", "web-app", 6, "x")
        .await
        .unwrap();
    assert_eq!(f.comments("octo-org/web-app", 6).len(), 1);
    assert_eq!(clock.sleeps().len(), 2);

    f.clear_calls();
    f.inject(Fault::new(FaultKind::ServerError { status: 503 }, 100));
    match c.list_issue_comments("octo-org", "web-app", 6).await {
        Err(ClientError::Unavailable { attempts: 4, last }) => assert!(last.contains("503")),
        other => panic!("{other:?}"),
    }
    // Default policy: four attempts in all, then the caller hears about it.
    assert_eq!(f.calls().len(), 4);
}

#[tokio::test]
async fn deployments_are_transient_without_auto_merge_or_contexts() {
    let f = fake().await;
    let c = token_client(&f, Arc::new(ManualClock::new()));
    let env = "preview/octo-org/web-app#42";
    let d = c
        .create_deployment("octo-org", "web-app", &NewDeployment::preview(SHA, env))
        .await
        .unwrap();
    assert_eq!(d.sha, SHA);
    assert_eq!(d.environment, env);
    let stored = &f.deployments("octo-org/web-app")[0];
    assert!(stored.transient_environment);
    assert!(!stored.production_environment);
    assert!(!stored.auto_merge);
    assert_eq!(stored.required_contexts, Some(vec![]));

    let s = c
        .create_deployment_status(
            "octo-org",
            "web-app",
            d.id,
            &NewDeploymentStatus {
                state: DeploymentState::Success,
                log_url: Some("https://slipway.example.com/v1/jobs/1/logs".into()),
                description: Some("Ready".into()),
                environment_url: Some("https://pr-42.preview.example.com".into()),
                auto_inactive: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(s.state, DeploymentState::Success);
    assert_eq!(
        s.environment_url.as_deref(),
        Some("https://pr-42.preview.example.com")
    );
    let listed = c
        .list_deployments("octo-org", "web-app", env, Some(SHA))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        c.list_deployments("octo-org", "web-app", env, Some(&"0".repeat(40)))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn tokens_never_appear_in_errors_or_debug() {
    let f = fake().await;
    let bad = "ghp_wrongtoken0123456789abcdefghijklmnop";
    let c = GithubClient::new(ClientConfig::new(
        f.url(),
        Credentials::Token(Secret::new(bad)),
    ))
    .unwrap();
    let err = c
        .create_issue_comment("octo-org", "web-app", 1, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status: 401, .. }),
        "{err:?}"
    );
    let shown = format!("{err} {err:?} {c:?}");
    assert!(!shown.contains(bad), "{shown}");

    let key_err = GithubClient::new(ClientConfig::new(
        f.url(),
        Credentials::App {
            app_id: 1,
            private_key_pem: Secret::new(
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
            ),
        },
    ))
    .unwrap_err();
    assert!(matches!(key_err, ClientError::Config(_)));
    assert!(!format!("{key_err:?}").contains("AAAA"));
}

#[tokio::test]
async fn a_revoked_installation_token_is_replaced_once() {
    let f = fake().await;
    let c = app_client(&f, Arc::new(ManualClock::new()), KEY);
    c.create_issue_comment("octo-org", "web-app", 1, "a")
        .await
        .unwrap();
    f.revoke_installation_tokens();
    c.create_issue_comment("octo-org", "web-app", 1, "b")
        .await
        .unwrap();
    assert_eq!(f.tokens_issued(), 2);
    let statuses: Vec<u16> = f
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/comments"))
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [201, 401, 201]);
}

#[tokio::test]
async fn enterprise_server_base_url_with_a_path() {
    let cfg = FakeConfig {
        path_prefix: "/api/v3".into(),
        tokens: vec![TOKEN.into()],
        ..FakeConfig::default()
    };
    let f = FakeGithub::start_with(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(f.url().ends_with("/api/v3"));
    let c = token_client(&f, Arc::new(ManualClock::new()));
    for i in 0..4 {
        c.create_issue_comment("octo-org", "web-app", 2, &format!("{i}"))
            .await
            .unwrap();
    }
    // Pagination links carry the prefix too.
    assert_eq!(
        c.list_issue_comments("octo-org", "web-app", 2)
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(
        f.calls()
            .iter()
            .all(|c| c.path.starts_with("/api/v3/repos/"))
    );
}

#[test]
fn credentials_from_settings() {
    let dir = std::env::temp_dir().join(format!("slipway-github-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    std::fs::write(&key, KEY).unwrap();
    assert!(matches!(
        Credentials::from_settings(Some(7), Some(&key), Some(TOKEN)),
        Ok(Some(Credentials::App { app_id: 7, .. }))
    ));
    assert!(matches!(
        Credentials::from_settings(None, None, Some(TOKEN)),
        Ok(Some(Credentials::Token(_)))
    ));
    assert!(matches!(
        Credentials::from_settings(None, None, Some("  ")),
        Ok(None)
    ));
    assert!(Credentials::from_settings(Some(7), None, Some(TOKEN)).is_err());
    assert!(Credentials::from_settings(None, Some(&key), None).is_err());
    let missing = Credentials::from_settings(Some(7), Some(&dir.join("nope.pem")), None);
    assert!(matches!(missing, Err(ClientError::Config(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
