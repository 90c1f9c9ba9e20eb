//! The `slipway` CLI against a running API: enqueue, list, show, logs, operate; errors go out
//! as `CliError`s with the API's message.

use crate::helpers::*;
use clap::Parser;
use slipway_cli::{Cli, CliError};

async fn slipway(app: &TestApp, args: &[&str]) -> Result<String, CliError> {
    let mut argv = vec!["slipway", "--api-url", &app.base, "--token", ALL];
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
    let err = slipway(&app, &["jobs", "show", "nope"]).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
