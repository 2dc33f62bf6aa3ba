//! RDS: one route configuration per HTTP port, one virtual host per service
//! answering to every name a client may use for it.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::route::v3::{
    retry_policy::{retry_host_predicate, RetryHostPredicate},
    route, DirectResponseAction, route_action, route_match, RetryPolicy, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::util::pack_any;

use super::listener::outbound_ports;
use super::{names, seconds, ProxyShape};
use crate::model::{Interception, OutboundPolicy, Protocol, ProxyKind, Service, ServicePort, Snapshot};

pub fn routes(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<RouteConfiguration> {
    if shape.kind != ProxyKind::Sidecar {
        return Vec::new();
    }
    // With capture, undeclared-protocol ports are sniffed and may carry HTTP,
    // and unknown hosts follow the outbound policy; on loopback neither applies.
    let captured = shape.interception != Interception::None;
    let routed = |p: &ServicePort| p.protocol.is_http() || (captured && p.protocol == Protocol::Unknown);
    outbound_ports(snapshot)
        .into_iter()
        // Loopback listeners skip the workload's own ports (see listener/loopback.rs).
        .filter(|(port, _)| captured || !shape.inbound_ports.contains_key(port))
        .filter(|(_, services)| services.iter().any(|(_, p)| routed(p)))
        .map(|(port, services)| {
            // Envoy refuses a route configuration where two virtual hosts share
            // a domain (two Services claiming one cluster IP, say): first wins.
            let mut taken = BTreeSet::new();
            let mut virtual_hosts: Vec<VirtualHost> = services
                .iter()
                .filter(|(_, p)| routed(p))
                .filter_map(|(svc, _)| virtual_host(svc, port, &shape.namespace, &mut taken))
                .collect();
            if captured {
                virtual_hosts.push(unknown_host(snapshot.mesh.outbound_traffic_policy));
            }
            RouteConfiguration {
                name: names::route_config(port),
                virtual_hosts,
                validate_clusters: Some(BoolValue { value: false }),
                ..Default::default()
            }
        })
        .collect()
}

fn virtual_host(svc: &Service, port: u16, client_ns: &str, taken: &mut BTreeSet<String>) -> Option<VirtualHost> {
    let domains: Vec<String> = names::host_aliases(svc, client_ns)
        .into_iter()
        .flat_map(|h| [format!("{h}:{port}"), h])
        .filter(|d| taken.insert(d.clone()))
        .collect();
    if domains.is_empty() {
        return None;
    }
    let cluster = names::outbound_cluster(port, "", &svc.hostname());
    Some(VirtualHost {
        name: format!("{}:{port}", svc.hostname()),
        domains,
        routes: vec![Route {
            name: "default".to_string(),
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
                // Istio disables Envoy's 15 s route timeout unless a VirtualService sets one.
                timeout: Some(seconds(0)),
                retry_policy: Some(default_retry_policy()),
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Any other Host: Istio's `allow_any` (pass through to the original
/// destination) or `block_all` (502) virtual host.
fn unknown_host(policy: OutboundPolicy) -> VirtualHost {
    let (name, action) = match policy {
        OutboundPolicy::AllowAny => (
            "allow_any",
            route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(names::PASSTHROUGH_CLUSTER.to_string())),
                timeout: Some(seconds(0)),
                ..Default::default()
            }),
        ),
        OutboundPolicy::RegistryOnly => (
            "block_all",
            route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        ),
    };
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            name: name.to_string(),
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            action: Some(action),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Istio's default: two retries on connection-level failures and 503s, each
/// on a different host than before.
fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes".to_string(),
        num_retries: Some(UInt32Value { value: 2 }),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(pack_any(
                PreviousHostsPredicate::default(),
            ))),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}
