//! The source Job: reads a repository at an exact commit for the build worker, inside the build
//! namespace, with the build's own git credentials and network policy, and without running any
//! of the repository's code. It runs the configured BuildKit image (the `rootless` stage of
//! moby/buildkit's `Dockerfile` installs busybox `sh` and `git`) with a fixed script; the URL,
//! commit, sub-directory and wanted files reach the script only as positional parameters.
//! The files come back in the pod's log, one line each (see [`SOURCE_SCRIPT`]).

/// The source container's script. Arguments: the remote URL, the commit, the sub-directory
/// (empty for the root), then the paths of the files wanted, relative to that directory (a path
/// ending in `/` wants every file under that directory, `./` the whole tree). It
/// prints `slipway-source commit <sha>`, one `slipway-source entry <type> <name>` per entry of
/// the directory, one `slipway-source file <path> <base64>` per wanted file that exists (at most
/// 256 KiB; larger ones get `slipway-source too-large <path> <size>`), and `slipway-source
/// end`. It touches the filesystem only through `$HOME` and `$SLIPWAY_GIT_TOKEN_FILE`. The token
/// goes to git as BuildKit's git source sends it (an `Authorization: Basic` header of
/// `x-access-token:<token>`, moby/buildkit `source/git/source.go`), in the pod's own git config,
/// never on a command line. The fetch is a shallow partial clone (`--depth=1
/// --filter=blob:none`, the remote marked a promisor): it brings the commit's trees, and git
/// fetches the files wanted in one more request, as its own on-demand fetch of missing objects
/// does (`promisor-remote.c`, `fetch_objects`: `-c fetch.negotiationAlgorithm=noop fetch
/// <remote> --no-tags --no-write-fetch-head --recurse-submodules=no --filter=blob:none
/// --stdin`). A large repository costs its trees and the few manifests, not its whole content
/// (git's `partial-clone` documentation); a server that does not allow filters sends the blobs
/// with the commit, which works the same.
pub const SOURCE_SCRIPT: &str = r#"set -eu
url=$1 commit=$2 sub=$3
shift 3
git init -q "$HOME/src"
cd "$HOME/src"
if [ -n "${SLIPWAY_GIT_TOKEN_FILE:-}" ]; then
  auth=$(printf 'x-access-token:%s' "$(cat "$SLIPWAY_GIT_TOKEN_FILE")" | base64 | tr -d '\n')
  git config http.extraHeader "Authorization: Basic $auth"
fi
git remote add origin "$url"
git config remote.origin.promisor true
git config remote.origin.partialclonefilter blob:none
git fetch -q --depth=1 --no-tags --filter=blob:none origin "$commit"
echo "slipway-source commit $(git rev-parse FETCH_HEAD)"
git ls-tree --format='slipway-source entry %(objecttype) %(path)' "FETCH_HEAD:$sub"
# A wanted path ending in `/` is every file under that directory (`./` is the whole tree),
# git's quoting keeping each name on one line.
for f in "$@"; do
  case $f in
    */)
      d=${f%/}
      if [ "$d" = . ]; then d=; fi
      git ls-tree -r --format='%(objecttype) %(path)' "FETCH_HEAD:${sub:+$sub/}$d" |
        while read -r type path; do
          if [ "$type" = blob ]; then printf '%s\n' "${d:+$d/}$path"; fi
        done
      ;;
    *) printf '%s\n' "$f" ;;
  esac
done >"$HOME/wanted"
while IFS= read -r f; do
  git rev-parse -q --verify "FETCH_HEAD:${sub:+$sub/}$f" || true
done <"$HOME/wanted" >"$HOME/oids"
if [ -s "$HOME/oids" ]; then
  git -c fetch.negotiationAlgorithm=noop fetch -q origin --no-tags \
    --no-write-fetch-head --recurse-submodules=no --filter=blob:none --stdin <"$HOME/oids"
fi
while IFS= read -r f; do
  obj="FETCH_HEAD:${sub:+$sub/}$f"
  if [ "$(git cat-file -t "$obj" 2>/dev/null || true)" = blob ]; then
    size=$(git cat-file -s "$obj")
    if [ "$size" -le 262144 ]; then
      printf 'slipway-source file %s ' "$f"
      git cat-file blob "$obj" | base64 | tr -d '\n'
      echo
    else
      echo "slipway-source too-large $f $size"
    fi
  fi
done <"$HOME/wanted"
echo "slipway-source end"
"#;

use crate::build::{BUILDKIT_UID, GIT_SECRET_DIR, GIT_SECRET_KEY, kubelet_literal, secret_volume};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use slipway_core::detect::{Entry, Snapshot};
use std::collections::BTreeMap;

/// The source pod's one container; the worker reads this container's log.
pub const CONTAINER: &str = "source";
/// `$0` of the script.
const SCRIPT_NAME: &str = "slipway-source";
const HOME: &str = "/tmp";
/// Every line of the script's own output starts with this (git's errors do not).
const MARK: &str = "slipway-source ";

/// What decides the source Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceJobParams {
    /// Deterministic per job and attempt (`slipway_core::naming::source_job_name`).
    pub name: String,
    pub namespace: String,
    /// The build's labels (the build namespace's network policy selects by them).
    pub labels: BTreeMap<String, String>,
    pub image: String,
    /// The remote as BuildKit gets it (`https://...git`).
    pub repository: String,
    pub commit: String,
    /// The build context's directory; `None` is the root.
    pub context_subdir: Option<String>,
    /// Paths relative to the context whose contents are wanted.
    pub files: Vec<String>,
    /// A Secret in the build namespace holding the git token under `token`.
    pub git_secret: Option<String>,
    pub active_deadline_seconds: i64,
    pub ttl_seconds_after_finished: i32,
}

/// Build the source Job. Pure. The pod is as confined as a pod can be (no capabilities,
/// read-only root filesystem, `RuntimeDefault` seccomp, non-root): git needs none of BuildKit's
/// exemptions.
pub fn source_job(p: &SourceJobParams) -> Job {
    let mut env = vec![
        EnvVar {
            name: "HOME".into(),
            value: Some(HOME.into()),
            ..Default::default()
        },
        EnvVar {
            name: "GIT_TERMINAL_PROMPT".into(),
            value: Some("0".into()),
            ..Default::default()
        },
    ];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: HOME.into(),
        ..Default::default()
    }];
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("1Gi".into())),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(secret) = &p.git_secret {
        env.push(EnvVar {
            name: "SLIPWAY_GIT_TOKEN_FILE".into(),
            value: Some(format!("{GIT_SECRET_DIR}/{GIT_SECRET_KEY}")),
            ..Default::default()
        });
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
    let mut args = vec![
        p.repository.clone(),
        p.commit.clone(),
        p.context_subdir.clone().unwrap_or_default(),
    ];
    args.extend(p.files.iter().cloned());
    let seccomp = SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(p.image.clone()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            SOURCE_SCRIPT.into(),
            SCRIPT_NAME.into(),
        ]),
        // The kubelet expands `$(VAR)` in args: escaped, the script gets them verbatim.
        args: Some(args.into_iter().map(kubelet_literal).collect()),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".into())),
                ("memory".to_owned(), Quantity("64Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("512Mi".into()),
            )])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(BUILDKIT_UID),
            run_as_group: Some(BUILDKIT_UID),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(seccomp.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(p.namespace.clone()),
            labels: Some(p.labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(p.active_deadline_seconds),
            ttl_seconds_after_finished: Some(p.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(p.labels.clone()),
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
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(seccomp),
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

/// The source pod's log could not be read as the script's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceLogError {
    #[error("the source log has no end line (the script was cut short)")]
    Truncated,
    #[error("the source log has a malformed line: {0}")]
    Malformed(String),
}

/// Read the script's output (the container's log lines, without timestamps) into a
/// [`Snapshot`]. Lines that are not the script's (git's messages) are ignored here; on a
/// failed run the worker shows them instead.
pub fn parse_source_log<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<Snapshot, SourceLogError> {
    use base64::Engine as _;
    let mut snap = Snapshot::default();
    let mut ended = false;
    for line in lines {
        let Some(rest) = line.strip_prefix(MARK) else {
            continue;
        };
        let (what, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let bad = || SourceLogError::Malformed(what.to_owned());
        match what {
            "commit" => snap.commit = rest.trim().to_owned(),
            "entry" => {
                let (kind, name) = rest.split_once(' ').ok_or_else(bad)?;
                snap.entries.push(Entry {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                });
            }
            "file" => {
                let (path, data) = rest.rsplit_once(' ').ok_or_else(bad)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|_| bad())?;
                snap.files.insert(path.to_owned(), bytes);
            }
            "too-large" => {
                let (path, _) = rest.rsplit_once(' ').ok_or_else(bad)?;
                snap.too_large.push(path.to_owned());
            }
            "end" => ended = true,
            _ => {}
        }
    }
    if ended {
        Ok(snap)
    } else {
        Err(SourceLogError::Truncated)
    }
}

/// Whether a failed source run's log says the commit or repository cannot be had, which no
/// retry mends (git's messages: the server's "not our ref", a missing remote ref, a missing
/// repository, refused credentials).
pub fn permanent_git_failure(lines: &[String]) -> bool {
    const PERMANENT: &[&str] = &[
        "not our ref",
        "couldn't find remote ref",
        "repository not found",
        "authentication failed",
        "could not read username",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
        "the requested url returned error: 404",
    ];
    lines.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        PERMANENT.iter().any(|p| l.contains(p))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn params() -> SourceJobParams {
        SourceJobParams {
            name: "slipway-source-0a1b2c3d-a1".into(),
            namespace: "slipway-builds".into(),
            labels: BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "slipway".to_owned(),
            )]),
            image: "moby/buildkit:v0.23.2-rootless".into(),
            repository: "https://github.com/org/app.git".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            context_subdir: Some("web".into()),
            files: vec!["package.json".into(), "go.mod".into()],
            git_secret: Some("git-token".into()),
            active_deadline_seconds: 300,
            ttl_seconds_after_finished: 600,
        }
    }

    #[test]
    fn source_job_spec_is_pinned() {
        let job = serde_json::to_value(source_job(&params())).unwrap();
        let expected = json!({
          "apiVersion": "batch/v1", "kind": "Job",
          "metadata": {"name": "slipway-source-0a1b2c3d-a1", "namespace": "slipway-builds",
                       "labels": {"app.kubernetes.io/managed-by": "slipway"}},
          "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": 300, "ttlSecondsAfterFinished": 600,
            "template": {
              "metadata": {"labels": {"app.kubernetes.io/managed-by": "slipway"}},
              "spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": false, "enableServiceLinks": false,
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                  "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                  "name": "source", "image": "moby/buildkit:v0.23.2-rootless",
                  "command": ["sh", "-c", SOURCE_SCRIPT, "slipway-source"],
                  "args": ["https://github.com/org/app.git", "0123456789abcdef0123456789abcdef01234567",
                           "web", "package.json", "go.mod"],
                  "env": [
                    {"name": "HOME", "value": "/tmp"},
                    {"name": "GIT_TERMINAL_PROMPT", "value": "0"},
                    {"name": "SLIPWAY_GIT_TOKEN_FILE", "value": "/run/secrets/slipway-git/token"}
                  ],
                  "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "git-auth", "mountPath": "/run/secrets/slipway-git", "readOnly": true}
                  ],
                  "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                  "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true,
                    "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
                }],
                "volumes": [
                  {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
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
    fn user_input_is_positional_never_script_text() {
        let mut p = params();
        p.repository = "https://example.com/a'b\";$(touch x).git".into();
        p.context_subdir = None;
        let job = source_job(&p);
        let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
        assert_eq!(c.command.as_ref().unwrap()[2], SOURCE_SCRIPT);
        let args = c.args.clone().unwrap();
        assert_eq!(args[0], "https://example.com/a'b\";$$(touch x).git");
        assert_eq!(args[2], "", "the root is an empty sub-directory");
        assert!(!SOURCE_SCRIPT.contains("github"));
    }

    #[test]
    fn the_log_reads_back_into_a_snapshot() {
        let lines = [
            "slipway-source commit 0123456789abcdef0123456789abcdef01234567",
            "slipway-source entry blob package.json",
            "slipway-source entry tree src",
            "slipway-source entry blob my file.txt",
            "slipway-source file package.json eyJuYW1lIjoiYSJ9",
            "slipway-source too-large Cargo.toml 300000",
            "warning: something git said",
            "slipway-source end",
        ];
        let snap = parse_source_log(lines).unwrap();
        assert_eq!(snap.commit, "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(snap.entries.len(), 3);
        assert_eq!(snap.entries[2].name, "my file.txt");
        assert_eq!(snap.files["package.json"], br#"{"name":"a"}"#);
        assert_eq!(snap.too_large, vec!["Cargo.toml"]);
        assert_eq!(
            parse_source_log(["slipway-source commit x"]),
            Err(SourceLogError::Truncated)
        );
        assert!(matches!(
            parse_source_log(["slipway-source file package.json !!", "slipway-source end"]),
            Err(SourceLogError::Malformed(_))
        ));
    }

    #[test]
    fn git_failures_that_no_retry_mends() {
        let said = |s: &str| vec![s.to_owned()];
        assert!(permanent_git_failure(&said(
            "fatal: remote error: upload-pack: not our ref 0123"
        )));
        assert!(permanent_git_failure(&said(
            "fatal: Authentication failed for 'https://x/y.git/'"
        )));
        assert!(!permanent_git_failure(&said(
            "fatal: unable to access 'https://x/': Could not resolve host: x"
        )));
    }
}
