//! The dashboard's live log over real HTTP, Postgres and Redis: the session-only SSE stream
//! (segments, progress and end events), the log.txt download (paged past one store read),
//! the log block's markup (CONTRACT.md), tail and timestamp choices, live.js, and a build's
//! progress in the JSON API's job view.

use crate::helpers::*;
use crate::ui::sign_in;
use chrono::Utc;
use futures::StreamExt;
use reqwest::StatusCode;
use slipway_shared::store::{AttemptOutcome, LogLine};
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", app.base));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("slipway_session={c}"));
    }
    req.send().await.unwrap()
}

fn line(seq: i64, text: &str) -> LogLine {
    LogLine {
        seq,
        ts: Utc::now(),
        stream: "stdout".into(),
        text: text.into(),
    }
}

/// Reads an SSE body until `done` holds for what was read (or fails after 10 s).
async fn read_until<B: AsRef<[u8]>>(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    body: &mut String,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(body) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("waiting for {what}; read so far:\n{body}"))
            .unwrap_or_else(|| panic!("stream ended before {what}:\n{body}"))
            .unwrap();
        body.push_str(&String::from_utf8_lossy(chunk.as_ref()));
    }
}

/// The `data` of each event named `event` (`message` for unnamed ones), in order.
fn events(body: &str, event: &str) -> Vec<serde_json::Value> {
    body.split("\n\n")
        .filter(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message");
            name == event
        })
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

async fn running_build(app: &TestApp) -> uuid::Uuid {
    let (_, job) = app.post("/v1/builds", &build_body()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    assert!(app.store.start_attempt(id, 1, "w").await.unwrap().is_some());
    id
}

#[tokio::test]
async fn ui_live_log_streams_coloured_lines_progress_and_the_end() {
    let app = spawn_app().await;
    let id = running_build(&app).await;
    app.store
        .append_logs(id, 1, &[line(0, "#1 [internal] load build definition")])
        .await
        .unwrap();
    let session = sign_in(&app, READ).await;

    // The page: the contract's markup, the stream starting after the line it shows.
    let page = get(&app, &format!("/ui/jobs/{id}"), Some(&session)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    let stream_path = format!("/ui/jobs/{id}/log/stream?after=1%3A0");
    assert!(
        body.contains(&format!(
            "<pre id=\"log-{id}\" class=\"log\" data-stream=\"{stream_path}\" data-job=\"{id}\">"
        )),
        "{body}"
    );
    assert_eq!(body.matches("<span class=\"log-line").count(), 1);
    assert!(body.contains(&format!("data-job-state=\"{id}\">running<")));
    assert!(body.contains("class=\"build-progress\""), "a running build");
    assert!(body.contains("waiting for the first step"));
    assert!(body.contains(&format!("href=\"/ui/jobs/{id}/log.txt\"")));
    assert!(body.contains("<script src=\"/ui/assets/live.js?v="));

    // Without a session there is no stream.
    let anon = get(&app, &stream_path, None).await;
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    // A bad position is a 400 page naming it, not a stream.
    let bad = get(
        &app,
        &format!("/ui/jobs/{id}/log/stream?after=nonsense"),
        Some(&session),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("after"));

    let resp = get(&app, &stream_path, Some(&session)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = Box::pin(resp.bytes_stream());
    let mut sse = String::new();
    // A colour and markup line, then a step header with the progress the worker records.
    app.store
        .append_logs(id, 1, &[line(1, "\u{1b}[31m<b>red</b>\u{1b}[0m plain")])
        .await
        .unwrap();
    read_until(&mut stream, &mut sse, "the coloured line", |b| {
        b.contains("id: 1:1")
    })
    .await;
    let lines = events(&sse, "message");
    assert_eq!(
        lines.len(),
        1,
        "only lines after the page's last one: {sse}"
    );
    assert_eq!(
        lines[0]["segments"],
        serde_json::json!([
            {"class": "ansi-fg-1", "text": "<b>red</b>"},
            {"class": "", "text": " plain"},
        ]),
        "segments, escapes removed, markup left as text for textContent"
    );
    assert_eq!(lines[0]["stream"], "stdout");
    assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));

    let progress = serde_json::json!({
        "step": 2, "steps": 5, "name": "[2/5] RUN make", "step_started_at": Utc::now(),
    });
    app.store
        .append_logs_with_progress(id, 1, &[line(2, "#5 [2/5] RUN make")], Some(&progress))
        .await
        .unwrap();
    read_until(&mut stream, &mut sse, "the progress", |b| {
        b.contains("event: progress") && b.contains("RUN make")
    })
    .await;
    let p = events(&sse, "progress");
    assert_eq!(p.last().unwrap()["step"], 2);
    assert_eq!(p.last().unwrap()["steps"], 5);

    // The job ends without another line: the stream ends with its state.
    let done = AttemptOutcome::Failed {
        error: "boom".into(),
        class: slipway_core::ErrorClass::Permanent,
    };
    assert!(app.store.finish_attempt(id, 1, done).await.unwrap());
    read_until(&mut stream, &mut sse, "the end event", |b| {
        b.contains("event: end")
    })
    .await;
    assert_eq!(
        events(&sse, "end"),
        [serde_json::json!({"state": "failed"})]
    );
    let rest = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream closes after its end event");
    assert!(rest.is_none(), "{rest:?}");

    // An ended job's page does not ask live.js to follow it, and shows no progress.
    let body = get(&app, &format!("/ui/jobs/{id}"), Some(&session))
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains(" data-ended>"), "{body}");
    assert!(!body.contains("class=\"build-progress\""));
}

#[tokio::test]
async fn ui_log_txt_downloads_every_line_as_an_attachment() {
    let app = spawn_app().await;
    let id = running_build(&app).await;
    // More lines than one store read (2000) and two attempts.
    let first: Vec<LogLine> = (0..4500)
        .map(|s| line(s, &format!("a1 line {s}")))
        .collect();
    for chunk in first.chunks(1000) {
        app.store.append_logs(id, 1, chunk).await.unwrap();
    }
    let retry = AttemptOutcome::Retrying {
        error: "again".into(),
        retry_at: Utc::now(),
    };
    assert!(app.store.finish_attempt(id, 1, retry).await.unwrap());
    assert!(app.store.start_attempt(id, 2, "w").await.unwrap().is_some());
    app.store
        .append_logs(id, 2, &[line(0, "a2 \u{1b}[32mgreen\u{1b}[0m")])
        .await
        .unwrap();
    let session = sign_in(&app, READ).await;

    let anon = get(&app, &format!("/ui/jobs/{id}/log.txt"), None).await;
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    let resp = get(&app, &format!("/ui/jobs/{id}/log.txt"), Some(&session)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        resp.headers()["content-disposition"],
        format!("attachment; filename=\"job-{id}.log.txt\"").as_str()
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4501);
    assert_eq!(lines[0], "a1 line 0");
    assert_eq!(lines[1999], "a1 line 1999");
    assert_eq!(
        lines[2000], "a1 line 2000",
        "the second page follows the first"
    );
    assert_eq!(lines[4499], "a1 line 4499");
    assert_eq!(
        lines[4500], "a2 \u{1b}[32mgreen\u{1b}[0m",
        "the raw text, as logged"
    );

    let missing = get(
        &app,
        &format!("/ui/jobs/{}/log.txt", uuid::Uuid::now_v7()),
        Some(&session),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ui_log_tail_choices_timestamps_and_live_js() {
    let app = spawn_app().await;
    let id = running_build(&app).await;
    let many: Vec<LogLine> = (0..300).map(|s| line(s, &format!("line {s}"))).collect();
    app.store.append_logs(id, 1, &many).await.unwrap();
    let session = sign_in(&app, READ).await;

    let count = |body: &str| body.matches("<span class=\"log-line").count();
    let default = get(&app, &format!("/ui/jobs/{id}"), Some(&session))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(count(&default), 200, "the default tail");
    assert!(default.contains(&format!("href=\"/ui/jobs/{id}?tail=1000\"")));
    assert!(default.contains(&format!("href=\"/ui/jobs/{id}?timestamps=1\"")));
    let more = get(
        &app,
        &format!("/ui/jobs/{id}?tail=1000&timestamps=1"),
        Some(&session),
    )
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(count(&more), 300);
    assert!(more.contains("class=\"log log-ts\""));
    assert!(more.contains("data-ts=\"20"), "lines carry their time");
    let bad = get(&app, &format!("/ui/jobs/{id}?tail=7"), Some(&session)).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("tail must be one of 100, 200, 1000, 5000")
    );

    // live.js: from this origin, immutable under its content hash, revalidated otherwise;
    // it builds lines with textContent, never innerHTML.
    let src = default
        .split("<script src=\"")
        .find_map(|s| s.strip_prefix("/ui/assets/live.js"))
        .and_then(|s| s.split('"').next())
        .expect("live.js is linked")
        .to_owned();
    let js = get(&app, &format!("/ui/assets/live.js{src}"), None).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let code = js.text().await.unwrap();
    assert!(code.contains("EventSource") && code.contains("textContent"));
    assert!(!code.contains("innerHTML"));
    let unversioned = get(&app, "/ui/assets/live.js", None).await;
    assert_eq!(unversioned.headers()["cache-control"], "no-cache");
}

#[tokio::test]
async fn a_builds_progress_is_in_its_job_view_from_the_running_attempt_only() {
    let app = spawn_app().await;
    let id = running_build(&app).await;
    let (_, view) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(view["progress"], serde_json::Value::Null);

    let at = Utc::now();
    let progress = serde_json::json!({
        "step": 3, "steps": 7, "name": "[builder 3/4] COPY . .", "step_started_at": at,
    });
    app.store
        .append_logs_with_progress(id, 1, &[], Some(&progress))
        .await
        .unwrap();
    let (_, view) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(view["progress"]["step"], 3);
    assert_eq!(view["progress"]["steps"], 7);
    assert_eq!(view["progress"]["name"], "[builder 3/4] COPY . .");
    assert!(view["progress"]["step_started_at"].is_string());

    // A stale attempt's worker records nothing; a new attempt starts without progress.
    let stale = serde_json::json!({"step": 1, "steps": 1, "name": "[1/1] FROM x"});
    app.store
        .append_logs_with_progress(id, 0, &[], Some(&stale))
        .await
        .unwrap();
    let (_, view) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        view["progress"]["step"], 3,
        "attempt 0 is not the running one"
    );
    let retry = AttemptOutcome::Retrying {
        error: "again".into(),
        retry_at: Utc::now(),
    };
    assert!(app.store.finish_attempt(id, 1, retry).await.unwrap());
    assert!(app.store.start_attempt(id, 2, "w").await.unwrap().is_some());
    let (_, view) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(view["progress"], serde_json::Value::Null);
}

#[tokio::test]
async fn ui_preview_history_and_queues_throughput_chart() {
    let app = spawn_app().await;
    // A pipeline-less preview with a build that failed once then succeeded, and a launch
    // cancelled before it started.
    let mut body = build_body();
    body["preview"] = "org/app#7".into();
    let (_, job) = app.post("/v1/builds", &body).await;
    let build: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store.start_attempt(build, 1, "worker-a").await.unwrap();
    let retry = AttemptOutcome::Retrying {
        error: "registry <unreachable>".into(),
        retry_at: Utc::now(),
    };
    assert!(app.store.finish_attempt(build, 1, retry).await.unwrap());
    app.store.start_attempt(build, 2, "worker-b").await.unwrap();
    let done = AttemptOutcome::Succeeded {
        result: serde_json::json!({"image": "org/app", "digest": "sha256:00"}),
    };
    assert!(app.store.finish_attempt(build, 2, done).await.unwrap());
    let (_, launch) = app
        .post(
            "/v1/launches",
            &serde_json::json!({"preview": "org/app#7", "image": "org/app:1"}),
        )
        .await;
    let launch: uuid::Uuid = launch["id"].as_str().unwrap().parse().unwrap();
    assert!(
        app.store
            .cancel_job(launch, slipway_core::JobState::Cancelled, "not now")
            .await
            .unwrap()
    );
    let session = sign_in(&app, READ).await;

    let page = get(&app, "/ui/preview?key=org%2Fapp%237", Some(&session))
        .await
        .text()
        .await
        .unwrap();
    let history = page
        .split("<ol class=\"timeline\" id=\"status-history\">")
        .nth(1)
        .and_then(|h| h.split("</ol>").next())
        .unwrap_or_else(|| panic!("a status history: {page}"));
    let entries: Vec<&str> = history.matches("<li>").collect();
    assert_eq!(
        entries.len(),
        7,
        "2 requests, 2 starts, 2 attempt ends, 1 cancel: {history}"
    );
    let order: Vec<usize> = [
        "cancelled",
        "attempt 2 succeeded",
        "attempt 2 started on worker-b",
        "attempt 1 retrying: registry &#60;unreachable&#62;",
        "attempt 1 started on worker-a",
    ]
    .iter()
    .map(|t| {
        history
            .find(t)
            .or_else(|| history.find(&t.replace("&#60;", "&lt;").replace("&#62;", "&gt;")))
            .unwrap_or_else(|| panic!("{t} in {history}"))
    })
    .collect();
    assert!(order.is_sorted(), "newest first: {history}");

    // Two jobs finished this hour: the chart says so, one bar per minute with finishes.
    let queues = get(&app, "/ui/queues", Some(&session))
        .await
        .text()
        .await
        .unwrap();
    assert!(queues.contains("<figure class=\"chart\" id=\"throughput\">"));
    assert!(queues.contains("2 finished in the last hour"), "{queues}");
    let bars = queues.matches("<rect class=\"bar\"").count();
    assert!((1..=2).contains(&bars), "{queues}");
    assert!(!queues.contains("style="), "no inline styles");
}
