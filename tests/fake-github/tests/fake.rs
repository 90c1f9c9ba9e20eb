//! The fake's own contract: GitHub's status codes and headers for authentication, pagination,
//! validation and injected faults, including the HTTP controls other processes use.

use fake_github::{FakeGithub, Fault, FaultKind};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_faketest0123456789abcdefghijklmnopqr";

async fn started() -> (FakeGithub, reqwest::Client) {
    let f = FakeGithub::start().await.expect("starts");
    f.add_token(TOKEN);
    (f, reqwest::Client::new())
}

#[tokio::test]
async fn authentication_and_rate_limit_headers() {
    let (f, http) = started().await;
    let url = format!("{}/repos/o/r/issues/1/comments", f.url());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");

    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    // A forged JWT is refused on App endpoints.
    let r = http
        .post(format!("{}/app/installations/1/access_tokens", f.url()))
        .bearer_auth("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2ln")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let calls = f.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].auth, "none");
    assert_eq!(calls[1].auth, "token");
    assert_eq!(calls[2].auth, "invalid");
}

#[tokio::test]
async fn comments_paginate_with_link_headers() {
    let (f, http) = started().await;
    for i in 0..5 {
        f.add_comment("o/r", 1, "u", &format!("c{i}"));
    }
    let r = http
        .get(format!(
            "{}/repos/o/r/issues/1/comments?per_page=100",
            f.url()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    let page: Vec<Value> = r.json().await.unwrap();
    assert_eq!(page.len(), 3);
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("rel=\"last\""), "{link}");
    let r = http
        .get(format!(
            "{}/repos/o/r/issues/1/comments?per_page=3&page=2",
            f.url()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(!link.contains("rel=\"next\""), "{link}");
    assert!(link.contains("rel=\"prev\""), "{link}");
    let page: Vec<Value> = r.json().await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[1]["body"], "c4");
}

#[tokio::test]
async fn validation_and_not_found() {
    let (f, http) = started().await;
    let r = http
        .post(format!("{}/repos/o/r/deployments", f.url()))
        .bearer_auth(TOKEN)
        .json(&json!({"environment": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = http
        .post(format!("{}/repos/o/r/deployments/999/statuses", f.url()))
        .bearer_auth(TOKEN)
        .json(&json!({"state": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let d: Value = http
        .post(format!("{}/repos/o/r/deployments", f.url()))
        .bearer_auth(TOKEN)
        .json(&json!({"ref": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "environment": "e"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .post(format!(
            "{}/repos/o/r/deployments/{}/statuses",
            f.url(),
            d["id"]
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"state": "exploded"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn faults_through_the_http_controls() {
    let (f, http) = started().await;
    let fault = Fault::new(
        FaultKind::SecondaryRateLimit {
            retry_after_secs: 3,
        },
        1,
    )
    .on_path("/comments");
    let r = http
        .post(format!("http://{}/_fake/faults", f.addr()))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let url = format!("{}/repos/o/r/issues/1/comments", f.url());
    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);

    f.inject(Fault::new(FaultKind::RateLimit { reset_in_secs: 10 }, 1));
    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let reset: i64 = r.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > chrono_now());

    let calls: Vec<Value> = http
        .get(format!("http://{}/_fake/calls", f.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = calls
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 200, 403]);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
