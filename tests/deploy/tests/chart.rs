//! The Helm chart, rendered with the minikube defaults, the production example and every option
//! on: `helm lint --strict`, strict validation of every document against the Kubernetes 1.33
//! schemas, least-privilege RBAC, references that line up (accounts, ConfigMaps, Secrets,
//! selectors, ports, scale targets), secrets kept out of ConfigMaps and default values, KEDA
//! ScaledObjects on the right queues, and pods that run non-root with probes on their port.
//!
//! Needs Helm (`make tools`); skips without it unless `SLIPWAY_REQUIRE_HELM` is set (CI).

use serde_json::Value;
use slipway_deploy_tests::chart::{
    self, DEFAULT, EVERYTHING, Install, NAMESPACE, PRODUCTION, find, of_kind,
};
use slipway_deploy_tests::{helm, read, schema};
use std::collections::{BTreeMap, BTreeSet};

const INSTALLS: [Install<'static>; 3] = [DEFAULT, PRODUCTION, EVERYTHING];
const COMPONENTS: [&str; 4] = ["api", "worker-build", "worker-launch", "worker-cleanup"];
const WORKERS: [(&str, &str); 3] = [
    ("worker-build", "build"),
    ("worker-launch", "launch"),
    ("worker-cleanup", "cleanup"),
];
const BUILD_NAMESPACE: &str = "slipway-builds";
/// Variables that hold secrets: only ever read from Secrets.
const SECRET_VARS: [&str; 6] = [
    "SLIPWAY_DATABASE_URL",
    "SLIPWAY_REDIS_URL",
    "SLIPWAY_API_TOKENS",
    "SLIPWAY_GITHUB_WEBHOOK_SECRET",
    "SLIPWAY_GITHUB_TOKEN",
    "SLIPWAY_TOKEN",
];

fn deployment<'a>(docs: &'a [Value], component: &str) -> &'a Value {
    find(docs, "Deployment", &format!("slipway-{component}"))
        .unwrap_or_else(|| panic!("no Deployment slipway-{component}"))
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn helm_lint_strict_passes() {
    let Some(helm) = helm() else { return };
    for install in INSTALLS {
        if let Err(e) = chart::lint_strict(&helm, &install) {
            panic!("helm lint --strict ({}):\n{e}", install.name);
        }
    }
}

#[test]
fn every_rendered_document_passes_strict_1_33_schemas() {
    let Some(helm) = helm() else { return };
    if !schema::validator_available() {
        return;
    }
    for install in INSTALLS {
        let docs = chart::render_ok(&helm, &install);
        // KEDA's ScaledObject and TriggerAuthentication are custom resources: no Kubernetes
        // schema covers them (the validator would only warn). They are checked field by field
        // in `keda_scales_each_worker_on_its_queue` instead; everything else is validated.
        let (keda, kube): (Vec<Value>, Vec<Value>) = docs.into_iter().partition(chart::is_keda);
        assert!(
            keda.iter()
                .all(|d| ["ScaledObject", "TriggerAuthentication"]
                    .contains(&d["kind"].as_str().unwrap_or_default())),
            "only KEDA's two kinds skip schema validation"
        );
        if let Err(report) = schema::validate_strict(&kube) {
            panic!("{}: strict 1.33 validation failed:\n{report}", install.name);
        }
    }
}

/// (scope, apiGroup, resource, verb): scope is "cluster" or the namespace of a Role.
type Grant = (String, String, String, String);

fn grants(spec: &[(&str, &str, &[&str], &[&str])]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (scope, group, resources, verbs) in spec {
        for r in *resources {
            for v in *verbs {
                out.insert(((*scope).into(), (*group).into(), (*r).into(), (*v).into()));
            }
        }
    }
    out
}

/// What each worker's code calls (see the comment at the top of templates/rbac.yaml for the
/// call sites), and nothing more.
fn expected_grants(component: &str) -> BTreeSet<Grant> {
    let b = BUILD_NAMESPACE;
    match component {
        "worker-build" => grants(&[
            (b, "batch", &["jobs"], &["create", "get", "list", "delete"]),
            (b, "", &["pods"], &["get", "list", "watch"]),
            (b, "", &["pods/log"], &["get"]),
            (b, "", &["events"], &["list"]),
            (
                b,
                "networking.k8s.io",
                &["networkpolicies"],
                &["create", "patch"],
            ),
            // Only to mask a build's secrets in its log; see build_secrets_are_one_list.
            (b, "", &["secrets"], &["get"]),
        ]),
        "worker-launch" => grants(&[
            (
                "cluster",
                "",
                &["namespaces", "resourcequotas", "limitranges", "services"],
                &["create", "patch"],
            ),
            (
                "cluster",
                "networking.k8s.io",
                &["networkpolicies", "ingresses"],
                &["create", "patch"],
            ),
            // A `helm` preview's chart: exactly the kinds crates/worker-launch/src/helm.rs
            // ALLOWED_KINDS lets it hold (see launch_rights_match_the_helm_allow_list).
            (
                "cluster",
                "",
                &["serviceaccounts", "configmaps", "persistentvolumeclaims"],
                &["create", "patch"],
            ),
            (
                "cluster",
                "apps",
                &["deployments", "statefulsets"],
                &["create", "patch", "get", "list", "watch"],
            ),
            ("cluster", "apps", &["replicasets"], &["list"]),
            ("cluster", "", &["pods"], &["list", "watch"]),
            ("cluster", "", &["pods/log"], &["get"]),
            ("cluster", "", &["events"], &["list"]),
            ("cluster", "cert-manager.io", &["certificates"], &["get"]),
        ]),
        "worker-cleanup" => grants(&[
            ("cluster", "", &["namespaces"], &["get", "list", "delete"]),
            ("cluster", "", &["resourcequotas"], &["get"]),
            ("cluster", "metrics.k8s.io", &["pods"], &["list"]),
            (b, "batch", &["jobs"], &["get", "list", "delete"]),
            (b, "", &["pods"], &["get", "list", "delete"]),
        ]),
        _ => BTreeSet::new(),
    }
}

/// The launch worker may apply exactly the kinds a `helm` preview's chart may hold (its
/// allow-list) besides the objects every preview has: no kind the worker would refuse is
/// granted, none it accepts is missing.
#[test]
fn launch_rights_match_the_helm_allow_list() {
    let frame: BTreeSet<(&str, &str)> = [
        ("", "namespaces"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        // Slipway's own single-container preview.
        ("", "services"),
        ("apps", "deployments"),
    ]
    .into();
    let chart: BTreeSet<(&str, &str)> = slipway_worker_launch::helm::ALLOWED_KINDS
        .iter()
        .map(|k| (k.group, k.plural))
        .collect();
    let want: BTreeSet<(&str, &str)> = frame.union(&chart).copied().collect();
    for verb in ["create", "patch"] {
        let granted: BTreeSet<(String, String)> = expected_grants("worker-launch")
            .into_iter()
            .filter(|(scope, _, _, v)| scope == "cluster" && v == verb)
            .map(|(_, g, r, _)| (g, r))
            .collect();
        let want: BTreeSet<(String, String)> = want
            .iter()
            .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
            .collect();
        assert_eq!(granted, want, "worker-launch's {verb} rights");
    }
}

#[test]
fn rbac_is_least_privilege() {
    let Some(helm) = helm() else { return };
    const FORBIDDEN_VERBS: [&str; 4] = ["escalate", "bind", "impersonate", "deletecollection"];
    const FORBIDDEN_RESOURCES: [&str; 7] = [
        "secrets",
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "serviceaccounts",
        "serviceaccounts/token",
    ];
    for install in INSTALLS {
        let docs = chart::render_ok(&helm, &install);
        let ctx = install.name;
        let mut granted: BTreeMap<String, BTreeSet<Grant>> = BTreeMap::new();
        let mut bound_roles = BTreeSet::new();
        for binding in docs
            .iter()
            .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
        {
            let (bkind, bns, bname) = chart::id(binding);
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            assert!(
                !["cluster-admin", "admin", "edit", "view"].contains(&role_name),
                "{ctx}: {bkind} {bname} binds the built-in role {role_name}"
            );
            if bkind == "ClusterRoleBinding" {
                assert_eq!(role_kind, "ClusterRole", "{ctx}: {bname}");
            } else {
                assert_eq!(
                    role_kind, "Role",
                    "{ctx}: {bname} binds a Role of its namespace"
                );
            }
            let role = docs
                .iter()
                .find(|d| {
                    d["kind"] == role_kind
                        && d["metadata"]["name"] == role_name
                        && (role_kind == "ClusterRole"
                            || d["metadata"]["namespace"] == bns.as_str())
                })
                .unwrap_or_else(|| {
                    panic!("{ctx}: {bname} binds {role_kind} {role_name}, not rendered")
                });
            bound_roles.insert(chart::id(role));
            let scope = if role_kind == "ClusterRole" {
                "cluster".to_owned()
            } else {
                bns.clone()
            };
            let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
            assert_eq!(subjects.len(), 1, "{ctx}: {bname} binds one account");
            let s = &subjects[0];
            assert_eq!(s["kind"], "ServiceAccount", "{ctx}: {bname}");
            assert_eq!(s["namespace"], NAMESPACE, "{ctx}: {bname}");
            let sa = s["name"].as_str().unwrap_or_default();
            assert!(
                find(&docs, "ServiceAccount", sa).is_some(),
                "{ctx}: {bname} binds {sa}, not rendered"
            );
            let component = sa.strip_prefix("slipway-").unwrap_or(sa).to_owned();
            for rule in role["rules"].as_array().into_iter().flatten() {
                assert!(
                    rule.get("nonResourceURLs").is_none(),
                    "{ctx}: {role_name}: no non-resource URLs"
                );
                let list = |k: &str| -> Vec<String> {
                    rule[k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| v.as_str().unwrap_or_default().to_owned())
                        .collect()
                };
                let (groups, resources, verbs) =
                    (list("apiGroups"), list("resources"), list("verbs"));
                // The one exception to "no Secrets": the build worker's get of build Secrets
                // in the build namespace, to mask them (the only rule with resourceNames).
                let build_secrets = component == "worker-build"
                    && scope == BUILD_NAMESPACE
                    && resources == ["secrets"]
                    && verbs == ["get"];
                assert!(
                    rule.get("resourceNames").is_none() || build_secrets,
                    "{ctx}: {role_name}: unexpected resourceNames"
                );
                for x in groups.iter().chain(&resources).chain(&verbs) {
                    assert!(
                        !x.contains('*'),
                        "{ctx}: {role_name} has a wildcard: {rule}"
                    );
                }
                for verb in &verbs {
                    assert!(
                        !FORBIDDEN_VERBS.contains(&verb.as_str()),
                        "{ctx}: {role_name}: {verb}"
                    );
                }
                // The other exception: a `helm` preview's chart may hold ServiceAccounts
                // (without rights: no RBAC), which the launch worker applies; never tokens.
                let chart_accounts = |res: &str| {
                    component == "worker-launch"
                        && res == "serviceaccounts"
                        && verbs.iter().all(|v| v == "create" || v == "patch")
                };
                for res in resources.iter().filter(|_| !build_secrets) {
                    assert!(
                        !FORBIDDEN_RESOURCES.contains(&res.as_str()) || chart_accounts(res),
                        "{ctx}: {role_name} grants access to {res}"
                    );
                }
                let mine = granted.entry(component.clone()).or_default();
                for group in &groups {
                    for res in &resources {
                        for verb in &verbs {
                            mine.insert((scope.clone(), group.clone(), res.clone(), verb.clone()));
                        }
                    }
                }
            }
        }
        for role in docs
            .iter()
            .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        {
            assert!(
                bound_roles.contains(&chart::id(role)),
                "{ctx}: {:?} is bound to nothing",
                chart::id(role)
            );
            if role["kind"] == "Role" {
                assert_eq!(
                    role["metadata"]["namespace"], BUILD_NAMESPACE,
                    "{ctx}: Roles exist only in the build namespace"
                );
            }
        }
        for component in COMPONENTS {
            let got = granted.remove(component).unwrap_or_default();
            let want = expected_grants(component);
            let extra: Vec<_> = got.difference(&want).collect();
            let missing: Vec<_> = want.difference(&got).collect();
            assert!(
                extra.is_empty() && missing.is_empty(),
                "{ctx}: {component}'s rights differ from what its code calls.\n  more than needed: \
                 {extra:?}\n  missing: {missing:?}"
            );
        }
        assert!(
            granted.is_empty(),
            "{ctx}: rights for unexpected accounts: {granted:?}"
        );

        // The API has no Kubernetes access at all: no token in its pods either.
        let api_sa =
            find(&docs, "ServiceAccount", "slipway-api").expect("ServiceAccount slipway-api");
        assert_eq!(api_sa["automountServiceAccountToken"], false, "{ctx}");
        let api = deployment(&docs, "api");
        assert_eq!(
            api["spec"]["template"]["spec"]["automountServiceAccountToken"], false,
            "{ctx}"
        );
        for d in of_kind(&docs, "Deployment") {
            let sa = d["spec"]["template"]["spec"]["serviceAccountName"].as_str();
            let automount = &d["spec"]["template"]["spec"]["automountServiceAccountToken"];
            if sa.is_none_or(|sa| sa == "slipway-api") {
                assert_eq!(
                    automount, false,
                    "{ctx}: {} needs no token",
                    d["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn references_line_up() {
    let Some(helm) = helm() else { return };
    for install in INSTALLS {
        let docs = chart::render_ok(&helm, &install);
        let ctx = install.name;
        let externals = install.existing_secrets;
        let namespaces: BTreeSet<String> = of_kind(&docs, "Namespace")
            .map(|n| {
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .chain([NAMESPACE.to_owned()])
            .collect();
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
        for d in &docs {
            let (kind, ns, name) = chart::id(d);
            if cluster_scoped.contains(&kind.as_str()) {
                assert!(ns.is_empty(), "{ctx}: {kind} {name} is cluster-scoped");
            } else {
                assert!(
                    namespaces.contains(&ns),
                    "{ctx}: {kind} {name} is in namespace {ns:?}, which is neither the release's nor rendered"
                );
            }
        }
        let in_ns = |kind: &str, ns: &str, name: &str| {
            docs.iter().find(|d| {
                d["kind"] == kind
                    && d["metadata"]["namespace"] == ns
                    && d["metadata"]["name"] == name
            })
        };
        let secret_has = |name: &str, key: &str| -> bool {
            match in_ns("Secret", NAMESPACE, name) {
                Some(s) => s["data"].get(key).is_some(),
                None => externals.contains(&name),
            }
        };

        let deployments: Vec<&Value> = of_kind(&docs, "Deployment").collect();
        for d in &deployments {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let pod = &d["spec"]["template"];
            let labels = str_map(&pod["metadata"]["labels"]);
            assert!(
                matches(&str_map(&d["spec"]["selector"]["matchLabels"]), &labels),
                "{ctx}: Deployment {name}'s selector does not select its pods"
            );
            let spec = &pod["spec"];
            if let Some(sa) = spec["serviceAccountName"].as_str() {
                assert!(
                    in_ns("ServiceAccount", NAMESPACE, sa).is_some(),
                    "{ctx}: {name} runs as {sa}, not rendered"
                );
            }
            for c in spec["containers"].as_array().into_iter().flatten() {
                for from in c["envFrom"].as_array().into_iter().flatten() {
                    let cm = from["configMapRef"]["name"].as_str().unwrap_or_default();
                    assert!(
                        in_ns("ConfigMap", NAMESPACE, cm).is_some(),
                        "{ctx}: {name} reads ConfigMap {cm}, not rendered"
                    );
                }
                for env in c["env"].as_array().into_iter().flatten() {
                    if let Some(r) = env["valueFrom"].get("secretKeyRef") {
                        let (s, k) = (
                            r["name"].as_str().unwrap_or_default(),
                            r["key"].as_str().unwrap_or_default(),
                        );
                        assert!(
                            secret_has(s, k),
                            "{ctx}: {name} reads key {k} of Secret {s}: neither rendered with it nor an existingSecret"
                        );
                    }
                }
                let ports: BTreeSet<&str> = c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                    for port in [&c[probe]["httpGet"]["port"], &c[probe]["tcpSocket"]["port"]] {
                        if let Some(p) = port.as_str() {
                            assert!(
                                ports.contains(p),
                                "{ctx}: {name}'s {probe} uses port {p}, which it does not declare"
                            );
                        }
                    }
                }
            }
            for v in spec["volumes"].as_array().into_iter().flatten() {
                if let Some(s) = v["secret"]["secretName"].as_str() {
                    for item in v["secret"]["items"].as_array().into_iter().flatten() {
                        let k = item["key"].as_str().unwrap_or_default();
                        assert!(
                            secret_has(s, k),
                            "{ctx}: {name} mounts key {k} of Secret {s}"
                        );
                    }
                }
                if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                    assert!(
                        in_ns("PersistentVolumeClaim", NAMESPACE, c).is_some(),
                        "{ctx}: {name} mounts claim {c}"
                    );
                }
            }
        }
        let selected = |selector: &BTreeMap<String, String>| -> Vec<&Value> {
            deployments
                .iter()
                .copied()
                .filter(|d| {
                    matches(
                        selector,
                        &str_map(&d["spec"]["template"]["metadata"]["labels"]),
                    )
                })
                .collect()
        };
        for svc in of_kind(&docs, "Service") {
            let name = svc["metadata"]["name"].as_str().unwrap_or_default();
            let targets = selected(&str_map(&svc["spec"]["selector"]));
            assert_eq!(
                targets.len(),
                1,
                "{ctx}: Service {name} selects {} Deployments",
                targets.len()
            );
            let ports: BTreeSet<&str> = targets[0]["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .filter_map(|p| p["name"].as_str())
                .collect();
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let target = p["targetPort"].as_str().unwrap_or_default();
                assert!(
                    ports.contains(target),
                    "{ctx}: Service {name} targets port {target}, not declared by its pods"
                );
            }
        }
        for pdb in of_kind(&docs, "PodDisruptionBudget") {
            let name = pdb["metadata"]["name"].as_str().unwrap_or_default();
            assert_eq!(
                selected(&str_map(&pdb["spec"]["selector"]["matchLabels"])).len(),
                1,
                "{ctx}: PDB {name}"
            );
        }
        for ing in of_kind(&docs, "Ingress") {
            for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
                for path in rule["http"]["paths"].as_array().into_iter().flatten() {
                    let svc_name = path["backend"]["service"]["name"]
                        .as_str()
                        .unwrap_or_default();
                    let port = path["backend"]["service"]["port"]["name"]
                        .as_str()
                        .unwrap_or_default();
                    let svc = in_ns("Service", NAMESPACE, svc_name).unwrap_or_else(|| {
                        panic!("{ctx}: Ingress backend {svc_name} not rendered")
                    });
                    assert!(
                        svc["spec"]["ports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| p["name"] == port),
                        "{ctx}: Ingress uses port {port} of {svc_name}"
                    );
                }
            }
        }
        for scaler in docs
            .iter()
            .filter(|d| d["kind"] == "HorizontalPodAutoscaler" || d["kind"] == "ScaledObject")
        {
            let target = scaler["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .unwrap_or_default();
            let d = in_ns("Deployment", NAMESPACE, target).unwrap_or_else(|| {
                panic!("{ctx}: {} scales {target}, not rendered", scaler["kind"])
            });
            assert!(
                d["spec"].get("replicas").is_none(),
                "{ctx}: {target} is autoscaled, so the chart must not set its replicas"
            );
        }
        for so in of_kind(&docs, "ScaledObject") {
            if let Some(auth) = so["spec"]["triggers"][0]["authenticationRef"]["name"].as_str() {
                assert!(
                    in_ns("TriggerAuthentication", NAMESPACE, auth).is_some(),
                    "{ctx}: {auth}"
                );
            }
        }
        for ta in of_kind(&docs, "TriggerAuthentication") {
            for r in ta["spec"]["secretTargetRef"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let (s, k) = (
                    r["name"].as_str().unwrap_or_default(),
                    r["key"].as_str().unwrap_or_default(),
                );
                assert!(secret_has(s, k), "{ctx}: KEDA reads key {k} of Secret {s}");
            }
        }
    }
}

#[test]
fn secrets_never_reach_configmaps_or_default_values() {
    let Some(helm) = helm() else { return };
    // values.yaml holds no secret: every secret value and password is empty by default.
    let values: Value = chart::parse_documents(&read("deploy/helm/slipway/values.yaml")).remove(0);
    for (entry, e) in values["secrets"].as_object().expect("secrets") {
        assert_eq!(
            e["value"], "",
            "values.yaml: secrets.{entry}.value must be empty by default"
        );
    }
    assert_eq!(
        values["postgresql"]["password"], "",
        "values.yaml: no default Postgres password"
    );
    let production: Value =
        chart::parse_documents(&read("deploy/helm/slipway/values-production.yaml")).remove(0);
    for (entry, e) in production["secrets"].as_object().expect("secrets") {
        assert!(
            e.get("value").is_none(),
            "values-production.yaml: secrets.{entry} comes from an existingSecret"
        );
    }

    for install in INSTALLS {
        let docs = chart::render_ok(&helm, &install);
        for cm in of_kind(&docs, "ConfigMap") {
            for key in str_map(&cm["data"]).keys() {
                assert!(
                    !SECRET_VARS.contains(&key.as_str()),
                    "{}: {key} in ConfigMap {}",
                    install.name,
                    cm["metadata"]["name"]
                );
            }
        }
        for d in of_kind(&docs, "Deployment") {
            for c in d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let env: Vec<&Value> = c["env"].as_array().into_iter().flatten().collect();
                for (i, e) in env.iter().enumerate() {
                    let name = e["name"].as_str().unwrap_or_default();
                    // The in-chart Redis' URL is composed by the kubelet from REDIS_PASSWORD,
                    // defined before it from a Secret (dependent environment variables).
                    let composed = name == "SLIPWAY_REDIS_URL"
                        && e["value"]
                            .as_str()
                            .is_some_and(|v| v.starts_with("redis://:$(REDIS_PASSWORD)@"))
                        && env[..i].iter().any(|p| {
                            p["name"] == "REDIS_PASSWORD"
                                && p["valueFrom"]["secretKeyRef"]["name"].is_string()
                        });
                    if (SECRET_VARS.contains(&name)
                        || ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "REDISCLI_AUTH"].contains(&name))
                        && !composed
                    {
                        assert!(
                            e.get("value").is_none(),
                            "{}: {name} must come from a Secret",
                            install.name
                        );
                    }
                }
            }
        }
    }
    // A secret put among plain settings is refused, and the required URLs are required.
    let refused = chart::render(
        &helm,
        &Install::defaults_with(
            "token in settings",
            &[r#"api.settings.SLIPWAY_API_TOKENS="a:read:0123456789abcdef""#],
        ),
    )
    .expect_err("a secret in a ConfigMap setting must fail the render");
    assert!(
        refused.contains("a secret never goes into a ConfigMap"),
        "{refused}"
    );
    let missing = chart::render(
        &helm,
        &Install::defaults_with("no database", &["postgresql.enabled=false"]),
    )
    .expect_err("no database URL must fail the render");
    assert!(
        missing.contains("secrets.databaseUrl is required"),
        "{missing}"
    );
    let owned = chart::render(
        &helm,
        &Install::defaults_with(
            "owned setting",
            &[r#"workerBuild.settings.SLIPWAY_BUILD_NAMESPACE="x""#],
        ),
    )
    .expect_err("a chart-owned setting in settings must fail the render");
    assert!(
        owned.contains("is set by the chart from its typed values"),
        "{owned}"
    );
}

#[test]
fn keda_scales_each_worker_on_its_queue() {
    let Some(helm) = helm() else { return };
    let docs = chart::render_ok(&helm, &EVERYTHING);
    let redis_address = format!("slipway-redis.{NAMESPACE}.svc:6379");
    assert!(find(&docs, "Service", "slipway-redis").is_some());
    for (component, queue) in WORKERS {
        let name = format!("slipway-{component}");
        let so = of_kind(&docs, "ScaledObject")
            .find(|s| s["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no ScaledObject {name}"));
        assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
        assert_eq!(so["spec"]["scaleTargetRef"]["name"], name.as_str());
        let (min, max) = (
            &so["spec"]["minReplicaCount"],
            &so["spec"]["maxReplicaCount"],
        );
        assert!(
            min.as_u64() >= Some(1) && min.as_u64() <= max.as_u64(),
            "{name}: {min}..{max}"
        );
        let triggers = so["spec"]["triggers"].as_array().expect("triggers");
        assert_eq!(triggers.len(), 1);
        let t = &triggers[0];
        assert_eq!(t["type"], "redis");
        assert_eq!(
            t["metadata"]["listName"],
            format!("slipway:{queue}:wait"),
            "{name}: BullMQ's wait list"
        );
        assert_eq!(t["metadata"]["address"], redis_address.as_str());
        assert!(
            t["metadata"]["listLength"]
                .as_str()
                .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
        );
        assert_eq!(t["authenticationRef"]["name"], "slipway-keda-redis");
        assert!(
            find(&docs, "HorizontalPodAutoscaler", &name).is_none(),
            "{name}: KEDA owns its HPA"
        );
    }
    let auth =
        find(&docs, "TriggerAuthentication", "slipway-keda-redis").expect("TriggerAuthentication");
    assert_eq!(auth["spec"]["secretTargetRef"][0]["parameter"], "password");

    let prefixed = chart::render_ok(
        &helm,
        &Install::defaults_with(
            "queue prefix",
            &[
                "workerLaunch.keda.enabled=true",
                r#"config.queuePrefix="team-a""#,
            ],
        ),
    );
    let so = find(&prefixed, "ScaledObject", "slipway-worker-launch").expect("ScaledObject");
    assert_eq!(
        so["spec"]["triggers"][0]["metadata"]["listName"],
        "team-a:launch:wait"
    );
    // The in-chart Redis has a password: KEDA reads it from the chart's Secret.
    let auth = find(&prefixed, "TriggerAuthentication", "slipway-keda-redis")
        .expect("KEDA authenticates to the in-chart Redis");
    assert_eq!(
        auth["spec"]["secretTargetRef"][0],
        serde_json::json!({"parameter": "password", "name": "slipway-redis", "key": "password"})
    );
    let external = chart::render_ok(
        &helm,
        &Install::defaults_with(
            "keda on an external Redis without a password",
            &[
                "workerLaunch.keda.enabled=true",
                "redis.enabled=false",
                r#"secrets.redisUrl.value="redis://r:6379""#,
                r#"keda.redis.address="r:6379""#,
            ],
        ),
    );
    assert!(
        find(&external, "TriggerAuthentication", "slipway-keda-redis").is_none(),
        "no password, no TriggerAuthentication"
    );

    let both = chart::render(
        &helm,
        &Install::defaults_with(
            "hpa and keda",
            &[
                "workerBuild.keda.enabled=true",
                "workerBuild.autoscaling.enabled=true",
            ],
        ),
    )
    .expect_err("an HPA and a ScaledObject on one Deployment must fail the render");
    assert!(both.contains("choose one"), "{both}");
    let nowhere = chart::render(
        &helm,
        &Install::defaults_with(
            "keda without redis",
            &[
                "workerBuild.keda.enabled=true",
                "redis.enabled=false",
                r#"secrets.redisUrl.value="redis://r:6379""#,
            ],
        ),
    )
    .expect_err("KEDA needs a Redis address");
    assert!(
        nowhere.contains("keda.redis.address is required"),
        "{nowhere}"
    );
}

/// The settings a component's container sees from its ConfigMap.
fn settings(docs: &[Value], component: &str) -> BTreeMap<String, String> {
    let cm = find(docs, "ConfigMap", &format!("slipway-{component}"))
        .unwrap_or_else(|| panic!("no ConfigMap slipway-{component}"));
    str_map(&cm["data"])
}

#[test]
fn components_run_non_root_read_only_with_probes_on_their_port() {
    let Some(helm) = helm() else { return };
    for install in INSTALLS {
        let docs = chart::render_ok(&helm, &install);
        let ctx = install.name;
        for component in COMPONENTS {
            let d = deployment(&docs, component);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"], true,
                "{ctx}: {component}"
            );
            assert_ne!(pod["securityContext"]["runAsUser"], 0, "{ctx}: {component}");
            let containers = pod["containers"].as_array().expect("containers");
            assert_eq!(containers.len(), 1, "{ctx}: {component}");
            let c = &containers[0];
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{ctx}: {component}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{ctx}: {component}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{ctx}: {component}"
            );
            let image = c["image"].as_str().unwrap_or_default();
            assert!(
                image
                    .rsplit('/')
                    .next()
                    .is_some_and(|i| i.starts_with(&format!("slipway-{component}:"))),
                "{ctx}: {component} runs image {image}"
            );

            // The port it listens on (SLIPWAY_LISTEN) is the port it declares, probes and
            // advertises for scraping.
            let s = settings(&docs, component);
            let listen = s.get("SLIPWAY_LISTEN").expect("SLIPWAY_LISTEN");
            let port: u64 = listen
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port");
            assert!(
                listen.starts_with("0.0.0.0:"),
                "{ctx}: {component} listens on all interfaces"
            );
            let declared = &c["ports"][0];
            assert_eq!(declared["containerPort"], port, "{ctx}: {component}");
            let port_name = declared["name"].as_str().expect("port name");
            for (probe, path) in [
                ("startupProbe", "/healthz"),
                ("livenessProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
            ] {
                assert_eq!(
                    c[probe]["httpGet"]["path"], path,
                    "{ctx}: {component} {probe}"
                );
                assert_eq!(
                    c[probe]["httpGet"]["port"], port_name,
                    "{ctx}: {component} {probe}"
                );
            }
            let annotations = &d["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                annotations["prometheus.io/port"],
                port.to_string(),
                "{ctx}: {component}"
            );
            assert_eq!(
                annotations["prometheus.io/path"], "/metrics",
                "{ctx}: {component}"
            );

            // Workers get time to finish or hand back running jobs: their runtime's shutdown
            // bound (the grace period plus 11 s), with a margin.
            if component != "api" {
                let grace: f64 = s
                    .get("SLIPWAY_GRACE_PERIOD_SECS")
                    .map_or(30.0, |g| g.parse().expect("a number"));
                let termination = pod["terminationGracePeriodSeconds"]
                    .as_f64()
                    .expect("terminationGracePeriodSeconds");
                // `slipway_shared::runtime::shutdown_bound` (pinned by its unit test).
                let bound = grace + 11.0;
                assert!(
                    termination >= bound + 5.0,
                    "{ctx}: {component} is killed after {termination} s, it stops within {bound} s"
                );
            }
        }
    }
}

#[test]
fn the_build_namespace_admits_rootless_buildkit_and_is_never_cleanup_s() {
    let Some(helm) = helm() else { return };
    for install in INSTALLS {
        let docs = chart::render_ok(&helm, &install);
        let ns = find(&docs, "Namespace", BUILD_NAMESPACE).expect("the build namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
        for component in ["worker-build", "worker-cleanup"] {
            assert_eq!(
                settings(&docs, component)["SLIPWAY_BUILD_NAMESPACE"],
                BUILD_NAMESPACE
            );
        }
        // The cleanup worker deletes namespaces labelled managed-by=slipway: nothing of the
        // chart's may carry that label.
        for d in &docs {
            assert_ne!(
                d["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "slipway",
                "{}: {:?} would be deleted by the cleanup worker",
                install.name,
                chart::id(d)
            );
        }
    }
}

#[test]
fn minikube_defaults_match_the_registry_and_ingress_addons() {
    let Some(helm) = helm() else { return };
    let docs = chart::render_ok(&helm, &DEFAULT);
    let build = settings(&docs, "worker-build");
    assert_eq!(
        build["SLIPWAY_REGISTRY_PUSH"],
        "registry.kube-system.svc.cluster.local:80"
    );
    assert_eq!(build["SLIPWAY_REGISTRY_PULL"], "localhost:5000");
    assert_eq!(build["SLIPWAY_REGISTRY_INSECURE"], "true");
    // BuildKit's state is bounded, so a big build is evicted instead of its node's neighbours.
    assert_eq!(build["SLIPWAY_BUILD_EPHEMERAL_STORAGE"], "20Gi");
    assert_eq!(build["SLIPWAY_BUILD_EPHEMERAL_STORAGE_REQUEST"], "2Gi");
    let launch = settings(&docs, "worker-launch");
    // minikube's `ingress` addon (ingress-nginx): IngressClass `nginx`, controller in
    // `ingress-nginx` (minikube deploy/addons/ingress/ingress-deploy.yaml.tmpl); released
    // minikube has no `traefik` addon.
    assert_eq!(launch["SLIPWAY_INGRESS_CLASS"], "nginx");
    assert_eq!(launch["SLIPWAY_INGRESS_NAMESPACE"], "ingress-nginx");
    // No CIDRs by default (an empty setting is left out: the binary's default, none).
    assert!(!launch.contains_key("SLIPWAY_INGRESS_CIDRS"));
    assert!(!launch.contains_key("SLIPWAY_DNS_EGRESS_CIDRS"));
    assert!(launch["SLIPWAY_PREVIEW_DOMAIN"].ends_with(".nip.io"));
    assert!(find(&docs, "Deployment", "slipway-postgresql").is_some());
    assert!(find(&docs, "Deployment", "slipway-redis").is_some());

    let prod = chart::render_ok(&helm, &PRODUCTION);
    assert!(
        find(&prod, "Deployment", "slipway-postgresql").is_none(),
        "no in-chart Postgres in production"
    );
    assert!(
        find(&prod, "Deployment", "slipway-redis").is_none(),
        "no in-chart Redis in production"
    );
    assert_eq!(
        settings(&prod, "worker-build")["SLIPWAY_REGISTRY_INSECURE"],
        "false"
    );
    let ing = find(&prod, "Ingress", "slipway-api").expect("the API's Ingress");
    assert!(
        ing["spec"]["tls"][0]["secretName"].is_string(),
        "production serves the API over TLS"
    );
}

#[test]
fn the_in_chart_redis_requires_a_password_kept_off_command_lines() {
    let Some(helm) = helm() else { return };
    let docs = chart::render_ok(&helm, &DEFAULT);
    // A generated password in its own Secret (kept across upgrades by `lookup`).
    let secret = find(&docs, "Secret", "slipway-redis").expect("Secret slipway-redis");
    let password = secret["data"]["password"].as_str().expect("a password");
    assert!(
        password.len() >= 40,
        "32 random characters, base64: {password}"
    );
    let redis = deployment(&docs, "redis");
    let c = &redis["spec"]["template"]["spec"]["containers"][0];
    let from_secret = |name: &str| {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["secretKeyRef"].clone())
    };
    let r = serde_json::json!({"name": "slipway-redis", "key": "password"});
    assert_eq!(from_secret("REDIS_PASSWORD"), Some(r.clone()));
    assert_eq!(from_secret("REDISCLI_AUTH"), Some(r), "probes authenticate");
    // redis-server reads `requirepass` from its standard input, filled by the shell from the
    // environment: no argument carries the password.
    let script = c["command"][2].as_str().expect("sh -c script");
    assert_eq!(c["command"][0], "sh");
    assert!(
        script.contains("exec redis-server - ") && script.contains("requirepass $REDIS_PASSWORD"),
        "{script}"
    );
    assert!(c.get("args").is_none());
    // redis-cli exits 0 on NOAUTH: readiness must see the PONG.
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        serde_json::json!(["sh", "-c", "redis-cli ping | grep -qx PONG"])
    );
    // Slipway's pods connect with the password: the kubelet composes the URL from it.
    for component in COMPONENTS {
        let env = deployment(&docs, component)["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
        let pw = names.iter().position(|n| *n == "REDIS_PASSWORD");
        let url = names.iter().position(|n| *n == "SLIPWAY_REDIS_URL");
        assert!(
            pw.is_some() && pw < url,
            "{component}: REDIS_PASSWORD is defined before SLIPWAY_REDIS_URL: {names:?}"
        );
        assert_eq!(
            env[url.unwrap()]["value"],
            format!("redis://:$(REDIS_PASSWORD)@slipway-redis.{NAMESPACE}.svc:6379"),
            "{component}"
        );
    }
    // No Secret holds a password-less Redis URL any more.
    for s in of_kind(&docs, "Secret") {
        assert!(
            s["data"].get("redis-url").is_none(),
            "{:?} holds a Redis URL",
            chart::id(s)
        );
    }

    // Or the operator's Secret: the chart renders none and everything reads theirs.
    let theirs = chart::render_ok(
        &helm,
        &Install {
            existing_secrets: &["my-redis"],
            ..Install::defaults_with(
                "existing Redis secret",
                &[
                    r#"redis.auth.existingSecret="my-redis""#,
                    r#"redis.auth.existingSecretKey="pw""#,
                ],
            )
        },
    );
    assert!(find(&theirs, "Secret", "slipway-redis").is_none());
    let c = &deployment(&theirs, "redis")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["valueFrom"]["secretKeyRef"]
                == serde_json::json!({"name": "my-redis", "key": "pw"}))
    );
}

/// The build Secrets are one list: the API refuses names outside it and the build worker's Role
/// may read only those (so nothing is accepted that the worker could not mask); without a list,
/// any name, and the Role reads Secrets of the build namespace only.
#[test]
fn build_secrets_are_one_list() {
    let Some(helm) = helm() else { return };
    let rule = |docs: &[Value]| -> Value {
        docs.iter()
            .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "slipway-worker-build")
            .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
            .find(|r| r["resources"] == serde_json::json!(["secrets"]))
            .expect("the build worker may get build Secrets")
    };
    let docs = chart::render_ok(&helm, &DEFAULT);
    let r = rule(&docs);
    assert_eq!(r["verbs"], serde_json::json!(["get"]));
    assert!(r.get("resourceNames").is_none(), "{r}");
    let role = find(&docs, "Role", "slipway-worker-build").unwrap();
    assert_eq!(role["metadata"]["namespace"], BUILD_NAMESPACE);
    // Empty values are left out: the binary's default (any name).
    assert!(!settings(&docs, "api").contains_key("SLIPWAY_BUILD_SECRET_NAMES"));
    let docs = chart::render_ok(&helm, &PRODUCTION);
    assert_eq!(
        rule(&docs)["resourceNames"],
        serde_json::json!(["git-token", "registry-push"])
    );
    assert_eq!(
        settings(&docs, "api")["SLIPWAY_BUILD_SECRET_NAMES"],
        "git-token,registry-push"
    );
}
