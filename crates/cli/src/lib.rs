//! `slipway`, the operator CLI. It talks only to Slipway's HTTP API: inspect queues, jobs,
//! logs and previews; retry, cancel, pause and resume; enqueue builds, launches, cleanups and
//! pipelines; configure the GitHub repositories that get previews. Human tables by default, `-o json` for scripts; errors go to stderr with a
//! non-zero exit code.

mod client;
mod output;
mod repos;

pub use client::ApiClient;
pub use repos::{Mode as RepoMode, ReposAction, SetArgs as RepoSetArgs};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::ExitCode;

/// What can go wrong, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The API could not be reached or answered garbage (exit 3).
    #[error("{0}")]
    Http(String),
    /// The API refused the request (exit 1).
    #[error("{message} ({status} {code}{})", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Api { .. } => ExitCode::from(1),
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Http(_) | CliError::Io(_) => ExitCode::from(3),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Operate Slipway through its API.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about)]
pub struct Cli {
    /// Base URL of the Slipway API.
    #[arg(
        long,
        env = "SLIPWAY_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api_url: String,
    /// Bearer token (needs the `read`, `enqueue` or `admin` scope the command uses).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Queue counts, or pause/resume a queue.
    Queues {
        #[command(subcommand)]
        action: Option<QueueAction>,
    },
    /// List or show jobs.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Print a job's log; `-f` follows it until the job ends.
    Logs {
        id: String,
        #[arg(short, long)]
        follow: bool,
    },
    /// Retry a failed or cancelled job.
    Retry { id: String },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// List previews, or show one.
    Previews { key: Option<String> },
    /// Keep a live preview longer: move its expiry later (at most a week from now).
    Extend {
        /// The preview's key, e.g. `org/app#42`.
        key: String,
        /// Hours to add, 1 to 24.
        #[arg(long, default_value_t = 4)]
        hours: u32,
    },
    /// Enqueue an image build.
    Build(BuildArgs),
    /// Enqueue a preview launch.
    Launch(LaunchArgs),
    /// Enqueue a preview teardown.
    Cleanup {
        #[arg(long)]
        preview: String,
    },
    /// Enqueue a pipeline: build a commit, then launch it as a preview.
    Pipeline(Box<PipelineArgs>),
    /// GitHub repositories whose pull requests get previews: list, show, set, enable, disable.
    Repos {
        #[command(subcommand)]
        action: ReposAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Stop workers from taking new jobs from a queue.
    Pause { queue: String },
    /// Let workers take jobs from a queue again.
    Resume { queue: String },
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// List jobs, newest first.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        preview: Option<String>,
        /// Free text over errors and payload identifiers.
        #[arg(long)]
        q: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous page's `next_cursor`.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one job with its attempts.
    Show { id: String },
}

#[derive(Debug, Args)]
pub struct BuildOpts {
    /// Sub-directory of the repository to build.
    #[arg(long)]
    pub context: Option<String>,
    /// Dockerfile path within the context (default `Dockerfile`).
    #[arg(long)]
    pub dockerfile: Option<String>,
    /// Image name, e.g. `org/app`.
    #[arg(long)]
    pub image: Option<String>,
    /// Image tag (default: the commit).
    #[arg(long)]
    pub tag: Option<String>,
    /// Build argument `KEY=VALUE` (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Stage of a multi-stage Dockerfile to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Name of the Secret holding a git token.
    #[arg(long)]
    pub git_secret: Option<String>,
    /// Name of the Secret holding registry push credentials.
    #[arg(long)]
    pub registry_secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Git repository as an `https://` URL (SSH addresses cannot be built; a private repository
    /// needs `--git-secret`).
    #[arg(long)]
    pub repository: String,
    #[arg(long)]
    pub commit: String,
    #[command(flatten)]
    pub opts: BuildOpts,
    #[arg(long)]
    pub preview: Option<String>,
    /// Makes a repeated request return the first job instead of a new one.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct LaunchOpts {
    /// Port the application listens on.
    #[arg(long)]
    pub port: Option<u16>,
    /// Environment variable `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Environment variable from a secret, `KEY=SECRET/KEY` (repeatable).
    #[arg(long = "secret-env", value_name = "KEY=SECRET/KEY")]
    pub secret_env: Vec<String>,
    #[arg(long)]
    pub replicas: Option<u32>,
    /// CPU request, e.g. `250m`.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory request, e.g. `256Mi`.
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub health_path: Option<String>,
    /// Hours until the preview is torn down (default 72).
    #[arg(long)]
    pub ttl_hours: Option<u32>,
    /// Read-only root filesystem for the app container, with a writable `/tmp` (default
    /// false).
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub read_only_root_filesystem: Option<bool>,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[arg(long)]
    pub preview: String,
    /// Image reference to run.
    #[arg(
        long,
        conflicts_with = "from_build",
        required_unless_present = "from_build"
    )]
    pub image: Option<String>,
    /// Run the image built by this build job.
    #[arg(long)]
    pub from_build: Option<String>,
    #[command(flatten)]
    pub opts: LaunchOpts,
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// A preview's source (`source.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// The repository's Dockerfile (`--dockerfile`).
    Dockerfile,
    /// No Dockerfile needed: Slipway detects Node.js/Next.js, Python, Go, Rust, Ruby/Rails or a
    /// static site and generates one.
    Auto,
    /// The services of a compose file (`--service`, `--compose-file`).
    Compose,
    /// The repository's Helm chart with the built image (`--chart`, `--service`, `--values`).
    Helm,
}

impl SourceKind {
    fn name(self) -> &'static str {
        match self {
            SourceKind::Dockerfile => "dockerfile",
            SourceKind::Auto => "auto",
            SourceKind::Compose => "compose",
            SourceKind::Helm => "helm",
        }
    }
}

/// What a preview is made from, as `source` in a pipeline or repository settings.
#[derive(Debug, Default, Args)]
pub struct SourceOpts {
    /// What the preview is made from (default: the repository's Dockerfile).
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// compose, helm: the service at the preview URL.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// compose, helm: that service's port (default: compose, its first port; helm, `--port`).
    #[arg(long, value_name = "PORT")]
    pub service_port: Option<u16>,
    /// compose: the compose file (default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml at the root).
    #[arg(long, value_name = "PATH")]
    pub compose_file: Option<String>,
    /// helm: the chart's directory in the repository.
    #[arg(long, value_name = "DIR")]
    pub chart: Option<String>,
    /// helm: a values file in the repository (repeatable; applied in order).
    #[arg(long = "values", value_name = "PATH")]
    pub values: Vec<String>,
    /// helm: the value receiving the built image's repository (default `image.repository`).
    #[arg(long, value_name = "PATH")]
    pub image_repository_value: Option<String>,
    /// helm: the value receiving the built image's tag (default `image.tag`).
    #[arg(long, value_name = "PATH")]
    pub image_tag_value: Option<String>,
}

impl SourceOpts {
    /// The request's `source` object, or `None` without `--source`; a source flag without
    /// `--source` is a usage error.
    pub fn body(&self) -> Result<Option<Value>, CliError> {
        let given = [
            (self.service.is_some(), "--service"),
            (self.service_port.is_some(), "--service-port"),
            (self.compose_file.is_some(), "--compose-file"),
            (self.chart.is_some(), "--chart"),
            (!self.values.is_empty(), "--values"),
            (
                self.image_repository_value.is_some(),
                "--image-repository-value",
            ),
            (self.image_tag_value.is_some(), "--image-tag-value"),
        ];
        let Some(kind) = self.source else {
            return match given.iter().find(|(g, _)| *g) {
                Some((_, flag)) => Err(CliError::Usage(format!(
                    "{flag} needs --source compose or --source helm"
                ))),
                None => Ok(None),
            };
        };
        // The API says which fields go with which source, naming them.
        let mut body = Map::new();
        body.insert("type".into(), json!(kind.name()));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.into(), v);
            }
        };
        put("service", self.service.clone().map(Value::from));
        put("port", self.service_port.map(Value::from));
        put("file", self.compose_file.clone().map(Value::from));
        put("chart", self.chart.clone().map(Value::from));
        put(
            "values",
            (!self.values.is_empty()).then(|| json!(self.values)),
        );
        let mut image = Map::new();
        if let Some(r) = &self.image_repository_value {
            image.insert("repository".into(), json!(r));
        }
        if let Some(t) = &self.image_tag_value {
            image.insert("tag".into(), json!(t));
        }
        put(
            "image_values",
            (!image.is_empty()).then_some(Value::Object(image)),
        );
        Ok(Some(Value::Object(body)))
    }
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[arg(long)]
    pub preview: String,
    /// Git repository as an `https://` URL (SSH addresses cannot be built; a private repository
    /// needs `--git-secret`).
    #[arg(long)]
    pub repository: String,
    #[arg(long)]
    pub commit: String,
    #[command(flatten)]
    pub source: SourceOpts,
    #[command(flatten)]
    pub build: BuildOpts,
    #[command(flatten)]
    pub launch: LaunchOpts,
}

/// Run one command, writing its output to `out` (notes such as a followed build's steps go to
/// stderr).
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    run_with_notes(cli, out, &mut std::io::stderr()).await
}

/// [`run`], writing notes (not output: a followed build's steps, its end) to `notes`.
pub async fn run_with_notes(
    cli: Cli,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), CliError> {
    let api = ApiClient::new(&cli.api_url, cli.token.clone())?;
    let json_out = cli.output == Output::Json;
    match cli.command {
        Command::Repos { action } => repos::run(&api, out, action, json_out).await,
        Command::Queues { action: None } => {
            let v = api.get("v1/queues").await?;
            if json_out {
                return print_json(out, &v);
            }
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| {
                    let c = &q["counts"];
                    vec![
                        output::cell(&q["queue"]),
                        output::cell(&c["waiting"]),
                        output::cell(&c["active"]),
                        output::cell(&c["delayed"]),
                        output::cell(&c["failed"]),
                        output::cell(&c["completed"]),
                        output::cell(&q["paused"]),
                        output::cell(&q["oldest_waiting_age_s"]),
                        q["workers"].as_array().map_or(0, Vec::len).to_string(),
                    ]
                })
                .collect();
            let headers = [
                "queue",
                "waiting",
                "active",
                "delayed",
                "failed",
                "completed",
                "paused",
                "oldest_wait_s",
                "workers",
            ];
            Ok(output::table(out, &headers, &rows)?)
        }
        Command::Queues {
            action: Some(action),
        } => {
            let (queue, verb) = match &action {
                QueueAction::Pause { queue } => (queue, "pause"),
                QueueAction::Resume { queue } => (queue, "resume"),
            };
            let v = api
                .post(&format!("v1/queues/{}/{verb}", enc(queue)), None)
                .await?;
            if json_out {
                return print_json(out, &v);
            }
            writeln!(
                out,
                "queue {queue}: {}",
                if verb == "pause" { "paused" } else { "resumed" }
            )?;
            Ok(())
        }
        Command::Jobs {
            action:
                JobsAction::List {
                    state,
                    kind,
                    preview,
                    q,
                    limit,
                    cursor,
                },
        } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("state", state),
                ("kind", kind),
                ("preview", preview),
                ("q", q),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    query.append_pair(k, &v);
                }
            }
            query.append_pair("limit", &limit.to_string());
            let v = api.get(&format!("v1/jobs?{}", query.finish())).await?;
            if json_out {
                return print_json(out, &v);
            }
            print_jobs(out, &v)
        }
        Command::Jobs {
            action: JobsAction::Show { id },
        } => {
            let v = api.get(&format!("v1/jobs/{}", enc(&id))).await?;
            if json_out {
                return print_json(out, &v);
            }
            print_job(out, &v)
        }
        Command::Logs { id, follow } => {
            let path = format!("v1/jobs/{}/logs", enc(&id));
            if follow {
                // A build's step changes go to stderr, so stdout stays the log itself.
                let mut last_step: Option<(Value, Value)> = None;
                api.sse(
                    &format!("{path}?follow=true&progress=true"),
                    |event, data| {
                        let value: Value =
                            serde_json::from_str(data).unwrap_or(Value::String(data.to_owned()));
                        if event == Some("progress") {
                            let step = (value["step"].clone(), value["steps"].clone());
                            if value.is_object() && last_step.as_ref() != Some(&step) {
                                writeln!(
                                    notes,
                                    "build step {} of {}: {}",
                                    output::cell(&value["step"]),
                                    output::cell(&value["steps"]),
                                    // The name comes from the Dockerfile: no terminal escapes.
                                    output::cell(&value["name"])
                                        .chars()
                                        .filter(|c| !c.is_control())
                                        .collect::<String>()
                                )?;
                                last_step = Some(step);
                            }
                            return Ok(());
                        }
                        if event == Some("end") {
                            // The job ended and every line was sent.
                            if json_out {
                                writeln!(out, "{data}")?;
                            } else {
                                writeln!(notes, "job {id}: {}", output::cell(&value["state"]))?;
                            }
                        } else if json_out {
                            writeln!(out, "{data}")?;
                        } else {
                            writeln!(out, "{}", value["text"].as_str().unwrap_or(data))?;
                        }
                        Ok(out.flush()?)
                    },
                )
                .await
            } else {
                let v = api.get(&format!("{path}?limit=10000")).await?;
                if json_out {
                    return print_json(out, &v);
                }
                for line in v["lines"].as_array().into_iter().flatten() {
                    writeln!(out, "{}", line["text"].as_str().unwrap_or_default())?;
                }
                Ok(())
            }
        }
        Command::Retry { id } => operate(&api, out, &id, "retry", json_out).await,
        Command::Cancel { id } => operate(&api, out, &id, "cancel", json_out).await,
        Command::Previews { key: None } => {
            let v = api.get("v1/previews").await?;
            if json_out {
                return print_json(out, &v);
            }
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    ["key", "status", "url", "namespace", "updated_at"]
                        .map(|k| output::cell(&p[k]))
                        .to_vec()
                })
                .collect();
            Ok(output::table(
                out,
                &["key", "status", "url", "namespace", "updated"],
                &rows,
            )?)
        }
        Command::Previews { key: Some(key) } => {
            let v = api.get(&format!("v1/previews/{}", enc(&key))).await?;
            if json_out {
                return print_json(out, &v);
            }
            let keys = [
                "key",
                "status",
                "url",
                "namespace",
                "image",
                "commit",
                "pods",
                "created_at",
                "updated_at",
                "expires_at",
                "deleted_at",
            ];
            Ok(output::fields(out, &v, &keys)?)
        }
        Command::Extend { key, hours } => {
            let v = api
                .post(
                    &format!("v1/previews/{}/extend", enc(&key)),
                    Some(&json!({ "hours": hours })),
                )
                .await?;
            if json_out {
                return print_json(out, &v);
            }
            writeln!(
                out,
                "preview {}: expires {}",
                output::cell(&v["key"]),
                output::cell(&v["expires_at"])
            )?;
            Ok(())
        }
        Command::Build(args) => {
            let mut body = build_body(&args.opts)?;
            body.insert("repository".into(), json!(args.repository));
            body.insert("commit".into(), json!(args.commit));
            insert_opt(&mut body, "preview", args.preview);
            enqueue(
                &api,
                out,
                "v1/builds",
                Value::Object(body),
                args.idempotency_key,
                json_out,
            )
            .await
        }
        Command::Launch(args) => {
            let mut body = launch_body(&args.opts)?;
            body.insert("preview".into(), json!(args.preview));
            insert_opt(&mut body, "image", args.image);
            insert_opt(&mut body, "from_build", args.from_build);
            enqueue(
                &api,
                out,
                "v1/launches",
                Value::Object(body),
                args.idempotency_key,
                json_out,
            )
            .await
        }
        Command::Cleanup { preview } => {
            enqueue(
                &api,
                out,
                "v1/cleanups",
                json!({"preview": preview}),
                None,
                json_out,
            )
            .await
        }
        Command::Pipeline(args) => {
            let mut body = Map::new();
            body.insert("preview".into(), json!(args.preview));
            body.insert("repository".into(), json!(args.repository));
            body.insert("commit".into(), json!(args.commit));
            if let Some(source) = args.source.body()? {
                body.insert("source".into(), source);
            }
            let build = build_body(&args.build)?;
            if !build.is_empty() {
                body.insert("build".into(), Value::Object(build));
            }
            let launch = launch_body(&args.launch)?;
            if !launch.is_empty() {
                body.insert("launch".into(), Value::Object(launch));
            }
            enqueue(
                &api,
                out,
                "v1/pipelines",
                Value::Object(body),
                None,
                json_out,
            )
            .await
        }
    }
}

/// Percent-encode one path segment (preview keys contain `/` and `#`).
fn enc(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn print_json(out: &mut dyn Write, v: &Value) -> Result<(), CliError> {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    )?;
    Ok(())
}

fn print_jobs(out: &mut dyn Write, v: &Value) -> Result<(), CliError> {
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| {
            vec![
                output::cell(&j["id"]),
                output::cell(&j["kind"]),
                output::cell(&j["state"]),
                output::cell(&j["preview"]),
                j["attempts"].as_array().map_or(0, Vec::len).to_string(),
                output::cell(&j["created_at"]),
                output::cell(&j["error"]),
            ]
        })
        .collect();
    output::table(
        out,
        &[
            "id", "kind", "state", "preview", "attempts", "created", "error",
        ],
        &rows,
    )?;
    if let Some(next) = v["next_cursor"].as_str() {
        writeln!(out, "\nmore: --cursor {next}")?;
    }
    Ok(())
}

fn print_job(out: &mut dyn Write, v: &Value) -> Result<(), CliError> {
    output::fields(
        out,
        v,
        &[
            "id",
            "kind",
            "state",
            "preview",
            "commit",
            "created_at",
            "started_at",
            "finished_at",
            "error",
        ],
    )?;
    if !v["result"].is_null() {
        writeln!(out, "result:      {}", v["result"])?;
    }
    let attempts: Vec<Vec<String>> = v["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            [
                "attempt",
                "outcome",
                "worker_id",
                "started_at",
                "finished_at",
                "error",
            ]
            .map(|k| output::cell(&a[k]))
            .to_vec()
        })
        .collect();
    if !attempts.is_empty() {
        writeln!(out)?;
        output::table(
            out,
            &[
                "attempt", "outcome", "worker", "started", "finished", "error",
            ],
            &attempts,
        )?;
    }
    Ok(())
}

async fn operate(
    api: &ApiClient,
    out: &mut dyn Write,
    id: &str,
    verb: &str,
    json_out: bool,
) -> Result<(), CliError> {
    let v = api
        .post(&format!("v1/jobs/{}/{verb}", enc(id)), None)
        .await?;
    if json_out {
        return print_json(out, &v);
    }
    writeln!(
        out,
        "job {}: {}",
        output::cell(&v["id"]),
        output::cell(&v["state"])
    )?;
    Ok(())
}

async fn enqueue(
    api: &ApiClient,
    out: &mut dyn Write,
    path: &str,
    body: Value,
    idempotency_key: Option<String>,
    json_out: bool,
) -> Result<(), CliError> {
    let headers: Vec<(&str, String)> = idempotency_key
        .into_iter()
        .map(|k| ("Idempotency-Key", k))
        .collect();
    let (status, v) = api
        .call(reqwest::Method::POST, path, Some(&body), &headers)
        .await?;
    if json_out {
        return print_json(out, &v);
    }
    let note = if status == reqwest::StatusCode::OK {
        " (existing job)"
    } else {
        ""
    };
    writeln!(
        out,
        "{} job {} {}{note}",
        output::cell(&v["kind"]),
        output::cell(&v["id"]),
        output::cell(&v["state"])
    )?;
    writeln!(out, "follow it: slipway logs -f {}", output::cell(&v["id"]))?;
    Ok(())
}

fn insert_opt<T: serde::Serialize>(map: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        map.insert(key.into(), json!(v));
    }
}

/// `KEY=VALUE` pairs into a JSON object; `what` names the flag in errors.
fn pairs(items: &[String], what: &str) -> Result<Option<Value>, CliError> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut map = Map::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--{what} expects KEY=VALUE, got {item:?}")))?;
        map.insert(k.to_owned(), json!(v));
    }
    Ok(Some(Value::Object(map)))
}

fn build_body(o: &BuildOpts) -> Result<Map<String, Value>, CliError> {
    let mut m = Map::new();
    insert_opt(&mut m, "context", o.context.clone());
    insert_opt(&mut m, "dockerfile", o.dockerfile.clone());
    insert_opt(&mut m, "image", o.image.clone());
    insert_opt(&mut m, "tag", o.tag.clone());
    insert_opt(&mut m, "build_args", pairs(&o.build_args, "build-arg")?);
    insert_opt(&mut m, "target", o.target.clone());
    let mut secrets = Map::new();
    insert_opt(&mut secrets, "git", o.git_secret.clone());
    insert_opt(&mut secrets, "registry", o.registry_secret.clone());
    if !secrets.is_empty() {
        m.insert("secrets".into(), Value::Object(secrets));
    }
    Ok(m)
}

fn launch_body(o: &LaunchOpts) -> Result<Map<String, Value>, CliError> {
    let mut m = Map::new();
    insert_opt(&mut m, "port", o.port);
    insert_opt(&mut m, "env", pairs(&o.env, "env")?);
    insert_opt(&mut m, "secret_env", pairs(&o.secret_env, "secret-env")?);
    insert_opt(&mut m, "replicas", o.replicas);
    let mut res = Map::new();
    insert_opt(&mut res, "cpu", o.cpu.clone());
    insert_opt(&mut res, "memory", o.memory.clone());
    if !res.is_empty() {
        m.insert("resources".into(), Value::Object(res));
    }
    insert_opt(&mut m, "health_path", o.health_path.clone());
    insert_opt(&mut m, "ttl_hours", o.ttl_hours);
    insert_opt(
        &mut m,
        "read_only_root_filesystem",
        o.read_only_root_filesystem,
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn preview_keys_are_encoded_as_one_path_segment() {
        assert_eq!(enc("org/app#42"), "org%2Fapp%2342");
        assert_eq!(enc("a b"), "a%20b");
    }

    #[test]
    fn flags_become_the_documented_payload() {
        let cli = Cli::try_parse_from([
            "slipway",
            "pipeline",
            "--preview",
            "org/app#1",
            "--repository",
            "https://g/o/a.git",
            "--commit",
            "abc",
            "--build-arg",
            "A=1",
            "--git-secret",
            "gt",
            "--port",
            "3000",
            "--env",
            "X=y=z",
            "--cpu",
            "250m",
        ])
        .unwrap();
        let Command::Pipeline(p) = cli.command else {
            panic!("not a pipeline")
        };
        assert_eq!(
            Value::Object(build_body(&p.build).unwrap()),
            json!({"build_args": {"A": "1"}, "secrets": {"git": "gt"}})
        );
        assert_eq!(
            Value::Object(launch_body(&p.launch).unwrap()),
            json!({"port": 3000, "env": {"X": "y=z"}, "resources": {"cpu": "250m"}})
        );
        assert!(pairs(&["novalue".into()], "env").is_err());
    }
}
