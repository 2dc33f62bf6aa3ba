//! Captured inbound traffic. iptables sends every inbound TCP connection to
//! 15006; `virtualInbound` picks a filter chain by original destination port:
//! the workload's service ports go through `inbound|PORT||` (HTTP routed, or
//! TCP proxied), any other port passes through to the application unchanged.

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::filters::{
    http_connection_manager, http_inspector, original_dst, tcp_proxy, RouteSource, HTTP_PROTOCOLS,
};
use crate::model::{MeshConfig, Protocol, Snapshot};
use crate::translate::{names, seconds, socket_address, ProxyShape};

pub const VIRTUAL_INBOUND: &str = "virtualInbound";
pub const INBOUND_CAPTURE_PORT: u16 = 15006;

pub fn listener(snapshot: &Snapshot, shape: &ProxyShape) -> Listener {
    let mesh = &snapshot.mesh;
    let mut chains = Vec::new();
    for (&port, &protocol) in &shape.inbound_ports {
        let cluster = names::inbound_cluster(port);
        if protocol.is_http() {
            chains.push(chain(port, &[], http_filter(port, mesh)));
        } else if protocol == Protocol::Unknown {
            chains.push(chain(port, HTTP_PROTOCOLS, http_filter(port, mesh)));
            chains.push(chain(port, &[], tcp_proxy(&cluster, &cluster, mesh)));
        } else {
            chains.push(chain(port, &[], tcp_proxy(&cluster, &cluster, mesh)));
        }
    }
    let sniff = shape
        .inbound_ports
        .values()
        .any(|p| *p == Protocol::Unknown);
    let mut listener_filters = vec![original_dst()];
    if sniff {
        listener_filters.push(http_inspector());
    }
    Listener {
        name: VIRTUAL_INBOUND.to_string(),
        address: Some(socket_address("0.0.0.0", INBOUND_CAPTURE_PORT)),
        listener_filters,
        continue_on_listener_filters_timeout: sniff,
        listener_filters_timeout: sniff.then(|| seconds(5)),
        filter_chains: chains,
        // Ports no service declares still reach the application, as in Istio.
        default_filter_chain: Some(FilterChain {
            name: "InboundPassthroughFilterChain".to_string(),
            filters: vec![tcp_proxy(
                names::INBOUND_PASSTHROUGH_CLUSTER,
                names::INBOUND_PASSTHROUGH_CLUSTER,
                mesh,
            )],
            ..Default::default()
        }),
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

fn chain(port: u16, protocols: &[&str], filter: Filter) -> FilterChain {
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value { value: port.into() }),
            application_protocols: protocols.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![filter],
        ..Default::default()
    }
}

/// Inbound HTTP needs no RDS: every request goes to the local application.
fn http_filter(port: u16, mesh: &MeshConfig) -> Filter {
    let cluster = names::inbound_cluster(port);
    let routes = RouteConfiguration {
        name: cluster.clone(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                name: "default".to_string(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
                    timeout: Some(seconds(0)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    http_connection_manager(
        &format!("inbound_0.0.0.0_{port}"),
        RouteSource::Inline(Box::new(routes)),
        mesh,
    )
}
