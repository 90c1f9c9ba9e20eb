//! A fake GitHub REST API for Slipway's tests: a real HTTP server (axum, on a loopback port)
//! playing the endpoints Slipway calls, with GitHub's JSON shapes and status codes:
//! issue comments (`Link`-paginated with deliberately small pages), deployments and their
//! statuses, App installation look-ups and installation tokens (JWTs verified against the
//! App's public key).
//!
//! Every call is recorded for assertions, and faults can be injected: answer the next N calls
//! (optionally only those whose path contains a string) with a `403` primary rate limit, a
//! `429` secondary rate limit with `Retry-After`, or a `5xx`. The same controls exist over
//! HTTP under `/_fake/...` for tests that run the fake as a separate process.

// Handlers return a ready `Response` as their error: boxing it would only add noise here.
#![allow(clippy::result_large_err)]

pub mod payloads;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DOCS: &str = "https://docs.github.com/rest";

/// Errors starting or configuring the fake.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("binding the listener: {0}")]
    Bind(#[from] std::io::Error),
    #[error("invalid key: {0}")]
    Key(String),
}

/// What a faulty answer looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// `403` with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` this many seconds ahead.
    RateLimit { reset_in_secs: u64 },
    /// `429` (a secondary rate limit) with `Retry-After`.
    SecondaryRateLimit { retry_after_secs: u64 },
    /// This status (`500`, `502`, `503`...).
    ServerError { status: u16 },
    /// The normal answer, after a delay (a slow GitHub).
    Slow { millis: u64 },
}

/// Answer the next `times` matching calls with `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub times: u32,
    /// Only calls whose path contains this.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Only calls with this method (`GET`, `POST`...).
    #[serde(default)]
    pub method: Option<String>,
}

impl Fault {
    pub fn new(kind: FaultKind, times: u32) -> Self {
        Fault {
            kind,
            times,
            path_contains: None,
            method: None,
        }
    }

    pub fn on_path(mut self, contains: &str) -> Self {
        self.path_contains = Some(contains.to_owned());
        self
    }

    pub fn on_method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }
}

/// One recorded call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// The JSON request body, if any.
    pub body: Option<Value>,
    /// The credential presented: `token`, `installation:<id>`, `jwt:<app id>`, `invalid`, or
    /// `none` (never the secret itself).
    pub auth: String,
    /// The call was answered by an injected fault.
    pub faulted: bool,
}

/// A comment as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredComment {
    pub id: u64,
    pub body: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A deployment as stored, with its statuses in creation order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredDeployment {
    pub id: u64,
    pub repo: String,
    pub sha: String,
    pub git_ref: String,
    pub task: String,
    pub environment: String,
    pub description: Option<String>,
    pub transient_environment: bool,
    pub production_environment: bool,
    pub auto_merge: bool,
    pub required_contexts: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub statuses: Vec<StoredStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredStatus {
    pub id: u64,
    pub state: String,
    pub description: Option<String>,
    pub environment_url: Option<String>,
    pub log_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Settings of the fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The most comments per page whatever `per_page` asks (GitHub's is 100; small here so
    /// clients must follow `Link`).
    pub page_size: usize,
    /// How long installation tokens live (GitHub: one hour).
    pub token_lifetime: chrono::Duration,
    /// Plain tokens accepted for repository endpoints.
    pub tokens: Vec<String>,
    /// Where the API lives: empty like `api.github.com`, or `/api/v3` like GitHub Enterprise
    /// Server. The `/_fake/...` controls are always at the root.
    pub path_prefix: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            page_size: 3,
            token_lifetime: chrono::Duration::hours(1),
            tokens: Vec::new(),
            path_prefix: String::new(),
        }
    }
}

#[derive(Default)]
struct Data {
    tokens: HashSet<String>,
    apps: HashMap<u64, Vec<u8>>,
    // repo full name (lower case) -> installation id
    installations: HashMap<String, u64>,
    // installation id -> app id
    installation_apps: HashMap<u64, u64>,
    // token -> (installation id, expiry)
    installation_tokens: HashMap<String, (u64, DateTime<Utc>)>,
    tokens_issued: u64,
    comments: BTreeMap<(String, u64), Vec<StoredComment>>,
    deployments: BTreeMap<u64, StoredDeployment>,
    calls: Vec<Call>,
    faults: Vec<Fault>,
    rate_remaining: u64,
}

struct Inner {
    cfg: FakeConfig,
    data: Mutex<Data>,
    ids: AtomicU64,
    base: Mutex<String>,
    // Added to the wall clock: tests that move a client's virtual clock move this one too.
    offset: Mutex<chrono::Duration>,
}

impl Inner {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn base(&self) -> String {
        self.base.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running fake; dropping it stops the server.
pub struct FakeGithub {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl FakeGithub {
    /// Starts on `127.0.0.1:0` with the defaults.
    pub async fn start() -> Result<Self, FakeError> {
        Self::start_with(
            FakeConfig::default(),
            "127.0.0.1:0"
                .parse()
                .map_err(|_| FakeError::Bind(std::io::Error::other("bad default address")))?,
        )
        .await
    }

    /// Starts on `addr` (port 0 picks a free one).
    pub async fn start_with(cfg: FakeConfig, addr: SocketAddr) -> Result<Self, FakeError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let data = Data {
            tokens: cfg.tokens.iter().cloned().collect(),
            rate_remaining: 5000,
            ..Data::default()
        };
        let prefix = prefix_of(&cfg);
        let inner = Arc::new(Inner {
            cfg,
            data: Mutex::new(data),
            ids: AtomicU64::new(1000),
            base: Mutex::new(format!("http://{addr}{prefix}")),
            offset: Mutex::new(chrono::Duration::zero()),
        });
        let app = router(inner.clone(), &prefix);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeGithub {
            addr,
            inner,
            stop: Some(tx),
        })
    }

    /// `http://127.0.0.1:<port>[<prefix>]`, the API base URL to give the client.
    pub fn url(&self) -> String {
        self.inner.base()
    }

    /// Makes every installation token issued so far invalid (GitHub answers `401`).
    pub fn revoke_installation_tokens(&self) {
        self.inner.data().installation_tokens.clear();
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Moves the fake's clock forward (token expiry, timestamps, rate-limit resets), to follow
    /// a client running on a virtual clock.
    pub fn advance_clock(&self, d: std::time::Duration) {
        let mut o = self.inner.offset.lock().unwrap_or_else(|p| p.into_inner());
        *o += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    }

    /// Accepts `token` as a plain token.
    pub fn add_token(&self, token: &str) {
        self.inner.data().tokens.insert(token.to_owned());
    }

    /// Registers a GitHub App by its id and the PEM private key the client signs with (the
    /// fake keeps only the public half, to verify JWTs).
    pub fn register_app(&self, app_id: u64, private_key_pem: &str) -> Result<(), FakeError> {
        let public = public_key_der(private_key_pem)?;
        self.inner.data().apps.insert(app_id, public);
        Ok(())
    }

    /// Installs App `app_id` on repository `owner/name` as installation `installation_id`.
    pub fn install(&self, app_id: u64, full_name: &str, installation_id: u64) {
        let mut d = self.inner.data();
        d.installations
            .insert(full_name.to_ascii_lowercase(), installation_id);
        d.installation_apps.insert(installation_id, app_id);
    }

    /// Queues a fault; faults are consumed in the order added.
    pub fn inject(&self, fault: Fault) {
        self.inner.data().faults.push(fault);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.data().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.inner.data().calls.clear();
    }

    /// Installation tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.inner.data().tokens_issued
    }

    /// Comments of issue `number` of `owner/name`, oldest first.
    pub fn comments(&self, full_name: &str, number: u64) -> Vec<StoredComment> {
        self.inner
            .data()
            .comments
            .get(&(full_name.to_ascii_lowercase(), number))
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a comment as another user would (to check that clients skip it).
    pub fn add_comment(&self, full_name: &str, number: u64, author: &str, body: &str) -> u64 {
        let id = self.inner.next_id();
        let now = self.inner.now();
        self.inner
            .data()
            .comments
            .entry((full_name.to_ascii_lowercase(), number))
            .or_default()
            .push(StoredComment {
                id,
                body: body.to_owned(),
                author: author.to_owned(),
                created_at: now,
                updated_at: now,
            });
        id
    }

    /// Deployments of `owner/name`, oldest first.
    pub fn deployments(&self, full_name: &str) -> Vec<StoredDeployment> {
        let repo = full_name.to_ascii_lowercase();
        self.inner
            .data()
            .deployments
            .values()
            .filter(|d| d.repo == repo)
            .cloned()
            .collect()
    }
}

fn public_key_der(pem: &str) -> Result<Vec<u8>, FakeError> {
    use ring::signature::{KeyPair, RsaKeyPair};
    let mut label = String::new();
    let mut b64 = String::new();
    for line in pem.lines().map(str::trim) {
        if let Some(l) = line.strip_prefix("-----BEGIN ") {
            label = l.trim_end_matches('-').to_owned();
        } else if line.starts_with("-----END") {
            break;
        } else if !label.is_empty() {
            b64.push_str(line);
        }
    }
    let der = STANDARD
        .decode(b64)
        .map_err(|e| FakeError::Key(format!("base64: {e}")))?;
    let pair = match label.as_str() {
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        other => return Err(FakeError::Key(format!("unexpected PEM label {other:?}"))),
    }
    .map_err(|e| FakeError::Key(e.to_string()))?;
    Ok(pair.public_key().as_ref().to_vec())
}

type Shared = Arc<Inner>;

fn prefix_of(cfg: &FakeConfig) -> String {
    let p = cfg.path_prefix.trim_end_matches('/');
    if p.is_empty() || p.starts_with('/') {
        p.to_owned()
    } else {
        format!("/{p}")
    }
}

fn router(inner: Shared, prefix: &str) -> Router {
    let api: Router<Shared> = Router::new()
        .route(
            "/app/installations/{id}/access_tokens",
            post(create_installation_token),
        )
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}",
            patch(update_comment)
                .get(get_comment)
                .delete(delete_comment),
        )
        .route(
            "/repos/{owner}/{repo}/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/repos/{owner}/{repo}/deployments/{id}/statuses",
            get(list_statuses).post(create_status),
        );
    let api = if prefix.is_empty() {
        api
    } else {
        Router::new().nest(prefix, api)
    };
    api.route("/_fake/calls", get(admin_calls))
        .route("/_fake/faults", post(admin_fault))
        .route("/_fake/tokens", post(admin_token))
        .route("/_fake/apps", post(admin_app))
        .route("/_fake/installations", post(admin_installation))
        .route(
            "/_fake/repos/{owner}/{repo}/deployments",
            get(admin_deployments),
        )
        .route(
            "/_fake/repos/{owner}/{repo}/issues/{number}/comments",
            get(admin_comments),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(inner.clone(), record))
        .with_state(inner)
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "message": message, "documentation_url": DOCS })),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

/// Records the call, answers injected faults, and adds GitHub's rate-limit headers.
async fn record(State(inner): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let auth = describe_auth(&inner, req.headers());
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let json_body = serde_json::from_slice::<Value>(&bytes).ok();
    let admin = path.starts_with("/_fake/");

    let fault = if admin {
        None
    } else {
        take_fault(&inner, &method, &path)
    };
    if let Some(FaultKind::Slow { millis }) = &fault {
        tokio::time::sleep(std::time::Duration::from_millis(*millis)).await;
    }
    let mut resp = match &fault {
        Some(kind) if !matches!(kind, FaultKind::Slow { .. }) => fault_response(kind, inner.now()),
        _ => {
            let req = Request::from_parts(parts, Body::from(bytes));
            next.run(req).await
        }
    };
    if !admin {
        let mut d = inner.data();
        if fault.is_none() || matches!(fault, Some(FaultKind::Slow { .. })) {
            d.rate_remaining = d.rate_remaining.saturating_sub(1);
        }
        let remaining = d.rate_remaining;
        d.calls.push(Call {
            method: method.to_string(),
            path,
            query,
            status: resp.status().as_u16(),
            body: json_body,
            auth,
            faulted: fault
                .as_ref()
                .is_some_and(|f| !matches!(f, FaultKind::Slow { .. })),
        });
        drop(d);
        let h = resp.headers_mut();
        if !matches!(fault, Some(FaultKind::RateLimit { .. })) {
            let reset = inner.now().timestamp() + 3600;
            insert(h, "x-ratelimit-limit", "5000".into());
            insert(h, "x-ratelimit-remaining", remaining.to_string());
            insert(h, "x-ratelimit-used", (5000 - remaining).to_string());
            insert(h, "x-ratelimit-reset", reset.to_string());
            insert(h, "x-ratelimit-resource", "core".into());
        }
        insert(
            h,
            "x-github-request-id",
            format!("FAKE:{}", inner.next_id()),
        );
    }
    resp
}

fn insert(h: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

fn take_fault(inner: &Inner, method: &Method, path: &str) -> Option<FaultKind> {
    let mut d = inner.data();
    let i = d.faults.iter().position(|f| {
        f.times > 0
            && f.path_contains.as_deref().is_none_or(|p| path.contains(p))
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
    })?;
    let f = &mut d.faults[i];
    f.times -= 1;
    let kind = f.kind.clone();
    if f.times == 0 {
        d.faults.remove(i);
    }
    Some(kind)
}

fn fault_response(kind: &FaultKind, now: DateTime<Utc>) -> Response {
    match kind {
        FaultKind::RateLimit { reset_in_secs } => {
            let mut r = error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.",
            );
            let h = r.headers_mut();
            let reset = now.timestamp() + *reset_in_secs as i64;
            insert(h, "x-ratelimit-limit", "5000".into());
            insert(h, "x-ratelimit-remaining", "0".into());
            insert(h, "x-ratelimit-used", "5000".into());
            insert(h, "x-ratelimit-reset", reset.to_string());
            insert(h, "x-ratelimit-resource", "core".into());
            r
        }
        FaultKind::SecondaryRateLimit { retry_after_secs } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            insert(r.headers_mut(), "retry-after", retry_after_secs.to_string());
            r
        }
        FaultKind::ServerError { status } => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            error(code, "Server Error")
        }
        // Answered normally by the caller after the delay.
        FaultKind::Slow { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error"),
    }
}

/// Who is calling, as recorded (never the secret).
enum Caller {
    Token,
    Installation(u64),
    App(u64),
    Invalid,
    None,
}

fn caller(inner: &Inner, headers: &HeaderMap) -> Caller {
    let Some(raw) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Caller::None;
    };
    let cred = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .or_else(|| raw.strip_prefix("token "))
        .unwrap_or("")
        .trim();
    if cred.is_empty() {
        return Caller::Invalid;
    }
    let d = inner.data();
    if d.tokens.contains(cred) {
        return Caller::Token;
    }
    if let Some((inst, exp)) = d.installation_tokens.get(cred) {
        return if *exp > inner.now() {
            Caller::Installation(*inst)
        } else {
            Caller::Invalid
        };
    }
    if cred.matches('.').count() == 2
        && let Some(app) = verify_jwt(&d.apps, cred)
    {
        return Caller::App(app);
    }
    Caller::Invalid
}

fn describe_auth(inner: &Inner, headers: &HeaderMap) -> String {
    match caller(inner, headers) {
        Caller::Token => "token".into(),
        Caller::Installation(i) => format!("installation:{i}"),
        Caller::App(a) => format!("jwt:{a}"),
        Caller::Invalid => "invalid".into(),
        Caller::None => "none".into(),
    }
}

/// Verifies an RS256 App JWT: signature by a registered App's key, `iss` that App, and a
/// lifetime of at most ten minutes (GitHub's rule; the fake does not compare with its clock,
/// so clients under a virtual clock still pass).
fn verify_jwt(apps: &HashMap<u64, Vec<u8>>, jwt: &str) -> Option<u64> {
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let mut parts = jwt.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "RS256" {
        return None;
    }
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let iss = match claims.get("iss")? {
        Value::String(s) => s.parse::<u64>().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    let iat = claims.get("iat")?.as_i64()?;
    let exp = claims.get("exp")?.as_i64()?;
    if exp <= iat || exp - iat > 11 * 60 {
        return None;
    }
    let key = apps.get(&iss)?;
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .ok()?;
    Some(iss)
}

fn bad_credentials() -> Response {
    error(StatusCode::UNAUTHORIZED, "Bad credentials")
}

/// Repository endpoints: a plain token, or an installation token of an installation on it.
fn authorize_repo(inner: &Inner, headers: &HeaderMap, repo: &str) -> Result<String, Response> {
    match caller(inner, headers) {
        Caller::Token => Ok("slipway-bot".into()),
        Caller::Installation(i) => {
            let d = inner.data();
            if d.installations.get(repo) == Some(&i) {
                Ok("slipway[bot]".into())
            } else {
                Err(error(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by integration",
                ))
            }
        }
        Caller::App(_) => Err(error(
            StatusCode::FORBIDDEN,
            "A JSON web token could not be decoded",
        )),
        Caller::Invalid | Caller::None => Err(bad_credentials()),
    }
}

fn authorize_app(inner: &Inner, headers: &HeaderMap) -> Result<u64, Response> {
    match caller(inner, headers) {
        Caller::App(a) => Ok(a),
        Caller::None => Err(error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        )),
    }
}

fn repo_key(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}").to_ascii_lowercase()
}

fn user_json(login: &str) -> Value {
    let bot = login.ends_with("[bot]");
    json!({
        "login": login,
        "id": 41898282,
        "type": if bot { "Bot" } else { "User" },
        "site_admin": false,
    })
}

async fn create_installation_token(
    State(inner): State<Shared>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let app = match authorize_app(&inner, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut d = inner.data();
    if d.installation_apps.get(&id) != Some(&app) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    d.tokens_issued += 1;
    let token = format!(
        "ghs_{:0>36}",
        format!(
            "{:x}{:x}",
            Utc::now().timestamp_nanos_opt().unwrap_or(0),
            d.tokens_issued
        )
    );
    let token: String = token.chars().take(40).collect();
    let expires_at = inner.now() + inner.cfg.token_lifetime;
    d.installation_tokens
        .insert(token.clone(), (id, expires_at));
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "token": token,
            "expires_at": expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "permissions": {
                "pull_requests": "write",
                "issues": "write",
                "deployments": "write",
                "contents": "read",
                "metadata": "read"
            },
            "repository_selection": "all"
        })),
    )
        .into_response()
}

async fn repo_installation(
    State(inner): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let app = match authorize_app(&inner, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let d = inner.data();
    let Some(id) = d.installations.get(&repo_key(&owner, &repo)).copied() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if d.installation_apps.get(&id) != Some(&app) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let base = inner.base();
    axum::Json(json!({
        "id": id,
        "account": { "login": owner, "type": "Organization" },
        "access_tokens_url": format!("{base}/app/installations/{id}/access_tokens"),
        "repositories_url": format!("{base}/installation/repositories"),
        "app_id": app,
        "target_type": "Organization",
        "permissions": { "pull_requests": "write", "deployments": "write", "contents": "read" },
        "events": ["pull_request"],
        "repository_selection": "all",
    }))
    .into_response()
}

fn comment_json(base: &str, owner: &str, repo: &str, number: u64, c: &StoredComment) -> Value {
    json!({
        "id": c.id,
        "node_id": format!("IC_fake{}", c.id),
        "url": format!("{base}/repos/{owner}/{repo}/issues/comments/{}", c.id),
        "html_url": format!("https://github.com/{owner}/{repo}/pull/{number}#issuecomment-{}", c.id),
        "issue_url": format!("{base}/repos/{owner}/{repo}/issues/{number}"),
        "body": c.body,
        "user": user_json(&c.author),
        "created_at": c.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "updated_at": c.updated_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "author_association": "NONE",
    })
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list_comments(
    State(inner): State<Shared>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let per_page = q
        .per_page
        .unwrap_or(30)
        .clamp(1, 100)
        .min(inner.cfg.page_size.max(1));
    let page = q.page.unwrap_or(1).max(1);
    let all = inner
        .data()
        .comments
        .get(&(key, number))
        .cloned()
        .unwrap_or_default();
    let last = all.len().div_ceil(per_page).max(1);
    let base = inner.base();
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|c| comment_json(&base, &owner, &repo, number, c))
        .collect();
    let link_to = |p: usize| {
        format!(
            "<{base}/repos/{owner}/{repo}/issues/{number}/comments?per_page={per_page}&page={p}>"
        )
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    let mut resp = axum::Json(items).into_response();
    if !links.is_empty() {
        insert(resp.headers_mut(), "link", links.join(", "));
    }
    resp
}

#[derive(Deserialize)]
struct CommentBody {
    body: Option<String>,
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(bytes)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "Problems parsing JSON"))
}

fn validation_failed(field: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "Issue", "code": "missing_field", "field": field }],
            "documentation_url": DOCS,
        })),
    )
        .into_response()
}

async fn create_comment(
    State(inner): State<Shared>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let key = repo_key(&owner, &repo);
    let author = match authorize_repo(&inner, &headers, &key) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body: CommentBody = match parse_json(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(text) = body.body.filter(|b| !b.is_empty()) else {
        return validation_failed("body");
    };
    let now = inner.now();
    let c = StoredComment {
        id: inner.next_id(),
        body: text,
        author,
        created_at: now,
        updated_at: now,
    };
    inner
        .data()
        .comments
        .entry((key, number))
        .or_default()
        .push(c.clone());
    let mut resp = (
        StatusCode::CREATED,
        axum::Json(comment_json(&inner.base(), &owner, &repo, number, &c)),
    )
        .into_response();
    insert(
        resp.headers_mut(),
        "location",
        format!(
            "{}/repos/{owner}/{repo}/issues/comments/{}",
            inner.base(),
            c.id
        ),
    );
    resp
}

fn find_comment<'a>(d: &'a mut Data, repo: &str, id: u64) -> Option<(u64, &'a mut StoredComment)> {
    d.comments
        .iter_mut()
        .filter(|((r, _), _)| r == repo)
        .find_map(|((_, n), cs)| cs.iter_mut().find(|c| c.id == id).map(|c| (*n, c)))
}

async fn get_comment(
    State(inner): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let mut d = inner.data();
    match find_comment(&mut d, &key, id) {
        Some((n, c)) => {
            let c = c.clone();
            drop(d);
            axum::Json(comment_json(&inner.base(), &owner, &repo, n, &c)).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn update_comment(
    State(inner): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let body: CommentBody = match parse_json(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(text) = body.body.filter(|b| !b.is_empty()) else {
        return validation_failed("body");
    };
    let mut d = inner.data();
    match find_comment(&mut d, &key, id) {
        Some((n, c)) => {
            c.body = text;
            c.updated_at = inner.now();
            let c = c.clone();
            drop(d);
            axum::Json(comment_json(&inner.base(), &owner, &repo, n, &c)).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn delete_comment(
    State(inner): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let mut d = inner.data();
    for ((r, _), cs) in d.comments.iter_mut() {
        if *r == key
            && let Some(i) = cs.iter().position(|c| c.id == id)
        {
            cs.remove(i);
            return StatusCode::NO_CONTENT.into_response();
        }
    }
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn deployment_json(base: &str, owner: &str, repo: &str, d: &StoredDeployment) -> Value {
    let url = format!("{base}/repos/{owner}/{repo}/deployments/{}", d.id);
    json!({
        "url": url,
        "id": d.id,
        "node_id": format!("DE_fake{}", d.id),
        "sha": d.sha,
        "ref": d.git_ref,
        "task": d.task,
        "payload": {},
        "original_environment": d.environment,
        "environment": d.environment,
        "description": d.description,
        "creator": user_json("slipway[bot]"),
        "created_at": d.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "updated_at": d.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "statuses_url": format!("{url}/statuses"),
        "repository_url": format!("{base}/repos/{owner}/{repo}"),
        "transient_environment": d.transient_environment,
        "production_environment": d.production_environment,
    })
}

fn status_json(
    base: &str,
    owner: &str,
    repo: &str,
    d: &StoredDeployment,
    s: &StoredStatus,
) -> Value {
    let dep_url = format!("{base}/repos/{owner}/{repo}/deployments/{}", d.id);
    json!({
        "url": format!("{dep_url}/statuses/{}", s.id),
        "id": s.id,
        "node_id": format!("DES_fake{}", s.id),
        "state": s.state,
        "creator": user_json("slipway[bot]"),
        "description": s.description.clone().unwrap_or_default(),
        "environment": d.environment,
        "target_url": s.log_url.clone().unwrap_or_default(),
        "created_at": s.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "updated_at": s.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "deployment_url": dep_url,
        "repository_url": format!("{base}/repos/{owner}/{repo}"),
        "environment_url": s.environment_url.clone().unwrap_or_default(),
        "log_url": s.log_url.clone().unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct DeploymentQuery {
    sha: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    task: Option<String>,
    environment: Option<String>,
    per_page: Option<usize>,
}

async fn list_deployments(
    State(inner): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<DeploymentQuery>,
    headers: HeaderMap,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let base = inner.base();
    let d = inner.data();
    // Newest first, as GitHub lists them.
    let items: Vec<Value> = d
        .deployments
        .values()
        .rev()
        .filter(|x| x.repo == key)
        .filter(|x| q.sha.as_deref().is_none_or(|s| s == x.sha))
        .filter(|x| q.git_ref.as_deref().is_none_or(|s| s == x.git_ref))
        .filter(|x| q.task.as_deref().is_none_or(|s| s == x.task))
        .filter(|x| q.environment.as_deref().is_none_or(|s| s == x.environment))
        .take(q.per_page.unwrap_or(30).clamp(1, 100))
        .map(|x| deployment_json(&base, &owner, &repo, x))
        .collect();
    axum::Json(items).into_response()
}

#[derive(Deserialize)]
struct DeploymentBody {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    task: Option<String>,
    auto_merge: Option<bool>,
    required_contexts: Option<Vec<String>>,
    environment: Option<String>,
    description: Option<String>,
    transient_environment: Option<bool>,
    production_environment: Option<bool>,
}

async fn create_deployment(
    State(inner): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let body: DeploymentBody = match parse_json(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(git_ref) = body.git_ref.filter(|r| !r.is_empty()) else {
        return validation_failed("ref");
    };
    // The fake knows no branches: a ref that looks like a sha is the sha, otherwise a
    // stand-in derived from the name.
    let sha = if git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
        git_ref.to_ascii_lowercase()
    } else {
        format!("{:0>40}", format!("{:x}", git_ref.len()))
    };
    let environment = body.environment.unwrap_or_else(|| "production".into());
    let production = body
        .production_environment
        .unwrap_or(environment == "production");
    let dep = StoredDeployment {
        id: inner.next_id(),
        repo: key,
        sha,
        git_ref,
        task: body.task.unwrap_or_else(|| "deploy".into()),
        environment,
        description: body.description,
        transient_environment: body.transient_environment.unwrap_or(false),
        production_environment: production,
        auto_merge: body.auto_merge.unwrap_or(true),
        required_contexts: body.required_contexts,
        created_at: inner.now(),
        statuses: Vec::new(),
    };
    inner.data().deployments.insert(dep.id, dep.clone());
    (
        StatusCode::CREATED,
        axum::Json(deployment_json(&inner.base(), &owner, &repo, &dep)),
    )
        .into_response()
}

async fn list_statuses(
    State(inner): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let base = inner.base();
    let d = inner.data();
    match d.deployments.get(&id).filter(|x| x.repo == key) {
        Some(dep) => axum::Json(
            dep.statuses
                .iter()
                .rev()
                .map(|s| status_json(&base, &owner, &repo, dep, s))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[derive(Deserialize)]
struct StatusBody {
    state: Option<String>,
    log_url: Option<String>,
    target_url: Option<String>,
    description: Option<String>,
    environment_url: Option<String>,
}

async fn create_status(
    State(inner): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let key = repo_key(&owner, &repo);
    if let Err(r) = authorize_repo(&inner, &headers, &key) {
        return r;
    }
    let body: StatusBody = match parse_json(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    const STATES: [&str; 7] = [
        "error",
        "failure",
        "inactive",
        "in_progress",
        "queued",
        "pending",
        "success",
    ];
    let Some(state) = body.state.filter(|s| STATES.contains(&s.as_str())) else {
        return validation_failed("state");
    };
    if body
        .description
        .as_deref()
        .is_some_and(|d| d.chars().count() > 140)
    {
        return validation_failed("description");
    }
    let status = StoredStatus {
        id: inner.next_id(),
        state,
        description: body.description,
        environment_url: body.environment_url,
        log_url: body.log_url.or(body.target_url),
        created_at: inner.now(),
    };
    let base = inner.base();
    let mut d = inner.data();
    match d.deployments.get_mut(&id).filter(|x| x.repo == key) {
        Some(dep) => {
            dep.statuses.push(status.clone());
            let dep = dep.clone();
            drop(d);
            (
                StatusCode::CREATED,
                axum::Json(status_json(&base, &owner, &repo, &dep, &status)),
            )
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn admin_calls(State(inner): State<Shared>) -> Response {
    axum::Json(inner.data().calls.clone()).into_response()
}

async fn admin_fault(State(inner): State<Shared>, bytes: Bytes) -> Response {
    match parse_json::<Fault>(&bytes) {
        Ok(f) => {
            inner.data().faults.push(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

async fn admin_token(State(inner): State<Shared>, bytes: Bytes) -> Response {
    match parse_json::<TokenBody>(&bytes) {
        Ok(t) => {
            inner.data().tokens.insert(t.token);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct AppBody {
    app_id: u64,
    private_key_pem: String,
}

async fn admin_app(State(inner): State<Shared>, bytes: Bytes) -> Response {
    let body: AppBody = match parse_json(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match public_key_der(&body.private_key_pem) {
        Ok(k) => {
            inner.data().apps.insert(body.app_id, k);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct InstallationBody {
    app_id: u64,
    repo: String,
    installation_id: u64,
}

async fn admin_installation(State(inner): State<Shared>, bytes: Bytes) -> Response {
    let body: InstallationBody = match parse_json(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut d = inner.data();
    d.installations
        .insert(body.repo.to_ascii_lowercase(), body.installation_id);
    d.installation_apps
        .insert(body.installation_id, body.app_id);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_deployments(
    State(inner): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    let key = repo_key(&owner, &repo);
    let d = inner.data();
    let deps: Vec<StoredDeployment> = d
        .deployments
        .values()
        .filter(|x| x.repo == key)
        .cloned()
        .collect();
    axum::Json(deps).into_response()
}

async fn admin_comments(
    State(inner): State<Shared>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Response {
    let key = repo_key(&owner, &repo);
    let comments = inner
        .data()
        .comments
        .get(&(key, number))
        .cloned()
        .unwrap_or_default();
    axum::Json(comments).into_response()
}
