//! `kubectl` (v1.32, from `PATH` or `$KUBECTL`) drives the simulator through a kubeconfig:
//! server-side apply, get, watch, logs, delete namespace; and the imperative commands whose
//! typed clients send protobuf bodies (`create namespace|deployment|job`, `expose`, `run`), with
//! `wait`, `logs`, `scale`, `label`, `rollout status`, `get -o yaml` and `delete` around them.

use std::process::Stdio;
use std::time::Duration;

use kube_sim::{Delays, KubeSim, PodScript};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

const T: Duration = Duration::from_secs(60);

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

async fn kubectl(sim: &KubeSim, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        T,
        Command::new(kubectl_bin())
            .args(args)
            .env("KUBECONFIG", sim.kubeconfig_path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl timed out")
    .expect("kubectl must be installed (set KUBECTL to its path)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MANIFESTS: &str = r"apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports:
        - containerPort: 80
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_watch_logs_delete_namespace() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(50),
            ..Delays::zero()
        })
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let file = file.to_str().unwrap();

    let (ok, out, err) = kubectl(&sim, &["apply", "--server-side", "-f", file]).await;
    assert!(ok, "apply failed: {err}");
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let apply = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/deployments/web"))
        .unwrap();
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        apply.query_param("fieldManager").as_deref(),
        Some("kubectl")
    );
    assert_eq!(
        apply.query_param("fieldValidation").as_deref(),
        Some("Strict")
    );

    sim.wait_for_object("deployments", "team", "web", T, |d| {
        d["status"]["availableReplicas"] == 2
    })
    .await
    .unwrap();
    let (ok, out, err) = kubectl(
        &sim,
        &["-n", "team", "get", "deployment", "web", "-o", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["status"]["readyReplicas"], 2);
    let (ok, out, _) = kubectl(&sim, &["-n", "team", "get", "deploy"]).await;
    assert!(ok && out.contains("web"), "{out}");

    // Watch pods: the two existing pods arrive as the initial state; stop it ourselves.
    let mut child = Command::new(kubectl_bin())
        .args(["-n", "team", "get", "pods", "--watch", "-o", "name"])
        .env("KUBECONFIG", sim.kubeconfig_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(T, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(line);
    }
    // After printing the list, kubectl opens the watch.
    sim.wait_for_requests(1, T, |r| {
        r.verb == "watch" && r.path == "/api/v1/namespaces/team/pods"
    })
    .await
    .unwrap();
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(seen.iter().all(|l| l.starts_with("pod/web-")), "{seen:?}");

    let pod = seen[0].trim_start_matches("pod/").to_string();
    let (ok, out, err) = kubectl(&sim, &["-n", "team", "logs", &pod]).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("{pod} started\n"));

    let (ok, out, err) = kubectl(&sim, &["delete", "namespace", "team", "--timeout=50s"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("namespace \"team\" deleted"), "{out}");
    assert!(
        sim.object("namespaces", "", "team").is_none(),
        "kubectl waited for the namespace to go"
    );
    assert!(sim.objects("pods", Some("team")).is_empty());
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The one recorded create of `path` (a collection), its content type and status.
fn create_request(sim: &KubeSim, path: &str) -> (Option<String>, u16) {
    let creates: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .collect();
    assert_eq!(creates.len(), 1, "{path}: {creates:?}");
    (creates[0].content_type.clone(), creates[0].status)
}

/// What defaulting decides about an object: its labels and spec (metadata the server assigns
/// and status the controllers write differ between two creates of the same thing).
fn comparable(o: &Value) -> Value {
    json!({"labels": o["metadata"]["labels"], "spec": o["spec"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_imperative_commands_send_protobuf_and_work() {
    let sim = KubeSim::builder()
        .delays(Delays {
            pod_start: Duration::from_millis(50),
            ..Delays::zero()
        })
        .script(|pod| match &pod.job_name {
            // Job pods run their command and exit 0; the rest serve until deleted.
            Some(_) => PodScript::succeed().log(pod.command.join(" ")),
            None => PodScript::run_forever().log(format!("{} started", pod.name)),
        })
        .start()
        .await
        .unwrap();
    let ok = |(ok, out, err): (bool, String, String)| {
        assert!(ok, "kubectl failed: {err}\n{out}");
        out
    };

    // create namespace: a protobuf Namespace, stored as a JSON client's would be.
    let out = ok(kubectl(&sim, &["create", "namespace", "pb"]).await);
    assert_eq!(out, "namespace/pb created\n");
    assert_eq!(
        create_request(&sim, "/api/v1/namespaces"),
        (Some(PROTOBUF.into()), 201)
    );
    let ns = sim.object("namespaces", "", "pb").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "pb"
    );
    assert_eq!(ns["status"]["phase"], "Active");

    // create deployment
    let out = ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
    )
    .await);
    assert_eq!(out, "deployment.apps/web created\n");
    assert_eq!(
        create_request(&sim, "/apis/apps/v1/namespaces/pb/deployments"),
        (Some(PROTOBUF.into()), 201)
    );
    let d = sim.object("deployments", "pb", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    // The empty `strategy: {}` Go writes is defaulted like an absent one (apps/v1 defaults.go).
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");

    // create job
    let out = ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "create",
            "job",
            "hello",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ],
    )
    .await);
    assert_eq!(out, "job.batch/hello created\n");
    assert_eq!(
        create_request(&sim, "/apis/batch/v1/namespaces/pb/jobs"),
        (Some(PROTOBUF.into()), 201)
    );
    let j = sim.object("jobs", "pb", "hello").unwrap();
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["echo", "hi"])
    );
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(j["spec"]["backoffLimit"], 6);

    // expose
    let out = ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "expose",
            "deployment",
            "web",
            "--port=8080",
            "--target-port=80",
        ],
    )
    .await);
    assert_eq!(out, "service/web exposed\n");
    // expose builds the Service as unstructured and creates it through the dynamic client: JSON.
    assert_eq!(
        create_request(&sim, "/api/v1/namespaces/pb/services"),
        (Some("application/json".into()), 201)
    );
    let svc = sim.object("services", "pb", "web").unwrap();
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"port": 8080, "targetPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");

    // Other `create` subcommands send protobuf too; embedded structs (IngressRule's
    // ingressRuleValue) are inlined and []byte values stay base64.
    ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "create",
            "ingress",
            "ing",
            "--rule=a.example/=web:8080",
        ],
    )
    .await);
    let ing = sim.object("ingresses", "pb", "ing").unwrap();
    assert_eq!(
        ing["spec"]["rules"],
        json!([{"host": "a.example", "http": {"paths": [{"path": "/", "pathType": "Exact",
            "backend": {"service": {"name": "web", "port": {"number": 8080}}}}]}}])
    );
    ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=k=hi",
        ],
    )
    .await);
    let secret = sim.object("secrets", "pb", "s").unwrap();
    assert_eq!(secret["data"], json!({"k": "aGk="}));
    assert_eq!(secret["type"], "Opaque");
    assert!(
        sim.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .filter(|r| r.path.ends_with("/ingresses") || r.path.ends_with("/secrets"))
            .all(|r| r.content_type.as_deref() == Some(PROTOBUF) && r.status == 201)
    );

    // run
    let out = ok(kubectl(&sim, &["-n", "pb", "run", "solo", "--image=nginx:1.27"]).await);
    assert_eq!(out, "pod/solo created\n");
    // run, like expose, creates through the dynamic client.
    assert_eq!(
        create_request(&sim, "/api/v1/namespaces/pb/pods"),
        (Some("application/json".into()), 201)
    );
    let pod = sim.object("pods", "pb", "solo").unwrap();
    assert_eq!(pod["metadata"]["labels"], json!({"run": "solo"}));

    // wait, logs
    ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "wait",
            "--for=condition=available",
            "deployment/web",
            "--timeout=50s",
        ],
    )
    .await);
    ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=50s",
        ],
    )
    .await);
    ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "wait",
            "--for=condition=ready",
            "pod/solo",
            "--timeout=50s",
        ],
    )
    .await);
    assert_eq!(
        ok(kubectl(&sim, &["-n", "pb", "logs", "job/hello"]).await),
        "echo hi\n"
    );
    assert_eq!(
        ok(kubectl(&sim, &["-n", "pb", "logs", "solo"]).await),
        "solo started\n"
    );

    // scale, rollout status, label, get -o yaml
    let out = ok(kubectl(
        &sim,
        &["-n", "pb", "scale", "deployment/web", "--replicas=3"],
    )
    .await);
    assert_eq!(out, "deployment.apps/web scaled\n");
    assert_eq!(
        sim.object("deployments", "pb", "web").unwrap()["spec"]["replicas"],
        3
    );
    let out = ok(kubectl(
        &sim,
        &[
            "-n",
            "pb",
            "rollout",
            "status",
            "deployment/web",
            "--timeout=50s",
        ],
    )
    .await);
    assert!(out.contains("successfully rolled out"), "{out}");
    ok(kubectl(&sim, &["-n", "pb", "label", "service", "web", "tier=front"]).await);
    assert_eq!(
        sim.object("services", "pb", "web").unwrap()["metadata"]["labels"]["tier"],
        "front"
    );
    let yaml = ok(kubectl(&sim, &["-n", "pb", "get", "service", "web", "-o", "yaml"]).await);
    let got: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(got["spec"]["ports"][0]["port"], 8080);
    assert_eq!(got["metadata"]["labels"]["tier"], "front");

    // The same objects created from kubectl's own JSON (`create -f` sends JSON) are stored
    // identically: the protobuf path changes nothing downstream.
    ok(kubectl(&sim, &["create", "namespace", "js"]).await);
    let dir = tempfile::tempdir().unwrap();
    for (what, args) in [
        (
            ("deployments", "web"),
            vec![
                "create",
                "deployment",
                "web",
                "--image=nginx:1.27",
                "--replicas=2",
                "--port=80",
            ],
        ),
        (
            ("jobs", "hello"),
            vec![
                "create",
                "job",
                "hello",
                "--image=busybox:1.36",
                "--",
                "echo",
                "hi",
            ],
        ),
    ] {
        // The flags go before any `--` (after it they would be the job's command).
        let mut dry = vec!["--dry-run=client", "-o", "json"];
        dry.extend(&args);
        let json_body = ok(kubectl(&sim, &dry).await);
        let file = dir.path().join(format!("{}.json", what.0));
        std::fs::write(&file, json_body).unwrap();
        ok(kubectl(&sim, &["-n", "js", "create", "-f", file.to_str().unwrap()]).await);
        let pb = sim.object(what.0, "pb", what.1).unwrap();
        let js = sim.object(what.0, "js", what.1).unwrap();
        let (mut pb, mut js) = (comparable(&pb), comparable(&js));
        if what.0 == "jobs" {
            // The controller-uid selector and labels carry each Job's own uid.
            for o in [&mut pb, &mut js] {
                o["labels"] = Value::Null;
                o["spec"]["selector"] = Value::Null;
                o["spec"]["template"]["metadata"]["labels"] = Value::Null;
            }
        }
        if what.0 == "deployments" {
            // Scaled above.
            pb["spec"]["replicas"] = json!(2);
        }
        assert_eq!(pb, js, "{} created from protobuf vs from JSON", what.0);
    }

    // delete (with DeleteOptions in the body)
    let out = ok(kubectl(&sim, &["-n", "pb", "delete", "pod", "solo", "--wait=false"]).await);
    assert_eq!(out, "pod \"solo\" deleted\n");
    let out = ok(kubectl(&sim, &["delete", "namespace", "pb", "js", "--timeout=50s"]).await);
    assert!(out.contains("namespace \"pb\" deleted"), "{out}");
    assert!(sim.object("namespaces", "", "pb").is_none());
    assert!(sim.objects("deployments", Some("pb")).is_empty());
}
