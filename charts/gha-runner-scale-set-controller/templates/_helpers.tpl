{{/* Base name: gha-rs-controller unless nameOverride. */}}
{{- define "gha-rs-controller.name" -}}
{{- .Values.nameOverride | default "gha-rs-controller" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: fullnameOverride, else the release name when it already holds the base name,
     else <release>-<base name>. */}}
{{- define "gha-rs-controller.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "gha-rs-controller.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gha-rs-controller.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace -}}
{{- end -}}

{{- define "gha-rs-controller.chart" -}}
{{- printf "gha-rs-controller-%s" .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gha-rs-controller.image" -}}
{{- $image := .Values.image | default dict -}}
{{- $repository := required "image.repository is required: the manager image, e.g. ghcr.io/arc-rs/gha-runner-scale-set-controller" $image.repository -}}
{{- printf "%s:%s" $repository ($image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{- define "gha-rs-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gha-rs-controller.name" . }}
app.kubernetes.io/namespace: {{ include "gha-rs-controller.namespace" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the Deployment and the ServiceAccount. */}}
{{- define "gha-rs-controller.labels" -}}
helm.sh/chart: {{ include "gha-rs-controller.chart" . }}
{{ include "gha-rs-controller.selectorLabels" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/part-of: gha-rs-controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- range $key, $value := .Values.labels }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The manager's ServiceAccount name, with ARC's checks. */}}
{{- define "gha-rs-controller.serviceAccountName" -}}
{{- if eq ((.Values.serviceAccount | default dict).name | toString) "default" -}}
{{- fail "serviceAccount.name cannot be set to 'default'" -}}
{{- end -}}
{{- if (.Values.serviceAccount | default dict).create -}}
{{- (.Values.serviceAccount | default dict).name | default (include "gha-rs-controller.fullname" .) -}}
{{- else -}}
{{- if not (.Values.serviceAccount | default dict).name -}}
{{- fail "serviceAccount.name must be set if serviceAccount.create is false" -}}
{{- end -}}
{{- (.Values.serviceAccount | default dict).name -}}
{{- end -}}
{{- end -}}

{{/* The subject every binding of this chart names. */}}
{{- define "gha-rs-controller.subject" -}}
- kind: ServiceAccount
  name: {{ include "gha-rs-controller.serviceAccountName" . }}
  namespace: {{ include "gha-rs-controller.namespace" . }}
{{- end -}}

{{/* The trailing port number of an address like ":8080"; fails naming the value otherwise. */}}
{{- define "gha-rs-controller.port" -}}
{{- $port := regexFind "[0-9]+$" (.addr | toString) -}}
{{- if not $port -}}
{{- fail (printf "Values.%s must end with a numeric port (got %q); fix: use an address like \":8080\"" .value (.addr | toString)) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/* The manager's command-line flags, one per line, in ARC's order. */}}
{{- define "gha-rs-controller.args" -}}
- "--auto-scaling-runner-set-only"
{{- if gt (int (default 1 .Values.replicaCount)) 1 }}
- "--enable-leader-election"
- "--leader-election-id={{ include "gha-rs-controller.fullname" . }}"
{{- end }}
{{- range .Values.imagePullSecrets }}
- "--auto-scaler-image-pull-secrets={{ .name }}"
{{- end }}
{{- with .Values.flags }}
{{- with .logLevel }}
- "--log-level={{ . }}"
{{- end }}
{{- with .logFormat }}
- "--log-format={{ . }}"
{{- end }}
{{- with .watchSingleNamespace }}
- "--watch-single-namespace={{ . }}"
{{- end }}
{{- with .runnerMaxConcurrentReconciles }}
- "--runner-max-concurrent-reconciles={{ . }}"
{{- end }}
{{- with .updateStrategy }}
{{- if not (has . (list "immediate" "eventual" "replace" "drain")) }}
{{- fail (printf "flags.updateStrategy is %q; allowed values: \"immediate\" (replace idle runners at once) or \"eventual\" (wait until no runner is pending or running); fix: set one of them or leave the key out" .) }}
{{- end }}
- "--update-strategy={{ . }}"
{{- end }}
{{- end }}
{{- with .Values.metrics }}
- "--listener-metrics-addr={{ .listenerAddr }}"
- "--listener-metrics-endpoint={{ .listenerEndpoint }}"
- "--metrics-addr={{ .controllerManagerAddr }}"
{{- else }}
- "--listener-metrics-addr=0"
- "--listener-metrics-endpoint="
- "--metrics-addr=0"
{{- end }}
{{- with (.Values.pprof | default dict).addr }}
- "--pprof-addr={{ . }}"
{{- end }}
{{- with .Values.flags }}
{{- range .excludeLabelPropagationPrefixes }}
- "--exclude-label-propagation-prefix={{ . }}"
{{- end }}
{{- with .k8sClientRateLimiterQPS }}
- "--k8s-client-rate-limiter-qps={{ . }}"
{{- end }}
{{- with .k8sClientRateLimiterBurst }}
- "--k8s-client-rate-limiter-burst={{ . }}"
{{- end }}
{{- with (.rateLimiter | default dict).name }}
- "--workqueue-rate-limiter={{ . }}"
{{- end }}
{{- with .healthProbeBindAddress }}
- "--health-probe-bind-address={{ . }}"
{{- end }}
{{- end }}
{{- end -}}
