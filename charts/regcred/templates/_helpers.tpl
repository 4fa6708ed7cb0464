{{/* The name of every object: the release name when it names regcred, else release-regcred. */}}
{{- define "regcred.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* What selects the operator's Pods; the same as config/. */}}
{{- define "regcred.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
{{- end -}}

{{/* Labels of every object: config/'s, and Helm's usual four. */}}
{{- define "regcred.labels" -}}
{{ include "regcred.selectorLabels" . }}
{{ include "regcred.helmLabels" . }}
{{- end -}}

{{/* Helm's usual four, alone on the CRD (generated from src/api, it has no label of config/'s). */}}
{{- define "regcred.helmLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "regcred.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount's subject, for the bindings. */}}
{{- define "regcred.subject" -}}
- kind: ServiceAccount
  name: {{ include "regcred.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
