#!/usr/bin/env bash
# Property-based API testing: starts a real control plane (SQLite, temp
# dir) with its first admin bootstrapped from a password file
# (SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE), and runs schemathesis against /openapi.json
# with the admin's token. Fails on any 5xx or a response that breaks the
# documented schema. Bounded: 50 examples per operation, 15 min overall.
# Usage: fuzz/schemathesis.sh [path/to/sco-control-plane]
set -euo pipefail
cd "$(dirname "$0")/.."
SCHEMATHESIS_VERSION=4.32.5
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/sco-control-plane}
[ -x "$bin" ] || { echo "no control-plane binary at $bin (cargo build --bins first)" >&2; exit 1; }
if ! st --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m pip install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

dir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

read -r grpc_port http_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
base="http://127.0.0.1:$http_port"
"$bin" pki init --dir "$dir/pki" >/dev/null
cat > "$dir/control-plane.toml" <<TOML
grpc_listen = "127.0.0.1:$grpc_port"
http_listen = "127.0.0.1:$http_port"
data_dir = "$dir"
[auth]
jwt_secret = "schemathesis-secret-schemathesis-secret-0"
TOML
password="schemathesis-admin-password"
printf '%s\n' "$password" > "$dir/admin.password"
chmod 600 "$dir/admin.password"
SCO_LOG=warn SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE="$dir/admin.password" \
  "$bin" serve --config "$dir/control-plane.toml" >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "$base/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "$base/health" >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

token=$(curl -sf -XPOST "$base/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

# /auth/logout is left out: it would revoke the token the run uses.
status=0
timeout 900 st run "$base/openapi.json" \
  --url "$base" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --exclude-path /auth/logout \
  --max-examples 50 \
  --seed 1 \
  --request-timeout 20 \
  --no-color || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- control plane log ---" >&2
  tail -50 "$dir/server.log" >&2
fi
exit "$status"
