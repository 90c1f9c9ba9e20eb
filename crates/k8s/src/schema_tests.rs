//! Every object the builders produce passes strict validation against the Kubernetes 1.33 JSON
//! schemas (`kubernetes-validate`, installed by `make tools`). Strict mode rejects unknown
//! fields, so a misspelt or misplaced field fails here rather than on a real cluster.

use crate::build::{BuildResources, build_job};
use crate::preview::{TlsParams, preview_objects};
use std::process::Command;

/// Run the validator over objects; Ok(()) when all pass, Err(output) otherwise.
fn validate_strict(objects: &[serde_json::Value]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        let path = dir.path().join(format!("object-{i}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(obj).unwrap()).unwrap();
        files.push(path);
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
        .args(&files)
        .output()
        .expect("kubernetes-validate is not installed: run `make tools`");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn the_validator_rejects_an_unknown_field() {
    let bad = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x"}, "dataa": {}});
    assert!(validate_strict(&[bad]).is_err());
}

#[test]
fn build_jobs_pass_strict_schema_validation() {
    let full = crate::build::tests::params();
    let minimal = crate::build::BuildJobParams {
        cache_ref: None,
        git_secret: None,
        registry_secret: None,
        target: None,
        context_subdir: None,
        resources: BuildResources::default(),
        ..full.clone()
    };
    let generated = crate::build::BuildJobParams {
        generated_dockerfile: Some("FROM scratch\nCOPY . /\n".into()),
        ..minimal.clone()
    };
    let mut objects: Vec<_> = [full, minimal, generated]
        .iter()
        .map(|p| serde_json::to_value(build_job(p)).unwrap())
        .collect();
    objects.push(serde_json::to_value(crate::build::build_namespace("slipway-builds")).unwrap());
    let mut source = crate::source::tests::params();
    objects.push(serde_json::to_value(crate::source::source_job(&source)).unwrap());
    source.git_secret = None;
    objects.push(serde_json::to_value(crate::source::source_job(&source)).unwrap());
    let mut net = crate::buildnet::tests::params();
    objects.push(serde_json::to_value(crate::buildnet::build_network_policy(&net)).unwrap());
    net.registry_cidrs = "10.1.2.3/32"
        .parse::<crate::buildnet::CidrList>()
        .unwrap()
        .0;
    net.dns_egress_cidrs = "169.254.20.10/32"
        .parse::<crate::buildnet::CidrList>()
        .unwrap()
        .0;
    net.deny_cidrs = "::/0,10.96.0.0/12"
        .parse::<crate::buildnet::CidrList>()
        .unwrap()
        .0;
    objects.push(serde_json::to_value(crate::buildnet::build_network_policy(&net)).unwrap());
    validate_strict(&objects).unwrap();
}

#[test]
fn preview_objects_pass_strict_schema_validation() {
    let plain = crate::preview::tests::params();
    let mut full = plain.clone();
    full.tls = Some(TlsParams {
        secret_name: "tls".into(),
        cluster_issuer: Some("le".into()),
    });
    full.image_pull_secret = Some("pull".into());
    full.allowed_egress_cidrs = vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()];
    full.dns_egress_cidrs = vec!["169.254.20.10/32".into()];
    full.ingress_cidrs = vec!["35.191.0.0/16".into()];
    full.run_as_non_root = true;
    full.read_only_root_filesystem = true;
    let mut objects = preview_objects(&plain).to_values();
    objects.extend(preview_objects(&full).to_values());
    // A Helm preview's frame: the Ingress to a chart's Service by port number, the policy to
    // its pods by a named port.
    let backend = crate::preview::Backend {
        service: "web".into(),
        port: 8080,
        pods: [("app.kubernetes.io/name".to_owned(), "web".to_owned())].into(),
        target_port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
            "http".into(),
        ),
    };
    objects.extend(crate::preview::frame_objects(&full, &backend).to_values());
    validate_strict(&objects).unwrap();
}

#[test]
fn compose_objects_pass_strict_schema_validation() {
    let plain = crate::compose::tests::params();
    let mut full = plain.clone();
    full.preview.tls = Some(TlsParams {
        secret_name: "tls".into(),
        cluster_issuer: Some("le".into()),
    });
    full.preview.image_pull_secret = Some("pull".into());
    full.preview.run_as_non_root = true;
    // The exposed service without ports of its own, a service with neither ports nor probe.
    full.services[0].service.ports = vec![];
    full.services[2].service.healthcheck = None;
    let mut objects = crate::compose::compose_objects(&plain).to_values();
    objects.extend(crate::compose::compose_objects(&full).to_values());
    validate_strict(&objects).unwrap();
}
