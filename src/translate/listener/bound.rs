//! Outbound listeners Envoy binds itself: every one of a proxy without
//! capture (`INTERCEPTION_MODE=NONE`, on 127.0.0.1 at each service port),
//! and Sidecar egress listeners with `captureMode: NONE` (at `bind`, else
//! 127.0.0.1). HTTP ports route by Host header through RDS, TLS ports by SNI;
//! a TCP port proxies to its one service (the application dialled the
//! listener, so there is no destination address to tell services apart).

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

use super::filters::{http_connection_manager, tcp_proxy, weighted_tcp_proxy, RouteSource};
use super::outbound::{inspectors, sni_chains, SNIFF_TIMEOUT_SECS};
use crate::model::{Protocol, Service, ServicePort, Snapshot};
use crate::translate::egress::OutboundPort;
use crate::translate::{names, seconds, socket_address, ProxyShape};

pub fn listener(snapshot: &Snapshot, shape: &ProxyShape, outbound: &OutboundPort) -> Listener {
    let mesh = &snapshot.mesh;
    let (port, address) = (outbound.port, outbound.address());
    let services = outbound.service_refs();
    // TLS services are told apart by SNI, as Istio does (and as captured
    // listeners do): the application's ClientHello names the host.
    let sni = sni_chains(snapshot, shape, port, &services);
    let is_tls = |p: &ServicePort| matches!(p.protocol, Protocol::Tls | Protocol::Https);
    let tcp = |svc: &Service| {
        let cluster = names::outbound_cluster(port, "", &svc.hostname());
        weighted_tcp_proxy(
            &cluster,
            &crate::translate::tcp_destinations(snapshot, shape, svc, port),
            mesh,
        )
    };
    let filter = if services.iter().any(|(_, p)| p.protocol.is_http()) {
        http_connection_manager(
            &format!("outbound_{address}_{port}"),
            RouteSource::Rds(names::route_config(port)),
            mesh,
        )
    } else if let Some((svc, _)) = services.iter().find(|(_, p)| sni.is_empty() || !is_tls(p)) {
        // The first service by namespace/name owns the port, as in Istio's
        // conflict rule.
        tcp(svc)
    } else {
        // TLS whose SNI names no service: its original destination is this
        // listener, so passing it through would loop.
        tcp_proxy(names::BLACKHOLE_CLUSTER, names::BLACKHOLE_CLUSTER, mesh)
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
        address: Some(socket_address(&address.to_string(), port)),
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
