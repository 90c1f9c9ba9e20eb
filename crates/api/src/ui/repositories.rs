//! The Repositories page (`/ui/repositories`): the GitHub repositories whose pull requests get
//! previews, their settings, a link to each one's previews, and (for admins) the edit form
//! whose POST `super::actions::edit_repository` validates as `PUT /v1/repositories` does.

use super::UiState;
use super::pages::{Done, Nav, error_page, href, render};
use super::session::Session;
use crate::error::ApiError;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

pub struct RepositoryRow {
    pub full_name: String,
    pub github: String,
    pub previews_href: String,
    pub action: String,
    pub enabled: bool,
    pub mode: String,
    pub label: Option<String>,
    pub build_forks: bool,
    /// The options as compact JSON (shown, and the edit form's starting text).
    pub build: String,
    pub launch: String,
    /// `dockerfile`, `auto`, `compose` or `helm`.
    pub source: String,
    /// The source's other settings (compose, helm) as compact JSON; empty: none.
    pub source_settings: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "ui/repositories.html")]
struct RepositoriesPage {
    title: String,
    nav: Nav,
    rows: Vec<RepositoryRow>,
}

/// `GET /ui/repositories`.
pub async fn repositories(
    State(state): State<Arc<UiState>>,
    session: Session,
    done: Result<Query<Done>, QueryRejection>,
) -> Response {
    let done = done.map(|Query(d)| d).unwrap_or_default();
    let list = match state.app.store.list_repositories().await {
        Ok(l) => l,
        Err(e) => return error_page(Some(&session), ApiError::from(e)),
    };
    let rows = list
        .into_iter()
        .map(|r| {
            let full_name = format!("{}/{}", r.owner, r.name);
            RepositoryRow {
                github: format!("https://github.com/{full_name}"),
                previews_href: href("/ui", &[("repository", Some(&full_name))]),
                action: format!("/ui/repositories/{}/{}", r.owner, r.name),
                enabled: r.enabled,
                mode: r.mode,
                label: r.label,
                build_forks: r.build_forks,
                build: r.build_options.to_string(),
                launch: r.launch_options.to_string(),
                source: r
                    .source
                    .as_ref()
                    .and_then(|s| s["type"].as_str())
                    .unwrap_or("dockerfile")
                    .to_owned(),
                source_settings: r
                    .source
                    .as_ref()
                    .and_then(|s| s.as_object())
                    .map(|o| {
                        let mut o = o.clone();
                        o.remove("type");
                        o
                    })
                    .filter(|o| !o.is_empty())
                    .map(|o| serde_json::Value::Object(o).to_string())
                    .unwrap_or_default(),
                updated: r.updated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                full_name,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &RepositoriesPage {
            title: "Repositories".into(),
            nav: done.nav(&session),
            rows,
        },
    )
}
