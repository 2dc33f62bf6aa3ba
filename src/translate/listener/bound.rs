//! Outbound listeners Envoy binds itself: every one of a proxy without
//! capture (`INTERCEPTION_MODE=NONE`, on 127.0.0.1 at each service port),
//! and Sidecar egress listeners with `captureMode: NONE` (at `bind`, else
//! 127.0.0.1). HTTP ports route by Host header through RDS; a TCP port
//! proxies to its one service (the application dialled the listener, so
//! there is no destination address to tell services apart).

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

use super::filters::{http_connection_manager, weighted_tcp_proxy, RouteSource};
use crate::model::Snapshot;
use crate::translate::egress::OutboundPort;
use crate::translate::{names, socket_address, ProxyShape};

pub fn listener(snapshot: &Snapshot, shape: &ProxyShape, outbound: &OutboundPort) -> Listener {
    let mesh = &snapshot.mesh;
    let (port, address) = (outbound.port, outbound.address());
    let services = outbound.service_refs();
    let filter = if services.iter().any(|(_, p)| p.protocol.is_http()) {
        http_connection_manager(
            &format!("outbound_{address}_{port}"),
            RouteSource::Rds(names::route_config(port)),
            mesh,
        )
    } else {
        // The first service by namespace/name owns the port, as in Istio's conflict rule.
        let svc = services[0].0;
        let cluster = names::outbound_cluster(port, "", &svc.hostname());
        weighted_tcp_proxy(
            &cluster,
            &crate::translate::tcp_destinations(snapshot, shape, svc, port),
            mesh,
        )
    };
    Listener {
        name: outbound.listener_name(),
        address: Some(socket_address(&address.to_string(), port)),
        filter_chains: vec![FilterChain {
            filters: vec![filter],
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}
