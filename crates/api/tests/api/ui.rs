//! The dashboard (`/ui`) over real HTTP against real Postgres and Redis: sign-in and sessions,
//! cookie attributes, CSRF and cross-origin refusals, security headers, escaping of hostile
//! keys and log lines, and cursor pagination.

use crate::helpers::*;
use chrono::Utc;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_core::{ErrorClass, JobKind, JobState};
use slipway_shared::store::{AttemptOutcome, LogLine, NewJob, PreviewUpsert};

/// A client that shows redirects instead of following them.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> Page {
    let mut req = browser().get(format!("{}{path}", app.base));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("slipway_session={c}"));
    }
    let resp = req.send().await.unwrap();
    Page {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

pub async fn post(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    form: &str,
    extra: &[(&str, &str)],
) -> Page {
    let mut req = browser()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(c) = cookie {
        req = req.header("cookie", format!("slipway_session={c}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    Page {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

fn set_cookie(p: &Page) -> String {
    p.headers
        .get(SET_COOKIE)
        .expect("Set-Cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Signs in with `token`; the session id the cookie holds.
pub async fn sign_in(app: &TestApp, token: &str) -> String {
    let p = post(app, "/ui/login", None, &format!("token={token}"), &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.headers[LOCATION], "/ui");
    let c = set_cookie(&p);
    c.strip_prefix("slipway_session=")
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_owned()
}

/// The value of the hidden `csrf` input of a page.
pub fn csrf(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    body[at..at + 64].to_owned()
}

fn assert_security_headers(p: &Page) {
    let csp = p.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(p.headers["x-frame-options"], "DENY");
    assert_eq!(p.headers["x-content-type-options"], "nosniff");
    assert_eq!(p.headers["referrer-policy"], "same-origin");
}

#[tokio::test]
async fn ui_sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    // No session: every page sends the browser to sign in.
    for path in ["/ui", "/ui/jobs", "/ui/queues", "/ui/preview?key=a"] {
        let p = get(&app, path, None).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(p.headers[LOCATION], "/ui/login", "{path}");
        assert_security_headers(&p);
    }
    let p = get(&app, "/ui", Some(&"ab".repeat(32))).await;
    assert_eq!(p.headers[LOCATION], "/ui/login", "an unknown session");
    let login = get(&app, "/ui/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("action=\"/ui/login\""));
    assert_security_headers(&login);

    // Refused sign-ins say why and set no cookie.
    for (form, status) in [
        ("token=not-a-token-0123456789", StatusCode::UNAUTHORIZED),
        ("token=", StatusCode::BAD_REQUEST),
        ("", StatusCode::BAD_REQUEST),
        (&*format!("token={ENQUEUE}"), StatusCode::FORBIDDEN),
    ] {
        let p = post(&app, "/ui/login", None, form, &[]).await;
        assert_eq!(p.status, status, "{form}: {}", p.body);
        assert!(p.headers.get(SET_COOKIE).is_none(), "{form}");
        assert!(p.body.contains("id=\"login-error\""), "{form}");
    }
    let p = post(
        &app,
        "/ui/login",
        None,
        &format!("token={READ}"),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(
        p.status,
        StatusCode::FORBIDDEN,
        "a sign-in posted from another site"
    );

    // The cookie: HttpOnly, SameSite=Strict, scoped to /ui, Secure only over HTTPS (auto).
    let p = post(&app, "/ui/login", None, &format!("token={READ}"), &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let c = set_cookie(&p);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(c.contains(attr), "{attr} in {c}");
    }
    assert!(!c.contains("Secure"), "plain HTTP: {c}");
    let p = post(
        &app,
        "/ui/login",
        None,
        &format!("token={READ}"),
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert!(set_cookie(&p).contains("; Secure"), "behind a TLS proxy");

    // Signed in: the page names the token, never shows it; the database holds only a hash.
    let id = sign_in(&app, READ).await;
    let home = get(&app, "/ui", Some(&id)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("reader (read)"), "{}", home.body);
    assert!(!home.body.contains(READ));
    assert_security_headers(&home);
    assert_eq!(home.headers["cache-control"], "no-store");
    let hash: [u8; 32] = Sha256::digest(id.as_bytes()).into();
    let row = app
        .store
        .ui_session(&hash)
        .await
        .unwrap()
        .expect("stored by its hash");
    assert_eq!(
        (row.token_name.as_str(), row.scopes.as_str()),
        ("reader", "read")
    );

    // Sign-out is a state-changing form: without the CSRF token, or with another, refused.
    let token = csrf(&home.body);
    for form in [
        String::new(),
        "csrf=".into(),
        format!("csrf={}", "0".repeat(64)),
    ] {
        let p = post(&app, "/ui/logout", Some(&id), &form, &[]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{form}");
        assert_security_headers(&p);
    }
    let p = post(
        &app,
        "/ui/logout",
        Some(&id),
        &format!("csrf={token}"),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(
        p.status,
        StatusCode::FORBIDDEN,
        "cross-origin, even with the token"
    );
    assert_eq!(
        get(&app, "/ui", Some(&id)).await.status,
        StatusCode::OK,
        "still signed in"
    );
    // Another session's CSRF token does not work either.
    let other = sign_in(&app, ALL).await;
    let other_token = csrf(&get(&app, "/ui", Some(&other)).await.body);
    assert_ne!(other_token, token);
    let p = post(
        &app,
        "/ui/logout",
        Some(&id),
        &format!("csrf={other_token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);

    let p = post(&app, "/ui/logout", Some(&id), &format!("csrf={token}"), &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.headers[LOCATION], "/ui/login");
    assert!(set_cookie(&p).contains("Max-Age=0"));
    assert_eq!(
        get(&app, "/ui", Some(&id)).await.headers[LOCATION],
        "/ui/login"
    );
    assert!(app.store.ui_session(&hash).await.unwrap().is_none());
    assert_eq!(
        get(&app, "/ui", Some(&other)).await.status,
        StatusCode::OK,
        "other sessions live on"
    );
}

#[tokio::test]
async fn ui_expired_sessions_and_removed_tokens_send_the_browser_to_sign_in() {
    let app = spawn_app().await;
    let id = "cd".repeat(32);
    let hash: [u8; 32] = Sha256::digest(id.as_bytes()).into();
    app.store
        .create_ui_session(
            &hash,
            "reader",
            "read",
            &"e".repeat(64),
            Utc::now() - chrono::Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(
        get(&app, "/ui", Some(&id)).await.headers[LOCATION],
        "/ui/login",
        "expired"
    );
    let id = "ef".repeat(32);
    let hash: [u8; 32] = Sha256::digest(id.as_bytes()).into();
    app.store
        .create_ui_session(
            &hash,
            "gone",
            "read",
            &"e".repeat(64),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(
        get(&app, "/ui", Some(&id)).await.headers[LOCATION],
        "/ui/login",
        "a token no longer configured"
    );
}

const HOSTILE: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn ui_pages_render_hostile_keys_and_log_lines_as_text() {
    let app = spawn_app().await;
    let id = sign_in(&app, READ).await;
    let key = format!("org/app#1{HOSTILE}");
    app.store
        .upsert_preview(&PreviewUpsert {
            key: key.clone(),
            namespace: "slipway-pv-x".into(),
            url: Some("javascript:alert(1)".into()),
            image: Some(format!("org/app:{HOSTILE}")),
            commit_sha: Some(SHA.into()),
            status: "ready".into(),
            pods: vec![format!("pod{HOSTILE}")],
            expires_at: Some(Utc::now() + chrono::Duration::hours(3)),
            last_job_id: None,
        })
        .await
        .unwrap();
    // A launch with a log line carrying markup and ANSI colour.
    let (_, job) = app
        .post(
            "/v1/launches",
            &json!({"preview": "org/app#42", "image": "org/app:1"}),
        )
        .await;
    let job_id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store
        .start_attempt(job_id, 1, "worker-a")
        .await
        .unwrap();
    let line = |seq, text: &str| LogLine {
        seq,
        ts: Utc::now(),
        stream: "stdout".into(),
        text: text.into(),
    };
    app.store
        .append_logs(
            job_id,
            1,
            &[
                line(0, &format!("\u{1b}[31m{HOSTILE}\u{1b}[0m done")),
                line(1, "\u{1b}]0;x\u{7}plain"),
            ],
        )
        .await
        .unwrap();

    let home = get(&app, "/ui", Some(&id)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(!home.body.contains(HOSTILE), "{}", home.body);
    assert!(
        home.body
            .contains("org/app#1&#60;script&#62;alert(1)&#60;/script&#62;")
            || home.body.contains("&lt;script&gt;"),
        "{}",
        home.body
    );
    assert!(
        !home.body.contains("href=\"javascript:"),
        "only http(s) URLs become links"
    );
    assert!(
        home.body.contains("in 2h") || home.body.contains("in 3h"),
        "expiry"
    );
    let page = get(
        &app,
        &format!("/ui/preview?key={}", urlencode(&key)),
        Some(&id),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains(HOSTILE), "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);

    for path in [
        format!("/ui/preview?key={}", urlencode("org/app#42")),
        format!("/ui/jobs/{job_id}"),
    ] {
        let page = get(&app, &path, Some(&id)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(!page.body.contains(HOSTILE), "{path}");
        assert!(
            !page.body.contains('\u{1b}'),
            "{path}: escape codes never reach the page"
        );
        assert!(
            page.body.contains("<span class=\"ansi-fg-1\">"),
            "{path}: colour as a class: {}",
            page.body
        );
        assert!(page.body.contains("alert(1)"), "{path}: the text is shown");
        assert!(page.body.contains("plain"), "{path}");
        assert_security_headers(&page);
    }
    let job_page = get(&app, &format!("/ui/jobs/{job_id}"), Some(&id)).await;
    assert!(job_page.body.contains("worker-a"), "attempts are shown");

    // Errors are pages too, with the headers.
    for (path, status) in [
        (
            format!("/ui/jobs/{}", uuid::Uuid::now_v7()),
            StatusCode::NOT_FOUND,
        ),
        ("/ui/jobs/not-a-uuid".into(), StatusCode::NOT_FOUND),
        (
            "/ui/preview?key=org%2Fnope%231".into(),
            StatusCode::NOT_FOUND,
        ),
        ("/ui/nothing-here".into(), StatusCode::NOT_FOUND),
        ("/ui?status=bogus".into(), StatusCode::BAD_REQUEST),
        ("/ui?limit=0".into(), StatusCode::BAD_REQUEST),
        ("/ui/jobs?kind=bogus".into(), StatusCode::BAD_REQUEST),
    ] {
        let p = get(&app, &path, Some(&id)).await;
        assert_eq!(p.status, status, "{path}: {}", p.body);
        assert!(
            p.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert_security_headers(&p);
    }

    let queues = get(&app, "/ui/queues", Some(&id)).await;
    assert_eq!(queues.status, StatusCode::OK);
    assert!(queues.body.contains("id=\"queues\""));

    // The vendored htmx and the stylesheet: from this origin, cached for a year.
    let home = get(&app, "/ui", Some(&id)).await;
    for asset in ["/ui/assets/htmx-2.0.11.min.js", &*stylesheet(&home.body)] {
        assert!(home.body.contains(asset), "{asset}");
        let p = get(&app, asset, None).await;
        assert_eq!(p.status, StatusCode::OK, "{asset}");
        assert_eq!(
            p.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_security_headers(&p);
    }
}

fn stylesheet(body: &str) -> String {
    let at = body.find("rel=\"stylesheet\" href=\"").unwrap() + 23;
    body[at..].split('"').next().unwrap().to_owned()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `href` of the page's "Next page" link, if any.
fn next_page(body: &str) -> Option<String> {
    let end = body.find("rel=\"next\"")?;
    let start = body[..end].rfind("href=\"")? + 6;
    Some(
        body[start..end]
            .trim_end()
            .trim_end_matches('"')
            .replace("&amp;", "&")
            .replace("&#38;", "&"),
    )
}

#[tokio::test]
async fn ui_lists_filter_and_page_with_cursors() {
    let app = spawn_app().await;
    let id = sign_in(&app, READ).await;
    for (n, status) in [(1, "ready"), (2, "failed"), (3, "ready"), (4, "deploying")] {
        app.store
            .upsert_preview(&PreviewUpsert {
                key: format!("org/app#{n}"),
                namespace: format!("slipway-pv-{n}"),
                status: status.into(),
                ..PreviewUpsert::default()
            })
            .await
            .unwrap();
    }
    app.store
        .upsert_preview(&PreviewUpsert {
            key: "other/lib#9".into(),
            namespace: "ns-9".into(),
            status: "ready".into(),
            ..PreviewUpsert::default()
        })
        .await
        .unwrap();

    // Five previews, two per page: 2 + 2 + 1, each key once.
    let mut seen = Vec::new();
    let mut path = Some("/ui?limit=2".to_owned());
    let mut pages = 0;
    while let Some(p) = path.take() {
        let page = get(&app, &p, Some(&id)).await;
        assert_eq!(page.status, StatusCode::OK, "{p}: {}", page.body);
        let rows = page.body.matches("class=\"preview-link\"").count();
        assert!(rows <= 2, "{p}");
        for part in page.body.split("class=\"preview-link\" href=\"").skip(1) {
            let key = part.split('>').nth(1).unwrap().split('<').next().unwrap();
            seen.push(key.replace("&#35;", "#"));
        }
        pages += 1;
        path = next_page(&page.body);
        if let Some(n) = &path {
            assert!(n.contains("limit=2") && n.contains("cursor="), "{n}");
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    assert_eq!(
        seen,
        [
            "org/app#1",
            "org/app#2",
            "org/app#3",
            "org/app#4",
            "other/lib#9"
        ]
    );

    // Filters by status and repository; the pager keeps them.
    let p = get(
        &app,
        "/ui?status=ready&repository=org%2Fapp&limit=1",
        Some(&id),
    )
    .await;
    assert_eq!(
        p.body.matches("class=\"preview-link\"").count(),
        1,
        "{}",
        p.body
    );
    let next = next_page(&p.body).expect("a second ready org/app preview");
    assert!(
        next.contains("status=ready") && next.contains("repository=org%2Fapp"),
        "{next}"
    );
    let p2 = get(&app, &next, Some(&id)).await;
    assert_eq!(p2.body.matches("class=\"preview-link\"").count(), 1);
    assert!(next_page(&p2.body).is_none());
    assert!(p2.body.contains("First page"));
    let failed = get(&app, "/ui?status=failed", Some(&id)).await;
    assert_eq!(failed.body.matches("class=\"preview-link\"").count(), 1);
    assert!(
        failed.body.contains("org/app&#35;2") || failed.body.contains("org/app#2"),
        "{}",
        failed.body
    );

    // Jobs: three builds, two per page; filtered by kind.
    for _ in 0..3 {
        let (s, _) = app.post("/v1/builds", &build_body()).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let p = get(&app, "/ui/jobs?kind=build&limit=2", Some(&id)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body.matches("href=\"/ui/jobs/").count(), 2, "{}", p.body);
    let next = next_page(&p.body).expect("a second page");
    let p = get(&app, &next, Some(&id)).await;
    assert_eq!(p.body.matches("href=\"/ui/jobs/").count(), 1);
    assert!(next_page(&p.body).is_none());
    let p = get(&app, "/ui/jobs?kind=launch", Some(&id)).await;
    assert_eq!(p.body.matches("href=\"/ui/jobs/").count(), 0);
    assert!(p.body.contains("No jobs match."));
}

#[tokio::test]
async fn ui_previews_show_their_newest_build_and_launch_and_what_went_wrong() {
    let app = spawn_app().await;
    let id = sign_in(&app, READ).await;
    for key in ["org/app#1", "org/app#2"] {
        app.store
            .upsert_preview(&PreviewUpsert {
                key: key.into(),
                namespace: format!("ns-{}", &key[8..]),
                status: "ready".into(),
                ..PreviewUpsert::default()
            })
            .await
            .unwrap();
    }
    let job = |kind: JobKind| {
        let mut j = NewJob::new(kind, json!({}));
        j.preview = Some("org/app#1".into());
        j
    };
    // An older build that failed, then a newer one still queued; one launch that is running.
    let old = app.store.insert_job(job(JobKind::Build)).await.unwrap().job;
    app.store
        .cancel_job(old.id, JobState::Cancelled, "x")
        .await
        .unwrap();
    let build = app.store.insert_job(job(JobKind::Build)).await.unwrap().job;
    let launch = app
        .store
        .insert_job(job(JobKind::Launch))
        .await
        .unwrap()
        .job;
    app.store.start_attempt(launch.id, 1, "w").await.unwrap();

    let page = get(&app, "/ui", Some(&id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let row = |key: &str| {
        page.body
            .split("<tr>")
            .find(|r| {
                r.contains(&format!(">{}<", key.replace('#', "&#35;")))
                    || r.contains(&format!(">{key}<"))
            })
            .unwrap_or_else(|| panic!("no row for {key}: {}", page.body))
            .to_owned()
    };
    let one = row("org/app#1");
    assert!(
        one.contains(&format!(
            "<td class=\"build\"><a class=\"status-queued\" href=\"/ui/jobs/{}\">queued</a></td>",
            build.id
        )),
        "{one}"
    );
    assert!(
        one.contains(&format!(
            "<td class=\"launch\"><a class=\"status-running\" href=\"/ui/jobs/{}\">running</a></td>",
            launch.id
        )),
        "{one}"
    );
    let two = row("org/app#2");
    assert!(
        two.contains("<td class=\"build\"></td>") && two.contains("<td class=\"launch\"></td>"),
        "{two}"
    );

    // A running launch is no problem; a failed one's error is what went wrong.
    let page = get(&app, "/ui/preview?key=org%2Fapp%231", Some(&id)).await;
    assert!(!page.body.contains("what-went-wrong"), "{}", page.body);
    let hostile = "the container keeps crashing: CrashLoopBackOff; last log line: <b>panic</b>";
    app.store
        .finish_attempt(
            launch.id,
            1,
            AttemptOutcome::Failed {
                error: hostile.into(),
                class: ErrorClass::Permanent,
            },
        )
        .await
        .unwrap();
    let page = get(&app, "/ui/preview?key=org%2Fapp%231", Some(&id)).await;
    let section = page
        .body
        .split("<section class=\"problem\" id=\"what-went-wrong\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no diagnosis: {}", page.body));
    assert!(
        section.contains(&format!(
            "<a href=\"/ui/jobs/{}\">launch</a> failed:",
            launch.id
        )),
        "{section}"
    );
    assert!(
        section.contains("last log line: &#60;b&#62;panic&#60;/b&#62;"),
        "{section}"
    );
}

#[tokio::test]
async fn ui_shows_resource_use_against_quota_warning_at_80_percent() {
    use slipway_shared::store::PreviewUsage;
    let app = spawn_app().await;
    let id = sign_in(&app, READ).await;
    for n in [1, 2, 3, 4] {
        app.store
            .upsert_preview(&PreviewUpsert {
                key: format!("org/app#{n}"),
                namespace: format!("ns-{n}"),
                status: "ready".into(),
                ..PreviewUpsert::default()
            })
            .await
            .unwrap();
    }
    let reading = |n: u32, metrics: &str, cpu: Option<i64>, mem: Option<i64>| PreviewUsage {
        preview: format!("org/app#{n}"),
        sampled_at: Utc::now(),
        metrics: metrics.into(),
        pods: cpu.map(|_| 1),
        cpu_millis: cpu,
        memory_bytes: mem,
        cpu_limit_millis: Some(1000),
        memory_limit_bytes: Some(1024 * 1024 * 1024),
        cpu_requested_millis: None,
        memory_requested_bytes: None,
    };
    const MI: i64 = 1024 * 1024;
    for r in [
        reading(1, "ok", Some(850), Some(100 * MI)),
        reading(2, "ok", Some(100), Some(128 * MI)),
        reading(3, "no_metrics_server", None, None),
    ] {
        assert!(app.store.record_preview_usage(&r).await.unwrap());
    }
    let home = get(&app, "/ui", Some(&id)).await;
    let row = |n: u32| {
        let start = home.body.find(&format!(">org/app#{n}</a>")).expect("row");
        let end = home.body[start..].find("</tr>").unwrap() + start;
        home.body[start..end].to_owned()
    };
    let hot = row(1);
    assert!(hot.contains("class=\"warn\""), "85% CPU is flagged: {hot}");
    assert!(hot.contains("CPU 850m / 1 (85%)"), "{hot}");
    assert!(hot.contains("memory 100Mi / 1.0Gi (9.8%)"), "{hot}");
    let calm = row(2);
    assert!(!calm.contains("class=\"warn\""), "{calm}");
    assert!(calm.contains("CPU 100m / 1 (10%)"), "{calm}");
    assert!(row(3).contains(">no metrics<"), "{}", row(3));
    assert!(row(4).contains("not measured yet"), "{}", row(4));
    let page = get(&app, "/ui/preview?key=org%2Fapp%231", Some(&id)).await;
    assert!(
        page.body.contains("<dd class=\"warn\">CPU 850m"),
        "{}",
        page.body
    );
}

/// A NUL character, which Postgres text cannot hold, in a page's query or path is a 400 page
/// naming what holds it, as on the JSON API; never a server error.
#[tokio::test]
async fn ui_refuses_a_nul_in_a_query_or_path() {
    let app = spawn_app().await;
    let c = sign_in(&app, ALL).await;
    for (path, field) in [
        ("/ui/jobs?preview=a%00b", "preview"),
        ("/ui/jobs?kind=build&state=x%00", "state"),
        ("/ui?status=ready&repository=org%2Fa%00", "repository"),
        ("/ui/preview?key=org%2Fapp%231%00", "key"),
        ("/ui/jobs/0193%00", "path"),
    ] {
        let p = get(&app, path, Some(&c)).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{path}: {}", p.body);
        assert!(p.body.contains(field), "{path}: {}", p.body);
    }
}

/// The sign-in answer to `form` from this client, with its status, `Retry-After` and body.
async fn try_sign_in(app: &TestApp, form: &str, extra: &[(&str, &str)]) -> Page {
    post(app, "/ui/login", None, form, extra).await
}

#[tokio::test]
async fn ui_failed_sign_ins_are_limited_per_client_and_successes_are_not_counted() {
    let app = spawn_app_configured(&slipway_shared::testing::redis_url(), |c| {
        c.ui.ui_login_failures_per_client = 3;
        c.ui.ui_login_failures_global = 1000;
    })
    .await;
    // Successful sign-ins take nothing from the budget.
    for _ in 0..5 {
        sign_in(&app, READ).await;
    }
    // Three failures (whatever X-Forwarded-For claims: the TCP peer is the client), a success
    // in between.
    for i in 0..3 {
        let forwarded = format!("203.0.113.{i}");
        let p = try_sign_in(
            &app,
            "token=not-a-token-0123456789",
            &[
                ("x-forwarded-for", &forwarded),
                ("forwarded", "for=198.51.100.7"),
            ],
        )
        .await;
        assert_eq!(
            p.status,
            StatusCode::UNAUTHORIZED,
            "failure {i}: {}",
            p.body
        );
        assert!(p.headers.get("retry-after").is_none());
        if i == 1 {
            sign_in(&app, READ).await;
        }
    }
    // The fourth is refused before the token is checked: wrong and right tokens alike.
    for form in ["token=not-a-token-0123456789", &format!("token={READ}")] {
        let p = try_sign_in(&app, form, &[("x-forwarded-for", "192.0.2.99")]).await;
        assert_eq!(
            p.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{form}: {}",
            p.body
        );
        // Three a minute: the next try in 20 seconds (19.x rounded up).
        let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry), "Retry-After {retry}");
        assert!(
            p.body.contains("Too many failed sign-ins"),
            "the page says so: {}",
            p.body
        );
        assert!(p.body.contains("id=\"login-error\""));
        assert!(
            p.headers.get(SET_COOKIE).is_none(),
            "no session while limited"
        );
        assert_security_headers(&p);
    }
    // The JSON API's bearer tokens are not affected.
    let (status, _) = app.call(Method::GET, "/v1/queues", Some(READ), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn ui_failed_sign_ins_are_limited_for_all_clients_together() {
    let app = spawn_app_configured(&slipway_shared::testing::redis_url(), |c| {
        c.ui.ui_login_failures_per_client = 1000;
        c.ui.ui_login_failures_global = 2;
    })
    .await;
    for _ in 0..2 {
        let p = try_sign_in(&app, "token=not-a-token-0123456789", &[]).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    }
    let p = try_sign_in(&app, "token=not-a-token-0123456789", &[]).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.body);
    let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    // Refused sign-ins that are not guesses (empty, cross-site) are answered as before.
    let p = try_sign_in(&app, "token=", &[]).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn ui_sign_in_limit_believes_x_forwarded_for_from_trusted_proxies_only() {
    // This test's client (127.0.0.1) plays a trusted ingress controller.
    let app = spawn_app_configured(&slipway_shared::testing::redis_url(), |c| {
        c.ui.ui_login_failures_per_client = 2;
        c.ui.ui_login_failures_global = 1000;
        c.ui.ui_trusted_proxies = "127.0.0.0/8".parse().unwrap();
    })
    .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..2 {
        let p = try_sign_in(&app, "token=not-a-token-0123456789", &from("203.0.113.1")).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    }
    let p = try_sign_in(&app, "token=not-a-token-0123456789", &from("203.0.113.1")).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.body);
    // Another browser behind the same proxy is its own client.
    let p = try_sign_in(&app, "token=not-a-token-0123456789", &from("203.0.113.2")).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    let p = try_sign_in(&app, &format!("token={READ}"), &from("203.0.113.2")).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    // A made-up hop left of the real client changes nothing: the limited client stays limited.
    let p = try_sign_in(
        &app,
        "token=not-a-token-0123456789",
        &from("198.51.100.9, 203.0.113.1"),
    )
    .await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.body);
}
