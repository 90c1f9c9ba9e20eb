//! Every `/v1` route needs a valid bearer token with its scope; probes stay open.

use crate::helpers::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn missing_or_wrong_tokens_get_401_and_missing_scopes_403() {
    let app = spawn_app().await;
    let body = build_body();
    let cases: &[(Method, &str, Option<&str>, StatusCode)] = &[
        (Method::POST, "/v1/builds", None, StatusCode::UNAUTHORIZED),
        (
            Method::POST,
            "/v1/builds",
            Some("not-a-valid-token-at-all"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::POST,
            "/v1/builds",
            Some(READ),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/builds",
            Some(ADMIN),
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, "/v1/jobs", None, StatusCode::UNAUTHORIZED),
        (
            Method::GET,
            "/v1/jobs",
            Some(ENQUEUE),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/v1/queues",
            Some(ADMIN),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/queues/build/pause",
            Some(READ),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/queues/build/pause",
            Some(ENQUEUE),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (method, path, token, expected) in cases {
        let (status, v) = app.call(method.clone(), path, *token, Some(&body)).await;
        assert_eq!(status, *expected, "{method} {path} with {token:?}: {v}");
        let code = v["error"]["code"].as_str().unwrap();
        assert!(code == "unauthorized" || code == "forbidden", "{v}");
    }
    // A scheme other than Bearer is refused too.
    let resp = app
        .http
        .get(format!("{}/v1/jobs", app.base))
        .basic_auth("root", Some(ALL))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    // The right scopes pass.
    assert_eq!(
        app.call(Method::POST, "/v1/builds", Some(ENQUEUE), Some(&body))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.call(Method::GET, "/v1/jobs", Some(READ), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Method::POST, "/v1/queues/build/pause", Some(ADMIN), None)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn probes_and_metrics_need_no_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let (status, v) = app.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
    }
    // A request first, so the request counter exists.
    app.get("/v1/jobs").await;
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("slipway_api_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/jobs\""), "{text}");
    slipway_shared::testing::assert_promtool_clean("slipway-api", &text);
}
