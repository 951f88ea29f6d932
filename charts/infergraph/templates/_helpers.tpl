{{/* Names, labels and the operator's image. */}}

{{- define "infergraph.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "infergraph.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "infergraph.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infergraph.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "infergraph.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "infergraph.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: infergraph
{{- end }}

{{- define "infergraph.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "infergraph.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "infergraph.image" -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .Values.image.registry) .Values.image.name (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The bucket prefix: required only with modelSettings.serve false (every Seldon v2 Model then
reads its settings from a folder the user uploads there); served, a graph of hub-id nodes names
no bucket, and the operator names the missing value for a graph that needs one.
*/}}
{{- define "infergraph.storageUri" -}}
{{- if .Values.modelSettings.serve }}
{{- .Values.storageUri }}
{{- else }}
{{- required "storageUri is required with modelSettings.serve false: the bucket prefix you own where model-settings folders are uploaded, e.g. --set storageUri=s3://my-bucket/infergraph" .Values.storageUri }}
{{- end }}
{{- end }}

{{/*
Where Seldon v2's agents (rclone, in each Server pod) reach the operator's model-settings
server: the Service below by its namespace-qualified name, which resolves from every namespace
(`<svc>.<ns>.svc` plus the pods' cluster-domain search path). Empty: not served.
*/}}
{{- define "infergraph.settingsUrl" -}}
{{- if .Values.modelSettings.serve }}
{{- printf "http://%s-settings.%s.svc:%d" (include "infergraph.fullname" .) .Release.Namespace (int .Values.modelSettings.port) }}
{{- end }}
{{- end }}

{{/*
What the operator creates for a graph: every kind the renderers emit (Seldon Core v2 and v1,
KEDA, autoscaling/v2, prometheus-operator monitors). tests/test_chart.py checks this list
against the renderers' output for every graph under k8s/graphs.
*/}}
{{- define "infergraph.childRules" -}}
- apiGroups: [mlops.seldon.io]
  resources: [models, servers, serverconfigs, pipelines]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [machinelearning.seldon.io]
  resources: [seldondeployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors, servicemonitors]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices, servingruntimes, inferencegraphs]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}

{{/* The graphs themselves (kopf patches annotations and finalizers) and their Events. */}}
{{- define "infergraph.graphRules" -}}
- apiGroups: [infergraph.io]
  resources: [inferencegraphs]
  verbs: [get, list, watch, patch]
- apiGroups: [infergraph.io]
  resources: [inferencegraphs/status]
  verbs: [get, patch]
{{- /* The children's ownerReferences set blockOwnerDeletion: where the
OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift), that needs update on
the owner's finalizers subresource. */}}
- apiGroups: [infergraph.io]
  resources: [inferencegraphs/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end }}
