//! The build Job: rootless BuildKit in a batch/v1 Job, after BuildKit's own
//! `examples/kubernetes/job.rootless.yaml`, plus what Slipway needs around it: a git context at
//! an exact commit, registry push and cache, secrets mounted by name, and the build metadata
//! (image digest) written to the container's termination message so the worker reads it from the
//! pod status without another API.
//!
//! The metadata cannot go to `/dev/termination-log` directly: buildctl writes its
//! `--metadata-file` atomically (a temp file in the same directory, then a rename), and `/dev`
//! is root-owned while the termination log is a bind mount. So buildctl writes to an emptyDir
//! and a small `sh -c` wrapper copies the file into the termination log with a shell
//! redirection after buildctl succeeds (busybox `cp` refuses to overwrite an existing file it
//! cannot unlink). The buildctl arguments reach the wrapper as positional parameters (`"$@"`),
//! never inside the script text, so user input (repository URLs, build args) is never parsed
//! by the shell.
//!
//! Kubernetes before 1.30 has no `appArmorProfile` field (an older apiserver drops it), so the
//! pod template also carries the equivalent AppArmor annotation; 1.30+ accepts both as long as
//! they agree.
//!
//! Slipway owns retries, so the Job never retries itself (`backoffLimit: 0`); its
//! `ttlSecondsAfterFinished` is only a safety net: the worker deletes the Job once the log is
//! stored.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, EnvVar, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The container's name inside the build pod; the worker follows this container's log.
pub const CONTAINER: &str = "buildkit";
/// UID and GID of the `rootless` BuildKit image's user.
pub(crate) const BUILDKIT_UID: i64 = 1000;
const STATE_DIR: &str = "/home/user/.local/share/buildkit";
const DOCKER_CONFIG_DIR: &str = "/home/user/.docker";
pub(crate) const GIT_SECRET_DIR: &str = "/run/secrets/slipway-git";
/// The key the named git secret must hold the token under.
pub const GIT_SECRET_KEY: &str = "token";
const TERMINATION_LOG: &str = "/dev/termination-log";
/// The emptyDir buildctl writes its metadata file to (see the module docs).
const META_DIR: &str = "/tmp/meta";
const META_FILE: &str = "/tmp/meta/metadata.json";
/// `$0` of the wrapper script: what `ps` and shell errors call it.
const WRAPPER_NAME: &str = "slipway-build";
/// The pre-1.30 AppArmor annotation prefix (the container name follows the slash).
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Escapes a container argument from the kubelet's `$(VAR)` expansion: it reduces `$$` to `$`
/// and replaces `$(NAME)` with the container's variable, so a build arg holding `$$` or
/// `$(DOCKER_CONFIG)` would otherwise reach buildctl changed.
pub(crate) fn kubelet_literal(arg: String) -> String {
    if arg.contains('$') {
        arg.replace('$', "$$")
    } else {
        arg
    }
}

/// The build container's shell wrapper. Fixed text: the buildctl arguments are `"$@"`.
fn wrapper_script() -> String {
    format!("buildctl-daemonless.sh \"$@\" && cat {META_FILE} > {TERMINATION_LOG}")
}

/// Requests and limits of the build container (Kubernetes quantities, e.g. `500m`, `2Gi`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildResources {
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    /// Ephemeral-storage request of the build container.
    pub ephemeral_storage_request: Option<String>,
    /// Ephemeral-storage limit of the build container, also the `sizeLimit` of BuildKit's
    /// state emptyDir: a build that fills it is evicted instead of filling the node's disk.
    pub ephemeral_storage_limit: Option<String>,
}

/// Everything that decides the build Job. Values are expected to be validated already
/// (`slipway_core` validation); the builder only assembles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildJobParams {
    /// Deterministic per job and attempt (`slipway_core::naming::build_job_name`), so a resumed
    /// worker finds and adopts the Job of its attempt instead of creating a second one.
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub buildkit_image: String,
    /// `https://...` git URL ending in `.git` (the API refuses SSH addresses: BuildKit would
    /// need an SSH agent the Job does not have).
    pub repository: String,
    /// The exact commit to build.
    pub git_ref: String,
    /// Sub-directory of the repository used as the build context.
    pub context_subdir: Option<String>,
    /// Dockerfile path relative to the context.
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Where the image is pushed, e.g. `registry.kube-system.svc:80/org/app:<sha>`.
    pub push_ref: String,
    /// Registry cache reference (`mode=max`); `None` disables cache import and export.
    pub cache_ref: Option<String>,
    /// Plain-HTTP registry (minikube's in-cluster registry).
    pub insecure_registry: bool,
    /// Name of a Secret in the build namespace holding a git token under key `token`.
    pub git_secret: Option<String>,
    /// Name of a `kubernetes.io/dockerconfigjson` Secret with push credentials.
    pub registry_secret: Option<String>,
    pub resources: BuildResources,
    pub active_deadline_seconds: i64,
    pub ttl_seconds_after_finished: i32,
    /// A Dockerfile Slipway generated (`source: auto`), given to BuildKit as a local while the
    /// context stays the git source; `None` builds the repository's `dockerfile`.
    pub generated_dockerfile: Option<String>,
}

/// The pod annotation holding a generated Dockerfile; a downward API volume projects it as a
/// file (annotations are not subject to the kubelet's `$(VAR)` expansion, unlike args and env).
pub const DOCKERFILE_ANNOTATION: &str = "slipway.dev/dockerfile";
/// Where the generated Dockerfile's volume is mounted: buildctl's `dockerfile` local.
const DOCKERFILE_DIR: &str = "/run/slipway/dockerfile";

impl BuildJobParams {
    /// The BuildKit git context: `<repo>#<ref>[:<subdir>]`.
    pub fn git_context(&self) -> String {
        match self
            .context_subdir
            .as_deref()
            .filter(|s| !s.is_empty() && *s != ".")
        {
            Some(sub) => format!("{}#{}:{}", self.repository, self.git_ref, sub),
            None => format!("{}#{}", self.repository, self.git_ref),
        }
    }

    /// `buildctl` arguments after `buildctl-daemonless.sh`.
    pub fn buildctl_args(&self) -> Vec<String> {
        let insecure = if self.insecure_registry {
            ",registry.insecure=true"
        } else {
            ""
        };
        let mut args: Vec<String> = vec![
            "build".into(),
            "--progress=plain".into(),
            "--frontend=dockerfile.v0".into(),
            "--opt".into(),
            format!("context={}", self.git_context()),
        ];
        if self.generated_dockerfile.is_some() {
            // moby/buildkit frontend/dockerui/context.go (initContext): `dockerfilekey` names
            // the local the Dockerfile is read from and forces it even for a git context.
            args.extend([
                "--local".into(),
                format!("dockerfile={DOCKERFILE_DIR}"),
                "--opt".into(),
                "dockerfilekey=dockerfile".into(),
                "--opt".into(),
                "filename=Dockerfile".into(),
            ]);
        } else {
            args.extend(["--opt".into(), format!("filename={}", self.dockerfile)]);
        }
        for (k, v) in &self.build_args {
            args.push("--opt".into());
            args.push(format!("build-arg:{k}={v}"));
        }
        if let Some(target) = &self.target {
            args.push("--opt".into());
            args.push(format!("target={target}"));
        }
        if self.git_secret.is_some() {
            // BuildKit's git source reads the token from the secret with this well-known id.
            args.push("--secret".into());
            args.push(format!(
                "id=GIT_AUTH_TOKEN,src={GIT_SECRET_DIR}/{GIT_SECRET_KEY}"
            ));
        }
        args.push("--output".into());
        args.push(format!(
            "type=image,name={},push=true{insecure}",
            self.push_ref
        ));
        if let Some(cache) = &self.cache_ref {
            args.push("--export-cache".into());
            // A cache that cannot be exported must not fail a build that pushed its image.
            args.push(format!(
                "type=registry,ref={cache},mode=max,ignore-error=true{insecure}"
            ));
            args.push("--import-cache".into());
            args.push(format!("type=registry,ref={cache}{insecure}"));
        }
        args.push(format!("--metadata-file={META_FILE}"));
        args
    }
}

fn quantities(pairs: [(&str, &Option<String>); 3]) -> Option<BTreeMap<String, Quantity>> {
    let map: BTreeMap<_, _> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), Quantity(v.clone()))))
        .collect();
    (!map.is_empty()).then_some(map)
}

fn unconfined() -> (SeccompProfile, AppArmorProfile) {
    (
        SeccompProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        },
        AppArmorProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        },
    )
}

/// Build the Job object. Pure: the same parameters always give the same object.
pub fn build_job(p: &BuildJobParams) -> Job {
    let (seccomp, apparmor) = unconfined();
    let mut env = vec![EnvVar {
        name: "BUILDKITD_FLAGS".into(),
        value: Some("--oci-worker-no-process-sandbox".into()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "buildkitd".into(),
        mount_path: STATE_DIR.into(),
        ..Default::default()
    }];
    mounts.push(VolumeMount {
        name: "meta".into(),
        mount_path: META_DIR.into(),
        ..Default::default()
    });
    let mut volumes = vec![
        Volume {
            name: "buildkitd".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: p.resources.ephemeral_storage_limit.clone().map(Quantity),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "meta".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("1Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    if let Some(secret) = &p.registry_secret {
        env.push(EnvVar {
            name: "DOCKER_CONFIG".into(),
            value: Some(DOCKER_CONFIG_DIR.into()),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "docker-config".into(),
            mount_path: DOCKER_CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(secret_volume(
            "docker-config",
            secret,
            ".dockerconfigjson",
            "config.json",
        ));
    }
    if let Some(secret) = &p.git_secret {
        mounts.push(VolumeMount {
            name: "git-auth".into(),
            mount_path: GIT_SECRET_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(secret_volume(
            "git-auth",
            secret,
            GIT_SECRET_KEY,
            GIT_SECRET_KEY,
        ));
    }
    let mut annotations = BTreeMap::from([(
        format!("{APPARMOR_ANNOTATION_PREFIX}{CONTAINER}"),
        "unconfined".to_owned(),
    )]);
    if let Some(text) = &p.generated_dockerfile {
        annotations.insert(DOCKERFILE_ANNOTATION.to_owned(), text.clone());
        mounts.push(VolumeMount {
            name: "dockerfile".into(),
            mount_path: DOCKERFILE_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "dockerfile".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "Dockerfile".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{DOCKERFILE_ANNOTATION}']"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let container = Container {
        name: CONTAINER.into(),
        image: Some(p.buildkit_image.clone()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            wrapper_script(),
            WRAPPER_NAME.into(),
        ]),
        args: Some(p.buildctl_args().into_iter().map(kubelet_literal).collect()),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            requests: quantities([
                ("cpu", &p.resources.cpu_request),
                ("memory", &p.resources.memory_request),
                ("ephemeral-storage", &p.resources.ephemeral_storage_request),
            ]),
            limits: quantities([
                ("cpu", &p.resources.cpu_limit),
                ("memory", &p.resources.memory_limit),
                ("ephemeral-storage", &p.resources.ephemeral_storage_limit),
            ]),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(BUILDKIT_UID),
            run_as_group: Some(BUILDKIT_UID),
            privileged: Some(false),
            seccomp_profile: Some(seccomp.clone()),
            app_armor_profile: Some(apparmor.clone()),
            ..Default::default()
        }),
        termination_message_path: Some(TERMINATION_LOG.into()),
        // On a failed build no metadata is written; the log tail then explains the failure.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };

    let meta = ObjectMeta {
        name: Some(p.name.clone()),
        namespace: Some(p.namespace.clone()),
        labels: Some(p.labels.clone()),
        ..Default::default()
    };
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(p.active_deadline_seconds),
            ttl_seconds_after_finished: Some(p.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(p.labels.clone()),
                    // Kubernetes 1.29 knows only the AppArmor annotation (it drops the fields).
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(BUILDKIT_UID),
                        run_as_group: Some(BUILDKIT_UID),
                        fs_group: Some(BUILDKIT_UID),
                        seccomp_profile: Some(seccomp),
                        app_armor_profile: Some(apparmor),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) fn secret_volume(name: &str, secret: &str, key: &str, path: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: path.into(),
                mode: None,
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Pod Security label that lets rootless BuildKit's pods (seccomp and AppArmor
/// `Unconfined`) in: the `privileged` level.
pub const POD_SECURITY_ENFORCE: (&str, &str) = ("pod-security.kubernetes.io/enforce", "privileged");

/// The build namespace, for a worker that may create it when it is missing (the demo; in
/// production the deployment creates it): Slipway's managed-by label and the Pod Security
/// level rootless BuildKit needs.
pub fn build_namespace(name: &str) -> k8s_openapi::api::core::v1::Namespace {
    let labels = BTreeMap::from([
        (
            crate::labels::MANAGED_BY.to_owned(),
            crate::labels::MANAGED_BY_VALUE.to_owned(),
        ),
        (
            POD_SECURITY_ENFORCE.0.to_owned(),
            POD_SECURITY_ENFORCE.1.to_owned(),
        ),
    ]);
    k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// What BuildKit reports about a pushed image (`buildctl --metadata-file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BuildMetadata {
    #[serde(rename = "containerimage.digest")]
    pub digest: String,
    #[serde(rename = "image.name", default)]
    pub image_name: Option<String>,
}

/// A termination message that is not build metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the build's termination message holds no image digest: {reason}")]
pub struct MetadataError {
    pub reason: String,
}

/// Parse the termination message of a successful build container.
pub fn parse_build_metadata(message: &str) -> Result<BuildMetadata, MetadataError> {
    let meta: BuildMetadata = serde_json::from_str(message.trim()).map_err(|e| MetadataError {
        reason: e.to_string(),
    })?;
    let hex = meta.digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(MetadataError {
            reason: format!("malformed digest {:?}", meta.digest),
        });
    }
    Ok(meta)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_build_namespace_allows_unconfined_pods() {
        assert_eq!(
            serde_json::to_value(build_namespace("slipway-builds")).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "slipway-builds",
                "labels": {"app.kubernetes.io/managed-by": "slipway",
                    "pod-security.kubernetes.io/enforce": "privileged"}}})
        );
    }

    pub(crate) fn params() -> BuildJobParams {
        BuildJobParams {
            name: "slipway-build-0a1b2c3d-a1".into(),
            namespace: "slipway-builds".into(),
            labels: BTreeMap::from([("app.kubernetes.io/managed-by".into(), "slipway".into())]),
            buildkit_image: "moby/buildkit:v0.23.2-rootless".into(),
            repository: "https://github.com/org/app.git".into(),
            git_ref: "0123456789abcdef0123456789abcdef01234567".into(),
            context_subdir: Some("web".into()),
            dockerfile: "Dockerfile".into(),
            build_args: BTreeMap::from([("NODE_ENV".into(), "production".into())]),
            target: Some("runtime".into()),
            push_ref: "registry.local:5000/org/app:0123456".into(),
            cache_ref: Some("registry.local:5000/org/app:buildcache".into()),
            insecure_registry: true,
            git_secret: Some("git-token".into()),
            registry_secret: Some("push-creds".into()),
            resources: BuildResources {
                cpu_request: Some("500m".into()),
                memory_request: Some("1Gi".into()),
                cpu_limit: None,
                memory_limit: Some("4Gi".into()),
                ephemeral_storage_request: Some("2Gi".into()),
                ephemeral_storage_limit: Some("20Gi".into()),
            },
            active_deadline_seconds: 1800,
            ttl_seconds_after_finished: 3600,
            generated_dockerfile: None,
        }
    }

    #[test]
    fn job_spec_is_pinned() {
        let job = serde_json::to_value(build_job(&params())).unwrap();
        let expected = json!({
          "apiVersion": "batch/v1", "kind": "Job",
          "metadata": {"name": "slipway-build-0a1b2c3d-a1", "namespace": "slipway-builds",
                       "labels": {"app.kubernetes.io/managed-by": "slipway"}},
          "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": 1800, "ttlSecondsAfterFinished": 3600,
            "template": {
              "metadata": {"labels": {"app.kubernetes.io/managed-by": "slipway"},
                "annotations": {"container.apparmor.security.beta.kubernetes.io/buildkit": "unconfined"}},
              "spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": false, "enableServiceLinks": false,
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                  "seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}},
                "containers": [{
                  "name": "buildkit", "image": "moby/buildkit:v0.23.2-rootless",
                  "command": ["sh", "-c",
                    "buildctl-daemonless.sh \"$@\" && cat /tmp/meta/metadata.json > /dev/termination-log",
                    "slipway-build"],
                  "args": [
                    "build", "--progress=plain", "--frontend=dockerfile.v0",
                    "--opt", "context=https://github.com/org/app.git#0123456789abcdef0123456789abcdef01234567:web",
                    "--opt", "filename=Dockerfile",
                    "--opt", "build-arg:NODE_ENV=production",
                    "--opt", "target=runtime",
                    "--secret", "id=GIT_AUTH_TOKEN,src=/run/secrets/slipway-git/token",
                    "--output", "type=image,name=registry.local:5000/org/app:0123456,push=true,registry.insecure=true",
                    "--export-cache", "type=registry,ref=registry.local:5000/org/app:buildcache,mode=max,ignore-error=true,registry.insecure=true",
                    "--import-cache", "type=registry,ref=registry.local:5000/org/app:buildcache,registry.insecure=true",
                    "--metadata-file=/tmp/meta/metadata.json"
                  ],
                  "env": [
                    {"name": "BUILDKITD_FLAGS", "value": "--oci-worker-no-process-sandbox"},
                    {"name": "DOCKER_CONFIG", "value": "/home/user/.docker"}
                  ],
                  "volumeMounts": [
                    {"name": "buildkitd", "mountPath": "/home/user/.local/share/buildkit"},
                    {"name": "meta", "mountPath": "/tmp/meta"},
                    {"name": "docker-config", "mountPath": "/home/user/.docker", "readOnly": true},
                    {"name": "git-auth", "mountPath": "/run/secrets/slipway-git", "readOnly": true}
                  ],
                  "resources": {"requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "2Gi"},
                    "limits": {"memory": "4Gi", "ephemeral-storage": "20Gi"}},
                  "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "privileged": false,
                    "seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}},
                  "terminationMessagePath": "/dev/termination-log",
                  "terminationMessagePolicy": "FallbackToLogsOnError"
                }],
                "volumes": [
                  {"name": "buildkitd", "emptyDir": {"sizeLimit": "20Gi"}},
                  {"name": "meta", "emptyDir": {"sizeLimit": "1Mi"}},
                  {"name": "docker-config", "secret": {"secretName": "push-creds",
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}},
                  {"name": "git-auth", "secret": {"secretName": "git-token",
                    "items": [{"key": "token", "path": "token"}]}}
                ]
              }
            }
          }
        });
        assert_eq!(
            job,
            expected,
            "{}",
            serde_json::to_string_pretty(&job).unwrap()
        );
    }

    #[test]
    fn a_generated_dockerfile_is_a_local_projected_from_an_annotation() {
        let mut p = params();
        p.target = None;
        p.generated_dockerfile = Some("FROM scratch\nCMD [\"$(HOME)\"]\n".into());
        let args = p.buildctl_args();
        let at = args.iter().position(|a| a == "--local").unwrap();
        assert_eq!(
            args[at..at + 6],
            [
                "--local",
                "dockerfile=/run/slipway/dockerfile",
                "--opt",
                "dockerfilekey=dockerfile",
                "--opt",
                "filename=Dockerfile"
            ]
        );
        assert!(args[..at].iter().any(|a| a.starts_with("context=https://")));
        assert_eq!(
            args.iter().filter(|a| a.starts_with("filename=")).count(),
            1
        );
        let job = serde_json::to_value(build_job(&p)).unwrap();
        let pod = &job["spec"]["template"];
        // Annotations are not expanded by the kubelet: the text arrives as written.
        assert_eq!(
            pod["metadata"]["annotations"]["slipway.dev/dockerfile"],
            "FROM scratch\nCMD [\"$(HOME)\"]\n"
        );
        assert_eq!(
            pod["spec"]["volumes"][4],
            json!({"name": "dockerfile", "downwardAPI": {"items": [{"path": "Dockerfile",
                "fieldRef": {"fieldPath": "metadata.annotations['slipway.dev/dockerfile']"}}]}})
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][4],
            json!({"name": "dockerfile", "mountPath": "/run/slipway/dockerfile", "readOnly": true})
        );
    }

    #[test]
    fn minimal_build_has_no_secrets_cache_or_insecure_registry() {
        let mut p = params();
        p.context_subdir = None;
        p.target = None;
        p.build_args.clear();
        p.cache_ref = None;
        p.insecure_registry = false;
        p.git_secret = None;
        p.registry_secret = None;
        p.resources = BuildResources::default();
        let args = p.buildctl_args();
        assert!(
            args.contains(
                &"context=https://github.com/org/app.git#0123456789abcdef0123456789abcdef01234567"
                    .to_string()
            )
        );
        assert!(
            !args
                .iter()
                .any(|a| a.contains("insecure") || a.contains("cache") || a.contains("secret"))
        );
        let job = build_job(&p);
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.volumes.as_ref().unwrap().len(), 2);
        assert_eq!(
            pod.volumes.unwrap()[0].empty_dir,
            Some(EmptyDirVolumeSource::default())
        );
        let c = &pod.containers[0];
        assert_eq!(c.env.as_ref().unwrap().len(), 1);
        let res = c.resources.as_ref().unwrap();
        assert!(res.requests.is_none() && res.limits.is_none());
    }

    #[test]
    fn user_input_reaches_buildctl_as_arguments_never_as_script_text() {
        let mut p = params();
        p.repository = "https://example.com/a'b\";$(touch x).git".into();
        p.build_args = BTreeMap::from([("A".into(), "`id` $HOME \"q\"".into())]);
        let job = build_job(&p);
        let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
        let command = c.command.clone().unwrap();
        assert_eq!(command[..3], ["sh", "-c", wrapper_script().as_str()]);
        assert_eq!(command.len(), 4, "$0 only; the buildctl arguments are $@");
        // The kubelet's `$(VAR)` expansion is escaped: buildctl gets the arguments verbatim.
        let args = c.args.clone().unwrap();
        assert_eq!(args.len(), p.buildctl_args().len());
        assert!(args.contains(&"build-arg:A=`id` $$HOME \"q\"".to_owned()));
        assert!(args.contains(&"context=https://example.com/a'b\";$$(touch x).git#0123456789abcdef0123456789abcdef01234567:web".to_owned()), "{args:?}");
        // Pod and container AppArmor fields (1.30+) and the annotation (1.29) agree.
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .app_armor_profile
                .as_ref()
                .unwrap()
                .type_,
            "Unconfined"
        );
    }

    #[test]
    fn context_subdir_dot_means_repository_root() {
        let mut p = params();
        p.context_subdir = Some(".".into());
        assert!(
            p.git_context()
                .ends_with("#0123456789abcdef0123456789abcdef01234567")
        );
    }

    #[test]
    fn metadata_is_parsed_and_checked() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let msg = json!({"containerimage.digest": digest, "image.name": "r/app:1",
                         "containerimage.config.digest": "sha256:00"})
        .to_string();
        let meta = parse_build_metadata(&msg).unwrap();
        assert_eq!(meta.digest, digest);
        assert_eq!(meta.image_name.as_deref(), Some("r/app:1"));
        assert!(
            parse_build_metadata("#12 ERROR: process \"/bin/sh -c make\" did not complete")
                .is_err()
        );
        assert!(parse_build_metadata(r#"{"containerimage.digest": "sha256:zz"}"#).is_err());
        assert!(parse_build_metadata("").is_err());
    }
}
