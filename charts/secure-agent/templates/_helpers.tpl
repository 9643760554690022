{{/* Names ---------------------------------------------------------------------------------------- */}}
{{- define "secure-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secure-agent.fullname" -}}
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

{{- define "secure-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secure-agent.mcpApi.fullname" -}}
{{- printf "%s-mcp-api" (include "secure-agent.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secure-agent.mcpApi.serviceAccountName" -}}
{{- if .Values.mcpApi.serviceAccount.create }}
{{- default (include "secure-agent.mcpApi.fullname" .) .Values.mcpApi.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.mcpApi.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "secure-agent.runners.fullname" -}}
{{- printf "%s-runner" (include "secure-agent.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secure-agent.runners.namespace" -}}
{{- default .Release.Namespace .Values.runners.namespace }}
{{- end }}

{{- define "secure-agent.runners.serviceAccountName" -}}
{{- default (include "secure-agent.runners.fullname" .) .Values.runners.serviceAccount.name }}
{{- end }}

{{- define "secure-agent.secretName" -}}
{{- default (include "secure-agent.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Labels ---------------------------------------------------------------------------------------
mcp-api pods are `app.kubernetes.io/name: mcp-api` (the runner NetworkPolicy and the code's manifests
select them by it); runner pods, created by mcp-api, are `app.kubernetes.io/name: agent-runner`. */}}
{{- define "secure-agent.labels" -}}
helm.sh/chart: {{ include "secure-agent.chart" . }}
app.kubernetes.io/part-of: {{ include "secure-agent.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "secure-agent.mcpApi.selectorLabels" -}}
app.kubernetes.io/name: mcp-api
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "secure-agent.mcpApi.labels" -}}
{{ include "secure-agent.labels" . }}
{{ include "secure-agent.mcpApi.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "secure-agent.runners.selectorLabels" -}}
app.kubernetes.io/name: agent-runner
{{- end }}

{{- define "secure-agent.componentLabels" -}}
{{ include "secure-agent.labels" .root }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Images: {image: <values>, default: <tag>} -> registry/repository:tag or @digest. */}}
{{- define "secure-agent.image" -}}
{{- $img := .image }}
{{- $repo := $img.repository }}
{{- if $img.registry }}{{ $repo = printf "%s/%s" $img.registry $img.repository }}{{ end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .default $img.tag | toString) }}
{{- end }}
{{- end }}

{{- define "secure-agent.mcpApi.image" -}}
{{- include "secure-agent.image" (dict "image" .Values.mcpApi.image "default" .Chart.AppVersion) }}
{{- end }}

{{- define "secure-agent.runners.image" -}}
{{- include "secure-agent.image" (dict "image" .Values.runners.image "default" .Chart.AppVersion) }}
{{- end }}

{{- define "secure-agent.seccomp.installerImage" -}}
{{- if .Values.seccomp.installer.image.repository }}
{{- include "secure-agent.image" (dict "image" .Values.seccomp.installer.image "default" .Chart.AppVersion) }}
{{- else }}
{{- include "secure-agent.mcpApi.image" . }}
{{- end }}
{{- end }}

{{/* Seccomp of runner pods, per seccomp.mode ------------------------------------------------------- */}}
{{- define "secure-agent.seccomp.type" -}}
{{- if eq .Values.seccomp.mode "runtimeDefault" }}RuntimeDefault{{ else }}Localhost{{ end }}
{{- end }}

{{- define "secure-agent.seccomp.profileName" -}}agent-runner{{- end }}

{{/* Path relative to <kubelet>/seccomp: the installer's file, or where SPO writes a namespaced profile. */}}
{{- define "secure-agent.seccomp.localhostProfile" -}}
{{- if eq .Values.seccomp.mode "spo" }}
{{- printf "operator/%s/%s.json" (include "secure-agent.runners.namespace" .) (include "secure-agent.seccomp.profileName" .) }}
{{- else }}
{{- printf "profiles/%s.json" (include "secure-agent.seccomp.profileName" .) }}
{{- end }}
{{- end }}

{{/* External URL and Host allowlist --------------------------------------------------------------- */}}
{{- define "secure-agent.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $tls := false }}
{{- range .Values.ingress.tls }}{{ if has $host .hosts }}{{ $tls = true }}{{ end }}{{ end }}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host }}
{{- else if and .Values.gatewayApi.enabled .Values.gatewayApi.hostnames }}
{{- printf "https://%s" (first .Values.gatewayApi.hostnames) }}
{{- end }}
{{- end }}

{{- define "secure-agent.allowedHosts" -}}
{{- $svc := include "secure-agent.mcpApi.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list }}
{{- if .Values.ingress.enabled }}{{ range .Values.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end }}{{ end }}
{{- if .Values.gatewayApi.enabled }}{{ range .Values.gatewayApi.hostnames }}{{ $hosts = append $hosts . }}{{ end }}{{ end }}
{{- with include "secure-agent.publicUrl" . }}{{ $hosts = append $hosts (regexReplaceAll "^https?://([^/:]+).*$" . "${1}") }}{{ end }}
{{- range .Values.allowedHosts }}{{ $hosts = append $hosts . }}{{ end }}
{{- $out := list }}
{{- range $hosts }}{{ $out = append $out . }}{{ $out = append $out (printf "%s:*" .) }}{{ end }}
{{- range list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $out = append $out (printf "%s:*" .) }}
{{- end }}
{{- $out = concat $out (list "127.0.0.1:*" "localhost:*") }}
{{- toJson (uniq $out) }}
{{- end }}

{{/* Settings: the user's `settings` overlaid with what the chart decides, as one nested dict. */}}
{{- define "secure-agent.settings" -}}
{{- $s := deepCopy (default dict .Values.settings) }}
{{- $k8s := dict
  "in_cluster" true
  "namespace" (include "secure-agent.runners.namespace" .)
  "image" (include "secure-agent.runners.image" .)
  "image_pull_policy" .Values.runners.image.pullPolicy
  "port" .Values.runners.port
  "seccomp" (include "secure-agent.seccomp.type" .)
  "seccomp_localhost_profile" (include "secure-agent.seccomp.localhostProfile" .)
  "warm_pool_size" .Values.runners.warmPoolSize
  "profile" .Values.agentProfile.name
  "cpu_request" (toString .Values.runners.resources.requests.cpu)
  "memory_request" (toString .Values.runners.resources.requests.memory)
  "cpu_limit" (toString .Values.runners.resources.limits.cpu)
  "memory_limit" (toString .Values.runners.resources.limits.memory)
  "ephemeral_storage_limit" (toString (index .Values.runners.resources.limits "ephemeral-storage"))
  "workspace_size_limit" (toString .Values.runners.workspaceSizeLimit)
  "tmp_size_limit" (toString .Values.runners.tmpSizeLimit)
  "active_deadline_s" .Values.runners.activeDeadlineSeconds
}}
{{- if .Values.runners.runtimeClassName }}{{ $_ := set $k8s "runtime_class_name" .Values.runners.runtimeClassName }}{{ end }}
{{- if .Values.runners.serviceAccount.create }}{{ $_ := set $k8s "service_account_name" (include "secure-agent.runners.serviceAccountName" .) }}{{ end }}
{{- $chart := dict
  "host" "0.0.0.0"
  "port" .Values.mcpApi.port
  "data_dir" "/data"
  "allowed_hosts" (include "secure-agent.allowedHosts" . | fromJsonArray)
  "runner" (dict "backend" "kubernetes")
  "profiles" (dict "namespace" .Release.Namespace)
  "kubernetes" $k8s
}}
{{- with include "secure-agent.publicUrl" . }}{{ $_ := set $chart "public_url" . }}{{ end }}
{{- if .Values.trustedProxies }}{{ $_ := set $chart "trusted_proxies" .Values.trustedProxies }}{{ end }}
{{- toYaml (mergeOverwrite $s $chart) }}
{{- end }}

{{/* Flatten {prefix, value} into `NAME: "string"` lines: maps nest with `__`, lists and `params`
maps become JSON, scalars strings (numbers through toJson so 8388608 stays 8388608), nulls are skipped. */}}
{{- define "secure-agent.flattenEnv" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .value }}
{{- $name := printf "%s%s" $prefix (upper $key | replace "-" "_") }}
{{- if kindIs "invalid" $value }}
{{- else if and (kindIs "map" $value) (ne $key "params") }}
{{- include "secure-agent.flattenEnv" (dict "prefix" (printf "%s__" $name) "value" $value) }}
{{- else if or (kindIs "map" $value) (kindIs "slice" $value) }}
{{ $name }}: {{ toJson $value | toJson }}
{{- else if kindIs "string" $value }}
{{ $name }}: {{ toJson $value }}
{{- else }}
{{ $name }}: {{ toJson $value | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{- define "secure-agent.settingsEnv" -}}
{{- include "secure-agent.flattenEnv" (dict "prefix" "SECURE_AGENT_" "value" (include "secure-agent.settings" . | fromYaml)) }}
{{- end }}

{{/* Checks that JSON Schema cannot express, failing with a message that names the value. */}}
{{- define "secure-agent.validate" -}}
{{- $replicas := int .Values.mcpApi.replicaCount }}
{{- if and (eq .Values.database.type "sqlite") (or (gt $replicas 1) .Values.autoscaling.enabled) }}
{{- fail "database.type=sqlite keeps the store in one pod: more than one replica (mcpApi.replicaCount > 1 or autoscaling.enabled) needs database.type=postgresql" }}
{{- end }}
{{- if and (eq .Values.database.type "postgresql") (not .Values.secrets.existingSecret) (not .Values.secrets.databaseUrl) }}
{{- fail "database.type=postgresql needs secrets.databaseUrl or secrets.existingSecret (with the key secrets.keys.databaseUrl)" }}
{{- end }}
{{- if and .Values.redis.enabled (not .Values.secrets.existingSecret) (not .Values.secrets.redisUrl) }}
{{- fail "redis.enabled needs secrets.redisUrl or secrets.existingSecret (with the key secrets.keys.redisUrl)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- if and (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (the other to null)" }}
{{- end }}
{{- $min := ternary (int .Values.autoscaling.minReplicas) $replicas .Values.autoscaling.enabled }}
{{- if and (kindIs "float64" .Values.podDisruptionBudget.minAvailable) (ge (int .Values.podDisruptionBudget.minAvailable) $min) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below the replica count (%d) or no pod could ever be evicted" (int .Values.podDisruptionBudget.minAvailable) $min) }}
{{- end }}
{{- end }}
{{- if and .Values.gatewayApi.enabled (not .Values.gatewayApi.parentRefs) }}
{{- fail "gatewayApi.enabled needs gatewayApi.parentRefs (the Gateway to attach the HTTPRoute to)" }}
{{- end }}
{{- range $key, $_ := .Values.secrets.providerApiKeys }}
{{- if not (hasKey (default dict (default dict $.Values.settings.agent).providers) $key) }}
{{- fail (printf "secrets.providerApiKeys.%s has no provider settings.agent.providers.%s" $key $key) }}
{{- end }}
{{- end }}
{{- end }}
