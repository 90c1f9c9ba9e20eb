{{/*
Names, labels and the small rules every template shares.
*/}}

{{- define "slipway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slipway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Slipway components: object-name suffix -> values key. */}}
{{- define "slipway.components" -}}
api: api
worker-build: workerBuild
worker-launch: workerLaunch
worker-cleanup: workerCleanup
{{- end }}

{{/* The queue each worker consumes. */}}
{{- define "slipway.queues" -}}
worker-build: build
worker-launch: launch
worker-cleanup: cleanup
{{- end }}

{{/* <fullname>-<component>: a component's Deployment, ServiceAccount, ConfigMap, ... */}}
{{- define "slipway.componentName" -}}
{{- printf "%s-%s" (include "slipway.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Cluster-scoped objects (ClusterRoles and their bindings) carry the release namespace too, so two
releases of the same name in different namespaces do not collide.
*/}}
{{- define "slipway.clusterName" -}}
{{- printf "%s-%s-%s" .root.Release.Namespace (include "slipway.fullname" .root) .component | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on everything the chart renders. managed-by is Helm: the cleanup worker deletes only
namespaces labelled app.kubernetes.io/managed-by=slipway, so no chart object may carry that.
*/}}
{{- define "slipway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "slipway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slipway
{{- end }}

{{/* Labels of one component's objects: (dict "root" $ "component" "api"). */}}
{{- define "slipway.componentLabels" -}}
{{ include "slipway.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The selector of one component's pods. */}}
{{- define "slipway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slipway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A Slipway image: (dict "root" $ "component" "api"). */}}
{{- define "slipway.image" -}}
{{- $img := .root.Values.image }}
{{- $tag := default .root.Chart.AppVersion $img.tag }}
{{- if $img.registry }}
{{- printf "%s/slipway-%s:%s" (trimSuffix "/" $img.registry) .component $tag }}
{{- else }}
{{- printf "slipway-%s:%s" .component $tag }}
{{- end }}
{{- end }}

{{/*
Where a secret entry lives: the name of the Secret holding it, or "" when it is not configured.
(dict "root" $ "entry" "databaseUrl"). The chart's own Secret holds entries given as `value`,
and the database and Redis URLs of the in-chart Postgres and Redis.
*/}}
{{- define "slipway.secretName" -}}
{{- $e := index .root.Values.secrets .entry }}
{{- if $e.existingSecret }}
{{- $e.existingSecret }}
{{- else if or $e.value (include "slipway.generatedSecret" .) }}
{{- include "slipway.fullname" .root }}
{{- end }}
{{- end }}

{{/* "true" when the chart's own Secret supplies the entry (the in-chart Postgres' URL). */}}
{{- define "slipway.generatedSecret" -}}
{{- if and (eq .entry "databaseUrl") .root.Values.postgresql.enabled }}true{{ end }}
{{- end }}

{{/*
"true" when Slipway's pods reach the in-chart Redis: its URL is composed in each pod from the
Redis password (secret.yaml, or redis.auth.existingSecret), not stored in a Secret.
*/}}
{{- define "slipway.inChartRedisUrl" -}}
{{- $e := .Values.secrets.redisUrl }}
{{- if and .Values.redis.enabled (not $e.existingSecret) (not $e.value) }}true{{ end }}
{{- end }}

{{/* The Secret holding the in-chart Redis' password. */}}
{{- define "slipway.redisSecretName" -}}
{{- .Values.redis.auth.existingSecret | default (printf "%s-redis" (include "slipway.fullname" .)) }}
{{- end }}

{{/* The variables that hold secrets: never in a ConfigMap. */}}
{{- define "slipway.secretVariables" -}}
- SLIPWAY_DATABASE_URL
- SLIPWAY_REDIS_URL
- SLIPWAY_API_TOKENS
- SLIPWAY_GITHUB_WEBHOOK_SECRET
- SLIPWAY_GITHUB_TOKEN
- SLIPWAY_TOKEN
{{- end }}

{{/*
A value as an environment variable's string: YAML numbers arrive as floats, which would print
1000000 as 1e+06.
*/}}
{{- define "slipway.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* The in-chart Redis' address as host:port. */}}
{{- define "slipway.redisAddress" -}}
{{- printf "%s-redis.%s.svc:6379" (include "slipway.fullname" .) .Release.Namespace }}
{{- end }}
