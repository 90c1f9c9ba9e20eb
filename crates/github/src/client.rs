//! A GitHub REST client over reqwest, with only the operations Slipway needs: issue comments,
//! deployments and their statuses, and the GitHub App installation dance.
//!
//! Authentication is a plain token or a GitHub App (an RS256 JWT from the app id and private
//! key, exchanged for an installation token that is cached until shortly before it expires).
//! Rate limits are honoured (`Retry-After`, or `X-RateLimit-Remaining: 0` with
//! `X-RateLimit-Reset`), `5xx` and transport errors are retried with bounded jittered backoff.
//! Tokens never appear in Debug output, logs or errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use slipway_core::BackoffPolicy;

use crate::clock::{Clock, SystemClock};
use crate::jwt::AppKey;

/// `https://api.github.com`; GitHub Enterprise Server uses `https://<host>/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Everything that can go wrong talking to GitHub. Messages never carry a token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid GitHub client configuration: {0}")]
    Config(String),
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("rate limited by GitHub for {retry_after:?}, longer than this client waits")]
    RateLimited { retry_after: Duration },
    #[error("GitHub unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("unexpected response from GitHub: {0}")]
    Decode(String),
    #[error("the GitHub App is not installed on {0}")]
    NotInstalled(String),
}

impl ClientError {
    /// Whether trying again later may succeed (the status reporter retries these).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::RateLimited { .. } | ClientError::Unavailable { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The wait GitHub asked for, if this is a rate limit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A secret string whose Debug shows nothing of it (and no Display, no equality: compare
/// secrets with `subtle` if ever needed).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A personal access token (fine-grained or classic) or any other bearer token.
    Token(Secret),
    /// A GitHub App: its id and the PEM private key downloaded from its settings page.
    App {
        app_id: u64,
        private_key_pem: Secret,
    },
}

impl Credentials {
    /// Chooses credentials from Slipway's settings (`SLIPWAY_GITHUB_APP_ID`,
    /// `SLIPWAY_GITHUB_PRIVATE_KEY_FILE`, `SLIPWAY_GITHUB_TOKEN`): the GitHub App when its id and
    /// key file are given, else the token, else `None` (nothing is reported to GitHub). Half an
    /// App configuration is an error rather than a silent fallback.
    pub fn from_settings(
        app_id: Option<u64>,
        private_key_file: Option<&std::path::Path>,
        token: Option<&str>,
    ) -> Result<Option<Credentials>, ClientError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        match (app_id, private_key_file) {
            (Some(app_id), Some(path)) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    ClientError::Config(format!(
                        "SLIPWAY_GITHUB_PRIVATE_KEY_FILE ({}): the file cannot be read: {e}",
                        path.display()
                    ))
                })?;
                Ok(Some(Credentials::App {
                    app_id,
                    private_key_pem: Secret::new(pem),
                }))
            }
            (Some(_), None) => Err(ClientError::Config(
                "SLIPWAY_GITHUB_APP_ID is set but SLIPWAY_GITHUB_PRIVATE_KEY_FILE is not: a GitHub App needs both".into(),
            )),
            (None, Some(_)) => Err(ClientError::Config(
                "SLIPWAY_GITHUB_PRIVATE_KEY_FILE is set but SLIPWAY_GITHUB_APP_ID is not: a GitHub App needs both".into(),
            )),
            (None, None) => Ok(token.map(|t| Credentials::Token(Secret::new(t)))),
        }
    }
}

/// How hard the client tries before giving up; bounded so a caller never hangs.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, counting the first (rate-limit waits count too).
    pub max_attempts: u32,
    /// Spacing of retries after `5xx` and transport errors.
    pub backoff: BackoffPolicy,
    /// The longest rate-limit wait the client sits out; a longer one is returned as
    /// [`ClientError::RateLimited`] so the caller can schedule it.
    pub max_rate_limit_wait: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff: BackoffPolicy {
                base: Duration::from_millis(500),
                factor: 4,
                cap: Duration::from_secs(30),
            },
            max_rate_limit_wait: Duration::from_secs(120),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Client settings; `ClientConfig::new(url, credentials)` gives the defaults.
#[derive(Clone)]
pub struct ClientConfig {
    pub api_url: String,
    pub credentials: Credentials,
    pub retry: RetryPolicy,
    /// An installation token is renewed this long before GitHub says it expires.
    pub token_refresh_margin: Duration,
    pub user_agent: String,
    pub clock: Arc<dyn Clock>,
}

impl ClientConfig {
    pub fn new(api_url: impl Into<String>, credentials: Credentials) -> Self {
        ClientConfig {
            api_url: api_url.into(),
            credentials,
            retry: RetryPolicy::default(),
            token_refresh_margin: Duration::from_secs(5 * 60),
            user_agent: "slipway".into(),
            clock: Arc::new(SystemClock),
        }
    }
}

enum Auth {
    Token(Secret),
    App {
        app_id: u64,
        key: Box<AppKey>,
        installations: Mutex<HashMap<String, u64>>,
        tokens: tokio::sync::Mutex<HashMap<u64, CachedToken>>,
    },
}

struct CachedToken {
    token: Secret,
    expires_at: DateTime<Utc>,
}

/// Which credential a request carries.
#[derive(Clone, Copy)]
enum As<'a> {
    /// The token, or the installation token of this repository (`owner/name`).
    Repo(&'a str),
    /// The App's JWT (`/app/...` endpoints and installation look-ups).
    AppJwt,
}

/// A GitHub REST client. Cheap to share behind an `Arc`.
pub struct GithubClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    retry: RetryPolicy,
    margin: chrono::Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("base", &self.base)
            .field(
                "auth",
                &match self.auth {
                    Auth::Token(_) => "token([redacted])".to_owned(),
                    Auth::App { app_id, .. } => format!("app({app_id})"),
                },
            )
            .finish_non_exhaustive()
    }
}

/// An issue or pull-request comment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct User {
    pub login: String,
}

/// A deployment as GitHub returns it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Deployment {
    pub id: u64,
    #[serde(default)]
    pub sha: String,
    #[serde(rename = "ref", default)]
    pub git_ref: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub transient_environment: Option<bool>,
}

/// `POST /repos/{owner}/{repo}/deployments`.
#[derive(Debug, Clone, Serialize)]
pub struct NewDeployment {
    /// A branch, tag or sha; Slipway deploys the head sha.
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub task: String,
    pub environment: String,
    pub description: Option<String>,
    pub transient_environment: bool,
    pub production_environment: bool,
    /// Never merge the default branch into the PR for a preview.
    pub auto_merge: bool,
    /// Previews do not wait for commit statuses.
    pub required_contexts: Vec<String>,
}

impl NewDeployment {
    /// A preview deployment of `sha` to `environment`: transient, not production, no auto
    /// merge, no required contexts.
    pub fn preview(sha: &str, environment: &str) -> Self {
        NewDeployment {
            git_ref: sha.to_owned(),
            task: "deploy:preview".into(),
            environment: environment.to_owned(),
            description: Some("Slipway preview".into()),
            transient_environment: true,
            production_environment: false,
            auto_merge: false,
            required_contexts: Vec::new(),
        }
    }
}

/// The states of a deployment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Error,
    Failure,
    Inactive,
    InProgress,
    Queued,
    Pending,
    Success,
}

/// `POST /repos/{owner}/{repo}/deployments/{id}/statuses`.
#[derive(Debug, Clone, Serialize)]
pub struct NewDeploymentStatus {
    pub state: DeploymentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// At most 140 characters (GitHub's limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    /// GitHub's default marks older deployments inactive, but only non-transient ones; we mark
    /// our own explicitly, so this is always sent as `false`.
    pub auto_inactive: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DeploymentStatus {
    pub id: u64,
    pub state: DeploymentState,
    #[serde(default)]
    pub environment_url: Option<String>,
    #[serde(default)]
    pub log_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: DateTime<Utc>,
}

struct Reply {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl GithubClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let base = config.api_url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base)
            .map_err(|_| ClientError::Config("the GitHub API URL is not a URL".into()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ClientError::Config(
                "the GitHub API URL must be http(s)://host[/path]".into(),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ClientError::Config(
                "the GitHub API URL must not carry credentials".into(),
            ));
        }
        let auth = match config.credentials {
            Credentials::Token(t) => {
                if t.expose().trim().is_empty() {
                    return Err(ClientError::Config("the GitHub token is empty".into()));
                }
                Auth::Token(Secret::new(t.expose().trim()))
            }
            Credentials::App {
                app_id,
                private_key_pem,
            } => Auth::App {
                app_id,
                key: Box::new(
                    AppKey::from_pem(private_key_pem.expose()).map_err(ClientError::Config)?,
                ),
                installations: Mutex::new(HashMap::new()),
                tokens: tokio::sync::Mutex::new(HashMap::new()),
            },
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "X-GitHub-Api-Version",
            HeaderValue::from_static("2022-11-28"),
        );
        let ua = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| ClientError::Config("the user agent is not a valid header".into()))?;
        headers.insert(USER_AGENT, ua);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.retry.timeout)
            // A redirect could carry the Authorization header to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Config(format!("building the HTTP client: {e}")))?;
        Ok(GithubClient {
            http,
            base,
            auth,
            margin: chrono::Duration::from_std(config.token_refresh_margin)
                .unwrap_or(chrono::Duration::minutes(5)),
            retry: config.retry,
            clock: config.clock,
        })
    }

    /// The clock this client waits on (the status reporter waits on it too).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Tells the client which App installation serves `owner/repo` (webhook deliveries carry
    /// it), sparing a look-up.
    pub fn set_installation(&self, owner: &str, repo: &str, installation_id: u64) {
        if let Auth::App { installations, .. } = &self.auth {
            lock(installations).insert(repo_key(owner, repo), installation_id);
        }
    }

    /// `GET /repos/{owner}/{repo}/installation` (as the App).
    pub async fn repo_installation(
        &self,
        owner: &str,
        repo: &str,
    ) -> Result<Installation, ClientError> {
        let path = format!("/repos/{}/{}/installation", seg(owner)?, seg(repo)?);
        match self
            .request_json::<Installation>(Method::GET, &path, As::AppJwt, None)
            .await
        {
            Err(ClientError::Api { status: 404, .. }) => {
                Err(ClientError::NotInstalled(format!("{owner}/{repo}")))
            }
            other => other,
        }
    }

    /// All comments of issue or pull request `number`, following `Link: rel="next"`.
    pub async fn list_issue_comments(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<Comment>, ClientError> {
        let full = format!("{owner}/{repo}");
        let mut url = format!(
            "{}/repos/{}/{}/issues/{number}/comments?per_page=100",
            self.base,
            seg(owner)?,
            seg(repo)?
        );
        let mut all = Vec::new();
        // GitHub caps a PR at a few thousand comments; the bound only guards against a loop.
        for _ in 0..1000 {
            let reply = self.send(Method::GET, &url, As::Repo(&full), None).await?;
            let page: Vec<Comment> = decode(&reply.body)?;
            all.extend(page);
            match next_link(&reply.headers) {
                Some(next) => {
                    if !next.starts_with(&format!("{}/", self.base)) {
                        // Never send our token to a host the Link header names.
                        return Err(ClientError::Decode(
                            "pagination link points outside the API".into(),
                        ));
                    }
                    url = next;
                }
                None => return Ok(all),
            }
        }
        Err(ClientError::Decode("too many pages of comments".into()))
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments`.
    pub async fn create_issue_comment(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<Comment, ClientError> {
        let path = format!(
            "/repos/{}/{}/issues/{number}/comments",
            seg(owner)?,
            seg(repo)?
        );
        let full = format!("{owner}/{repo}");
        self.request_json(
            Method::POST,
            &path,
            As::Repo(&full),
            Some(&serde_json::json!({ "body": body })),
        )
        .await
    }

    /// `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`.
    pub async fn update_issue_comment(
        &self,
        owner: &str,
        repo: &str,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, ClientError> {
        let path = format!(
            "/repos/{}/{}/issues/comments/{comment_id}",
            seg(owner)?,
            seg(repo)?
        );
        let full = format!("{owner}/{repo}");
        self.request_json(
            Method::PATCH,
            &path,
            As::Repo(&full),
            Some(&serde_json::json!({ "body": body })),
        )
        .await
    }

    /// `DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}` (removes duplicates that
    /// another process may have created).
    pub async fn delete_issue_comment(
        &self,
        owner: &str,
        repo: &str,
        comment_id: u64,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/repos/{}/{}/issues/comments/{comment_id}",
            seg(owner)?,
            seg(repo)?
        );
        let full = format!("{owner}/{repo}");
        let url = format!("{}{path}", self.base);
        self.send(Method::DELETE, &url, As::Repo(&full), None)
            .await
            .map(|_| ())
    }

    /// `POST /repos/{owner}/{repo}/deployments`.
    pub async fn create_deployment(
        &self,
        owner: &str,
        repo: &str,
        deployment: &NewDeployment,
    ) -> Result<Deployment, ClientError> {
        let path = format!("/repos/{}/{}/deployments", seg(owner)?, seg(repo)?);
        let full = format!("{owner}/{repo}");
        let body = serde_json::to_value(deployment)
            .map_err(|e| ClientError::Decode(format!("encoding the deployment: {e}")))?;
        let url = format!("{}{path}", self.base);
        let reply = self
            .send(Method::POST, &url, As::Repo(&full), Some(&body))
            .await?;
        // 202 means GitHub merged the base branch instead of deploying (auto_merge), which we
        // never ask for; it has no deployment id.
        decode(&reply.body)
    }

    /// `GET /repos/{owner}/{repo}/deployments?environment=..[&sha=..]` (first page, newest
    /// first).
    pub async fn list_deployments(
        &self,
        owner: &str,
        repo: &str,
        environment: &str,
        sha: Option<&str>,
    ) -> Result<Vec<Deployment>, ClientError> {
        let mut url = url::Url::parse(&format!(
            "{}/repos/{}/{}/deployments",
            self.base,
            seg(owner)?,
            seg(repo)?
        ))
        .map_err(|e| ClientError::Config(format!("building a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("environment", environment)
            .append_pair("per_page", "100");
        if let Some(sha) = sha {
            url.query_pairs_mut().append_pair("sha", sha);
        }
        let full = format!("{owner}/{repo}");
        let reply = self
            .send(Method::GET, url.as_str(), As::Repo(&full), None)
            .await?;
        decode(&reply.body)
    }

    /// `POST /repos/{owner}/{repo}/deployments/{id}/statuses`.
    pub async fn create_deployment_status(
        &self,
        owner: &str,
        repo: &str,
        deployment_id: u64,
        status: &NewDeploymentStatus,
    ) -> Result<DeploymentStatus, ClientError> {
        let path = format!(
            "/repos/{}/{}/deployments/{deployment_id}/statuses",
            seg(owner)?,
            seg(repo)?
        );
        let full = format!("{owner}/{repo}");
        let body = serde_json::to_value(status)
            .map_err(|e| ClientError::Decode(format!("encoding the status: {e}")))?;
        self.request_json(Method::POST, &path, As::Repo(&full), Some(&body))
            .await
    }

    async fn request_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        who: As<'_>,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let reply = self.send(method, &url, who, body).await?;
        decode(&reply.body)
    }

    /// One request with authentication, rate-limit waits and retries.
    async fn send(
        &self,
        method: Method,
        url: &str,
        who: As<'_>,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        let max = self.retry.max_attempts.max(1);
        let mut failures = 0u32;
        let mut last = String::new();
        let mut refreshed = false;
        for attempt in 1..=max {
            let auth = self.authorization(who).await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .header(AUTHORIZATION, auth);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // The URL is ours and holds no secret, but keep errors short.
                    last = format!("transport: {}", e.without_url());
                    tracing::debug!(%method, attempt, error = %last, "GitHub request failed");
                    failures += 1;
                    if attempt < max {
                        self.clock.sleep(self.retry.backoff.delay(failures)).await;
                    }
                    continue;
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = match resp.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    // The answer was cut off: as good as a transport error.
                    last = format!("reading the answer: {}", e.without_url());
                    failures += 1;
                    if attempt < max {
                        self.clock.sleep(self.retry.backoff.delay(failures)).await;
                    }
                    continue;
                }
            };
            // The URL holds no secret (credentials travel in a sensitive header only).
            tracing::debug!(%method, url, status = status.as_u16(), attempt, "GitHub request");
            if status.is_success() {
                return Ok(Reply {
                    headers,
                    body: bytes,
                });
            }
            let message = api_message(&bytes);
            if let Some(wait) = self.rate_limit_wait(status, &headers, &message) {
                if wait > self.retry.max_rate_limit_wait || attempt == max {
                    return Err(ClientError::RateLimited { retry_after: wait });
                }
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "GitHub rate limit; waiting"
                );
                self.clock.sleep(wait).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED
                && !refreshed
                && attempt < max
                && self.forget_token(who).await
            {
                refreshed = true;
                // An installation token revoked or expired early: fetch a new one once.
                continue;
            }
            if status.is_server_error() {
                last = format!("{status}: {message}");
                failures += 1;
                if attempt < max {
                    self.clock.sleep(self.retry.backoff.delay(failures)).await;
                }
                continue;
            }
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        Err(ClientError::Unavailable {
            attempts: max,
            last,
        })
    }

    /// How long GitHub asks us to wait, if this response is a rate limit.
    fn rate_limit_wait(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
    ) -> Option<Duration> {
        if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::FORBIDDEN {
            return None;
        }
        if let Some(secs) = header_u64(headers, "retry-after") {
            return Some(Duration::from_secs(secs));
        }
        if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
            if let Some(reset) = header_u64(headers, "x-ratelimit-reset") {
                let now = self.clock.now().timestamp();
                // The reset is a whole second; one more avoids arriving just before it.
                let secs = (reset as i64 - now).max(0) as u64 + 1;
                return Some(Duration::from_secs(secs));
            }
            return Some(Duration::from_secs(60));
        }
        // GitHub's advice for a secondary rate limit without headers: wait at least a minute.
        if status == StatusCode::TOO_MANY_REQUESTS
            || message.to_ascii_lowercase().contains("rate limit")
        {
            return Some(Duration::from_secs(60));
        }
        None
    }

    async fn authorization(&self, who: As<'_>) -> Result<HeaderValue, ClientError> {
        let raw = match (&self.auth, who) {
            (Auth::Token(t), _) => format!("Bearer {}", t.expose()),
            (Auth::App { app_id, key, .. }, As::AppJwt) => {
                format!("Bearer {}", self.app_jwt(*app_id, key)?)
            }
            (Auth::App { .. }, As::Repo(full)) => {
                format!("Bearer {}", self.installation_token(full).await?.expose())
            }
        };
        let mut v = HeaderValue::from_str(&raw)
            .map_err(|_| ClientError::Config("the token is not a valid header value".into()))?;
        // Keeps it out of reqwest's and hyper's Debug output.
        v.set_sensitive(true);
        Ok(v)
    }

    fn app_jwt(&self, app_id: u64, key: &AppKey) -> Result<String, ClientError> {
        key.jwt(app_id, self.clock.now())
            .map_err(ClientError::Config)
    }

    async fn installation_token(&self, full: &str) -> Result<Secret, ClientError> {
        let Auth::App {
            installations,
            tokens,
            ..
        } = &self.auth
        else {
            return Err(ClientError::Config("not a GitHub App client".into()));
        };
        // Held across the look-up and the token request, so concurrent callers wait for one
        // of each instead of all asking GitHub.
        let mut cache = tokens.lock().await;
        let known = lock(installations).get(&full.to_ascii_lowercase()).copied();
        let id = match known {
            Some(id) => id,
            None => {
                let (owner, repo) = full
                    .split_once('/')
                    .ok_or_else(|| ClientError::Config(format!("bad repository {full:?}")))?;
                let id = Box::pin(self.repo_installation(owner, repo)).await?.id;
                lock(installations).insert(full.to_ascii_lowercase(), id);
                id
            }
        };
        if let Some(c) = cache.get(&id)
            && self.clock.now() + self.margin < c.expires_at
        {
            return Ok(c.token.clone());
        }
        let path = format!("/app/installations/{id}/access_tokens");
        let url = format!("{}{path}", self.base);
        let reply = Box::pin(self.send(Method::POST, &url, As::AppJwt, None)).await?;
        let t: AccessToken = decode(&reply.body)?;
        let token = Secret::new(t.token);
        cache.insert(
            id,
            CachedToken {
                token: token.clone(),
                expires_at: t.expires_at,
            },
        );
        Ok(token)
    }

    /// Drops the cached installation token behind a `401`; true if there was one to drop.
    async fn forget_token(&self, who: As<'_>) -> bool {
        let (
            Auth::App {
                installations,
                tokens,
                ..
            },
            As::Repo(full),
        ) = (&self.auth, who)
        else {
            return false;
        };
        let Some(id) = lock(installations).get(&full.to_ascii_lowercase()).copied() else {
            return false;
        };
        tokens.lock().await.remove(&id).is_some()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn repo_key(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}").to_ascii_lowercase()
}

/// A path segment: GitHub owner and repository names are `[A-Za-z0-9._-]`.
fn seg(s: &str) -> Result<&str, ClientError> {
    if !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Ok(s)
    } else {
        Err(ClientError::Config(format!(
            "{s:?} is not a GitHub owner or repository name"
        )))
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub's error JSON carries a `message`; keep it short and free of anything else.
fn api_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        message: Option<String>,
    }
    let msg = serde_json::from_slice::<E>(body)
        .ok()
        .and_then(|e| e.message)
        .unwrap_or_else(|| "no message".into());
    msg.chars().take(200).collect()
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                r#"<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/x?page=2")
        );
        h.insert(
            "link",
            HeaderValue::from_static(r#"<https://api.github.com/x?page=1>; rel="prev""#),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn secrets_do_not_debug() {
        let c = Credentials::Token(Secret::new("ghp_abcdefghijklmnopqrstuvwxyz0123456789"));
        assert!(!format!("{c:?}").contains("ghp_"));
        let client = GithubClient::new(ClientConfig::new("http://127.0.0.1:1", c)).unwrap();
        assert!(!format!("{client:?}").contains("ghp_"));
    }

    #[test]
    fn names_are_checked() {
        assert!(seg("octo-org").is_ok());
        assert!(seg("my.repo_1").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b"] {
            assert!(seg(bad).is_err(), "{bad}");
        }
    }
}
