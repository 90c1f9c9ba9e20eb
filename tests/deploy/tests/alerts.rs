//! The chart's alerts and Grafana dashboard, checked by the real tool: `promtool check rules` on
//! `files/alerts.yaml` and on the rules the chart's PrometheusRule renders, `promtool test rules`
//! (every alert firing and not firing) on both, every alert's labels, annotations and runbook
//! section in docs/operations.md, every dashboard panel's query evaluated by those unit tests,
//! and every metric they read exported by the code.
//!
//! Needs promtool and Helm (`make tools`); skips without them unless `SLIPWAY_REQUIRE_PROMTOOL`
//! and `SLIPWAY_REQUIRE_HELM` are set (the Makefile sets both).

use serde_json::Value;
use slipway_deploy_tests::chart::{self, DEFAULT, Install, MONITORING, NAMESPACE, PRODUCTION};
use slipway_deploy_tests::promtool::{self, DASHBOARD, RULE_TESTS, RULES};
use slipway_deploy_tests::{helm, read, repo_root, schema};
use std::collections::BTreeSet;

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("valid YAML")
}

/// The alerting rules of a rules document (`groups[].rules[]` with an `alert`).
fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn render_prometheus_rule(helm: &std::path::Path, install: &Install<'_>) -> Value {
    let docs = chart::render_ok(helm, install);
    let mut rules = chart::of_kind(&docs, "PrometheusRule");
    let rule = rules
        .next()
        .unwrap_or_else(|| panic!("{}: no PrometheusRule rendered", install.name))
        .clone();
    assert!(
        rules.next().is_none(),
        "{}: one PrometheusRule",
        install.name
    );
    rule
}

#[test]
fn rules_file_passes_promtool_check_rules() {
    let Some(promtool) = promtool::promtool() else {
        return;
    };
    let out = promtool::check_rules(&promtool, &repo_root().join(RULES))
        .unwrap_or_else(|e| panic!("promtool check rules {RULES}:\n{e}"));
    let n = alerts(&yaml(&read(RULES))).len();
    assert!(
        out.contains(&format!("SUCCESS: {n} rules found")),
        "promtool saw a different number of rules than the {n} alerts:\n{out}"
    );
}

#[test]
fn rules_unit_tests_pass() {
    let Some(promtool) = promtool::promtool() else {
        return;
    };
    if let Err(e) = promtool::test_rules(&promtool, &repo_root().join(RULE_TESTS)) {
        panic!("promtool test rules {RULE_TESTS}:\n{e}");
    }
}

/// The unit tests have teeth: the same tests fail on rules where one alert's threshold is off.
#[test]
fn rules_unit_tests_fail_on_a_broken_alert() {
    let Some(promtool) = promtool::promtool() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let good = read(RULES);
    let threshold = r#"kind!="cleanup"}[30m])) > 5"#;
    assert!(
        good.contains(threshold),
        "SlipwayDeadJobsRising's threshold"
    );
    let broken = dir.path().join("alerts.yaml");
    std::fs::write(
        &broken,
        good.replace(threshold, r#"kind!="cleanup"}[30m])) > 500"#),
    )
    .expect("write rules");
    let tests = promtool::tests_against(&broken, dir.path());
    let err = promtool::test_rules(&promtool, &tests)
        .expect_err("the unit tests pass on rules whose dead-jobs alert can never fire");
    assert!(err.contains("SlipwayDeadJobsRising"), "{err}");
}

#[test]
fn every_alert_is_complete_and_has_a_runbook_section_and_tests_both_ways() {
    let rules = yaml(&read(RULES));
    let alerts = alerts(&rules);
    assert!(alerts.len() >= 7, "the issue's seven alerts at least");
    let anchors = promtool::anchors(&read("docs/operations.md"));
    let tests = yaml(&read(RULE_TESTS));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let mut names = BTreeSet::new();
    for a in alerts {
        let name = a["alert"].as_str().expect("alert name");
        assert!(names.insert(name), "{name} defined twice");
        assert!(name.starts_with("Slipway"), "{name}: alerts are Slipway*");
        assert!(
            a["for"].as_str().is_some_and(|f| !f.is_empty()),
            "{name}: no `for:`"
        );
        let severity = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                a["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{name}: no {key}"
            );
        }
        let runbook = a["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let want = format!("docs/operations.md#{}", name.to_lowercase());
        assert_eq!(runbook, want, "{name}: runbook_url");
        assert!(
            anchors.contains(&name.to_lowercase()),
            "{name}: docs/operations.md has no `### {name}` section"
        );
        let of_this = || cases.iter().filter(|c| c["alertname"] == name);
        assert!(
            of_this().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
            "{name}: no unit test shows it firing"
        );
        assert!(
            of_this().any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty)),
            "{name}: no unit test shows it quiet"
        );
    }
}

#[test]
fn prometheus_rule_is_the_rules_file_and_passes_promtool() {
    let Some(helm) = helm() else { return };
    let rule = render_prometheus_rule(&helm, &MONITORING);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rule["metadata"]["labels"]["release"], "kube-prometheus-stack",
        "metrics.prometheusRule.labels reach the object (the Operator's ruleSelector)"
    );
    assert_eq!(
        rule["spec"],
        yaml(&read(RULES)),
        "the PrometheusRule's spec is files/alerts.yaml"
    );
    assert_fits_prometheusrule_crd(&rule["spec"]);
    let Some(promtool) = promtool::promtool() else {
        return;
    };
    // What the Operator hands Prometheus: the spec, as a rules file.
    let dir = tempfile::tempdir().expect("temp dir");
    let rendered = dir.path().join("alerts.yaml");
    std::fs::write(
        &rendered,
        serde_norway::to_string(&rule["spec"]).expect("YAML"),
    )
    .expect("write rules");
    if let Err(e) = promtool::check_rules(&promtool, &rendered) {
        panic!("promtool check rules on the rendered PrometheusRule:\n{e}");
    }
    let tests = promtool::tests_against(&rendered, dir.path());
    if let Err(e) = promtool::test_rules(&promtool, &tests) {
        panic!("promtool test rules on the rendered PrometheusRule:\n{e}");
    }
}

/// Whether `s` is a duration as the PrometheusRule CRD's pattern accepts it:
/// `0`, or `[0-9]+` units in the order y, w, d, h, m, s, ms, each at most once.
fn is_crd_duration(s: &str) -> bool {
    if s == "0" {
        return true;
    }
    const UNITS: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let mut rest = s;
    let mut next = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        // "ms" before "m", so "5ms" is not read as minutes followed by garbage.
        let Some(i) = (next..UNITS.len())
            .filter(|&i| rest.starts_with(UNITS[i]))
            .max_by_key(|&i| UNITS[i].len())
        else {
            return false;
        };
        rest = &rest[UNITS[i].len()..];
        next = i + 1;
    }
    !s.is_empty()
}

fn string_map(v: &Value, ctx: &str) {
    if v.is_null() {
        return;
    }
    let map = v
        .as_object()
        .unwrap_or_else(|| panic!("{ctx}: not an object"));
    for (k, v) in map {
        assert!(v.is_string(), "{ctx}.{k}: not a string");
    }
}

/// The PrometheusRule's spec holds only what the Prometheus Operator's CRD defines (its v1
/// openAPIV3Schema in github.com/prometheus-operator/prometheus-operator,
/// example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml, operator 0.82):
/// the API server would prune anything else, and Prometheus would never see it. Kubernetes' own
/// schemas do not cover the kind, so it is checked field by field here.
fn assert_fits_prometheusrule_crd(spec: &Value) {
    const GROUP_KEYS: [&str; 7] = [
        "name",
        "interval",
        "labels",
        "limit",
        "partial_response_strategy",
        "query_offset",
        "rules",
    ];
    const RULE_KEYS: [&str; 7] = [
        "alert",
        "record",
        "expr",
        "for",
        "keep_firing_for",
        "labels",
        "annotations",
    ];
    let spec = spec.as_object().expect("spec is an object");
    assert!(
        spec.keys().all(|k| k == "groups"),
        "spec has only groups: {spec:?}"
    );
    for g in spec["groups"].as_array().expect("groups is a list") {
        let g = g.as_object().expect("a group is an object");
        let name = g.get("name").and_then(Value::as_str).unwrap_or_default();
        assert!(!name.is_empty(), "a group needs a name");
        for k in g.keys() {
            assert!(GROUP_KEYS.contains(&k.as_str()), "group {name}: field {k}");
        }
        string_map(&g.get("labels").cloned().unwrap_or_default(), name);
        for r in g["rules"].as_array().expect("rules is a list") {
            let r = r.as_object().expect("a rule is an object");
            let id = r
                .get("alert")
                .or_else(|| r.get("record"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(
                r.contains_key("alert") != r.contains_key("record"),
                "{id}: exactly one of alert and record"
            );
            for k in r.keys() {
                assert!(RULE_KEYS.contains(&k.as_str()), "rule {id}: field {k}");
            }
            assert!(r["expr"].is_string(), "{id}: expr is a string");
            for k in ["for", "keep_firing_for"] {
                if let Some(d) = r.get(k) {
                    let d = d.as_str().unwrap_or_default();
                    assert!(is_crd_duration(d), "{id}: {k} {d:?} is not a CRD duration");
                }
            }
            for k in ["labels", "annotations"] {
                string_map(&r.get(k).cloned().unwrap_or_default(), &format!("{id}.{k}"));
            }
        }
    }
}

#[test]
fn crd_durations_are_read_as_the_crd_pattern_reads_them() {
    for ok in ["0", "5m", "1h30m", "10s", "250ms", "1d12h"] {
        assert!(is_crd_duration(ok), "{ok}");
    }
    for bad in ["", "5", "m", "30m1h", "5 m", "1.5h", "5min"] {
        assert!(!is_crd_duration(bad), "{bad}");
    }
}

#[test]
fn runbook_base_url_prefixes_every_runbook() {
    let Some(helm) = helm() else { return };
    let base = "https://example.com/slipway/v0.1.0/";
    let set = [
        "metrics.prometheusRule.enabled=true",
        r#"metrics.prometheusRule.runbookBaseUrl="https://example.com/slipway/v0.1.0/""#,
        r#"metrics.prometheusRule.namespace="monitoring""#,
    ];
    let rule = render_prometheus_rule(&helm, &Install::defaults_with("runbook base", &set));
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    let file = yaml(&read(RULES));
    for (got, want) in alerts(&rule["spec"]).into_iter().zip(alerts(&file)) {
        assert_eq!(got["alert"], want["alert"]);
        let relative = want["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(
            got["annotations"]["runbook_url"],
            format!("{base}{relative}"),
            "{}",
            got["alert"]
        );
    }
}

#[test]
fn monitoring_objects_are_off_by_default_and_labelled_when_on() {
    let Some(helm) = helm() else { return };
    for install in [DEFAULT, PRODUCTION] {
        let docs = chart::render_ok(&helm, &install);
        assert!(
            !docs.iter().any(chart::is_prometheus_operator),
            "{}: PrometheusRule rendered although off",
            install.name
        );
        assert!(
            chart::find(&docs, "ConfigMap", "slipway-dashboard").is_none(),
            "{}: dashboard rendered although off",
            install.name
        );
    }
    let docs = chart::render_ok(&helm, &MONITORING);
    let cm = chart::find(&docs, "ConfigMap", "slipway-dashboard").expect("dashboard ConfigMap");
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"], "1",
        "the Grafana sidecar's conventional label"
    );
    let json = cm["data"]["slipway.json"].as_str().expect("slipway.json");
    let rendered: Value = serde_json::from_str(json).expect("the ConfigMap holds valid JSON");
    let file: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard.json is JSON");
    assert_eq!(rendered, file, "the ConfigMap holds files/dashboard.json");
}

#[test]
fn monitoring_install_lints_and_passes_strict_schemas() {
    let Some(helm) = helm() else { return };
    if let Err(e) = chart::lint_strict(&helm, &MONITORING) {
        panic!("helm lint --strict (monitoring on):\n{e}");
    }
    if !schema::validator_available() {
        return;
    }
    // The PrometheusRule is the Prometheus Operator's custom resource: no Kubernetes schema
    // covers it (the validator would only warn). Its spec is checked against the CRD's fields
    // and by promtool in prometheus_rule_is_the_rules_file_and_passes_promtool; everything else,
    // the dashboard's ConfigMap among it, is validated.
    let docs = chart::render_ok(&helm, &MONITORING);
    let (operator, kube): (Vec<Value>, Vec<Value>) =
        docs.into_iter().partition(chart::is_prometheus_operator);
    assert_eq!(
        operator.len(),
        1,
        "only the PrometheusRule skips validation"
    );
    assert_eq!(operator[0]["kind"], "PrometheusRule");
    if let Err(report) = schema::validate_strict(&kube) {
        panic!("monitoring on: strict 1.33 validation failed:\n{report}");
    }
}

#[test]
fn every_dashboard_panel_has_a_query_the_rule_tests_evaluate() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard.json is JSON");
    assert_eq!(dashboard["uid"], "slipway-overview");
    let tests = yaml(&read(RULE_TESTS));
    let evaluated: BTreeSet<&str> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["promql_expr_test"].as_array().into_iter().flatten())
        .filter(|t| t["exp_samples"].as_array().is_some_and(|s| !s.is_empty()))
        .filter_map(|t| t["expr"].as_str())
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id reused"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: the dashboard's data source variable"
        );
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {title:?} has no query"));
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title:?}: empty query");
            assert!(
                evaluated.contains(expr),
                "panel {title:?}: its query is not a promql_expr_test (with samples) of \
                 {RULE_TESTS}: {expr}"
            );
            queries += 1;
        }
    }
    assert!(queries >= 10, "a dashboard with {queries} queries");
}

/// Every `.rs` file under `dir`, as one text.
fn sources(dir: &std::path::Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

/// The `slipway_*` metric names a query reads; a summary's `_sum` and `_count` series are its
/// metric's.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("slipway_"))
        .map(|t| {
            ["_sum", "_count", "_bucket"]
                .iter()
                .find_map(|s| t.strip_suffix(s).filter(|m| m.ends_with("_seconds")))
                .unwrap_or(t)
                .to_owned()
        })
        .collect()
}

/// The alerts and the dashboard read only metrics the binaries export: each name is a string
/// literal in crates/. A metric renamed in the code fails here, not silently in production
/// (the unit tests feed their own series, so they would not notice).
#[test]
fn alerts_and_dashboard_read_only_metrics_the_code_exports() {
    let mut code = String::new();
    sources(&repo_root().join("crates"), &mut code);
    let mut exprs: Vec<String> = alerts(&yaml(&read(RULES)))
        .into_iter()
        .map(|a| a["expr"].as_str().unwrap_or_default().to_owned())
        .collect();
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard.json is JSON");
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap_or_default().to_owned());
        }
    }
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(names.len() >= 15, "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !code.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics the alerts or the dashboard read but no crate exports: {missing:?}"
    );
}
