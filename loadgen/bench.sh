#!/usr/bin/env bash
# One measured run: a fresh control plane (release build, default agent settings: heartbeat 5 s,
# dead after 20 s) on a new SQLite file or a new PostgreSQL database, and sco-loadgen against it
# with the control plane's pid, so its CPU and RSS are in the report.
#
#   loadgen/bench.sh sqlite|postgres AGENTS SECS [more sco-loadgen flags...]
#
# Binaries come from $SCO_BIN_DIR (default target/release; build them with
# `cargo build --release -p sco-control-plane -p sco-loadgen`). PostgreSQL: $SCO_BENCH_POSTGRES_URL
# (default postgres://postgres:postgres@127.0.0.1:5432/postgres), on which a database is created.
# The JSON report is written to $SCO_BENCH_OUT (default ./loadgen-reports)/BACKEND-AGENTS-TIME.json.
# With $SCO_BENCH_POLICY naming a policy YAML file, that policy is stored and rolled out to every
# host (canary 0 %) before the agents start, so each one is sent it on connecting and answers with
# a policy status (target label env: loadgen, the simulated agents' default label).
# With $SCO_BENCH_POLICY_AT=SECS as well, the policy is stored before the agents start but rolled
# out SECS seconds after they start (all connected by then): the fan-out to connected agents. The
# script then prints how long after the rollout request the last agent was sent the revision.
# $SCO_BENCH_LOG sets the control plane's log filter (default warn; e.g. info for its rollout timings).
# With $SCO_BENCH_RESTART_AT=SECS, the control plane is killed (SIGKILL) SECS seconds after the
# agents start and started again on the same database as systemd would (the packaged unit:
# Restart=on-failure, RestartSec=5s; $SCO_BENCH_RESTART_SEC): the whole fleet reconnects to it.
# The script then prints when it answered again, when every agent was connected again (from the
# load generator's progress, every second) and the reconnects; the report's control-plane cost
# covers the first process only.
# With $SCO_BENCH_QUIC=1 the control plane also listens on QUIC (quic_listen, the gRPC port number
# over UDP) and the agents connect over it (sco-loadgen --quic).
set -euo pipefail

backend=${1:?usage: loadgen/bench.sh sqlite|postgres AGENTS SECS [flags...]}
agents=${2:?agents}
secs=${3:?secs}
shift 3
bin=${SCO_BIN_DIR:-target/release}
out=${SCO_BENCH_OUT:-./loadgen-reports}
pg=${SCO_BENCH_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
mkdir -p "$out"
out=$(cd "$out" && pwd)
dir=$(mktemp -d /tmp/sco-bench.XXXXXX)
# below the ephemeral range (32768 and up): thousands of agents' own connections take ports
# from it, and one of them holding this port would keep a restarted control plane from binding it
port_grpc=$((20000 + 2 * (RANDOM % 6000)))
port_http=$((port_grpc + 1))

case "$backend" in
  sqlite) db="sqlite://$dir/sco.db?mode=rwc" ;;
  postgres)
    name="sco_bench_$(date +%s)_$RANDOM"
    psql -q "$pg" -c "CREATE DATABASE $name"
    db="${pg%/*}/$name" ;;
  *) echo "backend must be sqlite or postgres, not $backend" >&2; exit 1 ;;
esac

"$bin/sco-control-plane" pki init --dir "$dir/pki" >/dev/null
quic_line=
quic_flag=()
if [ -n "${SCO_BENCH_QUIC:-}" ]; then
  quic_line="quic_listen = \"127.0.0.1:$port_grpc\""
  quic_flag=(--quic)
fi
cat > "$dir/cp.toml" <<EOF
grpc_listen = "127.0.0.1:$port_grpc"
$quic_line
http_listen = "127.0.0.1:$port_http"
data_dir = "$dir"
database_url = "$db"
[auth]
jwt_secret = "bench-secret-bench-secret-bench-secret-01"
EOF
printf 'bench-admin-password\n' > "$dir/admin.password"
start_cp() {
  SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE="$dir/admin.password" SCO_LOG=${SCO_BENCH_LOG:-warn} NO_COLOR=1 \
    "$bin/sco-control-plane" serve --config "$dir/cp.toml" >>"$dir/cp.log" 2>&1 &
  echo $! > "$dir/cp.pid"
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$port_http/health" >/dev/null && return 0
    kill -0 "$(cat "$dir/cp.pid")" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
start_cp
cp=$(cat "$dir/cp.pid")
trap 'kill "$(cat "$dir/cp.pid")" 2>/dev/null || true' EXIT

if [ -n "${SCO_BENCH_POLICY:-}" ]; then
  api="http://127.0.0.1:$port_http"
  token=$(curl -fs "$api/auth/login" -H 'content-type: application/json' \
    -d '{"username":"admin","password":"bench-admin-password"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  stored=$(curl -fs "$api/policies" -H "authorization: Bearer $token" \
    -H 'content-type: application/yaml' --data-binary "@$SCO_BENCH_POLICY")
  name=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["policy"]["name"])' "$stored")
  revision=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["policy"]["revision"])' "$stored")
  rollout() {
    curl -fs "$api/policies/$name/rollout" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' -d "{\"revision\": $revision, \"canary_percent\": 0}" >/dev/null
  }
  if [ -n "${SCO_BENCH_POLICY_AT:-}" ]; then
    (sleep "$SCO_BENCH_POLICY_AT"
     start=$(date +%s%3N); rollout; end=$(date +%s%3N)
     echo "$start $end" > "$dir/rollout.ms"
     echo "policy $name revision $revision rolled out at $start (answered in $((end - start)) ms)" >&2) &
  else
    rollout
    echo "policy $name revision $revision rolled out" >&2
  fi
fi

if [ -n "${SCO_BENCH_RESTART_AT:-}" ]; then
  (sleep "$SCO_BENCH_RESTART_AT"
   old=$(cat "$dir/cp.pid")
   kill -9 "$old"
   killed=$(date +%s%3N)
   # as systemd would: RestartSec after the process is gone, again after a failed start (a
   # killed process's thousands of sockets take a while to close: its port may still be bound)
   while [ -e "/proc/$old" ] && [ "$(awk '{print $3}' "/proc/$old/stat" 2>/dev/null)" != Z ]; do
     sleep 0.01
   done
   for attempt in 1 2 3 4 5; do
     sleep "${SCO_BENCH_RESTART_SEC:-5}"
     start_cp && break
     echo "restart attempt $attempt failed: $(tail -1 "$dir/cp.log")" >&2
   done
   echo "$killed $(date +%s%3N)" > "$dir/restart.ms"
   echo "control plane killed at $killed, answering again after $(($(date +%s%3N) - killed)) ms" >&2) &
fi

report="$out/$backend-$agents-$(date +%H%M%S).json"
status=0
progress=()
[ -n "${SCO_BENCH_RESTART_AT:-}" ] && progress=(--progress-secs 1)
lg_start=$(date +%s%3N)
"$bin/sco-loadgen" --target "127.0.0.1:$port_grpc" --server-name localhost --pki-dir "$dir/pki" \
  --agents "$agents" --duration-secs "$secs" --database-url "$db" --control-plane-pid "$cp" \
  --report "$report" "${progress[@]}" "${quic_flag[@]}" "$@" 2> >(tee "$dir/loadgen.err" >&2) || status=$?
if [ -s "$dir/restart.ms" ]; then
  python3 - "$dir/loadgen.err" "$agents" "$lg_start" $(cat "$dir/restart.ms") <<'PY'
import re, sys
err, agents, lg_start, killed, up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
at = (killed - lg_start) / 1000.0  # the kill on the load generator's clock
rows = []
for line in open(err, errors="replace"):
    m = re.search(r"\[\s*([\d.]+)s\].*?connected (\d+) .*?reconnects (\d+)", line)
    if m:
        rows.append((float(m.group(1)), int(m.group(2)), int(m.group(3))))
after = [r for r in rows if r[0] > at]
low = min((r[1] for r in after), default=None)
short = [r[0] for r in after if r[1] < agents]
back = next((r[0] for r in after if r[1] == agents and (not short or r[0] > short[-1])), None)
print(f"restart: answering again {up - killed} ms after the kill; fewest connected after it {low} of {agents}; "
      f"all {agents} connected again {'%.0f s after the kill' % (back - at) if back is not None else 'never in the run'} "
      f"(progress every second); reconnects by the end {rows[-1][2] if rows else '?'}")
PY
fi
if [ -s "$dir/rollout.ms" ]; then
  python3 - "$report" "$name" "$revision" $(cat "$dir/rollout.ms") <<'PY'
import json, sys
report, name, revision, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = json.load(open(report))
got = [p for p in r.get("policies", []) if p["name"] == name and p["revision"] == revision]
if not got:
    print(f"fan-out: no agent was sent {name} revision {revision}")
else:
    p = got[0]
    print(f"fan-out: {name} revision {revision} sent to {p['agents']} of {r['totals']['agents']} agents; "
          f"first {p['first_ms'] - start} ms, last {p['last_ms'] - start} ms after the rollout request "
          f"(which was answered in {end - start} ms)")
PY
fi
echo "report: $report; control-plane log: $dir/cp.log: $(grep -c ' ERROR ' "$dir/cp.log" || true) errors," \
  "$(grep -c 'pool timed out' "$dir/cp.log" || true) pool timeouts," \
  "$(grep -c 'time to acquire exceeded slow threshold' "$dir/cp.log" || true) slow pool acquisitions (over 2 s)"
kill "$(cat "$dir/cp.pid")" 2>/dev/null || true
wait 2>/dev/null || true
exit $status
