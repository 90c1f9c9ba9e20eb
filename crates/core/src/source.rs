//! A pipeline's preview source (#18): what the preview is made of. `dockerfile` and `auto`
//! make one image and one container (see [`crate::validate::BuildSource`]); `compose` and
//! `helm` make a whole application and are a [`Composition`]:
//!
//! - `compose`: the build worker reads the compose file at the commit ([`crate::compose`]),
//!   builds every service with `build:` as its own build job, and the last of them to succeed
//!   enqueues the launch, a [`ComposeLaunch`]: every service a workload and a Service under its
//!   compose name, `service` at the preview URL.
//! - `helm`: the build worker builds the repository's Dockerfile as for `dockerfile` and reads
//!   the chart at the commit; the launch, a [`HelmLaunch`], renders it with Helm, the built
//!   image in the values named by `image_values`, into the preview namespace.
//!
//! What the API can check is checked here (paths, names, ports, which fields go with which
//! type); what only the repository can tell (is there such a service, does the chart render)
//! fails the build or launch for good with the reason.

use crate::compose;
use crate::payload::{BuildOptions, PreviewSource};
use crate::validate::{BuildSource, ValidationError, codes, join, rel_path};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The compose files looked for when `file` is not given, in compose's own order of
/// preference (compose-spec `03-compose-file.md`: `compose.yaml` is preferred, the
/// `docker-compose` names are kept for backward compatibility).
pub const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Values files a `helm` source may name.
pub const MAX_VALUES_FILES: usize = 10;

/// Default values receiving the built image (the layout `helm create` generates).
pub const DEFAULT_IMAGE_REPOSITORY_VALUE: &str = "image.repository";
pub const DEFAULT_IMAGE_TAG_VALUE: &str = "image.tag";

/// A preview made of several workloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Composition {
    Compose(ComposeSpec),
    Helm(HelmSpec),
}

/// A validated `compose` source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeSpec {
    /// The compose file in the repository; `None`: the first of [`COMPOSE_FILES`] at the root.
    pub file: Option<String>,
    /// The service at the preview URL.
    pub service: String,
    /// Its port; `None`: the service's first port in the file, else the launch port.
    pub port: Option<u16>,
}

/// A validated `helm` source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmSpec {
    /// The chart's directory in the repository.
    pub chart: String,
    /// Values files in the repository, in order.
    pub values: Vec<String>,
    /// Dotted value paths receiving the built image's repository and tag.
    pub image_repository: String,
    pub image_tag: String,
    /// The chart's Service at the preview URL, and its port.
    pub service: String,
    pub port: u16,
}

/// What a compose preview's launch runs: every service, the image each runs (built or as
/// the file names it) and the one at the preview URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeLaunch {
    pub services: Vec<compose::Service>,
    /// Named volumes declared at the file's top level.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Service name -> the image reference it runs.
    pub images: BTreeMap<String, String>,
    pub exposed: String,
    pub port: u16,
}

/// What a Helm preview's launch renders: the chart's files and the values files as read at the
/// commit (base64), the built image and where it goes, and the Service at the preview URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmLaunch {
    /// The chart's directory in the repository (for messages).
    pub chart: String,
    /// Path relative to the chart directory -> base64 content.
    pub files: BTreeMap<String, String>,
    /// The values files, in order: (path in the repository, base64 content).
    pub values: Vec<(String, String)>,
    pub image_repository: String,
    pub image_tag: String,
    /// The built image's repository and tag (`tag@digest`) as the values receive them.
    pub image: String,
    pub tag: String,
    pub service: String,
    pub port: u16,
}

/// The fields that belong to `compose` or `helm`, as `(given, name)`.
fn typed_fields(s: &PreviewSource) -> [(bool, &'static str); 6] {
    [
        (s.file.is_some(), "file"),
        (s.service.is_some(), "service"),
        (s.port.is_some(), "port"),
        (s.chart.is_some(), "chart"),
        (!s.values.is_empty(), "values"),
        (s.image_values.is_some(), "image_values"),
    ]
}

fn refuse_others(s: &PreviewSource, allowed: &[&str], prefix: &str) -> Result<(), ValidationError> {
    for (given, name) in typed_fields(s) {
        if given && !allowed.contains(&name) {
            return Err(ValidationError::invalid(
                &join(prefix, name),
                format!("not a field of the `{}` source", s.kind),
            ));
        }
    }
    Ok(())
}

fn port(p: Option<i64>, field: &str) -> Result<Option<u16>, ValidationError> {
    p.map(|p| {
        u16::try_from(p).ok().filter(|p| *p >= 1).ok_or_else(|| {
            ValidationError::new(codes::OUT_OF_RANGE, field, "must be between 1 and 65535")
        })
    })
    .transpose()
}

/// A Kubernetes Service name (DNS-1035 label: a letter first), as `field`.
fn service_name(s: Option<&str>, field: &str) -> Result<String, ValidationError> {
    let s = s.ok_or_else(|| {
        ValidationError::new(
            codes::MISSING_FIELD,
            field,
            "name the service served at the preview URL",
        )
    })?;
    let ok = crate::naming::is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ValidationError::invalid(
            field,
            "must be a Service name: lowercase letters, digits and '-', a letter first, at \
             most 63",
        ))
    }
}

/// A dotted Helm value path (`image.repository`), as `--set` takes it without escapes.
fn value_path(s: &str, field: &str) -> Result<String, ValidationError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ValidationError::invalid(
            field,
            "must be a dotted value path such as `image.repository` (letters, digits, '_' \
             and '-' between the dots)",
        ))
    }
}

/// Validate a pipeline's `source` (at `prefix`, e.g. `source`) with its build options.
/// `launch_port` is the pipeline's launch port (a Helm preview's default).
pub fn parse(
    source: Option<&PreviewSource>,
    build: &BuildOptions,
    launch_port: u16,
    prefix: &str,
) -> Result<(BuildSource, Option<Composition>), ValidationError> {
    let Some(s) = source else {
        return Ok((BuildSource::Dockerfile, None));
    };
    let f = |name: &str| join(prefix, name);
    let conflicts = |fields: &[(bool, &str)], why: &str| -> Result<(), ValidationError> {
        match fields.iter().find(|(given, _)| *given) {
            Some((_, name)) => Err(ValidationError::new(codes::CONFLICTING_FIELDS, *name, why)),
            None => Ok(()),
        }
    };
    match s.kind.as_str() {
        "dockerfile" => {
            refuse_others(s, &[], prefix)?;
            Ok((BuildSource::Dockerfile, None))
        }
        "auto" => {
            refuse_others(s, &[], prefix)?;
            // The generated Dockerfile has one stage and sits outside the repository.
            conflicts(
                &[
                    (build.dockerfile.is_some(), "build.dockerfile"),
                    (build.target.is_some(), "build.target"),
                ],
                "the `auto` source generates the Dockerfile; remove this field, or use the \
                 `dockerfile` source",
            )?;
            Ok((BuildSource::Auto, None))
        }
        "compose" => {
            refuse_others(s, &["file", "service", "port"], prefix)?;
            // Each service's build comes from the compose file.
            conflicts(
                &[
                    (build.context.is_some(), "build.context"),
                    (build.dockerfile.is_some(), "build.dockerfile"),
                    (build.target.is_some(), "build.target"),
                    (!build.build_args.is_empty(), "build.build_args"),
                ],
                "the compose file gives each service's build; remove this field",
            )?;
            let file = match &s.file {
                Some(p) => rel_path(p, &f("file"), false)?,
                None => None,
            };
            Ok((
                BuildSource::Dockerfile,
                Some(Composition::Compose(ComposeSpec {
                    file,
                    service: service_name(s.service.as_deref(), &f("service"))?,
                    port: port(s.port, &f("port"))?,
                })),
            ))
        }
        "helm" => {
            refuse_others(
                s,
                &["chart", "values", "image_values", "service", "port"],
                prefix,
            )?;
            let chart = match &s.chart {
                Some(c) => rel_path(c, &f("chart"), true)?,
                None => {
                    return Err(ValidationError::new(
                        codes::MISSING_FIELD,
                        f("chart"),
                        "name the chart's directory in the repository",
                    ));
                }
            }
            .unwrap_or_else(|| ".".to_owned());
            if s.values.len() > MAX_VALUES_FILES {
                return Err(ValidationError::new(
                    codes::TOO_MANY,
                    f("values"),
                    format!("at most {MAX_VALUES_FILES} values files"),
                ));
            }
            let values = s
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    rel_path(v, &format!("{}[{i}]", f("values")), false)?.ok_or_else(|| {
                        ValidationError::invalid(&format!("{}[{i}]", f("values")), "is empty")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let iv = s.image_values.clone().unwrap_or_default();
            let image_repository = value_path(
                iv.repository
                    .as_deref()
                    .unwrap_or(DEFAULT_IMAGE_REPOSITORY_VALUE),
                &f("image_values.repository"),
            )?;
            let image_tag = value_path(
                iv.tag.as_deref().unwrap_or(DEFAULT_IMAGE_TAG_VALUE),
                &f("image_values.tag"),
            )?;
            Ok((
                BuildSource::Dockerfile,
                Some(Composition::Helm(HelmSpec {
                    chart,
                    values,
                    image_repository,
                    image_tag,
                    service: service_name(s.service.as_deref(), &f("service"))?,
                    port: port(s.port, &f("port"))?.unwrap_or(launch_port),
                })),
            ))
        }
        _ => Err(ValidationError::invalid(
            &f("type"),
            "must be `dockerfile`, `auto`, `compose` or `helm`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(v: serde_json::Value) -> PreviewSource {
        serde_json::from_value(v).unwrap()
    }

    fn ok(v: serde_json::Value) -> (BuildSource, Option<Composition>) {
        parse(Some(&src(v)), &BuildOptions::default(), 8080, "source").unwrap()
    }

    fn refused(v: serde_json::Value, build: &BuildOptions) -> (String, String) {
        let e = parse(Some(&src(v)), build, 8080, "source").unwrap_err();
        (e.code.to_string(), e.field)
    }

    #[test]
    fn compose_and_helm_parse_with_their_defaults() {
        assert_eq!(
            ok(serde_json::json!({"type": "compose", "service": "web"})).1,
            Some(Composition::Compose(ComposeSpec {
                file: None,
                service: "web".into(),
                port: None,
            }))
        );
        assert_eq!(
            ok(
                serde_json::json!({"type": "helm", "chart": "deploy/chart/", "service": "web",
                "values": ["deploy/preview.yaml"]})
            )
            .1,
            Some(Composition::Helm(HelmSpec {
                chart: "deploy/chart".into(),
                values: vec!["deploy/preview.yaml".into()],
                image_repository: "image.repository".into(),
                image_tag: "image.tag".into(),
                service: "web".into(),
                port: 8080,
            }))
        );
        assert_eq!(ok(serde_json::json!({"type": "auto"})).0, BuildSource::Auto);
    }

    #[test]
    fn fields_of_other_types_and_bad_values_are_named() {
        let none = BuildOptions::default();
        let cases = [
            (
                serde_json::json!({"type": "auto", "port": 1}),
                "source.port",
            ),
            (
                serde_json::json!({"type": "dockerfile", "chart": "c"}),
                "source.chart",
            ),
            (
                serde_json::json!({"type": "compose", "service": "web", "chart": "c"}),
                "source.chart",
            ),
            (
                serde_json::json!({"type": "helm", "service": "web", "file": "c"}),
                "source.file",
            ),
            (serde_json::json!({"type": "compose"}), "source.service"),
            (
                serde_json::json!({"type": "compose", "service": "Web_1"}),
                "source.service",
            ),
            (
                serde_json::json!({"type": "compose", "service": "1web"}),
                "source.service",
            ),
            (
                serde_json::json!({"type": "compose", "service": "web", "port": 0}),
                "source.port",
            ),
            (
                serde_json::json!({"type": "compose", "service": "web", "file": "../x.yaml"}),
                "source.file",
            ),
            (
                serde_json::json!({"type": "helm", "service": "web"}),
                "source.chart",
            ),
            (
                serde_json::json!({"type": "helm", "service": "web", "chart": "/etc"}),
                "source.chart",
            ),
            (
                serde_json::json!({"type": "helm", "service": "web", "chart": "c",
                    "values": ["ok.yaml", "../no.yaml"]}),
                "source.values[1]",
            ),
            (
                serde_json::json!({"type": "helm", "service": "web", "chart": "c",
                    "image_values": {"repository": "image..repo"}}),
                "source.image_values.repository",
            ),
            (
                serde_json::json!({"type": "helm", "service": "web", "chart": "c",
                    "image_values": {"tag": "a,b=c"}}),
                "source.image_values.tag",
            ),
            (serde_json::json!({"type": "kustomize"}), "source.type"),
        ];
        for (v, field) in cases {
            let (_, got) = refused(v.clone(), &none);
            assert_eq!(got, field, "{v}");
        }
        let build = BuildOptions {
            dockerfile: Some("Dockerfile".into()),
            ..Default::default()
        };
        assert_eq!(
            refused(
                serde_json::json!({"type": "compose", "service": "web"}),
                &build
            ),
            (
                codes::CONFLICTING_FIELDS.to_string(),
                "build.dockerfile".into()
            )
        );
        // A Helm preview builds the repository's Dockerfile: build options are its own.
        assert!(
            parse(
                Some(&src(
                    serde_json::json!({"type": "helm", "service": "web", "chart": "c"})
                )),
                &build,
                8080,
                "source"
            )
            .is_ok()
        );
    }
}
