//! What a pull request should show, derived from its preview's jobs.
//!
//! The status feed does not ship events to GitHub; it reads the preview's jobs from Postgres
//! after any of them changed and derives one state from them, so updates that race or arrive
//! twice still end in the state Postgres holds, and a restarted reporter shows the truth at
//! once. The newest job that was not superseded decides:
//!
//! | newest job | queued | running, retrying | succeeded | failed | cancelled |
//! |---|---|---|---|---|---|
//! | build | Queued | Building | Deploying (its launch follows) | Failed `build` | Failed `build` |
//! | launch | Deploying | Deploying | Ready (the preview's URL) | Failed `launch` | Failed `launch` |
//! | cleanup | (no change) | (no change) | TornDown | Failed `teardown` | (no change) |
//!
//! A compose pipeline builds its services side by side: when the newest job is a build, the
//! builds of its commit newer than any other job decide together (the first that failed, else
//! one still running, else one still queued, else all succeeded).

use chrono::{DateTime, Utc};
use slipway_core::{JobId, JobKind, JobState};

use crate::status::PreviewState;

/// A job of the preview, as the feed reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFacts {
    pub id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    pub commit: Option<String>,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What the PR should show now.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub state: PreviewState,
    /// The commit the state is about (for a teardown: the last one deployed).
    pub sha: Option<String>,
    /// The job whose log explains the state.
    pub job: JobId,
    /// When the state was reached.
    pub at: DateTime<Utc>,
}

/// Derives the PR's state from the preview's jobs (`jobs` newest first) and its preview URL.
/// `None` when there is nothing new to show (no jobs, or a teardown still in flight).
pub fn progress(jobs: &[JobFacts], preview_url: Option<&str>) -> Option<Progress> {
    let mut relevant = jobs.iter().filter(|j| j.state != JobState::Superseded);
    let newest = relevant.next()?;
    let job = if newest.kind == JobKind::Build {
        let siblings: Vec<&JobFacts> = std::iter::once(newest)
            .chain(relevant.take_while(|j| j.kind == JobKind::Build && j.commit == newest.commit))
            .collect();
        let first = |states: &[JobState]| siblings.iter().find(|j| states.contains(&j.state));
        first(&[JobState::Failed, JobState::Cancelled])
            .or_else(|| first(&[JobState::Running, JobState::Retrying]))
            .or_else(|| first(&[JobState::Queued]))
            .copied()
            .unwrap_or(newest)
    } else {
        newest
    };
    // A launch of a pipeline carries its build's commit; fall back to the newest one known.
    let sha = job
        .commit
        .clone()
        .or_else(|| jobs.iter().find_map(|j| j.commit.clone()));
    let failed = |step: &str| PreviewState::Failed {
        step: step.to_owned(),
        message: Some(match job.state {
            JobState::Cancelled => "cancelled by an operator".to_owned(),
            _ => job
                .error
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
        }),
    };
    use JobState::*;
    let state = match (job.kind, job.state) {
        (JobKind::Build, Queued) => PreviewState::Queued,
        (JobKind::Build, Running | Retrying) => PreviewState::Building,
        (JobKind::Build, Succeeded) => PreviewState::Deploying,
        (JobKind::Build, Failed | Cancelled) => failed("build"),
        (JobKind::Launch, Queued | Running | Retrying) => PreviewState::Deploying,
        (JobKind::Launch, Succeeded) => match preview_url {
            Some(url) => PreviewState::Ready {
                url: url.to_owned(),
            },
            // A newer write of the preview row is on its way.
            None => PreviewState::Deploying,
        },
        (JobKind::Launch, Failed | Cancelled) => failed("launch"),
        (JobKind::Cleanup, Succeeded) => PreviewState::TornDown,
        (JobKind::Cleanup, Failed) => failed("teardown"),
        (JobKind::Cleanup, Queued | Running | Retrying | Cancelled) => return None,
        (_, Superseded) => unreachable!("filtered above"),
    };
    Some(Progress {
        state,
        sha,
        job: job.id,
        at: job.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: JobKind, state: JobState, commit: Option<&str>) -> JobFacts {
        JobFacts {
            id: uuid::Uuid::now_v7(),
            kind,
            state,
            commit: commit.map(str::to_owned),
            error: Some("exit code 1 at step `RUN make`".into()),
            updated_at: Utc::now(),
        }
    }

    fn state(jobs: &[JobFacts]) -> Option<PreviewState> {
        progress(jobs, Some("http://pr-1-app.preview.test")).map(|p| p.state)
    }

    #[test]
    fn a_pipeline_goes_queued_building_deploying_ready() {
        use JobKind::*;
        let b = |s| job(Build, s, Some("aaa"));
        assert_eq!(state(&[b(JobState::Queued)]), Some(PreviewState::Queued));
        assert_eq!(state(&[b(JobState::Running)]), Some(PreviewState::Building));
        assert_eq!(
            state(&[b(JobState::Retrying)]),
            Some(PreviewState::Building)
        );
        assert_eq!(
            state(&[b(JobState::Succeeded)]),
            Some(PreviewState::Deploying)
        );
        let launch = job(Launch, JobState::Running, Some("aaa"));
        assert_eq!(
            state(&[launch.clone(), b(JobState::Succeeded)]),
            Some(PreviewState::Deploying)
        );
        let ready = job(Launch, JobState::Succeeded, Some("aaa"));
        let p = progress(
            &[ready.clone(), b(JobState::Succeeded)],
            Some("http://x.test"),
        )
        .unwrap();
        assert_eq!(
            p.state,
            PreviewState::Ready {
                url: "http://x.test".into()
            }
        );
        assert_eq!(p.sha.as_deref(), Some("aaa"));
        assert_eq!(p.job, ready.id);
        // Ready without a URL yet is still deploying.
        assert_eq!(
            progress(&[ready], None).unwrap().state,
            PreviewState::Deploying
        );
    }

    #[test]
    fn superseded_jobs_are_skipped_and_failures_name_their_step() {
        use JobKind::*;
        let old = job(Build, JobState::Superseded, Some("old"));
        let new = job(Build, JobState::Failed, Some("new"));
        // Newest first: the superseded one is newer here only to prove it is skipped.
        let p = progress(&[old, new.clone()], None).unwrap();
        assert_eq!(p.sha.as_deref(), Some("new"));
        assert!(matches!(p.state, PreviewState::Failed { ref step, .. } if step == "build"));
        let cancelled = job(Launch, JobState::Cancelled, None);
        let p = progress(&[cancelled, new], None).unwrap();
        match p.state {
            PreviewState::Failed { step, message } => {
                assert_eq!(step, "launch");
                assert_eq!(message.as_deref(), Some("cancelled by an operator"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.sha.as_deref(),
            Some("new"),
            "the commit comes from the build"
        );
    }

    #[test]
    fn a_compose_pipelines_builds_decide_together() {
        use JobKind::*;
        let first = job(Build, JobState::Succeeded, Some("aaa"));
        let older = job(Build, JobState::Failed, Some("old"));
        let web = |s| job(Build, s, Some("aaa"));
        // Newest first: the services' builds, then the job that started them.
        let jobs = |a, b| [web(a), web(b), first.clone(), older.clone()];
        assert_eq!(
            state(&jobs(JobState::Succeeded, JobState::Queued)),
            Some(PreviewState::Queued)
        );
        assert_eq!(
            state(&jobs(JobState::Queued, JobState::Running)),
            Some(PreviewState::Building)
        );
        assert_eq!(
            state(&jobs(JobState::Succeeded, JobState::Succeeded)),
            Some(PreviewState::Deploying)
        );
        let failed = web(JobState::Failed);
        let p = progress(
            &[web(JobState::Succeeded), failed.clone(), first.clone()],
            None,
        )
        .unwrap();
        assert!(matches!(p.state, PreviewState::Failed { ref step, .. } if step == "build"));
        assert_eq!(p.job, failed.id, "the failed service's build explains it");
        // An older commit's failed build is not this pipeline's.
        assert_eq!(
            state(&[web(JobState::Succeeded), older]),
            Some(PreviewState::Deploying)
        );
    }

    #[test]
    fn a_teardown_shows_only_once_done() {
        use JobKind::*;
        let ready = job(Launch, JobState::Succeeded, Some("aaa"));
        let running = job(Cleanup, JobState::Running, None);
        assert_eq!(state(&[running, ready.clone()]), None);
        let done = job(Cleanup, JobState::Succeeded, None);
        let p = progress(&[done, ready.clone()], None).unwrap();
        assert_eq!(p.state, PreviewState::TornDown);
        assert_eq!(p.sha.as_deref(), Some("aaa"), "the last deployed commit");
        let failed = job(Cleanup, JobState::Failed, None);
        assert!(matches!(
            state(&[failed, ready]),
            Some(PreviewState::Failed { step, .. }) if step == "teardown"
        ));
        assert_eq!(progress(&[], None), None);
    }
}
