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

#[tokio::test]
async fn ui_in_chromium_signs_in_and_opens_a_preview_without_csp_violations() {
    let required = std::env::var("SLIPWAY_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            !required,
            "SLIPWAY_REQUIRE_CHROMIUM=1 but {CHROMEDRIVER} or {CHROMIUM} is missing \
             (scripts/ensure-tools.sh installs chromium and chromium-driver)"
        );
        eprintln!("skipped: no chromium/chromedriver (apt-get install chromium chromium-driver)");
        return;
    }
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _chromedriver = tokio::process::Command::new(CHROMEDRIVER)
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
