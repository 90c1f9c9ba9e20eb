//! Slipway's domain core: what a job is, the states it moves through, how failures are
//! classified and how retries are spaced; the API's request payloads and their validation;
//! deterministic Kubernetes names; API token parsing and verification.
//!
//! Pure data and functions: this crate does no IO and depends on no Kubernetes, HTTP or Redis
//! crate, so every binary and test can share it. Nothing here panics on any input: every
//! parser and validator is exercised with hostile and random strings in its tests.
//!
//! - [`job`], [`backoff`]: the job vocabulary and retry spacing.
//! - [`payload`]: the request bodies of `POST /v1/{builds,launches,cleanups,pipelines}` and
//!   [`payload::decode`], which maps any body to a typed request or a field-named error.
//! - [`validate`]: [`Validate`] turns a request into its normalized `Valid*` form under the
//!   operator's [`Limits`], or a [`ValidationError`] (the API's 4xx body).
//! - [`image`], [`quantity`]: image references (distribution grammar) and Kubernetes
//!   resource quantities.
//! - [`naming`]: namespaces, hosts, Job names and label values for Kubernetes objects.
//! - [`auth`]: `SLIPWAY_API_TOKENS` parsing and constant-time bearer token checks.
//!
//! Feature `openapi` derives `utoipa::ToSchema` for the request bodies and
//! [`ValidationError`], for the API's generated `/openapi.json`; it adds no IO.

pub mod auth;
pub mod backoff;
pub mod image;
pub mod job;
pub mod naming;
pub mod payload;
pub mod quantity;
pub mod validate;

#[cfg(test)]
mod fuzz_tests;

pub use auth::{AuthConfigError, Scopes, TokenSet};
pub use backoff::BackoffPolicy;
pub use image::ImageRef;
pub use job::{ErrorClass, JobId, JobKind, JobState, ParseError};
pub use payload::{
    BuildOptions, BuildRequest, BuildSecrets, CleanupRequest, LaunchOptions, LaunchRequest,
    PipelineRequest, Resources, decode,
};
pub use validate::{
    ImageSource, Limits, SecretKeyRef, ValidBuild, ValidCleanup, ValidLaunch, ValidLaunchOptions,
    ValidPipeline, ValidResources, Validate, ValidationError,
};
