//! The enqueue API's request bodies, exactly as DESIGN.md names their fields (the field names
//! are the contract with the catalog, the CLI and the webhook).
//!
//! These types are what arrives on the wire, before validation: strings stay strings and
//! numbers are wide (`i64`) so that an out-of-range port or replica count reaches
//! [`crate::validate`] and gets an error naming its field, instead of a bare serde message.
//! Every struct denies unknown fields, and the string maps deny duplicate keys (a JSON object
//! with a key twice would otherwise keep the last value silently).
//!
//! Secrets travel only as *references*: a Kubernetes Secret name for the git token or
//! registry credentials, `"<secret>/<key>"` for an env var. No request carries a secret value.
//!
//! [`decode`] turns a request body into one of these types, mapping every failure to a
//! [`ValidationError`] with the dotted path of the offending field.

use crate::validate::{ValidationError, codes, shown};
use serde::de::{DeserializeOwned, Deserializer, Error as _, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A JSON object of string values (build args, env vars, secret env references).
pub type StringMap = BTreeMap<String, String>;

/// `POST /v1/builds`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildRequest {
    /// The git repository: an `https://host/path` URL (`.git` optional). SSH addresses
    /// (`ssh://...`, `git@host:path`), `http://` and `git://` are refused with a 422: BuildKit
    /// clones SSH addresses through an SSH agent that build Jobs do not have. For a private
    /// repository name a Secret holding an access token in `secrets.git`.
    pub repository: String,
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub build_args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BuildSecrets>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// Names of Kubernetes Secrets in the build namespace that a build may use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildSecrets {
    /// A Secret holding the git token, mounted as BuildKit's `GIT_AUTH_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    /// A docker-config Secret with the registry push credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// The build part of a pipeline: a build request without `repository` and `commit` (the
/// pipeline gives them) and without `preview` (the pipeline's own). `image` is optional here:
/// when absent it is derived from the repository path (see
/// [`crate::validate::default_image_name`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub build_args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BuildSecrets>,
}

/// `POST /v1/launches`. Exactly one of `image` and `from_build` must be given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LaunchRequest {
    pub preview: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The id of a build job whose image to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
    /// Env var name -> `"<secret name>/<key>"`.
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secret_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_hours: Option<i64>,
    /// Run the container with a read-only root filesystem (`readOnlyRootFilesystem`) and a
    /// writable, size-limited `/tmp` (an emptyDir). Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
}

/// The launch part of a pipeline: a launch request without `preview` (the pipeline's own) and
/// without `image`/`from_build` (the pipeline's build supplies the image).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LaunchOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secret_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_hours: Option<i64>,
    /// Run the container with a read-only root filesystem (`readOnlyRootFilesystem`) and a
    /// writable, size-limited `/tmp` (an emptyDir). Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
}

/// Requested CPU and memory per container, as Kubernetes quantity strings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// `POST /v1/cleanups`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CleanupRequest {
    pub preview: String,
}

/// `POST /v1/pipelines`: build the commit, then launch the built image as the preview.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineRequest {
    pub preview: String,
    /// The git repository: an `https://host/path` URL (`.git` optional). SSH addresses
    /// (`ssh://...`, `git@host:path`), `http://` and `git://` are refused with a 422: BuildKit
    /// clones SSH addresses through an SSH agent that build Jobs do not have. For a private
    /// repository name a Secret holding an access token in `build.secrets.git`.
    pub repository: String,
    pub commit: String,
    /// What the preview is made from: `{"type": "dockerfile"}` (the default: the repository's
    /// Dockerfile) or `{"type": "auto"}` (no Dockerfile needed: Slipway detects the stack and
    /// generates one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PreviewSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchOptions>,
}

/// A preview's source, as a pipeline or a repository's settings name it. `type` is
/// `dockerfile`, `auto`, `compose` or `helm`; the other fields belong to `compose` and `helm`
/// and are refused, naming them, with the other types.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewSource {
    /// `dockerfile` (build the repository's Dockerfile), `auto` (detect Node.js/Next.js,
    /// Python, Go, Rust, Ruby/Rails or a static site and generate the Dockerfile), `compose`
    /// (the services of a compose file) or `helm` (the repository's Helm chart with the built
    /// image).
    #[serde(rename = "type")]
    pub kind: String,
    /// `compose`: the compose file's path in the repository (default: the first of
    /// `compose.yaml`, `compose.yml`, `docker-compose.yaml`, `docker-compose.yml` at the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `compose`: the service served at the preview URL; `helm`: the chart's Service that is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `compose` and `helm`: that Service's port (default: for `compose` the service's first
    /// port, for `helm` the launch port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// `helm`: the chart's directory in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// `helm`: values files in the repository, applied in order after the chart's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// `helm`: the values that receive the built image (default `image.repository` and
    /// `image.tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_values: Option<HelmImageValues>,
}

/// Which chart values receive the built image, as dotted paths (`image.repository`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HelmImageValues {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl PreviewSource {
    /// A source of `kind` with no other field.
    pub fn of(kind: impl Into<String>) -> Self {
        PreviewSource {
            kind: kind.into(),
            ..Default::default()
        }
    }
}

impl PipelineRequest {
    /// The pipeline for code nobody with write access has reviewed (a pull request from a
    /// fork): no git token for its build (a `RUN` step can read it through BuildKit's
    /// `GIT_AUTH_TOKEN` secret) and no secret env for its preview (the preview runs that code).
    /// The registry push credential stays: BuildKit uses it for the push only and never
    /// exposes it to a `RUN` step.
    #[must_use]
    pub fn for_untrusted_code(mut self) -> Self {
        if let Some(secrets) = self.build.as_mut().and_then(|b| b.secrets.as_mut()) {
            secrets.git = None;
        }
        if let Some(launch) = self.launch.as_mut() {
            launch.secret_env.clear();
        }
        self
    }
}

impl BuildRequest {
    /// The options part, as a pipeline would carry it.
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            context: self.context.clone(),
            dockerfile: self.dockerfile.clone(),
            image: Some(self.image.clone()),
            tag: self.tag.clone(),
            build_args: self.build_args.clone(),
            target: self.target.clone(),
            secrets: self.secrets.clone(),
        }
    }
}

impl LaunchRequest {
    /// The options part, as a pipeline would carry it.
    pub fn options(&self) -> LaunchOptions {
        LaunchOptions {
            port: self.port,
            env: self.env.clone(),
            secret_env: self.secret_env.clone(),
            replicas: self.replicas,
            resources: self.resources.clone(),
            health_path: self.health_path.clone(),
            ttl_hours: self.ttl_hours,
            read_only_root_filesystem: self.read_only_root_filesystem,
        }
    }
}

/// Deserializes a JSON object of strings, rejecting a key given twice; `null` is empty.
fn unique_map<'de, D: Deserializer<'de>>(d: D) -> Result<StringMap, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = StringMap;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of string values")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<StringMap, E> {
            Ok(StringMap::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<StringMap, E> {
            Ok(StringMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StringMap, A::Error> {
            let mut out = StringMap::new();
            while let Some((k, v)) = m.next_entry::<String, String>()? {
                if out.contains_key(&k) {
                    return Err(A::Error::custom(format_args!(
                        "duplicate key {}",
                        shown(&k)
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// Decodes a request body into a request type. Errors: `invalid_json` (not JSON, not an
/// object, trailing data), `unknown_field`, `missing_field`, `duplicate_field`, and
/// `invalid_field` (a wrong type, an array where an object belongs, a key given twice in a
/// map), each with the dotted path of the field (`launch.resources.cpu`, `env.FOO`).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ValidationError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ValidationError::new(
                codes::INVALID_JSON,
                "",
                "the body is empty; send a JSON object",
            ));
        }
        Some(_) => {
            return Err(ValidationError::new(
                codes::INVALID_JSON,
                "",
                "the body must be a JSON object",
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(from_serde)?;
    de.end().map_err(|e| {
        ValidationError::new(
            codes::INVALID_JSON,
            "",
            format!(
                "the body is not valid JSON: {}",
                truncate_message(&e.to_string())
            ),
        )
    })?;
    // Derived structs also accept a JSON array (fields by position); no payload has an array
    // but a Helm source's list of values files, so refuse them rather than give positional
    // meaning to one.
    let tree: Value = serde_json::from_slice(body).map_err(|e| {
        ValidationError::new(codes::INVALID_JSON, "", truncate_message(&e.to_string()))
    })?;
    if let Some(path) = first_array(&tree, "") {
        return Err(ValidationError::new(
            codes::INVALID_FIELD,
            path,
            "must be an object or a value, not an array",
        ));
    }
    Ok(value)
}

/// Where a request holds a list: a Helm source's values files (in a pipeline or repository
/// settings, and as a source object of its own).
const LISTS: &[&str] = &["source.values", "values"];

/// The dotted path of the first array in `v` (at `path`) that is not one of [`LISTS`], if any.
fn first_array(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Array(items) if LISTS.contains(&path) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| first_array(x, &format!("{path}[{i}]"))),
        Value::Array(_) => Some(path.to_owned()),
        Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| first_array(v, &crate::validate::join(path, &shown_key(k)))),
        _ => None,
    }
}

fn from_serde(e: serde_path_to_error::Error<serde_json::Error>) -> ValidationError {
    use serde_path_to_error::Segment;
    let inner = e.inner();
    if !inner.is_data() {
        return ValidationError::new(
            codes::INVALID_JSON,
            "",
            format!(
                "the body is not valid JSON: {}",
                truncate_message(&inner.to_string())
            ),
        );
    }
    let path = e.path().iter().fold(String::new(), |path, seg| {
        let part = match seg {
            Segment::Map { key } => shown_key(key),
            // An index follows its list's name: `source.values[0]`.
            Segment::Seq { index } => return format!("{path}[{index}]"),
            Segment::Enum { variant } => shown_key(variant),
            Segment::Unknown => "?".to_owned(),
        };
        crate::validate::join(&path, &part)
    });
    let msg = without_position(inner);
    for (prefix, code) in [
        ("unknown field `", codes::UNKNOWN_FIELD),
        ("missing field `", codes::MISSING_FIELD),
        ("duplicate field `", codes::DUPLICATE_FIELD),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some((name, rest)) = rest.split_once('`')
        {
            return match code {
                // The path already ends with the unknown key.
                codes::UNKNOWN_FIELD => ValidationError::new(
                    code,
                    path,
                    format!(
                        "unknown field{}",
                        rest.strip_prefix(", ")
                            .map(|expected| format!(" ({})", truncate_message(expected)))
                            .unwrap_or_default()
                    ),
                ),
                // The path is the struct; the field is named in the message.
                codes::MISSING_FIELD => ValidationError::new(
                    code,
                    crate::validate::join(&path, &shown_key(name)),
                    "is required",
                ),
                _ => ValidationError::new(
                    code,
                    crate::validate::join(&path, &shown_key(name)),
                    "is given twice",
                ),
            };
        }
    }
    ValidationError::new(codes::INVALID_FIELD, path, value_free(&msg))
}

/// serde quotes the offending value (`invalid type: string "hunter2", expected i64`); keep
/// only its kind, since a secret pasted into the wrong field must not come back in an error
/// that may be logged.
fn value_free(msg: &str) -> String {
    for (prefix, what) in [
        ("invalid type: ", "wrong type"),
        ("invalid value: ", "invalid value"),
        ("invalid length ", "invalid length"),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let found = rest
                .split([' ', ','])
                .next()
                .filter(|w| w.bytes().all(|b| b.is_ascii_alphabetic()) && !w.is_empty());
            let expected = rest.rsplit_once(", expected ").map(|(_, e)| e);
            return match (expected, found) {
                (Some(e), Some(f)) if prefix != "invalid length " => {
                    truncate_message(&format!("{what}: expected {e}, found {f}"))
                }
                (Some(e), _) => truncate_message(&format!("{what}: expected {e}")),
                (None, _) => what.to_owned(),
            };
        }
    }
    truncate_message(msg)
}

/// serde_json's message without its " at line L column C" suffix (the path says where).
fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match msg.strip_suffix(&suffix) {
        Some(m) => m.to_owned(),
        None => msg,
    }
}

/// A key as it may appear in a field path: at most 64 characters, control characters escaped.
pub(crate) fn shown_key(k: &str) -> String {
    k.chars()
        .take(64)
        .flat_map(|c| {
            let printable = !c.is_control() && !crate::validate::is_format_char(c);
            let escaped: Vec<char> = if printable {
                vec![c]
            } else {
                c.escape_unicode().collect()
            };
            escaped
        })
        .collect()
}

/// serde echoes offending string values; keep such messages short.
fn truncate_message(m: &str) -> String {
    const MAX: usize = 200;
    if m.chars().count() <= MAX {
        m.to_owned()
    } else {
        let mut s: String = m.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: DeserializeOwned + fmt::Debug>(body: &str) -> ValidationError {
        decode::<T>(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn decodes_the_design_examples() {
        let b: BuildRequest = decode(
            br#"{"repository": "https://github.com/org/app.git", "commit": "0123456789abcdef0123456789abcdef01234567",
                 "context": "sub/dir", "dockerfile": "Dockerfile", "image": "org/app", "tag": "v1",
                 "build_args": {"K": "V"}, "target": "stage", "secrets": {"git": "git-token", "registry": "regcred"},
                 "preview": "org/app#42"}"#,
        )
        .unwrap();
        assert_eq!(b.build_args.get("K").map(String::as_str), Some("V"));
        assert_eq!(b.secrets.unwrap().registry.as_deref(), Some("regcred"));

        let l: LaunchRequest = decode(
            br#"{"preview": "org/app#42", "image": "ghcr.io/org/app:v1", "port": 8080, "env": {"K": "V"},
                 "secret_env": {"DB": "db/password"}, "replicas": 1, "resources": {"cpu": "250m", "memory": "256Mi"},
                 "health_path": "/", "ttl_hours": 72}"#,
        )
        .unwrap();
        assert_eq!(l.port, Some(8080));
        let c: CleanupRequest = decode(br#"{"preview": "org/app#42"}"#).unwrap();
        assert_eq!(c.preview, "org/app#42");
        let p: PipelineRequest = decode(
            br#"{"preview": "org/app#42", "repository": "https://github.com/org/app.git", "commit": "abc",
                 "build": {"dockerfile": "build/Dockerfile"}, "launch": {"port": 3000}}"#,
        )
        .unwrap();
        assert_eq!(p.launch.unwrap().port, Some(3000));
        let p: PipelineRequest =
            decode(br#"{"preview": "k", "repository": "r", "commit": "c", "build": null}"#)
                .unwrap();
        assert!(p.build.is_none());
    }

    #[test]
    fn decode_errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("", codes::INVALID_JSON, ""),
            ("  \n ", codes::INVALID_JSON, ""),
            ("{", codes::INVALID_JSON, ""),
            ("[]", codes::INVALID_JSON, ""),
            ("[\"k\"]", codes::INVALID_JSON, ""),
            ("\"x\"", codes::INVALID_JSON, ""),
            ("null", codes::INVALID_JSON, ""),
            ("{}", codes::MISSING_FIELD, "preview"),
            (
                r#"{"preview": "k", "image": "a", "bogus": 1}"#,
                codes::UNKNOWN_FIELD,
                "bogus",
            ),
            (
                r#"{"preview": "k", "port": "80"}"#,
                codes::INVALID_FIELD,
                "port",
            ),
            (
                r#"{"preview": "k", "port": 8080.5}"#,
                codes::INVALID_FIELD,
                "port",
            ),
            (
                r#"{"preview": "k", "port": 99999999999999999999}"#,
                codes::INVALID_FIELD,
                "port",
            ),
            (r#"{"preview": 42}"#, codes::INVALID_FIELD, "preview"),
            (
                r#"{"preview": "k", "env": {"A": 1}}"#,
                codes::INVALID_FIELD,
                "env.A",
            ),
            (
                r#"{"preview": "k", "env": {"A": null}}"#,
                codes::INVALID_FIELD,
                "env.A",
            ),
            (r#"{"preview": "k", "env": null}"#, "", ""),
            (
                r#"{"preview": "k", "env": []}"#,
                codes::INVALID_FIELD,
                "env",
            ),
            (
                r#"{"preview": "k", "resources": {"gpu": "1"}}"#,
                codes::UNKNOWN_FIELD,
                "resources.gpu",
            ),
            (
                r#"{"preview": "k", "resources": {"cpu": 1}}"#,
                codes::INVALID_FIELD,
                "resources.cpu",
            ),
            (
                r#"{"preview": "k", "resources": "big"}"#,
                codes::INVALID_FIELD,
                "resources",
            ),
            (
                r#"{"preview": "k", "resources": ["1", "2"]}"#,
                codes::INVALID_FIELD,
                "resources",
            ),
            (
                r#"{"preview": "k", "preview": "j"}"#,
                codes::DUPLICATE_FIELD,
                "preview",
            ),
            (
                r#"{"preview": "k", "image": "a"} {}"#,
                codes::INVALID_JSON,
                "",
            ),
            (
                r#"{"preview": "k", "image": "a"} x"#,
                codes::INVALID_JSON,
                "",
            ),
            ("{\"preview\": \"\\ud800\"}", codes::INVALID_JSON, ""),
        ];
        for (body, code, field) in cases {
            if code.is_empty() {
                assert!(decode::<LaunchRequest>(body.as_bytes()).is_ok(), "{body}");
                continue;
            }
            let e = err::<LaunchRequest>(body);
            assert_eq!((e.code, e.field.as_str()), (*code, *field), "{body}: {e:?}");
        }
        // A missing top-level field is named by its own path.
        let e = err::<LaunchRequest>(r#"{"image": "a"}"#);
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::MISSING_FIELD, "preview")
        );
    }

    #[test]
    fn nested_pipeline_errors_have_dotted_paths() {
        let base = r#""preview": "k", "repository": "r", "commit": "c""#;
        let cases = [
            (
                r#""build": {"repository": "x"}"#,
                codes::UNKNOWN_FIELD,
                "build.repository",
            ),
            (
                r#""build": {"preview": "x"}"#,
                codes::UNKNOWN_FIELD,
                "build.preview",
            ),
            (
                r#""launch": {"image": "x"}"#,
                codes::UNKNOWN_FIELD,
                "launch.image",
            ),
            (
                r#""launch": {"from_build": "x"}"#,
                codes::UNKNOWN_FIELD,
                "launch.from_build",
            ),
            (
                r#""launch": {"port": "x"}"#,
                codes::INVALID_FIELD,
                "launch.port",
            ),
            (
                r#""launch": {"resources": {"disk": "1"}}"#,
                codes::UNKNOWN_FIELD,
                "launch.resources.disk",
            ),
            (
                r#""build": {"secrets": {"ssh": "x"}}"#,
                codes::UNKNOWN_FIELD,
                "build.secrets.ssh",
            ),
            (
                r#""build": {"secrets": {"git": 5}}"#,
                codes::INVALID_FIELD,
                "build.secrets.git",
            ),
            (r#""build": 5"#, codes::INVALID_FIELD, "build"),
            (
                r#""build": {"build_args": {"X": 1}}"#,
                codes::INVALID_FIELD,
                "build.build_args.X",
            ),
            (
                r#""launch": {"resources": []}"#,
                codes::INVALID_FIELD,
                "launch.resources",
            ),
        ];
        for (extra, code, field) in cases {
            let body = format!("{{{base}, {extra}}}");
            let e = err::<PipelineRequest>(&body);
            assert_eq!((e.code, e.field.as_str()), (code, field), "{body}: {e:?}");
        }
    }

    #[test]
    fn type_errors_do_not_echo_values() {
        let cases = [
            (
                r#"{"preview": "k", "port": "hunter2-secret"}"#,
                "port",
                "wrong type: expected i64, found string",
            ),
            (
                r#"{"preview": "k", "replicas": 1.5}"#,
                "replicas",
                "wrong type: expected i64, found floating",
            ),
            (
                r#"{"preview": "k", "port": 99999999999999999999}"#,
                "port",
                "wrong type: expected i64, found floating",
            ),
            (
                r#"{"preview": "k", "env": {"A": true}}"#,
                "env.A",
                "wrong type: expected a string, found boolean",
            ),
            (
                r#"{"preview": "k", "resources": "hunter2-secret"}"#,
                "resources",
                "wrong type: expected struct Resources, found string",
            ),
            (
                r#"{"preview": ["hunter2-secret"]}"#,
                "preview",
                "wrong type: expected a string, found sequence",
            ),
        ];
        for (body, field, message) in cases {
            let e = err::<LaunchRequest>(body);
            assert_eq!(
                (e.field.as_str(), e.message.as_str()),
                (field, message),
                "{body}"
            );
            assert!(!e.message.contains("hunter2"));
        }
    }

    #[test]
    fn read_only_root_filesystem_is_a_boolean_named_on_a_wrong_type() {
        let l: LaunchRequest =
            decode(br#"{"preview": "k", "image": "i", "read_only_root_filesystem": true}"#)
                .unwrap();
        assert_eq!(l.read_only_root_filesystem, Some(true));
        assert_eq!(l.options().read_only_root_filesystem, Some(true));
        for (body, field) in [
            (
                r#"{"preview": "k", "read_only_root_filesystem": "yes"}"#,
                "read_only_root_filesystem",
            ),
            (
                r#"{"preview": "k", "read_only_root_filesystem": 1}"#,
                "read_only_root_filesystem",
            ),
        ] {
            let e = err::<LaunchRequest>(body);
            assert_eq!(
                (e.code, e.field.as_str()),
                (codes::INVALID_FIELD, field),
                "{body}"
            );
        }
        let e = err::<PipelineRequest>(
            r#"{"preview": "k", "repository": "r", "commit": "c", "launch": {"read_only_root_filesystem": "on"}}"#,
        );
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::INVALID_FIELD, "launch.read_only_root_filesystem")
        );
    }

    #[test]
    fn the_one_list_is_a_helm_sources_values_files() {
        let body = |values: &str| {
            format!(
                r#"{{"preview": "p", "repository": "https://github.com/o/a", "commit": "0123456789abcdef0123456789abcdef01234567", "source": {{"type": "helm", "values": {values}}}}}"#
            )
        };
        let p: PipelineRequest = decode(body(r#"["a.yaml", "b.yaml"]"#).as_bytes()).unwrap();
        assert_eq!(p.source.unwrap().values, ["a.yaml", "b.yaml"]);
        assert_eq!(
            err::<PipelineRequest>(&body(r#"[["a.yaml"]]"#)).field,
            "source.values[0]"
        );
        let e = err::<PipelineRequest>(
            r#"{"preview": "p", "repository": "https://github.com/o/a", "commit": "0123456789abcdef0123456789abcdef01234567", "source": {"type": "helm", "chart": ["c"]}}"#,
        );
        assert_eq!(e.field, "source.chart");
    }

    #[test]
    fn duplicate_map_keys_are_rejected() {
        let e = err::<LaunchRequest>(r#"{"preview": "k", "env": {"A": "1", "A": "2"}}"#);
        assert_eq!((e.code, e.field.as_str()), (codes::INVALID_FIELD, "env"));
        assert!(e.message.contains("duplicate key"), "{e:?}");
        let e = err::<PipelineRequest>(
            r#"{"preview": "k", "repository": "r", "commit": "c", "build": {"tag": "a", "tag": "b"}}"#,
        );
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::DUPLICATE_FIELD, "build.tag")
        );
        let e = err::<PipelineRequest>(r#"{"preview": "k", "repository": "r", "launch": {}}"#);
        assert_eq!((e.code, e.field.as_str()), (codes::MISSING_FIELD, "commit"));
    }

    #[test]
    fn unknown_field_names_are_escaped_and_bounded() {
        let long = "x".repeat(500);
        let e = err::<CleanupRequest>(&format!(r#"{{"preview": "k", "{long}\u0000": 1}}"#));
        assert_eq!(e.code, codes::UNKNOWN_FIELD);
        assert_eq!(e.field.chars().count(), 64);
        let e = err::<CleanupRequest>(r#"{"preview": "k", "a\u0007b": 1}"#);
        assert_eq!(e.field, "a\\u{7}b");
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn openapi_schemas_follow_the_serde_shape() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(PipelineRequest::schema()).unwrap();
        let props = &schema["properties"];
        for field in ["preview", "repository", "commit", "build", "launch"] {
            assert!(props.get(field).is_some(), "{field} in {schema}");
        }
        assert_eq!(
            schema["additionalProperties"],
            serde_json::json!(false),
            "{schema}"
        );
        let required = schema["required"].as_array().unwrap();
        assert_eq!(required.len(), 3, "{schema}");
        let launch = serde_json::to_value(LaunchRequest::schema()).unwrap();
        assert_eq!(launch["properties"]["env"]["type"], "object", "{launch}");
        let err = serde_json::to_value(ValidationError::schema()).unwrap();
        assert!(err["properties"].get("field").is_some(), "{err}");
    }

    #[test]
    fn requests_serialize_without_empty_optionals() {
        let c = CleanupRequest {
            preview: "k".into(),
        };
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"preview":"k"}"#);
        let l = LaunchRequest {
            preview: "k".into(),
            image: Some("nginx".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"preview":"k","image":"nginx"}"#
        );
        let back: LaunchRequest =
            serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(back, l);
    }
}
