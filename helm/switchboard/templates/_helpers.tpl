{{/* Chart name, truncated to a DNS label. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; component suffixes are at most 8 characters, so cut at 54. */}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "signal"). */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels of one component: call with (dict "ctx" $ "component" "signal"). */}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" .ctx }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "switchboard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Pod-level security context shared by every pod of the chart. */}}
{{- define "switchboard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context shared by every container of the chart. */}}
{{- define "switchboard.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* ---- TURN shared secrets ---- */}}
{{- define "switchboard.turnSecretName" -}}
{{- if .Values.turnSecrets.existingSecret }}
{{- .Values.turnSecrets.existingSecret }}
{{- else }}
{{- printf "%s-turn" (include "switchboard.fullname" .) }}
{{- end }}
{{- end }}

{{- define "switchboard.turnSecretKey" -}}
{{- if .Values.turnSecrets.existingSecret }}{{ .Values.turnSecrets.existingSecretKey }}{{ else }}secrets{{ end }}
{{- end }}

{{/* ---- Redis ---- */}}
{{- define "switchboard.redisSecretName" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecret }}
{{- else }}
{{- printf "%s-redis" (include "switchboard.fullname" .) }}
{{- end }}
{{- end }}

{{- define "switchboard.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}url{{ end }}
{{- end }}

{{- define "switchboard.redisHost" -}}
{{- printf "%s-redis" (include "switchboard.fullname" .) }}
{{- end }}

{{/* Fails the render unless exactly one Redis source is configured. */}}
{{- define "switchboard.validateRedis" -}}
{{- $n := 0 }}
{{- if .Values.redis.url }}{{ $n = add1 $n }}{{ end }}
{{- if .Values.redis.existingSecret }}{{ $n = add1 $n }}{{ end }}
{{- if .Values.redis.internal.enabled }}{{ $n = add1 $n }}{{ end }}
{{- if ne (int $n) 1 }}
{{- fail "redis: set exactly one of redis.url, redis.existingSecret or redis.internal.enabled" }}
{{- end }}
{{- end }}

{{/* ---- TURN addressing ---- */}}
{{/* Public host clients use for STUN/TURN: turn.publicHost, else the public half of turn.externalIP. */}}
{{- define "switchboard.turnPublicHost" -}}
{{- if .Values.turn.publicHost }}
{{- .Values.turn.publicHost }}
{{- else if .Values.turn.externalIP }}
{{- first (splitList "/" .Values.turn.externalIP) }}
{{- end }}
{{- end }}

{{- define "switchboard.stunUrls" -}}
{{- if .Values.signal.stunUrls }}
{{- join "," .Values.signal.stunUrls }}
{{- else if and .Values.turn.enabled (include "switchboard.turnPublicHost" .) }}
{{- printf "stun:%s:%d" (include "switchboard.turnPublicHost" .) (int .Values.turn.port) }}
{{- end }}
{{- end }}

{{- define "switchboard.turnUrls" -}}
{{- if .Values.signal.turnUrls }}
{{- join "," .Values.signal.turnUrls }}
{{- else if and .Values.turn.enabled (include "switchboard.turnPublicHost" .) }}
{{- $h := include "switchboard.turnPublicHost" . }}
{{- $urls := list (printf "turn:%s:%d?transport=udp" $h (int .Values.turn.port)) }}
{{- if .Values.turn.tcp }}
{{- $urls = append $urls (printf "turn:%s:%d?transport=tcp" $h (int .Values.turn.port)) }}
{{- end }}
{{- join "," $urls }}
{{- end }}
{{- end }}

{{- define "switchboard.turnRelayPorts" -}}
{{- if eq .Values.turn.mode "loadBalancer" }}
{{- printf "%d-%d" (int .Values.turn.loadBalancer.relayPorts.min) (int .Values.turn.loadBalancer.relayPorts.max) }}
{{- else }}
{{- printf "%d-%d" (int .Values.turn.hostNetwork.relayPorts.min) (int .Values.turn.hostNetwork.relayPorts.max) }}
{{- end }}
{{- end }}
