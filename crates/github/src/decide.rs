//! What a webhook event asks Slipway to do, given the repository's settings: a pure function,
//! so every rule (mode, label, fork policy, enabled) is tested without HTTP or a database.

use crate::PreviewKey;
use crate::webhook::{PullRequestAction, WebhookEvent};

/// When pull requests of a repository get previews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewMode {
    /// Every opened, reopened or pushed-to pull request.
    Automatic,
    /// Only pull requests carrying this label (compared case-insensitively, as GitHub does).
    Label(String),
}

/// The per-repository settings `decide` needs (a subset of what `PUT /v1/repositories` stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSettings {
    pub enabled: bool,
    pub mode: PreviewMode,
    /// Build pull requests whose head is in a fork. Off by default: their code is untrusted.
    pub build_forks: bool,
}

impl Default for RepoSettings {
    fn default() -> Self {
        RepoSettings {
            enabled: true,
            mode: PreviewMode::Automatic,
            build_forks: false,
        }
    }
}

/// What to do about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Build `sha` from `repository` and launch it as `preview`.
    Pipeline {
        preview: PreviewKey,
        repository: String,
        sha: String,
        /// The code comes from a fork: untrusted, so its build gets no git token and its
        /// preview no secret env (the caller drops them).
        fork: bool,
    },
    /// Tear `preview` down.
    Cleanup { preview: PreviewKey },
    /// Nothing to do; `why` is for the log.
    Ignore { why: String },
}

fn ignore(why: impl Into<String>) -> Action {
    Action::Ignore { why: why.into() }
}

/// Decides what `event` means for a repository whose settings are `settings` (`None`: the
/// repository is unknown to Slipway).
///
/// The pipeline always clones the *base* repository at the head sha: GitHub serves a pull
/// request's commits from the base repository too (`refs/pull/<n>/head`), so this works for
/// forks, including deleted ones, without trusting a URL the fork controls.
pub fn decide(event: &WebhookEvent, settings: Option<&RepoSettings>) -> Action {
    let pr = match event {
        WebhookEvent::PullRequest(pr) => pr,
        WebhookEvent::Ping { .. } => return ignore("ping"),
        WebhookEvent::Ignored { event, action } => {
            return ignore(match action {
                Some(a) => format!("{event}.{a} is not acted on"),
                None => format!("{event} is not acted on"),
            });
        }
        WebhookEvent::Unusable { reason } => return ignore(format!("unusable: {reason}")),
    };
    let Some(settings) = settings else {
        return ignore(format!(
            "repository {} is not configured",
            pr.repo.full_name
        ));
    };
    if !settings.enabled {
        return ignore(format!("repository {} is disabled", pr.repo.full_name));
    }
    let preview = pr.preview();
    let pipeline = || Action::Pipeline {
        preview: preview.clone(),
        repository: pr.repo.clone_url.clone(),
        sha: pr.head_sha.clone(),
        fork: pr.is_fork,
    };
    // A closed PR is always cleaned up: a cleanup of a preview that never existed is a no-op,
    // and the settings may have changed since the preview was built.
    if pr.action == PullRequestAction::Closed {
        return Action::Cleanup { preview };
    }
    if pr.is_fork && !settings.build_forks {
        return ignore("pull request from a fork; this repository does not build forks");
    }
    match (&settings.mode, pr.action) {
        (
            PreviewMode::Automatic,
            PullRequestAction::Opened
            | PullRequestAction::Reopened
            | PullRequestAction::Synchronize,
        ) => pipeline(),
        (PreviewMode::Automatic, _) => ignore("labels do not matter in automatic mode"),
        (
            PreviewMode::Label(want),
            PullRequestAction::Opened
            | PullRequestAction::Reopened
            | PullRequestAction::Synchronize,
        ) => {
            if pr.labels.iter().any(|l| l.eq_ignore_ascii_case(want)) {
                pipeline()
            } else {
                ignore(format!("pull request lacks the label {want:?}"))
            }
        }
        (PreviewMode::Label(want), PullRequestAction::Labeled) => match &pr.label {
            Some(l) if l.eq_ignore_ascii_case(want) => pipeline(),
            _ => ignore("another label was added"),
        },
        // Removing the preview label withdraws the preview.
        (PreviewMode::Label(want), PullRequestAction::Unlabeled) => match &pr.label {
            Some(l) if l.eq_ignore_ascii_case(want) => Action::Cleanup { preview },
            _ => ignore("another label was removed"),
        },
        (PreviewMode::Label(_), PullRequestAction::Closed) => Action::Cleanup { preview },
    }
}
