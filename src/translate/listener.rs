//! LDS. Without capture (`INTERCEPTION_MODE=NONE`) the application dials
//! `127.0.0.1:<service port>` and Envoy listens there: HTTP ports route by
//! Host header through RDS, TCP ports proxy to their one service. The capture
//! listeners (15001/15006) come with transparent interception.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, RouteSpecifier, UpgradeConfig},
    http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy, TcpProxy,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;

use super::names;
use super::{ads_config_source, socket_address, ProxyShape};
use crate::model::{Interception, Protocol, ProxyKind, Service, ServicePort, Snapshot};

/// Ports Envoy itself uses in a pod; a Service on one of them cannot get a
/// loopback listener without Envoy failing to bind it.
pub const RESERVED_PORTS: &[u16] = &[15000, 15001, 15004, 15006, 15008, 15020, 15021, 15090];

pub fn listeners(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Listener> {
    if shape.kind != ProxyKind::Sidecar || shape.interception != Interception::None {
        return Vec::new();
    }
    outbound_ports(snapshot)
        .into_iter()
        .map(|(port, services)| loopback_listener(port, &services))
        .collect()
}

/// Services by port, skipping UDP and Envoy's own ports, in stable order.
pub(super) fn outbound_ports(snapshot: &Snapshot) -> BTreeMap<u16, Vec<(&Service, &ServicePort)>> {
    let mut ports: BTreeMap<u16, Vec<(&Service, &ServicePort)>> = BTreeMap::new();
    for svc in snapshot.services.values() {
        for port in &svc.ports {
            if port.protocol != Protocol::Udp && !RESERVED_PORTS.contains(&port.port) {
                ports.entry(port.port).or_default().push((svc, port));
            }
        }
    }
    ports
}

fn loopback_listener(port: u16, services: &[(&Service, &ServicePort)]) -> Listener {
    let is_http = services.iter().any(|(_, p)| p.protocol.is_http());
    let filter = if is_http {
        http_filter_for(port)
    } else {
        // Loopback has no destination address to tell TCP services apart; the
        // first one by namespace/name owns the port, as in Istio's conflict rule.
        let (svc, _) = services[0];
        tcp_filter(&names::outbound_cluster(port, "", &svc.hostname()))
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

fn http_filter_for(port: u16) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: format!("outbound_127.0.0.1_{port}"),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: names::route_config(port),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        normalize_path: Some(BoolValue { value: true }),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
    }
}

fn tcp_filter(cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: cluster.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(proxy))),
    }
}
