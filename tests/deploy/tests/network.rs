//! The chart's NetworkPolicies, checked two ways: structurally (the build namespace's policy is
//! exactly what `slipway_k8s::buildnet` builds from the build worker's rendered settings, so
//! the worker's re-apply never fights the chart), and by evaluating them with the simulator's
//! NetworkPolicy evaluator (`kube_sim::netpol`, upstream semantics cited there): who may reach
//! whom among build pods, preview pods, Slipway's components, its Postgres and Redis, cluster
//! DNS, the registry, the API server, the metadata endpoints and the internet.
//!
//! Addresses used: pods in 10.244.0.0/16 (minikube's pod CIDR, `pkg/minikube/cni/cni.go`),
//! Services in 10.96.0.0/12 (kubeadm's default; 10.96.0.1 is the `kubernetes` Service), the
//! minikube node 192.168.49.2 (API server on 8443), GitHub's 140.82.112.3 and
//! 2606:50c0:8000::153.
//!
//! Needs Helm (`make tools`); skips without it unless `SLIPWAY_REQUIRE_HELM` is set (CI).

use kube_sim::netpol::{Destination, Verdict, connection, egress, ingress_allowed};
use serde_json::{Value, json};
use slipway_deploy_tests::chart::{self, DEFAULT, EVERYTHING, Install, NAMESPACE, PRODUCTION};
use slipway_deploy_tests::helm;
use slipway_k8s::buildnet::{BuildNetworkParams, CidrList, build_network_policy};
use std::collections::BTreeMap;

const BUILDS: &str = "slipway-builds";

fn ns_labels(ns: &str) -> Value {
    json!({"kubernetes.io/metadata.name": ns})
}

fn settings(docs: &[Value], component: &str) -> BTreeMap<String, String> {
    let cm = chart::find(docs, "ConfigMap", &format!("slipway-{component}")).expect("ConfigMap");
    cm["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// What the build worker builds from its rendered settings (the same parsing as its flags).
fn worker_policy(docs: &[Value]) -> Value {
    let s = settings(docs, "worker-build");
    assert_eq!(s["SLIPWAY_BUILD_NETWORK_POLICY"], "true");
    let get = |k: &str| s.get(k).cloned().unwrap_or_default();
    let cidrs = |k: &str| get(k).parse::<CidrList>().expect(k).0;
    let params = BuildNetworkParams {
        namespace: s["SLIPWAY_BUILD_NAMESPACE"].clone(),
        deny_cidrs: cidrs("SLIPWAY_BUILD_DENY_CIDRS"),
        dns_egress_cidrs: cidrs("SLIPWAY_DNS_EGRESS_CIDRS"),
        registry_namespace: Some(get("SLIPWAY_BUILD_REGISTRY_NAMESPACE")).filter(|n| !n.is_empty()),
        registry_pod_labels: get("SLIPWAY_BUILD_REGISTRY_POD_LABELS")
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').expect("k=v");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        registry_cidrs: cidrs("SLIPWAY_BUILD_REGISTRY_CIDRS"),
    };
    serde_json::to_value(build_network_policy(&params)).unwrap()
}

fn policies(docs: &[Value]) -> Vec<&Value> {
    chart::of_kind(docs, "NetworkPolicy").collect()
}

/// A pod of one of the chart's Deployments: its template's labels and containers.
fn pod_of(docs: &[Value], deployment: &str) -> Value {
    let d = chart::find(docs, "Deployment", deployment).expect(deployment);
    json!({"metadata": {"name": deployment, "namespace": NAMESPACE,
            "labels": d["spec"]["template"]["metadata"]["labels"]},
        "spec": d["spec"]["template"]["spec"]})
}

/// A build pod as the build worker labels it.
fn build_pod() -> Value {
    let labels = slipway_core::naming::standard_labels(
        Some(uuid_nil()),
        Some(slipway_core::JobKind::Build),
        Some("org/app#1"),
    );
    json!({"metadata": {"name": "slipway-build-x-a1", "namespace": BUILDS, "labels": labels},
        "spec": {"containers": [{"name": "buildkit"}]}})
}

fn uuid_nil() -> slipway_core::JobId {
    "00000000-0000-0000-0000-000000000000".parse().unwrap()
}

fn coredns() -> Destination {
    let pod = json!({"metadata": {"name": "coredns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns"}},
        "spec": {"containers": [{"name": "coredns", "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]}]}});
    Destination::pod(&pod, ns_labels("kube-system"), "10.244.0.2")
}

/// minikube's registry addon pod (deploy/addons/registry/registry-rc.yaml.tmpl).
fn registry() -> Destination {
    let pod = json!({"metadata": {"name": "registry-x", "namespace": "kube-system",
            "labels": {"actual-registry": "true", "kubernetes.io/minikube-addons": "registry"}},
        "spec": {"containers": [{"name": "registry", "ports": [{"containerPort": 5000}]}]}});
    Destination::pod(&pod, ns_labels("kube-system"), "10.244.0.7")
}

fn slipway_pod(docs: &[Value], name: &str, ip: &str) -> Destination {
    Destination::pod(&pod_of(docs, name), ns_labels(NAMESPACE), ip)
}

#[test]
fn the_chart_installs_the_build_policy_the_worker_applies() {
    let Some(helm) = helm() else { return };
    for install in [DEFAULT, PRODUCTION, EVERYTHING] {
        let docs = chart::render_ok(&helm, &install);
        let ctx = install.name;
        let rendered = chart::of_kind(&docs, "NetworkPolicy")
            .find(|p| p["metadata"]["namespace"] == BUILDS)
            .unwrap_or_else(|| panic!("{ctx}: no NetworkPolicy in the build namespace"));
        let built = worker_policy(&docs);
        assert_eq!(
            rendered["metadata"]["name"], built["metadata"]["name"],
            "{ctx}"
        );
        assert_eq!(
            rendered["spec"], built["spec"],
            "{ctx}: the chart and the build worker disagree; they would overwrite each other"
        );
        // The worker's labels are a subset of the chart's, so its apply changes none.
        for (k, v) in built["metadata"]["labels"].as_object().unwrap() {
            assert_eq!(&rendered["metadata"]["labels"][k], v, "{ctx}: label {k}");
        }
    }
    // Turned off, neither the chart nor the worker manages it.
    let off = chart::render_ok(
        &helm,
        &Install::defaults_with(
            "no build policy",
            &["buildNamespace.networkPolicy.enabled=false"],
        ),
    );
    assert!(!chart::of_kind(&off, "NetworkPolicy").any(|p| p["metadata"]["namespace"] == BUILDS));
    assert_eq!(
        settings(&off, "worker-build")["SLIPWAY_BUILD_NETWORK_POLICY"],
        "false"
    );
}

#[test]
fn build_pods_reach_dns_the_registry_and_the_internet_only() {
    let Some(helm) = helm() else { return };
    let docs = chart::render_ok(&helm, &DEFAULT);
    let all = policies(&docs);
    let pod = build_pod();
    let ns = ns_labels(BUILDS);
    let at = |addr: &str, port: u16| egress(&all, &pod, &Destination::address(addr), port, "TCP");

    // Allowed: cluster DNS (both protocols), the registry's pod, GitHub over IPv4 and IPv6.
    for proto in ["UDP", "TCP"] {
        assert_eq!(
            egress(&all, &pod, &coredns(), 53, proto),
            Verdict::Allowed,
            "DNS {proto}"
        );
    }
    assert_eq!(
        connection(&all, &pod, &ns, "10.244.1.9", &registry(), 5000, "TCP"),
        Verdict::Allowed,
        "the registry"
    );
    assert_eq!(at("140.82.112.3", 443), Verdict::Allowed);
    assert_eq!(at("2606:50c0:8000::153", 443), Verdict::Allowed);

    // Denied: the metadata endpoints, pod and Service addresses, the API server (its
    // ClusterIP before DNAT, the node behind it after), other DNS servers, DNS on other ports.
    for (addr, port) in [
        ("169.254.169.254", 80),
        ("fd00:ec2::254", 80),
        ("10.244.3.9", 8080),
        ("10.96.0.1", 443),
        ("10.96.0.10", 53),
        ("192.168.49.2", 8443),
        ("172.17.0.1", 2375),
        ("100.64.0.10", 443),
        ("fd12:3456::1", 443),
        ("fe80::1", 443),
    ] {
        assert_eq!(at(addr, port), Verdict::Denied, "{addr}:{port}");
    }
    assert_eq!(egress(&all, &pod, &coredns(), 9153, "TCP"), Verdict::Denied);
    assert_eq!(
        egress(&all, &pod, &Destination::address("8.8.8.8"), 53, "UDP"),
        Verdict::Allowed,
        "a public resolver is on the internet"
    );

    // Other pods of kube-system than the registry and DNS, e.g. metrics-server.
    let metrics = json!({"metadata": {"name": "metrics-server", "namespace": "kube-system",
        "labels": {"k8s-app": "metrics-server"}}});
    assert_eq!(
        egress(
            &all,
            &pod,
            &Destination::pod(&metrics, ns_labels("kube-system"), "10.244.0.5"),
            4443,
            "TCP"
        ),
        Verdict::Denied
    );

    // Nothing may connect to a build pod, not even another build pod.
    let src = kube_sim::netpol::Source {
        namespace: BUILDS.into(),
        namespace_labels: ns.clone(),
        pod_labels: Some(pod["metadata"]["labels"].clone()),
        ip: Some("10.244.1.10".parse().unwrap()),
    };
    assert!(!ingress_allowed(&all, &pod, &src, 1234, "TCP"));

    // The one thing NetworkPolicy cannot deny: the pod's own node (kubelet, and on a single-node
    // cluster such as minikube the API server's host port). docs/network-policy.md says so.
    let own_node = Destination {
        node_local: true,
        ..Destination::address("192.168.49.2")
    };
    assert_eq!(egress(&all, &pod, &own_node, 8443, "TCP"), Verdict::Allowed);
}

/// A preview as the launch worker builds it (the chart's ingress namespace).
fn preview_params() -> slipway_k8s::preview::PreviewParams {
    use slipway_k8s::preview::{CpuMemory, PreviewParams, QuotaParams};
    let cpu_mem = |cpu: &str, memory: &str| CpuMemory {
        cpu: cpu.into(),
        memory: memory.into(),
    };
    PreviewParams {
        key: "org/app#42".into(),
        namespace: "slipway-pv-org-app-42-1a2b3c4d".into(),
        host: "pr-42-app.192.168.49.2.nip.io".into(),
        labels: slipway_core::naming::standard_labels(None, None, Some("org/app#42")),
        preview_label: slipway_core::naming::label_value("org/app#42"),
        image: "localhost:5000/org/app:0123456".into(),
        commit: None,
        port: 8080,
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
        replicas: 1,
        resources: cpu_mem("100m", "128Mi"),
        health_path: "/".into(),
        run_as_non_root: false,
        read_only_root_filesystem: false,
        tmp_size_limit: "256Mi".into(),
        progress_deadline_seconds: 300,
        ingress_class: Some("nginx".into()),
        tls: None,
        image_pull_secret: None,
        ingress_controller_namespace: "ingress-nginx".into(),
        allowed_egress_cidrs: vec![],
        dns_egress_cidrs: vec![],
        ingress_cidrs: vec![],
        pod_security_level: "baseline".into(),
        quota: QuotaParams {
            total: cpu_mem("2", "2Gi"),
            max_pods: 10,
            storage: "10Gi".into(),
            max_claims: 5,
            default_request: cpu_mem("100m", "128Mi"),
            default_limit: cpu_mem("500m", "512Mi"),
        },
    }
}

#[test]
fn nothing_in_slipways_namespace_is_reachable_from_builds_or_previews() {
    let Some(helm) = helm() else { return };
    let docs = chart::render_ok(&helm, &DEFAULT);
    let mut all = policies(&docs);
    let preview = preview_params();
    let preview_objects = slipway_k8s::preview::preview_objects(&preview);
    let preview_policies: Vec<Value> = preview_objects
        .network_policies
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    all.extend(preview_policies.iter());
    let deployment = serde_json::to_value(&preview_objects.deployment).unwrap();
    let preview_pod = json!({"metadata": {"name": "app-x", "namespace": preview.namespace,
        "labels": deployment["spec"]["template"]["metadata"]["labels"]}});
    let preview_ns = ns_labels(&preview.namespace);

    let targets = [
        ("slipway-redis", 6379),
        ("slipway-postgresql", 5432),
        ("slipway-api", 8080),
        ("slipway-worker-build", 9090),
    ];
    for (name, port) in targets {
        let to = slipway_pod(&docs, name, "10.244.0.30");
        for (from, from_ns, from_ip) in [
            (build_pod(), ns_labels(BUILDS), "10.244.1.9"),
            (preview_pod.clone(), preview_ns.clone(), "10.244.2.9"),
        ] {
            let who = from["metadata"]["namespace"].as_str().unwrap().to_owned();
            assert_eq!(
                connection(&all, &from, &from_ns, from_ip, &to, port, "TCP"),
                Verdict::Denied,
                "{who} -> {name}:{port}"
            );
            // Each end denies on its own: Slipway's ingress policy even against a sender
            // whose own namespace has no policy at all.
            let src = kube_sim::netpol::Source {
                namespace: who.clone(),
                namespace_labels: from_ns.clone(),
                pod_labels: Some(from["metadata"]["labels"].clone()),
                ip: Some(from_ip.parse().unwrap()),
            };
            assert!(
                !ingress_allowed(&all, to.pod.as_ref().unwrap(), &src, port, "TCP"),
                "{who} -> {name}:{port} (Slipway's ingress side)"
            );
        }
    }
    // The preview's own egress alone denies it too (default deny, DNS only).
    assert_eq!(
        egress(
            &all,
            &preview_pod,
            &slipway_pod(&docs, "slipway-redis", "10.244.0.30"),
            6379,
            "TCP"
        ),
        Verdict::Denied
    );
}

#[test]
fn slipways_components_reach_only_what_they_need() {
    let Some(helm) = helm() else { return };
    let docs = chart::render_ok(&helm, &DEFAULT);
    let all = policies(&docs);
    let ns = ns_labels(NAMESPACE);
    let redis = slipway_pod(&docs, "slipway-redis", "10.244.0.30");
    let postgres = slipway_pod(&docs, "slipway-postgresql", "10.244.0.31");
    let api = slipway_pod(&docs, "slipway-api", "10.244.0.32");
    for component in [
        "slipway-api",
        "slipway-worker-build",
        "slipway-worker-launch",
        "slipway-worker-cleanup",
    ] {
        let pod = pod_of(&docs, component);
        assert_eq!(
            connection(&all, &pod, &ns, "10.244.0.40", &redis, 6379, "TCP"),
            Verdict::Allowed,
            "{component} -> redis"
        );
        assert_eq!(
            connection(&all, &pod, &ns, "10.244.0.40", &postgres, 5432, "TCP"),
            Verdict::Allowed,
            "{component} -> postgres"
        );
        assert_eq!(
            egress(&all, &pod, &coredns(), 53, "UDP"),
            Verdict::Allowed,
            "{component} -> DNS"
        );
        // Not Redis on another port, not the internet.
        assert_eq!(
            connection(&all, &pod, &ns, "10.244.0.40", &redis, 6380, "TCP"),
            Verdict::Denied
        );
        assert_eq!(
            egress(&all, &pod, &Destination::address("140.82.112.3"), 80, "TCP"),
            Verdict::Denied
        );
        // The API server: the workers only (ports 443/6443/8443), never the API.
        let kube_api = egress(
            &all,
            &pod,
            &Destination::address("192.168.49.2"),
            8443,
            "TCP",
        );
        let want = if component == "slipway-api" {
            Verdict::Denied
        } else {
            Verdict::Allowed
        };
        assert_eq!(kube_api, want, "{component} -> the API server");
    }
    // The API is called through the ingress controller; Prometheus scrapes every component.
    let nginx = json!({"metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx",
        "labels": {"app.kubernetes.io/name": "ingress-nginx"}}});
    assert_eq!(
        connection(
            &all,
            &nginx,
            &ns_labels("ingress-nginx"),
            "10.244.0.50",
            &api,
            8080,
            "TCP"
        ),
        Verdict::Allowed
    );
    let prometheus = json!({"metadata": {"name": "prometheus-0", "namespace": "monitoring",
        "labels": {"app.kubernetes.io/name": "prometheus"}}});
    for (name, port) in [("slipway-api", 8080), ("slipway-worker-build", 9090)] {
        let to = slipway_pod(&docs, name, "10.244.0.33");
        assert_eq!(
            connection(
                &all,
                &prometheus,
                &ns_labels("monitoring"),
                "10.244.0.51",
                &to,
                port,
                "TCP"
            ),
            Verdict::Allowed,
            "scrape {name}"
        );
    }
    // Anyone else, in any namespace: nothing, and not Redis or Postgres from the ingress
    // controller or Prometheus either.
    let stranger =
        json!({"metadata": {"name": "x", "namespace": "default", "labels": {"app": "x"}}});
    for (to, port) in [(&api, 8080), (&redis, 6379), (&postgres, 5432)] {
        assert_eq!(
            connection(
                &all,
                &stranger,
                &ns_labels("default"),
                "10.244.0.52",
                to,
                port,
                "TCP"
            ),
            Verdict::Denied
        );
    }
    assert_eq!(
        connection(
            &all,
            &nginx,
            &ns_labels("ingress-nginx"),
            "10.244.0.50",
            &redis,
            6379,
            "TCP"
        ),
        Verdict::Denied
    );
    assert_eq!(
        connection(
            &all,
            &prometheus,
            &ns_labels("monitoring"),
            "10.244.0.51",
            &postgres,
            5432,
            "TCP"
        ),
        Verdict::Denied
    );
    // Postgres and Redis themselves call nothing.
    assert_eq!(
        egress(
            &all,
            redis.pod.as_ref().unwrap(),
            &Destination::address("140.82.112.3"),
            443,
            "TCP"
        ),
        Verdict::Denied
    );

    // With KEDA, its operator reads the in-chart Redis; with GitHub, the API calls out on 443.
    let keda = chart::render_ok(
        &helm,
        &Install::defaults_with(
            "keda and github",
            &["workerBuild.keda.enabled=true", r#"api.github.appId="42""#],
        ),
    );
    let keda_all = policies(&keda);
    let operator = json!({"metadata": {"name": "keda-operator", "namespace": "keda", "labels": {"app": "keda-operator"}}});
    assert_eq!(
        connection(
            &keda_all,
            &operator,
            &ns_labels("keda"),
            "10.244.0.60",
            &slipway_pod(&keda, "slipway-redis", "10.244.0.30"),
            6379,
            "TCP"
        ),
        Verdict::Allowed
    );
    assert_eq!(
        egress(
            &keda_all,
            &pod_of(&keda, "slipway-api"),
            &Destination::address("140.82.112.6"),
            443,
            "TCP"
        ),
        Verdict::Allowed
    );
    assert_eq!(
        connection(
            &all,
            &operator,
            &ns_labels("keda"),
            "10.244.0.60",
            &redis,
            6379,
            "TCP"
        ),
        Verdict::Denied,
        "no KEDA, no rule"
    );

    // Off: no policy in the release namespace.
    let off = chart::render_ok(
        &helm,
        &Install::defaults_with("no policies", &["networkPolicy.enabled=false"]),
    );
    assert!(
        !chart::of_kind(&off, "NetworkPolicy").any(|p| p["metadata"]["namespace"] == NAMESPACE)
    );
}
