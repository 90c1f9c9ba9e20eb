//! Zero-config builds (`source: {"type": "auto"}`): which stack a repository is, from the
//! names at its build context's top level and the contents of a few manifest files, and the
//! Dockerfile Slipway generates for it.
//!
//! The build worker reads the repository at the build's exact commit (the source Job,
//! `slipway_k8s::source`) and hands this module a [`Snapshot`]; nothing here does IO. The
//! detection order is fixed and the first match wins:
//!
//! 1. a `Dockerfile`: the repository's own, built as it is;
//! 2. `package.json`: Node.js (Next.js when it depends on `next`);
//! 3. `requirements.txt` or `pyproject.toml`: Python;
//! 4. `go.mod`: Go;
//! 5. `Cargo.toml`: Rust;
//! 6. `Gemfile`: Ruby (Rails when it names `rails`, Rack with a `config.ru`);
//! 7. `index.html`: a static site served by nginx.
//!
//! A `Procfile`'s `web:` line, when there is one, is the start command of any stack (Heroku's
//! convention). Every generated Dockerfile pins its base images to exact versions, runs the
//! application as a numeric non-root user (the kubelet can only verify `runAsNonRoot` for a
//! numeric `USER`), sets `PORT` to the preview's port and starts the detected command. Build
//! arguments are declared (`ARG`) in the stage that builds, so values such as
//! `NEXT_PUBLIC_*` reach the build commands.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The files whose contents detection reads (relative to the build context); the source Job
/// fetches those that exist. Presence of anything else is read from the top-level listing.
pub const WANTED_FILES: &[&str] = &[
    "package.json",
    "requirements.txt",
    "pyproject.toml",
    "Procfile",
    "go.mod",
    "Cargo.toml",
    "Gemfile",
];

/// What detection looked for, for the error of a repository that matches nothing.
pub const LOOKED_FOR: &str = "Dockerfile, package.json (Node.js, Next.js), requirements.txt or \
     pyproject.toml (Python), go.mod (Go), Cargo.toml (Rust), Gemfile (Ruby, Rails), index.html \
     (static site)";

/// Base images of the generated Dockerfiles, pinned to exact versions.
pub mod images {
    pub const NODE: &str = "docker.io/library/node:22.11.0-bookworm-slim";
    pub const PYTHON: &str = "docker.io/library/python:3.12.7-slim-bookworm";
    pub const GO: &str = "docker.io/library/golang:1.23.3-bookworm";
    pub const RUST: &str = "docker.io/library/rust:1.82.0-slim-bookworm";
    pub const RUBY: &str = "docker.io/library/ruby:3.3.6-bookworm";
    pub const NGINX: &str = "docker.io/nginxinc/nginx-unprivileged:1.27.2-alpine";
    /// Runtime of Go binaries (static, no libc); user 65532 is `nonroot`.
    pub const DISTROLESS_STATIC: &str = "gcr.io/distroless/static-debian12:nonroot";
    /// Runtime of Rust binaries (glibc); user 65532 is `nonroot`.
    pub const DISTROLESS_CC: &str = "gcr.io/distroless/cc-debian12:nonroot";
}

/// One entry at the top level of the build context, as git lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `blob`, `tree` or `commit` (a submodule).
    pub kind: String,
    pub name: String,
}

/// The repository as detection sees it: the context directory's top-level entries and the
/// contents of the [`WANTED_FILES`] that exist there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub commit: String,
    pub entries: Vec<Entry>,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Wanted files that exist but were too large to read.
    pub too_large: Vec<String>,
}

impl Snapshot {
    fn has_file(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.kind == "blob" && e.name == name)
    }
    fn has_dir(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.kind == "tree" && e.name == name)
    }
    fn text(&self, name: &str) -> Option<String> {
        self.files
            .get(name)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// The detected stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// The repository has its own Dockerfile: built as it is, nothing generated.
    Dockerfile,
    Node,
    NextJs,
    Python,
    Go,
    Rust,
    Ruby,
    Rails,
    Static,
}

impl Stack {
    pub fn label(self) -> &'static str {
        match self {
            Stack::Dockerfile => "the repository's Dockerfile",
            Stack::Node => "Node.js",
            Stack::NextJs => "Node.js (Next.js)",
            Stack::Python => "Python",
            Stack::Go => "Go",
            Stack::Rust => "Rust",
            Stack::Ruby => "Ruby",
            Stack::Rails => "Ruby on Rails",
            Stack::Static => "static site",
        }
    }
}

/// What to build: the stack, why it was chosen (for the build log), and the generated
/// Dockerfile (`None` for the repository's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub stack: Stack,
    pub reasons: Vec<String>,
    pub start: Option<String>,
    pub dockerfile: Option<String>,
}

/// Why no plan could be made. Permanent: the same commit always gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("no supported stack found in {dir}: looked for {LOOKED_FOR}")]
    NothingFound { dir: String },
    #[error("{stack}: {why}")]
    Incomplete { stack: &'static str, why: String },
}

/// What the generated Dockerfile needs besides the repository: the port the preview serves
/// on (its `PORT`) and the build arguments to declare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs<'a> {
    pub port: u16,
    pub build_args: Vec<&'a str>,
    /// The context directory, for messages (`.` for the root).
    pub dir: &'a str,
}

/// Detect the stack of `snap` and plan its build.
pub fn plan(snap: &Snapshot, inputs: &Inputs<'_>) -> Result<Plan, DetectError> {
    let procfile = snap.text("Procfile").and_then(|p| procfile_web(&p));
    let mut reasons = Vec::new();
    if snap.has_file("Dockerfile") {
        reasons.push("the context has a Dockerfile; it is built as it is".to_owned());
        return Ok(Plan {
            stack: Stack::Dockerfile,
            reasons,
            start: None,
            dockerfile: None,
        });
    }
    let (stack, start, body) = if snap.has_file("package.json") {
        node(snap, &mut reasons)?
    } else if snap.has_file("requirements.txt") || snap.has_file("pyproject.toml") {
        python(snap, procfile.is_some(), &mut reasons)?
    } else if snap.has_file("go.mod") {
        go(snap, &mut reasons)?
    } else if snap.has_file("Cargo.toml") {
        rust(snap, &mut reasons)?
    } else if snap.has_file("Gemfile") {
        ruby(snap, procfile.is_some(), &mut reasons)?
    } else if snap.has_file("index.html") {
        reasons.push("index.html at the top level: a static site served by nginx".to_owned());
        (Stack::Static, None, static_site(inputs.port))
    } else {
        return Err(DetectError::NothingFound {
            dir: if inputs.dir.is_empty() || inputs.dir == "." {
                "the repository's top level".to_owned()
            } else {
                format!("directory {:?}", inputs.dir)
            },
        });
    };
    let start = match (procfile, stack) {
        // Static sites are nginx's; Go and Rust binaries run on distroless images, which have
        // no shell to run a Procfile command with.
        (Some(_), Stack::Static | Stack::Go | Stack::Rust) => {
            reasons.push(format!(
                "the Procfile is not used: the {} image runs the built program itself",
                stack.label()
            ));
            start
        }
        (Some(web), _) => {
            reasons.push("the Procfile's web command starts it".to_owned());
            Some(Start::Shell(web))
        }
        (None, _) => start,
    };
    let dockerfile = render(stack, &body, start.as_ref(), inputs);
    Ok(Plan {
        stack,
        reasons,
        start: start.map(|s| s.shown()),
        dockerfile: Some(dockerfile),
    })
}

/// How the container starts: an exec form, or a shell command (for `$PORT` and Procfiles).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    Exec(Vec<String>),
    Shell(String),
}

impl Start {
    fn exec(words: &[&str]) -> Start {
        Start::Exec(words.iter().map(|w| (*w).to_owned()).collect())
    }
    fn shown(&self) -> String {
        match self {
            Start::Exec(w) => w.join(" "),
            Start::Shell(s) => s.clone(),
        }
    }
    fn cmd(&self) -> String {
        let words = match self {
            Start::Exec(w) => w.clone(),
            Start::Shell(s) => vec!["/bin/sh".to_owned(), "-c".to_owned(), s.clone()],
        };
        let quoted: Vec<String> = words
            .iter()
            .map(|w| serde_json::to_string(w).unwrap_or_default())
            .collect();
        format!("CMD [{}]", quoted.join(", "))
    }
}

/// The stage-specific lines of a Dockerfile: `build` runs with the build arguments declared;
/// `runtime` follows (the final image).
struct Body {
    build: Vec<String>,
    runtime: Vec<String>,
    user: &'static str,
}

fn render(stack: Stack, body: &Body, start: Option<&Start>, inputs: &Inputs<'_>) -> String {
    let mut out = format!(
        "# Generated by Slipway (source \"auto\"): {}.\n",
        stack.label()
    );
    for line in &body.build {
        if line == "@ARGS" {
            for arg in &inputs.build_args {
                let _ = writeln!(out, "ARG {arg}");
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for line in &body.runtime {
        out.push_str(line);
        out.push('\n');
    }
    let _ = writeln!(out, "ENV PORT={}", inputs.port);
    let _ = writeln!(out, "EXPOSE {}", inputs.port);
    let _ = writeln!(out, "USER {}", body.user);
    if let Some(start) = start {
        out.push_str(&start.cmd());
        out.push('\n');
    }
    out
}

/// The command of a Procfile's `web:` process.
fn procfile_web(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (name, cmd) = l.split_once(':')?;
        (name.trim() == "web" && !cmd.trim().is_empty()).then(|| cmd.trim().to_owned())
    })
}

type Detected = (Stack, Option<Start>, Body);

fn node(snap: &Snapshot, reasons: &mut Vec<String>) -> Result<Detected, DetectError> {
    let stack_err = |why: &str| DetectError::Incomplete {
        stack: "Node.js",
        why: why.to_owned(),
    };
    let text = snap
        .text("package.json")
        .ok_or_else(|| stack_err("package.json is too large to read"))?;
    let pkg: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| stack_err(&format!("package.json is not valid JSON: {e}")))?;
    let depends = |name: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|k| pkg[k].get(name).is_some())
    };
    let script = |name: &str| pkg["scripts"][name].as_str().is_some();
    let next = depends("next");
    reasons.push(if next {
        "package.json depends on \"next\": a Next.js application".to_owned()
    } else {
        "package.json at the top level: a Node.js application".to_owned()
    });
    // corepack's shims go to a directory the non-root user may write.
    let corepack = "corepack enable --install-directory /tmp/corepack && PATH=/tmp/corepack:$PATH";
    let (manifests, tool) = if snap.has_file("package-lock.json") {
        ("package.json package-lock.json", "npm ci")
    } else if snap.has_file("pnpm-lock.yaml") {
        (
            "package.json pnpm-lock.yaml",
            "pnpm install --frozen-lockfile",
        )
    } else if snap.has_file("yarn.lock") {
        ("package.json yarn.lock", "yarn install --frozen-lockfile")
    } else {
        ("package.json", "npm install")
    };
    let install = if tool.starts_with("npm") {
        tool.to_owned()
    } else {
        format!("{corepack} {tool}")
    };
    reasons.push(format!("dependencies installed with `{tool}`"));
    let start = if script("start") {
        Start::exec(&["npm", "run", "start"])
    } else if next {
        Start::exec(&["npx", "next", "start"])
    } else if let Some(main) = pkg["main"].as_str().filter(|m| !m.trim().is_empty()) {
        Start::Exec(vec!["node".into(), main.to_owned()])
    } else if let Some(f) = ["server.js", "index.js", "app.js"]
        .iter()
        .find(|f| snap.has_file(f))
    {
        Start::exec(&["node", f])
    } else {
        return Err(stack_err(
            "package.json has no \"start\" script and no \"main\", and there is no server.js, \
             index.js or app.js: add a start script",
        ));
    };
    reasons.push(format!("started with `{}`", start.shown()));
    let mut build = vec![
        format!("FROM {}", images::NODE),
        "WORKDIR /app".to_owned(),
        "RUN chown 1000:1000 /app".to_owned(),
        "USER 1000:1000".to_owned(),
        format!("COPY --chown=1000:1000 {manifests} ./"),
        format!("RUN {install}"),
        "COPY --chown=1000:1000 . .".to_owned(),
        "@ARGS".to_owned(),
    ];
    if script("build") {
        reasons.push("the \"build\" script runs at build time".to_owned());
        build.push("RUN npm run build".to_owned());
    }
    let runtime = vec!["ENV NODE_ENV=production".to_owned()];
    Ok((
        if next { Stack::NextJs } else { Stack::Node },
        Some(start),
        Body {
            build,
            runtime,
            user: "1000:1000",
        },
    ))
}

/// Whether a Python requirements text or pyproject names `package` as a dependency.
fn python_dep(text: &str, package: &str) -> bool {
    text.lines().any(|l| {
        let l = l
            .trim()
            .trim_start_matches(['"', '\''])
            .to_ascii_lowercase();
        l.strip_prefix(package).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with(['=', '<', '>', '!', '~', '[', ' ', ';', '"', '\''])
        })
    })
}

fn python(
    snap: &Snapshot,
    has_procfile: bool,
    reasons: &mut Vec<String>,
) -> Result<Detected, DetectError> {
    let (manifest, install) = if snap.has_file("requirements.txt") {
        (
            "requirements.txt",
            "pip install --no-cache-dir -r requirements.txt",
        )
    } else {
        ("pyproject.toml", "pip install --no-cache-dir .")
    };
    reasons.push(format!("{manifest} at the top level: a Python application"));
    let deps = snap.text(manifest).unwrap_or_default();
    let module = ["main.py", "app.py", "wsgi.py"]
        .into_iter()
        .find(|f| snap.has_file(f))
        .map(|f| f.trim_end_matches(".py"));
    let start = if has_procfile {
        None
    } else if let (true, Some(m)) = (
        python_dep(&deps, "uvicorn") || python_dep(&deps, "fastapi"),
        module,
    ) {
        reasons.push(format!(
            "it depends on uvicorn or fastapi: `{m}:app` served by uvicorn"
        ));
        Some(Start::Shell(format!(
            "exec uvicorn {m}:app --host 0.0.0.0 --port \"$PORT\""
        )))
    } else if let (true, Some(m)) = (python_dep(&deps, "gunicorn"), module) {
        reasons.push(format!(
            "it depends on gunicorn: `{m}:app` served by gunicorn"
        ));
        Some(Start::Shell(format!(
            "exec gunicorn --bind \"0.0.0.0:$PORT\" {m}:app"
        )))
    } else if snap.has_file("manage.py") {
        reasons.push("manage.py: a Django project, served by its runserver".to_owned());
        Some(Start::Shell(
            "exec python manage.py runserver \"0.0.0.0:$PORT\"".to_owned(),
        ))
    } else if let Some(f) = ["app.py", "main.py"].into_iter().find(|f| snap.has_file(f)) {
        reasons.push(format!(
            "{f} runs as the program (it should listen on $PORT)"
        ));
        Some(Start::exec(&["python", f]))
    } else {
        return Err(DetectError::Incomplete {
            stack: "Python",
            why: "no start command: add a Procfile with a `web:` line, or a main.py or app.py"
                .to_owned(),
        });
    };
    let copy = if manifest == "requirements.txt" {
        vec![
            "COPY --chown=10001:10001 requirements.txt ./".to_owned(),
            format!("RUN {install}"),
            "COPY --chown=10001:10001 . .".to_owned(),
        ]
    } else {
        vec![
            "COPY --chown=10001:10001 . .".to_owned(),
            format!("RUN {install}"),
        ]
    };
    let mut build = vec![
        format!("FROM {}", images::PYTHON),
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/home/app/.local/bin:$PATH".to_owned(),
        "RUN useradd --uid 10001 --create-home app && mkdir /app && chown 10001:10001 /app".to_owned(),
        "WORKDIR /app".to_owned(),
        "USER 10001:10001".to_owned(),
        "@ARGS".to_owned(),
    ];
    build.extend(copy);
    Ok((
        Stack::Python,
        start,
        Body {
            build,
            runtime: Vec::new(),
            user: "10001:10001",
        },
    ))
}

fn go(snap: &Snapshot, reasons: &mut Vec<String>) -> Result<Detected, DetectError> {
    reasons.push("go.mod at the top level: a Go module".to_owned());
    let package = if snap
        .entries
        .iter()
        .any(|e| e.kind == "blob" && e.name.ends_with(".go"))
    {
        "."
    } else if snap.has_dir("cmd") {
        return Err(DetectError::Incomplete {
            stack: "Go",
            why: "no Go files at the top level; set build.context to the main package's \
                  directory, or add a Dockerfile"
                .to_owned(),
        });
    } else {
        return Err(DetectError::Incomplete {
            stack: "Go",
            why: "no Go files at the top level".to_owned(),
        });
    };
    reasons.push("the top-level package is built as a static binary".to_owned());
    let build = vec![
        format!("FROM {} AS build", images::GO),
        "WORKDIR /src".to_owned(),
        "COPY . .".to_owned(),
        "@ARGS".to_owned(),
        format!("RUN CGO_ENABLED=0 go build -trimpath -o /out/app {package}"),
        format!("FROM {}", images::DISTROLESS_STATIC),
    ];
    let runtime = vec!["COPY --from=build /out/app /app".to_owned()];
    Ok((
        Stack::Go,
        Some(Start::exec(&["/app"])),
        Body {
            build,
            runtime,
            user: "65532:65532",
        },
    ))
}

/// The string value of `key = "..."` in the `[section]` of a TOML text (first match).
fn toml_string(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            current = line.trim_matches(['[', ']']).trim().to_owned();
            continue;
        }
        if current != section {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            let v = v.trim();
            let v = v.strip_prefix('"')?;
            return v.split_once('"').map(|(s, _)| s.to_owned());
        }
    }
    None
}

/// A Cargo package or binary name that is safe in a path and a shell word.
fn cargo_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn rust(snap: &Snapshot, reasons: &mut Vec<String>) -> Result<Detected, DetectError> {
    let err = |why: &str| DetectError::Incomplete {
        stack: "Rust",
        why: why.to_owned(),
    };
    let text = snap
        .text("Cargo.toml")
        .ok_or_else(|| err("Cargo.toml is too large to read"))?;
    let name = toml_string(&text, "bin", "name")
        .or_else(|| toml_string(&text, "package", "name"))
        .ok_or_else(|| {
            err(
                "Cargo.toml has no [package] name (a workspace?): set build.context to the \
                 binary's crate, or add a Dockerfile",
            )
        })?;
    if !cargo_name(&name) {
        return Err(err("the package name is not a plain Cargo name"));
    }
    reasons.push(format!(
        "Cargo.toml at the top level: the Rust binary {name:?}"
    ));
    let locked = if snap.has_file("Cargo.lock") {
        " --locked"
    } else {
        ""
    };
    let build = vec![
        format!("FROM {} AS build", images::RUST),
        "WORKDIR /src".to_owned(),
        "COPY . .".to_owned(),
        "@ARGS".to_owned(),
        format!("RUN cargo build --release{locked} --bin {name} && cp target/release/{name} /app"),
        format!("FROM {}", images::DISTROLESS_CC),
    ];
    let runtime = vec!["COPY --from=build /app /app".to_owned()];
    Ok((
        Stack::Rust,
        Some(Start::exec(&["/app"])),
        Body {
            build,
            runtime,
            user: "65532:65532",
        },
    ))
}

fn ruby(
    snap: &Snapshot,
    has_procfile: bool,
    reasons: &mut Vec<String>,
) -> Result<Detected, DetectError> {
    let gemfile = snap.text("Gemfile").unwrap_or_default();
    let rails = gemfile.lines().any(|l| {
        let l = l.trim();
        l.starts_with("gem \"rails\"") || l.starts_with("gem 'rails'")
    });
    reasons.push(if rails {
        "the Gemfile names rails: a Rails application".to_owned()
    } else {
        "Gemfile at the top level: a Ruby application".to_owned()
    });
    let start = if has_procfile {
        None
    } else if rails {
        Some(Start::Shell(
            "exec bundle exec rails server -b 0.0.0.0 -p \"$PORT\"".to_owned(),
        ))
    } else if snap.has_file("config.ru") {
        reasons.push("config.ru: a Rack application, served by rackup".to_owned());
        Some(Start::Shell(
            "exec bundle exec rackup --host 0.0.0.0 --port \"$PORT\"".to_owned(),
        ))
    } else {
        return Err(DetectError::Incomplete {
            stack: "Ruby",
            why: "no start command: add a Procfile with a `web:` line, or a config.ru".to_owned(),
        });
    };
    let manifests = if snap.has_file("Gemfile.lock") {
        "Gemfile Gemfile.lock"
    } else {
        "Gemfile"
    };
    let mut build = vec![
        format!("FROM {}", images::RUBY),
        "ENV BUNDLE_WITHOUT=development:test BUNDLE_PATH=/usr/local/bundle".to_owned(),
        "RUN useradd --uid 10001 --create-home app && mkdir /app && chown 10001:10001 /app /usr/local/bundle".to_owned(),
        "WORKDIR /app".to_owned(),
        "USER 10001:10001".to_owned(),
        format!("COPY --chown=10001:10001 {manifests} ./"),
        "RUN bundle install".to_owned(),
        "COPY --chown=10001:10001 . .".to_owned(),
        "@ARGS".to_owned(),
    ];
    if rails {
        build.push(
            "ENV RAILS_ENV=production RAILS_LOG_TO_STDOUT=1 RAILS_SERVE_STATIC_FILES=1".to_owned(),
        );
    }
    Ok((
        if rails { Stack::Rails } else { Stack::Ruby },
        start,
        Body {
            build,
            runtime: Vec::new(),
            user: "10001:10001",
        },
    ))
}

/// nginx (unprivileged image, user 101) serving the context, listening on the preview's port.
fn static_site(port: u16) -> Body {
    let conf = format!(
        "server {{\\n  listen {port};\\n  root /usr/share/nginx/html;\\n  location / {{ try_files $uri $uri/ =404; }}\\n}}\\n"
    );
    Body {
        build: vec![
            format!("FROM {}", images::NGINX),
            "USER 0:0".to_owned(),
            format!("RUN printf '{conf}' > /etc/nginx/conf.d/default.conf"),
            "COPY --chown=101:101 . /usr/share/nginx/html".to_owned(),
        ],
        runtime: Vec::new(),
        user: "101:101",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(entries: &[(&str, &str)], files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            commit: "a".repeat(40),
            entries: entries
                .iter()
                .map(|(k, n)| Entry {
                    kind: (*k).into(),
                    name: (*n).into(),
                })
                .collect(),
            files: files
                .iter()
                .map(|(n, t)| ((*n).to_owned(), t.as_bytes().to_vec()))
                .collect(),
            too_large: Vec::new(),
        }
    }

    fn inputs() -> Inputs<'static> {
        Inputs {
            port: 8080,
            build_args: Vec::new(),
            dir: "",
        }
    }

    #[test]
    fn a_repository_dockerfile_wins() {
        let s = snap(
            &[("blob", "Dockerfile"), ("blob", "package.json")],
            &[("package.json", "{}")],
        );
        let p = plan(&s, &inputs()).unwrap();
        assert_eq!(p.stack, Stack::Dockerfile);
        assert_eq!(p.dockerfile, None);
    }

    #[test]
    fn next_js_with_a_lockfile_is_pinned_non_root_and_listens_on_the_port() {
        let s = snap(
            &[
                ("blob", "package.json"),
                ("blob", "package-lock.json"),
                ("tree", "pages"),
            ],
            &[(
                "package.json",
                r#"{"scripts": {"build": "next build", "start": "next start"},
                    "dependencies": {"next": "15.0.0", "react": "19.0.0"}}"#,
            )],
        );
        let mut i = inputs();
        i.port = 3000;
        i.build_args = vec!["NEXT_PUBLIC_API"];
        let p = plan(&s, &i).unwrap();
        assert_eq!(p.stack, Stack::NextJs);
        assert_eq!(
            p.dockerfile.unwrap(),
            "# Generated by Slipway (source \"auto\"): Node.js (Next.js).\n\
             FROM docker.io/library/node:22.11.0-bookworm-slim\n\
             WORKDIR /app\n\
             RUN chown 1000:1000 /app\n\
             USER 1000:1000\n\
             COPY --chown=1000:1000 package.json package-lock.json ./\n\
             RUN npm ci\n\
             COPY --chown=1000:1000 . .\n\
             ARG NEXT_PUBLIC_API\n\
             RUN npm run build\n\
             ENV NODE_ENV=production\n\
             ENV PORT=3000\n\
             EXPOSE 3000\n\
             USER 1000:1000\n\
             CMD [\"npm\", \"run\", \"start\"]\n"
        );
        assert!(p.reasons[0].contains("\"next\""), "{:?}", p.reasons);
        assert!(p.reasons.iter().any(|r| r.contains("npm ci")));
    }

    #[test]
    fn node_falls_back_to_main_then_server_js_and_otherwise_says_what_is_missing() {
        let main = snap(
            &[("blob", "package.json")],
            &[("package.json", r#"{"main": "srv/index.js"}"#)],
        );
        let p = plan(&main, &inputs()).unwrap();
        assert_eq!(p.start.as_deref(), Some("node srv/index.js"));
        assert!(p.dockerfile.unwrap().contains("RUN npm install\n"));
        let server = snap(
            &[("blob", "package.json"), ("blob", "server.js")],
            &[("package.json", "{}")],
        );
        assert_eq!(
            plan(&server, &inputs()).unwrap().start.as_deref(),
            Some("node server.js")
        );
        let none = snap(&[("blob", "package.json")], &[("package.json", "{}")]);
        let e = plan(&none, &inputs()).unwrap_err().to_string();
        assert!(
            e.starts_with("Node.js: package.json has no \"start\" script"),
            "{e}"
        );
        let bad = snap(&[("blob", "package.json")], &[("package.json", "{")]);
        assert!(
            plan(&bad, &inputs())
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn python_frameworks_pick_their_servers() {
        let fastapi = snap(
            &[("blob", "requirements.txt"), ("blob", "main.py")],
            &[(
                "requirements.txt",
                "fastapi==0.115.0\nuvicorn[standard]>=0.30\n",
            )],
        );
        let p = plan(&fastapi, &inputs()).unwrap();
        assert_eq!(p.stack, Stack::Python);
        let df = p.dockerfile.unwrap();
        assert!(df.contains(
            "CMD [\"/bin/sh\", \"-c\", \"exec uvicorn main:app --host 0.0.0.0 --port \\\"$PORT\\\"\"]"
        ), "{df}");
        assert!(df.contains("RUN pip install --no-cache-dir -r requirements.txt\n"));
        assert!(df.contains("USER 10001:10001\n"));
        let flask = snap(
            &[("blob", "requirements.txt"), ("blob", "app.py")],
            &[("requirements.txt", "flask\ngunicorn\n")],
        );
        assert_eq!(
            plan(&flask, &inputs()).unwrap().start.as_deref(),
            Some("exec gunicorn --bind \"0.0.0.0:$PORT\" app:app")
        );
        let django = snap(
            &[("blob", "pyproject.toml"), ("blob", "manage.py")],
            &[(
                "pyproject.toml",
                "[project]\ndependencies = [\"django>=5\"]\n",
            )],
        );
        let p = plan(&django, &inputs()).unwrap();
        assert!(p.start.unwrap().contains("manage.py runserver"));
        assert!(
            p.dockerfile
                .unwrap()
                .contains("RUN pip install --no-cache-dir .\n")
        );
        // A name that only starts with a framework's is not that framework.
        assert!(!python_dep("fastapi-utils\n", "fastapi"));
        let nothing = snap(&[("blob", "requirements.txt")], &[("requirements.txt", "")]);
        assert!(
            plan(&nothing, &inputs())
                .unwrap_err()
                .to_string()
                .contains("Procfile")
        );
    }

    #[test]
    fn a_procfile_web_line_starts_any_stack() {
        let s = snap(
            &[("blob", "requirements.txt"), ("blob", "Procfile")],
            &[
                ("requirements.txt", "django\n"),
                (
                    "Procfile",
                    "release: migrate\nweb: gunicorn site.wsgi --bind :$PORT\n",
                ),
            ],
        );
        let p = plan(&s, &inputs()).unwrap();
        assert_eq!(p.start.as_deref(), Some("gunicorn site.wsgi --bind :$PORT"));
        assert!(p.reasons.iter().any(|r| r.contains("Procfile")));
    }

    #[test]
    fn go_rust_ruby_and_static_sites() {
        let go = snap(
            &[("blob", "go.mod"), ("blob", "main.go")],
            &[("go.mod", "module x\n")],
        );
        let df = plan(&go, &inputs()).unwrap().dockerfile.unwrap();
        assert!(df.contains("RUN CGO_ENABLED=0 go build -trimpath -o /out/app .\n"));
        assert!(df.contains("FROM gcr.io/distroless/static-debian12:nonroot\n"));
        assert!(df.ends_with("USER 65532:65532\nCMD [\"/app\"]\n"), "{df}");
        let go_cmd = snap(&[("blob", "go.mod"), ("tree", "cmd")], &[]);
        assert!(
            plan(&go_cmd, &inputs())
                .unwrap_err()
                .to_string()
                .contains("build.context")
        );

        let rust = snap(
            &[("blob", "Cargo.toml"), ("blob", "Cargo.lock")],
            &[(
                "Cargo.toml",
                "[package]\nname = \"hello-web\"\nversion = \"0.1.0\"\n",
            )],
        );
        let df = plan(&rust, &inputs()).unwrap().dockerfile.unwrap();
        assert!(df.contains("RUN cargo build --release --locked --bin hello-web && cp target/release/hello-web /app\n"), "{df}");
        let ws = snap(
            &[("blob", "Cargo.toml")],
            &[("Cargo.toml", "[workspace]\nmembers = []\n")],
        );
        assert!(
            plan(&ws, &inputs())
                .unwrap_err()
                .to_string()
                .contains("workspace")
        );
        let evil = snap(
            &[("blob", "Cargo.toml")],
            &[("Cargo.toml", "[package]\nname = \"a;rm -rf /\"\n")],
        );
        assert!(plan(&evil, &inputs()).is_err());

        let rails = snap(
            &[
                ("blob", "Gemfile"),
                ("blob", "Gemfile.lock"),
                ("tree", "config"),
            ],
            &[(
                "Gemfile",
                "source \"https://rubygems.org\"\ngem \"rails\", \"~> 8.0\"\n",
            )],
        );
        let p = plan(&rails, &inputs()).unwrap();
        assert_eq!(p.stack, Stack::Rails);
        assert!(
            p.dockerfile
                .unwrap()
                .contains("COPY --chown=10001:10001 Gemfile Gemfile.lock ./\n")
        );

        let site = snap(&[("blob", "index.html"), ("tree", "css")], &[]);
        let mut i = inputs();
        i.port = 9000;
        let p = plan(&site, &i).unwrap();
        assert_eq!(p.stack, Stack::Static);
        let df = p.dockerfile.unwrap();
        assert!(df.contains("listen 9000;"), "{df}");
        assert!(df.ends_with("USER 101:101\n"), "{df}");
    }

    #[test]
    fn nothing_found_names_what_was_looked_for_and_where() {
        let s = snap(&[("blob", "README.md"), ("tree", "docs")], &[]);
        let e = plan(&s, &inputs()).unwrap_err().to_string();
        assert!(e.contains("the repository's top level"), "{e}");
        assert!(e.contains("package.json (Node.js, Next.js)"), "{e}");
        let mut i = inputs();
        i.dir = "web";
        assert!(
            plan(&s, &i)
                .unwrap_err()
                .to_string()
                .contains("directory \"web\"")
        );
    }
}
