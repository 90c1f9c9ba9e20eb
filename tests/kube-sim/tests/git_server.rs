//! The test git host (`kube_sim::git::GitServer`) as git clients see it: smart HTTP over TLS
//! with its own CA, protocol v2 only when the client asks for it (`Git-Protocol`), gzip request
//! bodies, and the token check. Uses the host's `git` and `curl` (blocking: the tests run on a
//! multi-threaded runtime so the server keeps serving meanwhile).

use std::path::Path;
use std::process::Command;

use kube_sim::git::GitServer;

fn git(home: &Path, ca: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSL_CAINFO", ca)
        .current_dir(home)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn curl(ca: &Path, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "--cacert"])
        .arg(ca)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_protocol_v2_fetches_an_unadvertised_commit() {
    let server = GitServer::start().await.unwrap();
    let first = server
        .create_repo("org/app.git", &[("a.txt", "one\n")])
        .unwrap();
    let second = server.commit("org/app.git", &[("a.txt", "two\n")]).unwrap();
    assert_eq!(
        server.url("org/app.git"),
        format!("https://localhost:{}/org/app.git", server.addr().port())
    );
    // Fixed identity and dates: the same tree always gets the same id.
    let again = GitServer::start().await.unwrap();
    assert_eq!(
        again.create_repo("x/y.git", &[("a.txt", "one\n")]).unwrap(),
        first
    );
    let home = tempfile::tempdir().unwrap();
    let ca = server.ca_pem_path();
    let url = server.url("org/app.git");
    let (ok, out) = git(home.path(), &ca, &["init", "-q", "r"]);
    assert!(ok, "{out}");
    let r = home.path().join("r");
    let (ok, out) = git(
        home.path(),
        &ca,
        &[
            "-C",
            r.to_str().unwrap(),
            "-c",
            "protocol.version=0",
            "fetch",
            "-q",
            "--depth=1",
            &url,
            &first,
        ],
    );
    assert!(!ok, "{out}");
    // v0 advertises refs only; git refuses to ask for anything else.
    assert!(
        out.contains(&format!(
            "Server does not allow request for unadvertised object {first}"
        )),
        "{out}"
    );
    let (ok, out) = git(
        home.path(),
        &ca,
        &[
            "-C",
            r.to_str().unwrap(),
            "fetch",
            "-q",
            "--depth=1",
            &url,
            &first,
        ],
    );
    assert!(ok, "{out}");
    let (_, head) = git(
        home.path(),
        &ca,
        &["-C", r.to_str().unwrap(), "rev-parse", "FETCH_HEAD"],
    );
    assert_eq!(head.trim(), first);
    let v2 = server
        .requests()
        .into_iter()
        .filter(|r| r.git_protocol.as_deref() == Some("version=2"))
        .count();
    assert!(v2 >= 2, "{:#?}", server.requests());
    assert_ne!(first, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bodies_and_the_v2_advertisement_over_tls() {
    let server = GitServer::start().await.unwrap();
    let commit = server
        .create_repo("org/app.git", &[("a.txt", "one\n")])
        .unwrap();
    let ca = server.ca_pem_path();
    let base = server.url("org/app.git");
    let v2 = curl(
        &ca,
        &[
            "-H",
            "Git-Protocol: version=2",
            &format!("{base}/info/refs?service=git-upload-pack"),
        ],
    );
    assert!(v2.starts_with("HTTP/1.1 200"), "{v2}");
    assert!(v2.contains("version 2"), "{v2}");
    let v0 = curl(&ca, &[&format!("{base}/info/refs?service=git-upload-pack")]);
    assert!(v0.contains("# service=git-upload-pack"), "{v0}");
    assert!(v0.contains(&format!("{commit} HEAD")), "{v0}");
    // A gzip-compressed ls-refs request.
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("req.gz");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '0014command=ls-refs\\n0000' | gzip -c > {}",
            body.display()
        ))
        .status()
        .unwrap();
    assert!(out.success());
    let resp = curl(
        &ca,
        &[
            "-H",
            "Git-Protocol: version=2",
            "-H",
            "Content-Type: application/x-git-upload-pack-request",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &format!("@{}", body.display()),
            &format!("{base}/git-upload-pack"),
        ],
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains(&format!("{commit} refs/heads/main")),
        "{resp}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.content_encoding.as_deref() == Some("gzip") && r.status == 200)
    );
    // A path that is no repository.
    let missing = curl(
        &ca,
        &[&format!(
            "{}/info/refs?service=git-upload-pack",
            server.url("no/such.git")
        )],
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_token_is_checked() {
    let server = GitServer::start_requiring_token("tok").await.unwrap();
    server
        .create_repo("org/app.git", &[("a.txt", "one\n")])
        .unwrap();
    let ca = server.ca_pem_path();
    let refs = format!(
        "{}/info/refs?service=git-upload-pack",
        server.url("org/app.git")
    );
    let denied = curl(&ca, &[&refs]);
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(
        denied
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"kube-sim git\""),
        "{denied}"
    );
    // base64("x-access-token:tok")
    let ok = curl(
        &ca,
        &["-H", "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9r", &refs],
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let wrong = curl(
        &ca,
        &["-H", "Authorization: Basic eC1hY2Nlc3MtdG9rZW46eA==", &refs],
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
}
