#!/usr/bin/env bash
# `make e2e-cluster`: Slipway end to end on the real cluster KUBECONFIG points at (docs/e2e-cluster.md).
#
# Installs the Helm chart (deploy/helm/slipway) from the locally built images (`make images`),
# builds a small public sample app (traefik/whoami at a pinned commit) with rootless BuildKit,
# launches it as a preview, streams the build log from the API, fetches the preview URL through
# the ingress controller and checks that this very app answers, tears the preview down, checks
# that nothing is left (preview namespace, build Jobs), and uninstalls. Made for a fresh minikube
# with the `registry` and `ingress` addons (docs/minikube.md); other clusters via the settings
# below. It refuses the kube-sim simulator, and says what is missing before it changes anything.
#
# Settings (environment):
#   KUBECONFIG             required: the cluster to test (never the simulator)
#   HELM                   helm binary (default: helm on PATH, else .tools/bin/helm)
#   IMAGE_TAG              tag of the slipway-* images (default: the version in Cargo.toml)
#   IMAGE_REGISTRY         registry prefix of the images (chart image.registry; default none)
#   E2E_LOAD_IMAGES        minikube | kind | none: how the local images get into the cluster
#                          (default: minikube when the context is a minikube profile, kind for a
#                          kind-* context, else none: the images must already be pullable)
#   E2E_NAMESPACE          namespace of the installation (default slipway-e2e; deleted at the end)
#   E2E_INGRESS_CLASS      IngressClass of previews (default nginx: minikube's ingress addon)
#   E2E_INGRESS_NAMESPACE  namespace of the ingress controller (default ingress-nginx)
#   E2E_INGRESS_ADDRESS    host[:port] where the ingress controller answers HTTP (default: `minikube ip`)
#   E2E_PREVIEW_DOMAIN     preview host domain (default <ingress host>.nip.io); the check sends the
#                          preview's Host header to E2E_INGRESS_ADDRESS, so no DNS is needed
#   E2E_REGISTRY_PUSH, E2E_REGISTRY_PULL, E2E_REGISTRY_INSECURE
#                          where builds push and nodes pull (default: the chart's, minikube's
#                          registry addon)
#   E2E_REPOSITORY, E2E_COMMIT, E2E_PORT
#                          the sample app (default traefik/whoami v1.11.0, port 8080)
#   E2E_AUTO_REPOSITORY, E2E_AUTO_BRANCH, E2E_AUTO_COMMIT, E2E_AUTO_PORT
#                          the `source: auto` sample, a repository without a Dockerfile (default
#                          heroku/node-js-getting-started, branch main resolved with git
#                          ls-remote unless E2E_AUTO_COMMIT is set, port 5006); E2E_AUTO_REPOSITORY=
#                          (empty) skips it
#   E2E_SOURCES_REPOSITORY, E2E_SOURCES_COMMIT
#                          where the `compose` and `helm` samples (this repository's examples/
#                          compose-shop and examples/helm-app) are fetched from: the cluster's
#                          BuildKit clones it, so the commit must be pushed (default: the
#                          checkout's `origin` remote as https and its HEAD; the workflow passes
#                          the pushed commit); E2E_SOURCES_REPOSITORY= (empty) skips both
#   E2E_BUILD_TIMEOUT      seconds for the build (default 1200); E2E_TIMEOUT for every other wait (300)
#   E2E_KEEP=1             keep the installation and the preview (for debugging); default: remove all
set -euo pipefail
cd "$(dirname "$0")/.."

# The sample app: traefik/whoami v1.11.0 (a Go build; FROM scratch; answers every path with the
# request it got and `Name: $WHOAMI_NAME`; listens on $WHOAMI_PORT_NUMBER).
E2E_REPOSITORY=${E2E_REPOSITORY:-https://github.com/traefik/whoami.git}
E2E_COMMIT=${E2E_COMMIT:-7e57190724ca7c0a74aa7f878b6cefe13b11994f}
E2E_PORT=${E2E_PORT:-8080}
# The zero-config sample: a Node.js app with no Dockerfile (package.json's start script, PORT).
E2E_AUTO_REPOSITORY=${E2E_AUTO_REPOSITORY-https://github.com/heroku/node-js-getting-started.git}
E2E_AUTO_BRANCH=${E2E_AUTO_BRANCH:-main}
E2E_AUTO_COMMIT=${E2E_AUTO_COMMIT:-}
E2E_AUTO_PORT=${E2E_AUTO_PORT:-5006}
# The whole-application samples: examples/ of this repository, at a pushed commit.
E2E_SOURCES_REPOSITORY=${E2E_SOURCES_REPOSITORY-$( (git remote get-url origin 2>/dev/null || true) | sed -E 's#^git@([^:]+):#https://\1/#')}
E2E_SOURCES_COMMIT=${E2E_SOURCES_COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
E2E_NAMESPACE=${E2E_NAMESPACE:-slipway-e2e}
E2E_RELEASE=slipway
E2E_INGRESS_CLASS=${E2E_INGRESS_CLASS:-nginx}
E2E_INGRESS_NAMESPACE=${E2E_INGRESS_NAMESPACE:-ingress-nginx}
E2E_BUILD_TIMEOUT=${E2E_BUILD_TIMEOUT:-1200}
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
E2E_KEEP=${E2E_KEEP:-}
IMAGE_TAG=${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)}
IMAGE_REGISTRY=${IMAGE_REGISTRY:-}
COMPONENTS=(api worker-build worker-launch worker-cleanup)

log() { printf '[e2e-cluster] %s\n' "$*" >&2; }
die() {
  printf '[e2e-cluster] FAILED: %s\n' "$*" >&2
  exit 1
}
# Refusals before anything was changed: what is missing and how to get it.
need() {
  printf '[e2e-cluster] cannot run: %s\n' "$*" >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# 1. Preconditions. Nothing is changed until all of them hold.
# ---------------------------------------------------------------------------------------------
[ -n "${KUBECONFIG:-}" ] || need "KUBECONFIG is not set. Point it at the cluster to test, e.g." \
  "KUBECONFIG=~/.kube/config after 'minikube start' (docs/e2e-cluster.md)."
IFS=: read -r -a kubeconfigs <<<"$KUBECONFIG"
for f in "${kubeconfigs[@]}"; do
  [ -r "$f" ] || need "KUBECONFIG names $f, which does not exist or is not readable."
done
command -v kubectl >/dev/null || need "kubectl is not installed (https://kubernetes.io/docs/tasks/tools/; Debian: apt-get install kubectl)."
context=$(kubectl config current-context 2>/dev/null) || need "KUBECONFIG has no current context (kubectl config use-context NAME)."
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || true)
version=$(kubectl get --raw /version --request-timeout=15s 2>/dev/null) ||
  need "the cluster of context '$context' ($server) does not answer (kubectl get --raw /version failed)." \
    "Start it (minikube start) or fix KUBECONFIG."
# The simulator shares Slipway's assumptions, so a pass against it proves nothing here. It serves
# its admin API next to the Kubernetes one, and its /version is fixed.
if kubectl get --raw /_sim/health --request-timeout=15s >/dev/null 2>&1; then
  need "context '$context' ($server) is the kube-sim simulator (it answers /_sim/health)." \
    "make e2e-cluster needs a real cluster; for the simulator, run make test."
fi
if grep -q 'kube-sim' <<<"$version"; then
  need "context '$context' ($server) is the kube-sim simulator (its /version says kube-sim)." \
    "make e2e-cluster needs a real cluster; for the simulator, run make test."
fi

if [ -z "${HELM:-}" ]; then
  if command -v helm >/dev/null; then HELM=helm
  elif [ -x .tools/bin/helm ]; then HELM=.tools/bin/helm
  else need "Helm is not installed: bash scripts/ensure-helm.sh (Linux x86-64) or https://helm.sh/docs/intro/install/, or set HELM."
  fi
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null || need "$tool is not installed."
done
if [ -n "$E2E_AUTO_REPOSITORY" ] && [ -z "$E2E_AUTO_COMMIT" ]; then
  command -v git >/dev/null || need "git is not installed (it resolves E2E_AUTO_BRANCH; or set E2E_AUTO_COMMIT)."
  E2E_AUTO_COMMIT=$(git ls-remote "$E2E_AUTO_REPOSITORY" "refs/heads/$E2E_AUTO_BRANCH" | cut -f1)
  [[ $E2E_AUTO_COMMIT =~ ^[0-9a-f]{40}$ ]] ||
    need "cannot resolve branch $E2E_AUTO_BRANCH of $E2E_AUTO_REPOSITORY to a commit (git ls-remote); set E2E_AUTO_COMMIT."
fi

if [ -n "$E2E_SOURCES_REPOSITORY" ]; then
  [[ $E2E_SOURCES_REPOSITORY == https://* ]] ||
    need "E2E_SOURCES_REPOSITORY ($E2E_SOURCES_REPOSITORY) is not an https:// URL the cluster can clone; set it, or set it empty to skip the compose and helm samples."
  [[ $E2E_SOURCES_COMMIT =~ ^[0-9a-f]{40}$ ]] ||
    need "E2E_SOURCES_COMMIT is not a commit; set it to a pushed commit of $E2E_SOURCES_REPOSITORY."
fi

if [ -z "${E2E_LOAD_IMAGES:-}" ]; then
  if command -v minikube >/dev/null && minikube profile list -o json 2>/dev/null |
    python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in [p["Name"] for p in json.load(sys.stdin).get("valid", [])] else 1)' "$context"; then
    E2E_LOAD_IMAGES=minikube
  elif [[ $context == kind-* ]] && command -v kind >/dev/null; then
    E2E_LOAD_IMAGES=kind
  else
    E2E_LOAD_IMAGES=none
  fi
fi
images=()
for c in "${COMPONENTS[@]}"; do
  images+=("${IMAGE_REGISTRY:+${IMAGE_REGISTRY%/}/}slipway-$c:$IMAGE_TAG")
done
case $E2E_LOAD_IMAGES in
  minikube | kind)
    command -v docker >/dev/null || need "E2E_LOAD_IMAGES=$E2E_LOAD_IMAGES loads images from Docker, and docker is not installed."
    command -v "$E2E_LOAD_IMAGES" >/dev/null || need "E2E_LOAD_IMAGES=$E2E_LOAD_IMAGES, and $E2E_LOAD_IMAGES is not installed."
    for img in "${images[@]}"; do
      docker image inspect "$img" >/dev/null 2>&1 || need "image $img is not in the local Docker." \
        "Build it: make images PLATFORMS=linux/amd64 BAKE_FLAGS=--load (linux/arm64 on an arm64 machine)."
    done
    ;;
  none) log "E2E_LOAD_IMAGES=none: the cluster must be able to pull ${images[*]}" ;;
  *) need "E2E_LOAD_IMAGES is minikube, kind or none, not '$E2E_LOAD_IMAGES'." ;;
esac

if [ -z "${E2E_INGRESS_ADDRESS:-}" ]; then
  if [ "$E2E_LOAD_IMAGES" = minikube ]; then
    E2E_INGRESS_ADDRESS=$(minikube -p "$context" ip)
  else
    need "E2E_INGRESS_ADDRESS is not set: the host[:port] where the ingress controller of class" \
      "$E2E_INGRESS_CLASS answers HTTP (on minikube it is \`minikube ip\`)."
  fi
fi
E2E_PREVIEW_DOMAIN=${E2E_PREVIEW_DOMAIN:-${E2E_INGRESS_ADDRESS%%:*}.nip.io}
kubectl get ingressclass "$E2E_INGRESS_CLASS" >/dev/null 2>&1 ||
  need "there is no IngressClass '$E2E_INGRESS_CLASS'. On minikube: minikube addons enable ingress" \
    "(ingress-nginx, class nginx); elsewhere set E2E_INGRESS_CLASS and E2E_INGRESS_NAMESPACE."
kubectl -n "$E2E_INGRESS_NAMESPACE" wait --for=condition=Available deployment --all --timeout="${E2E_TIMEOUT}s" >/dev/null 2>&1 ||
  need "the ingress controller in namespace $E2E_INGRESS_NAMESPACE is not Available (kubectl -n $E2E_INGRESS_NAMESPACE get pods)."
if [ -z "${E2E_REGISTRY_PUSH:-}" ]; then
  kubectl -n kube-system get service registry >/dev/null 2>&1 ||
    need "builds push to minikube's registry addon by default, and kube-system has no registry Service." \
      "On minikube: minikube addons enable registry; elsewhere set E2E_REGISTRY_PUSH and E2E_REGISTRY_PULL."
fi
# Another Slipway on the cluster would garbage-collect this run's preview namespace (and this
# one its), since both own every namespace labelled managed-by=slipway.
others=$(kubectl get deployments -A -l app.kubernetes.io/name=slipway \
  -o jsonpath='{range .items[*]}{.metadata.namespace}{"\n"}{end}' 2>/dev/null | sort -u | grep -vx "$E2E_NAMESPACE" || true)
[ -z "$others" ] || need "Slipway is already installed on this cluster (namespace: $others);" \
  "its cleanup worker and this run's would remove each other's previews. Use a cluster of its own."

log "cluster: context $context, $server, $(python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])' <<<"$version")"
log "images: ${images[*]} ($E2E_LOAD_IMAGES); ingress: class $E2E_INGRESS_CLASS at $E2E_INGRESS_ADDRESS"

# ---------------------------------------------------------------------------------------------
# 2. Install.
# ---------------------------------------------------------------------------------------------
BUILD_NAMESPACE=$E2E_NAMESPACE-builds
TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
pf_pid=
preview_key=
installed=
tmp=$(mktemp -d)

diagnose() {
  log "diagnostics:"
  kubectl get pods -A -o wide >&2 || true
  kubectl -n "$E2E_NAMESPACE" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 30 >&2 || true
  for c in "${COMPONENTS[@]}"; do
    log "--- $E2E_RELEASE-$c log (last 40 lines)"
    kubectl -n "$E2E_NAMESPACE" logs "deployment/$E2E_RELEASE-$c" --tail 40 >&2 2>/dev/null || true
  done
  if [ -n "$preview_key" ] && [ -n "$pf_pid" ]; then
    api GET "/v1/jobs?preview=$(urlencode "$preview_key")" >&2 2>/dev/null || true
  fi
}

uninstall() {
  [ -n "$installed" ] || return 0
  log "uninstalling (helm uninstall, namespaces $E2E_NAMESPACE and $BUILD_NAMESPACE)"
  "$HELM" uninstall "$E2E_RELEASE" -n "$E2E_NAMESPACE" --wait >/dev/null 2>&1 || true
  kubectl delete namespace "$E2E_NAMESPACE" "$BUILD_NAMESPACE" --ignore-not-found --wait=true \
    --timeout="${E2E_TIMEOUT}s" >/dev/null 2>&1 || true
}

finish() {
  local rc=$?
  if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then diagnose; fi
  if [ -n "$E2E_KEEP" ]; then
    log "E2E_KEEP is set: left installed in $E2E_NAMESPACE (helm uninstall $E2E_RELEASE -n $E2E_NAMESPACE)"
  elif [ "$rc" -ne 0 ]; then
    if [ -n "$preview_key" ]; then
      kubectl delete namespace -l "app.kubernetes.io/managed-by=slipway" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    uninstall
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap finish EXIT

urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
# api METHOD PATH [JSON]: the response body on stdout; fails on a non-2xx answer.
api() {
  local out code args=(-sS -o "$tmp/api.out" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN")
  out=$tmp/api.out
  if [ $# -ge 3 ]; then args+=(-H 'Content-Type: application/json' --data "$3"); fi
  code=$(curl "${args[@]}" "$API$2") || return 1
  cat "$out"
  case $code in 2??) ;; *)
    log "$1 $2 answered $code: $(cat "$out")"
    return 1
    ;;
  esac
}
# json FIELD: a top-level field of the JSON on stdin ("" for null or missing).
json() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"; }
# eventually SECONDS WHAT COMMAND...: poll COMMAND every 2 s until it succeeds.
eventually() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${limit}s waiting for $what"
    sleep 2
  done
}

case $E2E_LOAD_IMAGES in
  minikube)
    for img in "${images[@]}"; do
      log "minikube image load $img"
      minikube -p "$context" image load "$img"
    done
    ;;
  kind)
    log "kind load docker-image ${images[*]}"
    kind load docker-image --name "${context#kind-}" "${images[@]}"
    ;;
esac

helm_args=(
  upgrade --install "$E2E_RELEASE" deploy/helm/slipway -n "$E2E_NAMESPACE" --create-namespace
  --set-string "image.tag=$IMAGE_TAG"
  --set-string "image.registry=$IMAGE_REGISTRY"
  --set-string "buildNamespace.name=$BUILD_NAMESPACE"
  --set-string "preview.domain=$E2E_PREVIEW_DOMAIN"
  --set-string "preview.ingressClass=$E2E_INGRESS_CLASS"
  --set-string "preview.ingressNamespace=$E2E_INGRESS_NAMESPACE"
  --set-string "secrets.apiTokens.value=e2e:read+enqueue+admin:$TOKEN"
)
[ -z "${E2E_REGISTRY_PUSH:-}" ] || helm_args+=(--set-string "registry.push=$E2E_REGISTRY_PUSH")
[ -z "${E2E_REGISTRY_PULL:-}" ] || helm_args+=(--set-string "registry.pull=$E2E_REGISTRY_PULL")
[ -z "${E2E_REGISTRY_INSECURE:-}" ] || helm_args+=(--set "registry.insecure=$E2E_REGISTRY_INSECURE")
log "helm upgrade --install $E2E_RELEASE deploy/helm/slipway -n $E2E_NAMESPACE"
installed=1
"$HELM" "${helm_args[@]}" >/dev/null
for c in "${COMPONENTS[@]}"; do
  kubectl -n "$E2E_NAMESPACE" rollout status "deployment/$E2E_RELEASE-$c" --timeout="${E2E_TIMEOUT}s" >&2 ||
    die "deployment $E2E_RELEASE-$c did not become available"
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kubectl -n "$E2E_NAMESPACE" port-forward "service/$E2E_RELEASE-api" "$port:8080" >"$tmp/port-forward.log" 2>&1 &
pf_pid=$!
API=http://127.0.0.1:$port
eventually "$E2E_TIMEOUT" "the API's /readyz through kubectl port-forward" curl -fsS -o /dev/null "$API/readyz"
log "API at $API (port-forward to service/$E2E_RELEASE-api)"

# ---------------------------------------------------------------------------------------------
# 3. Build and launch the sample app; stream the build log.
# ---------------------------------------------------------------------------------------------
nonce=e2e-$(python3 -c 'import secrets; print(secrets.token_hex(6))')
preview_key="e2e/whoami#${nonce#e2e-}"
body=$(python3 -c 'import json,sys; print(json.dumps({"preview": sys.argv[1], "repository": sys.argv[2], "commit": sys.argv[3],
  "launch": {"port": int(sys.argv[4]), "env": {"WHOAMI_PORT_NUMBER": sys.argv[4], "WHOAMI_NAME": sys.argv[5]}}}))' \
  "$preview_key" "$E2E_REPOSITORY" "$E2E_COMMIT" "$E2E_PORT" "$nonce")
build=$(api POST /v1/pipelines "$body" | json id)
[ -n "$build" ] || die "POST /v1/pipelines returned no job id"
log "pipeline for $preview_key: build job $build; its log follows"

# The API streams the log as Server-Sent Events until the job ends (`event: end`).
curl -sS -N --max-time "$E2E_BUILD_TIMEOUT" -H "Authorization: Bearer $TOKEN" \
  "$API/v1/jobs/$build/logs?follow=true" >"$tmp/build.sse" || true
python3 - "$tmp/build.sse" <<'PY' >&2
import json, sys
event = None
for raw in open(sys.argv[1], encoding="utf-8", errors="replace"):
    raw = raw.rstrip("\n")
    if raw.startswith("event:"):
        event = raw[6:].strip()
    elif raw.startswith("data:"):
        data = json.loads(raw[5:].strip())
        if event == "end":
            print(f"  [log stream ended: job {data.get('state')}]")
        else:
            print(f"  | {data.get('text', '')}")
    elif raw == "":
        event = None
PY
lines=$(grep -c '^data:' "$tmp/build.sse" || true)
grep -q '^event: *end' "$tmp/build.sse" || die "the build log stream did not end within ${E2E_BUILD_TIMEOUT}s"
[ "$lines" -gt 1 ] || die "the build log stream carried no log lines"
state=$(api GET "/v1/jobs/$build" | json state)
[ "$state" = succeeded ] || die "build job $build ended $state: $(api GET "/v1/jobs/$build" | json error)"
log "build succeeded ($lines log events streamed)"

preview_path=/v1/previews/$(urlencode "$preview_key")
# Ready, or stop at once when the launch job has failed for good (a failed attempt is retried).
preview_ready() {
  local p launches
  p=$(api GET "$preview_path" 2>/dev/null) || p='{}'
  [ "$(json status <<<"$p")" = ready ] && return 0
  launches=$(api GET "/v1/jobs?preview=$(urlencode "$preview_key")&kind=launch") || return 1
  python3 -c 'import json,sys
for j in json.load(sys.stdin)["items"]:
    if j["state"] in ("failed", "cancelled"):
        print("launch job", j["id"], "ended", j["state"] + ":", j.get("error"))' <<<"$launches" >"$tmp/launch-failed"
  [ ! -s "$tmp/launch-failed" ] || die "$(cat "$tmp/launch-failed")"
  return 1
}
eventually "$E2E_TIMEOUT" "preview $preview_key to be ready" preview_ready
preview=$(api GET "$preview_path")
url=$(json url <<<"$preview")
preview_ns=$(json namespace <<<"$preview")
if [ -z "$url" ] || [ -z "$preview_ns" ]; then die "the ready preview has no URL or namespace: $preview"; fi
host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname)' "$url")
log "preview ready: $url (namespace $preview_ns)"

# ---------------------------------------------------------------------------------------------
# 4. The app answers through the ingress controller: whoami echoes our WHOAMI_NAME and Host.
# ---------------------------------------------------------------------------------------------
answers() {
  curl -sS --max-time 10 -H "Host: $host" "http://$E2E_INGRESS_ADDRESS/" >"$tmp/answer" 2>/dev/null &&
    grep -qx "Name: $nonce" <(tr -d '\r' <"$tmp/answer") &&
    grep -qix "Host: $host" <(tr -d '\r' <"$tmp/answer")
}
eventually "$E2E_TIMEOUT" "the app to answer at $url through $E2E_INGRESS_ADDRESS" answers
log "the app answered through the ingress:"
sed 's/^/  | /' "$tmp/answer" >&2

# A job has ended, whichever way.
job_ended() {
  local s
  s=$(api GET "/v1/jobs/$1" | json state) || return 1
  case $s in succeeded | failed | cancelled | superseded) return 0 ;; esac
  return 1
}

# ---------------------------------------------------------------------------------------------
# 4b. A repository without a Dockerfile (`source: auto`): the source Job reads it in the build
#     namespace, the stack is detected, the generated Dockerfile is built and the app answers.
# ---------------------------------------------------------------------------------------------
if [ -n "$E2E_AUTO_REPOSITORY" ]; then
  auto_key="e2e/auto#${nonce#e2e-}"
  body=$(python3 -c 'import json,sys; print(json.dumps({"preview": sys.argv[1], "repository": sys.argv[2], "commit": sys.argv[3],
    "source": {"type": "auto"}, "launch": {"port": int(sys.argv[4])}}))' \
    "$auto_key" "$E2E_AUTO_REPOSITORY" "$E2E_AUTO_COMMIT" "$E2E_AUTO_PORT")
  auto_build=$(api POST /v1/pipelines "$body" | json id)
  [ -n "$auto_build" ] || die "POST /v1/pipelines (source auto) returned no job id"
  log "auto pipeline for $auto_key ($E2E_AUTO_REPOSITORY@$E2E_AUTO_COMMIT): build job $auto_build"
  eventually "$E2E_BUILD_TIMEOUT" "auto build job $auto_build" job_ended "$auto_build"
  curl -sS -H "Authorization: Bearer $TOKEN" -H 'Accept: text/plain' \
    "$API/v1/jobs/$auto_build/logs?limit=1000" >"$tmp/auto-build.log" || true
  grep '\[slipway\] source auto' "$tmp/auto-build.log" | sed 's/^/  | /' >&2 || true
  state=$(api GET "/v1/jobs/$auto_build" | json state)
  [ "$state" = succeeded ] || die "auto build job $auto_build ended $state: $(api GET "/v1/jobs/$auto_build" | json error)"
  grep -q 'source auto: detected Node.js' "$tmp/auto-build.log" || die "the auto build's log does not say Node.js was detected"
  auto_path=/v1/previews/$(urlencode "$auto_key")
  auto_ready() { [ "$(api GET "$auto_path" 2>/dev/null | json status)" = ready ]; }
  eventually "$E2E_TIMEOUT" "preview $auto_key to be ready" auto_ready
  auto_url=$(api GET "$auto_path" | json url)
  auto_host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname)' "$auto_url")
  auto_answers() { curl -fsS --max-time 10 -o "$tmp/auto-answer" -H "Host: $auto_host" "http://$E2E_INGRESS_ADDRESS/"; }
  eventually "$E2E_TIMEOUT" "the auto-built app to answer at $auto_url" auto_answers
  log "the auto-built app answered at $auto_url ($(wc -c <"$tmp/auto-answer") bytes)"
  auto_cleanup=$(api DELETE "$auto_path" | json id)
  eventually "$E2E_TIMEOUT" "cleanup job $auto_cleanup" job_ended "$auto_cleanup"
fi

# ---------------------------------------------------------------------------------------------
# 4c/4d. Whole applications from this repository's examples: a compose app (web built, Postgres
#     and Redis from their images; web answers that it reaches both by name) and a Helm chart
#     rendered with the built image (web answers with the preview values' message).
# ---------------------------------------------------------------------------------------------
# Post a pipeline, wait for its preview, fetch it through the ingress, tear it down.
# $1 label, $2 preview key, $3 pipeline body (JSON), $4 text the answer must contain.
whole_app() {
  local label=$1 key=$2 body=$3 expect=$4 path first url host launch_failed gone
  first=$(api POST /v1/pipelines "$body" | json id)
  [ -n "$first" ] || die "POST /v1/pipelines ($label) returned no job id"
  log "$label pipeline for $key: first job $first"
  path=/v1/previews/$(urlencode "$key")
  ready() {
    local p
    p=$(api GET "$path" 2>/dev/null) || p='{}'
    [ "$(json status <<<"$p")" = ready ] && return 0
    launch_failed=$(api GET "/v1/jobs?preview=$(urlencode "$key")" | python3 -c 'import json,sys
for j in json.load(sys.stdin)["items"]:
    if j["state"] in ("failed", "cancelled"):
        print(j["kind"], "job", j["id"], "ended", j["state"] + ":", j.get("error")); break')
    [ -z "$launch_failed" ] || die "$label: $launch_failed"
    return 1
  }
  eventually "$E2E_BUILD_TIMEOUT" "the $label preview $key to be ready" ready
  curl -sS -H "Authorization: Bearer $TOKEN" -H 'Accept: text/plain' \
    "$API/v1/jobs/$first/logs?limit=1000" | grep '\[slipway\] source' | sed 's/^/  | /' >&2 || true
  url=$(api GET "$path" | json url)
  host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname)' "$url")
  answers() {
    curl -fsS --max-time 10 -o "$tmp/$label-answer" -H "Host: $host" "http://$E2E_INGRESS_ADDRESS/" &&
      grep -qF "$expect" "$tmp/$label-answer"
  }
  eventually "$E2E_TIMEOUT" "the $label app to answer '$expect' at $url" answers
  log "the $label app answered at $url: $(head -c 200 "$tmp/$label-answer")"
  gone=$(api DELETE "$path" | json id)
  eventually "$E2E_TIMEOUT" "cleanup job $gone" job_ended "$gone"
}
if [ -n "$E2E_SOURCES_REPOSITORY" ]; then
  body=$(python3 -c 'import json,sys; print(json.dumps({"preview": sys.argv[1], "repository": sys.argv[2], "commit": sys.argv[3],
    "source": {"type": "compose", "file": "examples/compose-shop/compose.yaml", "service": "web"}}))' \
    "e2e/compose#${nonce#e2e-}" "$E2E_SOURCES_REPOSITORY" "$E2E_SOURCES_COMMIT")
  whole_app compose "e2e/compose#${nonce#e2e-}" "$body" "shop: db reachable, cache reachable"
  body=$(python3 -c 'import json,sys; print(json.dumps({"preview": sys.argv[1], "repository": sys.argv[2], "commit": sys.argv[3],
    "source": {"type": "helm", "chart": "examples/helm-app/chart", "service": "web", "port": 8080,
               "values": ["examples/helm-app/preview-values.yaml"]},
    "build": {"context": "examples/helm-app"}}))' \
    "e2e/helm#${nonce#e2e-}" "$E2E_SOURCES_REPOSITORY" "$E2E_SOURCES_COMMIT")
  whole_app helm "e2e/helm#${nonce#e2e-}" "$body" "hello from a Slipway preview"
else
  log "E2E_SOURCES_REPOSITORY is empty (no origin remote): the compose and helm samples are skipped"
fi

# ---------------------------------------------------------------------------------------------
# 5. Tear down; nothing is left.
# ---------------------------------------------------------------------------------------------
cleanup=$(api DELETE "$preview_path" | json id)
[ -n "$cleanup" ] || die "DELETE $preview_path returned no job id"
cleanup_done() {
  local s
  s=$(api GET "/v1/jobs/$cleanup" | json state) || return 1
  case $s in
    succeeded) return 0 ;;
    failed | cancelled | superseded) die "cleanup job $cleanup ended $s" ;;
  esac
  return 1
}
eventually "$E2E_TIMEOUT" "cleanup job $cleanup" cleanup_done
namespace_gone() { ! kubectl get namespace "$preview_ns" >/dev/null 2>&1; }
eventually "$E2E_TIMEOUT" "namespace $preview_ns to be gone" namespace_gone
left=$(kubectl get namespaces -l app.kubernetes.io/managed-by=slipway -o name)
[ -z "$left" ] || die "preview namespaces left after the cleanup: $left"
no_build_jobs() {
  [ -z "$(kubectl -n "$BUILD_NAMESPACE" get jobs,pods -l app.kubernetes.io/managed-by=slipway -o name 2>/dev/null)" ]
}
eventually "$E2E_TIMEOUT" "build Jobs and pods in $BUILD_NAMESPACE to be gone" no_build_jobs
status=$(api GET "$preview_path" | json status)
log "preview $preview_key torn down (status $status); no preview namespace, build Job or build pod left"

if [ -z "$E2E_KEEP" ]; then
  kill "$pf_pid" 2>/dev/null || true
  pf_pid=
  uninstall
  for ns in "$E2E_NAMESPACE" "$BUILD_NAMESPACE"; do
    ! kubectl get namespace "$ns" >/dev/null 2>&1 || die "namespace $ns is still there after the uninstall"
  done
  installed=
fi
log "PASSED: built $E2E_REPOSITORY@$E2E_COMMIT, served it at $url, tore it down${E2E_AUTO_REPOSITORY:+; built $E2E_AUTO_REPOSITORY@$E2E_AUTO_COMMIT without a Dockerfile (source auto) and served it}${E2E_SOURCES_REPOSITORY:+; previewed the compose and helm examples of $E2E_SOURCES_REPOSITORY@$E2E_SOURCES_COMMIT}"
