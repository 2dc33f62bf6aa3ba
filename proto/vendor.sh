#!/usr/bin/env bash
# Refresh the vendored .proto files under proto/ from the envoy-types crate.
#
#   proto/vendor.sh [PROTO_SRC_DIR]
#
# PROTO_SRC_DIR defaults to the `proto/` directory of the envoy-types version
# pinned in Cargo.lock, taken from cargo's registry cache (`cargo fetch` fills
# it). Copies every root listed in proto/roots.txt plus the transitive closure
# of their imports, keeping each file's path relative to the envoy-types
# proto/ dir (data-plane-api/envoy/..., xds/udpa/..., ...). The
# google/protobuf/*.proto well-known types are not vendored: protox has them
# built in. Needs only bash, sed, grep and cp.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"

# Include dirs, relative to PROTO_SRC_DIR, in lookup order. Keep in step with
# INCLUDES in build.rs.
includes=(data-plane-api xds googleapis protoc-gen-validate cel-spec/proto
          opentelemetry-proto client_model ratelimit/api)

src="${1:-}"
if [[ -z "$src" ]]; then
  version="$(grep -A1 '^name = "envoy-types"$' "$crate/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')"
  [[ -n "$version" ]] || { echo "envoy-types not found in Cargo.lock" >&2; exit 1; }
  find_src() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/envoy-types-"$version"/proto 2>/dev/null | head -n1; }
  src="$(find_src)"
  [[ -n "$src" ]] || { (cd "$crate" && cargo fetch -q); src="$(find_src)"; }
  [[ -n "$src" ]] || { echo "envoy-types-$version not in the cargo registry cache" >&2; exit 1; }
  echo "envoy-types $version: $src"
fi

# Resolve an import path to "include/path", or fail.
resolve() {
  local inc
  for inc in "${includes[@]}"; do
    if [[ -f "$src/$inc/$1" ]]; then echo "$inc/$1"; return 0; fi
  done
  return 1
}

declare -A seen=()
queue=()
while read -r line; do
  line="${line%%#*}"; line="${line//[[:space:]]/}"
  [[ -n "$line" ]] && queue+=("$line")
done < "$here/roots.txt"

files=()
while ((${#queue[@]})); do
  name="${queue[0]}"; queue=("${queue[@]:1}")
  [[ -n "${seen[$name]:-}" ]] && continue
  seen[$name]=1
  [[ "$name" == google/protobuf/* ]] && continue # built into protox
  rel="$(resolve "$name")" || { echo "cannot resolve import $name" >&2; exit 1; }
  files+=("$rel")
  while read -r imp; do
    queue+=("$imp")
  done < <(sed -n 's/^[[:space:]]*import[[:space:]]\+\(public[[:space:]]\+\|weak[[:space:]]\+\)\?"\([^"]*\)".*/\2/p' "$src/$rel")
done

# Replace the vendored trees (everything but our own files).
for inc in "${includes[@]}"; do rm -rf "${here:?}/${inc%%/*}"; done
for rel in "${files[@]}"; do
  mkdir -p "$here/$(dirname "$rel")"
  cp "$src/$rel" "$here/$rel"
done
echo "vendored ${#files[@]} files ($(du -sk --apparent-size --exclude=README.md --exclude=roots.txt --exclude=vendor.sh "$here" | cut -f1) KB)"
