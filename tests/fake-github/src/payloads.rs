//! GitHub webhook deliveries for end-to-end tests and benchmarks: `pull_request` and `ping`
//! bodies in the shape GitHub documents (trimmed to the fields a consumer reads, plus the usual
//! neighbours), and the headers GitHub sends with them, signed like GitHub signs them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// What varies between `pull_request` deliveries.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// `opened`, `reopened`, `synchronize`, `closed`, `labeled`, `unlabeled`, ...
    pub action: String,
    pub owner: String,
    pub repo: String,
    pub number: u64,
    pub head_sha: String,
    pub head_ref: String,
    /// The head repository (`owner/name`) when it is a fork; `None` for a same-repository PR.
    pub fork: Option<String>,
    /// The fork was deleted (`head.repo` is `null`).
    pub fork_deleted: bool,
    pub labels: Vec<String>,
    /// For `labeled` / `unlabeled`.
    pub label: Option<String>,
    pub merged: bool,
    pub installation_id: Option<u64>,
    pub sender: String,
}

impl PullRequest {
    /// An `opened` PR from a branch of the same repository.
    pub fn new(action: &str, owner: &str, repo: &str, number: u64, head_sha: &str) -> Self {
        PullRequest {
            action: action.into(),
            owner: owner.into(),
            repo: repo.into(),
            number,
            head_sha: head_sha.into(),
            head_ref: format!("feature-{number}"),
            fork: None,
            fork_deleted: false,
            labels: Vec::new(),
            label: None,
            merged: false,
            installation_id: Some(1),
            sender: "octocat".into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        self.to_json().to_string()
    }

    pub fn to_json(&self) -> Value {
        let full = format!("{}/{}", self.owner, self.repo);
        let base_repo = repository(&self.owner, &self.repo, false);
        let head_repo = if self.fork_deleted {
            Value::Null
        } else if let Some(fork) = &self.fork {
            let (o, r) = fork.split_once('/').unwrap_or((fork.as_str(), &self.repo));
            repository(o, r, true)
        } else {
            base_repo.clone()
        };
        let head_owner = self
            .fork
            .as_deref()
            .and_then(|f| f.split_once('/'))
            .map_or(self.owner.as_str(), |(o, _)| o);
        let label = |name: &String| {
            json!({
                "id": 4120051234u64, "node_id": "LA_kwDOCxbOgM8AAAAB",
                "url": format!("https://api.github.com/repos/{full}/labels/{name}"),
                "name": name, "color": "0e8a16", "default": false, "description": null
            })
        };
        let closed = self.action == "closed";
        let mut v = json!({
            "action": self.action,
            "number": self.number,
            "pull_request": {
                "url": format!("https://api.github.com/repos/{full}/pulls/{}", self.number),
                "id": 2161183231u64 + self.number,
                "node_id": "PR_kwDOCxbOgM6A0Xj_",
                "html_url": format!("https://github.com/{full}/pull/{}", self.number),
                "number": self.number,
                "state": if closed { "closed" } else { "open" },
                "locked": false,
                "title": format!("Change number {}", self.number),
                "user": user(&self.sender),
                "body": "A change.",
                "labels": self.labels.iter().map(label).collect::<Vec<_>>(),
                "draft": false,
                "merged": closed && self.merged,
                "merged_at": if closed && self.merged { json!("2026-11-24T09:30:00Z") } else { Value::Null },
                "closed_at": if closed { json!("2026-11-24T09:30:00Z") } else { Value::Null },
                "head": {
                    "label": format!("{head_owner}:{}", self.head_ref),
                    "ref": self.head_ref,
                    "sha": self.head_sha,
                    "user": user(head_owner),
                    "repo": head_repo,
                },
                "base": {
                    "label": format!("{}:main", self.owner),
                    "ref": "main",
                    "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
                    "user": user(&self.owner),
                    "repo": base_repo,
                },
                "author_association": "MEMBER",
            },
            "repository": repository(&self.owner, &self.repo, false),
            "sender": user(&self.sender),
        });
        if let Some(l) = &self.label {
            v["label"] = label(l);
        }
        if let Some(id) = self.installation_id {
            v["installation"] =
                json!({ "id": id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u" });
        }
        v
    }
}

/// A `ping` body, as GitHub sends when a webhook is created.
pub fn ping(owner: &str, repo: &str) -> String {
    json!({
        "zen": "Keep it logically awesome.",
        "hook_id": 480171412u64,
        "hook": {
            "type": "Repository", "id": 480171412u64, "name": "web", "active": true,
            "events": ["pull_request"],
            "config": { "content_type": "json", "insecure_ssl": "0", "url": "https://slipway.example.com/v1/webhooks/github" },
        },
        "repository": repository(owner, repo, false),
        "sender": user(owner),
    })
    .to_string()
}

fn user(login: &str) -> Value {
    json!({
        "login": login, "id": 21031067u64, "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": "User", "site_admin": false
    })
}

fn repository(owner: &str, name: &str, fork: bool) -> Value {
    let full = format!("{owner}/{name}");
    json!({
        "id": 186853002u64, "node_id": "MDEwOlJlcG9zaXRvcnkxODYwNTMyMDE=",
        "name": name, "full_name": full, "private": false, "owner": user(owner),
        "html_url": format!("https://github.com/{full}"), "fork": fork,
        "url": format!("https://api.github.com/repos/{full}"),
        "clone_url": format!("https://github.com/{full}.git"),
        "git_url": format!("git://github.com/{full}.git"),
        "ssh_url": format!("git@github.com:{full}.git"),
        "default_branch": "main", "visibility": "public"
    })
}

/// `sha256=<hex>` of `body` under `secret`, as in `X-Hub-Signature-256`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

static DELIVERY: AtomicU64 = AtomicU64::new(1);

/// The headers GitHub sends with a delivery of `event`, with a fresh `X-GitHub-Delivery` id
/// and the signature of `body` under `secret`.
pub fn headers(secret: &[u8], event: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let n = DELIVERY.fetch_add(1, Ordering::Relaxed);
    vec![
        ("content-type", "application/json".into()),
        ("user-agent", "GitHub-Hookshot/fake".into()),
        ("x-github-event", event.into()),
        ("x-github-delivery", delivery_id(n)),
        ("x-github-hook-id", "480171412".into()),
        ("x-hub-signature-256", signature(secret, body)),
    ]
}

/// A GUID like GitHub's, unique across processes and runs (time, process id and a counter).
fn delivery_id(n: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let pid = u64::from(std::process::id());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        (nanos >> 16) as u16,
        nanos & 0xfff,
        pid & 0xfff,
        (n & 0xffff_ffff_ffff) ^ ((pid >> 12) << 40)
    )
}
