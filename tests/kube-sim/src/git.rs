//! A test git host: bare repositories served over HTTPS ("smart HTTP") by the host's
//! `git http-backend`, run as a CGI per request, behind TLS with a certificate made at start.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kube_sim::git::GitServer;
//! let git = GitServer::start().await?;
//! let commit = git.create_repo("org/app.git", &[("package.json", "{}"), ("web/index.js", "")])?;
//! let url = git.url("org/app.git"); // https://localhost:PORT/org/app.git
//! let sim = kube_sim::KubeSim::builder().trusted_ca(git.ca_pem_path()).start().await;
//! # let _ = (commit, url, sim); Ok(()) }
//! ```
//!
//! What it does as upstream does it:
//!
//! - CGI environment as `git-http-backend(1)` documents it: `GIT_PROJECT_ROOT`,
//!   `GIT_HTTP_EXPORT_ALL`, `PATH_INFO`, `QUERY_STRING`, `REQUEST_METHOD`, `CONTENT_TYPE`,
//!   `CONTENT_LENGTH`, `REMOTE_ADDR`, `REMOTE_USER` (the authenticated user), the request's
//!   headers as `HTTP_*` (RFC 3875 §4.1.18; not `Authorization`), and the `Git-Protocol`
//!   header as `GIT_PROTOCOL` (and `HTTP_GIT_PROTOCOL`), without which the backend speaks
//!   protocol v0, where a client can fetch only advertised refs' history and not an arbitrary
//!   commit by id (`gitprotocol-v2(7)`: a v2 `want` "can be anything"). A request body sent
//!   with `Content-Encoding: gzip` (git's client compresses large POSTs) is handed over as
//!   `HTTP_CONTENT_ENCODING`, which the backend inflates itself (`http-backend.c`,
//!   `inflate_request`).
//! - The CGI's `Status:` header becomes the HTTP status (CGI 1.1, RFC 3875 §6.3.3).
//! - With a required token, a request without `Authorization: Basic
//!   base64("x-access-token:<token>")` (what BuildKit's git source and Slipway's source script
//!   send) is answered 401 with `WWW-Authenticate: Basic realm="kube-sim git"`.
//! - TLS: a CA and a server certificate for `localhost` and `127.0.0.1` are made with the
//!   host's `openssl` at start; [`GitServer::ca_pem_path`] is the CA to trust (for the
//!   simulator: [`crate::KubeSimBuilder::trusted_ca`]).
//!
//! Commits are made with the host's git, with a fixed author, committer and date, so a tree
//! always gets the same commit id. [`GitServer::create_repo`] and [`GitServer::commit`] block
//! while git runs; a test that runs a *blocking* git client against the server needs a
//! multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`) so the server keeps
//! serving meanwhile (the simulator's source pods run git asynchronously).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRequest {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/org/app.git/git-upload-pack`.
    pub path: String,
    /// Query string (without `?`).
    pub query: String,
    /// The `Git-Protocol` header (`version=2` from a v2 client).
    pub git_protocol: Option<String>,
    /// The `Content-Encoding` of the body (`gzip` for compressed POSTs).
    pub content_encoding: Option<String>,
    /// Whether the request carried the required token (true when none is required).
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
}

struct State {
    repos: PathBuf,
    home: PathBuf,
    token: Option<String>,
    requests: Mutex<Vec<GitRequest>>,
}

/// A running test git host. Dropping it stops the server and removes its repositories.
pub struct GitServer {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Runs a host command, failing with its stderr.
fn run(cmd: &mut std::process::Command) -> std::io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(other(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

const OPENSSL_CONFIG: &str = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = kube-sim git CA\n\
[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n\
[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n\
subjectAltName = DNS:localhost,IP:127.0.0.1\nauthorityKeyIdentifier = keyid\n";

/// A CA and a server certificate signed by it, in `dir`: `ca.pem`, `server.pem`, `server.key`.
fn make_certificates(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG)?;
    let openssl = |args: &[&str]| {
        run(std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir))
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-config",
                "openssl.cnf",
                "-extensions",
                "ca",
            ][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "3650"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &[
                "req",
                "-new",
                "-config",
                "openssl.cnf",
                "-subj",
                "/CN=localhost",
            ][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "3650",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        "leaf",
        "-out",
        "server.pem",
    ])?;
    Ok(())
}

fn tls_config(dir: &Path) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .map_err(other)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(other)?;
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).map_err(other)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(other)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl GitServer {
    /// Starts a server on `127.0.0.1` (any free port) that serves every repository to anyone.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_inner(None).await
    }

    /// Starts a server that answers only requests carrying `token` as BuildKit sends it
    /// (`Authorization: Basic base64("x-access-token:<token>")`); others get 401.
    pub async fn start_requiring_token(token: impl Into<String>) -> std::io::Result<Self> {
        Self::start_inner(Some(token.into())).await
    }

    async fn start_inner(token: Option<String>) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("kube-sim-git-").tempdir()?;
        let tls = dir.path().join("tls");
        let repos = dir.path().join("repos");
        let home = dir.path().join("home");
        for d in [&tls, &repos, &home] {
            std::fs::create_dir_all(d)?;
        }
        let tls_dir = tls.clone();
        tokio::task::spawn_blocking(move || make_certificates(&tls_dir))
            .await
            .map_err(other)??;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&tls)?));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            repos,
            home,
            token,
            requests: Mutex::new(Vec::new()),
        });
        let shutdown = CancellationToken::new();
        let (st, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, remote) = tokio::select! {
                    () = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(_) => continue,
                    },
                };
                let (acceptor, st, stop) = (acceptor.clone(), st.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req, remote).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    tokio::select! {
                        _ = conn => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self {
            dir,
            addr,
            state,
            shutdown,
        })
    }

    /// The clone URL of a repository: `https://localhost:PORT/<repo_path>`.
    #[must_use]
    pub fn url(&self, repo_path: &str) -> String {
        format!(
            "https://localhost:{}/{}",
            self.addr.port(),
            repo_path.trim_start_matches('/')
        )
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    #[must_use]
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    /// Where the bare repositories live (`<root>/<repo_path>`).
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.state.repos
    }

    /// Every request answered so far.
    #[must_use]
    pub fn requests(&self) -> Vec<GitRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Creates a bare repository at `path` (e.g. `org/app.git`) with one commit on `main`
    /// holding `files` (`(path, content)`, sub-directories made as needed); returns the
    /// commit id (40 hex). Blocks while the host's git runs.
    pub fn create_repo<F: AsRef<[u8]>>(
        &self,
        path: &str,
        files: &[(&str, F)],
    ) -> std::io::Result<String> {
        let bare = self.state.repos.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&bare)?;
        run(self
            .git()
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare))?;
        // Partial clones (`--filter=blob:none`), as GitHub and GitLab allow them
        // (git-config(1), `uploadpack.allowFilter`).
        run(self
            .git()
            .env("GIT_DIR", &bare)
            .args(["config", "uploadpack.allowFilter", "true"]))?;
        self.commit(path, files)
    }

    /// Adds a commit on `main` of the repository at `path`: the previous tree with `files`
    /// added or replaced. Returns the commit id.
    pub fn commit<F: AsRef<[u8]>>(
        &self,
        path: &str,
        files: &[(&str, F)],
    ) -> std::io::Result<String> {
        let bare = self.state.repos.join(path.trim_start_matches('/'));
        let work = tempfile::tempdir()?;
        let tree = work.path().join("tree");
        std::fs::create_dir_all(&tree)?;
        for (name, content) in files {
            let target = tree.join(name.trim_start_matches('/'));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(target, content.as_ref())?;
        }
        let git = || {
            let mut c = self.git();
            c.env("GIT_DIR", &bare)
                .env("GIT_WORK_TREE", &tree)
                .env("GIT_INDEX_FILE", work.path().join("index"));
            c
        };
        let parent = run(git().args(["rev-parse", "-q", "--verify", "refs/heads/main"])).ok();
        let n = match &parent {
            Some(p) => {
                run(git().args(["read-tree", p]))?;
                run(git().args(["rev-list", "--count", p]))?
                    .parse::<i64>()
                    .unwrap_or(0)
            }
            None => 0,
        };
        run(git().args(["add", "-f", "--ignore-removal", "."]))?;
        let tree_id = run(git().arg("write-tree"))?;
        // A fixed identity; each commit a minute after its parent (2026-01-01T00:00:00Z on).
        let date = format!("{} +0000", 1_767_225_600 + 60 * n);
        let mut c = git();
        c.args(["commit-tree", &tree_id, "-m", &format!("commit {}", n + 1)]);
        if let Some(p) = &parent {
            c.args(["-p", p]);
        }
        let id = run(c
            .env("GIT_AUTHOR_NAME", "Slipway Test")
            .env("GIT_AUTHOR_EMAIL", "test@slipway.invalid")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_NAME", "Slipway Test")
            .env("GIT_COMMITTER_EMAIL", "test@slipway.invalid")
            .env("GIT_COMMITTER_DATE", &date))?;
        run(git().args(["update-ref", "refs/heads/main", &id]))?;
        Ok(id)
    }

    /// The host's git, isolated from the host's configuration.
    fn git(&self) -> std::process::Command {
        let mut c = std::process::Command::new("git");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.state.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        c
    }
}

fn respond(
    status: u16,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(st: &State, req: Request<Incoming>, remote: SocketAddr) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let git_protocol = header("git-protocol");
    let content_encoding = header("content-encoding");
    let content_type = header("content-type");
    // Protocol-specific meta-variables (RFC 3875 §4.1.18): every request header as
    // `HTTP_<NAME>`, except the ones CGI passes otherwise and `Authorization` (as Apache).
    let http_vars: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "authorization" | "content-type" | "content-length" | "proxy-authorization"
            )
        })
        .filter_map(|(k, v)| {
            let name = format!("HTTP_{}", k.as_str().to_ascii_uppercase().replace('-', "_"));
            v.to_str().ok().map(|v| (name, v.to_owned()))
        })
        .collect();
    let authorized = match &st.token {
        None => true,
        Some(t) => {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"))
            );
            header("authorization").is_some_and(|h| h == want)
        }
    };
    let record = |status: u16| {
        st.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(GitRequest {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                git_protocol: git_protocol.clone(),
                content_encoding: content_encoding.clone(),
                authorized,
                status,
            });
    };
    if !authorized {
        record(401);
        return respond(
            401,
            &[(
                "WWW-Authenticate",
                "Basic realm=\"kube-sim git\"".to_owned(),
            )],
            "authentication required\n",
        );
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            record(400);
            return respond(400, &[], format!("reading the body: {e}\n"));
        }
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &st.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &st.repos)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("REMOTE_ADDR", remote.ip().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if method == "POST" {
        cmd.env("CONTENT_LENGTH", body.len().to_string());
    }
    if let Some(t) = &content_type {
        cmd.env("CONTENT_TYPE", t);
    }
    // `HTTP_GIT_PROTOCOL` (above) is what http-backend reads (`http-backend.c`: set as
    // `GIT_PROTOCOL` unless already set); `GIT_PROTOCOL` as the `git-http-backend(1)` Apache
    // example sets it. `HTTP_CONTENT_ENCODING: gzip` makes it inflate the body.
    cmd.envs(http_vars);
    if let Some(p) = &git_protocol {
        cmd.env("GIT_PROTOCOL", p);
    }
    if st.token.is_some() {
        cmd.env("REMOTE_USER", "x-access-token");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            record(500);
            return respond(500, &[], format!("git http-backend: {e}\n"));
        }
    };
    let mut stdin = child.stdin.take();
    let writer = async move {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&body).await;
            let _ = s.shutdown().await;
        }
        drop(stdin);
    };
    let (_, out) = tokio::join!(writer, child.wait_with_output());
    let Ok(out) = out else {
        record(500);
        return respond(500, &[], "git http-backend failed\n");
    };
    // CGI output: header lines, an empty line, the body.
    let raw = out.stdout;
    let (head, body) = match find(&raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(&raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => {
                record(502);
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                return respond(502, &[], format!("git http-backend: {err}\n"));
            }
        },
    };
    let mut status = 200u16;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_owned();
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((k.trim().to_owned(), v));
        }
    }
    record(status);
    let headers: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    respond(status, &headers, Bytes::copy_from_slice(body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
