//! The `auto` source's figures (issue 18): what reading a repository before a build costs.
//!
//! - `auto_plan_us`: detecting a Next.js repository's stack and generating its Dockerfile
//!   (pure, per call).
//! - `auto_submit_p50_ms` against `dockerfile_submit_p50_ms`: enqueue -> build Job created for
//!   builds of the same real repository (served over HTTPS smart HTTP on this machine) with and
//!   without the `auto` source; the difference is the source Job (created, run by the simulated
//!   kubelet with the host's git, its log read, deleted) and the detection.
//! - The ceilings, timed in the same run: `git_fetch_p50_ms`, the same shallow fetch of the
//!   same commit by the host's git alone, and `source_script_p50_ms`, the source Job's whole
//!   script run by the host's sh; `auto_overhead_vs_source_script` is the source step's cost
//!   (auto minus Dockerfile) over the script's.

use super::{BenchEnv, Report, p50_ms, start_build_worker, submit_build};
use kube_sim::git::GitServer;
use slipway_core::detect::{Entry, Inputs, Snapshot, plan};
use slipway_core::payload::BuildRequest;
use slipway_core::validate::{BuildSource, Validate};
use slipway_core::{JobId, JobKind, Limits};
use slipway_shared::queue::QueueClient;
use slipway_shared::store::{NewJob, Store};
use slipway_shared::testing::{RedisPrefix, TestDb};
use std::time::Instant;

const ROUNDS: usize = 10;
const PLANS: usize = 20_000;

const PACKAGE: &str = r#"{"name": "shop", "scripts": {"build": "next build", "start": "next start"},
  "dependencies": {"next": "15.0.3", "react": "19.0.0", "react-dom": "19.0.0"}}"#;

/// A repository of a realistic small application: the manifests and 300 source files.
fn files() -> Vec<(String, String)> {
    let mut files = vec![
        ("package.json".to_owned(), PACKAGE.to_owned()),
        (
            "package-lock.json".to_owned(),
            format!(
                "{{\"lockfileVersion\": 3, \"pad\": \"{}\"}}",
                "x".repeat(200_000)
            ),
        ),
        ("README.md".to_owned(), "# shop\n".repeat(50)),
    ];
    for n in 0..300 {
        files.push((
            format!("src/components/part{n}.tsx"),
            format!(
                "export const Part{n} = () => <div>{}</div>;\n",
                "text ".repeat(200)
            ),
        ));
    }
    files
}

async fn record(store: &Store, url: &str, commit: &str, auto: bool) -> anyhow::Result<JobId> {
    let request: BuildRequest = serde_json::from_value(serde_json::json!({
        "repository": url, "commit": commit, "image": "bench/shop"
    }))?;
    let limits = Limits {
        internal_repository_hosts: vec!["localhost".into()],
        ..Limits::default()
    };
    let mut valid = request.validate(&limits)?;
    if auto {
        valid.source = BuildSource::Auto;
    }
    let mut new = NewJob::new(JobKind::Build, serde_json::to_value(&valid)?);
    new.commit_sha = Some(valid.commit.clone());
    Ok(store.insert_job(new).await?.job.id)
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    // Detection and generation alone.
    let snap = Snapshot {
        commit: "0".repeat(40),
        entries: ["package.json", "package-lock.json", "README.md"]
            .iter()
            .map(|n| Entry {
                kind: "blob".into(),
                name: (*n).into(),
            })
            .chain(std::iter::once(Entry {
                kind: "tree".into(),
                name: "src".into(),
            }))
            .collect(),
        files: [("package.json".to_owned(), PACKAGE.as_bytes().to_vec())].into(),
        too_large: Vec::new(),
    };
    let inputs = Inputs {
        port: 3000,
        build_args: vec!["NEXT_PUBLIC_API"],
        dir: "",
    };
    let started = Instant::now();
    for _ in 0..PLANS {
        std::hint::black_box(plan(std::hint::black_box(&snap), &inputs)?);
    }
    report.figure(
        "auto",
        "auto_plan_us",
        "detect a Next.js app and generate its Dockerfile, per call",
        started.elapsed().as_secs_f64() * 1e6 / PLANS as f64,
        "us",
    );

    let git = GitServer::start().await?;
    let files = files();
    let listed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let commit = tokio::task::block_in_place(|| git.create_repo("bench/shop.git", &listed))?;
    let url = git.url("bench/shop.git");

    // The ceilings: the source Job's fetch by the host's git alone, and its whole script run
    // by the host's sh (what the source Job does, without Kubernetes and the worker).
    let (mut fetches, mut scripts) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir()?;
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .current_dir(dir.path())
                .env("GIT_SSL_CAINFO", git.ca_pem_path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", dir.path())
                .stdout(std::process::Stdio::null())
                .status()
        };
        let started = Instant::now();
        anyhow::ensure!(run("git", &["init", "-q"])?.success(), "git init");
        anyhow::ensure!(
            run(
                "git",
                &["fetch", "-q", "--depth=1", "--no-tags", &url, &commit]
            )?
            .success(),
            "git fetch"
        );
        fetches.push(started.elapsed());
        let mut args = vec![
            "-c",
            slipway_k8s::source::SOURCE_SCRIPT,
            "slipway-source",
            &url,
            &commit,
            "",
        ];
        args.extend(slipway_core::detect::WANTED_FILES);
        let started = Instant::now();
        anyhow::ensure!(run("sh", &args)?.success(), "the source script");
        scripts.push(started.elapsed());
    }

    let db = TestDb::new().await?;
    let store = db.store();
    let sim = kube_sim::KubeSim::builder()
        .delays(kube_sim::Delays::zero())
        .trusted_ca(git.ca_pem_path())
        .start()
        .await?;
    let prefix = RedisPrefix::on(&env.redis_url);
    let queue = QueueClient::connect(&env.redis_url, &prefix.name).await?;
    let worker = start_build_worker(env, db.url(), &prefix.name, &sim, &[]).await?;
    // One of each first: namespace and policy set-up is not what is measured.
    for auto in [false, true] {
        let id = record(&store, &url, &commit, auto).await?;
        submit_build(&store, &queue, &sim, id, 1).await?;
    }
    let (mut plain, mut auto) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let id = record(&store, &url, &commit, false).await?;
        plain.push(submit_build(&store, &queue, &sim, id, 1).await?);
        let id = record(&store, &url, &commit, true).await?;
        auto.push(submit_build(&store, &queue, &sim, id, 1).await?);
    }
    worker.stop().await.map_err(anyhow::Error::msg)?;

    let (plain, auto) = (p50_ms(plain), p50_ms(auto));
    let (fetch, script) = (p50_ms(fetches), p50_ms(scripts));
    report.note(
        "auto",
        "repository",
        &format!(
            "{} files, one commit, HTTPS smart HTTP on this machine",
            files.len()
        ),
    );
    report.figure(
        "auto",
        "dockerfile_submit_p50_ms",
        "enqueue -> build Job created, Dockerfile source, p50",
        plain,
        "ms",
    );
    report.figure(
        "auto",
        "auto_submit_p50_ms",
        "enqueue -> build Job created, auto source (source Job + detection), p50",
        auto,
        "ms",
    );
    report.figure(
        "auto",
        "git_fetch_p50_ms",
        "the same shallow fetch by git alone (ceiling), p50",
        fetch,
        "ms",
    );
    report.figure(
        "auto",
        "source_script_p50_ms",
        "the source Job's script run by the host's sh (ceiling), p50",
        script,
        "ms",
    );
    report.figure(
        "auto",
        "auto_overhead_vs_source_script",
        "(auto - dockerfile) / the script alone",
        (auto - plain) / script,
        "x",
    );
    Ok(())
}
