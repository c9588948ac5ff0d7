{{/* Chart name, overridable. */}}
{{- define "extauthz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, prefixed with the chart name unless it already contains it. */}}
{{- define "extauthz.fullname" -}}
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

{{- define "extauthz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "extauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "extauthz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "extauthz.labels" -}}
helm.sh/chart: {{ include "extauthz.chart" . }}
{{ include "extauthz.selectorLabels" . }}
app.kubernetes.io/version: {{ include "extauthz.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "extauthz.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "extauthz.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "extauthz.tag" .) }}
{{- end }}

{{- define "extauthz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "extauthz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* In-cluster DNS name of the Service, as Istio's extensionProviders need it. */}}
{{- define "extauthz.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "extauthz.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The server's config.yaml, from values. */}}
{{- define "extauthz.config" -}}
{{- $cfg := dict
  "providers" .Values.providers
  "rules" .Values.rules
  "grpc_addr" (printf ":%d" (int .Values.ports.grpc))
  "http_addr" (printf ":%d" (int .Values.ports.http))
  "admin_addr" (printf ":%d" (int .Values.ports.admin))
  "jwks_refresh_interval" .Values.jwksRefreshInterval
  "jwks_min_refresh_interval" .Values.jwksMinRefreshInterval
  "jwks_fetch_timeout" .Values.jwksFetchTimeout
  "clock_skew" .Values.clockSkew
  "log_level" .Values.logLevel
  "log_format" .Values.logFormat
  "forward_auth_source" .Values.forwardAuthSource
}}
{{- if .Values.claimHeaders }}
{{- $_ := set $cfg "claim_headers" .Values.claimHeaders }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Claim header names the server emits: the configured ones, or its defaults. */}}
{{- define "extauthz.claimHeaderNames" -}}
{{- if .Values.claimHeaders }}
{{- keys .Values.claimHeaders | sortAlpha | join ", " }}
{{- else }}
{{- "x-jwt-sub, x-jwt-payload" }}
{{- end }}
{{- end }}
