#!/usr/bin/env bash
# Fails when the committed console/dist/ is not what its sources build to: rebuilds into a
# temporary directory with the locked dependencies and compares byte for byte.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || npm ci --no-audit --no-fund
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node build.mjs "$tmp/dist"
if ! diff -r "$tmp/dist" dist; then
  echo "console/dist/ differs from a build of console/src: run \`npm run build\` in console/ and commit dist/" >&2
  exit 1
fi
echo "console/dist/ matches its sources"
