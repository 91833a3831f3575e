{{/* The scale set's name: runnerScaleSetName, else the release name. */}}
{{- define "gha-rs.scaleSetName" -}}
{{- .Values.runnerScaleSetName | default .Release.Name -}}
{{- end -}}

{{/* Prefix of every chart object's name: <scale set name>-gha-rs, with "_" made "-". */}}
{{- define "gha-rs.fullname" -}}
{{- printf "%s-gha-rs" (include "gha-rs.scaleSetName" .) | trunc 63 | trimSuffix "-" | replace "_" "-" -}}
{{- end -}}

{{- define "gha-rs.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace -}}
{{- end -}}

{{- define "gha-rs.chart" -}}
{{- printf "gha-rs-%s" .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gha-rs.githubSecretName" -}}
{{- if kindIs "string" .Values.githubConfigSecret -}}
{{- if empty .Values.githubConfigSecret -}}
{{- fail "Values.githubConfigSecret is required for setting auth with GitHub server. Fix: give the name of an existing Secret, or a map with github_token (or github_app_id, github_app_installation_id and github_app_private_key)." -}}
{{- end -}}
{{- .Values.githubConfigSecret -}}
{{- else -}}
{{- include "gha-rs.fullname" . }}-github-secret
{{- end -}}
{{- end -}}

{{- define "gha-rs.noPermissionServiceAccountName" -}}
{{- include "gha-rs.fullname" . }}-no-permission
{{- end -}}

{{- define "gha-rs.kubeModeName" -}}
{{- include "gha-rs.fullname" . }}-kube-mode
{{- end -}}

{{- define "gha-rs.managerName" -}}
{{- include "gha-rs.fullname" . }}-manager
{{- end -}}

{{/* The container mode: "", "dind", "kubernetes" or "kubernetes-novolume". */}}
{{- define "gha-rs.containerMode" -}}
{{- (.Values.containerMode | default dict).type | default "" -}}
{{- end -}}

{{- define "gha-rs.isKubernetesMode" -}}
{{- if has (include "gha-rs.containerMode" .) (list "kubernetes" "kubernetes-novolume") }}true{{ end -}}
{{- end -}}

{{- define "gha-rs.userServiceAccountName" -}}
{{- ((.Values.template | default dict).spec | default dict).serviceAccountName | default "" -}}
{{- end -}}

{{/* "true" when the chart renders the kube-mode ServiceAccount, Role and RoleBinding. */}}
{{- define "gha-rs.rendersKubeMode" -}}
{{- if and (include "gha-rs.isKubernetesMode" .) (not (include "gha-rs.userServiceAccountName" .)) }}true{{ end -}}
{{- end -}}

{{/* "true" when the chart renders the no-permission ServiceAccount. */}}
{{- define "gha-rs.rendersNoPermission" -}}
{{- if and (not (include "gha-rs.isKubernetesMode" .)) (not (include "gha-rs.userServiceAccountName" .)) }}true{{ end -}}
{{- end -}}

{{/* Labels every object of the chart carries; users cannot override them. */}}
{{- define "gha-rs.labels" -}}
helm.sh/chart: {{ include "gha-rs.chart" . }}
app.kubernetes.io/name: {{ include "gha-rs.scaleSetName" . | quote }}
app.kubernetes.io/instance: {{ include "gha-rs.scaleSetName" . | quote }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gha-rs
actions.github.com/scale-set-name: {{ include "gha-rs.scaleSetName" . | quote }}
actions.github.com/scale-set-namespace: {{ include "gha-rs.namespace" . | quote }}
{{- end -}}

{{/*
labels/annotations of a chart object, as YAML under metadata. Arguments (a dict):
  root: the chart context; resource: its key under resourceMeta; component: optional
  app.kubernetes.io/component; ars: true for the AutoscalingRunnerSet (stricter filtering);
  annotations: chart-owned annotations set last.
Order: global labels/annotations, then resourceMeta.<resource>, then the chart's own.
*/}}
{{- define "gha-rs.metadata" -}}
{{- $root := .root -}}
{{- $reserved := include "gha-rs.labels" $root | fromYaml -}}
{{- $meta := dict -}}
{{- with $root.Values.resourceMeta }}{{ with index . $.resource }}{{ $meta = . }}{{ end }}{{ end -}}
{{- $labels := dict -}}
{{- range $k, $v := ($root.Values.labels | default dict) -}}
{{- if not (or (hasKey $reserved $k) (eq $k "app.kubernetes.io/component") (hasPrefix "actions.github.com/" $k)) -}}
{{- $_ := set $labels $k (include "gha-rs.string" $v) -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := ($meta.labels | default dict) -}}
{{- if or (not $.ars) (not (or (hasKey $reserved $k) (eq $k "app.kubernetes.io/component") (hasPrefix "actions.github.com/" $k))) -}}
{{- $_ := set $labels $k (include "gha-rs.string" $v) -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := $reserved }}{{ $_ := set $labels $k ($v | toString) }}{{ end -}}
{{- with .component }}{{ $_ := set $labels "app.kubernetes.io/component" . }}{{ end -}}
{{- $annotations := dict -}}
{{- range $source := list ($root.Values.annotations | default dict) ($meta.annotations | default dict) -}}
{{- range $k, $v := $source -}}
{{- if or (not $.ars) (not (or (hasPrefix "actions.github.com/cleanup-" $k) (eq $k "actions.github.com/values-hash"))) -}}
{{- $_ := set $annotations $k (include "gha-rs.string" $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := (.annotations | default dict) }}{{ $_ := set $annotations $k $v }}{{ end -}}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The controller's ServiceAccount as YAML {name, namespace}: each field from
controllerServiceAccount if set, else discovered from the controller Deployment's labels.
*/}}
{{- define "gha-rs.controllerServiceAccount" -}}
{{- $given := .Values.controllerServiceAccount | default dict -}}
{{- $result := dict "name" ($given.name | default "") "namespace" ($given.namespace | default "") -}}
{{- if not (and $result.name $result.namespace) -}}
{{- $field := ternary "namespace" "name" (not (empty $result.name)) -}}
{{- $hint := printf "Consider setting controllerServiceAccount.%s in values.yaml to be explicit if you think the discovery is wrong (it is required with helm template, which cannot look into the cluster)." $field -}}
{{- $clusterWide := list -}}
{{- $singleNamespace := dict -}}
{{- range (lookup "apps/v1" "Deployment" "" "").items -}}
{{- $labels := .metadata.labels | default dict -}}
{{- if eq (get $labels "app.kubernetes.io/part-of") "gha-rs-controller" -}}
{{- if hasKey $labels "actions.github.com/controller-watch-single-namespace" -}}
{{- $_ := set $singleNamespace (get $labels "actions.github.com/controller-watch-single-namespace") . -}}
{{- else -}}
{{- $clusterWide = append $clusterWide . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $found := dict -}}
{{- if and (empty $clusterWide) (empty $singleNamespace) -}}
{{- fail (printf "No gha-rs-controller deployment found using label (app.kubernetes.io/part-of=gha-rs-controller). %s" $hint) -}}
{{- else if and $clusterWide $singleNamespace -}}
{{- fail (printf "Found both gha-rs-controller installed with flags.watchSingleNamespace set and unset in cluster, this is not supported. %s" $hint) -}}
{{- else if gt (len $clusterWide) 1 -}}
{{- fail (printf "More than one gha-rs-controller deployment found using label (app.kubernetes.io/part-of=gha-rs-controller). %s" $hint) -}}
{{- else if $clusterWide -}}
{{- $found = first $clusterWide -}}
{{- else if hasKey $singleNamespace (include "gha-rs.namespace" .) -}}
{{- $found = get $singleNamespace (include "gha-rs.namespace" .) -}}
{{- else -}}
{{- fail (printf "No gha-rs-controller deployment that watch this namespace found using label (actions.github.com/controller-watch-single-namespace). %s" $hint) -}}
{{- end -}}
{{- range $f := list "name" "namespace" -}}
{{- if not (get $result $f) -}}
{{- $value := get ((($found | default dict).metadata | default dict).labels | default dict) (printf "actions.github.com/controller-service-account-%s" $f) -}}
{{- if not $value -}}
{{- fail (printf "No service account %s found for gha-rs-controller deployment using label (actions.github.com/controller-service-account-%s), consider setting controllerServiceAccount.%s in values.yaml to be explicit if you think the discovery is wrong." $f $f $f) -}}
{{- end -}}
{{- $_ := set $result $f $value -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $result -}}
{{- end -}}

{{/* true when the dind daemon runs as a native sidecar (Kubernetes >= 1.29). Vendor minors
     such as "29+" count as 29. */}}
{{- define "gha-rs.nativeSidecars" -}}
{{- $major := regexFind "^[0-9]+" (.Capabilities.KubeVersion.Major | toString) | default "0" | int -}}
{{- $minor := regexFind "^[0-9]+" (.Capabilities.KubeVersion.Minor | toString) | default "0" | int -}}
{{- if or (gt $major 1) (and (eq $major 1) (ge $minor 29)) }}true{{ end -}}
{{- end -}}

{{/* A scalar as a string; whole numbers print as integers (values arrive as float64, which
     toString would print as 9.8765432e+07). */}}
{{- define "gha-rs.string" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{- define "gha-rs.isNumber" -}}
{{- if has (kindOf .) (list "int" "int64" "float64" "int32" "uint64") }}true{{ end -}}
{{- end -}}

{{/* The runner pod spec (spec.template.spec of the AutoscalingRunnerSet), as YAML. */}}
{{- define "gha-rs.runnerPodSpec" -}}
{{- $mode := include "gha-rs.containerMode" . -}}
{{- $userSpec := (.Values.template | default dict).spec | default dict -}}
{{- $spec := dict -}}
{{- range $k, $v := $userSpec -}}
{{- if not (has $k (list "containers" "volumes" "initContainers" "serviceAccountName")) -}}
{{- $_ := set $spec $k $v -}}
{{- end -}}
{{- end -}}
{{- if not $userSpec.restartPolicy }}{{ $_ := set $spec "restartPolicy" "Never" }}{{ end -}}
{{- $sa := include "gha-rs.userServiceAccountName" . -}}
{{- if not $sa -}}
{{- $sa = ternary (include "gha-rs.kubeModeName" .) (include "gha-rs.noPermissionServiceAccountName" .) (eq (include "gha-rs.isKubernetesMode" .) "true") -}}
{{- end -}}
{{- $_ := set $spec "serviceAccountName" $sa -}}

{{- /* githubServerTLS: the CA file inside the runner container */ -}}
{{- $tls := .Values.githubServerTLS | default dict -}}
{{- $tlsPath := "" -}}
{{- $tlsRef := dict -}}
{{- if $tls.runnerMountPath -}}
{{- $tlsRef = ($tls.certificateFrom | default dict).configMapKeyRef | default dict -}}
{{- if not (and $tlsRef.name $tlsRef.key) -}}
{{- fail "githubServerTLS.runnerMountPath needs githubServerTLS.certificateFrom.configMapKeyRef.name and .key; fix: name the ConfigMap and the key that hold the CA certificate" -}}
{{- end -}}
{{- $tlsPath = clean (printf "%s/%s" $tls.runnerMountPath $tlsRef.key) -}}
{{- end -}}

{{- /* the runner container, rebuilt with what the mode needs */ -}}
{{- $userContainers := $userSpec.containers | default list -}}
{{- $userRunner := dict -}}
{{- range $userContainers }}{{ if eq .name "runner" }}{{ $userRunner = . }}{{ end }}{{ end -}}
{{- if not $userRunner -}}
{{- fail "template.spec.containers has no container named \"runner\": the controller starts the runner in it; fix: name the runner container \"runner\" (see the chart's default template)" -}}
{{- end -}}
{{- if not $userRunner.image -}}
{{- fail "template.spec.containers: the \"runner\" container has no image; fix: set its image, e.g. ghcr.io/actions/actions-runner:latest" -}}
{{- end -}}
{{- $addEnv := list -}}
{{- $addMounts := list -}}
{{- if eq $mode "dind" -}}
{{- $addEnv = list (dict "name" "DOCKER_HOST" "value" "unix:///var/run/docker.sock") (dict "name" "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS" "value" "120") -}}
{{- $addMounts = list (dict "name" "work" "mountPath" "/home/runner/_work") (dict "name" "dind-sock" "mountPath" "/var/run") -}}
{{- else if has $mode (list "kubernetes" "kubernetes-novolume") -}}
{{- $hook := ternary "/home/runner/k8s/index.js" "/home/runner/k8s-novolume/index.js" (eq $mode "kubernetes") -}}
{{- $addEnv = list (dict "name" "ACTIONS_RUNNER_CONTAINER_HOOKS" "value" $hook) (dict "name" "ACTIONS_RUNNER_POD_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name"))) (dict "name" "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER" "value" "true") -}}
{{- if eq $mode "kubernetes" -}}
{{- $addMounts = list (dict "name" "work" "mountPath" "/home/runner/_work") -}}
{{- else -}}
{{- $addEnv = append $addEnv (dict "name" "ACTIONS_RUNNER_IMAGE" "value" ($userRunner.image | default "")) -}}
{{- end -}}
{{- end -}}
{{- if $tlsPath -}}
{{- $addEnv = concat $addEnv (list (dict "name" "NODE_EXTRA_CA_CERTS" "value" $tlsPath) (dict "name" "RUNNER_UPDATE_CA_CERTS" "value" "1")) -}}
{{- $addMounts = append $addMounts (dict "name" "github-server-tls-cert" "mountPath" $tlsPath "subPath" $tlsRef.key) -}}
{{- end -}}
{{- $env := $userRunner.env | default list -}}
{{- $envNames := list -}}
{{- range $env }}{{ $envNames = append $envNames .name }}{{ end -}}
{{- range $addEnv }}{{ if not (has .name $envNames) }}{{ $env = append $env . }}{{ end }}{{ end -}}
{{- $mounts := $userRunner.volumeMounts | default list -}}
{{- $mountNames := list -}}
{{- range $mounts }}{{ $mountNames = append $mountNames .name }}{{ end -}}
{{- range $addMounts }}{{ if not (has .name $mountNames) }}{{ $mounts = append $mounts . }}{{ end }}{{ end -}}
{{- $runner := omit $userRunner "env" "volumeMounts" -}}
{{- $_ := set $runner "name" "runner" -}}
{{- if $env }}{{ $_ := set $runner "env" $env }}{{ end -}}
{{- if or $mounts (eq $mode "kubernetes-novolume") }}{{ $_ := set $runner "volumeMounts" $mounts }}{{ end -}}

{{- /* the Docker daemon of dind mode */ -}}
{{- $sidecar := include "gha-rs.nativeSidecars" . -}}
{{- $dind := dict "name" "dind" "image" "docker:dind" -}}
{{- $_ := set $dind "args" (list "dockerd" "--host=unix:///var/run/docker.sock" "--group=$(DOCKER_GROUP_GID)") -}}
{{- $_ := set $dind "env" (list (dict "name" "DOCKER_GROUP_GID" "value" "123")) -}}
{{- $_ := set $dind "securityContext" (dict "privileged" true) -}}
{{- $_ := set $dind "volumeMounts" (list (dict "name" "work" "mountPath" "/home/runner/_work") (dict "name" "dind-sock" "mountPath" "/var/run") (dict "name" "dind-externals" "mountPath" "/home/runner/externals")) -}}
{{- if $sidecar -}}
{{- $_ := set $dind "restartPolicy" "Always" -}}
{{- $_ := set $dind "startupProbe" (dict "exec" (dict "command" (list "docker" "info")) "initialDelaySeconds" 0 "failureThreshold" 24 "periodSeconds" 5) -}}
{{- end -}}

{{- /* containers */ -}}
{{- $containers := list -}}
{{- if has $mode (list "dind" "kubernetes" "kubernetes-novolume") -}}
{{- $containers = list $runner -}}
{{- if and (eq $mode "dind") (not $sidecar) }}{{ $containers = append $containers $dind }}{{ end -}}
{{- range $userContainers -}}
{{- if not (or (eq .name "runner") (and (eq $mode "dind") (eq .name "dind"))) }}{{ $containers = append $containers . }}{{ end -}}
{{- end -}}
{{- else -}}
{{- range $userContainers -}}
{{- $containers = append $containers (ternary $runner . (eq .name "runner")) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $spec "containers" $containers -}}

{{- /* init containers */ -}}
{{- $init := list -}}
{{- if eq $mode "dind" -}}
{{- $init = append $init (dict "name" "init-dind-externals" "image" ($userRunner.image | default "") "command" (list "cp") "args" (list "-r" "/home/runner/externals/." "/home/runner/tmpDir/") "volumeMounts" (list (dict "name" "dind-externals" "mountPath" "/home/runner/tmpDir"))) -}}
{{- if $sidecar }}{{ $init = append $init $dind }}{{ end -}}
{{- end -}}
{{- $init = concat $init ($userSpec.initContainers | default list) -}}
{{- if $init }}{{ $_ := set $spec "initContainers" $init }}{{ end -}}

{{- /* volumes */ -}}
{{- $userVolumes := $userSpec.volumes | default list -}}
{{- $volumes := list -}}
{{- if $tlsPath -}}
{{- $volumes = append $volumes (dict "name" "github-server-tls-cert" "configMap" (dict "name" $tlsRef.name "items" (list (dict "key" $tlsRef.key "path" $tlsRef.key)))) -}}
{{- end -}}
{{- if has $mode (list "dind" "kubernetes") -}}
{{- $work := dict -}}
{{- range $userVolumes }}{{ if eq .name "work" }}{{ $work = . }}{{ end }}{{ end -}}
{{- if eq $mode "dind" -}}
{{- $volumes = concat $volumes (list (dict "name" "dind-sock" "emptyDir" dict) (dict "name" "dind-externals" "emptyDir" dict)) -}}
{{- $volumes = append $volumes ($work | default (dict "name" "work" "emptyDir" dict)) -}}
{{- else -}}
{{- $claim := (.Values.containerMode | default dict).kubernetesModeWorkVolumeClaim | default (dict "accessModes" (list "ReadWriteOnce") "resources" (dict "requests" (dict "storage" "1Gi"))) -}}
{{- $volumes = append $volumes ($work | default (dict "name" "work" "ephemeral" (dict "volumeClaimTemplate" (dict "spec" $claim)))) -}}
{{- end -}}
{{- range $userVolumes }}{{ if ne .name "work" }}{{ $volumes = append $volumes . }}{{ end }}{{ end -}}
{{- else -}}
{{- $volumes = concat $volumes $userVolumes -}}
{{- end -}}
{{- if or $volumes (eq $mode "kubernetes-novolume") }}{{ $_ := set $spec "volumes" ($volumes | default list) }}{{ end -}}
{{- toYaml $spec -}}
{{- end -}}
