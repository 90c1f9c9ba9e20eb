//! The `slipway` CLI against a running API: enqueue, list, show, logs, operate, repository
//! settings; errors go out as `CliError`s with the API's message and the documented exit code.

use crate::helpers::*;
use clap::Parser;
use serde_json::json;
use slipway_cli::{Cli, CliError};

async fn slipway(app: &TestApp, args: &[&str]) -> Result<String, CliError> {
    slipway_as(app, ALL, args).await
}

async fn slipway_as(app: &TestApp, token: &str, args: &[&str]) -> Result<String, CliError> {
    let mut argv = vec!["slipway", "--api-url", &app.base, "--token", token];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("valid command line");
    let mut out = Vec::new();
    slipway_cli::run(cli, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_cli_drives_the_api() {
    let app = spawn_app().await;
    let out = slipway(
        &app,
        &[
            "build",
            "--repository",
            "https://github.com/org/app.git",
            "--commit",
            SHA,
            "--image",
            "org/app",
            "--build-arg",
            "A=1",
        ],
    )
    .await
    .unwrap();
    assert!(out.starts_with("build job "), "{out}");
    let id = out.split_whitespace().nth(2).unwrap().to_owned();

    let json = slipway(&app, &["-o", "json", "jobs", "show", &id])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["request"]["build_args"]["A"], "1");

    let table = slipway(&app, &["jobs", "list", "--kind", "build"])
        .await
        .unwrap();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID"));
    assert!(lines.next().unwrap().starts_with(&id));

    let out = slipway(&app, &["queues"]).await.unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with("build") && l.split_whitespace().nth(1) == Some("1")),
        "{out}"
    );

    let out = slipway(&app, &["cancel", &id]).await.unwrap();
    assert_eq!(out.trim(), format!("job {id}: cancelled"));
    let out = slipway(&app, &["retry", &id]).await.unwrap();
    assert_eq!(out.trim(), format!("job {id}: queued"));
    assert!(
        slipway(&app, &["queues", "pause", "cleanup"])
            .await
            .unwrap()
            .contains("paused")
    );

    app.store
        .append_logs(id.parse().unwrap(), 1, &[])
        .await
        .unwrap();
    let out = slipway(&app, &["logs", &id]).await.unwrap();
    assert_eq!(out, "");

    // API errors come back with their message and the field.
    let err = slipway(
        &app,
        &[
            "build",
            "--repository",
            "file:///etc",
            "--commit",
            SHA,
            "--image",
            "org/app",
        ],
    )
    .await
    .unwrap_err();
    match &err {
        CliError::Api { status, field, .. } => {
            assert_eq!(*status, 422);
            assert_eq!(field.as_deref(), Some("repository"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        format!("{:?}", err.exit_code()),
        format!("{:?}", std::process::ExitCode::from(1))
    );
    // An SSH address is refused, and the message says what to use instead.
    let err = slipway(
        &app,
        &[
            "pipeline",
            "--preview",
            "org/app#1",
            "--repository",
            "git@github.com:org/app.git",
            "--commit",
            SHA,
        ],
    )
    .await
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("cannot be built")
            && shown.contains("https://")
            && shown.contains("field `repository`"),
        "{shown}"
    );
    let err = slipway(&app, &["jobs", "show", "nope"]).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

fn exit_code(code: std::process::ExitCode) -> String {
    format!("{code:?}")
}

fn exits_with(err: &CliError, code: u8) {
    assert_eq!(
        exit_code(err.exit_code()),
        exit_code(std::process::ExitCode::from(code)),
        "{err:?}"
    );
}

async fn repo_json(app: &TestApp, repo: &str) -> serde_json::Value {
    let out = slipway(app, &["-o", "json", "repos", "show", repo])
        .await
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn repos_set_merges_into_what_is_stored() {
    let app = spawn_app().await;
    let out = slipway(
        &app,
        &[
            "repos",
            "set",
            "acme/shop",
            "--context",
            "web",
            "--dockerfile",
            "web.Dockerfile",
            "--build-arg",
            "NODE_ENV=production",
            "--target",
            "runtime",
            "--port",
            "3000",
            "--env",
            "LOG=debug",
            "--secret-env",
            "DATABASE_URL=shop-db/url",
            "--cpu",
            "250m",
            "--memory",
            "256Mi",
            "--ttl-hours",
            "48",
            "--read-only-root-filesystem",
        ],
    )
    .await
    .unwrap();
    assert!(out.starts_with("repository:  acme/shop\n"), "{out}");
    assert!(out.contains("\nenabled:     true\n"), "{out}");
    let v = repo_json(&app, "acme/shop").await;
    assert_eq!(v["mode"], "automatic");
    assert_eq!(v["build_forks"], false);
    assert_eq!(
        v["build"],
        json!({"context": "web", "dockerfile": "web.Dockerfile",
               "build_args": {"NODE_ENV": "production"}, "target": "runtime"})
    );
    assert_eq!(
        v["launch"],
        json!({"port": 3000, "env": {"LOG": "debug"}, "secret_env": {"DATABASE_URL": "shop-db/url"},
               "resources": {"cpu": "250m", "memory": "256Mi"}, "ttl_hours": 48,
               "read_only_root_filesystem": true})
    );

    // Switching to label mode keeps the build and launch options.
    slipway(
        &app,
        &[
            "repos",
            "set",
            "acme/shop",
            "--mode",
            "label",
            "--label",
            "preview",
        ],
    )
    .await
    .unwrap();
    let after = repo_json(&app, "acme/shop").await;
    assert_eq!(
        (&after["mode"], &after["label"]),
        (&json!("label"), &json!("preview"))
    );
    assert_eq!(
        (&after["build"], &after["launch"]),
        (&v["build"], &v["launch"])
    );

    // Maps merge by key, `--unset` removes, `--allow-forks` flips the fork policy.
    slipway(
        &app,
        &[
            "repos",
            "set",
            "acme/shop",
            "--build-arg",
            "GREETING=a=b",
            "--unset",
            "launch.env.LOG",
            "--unset",
            "build.target",
            "--memory",
            "512Mi",
            "--allow-forks",
            "true",
        ],
    )
    .await
    .unwrap();
    let v = repo_json(&app, "acme/shop").await;
    assert_eq!(
        v["build"]["build_args"],
        json!({"NODE_ENV": "production", "GREETING": "a=b"})
    );
    assert_eq!(v["build"]["target"], serde_json::Value::Null);
    assert_eq!(v["launch"]["env"], serde_json::Value::Null, "{v}");
    assert_eq!(
        v["launch"]["resources"],
        json!({"cpu": "250m", "memory": "512Mi"})
    );
    assert_eq!(
        (&v["build_forks"], &v["label"]),
        (&json!(true), &json!("preview"))
    );

    // `--replace` starts over from the defaults.
    slipway(
        &app,
        &["repos", "set", "acme/shop", "--replace", "--port", "8080"],
    )
    .await
    .unwrap();
    let v = repo_json(&app, "acme/shop").await;
    assert_eq!(
        (&v["mode"], &v["build_forks"], &v["build"], &v["launch"]),
        (
            &json!("automatic"),
            &json!(false),
            &json!({}),
            &json!({"port": 8080})
        )
    );
}

#[tokio::test]
async fn repos_list_enable_and_disable_drive_the_webhook() {
    let app = spawn_app().await;
    assert_eq!(
        slipway(&app, &["repos", "list"]).await.unwrap().trim(),
        "REPOSITORY  ENABLED  MODE  LABEL  FORKS  UPDATED"
    );
    slipway(
        &app,
        &[
            "repos",
            "set",
            "acme/shop",
            "--dockerfile",
            "web.Dockerfile",
        ],
    )
    .await
    .unwrap();
    let out = slipway(&app, &["repos", "enable", "acme/api"])
        .await
        .unwrap();
    assert_eq!(out.trim(), "repository acme/api: enabled");
    let out = slipway(&app, &["repos", "disable", "acme/shop"])
        .await
        .unwrap();
    assert_eq!(out.trim(), "repository acme/shop: disabled");

    let table = slipway(&app, &["repos", "list"]).await.unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(5).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["acme/api", "true", "automatic", "-", "false"],
            ["acme/shop", "false", "automatic", "-", "false"]
        ],
        "{table}"
    );
    let list: serde_json::Value = serde_json::from_str(
        &slipway(&app, &["-o", "json", "repos", "list"])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    // Disabled: deliveries are ignored. Enabled again: the settings set earlier are used.
    let body = |n| fake_github::payloads::PullRequest::new("opened", "acme", "shop", n, SHA).body();
    let (_, v) = crate::github::send(&app, "pull_request", &body(1)).await;
    assert_eq!(v["status"], "ignored", "{v}");
    assert_eq!(
        repo_json(&app, "acme/shop").await["build"]["dockerfile"],
        "web.Dockerfile"
    );
    slipway(&app, &["repos", "enable", "acme/shop"])
        .await
        .unwrap();
    let (_, v) = crate::github::send(&app, "pull_request", &body(2)).await;
    assert_eq!(v["status"], "pipeline", "{v}");
    assert_eq!(v["job"]["request"]["dockerfile"], "web.Dockerfile");

    // Disabling a repository that was never configured is a mistake worth reporting.
    let err = slipway(&app, &["repos", "disable", "acme/typo"])
        .await
        .unwrap_err();
    assert!(matches!(err, CliError::Api { status: 404, .. }), "{err:?}");
    exits_with(&err, 1);
}

#[tokio::test]
async fn repos_bad_input_and_missing_scope_are_clear_errors() {
    let app = spawn_app().await;
    for args in [
        &["repos", "show", "acme"][..],
        &["repos", "set", "acme/", "--port", "1"],
        &["repos", "set", "acme/shop/x"],
        &["repos", "set", "acme/shop", "--build-arg", "NOVALUE"],
        &["repos", "set", "acme/shop", "--env", "NOVALUE"],
        &["repos", "set", "acme/shop", "--unset", "launch.evn"],
    ] {
        let err = slipway(&app, args).await.unwrap_err();
        assert!(matches!(err, CliError::Usage(_)), "{args:?}: {err:?}");
        exits_with(&err, 2);
    }
    let err = slipway(
        &app,
        &["repos", "set", "acme/shop", "--build-arg", "NOVALUE"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--build-arg expects KEY=VALUE, got \"NOVALUE\""
    );
    // Values clap checks are refused with its usage exit code.
    for args in [
        &["slipway", "repos", "set", "acme/shop", "--enabled", "maybe"][..],
        &[
            "slipway",
            "repos",
            "set",
            "acme/shop",
            "--mode",
            "sometimes",
        ],
        &["slipway", "repos", "set", "acme/shop", "--port", "http"],
        &["slipway", "repos", "set"],
    ] {
        let err = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
    // The API's own checks come back with the field.
    let err = slipway(&app, &["repos", "set", "acme/shop", "--mode", "label"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CliError::Api { status: 422, field: Some(f), .. } if f == "label"),
        "{err:?}"
    );
    exits_with(&err, 1);
    let (_, list) = app.get("/v1/repositories").await;
    assert_eq!(list["items"], json!([]), "nothing was written");

    // Reading needs `read`, changing needs `admin`.
    let err = slipway_as(&app, ADMIN, &["repos", "set", "acme/shop"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs the `read` scope as well"),
        "{err}"
    );
    let out = slipway_as(&app, ADMIN, &["repos", "set", "acme/shop", "--replace"])
        .await
        .unwrap();
    assert!(out.starts_with("repository:  acme/shop"), "{out}");
    slipway_as(&app, READ, &["repos", "show", "acme/shop"])
        .await
        .unwrap();
    let err = slipway_as(&app, READ, &["repos", "set", "acme/shop", "--port", "1"])
        .await
        .unwrap_err();
    assert!(matches!(&err, CliError::Api { status: 403, .. }), "{err:?}");
    assert!(err.to_string().contains("lacks the `admin` scope"), "{err}");
    exits_with(&err, 1);
}

/// `slipway logs -f` on a build: stdout is the log alone; each step change and the end are
/// notes on stderr.
#[tokio::test]
async fn logs_follow_prints_build_steps_as_notes_and_the_log_alone() {
    use chrono::Utc;
    use slipway_shared::store::{AttemptOutcome, LogLine};
    let app = spawn_app().await;
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store.start_attempt(id, 1, "w").await.unwrap();
    let line = |seq: i64, text: &str| LogLine {
        seq,
        ts: Utc::now(),
        stream: "stdout".into(),
        text: text.into(),
    };
    let step = |n: u32, name: &str| json!({"step": n, "steps": 3, "name": name, "step_started_at": Utc::now()});
    app.store
        .append_logs_with_progress(
            id,
            1,
            &[line(0, "#3 [1/3] FROM alpine")],
            Some(&step(1, "[1/3] FROM alpine")),
        )
        .await
        .unwrap();

    let argv = [
        "slipway".to_owned(),
        "--api-url".into(),
        app.base.clone(),
        "--token".into(),
        READ.into(),
        "logs".into(),
        "-f".into(),
        id.to_string(),
    ];
    /// Stdout as it is written, so the test knows what the follower has read.
    struct Pipe(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);
    impl std::io::Write for Pipe {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The CLI's future is not Send (it writes to `dyn Write`): it runs beside the test's
    // steps in this task rather than in a spawned one.
    let follower = async move {
        let (mut out, mut notes) = (Pipe(tx), Vec::new());
        let cli = Cli::try_parse_from(argv).unwrap();
        slipway_cli::run_with_notes(cli, &mut out, &mut notes)
            .await
            .unwrap();
        String::from_utf8(notes).unwrap()
    };
    let name = "[2/3] RUN \u{1b}[2Jmake";
    let steps = async {
        let mut out = String::new();
        // Once the first line is out, the follower has read step 1: write the rest.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !out.contains("FROM alpine\n") {
            let b = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("the follower prints the stored line")
                .unwrap();
            out.push_str(&String::from_utf8_lossy(&b));
        }
        app.store
            .append_logs_with_progress(
                id,
                1,
                &[line(1, &format!("#4 {name}"))],
                Some(&step(2, name)),
            )
            .await
            .unwrap();
        app.store
            .append_logs(id, 1, &[line(2, "#4 0.5 compiling")])
            .await
            .unwrap();
        let done = AttemptOutcome::Succeeded { result: json!({}) };
        assert!(app.store.finish_attempt(id, 1, done).await.unwrap());
        // Everything the follower prints until it ends (it drops the sender then).
        while let Some(b) = rx.recv().await {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        out
    };
    let (notes, out) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(follower, steps)
    })
    .await
    .expect("the follower ends with the job");
    assert_eq!(
        out,
        format!("#3 [1/3] FROM alpine\n#4 {name}\n#4 0.5 compiling\n"),
        "stdout is the log alone"
    );
    let notes: Vec<&str> = notes.lines().collect();
    assert_eq!(
        notes,
        [
            "build step 1 of 3: [1/3] FROM alpine",
            "build step 2 of 3: [2/3] RUN [2Jmake",
            &*format!("job {id}: succeeded"),
        ],
        "one note per step change, terminal escapes dropped"
    );
}

/// `--source compose|helm` and their flags make the API's `source` object, for a pipeline and
/// for a repository's settings; a source flag without `--source` is a usage error, and a flag
/// of the other source is the API's refusal naming the field.
#[tokio::test]
async fn the_cli_names_compose_and_helm_sources() {
    let app = spawn_app().await;
    slipway(
        &app,
        &[
            "repos",
            "set",
            "acme/chart",
            "--source",
            "helm",
            "--chart",
            "deploy/chart",
            "--service",
            "web",
            "--service-port",
            "8080",
            "--values",
            "deploy/a.yaml",
            "--values",
            "deploy/b.yaml",
            "--image-tag-value",
            "image.version",
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        repo_json(&app, "acme/chart").await["source"],
        json!({"type": "helm", "chart": "deploy/chart", "service": "web", "port": 8080,
               "values": ["deploy/a.yaml", "deploy/b.yaml"],
               "image_values": {"tag": "image.version"}})
    );
    let out = slipway(
        &app,
        &[
            "-o",
            "json",
            "pipeline",
            "--preview",
            "acme/shop#3",
            "--repository",
            "https://github.com/acme/shop",
            "--commit",
            SHA,
            "--source",
            "compose",
            "--service",
            "web",
            "--compose-file",
            "deploy/compose.yaml",
        ],
    )
    .await
    .unwrap();
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        job["request"]["composition"],
        json!({"type": "compose", "file": "deploy/compose.yaml", "service": "web", "port": null}),
        "{out}"
    );
    let err = slipway(&app, &["repos", "set", "acme/shop", "--chart", "c"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CliError::Usage(m) if m.contains("--chart needs --source")),
        "{err:?}"
    );
    let err = slipway(
        &app,
        &[
            "repos",
            "set",
            "acme/shop",
            "--source",
            "auto",
            "--service",
            "web",
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CliError::Api { field: Some(f), .. } if f == "source.service"),
        "{err:?}"
    );
}
