//! LDS. Which listeners a sidecar gets depends on how its traffic reaches Envoy:
//! - `REDIRECT`/`TPROXY` (iptables capture, Istio's default): the virtual
//!   outbound listener 15001 hands each connection to a per-port listener by
//!   its original destination; the virtual inbound listener 15006 serves the
//!   workload's own ports.
//! - `NONE`: no capture; the application dials `127.0.0.1:<service port>`,
//!   and Sidecar `ingress` listeners bind their ports themselves.
//!
//! Sidecar `egress` listeners decide which services each outbound port
//! carries, and may bind a port even under capture (see `translate::egress`).

mod bound;
mod filters;
mod inbound;
mod outbound;

use envoy_types::pb::envoy::config::listener::v3::Listener;

use super::egress::{self, Egress, Skipped};
use super::ProxyShape;
use crate::model::{Interception, Protocol, ProxyKind, Service, ServicePort, Snapshot};

/// Ports Envoy itself uses in a pod; a Service on one of them cannot get a
/// listener without colliding with Envoy's own.
pub const RESERVED_PORTS: &[u16] = &[15000, 15001, 15004, 15006, 15008, 15020, 15021, 15090];

pub fn listeners(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Listener> {
    if shape.kind != ProxyKind::Sidecar {
        return Vec::new();
    }
    let policy = shape.outbound_policy(snapshot);
    let (ports, skipped) = egress::ports(snapshot, shape);
    skipped.iter().for_each(|s| warn(shape, s));
    let mut out = Vec::new();
    if shape.interception != Interception::None {
        out.push(outbound::virtual_outbound(&snapshot.mesh, policy));
    }
    for port in &ports {
        out.push(match port.reach {
            Egress::Captured(_) => outbound::port_listener(snapshot, shape, policy, port),
            Egress::Bound(_) => bound::listener(snapshot, shape, port),
        });
    }
    out.extend(inbound::listeners(snapshot, shape));
    // By cached key, as clusters: a `Listener` is large to move.
    out.sort_by_cached_key(|l| l.name.clone());
    out
}

/// A Sidecar egress listener not translated as written, with the reason.
fn warn(shape: &ProxyShape, s: &Skipped) {
    let sidecar = shape.sidecar.as_ref().map(ToString::to_string);
    tracing::warn!(
        sidecar = sidecar.as_deref().unwrap_or_default(),
        field = %format!("spec.egress[{}]{}", s.listener.index, s.field),
        "Sidecar egress listener: {}",
        s.why
    );
}

/// A port gets an HTTP route configuration when any service on it may speak
/// HTTP: declared HTTP, or undeclared (sniffed).
pub(super) fn port_has_http(services: &[(&Service, &ServicePort)]) -> bool {
    services
        .iter()
        .any(|(_, p)| p.protocol.is_http() || p.protocol == Protocol::Unknown)
}
