//! The webhook figures: signed GitHub `pull_request` `synchronize` deliveries posted to the
//! in-process API ([`BenchApi`]) at a fixed open-loop rate. Each delivery is a new head commit
//! of one of 50 pull requests of an enabled repository, so each records a real pipeline that
//! supersedes the pull request's previous one.
//!
//! Sends follow the clock, not the previous answer, and latency runs from each delivery's
//! scheduled time: a slow answer or a late sender shows in the figures instead of quietly
//! slowing the schedule (no coordinated omission).

use super::api::BenchApi;
use super::{BenchEnv, Report};
use fake_github::payloads::{self, PullRequest};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

const RATE_PER_S: u32 = 200;
const DELIVERIES: u32 = 2_000;
const PULL_REQUESTS: u32 = 50;
const OWNER: &str = "acme";
const REPO: &str = "shop";
const TOKEN: &str = "bench-admin-token-0123456789";
const SECRET: &str = "bench-webhook-secret-0123456789";

/// One delivery: when it was sent, its latency from its scheduled time, what went wrong.
struct Sent {
    at: Instant,
    latency: Duration,
    error: Option<String>,
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let api = BenchApi::start(
        &env.redis_url,
        format!("bench:read+admin:{TOKEN}"),
        Some(SECRET.into()),
    )
    .await?;
    let measured = measure(&api).await;
    api.stop().await;
    let sent = measured?;

    let mut ms: Vec<f64> = sent.iter().map(|s| s.latency.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let errors: Vec<&str> = sent.iter().filter_map(|s| s.error.as_deref()).collect();
    let first = sent.iter().map(|s| s.at).min();
    let last = sent.iter().map(|s| s.at).max();
    let span = first.zip(last).map_or(0.0, |(f, l)| (l - f).as_secs_f64());
    report.note(
        "webhook",
        "deliveries",
        &format!(
            "{} synchronize, {PULL_REQUESTS} PRs, open loop at {RATE_PER_S}/s",
            sent.len()
        ),
    );
    report.figure(
        "webhook",
        "webhook_sent_per_s",
        "deliveries sent (achieved)",
        (sent.len() as f64 - 1.0) / span,
        "/s",
    );
    report.figure(
        "webhook",
        "webhook_p50_ms",
        "delivery latency p50",
        super::percentile(&ms, 50.0),
        "ms",
    );
    report.figure(
        "webhook",
        "webhook_p99_ms",
        "delivery latency p99",
        super::percentile(&ms, 99.0),
        "ms",
    );
    report.figure(
        "webhook",
        "webhook_errors",
        "deliveries not recorded as pipelines",
        errors.len() as f64,
        "deliveries",
    );
    anyhow::ensure!(
        errors.is_empty(),
        "{} of {} deliveries failed, the first: {}",
        errors.len(),
        sent.len(),
        errors[0]
    );
    Ok(())
}

async fn measure(api: &BenchApi) -> anyhow::Result<Vec<Sent>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let resp = http
        .put(api.url(&format!("/v1/repositories/{OWNER}/{REPO}")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"launch": {"port": 8080}}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "enabling the repository answered {}: {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
    let url = api.url("/v1/webhooks/github");

    // Warm-up, not measured: open every pull request (connections, caches, first pipelines).
    for n in 1..=PULL_REQUESTS {
        let body = PullRequest::new("opened", OWNER, REPO, n.into(), &format!("a{n:039x}")).body();
        if let Err(e) = deliver(&http, &url, signed(body)).await {
            anyhow::bail!("warm-up delivery failed: {e}");
        }
    }

    // Bodies are built and signed before the clock starts.
    let deliveries: Vec<Delivery> = (0..DELIVERIES)
        .map(|i| {
            let n = 1 + i % PULL_REQUESTS;
            signed(
                PullRequest::new("synchronize", OWNER, REPO, n.into(), &format!("b{i:039x}"))
                    .body(),
            )
        })
        .collect();
    let period = Duration::from_secs(1) / RATE_PER_S;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(deliveries.len());
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let scheduled = start + period * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            let error = deliver(&http, &url, delivery).await.err();
            Sent {
                at,
                latency: scheduled.elapsed(),
                error,
            }
        }));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for t in tasks {
        sent.push(t.await?);
    }

    // Each pull request is left with exactly one live pipeline, its newest: the rest were
    // superseded.
    let jobs: Value = http
        .get(api.url("/v1/jobs?kind=build&state=queued&limit=1000"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let live = jobs["items"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        live == PULL_REQUESTS as usize,
        "{live} queued builds left, expected one per pull request ({PULL_REQUESTS})"
    );
    Ok(sent)
}

/// A `pull_request` body and the headers GitHub would send with it (signature, a fresh
/// `X-GitHub-Delivery` id).
type Delivery = (String, Vec<(&'static str, String)>);

fn signed(body: String) -> Delivery {
    let headers = payloads::headers(SECRET.as_bytes(), "pull_request", body.as_bytes());
    (body, headers)
}

/// Post one delivery; anything but a recorded pipeline is an error.
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    (body, headers): Delivery,
) -> Result<(), String> {
    let mut req = http.post(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.body(body).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let answer: Value = resp.json().await.map_err(|e| e.to_string())?;
    if !matches!(status.as_u16(), 200 | 202) || answer["status"] != "pipeline" {
        return Err(format!("answered {status}: {answer}"));
    }
    Ok(())
}
