use std::collections::BTreeMap;

use crate::model::{Interception, Protocol, Proxy, ProxyKind, ServiceEndpoints, Snapshot};

/// Everything about a proxy that translation reads. Two proxies with equal
/// shapes get byte-identical config, so this is also the cache key; adding an
/// input to translation means adding it here, or the compiler will not let
/// the translator see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProxyShape {
    pub kind: ProxyKind,
    pub namespace: String,
    pub interception: Interception,
    /// Ports the workload serves (from Services selecting it), by protocol.
    pub inbound_ports: BTreeMap<u16, Protocol>,
}

impl ProxyShape {
    pub fn of(snapshot: &Snapshot, proxy: &Proxy) -> ProxyShape {
        ProxyShape {
            kind: proxy.kind,
            namespace: proxy.namespace.clone(),
            interception: proxy.interception,
            inbound_ports: inbound_ports(snapshot, proxy),
        }
    }
}

/// The workload's served ports: target ports of every Service selecting it.
/// The Pod object's labels win over the proxy's own claim when both exist.
fn inbound_ports(snapshot: &Snapshot, proxy: &Proxy) -> BTreeMap<u16, Protocol> {
    if proxy.kind != ProxyKind::Sidecar {
        return BTreeMap::new();
    }
    let labels = snapshot
        .workload(&proxy.namespace, &proxy.pod_name)
        .map(|w| &w.labels)
        .unwrap_or(&proxy.labels);
    let mut ports = BTreeMap::new();
    for svc in snapshot.services.values() {
        if !svc.selects(&proxy.namespace, labels) {
            continue;
        }
        let own_endpoint = snapshot
            .endpoints
            .get(&svc.key)
            .and_then(|eps| eps.endpoints.iter().find(|e| e.address == proxy.ip));
        for port in &svc.ports {
            if port.protocol == Protocol::Udp {
                continue;
            }
            let target = match (&port.target_port, own_endpoint) {
                (_, Some(ep)) => ServiceEndpoints::port_for(ep, port),
                (crate::model::TargetPort::Number(n), None) => Some(*n),
                // A named port we cannot resolve yet: no endpoint for this pod.
                (crate::model::TargetPort::Named(_), None) => None,
            };
            if let Some(t) = target {
                ports.entry(t).or_insert(port.protocol);
            }
        }
    }
    ports
}
