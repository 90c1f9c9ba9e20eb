//! Slipway's domain core: what a job is, the states it moves through, how failures are
//! classified and how retries are spaced. Pure data and functions: this crate does no IO and
//! depends on no Kubernetes, HTTP or Redis crate, so every binary and test can share it.

pub mod backoff;
pub mod job;

pub use backoff::BackoffPolicy;
pub use job::{ErrorClass, JobId, JobKind, JobState, ParseError};
