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
//! An enqueue handler's path through this crate:
//!
//! ```
//! use slipway_core::{BuildRequest, Limits, Scopes, TokenSet, Validate, auth, decode, naming};
//!
//! let tokens: TokenSet = "catalog:enqueue+read:catalog-token-0123".parse()?;
//! let header = "Bearer catalog-token-0123";
//! let (caller, scopes) = auth::bearer_token(header)
//!     .and_then(|t| tokens.verify(t))
//!     .expect("401 otherwise");
//! assert!(scopes.contains(Scopes::ENQUEUE), "403 otherwise");
//! assert_eq!(caller, "catalog");
//!
//! let body = br#"{"repository": "https://github.com/org/app.git",
//!                 "commit": "0123456789ABCDEF0123456789abcdef01234567",
//!                 "image": "org/app", "preview": "org/app#42"}"#;
//! let request: BuildRequest = decode(body)?; // 400/422 with {"error": err} otherwise
//! let build = request.validate(&Limits::default())?;
//! assert_eq!(build.tag, "0123456789abcdef0123456789abcdef01234567");
//! assert_eq!(build.dockerfile, "Dockerfile");
//! assert_eq!(
//!     naming::preview_namespace("org/app#42"),
//!     format!("slipway-pv-org-app-42-{}", naming::short_hash("org/app#42"))
//! );
//! assert_eq!(naming::preview_host("org/app#42", "192.168.49.2.nip.io"), "pr-42-app.192.168.49.2.nip.io");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Feature `openapi` derives `utoipa::ToSchema` for the request bodies and
//! [`ValidationError`], for the API's generated `/openapi.json`; it adds no IO.

pub mod auth;
pub mod backoff;
pub mod compose;
pub mod detect;
pub mod image;
pub mod job;
pub mod mask;
pub mod naming;
pub mod payload;
pub mod progress;
pub mod quantity;
pub mod source;
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
