//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven through
//! its chromedriver with fantoccini (W3C WebDriver). Signs in, finds a seeded preview on the
//! previews page, opens it, and checks that the browser reported no Content-Security-Policy
//! violation and that the vendored htmx loaded.
//!
//! Without chromedriver the test is skipped, unless `SLIPWAY_REQUIRE_CHROMIUM=1` (as `make
//! test` sets it), when it fails.

use crate::helpers::*;
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use slipway_shared::store::PreviewUpsert;
use std::time::Duration;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser's console messages since the last call (chromedriver's log endpoint).
async fn console(driver: &str, session: &str) -> Vec<String> {
    let v: Value = reqwest::Client::new()
        .post(format!("{driver}/session/{session}/se/log"))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .expect("chromedriver log endpoint")
        .json()
        .await
        .unwrap();
    v["value"]
        .as_array()
        .expect("log entries")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn csp_violations(messages: &[String]) -> Vec<&String> {
    messages
        .iter()
        .filter(|m| m.contains("Content Security Policy"))
        .collect()
}

/// A headless Chromium session: the client, chromedriver's URL and the session id (for the
/// console log), and chromedriver itself (killed when dropped). `None`: skip the test (no
/// Chromium, and `SLIPWAY_REQUIRE_CHROMIUM` is not `1`).
async fn chromium() -> Option<(fantoccini::Client, String, String, tokio::process::Child)> {
    let required = std::env::var("SLIPWAY_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            !required,
            "SLIPWAY_REQUIRE_CHROMIUM=1 but {CHROMEDRIVER} or {CHROMIUM} is missing \
             (scripts/ensure-tools.sh installs chromium and chromium-driver)"
        );
        eprintln!("skipped: no chromium/chromedriver (apt-get install chromium chromium-driver)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chromedriver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let driver = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(10), "chromedriver is up", || async {
        reqwest::get(format!("{driver}/status"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver)
        .await
        .expect("a WebDriver session");
    let session = client.session_id().await.unwrap().expect("session id");
    Some((client, driver, session, chromedriver))
}

#[tokio::test]
async fn ui_in_chromium_signs_in_and_opens_a_preview_without_csp_violations() {
    let Some((client, driver, session, _chromedriver)) = chromium().await else {
        return;
    };
    let app = spawn_app().await;
    app.store
        .upsert_preview(&PreviewUpsert {
            key: "org/app#7".into(),
            namespace: "slipway-pv-org-app-7".into(),
            url: Some("http://pr-7-app.example.test".into()),
            image: Some("org/app:7".into()),
            commit_sha: Some(SHA.into()),
            status: "ready".into(),
            pods: vec!["app-7".into()],
            ..PreviewUpsert::default()
        })
        .await
        .unwrap();

    let result = async {
        client.goto(&format!("{}/ui", app.base)).await?;
        // Sent to sign in; sign in with the read token.
        client
            .wait()
            .for_element(Locator::Css("#token"))
            .await?
            .send_keys(READ)
            .await?;
        client.find(Locator::Css("#sign-in")).await?.click().await?;
        let link = client
            .wait()
            .for_element(Locator::Css("table#previews a.preview-link"))
            .await?;
        assert_eq!(link.text().await?, "org/app#7");
        // Screenshots for people (not compared): under target/tmp/ui-screenshots.
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        std::fs::write(shots.join("previews.png"), client.screenshot().await?).unwrap();
        // The vendored htmx ran (scripts from this origin are allowed).
        let htmx = client.execute("return typeof window.htmx", vec![]).await?;
        assert_eq!(htmx, json!("object"));
        link.click().await?;
        let h1 = client.wait().for_element(Locator::Css("h1")).await?;
        assert!(h1.text().await?.contains("org/app#7"));
        let source = client.source().await?;
        assert!(source.contains("http://pr-7-app.example.test"));
        assert!(source.contains("app-7"));
        std::fs::write(shots.join("preview.png"), client.screenshot().await?).unwrap();

        let messages = console(&driver, &session).await;
        assert!(
            csp_violations(&messages).is_empty(),
            "CSP violations: {messages:#?}"
        );
        // The check can fail: an inline style, which the policy forbids, is reported.
        client
            .execute(
                "const s = document.createElement('style'); s.textContent = 'body{}'; \
                 document.head.appendChild(s);",
                vec![],
            )
            .await?;
        let reported = eventually(
            Duration::from_secs(5),
            "the injected violation is reported",
            || async {
                let m = console(&driver, &session).await;
                (!csp_violations(&m).is_empty()).then_some(m)
            },
        )
        .await;
        assert!(!csp_violations(&reported).is_empty());

        // Sign out ends the session: the browser is back at sign-in.
        client
            .find(Locator::Css("#sign-out"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Css("#token")).await?;
        client.goto(&format!("{}/ui/queues", app.base)).await?;
        client.wait().for_element(Locator::Css("#token")).await?;
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = client.close().await;
    result.expect("browser steps");
}

/// live.js in a real browser: a running build's page grows line by line as the worker stores
/// them (colour as a class, markup as text), shows the progress, and on the job's end shows
/// its final state; all under the CSP.
#[tokio::test]
async fn ui_in_chromium_tails_a_running_build_live() {
    use chrono::Utc;
    use slipway_shared::store::{AttemptOutcome, LogLine};
    let Some((client, driver, session, _chromedriver)) = chromium().await else {
        return;
    };
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
    app.store
        .append_logs(id, 1, &[line(0, "first line")])
        .await
        .unwrap();

    let result = async {
        client.goto(&format!("{}/ui/login", app.base)).await?;
        client
            .wait()
            .for_element(Locator::Css("#token"))
            .await?
            .send_keys(READ)
            .await?;
        client.find(Locator::Css("#sign-in")).await?.click().await?;
        client.wait().for_element(Locator::Css("#sign-out")).await?;
        client.goto(&format!("{}/ui/jobs/{id}", app.base)).await?;
        let log = format!("pre#log-{id}");
        client.wait().for_element(Locator::Css(&log)).await?;
        let lines = |client: fantoccini::Client, log: String| async move {
            let v = client
                .execute(
                    "return Array.from(document.querySelectorAll(arguments[0] + ' .log-line'))\
                     .map(e => e.textContent)",
                    vec![json!(log)],
                )
                .await
                .unwrap();
            serde_json::from_value::<Vec<String>>(v).unwrap()
        };
        assert_eq!(lines(client.clone(), log.clone()).await, ["first line"]);

        // Lines stored while the page is open appear without a reload, one by one.
        let hostile = "\u{1b}[32m<img src=x onerror=alert(1)>\u{1b}[0m ok";
        app.store
            .append_logs(id, 1, &[line(1, hostile)])
            .await
            .unwrap();
        eventually(Duration::from_secs(10), "the second line", || {
            let (client, log) = (client.clone(), log.clone());
            async move { (lines(client, log).await.len() == 2).then_some(()) }
        })
        .await;
        let progress =
            json!({"step": 2, "steps": 4, "name": "[2/4] RUN make", "step_started_at": Utc::now()});
        app.store
            .append_logs_with_progress(id, 1, &[line(2, "#5 [2/4] RUN make")], Some(&progress))
            .await
            .unwrap();
        eventually(
            Duration::from_secs(10),
            "the third line and the progress",
            || {
                let (client, log) = (client.clone(), log.clone());
                async move {
                    let n = lines(client.clone(), log).await.len();
                    let step = client
                        .find(Locator::Css(".build-progress .progress-step"))
                        .await
                        .ok()?
                        .text()
                        .await
                        .ok()?;
                    (n == 3 && step == "step 2 of 4").then_some(())
                }
            },
        )
        .await;
        let got = lines(client.clone(), log.clone()).await;
        assert_eq!(
            got[1], "<img src=x onerror=alert(1)> ok",
            "markup stays text"
        );
        let green = client
            .execute(
                "return document.querySelectorAll(arguments[0] + ' .log-line .ansi-fg-2').length \
                 + document.querySelectorAll(arguments[0] + ' img').length * 100",
                vec![json!(log)],
            )
            .await?;
        assert_eq!(green, json!(1), "one green segment, no <img> element");
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        std::fs::write(shots.join("job-live.png"), client.screenshot().await?).unwrap();

        // The job ends: its state is shown without a reload, the progress hides.
        let done = AttemptOutcome::Succeeded { result: json!({}) };
        assert!(app.store.finish_attempt(id, 1, done).await.unwrap());
        eventually(Duration::from_secs(10), "the final state", || {
            let client = client.clone();
            async move {
                let state = client
                    .find(Locator::Css("dd[data-job-state]"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                (state == "succeeded").then_some(())
            }
        })
        .await;
        let hidden = client
            .execute(
                "return document.querySelector('.build-progress').hidden",
                vec![],
            )
            .await?;
        assert_eq!(hidden, json!(true));
        let messages = console(&driver, &session).await;
        assert!(
            csp_violations(&messages).is_empty(),
            "CSP violations: {messages:#?}"
        );
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    if result.is_err() {
        let url = client.current_url().await.map(|u| u.to_string());
        let page = client.source().await.unwrap_or_default();
        eprintln!("at {url:?}:\n{page}");
    }
    let _ = client.close().await;
    result.expect("browser steps");
}
