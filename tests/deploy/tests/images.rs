//! The image definitions agree with the workspace, without a Docker engine: every bake target
//! is a runtime stage of the Dockerfile, each runtime stage copies one binary that a workspace
//! package builds and runs it as non-root with the right port, test-only binaries ship in no
//! image, and the Dockerfile's release build is the one `make release-check` runs here.

use slipway_deploy_tests::{bake, dockerfile, read, workspace};
use std::collections::BTreeSet;

/// The images the project ships: bake/Dockerfile target -> the binary it runs and the port
/// it serves /healthz, /readyz and /metrics on (the API's and workers' SLIPWAY_LISTEN defaults).
const IMAGES: &[(&str, &str, Option<u16>)] = &[
    ("api", "slipway-api", Some(8080)),
    ("worker-build", "slipway-worker-build", Some(9090)),
    ("worker-launch", "slipway-worker-launch", Some(9090)),
    ("worker-cleanup", "slipway-worker-cleanup", Some(9090)),
    ("cli", "slipway", None),
];

/// Product binaries that deliberately have no image: every binary migrates on start, so the
/// stand-alone migrator is for operators running it by hand.
const NO_IMAGE: &[&str] = &["slipway-migrate"];

fn dockerfile() -> dockerfile::Dockerfile {
    dockerfile::parse(&read("deploy/docker/Dockerfile"))
}

fn bake_blocks() -> Vec<bake::Block> {
    bake::parse(&read("deploy/docker/docker-bake.hcl"))
}

/// The binary a runtime stage copies out of the build stage: (source path, destination).
fn copied_binary(stage: &dockerfile::Stage) -> Vec<(String, String)> {
    stage
        .all("COPY")
        .iter()
        .filter(|a| a.starts_with("--from=build "))
        .map(|a| {
            let parts: Vec<&str> = a.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "COPY {a}: one source, one destination");
            (parts[1].to_owned(), parts[2].to_owned())
        })
        .collect()
}

#[test]
fn every_bake_target_is_a_runtime_stage_of_the_dockerfile() {
    let df = dockerfile();
    let blocks = bake_blocks();
    let targets: Vec<&bake::Block> = blocks
        .iter()
        .filter(|b| b.kind == "target" && !b.name.starts_with('_'))
        .collect();
    let names: BTreeSet<&str> = targets.iter().map(|b| b.name.as_str()).collect();
    let expected: BTreeSet<&str> = IMAGES.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(names, expected, "bake targets");

    for t in &targets {
        let stage = t
            .string("target")
            .unwrap_or_else(|| panic!("bake target {} names no Dockerfile target", t.name));
        assert_eq!(
            stage, t.name,
            "bake target {} builds Dockerfile target {stage}",
            t.name
        );
        assert!(
            df.stage(stage).is_some(),
            "bake target {} builds Dockerfile target {stage}, which the Dockerfile does not have",
            t.name
        );
        assert_eq!(t.list("inherits"), vec!["_common"], "target {}", t.name);
        assert_eq!(
            t.list("tags"),
            vec![format!("image(\"{}\")", t.name)],
            "target {} is tagged slipway-{}:<TAG> through image()",
            t.name,
            t.name
        );
    }

    let common = bake::find(&blocks, "target", "_common").expect("target _common");
    assert_eq!(
        common.string("dockerfile"),
        Some("deploy/docker/Dockerfile")
    );
    assert_eq!(common.string("context"), Some("."));
    assert_eq!(
        common.attrs.get("platforms").map(String::as_str),
        Some("split(\",\", PLATFORMS)")
    );
    let platforms = bake::find(&blocks, "variable", "PLATFORMS").expect("variable PLATFORMS");
    assert_eq!(platforms.string("default"), Some("linux/amd64,linux/arm64"));
    let image = bake::find(&blocks, "function", "image").expect("function image");
    let result = image.attrs.get("result").expect("image() result");
    assert!(
        result.contains("\"slipway-${name}:${TAG}\"") && result.contains("REGISTRY"),
        "image() names slipway-<target>:<TAG> under an optional REGISTRY: {result}"
    );

    let all = bake::find(&blocks, "group", "all").expect("group all");
    let in_all: BTreeSet<String> = all.list("targets").into_iter().collect();
    assert_eq!(
        in_all,
        expected.iter().map(|s| (*s).to_owned()).collect(),
        "group all"
    );
    let default = bake::find(&blocks, "group", "default").expect("group default");
    assert_eq!(default.list("targets"), vec!["all"]);
}

#[test]
fn runtime_stages_run_one_binary_as_non_root_with_its_port() {
    let df = dockerfile();
    for (target, bin, port) in IMAGES {
        let stage = df
            .stage(target)
            .unwrap_or_else(|| panic!("the Dockerfile has no target {target}"));
        assert_eq!(
            stage.base, "${RUNTIME_IMAGE}",
            "target {target} starts from the runtime image"
        );
        let dest = format!("/usr/local/bin/{bin}");
        assert_eq!(
            copied_binary(stage),
            vec![(format!("/out/{bin}"), dest.clone())],
            "target {target} copies exactly its binary {bin}"
        );
        let others: Vec<&str> = stage
            .all("COPY")
            .into_iter()
            .filter(|a| !a.starts_with("--from=build "))
            .collect();
        let allowed: Vec<&str> = match *target {
            // `helm template` for `helm` previews; see the_launch_image_ships_the_pinned_helm.
            "worker-launch" => vec![HELM_COPY],
            _ => vec![],
        };
        assert_eq!(others, allowed, "target {target} copies nothing else");
        let entry = stage.all("ENTRYPOINT");
        assert_eq!(entry.len(), 1, "target {target}: one ENTRYPOINT");
        assert_eq!(
            dockerfile::exec_form(entry[0]),
            Some(vec![dest.clone()]),
            "target {target} runs {dest} (exec form)"
        );
        let user = stage.all("USER");
        assert_eq!(user.len(), 1, "target {target}: one USER");
        let uid: u32 = user[0]
            .split(':')
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| {
                panic!("target {target}: USER must be numeric (runAsNonRoot checks it)")
            });
        assert_ne!(uid, 0, "target {target} runs as non-root");
        let exposed: Vec<u16> = stage
            .all("EXPOSE")
            .iter()
            .flat_map(|e| e.split_whitespace())
            .map(|p| p.trim_end_matches("/tcp").parse().expect("EXPOSE port"))
            .collect();
        assert_eq!(
            exposed,
            port.iter().copied().collect::<Vec<_>>(),
            "target {target} EXPOSE"
        );
        if let Some(port) = port {
            assert!(
                stage
                    .all("ENV")
                    .contains(&format!("SLIPWAY_LISTEN=0.0.0.0:{port}").as_str()),
                "target {target} listens on 0.0.0.0:{port}"
            );
        }
    }
    let runtime_base = df.global_arg("RUNTIME_IMAGE").expect("ARG RUNTIME_IMAGE");
    assert!(
        runtime_base.contains("distroless") && runtime_base.ends_with(":nonroot"),
        "small non-root runtime base: {runtime_base}"
    );
}

/// The one check that names a missing package: until `slipway-worker-cleanup` lands in the
/// workspace, this fails for it (and only it).
#[test]
fn every_image_binary_is_built_by_a_workspace_package() {
    let packages = workspace::packages();
    let release = workspace::release_packages();
    let mut problems = Vec::new();
    for name in &release {
        match packages.iter().find(|p| &p.name == name) {
            None => problems.push(format!(
                "deploy/docker/cargo-release.sh builds package {name}, which the workspace does \
                 not have (cargo metadata)"
            )),
            Some(p) if !p.dir.starts_with("crates/") => problems.push(format!(
                "package {name} ({}) is not a product crate under crates/",
                p.dir
            )),
            Some(_) => {}
        }
    }
    for (target, bin, _) in IMAGES {
        match packages.iter().find(|p| p.bins.iter().any(|b| b == bin)) {
            None => problems.push(format!(
                "Dockerfile target {target} copies binary {bin}, which no workspace package builds"
            )),
            Some(p) if !release.contains(&p.name) => problems.push(format!(
                "Dockerfile target {target} copies {bin} of package {}, which cargo-release.sh does \
                 not build",
                p.name
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn product_binaries_have_images_and_test_binaries_do_not() {
    let shipped: BTreeSet<&str> = IMAGES.iter().map(|(_, b, _)| *b).collect();
    for p in workspace::packages() {
        for bin in &p.bins {
            if p.dir.starts_with("tests/") {
                assert!(
                    !shipped.contains(bin.as_str()),
                    "test-only binary {bin} ({}) must not ship in an image",
                    p.dir
                );
            } else {
                assert!(
                    shipped.contains(bin.as_str()) || NO_IMAGE.contains(&bin.as_str()),
                    "product binary {bin} ({}) has no image: add a Dockerfile target, or list it in \
                     NO_IMAGE with the reason",
                    p.dir
                );
            }
        }
    }
    let release = workspace::release_packages();
    for p in workspace::packages()
        .iter()
        .filter(|p| p.dir.starts_with("tests/"))
    {
        assert!(
            !release.contains(&p.name),
            "test crate {} must not be in the release build",
            p.name
        );
    }
}

#[test]
fn the_dockerfile_runs_the_release_build_that_make_release_check_runs() {
    let df = dockerfile();
    let build = df.stage("build").expect("stage build");
    let runs = build.all("RUN").join("\n");
    assert!(
        runs.contains("deploy/docker/cargo-release.sh cook"),
        "the build stage cooks dependencies with cargo-release.sh: {runs}"
    );
    assert!(
        runs.contains("deploy/docker/cargo-release.sh build"),
        "the build stage builds with cargo-release.sh: {runs}"
    );
    let planner = df.stage("planner").expect("stage planner");
    assert!(
        planner
            .all("RUN")
            .iter()
            .any(|r| r.contains("cargo chef prepare"))
    );
    assert_eq!(build.base, "chef", "the build stage has cargo-chef");

    let script = read("deploy/docker/cargo-release.sh");
    assert!(
        script.contains("flags=\"--release --locked --bins\""),
        "cargo-release.sh builds --release --locked: {script}"
    );
    assert!(script.contains("build) set -x; exec cargo build $flags"));
    assert!(script.contains("cook) set -x; exec cargo chef cook $flags"));

    let makefile = read("Makefile");
    let recipe = makefile
        .split("\nrelease-check:")
        .nth(1)
        .expect("a release-check target in the Makefile");
    let first_line = recipe.lines().nth(1).unwrap_or_default();
    assert!(
        first_line.trim() == "deploy/docker/cargo-release.sh build",
        "make release-check runs the Dockerfile's build command: {first_line:?}"
    );
}

/// The one thing besides its binary an image carries: the launch worker's Helm.
const HELM_COPY: &str = "--from=helm /out/helm /usr/local/bin/helm";

/// A `VAR=value` assignment in a shell script (`scripts/ensure-helm.sh`).
fn shell_var(script: &str, name: &str) -> Option<String> {
    script.lines().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{name}="))
            .map(|v| v.trim_matches('"').to_owned())
    })
}

#[test]
fn the_launch_image_ships_the_pinned_helm() {
    let df = dockerfile();
    let pinned = shell_var(&read("scripts/ensure-helm.sh"), "HELM_VERSION")
        .expect("HELM_VERSION in scripts/ensure-helm.sh");
    assert_eq!(
        df.global_arg("HELM_VERSION"),
        Some(pinned.as_str()),
        "the image's Helm is the version scripts/ensure-helm.sh pins (and the tests use)"
    );
    for arch in ["AMD64", "ARM64"] {
        let sum = df
            .global_arg(&format!("HELM_SHA256_{arch}"))
            .unwrap_or_else(|| panic!("ARG HELM_SHA256_{arch}"));
        assert!(
            sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
            "HELM_SHA256_{arch} is a SHA-256: {sum}"
        );
    }
    let helm = df.stage("helm").expect("stage helm");
    let adds = helm.all("ADD");
    assert_eq!(
        adds,
        vec![
            "https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz /tmp/helm.tar.gz"
        ],
        "the official release archive of the target platform"
    );
    let run = helm.all("RUN").join("\n");
    for needed in [
        "amd64) sum=$HELM_SHA256_AMD64",
        "arm64) sum=$HELM_SHA256_ARM64",
        "sha256sum -c -",
        "exit 1",
    ] {
        assert!(
            run.contains(needed),
            "the archive is verified before use ({needed}): {run}"
        );
    }
    assert!(
        run.find("sha256sum -c -") < run.find("tar -xzf"),
        "verified before it is unpacked: {run}"
    );
    for stage in df
        .stages
        .iter()
        .filter(|s| s.name.as_deref() != Some("worker-launch"))
    {
        assert!(
            !stage
                .all("COPY")
                .iter()
                .any(|a| a.starts_with("--from=helm ")),
            "only worker-launch carries Helm, not {:?}",
            stage.name
        );
    }
    let launch = df.stage("worker-launch").expect("stage worker-launch");
    assert!(launch.all("COPY").contains(&HELM_COPY));
}

#[test]
fn the_build_image_is_new_enough_for_the_workspace() {
    let df = dockerfile();
    let rust = df.global_arg("RUST_VERSION").expect("ARG RUST_VERSION");
    let parse = |v: &str| -> (u32, u32) {
        let mut it = v
            .split('.')
            .map(|n| n.parse::<u32>().expect("numeric version"));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let needed = workspace::rust_version();
    assert!(
        parse(rust) >= parse(&needed),
        "the Dockerfile builds with Rust {rust}, the workspace needs {needed}"
    );
    assert!(
        df.global_arg("CARGO_CHEF_VERSION").is_some(),
        "cargo-chef is pinned"
    );
}

#[test]
fn the_dockerignore_keeps_heavy_folders_out_of_the_context() {
    let ignore = read(".dockerignore");
    let lines: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for heavy in [
        "target/",
        "**/target/",
        ".git/",
        ".tools/",
        ".slipway/",
        "node_modules/",
    ] {
        assert!(lines.contains(heavy), ".dockerignore must exclude {heavy}");
    }
    for needed in [
        "crates",
        "tests",
        "Cargo.lock",
        "Cargo.toml",
        "deploy/docker",
    ] {
        assert!(
            !lines.iter().any(|l| l.trim_end_matches('/') == needed),
            ".dockerignore must not exclude {needed}: the build needs it"
        );
    }
}

#[test]
fn images_and_chart_carry_the_workspace_version() {
    let version = workspace::packages()
        .into_iter()
        .find(|p| p.name == "slipway-api")
        .expect("slipway-api")
        .version;
    let chart = read("deploy/helm/slipway/Chart.yaml");
    assert!(
        chart.contains(&format!("appVersion: \"{version}\"")),
        "Chart.yaml appVersion is the workspace version {version}"
    );
}
