//! The BuildKit image's container contract: what a `moby/buildkit` container does with the
//! command and args it is given, modelled closely enough that the simulator refuses what the
//! real image refuses.
//!
//! - The command runs as the container would: `buildctl-daemonless.sh <args>` directly, or a
//!   `sh -c '<script>' <$0> <args>` wrapper read by a deliberately small shell interpreter
//!   (simple commands, `"$@"`, `&&`, `||`, `;`, newlines, `> file`). Anything else fails the
//!   container loudly (exit 2 for a script it cannot read, 127 for an unknown command).
//! - `buildctl-daemonless.sh` (moby/buildkit `examples/buildctl-daemonless/buildctl-daemonless.sh`)
//!   starts buildkitd first: a container AppArmor confines (no `Unconfined` field or
//!   `unconfined` annotation in effect) cannot start rootlesskit, and the script prints
//!   "could not connect ... after 10 trials" with the daemon's log and exits 1.
//! - buildctl's flags are those of `cmd/buildctl/build.go` at v0.23.2; an unknown one is refused
//!   the urfave/cli way (`Incorrect Usage: flag provided but not defined: -x`, exit 1).
//!   `--output`, `--export-cache`, `--import-cache` and `--secret` are parsed as
//!   `cmd/buildctl/build/*.go` parse them; `ignore-error` is read as `control/control.go` reads it.
//! - `--metadata-file` is written as `continuity.AtomicWriteFile` writes it: a temp file
//!   `.tmp-<name><random>` in the target's directory, then a rename. That fails in a directory
//!   the user cannot write (`/dev` for UID 1000), on a read-only mount, and when the target is a
//!   bind-mounted file such as the termination log; buildctl then exits 1 after the push.
//! - `cat f > /dev/termination-log` writes the file the kubelet created (mode 0666) and so sets
//!   the termination message; busybox `cp` (Alpine builds it with `FEATURE_NON_POSIX_CP`) opens
//!   its target `O_EXCL` and cannot unlink a bind-mounted file, so it fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::script::{Delays, PodInfo, PodScript, build_digest};

/// What goes wrong in a simulated build (the infrastructure or the user's Dockerfile).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum BuildFault {
    /// Nothing: the build pushes its image.
    #[default]
    None,
    /// The user's `RUN` step exits 101.
    RunStepFails,
    /// The registry answers the image push's manifest PUT with this status.
    PushStatus {
        /// HTTP status, e.g. 503.
        code: u16,
    },
    /// Docker Hub's pull rate limit (429) on the base image's metadata.
    PullRateLimited,
    /// buildkitd does not start (rootlesskit cannot set up its user namespace).
    DaemonFails,
    /// The registry answers the cache export's manifest PUT with 503.
    CacheExportFails,
    /// The git host does not resolve.
    GitUnreachable,
}

/// The default UID of the rootless image (`USER 1000:1000`); other images run as root.
fn image_uid(image: &str) -> i64 {
    if image.contains("rootless") { 1000 } else { 0 }
}

/// The image's `ENTRYPOINT` (moby/buildkit `Dockerfile`, stages `rootless` and `buildkit`).
fn image_entrypoint(image: &str) -> Vec<String> {
    if image.contains("rootless") {
        vec!["rootlesskit".into(), "buildkitd".into()]
    } else {
        vec!["buildkitd".into()]
    }
}

/// Runs the BuildKit container of `pod` and returns its script: log lines, how it ends, and
/// what it wrote to its termination-message file. A `sh -c` script of a `moby/buildkit` image
/// that is not the build wrapper (it never calls `buildctl`; Slipway's source Job) is not
/// modelled: the script returned has [`PodScript::host_shell`] set, and the simulated kubelet
/// runs it with the host's `/bin/sh` and `git` ([`crate::hostrun`]).
#[must_use]
pub fn run(pod: &PodInfo, delays: &Delays, fault: BuildFault) -> PodScript {
    if runs_on_host(pod) {
        return PodScript {
            host_shell: true,
            ..PodScript::succeed()
        }
        .start_after(delays.pod_start);
    }
    model(pod, delays, fault)
}

/// Whether the kubelet runs `pod`'s first container on the host ([`crate::hostrun`]): a
/// `moby/buildkit` image whose argv (after the kubelet's `$(VAR)` expansion) is `sh -c
/// SCRIPT [ARG0 ARGS...]` with a script that does not call `buildctl` (the build wrapper,
/// which the model reads).
#[must_use]
pub fn runs_on_host(pod: &PodInfo) -> bool {
    if !pod.image.contains("moby/buildkit") {
        return false;
    }
    let c = Container::of(pod);
    match c.argv.as_slice() {
        [sh, dash_c, script, ..] => {
            matches!(base(sh), "sh" | "ash") && dash_c == "-c" && !script.contains("buildctl")
        }
        _ => false,
    }
}

/// The model of the container (the build wrapper, buildctl, buildkitd).
fn model(pod: &PodInfo, delays: &Delays, fault: BuildFault) -> PodScript {
    let c = Container::of(pod);
    let mut run = Run {
        c: &c,
        fault,
        out: Vec::new(),
        files: BTreeMap::new(),
        termination: None,
        daemon_forever: false,
    };
    let code = run.exec_container();
    let mut s = if run.daemon_forever {
        PodScript::run_forever()
    } else {
        PodScript::exit(code)
    }
    .start_after(delays.pod_start);
    let per_line = delays.build / u32::try_from(run.out.len().max(1)).unwrap_or(1);
    for l in run.out {
        s = s.log_after(per_line, l);
    }
    s.termination_message = run.termination;
    s
}

/// The parts of the pod spec the container contract depends on.
struct Container {
    argv: Vec<String>,
    uid: i64,
    termination_path: String,
    /// mountPath -> (volume source kind, read-only, subPath mount).
    mounts: Vec<(String, String, bool, bool)>,
    /// Whether AppArmor leaves the container unconfined (field or annotation in effect).
    apparmor_unconfined: bool,
    pod: Value,
}

impl Container {
    fn of(pod: &PodInfo) -> Self {
        let o = &pod.object;
        let c = o
            .pointer("/spec/containers/0")
            .cloned()
            .unwrap_or(Value::Null);
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let strs = |v: &Value| -> Option<Vec<String>> {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
        };
        // `command` replaces the image's ENTRYPOINT; `args` its CMD (the image has none).
        let mut argv = strs(&c["command"]).unwrap_or_else(|| image_entrypoint(&pod.image));
        argv.extend(strs(&c["args"]).unwrap_or_default());
        let env: BTreeMap<String, String> = container_env(&c, |_, _| None).into_iter().collect();
        let argv = argv.iter().map(|a| kubelet_expand(a, &env)).collect();
        let uid = c
            .pointer("/securityContext/runAsUser")
            .or_else(|| o.pointer("/spec/securityContext/runAsUser"))
            .and_then(Value::as_i64)
            .unwrap_or_else(|| image_uid(&pod.image));
        let volumes: BTreeMap<String, String> = o
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| {
                        let kind = v
                            .as_object()
                            .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                            .unwrap_or_default();
                        (v["name"].as_str().unwrap_or_default().to_string(), kind)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mounts = c["volumeMounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        let kind = volumes
                            .get(m["name"].as_str().unwrap_or_default())
                            .cloned()
                            .unwrap_or_default();
                        (
                            m["mountPath"]
                                .as_str()
                                .unwrap_or_default()
                                .trim_end_matches('/')
                                .to_string(),
                            kind,
                            m["readOnly"].as_bool().unwrap_or(false),
                            m["subPath"].as_str().is_some_and(|s| !s.is_empty()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // The kubelet's order (KEP-24): container field, container annotation, pod field.
        let annotation = o
            .pointer("/metadata/annotations")
            .and_then(|a| {
                a.get(format!(
                    "container.apparmor.security.beta.kubernetes.io/{name}"
                ))
            })
            .and_then(Value::as_str);
        let unconfined = match (
            c.pointer("/securityContext/appArmorProfile/type")
                .and_then(Value::as_str),
            annotation,
            o.pointer("/spec/securityContext/appArmorProfile/type")
                .and_then(Value::as_str),
        ) {
            (Some(t), _, _) => t == "Unconfined",
            (None, Some(a), _) => a == "unconfined",
            (None, None, Some(t)) => t == "Unconfined",
            (None, None, None) => false,
        };
        Container {
            argv,
            uid,
            termination_path: c["terminationMessagePath"]
                .as_str()
                .unwrap_or("/dev/termination-log")
                .to_string(),
            mounts,
            apparmor_unconfined: unconfined,
            pod: o.clone(),
        }
    }

    /// The mount holding `path`, if any (the longest mountPath that contains it).
    fn mount_of(&self, path: &str) -> Option<&(String, String, bool, bool)> {
        self.mounts
            .iter()
            .filter(|(p, ..)| path == p || path.starts_with(&format!("{p}/")))
            .max_by_key(|(p, ..)| p.len())
    }

    /// The files of directory `dir` in the container, as buildctl's `--local` reads it
    /// (tonistiigi/fsutil `NewFS`: `filepath.EvalSymlinks`, then `os.Stat`, which must be a
    /// directory; the kubelet's `..data` symlinks of projected volumes are followed). A
    /// `downwardAPI` mount holds its projected fields ([`crate::hostrun::downward_api_files`]),
    /// an `emptyDir` nothing, the image's own directories nothing the simulator knows of.
    /// `Err` is fsutil's message (its `resolve` error names an empty path: `NewFS` assigns the
    /// failed `EvalSymlinks` result to `root` before formatting it).
    fn local_files(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let d = if dir.starts_with('/') {
            dir.to_string()
        } else {
            format!("/{dir}")
        };
        let d = match d.trim_end_matches('/') {
            "" => "/".to_string(),
            t => t.to_string(),
        };
        let missing = || format!("resolve : lstat {d}: no such file or directory");
        let Some((mount_path, kind, _, _)) = self.mount_of(&d) else {
            const IMAGE_DIRS: &[&str] = &[
                "/",
                "/bin",
                "/dev",
                "/etc",
                "/home",
                "/home/user",
                "/home/user/.local",
                "/home/user/.local/share",
                "/home/user/.local/share/buildkit",
                "/home/user/.local/tmp",
                "/proc",
                "/run",
                "/run/user",
                "/run/user/1000",
                "/sys",
                "/tmp",
                "/usr",
                "/usr/bin",
                "/var",
            ];
            return if IMAGE_DIRS.contains(&d.as_str()) {
                Ok(Vec::new())
            } else {
                Err(missing())
            };
        };
        let c = &self.pod["spec"]["containers"][0];
        let volume_name = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(mount_path))
            .and_then(|m| m["name"].as_str())
            .unwrap_or_default();
        let volume = self.pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == volume_name)
            .cloned()
            .unwrap_or(Value::Null);
        let files = match kind.as_str() {
            "downwardAPI" => crate::hostrun::downward_api_files(&self.pod, &volume["downwardAPI"])?,
            "emptyDir" => Vec::new(),
            other => {
                return Err(format!(
                    "kube-sim: a --local directory on a {other} volume is not modelled"
                ));
            }
        };
        let rel = d[mount_path.len()..].trim_start_matches('/');
        if rel.is_empty() {
            return Ok(files);
        }
        let prefix = format!("{rel}/");
        let inside: Vec<(String, Vec<u8>)> = files
            .iter()
            .filter_map(|(p, b)| p.strip_prefix(&prefix).map(|q| (q.to_string(), b.clone())))
            .collect();
        if !inside.is_empty() {
            Ok(inside)
        } else if files.iter().any(|(p, _)| p == rel) {
            Err(format!("stat {d}: not a directory"))
        } else {
            Err(missing())
        }
    }

    /// Whether `path` is a bind-mounted file: the termination log or a subPath mount.
    fn is_file_mount(&self, path: &str) -> bool {
        path == self.termination_path || self.mounts.iter().any(|(p, _, _, sub)| *sub && p == path)
    }

    /// Whether the user can create files in directory `dir`: `Err(errno text)` if not.
    fn can_create_in(&self, dir: &str) -> Result<(), &'static str> {
        if let Some((p, kind, ro, _)) = self.mount_of(dir) {
            if *ro
                || matches!(
                    kind.as_str(),
                    "secret" | "configMap" | "projected" | "downwardAPI"
                )
            {
                return Err("read-only file system");
            }
            // An emptyDir is created 0777 (kubernetes pkg/volume/emptydir: `perm = 0777`); a
            // directory below its root exists only if something made it.
            return if dir == p {
                Ok(())
            } else {
                Err("no such file or directory")
            };
        }
        // The image's own directories (moby/buildkit Dockerfile, stage `rootless`; Alpine).
        let root = self.uid == 0;
        match dir {
            "/tmp" => Ok(()),
            "/dev" | "/" | "/etc" | "/usr" | "/usr/bin" | "/bin" | "/var" | "/run" | "/home" => {
                if root {
                    Ok(())
                } else {
                    Err("permission denied")
                }
            }
            d if d == "/home/user" || d.starts_with("/home/user/") || d == "/run/user/1000" => {
                if d == "/home/user" || d == "/home/user/.local/tmp" || d == "/run/user/1000" {
                    Ok(())
                } else {
                    Err("no such file or directory")
                }
            }
            _ => Err("no such file or directory"),
        }
    }
}

/// A container's environment as the kubelet builds it (kubernetes `pkg/kubelet/kubelet_pods.go`,
/// `makeEnvironmentVariables`): in order, each `value` expanded with `$(VAR)` against the
/// variables defined *before* it (kubernetes/website "Define Dependent Environment Variables"),
/// each `valueFrom.secretKeyRef` read through `secret(name, key)` unexpanded; an entry whose
/// Secret is not found is left out here (the real kubelet keeps the pod from starting).
pub fn container_env(
    container: &Value,
    secret: impl Fn(&str, &str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut defined: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let value = if let Some(v) = e["value"].as_str() {
            Some(kubelet_expand(v, &defined))
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            r["name"]
                .as_str()
                .zip(r["key"].as_str())
                .and_then(|(n, k)| secret(n, k))
        };
        if let Some(v) = value {
            defined.insert(name.to_owned(), v.clone());
            out.push((name.to_owned(), v));
        }
    }
    out
}

/// The kubelet's `$(VAR)` expansion of command and args (kubernetes
/// `third_party/forked/golang/expansion/expand.go`): `$$` is `$`, a defined `$(NAME)` its value,
/// anything else unchanged.
pub fn kubelet_expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let b = input.as_bytes();
    let mut out = String::new();
    let mut checkpoint = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            out.push_str(&input[checkpoint..i]);
            let rest = &input[i + 1..];
            let advance = match b[i + 1] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(end) => {
                        let name = &rest[1..end];
                        match env.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&format!("$({name})")),
                        }
                        end + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // `$` and the next character, unchanged.
                    let ch = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            i += advance + 1;
            checkpoint = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((d, _)) => d.into(),
        None => ".".into(),
    }
}

fn base(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

/// One run of the container.
struct Run<'a> {
    c: &'a Container,
    fault: BuildFault,
    /// stdout and stderr, line by line, as the log shows them.
    out: Vec<String>,
    /// Files written during the run.
    files: BTreeMap<String, String>,
    /// What was written to the termination-message file.
    termination: Option<String>,
    /// The command is the daemon itself: it runs until deleted.
    daemon_forever: bool,
}

impl Run<'_> {
    fn exec_container(&mut self) -> i32 {
        let argv = self.c.argv.clone();
        let Some(prog) = argv.first() else {
            self.out
                .push("kube-sim: the BuildKit container has no command".into());
            return 128;
        };
        match base(prog) {
            "sh" | "ash" if argv.get(1).map(String::as_str) == Some("-c") => {
                let Some(script) = argv.get(2) else {
                    self.out.push("sh: -c requires an argument".into());
                    return 2;
                };
                let arg0 = argv.get(3).cloned().unwrap_or_else(|| "sh".into());
                let positional = argv.get(4..).map(<[String]>::to_vec).unwrap_or_default();
                self.shell(script, &arg0, &positional)
            }
            "buildctl-daemonless.sh" => self.daemonless(&argv[1..]),
            "rootlesskit" | "buildkitd" => {
                if self.c.apparmor_unconfined || base(prog) == "buildkitd" {
                    self.out.push(format!(
                        "level=info msg=\"running server on /run/user/{}/buildkit/buildkitd.sock\"",
                        self.c.uid
                    ));
                    self.daemon_forever = true;
                    0
                } else {
                    self.out.extend(apparmor_denied());
                    1
                }
            }
            other => {
                self.out.push(format!(
                    "kube-sim: the BuildKit image has no model of command {other:?} (argv {argv:?})"
                ));
                127
            }
        }
    }

    /// The small shell: lists of simple commands joined by `&&`/`||`, separated by `;` or
    /// newlines, words unquoted or in quotes, `"$@"`, and `> file`.
    fn shell(&mut self, script: &str, arg0: &str, positional: &[String]) -> i32 {
        let Some(lists) = parse_script(script, positional) else {
            self.out.push(format!(
                "kube-sim: {arg0}: the simulator's shell cannot read this script (unsupported syntax): {script}"
            ));
            return 2;
        };
        let mut errexit = false;
        let mut status = 0;
        for list in lists {
            let n = list.len();
            let mut ran_last = false;
            for (k, (op, cmd)) in list.into_iter().enumerate() {
                let run = match op.as_str() {
                    "&&" => status == 0,
                    "||" => status != 0,
                    _ => true,
                };
                if !run {
                    continue;
                }
                ran_last = k + 1 == n;
                if cmd.words.first().map(String::as_str) == Some("set") {
                    errexit |= cmd
                        .words
                        .iter()
                        .skip(1)
                        .any(|w| w.starts_with('-') && w.contains('e'));
                    status = 0;
                    continue;
                }
                status = self.simple(arg0, &cmd);
            }
            // `set -e` ends the script when a list's last command fails.
            if errexit && ran_last && status != 0 {
                return status;
            }
        }
        status
    }

    /// One simple command with its optional `> file`.
    fn simple(&mut self, arg0: &str, cmd: &Command) -> i32 {
        let mut words = cmd.words.clone();
        if words.first().map(String::as_str) == Some("exec") {
            words.remove(0);
        }
        let Some(prog) = words.first().cloned() else {
            return 0;
        };
        // The redirection is opened first (O_WRONLY|O_CREAT|O_TRUNC), by the shell.
        if let Some(target) = &cmd.redirect
            && let Err(e) = self.open_for_write(target, true)
        {
            self.out
                .push(format!("{arg0}: can't create {target}: {}", capitalise(e)));
            return 1;
        }
        let (code, stdout) = match base(&prog) {
            "buildctl-daemonless.sh" => (self.daemonless(&words[1..]), Vec::new()),
            "cat" => self.cat(&words[1..]),
            "cp" => (self.cp(&words[1..]), Vec::new()),
            "true" | ":" => (0, Vec::new()),
            "false" => (1, Vec::new()),
            "echo" => (0, vec![words[1..].join(" ")]),
            other => {
                self.out.push(format!("{arg0}: {other}: not found"));
                (127, Vec::new())
            }
        };
        match &cmd.redirect {
            Some(target) => {
                let text: String = stdout.iter().map(|l| format!("{l}\n")).collect();
                self.write_file(target, text);
            }
            None => self.out.extend(stdout),
        }
        code
    }

    fn write_file(&mut self, path: &str, text: String) {
        if path == self.c.termination_path {
            self.termination = Some(text.clone());
        }
        self.files.insert(path.to_string(), text);
    }

    /// Opening `path` for writing, creating it when missing (`exists_ok`: truncating an
    /// existing file is fine, as the shell's `>` does).
    fn open_for_write(&self, path: &str, exists_ok: bool) -> Result<(), &'static str> {
        // The kubelet creates the termination-log file 0666 before the container starts
        // (kubernetes pkg/kubelet/kuberuntime `makeMounts`).
        if path == self.c.termination_path || self.files.contains_key(path) {
            return if exists_ok {
                Ok(())
            } else {
                Err("file exists")
            };
        }
        self.c.can_create_in(&parent(path))
    }

    fn cat(&mut self, files: &[String]) -> (i32, Vec<String>) {
        let mut out = Vec::new();
        let mut code = 0;
        for f in files {
            match self.files.get(f) {
                Some(text) => out.extend(text.lines().map(String::from)),
                None => {
                    self.out
                        .push(format!("cat: can't open '{f}': No such file or directory"));
                    code = 1;
                }
            }
        }
        (code, out)
    }

    /// busybox `cp SRC DST` (libbb/copy_file.c with FEATURE_NON_POSIX_CP, Alpine's setting).
    fn cp(&mut self, args: &[String]) -> i32 {
        let [src, dst] = args else {
            self.out
                .push("cp: kube-sim models only `cp SRC DST`".into());
            return 1;
        };
        let Some(text) = self.files.get(src).cloned() else {
            self.out
                .push(format!("cp: can't stat '{src}': No such file or directory"));
            return 1;
        };
        match self.open_for_write(dst, false) {
            Ok(()) => {
                self.write_file(dst, text);
                0
            }
            // open(O_CREAT|O_EXCL) fails with EEXIST, the unlink that follows fails (a root-owned
            // directory, a mount point), and errno is restored to EEXIST for the message.
            Err("file exists") => {
                self.out
                    .push(format!("cp: can't create '{dst}': File exists"));
                1
            }
            Err(e) => {
                self.out
                    .push(format!("cp: can't create '{dst}': {}", capitalise(e)));
                1
            }
        }
    }

    /// `buildctl-daemonless.sh ARGS`: start buildkitd (rootlesskit for a non-root user), wait
    /// for its socket, run `buildctl --addr=... ARGS`.
    fn daemonless(&mut self, args: &[String]) -> i32 {
        let addr = if self.c.uid == 0 {
            "unix:///run/buildkit/buildkitd.sock".to_string()
        } else {
            format!("unix:///run/user/{}/buildkit/buildkitd.sock", self.c.uid)
        };
        let daemon_log = if !self.c.apparmor_unconfined {
            Some(apparmor_denied())
        } else if self.fault == BuildFault::DaemonFails {
            Some(vec![
                "[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap 11 [0 1000 1 1 100000 65536] failed: newuidmap: Could not set caps".into(),
                ": exit status 1".into(),
            ])
        } else {
            None
        };
        if let Some(log) = daemon_log {
            self.out
                .push(format!("could not connect to {addr} after 10 trials"));
            self.out.push("========== log ==========".into());
            self.out.extend(log);
            self.out
                .push("sh: can't kill pid 8: No such process".into());
            return 1;
        }
        self.buildctl(args)
    }

    fn buildctl(&mut self, args: &[String]) -> i32 {
        let (cmd, rest) = match args.split_first() {
            Some((c, rest)) => (c.as_str(), rest),
            None => ("", args),
        };
        if cmd != "build" && cmd != "b" {
            self.out.push(format!(
                "kube-sim: buildctl {cmd:?} is not modelled (only `buildctl build`)"
            ));
            return 1;
        }
        let flags = match parse_build_flags(rest) {
            Ok(f) => f,
            Err(e) => {
                // urfave/cli v1 `Command.Run`: usage to stdout, then `handleErr` to stderr.
                self.out.push(format!("Incorrect Usage: {e}"));
                self.out.push(String::new());
                self.out.push("NAME:".into());
                self.out.push("   buildctl build - build".into());
                self.out.push(String::new());
                self.out.push("USAGE:".into());
                self.out
                    .push("   buildctl build [command options] [arguments...]".into());
                self.out.push(format!("error: {e}"));
                return 1;
            }
        };
        match self.build(&flags) {
            Ok(()) => 0,
            Err(e) => {
                self.out.push(format!("error: {e}"));
                1
            }
        }
    }

    /// The solve, its progress output, the push, and the metadata file.
    fn build(&mut self, f: &Flags) -> Result<(), String> {
        if let Some(p) = f.single("progress")
            && !["auto", "plain", "tty", "quiet", "rawjson"].contains(&p)
        {
            return Err(format!("kube-sim: progress mode {p:?} is not modelled"));
        }
        let outputs: Vec<BTreeMap<String, String>> = f
            .multi("output")
            .iter()
            .map(|o| parse_csv_entry(o, "--output"))
            .collect::<Result<_, _>>()?;
        let exports: Vec<BTreeMap<String, String>> = f
            .multi("export-cache")
            .iter()
            .map(|o| cache_entry(o, "--export-cache"))
            .collect::<Result<_, _>>()?;
        for i in f.multi("import-cache") {
            cache_entry(&i, "--import-cache")?;
        }
        for s in f.multi("secret") {
            parse_secret(&s)?;
        }
        let mut opts = BTreeMap::new();
        for o in f.multi("opt") {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| format!("invalid opt: invalid value {o}"))?;
            opts.insert(k.to_string(), v.to_string());
        }
        // `build.ParseLocal`: `attrMap` (NAME=DIR), then `fsutil.NewFS(DIR)` for each.
        let mut locals = BTreeMap::new();
        for l in f.multi("local") {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| format!("invalid local: invalid value {l}"))?;
            locals.insert(k.to_string(), v.to_string());
        }
        for dir in locals.values() {
            self.c
                .local_files(dir)
                .map_err(|e| format!("invalid local: {e}"))?;
        }
        match f.single("frontend") {
            None | Some("") => {
                return Err("please specify --frontend or pipe LLB definition to stdin".into());
            }
            Some("dockerfile.v0" | "gateway.v0") => {}
            Some(other) => return Err(format!("kube-sim: frontend {other:?} is not modelled")),
        }
        let Some(context) = opts.get("context") else {
            return Err(
                "kube-sim: a build without a git context (--opt context=...) is not modelled"
                    .into(),
            );
        };
        let remote = context.split('#').next().unwrap_or_default().to_string();
        let ssh = remote.starts_with("ssh://") || (remote.contains('@') && !remote.contains("://"));
        let image = outputs
            .iter()
            .find(|o| o["type"] == "image" || o["type"] == "registry");
        let image_name = image
            .and_then(|o| o.get("name"))
            .cloned()
            .unwrap_or_else(|| "registry.local/app:latest".into());
        let insecure = image
            .and_then(|o| o.get("registry.insecure"))
            .is_some_and(|v| v == "true");
        let args: Vec<String> = self.c.pod["spec"]["containers"][0]["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let digest = build_digest(&args);
        let ssh_unforwarded = ssh && f.multi("ssh").is_empty();
        let next = if let Some(key) = opts.get("dockerfilekey") {
            self.solve_local_dockerfile(key, &locals, &opts, context, &remote, ssh_unforwarded)?
        } else {
            self.solve_canned(context, &remote, ssh_unforwarded)?
        };
        self.export(f, next, &exports, &image_name, insecure, &digest)
    }

    /// `[internal] load git source`: the faults of BuildKit's git source (`source/git/source.go`).
    fn git_source(
        &mut self,
        n: usize,
        context: &str,
        remote: &str,
        ssh_unforwarded: bool,
    ) -> Result<(), String> {
        let out = &mut self.out;
        out.push(format!("#{n} [internal] load git source {context}"));
        if ssh_unforwarded {
            // moby/buildkit source/git/source.go
            out.push(format!(
                "#{n} ERROR: no SSH key \"default\" forwarded from the client"
            ));
            return Err("failed to solve: no SSH key \"default\" forwarded from the client".into());
        }
        if self.fault == BuildFault::GitUnreachable {
            let host = remote
                .split("://")
                .nth(1)
                .unwrap_or(remote)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let e = format!(
                "failed to fetch remote {remote}: git stderr:\nfatal: unable to access '{remote}/': Could not resolve host: {host}\n: exit status 128"
            );
            out.push(format!(
                "#{n} ERROR: {}",
                e.lines().next().unwrap_or_default()
            ));
            return Err(format!("failed to solve: {e}"));
        }
        out.push(format!("#{n} DONE 0.9s"));
        Ok(())
    }

    /// The Dockerfile from the git context: the simulator does not read the repository, so a
    /// fixed Rust build is shown. Returns the next vertex number.
    fn solve_canned(
        &mut self,
        context: &str,
        remote: &str,
        ssh_unforwarded: bool,
    ) -> Result<usize, String> {
        self.git_source(1, context, remote, ssh_unforwarded)?;
        let out = &mut self.out;
        out.push("#2 [internal] load build definition from Dockerfile".into());
        out.push("#2 transferring dockerfile: 412B done".into());
        out.push("#2 DONE 0.0s".into());
        out.push("#3 [internal] load metadata for docker.io/library/rust:1.95-slim".into());
        if self.fault == BuildFault::PullRateLimited {
            let e = "unexpected status from HEAD request to https://registry-1.docker.io/v2/library/rust/manifests/1.95-slim: 429 Too Many Requests";
            out.push(format!("#3 ERROR: {e}"));
            return Err(format!(
                "failed to solve: rust:1.95-slim: failed to resolve source metadata for docker.io/library/rust:1.95-slim: {e}"
            ));
        }
        out.push("#3 DONE 0.8s".into());
        out.push("#4 [builder 1/4] FROM docker.io/library/rust:1.95-slim".into());
        out.push("#4 CACHED".into());
        out.push("#5 [builder 2/4] COPY . /src".into());
        out.push("#5 DONE 0.2s".into());
        out.push("#6 [builder 3/4] RUN cargo build --release".into());
        out.push("#6 12.41 Compiling app v0.1.0 (/src)".into());
        if self.fault == BuildFault::RunStepFails {
            let e = "process \"/bin/sh -c cargo build --release\" did not complete successfully: exit code: 101";
            out.push(
                "#6 13.02 error: could not compile `app` (bin \"app\") due to 1 previous error"
                    .into(),
            );
            out.push(format!("#6 ERROR: {e}"));
            out.push("------".into());
            out.push(" > [builder 3/4] RUN cargo build --release:".into());
            out.push(
                "13.02 error: could not compile `app` (bin \"app\") due to 1 previous error".into(),
            );
            out.push("------".into());
            out.push("Dockerfile:5".into());
            out.push("--------------------".into());
            out.push("   5 | >>> RUN cargo build --release".into());
            out.push("--------------------".into());
            return Err(format!("failed to solve: {e}"));
        }
        out.push("#6 41.87 Finished `release` profile [optimized] target(s)".into());
        out.push("#6 DONE 42.1s".into());
        Ok(7)
    }

    /// The Dockerfile from the local named by `dockerfilekey` (moby/buildkit
    /// `frontend/dockerui/context.go` `initContext`: `forceLocalDockerfile`; `config.go`
    /// `ReadEntrypoint`: `llb.Local(name)` following `filename`, `filename.dockerignore` and,
    /// for `Dockerfile`, `dockerfile`), its real steps printed ([`crate::dockerfile`]). The git
    /// context loads when the first step reading it runs. Returns the next vertex number.
    fn solve_local_dockerfile(
        &mut self,
        key: &str,
        locals: &BTreeMap<String, String>,
        opts: &BTreeMap<String, String>,
        context: &str,
        remote: &str,
        ssh_unforwarded: bool,
    ) -> Result<usize, String> {
        let filename = opts
            .get("filename")
            .cloned()
            .unwrap_or_else(|| "Dockerfile".into());
        let mut n = 1;
        self.out.push(format!(
            "#{n} [internal] load build definition from {filename}"
        ));
        let Some(dir) = locals.get(key) else {
            // The session's file provider knows only the --local names
            // (session/filesync/filesync.go); the frontend wraps the solve error.
            let e = format!("no access allowed to dir {key:?}");
            self.out.push(format!("#{n} ERROR: {e}"));
            return Err(format!(
                "failed to solve: failed to resolve dockerfile: {e}"
            ));
        };
        let files = self.c.local_files(dir)?;
        let clean = |p: &str| {
            p.trim_start_matches("./")
                .trim_start_matches('/')
                .to_string()
        };
        let find = |name: &str| {
            files
                .iter()
                .find(|(p, _)| clean(p) == clean(name))
                .map(|(_, b)| b.clone())
        };
        let lower = (base(&filename) == "Dockerfile").then(|| {
            let parent = parent(&filename);
            if parent == "." || !filename.contains('/') {
                "dockerfile".to_string()
            } else {
                format!("{parent}/dockerfile")
            }
        });
        let transferred: usize = [
            Some(filename.clone()),
            Some(format!("{filename}.dockerignore")),
            lower.clone(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|p| find(&p))
        .map(|b| b.len())
        .sum();
        self.out
            .push(format!("#{n} transferring dockerfile: {transferred}B done"));
        self.out.push(format!("#{n} DONE 0.0s"));
        let Some(text) = find(&filename).or_else(|| lower.as_deref().and_then(find)) else {
            return Err(format!(
                "failed to solve: failed to read dockerfile: open {}/{filename}: no such file or directory",
                "/home/user/.local/tmp/buildkit-mount"
            ));
        };
        if text.is_empty() {
            // dockerfile2llb/convert.go toDispatchState.
            return Err("failed to solve: the Dockerfile cannot be empty".into());
        }
        let build_args: BTreeMap<String, String> = opts
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("build-arg:")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        let plan = crate::dockerfile::plan(
            &String::from_utf8_lossy(&text),
            opts.get("target").map(String::as_str),
            &build_args,
        )
        .map_err(|e| format!("failed to solve: {e}"))?;
        for (written, reference) in &plan.bases {
            n += 1;
            self.out
                .push(format!("#{n} [internal] load metadata for {reference}"));
            if self.fault == BuildFault::PullRateLimited {
                let e = unexpected_status(
                    "HEAD",
                    &manifest_url(reference, false)
                        .replace("https://docker.io/", "https://registry-1.docker.io/"),
                    429,
                );
                self.out.push(format!("#{n} ERROR: {e}"));
                return Err(format!(
                    "failed to solve: {written}: failed to resolve source metadata for {reference}: {e}"
                ));
            }
            self.out.push(format!("#{n} DONE 0.8s"));
        }
        let mut context_loaded = false;
        for step in &plan.steps {
            if step.kind == crate::dockerfile::StepKind::Copy(true) && !context_loaded {
                n += 1;
                self.git_source(n, context, remote, ssh_unforwarded)?;
                context_loaded = true;
            }
            n += 1;
            self.out.push(format!("#{n} {}", step.header));
            match &step.kind {
                crate::dockerfile::StepKind::From(reference) => {
                    let pinned =
                        format!("{reference}@{}", crate::dockerfile::image_digest(reference));
                    self.out.push(format!("#{n} resolve {pinned} done"));
                    self.out.push(format!("#{n} DONE 0.1s"));
                }
                crate::dockerfile::StepKind::Run(cmd) if self.fault == BuildFault::RunStepFails => {
                    // The process's args: the exec form's words, or the shell form's
                    // `/bin/sh -c <cmd>` (the LLB exec op's meta args joined by spaces).
                    let process = serde_json::from_str::<Vec<String>>(cmd)
                        .map(|a| a.join(" "))
                        .unwrap_or_else(|_| format!("/bin/sh -c {cmd}"));
                    let e = format!(
                        "process \"{process}\" did not complete successfully: exit code: 1"
                    );
                    let step_name = step.header.clone();
                    self.out.push(format!(
                        "#{n} 0.512 kube-sim: the step fails (BuildFault::RunStepFails)"
                    ));
                    self.out.push(format!("#{n} ERROR: {e}"));
                    self.out.push("------".into());
                    self.out.push(format!(" > {step_name}:"));
                    self.out
                        .push("0.512 kube-sim: the step fails (BuildFault::RunStepFails)".into());
                    self.out.push("------".into());
                    self.out.push(format!("{filename}:{}", step.line));
                    self.out.push("--------------------".into());
                    self.out
                        .push(format!(" {:>3} | >>> {}", step.line, step.original));
                    self.out.push("--------------------".into());
                    return Err(format!("failed to solve: {e}"));
                }
                _ => self.out.push(format!("#{n} DONE 0.2s")),
            }
        }
        Ok(n + 1)
    }

    /// Exporting the image, pushing it, exporting the cache, writing the metadata file.
    fn export(
        &mut self,
        f: &Flags,
        first: usize,
        exports: &[BTreeMap<String, String>],
        image_name: &str,
        insecure: bool,
        digest: &str,
    ) -> Result<(), String> {
        let out = &mut self.out;
        let n = first;
        out.push(format!("#{n} exporting to image"));
        out.push(format!("#{n} exporting layers 0.4s done"));
        out.push(format!("#{n} exporting manifest {digest} done"));
        out.push(format!("#{n} naming to {image_name} done"));
        if let BuildFault::PushStatus { code } = self.fault {
            let e = format!(
                "failed to push {image_name}: {}",
                unexpected_status("PUT", &manifest_url(image_name, insecure), code)
            );
            out.push(format!("#{n} ERROR: {e}"));
            return Err(format!("failed to solve: {e}"));
        }
        out.push(format!("#{n} pushing layers 1.2s done"));
        out.push(format!("#{n} DONE 1.7s"));
        for (i, e) in exports.iter().enumerate() {
            let n = first + 1 + i;
            out.push(format!("#{n} exporting cache to registry"));
            out.push(format!("#{n} preparing build cache for export"));
            let cache_ref = e.get("ref").cloned().unwrap_or_default();
            if self.fault == BuildFault::CacheExportFails {
                let err = unexpected_status(
                    "PUT",
                    &manifest_url(
                        &cache_ref,
                        e.get("registry.insecure").is_some_and(|v| v == "true"),
                    ),
                    503,
                );
                out.push(format!("#{n} ERROR: {err}"));
                // solver/llbsolver/solver.go runCacheExporters: `if exp.IgnoreError { err = nil }`,
                // with ignore-error read by strconv.ParseBool (control/control.go).
                let ignore = e
                    .get("ignore-error")
                    .and_then(|v| parse_go_bool(v))
                    .unwrap_or(false);
                if !ignore {
                    return Err(format!("failed to solve: {err}"));
                }
            } else {
                out.push(format!("#{n} writing cache manifest {digest} done"));
                out.push(format!("#{n} DONE 0.6s"));
            }
        }
        if let Some(path) = f.single("metadata-file").filter(|p| !p.is_empty()) {
            let meta = json!({
                "containerimage.config.digest": format!("sha256:{}", &digest[7..].chars().rev().collect::<String>()),
                "containerimage.descriptor": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": 1024,
                },
                "containerimage.digest": digest,
                "image.name": image_name,
            });
            self.atomic_write(
                path,
                serde_json::to_string_pretty(&meta).unwrap_or_default(),
                digest,
            )?;
        }
        Ok(())
    }

    /// `continuity.AtomicWriteFile`: `os.CreateTemp(dir, ".tmp-"+base)`, write, rename.
    fn atomic_write(&mut self, path: &str, text: String, digest: &str) -> Result<(), String> {
        let dir = parent(path);
        // os.CreateTemp's random part: a decimal uint32.
        let random = u32::from_str_radix(&digest[7..15], 16).unwrap_or(0);
        let tmp = format!("{}/.tmp-{}{random}", dir.trim_end_matches('/'), base(path));
        self.c
            .can_create_in(&dir)
            .map_err(|e| format!("open {tmp}: {e}"))?;
        if self.c.is_file_mount(path) {
            return Err(format!("rename {tmp} {path}: device or resource busy"));
        }
        self.write_file(path, text);
        Ok(())
    }
}

/// What rootlesskit prints when AppArmor's default profile denies its mounts (moby/buildkit
/// issue 2441, and the `unconfined` requirement in BuildKit's `docs/rootless.md`).
fn apparmor_denied() -> Vec<String> {
    vec![
        "[rootlesskit:child ] error: failed to share mount point: /: permission denied".into(),
        "[rootlesskit:parent] error: child exited: exit status 1".into(),
    ]
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// containerd's `remotes/errors.ErrUnexpectedStatus` text.
fn unexpected_status(method: &str, url: &str, code: u16) -> String {
    let text = match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    format!("unexpected status from {method} request to {url}: {code} {text}")
}

fn manifest_url(reference: &str, insecure: bool) -> String {
    let (repo, tag) = reference
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or((reference, "latest"));
    let (host, path) = repo.split_once('/').unwrap_or(("docker.io", repo));
    let scheme = if insecure { "http" } else { "https" };
    format!("{scheme}://{host}/v2/{path}/manifests/{tag}")
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `--output`/`--export-cache`/`--import-cache` CSV (`cmd/buildctl/build/*.go`).
fn parse_csv_entry(s: &str, flag: &str) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for field in s.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid value {field}"))?;
        m.insert(k.to_ascii_lowercase(), v.to_string());
    }
    if m.get("type").is_none_or(String::is_empty) {
        return Err(format!("{flag} requires type=<type>"));
    }
    if flag == "--output"
        && let Some(v) = m.get("output")
    {
        return Err(format!(
            "output={v} not supported for --output, you meant dest={v}?"
        ));
    }
    Ok(m)
}

fn cache_entry(s: &str, flag: &str) -> Result<BTreeMap<String, String>, String> {
    if !s.contains("type=") {
        // The legacy form: a bare registry reference.
        return Ok(BTreeMap::from([
            ("type".to_string(), "registry".to_string()),
            ("ref".to_string(), s.to_string()),
        ]));
    }
    parse_csv_entry(s, flag)
}

/// `--secret` (`cmd/buildctl/build/secret.go`).
fn parse_secret(s: &str) -> Result<(), String> {
    for field in s.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
        match k.to_ascii_lowercase().as_str() {
            "type" if v != "file" && v != "env" => {
                return Err(format!("unsupported secret type {v:?}"));
            }
            "type" | "id" | "source" | "src" | "env" => {}
            other => return Err(format!("unexpected key '{other}' in '{field}'")),
        }
    }
    Ok(())
}

/// The flags of `buildctl build` at v0.23.2 (`cmd/buildctl/build.go`), plus urfave/cli's help.
const STRING_FLAGS: &[&str] = &[
    "output",
    "o",
    "progress",
    "trace",
    "local",
    "oci-layout",
    "frontend",
    "opt",
    "export-cache",
    "import-cache",
    "secret",
    "allow",
    "ssh",
    "metadata-file",
    "source-policy-file",
    "ref-file",
    "registry-auth-tlscontext",
    "debug-json-cache-metrics",
];
const BOOL_FLAGS: &[&str] = &["no-cache", "help", "h"];

/// Parsed flags: name -> values in order.
struct Flags(BTreeMap<String, Vec<String>>);

impl Flags {
    fn single(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    fn multi(&self, name: &str) -> Vec<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// Go's `flag` package rules as urfave/cli v1 uses them (flags may follow positional args).
fn parse_build_flags(args: &[String]) -> Result<Flags, String> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            break;
        }
        let Some(stripped) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue; // a positional argument
        };
        if stripped.is_empty() {
            continue;
        }
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        let canonical = if name == "o" { "output" } else { name };
        if BOOL_FLAGS.contains(&name) {
            m.entry(canonical.to_string())
                .or_default()
                .push(inline.unwrap_or_else(|| "true".into()));
        } else if STRING_FLAGS.contains(&name) {
            let v = match inline {
                Some(v) => v,
                None => {
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                    i += 1;
                    v
                }
            };
            m.entry(canonical.to_string()).or_default().push(v);
        } else {
            return Err(format!("flag provided but not defined: -{name}"));
        }
    }
    Ok(Flags(m))
}

/// A simple command: its words (after `"$@"` expansion) and its `> file`.
#[derive(Debug, Clone, PartialEq)]
struct Command {
    words: Vec<String>,
    redirect: Option<String>,
}

/// Lists (split on `;` and newlines) of (operator before it, command); `None` when the script
/// uses syntax the simulator does not model.
fn parse_script(script: &str, positional: &[String]) -> Option<Vec<Vec<(String, Command)>>> {
    #[derive(Debug)]
    enum Tok {
        Word(Vec<String>),
        Op(String),
    }
    let mut toks = Vec::new();
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '\n' | ';' => {
                toks.push(Tok::Op(";".into()));
                i += 1;
            }
            '&' | '|' => {
                if chars.get(i + 1) == Some(&c) {
                    toks.push(Tok::Op(format!("{c}{c}")));
                    i += 2;
                } else {
                    return None; // background jobs and pipes are not modelled
                }
            }
            '>' => {
                if chars.get(i + 1) == Some(&'>') {
                    return None;
                }
                toks.push(Tok::Op(">".into()));
                i += 1;
            }
            _ => {
                // One word, possibly of several quoted parts; `"$@"` alone expands to the
                // positional parameters.
                let mut word = String::new();
                let mut expanded: Option<Vec<String>> = None;
                while i < chars.len() && !" \t\n;&|>".contains(chars[i]) {
                    match chars[i] {
                        '\'' => {
                            let end = chars[i + 1..].iter().position(|&x| x == '\'')? + i + 1;
                            word.extend(&chars[i + 1..end]);
                            i = end + 1;
                        }
                        '"' => {
                            let end = chars[i + 1..].iter().position(|&x| x == '"')? + i + 1;
                            let inner: String = chars[i + 1..end].iter().collect();
                            if inner == "$@" && word.is_empty() {
                                expanded = Some(positional.to_vec());
                            } else if inner.contains(['$', '`', '\\']) {
                                return None;
                            } else {
                                word.push_str(&inner);
                            }
                            i = end + 1;
                        }
                        ch if ch.is_ascii_alphanumeric() || "_./:=,@%+-".contains(ch) => {
                            word.push(ch);
                            i += 1;
                        }
                        _ => return None, // $VAR, globs, subshells, <, backticks...
                    }
                }
                match expanded {
                    Some(_) if !word.is_empty() => return None,
                    Some(p) => toks.push(Tok::Word(p)),
                    None => toks.push(Tok::Word(vec![word])),
                }
            }
        }
    }
    let mut lists = Vec::new();
    let mut list: Vec<(String, Command)> = Vec::new();
    let mut op = String::new();
    let mut cmd = Command {
        words: Vec::new(),
        redirect: None,
    };
    let mut want_redirect = false;
    let flush =
        |cmd: &mut Command, list: &mut Vec<(String, Command)>, op: &mut String| -> Option<()> {
            if cmd.words.is_empty() {
                return if op.is_empty() && cmd.redirect.is_none() {
                    Some(())
                } else {
                    None
                };
            }
            list.push((
                std::mem::take(op),
                std::mem::replace(
                    cmd,
                    Command {
                        words: Vec::new(),
                        redirect: None,
                    },
                ),
            ));
            Some(())
        };
    for t in toks {
        match t {
            Tok::Word(w) if want_redirect => {
                let [target] = w.as_slice() else { return None };
                cmd.redirect = Some(target.clone());
                want_redirect = false;
            }
            Tok::Word(w) => cmd.words.extend(w),
            Tok::Op(o) if o == ">" => {
                if want_redirect || cmd.redirect.is_some() {
                    return None;
                }
                want_redirect = true;
            }
            Tok::Op(_) if want_redirect => return None,
            Tok::Op(o) if o == ";" => {
                flush(&mut cmd, &mut list, &mut op)?;
                if !list.is_empty() {
                    lists.push(std::mem::take(&mut list));
                }
            }
            Tok::Op(o) => {
                if cmd.words.is_empty() {
                    return None;
                }
                flush(&mut cmd, &mut list, &mut op)?;
                op = o;
            }
        }
    }
    if want_redirect {
        return None;
    }
    if !op.is_empty() && cmd.words.is_empty() {
        return None;
    }
    flush(&mut cmd, &mut list, &mut op)?;
    if !list.is_empty() {
        lists.push(list);
    }
    Some(lists)
}

/// The kubelet's termination message (kubernetes `pkg/kubelet/kuberuntime`
/// `getTerminationMessage` and `readLastStringFromContainerLogs`): what the container wrote
/// to its `terminationMessagePath` (at most the last 4096 bytes); with `FallbackToLogsOnError`,
/// a failed container that wrote nothing gets its log's last 80 lines (at most 2048 bytes).
#[must_use]
pub fn termination_message(
    written: Option<&str>,
    policy: &str,
    exit_code: i32,
    log: &[String],
) -> Option<String> {
    let written = written.unwrap_or_default();
    if !written.is_empty() {
        return Some(tail_bytes(written, 4096).to_string());
    }
    if policy == "FallbackToLogsOnError" && exit_code != 0 && !log.is_empty() {
        let skip = log.len().saturating_sub(80);
        let text: String = log[skip..].iter().map(|l| format!("{l}\n")).collect();
        return Some(tail_bytes(&text, 2048).to_string());
    }
    None
}

fn tail_bytes(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Outcome;

    fn pod(command: Value, args: Value, extra: Value) -> PodInfo {
        let mut p = json!({
            "metadata": {"name": "b", "namespace": "ns",
                "annotations": {"container.apparmor.security.beta.kubernetes.io/buildkit": "unconfined"}},
            "spec": {"securityContext": {"runAsUser": 1000},
                "containers": [{"name": "buildkit", "image": "moby/buildkit:v0.23.2-rootless",
                    "command": command, "args": args,
                    "volumeMounts": [{"name": "meta", "mountPath": "/tmp/meta"},
                        {"name": "creds", "mountPath": "/home/user/.docker", "readOnly": true}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "FallbackToLogsOnError"}],
                "volumes": [{"name": "meta", "emptyDir": {}}, {"name": "creds", "secret": {"secretName": "s"}}]}
        });
        crate::patch::merge_patch(&mut p, &extra);
        PodInfo::from_pod(&p, 0)
    }

    fn args(meta: &str) -> Value {
        json!([
            "build",
            "--progress=plain",
            "--frontend=dockerfile.v0",
            "--opt",
            "context=https://github.com/org/app.git#0123",
            "--output",
            "type=image,name=r.local:5000/org/app:1,push=true",
            "--export-cache",
            "type=registry,ref=r.local:5000/org/app:buildcache,mode=max,ignore-error=true",
            format!("--metadata-file={meta}")
        ])
    }

    const WRAPPER: &str =
        "buildctl-daemonless.sh \"$@\" && cat /tmp/meta/metadata.json > /dev/termination-log";

    /// The model's run (scripts that do not call buildctl included: the small shell's rules).
    fn go(p: &PodInfo, fault: BuildFault) -> (i32, Vec<String>, Option<String>) {
        let s = model(p, &Delays::zero(), fault);
        let code = match s.outcome {
            Outcome::Exit { code } => code,
            other => panic!("{other:?}"),
        };
        (
            code,
            s.logs.into_iter().map(|l| l.text).collect(),
            s.termination_message,
        )
    }

    #[test]
    fn the_wrapper_writes_the_metadata_through_an_emptydir() {
        let p = pod(
            json!(["sh", "-c", WRAPPER, "slipway-build"]),
            args("/tmp/meta/metadata.json"),
            json!({}),
        );
        let (code, log, msg) = go(&p, BuildFault::None);
        assert_eq!(code, 0, "{log:?}");
        let meta: Value = serde_json::from_str(&msg.unwrap()).unwrap();
        assert!(
            meta["containerimage.digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(meta["image.name"], "r.local:5000/org/app:1");
    }

    #[test]
    fn metadata_straight_to_the_termination_log_fails_after_the_push() {
        let p = pod(
            json!(["buildctl-daemonless.sh"]),
            args("/dev/termination-log"),
            json!({}),
        );
        let (code, log, msg) = go(&p, BuildFault::None);
        assert_eq!(code, 1);
        assert!(
            log.iter().any(|l| l == "#7 pushing layers 1.2s done"),
            "{log:?}"
        );
        let last = log.last().unwrap();
        assert!(
            last.starts_with("error: open /dev/.tmp-termination-log")
                && last.ends_with(": permission denied"),
            "{last}"
        );
        assert_eq!(msg, None);
        // As root, the temp file is created but the rename over the bind mount fails.
        let root = pod(
            json!(["buildctl-daemonless.sh"]),
            args("/dev/termination-log"),
            json!({"spec": {"securityContext": {"runAsUser": 0}}}),
        );
        let (code, log, _) = go(&root, BuildFault::None);
        assert_eq!(code, 1);
        assert!(
            log.last()
                .unwrap()
                .ends_with("/dev/termination-log: device or resource busy"),
            "{log:?}"
        );
        // A read-only secret mount.
        let p = pod(
            json!(["buildctl-daemonless.sh"]),
            args("/home/user/.docker/m.json"),
            json!({}),
        );
        assert!(
            go(&p, BuildFault::None)
                .1
                .last()
                .unwrap()
                .ends_with("read-only file system")
        );
    }

    #[test]
    fn busybox_cp_cannot_overwrite_the_termination_log() {
        let script =
            "buildctl-daemonless.sh \"$@\" && cp /tmp/meta/metadata.json /dev/termination-log";
        let p = pod(
            json!(["sh", "-c", script, "x"]),
            args("/tmp/meta/metadata.json"),
            json!({}),
        );
        let (code, log, msg) = go(&p, BuildFault::None);
        assert_eq!(code, 1);
        assert_eq!(
            log.last().unwrap(),
            "cp: can't create '/dev/termination-log': File exists"
        );
        assert_eq!(msg, None);
    }

    #[test]
    fn unknown_flags_and_unreadable_scripts_fail_loudly() {
        let mut a = args("/tmp/meta/metadata.json");
        a.as_array_mut().unwrap().push(json!("--bogus"));
        let p = pod(json!(["buildctl-daemonless.sh"]), a, json!({}));
        let (code, log, _) = go(&p, BuildFault::None);
        assert_eq!(code, 1);
        assert_eq!(
            log[0],
            "Incorrect Usage: flag provided but not defined: -bogus"
        );
        assert_eq!(
            log.last().unwrap(),
            "error: flag provided but not defined: -bogus"
        );
        for script in [
            "buildctl-daemonless.sh $@",
            "buildctl-daemonless.sh \"$@\" | tee x",
            "x=$(id)",
            "cat a >> b",
        ] {
            let p = pod(
                json!(["sh", "-c", script, "x"]),
                args("/tmp/meta/metadata.json"),
                json!({}),
            );
            assert_eq!(go(&p, BuildFault::None).0, 2, "{script}");
        }
        let p = pod(
            json!(["sh", "-c", "nosuch \"$@\"", "x"]),
            args("/tmp/meta/metadata.json"),
            json!({}),
        );
        let (code, log, _) = go(&p, BuildFault::None);
        assert_eq!((code, log[0].as_str()), (127, "x: nosuch: not found"));
    }

    #[test]
    fn cache_export_errors_fail_the_build_unless_ignored() {
        let p = pod(
            json!(["sh", "-c", WRAPPER, "x"]),
            args("/tmp/meta/metadata.json"),
            json!({}),
        );
        let (code, log, msg) = go(&p, BuildFault::CacheExportFails);
        assert_eq!(code, 0, "{log:?}");
        assert!(
            log.iter()
                .any(|l| l.contains("ERROR: unexpected status from PUT request"))
        );
        assert!(msg.is_some());
        let mut a = args("/tmp/meta/metadata.json");
        a[8] = json!("type=registry,ref=r.local:5000/org/app:buildcache,mode=max");
        let p = pod(json!(["sh", "-c", WRAPPER, "x"]), a, json!({}));
        let (code, log, msg) = go(&p, BuildFault::CacheExportFails);
        assert_eq!(code, 1);
        assert!(log.last().unwrap().starts_with("error: failed to solve: unexpected status from PUT request to https://r.local:5000/v2/org/app/manifests/buildcache: 503"));
        assert_eq!(msg, None);
    }

    #[test]
    fn a_confined_container_cannot_start_buildkitd() {
        let p = pod(
            json!(["sh", "-c", WRAPPER, "x"]),
            args("/tmp/meta/metadata.json"),
            json!({"metadata": {"annotations": null}}),
        );
        let (code, log, _) = go(&p, BuildFault::None);
        assert_eq!(code, 1);
        assert_eq!(
            log[0],
            "could not connect to unix:///run/user/1000/buildkit/buildkitd.sock after 10 trials"
        );
        assert!(log[2].contains("failed to share mount point: /: permission denied"));
        // The 1.30 field alone does it too.
        let p = pod(
            json!(["sh", "-c", WRAPPER, "x"]),
            args("/tmp/meta/metadata.json"),
            json!({"metadata": {"annotations": null},
                "spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}}),
        );
        assert_eq!(go(&p, BuildFault::None).0, 0);
    }

    /// A build pod per CONTRACT §2: the Dockerfile in an annotation, projected by a
    /// downwardAPI volume at /run/slipway/dockerfile and given to buildctl as a local.
    fn local_dockerfile_pod(dockerfile: Option<&str>, extra_args: &[&str]) -> PodInfo {
        let mut a = args("/tmp/meta/metadata.json");
        let list = a.as_array_mut().unwrap();
        for x in extra_args {
            list.insert(list.len() - 1, json!(x));
        }
        let p = pod(json!(["sh", "-c", WRAPPER, "slipway-build"]), a, json!({}));
        let mut o = p.object;
        if let Some(d) = dockerfile {
            o["metadata"]["annotations"]["slipway.dev/dockerfile"] = json!(d);
        }
        o["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "dockerfile",
            "downwardAPI": {"items": [{"path": "Dockerfile",
                "fieldRef": {"fieldPath": "metadata.annotations['slipway.dev/dockerfile']"}}]}}));
        o["spec"]["containers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "dockerfile", "mountPath": "/run/slipway/dockerfile", "readOnly": true}));
        PodInfo::from_pod(&o, 0)
    }

    const LOCAL: [&str; 6] = [
        "--opt",
        "filename=Dockerfile",
        "--opt",
        "dockerfilekey=dockerfile",
        "--local",
        "dockerfile=/run/slipway/dockerfile",
    ];

    #[test]
    fn a_dockerfile_from_a_downward_api_local_prints_its_own_steps() {
        let dockerfile = "FROM node:22-slim\nCOPY . .\nRUN npm ci\nCMD [\"node\", \"index.js\"]\n";
        let p = local_dockerfile_pod(Some(dockerfile), &LOCAL);
        let (code, log, msg) = go(&p, BuildFault::None);
        assert_eq!(code, 0, "{log:#?}");
        let node = "docker.io/library/node:22-slim";
        let digest = crate::dockerfile::image_digest(node);
        assert_eq!(
            log[..12],
            [
                "#1 [internal] load build definition from Dockerfile".to_string(),
                format!("#1 transferring dockerfile: {}B done", dockerfile.len()),
                "#1 DONE 0.0s".into(),
                format!("#2 [internal] load metadata for {node}"),
                "#2 DONE 0.8s".into(),
                format!("#3 [1/3] FROM {node}@{digest}"),
                format!("#3 resolve {node}@{digest} done"),
                "#3 DONE 0.1s".into(),
                "#4 [internal] load git source https://github.com/org/app.git#0123".into(),
                "#4 DONE 0.9s".into(),
                "#5 [2/3] COPY . .".into(),
                "#5 DONE 0.2s".into(),
            ],
            "{log:#?}"
        );
        assert_eq!(log[12], "#6 [3/3] RUN npm ci");
        assert_eq!(log[14], "#7 exporting to image");
        assert!(msg.unwrap().contains("containerimage.digest"));

        // The user's RUN step failing.
        let (code, log, _) = go(&p, BuildFault::RunStepFails);
        assert_eq!(code, 1);
        assert!(
            log.contains(&" > [3/3] RUN npm ci:".to_string()),
            "{log:#?}"
        );
        assert!(
            log.contains(&"   3 | >>> RUN npm ci".to_string()),
            "{log:#?}"
        );
        assert_eq!(
            log.last().unwrap(),
            "error: failed to solve: process \"/bin/sh -c npm ci\" did not complete successfully: exit code: 1"
        );
    }

    #[test]
    fn local_dockerfiles_fail_as_buildkit_does() {
        let last = |p: &PodInfo| {
            let (code, log, _) = go(p, BuildFault::None);
            assert_eq!(code, 1, "{log:#?}");
            log.last().unwrap().clone()
        };
        // dockerfilekey naming a local buildctl was not given.
        let p = local_dockerfile_pod(Some("FROM a\n"), &LOCAL[..4]);
        let (_, log, _) = go(&p, BuildFault::None);
        assert_eq!(log[1], "#1 ERROR: no access allowed to dir \"dockerfile\"");
        assert_eq!(
            last(&p),
            "error: failed to solve: failed to resolve dockerfile: no access allowed to dir \"dockerfile\""
        );
        // An absent annotation projects an empty file.
        assert_eq!(
            last(&local_dockerfile_pod(None, &LOCAL)),
            "error: failed to solve: the Dockerfile cannot be empty"
        );
        assert_eq!(
            last(&local_dockerfile_pod(Some("# nothing\n"), &LOCAL)),
            "error: failed to solve: file with no instructions"
        );
        // Another filename than the projected one.
        let mut other = LOCAL;
        other[1] = "filename=Containerfile";
        assert!(
            last(&local_dockerfile_pod(Some("FROM a\n"), &other))
                .starts_with("error: failed to solve: failed to read dockerfile: open ")
        );
        // buildctl's own checks of --local.
        let mut bad = LOCAL;
        bad[5] = "dockerfile";
        assert_eq!(
            last(&local_dockerfile_pod(Some("FROM a\n"), &bad)),
            "error: invalid local: invalid value dockerfile"
        );
        bad[5] = "dockerfile=/run/slipway/nope";
        assert_eq!(
            last(&local_dockerfile_pod(Some("FROM a\n"), &bad)),
            "error: invalid local: resolve : lstat /run/slipway/nope: no such file or directory"
        );
        bad[5] = "dockerfile=/run/slipway/dockerfile/Dockerfile";
        assert_eq!(
            last(&local_dockerfile_pod(Some("FROM a\n"), &bad)),
            "error: invalid local: stat /run/slipway/dockerfile/Dockerfile: not a directory"
        );
        // An unknown instruction.
        assert_eq!(
            last(&local_dockerfile_pod(Some("FROM a\nRUNN x\n"), &LOCAL)),
            "error: failed to solve: dockerfile parse error on line 2: unknown instruction: RUNN"
        );
    }

    #[test]
    fn env_values_expand_against_the_variables_defined_before_them() {
        let c = json!({"env": [
            {"name": "URL_EARLY", "value": "redis://:$(PW)@h"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "URL", "value": "redis://:$(PW)@h"},
            {"name": "LITERAL", "value": "a$$b"},
            {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}},
        ]});
        let env = container_env(&c, |n, k| {
            (n == "s" && k == "pw").then(|| "p$(X)".to_owned())
        });
        assert_eq!(
            env,
            [
                ("URL_EARLY".to_owned(), "redis://:$(PW)@h".to_owned()),
                ("PW".to_owned(), "p$(X)".to_owned()),
                ("URL".to_owned(), "redis://:p$(X)@h".to_owned()),
                ("LITERAL".to_owned(), "a$b".to_owned()),
            ]
        );
    }

    #[test]
    fn the_kubelet_expands_variables_in_args() {
        let env = BTreeMap::from([("HOME".to_string(), "/home/user".to_string())]);
        for (input, expanded) in [
            ("$(HOME)/x", "/home/user/x"),
            ("$$(HOME)", "$(HOME)"),
            ("pa$$word", "pa$word"),
            ("$(NOPE) $x $", "$(NOPE) $x $"),
            ("$(HOME", "$(HOME"),
            ("\"$@\"", "\"$@\""),
        ] {
            assert_eq!(kubelet_expand(input, &env), expanded, "{input}");
        }
    }

    #[test]
    fn the_kubelet_falls_back_to_the_log_tail_only_on_failure() {
        let log: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        assert_eq!(
            termination_message(Some("m"), "FallbackToLogsOnError", 1, &log).as_deref(),
            Some("m")
        );
        assert_eq!(
            termination_message(None, "FallbackToLogsOnError", 0, &log),
            None
        );
        assert_eq!(termination_message(None, "File", 1, &log), None);
        let m = termination_message(Some(""), "FallbackToLogsOnError", 1, &log).unwrap();
        assert!(
            m.starts_with("line 20\n") && m.ends_with("line 99\n"),
            "{m}"
        );
        let long: Vec<String> = (0..80).map(|i| format!("{i:0>50}")).collect();
        assert_eq!(
            termination_message(None, "FallbackToLogsOnError", 1, &long)
                .unwrap()
                .len(),
            2048
        );
        assert_eq!(
            termination_message(Some(&"x".repeat(5000)), "File", 0, &[])
                .unwrap()
                .len(),
            4096
        );
    }
}
