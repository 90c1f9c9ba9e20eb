//! Preview hardening settings through the API: `read_only_root_filesystem` on launches and
//! pipelines is a boolean (a wrong type is a 422 naming the field), is recorded in the job's
//! request, and is documented in `/openapi.json`.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn read_only_root_filesystem_validates_and_is_recorded() {
    let app = spawn_app().await;
    for (path, body, field) in [
        (
            "/v1/launches",
            json!({"preview": "org/app#1", "image": "ghcr.io/org/app:1", "read_only_root_filesystem": "yes"}),
            "read_only_root_filesystem",
        ),
        (
            "/v1/launches",
            json!({"preview": "org/app#1", "image": "ghcr.io/org/app:1", "read_only_root_filesystem": 1}),
            "read_only_root_filesystem",
        ),
        (
            "/v1/pipelines",
            json!({"preview": "org/app#2", "repository": "https://github.com/org/app.git", "commit": SHA,
                   "launch": {"read_only_root_filesystem": null, "port": 3000, "replicas": 1,
                              "health_path": "/", "ttl_hours": 1, "env": {}, "secret_env": {},
                              "resources": {}, "x": 1}}),
            "launch.x",
        ),
        (
            "/v1/pipelines",
            json!({"preview": "org/app#2", "repository": "https://github.com/org/app.git", "commit": SHA,
                   "launch": {"read_only_root_filesystem": "true"}}),
            "launch.read_only_root_filesystem",
        ),
    ] {
        let (status, v) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }

    let (status, v) = app
        .post(
            "/v1/launches",
            &json!({"preview": "org/app#3", "image": "ghcr.io/org/app:1", "read_only_root_filesystem": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["request"]["options"]["read_only_root_filesystem"], true,
        "{v}"
    );
    let (status, v) = app
        .post(
            "/v1/launches",
            &json!({"preview": "org/app#4", "image": "ghcr.io/org/app:1"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["request"]["options"]["read_only_root_filesystem"], false,
        "{v}"
    );
    let (status, v) = app
        .post(
            "/v1/pipelines",
            &json!({"preview": "org/app#5", "repository": "https://github.com/org/app.git", "commit": SHA,
                    "launch": {"read_only_root_filesystem": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["request"]["then_launch"]["read_only_root_filesystem"], true,
        "{v}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_read_only_root_filesystem() {
    let app = spawn_app().await;
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for schema in ["LaunchRequest", "LaunchOptions"] {
        let field =
            &doc["components"]["schemas"][schema]["properties"]["read_only_root_filesystem"];
        let types = field["type"].to_string();
        assert!(types.contains("boolean"), "{schema}: {field}");
        assert!(
            field["description"]
                .as_str()
                .is_some_and(|d| d.contains("/tmp")),
            "{schema}: {field}"
        );
    }
}
