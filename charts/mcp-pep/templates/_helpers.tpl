{{/* Names: at most 63 characters (DNS labels); components append a suffix of up to 20. */}}
{{- define "mcp-pep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 43 | trimSuffix "-" }}
{{- end }}

{{- define "mcp-pep.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 43 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 43 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 43 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mcp-pep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "mcp-pep.labels" -}}
helm.sh/chart: {{ include "mcp-pep.chart" . }}
app.kubernetes.io/name: {{ include "mcp-pep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-pep
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component's resources: include "mcp-pep.componentLabels" (list . "webhook"). */}}
{{- define "mcp-pep.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "mcp-pep.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Selector labels of one component: include "mcp-pep.selectorLabels" (list . "webhook"). */}}
{{- define "mcp-pep.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "mcp-pep.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The image reference: repository:tag, @digest when pinned. */}}
{{- define "mcp-pep.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end }}

{{- define "mcp-pep.webhook.name" -}}
{{- printf "%s-webhook" (include "mcp-pep.fullname" .) }}
{{- end }}

{{- define "mcp-pep.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "mcp-pep.webhook.name" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mcp-pep.webhook.tlsSecretName" -}}
{{- printf "%s-tls" (include "mcp-pep.webhook.name" .) }}
{{- end }}

{{- define "mcp-pep.standalone.name" -}}
{{- printf "%s-standalone" (include "mcp-pep.fullname" .) }}
{{- end }}

{{- define "mcp-pep.standalone.serviceAccountName" -}}
{{- if .Values.standalone.serviceAccount.create }}
{{- default (include "mcp-pep.standalone.name" .) .Values.standalone.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.standalone.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the Rego, as pods mount it. */}}
{{- define "mcp-pep.policies.configMapName" -}}
{{- default .Values.policies.configMapName .Values.policies.existingConfigMap }}
{{- end }}

{{/* Whether to create monitoring.coreos.com/v1 objects: the API is served, or forced. */}}
{{- define "mcp-pep.monitoring.enabled" -}}
{{- if or .Values.monitoring.force (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/*
TLS material of the webhook, generated once per render and shared by the Secret, the
Deployment's checksum and the caBundle: {ca, cert, key} (PEM). An existing Secret is reused
(lookup), so an upgrade keeps the certificate; `helm template` has no cluster and generates
a new one every time.
*/}}
{{- define "mcp-pep.webhook.tls" -}}
{{- if not (hasKey . "mcpPepWebhookTLS") }}
{{- $secretName := include "mcp-pep.webhook.tlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName }}
{{- $tls := dict }}
{{- if and $existing (hasKey $existing "data") }}
{{- $data := $existing.data }}
{{- if and (hasKey $data "ca.crt") (hasKey $data "tls.crt") (hasKey $data "tls.key") }}
{{- $tls = dict "ca" (index $data "ca.crt" | b64dec) "cert" (index $data "tls.crt" | b64dec) "key" (index $data "tls.key" | b64dec) }}
{{- end }}
{{- end }}
{{- if not $tls }}
{{- $svc := include "mcp-pep.webhook.name" . }}
{{- $days := int .Values.webhook.tls.generated.validityDays }}
{{- $ca := genCA (printf "%s-ca" $svc) $days }}
{{- $dns := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc .Release.Namespace) nil $dns $days $ca }}
{{- $tls = dict "ca" $ca.Cert "cert" $cert.Cert "key" $cert.Key }}
{{- end }}
{{- $_ := set . "mcpPepWebhookTLS" $tls }}
{{- end }}
{{- toJson .mcpPepWebhookTLS }}
{{- end }}

{{/* The hardened container securityContext (the image's nonroot user, 65532). */}}
{{- define "mcp-pep.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "mcp-pep.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* A soft anti-affinity spreading a component's replicas over nodes. */}}
{{- define "mcp-pep.defaultAffinity" -}}
{{- $root := index . 0 -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "mcp-pep.selectorLabels" . | nindent 12 }}
{{- end }}

{{/*
The standalone proxy's configuration (README "Configuration reference"): the generated base,
with standalone.config merged over it. JSON is YAML; one line reads well in `kubectl describe`.
*/}}
{{- define "mcp-pep.standalone.config" -}}
{{- $s := .Values.standalone }}
{{- $base := dict
  "listen" (printf "0.0.0.0:%d" (int $s.port))
  "admin_listen" (printf "0.0.0.0:%d" (int $s.adminPort))
  "upstream" (dict "url" (required "standalone.upstream is required with standalone.enabled (the tool server's MCP URL)" $s.upstream))
  "policy" (dict "dir" "/etc/mcp-pep/policies")
  "log" (dict "format" .Values.injector.logFormat "level" $s.logLevel) }}
{{- if $s.spiffe }}
{{- $_ := set $base "identity" (dict "source" "workload_api" "trust_domains" (list .Values.injector.trustDomain)) }}
{{- end }}
{{- $st := $s.state }}
{{- if eq $st.backend "redis" }}
{{- $r := $st.redis }}
{{- $redis := dict
  "url" (required "standalone.state.redis.url is required with standalone.state.backend redis" $r.url)
  "key_prefix" $r.keyPrefix
  "timeout_ms" (int $r.timeoutMs)
  "connect_timeout_ms" (int $r.connectTimeoutMs)
  "pool_size" (int $r.poolSize) }}
{{- with $r.username }}{{ $_ := set $redis "username" . }}{{ end }}
{{- if $r.passwordSecret.name }}{{ $_ := set $redis "password_file" (printf "%s/password" (include "mcp-pep.redisSecretDir" .)) }}{{ end }}
{{- if $r.caSecret.name }}{{ $_ := set $redis "ca_file" (printf "%s/ca.crt" (include "mcp-pep.redisSecretDir" .)) }}{{ end }}
{{- $_ := set $base "state" (dict "backend" "redis" "redis" $redis) }}
{{- end }}
{{- if $st.nonceKeySecret.name }}
{{- $_ := set $base "auth" (dict "dpop_nonce_secret_file" (printf "%s/key" (include "mcp-pep.nonceSecretDir" .))) }}
{{- end }}
{{- toJson (mustMergeOverwrite $base (deepCopy $s.config)) }}
{{- end }}

{{/* Where the standalone pods mount the Redis Secrets (password, CA) and the nonce key. */}}
{{- define "mcp-pep.redisSecretDir" -}}/var/run/secrets/mcp-pep/redis{{- end }}
{{- define "mcp-pep.nonceSecretDir" -}}/var/run/secrets/mcp-pep/nonce{{- end }}
