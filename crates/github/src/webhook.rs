//! GitHub webhooks in: signature verification over the raw body and parsing of the `ping` and
//! `pull_request` deliveries into a small domain enum. Parsing never fails: a delivery that is
//! well signed but cannot be used becomes [`WebhookEvent::Unusable`], so the API can acknowledge
//! it (GitHub retries a `5xx`, which would not help).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::PreviewKey;

/// Why a delivery's `X-Hub-Signature-256` was refused. The API answers `401` to all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=<64 hex digits>`")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("no webhook secret is configured")]
    NoSecret,
}

/// Checks `header` (the value of `X-Hub-Signature-256`, `sha256=<hex>`) against HMAC-SHA256 of
/// the raw `body` under `secret`, in constant time. Call it before parsing anything.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    if secret.is_empty() {
        // An empty key would make every forger's job trivial.
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let given = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let expected = hmac_sha256(secret, body);
    if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `X-Hub-Signature-256` value GitHub would send for `body` under `secret` (for tests,
/// benchmarks and the fake GitHub server).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

fn hmac_sha256(secret: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here; fall back to an
    // all-zero digest rather than panic, which can never match a real signature of 32 bytes.
    match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// One webhook delivery: its `X-GitHub-Delivery` id (the API records it to drop redeliveries)
/// and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `None` when the header was absent; GitHub always sends it.
    pub id: Option<String>,
    pub event: WebhookEvent,
}

/// What a delivery means to Slipway.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    /// GitHub's `ping`, sent when a webhook is created.
    Ping {
        hook_id: Option<u64>,
        zen: Option<String>,
    },
    /// A `pull_request` event with an action Slipway reacts to.
    PullRequest(Box<PullRequestEvent>),
    /// An event or action Slipway does not act on (acknowledged and ignored).
    Ignored {
        event: String,
        action: Option<String>,
    },
    /// Well signed but unusable (bad JSON, fields missing): acknowledged with `202` and logged.
    Unusable { reason: String },
}

/// The `pull_request` actions Slipway acts on; the others parse as [`WebhookEvent::Ignored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullRequestAction {
    Opened,
    Reopened,
    Synchronize,
    Closed,
    Labeled,
    Unlabeled,
}

impl PullRequestAction {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "opened" => Self::Opened,
            "reopened" => Self::Reopened,
            "synchronize" => Self::Synchronize,
            "closed" => Self::Closed,
            "labeled" => Self::Labeled,
            "unlabeled" => Self::Unlabeled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Reopened => "reopened",
            Self::Synchronize => "synchronize",
            Self::Closed => "closed",
            Self::Labeled => "labeled",
            Self::Unlabeled => "unlabeled",
        }
    }
}

/// The base repository of a pull request (where the webhook is installed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
    /// `owner/name`, as GitHub spells it.
    pub full_name: String,
    /// `https://github.com/owner/name.git` (or the Enterprise Server equivalent).
    pub clone_url: String,
}

/// A `pull_request` delivery, reduced to what Slipway needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PullRequestEvent {
    pub action: PullRequestAction,
    pub repo: RepoRef,
    pub number: u64,
    pub head_sha: String,
    pub head_ref: String,
    /// `None` when the head repository (a fork) has been deleted.
    pub head_repo_full_name: Option<String>,
    /// The head lives in another repository than the base (or that repository is gone).
    pub is_fork: bool,
    /// The PR's labels after the action.
    pub labels: Vec<String>,
    /// The label added or removed, for `labeled` / `unlabeled`.
    pub label: Option<String>,
    /// For `closed`: merged or just closed.
    pub merged: bool,
    pub draft: bool,
    pub sender: Option<String>,
    /// The GitHub App installation that sent it (present when the webhook belongs to an App).
    pub installation_id: Option<u64>,
}

impl PullRequestEvent {
    /// The preview this pull request drives: `<owner>/<repo>#<number>`.
    pub fn preview(&self) -> PreviewKey {
        PreviewKey::new(&self.repo.owner, &self.repo.name, self.number)
    }
}

/// Parses a delivery from its `X-GitHub-Event` and `X-GitHub-Delivery` headers and raw body.
/// Only call it after [`verify_signature`] succeeded.
pub fn parse_delivery(event: Option<&str>, delivery: Option<&str>, body: &[u8]) -> Delivery {
    Delivery {
        id: delivery
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        event: parse_event(event, body),
    }
}

/// Parses the body of one delivery of type `event` (the `X-GitHub-Event` header).
pub fn parse_event(event: Option<&str>, body: &[u8]) -> WebhookEvent {
    let Some(event) = event.map(str::trim).filter(|e| !e.is_empty()) else {
        return unusable("the X-GitHub-Event header is missing");
    };
    match event {
        "ping" => match serde_json::from_slice::<PingPayload>(body) {
            Ok(p) => WebhookEvent::Ping {
                hook_id: p.hook_id,
                zen: p.zen,
            },
            Err(e) => unusable(format!("ping payload is not valid JSON: {e}")),
        },
        "pull_request" => parse_pull_request(body),
        other => WebhookEvent::Ignored {
            event: other.to_owned(),
            action: action_of(body),
        },
    }
}

fn unusable(reason: impl Into<String>) -> WebhookEvent {
    WebhookEvent::Unusable {
        reason: reason.into(),
    }
}

fn action_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct A {
        action: Option<String>,
    }
    serde_json::from_slice::<A>(body).ok()?.action
}

fn parse_pull_request(body: &[u8]) -> WebhookEvent {
    // First only the action, so an action we ignore never fails on fields it does not need.
    let action = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("action").and_then(|a| a.as_str()) {
            Some(a) => a.to_owned(),
            None => return unusable("pull_request payload has no action"),
        },
        Err(e) => return unusable(format!("pull_request payload is not valid JSON: {e}")),
    };
    let Some(known) = PullRequestAction::parse(&action) else {
        return WebhookEvent::Ignored {
            event: "pull_request".into(),
            action: Some(action),
        };
    };
    let p: PullRequestPayload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return unusable(format!("pull_request payload lacks a needed field: {e}")),
    };
    let repo = p.repository;
    let Some(owner) = repo.owner.login.filter(|o| !o.is_empty()) else {
        return unusable("repository.owner.login is missing");
    };
    if repo.name.is_empty() || !is_hex_sha(&p.pull_request.head.sha) {
        return unusable("repository name or head sha is missing or malformed");
    }
    let number = p.number.unwrap_or(p.pull_request.number);
    if number == 0 {
        return unusable("pull request number is missing");
    }
    let full_name = repo
        .full_name
        .unwrap_or_else(|| format!("{owner}/{}", repo.name));
    let head_repo_full_name = p.pull_request.head.repo.map(|r| r.full_name);
    let is_fork = match &head_repo_full_name {
        Some(head) => !head.eq_ignore_ascii_case(&full_name),
        // The head repository is gone: only a fork can be deleted independently of its base.
        None => true,
    };
    let clone_url = repo
        .clone_url
        .unwrap_or_else(|| format!("https://github.com/{full_name}.git"));
    WebhookEvent::PullRequest(Box::new(PullRequestEvent {
        action: known,
        repo: RepoRef {
            owner,
            name: repo.name,
            full_name,
            clone_url,
        },
        number,
        head_sha: p.pull_request.head.sha.to_ascii_lowercase(),
        head_ref: p.pull_request.head.ref_name,
        head_repo_full_name,
        is_fork,
        labels: p.pull_request.labels.into_iter().map(|l| l.name).collect(),
        label: p.label.map(|l| l.name),
        merged: p.pull_request.merged.unwrap_or(false),
        draft: p.pull_request.draft.unwrap_or(false),
        sender: p.sender.and_then(|s| s.login),
        installation_id: p.installation.map(|i| i.id),
    }))
}

fn is_hex_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Deserialize)]
struct PingPayload {
    zen: Option<String>,
    hook_id: Option<u64>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    number: Option<u64>,
    pull_request: PullRequestObject,
    repository: RepositoryObject,
    label: Option<LabelObject>,
    sender: Option<UserObject>,
    installation: Option<InstallationObject>,
}

#[derive(Deserialize)]
struct PullRequestObject {
    #[serde(default)]
    number: u64,
    head: HeadObject,
    #[serde(default)]
    labels: Vec<LabelObject>,
    merged: Option<bool>,
    draft: Option<bool>,
}

#[derive(Deserialize)]
struct HeadObject {
    sha: String,
    #[serde(rename = "ref")]
    ref_name: String,
    repo: Option<HeadRepoObject>,
}

#[derive(Deserialize)]
struct HeadRepoObject {
    full_name: String,
}

#[derive(Deserialize)]
struct RepositoryObject {
    name: String,
    full_name: Option<String>,
    owner: UserObject,
    clone_url: Option<String>,
}

#[derive(Deserialize)]
struct UserObject {
    login: Option<String>,
}

#[derive(Deserialize)]
struct LabelObject {
    name: String,
}

#[derive(Deserialize)]
struct InstallationObject {
    id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_round_trips() {
        let sig = sign(b"s3cret", b"{}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(verify_signature(b"s3cret", b"{}", Some(&sig)), Ok(()));
    }

    #[test]
    fn github_documented_example_signature() {
        // The worked example from GitHub's "Validating webhook deliveries" page.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_signature(
                b"It's a Secret to Everybody",
                b"Hello, World!",
                Some(header)
            ),
            Ok(())
        );
    }

    #[test]
    fn malformed_headers() {
        for h in ["sha1=abc", "sha256=zz", "sha256=", "", "sha256=0123"] {
            assert_eq!(
                verify_signature(b"k", b"x", Some(h)),
                Err(SignatureError::Malformed),
                "{h}"
            );
        }
        assert_eq!(
            verify_signature(b"", b"x", Some(&sign(b"", b"x"))),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn garbage_is_unusable_not_a_panic() {
        for body in [&b"not json"[..], b"{}", b"{\"action\":\"opened\"}", b"[]"] {
            match parse_event(Some("pull_request"), body) {
                WebhookEvent::Unusable { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            parse_event(None, b"{}"),
            WebhookEvent::Unusable { .. }
        ));
        assert!(matches!(
            parse_event(Some("ping"), b"nope"),
            WebhookEvent::Unusable { .. }
        ));
    }
}
