#!/usr/bin/env bash
# CI install test of the Debian packages, as root on a Debian machine (systemd need not be
# PID 1): builds both packages (debug profile), installs them, checks files, owners and
# modes, validates the installed configs, verifies the installed units, starts the control
# plane and the agent exactly as their units' ExecStartPre/ExecStart would (as the unit's
# user, with the unit's EnvironmentFile, a notification socket and a watchdog), bootstraps
# the first admin, enrolls the agent with a token made over REST, waits for its rollups over
# REST, reinstalls over edited conffiles, and purges both. Fails on the first failed check;
# always stops what it started and purges what it installed.
#
# Usage: packaging/test-install.sh [build-deb.sh options, e.g. --no-build]
# Ports: 127.0.0.1:17443 (gRPC) and 127.0.0.1:18080 (REST), or SCO_DEB_TEST_GRPC_PORT and
# SCO_DEB_TEST_HTTP_PORT. SCO_DEB_TEST_PATIENCE_SECS (default 90) bounds every wait.
set -euo pipefail
cd "$(dirname "$0")/.."
started_at=$(date +%s)

grpc_port=${SCO_DEB_TEST_GRPC_PORT:-17443}
http_port=${SCO_DEB_TEST_HTTP_PORT:-18080}
patience=${SCO_DEB_TEST_PATIENCE_SECS:-90}
base="http://127.0.0.1:$http_port"
unitdir=/lib/systemd/system
cp_conf=/etc/sco-control-plane/control-plane.toml
cp_default=/etc/default/sco-control-plane
agent_conf=/etc/sco-agent/agent.toml
admin_password_file=/etc/sco-control-plane/admin-password

step() { echo "== $*"; }
ok() { echo "   ok: $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (it installs packages)"

# --- tools (a fresh Debian 12 may lack some) ------------------------------------------------
missing=()
for pair in curl:curl jq:jq python3:python3 setpriv:util-linux runuser:util-linux \
  systemd-analyze:systemd start-stop-daemon:dpkg strip:binutils; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
command -v adduser >/dev/null 2>&1 || missing+=(adduser)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -q && apt-get install -y -q "${missing[@]}"
fi

# --- state of this run and its cleanup -----------------------------------------------------
work=$(mktemp -d /tmp/sco-deb-test.XXXXXX)
chmod 0755 "$work" # the service user reaches its notification socket in here
pids=()
listeners=()
installed=no
user_existed=no
getent passwd sco >/dev/null && user_existed=yes

stop_pid() { # PID: TERM, then KILL after 20 s; only if it still runs one of our binaries
  local pid=$1
  case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
    /usr/bin/sco-agent* | /usr/bin/sco-control-plane*) ;;
    *) return 0 ;;
  esac
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  for pid in "${listeners[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  if [ "$installed" = yes ]; then
    dpkg --purge sco-agent sco-control-plane >/dev/null 2>&1 ||
      echo "cleanup: dpkg --purge failed" >&2
  fi
  if [ "$user_existed" = no ] && getent passwd sco >/dev/null; then
    userdel sco 2>/dev/null
    getent group sco >/dev/null && groupdel sco 2>/dev/null
  fi
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "--- $(basename "$log") (last 40 lines) ---" >&2
      tail -n 40 "$log" >&2
    done
  fi
  rm -rf "$work"
  echo "install test $([ "$status" -eq 0 ] && echo passed || echo FAILED) in $(($(date +%s) - started_at)) s"
  exit "$status"
}
trap cleanup EXIT

# wait_for WHAT COMMAND...: until COMMAND succeeds, or fail after the patience.
wait_for() {
  local what=$1
  shift
  local deadline=$(($(date +%s) + patience))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${patience} s waiting for $what"
    sleep 0.5
  done
}

# expect_stat PATH OWNER:GROUP MODE
expect_stat() {
  local actual
  actual=$(stat -c '%U:%G %a' "$1" 2>/dev/null) || fail "$1 does not exist"
  [ "$actual" = "$2 $3" ] || fail "$1 is $actual, expected $2 $3"
  ok "$1 $2 $3"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# unit_value UNIT KEY: the first KEY= of an installed unit.
unit_value() { sed -n "s/^$2=//p" "$unitdir/$1" | head -n1; }

# notify_listener NAME: a datagram socket standing in for systemd's NOTIFY_SOCKET; every
# datagram is appended to $work/NAME.notify followed by a blank line.
notify_listener() {
  local sock="$work/$1.sock" out="$work/$1.notify"
  python3 - "$sock" "$out" <<'PY' &
import os, socket, sys
sock, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock)
os.chmod(sock, 0o666)
while True:
    data = s.recv(4096)
    with open(out, "a") as f:
        f.write(data.decode() + "\n\n")
PY
  listeners+=($!)
  wait_for "the $1 notification socket" test -S "$sock"
}

# run_unit UNIT NAME: runs the installed unit's ExecStartPre (must succeed), then starts its
# ExecStart in the background as the unit's User/Group, with its Environment and
# EnvironmentFile, UMask, /
# as working directory, NOTIFY_SOCKET and a 4 s watchdog. Sets $unit_pid.
run_unit() {
  local unit=$1 name=$2
  local user group envfile pre start umask_value
  user=$(unit_value "$unit" User)
  group=$(unit_value "$unit" Group)
  envfile=$(unit_value "$unit" EnvironmentFile)
  pre=$(unit_value "$unit" ExecStartPre)
  start=$(unit_value "$unit" ExecStart)
  umask_value=$(unit_value "$unit" UMask)
  [ -n "$start" ] || fail "$unit has no ExecStart"
  local -a env_args=(PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
  while IFS= read -r line; do
    [ -n "$line" ] && env_args+=("$line")
  done < <(sed -n 's/^Environment=//p' "$unitdir/$unit")
  envfile=${envfile#-}
  if [ -n "$envfile" ] && [ -f "$envfile" ]; then
    while IFS= read -r line; do env_args+=("$line"); done \
      < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$envfile")
  fi
  local -a as_user=()
  if [ -n "$user" ]; then
    as_user=(setpriv --reuid="$user" --regid="${group:-$user}" --init-groups --no-new-privs --)
  fi
  # shellcheck disable=SC2086 # ExecStart lines are plain words
  if [ -n "$pre" ]; then
    (cd / && umask "${umask_value:-0022}" && env -i "${env_args[@]}" "${as_user[@]}" $pre) \
      >>"$work/$name.log" 2>&1 || fail "$unit: ExecStartPre ($pre) failed"
    ok "$unit ExecStartPre: $pre"
  fi
  # shellcheck disable=SC2086
  (cd / && umask "${umask_value:-0022}" && exec env -i "${env_args[@]}" \
    NOTIFY_SOCKET="$work/$name.sock" WATCHDOG_USEC=4000000 "${as_user[@]}" $start) \
    >>"$work/$name.log" 2>&1 &
  unit_pid=$!
  pids+=("$unit_pid")
  ok "$unit started as ${user:-root} (pid $unit_pid): $start"
}

notified() { grep -q -- "$2" "$work/$1.notify" 2>/dev/null; }
running() { kill -0 "$1" 2>/dev/null; }

api() { # METHOD PATH [JSON]: the response body; fails on a non-2xx status
  local method=$1 path=$2 body=${3:-}
  local -a args=(-sS -X "$method" -H "Authorization: Bearer $token" --fail-with-body)
  [ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
  curl "${args[@]}" "$base$path"
}

# --- preconditions -------------------------------------------------------------------------
for pkg in sco-agent sco-control-plane; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
    fail "$pkg is already installed here; this test installs and purges it (dpkg --purge $pkg first)"
  fi
done
port_free "$grpc_port" || fail "127.0.0.1:$grpc_port is in use (SCO_DEB_TEST_GRPC_PORT)"
port_free "$http_port" || fail "127.0.0.1:$http_port is in use (SCO_DEB_TEST_HTTP_PORT)"

step "build both packages (debug profile)"
packaging/build-deb.sh --profile debug --out "$work/debs" "$@"
cp_deb=$(ls "$work"/debs/sco-control-plane_*.deb)
agent_deb=$(ls "$work"/debs/sco-agent_*.deb)
for deb in "$cp_deb" "$agent_deb"; do
  dpkg-deb --info "$deb" >/dev/null || fail "$deb is not a valid package"
done

step "install"
installed=yes
dpkg -i "$cp_deb" "$agent_deb" </dev/null
for pkg in sco-agent sco-control-plane; do
  dpkg-query -W -f='${Status}' "$pkg" | grep -q 'install ok installed' || fail "$pkg is not installed"
done
ok "both packages installed"

step "files, owners and modes"
getent passwd sco >/dev/null || fail "no system user sco"
sco_uid=$(id -u sco)
[ "$sco_uid" -lt 1000 ] || fail "sco is not a system user (uid $sco_uid)"
case "$(getent passwd sco | cut -d: -f7)" in */nologin | */false) ;; *) fail "sco has a login shell" ;; esac
ok "system user sco (uid $sco_uid, no login shell)"
expect_stat /usr/bin/sco-control-plane root:root 755
expect_stat /usr/bin/sco-agent root:root 755
expect_stat "$unitdir/sco-control-plane.service" root:root 644
expect_stat "$unitdir/sco-agent.service" root:root 644
expect_stat "$cp_conf" root:sco 640
expect_stat "$cp_default" root:root 644
expect_stat "$agent_conf" root:root 644
expect_stat /etc/sco-agent/scripts root:root 755
expect_stat /var/lib/sco-control-plane sco:sco 750
expect_stat /var/lib/sco-control-plane/pki/ca.key sco:sco 600
expect_stat /var/lib/sco-control-plane/pki/server.key sco:sco 600
expect_stat /var/lib/sco-agent root:root 700
[ "$(dpkg-query -W -f='${Conffiles}' sco-control-plane | awk '{print $1}' | sort | tr '\n' ' ')" = \
  "$cp_default $cp_conf " ] || fail "sco-control-plane conffiles: $(dpkg-query -W -f='${Conffiles}' sco-control-plane)"
[ "$(dpkg-query -W -f='${Conffiles}' sco-agent | awk '{print $1}')" = "$agent_conf" ] ||
  fail "sco-agent conffiles: $(dpkg-query -W -f='${Conffiles}' sco-agent)"
ok "conffiles: $cp_conf $cp_default $agent_conf"
if command -v deb-systemd-helper >/dev/null 2>&1; then
  for unit in sco-control-plane sco-agent; do
    [ -L "/etc/systemd/system/multi-user.target.wants/$unit.service" ] || fail "$unit.service is not enabled"
  done
  ok "both units enabled (multi-user.target.wants)"
fi

step "validate the installed configs"
sco-control-plane validate --config "$cp_conf" || fail "the installed control-plane config does not validate"
ok "sco-control-plane validate"
if out=$(sco-agent validate --config "$agent_conf" 2>&1); then
  fail "the agent config validates before enrollment (it must name the missing certificate)"
fi
echo "$out" | grep -q 'server.ca' || fail "unexpected agent validate error before enrollment: $out"
ok "sco-agent validate refuses until enrolled: $out"

step "systemd-analyze verify the installed units"
if ! out=$(systemd-analyze verify "$unitdir/sco-control-plane.service" "$unitdir/sco-agent.service" 2>&1); then
  fail "systemd-analyze verify: $out"
fi
if echo "$out" | grep -E 'sco-(agent|control-plane)\.service'; then
  fail "systemd-analyze verify warns about our units"
fi
ok "systemd-analyze verify"
for unit in sco-control-plane sco-agent; do
  score=$(systemd-analyze security --offline=yes --no-pager "$unitdir/$unit.service" 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: //p')
  [ -n "$score" ] || fail "no exposure score for $unit"
  echo "   systemd-analyze security --offline=yes $unit.service: $score"
done

step "the admin's edits: listen addresses, the agent's endpoint, the first admin's bootstrap"
sed -i -e "s|^grpc_listen = .*|grpc_listen = \"127.0.0.1:$grpc_port\"|" \
  -e "s|^http_listen = .*|http_listen = \"127.0.0.1:$http_port\"|" "$cp_conf"
sed -i "s|^endpoints = .*|endpoints = [\"127.0.0.1:$grpc_port\"]|" "$agent_conf"
admin_password="deb-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
install -m 0640 -o root -g sco /dev/null "$admin_password_file"
printf '%s\n' "$admin_password" >"$admin_password_file"
sed -i "s|^#SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE=.*|SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE=$admin_password_file|" "$cp_default"
grep -q "^SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE=" "$cp_default" || fail "$cp_default has no bootstrap line to enable"
sco-control-plane validate --config "$cp_conf" >/dev/null || fail "the edited control-plane config does not validate"
ok "edited $cp_conf, $agent_conf, $cp_default"

step "start the control plane as its unit would"
notify_listener control-plane
run_unit sco-control-plane.service control-plane
cp_pid=$unit_pid
wait_for "the control plane's READY=1" notified control-plane READY=1
running "$cp_pid" || fail "the control plane exited"
curl -sf "$base/health" >/dev/null || fail "READY=1 was sent but $base/health does not answer"
ok "READY=1 ($(grep -m1 '^STATUS=' "$work/control-plane.notify")), /health answers"
wait_for "the control plane's WATCHDOG=1" notified control-plane WATCHDOG=1
ok "WATCHDOG=1 pings"
[ "$(stat -c '%U' /proc/"$cp_pid")" = sco ] || fail "the control plane does not run as sco"
ok "runs as sco"
for f in /var/lib/sco-control-plane/sco.db /var/lib/sco-control-plane/jwt.secret; do
  [ "$(stat -c '%U' "$f")" = sco ] || fail "$f is not owned by sco"
  [ $(($(stat -c '%a' "$f") % 10)) -eq 0 ] || fail "$f is readable by others ($(stat -c '%a' "$f"))"
done
ok "database and JWT secret owned by sco, not world-readable"

step "the first admin came from the bootstrap; registration is not open"
status=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$base/auth/register" -H 'content-type: application/json' \
  -d '{"username":"mallory","password":"mallory-password","role":"admin"}')
[ "$status" = 403 ] || fail "anonymous POST /auth/register answered $status, expected 403"
token=$(curl -sf -XPOST "$base/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$admin_password\"}" | jq -r .token)
[ -n "$token" ] && [ "$token" != null ] || fail "the bootstrapped admin cannot log in"
ok "admin logs in; anonymous registration refused (403)"

step "sco-control-plane user add: refused as root, works as the service user"
ops_password_file="$work/ops-password"
install -m 0640 -o root -g sco /dev/null "$ops_password_file"
printf '%s\n' "operator-password-1" >"$ops_password_file"
add_ops=(sco-control-plane user add --config "$cp_conf" --username ops --role operator
  --password-file "$ops_password_file")
if out=$("${add_ops[@]}" 2>&1); then
  fail "user add as root succeeded (it would leave root-owned SQLite files)"
fi
echo "$out" | grep -q 'runuser -u sco' || fail "user add as root: unexpected error: $out"
runuser -u sco -- "${add_ops[@]}" >>"$work/control-plane.log" 2>&1 || fail "user add as sco failed"
role=$(curl -sf -XPOST "$base/auth/login" -H 'content-type: application/json' \
  -d '{"username":"ops","password":"operator-password-1"}' | jq -r .role)
[ "$role" = operator ] || fail "the user added from the host cannot log in (role $role)"
ok "refused as root naming runuser; added as sco, logs in as operator"

step "enroll the agent with a token made over REST"
enrollment=$(api POST /enrollment-tokens '{"ttl_secs": 600, "max_uses": 1, "labels": {"role": "deb-test"}}')
enroll_token=$(echo "$enrollment" | jq -r .token)
ca_sha256=$(echo "$enrollment" | jq -r .ca_sha256)
[ -n "$enroll_token" ] && [ "$ca_sha256" != null ] || fail "no token in $enrollment"
sco-agent enroll --server "127.0.0.1:$grpc_port" --token "$enroll_token" --ca-sha256 "$ca_sha256" \
  --out /etc/sco-agent >>"$work/agent.log" 2>&1 || fail "sco-agent enroll failed"
expect_stat /etc/sco-agent/agent.key root:root 600
sco-agent validate --config "$agent_conf" || fail "the enrolled agent's config does not validate"
ok "sco-agent validate after enrollment"

step "start the agent as its unit would"
notify_listener agent
run_unit sco-agent.service agent
agent_pid=$unit_pid
wait_for "the agent's READY=1" notified agent READY=1
wait_for "the agent's WATCHDOG=1" notified agent WATCHDOG=1
ok "READY=1, WATCHDOG=1"

host_connected() {
  host=$(api GET /hosts | jq -r '.hosts[] | select(.connected and .labels.role == "deb-test") | .id' | head -n1)
  [ -n "$host" ]
}
wait_for "the agent to show as connected on GET /hosts" host_connected
ok "GET /hosts: $host connected"
wait_for "the agent's STATUS=...connected" notified agent "STATUS=collecting; connected"
rollups_arrived() {
  [ "$(api GET "/monitoring/metrics?host=$host&metric=cpu.total_pct" | jq '.points | length')" -gt 0 ]
}
wait_for "rollups of $host on GET /monitoring/metrics" rollups_arrived
latest=$(api GET "/hosts/$host" | jq '.latest | length')
[ "$latest" -gt 0 ] || fail "GET /hosts/$host has no latest metrics"
ok "rollups arrived: cpu.total_pct points, $latest latest metrics on GET /hosts/$host"

step "the packaged operator CLI against the installed control plane"
[ -x /usr/bin/scoctl ] || fail "/usr/bin/scoctl is missing"
[ -s /usr/share/bash-completion/completions/scoctl ] || fail "no bash completion for scoctl"
zcat /usr/share/man/man1/scoctl.1.gz | grep -q '^\.TH' || fail "scoctl's man page is not a man page"
creds="$work/scoctl-credentials.json"
printf '%s' "$admin_password" | scoctl --server "$base" --credentials "$creds" login --username admin \
  >/dev/null || fail "scoctl login"
[ "$(stat -c %a "$creds")" = 600 ] || fail "scoctl's credentials file is not 0600"
scoctl --server "$base" --credentials "$creds" -o json get hosts \
  | jq -e --arg h "$host" '[.hosts[] | select(.id == $h)] | length == 1' >/dev/null \
  || fail "scoctl get hosts does not list $host"
ok "scoctl login (credentials 0600) and get hosts list $host; completion and man page installed"

step "stop both (TERM) the way systemd would"
for pair in "agent:$agent_pid" "control-plane:$cp_pid"; do
  name=${pair%%:*}
  pid=${pair#*:}
  kill -TERM "$pid"
  code=0
  wait "$pid" || code=$?
  [ "$code" = 0 ] || fail "$name exited with $code after TERM"
  notified "$name" STOPPING=1 || fail "$name sent no STOPPING=1"
  ok "$name stopped cleanly (exit 0, STOPPING=1)"
done

step "reinstall over the edited conffiles"
ca_before=$(sha256sum /var/lib/sco-control-plane/pki/ca.key)
dpkg -i "$cp_deb" "$agent_deb" </dev/null
grep -q "^grpc_listen = \"127.0.0.1:$grpc_port\"" "$cp_conf" || fail "the edit of $cp_conf did not survive"
grep -q "^endpoints = \[\"127.0.0.1:$grpc_port\"\]" "$agent_conf" || fail "the edit of $agent_conf did not survive"
grep -q "^SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE=" "$cp_default" || fail "the edit of $cp_default did not survive"
for f in "$cp_conf" "$agent_conf" "$cp_default"; do
  for suffix in dpkg-dist dpkg-new dpkg-old; do
    [ ! -e "$f.$suffix" ] || fail "$f.$suffix appeared"
  done
done
expect_stat "$cp_conf" root:sco 640
[ "$(sha256sum /var/lib/sco-control-plane/pki/ca.key)" = "$ca_before" ] || fail "the reinstall replaced the fleet CA"
ok "edits kept, modes kept, same fleet CA"

step "start both again from the reinstalled packages"
run_unit sco-control-plane.service control-plane
cp_pid=$unit_pid
wait_for "the control plane answering again" curl -sf "$base/health"
token=$(curl -sf -XPOST "$base/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$admin_password\"}" | jq -r .token)
run_unit sco-agent.service agent
agent_pid=$unit_pid
wait_for "the agent connected again" host_connected
ok "running again with the kept configuration and data"

step "purge both while they run"
dpkg --purge sco-agent sco-control-plane </dev/null
installed=no
for pid in "$cp_pid" "$agent_pid"; do
  wait "$pid" 2>/dev/null || true
  ! running "$pid" || fail "pid $pid still runs after the purge"
done
ok "prerm stopped both processes"
for path in /usr/bin/sco-agent /usr/bin/sco-control-plane "$unitdir/sco-agent.service" \
  "$unitdir/sco-control-plane.service" /etc/sco-agent /etc/sco-control-plane "$cp_default" \
  /var/lib/sco-agent /var/lib/sco-control-plane; do
  [ ! -e "$path" ] || fail "$path is still there after the purge"
done
for pkg in sco-agent sco-control-plane; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q installed; then
    fail "$pkg is still known to dpkg: $(dpkg-query -W -f='${Status}' "$pkg")"
  fi
done
ok "binaries, units, configs, identity and state removed"
