//! Every object a varied scenario leaves in the store passes strict validation against the
//! Kubernetes 1.33 JSON schemas (`kubernetes-validate --strict`, PyPI). The test runs when
//! the tool is on `PATH`; with `KUBE_SIM_REQUIRE_VALIDATE=1` (CI) a missing tool fails it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::{Delays, KubeSim, Outcome, PodScript};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn tool_available() -> bool {
    std::process::Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_objects_pass_strict_1_33_schemas() {
    if !tool_available() {
        assert!(
            std::env::var("KUBE_SIM_REQUIRE_VALIDATE").is_err(),
            "kubernetes-validate is required (pip install kubernetes-validate)"
        );
        eprintln!("kubernetes-validate not installed; skipping schema validation");
        return;
    }
    let sim = KubeSim::builder()
        .delays(Delays {
            time_scale: 0.02,
            ..Delays::zero()
        })
        .script(|p| match p.name.as_str() {
            "oom" => PodScript::outcome(Outcome::OomKilled),
            "pull" => PodScript::outcome(Outcome::ImagePullBackOff),
            "crash" => PodScript::outcome(Outcome::CrashLoopBackOff),
            "unsched" => PodScript::outcome(Outcome::Unschedulable),
            _ if p.job_name.as_deref() == Some("bad") => PodScript::exit(2).message("failed"),
            _ if p.image.contains("buildkit") => PodScript::default_for(p, &Delays::zero()),
            _ => PodScript::run_forever().log("up"),
        })
        .start()
        .await
        .unwrap();
    let client = sim.client().unwrap();
    let ssa = PatchParams::apply("slipway").force();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    for (name, image, limit) in [("build", "moby/buildkit:v0.23", 0), ("bad", "x:1", 1)] {
        // A buildctl invocation the simulated BuildKit image accepts (kube_sim::buildkit).
        let j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": limit, "ttlSecondsAfterFinished": 3600, "template": {
                "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}},
                "spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": image, "command": ["buildctl-daemonless.sh"],
                    "args": ["build", "--frontend=dockerfile.v0", "--opt", "context=https://github.com/org/app.git#main",
                        "--output", "type=image,name=r.local/app:1,push=true"]}]}}}});
        jobs.patch(name, &ssa, &Patch::Apply(j)).await.unwrap();
    }
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1",
                "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]}]}}}});
    deps.patch("web", &ssa, &Patch::Apply(d)).await.unwrap();
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    svcs.patch(
        "web",
        &ssa,
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        ),
    )
    .await
    .unwrap();
    // Slipway's launch set, applied server-side into a preview namespace.
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.patch("slipway-pv-app-1", &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "slipway-pv-app-1", "labels": {"app.kubernetes.io/managed-by": "slipway"}}}))).await.unwrap();
    let launch: [(&str, &str, Value); 4] = [
        (
            "resourcequotas",
            "v1",
            json!({"kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "10", "requests.cpu": "2"}}}),
        ),
        (
            "limitranges",
            "v1",
            json!({"kind": "LimitRange", "metadata": {"name": "l"}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}),
        ),
        (
            "networkpolicies",
            "networking.k8s.io/v1",
            json!({"kind": "NetworkPolicy", "metadata": {"name": "np"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {}}]}]}}),
        ),
        (
            "ingresses",
            "networking.k8s.io/v1",
            json!({"kind": "Ingress", "metadata": {"name": "web"}, "spec": {"ingressClassName": "nginx",
            "rules": [{"host": "app.example.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        ),
    ];
    for (plural, api_version, mut obj) in launch {
        obj["apiVersion"] = json!(api_version);
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar = kube::api::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: obj["kind"].as_str().unwrap().into(),
            plural: plural.into(),
        };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), "slipway-pv-app-1", &ar);
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &ssa, &Patch::Apply(obj)).await.unwrap();
    }
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "v"}})).unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for name in ["oom", "pull", "crash", "unsched", "web-pod"] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"restartPolicy": if name == "oom" { "Never" } else { "Always" },
            "containers": [{"name": "c", "image": "img:1"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let cond = |o: &Value, ty: &str| {
        o["status"]["conditions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["type"] == ty && c["status"] == "True"))
    };
    sim.wait_for_object("jobs", "default", "build", T, |j| cond(j, "Complete"))
        .await
        .unwrap();
    sim.wait_for_object("jobs", "default", "bad", T, |j| cond(j, "Failed"))
        .await
        .unwrap();
    sim.wait_for_object("deployments", "default", "web", T, |d| {
        d["status"]["availableReplicas"] == 2
    })
    .await
    .unwrap();
    sim.wait_for_object("pods", "default", "crash", T, |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await
    .unwrap();
    sim.wait_for_object("pods", "default", "oom", T, |p| {
        p["status"]["phase"] == "Failed"
    })
    .await
    .unwrap();
    sim.wait_for_object("pods", "default", "pull", T, |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await
    .unwrap();
    // A pod in graceful deletion carries deletion metadata too.
    pods.delete("web-pod", &DeleteParams::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (kind, obj)) in sim.store().snapshot().into_iter().enumerate() {
        let path = dir.path().join(format!("{i:04}-{}.yaml", kind.plural));
        std::fs::write(&path, serde_json::to_string_pretty(&*obj).unwrap()).unwrap();
        files.push(path);
    }
    assert!(files.len() > 20, "scenario stored {} objects", files.len());
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", "1.33.0"])
        .args(&files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schema validation failed:\n{report}");

    // The validator does reject a broken object, so the check above can fail.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}"#,
    )
    .unwrap();
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", "1.33.0"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
