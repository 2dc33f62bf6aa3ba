#!/usr/bin/env bash
# Find (or build and install) the Helm binary the chart e2e test runs
# (e2e/helm_chart.rs: `helm lint`, `helm template`), built from Go modules
# like kube-apiserver in e2e/kube/ensure.sh, with the same caches.
# Shared by e2e/test.sh (so CI builds it) and e2e/helm_chart.rs.
#
#   source e2e/kube/ensure_helm.sh && ensure_helm   # sets HELM_BIN
#   e2e/kube/ensure_helm.sh                         # same, printed as HELM_BIN=PATH
#   e2e/kube/ensure_helm.sh --no-build              # only find it; fail if missing
#
# Idempotent: the binary is cached as $RUDDER_KUBE_CACHE/bin/helm-VERSION-HASH
# (default /var/tmp/rudder-kube/bin), HASH covering the version and the build
# recipe, so it is rebuilt only when one of them changes. Go's build and
# module caches are RUDDER_GOCACHE / RUDDER_GOMODCACHE under /var/tmp, shared
# with ensure.sh. HELM_BIN, when already set, wins.
#
# A build needs Go >= 1.24 and the Go module proxy. Measured on the busy
# 2-core CI machine (Go 1.26, Helm v3.22.0, caches already holding the
# kube-apiserver build): 2m26s wall including 96 module downloads, peak RSS
# 870 MB, a 62 MB binary. With the binary cached this script returns at once.
# A missing part is a loud error, never a skipped test.

HELM_VERSION="${RUDDER_HELM_VERSION:-v3.22.0}"
HELM_CACHE="${RUDDER_KUBE_CACHE:-/var/tmp/rudder-kube}"
HELM_GOCACHE="${RUDDER_GOCACHE:-/var/tmp/rudder-go-cache}"
HELM_GOMODCACHE="${RUDDER_GOMODCACHE:-/var/tmp/rudder-go-mod}"
# Bump when the build command changes, so cached binaries are not reused.
HELM_RECIPE="v1 CGO_ENABLED=0 go install -trimpath -ldflags=-s,-w,version"

# Where the binary for $HELM_VERSION lives (whether or not it exists).
helm_path() {
    local hash
    hash=$(printf '%s\n%s\n' "$HELM_RECIPE" "$HELM_VERSION" | sha256sum | cut -c1-16)
    printf '%s/bin/helm-%s-%s\n' "$HELM_CACHE" "$HELM_VERSION" "$hash"
}

# Builds helm into $1 (atomically: a failed build leaves nothing).
build_helm() {
    local out=$1 gobin start
    if ! command -v go >/dev/null; then
        echo "error: go not found; building helm needs Go >= 1.24 (https://go.dev/dl/)" >&2
        return 1
    fi
    mkdir -p "$(dirname "$out")" "$HELM_GOCACHE" "$HELM_GOMODCACHE"
    gobin=$(mktemp -d "$out.gobin.XXXXXX")
    start=$SECONDS
    echo "building helm $HELM_VERSION from Go modules ($(go version | cut -d' ' -f3))" >&2
    # `go install pkg@version` builds with the module's own go.mod and go.sum
    # (checked against the checksum database), outside any workspace. The -X
    # flag gives `helm version` the release, as Helm's Makefile does.
    if ! (cd "$gobin" &&
        CGO_ENABLED=0 GOBIN="$gobin" GOCACHE="$HELM_GOCACHE" GOMODCACHE="$HELM_GOMODCACHE" \
            GOFLAGS="-buildvcs=false" GOWORK=off \
            go install -trimpath \
                -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
                "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >&2 || [[ ! -x "$gobin/helm" ]]; then
        rm -rf "$gobin"
        echo "error: building helm $HELM_VERSION failed (build cache: $HELM_GOCACHE)" >&2
        return 1
    fi
    mv -f "$gobin/helm" "$out"
    rm -rf "$gobin"
    # Keep the two newest builds.
    ls -1t "$(dirname "$out")"/helm-v* 2>/dev/null | grep -v '\.gobin\.' | tail -n +3 | xargs -r rm -f
    echo "built $out in $((SECONDS - start))s" >&2
}

# Sets HELM_BIN, building it when the cached binary is missing
# ($1 = --no-build: only look).
ensure_helm() {
    if [[ -n "${HELM_BIN:-}" ]]; then
        [[ -x "$HELM_BIN" ]] && return 0
        echo "error: HELM_BIN=$HELM_BIN is not an executable file" >&2
        return 1
    fi
    local bin
    bin=$(helm_path) || return 1
    if [[ ! -x "$bin" ]]; then
        if [[ "${1:-}" == --no-build ]]; then
            echo "error: helm $HELM_VERSION is not built (expected $bin); run e2e/kube/ensure_helm.sh" >&2
            return 1
        fi
        mkdir -p "$HELM_CACHE/bin"
        # One build at a time per machine; a second caller waits, then finds it.
        exec {lock}>"$HELM_CACHE/helm-build.lock"
        flock "$lock"
        [[ -x "$bin" ]] || build_helm "$bin"
        local rc=$?
        exec {lock}>&-
        ((rc == 0)) || return 1
    fi
    HELM_BIN=$bin
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        "" | --no-build) ;;
        *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
    esac
    ensure_helm "$@"
    printf 'HELM_BIN=%s\n' "$HELM_BIN"
fi
