//! `slipway repos`: which GitHub repositories get pull-request previews, and how
//! (`/v1/repositories`).
//!
//! `PUT /v1/repositories/{owner}/{repo}` replaces every setting (an absent field takes its
//! default), so `set`, `enable` and `disable` read the current settings, change what the flags
//! name and write the whole back: `slipway repos set o/r --mode label --label preview` keeps
//! the build options set earlier.

use crate::{BuildOpts, CliError, LaunchOpts, build_body, enc, launch_body, output, print_json};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};
use std::io::Write;

#[derive(Debug, Subcommand)]
pub enum ReposAction {
    /// List the configured repositories.
    List,
    /// Show one repository's settings.
    Show {
        /// `owner/repo`.
        repository: String,
    },
    /// Change a repository's settings, configuring it if it is new.
    ///
    /// Only the settings named by flags change; the others are kept. The current settings
    /// are read, changed and written back whole, so the token needs the `read` and `admin`
    /// scopes. Maps merge by key: `--env A=1` adds or replaces `A` and keeps the other
    /// variables. `--unset PATH` removes a setting and applies before the other flags
    /// (`--unset launch.env --env A=1` leaves only `A`); `--replace` starts from the defaults
    /// instead (enabled, automatic mode, forks not built, no options).
    ///
    /// Examples:
    ///   slipway repos set acme/shop --port 3000 --dockerfile web.Dockerfile --build-arg A=1
    ///   slipway repos set acme/shop --mode label --label preview
    ///   slipway repos set acme/shop --secret-env DATABASE_URL=shop-db/url --ttl-hours 48
    ///   slipway repos set acme/shop --unset launch.env.DEBUG --unset build.target
    #[command(
        verbatim_doc_comment,
        about = "Change a repository's settings (only those named), configuring it if it is new"
    )]
    Set(Box<SetArgs>),
    /// Turn previews on for a repository (a new one gets the defaults).
    Enable {
        /// `owner/repo`.
        repository: String,
    },
    /// Turn previews off for a configured repository, keeping its settings.
    Disable {
        /// `owner/repo`.
        repository: String,
    },
}

/// Which pull requests get a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every pull request.
    Automatic,
    /// Only pull requests carrying the label (`--label`).
    Label,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// `owner/repo`.
    pub repository: String,
    /// Build previews for this repository at all.
    #[arg(long, value_name = "true|false")]
    pub enabled: Option<bool>,
    /// Which pull requests get a preview.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// The label that asks for a preview in label mode; implies `--mode label` unless `--mode`
    /// is given.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Build pull requests from forks: their code is untrusted and would run in your cluster.
    #[arg(long, visible_alias = "build-forks", value_name = "true|false")]
    pub allow_forks: Option<bool>,
    /// What previews are made from (replaces the whole current source).
    #[command(flatten)]
    pub source: crate::SourceOpts,
    #[command(flatten)]
    pub build: BuildOpts,
    #[command(flatten)]
    pub launch: LaunchOpts,
    /// Remove a setting, by its path in `slipway repos show -o json`: `label`, `build.target`,
    /// `build.build_args.NAME`, `launch.env`, `launch.resources.cpu`, ... (repeatable).
    #[arg(long, value_name = "PATH")]
    pub unset: Vec<String>,
    /// Start from the defaults instead of the current settings.
    #[arg(long, conflicts_with = "unset")]
    pub replace: bool,
}

/// The fields `PUT` takes; a `RepositoryView` carries them under the same names.
const SETTINGS: [&str; 7] = [
    "enabled",
    "mode",
    "label",
    "build_forks",
    "source",
    "build",
    "launch",
];
const BUILD_FIELDS: [&str; 7] = [
    "context",
    "dockerfile",
    "image",
    "tag",
    "build_args",
    "target",
    "secrets",
];
const LAUNCH_FIELDS: [&str; 8] = [
    "port",
    "env",
    "secret_env",
    "replicas",
    "resources",
    "health_path",
    "ttl_hours",
    "read_only_root_filesystem",
];

pub async fn run(
    api: &crate::ApiClient,
    out: &mut dyn Write,
    action: ReposAction,
    json_out: bool,
) -> Result<(), CliError> {
    match action {
        ReposAction::List => {
            let v = api.get("v1/repositories").await?;
            if json_out {
                return print_json(out, &v);
            }
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        full_name(r),
                        output::cell(&r["enabled"]),
                        output::cell(&r["mode"]),
                        output::cell(&r["label"]),
                        output::cell(&r["build_forks"]),
                        output::cell(&r["updated_at"]),
                    ]
                })
                .collect();
            Ok(output::table(
                out,
                &["repository", "enabled", "mode", "label", "forks", "updated"],
                &rows,
            )?)
        }
        ReposAction::Show { repository } => {
            let path = repo_path(&repository)?;
            let v = api.get(&path).await?;
            print_repository(out, &v, json_out)
        }
        ReposAction::Set(args) => {
            // Check the whole command line before touching the API.
            let path = repo_path(&args.repository)?;
            let unset = args
                .unset
                .iter()
                .map(|p| unset_path(p))
                .collect::<Result<Vec<_>, _>>()?;
            let build = build_body(&args.build)?;
            let source = args.source.body()?;
            let launch = launch_body(&args.launch)?;
            let mut body = if args.replace {
                Map::new()
            } else {
                current(api, &path, true).await?
            };
            for p in &unset {
                remove(&mut body, p);
            }
            insert(&mut body, "enabled", args.enabled);
            insert(&mut body, "build_forks", args.allow_forks);
            insert(&mut body, "source", source);
            let mode = args
                .mode
                .or(args.label.as_ref().map(|_| Mode::Label))
                .map(|m| match m {
                    Mode::Automatic => "automatic",
                    Mode::Label => "label",
                });
            insert(&mut body, "mode", mode);
            insert(&mut body, "label", args.label);
            merge(&mut body, "build", build);
            merge(&mut body, "launch", launch);
            let v = api.put(&path, &Value::Object(body)).await?;
            print_repository(out, &v, json_out)
        }
        ReposAction::Enable { repository } => toggle(api, out, &repository, true, json_out).await,
        ReposAction::Disable { repository } => toggle(api, out, &repository, false, json_out).await,
    }
}

/// `enable` configures a new repository with the defaults; `disable` refuses an unknown one
/// (its events are ignored already, and a typo should not pass silently).
async fn toggle(
    api: &crate::ApiClient,
    out: &mut dyn Write,
    repository: &str,
    enabled: bool,
    json_out: bool,
) -> Result<(), CliError> {
    let path = repo_path(repository)?;
    let mut body = current(api, &path, enabled).await?;
    body.insert("enabled".into(), json!(enabled));
    let v = api.put(&path, &Value::Object(body)).await?;
    if json_out {
        return print_json(out, &v);
    }
    writeln!(
        out,
        "repository {}: {}",
        full_name(&v),
        if enabled { "enabled" } else { "disabled" }
    )?;
    Ok(())
}

/// `v1/repositories/{owner}/{repo}` from `owner/repo`.
fn repo_path(repository: &str) -> Result<String, CliError> {
    match repository.split_once('/') {
        Some((owner, repo)) if !owner.is_empty() && !repo.is_empty() && !repo.contains('/') => {
            Ok(format!("v1/repositories/{}/{}", enc(owner), enc(repo)))
        }
        _ => Err(CliError::Usage(format!(
            "expected a repository as OWNER/REPO, got {repository:?}"
        ))),
    }
}

/// The current settings as a `PUT` body; with `missing_ok`, a repository that is not
/// configured yet starts from the defaults (an empty body).
async fn current(
    api: &crate::ApiClient,
    path: &str,
    missing_ok: bool,
) -> Result<Map<String, Value>, CliError> {
    match api.get(path).await {
        Ok(v) => Ok(SETTINGS
            .iter()
            .filter(|k| !v[**k].is_null())
            .map(|k| ((*k).to_owned(), v[*k].clone()))
            .collect()),
        Err(CliError::Api { status: 404, .. }) if missing_ok => Ok(Map::new()),
        // An admin-only token can write but not read: say why reading is needed.
        Err(CliError::Api {
            status: 403,
            code,
            message,
            field,
        }) => Err(CliError::Api {
            status: 403,
            code,
            message: format!(
                "{message}: changing some settings reads the others first, so the token needs \
                 the `read` scope as well as `admin` (or use `repos set --replace`)"
            ),
            field,
        }),
        Err(e) => Err(e),
    }
}

/// A `--unset` path split into keys, checked against the settings `PUT` takes.
fn unset_path(path: &str) -> Result<Vec<String>, CliError> {
    let keys: Vec<String> = path.split('.').map(str::to_owned).collect();
    let known = match (keys.first().map(String::as_str), keys.get(1)) {
        (Some("build"), Some(f)) => BUILD_FIELDS.contains(&f.as_str()),
        (Some("launch"), Some(f)) => LAUNCH_FIELDS.contains(&f.as_str()),
        (Some(k), None) => SETTINGS.contains(&k),
        _ => false,
    };
    if known && keys.iter().all(|k| !k.is_empty()) {
        Ok(keys)
    } else {
        Err(CliError::Usage(format!(
            "--unset expects a setting such as `label`, `build.target` or `launch.env.NAME`, got {path:?}"
        )))
    }
}

/// Remove the value at `keys` (absent already: nothing to do).
fn remove(body: &mut Map<String, Value>, keys: &[String]) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut map = body;
    for k in parents {
        match map.get_mut(k) {
            Some(Value::Object(m)) => map = m,
            _ => return,
        }
    }
    map.remove(last);
}

fn insert<T: serde::Serialize>(body: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        body.insert(key.into(), json!(v));
    }
}

/// Merge `patch` into the object under `key`: maps merge by key, anything else is replaced.
fn merge(body: &mut Map<String, Value>, key: &str, patch: Map<String, Value>) {
    if patch.is_empty() {
        return;
    }
    let target = body
        .entry(key)
        .and_modify(|v| {
            if !v.is_object() {
                *v = json!({});
            }
        })
        .or_insert_with(|| json!({}));
    deep_merge(target, Value::Object(patch));
}

fn deep_merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                deep_merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

fn full_name(v: &Value) -> String {
    format!("{}/{}", output::cell(&v["owner"]), output::cell(&v["name"]))
}

fn print_repository(out: &mut dyn Write, v: &Value, json_out: bool) -> Result<(), CliError> {
    if json_out {
        return print_json(out, v);
    }
    let mut shown = v.clone();
    shown["repository"] = json!(full_name(v));
    let keys: Vec<&str> = std::iter::once("repository")
        .chain(SETTINGS)
        .chain(["created_at", "updated_at"])
        .collect();
    Ok(output::fields(out, &shown, &keys)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_owner_slash_repo() {
        assert_eq!(repo_path("acme/shop").unwrap(), "v1/repositories/acme/shop");
        for bad in ["acme", "acme/", "/shop", "acme/shop/x", ""] {
            assert!(matches!(repo_path(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
    }

    #[test]
    fn flags_merge_into_the_current_settings() {
        let mut body: Map<String, Value> = serde_json::from_value(json!({
            "mode": "automatic",
            "build": {"dockerfile": "web.Dockerfile", "build_args": {"A": "1", "B": "2"}},
            "launch": {"port": 3000, "env": {"X": "1"}, "resources": {"cpu": "250m"}}
        }))
        .unwrap();
        remove(&mut body, &unset_path("build.build_args.B").unwrap());
        remove(&mut body, &unset_path("launch.env.MISSING").unwrap());
        merge(
            &mut body,
            "build",
            serde_json::from_value(json!({"build_args": {"C": "3"}})).unwrap(),
        );
        merge(
            &mut body,
            "launch",
            serde_json::from_value(json!({"resources": {"memory": "1Gi"}, "port": 8080})).unwrap(),
        );
        assert_eq!(
            Value::Object(body),
            json!({
                "mode": "automatic",
                "build": {"dockerfile": "web.Dockerfile", "build_args": {"A": "1", "C": "3"}},
                "launch": {"port": 8080, "env": {"X": "1"}, "resources": {"cpu": "250m", "memory": "1Gi"}}
            })
        );
    }

    #[test]
    fn unset_paths_name_settings() {
        for ok in [
            "label",
            "build",
            "build.target",
            "launch.env.DEBUG",
            "launch.read_only_root_filesystem",
        ] {
            assert!(unset_path(ok).is_ok(), "{ok}");
        }
        for bad in ["lable", "build.targte", "launch..x", "", "owner"] {
            assert!(
                matches!(unset_path(bad), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
