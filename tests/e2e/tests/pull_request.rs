//! A pull request's whole life through Slipway: opened -> built and launched, the PR's one
//! comment shows the preview URL and its Deployment is `success`; pushed -> the same preview is
//! redeployed with the new commit and the same comment updated; closed -> the namespace is gone,
//! the comment says torn down and the Deployment is `inactive`.

use fake_github::payloads::{self, PullRequest};
use serde_json::{Value, json};
use slipway_core::naming::{preview_host, preview_namespace};
use slipway_e2e::{PREVIEW_DOMAIN, Stack, TOKEN, WEBHOOK_SECRET};
use slipway_shared::testing::eventually;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);
const FIRST: &str = "1111111111111111111111111111111111111111";
const SECOND: &str = "2222222222222222222222222222222222222222";

async fn deliver(stack: &Stack, pr: &PullRequest) {
    let body = pr.body();
    let mut req = stack
        .http
        .post(stack.url("/v1/webhooks/github"))
        .body(body.clone());
    for (k, v) in payloads::headers(WEBHOOK_SECRET.as_bytes(), "pull_request", body.as_bytes()) {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "{}: {}",
        resp.status(),
        resp.text().await.unwrap()
    );
}

/// The PR's comments, and the body of the only one (there must be exactly one).
fn the_comment(stack: &Stack) -> Option<String> {
    let comments = stack.github.comments("org/app", 1);
    assert!(comments.len() <= 1, "one comment per PR, got {comments:#?}");
    comments.first().map(|c| c.body.clone())
}

/// Waits until the comment satisfies `pred`; shows the last body on timeout.
async fn comment_until(stack: &Stack, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let waited = tokio::time::timeout(
        LONG,
        eventually(LONG, what, || async {
            the_comment(stack).filter(|b| pred(b))
        }),
    )
    .await;
    match waited {
        Ok(body) => body,
        Err(_) => panic!("{what}; the comment is {:?}", the_comment(stack)),
    }
}

async fn preview(stack: &Stack) -> Value {
    stack
        .http
        .get(stack.url("/v1/previews/org%2Fapp%231"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_pull_request_is_previewed_redeployed_and_torn_down() {
    let stack = Stack::start().await.expect("stack");
    let resp = stack
        .http
        .put(stack.url("/v1/repositories/org/app"))
        .bearer_auth(TOKEN)
        .json(&json!({"enabled": true, "launch": {"port": 8080}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let url = format!("http://{}", preview_host("org/app#1", PREVIEW_DOMAIN));
    let namespace = preview_namespace("org/app#1");

    // Opened: built, launched, and the PR says so with the URL.
    deliver(&stack, &PullRequest::new("opened", "org", "app", 1, FIRST)).await;
    let body = comment_until(&stack, "the comment to show the preview ready", |b| {
        b.contains("Ready") && b.contains(&url)
    })
    .await;
    assert!(body.contains(&FIRST[..12]), "{body}");
    assert!(
        body.contains("https://slipway.example.com/v1/jobs/"),
        "links the log: {body}"
    );
    let first = preview(&stack).await;
    assert_eq!(first["commit"], FIRST);
    assert_eq!(first["namespace"], namespace);
    let deployments = stack.github.deployments("org/app");
    assert_eq!(deployments.len(), 1, "{deployments:#?}");
    assert!(deployments[0].transient_environment);
    let last = deployments[0].statuses.last().expect("a status");
    assert_eq!(last.state, "success");
    assert_eq!(last.environment_url.as_deref(), Some(url.as_str()));

    // Pushed: the same preview redeployed with the new commit; the same comment updated.
    deliver(
        &stack,
        &PullRequest::new("synchronize", "org", "app", 1, SECOND),
    )
    .await;
    comment_until(&stack, "the comment to show the new commit ready", |b| {
        b.contains("Ready") && b.contains(&SECOND[..12])
    })
    .await;
    let second = preview(&stack).await;
    assert_eq!(second["commit"], SECOND);
    assert_eq!(second["namespace"], namespace, "the same preview");
    assert_ne!(second["image"], first["image"], "the new build is deployed");
    let deployments = stack.github.deployments("org/app");
    let latest = deployments
        .iter()
        .find(|d| d.sha == SECOND)
        .expect("a deployment of the new commit");
    assert_eq!(latest.statuses.last().unwrap().state, "success");

    // Closed: torn down, the comment says so, the deployment is inactive.
    deliver(&stack, &PullRequest::new("closed", "org", "app", 1, SECOND)).await;
    comment_until(&stack, "the comment to say torn down", |b| {
        b.contains("Torn down")
    })
    .await;
    assert!(
        stack.sim.object("namespaces", "", &namespace).is_none(),
        "the namespace is gone"
    );
    let gone = preview(&stack).await;
    assert!(!gone["deleted_at"].is_null(), "{gone}");
    let deployments = stack.github.deployments("org/app");
    let latest = deployments.iter().find(|d| d.sha == SECOND).unwrap();
    assert_eq!(latest.statuses.last().unwrap().state, "inactive");
    assert_eq!(stack.github.comments("org/app", 1).len(), 1);
    stack.stop().await.expect("everything stops cleanly");
}
