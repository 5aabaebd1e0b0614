#!/usr/bin/env bash
# The whole test suite. End-to-end tests start the real binaries, so they
# are built first. PostgreSQL variants run when SCO_TEST_POSTGRES_URL is set
# (and are required when CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
# The console's browser tests (tests/tests/console.rs) run its Node.js scripts.
[ -d console/node_modules ] || (cd console && npm ci --no-audit --no-fund)
cargo test --workspace "$@"
# The same end-to-end tests again with every sandbox agent over QUIC (the control planes
# listen on both): the stream, outages, policies, enrollment with renewal and revocation, and
# replicas (a full one names the others to a QUIC agent by their QUIC addresses).
SCO_TEST_TRANSPORT=quic cargo test -p sco-tests --test spine --test outage --test policies \
  --test enroll --test replicas --test quic "$@"
