#!/usr/bin/env bash
# Agent footprint beside prometheus-node-exporter scraped every second, in one
# session. Needs: apt-get install -y prometheus-node-exporter curl.
# Usage: scripts/footprint.sh [SECONDS]   (default 120)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
bench=${FOOTPRINT_PY:-../shared/bench/footprint.py}
cargo build --profile release-agent -q -p sco-agent
cargo build --release -q -p sco-control-plane
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

agent_bin=${CARGO_TARGET_DIR:-target}/release-agent/sco-agent
cp=${CARGO_TARGET_DIR:-target}/release/sco-control-plane
source "$(dirname "$0")/footprint-setup.sh"
SCO_LOG=warn $cp serve --config "$work/cp.toml" &
sleep 2

echo "agent (1 s interval):" >&2
# the agent in its systemd unit's environment: no RUST_BACKTRACE (scripts/footprint-side.sh says why)
agent=$(SCO_LOG=warn python3 "$bench" --seconds "$secs" -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$agent_bin" run --config "$work/agent.toml")
echo "node_exporter + 1 s curl scrape loop:" >&2
ne=$(python3 "$bench" --seconds "$secs" -- sh -c 'prometheus-node-exporter --web.listen-address=127.0.0.1:19100 2>/dev/null & while sleep 1; do curl -s 127.0.0.1:19100/metrics >/dev/null; done')
echo "curl loop alone:" >&2
loop=$(python3 "$bench" --seconds "$secs" -- sh -c 'while sleep 1; do curl -s 127.0.0.1:1/ >/dev/null 2>&1; done')
python3 - "$agent" "$ne" "$loop" <<'PY'
import json, sys
a, n, l = (json.loads(x) for x in sys.argv[1:4])
print(json.dumps({"agent": a, "node_exporter_with_loop": n, "curl_loop": l}))
cpu = lambda d: d["cpu_pct_of_one_core"]
ne_cpu = cpu(n) - cpu(l)
print("| program | CPU % of one core | RSS mean MiB | RSS peak MiB |")
print("|---|---|---|---|")
for name, d in (("sco-agent", a), ("node_exporter + curl loop", n), ("curl loop alone", l)):
    print(f"| {name} | {cpu(d):.2f} | {d['rss_mib_mean']} | {d['rss_mib_peak']} |")
print(f"agent / node_exporter: CPU {cpu(a)/ne_cpu:.2f} (curl loop subtracted), RSS {a['rss_mib_mean']/n['rss_mib_mean']:.2f}")
PY
