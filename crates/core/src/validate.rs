//! Validation and normalization of enqueue requests: [`Validate::validate`] turns a decoded
//! [`crate::payload`] request into its `Valid*` form, with defaults filled in, or the first
//! [`ValidationError`] (the API's `{"error": {"code", "message", "field"}}`).
//!
//! Grammar decisions (the contract; DESIGN.md leaves these open):
//! - Repository: `https://host[:port]/path` only (no userinfo, query or fragment). Hosts are DNS
//!   names or dotted IPv4 (ASCII only: IDNs in punycode). Path characters `A-Za-z0-9._~+@-` and `%XX`,
//!   no empty, `.` or `..` segments. SSH addresses (`ssh://`, `git+ssh://`, scp form
//!   `user@host:path`) are refused because they can never build: BuildKit's git source
//!   (moby/buildkit `client/llb/source.go`, `Git()`) mounts an SSH agent socket for every URL
//!   `util/gitutil` parses as SSH, and the build Job forwards none (`no SSH key "default"
//!   forwarded`); private repositories use an `https://` URL and a token Secret (`secrets.git`).
//!   Also refused: `http://` and `git://` (unencrypted), `file://`, local paths, `ext::`
//!   transports, a leading `-`, whitespace, control characters. Operators may restrict hosts
//!   with [`Limits::allowed_repository_hosts`].
//!   Internal hosts are refused unless the operator names them (in
//!   [`Limits::internal_repository_hosts`], or in the allow list): addresses in loopback,
//!   private (RFC 1918), shared (100.64/10), link-local (cloud metadata), "this network",
//!   multicast and reserved ranges, and names that resolve only inside a cluster or host
//!   (single-label names, `*.svc`, `*.cluster.local`, `*.local`, `*.localhost`, `*.internal`,
//!   `*.home.arpa`); see [`internal_host`]. IPv4 addresses must be canonical `a.b.c.d`: git
//!   reads `2130706433`, `0x7f.1` or `0177.0.0.1` as 127.0.0.1 (inet_aton), so other spellings
//!   are refused. IPv6 literals (`[::1]`, `[fd00::1]`, `[::ffff:127.0.0.1]`) are refused.
//!   A public name that resolves to an internal address is not caught here (DNS can change
//!   after the check): the build NetworkPolicy is the control for that. The scheme is stored lowercased, and the build
//!   context gets a `.git` suffix (see [`ValidBuild::git_context`]), so BuildKit reads every
//!   accepted repository as an https git remote.
//! - Commit: 40 (SHA-1) or 64 (SHA-256) hex digits. Uppercase is accepted and lowercased, so
//!   the same commit always yields the same idempotency key, tag and BuildKit context.
//! - Context and Dockerfile paths: relative, `/`-separated, segments of `A-Za-z0-9._+@-` not
//!   starting with `-`, no `.`/`..`/empty segments, at most 1024 bytes. A context of `""`, `.`
//!   or `./` means the repository root; a trailing `/` is dropped.
//! - Build `image`: a repository path only (`org/app`): no registry (the operator's
//!   `SLIPWAY_REGISTRY_PUSH` decides where images go), no tag (use `tag`), no digest.
//!   Launch `image`: any full reference by the distribution grammar ([`crate::image`]).
//! - Target stage: `[A-Za-z][A-Za-z0-9_.-]*`, at most 128, lowercased (BuildKit's rule).
//! - Build arg and env names: POSIX `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes; values at most
//!   [`Limits::max_value_len`] bytes with no control characters other than tab, CR and LF.
//! - Secret names: DNS-1123 subdomains; secret keys `[-._a-zA-Z0-9]+`, at most 253.
//! - Preview keys: 1-200 characters of printable Unicode: no control characters, no invisible
//!   format characters (zero-width, bidi overrides), no whitespace other than the ASCII space
//!   and none at either end. `owner/repo#42` is the usual shape but not required.
//! - Job ids (`from_build`): any textual UUID form the `uuid` crate parses.
//! - Health path: starts with `/`, at most 1024 bytes of visible ASCII, no fragment.
//! - Numbers: port 1-65535; replicas 1..=[`Limits::max_replicas`]; ttl_hours
//!   1..=[`Limits::max_ttl_hours`]; resources are Kubernetes quantities within the limits.

use crate::image::{self, ImageRef};
use crate::job::JobId;
use crate::payload::{
    BuildOptions, BuildRequest, BuildSecrets, CleanupRequest, LaunchOptions, LaunchRequest,
    PipelineRequest, Resources, StringMap,
};
use crate::quantity::{self, Unit};
use crate::source::{ComposeLaunch, Composition, HelmLaunch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The error codes of the API's error body.
pub mod codes {
    /// The body is not JSON or not an object.
    pub const INVALID_JSON: &str = "invalid_json";
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    pub const MISSING_FIELD: &str = "missing_field";
    pub const DUPLICATE_FIELD: &str = "duplicate_field";
    /// Wrong type, or a value that breaks the field's grammar.
    pub const INVALID_FIELD: &str = "invalid_field";
    pub const TOO_LONG: &str = "too_long";
    pub const TOO_MANY: &str = "too_many";
    /// Outside a fixed range (a port above 65535).
    pub const OUT_OF_RANGE: &str = "out_of_range";
    /// Above an operator limit (CPU, memory, replicas, ttl).
    pub const OVER_LIMIT: &str = "over_limit";
    pub const CONFLICTING_FIELDS: &str = "conflicting_fields";
    /// The repository host is not in the operator's allow list.
    pub const FORBIDDEN_VALUE: &str = "forbidden_value";
}

/// A request the API refuses with a 4xx. `field` is a dotted path (`build_args.FOO`,
/// `launch.port`), empty when the problem is the body as a whole. Messages name what is wrong
/// and never echo submitted values (they may be secrets pasted in the wrong place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ValidationError {
    pub code: &'static str,
    pub message: String,
    pub field: String,
}

impl ValidationError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            code,
            message: message.into(),
            field: field.into(),
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_FIELD, field, message)
    }

    fn too_long(field: &str, max: usize) -> Self {
        Self::new(
            codes::TOO_LONG,
            field,
            format!("is longer than {max} bytes"),
        )
    }

    /// The same error one level down: `port` under `launch` is `launch.port`.
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = join(prefix, &self.field);
        self
    }
}

/// Operator limits on what a request may ask for (from configuration; the defaults suit a
/// small cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_cpu_millis: u64,
    pub max_memory_bytes: u64,
    pub max_replicas: u32,
    pub max_ttl_hours: u32,
    /// Env vars plus secret env vars.
    pub max_env_vars: usize,
    pub max_build_args: usize,
    /// Bytes of one env or build arg value.
    pub max_value_len: usize,
    /// Lowercase hosts a repository may live on; empty allows any public host. A host listed
    /// here is allowed even when it is internal (see [`internal_host`]).
    pub allowed_repository_hosts: Vec<String>,
    /// Lowercase internal hosts (cluster Services, private addresses) a repository may live on,
    /// without restricting public hosts as a non-empty `allowed_repository_hosts` does.
    pub internal_repository_hosts: Vec<String>,
    /// The Secrets a build may name in `secrets.git` / `secrets.registry`; empty allows any
    /// name. The chart feeds the same list to the build worker's RBAC (`resourceNames`), so a
    /// name the worker could not read is refused here.
    pub build_secret_names: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cpu_millis: 2000,
            max_memory_bytes: 2 << 30,
            max_replicas: 5,
            max_ttl_hours: 24 * 30,
            max_env_vars: 100,
            max_build_args: 100,
            max_value_len: 4096,
            allowed_repository_hosts: Vec::new(),
            internal_repository_hosts: Vec::new(),
            build_secret_names: Vec::new(),
        }
    }
}

pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_REPLICAS: u32 = 1;
pub const DEFAULT_HEALTH_PATH: &str = "/";
pub const DEFAULT_TTL_HOURS: u32 = 72;

pub const MAX_REPOSITORY_LEN: usize = 2048;
pub const MAX_REL_PATH_LEN: usize = 1024;
pub const MAX_VAR_NAME_LEN: usize = 128;
pub const MAX_TARGET_LEN: usize = 128;
pub const MAX_SECRET_NAME_LEN: usize = 253;
pub const MAX_SECRET_KEY_LEN: usize = 253;
/// Characters, not bytes.
pub const MAX_PREVIEW_KEY_CHARS: usize = 200;
pub const MAX_HEALTH_PATH_LEN: usize = 1024;

/// A request that can be checked and normalized.
pub trait Validate {
    type Valid;
    fn validate(&self, limits: &Limits) -> Result<Self::Valid, ValidationError>;
}

/// How a repository is reached: https only (SSH addresses cannot build; see the module docs).
/// Kept as an enum so stored payloads keep their `"scheme": "https"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoScheme {
    Https,
}

/// A validated repository URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub scheme: RepoScheme,
    /// Lowercased host, without port.
    pub host: String,
    /// The URL as given, with its scheme lowercased.
    pub url: String,
}

/// A validated build: what the build worker needs, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidBuild {
    pub repository: Repository,
    /// Lowercase hex.
    pub commit: String,
    /// Sub-directory of the repository; `None` is the root.
    pub context: Option<String>,
    pub dockerfile: String,
    /// Repository path under the operator's registry, e.g. `org/app`.
    pub image: String,
    pub tag: String,
    pub build_args: StringMap,
    /// Lowercased stage name.
    pub target: Option<String>,
    pub secrets: BuildSecrets,
    pub preview: Option<String>,
    /// Where the Dockerfile comes from (absent in older payloads: the repository's).
    #[serde(default)]
    pub source: BuildSource,
}

/// Where a build's Dockerfile comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildSource {
    /// The repository's, at `dockerfile`.
    #[default]
    Dockerfile,
    /// Generated for the detected stack (`slipway_core::detect`).
    Auto,
}

impl ValidBuild {
    /// BuildKit's git context: `<repository>#<commit>[:<context>]`. BuildKit's Dockerfile
    /// frontend takes an `https://` URL for a git repository only when its path ends in
    /// `.git` (moby/buildkit `util/gitutil/git_ref.go`, `ParseGitRef`), so the suffix is added
    /// when missing (GitHub, GitLab, Gitea and Bitbucket all serve both forms).
    pub fn git_context(&self) -> String {
        let remote = self.remote();
        match &self.context {
            Some(dir) => format!("{remote}#{}:{dir}", self.commit),
            None => format!("{remote}#{}", self.commit),
        }
    }

    /// The repository as BuildKit (and the source Job's git) fetches it: the URL with `.git`.
    pub fn remote(&self) -> String {
        let url = &self.repository.url;
        if url.ends_with(".git") {
            url.clone()
        } else {
            format!("{url}.git")
        }
    }

    /// `<registry>/<image>:<tag>` for a registry prefix from configuration (push and pull
    /// prefixes differ on minikube); an empty prefix gives `<image>:<tag>`.
    pub fn image_reference(&self, registry: &str) -> String {
        let registry = registry.trim_end_matches('/');
        if registry.is_empty() {
            format!("{}:{}", self.image, self.tag)
        } else {
            format!("{registry}/{}:{}", self.image, self.tag)
        }
    }
}

impl ValidPipeline {
    /// The idempotency key of this pipeline's job of `kind` (DESIGN.md: a pipeline is keyed by
    /// preview, commit and kind): `pipeline:<kind>:<commit>:<preview>`. Unambiguous because the
    /// kind is a fixed word and the commit fixed-length hex; the API should give caller-sent
    /// `Idempotency-Key`s a different prefix so the two can never meet.
    pub fn idempotency_key(&self, kind: crate::job::JobKind) -> String {
        format!("pipeline:{kind}:{}:{}", self.build.commit, self.preview)
    }
}

/// Where a launch's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    Image(ImageRef),
    /// The image a build job pushed (resolved by the API or worker from the job's result).
    FromBuild(JobId),
}

/// One key of one Secret, exposed as an env var.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretKeyRef {
    pub secret: String,
    pub key: String,
}

/// Requested resources in exact units; `None` leaves the operator's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValidResources {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl ValidResources {
    /// The CPU as a Kubernetes quantity (`250m`, `2`).
    pub fn cpu_quantity(&self) -> Option<String> {
        self.cpu_millis.map(quantity::format_cpu)
    }
    /// The memory as a Kubernetes quantity (`256Mi`).
    pub fn memory_quantity(&self) -> Option<String> {
        self.memory_bytes.map(quantity::format_memory)
    }
}

/// Validated launch options, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidLaunchOptions {
    pub port: u16,
    pub env: StringMap,
    pub secret_env: BTreeMap<String, SecretKeyRef>,
    pub replicas: u32,
    pub resources: ValidResources,
    pub health_path: String,
    pub ttl_hours: u32,
    /// Read-only root filesystem with a writable `/tmp` (absent in older payloads: off).
    #[serde(default)]
    pub read_only_root_filesystem: bool,
}

/// A validated launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidLaunch {
    pub preview: String,
    pub source: ImageSource,
    pub options: ValidLaunchOptions,
    /// A compose preview: every service (then `source` is the exposed service's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeLaunch>,
    /// A Helm preview: the chart with the built image (`source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmLaunch>,
}

/// A validated cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidCleanup {
    pub preview: String,
}

/// A validated pipeline: the build (its `preview` set to the pipeline's) and the options of
/// the launch that follows with the built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidPipeline {
    pub preview: String,
    pub build: ValidBuild,
    pub launch: ValidLaunchOptions,
    /// A `compose` or `helm` source: the preview is a whole application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition: Option<Composition>,
}

impl Validate for BuildRequest {
    type Valid = ValidBuild;
    fn validate(&self, limits: &Limits) -> Result<ValidBuild, ValidationError> {
        let preview = self
            .preview
            .as_deref()
            .map(|p| preview_key(p, "preview"))
            .transpose()?;
        build(
            &self.repository,
            &self.commit,
            &self.options(),
            "",
            preview,
            limits,
        )
    }
}

impl Validate for LaunchRequest {
    type Valid = ValidLaunch;
    fn validate(&self, limits: &Limits) -> Result<ValidLaunch, ValidationError> {
        let preview = preview_key(&self.preview, "preview")?;
        let source = match (&self.image, &self.from_build) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    codes::CONFLICTING_FIELDS,
                    "from_build",
                    "give exactly one of `image` and `from_build`, not both",
                ));
            }
            (None, None) => {
                return Err(ValidationError::new(
                    codes::MISSING_FIELD,
                    "image",
                    "give `image` or `from_build`",
                ));
            }
            (Some(i), None) => ImageSource::Image(image_ref(i, "image")?),
            (None, Some(id)) => ImageSource::FromBuild(job_id(id, "from_build")?),
        };
        let options = launch_options(&self.options(), "", limits)?;
        Ok(ValidLaunch {
            preview,
            source,
            options,
            compose: None,
            helm: None,
        })
    }
}

impl Validate for CleanupRequest {
    type Valid = ValidCleanup;
    fn validate(&self, _limits: &Limits) -> Result<ValidCleanup, ValidationError> {
        Ok(ValidCleanup {
            preview: preview_key(&self.preview, "preview")?,
        })
    }
}

impl Validate for PipelineRequest {
    type Valid = ValidPipeline;
    fn validate(&self, limits: &Limits) -> Result<ValidPipeline, ValidationError> {
        let preview = preview_key(&self.preview, "preview")?;
        let opts = self.build.clone().unwrap_or_default();
        let launch = launch_options(&self.launch.clone().unwrap_or_default(), "launch", limits)?;
        let (source, composition) =
            crate::source::parse(self.source.as_ref(), &opts, launch.port, "source")?;
        let mut build = build(
            &self.repository,
            &self.commit,
            &opts,
            "build",
            Some(preview.clone()),
            limits,
        )?;
        build.source = source;
        Ok(ValidPipeline {
            preview,
            build,
            launch,
            composition,
        })
    }
}

/// Shared by builds and pipelines; `prefix` is where the options live (`""` or `"build"`),
/// while `repository` and `commit` are always top-level fields.
fn build(
    repo: &str,
    commit_sha: &str,
    o: &BuildOptions,
    prefix: &str,
    preview: Option<String>,
    limits: &Limits,
) -> Result<ValidBuild, ValidationError> {
    let repository = repository(repo, "repository", limits)?;
    let commit = commit(commit_sha, "commit")?;
    let f = |name: &str| join(prefix, name);
    let context = match &o.context {
        Some(c) => rel_path(c, &f("context"), true)?,
        None => None,
    };
    let dockerfile = match &o.dockerfile {
        Some(d) => rel_path(d, &f("dockerfile"), false)?.unwrap_or_default(),
        None => DEFAULT_DOCKERFILE.to_owned(),
    };
    let image = match &o.image {
        Some(i) => build_image(i, &f("image"))?,
        None => default_image_name(&repository).ok_or_else(|| {
            ValidationError::new(
                codes::MISSING_FIELD,
                f("image"),
                "no image name can be derived from the repository; give `image`",
            )
        })?,
    };
    let tag = match &o.tag {
        Some(t) if image::is_tag(t) => t.clone(),
        Some(_) => {
            return Err(ValidationError::invalid(
                &f("tag"),
                "must be 1-128 of A-Z a-z 0-9 _ . -, not starting with '.' or '-'",
            ));
        }
        None => commit.clone(),
    };
    let build_args = vars(
        &o.build_args,
        &f("build_args"),
        limits.max_build_args,
        limits,
    )?;
    let target = o
        .target
        .as_deref()
        .map(|t| target(t, &f("target")))
        .transpose()?;
    let secrets = match &o.secrets {
        Some(s) => BuildSecrets {
            git: s
                .git
                .as_deref()
                .map(|n| build_secret(n, &f("secrets.git"), limits))
                .transpose()?,
            registry: s
                .registry
                .as_deref()
                .map(|n| build_secret(n, &f("secrets.registry"), limits))
                .transpose()?,
        },
        None => BuildSecrets::default(),
    };
    Ok(ValidBuild {
        repository,
        commit,
        context,
        dockerfile,
        image,
        tag,
        build_args,
        target,
        secrets,
        preview,
        source: BuildSource::Dockerfile,
    })
}

/// Shared by launches and pipelines.
fn launch_options(
    o: &LaunchOptions,
    prefix: &str,
    limits: &Limits,
) -> Result<ValidLaunchOptions, ValidationError> {
    let f = |name: &str| join(prefix, name);
    let port = match o.port {
        None => DEFAULT_PORT,
        Some(p) => u16::try_from(p).ok().filter(|p| *p >= 1).ok_or_else(|| {
            ValidationError::new(
                codes::OUT_OF_RANGE,
                f("port"),
                "must be between 1 and 65535",
            )
        })?,
    };
    let env = vars(&o.env, &f("env"), limits.max_env_vars, limits)?;
    if env.len() + o.secret_env.len() > limits.max_env_vars {
        return Err(ValidationError::new(
            codes::TOO_MANY,
            f("secret_env"),
            format!(
                "env and secret_env together may hold at most {} variables",
                limits.max_env_vars
            ),
        ));
    }
    let mut secret_env = BTreeMap::new();
    for (name, reference) in &o.secret_env {
        let field = join(&f("secret_env"), &crate::payload::shown_key(name));
        var_name(name, &field)?;
        if env.contains_key(name) {
            return Err(ValidationError::new(
                codes::CONFLICTING_FIELDS,
                field,
                "is also set in `env`",
            ));
        }
        secret_env.insert(name.clone(), secret_key_ref(reference, &field)?);
    }
    let replicas = match o.replicas {
        None => DEFAULT_REPLICAS,
        Some(r) if r < 1 => {
            return Err(ValidationError::new(
                codes::OUT_OF_RANGE,
                f("replicas"),
                "must be at least 1",
            ));
        }
        Some(r) => u32::try_from(r)
            .ok()
            .filter(|r| *r <= limits.max_replicas)
            .ok_or_else(|| {
                ValidationError::new(
                    codes::OVER_LIMIT,
                    f("replicas"),
                    format!("is above the operator limit of {}", limits.max_replicas),
                )
            })?,
    };
    let resources = match &o.resources {
        Some(r) => resources(r, &f("resources"), limits)?,
        None => ValidResources::default(),
    };
    let health_path = match &o.health_path {
        Some(p) => health_path(p, &f("health_path"))?,
        None => DEFAULT_HEALTH_PATH.to_owned(),
    };
    let ttl_hours = match o.ttl_hours {
        // An operator limit below the default lowers the default rather than failing requests.
        None => DEFAULT_TTL_HOURS.min(limits.max_ttl_hours),
        Some(t) if t < 1 => {
            return Err(ValidationError::new(
                codes::OUT_OF_RANGE,
                f("ttl_hours"),
                "must be at least 1",
            ));
        }
        Some(t) => u32::try_from(t)
            .ok()
            .filter(|t| *t <= limits.max_ttl_hours)
            .ok_or_else(|| {
                ValidationError::new(
                    codes::OVER_LIMIT,
                    f("ttl_hours"),
                    format!(
                        "is above the operator limit of {} hours",
                        limits.max_ttl_hours
                    ),
                )
            })?,
    };
    Ok(ValidLaunchOptions {
        port,
        env,
        secret_env,
        replicas,
        resources,
        health_path,
        ttl_hours,
        read_only_root_filesystem: o.read_only_root_filesystem.unwrap_or(false),
    })
}

/// `prefix.name`, or `name` alone at the top level.
pub fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{name}"),
    }
}

/// A name as it may appear in a message: quoted, escaped, at most 64 characters.
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    let ellipsis = if cut.len() < s.len() { "…" } else { "" };
    format!("{cut:?}{ellipsis}")
}

/// Invisible Unicode format characters that can disguise a string: soft hyphen, zero-width
/// and joiner characters, bidirectional overrides and isolates, word joiners, the BOM.
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// A preview key (see the module docs for the grammar). Returned unchanged.
pub fn preview_key(s: &str, field: &str) -> Result<String, ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::new(
            codes::MISSING_FIELD,
            field,
            "must not be empty",
        ));
    }
    if s.chars().count() > MAX_PREVIEW_KEY_CHARS {
        return Err(ValidationError::new(
            codes::TOO_LONG,
            field,
            format!("is longer than {MAX_PREVIEW_KEY_CHARS} characters"),
        ));
    }
    if s.chars()
        .any(|c| c.is_control() || is_format_char(c) || (c.is_whitespace() && c != ' '))
    {
        return Err(ValidationError::invalid(
            field,
            "must not contain control, invisible or non-space whitespace characters",
        ));
    }
    if s.starts_with(' ') || s.ends_with(' ') {
        return Err(ValidationError::invalid(
            field,
            "must not start or end with a space",
        ));
    }
    Ok(s.to_owned())
}

/// What a refused repository should be instead.
const USE_HTTPS: &str = "use the repository's https:// URL (such as https://github.com/org/app.git) \
and, for a private repository, name a Secret holding an access token in `secrets.git` \
(`build.secrets.git` in a pipeline)";

/// A repository URL (see the module docs for the grammar).
pub fn repository(s: &str, field: &str, limits: &Limits) -> Result<Repository, ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::new(
            codes::MISSING_FIELD,
            field,
            "must not be empty",
        ));
    }
    if s.len() > MAX_REPOSITORY_LEN {
        return Err(ValidationError::too_long(field, MAX_REPOSITORY_LEN));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::invalid(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    if !s.is_ascii() {
        return Err(ValidationError::invalid(
            field,
            "must be ASCII (write international host names in punycode)",
        ));
    }
    if s.starts_with('-') {
        return Err(ValidationError::invalid(field, "must not start with '-'"));
    }
    if s.get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://["))
    {
        // Loopback (::1), unique-local (fc00::/7), link-local and IPv4-mapped (::ffff:a.b.c.d)
        // forms would each need a rule; no git host is reached by a literal IPv6 address.
        return Err(ValidationError::new(
            codes::FORBIDDEN_VALUE,
            field,
            "IPv6 address literals ([...]) are not allowed; use the host's DNS name",
        ));
    }
    if s.contains("::") {
        return Err(ValidationError::invalid(
            field,
            "git transport syntax (such as ext::) is not allowed",
        ));
    }
    let lower = s.to_ascii_lowercase();
    if !lower.starts_with("https://") {
        return Err(ValidationError::invalid(field, not_https(&lower)));
    }
    let host = url_repo(&s[8..], field)?;
    let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(&host));
    if let Some(ip) = ipv4_spelling(&host) {
        let canonical = ip.to_string();
        if canonical != host {
            // git (curl, getaddrinfo) reads these as inet_aton does; never guess for it.
            return Err(ValidationError::new(
                codes::FORBIDDEN_VALUE,
                field,
                format!(
                    "non-canonical IPv4 spelling (decimal, octal, hex or shortened; this one \
                     means {canonical}) is not allowed; write the address as a.b.c.d"
                ),
            ));
        }
    }
    let explicitly_allowed =
        listed(&limits.allowed_repository_hosts) || listed(&limits.internal_repository_hosts);
    if !explicitly_allowed && let Some(rule) = internal_host(&host) {
        return Err(ValidationError::new(
            codes::FORBIDDEN_VALUE,
            field,
            format!(
                "{rule} is not allowed (builds must not reach internal services); an operator \
                 can allow this host with SLIPWAY_INTERNAL_REPOSITORY_HOSTS"
            ),
        ));
    }
    if !limits.allowed_repository_hosts.is_empty() && !listed(&limits.allowed_repository_hosts) {
        return Err(ValidationError::new(
            codes::FORBIDDEN_VALUE,
            field,
            "this repository host is not allowed by the operator",
        ));
    }
    // BuildKit recognises git URLs by a lowercase scheme, so store it lowercased.
    Ok(Repository {
        scheme: RepoScheme::Https,
        host,
        url: format!("https://{}", &s[8..]),
    })
}

/// A host that is an IPv4 address in any spelling `inet_aton` (and so git, through curl and
/// `getaddrinfo`) or the WHATWG URL parser accepts: one to four parts, each decimal, octal
/// (leading `0`) or hex (`0x`), the last filling the remaining bytes (`127.1`, `2130706433`,
/// `0x7f.0.0.1`, `0177.0.0.1`). `None`: not an address (a DNS name). A host whose last label is
/// numeric but does not parse is refused by the caller too ([`internal_host`] never sees it).
fn ipv4_spelling(host: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    let number = |p: &str| -> Option<u64> {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x") {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (p, 10)
        };
        if digits.is_empty() {
            // `0x` alone is 0 for inet_aton and WHATWG alike.
            return (radix == 16).then_some(0);
        }
        u64::from_str_radix(digits, radix).ok()
    };
    // WHATWG: a host "ends in a number" when its last label is numeric; that is the IPv4 test.
    let last = parts.last()?;
    let numeric = |p: &str| {
        !p.is_empty()
            && (p.bytes().all(|b| b.is_ascii_digit())
                || p.strip_prefix("0x")
                    .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
    };
    if !numeric(last) || parts.len() > 4 {
        return None;
    }
    let nums: Vec<u64> = parts.iter().map(|p| number(p)).collect::<Option<_>>()?;
    let (head, tail) = nums.split_at(nums.len() - 1);
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len() as u32);
    if tail[0] >= 1u64 << rest_bits {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    Some(std::net::Ipv4Addr::from((v | tail[0]) as u32))
}

/// Why a (lowercased, grammatical) repository host is internal, if it is: an address in a
/// loopback, private, link-local, shared or reserved range, or a name that only resolves
/// inside a cluster or a host. Public names that a cluster's DNS search path also resolves
/// (`redis.slipway` is tried as `redis.slipway.svc.cluster.local` first) cannot be told apart
/// here: the build NetworkPolicy is what keeps those unreachable.
pub fn internal_host(host: &str) -> Option<String> {
    let last = host.rsplit('.').next().unwrap_or(host);
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        let Some(ip) = ipv4_spelling(host) else {
            return Some("a numeric host that is not an IPv4 address".into());
        };
        let o = ip.octets();
        let range = match o {
            [0, ..] => Some(("\"this network\" address", "0.0.0.0/8")),
            [10, ..] => Some(("private address", "10.0.0.0/8")),
            [100, b, ..] if (64..128).contains(&b) => {
                Some(("shared (CGNAT) address", "100.64.0.0/10"))
            }
            [127, ..] => Some(("loopback address", "127.0.0.0/8")),
            [169, 254, ..] => Some(("link-local address (cloud metadata)", "169.254.0.0/16")),
            [172, b, ..] if (16..32).contains(&b) => Some(("private address", "172.16.0.0/12")),
            [192, 0, 0, _] => Some(("IETF protocol address", "192.0.0.0/24")),
            [192, 168, ..] => Some(("private address", "192.168.0.0/16")),
            [198, b, ..] if b == 18 || b == 19 => Some(("benchmarking address", "198.18.0.0/15")),
            [a, ..] if (224..240).contains(&a) => Some(("multicast address", "224.0.0.0/4")),
            [a, ..] if a >= 240 => Some(("reserved address", "240.0.0.0/4")),
            _ => None,
        };
        return range.map(|(what, cidr)| format!("{what} {cidr}"));
    }
    let suffix = |s: &str| host == s || host.ends_with(&format!(".{s}"));
    if !host.contains('.') {
        return Some(
            "single-label name (the cluster's DNS search path resolves it, to a Service)".into(),
        );
    }
    for (s, what) in [
        ("localhost", "loopback name (*.localhost)"),
        ("svc", "cluster-internal name (*.svc)"),
        ("cluster.local", "cluster-internal name (*.cluster.local)"),
        ("local", "link-local (mDNS) name (*.local)"),
        (
            "internal",
            "internal name (*.internal, such as metadata.google.internal)",
        ),
        ("home.arpa", "home network name (*.home.arpa)"),
    ] {
        if suffix(s) {
            return Some(what.into());
        }
    }
    None
}

/// Why a (lowercased) repository that is not `https://` is refused, and what to use instead.
fn not_https(lower: &str) -> String {
    let scheme = lower.split_once("://").map(|(scheme, _)| scheme);
    // git's scp form is `[user@]host:path` with no `/` before the first `:` (a `/` would make
    // it a local path); BuildKit reads `user@host:path` as SSH (`util/sshutil/scpurl.go`).
    let scp = scheme.is_none()
        && lower.split_once(':').is_some_and(|(userhost, _)| {
            !userhost.contains('/') && (userhost.contains('@') || userhost.contains('.'))
        });
    match scheme {
        Some("ssh" | "git+ssh" | "ssh+git") => format!(
            "SSH repositories cannot be built (BuildKit clones them through an SSH agent, and \
             build Jobs have none); {USE_HTTPS}"
        ),
        _ if scp => format!(
            "scp-style SSH addresses (user@host:path) cannot be built (BuildKit clones them \
             through an SSH agent, and build Jobs have none); {USE_HTTPS}"
        ),
        Some(s @ ("http" | "git")) => {
            format!("{s}:// repositories are not allowed (unencrypted); {USE_HTTPS}")
        }
        Some(s @ ("file" | "ftp" | "ftps")) => {
            format!("{s}:// repositories are not allowed; {USE_HTTPS}")
        }
        _ => format!("only https://host/path repositories are accepted; {USE_HTTPS}"),
    }
}

/// The part of an `https://` URL after the scheme; returns the lowercased host.
fn url_repo(rest: &str, field: &str) -> Result<String, ValidationError> {
    if rest.contains('?') {
        return Err(ValidationError::invalid(
            field,
            "must not have a query (?...)",
        ));
    }
    if rest.contains('#') {
        return Err(ValidationError::invalid(
            field,
            "must not have a fragment (#...); give the commit in `commit`",
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(ValidationError::invalid(
            field,
            "must not contain credentials (user@ or user:password@); name a git secret instead",
        ));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if !is_hostname(host) {
        return Err(ValidationError::invalid(
            field,
            "has a missing or invalid host",
        ));
    }
    if let Some(p) = port
        && !(p.len() <= 5
            && !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && matches!(p.parse::<u32>(), Ok(1..=65535)))
    {
        return Err(ValidationError::invalid(field, "has an invalid port"));
    }
    repo_path(path, field)?;
    Ok(host.to_ascii_lowercase())
}

/// A DNS name or dotted IPv4 address: labels of letters, digits and `-`, not at either end.
fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn repo_path(path: &str, field: &str) -> Result<(), ValidationError> {
    if path.is_empty() {
        return Err(ValidationError::invalid(field, "has no repository path"));
    }
    if path.starts_with('-') {
        return Err(ValidationError::invalid(
            field,
            "path must not start with '-'",
        ));
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(ValidationError::invalid(
                field,
                "path must not have empty, '.' or '..' segments",
            ));
        }
        let b = seg.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len()
                    && b[i + 1].is_ascii_hexdigit()
                    && b[i + 2].is_ascii_hexdigit() =>
                {
                    i += 3;
                }
                c if c.is_ascii_alphanumeric()
                    || matches!(c, b'.' | b'_' | b'~' | b'+' | b'@' | b'-') =>
                {
                    i += 1;
                }
                _ => {
                    return Err(ValidationError::invalid(
                        field,
                        "path may only contain A-Z a-z 0-9 . _ ~ + @ - and %XX escapes",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A commit sha: 40 or 64 hex digits, returned lowercased.
pub fn commit(s: &str, field: &str) -> Result<String, ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::new(
            codes::MISSING_FIELD,
            field,
            "must not be empty",
        ));
    }
    if !matches!(s.len(), 40 | 64) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ValidationError::invalid(
            field,
            "must be a full commit sha: 40 or 64 hexadecimal digits",
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// A relative path inside the repository. With `dir`, `""`, `.` and `./` mean the root
/// (`None`) and a trailing `/` is dropped; otherwise (a file) it must name something.
pub fn rel_path(s: &str, field: &str, dir: bool) -> Result<Option<String>, ValidationError> {
    if s.len() > MAX_REL_PATH_LEN {
        return Err(ValidationError::too_long(field, MAX_REL_PATH_LEN));
    }
    let trimmed = if dir {
        match s {
            "" | "." | "./" => return Ok(None),
            _ => s.strip_suffix('/').unwrap_or(s),
        }
    } else {
        s
    };
    if trimmed.is_empty() {
        return Err(ValidationError::new(
            codes::MISSING_FIELD,
            field,
            "must not be empty",
        ));
    }
    if trimmed.starts_with('/') {
        return Err(ValidationError::invalid(
            field,
            "must be relative to the repository (no leading '/')",
        ));
    }
    for seg in trimmed.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(ValidationError::invalid(
                field,
                "must not have empty, '.' or '..' segments",
            ));
        }
        if seg.starts_with('-') {
            return Err(ValidationError::invalid(
                field,
                "path segments must not start with '-'",
            ));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'@' | b'-'))
        {
            return Err(ValidationError::invalid(
                field,
                "may only contain A-Z a-z 0-9 . _ + @ - and '/' between segments",
            ));
        }
    }
    Ok(Some(trimmed.to_owned()))
}

/// A build's image: a repository path with no registry, tag or digest.
pub fn build_image(s: &str, field: &str) -> Result<String, ValidationError> {
    let r = image::parse(s).map_err(|e| ValidationError::invalid(field, e.to_string()))?;
    if r.domain.is_some() {
        return Err(ValidationError::invalid(
            field,
            "must be a repository path such as org/app; the registry is set by the operator",
        ));
    }
    if r.tag.is_some() || r.digest.is_some() {
        return Err(ValidationError::invalid(
            field,
            "must not have a tag or digest; give the tag in `tag`",
        ));
    }
    Ok(r.path)
}

/// The image name a pipeline builds when it names none: the repository path's last two
/// segments (`https://github.com/Org/My_App.git` -> `org/my_app`), lowercased and made to fit
/// the distribution grammar. `None` when nothing usable remains.
pub fn default_image_name(repo: &Repository) -> Option<String> {
    let after_scheme = repo.url.split_once("://")?.1;
    let path = after_scheme.split_once('/')?.1;
    let path = path.strip_suffix(".git").unwrap_or(path);
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(path_component)
        .filter(|s| !s.is_empty())
        .collect();
    let start = segs.len().saturating_sub(2);
    let name = segs[start..].join("/");
    image::parse_name(&name).is_ok().then_some(name)
}

/// Lowercases and keeps `[a-z0-9]` runs joined by single `-`, a valid path component or empty.
fn path_component(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-')
        .chars()
        .take(64)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// A launch's image: a full reference.
pub fn image_ref(s: &str, field: &str) -> Result<ImageRef, ValidationError> {
    image::parse(s).map_err(|e| ValidationError::invalid(field, e.to_string()))
}

/// A job id.
pub fn job_id(s: &str, field: &str) -> Result<JobId, ValidationError> {
    if s.len() > 64 {
        return Err(ValidationError::too_long(field, 64));
    }
    JobId::try_parse(s).map_err(|_| ValidationError::invalid(field, "must be a job id (a UUID)"))
}

/// An env var or build arg name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn var_name(s: &str, field: &str) -> Result<(), ValidationError> {
    if s.len() > MAX_VAR_NAME_LEN {
        return Err(ValidationError::too_long(field, MAX_VAR_NAME_LEN));
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::invalid(
            field,
            "must be a variable name: a letter or '_', then letters, digits or '_'",
        ))
    }
}

fn vars(
    m: &StringMap,
    field: &str,
    max: usize,
    limits: &Limits,
) -> Result<StringMap, ValidationError> {
    if m.len() > max {
        return Err(ValidationError::new(
            codes::TOO_MANY,
            field,
            format!("may hold at most {max} entries"),
        ));
    }
    for (k, v) in m {
        let f = join(field, &crate::payload::shown_key(k));
        var_name(k, &f)?;
        if v.len() > limits.max_value_len {
            return Err(ValidationError::too_long(&f, limits.max_value_len));
        }
        if v.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(ValidationError::invalid(
                &f,
                "value must not contain control characters other than tab, CR and LF",
            ));
        }
    }
    Ok(m.clone())
}

/// A Dockerfile stage name, lowercased.
pub fn target(s: &str, field: &str) -> Result<String, ValidationError> {
    if s.len() > MAX_TARGET_LEN {
        return Err(ValidationError::too_long(field, MAX_TARGET_LEN));
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ValidationError::invalid(
            field,
            "must be a stage name: a letter, then letters, digits, '_', '.' or '-'",
        ))
    }
}

/// A Kubernetes Secret name (DNS-1123 subdomain).
pub fn secret_name(s: &str, field: &str) -> Result<String, ValidationError> {
    if s.len() > MAX_SECRET_NAME_LEN {
        return Err(ValidationError::too_long(field, MAX_SECRET_NAME_LEN));
    }
    if crate::naming::is_dns1123_subdomain(s) {
        Ok(s.to_owned())
    } else {
        Err(ValidationError::invalid(
            field,
            "must be a Secret name: lowercase letters, digits, '-' and '.', starting and ending alphanumeric",
        ))
    }
}

/// A Secret a build mounts: a Secret name the operator's list (if any) holds. The build worker
/// reads these Secrets to mask their values in the log and may read only the listed ones.
pub fn build_secret(s: &str, field: &str, limits: &Limits) -> Result<String, ValidationError> {
    let name = secret_name(s, field)?;
    if !limits.build_secret_names.is_empty() && !limits.build_secret_names.contains(&name) {
        return Err(ValidationError::new(
            codes::FORBIDDEN_VALUE,
            field,
            "is not one of the Secrets builds may use (SLIPWAY_BUILD_SECRET_NAMES, the chart's \
             buildNamespace.secretNames)",
        ));
    }
    Ok(name)
}

/// `"<secret>/<key>"`.
pub fn secret_key_ref(s: &str, field: &str) -> Result<SecretKeyRef, ValidationError> {
    let Some((secret, key)) = s.split_once('/') else {
        return Err(ValidationError::invalid(
            field,
            "must be \"<secret name>/<key>\"",
        ));
    };
    let secret = secret_name(secret, field)?;
    if key.len() > MAX_SECRET_KEY_LEN {
        return Err(ValidationError::too_long(field, MAX_SECRET_KEY_LEN));
    }
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !key_ok {
        return Err(ValidationError::invalid(
            field,
            "secret key must be letters, digits, '-', '.' or '_'",
        ));
    }
    Ok(SecretKeyRef {
        secret,
        key: key.to_owned(),
    })
}

/// CPU and memory requests, each within the operator's limit.
pub fn resources(
    r: &Resources,
    field: &str,
    limits: &Limits,
) -> Result<ValidResources, ValidationError> {
    let one = |v: &Option<String>,
               name: &str,
               unit: Unit,
               max: u64,
               show: fn(u64) -> String|
     -> Result<Option<u64>, ValidationError> {
        let f = join(field, name);
        let Some(s) = v else { return Ok(None) };
        let n = quantity::parse(s, unit).map_err(|e| {
            let hint = if unit == Unit::Bytes && s.ends_with('m') {
                " ('m' is milli; did you mean Mi?)"
            } else {
                ""
            };
            ValidationError::invalid(&f, format!("{e}{hint}"))
        })?;
        if n > max {
            return Err(ValidationError::new(
                codes::OVER_LIMIT,
                f,
                format!("is above the operator limit of {}", show(max)),
            ));
        }
        Ok(Some(n))
    };
    Ok(ValidResources {
        cpu_millis: one(
            &r.cpu,
            "cpu",
            Unit::Millicores,
            limits.max_cpu_millis,
            quantity::format_cpu,
        )?,
        memory_bytes: one(
            &r.memory,
            "memory",
            Unit::Bytes,
            limits.max_memory_bytes,
            quantity::format_memory,
        )?,
    })
}

/// An HTTP path for the readiness probe.
pub fn health_path(s: &str, field: &str) -> Result<String, ValidationError> {
    if s.len() > MAX_HEALTH_PATH_LEN {
        return Err(ValidationError::too_long(field, MAX_HEALTH_PATH_LEN));
    }
    if !s.starts_with('/') {
        return Err(ValidationError::invalid(field, "must start with '/'"));
    }
    let ok = s.bytes().all(|b| {
        b.is_ascii_graphic()
            && !matches!(
                b,
                b'#' | b'\\' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^'
            )
    });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ValidationError::invalid(
            field,
            "must be a URL path of visible ASCII without spaces or a fragment",
        ))
    }
}

impl fmt::Display for RepoScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RepoScheme::Https => "https",
        })
    }
}

/// What BuildKit v0.23 (the pinned `moby/buildkit:v0.23.2-rootless`) makes of a Dockerfile
/// frontend context, transcribed from moby/buildkit `util/gitutil/git_ref.go` (`ParseGitRef`),
/// `util/gitutil/git_url.go` (`ParseURL`) and `util/sshutil/scpurl.go`: the git transport it
/// picks (`ssh` means an SSH agent socket is mounted, `client/llb/source.go`), or why the
/// context is not a git ref at all.
#[cfg(test)]
pub(crate) mod buildkit {
    pub(crate) fn git_scheme(context: &str) -> Result<&'static str, &'static str> {
        if context.starts_with("./") || context.starts_with("../") {
            return Err("not a git ref");
        }
        if context.starts_with("github.com/") {
            return Ok("https");
        }
        // protoRegexp `^[a-zA-Z0-9]+://`
        let proto_len = context
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if proto_len > 0 && context[proto_len..].starts_with("://") {
            let scheme = match context[..proto_len].to_ascii_lowercase().as_str() {
                "http" => "http",
                "https" => "https",
                "ssh" => "ssh",
                "git" => "git",
                _ => return Err("invalid protocol"),
            };
            // net/url: the path runs from the first '/' after the authority to '?' or '#'.
            let rest = &context[proto_len + 3..];
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            let path = rest.find('/').map_or("", |i| &rest[i..]);
            if matches!(scheme, "http" | "https") && !path.ends_with(".git") {
                return Err("not a git ref");
            }
            return Ok(scheme);
        }
        // gitSSHRegex `^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:#(.*))?$`
        let scp = context.split_once('@').is_some_and(|(user, rest)| {
            !user.is_empty()
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                && rest.split_once(':').is_some_and(|(host, _)| {
                    !host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
                })
        });
        if scp {
            Ok("ssh")
        } else {
            Err("unknown protocol")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn limits() -> Limits {
        Limits::default()
    }

    fn build_req() -> BuildRequest {
        BuildRequest {
            repository: "https://github.com/org/app.git".into(),
            commit: SHA.into(),
            image: "org/app".into(),
            ..Default::default()
        }
    }

    fn launch_req() -> LaunchRequest {
        LaunchRequest {
            preview: "org/app#42".into(),
            image: Some("ghcr.io/org/app:v1".into()),
            ..Default::default()
        }
    }

    fn build_err(f: impl FnOnce(&mut BuildRequest)) -> ValidationError {
        let mut r = build_req();
        f(&mut r);
        r.validate(&limits()).expect_err("should be rejected")
    }

    fn launch_err(f: impl FnOnce(&mut LaunchRequest)) -> ValidationError {
        let mut r = launch_req();
        f(&mut r);
        r.validate(&limits()).expect_err("should be rejected")
    }

    fn launch_ok(f: impl FnOnce(&mut LaunchRequest)) -> ValidLaunch {
        let mut r = launch_req();
        f(&mut r);
        r.validate(&limits()).expect("should be accepted")
    }

    #[test]
    fn read_only_root_filesystem_defaults_off_and_is_carried() {
        assert!(!launch_ok(|_| {}).options.read_only_root_filesystem);
        let on = launch_ok(|r| r.read_only_root_filesystem = Some(true));
        assert!(on.options.read_only_root_filesystem);
        // Payloads stored before the field existed still parse (off).
        let mut stored = serde_json::to_value(&on.options).unwrap();
        stored
            .as_object_mut()
            .unwrap()
            .remove("read_only_root_filesystem");
        let old: ValidLaunchOptions = serde_json::from_value(stored).unwrap();
        assert!(!old.read_only_root_filesystem);
    }

    #[test]
    fn build_defaults_are_applied() {
        let b = build_req().validate(&limits()).unwrap();
        assert_eq!(b.dockerfile, "Dockerfile");
        assert_eq!(b.tag, SHA);
        assert_eq!(b.context, None);
        assert_eq!(b.image, "org/app");
        assert_eq!(b.repository.scheme, RepoScheme::Https);
        assert_eq!(b.repository.host, "github.com");
        assert_eq!(b.secrets, BuildSecrets::default());
        let upper = BuildRequest {
            commit: SHA.to_uppercase(),
            ..build_req()
        };
        let b = upper.validate(&limits()).unwrap();
        assert_eq!(b.commit, SHA, "commits are lowercased");
        assert_eq!(b.tag, SHA);
    }

    #[test]
    fn build_context_and_references() {
        let b = BuildRequest {
            context: Some("svc/api/".into()),
            ..build_req()
        }
        .validate(&limits())
        .unwrap();
        assert_eq!(
            b.git_context(),
            format!("https://github.com/org/app.git#{SHA}:svc/api")
        );
        let bare = BuildRequest {
            repository: "https://gitlab.example.com/group/app".into(),
            ..build_req()
        }
        .validate(&limits())
        .unwrap();
        assert_eq!(
            bare.git_context(),
            format!("https://gitlab.example.com/group/app.git#{SHA}")
        );
        let root = build_req().validate(&limits()).unwrap();
        assert_eq!(
            root.git_context(),
            format!("https://github.com/org/app.git#{SHA}")
        );
        assert_eq!(
            root.image_reference("registry.kube-system.svc.cluster.local:80/"),
            format!("registry.kube-system.svc.cluster.local:80/org/app:{SHA}")
        );
        assert_eq!(root.image_reference(""), format!("org/app:{SHA}"));
        let r: crate::ImageRef = root.image_reference("localhost:5000").parse().unwrap();
        assert_eq!(r.domain.as_deref(), Some("localhost:5000"));
    }

    #[test]
    fn repositories_accepted() {
        let ok = [
            ("https://github.com/org/app.git", "github.com"),
            ("https://github.com/org/app", "github.com"),
            ("HTTPS://GitHub.com/Org/App", "github.com"),
            (
                "https://gitlab.example.com:8443/group/sub/app.git",
                "gitlab.example.com",
            ),
            ("https://8.8.4.4/x/y", "8.8.4.4"),
            ("https://git.host/a%20b/c~d+e@f", "git.host"),
        ];
        for (url, host) in ok {
            let r =
                repository(url, "repository", &limits()).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((r.scheme, r.host.as_str()), (RepoScheme::Https, host));
            assert!(r.url.eq_ignore_ascii_case(url), "{url} -> {}", r.url);
            let b = BuildRequest {
                repository: url.into(),
                ..build_req()
            }
            .validate(&limits())
            .unwrap();
            assert_eq!(
                buildkit::git_scheme(&b.git_context()),
                Ok("https"),
                "{url}: BuildKit must read the context as an https git remote"
            );
        }
        let r = repository("HTTPS://GitHub.com/Org/App", "repository", &limits()).unwrap();
        assert_eq!(
            r.url, "https://GitHub.com/Org/App",
            "scheme lowercased, rest kept"
        );
    }

    /// Issue #13, defect 3: BuildKit clones SSH addresses through an SSH agent the build Job
    /// does not have, so they are refused with what to use instead.
    #[test]
    fn ssh_repositories_are_refused_with_the_https_alternative() {
        for url in [
            "ssh://git@github.com/org/app.git",
            "SSH://git@github.com/org/app.git",
            "ssh://github.com:22/org/app.git",
            "git+ssh://git@github.com/org/app.git",
            "ssh+git://git@github.com/org/app.git",
            "git@github.com:org/app.git",
            "git@github.com:/srv/app.git",
            "deploy.bot@git.example.com:team/app",
            "github.com:org/app",
        ] {
            let e = repository(url, "repository", &limits()).expect_err(url);
            assert_eq!(
                (e.code, e.field.as_str()),
                (codes::INVALID_FIELD, "repository"),
                "{url}"
            );
            assert!(
                e.message.contains("SSH") && e.message.contains("cannot be built"),
                "{url}: {e}"
            );
            assert!(
                e.message.contains("https://") && e.message.contains("secrets.git"),
                "{url}: {e}"
            );
        }
        // What BuildKit v0.23 makes of them: SSH (an agent socket is mounted), or nothing.
        for (context, scheme) in [
            ("ssh://git@github.com/org/app.git#abc", Ok("ssh")),
            ("git@github.com:org/app.git#abc", Ok("ssh")),
            (
                "deploy.bot@git.example.com:team/app#abc",
                Err("unknown protocol"),
            ),
            ("git://github.com/org/app.git#abc", Ok("git")),
            ("https://github.com/org/app#abc", Err("not a git ref")),
        ] {
            assert_eq!(buildkit::git_scheme(context), scheme, "{context}");
        }
        for (url, says) in [
            ("git://github.com/org/app.git", "git://"),
            ("http://github.com/org/app.git", "http://"),
        ] {
            let e = repository(url, "repository", &limits()).expect_err(url);
            assert!(
                e.message.contains(says) && e.message.contains("unencrypted"),
                "{url}: {e}"
            );
            assert!(e.message.contains("https://github.com/org/app.git"), "{e}");
        }
    }

    #[test]
    fn repositories_rejected() {
        let long = format!("https://github.com/{}", "a".repeat(MAX_REPOSITORY_LEN));
        let bad = [
            "",
            "http://github.com/org/app",
            "HTTP://github.com/org/app",
            "file:///etc/passwd",
            "file://host/x",
            "git://github.com/org/app",
            "ftp://host/x",
            "svn+ssh://host/x",
            "/srv/repo",
            "./repo",
            "../repo",
            "repo",
            "~/repo",
            "C:\\repo",
            "C:/repo",
            "ext::sh -c touch% /tmp/pwned",
            "ext::foo",
            "fd::17",
            "-uhttps://x",
            "--upload-pack=touch /tmp/x",
            "https://user:pass@github.com/org/app",
            "https://token@github.com/org/app",
            "https://:x@github.com/org/app",
            "ssh://git@github.com/org/app",
            "ssh://git:pw@github.com/org/app",
            "ssh://-oProxyCommand=x/y",
            "ssh://-oProxyCommand=x@host/y",
            "ssh://git@/org/app",
            "https://github.com/org/app?x=1",
            "https://github.com/org/app#main",
            "https://github.com/org/app#0123456789abcdef",
            "https://github.com",
            "https://github.com/",
            "https:///org/app",
            "https://-bad.com/x",
            "https://bad-.com/x",
            "https://bad..com/x",
            "https://github.com:0/x",
            "https://github.com:99999/x",
            "https://github.com:/x",
            "https://github.com:abc/x",
            "https://github.com/org//app",
            "https://github.com/org/../app",
            "https://github.com/org/./app",
            "https://github.com/-org/app",
            "https://github.com/org/app x",
            "https://github.com/org/app\n",
            "https://github.com/org/app\0",
            "https://github.com/org/app\u{202e}",
            " https://github.com/org/app",
            "https://gïthub.com/x",
            "https://github.com/%zz",
            "https://github.com/%2",
            "https://github.com/org/app;rm",
            "https://github.com/org/$(id)",
            "https://github.com/org/`id`",
            "https://github.com/org/app'",
            "git@github.com",
            "git@github.com:",
            "github.com:org/app",
            "git@github.com:-oProxyCommand=x",
            "git@github.com:org/../x",
            "foo/bar@host:path",
            "-git@host:path",
            "git@-host:path",
            "git@ho_st:path",
            "@host:path",
            long.as_str(),
        ];
        for url in bad {
            let e = repository(url, "repository", &limits()).expect_err(url);
            assert_eq!(e.field, "repository");
            assert!(
                matches!(
                    e.code,
                    codes::INVALID_FIELD | codes::MISSING_FIELD | codes::TOO_LONG
                ),
                "{url}: {e:?}"
            );
        }
        let e = repository("http://github.com/org/app", "repository", &limits()).unwrap_err();
        assert!(e.message.contains("http://"), "{e}");
        let e =
            repository("https://u:SECRETPW@github.com/o/a", "repository", &limits()).unwrap_err();
        assert!(
            !e.message.contains("SECRETPW") && e.message.contains("credentials"),
            "{e}"
        );
    }

    #[test]
    fn repository_host_allow_list() {
        let l = Limits {
            allowed_repository_hosts: vec!["github.com".into()],
            ..Limits::default()
        };
        assert!(repository("https://GitHub.com/o/a", "repository", &l).is_ok());
        let e = repository("https://gitlab.com/o/a", "repository", &l).unwrap_err();
        assert_eq!(e.code, codes::FORBIDDEN_VALUE);
        let e = repository("https://github.com.evil.io/o/a", "repository", &l).unwrap_err();
        assert_eq!(e.code, codes::FORBIDDEN_VALUE);
    }

    /// Every internal range and name is refused with its rule, IPv6 literals and odd IPv4
    /// spellings included; public hosts and addresses pass.
    #[test]
    fn internal_repository_hosts_are_refused_naming_the_rule() {
        let refused = [
            ("https://127.0.0.1/o/a", "loopback address 127.0.0.0/8"),
            (
                "https://127.255.0.9:8443/o/a",
                "loopback address 127.0.0.0/8",
            ),
            ("https://10.1.2.3/o/a", "private address 10.0.0.0/8"),
            ("https://172.16.0.1/o/a", "private address 172.16.0.0/12"),
            (
                "https://172.31.255.255/o/a",
                "private address 172.16.0.0/12",
            ),
            ("https://192.168.49.2/o/a", "private address 192.168.0.0/16"),
            (
                "https://100.64.0.1/o/a",
                "shared (CGNAT) address 100.64.0.0/10",
            ),
            (
                "https://100.100.100.200/o/a",
                "shared (CGNAT) address 100.64.0.0/10",
            ),
            (
                "https://169.254.169.254/o/a",
                "link-local address (cloud metadata) 169.254.0.0/16",
            ),
            ("https://0.0.0.0/o/a", "\"this network\" address 0.0.0.0/8"),
            (
                "https://192.0.0.192/o/a",
                "IETF protocol address 192.0.0.0/24",
            ),
            (
                "https://198.18.0.1/o/a",
                "benchmarking address 198.18.0.0/15",
            ),
            ("https://224.0.0.1/o/a", "multicast address 224.0.0.0/4"),
            (
                "https://255.255.255.255/o/a",
                "reserved address 240.0.0.0/4",
            ),
            ("https://localhost/o/a", "single-label name"),
            ("https://gitea/o/a", "single-label name"),
            ("https://api.localhost/o/a", "loopback name (*.localhost)"),
            ("https://gitea.git.svc/o/a", "cluster-internal name (*.svc)"),
            (
                "https://gitea.git.svc.cluster.local/o/a",
                "cluster-internal name (*.cluster.local)",
            ),
            (
                "https://x.cluster.local:3000/o/a",
                "cluster-internal name (*.cluster.local)",
            ),
            (
                "https://printer.local/o/a",
                "link-local (mDNS) name (*.local)",
            ),
            (
                "https://metadata.google.internal/o/a",
                "internal name (*.internal",
            ),
            (
                "https://nas.home.arpa/o/a",
                "home network name (*.home.arpa)",
            ),
            (
                "https://1.2.3.4.5/o/a",
                "a numeric host that is not an IPv4 address",
            ),
            (
                "https://09.0.0.1/o/a",
                "a numeric host that is not an IPv4 address",
            ),
        ];
        for (url, rule) in refused {
            let e = repository(url, "repository", &limits()).expect_err(url);
            assert_eq!(
                (e.code, e.field.as_str()),
                (codes::FORBIDDEN_VALUE, "repository"),
                "{url}"
            );
            assert!(e.message.contains(rule), "{url}: {}", e.message);
            assert!(e.message.contains("is not allowed"), "{url}: {}", e.message);
        }
        // Spellings git reads as 127.0.0.1 (inet_aton): decimal, hex, octal, shortened.
        for url in [
            "https://2130706433/o/a",
            "https://0x7f000001/o/a",
            "https://0x7f.0.0.1/o/a",
            "https://0177.0.0.1/o/a",
            "https://127.1/o/a",
            "https://127.0.1/o/a",
            "https://017700000001/o/a",
        ] {
            let e = repository(url, "repository", &limits()).expect_err(url);
            assert_eq!(e.code, codes::FORBIDDEN_VALUE, "{url}");
            assert!(
                e.message.contains("non-canonical IPv4") && e.message.contains("127.0.0.1"),
                "{url}: {}",
                e.message
            );
        }
        // A private address spelled as one decimal number; a public one spelled oddly too.
        let e = repository("https://167772161/o/a", "repository", &limits()).unwrap_err();
        assert!(e.message.contains("10.0.0.1"), "{}", e.message);
        let e = repository("https://0x08080808/o/a", "repository", &limits()).unwrap_err();
        assert!(e.message.contains("8.8.8.8"), "{}", e.message);
        for url in [
            "https://[::1]/o/a",
            "https://[fd00::1]/o/a",
            "https://[fc00::1]:443/o/a",
            "https://[fe80::1]/o/a",
            "https://[::ffff:127.0.0.1]/o/a",
            "https://[::ffff:7f00:1]/o/a",
            "https://[fd00:ec2::254]/o/a",
        ] {
            let e = repository(url, "repository", &limits()).expect_err(url);
            assert_eq!(e.code, codes::FORBIDDEN_VALUE, "{url}");
            assert!(
                e.message.contains("IPv6 address literals"),
                "{url}: {}",
                e.message
            );
        }
        for (url, host) in [
            ("https://8.8.8.8/o/a", "8.8.8.8"),
            ("https://172.32.0.1/o/a", "172.32.0.1"),
            ("https://100.128.0.1/o/a", "100.128.0.1"),
            ("https://169.253.1.1/o/a", "169.253.1.1"),
            ("https://git.example.com/o/a", "git.example.com"),
            ("https://svc.example.com/o/a", "svc.example.com"),
            ("https://localhost.example.com/o/a", "localhost.example.com"),
            ("https://1password.com/o/a", "1password.com"),
            ("https://gitlab.123/o/a", ""),
        ] {
            match repository(url, "repository", &limits()) {
                Ok(r) => assert_eq!(r.host, host, "{url}"),
                // A last label of digits is an address to git; this one is not a valid one.
                Err(e) => assert!(
                    host.is_empty() && e.message.contains("numeric"),
                    "{url}: {e}"
                ),
            }
        }
    }

    /// The IPv4 reading of a host agrees with the WHATWG URL parser (the `url` crate), which
    /// reads hosts as inet_aton does: decimal, octal, hex, one to four parts.
    #[test]
    fn ipv4_spellings_are_read_as_the_url_standard_reads_them() {
        for host in [
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "127.1",
            "127.0.1",
            "017700000001",
            "0x",
            "0",
            "10.0.0.1",
            "8.8.8.8",
            "0xA.0.0.1",
            "4294967295",
            "4294967296",
            "09.0.0.1",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.65536",
            "gitlab.123",
            "github.com",
            "1.2.3.com",
        ] {
            let ours = ipv4_spelling(host).map(|ip| ip.to_string());
            let whatwg = url::Url::parse(&format!("https://{host}/"));
            let theirs = match &whatwg {
                Ok(u) => match u.host() {
                    Some(url::Host::Ipv4(ip)) => Some(ip.to_string()),
                    _ => None,
                },
                Err(_) => None,
            };
            assert_eq!(ours, theirs, "{host}: {whatwg:?}");
            // What the URL standard refuses as an address is refused here too.
            if whatwg.is_err() {
                assert!(repository(&format!("https://{host}/o/a"), "r", &limits()).is_err());
            }
        }
    }

    #[test]
    fn internal_hosts_pass_when_the_operator_allows_them() {
        let internal = Limits {
            internal_repository_hosts: vec![
                "gitea.git.svc.cluster.local".into(),
                "10.0.0.5".into(),
            ],
            ..Limits::default()
        };
        assert!(
            repository(
                "https://Gitea.git.svc.cluster.local/o/a",
                "repository",
                &internal
            )
            .is_ok()
        );
        assert!(repository("https://10.0.0.5:3000/o/a", "repository", &internal).is_ok());
        // Other public hosts still pass; other internal ones still do not.
        assert!(repository("https://github.com/o/a", "repository", &internal).is_ok());
        assert!(repository("https://10.0.0.6/o/a", "repository", &internal).is_err());
        // A non-canonical spelling of an allowed address is still refused.
        assert!(repository("https://167772165/o/a", "repository", &internal).is_err());
        // A host on the allow list is explicitly allowed, internal or not.
        let listed = Limits {
            allowed_repository_hosts: vec!["gitea".into()],
            ..Limits::default()
        };
        assert!(repository("https://gitea/o/a", "repository", &listed).is_ok());
        assert!(repository("https://github.com/o/a", "repository", &listed).is_err());
    }

    #[test]
    fn build_secrets_must_be_on_the_operators_list_when_there_is_one() {
        let l = Limits {
            build_secret_names: vec!["git-token".into(), "push-creds".into()],
            ..Limits::default()
        };
        let mut b = build_req();
        b.secrets = Some(BuildSecrets {
            git: Some("git-token".into()),
            registry: Some("push-creds".into()),
        });
        assert!(b.validate(&l).is_ok());
        b.secrets = Some(BuildSecrets {
            git: Some("other".into()),
            registry: None,
        });
        let e = b.validate(&l).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::FORBIDDEN_VALUE, "secrets.git")
        );
        assert!(b.validate(&limits()).is_ok(), "no list: any name");
        let p = PipelineRequest {
            source: None,
            preview: "p".into(),
            repository: "https://github.com/o/a".into(),
            commit: SHA.into(),
            build: Some(BuildOptions {
                secrets: Some(BuildSecrets {
                    git: None,
                    registry: Some("nope".into()),
                }),
                ..BuildOptions::default()
            }),
            launch: None,
        };
        let e = p.validate(&l).unwrap_err();
        assert_eq!(e.field, "build.secrets.registry");
    }

    #[test]
    fn commits() {
        assert_eq!(commit(SHA, "commit").unwrap(), SHA);
        let sha256 = "a".repeat(64);
        assert_eq!(commit(&sha256, "commit").unwrap(), sha256);
        assert_eq!(
            commit(&"ABCDEF0123".repeat(4), "commit").unwrap(),
            "abcdef0123".repeat(4)
        );
        let bad = [
            String::new(),
            "a".repeat(39),
            "a".repeat(41),
            "a".repeat(63),
            "a".repeat(65),
            "g".repeat(40),
            "HEAD".into(),
            "main".into(),
            "v1.0.0".into(),
            format!(" {}", &SHA[1..]),
            format!("{}\n", &SHA[1..]),
            "٠".repeat(20),
            "--upload-pack=x".into(),
        ];
        for c in bad {
            let e = commit(&c, "commit").expect_err(&c);
            assert_eq!(e.field, "commit");
        }
    }

    #[test]
    fn context_and_dockerfile_paths() {
        let ok = [
            ("sub/dir", Some("sub/dir")),
            ("sub/dir/", Some("sub/dir")),
            ("services/api-v2/.docker", Some("services/api-v2/.docker")),
            ("", None),
            (".", None),
            ("./", None),
        ];
        for (p, want) in ok {
            assert_eq!(
                rel_path(p, "context", true).unwrap().as_deref(),
                want,
                "{p}"
            );
        }
        let long = "a/".repeat(600);
        let bad = [
            "/abs",
            "..",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "./a",
            "-a",
            "a/-b",
            "a b",
            "a\\b",
            "a:b",
            "a#b",
            "日本",
            "a\0",
            "a\n",
            "//",
            "a/b//",
            long.as_str(),
        ];
        for p in bad {
            let e = rel_path(p, "context", true).expect_err(p);
            assert_eq!(e.field, "context");
        }
        assert_eq!(
            rel_path("docker/Dockerfile.prod", "dockerfile", false)
                .unwrap()
                .as_deref(),
            Some("docker/Dockerfile.prod")
        );
        for p in ["", "docker/", "/Dockerfile", "../Dockerfile", "."] {
            assert!(rel_path(p, "dockerfile", false).is_err(), "{p:?}");
        }
        let e = build_err(|r| r.context = Some("../../etc".into()));
        assert_eq!(e.field, "context");
        let e = build_err(|r| r.dockerfile = Some(String::new()));
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::MISSING_FIELD, "dockerfile")
        );
    }

    #[test]
    fn build_images_and_tags() {
        for ok in ["org/app", "app", "a/b/c", "my-org/my_app.v2"] {
            assert_eq!(build_image(ok, "image").unwrap(), ok);
        }
        let digest = format!("org/app@sha256:{}", "a".repeat(64));
        for bad in [
            "",
            "ghcr.io/org/app",
            "localhost:5000/app",
            "localhost/app",
            "org/app:v1",
            digest.as_str(),
            "Org/App",
            "org/app/",
            "org app",
            "../app",
        ] {
            let e = build_image(bad, "image").expect_err(bad);
            assert_eq!(e.field, "image");
        }
        let b = BuildRequest {
            tag: Some("v1.2.3_rc-1".into()),
            ..build_req()
        };
        assert_eq!(b.validate(&limits()).unwrap().tag, "v1.2.3_rc-1");
        for bad in [".x", "-x", "a b", "a/b", "a:b", "ü", ""] {
            let e = build_err(|r| r.tag = Some(bad.into()));
            assert_eq!(e.field, "tag", "{bad:?}");
        }
        let e = build_err(|r| r.tag = Some("a".repeat(129)));
        assert_eq!(e.field, "tag");
    }

    #[test]
    fn variable_names_and_values() {
        for ok in ["FOO", "_x", "a1", "_", "A_B_C"] {
            assert!(var_name(ok, "env.x").is_ok(), "{ok}");
        }
        let long = "A".repeat(MAX_VAR_NAME_LEN + 1);
        for bad in [
            "",
            "1A",
            "A-B",
            "A.B",
            "A B",
            "ÄÖ",
            "A=B",
            "A\0",
            "$A",
            long.as_str(),
        ] {
            assert!(var_name(bad, "env.x").is_err(), "{bad:?}");
        }
        let e = build_err(|r| {
            r.build_args.insert("1A".into(), "v".into());
        });
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::INVALID_FIELD, "build_args.1A")
        );
        let e = build_err(|r| {
            r.build_args.insert("BAD\u{1b}[31m".into(), "v".into());
        });
        assert_eq!(
            e.field, "build_args.BAD\\u{1b}[31m",
            "control characters are escaped"
        );
        let e = build_err(|r| {
            r.build_args
                .insert("TOKEN".into(), format!("SECRETVALUE{}", "x".repeat(5000)));
        });
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::TOO_LONG, "build_args.TOKEN")
        );
        assert!(!e.message.contains("SECRETVALUE"));
        let e = build_err(|r| {
            r.build_args.insert("V".into(), "SECRETVALUE\0".into());
        });
        assert_eq!(e.field, "build_args.V");
        assert!(!e.to_string().contains("SECRETVALUE"));
        let ok = BuildRequest {
            build_args: [("MULTI".to_owned(), "line\none\ttab\r\n".to_owned())].into(),
            ..build_req()
        };
        assert!(ok.validate(&limits()).is_ok());
        let e = build_err(|r| {
            r.build_args = (0..=100)
                .map(|i| (format!("A{i}"), String::new()))
                .collect();
        });
        assert_eq!((e.code, e.field.as_str()), (codes::TOO_MANY, "build_args"));
    }

    #[test]
    fn targets_and_secrets() {
        let b = BuildRequest {
            target: Some("Prod-Stage_1.x".into()),
            secrets: Some(BuildSecrets {
                git: Some("git-token".into()),
                registry: Some("regcred.v1".into()),
            }),
            preview: Some("org/app#42".into()),
            ..build_req()
        };
        let v = b.validate(&limits()).unwrap();
        assert_eq!(v.target.as_deref(), Some("prod-stage_1.x"));
        assert_eq!(v.secrets.git.as_deref(), Some("git-token"));
        assert_eq!(v.preview.as_deref(), Some("org/app#42"));
        for bad in ["", "1st", "-x", "a b", "a/b", "é", &"a".repeat(129)] {
            let e = build_err(|r| r.target = Some(bad.into()));
            assert_eq!(e.field, "target", "{bad:?}");
        }
        for bad in [
            "",
            "Git",
            "a_b",
            "-a",
            "a-",
            "a..b",
            "a/b",
            &"a".repeat(254),
        ] {
            let e = build_err(|r| {
                r.secrets = Some(BuildSecrets {
                    git: None,
                    registry: Some(bad.into()),
                })
            });
            assert_eq!(e.field, "secrets.registry", "{bad:?}");
        }
        let e = build_err(|r| r.preview = Some("a\nb".into()));
        assert_eq!(e.field, "preview");
    }

    #[test]
    fn launch_defaults_and_sources() {
        let l = launch_ok(|_| {});
        assert_eq!(l.preview, "org/app#42");
        assert_eq!(
            l.source,
            ImageSource::Image("ghcr.io/org/app:v1".parse().unwrap())
        );
        let o = &l.options;
        assert_eq!((o.port, o.replicas, o.ttl_hours), (8080, 1, 72));
        assert_eq!(o.health_path, "/");
        assert_eq!(o.resources, ValidResources::default());
        let id = "0190a5b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b";
        let l = launch_ok(|r| {
            r.image = None;
            r.from_build = Some(id.into());
        });
        assert_eq!(l.source, ImageSource::FromBuild(id.parse().unwrap()));
        let e = launch_err(|r| r.from_build = Some(id.into()));
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::CONFLICTING_FIELDS, "from_build")
        );
        let e = launch_err(|r| r.image = None);
        assert_eq!((e.code, e.field.as_str()), (codes::MISSING_FIELD, "image"));
        for bad in [
            "",
            "not-a-uuid",
            "0190a5b2",
            &"0".repeat(100),
            "0190a5b2-c3d4-7e8f-9a0b-1c2d3e4f5a6g",
        ] {
            let e = launch_err(|r| {
                r.image = None;
                r.from_build = Some(bad.into());
            });
            assert_eq!(e.field, "from_build", "{bad:?}");
        }
        for bad in ["", "Bad Ref", "org/app:", "https://x/y", "a@sha256:zz"] {
            let e = launch_err(|r| r.image = Some(bad.into()));
            assert_eq!(e.field, "image", "{bad:?}");
        }
        // ttl default follows a lower operator cap.
        let l = launch_req()
            .validate(&Limits {
                max_ttl_hours: 24,
                ..Limits::default()
            })
            .unwrap();
        assert_eq!(l.options.ttl_hours, 24);
    }

    #[test]
    fn launch_numbers() {
        for (port, ok) in [
            (1, true),
            (65535, true),
            (0, false),
            (-1, false),
            (65536, false),
            (1 << 40, false),
            (i64::MIN, false),
        ] {
            let r = LaunchRequest {
                port: Some(port),
                ..launch_req()
            };
            match r.validate(&limits()) {
                Ok(v) => assert!(ok && i64::from(v.options.port) == port),
                Err(e) => assert!(
                    !ok && e.field == "port" && e.code == codes::OUT_OF_RANGE,
                    "{port}: {e:?}"
                ),
            }
        }
        for (replicas, code) in [
            (0, codes::OUT_OF_RANGE),
            (-5, codes::OUT_OF_RANGE),
            (6, codes::OVER_LIMIT),
            (i64::MAX, codes::OVER_LIMIT),
        ] {
            let e = launch_err(|r| r.replicas = Some(replicas));
            assert_eq!((e.code, e.field.as_str()), (code, "replicas"), "{replicas}");
        }
        assert_eq!(launch_ok(|r| r.replicas = Some(5)).options.replicas, 5);
        for (ttl, code) in [
            (0, codes::OUT_OF_RANGE),
            (-1, codes::OUT_OF_RANGE),
            (721, codes::OVER_LIMIT),
            (i64::MAX, codes::OVER_LIMIT),
        ] {
            let e = launch_err(|r| r.ttl_hours = Some(ttl));
            assert_eq!((e.code, e.field.as_str()), (code, "ttl_hours"), "{ttl}");
        }
        assert_eq!(
            launch_ok(|r| r.ttl_hours = Some(720)).options.ttl_hours,
            720
        );
    }

    #[test]
    fn env_and_secret_env() {
        let l = launch_ok(|r| {
            r.env.insert("A".into(), "1".into());
            r.secret_env
                .insert("DB_PASSWORD".into(), "db-creds/password".into());
            r.secret_env.insert("KEY".into(), "tls.v1/tls.key".into());
        });
        assert_eq!(
            l.options.secret_env["DB_PASSWORD"],
            SecretKeyRef {
                secret: "db-creds".into(),
                key: "password".into()
            }
        );
        assert_eq!(l.options.secret_env["KEY"].key, "tls.key");
        for bad in [
            "db",
            "db/",
            "/key",
            "DB/key",
            "db/a/b",
            "db/a b",
            "db/ü",
            "db_x/key",
            &format!("db/{}", "k".repeat(254)),
        ] {
            let e = launch_err(|r| {
                r.secret_env.insert("X".into(), bad.into());
            });
            assert_eq!(e.field, "secret_env.X", "{bad:?}");
        }
        let e = launch_err(|r| {
            r.secret_env.insert("9X".into(), "db/key".into());
        });
        assert_eq!(e.field, "secret_env.9X");
        let e = launch_err(|r| {
            r.env.insert("X".into(), "plain".into());
            r.secret_env.insert("X".into(), "db/key".into());
        });
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::CONFLICTING_FIELDS, "secret_env.X")
        );
        let e = launch_err(|r| {
            r.env = (0..60).map(|i| (format!("E{i}"), String::new())).collect();
            r.secret_env = (0..60)
                .map(|i| (format!("S{i}"), "db/k".to_owned()))
                .collect();
        });
        assert_eq!((e.code, e.field.as_str()), (codes::TOO_MANY, "secret_env"));
        let e = launch_err(|r| {
            r.env.insert("a-b".into(), "x".into());
        });
        assert_eq!(e.field, "env.a-b");
    }

    #[test]
    fn resources_within_limits() {
        let res = |cpu: Option<&str>, memory: Option<&str>| Resources {
            cpu: cpu.map(str::to_owned),
            memory: memory.map(str::to_owned),
        };
        let l = launch_ok(|r| r.resources = Some(res(Some("250m"), Some("256Mi"))));
        assert_eq!(l.options.resources.cpu_millis, Some(250));
        assert_eq!(l.options.resources.cpu_quantity().as_deref(), Some("250m"));
        assert_eq!(
            l.options.resources.memory_quantity().as_deref(),
            Some("256Mi")
        );
        let l = launch_ok(|r| r.resources = Some(res(Some("0.5"), Some("512M"))));
        assert_eq!(l.options.resources.cpu_millis, Some(500));
        assert_eq!(l.options.resources.memory_bytes, Some(512_000_000));
        assert_eq!(
            launch_ok(|r| r.resources = Some(res(Some("2"), None)))
                .options
                .resources
                .cpu_millis,
            Some(2000)
        );
        let cases = [
            (res(Some("3"), None), codes::OVER_LIMIT, "resources.cpu"),
            (res(Some("2001m"), None), codes::OVER_LIMIT, "resources.cpu"),
            (
                res(None, Some("4Gi")),
                codes::OVER_LIMIT,
                "resources.memory",
            ),
            (
                res(None, Some("256m")),
                codes::INVALID_FIELD,
                "resources.memory",
            ),
            (
                res(Some("abc"), None),
                codes::INVALID_FIELD,
                "resources.cpu",
            ),
            (res(Some("0"), None), codes::INVALID_FIELD, "resources.cpu"),
            (res(Some("-1"), None), codes::INVALID_FIELD, "resources.cpu"),
            (
                res(Some("1e999"), None),
                codes::INVALID_FIELD,
                "resources.cpu",
            ),
            (
                res(None, Some("")),
                codes::INVALID_FIELD,
                "resources.memory",
            ),
        ];
        for (r, code, field) in cases {
            let e = launch_err(|l| l.resources = Some(r.clone()));
            assert_eq!((e.code, e.field.as_str()), (code, field), "{r:?}");
        }
        let e = launch_err(|l| l.resources = Some(res(None, Some("256m"))));
        assert!(e.message.contains("Mi?"), "{e}");
        let e = launch_err(|l| l.resources = Some(res(None, Some("4Gi"))));
        assert!(e.message.contains("2Gi"), "{e}");
    }

    #[test]
    fn health_paths() {
        for ok in [
            "/",
            "/healthz",
            "/ready?full=1",
            "/a/b%20c",
            "/~user/x.y-z_",
        ] {
            assert_eq!(
                launch_ok(|r| r.health_path = Some(ok.into()))
                    .options
                    .health_path,
                ok
            );
        }
        let long = format!("/{}", "a".repeat(MAX_HEALTH_PATH_LEN));
        for bad in [
            "",
            "healthz",
            "/a b",
            "/a#b",
            "/\n",
            "/ü",
            "/a\\b",
            "http://x/",
            long.as_str(),
        ] {
            let e = launch_err(|r| r.health_path = Some(bad.into()));
            assert_eq!(e.field, "health_path", "{bad:?}");
        }
    }

    #[test]
    fn preview_keys() {
        let max = "x".repeat(MAX_PREVIEW_KEY_CHARS);
        let max_unicode = "ü".repeat(MAX_PREVIEW_KEY_CHARS);
        for ok in [
            "org/app#42",
            "feature/x",
            "日本語",
            "a b",
            "x",
            "😀",
            max.as_str(),
            max_unicode.as_str(),
        ] {
            assert_eq!(preview_key(ok, "preview").unwrap(), ok);
        }
        let over = "x".repeat(MAX_PREVIEW_KEY_CHARS + 1);
        let bad = [
            ("", codes::MISSING_FIELD),
            (" a", codes::INVALID_FIELD),
            ("a ", codes::INVALID_FIELD),
            ("a\tb", codes::INVALID_FIELD),
            ("a\nb", codes::INVALID_FIELD),
            ("a\0b", codes::INVALID_FIELD),
            ("\u{7f}", codes::INVALID_FIELD),
            ("\u{202e}x", codes::INVALID_FIELD),
            ("a\u{200b}b", codes::INVALID_FIELD),
            ("\u{feff}a", codes::INVALID_FIELD),
            ("a\u{2028}b", codes::INVALID_FIELD),
            ("a\u{a0}b", codes::INVALID_FIELD),
            ("a\u{e0041}", codes::INVALID_FIELD),
            (over.as_str(), codes::TOO_LONG),
        ];
        for (k, code) in bad {
            let e = preview_key(k, "preview").expect_err(k);
            assert_eq!(e.code, code, "{k:?}");
            let e = CleanupRequest { preview: k.into() }
                .validate(&limits())
                .expect_err(k);
            assert_eq!(e.field, "preview");
        }
    }

    #[test]
    fn pipeline_sources() {
        let base = PipelineRequest {
            source: None,
            preview: "org/app#42".into(),
            repository: "https://github.com/org/app.git".into(),
            commit: SHA.into(),
            build: None,
            launch: None,
        };
        let with = |kind: &str, build: Option<BuildOptions>| PipelineRequest {
            source: Some(crate::payload::PreviewSource::of(kind)),
            build,
            ..base.clone()
        };
        assert_eq!(
            base.validate(&limits()).unwrap().build.source,
            BuildSource::Dockerfile
        );
        assert_eq!(
            with("dockerfile", None)
                .validate(&limits())
                .unwrap()
                .build
                .source,
            BuildSource::Dockerfile
        );
        let auto = with(
            "auto",
            Some(BuildOptions {
                context: Some("web".into()),
                build_args: BTreeMap::from([("NEXT_PUBLIC_X".into(), "1".into())]),
                ..BuildOptions::default()
            }),
        )
        .validate(&limits())
        .unwrap();
        assert_eq!(auto.build.source, BuildSource::Auto);
        assert_eq!(auto.build.context.as_deref(), Some("web"));
        for (field, build) in [
            (
                "build.dockerfile",
                BuildOptions {
                    dockerfile: Some("web.Dockerfile".into()),
                    ..BuildOptions::default()
                },
            ),
            (
                "build.target",
                BuildOptions {
                    target: Some("runtime".into()),
                    ..BuildOptions::default()
                },
            ),
        ] {
            let e = with("auto", Some(build)).validate(&limits()).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_str()),
                (codes::CONFLICTING_FIELDS, field)
            );
        }
        for kind in ["Auto", "", "buildpacks"] {
            let e = with(kind, None).validate(&limits()).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_str()),
                (codes::INVALID_FIELD, "source.type"),
                "{kind}"
            );
        }
        // compose and helm need the service they expose (the rest: `source::tests`).
        for kind in ["compose", "helm"] {
            let e = with(kind, None).validate(&limits()).unwrap_err();
            assert_eq!(e.code, codes::MISSING_FIELD, "{kind}: {e}");
        }
        // Payloads recorded before sources existed read as Dockerfile builds.
        let mut old = serde_json::to_value(&auto.build).unwrap();
        old.as_object_mut().unwrap().remove("source");
        let old: ValidBuild = serde_json::from_value(old).unwrap();
        assert_eq!(old.source, BuildSource::Dockerfile);
        // A field of another source type is refused, naming it.
        let e = crate::payload::decode::<PipelineRequest>(
            br#"{"preview": "p", "repository": "https://github.com/o/a", "commit": "0123456789abcdef0123456789abcdef01234567", "source": {"type": "auto", "port": 1}}"#,
        )
        .unwrap()
        .validate(&limits())
        .unwrap_err();
        assert_eq!(e.field, "source.port", "{e:?}");
        // An unknown field inside `source` is refused when decoding, naming it.
        let e = crate::payload::decode::<PipelineRequest>(
            br#"{"preview": "p", "repository": "https://github.com/o/a", "commit": "0123456789abcdef0123456789abcdef01234567", "source": {"type": "auto", "ports": 1}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "source.ports", "{e:?}");
    }

    #[test]
    fn pipelines() {
        let p = PipelineRequest {
            source: None,
            preview: "org/app#42".into(),
            repository: "https://github.com/Org/My_App.git".into(),
            commit: SHA.into(),
            build: None,
            launch: None,
        };
        let v = p.validate(&limits()).unwrap();
        assert_eq!(v.build.image, "org/my-app", "derived from the repository");
        assert_eq!(v.build.preview.as_deref(), Some("org/app#42"));
        assert_eq!(v.build.tag, SHA);
        assert_eq!(v.launch.port, 8080);
        let single = PipelineRequest {
            repository: "https://git.host/app".into(),
            ..p.clone()
        };
        assert_eq!(single.validate(&limits()).unwrap().build.image, "app");
        let hopeless = PipelineRequest {
            repository: "https://git.host/___.git".into(),
            ..p.clone()
        };
        let e = hopeless.validate(&limits()).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_str()),
            (codes::MISSING_FIELD, "build.image")
        );
        let named = PipelineRequest {
            repository: "https://git.host/___.git".into(),
            build: Some(BuildOptions {
                image: Some("x/y".into()),
                ..Default::default()
            }),
            ..p.clone()
        };
        assert_eq!(named.validate(&limits()).unwrap().build.image, "x/y");

        let key = v.idempotency_key(crate::JobKind::Build);
        assert_eq!(key, format!("pipeline:build:{SHA}:org/app#42"));
        let upper = PipelineRequest {
            commit: SHA.to_uppercase(),
            ..p.clone()
        };
        assert_eq!(
            upper
                .validate(&limits())
                .unwrap()
                .idempotency_key(crate::JobKind::Build),
            key,
            "the same commit in another case is the same pipeline"
        );
        assert_ne!(v.idempotency_key(crate::JobKind::Launch), key);

        let cases: Vec<(PipelineRequest, &str)> = vec![
            (
                PipelineRequest {
                    preview: String::new(),
                    ..p.clone()
                },
                "preview",
            ),
            (
                PipelineRequest {
                    repository: "file:///x".into(),
                    ..p.clone()
                },
                "repository",
            ),
            (
                PipelineRequest {
                    commit: "main".into(),
                    ..p.clone()
                },
                "commit",
            ),
            (
                PipelineRequest {
                    build: Some(BuildOptions {
                        build_args: [("1X".to_owned(), String::new())].into(),
                        ..Default::default()
                    }),
                    ..p.clone()
                },
                "build.build_args.1X",
            ),
            (
                PipelineRequest {
                    build: Some(BuildOptions {
                        tag: Some("-x".into()),
                        ..Default::default()
                    }),
                    ..p.clone()
                },
                "build.tag",
            ),
            (
                PipelineRequest {
                    build: Some(BuildOptions {
                        secrets: Some(BuildSecrets {
                            git: Some("X".into()),
                            registry: None,
                        }),
                        ..Default::default()
                    }),
                    ..p.clone()
                },
                "build.secrets.git",
            ),
            (
                PipelineRequest {
                    launch: Some(LaunchOptions {
                        port: Some(0),
                        ..Default::default()
                    }),
                    ..p.clone()
                },
                "launch.port",
            ),
            (
                PipelineRequest {
                    launch: Some(LaunchOptions {
                        resources: Some(Resources {
                            cpu: Some("99".into()),
                            memory: None,
                        }),
                        ..Default::default()
                    }),
                    ..p.clone()
                },
                "launch.resources.cpu",
            ),
            (
                PipelineRequest {
                    launch: Some(LaunchOptions {
                        secret_env: [("K".to_owned(), "nope".to_owned())].into(),
                        ..Default::default()
                    }),
                    ..p.clone()
                },
                "launch.secret_env.K",
            ),
        ];
        for (req, field) in cases {
            let e = req.validate(&limits()).expect_err(field);
            assert_eq!(e.field, field, "{e:?}");
        }
    }

    #[test]
    fn errors_serialize_as_the_api_body_and_display_with_the_field() {
        let e = launch_err(|r| r.port = Some(0));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "out_of_range", "message": "must be between 1 and 65535", "field": "port"})
        );
        assert_eq!(e.to_string(), "port: must be between 1 and 65535");
        let e = ValidationError::new(codes::INVALID_JSON, "", "bad");
        assert_eq!(e.to_string(), "bad");
        assert_eq!(e.under("x").field, "x");
    }

    #[test]
    fn valid_forms_round_trip_through_json() {
        let l = launch_ok(|r| {
            r.secret_env.insert("K".into(), "s/k".into());
            r.resources = Some(Resources {
                cpu: Some("250m".into()),
                memory: None,
            });
        });
        let back: ValidLaunch = serde_json::from_value(serde_json::to_value(&l).unwrap()).unwrap();
        assert_eq!(back, l);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(
            json["source"],
            serde_json::json!({"image": "ghcr.io/org/app:v1"})
        );
        let b = build_req().validate(&limits()).unwrap();
        let back: ValidBuild = serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }
}
