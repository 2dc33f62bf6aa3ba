{{/* Labels on every object. */}}
{{- define "rudder.labels" -}}
app.kubernetes.io/name: rudder
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The Deployment's selector (immutable: keep it small). */}}
{{- define "rudder.selectorLabels" -}}
app.kubernetes.io/name: rudder
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rudder.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The webhooks' clientConfig: the chart's Service, port 443 (-> 15017),
and `caBundle` only when given. */}}
{{- define "rudder.webhookClient" -}}
service:
  name: rudder
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- /* Unset: Rudder sets it (field manager rudder) and Helm leaves it alone. */}}
{{- with .root.Values.caBundle }}
caBundle: {{ . | quote }}
{{- end }}
{{- end }}
