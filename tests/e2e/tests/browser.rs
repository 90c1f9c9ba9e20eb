//! The dashboard in a real browser: the whole stack ([`Stack`]: the API, the workers, the
//! Kubernetes simulator with metrics-server, Postgres and Redis) with previews seeded through
//! the JSON API and built and launched by the workers, then the Playwright tests of
//! `tests/e2e/browser/*.test.mjs` run by Node's test runner (`node --test`) against it, driving
//! Debian's headless Chromium through a pinned `playwright-core` (docs/dashboard.md, "Tests").
//!
//! Without Node 22, playwright-core (both in `.tools/`, from `scripts/ensure-tools.sh`) or
//! `/usr/bin/chromium` the test is skipped, unless `SLIPWAY_REQUIRE_CHROMIUM=1` (as `make
//! test` sets it), when it fails. Screenshots go to `SLIPWAY_UI_SCREENSHOTS`, by default
//! `target/ui-screenshots/`.

use kube_sim::Delays;
use kube_sim::metrics::MetricsServer;
use serde_json::{Value, json};
use slipway_e2e::{Options, Stack, TOKEN};
use slipway_shared::testing::eventually;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Signs in with `read` only.
const VIEWER: &str = "e2e-viewer-token-0123456789";
/// `read` and `enqueue`: may redeploy and delete previews, not operate queues.
const DEPLOYER: &str = "e2e-deployer-token-0123456789";
const LONG: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Node 22 and playwright-core as `scripts/ensure-tools.sh` installs them.
fn tools() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os("SLIPWAY_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools"));
    (
        dir.join("node22/node_modules/.bin/node"),
        dir.join("playwright-core/node_modules/playwright-core"),
    )
}

async fn api(stack: &Stack, method: reqwest::Method, path: &str, body: Value) -> Value {
    let resp = stack
        .http
        .request(method, stack.url(path))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the API answers");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A pull request's pipeline, as the GitHub webhook would enqueue it.
async fn pipeline(stack: &Stack, key: &str, commit: &str) -> Value {
    let (repo, _) = key.split_once('#').unwrap();
    api(
        stack,
        reqwest::Method::POST,
        "/v1/pipelines",
        json!({
            "preview": key,
            "repository": format!("https://github.com/{repo}.git"),
            "commit": commit,
            "launch": {"port": 8080, "ttl_hours": 72},
        }),
    )
    .await
}

async fn preview_status(stack: &Stack, key: &str) -> Option<String> {
    let path = format!(
        "/v1/previews/{}",
        key.replace('/', "%2F").replace('#', "%23")
    );
    stack.get_json(&path).await["status"]
        .as_str()
        .map(str::to_owned)
}

async fn wait_status(stack: &Stack, key: &str, want: &str) {
    let waited = tokio::time::timeout(
        LONG,
        eventually(LONG, &format!("{key} to be {want}"), || async {
            (preview_status(stack, key).await.as_deref() == Some(want)).then_some(())
        }),
    )
    .await;
    if waited.is_err() {
        panic!(
            "{key} is {:?}, not {want}",
            preview_status(stack, key).await
        );
    }
}

/// A team's previews in several states, with resource use: what the previews page shows (and
/// the README's screenshot).
async fn seed(stack: &Stack) {
    let ready = [
        (
            "acme/storefront#412",
            "3f2a9c1d7e4b5a60c8d9e0f1a2b3c4d5e6f7a8b9",
            (180, 310),
        ),
        (
            "acme/storefront#415",
            "9b8a7c6d5e4f30211203a4b5c6d7e8f90a1b2c3d",
            (3400, 7100),
        ),
        (
            "acme/checkout-api#27",
            "c0ffee00d15ea5e0ba5eba11deadbeef00c0ffee",
            (95, 180),
        ),
        (
            "acme/docs#9",
            "1d2c3b4a59687766554433221100ffeeddccbbaa",
            (12, 48),
        ),
    ];
    for (key, commit, _) in &ready {
        pipeline(stack, key, commit).await;
    }
    // A launch whose app keeps crashing: the preview fails (its image is the build's, named
    // after the repository).
    stack.sim.push_override(kube_sim::Override {
        image_contains: "billing".into(),
        count: 100,
        script: kube_sim::PodScript::outcome(kube_sim::Outcome::CrashLoopBackOff)
            .log("panic: missing STRIPE_API_KEY"),
    });
    pipeline(
        stack,
        "acme/billing#63",
        "e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b",
    )
    .await;
    for (key, _, (cpu, memory_mib)) in &ready {
        wait_status(stack, key, "ready").await;
        let namespace = slipway_core::naming::preview_namespace(key);
        stack
            .sim
            .set_pod_usage(&namespace, *cpu, memory_mib * 1024 * 1024);
    }
    wait_status(stack, "acme/billing#63", "failed").await;
    // One torn down (listed under the ended statuses).
    let closed = "acme/storefront#398";
    pipeline(stack, closed, "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a").await;
    wait_status(stack, closed, "ready").await;
    api(
        stack,
        reqwest::Method::POST,
        "/v1/cleanups",
        json!({"preview": closed}),
    )
    .await;
    wait_status(stack, closed, "deleted").await;
    // The cleanup worker's sweeps store each live preview's usage (set above).
    let store = slipway_shared::store::Store::connect(stack.db.url())
        .await
        .expect("the stack's database");
    let keys: Vec<String> = ready.iter().map(|(k, _, _)| (*k).to_owned()).collect();
    let measured = tokio::time::timeout(
        LONG,
        eventually(LONG, "every ready preview's usage to be stored", || async {
            let rows = store.preview_usage(&keys).await.ok()?;
            ready
                .iter()
                .all(|(key, _, (cpu, _))| {
                    rows.iter().any(|u| {
                        u.preview == *key && u.cpu_millis == Some(i64::try_from(*cpu).unwrap())
                    })
                })
                .then_some(())
        }),
    )
    .await;
    assert!(
        measured.is_ok(),
        "usage not stored: {:#?}",
        store.preview_usage(&keys).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() {
    let required = std::env::var("SLIPWAY_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
    let (node, playwright) = tools();
    let missing: Vec<String> = [&node, &playwright, &PathBuf::from(CHROMIUM)]
        .into_iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        assert!(
            !required,
            "SLIPWAY_REQUIRE_CHROMIUM=1 but {missing:?} is missing (scripts/ensure-tools.sh \
             installs Node 22 and playwright-core into .tools/, and Debian's chromium)"
        );
        eprintln!("skipped: {missing:?} missing (run `make tools`)");
        return;
    }

    let stack = Stack::start_with(Options {
        extra_tokens: vec![
            format!("viewer:read:{VIEWER}"),
            format!("deployer:read+enqueue:{DEPLOYER}"),
        ],
        delays: Delays::zero(),
        metrics_server: MetricsServer::Running,
        sweep_interval_secs: Some(0.5),
        git_ca: None,
    })
    .await
    .expect("stack");
    seed(&stack).await;

    let dir = workspace().join("tests/e2e/browser");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/e2e/browser")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no tests in {}", dir.display());
    let shots = std::env::var_os("SLIPWAY_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/ui-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    let started = Instant::now();
    let out = tokio::process::Command::new(&node)
        // One file at a time, in name order (previews first: its screenshot is the README's,
        // taken before other tests add their previews); the machine is small.
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(&files)
        .current_dir(workspace())
        .env("SLIPWAY_UI_BASE", format!("http://{}", stack.api))
        .env("SLIPWAY_UI_ADMIN_TOKEN", TOKEN)
        .env("SLIPWAY_UI_VIEWER_TOKEN", VIEWER)
        .env("SLIPWAY_UI_DEPLOYER_TOKEN", DEPLOYER)
        .env("SLIPWAY_SIM_URL", stack.sim.url())
        .env("SLIPWAY_UI_SCREENSHOTS", &shots)
        .env("SLIPWAY_PLAYWRIGHT_CORE", &playwright)
        .env("SLIPWAY_CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node --test");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "node --test took {:.1} s:\n{report}",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "browser tests failed:\n{report}");
    stack.stop().await.expect("everything stops cleanly");
}
