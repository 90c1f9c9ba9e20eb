#!/usr/bin/env bash
# Validates every object a running kube-sim holds against the Kubernetes 1.33 JSON schemas,
# strictly (unknown fields rejected), with the PyPI package kubernetes-validate.
#
# Usage: validate-objects.sh [URL]     (default: the server of $KUBECONFIG's current context)
# Needs: curl, python3, kubernetes-validate (pip install kubernetes-validate)
set -euo pipefail

url="${1:-}"
if [[ -z "$url" ]]; then
  url="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
fi
command -v kubernetes-validate >/dev/null || { echo "kubernetes-validate not found: pip install kubernetes-validate" >&2; exit 2; }

dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
curl -fsS "$url/_sim/objects" > "$dir/objects.json"
python3 - "$dir" <<'PY'
import json, sys, os
d = sys.argv[1]
items = json.load(open(os.path.join(d, "objects.json")))["items"]
for i, o in enumerate(items):
    with open(os.path.join(d, f"{i:05d}-{o['kind'].lower()}.yaml"), "w") as f:
        json.dump(o, f)
print(f"{len(items)} objects", file=sys.stderr)
PY
rm "$dir/objects.json"
kubernetes-validate --strict --quiet -k 1.33.0 "$dir"/*.yaml
echo "all objects valid against Kubernetes 1.33 (strict)"
