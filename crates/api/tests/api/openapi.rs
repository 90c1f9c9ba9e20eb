//! `/openapi.json` is generated from the handlers and matches the served routes: every
//! documented operation exists (an unauthenticated call gets 401, not 404 or 405), and the
//! document lists exactly the operations of DESIGN.md.

use crate::helpers::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn the_document_matches_the_routes() {
    let app = spawn_app().await;
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops.sort();
    let expected = [
        "DELETE /v1/previews/{key}",
        "GET /v1/jobs",
        "GET /v1/jobs/{id}",
        "GET /v1/jobs/{id}/logs",
        "GET /v1/previews",
        "GET /v1/previews/{key}",
        "GET /v1/queues",
        "GET /v1/repositories",
        "GET /v1/repositories/{owner}/{repo}",
        "POST /v1/builds",
        "POST /v1/cleanups",
        "POST /v1/jobs/{id}/cancel",
        "POST /v1/jobs/{id}/retry",
        "POST /v1/launches",
        "POST /v1/pipelines",
        "POST /v1/queues/{queue}/pause",
        "POST /v1/queues/{queue}/resume",
        "POST /v1/webhooks/github",
        "PUT /v1/repositories/{owner}/{repo}",
    ];
    assert_eq!(ops, expected);
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{key}", "k")
            .replace("{queue}", "build")
            .replace("{owner}", "o")
            .replace("{repo}", "r");
        let (status, v) = app.call(method.parse().unwrap(), &path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{op} is served: {v}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // The request bodies say which repository URLs build (issue #13: SSH addresses cannot).
    for path in ["/v1/builds", "/v1/pipelines"] {
        let d = doc["paths"][path]["post"]["requestBody"]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} has no request body description"));
        assert!(d.contains("https://") && d.contains("SSH"), "{path}: {d}");
    }
}
