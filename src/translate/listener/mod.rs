//! LDS. Which listeners a sidecar gets depends on how its traffic reaches Envoy:
//! - `REDIRECT`/`TPROXY` (iptables capture, Istio's default): the virtual
//!   outbound listener 15001 hands each connection to a per-port listener by
//!   its original destination; the virtual inbound listener 15006 serves the
//!   workload's own ports.
//! - `NONE`: no capture; the application dials `127.0.0.1:<service port>`,
//!   and Sidecar `ingress` listeners bind their ports themselves.

mod filters;
mod inbound;
mod loopback;
mod outbound;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::listener::v3::Listener;

use super::ProxyShape;
use crate::model::{Interception, Protocol, ProxyKind, Service, ServicePort, Snapshot};

/// Ports Envoy itself uses in a pod; a Service on one of them cannot get a
/// listener without colliding with Envoy's own.
pub const RESERVED_PORTS: &[u16] = &[15000, 15001, 15004, 15006, 15008, 15020, 15021, 15090];

pub fn listeners(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Listener> {
    if shape.kind != ProxyKind::Sidecar {
        return Vec::new();
    }
    let mut out = match shape.interception {
        Interception::None => loopback::listeners(snapshot, shape),
        Interception::Redirect | Interception::Tproxy => outbound::listeners(snapshot, shape),
    };
    out.extend(inbound::listeners(snapshot, shape));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Services by port, skipping UDP and Envoy's own ports, in stable order.
pub(super) fn outbound_ports<'a>(
    snapshot: &'a Snapshot,
    shape: &ProxyShape,
) -> BTreeMap<u16, Vec<(&'a Service, &'a ServicePort)>> {
    let mut ports: BTreeMap<u16, Vec<(&Service, &ServicePort)>> = BTreeMap::new();
    for svc in snapshot
        .services
        .values()
        .filter(|s| shape.imports(snapshot, s))
    {
        for port in &svc.ports {
            if port.protocol != Protocol::Udp && !RESERVED_PORTS.contains(&port.port) {
                ports.entry(port.port).or_default().push((svc, port));
            }
        }
    }
    ports
}

/// A port gets an HTTP route configuration when any service on it may speak
/// HTTP: declared HTTP, or undeclared (sniffed).
pub(super) fn port_has_http(services: &[(&Service, &ServicePort)]) -> bool {
    services
        .iter()
        .any(|(_, p)| p.protocol.is_http() || p.protocol == Protocol::Unknown)
}
