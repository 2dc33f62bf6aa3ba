# syntax=docker/dockerfile:1
# Rudder's image: `rudder serve` (the control plane, helm/rudder) and the
# injected init containers `rudder-init` (`rudder iptables --apply`, as root
# with NET_ADMIN/NET_RAW through the pod's securityContext) and
# `rudder-bootstrap`. Entrypoint `rudder`; the default user is non-root.
#
#   docker build -t ghcr.io/rudder-mesh/rudder:v0.1.0 .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# No system libraries needed: TLS is rustls, the protos compile with protox.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rudder \
    && install -D -m 0755 target/release/rudder /out/rudder

FROM debian:${DEBIAN_RELEASE}-slim
# iptables: `rudder iptables --apply` runs iptables-save/iptables-restore
# (Debian's default nft backend; iptables-legacy is included too).
# ca-certificates: JWKS fetches over HTTPS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rudder \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rudder
COPY --from=build /out/rudder /usr/local/bin/rudder
# Numeric, so Kubernetes' runAsNonRoot can verify it (helm/rudder runs as
# 10001 too). The injected rudder-init overrides it with runAsUser 0.
USER 10001:10001
EXPOSE 15010 15012 15014 15017
ENTRYPOINT ["/usr/local/bin/rudder"]
CMD ["--help"]
