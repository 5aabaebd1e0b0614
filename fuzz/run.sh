#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60). Needs a
# nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Findings
# land in fuzz/artifacts/<target>/, the corpus in fuzz/corpus/<target>/.
# Usage: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
target_dir=${CARGO_TARGET_DIR:-target}
for t in agent_message replay_csv policy; do
  echo "== fuzzing $t for ${secs}s"
  cargo +nightly fuzz run --target-dir "$target_dir" "$t" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -print_final_stats=1
done
