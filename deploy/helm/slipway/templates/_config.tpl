{{/*
The settings the chart derives from typed values for one component, as a YAML map of
environment variables: (dict "root" $ "component" "worker-build" "values" .Values.workerBuild).
A component's `settings` may not set these (the ConfigMap template refuses it), so each has
exactly one place in the values.
*/}}
{{- define "slipway.ownedSettings" -}}
{{- $v := .root.Values -}}
SLIPWAY_LISTEN: {{ printf "0.0.0.0:%v" .values.port | quote }}
SLIPWAY_QUEUE_PREFIX: {{ $v.config.queuePrefix | quote }}
SLIPWAY_LOG_FORMAT: {{ $v.config.logFormat | quote }}
RUST_LOG: {{ $v.config.rustLog | quote }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ $v.config.otlpEndpoint | quote }}
{{- if eq .component "api" }}
SLIPWAY_BUILD_SECRET_NAMES: {{ include "slipway.buildSecretNames" .root | quote }}
SLIPWAY_GITHUB_API_URL: {{ .values.github.apiUrl | quote }}
SLIPWAY_GITHUB_APP_ID: {{ .values.github.appId | toString | quote }}
SLIPWAY_MCP: {{ .values.mcp.mode | quote }}
{{- $mcpHosts := concat (list "localhost" "127.0.0.1" "::1") .values.mcp.allowedHosts }}
{{- if .values.ingress.enabled }}
{{- $mcpHosts = append $mcpHosts .values.ingress.host }}
{{- end }}
SLIPWAY_MCP_ALLOWED_HOSTS: {{ join "," ($mcpHosts | uniq) | quote }}
SLIPWAY_MCP_ALLOWED_ORIGINS: {{ join "," .values.mcp.allowedOrigins | quote }}
{{- if include "slipway.secretName" (dict "root" .root "entry" "githubPrivateKey") }}
SLIPWAY_GITHUB_PRIVATE_KEY_FILE: {{ include "slipway.githubKeyPath" . | quote }}
{{- end }}
{{- end }}
{{- if eq .component "worker-build" }}
SLIPWAY_BUILD_NAMESPACE: {{ $v.buildNamespace.name | quote }}
SLIPWAY_REGISTRY_PUSH: {{ $v.registry.push | quote }}
SLIPWAY_REGISTRY_PULL: {{ $v.registry.pull | quote }}
SLIPWAY_REGISTRY_INSECURE: {{ $v.registry.insecure | toString | quote }}
SLIPWAY_BUILD_NETWORK_POLICY: {{ $v.buildNamespace.networkPolicy.enabled | toString | quote }}
SLIPWAY_BUILD_DENY_CIDRS: {{ join "," $v.buildNamespace.networkPolicy.denyCidrs | quote }}
SLIPWAY_BUILD_REGISTRY_NAMESPACE: {{ $v.registry.networkPolicy.namespace | quote }}
{{- $labels := list }}
{{- range $k, $l := $v.registry.networkPolicy.podLabels }}
{{- $labels = append $labels (printf "%s=%s" $k $l) }}
{{- end }}
SLIPWAY_BUILD_REGISTRY_POD_LABELS: {{ join "," $labels | quote }}
SLIPWAY_BUILD_REGISTRY_CIDRS: {{ join "," $v.registry.networkPolicy.cidrs | quote }}
SLIPWAY_DNS_EGRESS_CIDRS: {{ join "," $v.preview.dnsEgressCidrs | quote }}
{{- end }}
{{- if eq .component "worker-launch" }}
SLIPWAY_PREVIEW_DOMAIN: {{ $v.preview.domain | quote }}
SLIPWAY_INGRESS_CLASS: {{ $v.preview.ingressClass | quote }}
SLIPWAY_INGRESS_NAMESPACE: {{ $v.preview.ingressNamespace | quote }}
SLIPWAY_INGRESS_CIDRS: {{ join "," $v.preview.ingressCidrs | quote }}
SLIPWAY_DNS_EGRESS_CIDRS: {{ join "," $v.preview.dnsEgressCidrs | quote }}
SLIPWAY_PREVIEW_TLS_SECRET: {{ $v.preview.tlsSecret | quote }}
SLIPWAY_PREVIEW_CLUSTER_ISSUER: {{ $v.preview.clusterIssuer | quote }}
SLIPWAY_IMAGE_PULL_SECRET: {{ $v.preview.imagePullSecret | quote }}
SLIPWAY_REGISTRY_PUSH: {{ $v.registry.push | quote }}
SLIPWAY_REGISTRY_PULL: {{ $v.registry.pull | quote }}
{{- end }}
{{- if eq .component "worker-cleanup" }}
SLIPWAY_BUILD_NAMESPACE: {{ $v.buildNamespace.name | quote }}
{{- end }}
{{- end }}

{{/*
Settings whose empty value means "none" rather than "the binary's default": the ConfigMap keeps
them even when empty, so the build worker re-applies the same build network policy the chart
installs.
*/}}
{{- define "slipway.keepEmptySettings" -}}
- SLIPWAY_BUILD_DENY_CIDRS
- SLIPWAY_BUILD_REGISTRY_NAMESPACE
- SLIPWAY_BUILD_REGISTRY_POD_LABELS
{{- end }}

{{/* Where the API finds the GitHub App's private key. */}}
{{- define "slipway.githubKeyPath" -}}
/var/run/secrets/slipway/github/private-key.pem
{{- end }}

{{/*
The Secrets builds may name, comma-separated (empty: any): buildNamespace.secretNames plus the
registry push Secret. The API refuses other names (SLIPWAY_BUILD_SECRET_NAMES) and the build
worker's Role may read only these (resourceNames), so a build the API accepts is one whose
Secrets the worker can read to mask.
*/}}
{{- define "slipway.buildSecretNames" -}}
{{- $names := default (list) .Values.buildNamespace.secretNames -}}
{{- if and $names .Values.registry.pushSecret.name -}}
{{- $names = append $names .Values.registry.pushSecret.name | uniq -}}
{{- end -}}
{{- join "," $names -}}
{{- end }}
