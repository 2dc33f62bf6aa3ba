//! The proxy's inbound clusters: `inbound|PORT||` for each port it serves,
//! to the local application, and `InboundPassthroughCluster` for the rest.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address as sa, Address, BindConfig, Pipe, SocketAddress,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;

use super::{base, finish_http_options, static_assignment};
use crate::model::sidecar::DefaultEndpoint;
use crate::model::{Interception, Snapshot};
use crate::translate::reach::{self, app_protocol};
use crate::translate::shape::InboundPort;
use crate::translate::{names, policy, socket_address, ProxyShape};

/// One cluster per inbound port Envoy can serve (see `reach`).
pub fn clusters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Cluster> {
    reach::ports(snapshot, shape)
        .into_iter()
        .filter(|(_, _, reach)| reach.is_ok())
        .map(|(port, inbound, _)| cluster(shape, port, inbound))
        .collect()
}

/// The local application behind `port`. A Service port, as Istio since
/// 1.10, with capture: the connection's original destination (the pod IP),
/// so an application listening only on localhost is not exposed to the
/// mesh; without capture the application is on loopback. A Sidecar ingress
/// port: its `defaultEndpoint`.
fn cluster(shape: &ProxyShape, port: u16, inbound: &InboundPort) -> Cluster {
    let name = names::inbound_cluster(port);
    let loopback = DefaultEndpoint::Loopback {
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
        port,
    };
    let endpoint = match &inbound.listener {
        Some(l) => &l.endpoint,
        None if shape.interception != Interception::None => &DefaultEndpoint::OriginalDestination,
        None => &loopback,
    };
    let mut cluster = match (endpoint, shape.instance_ip) {
        (DefaultEndpoint::InstanceIp { port }, Some(ip)) => Cluster {
            // As the original destination: from 127.0.0.6, past capture.
            upstream_bind_config: Some(inbound_source()),
            ..local(&name, socket_address(ip.to_string(), *port))
        },
        // The shape names the instance IP whenever an endpoint needs it.
        (DefaultEndpoint::OriginalDestination | DefaultEndpoint::InstanceIp { .. }, _) => {
            original_destination(&name)
        }
        (DefaultEndpoint::Loopback { ip, port }, _) => {
            local(&name, socket_address(ip.to_string(), *port))
        }
        (DefaultEndpoint::Unix(path), _) => local(
            &name,
            Address {
                address: Some(address::Address::Pipe(Pipe {
                    path: path.clone(),
                    mode: 0,
                })),
            },
        ),
    };
    let pool = inbound.connection_pool.as_ref();
    let mut http = HttpProtocolOptions::default();
    if let Some(pool) = pool {
        policy::apply_pool(&mut cluster, pool, &mut http);
    }
    // No h2 upgrade inbound (Istio): the application gets what it declared.
    let protocol = app_protocol(shape, port, inbound);
    finish_http_options(&mut cluster, http, protocol, false, pool);
    cluster
}

/// The address the connection was sent to: the pod's own, at the port
/// (which capture restores), from 127.0.0.6 so the capture rules let it
/// through.
fn original_destination(name: &str) -> Cluster {
    Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        upstream_bind_config: Some(inbound_source()),
        ..base(name)
    }
}

/// Loopback or a Unix socket: nothing the capture rules would take again.
fn local(name: &str, address: Address) -> Cluster {
    Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(static_assignment(name, address)),
        ..base(name)
    }
}

/// Forwards inbound connections to their original destination (the
/// application's port), from 127.0.0.6 so the capture rules let them through.
pub fn passthrough() -> Cluster {
    original_destination(names::INBOUND_PASSTHROUGH_CLUSTER)
}

/// Inbound connections to the application leave from 127.0.0.6, which the
/// capture rules exempt (otherwise they would be captured again).
fn inbound_source() -> BindConfig {
    BindConfig {
        source_address: Some(SocketAddress {
            address: names::INBOUND_PASSTHROUGH_SOURCE.to_string(),
            port_specifier: Some(sa::PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}
