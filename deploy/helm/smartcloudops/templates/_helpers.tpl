{{/* Names and labels. */}}
{{- define "sco.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sco.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sco.cp.fullname" -}}
{{- printf "%s-control-plane" (include "sco.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sco.agent.fullname" -}}
{{- printf "%s-agent" (include "sco.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sco.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: smartcloudops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sco.cp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{- define "sco.agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "sco.cp.image" -}}
{{- printf "%s:%s" .Values.controlPlane.image.repository (default .Chart.AppVersion .Values.controlPlane.image.tag) -}}
{{- end -}}

{{- define "sco.agent.image" -}}
{{- printf "%s:%s" .Values.agent.image.repository (default .Chart.AppVersion .Values.agent.image.tag) -}}
{{- end -}}

{{/* The gRPC Service's in-cluster name and the endpoint agents dial. */}}
{{- define "sco.cp.grpcHost" -}}
{{- printf "%s-grpc.%s.svc" (include "sco.cp.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "sco.agent.server" -}}
{{- if .Values.agent.enrollment.server -}}
{{- .Values.agent.enrollment.server -}}
{{- else -}}
{{- printf "%s:%v" (include "sco.cp.grpcHost" .) .Values.controlPlane.service.grpc.port -}}
{{- end -}}
{{- end -}}

{{/* The agent's QUIC endpoint, quic://HOST:PORT (agent.transport=quic). */}}
{{- define "sco.agent.quicServer" -}}
{{- if .Values.agent.enrollment.quicServer -}}
{{- printf "quic://%s" .Values.agent.enrollment.quicServer -}}
{{- else if and .Values.controlPlane.enabled .Values.controlPlane.ports.quic -}}
{{- printf "quic://%s:%v" (include "sco.cp.grpcHost" .) .Values.controlPlane.ports.quic -}}
{{- else -}}
{{- fail "agent.transport=quic needs controlPlane.ports.quic (the control plane's QUIC port) or agent.enrollment.quicServer" -}}
{{- end -}}
{{- end -}}

{{/*
controlPlane.listenAddress with a port, as the control plane parses a listen address (a Rust
SocketAddr): IPv4 as it is (0.0.0.0:7443), IPv6 in brackets ([::]:7443; given bare or already
in brackets). Anything else (a host name, an address with a port) fails the render.
Called with (list $ PORT).
*/}}
{{- define "sco.cp.listen" -}}
{{- $root := index . 0 -}}
{{- $port := index . 1 -}}
{{- $addr := toString $root.Values.controlPlane.listenAddress | trim -}}
{{- $bare := $addr -}}
{{- if and (hasPrefix "[" $addr) (hasSuffix "]" $addr) -}}
{{- $bare = trimSuffix "]" (trimPrefix "[" $addr) -}}
{{- end -}}
{{- if and (eq $bare $addr) (regexMatch "^[0-9]{1,3}([.][0-9]{1,3}){3}$" $bare) -}}
{{- printf "%s:%v" $bare $port -}}
{{- else if regexMatch "^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}$|^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,6}:[0-9]{1,3}([.][0-9]{1,3}){3}$" $bare -}}
{{- printf "[%s]:%v" $bare $port -}}
{{- else -}}
{{- fail (printf "controlPlane.listenAddress must be an IP address without a port (\"0.0.0.0\", or \"::\" for IPv6-only and dual-stack clusters), not %q" $addr) -}}
{{- end -}}
{{- end -}}

{{/* "localhost" while the development PKI (generated server certificate) is in use. */}}
{{- define "sco.agent.serverName" -}}
{{- if .Values.agent.enrollment.serverName -}}
{{- .Values.agent.enrollment.serverName -}}
{{- else if and (not .Values.controlPlane.serverTls.existingSecret) (not .Values.controlPlane.pki.existingSecret) -}}
localhost
{{- end -}}
{{- end -}}

{{- define "sco.agent.enrollSecret" -}}
{{- default (printf "%s-enrollment" (include "sco.agent.fullname" .)) .Values.agent.enrollment.existingSecret -}}
{{- end -}}

{{/*
TOML from a map: top-level scalars and lists, then one [table] per map, and
one [table.sub] per map inside it (keys quoted there: labels, env). Values are
written with toJson (JSON strings, numbers, booleans and arrays are valid
TOML); nulls are left out.
*/}}
{{- define "sco.toml" -}}
{{- range $k, $v := . }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{ $k }} = {{ $v | toJson }}
{{- end }}
{{- end }}
{{- range $k, $v := . }}
{{- if kindIs "map" $v }}

[{{ $k }}]
{{- range $k2, $v2 := $v }}
{{- if and (not (kindIs "map" $v2)) (not (kindIs "invalid" $v2)) }}
{{ $k2 }} = {{ $v2 | toJson }}
{{- end }}
{{- end }}
{{- range $k2, $v2 := $v }}
{{- if kindIs "map" $v2 }}

[{{ $k }}.{{ $k2 }}]
{{- range $k3, $v3 := $v2 }}
{{ $k3 | toJson }} = {{ $v3 | toJson }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Checks that fail the render with a reason. */}}
{{- define "sco.validate" -}}
{{- $cp := .Values.controlPlane -}}
{{- if not (has $cp.database.type (list "sqlite" "postgres")) -}}
{{- fail (printf "controlPlane.database.type must be sqlite or postgres, not %q" $cp.database.type) -}}
{{- end -}}
{{- if and (eq $cp.database.type "sqlite") (gt (int $cp.replicas) 1) -}}
{{- fail (printf "controlPlane.replicas is %v but SQLite lives on one pod's volume: more than one replica needs controlPlane.database.type=postgres" $cp.replicas) -}}
{{- end -}}
{{- if eq $cp.database.type "postgres" -}}
{{- if not $cp.database.postgres.existingSecret -}}
{{- fail "controlPlane.database.type=postgres needs controlPlane.database.postgres.existingSecret (a Secret holding the postgres:// URL)" -}}
{{- end -}}
{{- if not $cp.pki.existingSecret -}}
{{- fail "controlPlane.database.type=postgres needs controlPlane.pki.existingSecret: every replica must share the fleet CA and the policy signing key" -}}
{{- end -}}
{{- if not $cp.jwt.existingSecret -}}
{{- fail "controlPlane.database.type=postgres needs controlPlane.jwt.existingSecret: every replica must verify the tokens the others issue" -}}
{{- end -}}
{{- end -}}
{{- end -}}
