#!/usr/bin/env bash
# Find (or build and install) what the Kubernetes e2e tests run: a real
# kube-apiserver, built from Go modules (e2e/kube/apiserver, k8s.io/kubernetes
# pinned in its go.mod), and etcd from Debian's etcd-server package.
# Shared by e2e/test.sh (so CI builds it) and e2e/support/kube.rs.
#
#   source e2e/kube/ensure.sh && ensure_kube   # sets KUBE_APISERVER_BIN, ETCD_BIN
#   e2e/kube/ensure.sh                         # same, printed as NAME=PATH lines
#   e2e/kube/ensure.sh --no-build              # only find them; fail if missing
#
# Idempotent: the binary is cached in $RUDDER_KUBE_CACHE/bin (default
# /var/tmp/rudder-kube/bin) under a hash of go.mod, go.sum, main.go and the
# build recipe below, so it is rebuilt only when one of them changes. The Go
# build and module caches live outside the repository too (RUDDER_GOCACHE,
# RUDDER_GOMODCACHE), so a rebuild on the same machine reuses them.
# KUBE_APISERVER_BIN / ETCD_BIN, when already set, win.
#
# A cold build needs Go >= 1.24 and the Go module proxy. Measured on the
# 2-core CI machine (Go 1.26, k8s v1.34.4), empty caches: 6m53s including the
# etcd install and ~500 MB of module downloads, peak RSS 1.7 GB (the linker),
# caches afterwards 2.1 GB (build) + 0.5 GB (modules) + 100 MB (binary). With
# warm caches a rebuild (e.g. after a main.go edit) is a 7s relink; with the
# binary cached this script returns at once. A missing part is a loud error,
# never a skipped test.

KUBE_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apiserver"
KUBE_CACHE="${RUDDER_KUBE_CACHE:-/var/tmp/rudder-kube}"
KUBE_GOCACHE="${RUDDER_GOCACHE:-/var/tmp/rudder-go-cache}"
KUBE_GOMODCACHE="${RUDDER_GOMODCACHE:-/var/tmp/rudder-go-mod}"
# Bump when the build command changes, so cached binaries are not reused.
KUBE_RECIPE="v1 CGO_ENABLED=0 -trimpath -ldflags=-s,-w,version"

# The k8s.io/kubernetes release pinned in go.mod, e.g. v1.34.4.
kube_release() {
    awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$KUBE_SRC_DIR/go.mod"
}

# Where the binary for the current sources lives (whether or not it exists).
kube_apiserver_path() {
    local hash
    hash=$({ printf '%s\n' "$KUBE_RECIPE"; cat "$KUBE_SRC_DIR/go.mod" "$KUBE_SRC_DIR/go.sum" "$KUBE_SRC_DIR/main.go"; } |
        sha256sum | cut -c1-16)
    printf '%s/bin/kube-apiserver-%s-%s\n' "$KUBE_CACHE" "$(kube_release)" "$hash"
}

# Builds kube-apiserver into $1 (atomically: a failed build leaves nothing).
build_kube_apiserver() {
    local out=$1 release major minor tmp start
    if ! command -v go >/dev/null; then
        echo "error: go not found; building kube-apiserver needs Go >= 1.24 (https://go.dev/dl/)" >&2
        return 1
    fi
    release=$(kube_release)
    [[ -n "$release" ]] || { echo "error: no k8s.io/kubernetes version in $KUBE_SRC_DIR/go.mod" >&2; return 1; }
    major=${release#v}; major=${major%%.*}
    minor=${release#v*.}; minor=${minor%%.*}
    mkdir -p "$(dirname "$out")" "$KUBE_GOCACHE" "$KUBE_GOMODCACHE"
    tmp="$out.tmp.$$"
    start=$SECONDS
    echo "building kube-apiserver $release from Go modules ($(go version | cut -d' ' -f3));" \
        "a cold build takes a while (see e2e/kube/ensure.sh)" >&2
    # -mod=readonly: a go.sum that does not match go.mod is an error, not an edit.
    # The -X flags give /version the release (as the upstream build does).
    if ! (cd "$KUBE_SRC_DIR" &&
        CGO_ENABLED=0 GOCACHE="$KUBE_GOCACHE" GOMODCACHE="$KUBE_GOMODCACHE" \
            GOFLAGS="-mod=readonly -buildvcs=false" \
            go build -trimpath -o "$tmp" -ldflags "-s -w \
                -X k8s.io/component-base/version.gitVersion=$release \
                -X k8s.io/component-base/version.gitMajor=$major \
                -X k8s.io/component-base/version.gitMinor=$minor \
                -X k8s.io/component-base/version.gitTreeState=clean" .) >&2; then
        rm -f "$tmp"
        echo "error: building kube-apiserver failed (sources: $KUBE_SRC_DIR; build cache: $KUBE_GOCACHE)" >&2
        return 1
    fi
    mv -f "$tmp" "$out"
    # Keep the three newest builds (other checkouts may pin other sources).
    ls -1t "$(dirname "$out")"/kube-apiserver-* 2>/dev/null | grep -v '\.tmp\.' | tail -n +4 | xargs -r rm -f
    echo "built $out in $((SECONDS - start))s" >&2
}

# Sets KUBE_APISERVER_BIN, building it when the cached binary is missing
# ($1 = --no-build: only look).
ensure_kube_apiserver() {
    if [[ -n "${KUBE_APISERVER_BIN:-}" ]]; then
        [[ -x "$KUBE_APISERVER_BIN" ]] && return 0
        echo "error: KUBE_APISERVER_BIN=$KUBE_APISERVER_BIN is not an executable file" >&2
        return 1
    fi
    local bin
    bin=$(kube_apiserver_path) || return 1
    if [[ ! -x "$bin" ]]; then
        if [[ "${1:-}" == --no-build ]]; then
            echo "error: kube-apiserver is not built for the current e2e/kube/apiserver sources" \
                "(expected $bin); run e2e/kube/ensure.sh" >&2
            return 1
        fi
        mkdir -p "$KUBE_CACHE/bin"
        # One build at a time per machine; a second caller waits, then finds it.
        exec {lock}>"$KUBE_CACHE/build.lock"
        flock "$lock"
        [[ -x "$bin" ]] || build_kube_apiserver "$bin"
        local rc=$?
        exec {lock}>&-
        ((rc == 0)) || return 1
    fi
    KUBE_APISERVER_BIN=$bin
}

# Sets ETCD_BIN, installing Debian's etcd-server when etcd is missing.
ensure_etcd() {
    if [[ -n "${ETCD_BIN:-}" ]]; then
        [[ -x "$ETCD_BIN" ]] && return 0
        echo "error: ETCD_BIN=$ETCD_BIN is not an executable file" >&2
        return 1
    fi
    if ! ETCD_BIN=$(command -v etcd); then
        if [[ "${1:-}" == --no-build ]]; then
            echo "error: etcd not found; run e2e/kube/ensure.sh (installs Debian's etcd-server)" >&2
            return 1
        fi
        echo "etcd not found; installing it: apt-get install -y etcd-server" >&2
        export DEBIAN_FRONTEND=noninteractive
        # The package's service is not wanted (the tests start their own etcd);
        # policy-rc.d 101 keeps the maintainer scripts from starting it.
        local policy=/usr/sbin/policy-rc.d created=
        if [[ ! -e $policy ]] && printf '#!/bin/sh\nexit 101\n' >"$policy" 2>/dev/null; then
            chmod +x "$policy" && created=1
        fi
        apt-get install -y -q etcd-server >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q etcd-server >/dev/null; } || true
        if [[ -n $created ]]; then rm -f "$policy"; fi
        if ! ETCD_BIN=$(command -v etcd); then
            echo "error: could not install etcd with apt-get (package etcd-server);" \
                "install it yourself or set ETCD_BIN=/path/to/etcd" >&2
            return 1
        fi
        echo "Installed etcd at $ETCD_BIN" >&2
    fi
}

# Sets both KUBE_APISERVER_BIN and ETCD_BIN; $1 as for ensure_kube_apiserver.
ensure_kube() {
    ensure_etcd "$@" && ensure_kube_apiserver "$@"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        "" | --no-build) ;;
        *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
    esac
    ensure_kube "$@"
    printf 'KUBE_APISERVER_BIN=%s\nETCD_BIN=%s\n' "$KUBE_APISERVER_BIN" "$ETCD_BIN"
fi
