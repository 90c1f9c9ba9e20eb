//! Job kinds, states and failure classes: the vocabulary shared by the API, the store, the queue
//! and the workers. String forms are the contract with Postgres, Redis and API clients.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A job's id. The same value names the row in Postgres and the job in Redis.
pub type JobId = uuid::Uuid;

/// A string that is not one of the known values of an enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
}

/// What a job does; each kind has its own queue and worker binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Build,
    Launch,
    Cleanup,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Build, JobKind::Launch, JobKind::Cleanup];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Build => "build",
            JobKind::Launch => "launch",
            JobKind::Cleanup => "cleanup",
        }
    }

    /// The name of the Redis queue this kind travels on.
    pub fn queue_name(self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "job kind",
                value: s.to_owned(),
            })
    }
}

/// Where a job is in its life, as recorded in Postgres.
///
/// `queued -> running -> succeeded | failed | cancelled | superseded`, with `retrying` between
/// attempts. `failed` after the last attempt is the dead set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
    Superseded,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Superseded => "superseded",
        }
    }

    /// A terminal state never changes again (except by an operator's explicit retry of a
    /// failed job).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Superseded
        )
    }

    /// Whether a job may move from `self` to `next`. The store enforces the same rule with
    /// guarded updates; this is the single statement of it.
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        match (self, next) {
            (Queued | Retrying, Running) => true,
            // A resumed job (its worker died) starts a new attempt while still `running`.
            (Running, Running) => true,
            (Running, Retrying | Succeeded | Failed) => true,
            (Queued | Running | Retrying, Cancelled | Superseded) => true,
            // Operator retry of a dead or cancelled job.
            (Failed | Cancelled, Queued) => true,
            _ => false,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "job state",
                value: s.to_owned(),
            })
    }
}

/// How a failed attempt is treated: transient failures are retried with backoff while attempts
/// remain; permanent ones end the job at once with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Transient,
    Permanent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_states_round_trip_through_strings() {
        for k in JobKind::ALL {
            assert_eq!(k.as_str().parse::<JobKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("bogus".parse::<JobKind>().is_err());
    }

    #[test]
    fn terminal_states_only_leave_by_operator_retry() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobState::ALL {
                let allowed = from.can_become(to);
                let operator_retry = to == JobState::Queued
                    && matches!(from, JobState::Failed | JobState::Cancelled);
                assert_eq!(allowed, operator_retry, "{from} -> {to}");
            }
        }
        assert!(JobState::Queued.can_become(JobState::Running));
        assert!(!JobState::Queued.can_become(JobState::Succeeded));
    }
}
