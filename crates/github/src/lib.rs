//! Slipway's GitHub integration, self-contained so the API and workers only wire it in:
//! - [`webhook`]: `X-Hub-Signature-256` verification and `ping` / `pull_request` parsing;
//! - [`decide`]: what an event means for a repository's settings (pipeline, cleanup, ignore);
//! - [`client`]: a GitHub REST client (plain token or GitHub App), honouring rate limits;
//! - [`progress`]: what a PR should show, derived from its preview's jobs;
//! - [`status`]: the pull-request status reporter (one comment per PR, a Deployment and its
//!   statuses), running in the background;
//! - [`sanitize`]: what may reach GitHub (no tokens, internal hosts, stack traces).

pub mod client;
pub mod clock;
pub mod decide;
pub mod progress;
pub mod sanitize;
pub mod status;
pub mod webhook;

mod jwt;

use std::fmt;

pub use client::{ClientConfig, ClientError, Credentials, GithubClient, RetryPolicy, Secret};
pub use decide::{Action, PreviewMode, RepoSettings, decide};
pub use progress::{JobFacts, Progress, progress};
pub use status::{
    Applied, PreviewState, PreviewUpdate, ReporterConfig, ReporterStats, StatusReporter,
    StatusWriter, WriterConfig,
};
pub use webhook::{
    Delivery, PullRequestAction, PullRequestEvent, SignatureError, WebhookEvent, parse_delivery,
    verify_signature,
};

/// A preview as GitHub drives it: `<owner>/<repo>#<number>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PreviewKey {
    pub owner: String,
    pub repo: String,
    pub number: u64,
}

impl PreviewKey {
    pub fn new(owner: &str, repo: &str, number: u64) -> Self {
        PreviewKey {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            number,
        }
    }

    /// Parses `owner/repo#42`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (full, number) = s.rsplit_once('#')?;
        let (owner, repo) = full.split_once('/')?;
        let number: u64 = number.parse().ok()?;
        if owner.is_empty() || repo.is_empty() || repo.contains('/') || number == 0 {
            return None;
        }
        Some(PreviewKey::new(owner, repo, number))
    }

    /// `owner/repo`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

impl fmt::Display for PreviewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.owner, self.repo, self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_key_round_trips() {
        let k = PreviewKey::new("octo", "app", 42);
        assert_eq!(k.to_string(), "octo/app#42");
        assert_eq!(PreviewKey::parse("octo/app#42"), Some(k));
        for bad in [
            "octo/app",
            "octo#1",
            "/app#1",
            "octo/app#x",
            "a/b/c#1",
            "o/r#0",
        ] {
            assert_eq!(PreviewKey::parse(bad), None, "{bad}");
        }
    }
}
