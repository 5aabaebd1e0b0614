#!/usr/bin/env bash
# A drill on a busy host (tests/tests/drill.rs): background load, a quiet
# phase, then CPU, memory, disk-space and I/O faults one at a time and
# overlapping, against a real control plane and agent. Prints a table of
# figures; fails when a fault raises no event of its family, a CPU runaway is
# not remediated, an event does not close, or the quiet phase raises events.
#
#   scripts/drill.sh [short|full] [--release]
#
# short (default, a few minutes) or full (10 CPU runaways, 10-minute quiet
# phase). --release runs release binaries (built here) under the debug test
# through SCO_TEST_BIN_DIR. The disk-space fault needs root (loop mount);
# without it that fault is skipped with a message. Further knobs:
# SCO_DRILL_WARMUP_SECS, SCO_DRILL_QUIET_SECS, SCO_DRILL_CPU_RUNS, SCO_DRILL_RUNAWAY_PROCS,
# SCO_DRILL_DB=postgres (with SCO_TEST_POSTGRES_URL), SCO_DRILL_BACKGROUND=database (pgbench
# against SCO_TEST_POSTGRES_URL instead of the synthetic load), SCO_DRILL_LOG_DIR (keep the
# logs), SCO_TEST_PATIENCE_SECS.
set -euo pipefail
cd "$(dirname "$0")/.."

size=short
release=false
for arg in "$@"; do
  case "$arg" in
    short | full) size="$arg" ;;
    --release) release=true ;;
    -h | --help)
      sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "drill.sh: unknown argument $arg (expected short, full or --release)" >&2
      exit 2
      ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "drill.sh: not root: the disk-space fault (loop mount) will be skipped" >&2
fi

if $release; then
  cargo build --workspace --bins --release
  target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
  case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
  export SCO_TEST_BIN_DIR="$target_dir/release"
else
  cargo build --workspace --bins
  unset SCO_TEST_BIN_DIR
fi

SCO_DRILL_SIZE="$size" cargo test -p sco-tests --test drill -- --nocapture
