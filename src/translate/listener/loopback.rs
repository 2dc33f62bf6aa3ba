//! `INTERCEPTION_MODE=NONE`: Envoy listens on 127.0.0.1 at each service port.
//! HTTP ports route by Host header through RDS; a TCP port proxies to its
//! one service (loopback has no destination address to tell services apart).

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

use super::filters::{http_connection_manager, weighted_tcp_proxy, RouteSource};
use super::outbound_ports;
use crate::model::{Service, ServicePort, Snapshot};
use crate::translate::{names, socket_address, ProxyShape};

pub fn listeners(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Listener> {
    outbound_ports(snapshot, shape)
        .into_iter()
        // The application and the inbound side hold some ports; binding
        // them on loopback too would fail (and Envoy would refuse the update).
        .filter(|(port, _)| !shape.holds_port(*port))
        .map(|(port, services)| listener(snapshot, shape, port, &services))
        .collect()
}

fn listener(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    port: u16,
    services: &[(&Service, &ServicePort)],
) -> Listener {
    let mesh = &snapshot.mesh;
    let filter = if services.iter().any(|(_, p)| p.protocol.is_http()) {
        http_connection_manager(
            &format!("outbound_127.0.0.1_{port}"),
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
        name: names::loopback_listener(port),
        address: Some(socket_address("127.0.0.1", port)),
        filter_chains: vec![FilterChain {
            filters: vec![filter],
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}
