#!/usr/bin/env bash
# The agent and node_exporter side by side, each measured by its own PID in the same window:
# sco-agent at a 1 s interval (detection and remediation on, streaming to a local control plane, not
# counted) and prometheus-node-exporter scraped every second by a separate curl loop (not counted).
# Then where the agent's resident memory is, per mapping and per segment of its binary (/proc/PID/smaps).
# Needs release binaries (cargo build --release -p sco-agent -p sco-control-plane) and
# apt-get install -y prometheus-node-exporter curl.
# Usage: scripts/footprint-side.sh [BIN_DIR] [SECONDS]   (default target/release, 60)
set -euo pipefail
bin=$(cd "${1:-${CARGO_TARGET_DIR:-target}/release}" && pwd); secs=${2:-60}
bench=${FOOTPRINT_PY:-$(dirname "$0")/../../shared/bench/footprint.py}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
cp=$bin/sco-control-plane
$cp pki init --dir "$work/pki" >/dev/null
$cp pki issue-agent --dir "$work/pki" --id bench-agent --out "$work/agent" >/dev/null
cat > "$work/cp.toml" <<TOML
grpc_listen = "127.0.0.1:17443"
http_listen = "127.0.0.1:18080"
data_dir = "$work"
[tls]
ca_cert = "$work/pki/ca.pem"
server_cert = "$work/pki/server.pem"
server_key = "$work/pki/server.key"
TOML
cat > "$work/agent.toml" <<TOML
[agent]
data_dir = "$work/agent/data"
interval_ms = 1000
[server]
endpoints = ["127.0.0.1:17443"]
server_name = "localhost"
ca = "$work/agent/ca.pem"
cert = "$work/agent/agent.pem"
key = "$work/agent/agent.key"
TOML
SCO_LOG=warn $cp serve --config "$work/cp.toml" >/dev/null 2>&1 &
sleep 2
SCO_LOG=warn $bin/sco-agent run --config "$work/agent.toml" >/dev/null 2>&1 &
apid=$!
prometheus-node-exporter --web.listen-address=127.0.0.1:19100 >/dev/null 2>&1 &
npid=$!
(while sleep 1; do curl -s 127.0.0.1:19100/metrics >/dev/null; done) &
sleep 10
python3 $bench --seconds "$secs" --pid $apid > "$work/a.json" &
m1=$!
python3 $bench --seconds "$secs" --pid $npid > "$work/n.json" &
m2=$!
wait $m1 $m2
awk -v b="$bin/sco-agent" '/^[0-9a-f]+-[0-9a-f]+ /{seg=$2" "$1; mine=($6==b)} mine&&/^(Rss|Private_Dirty|Size):/{printf "%s %s %s kB\n", seg, $1, $2}' /proc/$apid/smaps > "$work/segs"
awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6; if(name=="")name="[anon]"} /^Rss:/{rss[name]+=$2} END{for(n in rss) if(rss[n]>=256) printf "%8d kB %s\n", rss[n], n}' /proc/$apid/smaps | sort -rn > "$work/maps"
python3 - "$work/a.json" "$work/n.json" <<'PY'
import json, sys
a, n = (json.load(open(p)) for p in sys.argv[1:3])
c = lambda d: d["cpu_pct_of_one_core"]
print(f"agent CPU {c(a):.3f} % RSS mean {a['rss_mib_mean']} MiB peak {a['rss_mib_peak']} | node_exporter CPU {c(n):.3f} % RSS mean {n['rss_mib_mean']} MiB | ratios CPU {c(a)/c(n):.2f} RSS {a['rss_mib_mean']/n['rss_mib_mean']:.2f}")
PY
cat "$work/maps"; cat "$work/segs"
