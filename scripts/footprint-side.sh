#!/usr/bin/env bash
# The agent and node_exporter side by side, each measured by its own PID in the same window:
# sco-agent at a 1 s interval (detection and remediation on, streaming to a local control plane, not
# counted) and prometheus-node-exporter scraped every second by a separate curl loop (not counted).
# Then where the agent's resident memory is, per mapping and per segment of its binary (/proc/PID/smaps).
# Needs the agent as shipped (cargo build --profile release-agent -p sco-agent), a control plane
# (cargo build --release -p sco-control-plane) and apt-get install -y prometheus-node-exporter curl.
# Usage: scripts/footprint-side.sh [SECONDS]   (default 60); AGENT_BIN and CP_BIN choose other
# binaries (default target/release-agent/sco-agent and target/release/sco-control-plane).
set -euo pipefail
t=${CARGO_TARGET_DIR:-target}
agent_bin=$(realpath "${AGENT_BIN:-$t/release-agent/sco-agent}")
cp=$(realpath "${CP_BIN:-$t/release/sco-control-plane}")
secs=${1:-60}
bench=${FOOTPRINT_PY:-$(dirname "$0")/../../shared/bench/footprint.py}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
source "$(dirname "$0")/footprint-setup.sh"
SCO_LOG=warn $cp serve --config "$work/cp.toml" >/dev/null 2>&1 &
sleep 2
# The agent's binary leaves the page cache first: the kernel maps cached pages around every page
# fault (fault-around), so a binary just built or copied shows more resident than one read from
# disk by its own faults and readahead, as a service starting at boot is.
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$agent_bin"
# The agent runs in the environment its systemd unit gives it: no RUST_BACKTRACE (a developer's
# shell often sets it, and then every error the model loader meets captures a backtrace, which
# maps the unwind tables and libgcc_s: about 0.7 MiB more resident). FOOTPRINT_KEEP_ENV=1 keeps
# the caller's environment.
if [ "${FOOTPRINT_KEEP_ENV:-0}" = 1 ]; then run_env=(env); else run_env=(env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE); fi
SCO_LOG=warn "${run_env[@]}" "$agent_bin" run --config "$work/agent.toml" >/dev/null 2>&1 &
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
awk -v b="$agent_bin" '/^[0-9a-f]+-[0-9a-f]+ /{seg=$2" "$1; mine=($6==b)} mine&&/^(Rss|Private_Dirty|Size):/{printf "%s %s %s kB\n", seg, $1, $2}' /proc/$apid/smaps > "$work/segs"
awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6; if(name=="")name="[anon]"} /^Rss:/{rss[name]+=$2} END{for(n in rss) if(rss[n]>=256) printf "%8d kB %s\n", rss[n], n}' /proc/$apid/smaps | sort -rn > "$work/maps"
python3 - "$work/a.json" "$work/n.json" <<'PY'
import json, sys
a, n = (json.load(open(p)) for p in sys.argv[1:3])
c = lambda d: d["cpu_pct_of_one_core"]
print(f"agent CPU {c(a):.3f} % RSS mean {a['rss_mib_mean']} MiB peak {a['rss_mib_peak']} | node_exporter CPU {c(n):.3f} % RSS mean {n['rss_mib_mean']} MiB | ratios CPU {c(a)/c(n):.2f} RSS {a['rss_mib_mean']/n['rss_mib_mean']:.2f}")
PY
cat "$work/maps"; cat "$work/segs"
