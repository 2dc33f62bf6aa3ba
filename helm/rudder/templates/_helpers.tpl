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

{{/* The webhooks' clientConfig: the chart's Service, port 443 (-> 15017). */}}
{{- define "rudder.webhookClient" -}}
service:
  name: rudder
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
caBundle: {{ required "caBundle is required: base64 of Rudder's CA root certificate (base64 -w0 < root-cert.pem); see docs/operating.md, Installing with Helm" .root.Values.caBundle | quote }}
{{- end }}
