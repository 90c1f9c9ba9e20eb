//! Containers the simulated kubelet runs for real, on the host.
//!
//! Slipway's source Job runs the BuildKit image with `sh -c SCRIPT ARG0 ARGS...` to fetch a
//! repository at a commit with `git` and print files to its log. The simulator cannot model git
//! faithfully, so it runs that script with the host's `/bin/sh` and `git` as a child process
//! ([`crate::buildkit::runs_on_host`] decides which pods):
//!
//! - argv: `/bin/sh -c SCRIPT ARG0 ARGS...` from the container's `command` and `args` after the
//!   kubelet's `$(VAR)` expansion (kubernetes `third_party/forked/golang/expansion/expand.go`);
//! - environment: the image's `ENV` (moby/buildkit `Dockerfile`, stage `rootless`: `HOME`,
//!   `USER`, `XDG_RUNTIME_DIR`, `TMPDIR`, `BUILDKIT_HOST`), then the container's `env` as the
//!   kubelet builds it ([`crate::buildkit::container_env`], `secretKeyRef` read from the
//!   store), then `HOSTNAME` (the pod name, as the runtime sets it); on top, from the host,
//!   `PATH`, `GIT_CONFIG_NOSYSTEM=1`, and `GIT_SSL_CAINFO` (the host's CA bundle plus the CA the
//!   simulated cluster's nodes trust, [`crate::KubeSimBuilder::trusted_ca`]) when one is set;
//! - filesystem: every volume mount is materialized under a fresh per-pod temporary directory
//!   (`emptyDir`: an empty directory; `secret` and `configMap`: a file per key, or per `items`
//!   entry at its `path`; `downwardAPI`: the projected fields, [`downward_api_files`]); every
//!   environment value equal to or under a mount path is rewritten to the temporary path, and
//!   every other absolute path in the environment to a path under a regular file (so using it
//!   fails with `Not a directory`: the simulator does not give the script the host's root);
//! - output: stdout and stderr share one pipe, so the log keeps the order the process wrote
//!   in; each line is a log line when written; the exit status is the container's (128+N for
//!   a signal);
//! - the child's process group gets `SIGTERM` when the pod is deleted, `SIGKILL` after the
//!   (scaled) grace period; it is killed when the simulator stops, and at the pod's
//!   `activeDeadlineSeconds` (scaled like every spec duration), which fails the pod with reason
//!   `DeadlineExceeded` as the kubelet's `pkg/kubelet/active_deadline.go` does.
//!
//! Differences from the real image: the host's shell is dash, not busybox ash, and the host's
//! git is whatever is installed (2.47 here; the image ships git 2.4x); the process runs as the
//! test's user, not UID 1000, and the image's own directories are not there.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::logs::LogBuf;

/// The image's `ENV` lines (moby/buildkit `Dockerfile` v0.23.2, stages `rootless` and
/// `buildkit-linux`).
fn image_env(image: &str) -> Vec<(&'static str, &'static str)> {
    if image.contains("rootless") {
        vec![
            ("HOME", "/home/user"),
            ("USER", "user"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("TMPDIR", "/home/user/.local/tmp"),
            (
                "BUILDKIT_HOST",
                "unix:///run/user/1000/buildkit/buildkitd.sock",
            ),
        ]
    } else {
        vec![("BUILDKIT_SETUP_CGROUPV2_ROOT", "1")]
    }
}

/// Go's `%q` of a string (`strconv.Quote`), as `formatMap` writes values.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a downward API `fieldRef` of `pod` (kubernetes `pkg/fieldpath/fieldpath.go`,
/// `ExtractFieldPathAsString`): `metadata.annotations['KEY']` and `metadata.labels['KEY']`
/// (an absent key is the empty string), `metadata.annotations` and `metadata.labels` whole
/// (`formatMap`: sorted `key="value"` lines), `metadata.name`, `metadata.namespace`,
/// `metadata.uid`.
pub fn field_ref(pod: &Value, field_path: &str) -> Result<String, String> {
    let map = |field: &str| -> BTreeMap<String, String> {
        pod.pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    // SplitMaybeSubscriptedPath: `path['subscript']`.
    if let Some(open) = field_path.find("['")
        && field_path.ends_with("']")
        && open > 0
    {
        let (path, subscript) = (
            &field_path[..open],
            &field_path[open + 2..field_path.len() - 2],
        );
        return match path {
            "metadata.annotations" => Ok(map("annotations")
                .get(subscript)
                .cloned()
                .unwrap_or_default()),
            "metadata.labels" => Ok(map("labels").get(subscript).cloned().unwrap_or_default()),
            _ => Err(format!(
                "fieldPath {field_path:?} does not support subscript"
            )),
        };
    }
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match field_path {
        "metadata.annotations" | "metadata.labels" => {
            let m = map(field_path.trim_start_matches("metadata."));
            Ok(m.iter()
                .map(|(k, v)| format!("{k}={}", go_quote(v)))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "metadata.name" => Ok(s("/metadata/name")),
        "metadata.namespace" => Ok(s("/metadata/namespace")),
        "metadata.uid" => Ok(s("/metadata/uid")),
        _ => Err(format!("unsupported fieldPath: {field_path}")),
    }
}

/// The files of a `downwardAPI` volume source of `pod`: `(path, content)` per item with a
/// `fieldRef` (kubernetes/website `concepts/workloads/pods/downward-api.md`; `resourceFieldRef`
/// items are not modelled and fail).
pub fn downward_api_files(pod: &Value, source: &Value) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for item in source["items"].as_array().into_iter().flatten() {
        let path = item["path"].as_str().unwrap_or_default().to_owned();
        let Some(fp) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) else {
            return Err(format!(
                "kube-sim: downwardAPI item {path:?}: only fieldRef items are modelled"
            ));
        };
        out.push((path, field_ref(pod, fp)?.into_bytes()));
    }
    Ok(out)
}

/// The files of a `secret` or `configMap` volume of `obj` (`pkg/volume/secret/secret.go`
/// and `pkg/volume/configmap/configmap.go`, `MakePayload`): every key, or the `items` listed,
/// each at its `path`.
fn object_files(obj: &Value, source: &Value, base64_data: bool) -> Vec<(String, Vec<u8>)> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let text = v.as_str().unwrap_or_default();
        let bytes = if base64_data {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default()
        } else {
            text.as_bytes().to_vec()
        };
        all.insert(k.clone(), bytes);
    }
    for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default();
        all.insert(k.clone(), bytes);
    }
    match source["items"].as_array() {
        Some(items) => items
            .iter()
            .filter_map(|it| {
                let key = it["key"].as_str()?;
                let path = it["path"].as_str().unwrap_or(key);
                all.get(key).map(|b| (path.to_owned(), b.clone()))
            })
            .collect(),
        None => all.into_iter().collect(),
    }
}

/// A container ready to run on the host.
pub(crate) struct Prepared {
    /// The per-pod directory (removed on drop).
    dir: tempfile::TempDir,
    /// `-c SCRIPT ARG0 ARGS...` for `/bin/sh`.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// Materializes the first container of `pod`: volumes, environment, argv. `object(plural,
/// name)` reads a Secret or ConfigMap of the pod's namespace.
pub(crate) fn prepare(
    pod: &Value,
    object: impl Fn(&str, &str) -> Option<Value>,
    trusted_ca: Option<&Path>,
) -> Result<Prepared, String> {
    let err = |e: std::io::Error| format!("kube-sim: preparing the container on the host: {e}");
    let dir = tempfile::Builder::new()
        .prefix("kube-sim-pod-")
        .tempdir()
        .map_err(err)?;
    let c = pod
        .pointer("/spec/containers/0")
        .cloned()
        .unwrap_or(Value::Null);
    let image = c["image"].as_str().unwrap_or_default();
    // Volumes by name.
    let volumes: BTreeMap<String, Value> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap_or_default().to_owned(), v.clone()))
        .collect();
    // mountPath -> host path.
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    let mut made: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or_default();
        let mount_path = m["mountPath"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let host = match made.get(name) {
            Some(p) => p.clone(),
            None => {
                let host = dir.path().join("volumes").join(name);
                std::fs::create_dir_all(&host).map_err(err)?;
                let v = volumes.get(name).cloned().unwrap_or(Value::Null);
                let files = if let Some(src) = v.get("secret") {
                    let obj = object("secrets", src["secretName"].as_str().unwrap_or_default());
                    obj.map(|o| object_files(&o, src, true)).unwrap_or_default()
                } else if let Some(src) = v.get("configMap") {
                    let obj = object("configmaps", src["name"].as_str().unwrap_or_default());
                    obj.map(|o| object_files(&o, src, false))
                        .unwrap_or_default()
                } else if let Some(src) = v.get("downwardAPI") {
                    downward_api_files(pod, src)?
                } else {
                    Vec::new()
                };
                for (path, bytes) in files {
                    let target = host.join(path.trim_start_matches('/'));
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(err)?;
                    }
                    std::fs::write(&target, bytes).map_err(err)?;
                }
                made.insert(name.to_owned(), host.clone());
                host
            }
        };
        let host = match m["subPath"].as_str().filter(|s| !s.is_empty()) {
            Some(sub) => host.join(sub),
            None => host,
        };
        mounts.push((mount_path, host));
    }
    // Not the host's root: a regular file, so any path under it is `Not a directory`.
    let rootfs = dir.path().join("image-rootfs");
    std::fs::write(&rootfs, b"").map_err(err)?;
    let rewrite = |v: &str| -> String {
        if !v.starts_with('/') {
            return v.to_owned();
        }
        let covering = mounts
            .iter()
            .filter(|(p, _)| v == p || p.is_empty() || v.starts_with(&format!("{p}/")))
            .max_by_key(|(p, _)| p.len());
        match covering {
            Some((p, host)) => format!("{}{}", host.display(), &v[p.len()..]),
            None => format!("{}{v}", rootfs.display()),
        }
    };
    // Environment: the image's, the container's, the runtime's.
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        env.retain(|(n, _)| n != k);
        env.push((k.to_owned(), v));
    };
    for (k, v) in image_env(image) {
        set(k, v.to_owned());
    }
    let secret = |name: &str, key: &str| -> Option<String> {
        let o = object("secrets", name)?;
        let b64 = o.pointer("/data").and_then(|d| d.get(key))?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok()
    };
    let container_env = crate::buildkit::container_env(&c, secret);
    for (k, v) in &container_env {
        set(k, v.clone());
    }
    set(
        "HOSTNAME",
        pod.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    );
    let mut env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k, rewrite(&v))).collect();
    let mut host = |k: &str, v: String| {
        env.retain(|(n, _)| n != k);
        env.push((k.to_owned(), v));
    };
    host("PATH", std::env::var("PATH").unwrap_or_default());
    host("GIT_CONFIG_NOSYSTEM", "1".to_owned());
    if let Some(ca) = trusted_ca {
        // The nodes trust the usual roots and this CA.
        let mut bundle = std::fs::read(ca).map_err(err)?;
        bundle.push(b'\n');
        if let Ok(system) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") {
            bundle.extend(system);
        }
        let path = dir.path().join("ca-bundle.crt");
        std::fs::write(&path, bundle).map_err(err)?;
        host("GIT_SSL_CAINFO", path.display().to_string());
    }
    // argv after the kubelet's $(VAR) expansion against the container's env.
    let defined: BTreeMap<String, String> = container_env.into_iter().collect();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                s.as_str()
                    .map(|s| crate::buildkit::kubelet_expand(s, &defined))
            })
            .collect()
    };
    let mut argv = strs(&c["command"]);
    argv.extend(strs(&c["args"]));
    if argv.len() < 3 || argv[1] != "-c" {
        return Err(format!(
            "kube-sim: only `sh -c SCRIPT ...` runs on the host, not {argv:?}"
        ));
    }
    Ok(Prepared {
        dir,
        args: argv[1..].to_vec(),
        env,
    })
}

/// How a host run ended.
pub(crate) enum End {
    /// The process exited with this status.
    Exit(i32),
    /// Killed at the pod's `activeDeadlineSeconds`.
    DeadlineExceeded,
    /// The pod went away (or the simulator stopped): killed, nothing to report.
    Gone,
}

/// Runs `prepared`, writing its output to `log` line by line; `alive()` is polled: when it
/// turns false (the pod is being deleted) the process group gets `SIGTERM`, then `SIGKILL`
/// after `grace()` (the kubelet's `killContainer`: the stop signal, the grace period, then a
/// kill); at `deadline` it is killed. Returns how it ended and the lines.
pub(crate) async fn run(
    prepared: Prepared,
    log: Arc<LogBuf>,
    deadline: Option<Instant>,
    alive: impl Fn() -> bool,
    grace: impl Fn() -> Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> (End, Vec<String>) {
    let spawned = (|| -> std::io::Result<_> {
        let (reader, writer) = std::io::pipe()?;
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(&prepared.args)
            .env_clear()
            .envs(prepared.env.iter().map(|(k, v)| (k, v)))
            .current_dir(prepared.dir.path())
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        // `cmd` (and its copies of the pipe's write end) dropped here.
        Ok((child, reader))
    })();
    let (mut child, reader) = match spawned {
        Ok(x) => x,
        Err(e) => {
            let line = format!("kube-sim: cannot start /bin/sh on the host: {e}");
            log.push(line.clone());
            return (End::Exit(128), vec![line]);
        }
    };
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let sink = log.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let mut r = std::io::BufReader::new(reader);
        let mut all = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    sink.push(line.clone());
                    all.push(line);
                }
            }
        }
        all
    });
    let signal = |pgid: Option<i32>, sig: rustix::process::Signal| {
        if let Some(p) = pgid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(p, sig);
        }
    };
    let kill = |pgid: Option<i32>| signal(pgid, rustix::process::Signal::KILL);
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    let end = loop {
        tokio::select! {
            status = child.wait() => {
                break match status {
                    Ok(s) => {
                        use std::os::unix::process::ExitStatusExt as _;
                        End::Exit(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)))
                    }
                    Err(_) => End::Exit(128),
                };
            }
            () = shutdown.cancelled() => {
                kill(pgid);
                let _ = child.wait().await;
                break End::Gone;
            }
            _ = tick.tick() => {
                if !alive() {
                    signal(pgid, rustix::process::Signal::TERM);
                    if tokio::time::timeout(grace(), child.wait()).await.is_err() {
                        kill(pgid);
                        let _ = child.wait().await;
                    }
                    break End::Gone;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    kill(pgid);
                    let _ = child.wait().await;
                    break End::DeadlineExceeded;
                }
            }
        }
    };
    // Whatever the script left running in its group (it holds the pipe) goes too, after a
    // moment to drain.
    let mut lines = lines;
    let collected = match tokio::time::timeout(Duration::from_secs(2), &mut lines).await {
        Ok(r) => r.unwrap_or_default(),
        Err(_) => {
            kill(pgid);
            lines.await.unwrap_or_default()
        }
    };
    drop(prepared);
    (end, collected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_downward_api_projects_annotations_and_labels() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "uid": "u",
            "labels": {"b": "2", "a": "x\"y"},
            "annotations": {"slipway.dev/dockerfile": "FROM x\nRUN y\n"}}});
        let src = json!({"items": [
            {"path": "Dockerfile", "fieldRef": {"fieldPath": "metadata.annotations['slipway.dev/dockerfile']"}},
            {"path": "missing", "fieldRef": {"fieldPath": "metadata.annotations['nope']"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "a", "fieldRef": {"fieldPath": "metadata.labels['a']"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        ]});
        let files = downward_api_files(&pod, &src).unwrap();
        let get = |p: &str| {
            String::from_utf8(files.iter().find(|(n, _)| n == p).unwrap().1.clone()).unwrap()
        };
        assert_eq!(get("Dockerfile"), "FROM x\nRUN y\n");
        assert_eq!(get("missing"), "");
        assert_eq!(get("labels"), "a=\"x\\\"y\"\nb=\"2\"");
        assert_eq!(get("a"), "x\"y");
        assert_eq!(get("name"), "p");
        assert!(
            field_ref(&pod, "metadata.name['x']")
                .unwrap_err()
                .contains("does not support subscript")
        );
    }

    #[test]
    fn mounts_are_materialized_and_env_paths_rewritten() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "c", "image": "moby/buildkit:v0.23.2-rootless",
                "command": ["sh", "-c", "echo", "x"], "args": ["$(HOME)/a"],
                "env": [{"name": "HOME", "value": "/tmp"},
                    {"name": "TOKEN_FILE", "value": "/run/secrets/git/token"}],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                    {"name": "git", "mountPath": "/run/secrets/git", "readOnly": true}]}],
                "volumes": [{"name": "tmp", "emptyDir": {}},
                    {"name": "git", "secret": {"secretName": "s", "items": [{"key": "token", "path": "token"}]}}]}});
        let secret = json!({"data": {"token": "c2VjcmV0", "other": "eA=="}});
        let p = prepare(&pod, |_, _| Some(secret.clone()), None).unwrap();
        let env: BTreeMap<_, _> = p.env.iter().cloned().collect();
        let home = PathBuf::from(&env["HOME"]);
        assert!(home.is_dir() && home.starts_with(p.dir.path()));
        assert_eq!(std::fs::read(&env["TOKEN_FILE"]).unwrap(), b"secret");
        assert!(
            !Path::new(&env["TOKEN_FILE"])
                .with_file_name("other")
                .exists()
        );
        assert_eq!(env["GIT_CONFIG_NOSYSTEM"], "1");
        assert!(env["TMPDIR"].ends_with("image-rootfs/home/user/.local/tmp"));
        assert_eq!(p.args, ["-c", "echo", "x", "/tmp/a"]);
    }
}
