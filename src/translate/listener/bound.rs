//! Outbound listeners Envoy binds itself: every one of a proxy without
//! capture (`INTERCEPTION_MODE=NONE`, on 127.0.0.1 at each service port),
//! and Sidecar egress listeners with `captureMode: NONE` (at `bind`, else
//! 127.0.0.1). HTTP ports route by Host header through RDS, TLS ports by SNI;
//! a TCP port proxies to its one service (the application dialled the
//! listener, so there is no destination address to tell services apart).

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

use super::filters::{http_connection_manager, weighted_tcp_proxy, RouteSource};
use super::outbound::{inspectors, sni_chains, SNIFF_TIMEOUT_SECS};
use crate::model::Snapshot;
use crate::translate::egress::OutboundPort;
use crate::translate::{names, seconds, socket_address, ProxyShape};

pub fn listener(snapshot: &Snapshot, shape: &ProxyShape, outbound: &OutboundPort) -> Listener {
    let mesh = &snapshot.mesh;
    let (port, address) = (outbound.port, outbound.address());
    let services = outbound.service_refs();
    // TLS is told apart by SNI: VirtualService `tls` routes, as Istio
    // matches them here, and each TLS service's own name, as captured
    // listeners do (Istio matches no name for a service with an address on
    // such a listener).
    let sni = sni_chains(snapshot, shape, port, &services);
    let filter = if services.iter().any(|(_, p)| p.protocol.is_http()) {
        http_connection_manager(
            &format!("outbound_{address}_{port}"),
            RouteSource::Rds(names::route_config(port)),
            mesh,
        )
    } else {
        // The first service by namespace/name owns the rest of the port
        // (any SNI, or none), as in Istio's conflict rule.
        let svc = services[0].0;
        let cluster = names::outbound_cluster(port, "", &svc.host);
        weighted_tcp_proxy(
            &cluster,
            &crate::translate::tcp_destinations(snapshot, shape, svc, port),
            mesh,
        )
    };
    let default = FilterChain {
        filters: vec![filter],
        ..Default::default()
    };
    let tls = !sni.is_empty();
    let (filter_chains, default_filter_chain) = if tls {
        (sni, Some(default))
    } else {
        (vec![default], None)
    };
    Listener {
        name: outbound.listener_name(),
        address: Some(socket_address(address.to_string(), port)),
        listener_filters: inspectors(false, tls),
        // Server-first protocols send nothing for the inspector to read.
        listener_filters_timeout: tls.then(|| seconds(SNIFF_TIMEOUT_SECS)),
        continue_on_listener_filters_timeout: tls,
        filter_chains,
        default_filter_chain,
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}
