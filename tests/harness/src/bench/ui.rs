//! The dashboard at scale (issue 16): with 100k jobs (a realistic mix of kinds, states, attempts,
//! errors and logs), 1k previews with resource readings, 10 open log tails and lines being
//! appended to them, the latency of each dashboard page (p50 and p99, 4 concurrent readers),
//! the latency of a log line from its append (`Store::append_logs`, which commits and notifies)
//! to its arrival at a tail, and what the open tails cost the database while nothing happens
//! (transactions per second on the bench database, against the same figure with no tab open).
//!
//! The data are written with a few `INSERT ... SELECT generate_series` statements (seconds, not
//! 100k API calls), then `VACUUM ANALYZE`d as autovacuum would have done on a live database.

use super::api::BenchApi;
use super::{BenchEnv, Report, percentile};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use slipway_core::{JobId, JobKind};
use slipway_shared::store::{LogLine, NewJob, Store};
use sqlx::Connection;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const JOBS: i64 = 100_000;
const PREVIEWS: i64 = 1_000;
/// Open browser tabs, each tailing the log of its own running build.
const TAILS: usize = 10;
/// Concurrent page readers, and how many times each reads every page.
const READERS: usize = 4;
const ROUNDS: usize = 50;
/// Lines already stored in each tailed log before the tabs open.
const BACKLOG: i64 = 20;
/// One line is appended to one of the tailed logs this often (round robin).
const APPEND_EVERY: Duration = Duration::from_millis(50);
/// How long the database's transaction rate is watched in each idle phase.
const IDLE_WINDOW: Duration = Duration::from_secs(6);
/// How long an idle phase waits before its window: a backend reports its counts to
/// `pg_stat_database` within 10 s of going idle, so the work just before (opening the tails)
/// would otherwise be counted in the window.
const STATS_SETTLE: Duration = Duration::from_secs(11);
const TOKEN: &str = "bench-ui-token-0123456789";
/// What a tailed line's text carries, followed by its number.
const MARK: &str = "bench-tail-";

/// Which server-sent-events route a tab tails a job's log with.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // `V1` stays to compare the JSON API's tail with the dashboard's.
enum TailRoute {
    /// `GET /v1/jobs/{id}/logs?follow=true` with the bearer token.
    V1,
    /// `GET /ui/jobs/{id}/log/stream` with the session cookie.
    Ui,
}

/// The route the tabs use.
const TAIL_ROUTE: TailRoute = TailRoute::Ui;

impl TailRoute {
    fn request(
        self,
        http: &reqwest::Client,
        api: &BenchApi,
        cookie: &str,
        id: JobId,
    ) -> reqwest::RequestBuilder {
        match self {
            TailRoute::V1 => http
                .get(api.url(&format!("/v1/jobs/{id}/logs?follow=true")))
                .bearer_auth(TOKEN),
            TailRoute::Ui => http
                .get(api.url(&format!("/ui/jobs/{id}/log/stream")))
                .header(reqwest::header::COOKIE, cookie),
        }
    }
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let api = BenchApi::start(&env.redis_url, format!("bench:read:{TOKEN}"), None).await?;
    let store = api.db().store();
    let t = Instant::now();
    seed(&store).await?;
    let tailed = tailed_jobs(&store).await?;
    let seeded_s = t.elapsed().as_secs_f64();
    let pages = pages(&store).await?;
    report.note(
        "ui",
        "data",
        &format!(
            "{JOBS} jobs, {PREVIEWS} previews with readings, seeded in {seeded_s:.1} s; \
             {TAILS} tabs tailing via {TAIL_ROUTE:?}; {READERS} readers x {ROUNDS} rounds"
        ),
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(READERS + TAILS)
        .build()?;
    let cookie = sign_in(&http, &api).await?;

    // What the database does with no tab open (the API's own background work), then with the
    // tabs open and nothing appended.
    let mut stats = StatsConn::connect(api.db().name()).await?;
    let idle = stats.xact_per_s(IDLE_WINDOW).await?;
    let tails = Tails::open(&http, &api, &cookie, &tailed).await?;
    let idle_tails = stats.xact_per_s(IDLE_WINDOW).await?;

    // Lines appended while the readers read.
    let stop = CancellationToken::new();
    let appender = tokio::spawn(append_lines(
        store.clone(),
        tailed.clone(),
        tails.sent.clone(),
        stop.clone(),
    ));
    let by_page = read_pages(&http, &api, &cookie, &pages).await;
    stop.cancel();
    let appended = appender.await??;
    let by_page = by_page?;
    let tail_ms = tails.finish(appended).await?;

    let mut all: Vec<f64> = by_page.values().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let mut worst = ("", f64::NAN);
    for (name, ms) in &by_page {
        let p99 = percentile(ms, 99.0);
        if worst.1.is_nan() || p99 > worst.1 {
            worst = (name, p99);
        }
        report.figure(
            "ui",
            &format!("ui_page_{name}_p99_ms"),
            &format!("page {name} ({}) p99", page_path(&pages, name)),
            p99,
            "ms",
        );
    }
    report.figure(
        "ui",
        "ui_page_p50_ms",
        "every page read, p50",
        percentile(&all, 50.0),
        "ms",
    );
    report.figure(
        "ui",
        "ui_page_p99_ms",
        &format!("slowest page's p99 ({})", worst.0),
        worst.1,
        "ms",
    );
    report.note(
        "ui",
        "tailed lines",
        &format!("{appended} lines appended, one every {APPEND_EVERY:?}"),
    );
    report.figure(
        "ui",
        "ui_tail_latency_p50_ms",
        "append -> tab, p50",
        percentile(&tail_ms, 50.0),
        "ms",
    );
    report.figure(
        "ui",
        "ui_tail_latency_p99_ms",
        "append -> tab, p99",
        percentile(&tail_ms, 99.0),
        "ms",
    );
    report.figure(
        "ui",
        "ui_idle_db_xact_per_s",
        "database transactions, no tab open",
        idle,
        "tx/s",
    );
    report.figure(
        "ui",
        "ui_idle_tails_db_xact_per_s",
        &format!("database transactions, {TAILS} idle tails open"),
        idle_tails,
        "tx/s",
    );
    drop(stats);
    api.stop().await;
    Ok(())
}

/// 1k previews (a tenth deleted, a tenth failed), their latest resource readings, 100k jobs
/// (40% builds, 50% launches, 10% cleanups, newest over the last ~28 days; 80% succeeded,
/// the rest failed, cancelled, superseded, and the newest few still queued, running or
/// retrying), an attempt row per attempt, and 40 log lines for one job in twenty.
async fn seed(store: &Store) -> anyhow::Result<()> {
    let pool = store.pool();
    let previews = format!(
        "INSERT INTO previews (key, namespace, url, image, commit_sha, status, pods, created_at, \
                               updated_at, expires_at, deleted_at) \
         SELECT format('org%s/app%s#%s', n % 10, n % 40, n), format('pr-%s', n), \
                format('https://pr-%s.preview.example.com', n), \
                format('registry.example.com/org%s/app%s:%s', n % 10, n % 40, left(md5(n::text), 12)), \
                md5(n::text) || left(md5(n::text || 'c'), 8), \
                CASE n % 10 WHEN 0 THEN 'deleted' WHEN 1 THEN 'failed' WHEN 2 THEN 'deploying' \
                            ELSE 'ready' END, \
                CASE WHEN n % 10 = 0 THEN '{{}}'::text[] \
                     ELSE ARRAY[format('app-%s-7d9f-a', n), format('app-%s-7d9f-b', n)] END, \
                now() - n * interval '40 minutes', now() - n * interval '20 minutes', \
                now() - n * interval '40 minutes' + interval '30 days', \
                CASE WHEN n % 10 = 0 THEN now() - n * interval '10 minutes' END \
         FROM generate_series(1, {PREVIEWS}) n"
    );
    sqlx::query(&previews).execute(pool).await?;
    sqlx::query(
        "INSERT INTO preview_usage (preview, sampled_at, metrics, pods, cpu_millis, memory_bytes, \
             cpu_limit_millis, memory_limit_bytes, cpu_requested_millis, memory_requested_bytes) \
         SELECT key, now() - interval '30 seconds', \
                CASE WHEN n % 50 = 7 THEN 'no_metrics_server' ELSE 'ok' END, \
                CASE WHEN n % 50 = 7 THEN NULL ELSE 2 END, \
                CASE WHEN n % 50 = 7 THEN NULL ELSE (n * 37) % 2000 END, \
                CASE WHEN n % 50 = 7 THEN NULL ELSE ((n * 13) % 2048) * 1048576::bigint END, \
                2000, 2048 * 1048576::bigint, 500, 512 * 1048576::bigint \
         FROM (SELECT key, split_part(namespace, '-', 2)::int AS n FROM previews \
               WHERE deleted_at IS NULL) p",
    )
    .execute(pool)
    .await?;
    // `m`: the preview (ten consecutive jobs share one, so each has every kind); `h`: a
    // scrambled 0..999 choosing the state.
    let jobs = format!(
        "INSERT INTO jobs (id, kind, state, preview, commit_sha, payload, error, error_class, \
                           attempts, max_attempts, retry_at, created_at, enqueued_at, started_at, \
                           finished_at, updated_at) \
         SELECT gen_random_uuid(), kind, state, \
                CASE WHEN kind = 'build' AND n % 10 = 3 THEN NULL ELSE key END, \
                CASE WHEN kind <> 'cleanup' THEN sha END, \
                CASE kind \
                  WHEN 'build' THEN jsonb_build_object('repository', repo, 'commit', sha, \
                                                       'image', image) \
                  WHEN 'launch' THEN jsonb_build_object('preview', key, 'image', image || ':' || \
                                                        left(sha, 12), 'port', 8080) \
                  ELSE jsonb_build_object('preview', key) END, \
                CASE state \
                  WHEN 'failed' THEN (ARRAY[ \
                    'build failed: step 7/12 RUN npm ci exited with code 1', \
                    'image pull failed: ' || image || ':' || left(sha, 12) || ' not found', \
                    'deadline exceeded: the Deployment did not become ready in 300s \
(pod app-0: CrashLoopBackOff)', \
                    'quota exceeded: requested cpu 2, used 1500m of 2', \
                    'git clone failed: repository ' || repo || ' not found'])[1 + n % 5] \
                  WHEN 'retrying' THEN 'connection reset by peer while following the build log' \
                  WHEN 'cancelled' THEN 'cancelled by an operator' \
                  WHEN 'superseded' THEN 'superseded by a newer commit' END, \
                CASE state WHEN 'failed' THEN (ARRAY['permanent', 'transient'])[1 + n % 2] \
                           WHEN 'retrying' THEN 'transient' END, \
                attempts, 3, \
                CASE WHEN state = 'retrying' THEN now() + interval '30 seconds' END, \
                created, created + interval '40 milliseconds', \
                CASE WHEN attempts > 0 THEN created + interval '2 seconds' END, \
                CASE WHEN state IN ('succeeded', 'failed', 'cancelled', 'superseded') \
                     THEN created + (30 + n % 300) * interval '1 second' END, \
                CASE WHEN state IN ('succeeded', 'failed', 'cancelled', 'superseded') \
                     THEN created + (30 + n % 300) * interval '1 second' ELSE created END \
         FROM ( \
           SELECT n, created, key, repo, image, sha, kind, state, \
                  CASE state WHEN 'queued' THEN 0 WHEN 'failed' THEN 3 WHEN 'retrying' THEN 2 \
                             WHEN 'succeeded' THEN 1 + (n % 7 = 0)::int ELSE 1 END AS attempts \
           FROM ( \
             SELECT n, now() - n * interval '24 seconds' AS created, \
                    format('org%s/app%s#%s', m % 10, m % 40, m) AS key, \
                    format('https://github.com/org%s/app%s.git', m % 10, m % 40) AS repo, \
                    format('registry.example.com/org%s/app%s', m % 10, m % 40) AS image, \
                    md5(n::text) || left(md5(n::text || 'c'), 8) AS sha, \
                    CASE WHEN n % 10 < 4 THEN 'build' WHEN n % 10 < 9 THEN 'launch' \
                         ELSE 'cleanup' END AS kind, \
                    CASE WHEN h < 800 THEN 'succeeded' WHEN h < 880 THEN 'failed' \
                         WHEN h < 910 THEN 'cancelled' WHEN h < 970 THEN 'superseded' \
                         WHEN n > 2000 THEN 'succeeded' \
                         WHEN h < 980 THEN 'retrying' WHEN h < 995 THEN 'queued' \
                         ELSE 'running' END AS state \
             FROM generate_series(1, {JOBS}) n, \
                  LATERAL (SELECT 1 + (n / 10) % {PREVIEWS} AS m, (n * 7919) % 1000 AS h) x \
           ) s \
         ) j"
    );
    sqlx::query(&jobs).execute(pool).await?;
    sqlx::query(
        "INSERT INTO job_attempts (job_id, attempt, worker_id, k8s_objects, started_at, \
                                   finished_at, outcome, error) \
         SELECT j.id, a, format('slipway-worker-%s-%s', j.kind, get_byte(uuid_send(j.id), 0) % 4), \
                CASE WHEN j.kind = 'build' THEN ARRAY[format('slipway-build-%s-a%s', j.id, a)] \
                     ELSE ARRAY[format('deployment/app-%s', a)] END, \
                j.started_at + (a - 1) * interval '1 minute', \
                CASE WHEN a < j.attempts OR j.state <> 'running' \
                     THEN j.started_at + (a - 1) * interval '1 minute' + interval '40 seconds' END, \
                CASE WHEN a < j.attempts THEN 'retrying' \
                     WHEN j.state IN ('succeeded', 'failed', 'cancelled', 'superseded', 'retrying') \
                     THEN j.state END, \
                CASE WHEN a < j.attempts THEN 'connection reset by peer' \
                     WHEN j.state IN ('failed', 'retrying') THEN j.error END \
         FROM jobs j, generate_series(1, j.attempts) a",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        r"INSERT INTO job_logs (job_id, attempt, seq, ts, stream, line)
          SELECT j.id, j.attempts, s, j.started_at + s * interval '100 milliseconds',
                 CASE WHEN s % 9 = 8 THEN 'stderr' ELSE 'stdout' END,
                 CASE WHEN s % 10 = 0
                      THEN format(E'\x1b[1;34m#%s\x1b[0m [%s/40] RUN npm ci --omit=dev', s, s / 10)
                      ELSE format('#%s %s.%s %s', s, s / 10, s % 10, md5(j.id::text || s)) END
          FROM jobs j, generate_series(0, 39) s
          WHERE j.attempts > 0 AND get_byte(uuid_send(j.id), 15) % 20 = 0",
    )
    .execute(pool)
    .await?;
    // The simple protocol: VACUUM cannot run in the extended protocol's implicit transaction.
    sqlx::Executor::execute(pool, "VACUUM ANALYZE").await?;
    Ok(())
}

/// The tabs' jobs: running builds of live previews, recorded and started as a worker does,
/// each with [`BACKLOG`] lines of log.
async fn tailed_jobs(store: &Store) -> anyhow::Result<Vec<JobId>> {
    let mut ids = Vec::with_capacity(TAILS);
    for n in 0..TAILS {
        // Previews 3..=12 are `ready` or `deploying` (n % 10 of 0 and 1 are ended or failed).
        let p = 3 + n as i64 + if n >= 7 { 3 } else { 0 };
        let key = format!("org{}/app{}#{p}", p % 10, p % 40);
        let payload = serde_json::json!({
            "repository": format!("https://github.com/org{}/app{}.git", p % 10, p % 40),
            "commit": format!("{:040x}", n + 1),
            "image": format!("registry.example.com/org{}/app{}", p % 10, p % 40),
        });
        let mut new = NewJob::new(JobKind::Build, payload);
        new.preview = Some(key);
        new.commit_sha = Some(format!("{:040x}", n + 1));
        let id = store.insert_job(new).await?.job.id;
        store.mark_enqueued(id).await?;
        anyhow::ensure!(
            store.start_attempt(id, 1, "bench-worker").await?.is_some(),
            "the tailed build {id} did not start"
        );
        let lines: Vec<LogLine> = (0..BACKLOG)
            .map(|seq| LogLine {
                seq,
                ts: chrono::Utc::now(),
                stream: "stdout".into(),
                text: format!("#{seq} resolving provenance for metadata file"),
            })
            .collect();
        store.append_logs(id, 1, &lines).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Each page read: a name (for its figure) and its path.
type Pages = Vec<(&'static str, String)>;

fn page_path<'a>(pages: &'a Pages, name: &'a str) -> &'a str {
    pages
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p.split('?').next().unwrap_or(p))
        .unwrap_or(name)
}

/// The pages read: the previews list (unfiltered, by status, by repository), the jobs list
/// (first page, by kind and state, by preview, 90k rows deep, by error text, by any text), a
/// failed job with its log and
/// three attempts, a live preview with its jobs and logs, the queues.
async fn pages(store: &Store) -> anyhow::Result<Pages> {
    let pool = store.pool();
    let (deep_at, deep_id): (chrono::DateTime<chrono::Utc>, uuid::Uuid) = sqlx::query_as(
        "SELECT created_at, id FROM jobs ORDER BY created_at DESC, id DESC OFFSET 90000 LIMIT 1",
    )
    .fetch_one(pool)
    .await?;
    // The store's cursor: base64url of `<created_at micros>|<id>` of the last row shown.
    let deep = URL_SAFE_NO_PAD.encode(format!("{}|{deep_id}", deep_at.timestamp_micros()));
    let job: uuid::Uuid = sqlx::query_scalar(
        "SELECT j.id FROM jobs j WHERE j.state = 'failed' AND j.attempts = 3 \
           AND EXISTS (SELECT 1 FROM job_logs l WHERE l.job_id = j.id) \
         ORDER BY j.created_at DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await?;
    let preview: String = sqlx::query_scalar(
        "SELECT p.key FROM previews p WHERE p.status = 'ready' AND EXISTS \
           (SELECT 1 FROM jobs j JOIN job_logs l ON l.job_id = j.id WHERE j.preview = p.key) \
         ORDER BY p.created_at DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await?;
    let key = enc(&preview);
    Ok(vec![
        ("previews", "/ui".into()),
        ("previews_status", "/ui?status=failed".into()),
        ("previews_repository", "/ui?repository=org3%2Fapp13".into()),
        ("jobs", "/ui/jobs".into()),
        ("jobs_filtered", "/ui/jobs?kind=build&state=failed".into()),
        ("jobs_preview", format!("/ui/jobs?preview={key}")),
        ("jobs_deep", format!("/ui/jobs?cursor={deep}")),
        // Texts no job has: the searches' worst case, every job read unless an index answers.
        // (A page that does not know the parameter ignores it and lists every job.)
        ("jobs_error", "/ui/jobs?error=no%20such%20error".into()),
        ("jobs_search", "/ui/jobs?q=no%20such%20text".into()),
        ("job", format!("/ui/jobs/{job}")),
        ("preview", format!("/ui/preview?key={key}")),
        ("queues", "/ui/queues".into()),
    ])
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs in with the token; the session cookie (`name=value`) to send back.
async fn sign_in(http: &reqwest::Client, api: &BenchApi) -> anyhow::Result<String> {
    let resp = http
        .post(api.url("/ui/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == reqwest::StatusCode::SEE_OTHER,
        "sign-in answered {}",
        resp.status()
    );
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("slipway_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("sign-in set no session cookie"))
}

/// Every page read `ROUNDS` times by each of `READERS` concurrent readers (after one checked
/// read of each); latencies in ms by page, ascending.
async fn read_pages(
    http: &reqwest::Client,
    api: &BenchApi,
    cookie: &str,
    pages: &Pages,
) -> anyhow::Result<BTreeMap<&'static str, Vec<f64>>> {
    for (_, path) in pages {
        get(http, &api.url(path), cookie).await?;
    }
    let mut tasks = Vec::new();
    for r in 0..READERS {
        let (http, cookie) = (http.clone(), cookie.to_owned());
        let urls: Vec<(&'static str, String)> =
            pages.iter().map(|(n, p)| (*n, api.url(p))).collect();
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(&'static str, f64)> = Vec::with_capacity(ROUNDS * urls.len());
            for round in 0..ROUNDS {
                // Readers start at different pages, so the pages are read side by side.
                for i in 0..urls.len() {
                    let (name, url) = &urls[(i + r + round) % urls.len()];
                    let t = Instant::now();
                    get(&http, url, &cookie).await?;
                    out.push((name, t.elapsed().as_secs_f64() * 1e3));
                }
            }
            anyhow::Ok(out)
        }));
    }
    let mut by_page: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for t in tasks {
        for (name, ms) in t.await?? {
            by_page.entry(name).or_default().push(ms);
        }
    }
    for v in by_page.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    Ok(by_page)
}

/// A page, whole; anything but a 200 HTML page is an error.
async fn get(http: &reqwest::Client, url: &str, cookie: &str) -> anyhow::Result<()> {
    let resp = http
        .get(url)
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::OK && body.contains("</html>"),
        "{url} answered {status}"
    );
    Ok(())
}

/// Appends one marked line to one tailed log every [`APPEND_EVERY`], round robin, until
/// `stop`; the time of each append call (before it commits) goes into `sent`. Returns how many
/// lines were appended.
async fn append_lines(
    store: Store,
    jobs: Vec<JobId>,
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    stop: CancellationToken,
) -> anyhow::Result<usize> {
    let mut tick = tokio::time::interval(APPEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(n as usize),
            _ = tick.tick() => {}
        }
        let job = jobs[n as usize % jobs.len()];
        let seq = BACKLOG + (n / jobs.len() as u64) as i64;
        let line = LogLine {
            seq,
            ts: chrono::Utc::now(),
            stream: "stdout".into(),
            text: format!("#9 {MARK}{n} exporting layers"),
        };
        sent.lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(n, Instant::now());
        store.append_logs(job, 1, &[line]).await?;
        n += 1;
    }
}

/// The open tabs: one task per tail reading its event stream.
struct Tails {
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    latencies: Arc<Mutex<Vec<f64>>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: CancellationToken,
}

impl Tails {
    /// Opens a tail of each job and waits until each has received its backlog.
    async fn open(
        http: &reqwest::Client,
        api: &BenchApi,
        cookie: &str,
        jobs: &[JobId],
    ) -> anyhow::Result<Tails> {
        let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
        let ready = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for &id in jobs {
            let resp = TAIL_ROUTE.request(http, api, cookie, id).send().await?;
            anyhow::ensure!(
                resp.status() == reqwest::StatusCode::OK,
                "the tail of {id} answered {}",
                resp.status()
            );
            tasks.push(tokio::spawn(tail(
                resp,
                sent.clone(),
                latencies.clone(),
                ready.clone(),
                stop.clone(),
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while ready.load(Ordering::SeqCst) < jobs.len() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the tails did not receive their backlog in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Tails {
            sent,
            latencies,
            tasks,
            stop,
        })
    }

    /// Waits until every one of `appended` lines has arrived, closes the tabs; the latencies in
    /// ms, ascending.
    async fn finish(self, appended: usize) -> anyhow::Result<Vec<f64>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let arrived = self.latencies.lock().map(|l| l.len()).unwrap_or(0);
            if arrived >= appended {
                break;
            }
            if Instant::now() > deadline || self.tasks.iter().all(|t| t.is_finished()) {
                anyhow::bail!("{arrived} of {appended} appended lines reached the tails");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop.cancel();
        for t in self.tasks {
            t.await??;
        }
        let mut ms = std::mem::take(
            &mut *self
                .latencies
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?,
        );
        ms.sort_by(f64::total_cmp);
        Ok(ms)
    }
}

/// Reads one tab's event stream: counts the backlog (then reports ready), and for each marked
/// line the time since its append began.
async fn tail(
    mut resp: reqwest::Response,
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    latencies: Arc<Mutex<Vec<f64>>>,
    ready: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut buf = String::new();
    let mut backlog = 0;
    loop {
        let chunk = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            c = resp.chunk() => c?,
        };
        let Some(chunk) = chunk else {
            anyhow::bail!("a tail's stream ended while its job runs");
        };
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if !event.lines().any(|l| l.starts_with("data:")) {
                continue; // a keep-alive comment
            }
            match event.find(MARK) {
                None => {
                    backlog += 1;
                    if backlog == BACKLOG {
                        ready.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Some(at) => {
                    let digits: String = event[at + MARK.len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let n: u64 = digits.parse()?;
                    let started = sent
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .get(&n)
                        .copied()
                        .ok_or_else(|| anyhow::anyhow!("line {n} arrived but was never sent"))?;
                    latencies
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((now - started).as_secs_f64() * 1e3);
                }
            }
        }
    }
}

/// A connection to the server's `postgres` database reading the bench database's
/// statistics (so its own queries are not counted).
struct StatsConn {
    conn: sqlx::PgConnection,
    database: String,
}

impl StatsConn {
    async fn connect(database: &str) -> anyhow::Result<StatsConn> {
        Ok(StatsConn {
            conn: sqlx::PgConnection::connect(&slipway_shared::testing::admin_url()).await?,
            database: database.to_owned(),
        })
    }

    async fn xacts(&mut self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.database)
        .fetch_one(&mut self.conn)
        .await?)
    }

    /// Transactions per second on the database over `window`, after [`STATS_SETTLE`] (backends
    /// report their counts about once a second while busy, within 10 s once idle).
    async fn xact_per_s(&mut self, window: Duration) -> anyhow::Result<f64> {
        tokio::time::sleep(STATS_SETTLE).await;
        let (before, t) = (self.xacts().await?, Instant::now());
        tokio::time::sleep(window).await;
        let after = self.xacts().await?;
        Ok((after - before) as f64 / t.elapsed().as_secs_f64())
    }
}
