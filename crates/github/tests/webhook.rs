//! Webhook signatures, parsing of GitHub's documented `ping` and `pull_request` payloads (the
//! fixtures), and `decide` over every mode, label and fork rule.

use slipway_github::webhook::sign;
use slipway_github::{
    Action, PreviewMode, PullRequestAction, PullRequestEvent, RepoSettings, SignatureError,
    WebhookEvent, decide, parse_delivery, verify_signature,
};

const SECRET: &[u8] = b"a webhook secret";
const OPENED: &str = include_str!("fixtures/pull_request.opened.json");
const SYNCHRONIZE: &str = include_str!("fixtures/pull_request.synchronize.json");
const SYNCHRONIZE_LABELED: &str = include_str!("fixtures/pull_request.synchronize.labeled.json");
const REOPENED: &str = include_str!("fixtures/pull_request.reopened.json");
const CLOSED_MERGED: &str = include_str!("fixtures/pull_request.closed.merged.json");
const CLOSED_UNMERGED: &str = include_str!("fixtures/pull_request.closed.unmerged.json");
const LABELED: &str = include_str!("fixtures/pull_request.labeled.json");
const UNLABELED: &str = include_str!("fixtures/pull_request.unlabeled.json");
const FORK: &str = include_str!("fixtures/pull_request.opened.fork.json");
const DELETED_FORK: &str = include_str!("fixtures/pull_request.synchronize.deleted_fork.json");
const EDITED: &str = include_str!("fixtures/pull_request.edited.json");
const PING: &str = include_str!("fixtures/ping.json");

const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const NEW_HEAD: &str = "4f9a5b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f70";
const CLONE: &str = "https://github.com/octo-org/web-app.git";

fn pr(body: &str) -> PullRequestEvent {
    match parse_delivery(Some("pull_request"), Some("d-1"), body.as_bytes()).event {
        WebhookEvent::PullRequest(pr) => *pr,
        other => panic!("expected a pull request, got {other:?}"),
    }
}

fn event(body: &str) -> WebhookEvent {
    parse_delivery(Some("pull_request"), Some("d-1"), body.as_bytes()).event
}

#[test]
fn signature_valid() {
    let sig = sign(SECRET, OPENED.as_bytes());
    assert_eq!(
        verify_signature(SECRET, OPENED.as_bytes(), Some(&sig)),
        Ok(())
    );
}

#[test]
fn signature_invalid() {
    let sig = sign(b"another secret", OPENED.as_bytes());
    assert_eq!(
        verify_signature(SECRET, OPENED.as_bytes(), Some(&sig)),
        Err(SignatureError::Mismatch)
    );
    // Same length, one hex digit changed.
    let mut good = sign(SECRET, OPENED.as_bytes());
    let last = good.pop().unwrap();
    good.push(if last == '0' { '1' } else { '0' });
    assert_eq!(
        verify_signature(SECRET, OPENED.as_bytes(), Some(&good)),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn signature_missing() {
    assert_eq!(
        verify_signature(SECRET, OPENED.as_bytes(), None),
        Err(SignatureError::Missing)
    );
}

#[test]
fn signature_over_a_modified_body() {
    let sig = sign(SECRET, OPENED.as_bytes());
    let tampered = OPENED.replace(HEAD, NEW_HEAD);
    assert_ne!(tampered, OPENED);
    assert_eq!(
        verify_signature(SECRET, tampered.as_bytes(), Some(&sig)),
        Err(SignatureError::Mismatch)
    );
    // A trailing newline is a different body too.
    let mut longer = OPENED.as_bytes().to_vec();
    longer.push(b'\n');
    assert_eq!(
        verify_signature(SECRET, &longer, Some(&sig)),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn ping_and_delivery_id() {
    let d = parse_delivery(
        Some("ping"),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        PING.as_bytes(),
    );
    assert_eq!(
        d.id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        d.event,
        WebhookEvent::Ping {
            hook_id: Some(480171412),
            zen: Some("Design for failure.".into())
        }
    );
    assert_eq!(parse_delivery(Some("ping"), None, PING.as_bytes()).id, None);
}

#[test]
fn opened() {
    let p = pr(OPENED);
    assert_eq!(p.action, PullRequestAction::Opened);
    assert_eq!(p.repo.owner, "octo-org");
    assert_eq!(p.repo.name, "web-app");
    assert_eq!(p.repo.full_name, "octo-org/web-app");
    assert_eq!(p.repo.clone_url, CLONE);
    assert_eq!(p.number, 42);
    assert_eq!(p.head_sha, HEAD);
    assert_eq!(p.head_ref, "feature/login-form");
    assert_eq!(p.head_repo_full_name.as_deref(), Some("octo-org/web-app"));
    assert!(!p.is_fork);
    assert!(p.labels.is_empty());
    assert_eq!(p.label, None);
    assert!(!p.merged);
    assert_eq!(p.sender.as_deref(), Some("alice"));
    assert_eq!(p.installation_id, Some(51234567));
    assert_eq!(p.preview().to_string(), "octo-org/web-app#42");
}

#[test]
fn synchronize_carries_the_new_head() {
    let p = pr(SYNCHRONIZE);
    assert_eq!(p.action, PullRequestAction::Synchronize);
    assert_eq!(p.head_sha, NEW_HEAD);
}

#[test]
fn reopened() {
    assert_eq!(pr(REOPENED).action, PullRequestAction::Reopened);
}

#[test]
fn closed_merged_and_unmerged() {
    let m = pr(CLOSED_MERGED);
    assert_eq!(m.action, PullRequestAction::Closed);
    assert!(m.merged);
    let u = pr(CLOSED_UNMERGED);
    assert_eq!(u.action, PullRequestAction::Closed);
    assert!(!u.merged);
}

#[test]
fn labeled_and_unlabeled() {
    let l = pr(LABELED);
    assert_eq!(l.action, PullRequestAction::Labeled);
    assert_eq!(l.label.as_deref(), Some("preview"));
    assert_eq!(l.labels, vec!["bug".to_owned(), "preview".to_owned()]);
    let u = pr(UNLABELED);
    assert_eq!(u.action, PullRequestAction::Unlabeled);
    assert_eq!(u.label.as_deref(), Some("preview"));
    assert_eq!(u.labels, vec!["bug".to_owned()]);
}

#[test]
fn from_a_fork() {
    let f = pr(FORK);
    assert!(f.is_fork);
    assert_eq!(
        f.head_repo_full_name.as_deref(),
        Some("mallory-dev/web-app")
    );
    // The base repository is still what gets cloned.
    assert_eq!(f.repo.clone_url, CLONE);
    let gone = pr(DELETED_FORK);
    assert!(gone.is_fork);
    assert_eq!(gone.head_repo_full_name, None);
    assert_eq!(gone.head_sha, NEW_HEAD);
}

#[test]
fn other_actions_and_events_are_ignored() {
    assert_eq!(
        event(EDITED),
        WebhookEvent::Ignored {
            event: "pull_request".into(),
            action: Some("edited".into())
        }
    );
    let push = parse_delivery(Some("push"), Some("d"), br#"{"ref":"refs/heads/main"}"#);
    assert_eq!(
        push.event,
        WebhookEvent::Ignored {
            event: "push".into(),
            action: None
        }
    );
}

#[test]
fn well_signed_but_unusable() {
    let broken = OPENED.replace(HEAD, "not-a-sha");
    assert!(matches!(event(&broken), WebhookEvent::Unusable { .. }));
    let truncated = &OPENED[..OPENED.len() / 2];
    assert!(matches!(event(truncated), WebhookEvent::Unusable { .. }));
    let no_repo = serde_json::json!({"action": "opened", "number": 1, "pull_request": {}});
    assert!(matches!(
        event(&no_repo.to_string()),
        WebhookEvent::Unusable { .. }
    ));
}

fn automatic() -> RepoSettings {
    RepoSettings::default()
}

fn label_mode() -> RepoSettings {
    RepoSettings {
        mode: PreviewMode::Label("Preview".into()),
        ..RepoSettings::default()
    }
}

fn pipeline(sha: &str) -> Action {
    Action::Pipeline {
        preview: slipway_github::PreviewKey::new("octo-org", "web-app", 42),
        repository: CLONE.into(),
        sha: sha.into(),
        fork: false,
    }
}

fn fork_pipeline(sha: &str) -> Action {
    match pipeline(sha) {
        Action::Pipeline {
            preview,
            repository,
            sha,
            ..
        } => Action::Pipeline {
            preview,
            repository,
            sha,
            fork: true,
        },
        other => other,
    }
}

fn cleanup() -> Action {
    Action::Cleanup {
        preview: slipway_github::PreviewKey::new("octo-org", "web-app", 42),
    }
}

fn is_ignore(a: &Action) -> bool {
    matches!(a, Action::Ignore { .. })
}

#[test]
fn decide_automatic_mode() {
    let s = automatic();
    assert_eq!(decide(&event(OPENED), Some(&s)), pipeline(HEAD));
    assert_eq!(decide(&event(REOPENED), Some(&s)), pipeline(HEAD));
    assert_eq!(decide(&event(SYNCHRONIZE), Some(&s)), pipeline(NEW_HEAD));
    assert_eq!(decide(&event(CLOSED_MERGED), Some(&s)), cleanup());
    assert_eq!(decide(&event(CLOSED_UNMERGED), Some(&s)), cleanup());
    assert!(is_ignore(&decide(&event(LABELED), Some(&s))));
    assert!(is_ignore(&decide(&event(UNLABELED), Some(&s))));
    assert!(is_ignore(&decide(&event(EDITED), Some(&s))));
    let ping = parse_delivery(Some("ping"), None, PING.as_bytes()).event;
    assert!(is_ignore(&decide(&ping, Some(&s))));
}

#[test]
fn decide_label_mode() {
    let s = label_mode();
    // Without the label nothing is built.
    assert!(is_ignore(&decide(&event(OPENED), Some(&s))));
    assert!(is_ignore(&decide(&event(SYNCHRONIZE), Some(&s))));
    // Adding it builds the current head (label names compare case-insensitively).
    assert_eq!(decide(&event(LABELED), Some(&s)), pipeline(HEAD));
    // Pushing while it is present redeploys.
    assert_eq!(
        decide(&event(SYNCHRONIZE_LABELED), Some(&s)),
        pipeline(NEW_HEAD)
    );
    // Removing it tears the preview down.
    assert_eq!(decide(&event(UNLABELED), Some(&s)), cleanup());
    // Another label does nothing.
    let other = LABELED.replace("\"name\": \"preview\"", "\"name\": \"docs\"");
    assert!(is_ignore(&decide(&event(&other), Some(&s))));
    assert_eq!(decide(&event(CLOSED_MERGED), Some(&s)), cleanup());
}

#[test]
fn decide_fork_policy() {
    let off = automatic();
    assert!(!off.build_forks, "forks are not built by default");
    assert!(is_ignore(&decide(&event(FORK), Some(&off))));
    assert!(is_ignore(&decide(&event(DELETED_FORK), Some(&off))));
    let on = RepoSettings {
        build_forks: true,
        ..automatic()
    };
    // Built, but marked: the caller strips the git token and the preview's secret env.
    assert_eq!(decide(&event(FORK), Some(&on)), fork_pipeline(HEAD));
    assert_eq!(
        decide(&event(DELETED_FORK), Some(&on)),
        fork_pipeline(NEW_HEAD)
    );
    // Closing a fork's PR still cleans up.
    let closed_fork = FORK.replacen("\"action\": \"opened\"", "\"action\": \"closed\"", 1);
    assert_eq!(decide(&event(&closed_fork), Some(&off)), cleanup());
}

#[test]
fn decide_disabled_and_unknown_repositories() {
    let disabled = RepoSettings {
        enabled: false,
        ..automatic()
    };
    for body in [OPENED, SYNCHRONIZE, CLOSED_MERGED, LABELED] {
        assert!(is_ignore(&decide(&event(body), Some(&disabled))));
        assert!(is_ignore(&decide(&event(body), None)));
    }
}

#[test]
fn the_fakes_deliveries_parse_and_verify() {
    use fake_github::payloads::{self, PullRequest};
    let mut p = PullRequest::new("synchronize", "octo-org", "web-app", 7, NEW_HEAD);
    p.labels = vec!["preview".into()];
    let body = p.body();
    let headers = payloads::headers(SECRET, "pull_request", body.as_bytes());
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        verify_signature(SECRET, body.as_bytes(), get("x-hub-signature-256")),
        Ok(())
    );
    assert_eq!(
        payloads::signature(SECRET, body.as_bytes()),
        sign(SECRET, body.as_bytes())
    );
    let d = parse_delivery(
        get("x-github-event"),
        get("x-github-delivery"),
        body.as_bytes(),
    );
    assert!(d.id.is_some());
    let WebhookEvent::PullRequest(pr) = d.event else {
        panic!("{:?}", d.event)
    };
    assert_eq!(pr.action, PullRequestAction::Synchronize);
    assert_eq!(pr.head_sha, NEW_HEAD);
    assert_eq!(pr.labels, ["preview"]);
    assert!(!pr.is_fork);

    let mut fork = PullRequest::new("opened", "octo-org", "web-app", 8, HEAD);
    fork.fork = Some("mallory/web-app".into());
    let WebhookEvent::PullRequest(f) = event(&fork.body()) else {
        panic!()
    };
    assert!(f.is_fork);
    fork.fork_deleted = true;
    let WebhookEvent::PullRequest(f) = event(&fork.body()) else {
        panic!()
    };
    assert_eq!(f.head_repo_full_name, None);
    let ping = parse_delivery(Some("ping"), None, payloads::ping("o", "r").as_bytes());
    assert!(matches!(ping.event, WebhookEvent::Ping { .. }));
    // Two deliveries never share an id.
    let a = payloads::headers(SECRET, "ping", b"{}");
    let b = payloads::headers(SECRET, "ping", b"{}");
    assert_ne!(a[3], b[3]);
}
