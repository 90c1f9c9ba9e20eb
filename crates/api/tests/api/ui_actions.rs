//! The dashboard's actions over real HTTP against real Postgres and Redis: each action's effect
//! in the store and the queue, the 303 back to a page showing it, scope and CSRF refusals that
//! change nothing, the typed delete confirmation, bulk counts and the cap, the searches, and the
//! repository edit form's validation.

use crate::helpers::*;
use crate::ui::{Page, csrf, get, post, sign_in, urlencode};
use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::json;
use slipway_core::{ErrorClass, JobKind, JobState};
use slipway_shared::store::{AttemptOutcome, JobFilter, NewJob, PreviewUpsert};

/// A token with `read` and `enqueue` but not `admin`.
const DEPLOYER: &str = "deployer-token-0123456789";

async fn app_with_deployer() -> TestApp {
    spawn_app_configured(&slipway_shared::testing::redis_url(), |c| {
        c.api_tokens = format!("{},deployer:read+enqueue:{DEPLOYER}", tokens());
    })
    .await
}

const IMAGE: &str = "registry.example/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A live preview as the launch worker leaves it: recorded from a launch job, with an image.
async fn live_preview(app: &TestApp, key: &str) -> uuid::Uuid {
    let (s, job) = app
        .post(
            "/v1/launches",
            &json!({"preview": key, "image": "org/app:1", "port": 8080, "ttl_hours": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    app.store
        .upsert_preview(&PreviewUpsert {
            key: key.into(),
            namespace: format!("slipway-pv-{}", key.replace(['/', '#'], "-")),
            url: Some("https://pr.example".into()),
            image: Some(IMAGE.into()),
            commit_sha: Some(SHA.into()),
            status: "ready".into(),
            pods: vec!["app-1".into()],
            expires_at: Some(Utc::now() + chrono::Duration::hours(2)),
            last_job_id: Some(id),
        })
        .await
        .unwrap()
        .expect("written");
    id
}

async fn preview_jobs(app: &TestApp, key: &str) -> Vec<slipway_shared::store::JobRecord> {
    app.store
        .list_jobs(
            &JobFilter {
                preview: Some(key.into()),
                ..JobFilter::default()
            },
            None,
            100,
        )
        .await
        .unwrap()
        .items
}

fn preview_path(key: &str) -> String {
    format!("/ui/preview?key={}", urlencode(key))
}

fn location(p: &Page) -> String {
    p.headers
        .get(LOCATION)
        .unwrap_or_else(|| panic!("a redirect, got {}: {}", p.status, p.body))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Redeploy relaunches the recorded image with the last launch's options and supersedes the
/// unfinished launch; extend moves the expiry within its bounds; delete needs the key typed.
#[tokio::test]
async fn ui_preview_actions_redeploy_extend_and_delete_with_confirmation() {
    let app = app_with_deployer().await;
    let key = "org/app#7";
    let first = live_preview(&app, key).await;
    let c = sign_in(&app, DEPLOYER).await;
    let page = get(&app, &preview_path(key), Some(&c)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for action in ["redeploy", "extend", "delete"] {
        assert!(
            page.body.contains(&format!("data-action=\"{action}\"")),
            "{action}: {}",
            page.body
        );
    }
    assert!(page.body.contains("id=\"delete-preview\""));
    let token = csrf(&page.body);
    let k = urlencode(key);

    // Redeploy: a new launch of the recorded image, same options; the queued one superseded.
    let p = post(
        &app,
        "/ui/preview/redeploy",
        Some(&c),
        &format!("csrf={token}&key={k}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(location(&p), format!("{}&done=redeploy", preview_path(key)));
    let jobs = preview_jobs(&app, key).await;
    assert_eq!(jobs.len(), 2);
    let (new, old) = (&jobs[0], &jobs[1]);
    assert_eq!(old.id, first);
    assert_eq!(old.state, JobState::Superseded);
    assert_eq!((new.kind, new.state), (JobKind::Launch, JobState::Queued));
    let payload = new.payload.to_string();
    assert!(
        payload.contains("sha256:0123456789abcdef"),
        "the recorded image: {payload}"
    );
    assert_eq!(new.payload["options"]["port"], 8080, "{payload}");
    assert_eq!(new.payload["options"]["ttl_hours"], 5, "{payload}");
    assert_eq!(new.commit_sha.as_deref(), Some(SHA));
    let queued = app
        .queue
        .get(JobKind::Launch, &new.id.to_string())
        .await
        .unwrap();
    assert!(queued.is_some(), "pushed to Redis");
    let after = get(&app, &location(&p), Some(&c)).await;
    assert!(after.body.contains("id=\"notice\""), "{}", after.body);
    assert!(
        after.body.contains(&new.id.to_string()[..8]),
        "the new job is shown"
    );

    // Extend: +4h from the 2h left; a value off the menu is refused naming the field.
    let p = post(
        &app,
        "/ui/preview/extend",
        Some(&c),
        &format!("csrf={token}&key={k}&hours=4"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let left = |r: &slipway_shared::store::PreviewRecord| {
        (r.expires_at.unwrap() - Utc::now()).num_minutes()
    };
    let rec = app.store.get_preview(key).await.unwrap().unwrap();
    assert!((355..=360).contains(&left(&rec)), "6h left: {}", left(&rec));
    for (hours, field) in [("99", "hours"), ("0", "hours"), ("x", "hours")] {
        let p = post(
            &app,
            "/ui/preview/extend",
            Some(&c),
            &format!("csrf={token}&key={k}&hours={hours}"),
            &[],
        )
        .await;
        assert!(p.status.is_client_error(), "{hours}: {}", p.status);
        assert!(p.body.contains(field), "{}", p.body);
    }
    assert_eq!(
        app.store
            .get_preview(key)
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        rec.expires_at,
        "refused extensions change nothing"
    );

    // Delete: a wrong or empty confirmation is a 400 and changes nothing.
    for confirm in ["", "org/app#8", "org/app%237%20"] {
        let p = post(
            &app,
            "/ui/preview/delete",
            Some(&c),
            &format!("csrf={token}&key={k}&confirm={confirm}"),
            &[],
        )
        .await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{confirm:?}: {}", p.body);
        assert!(p.body.contains("confirm"), "{}", p.body);
    }
    assert_eq!(
        preview_jobs(&app, key).await.len(),
        2,
        "no cleanup enqueued"
    );
    let p = post(
        &app,
        "/ui/preview/delete",
        Some(&c),
        &format!("csrf={token}&key={k}&confirm={k}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(location(&p), format!("{}&done=delete", preview_path(key)));
    let jobs = preview_jobs(&app, key).await;
    assert_eq!(jobs[0].kind, JobKind::Cleanup);
    assert_eq!(
        jobs[1].state,
        JobState::Superseded,
        "the redeploy stopped by the teardown"
    );
    let after = get(&app, &location(&p), Some(&c)).await;
    assert!(
        after.body.contains(&jobs[0].id.to_string()[..8]),
        "the cleanup job is shown"
    );

    // A torn-down preview and one without an image cannot be redeployed: a 409 page.
    app.store.mark_preview_deleted(key).await.unwrap();
    app.store
        .upsert_preview(&PreviewUpsert {
            key: "org/app#9".into(),
            namespace: "ns-9".into(),
            status: "deploying".into(),
            ..PreviewUpsert::default()
        })
        .await
        .unwrap();
    for (key, why) in [(key, "torn down"), ("org/app#9", "no image")] {
        let before = preview_jobs(&app, key).await.len();
        let p = post(
            &app,
            "/ui/preview/redeploy",
            Some(&c),
            &format!("csrf={token}&key={}", urlencode(key)),
            &[],
        )
        .await;
        assert_eq!(p.status, StatusCode::CONFLICT, "{key}: {}", p.body);
        assert!(p.body.contains(why), "{key}: {}", p.body);
        assert_eq!(preview_jobs(&app, key).await.len(), before);
    }
    let p = post(
        &app,
        "/ui/preview/extend",
        Some(&c),
        &format!("csrf={token}&key={k}&hours=1"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    // The deleted preview's page offers no actions.
    let page = get(&app, &preview_path(key), Some(&c)).await;
    assert!(!page.body.contains("data-action"), "{}", page.body);
    // A NUL in a field (Postgres text cannot hold one) is a 400 naming it, never a 500.
    let p = post(
        &app,
        "/ui/preview/extend",
        Some(&c),
        &format!("csrf={token}&key=org%2Fapp%239%00&hours=1"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(p.body.contains("key"), "{}", p.body);
}

/// The JSON API's extension: enqueue scope, bounded hours naming the field, 409 once deleted.
#[tokio::test]
async fn extend_on_the_json_api_moves_the_expiry() {
    let app = spawn_app().await;
    live_preview(&app, "org/app#3").await;
    let path = "/v1/previews/org%2Fapp%233/extend";
    let (s, v) = app
        .call(
            reqwest::Method::POST,
            path,
            Some(ENQUEUE),
            Some(&json!({"hours": 24})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let at: chrono::DateTime<Utc> = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        ((at - Utc::now()).num_minutes() - 26 * 60).abs() <= 1,
        "{v}"
    );
    let (s, v) = app
        .call(
            reqwest::Method::POST,
            path,
            Some(ENQUEUE),
            Some(&json!({"hours": 25})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["field"], "hours", "{v}");
    let (s, _) = app
        .call(
            reqwest::Method::POST,
            path,
            Some(READ),
            Some(&json!({"hours": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.store.mark_preview_deleted("org/app#3").await.unwrap();
    let (s, v) = app.post(path, &json!({"hours": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _) = app
        .post("/v1/previews/org%2Fnone%231/extend", &json!({"hours": 1}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// `slipway extend` calls it.
#[tokio::test]
async fn the_cli_extends_a_preview() {
    use clap::Parser;
    let app = spawn_app().await;
    live_preview(&app, "org/app#4").await;
    let run = |args: &[&str]| {
        let mut argv = vec!["slipway", "--api-url", &app.base, "--token", ENQUEUE];
        argv.extend_from_slice(args);
        let cli = slipway_cli::Cli::try_parse_from(argv).expect("valid command line");
        async move {
            let mut out = Vec::new();
            slipway_cli::run(cli, &mut out)
                .await
                .map(|()| String::from_utf8(out).unwrap())
        }
    };
    let out = run(&["extend", "org/app#4", "--hours", "24"])
        .await
        .unwrap();
    assert!(out.starts_with("preview org/app#4: expires "), "{out}");
    let rec = app.store.get_preview("org/app#4").await.unwrap().unwrap();
    let left = (rec.expires_at.unwrap() - Utc::now()).num_minutes();
    assert!(
        (25 * 60..=26 * 60).contains(&left),
        "2h + 24h: {left} minutes"
    );
    let err = run(&["extend", "org/app#4", "--hours", "30"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hours"), "{err}");
}

/// Every action route, with a form that would act if allowed.
fn action_routes(job: uuid::Uuid, key: &str) -> Vec<(String, String)> {
    let k = urlencode(key);
    vec![
        ("/ui/preview/redeploy".into(), format!("key={k}")),
        ("/ui/preview/extend".into(), format!("key={k}&hours=4")),
        ("/ui/preview/delete".into(), format!("key={k}&confirm={k}")),
        (format!("/ui/jobs/{job}/cancel"), String::new()),
        (format!("/ui/jobs/{job}/retry"), String::new()),
        (
            "/ui/jobs/bulk".into(),
            format!("op=cancel&target=selected&ids={job}&confirm=1"),
        ),
        ("/ui/queues/build/pause".into(), String::new()),
        (
            "/ui/repositories/org/app".into(),
            "mode=label&label=preview".into(),
        ),
    ]
}

/// A read-only session sees no action forms and its forged POSTs, CSRF token and all, are 403
/// and change nothing; an enqueue session sees only the preview's; a POST without the CSRF
/// token, or from another origin, is 403 whatever the scopes.
#[tokio::test]
async fn ui_actions_are_hidden_and_refused_without_their_scope_or_csrf_token() {
    let app = app_with_deployer().await;
    let key = "org/app#5";
    let launch = live_preview(&app, key).await;
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            "/v1/repositories/org/app",
            Some(ADMIN),
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let failed = failed_build(&app, "boom").await;
    let pages = [
        "/ui".to_owned(),
        preview_path(key),
        "/ui/jobs".into(),
        format!("/ui/jobs/{launch}"),
        format!("/ui/jobs/{failed}"),
        "/ui/queues".into(),
        "/ui/repositories".into(),
    ];
    let snapshot = || async {
        (
            app.store
                .list_jobs(&JobFilter::default(), None, 1000)
                .await
                .unwrap()
                .items
                .iter()
                .map(|j| (j.id, j.state))
                .collect::<Vec<_>>(),
            app.store.get_preview(key).await.unwrap(),
            app.queue.is_paused(JobKind::Build).await.unwrap(),
            app.store.get_repository("org", "app").await.unwrap(),
        )
    };
    let before = snapshot().await;

    let reader = sign_in(&app, READ).await;
    let mut token = String::new();
    for path in &pages {
        let p = get(&app, path, Some(&reader)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        assert!(!p.body.contains("data-action"), "{path}: {}", p.body);
        assert!(!p.body.contains("type=\"checkbox\""), "{path}");
        token = csrf(&p.body);
    }
    for (route, form) in action_routes(launch, key) {
        let p = post(
            &app,
            &route,
            Some(&reader),
            &format!("csrf={token}&{form}"),
            &[],
        )
        .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{route}: {}", p.body);
        assert!(p.body.contains("scope"), "{route}: {}", p.body);
    }
    assert_eq!(snapshot().await, before, "forged posts changed something");

    // read+enqueue: the preview's actions, none of the admin ones (and those refused).
    let deployer = sign_in(&app, DEPLOYER).await;
    let p = get(&app, &preview_path(key), Some(&deployer)).await;
    assert!(p.body.contains("data-action=\"delete\""), "{}", p.body);
    let dtoken = csrf(&p.body);
    for path in &pages[2..] {
        let p = get(&app, path, Some(&deployer)).await;
        assert!(!p.body.contains("data-action"), "{path}: {}", p.body);
    }
    for (route, form) in action_routes(launch, key).into_iter().skip(3) {
        let p = post(
            &app,
            &route,
            Some(&deployer),
            &format!("csrf={dtoken}&{form}"),
            &[],
        )
        .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{route}: {}", p.body);
    }
    assert_eq!(snapshot().await, before);

    // Every scope, but no token, a wrong one, or another origin: refused.
    let root = sign_in(&app, ALL).await;
    let p = get(&app, &format!("/ui/jobs/{failed}"), Some(&root)).await;
    assert!(p.body.contains("data-action=\"retry\""), "{}", p.body);
    let rtoken = csrf(&p.body);
    for (route, form) in action_routes(launch, key) {
        for (body, origin) in [
            (form.clone(), None),
            (format!("csrf={}&{form}", "0".repeat(64)), None),
            (format!("csrf={dtoken}&{form}"), None),
            (
                format!("csrf={rtoken}&{form}"),
                Some("https://evil.example"),
            ),
        ] {
            let extra: Vec<(&str, &str)> = origin.iter().map(|o| ("origin", *o)).collect();
            let p = post(&app, &route, Some(&root), &body, &extra).await;
            assert_eq!(
                p.status,
                StatusCode::FORBIDDEN,
                "{route} {body}: {}",
                p.body
            );
            assert!(p.body.contains("CSRF"), "{route}: {}", p.body);
        }
    }
    assert_eq!(snapshot().await, before);
}

/// A build that failed with `error`.
async fn failed_build(app: &TestApp, error: &str) -> uuid::Uuid {
    let job = app
        .store
        .insert_job(NewJob::new(JobKind::Build, json!({})))
        .await
        .unwrap()
        .job;
    app.store
        .start_attempt(job.id, 1, "w")
        .await
        .unwrap()
        .unwrap();
    let outcome = AttemptOutcome::Failed {
        error: error.into(),
        class: ErrorClass::Permanent,
    };
    assert!(app.store.finish_attempt(job.id, 1, outcome).await.unwrap());
    job.id
}

/// Retry and cancel on the job page; pause and resume on the queues page.
#[tokio::test]
async fn ui_job_retry_and_cancel_and_queue_pause_and_resume() {
    let app = spawn_app().await;
    let c = sign_in(&app, ALL).await;
    let failed = failed_build(&app, "Dockerfile step 3 failed").await;
    let page = get(&app, &format!("/ui/jobs/{failed}"), Some(&c)).await;
    assert!(page.body.contains("data-action=\"retry\""), "{}", page.body);
    assert!(
        !page.body.contains("data-action=\"cancel\""),
        "a failed job cannot be cancelled"
    );
    let token = csrf(&page.body);
    let p = post(
        &app,
        &format!("/ui/jobs/{failed}/retry"),
        Some(&c),
        &format!("csrf={token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(location(&p), format!("/ui/jobs/{failed}?done=retry"));
    let row = app.store.get_job(failed).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued);
    assert!(
        app.queue
            .get(JobKind::Build, &failed.to_string())
            .await
            .unwrap()
            .is_some()
    );
    let page = get(&app, &location(&p), Some(&c)).await;
    assert!(page.body.contains("Job queued again."), "{}", page.body);
    assert!(
        page.body.contains("data-action=\"cancel\""),
        "{}",
        page.body
    );

    let p = post(
        &app,
        &format!("/ui/jobs/{failed}/cancel"),
        Some(&c),
        &format!("csrf={token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let row = app.store.get_job(failed).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.error.as_deref(), Some("cancelled by root"));
    // Cancelling it again: a 409 page saying why.
    let p = post(
        &app,
        &format!("/ui/jobs/{failed}/cancel"),
        Some(&c),
        &format!("csrf={token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(p.body.contains("already ended cancelled"), "{}", p.body);
    let p = post(
        &app,
        &format!("/ui/jobs/{}/retry", uuid::Uuid::now_v7()),
        Some(&c),
        &format!("csrf={token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);

    let page = get(&app, "/ui/queues", Some(&c)).await;
    assert!(page.body.contains("data-action=\"pause\""), "{}", page.body);
    let p = post(
        &app,
        "/ui/queues/build/pause",
        Some(&c),
        &format!("csrf={token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(location(&p), "/ui/queues?done=pause");
    assert!(app.queue.is_paused(JobKind::Build).await.unwrap());
    let page = get(&app, "/ui/queues", Some(&c)).await;
    assert!(page.body.contains("id=\"resume-build\""), "{}", page.body);
    let p = post(
        &app,
        "/ui/queues/build/resume",
        Some(&c),
        &format!("csrf={token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(!app.queue.is_paused(JobKind::Build).await.unwrap());
    let p = post(
        &app,
        "/ui/queues/nope/pause",
        Some(&c),
        &format!("csrf={token}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND, "{}", p.body);
}

fn bulk_count(body: &str) -> usize {
    let at = body.find("data-count=\"").expect("a count") + 12;
    body[at..].split('"').next().unwrap().parse().unwrap()
}

/// Bulk actions show the number first, act on at most that many, skip jobs they do not apply
/// to, and touch at most 1000 jobs matching a filter.
#[tokio::test]
async fn ui_bulk_actions_count_first_and_are_capped() {
    let app = spawn_app().await;
    let c = sign_in(&app, ALL).await;
    let page = get(&app, "/ui/jobs", Some(&c)).await;
    assert!(page.body.contains("data-action=\"bulk\""), "{}", page.body);
    let token = csrf(&page.body);
    let a = failed_build(&app, "ImagePullBackOff: nope").await;
    let b = failed_build(&app, "OOMKilled").await;
    let (_, q) = app.post("/v1/builds", &build_body()).await;
    let queued: uuid::Uuid = q["id"].as_str().unwrap().parse().unwrap();
    let page = get(&app, "/ui/jobs", Some(&c)).await;
    assert_eq!(
        page.body.matches("type=\"checkbox\" name=\"ids\"").count(),
        3
    );

    // Selected: two failed and one queued; retry applies to the two.
    let sel = format!("csrf={token}&op=retry&target=selected&ids={a}&ids={b}&ids={queued}");
    let p = post(&app, "/ui/jobs/bulk", Some(&c), &sel, &[]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(bulk_count(&p.body), 2, "{}", p.body);
    assert!(
        p.body.contains("1 selected job is not in a state"),
        "{}",
        p.body
    );
    assert_eq!(
        app.store.get_job(a).await.unwrap().unwrap().state,
        JobState::Failed,
        "nothing yet"
    );
    // Confirmed for one: only one is retried (never more than agreed to).
    let p = post(
        &app,
        "/ui/jobs/bulk",
        Some(&c),
        &format!("{sel}&confirm=1"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(
        location(&p).contains("done=bulk-retry&n=1&skipped=1"),
        "{}",
        location(&p)
    );
    let sa = app.store.get_job(a).await.unwrap().unwrap().state;
    let sb = app.store.get_job(b).await.unwrap().unwrap().state;
    assert_eq!(
        [sa, sb].iter().filter(|s| **s == JobState::Queued).count(),
        1,
        "{sa} {sb}"
    );
    let page = get(&app, &location(&p), Some(&c)).await;
    assert!(
        page.body.contains("Retried 1 job; 1 job skipped"),
        "{}",
        page.body
    );

    // By filter: error text selects the one still failed.
    let still_failed = if sa == JobState::Failed { a } else { b };
    let err = if still_failed == a {
        "imagepull"
    } else {
        "oomkill"
    };
    let f = format!("csrf={token}&op=retry&target=filter&error={err}");
    let p = post(&app, "/ui/jobs/bulk", Some(&c), &f, &[]).await;
    assert_eq!(bulk_count(&p.body), 1, "{}", p.body);
    assert!(
        p.body.contains(&format!("name=\"error\" value=\"{err}\"")),
        "the filter is carried"
    );
    let p = post(
        &app,
        "/ui/jobs/bulk",
        Some(&c),
        &format!("{f}&confirm=1"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(
        location(&p).starts_with(&format!("/ui/jobs?error={err}&done=bulk-retry&n=1")),
        "{}",
        location(&p)
    );
    assert_eq!(
        app.store
            .get_job(still_failed)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Queued
    );

    // The cap: 1003 queued jobs match; one action touches the newest 1000.
    for _ in 0..1000 {
        app.store
            .insert_job(NewJob::new(JobKind::Cleanup, json!({"preview": "org/x#1"})))
            .await
            .unwrap();
    }
    let f = format!("csrf={token}&op=cancel&target=filter&state=queued");
    let p = post(&app, "/ui/jobs/bulk", Some(&c), &f, &[]).await;
    assert_eq!(bulk_count(&p.body), 1000, "{}", p.body);
    assert!(
        p.body.contains("one action touches at most 1000"),
        "{}",
        p.body
    );
    let p = post(
        &app,
        "/ui/jobs/bulk",
        Some(&c),
        &format!("{f}&confirm=1000"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let left = app
        .store
        .list_jobs(
            &JobFilter {
                state: Some(JobState::Queued),
                ..JobFilter::default()
            },
            None,
            1000,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(left.len(), 3, "1003 queued, 1000 cancelled");

    // Refusals name the field and change nothing.
    for (form, field) in [
        (
            format!("csrf={token}&op=delete&target=selected&ids={a}"),
            "op",
        ),
        (format!("csrf={token}&op=retry&target=selected"), "ids"),
        (
            format!("csrf={token}&op=retry&target=selected&ids=nope"),
            "ids",
        ),
        (format!("csrf={token}&op=retry&target=all"), "target"),
        (
            format!("csrf={token}&op=retry&target=filter&kind=bogus"),
            "kind",
        ),
        (
            format!("csrf={token}&op=retry&target=filter&confirm=5000"),
            "confirm",
        ),
    ] {
        let p = post(&app, "/ui/jobs/bulk", Some(&c), &form, &[]).await;
        assert!(p.status.is_client_error(), "{form}: {}", p.status);
        assert!(p.body.contains(field), "{form}: {}", p.body);
    }
}

/// Find by id, error text and free text on the jobs page (and `/v1/jobs?error=`); key search
/// on the previews page (and `/v1/previews?q=`).
#[tokio::test]
async fn ui_searches_jobs_by_id_and_error_and_previews_by_key() {
    let app = spawn_app().await;
    let c = sign_in(&app, READ).await;
    let pull = failed_build(&app, "Back-off pulling image: ErrImagePull").await;
    let oom = failed_build(&app, "container OOMKilled").await;
    let p = get(&app, &format!("/ui/jobs?q={oom}"), Some(&c)).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&p), format!("/ui/jobs/{oom}"));
    let p = get(&app, "/ui/jobs?error=errimagepull", Some(&c)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body.contains(&pull.to_string()) && !p.body.contains(&oom.to_string()),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("value=\"errimagepull\""),
        "the field keeps its value"
    );
    let p = get(&app, "/ui/jobs?error=50%25", Some(&c)).await;
    assert!(p.body.contains("No jobs match."), "% is matched literally");
    let (s, v) = app.get("/v1/jobs?error=OOMKILLED").await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [oom.to_string()]);
    let (s, v) = app
        .get(&format!("/v1/jobs?error={}", "x".repeat(1025)))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["field"], "error");

    for key in ["org/app#41", "org/app#42", "org/lib#4"] {
        app.store
            .upsert_preview(&PreviewUpsert {
                key: key.into(),
                namespace: key.replace(['/', '#'], "-"),
                status: "ready".into(),
                ..PreviewUpsert::default()
            })
            .await
            .unwrap();
    }
    let p = get(&app, "/ui?q=APP%234", Some(&c)).await;
    assert_eq!(
        p.body.matches("class=\"preview-link\"").count(),
        2,
        "{}",
        p.body
    );
    let (_, v) = app.get("/v1/previews?q=lib").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["items"][0]["key"], "org/lib#4");
}

/// The repositories page lists the settings; an admin's edit goes through the `PUT`
/// validation, and a refusal names the field and changes nothing.
#[tokio::test]
async fn ui_repositories_page_lists_and_edits_settings() {
    let app = spawn_app().await;
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            "/v1/repositories/Org/App",
            Some(ADMIN),
            Some(&json!({"launch": {"port": 3000}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let reader = sign_in(&app, READ).await;
    let p = get(&app, "/ui/repositories", Some(&reader)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("org/app"), "{}", p.body);
    assert!(p.body.contains("/ui?repository=org%2Fapp"), "{}", p.body);
    assert!(!p.body.contains("data-action"));
    let home = get(&app, "/ui", Some(&reader)).await;
    assert!(
        home.body.contains("href=\"/ui/repositories\""),
        "linked in the nav"
    );

    let c = sign_in(&app, ALL).await;
    let p = get(&app, "/ui/repositories", Some(&c)).await;
    assert!(
        p.body.contains("data-action=\"edit-repository\""),
        "{}",
        p.body
    );
    let token = csrf(&p.body);
    let before = app
        .store
        .get_repository("org", "app")
        .await
        .unwrap()
        .unwrap();
    for (form, status, field) in [
        (
            "mode=label&label=",
            StatusCode::UNPROCESSABLE_ENTITY,
            "label",
        ),
        ("mode=sometimes", StatusCode::UNPROCESSABLE_ENTITY, "mode"),
        ("build=%7Bnot+json", StatusCode::BAD_REQUEST, "build"),
        (
            "launch=%7B%22port%22%3A0%7D",
            StatusCode::UNPROCESSABLE_ENTITY,
            "port",
        ),
        (
            "source=buildpacks",
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.type",
        ),
    ] {
        let p = post(
            &app,
            "/ui/repositories/org/app",
            Some(&c),
            &format!("csrf={token}&{form}"),
            &[],
        )
        .await;
        assert_eq!(p.status, status, "{form}: {}", p.body);
        assert!(p.body.contains(field), "{form}: {}", p.body);
    }
    assert_eq!(
        app.store
            .get_repository("org", "app")
            .await
            .unwrap()
            .unwrap(),
        before
    );
    assert!(
        p.body.contains("<option value=\"dockerfile\" selected>"),
        "the source select shows the current source: {}",
        p.body
    );
    let form = format!(
        "csrf={token}&enabled=on&mode=label&label=preview&source=auto&launch={}",
        urlencode("{\"port\": 8080}")
    );
    let p = post(&app, "/ui/repositories/org/app", Some(&c), &form, &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(location(&p), "/ui/repositories?done=repository");
    let after = app
        .store
        .get_repository("org", "app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.mode.as_str(), after.label.as_deref()),
        ("label", Some("preview"))
    );
    assert!(after.enabled && !after.build_forks);
    assert_eq!(after.launch_options["port"], 8080);
    assert_eq!(after.source, Some(json!({"type": "auto"})));
    let p = get(&app, "/ui/repositories", Some(&c)).await;
    assert!(
        p.body.contains("<option value=\"auto\" selected>"),
        "{}",
        p.body
    );
    // compose and helm take their settings as JSON beside the select; a wrong one is named.
    let form = |settings: &str| {
        format!(
            "csrf={token}&enabled=on&mode=automatic&source=helm&source_settings={}",
            urlencode(settings)
        )
    };
    let p = post(
        &app,
        "/ui/repositories/org/app",
        Some(&c),
        &form("{\"chart\": \"deploy/chart\"}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("source.service"), "{}", p.body);
    let p = post(
        &app,
        "/ui/repositories/org/app",
        Some(&c),
        &form("{\"chart\": \"deploy/chart\", \"service\": \"web\"}"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let after = app
        .store
        .get_repository("org", "app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.source,
        Some(json!({"type": "helm", "chart": "deploy/chart", "service": "web"}))
    );
    let p = get(&app, "/ui/repositories", Some(&c)).await;
    assert!(
        p.body.contains("<option value=\"helm\" selected>"),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains("{&#34;chart&#34;:&#34;deploy/chart&#34;,&#34;service&#34;:&#34;web&#34;}"),
        "the settings are the form's starting text: {}",
        p.body
    );
}
