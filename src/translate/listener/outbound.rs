//! Captured outbound traffic. iptables sends every outbound TCP connection to
//! 15001; `virtualOutbound` hands it to the listener for its original
//! destination (`0.0.0.0_PORT`, or a Sidecar egress listener's
//! `BIND_PORT`, which Envoy prefers for that exact address; not bound).
//! There, a filter chain per service cluster IP picks HTTP routing or a TCP
//! proxy, and connections to unknown destinations follow the mesh's
//! outbound traffic policy.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TrafficDirection};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::filters::{
    http_connection_manager, http_inspector, original_dst, tcp_proxy, tls_inspector,
    unknown_destination_cluster, weighted_tcp_proxy, RouteSource, HTTP_PROTOCOLS,
};
use super::port_has_http;
use crate::model::{MeshConfig, OutboundPolicy, Protocol, Service, ServicePort, Snapshot};
use crate::translate::egress::OutboundPort;
use crate::translate::{names, seconds, socket_address, ProxyShape};

pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;

/// How long protocol sniffing waits for the client's first bytes before
/// treating the connection as opaque TCP (server-first protocols).
pub(super) const SNIFF_TIMEOUT_SECS: i64 = 5;

pub(super) fn virtual_outbound(mesh: &MeshConfig, policy: OutboundPolicy) -> Listener {
    let cluster = unknown_destination_cluster(policy);
    Listener {
        name: VIRTUAL_OUTBOUND.to_string(),
        address: Some(socket_address("0.0.0.0", OUTBOUND_CAPTURE_PORT)),
        use_original_dst: Some(BoolValue { value: true }),
        listener_filters: vec![original_dst()],
        // A connection addressed to 15001 itself would be handed back here
        // forever; Istio blackholes it, and so do we.
        filter_chains: vec![FilterChain {
            name: "virtualOutbound-blackhole".to_string(),
            filter_chain_match: Some(FilterChainMatch {
                destination_port: Some(UInt32Value {
                    value: OUTBOUND_CAPTURE_PORT.into(),
                }),
                ..Default::default()
            }),
            filters: vec![tcp_proxy(
                names::BLACKHOLE_CLUSTER,
                names::BLACKHOLE_CLUSTER,
                mesh,
            )],
            ..Default::default()
        }],
        // Reached only for ports no service uses.
        default_filter_chain: Some(FilterChain {
            name: "PassthroughFilterChain".to_string(),
            filters: vec![tcp_proxy(cluster, cluster, mesh)],
            ..Default::default()
        }),
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

pub(super) fn port_listener(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    policy: OutboundPolicy,
    outbound: &OutboundPort,
) -> Listener {
    let mesh = &snapshot.mesh;
    let (port, address) = (outbound.port, outbound.address().to_string());
    let refs = outbound.service_refs();
    let services = refs.as_slice();
    let http = port_has_http(services);
    let hcm = || {
        http_connection_manager(
            &format!("outbound_{address}_{port}"),
            RouteSource::Rds(names::route_config(port)),
            mesh,
        )
    };
    let mut chains = Vec::new();
    // Two services claiming one cluster IP would make identical chain matches,
    // which Envoy rejects: the first by namespace/name keeps it.
    let mut taken = BTreeSet::new();
    // Address ranges TCP chains (no application protocol) match on: Envoy
    // refuses two chains with one match, so each set is claimed once.
    let mut subnet_claims = BTreeSet::new();
    let sni = sni_chains(snapshot, shape, port, services);
    // Some chain matches on SNI: the TLS inspector must read it.
    let tls = !sni.is_empty();
    chains.extend(sni);
    for (svc, p) in services {
        // Headless services have no cluster IP; their pods' own addresses fall
        // through to the default chains below.
        let Some(vip) = svc.vip.filter(|v| taken.insert(*v)) else {
            continue;
        };
        let vip = names::ip_text(vip);
        let cluster = names::outbound_cluster(port, "", &svc.host);
        if p.protocol.is_http() {
            // Declared HTTP needs no chain of its own: the port's HTTP chain
            // below routes by Host, and the route table lists the cluster IP
            // as a domain. A chain per IP would repeat the whole connection
            // manager per service (most of LDS at a thousand services).
            continue;
        }
        if p.protocol == Protocol::Unknown {
            chains.push(chain(&vip, HTTP_PROTOCOLS, hcm()));
        }
        // TCP traffic may be split by a VirtualService `tcp` route, and
        // routed by destination subnets before the service's own address.
        let routes = crate::translate::tcp_routes(snapshot, shape, svc, port, true);
        for (subnets, dests) in routes.by_subnet {
            let ranges = cidrs(&subnets);
            if subnet_claims.insert(range_key(&ranges)) {
                chains.push(FilterChain {
                    filter_chain_match: Some(FilterChainMatch {
                        prefix_ranges: ranges,
                        ..Default::default()
                    }),
                    filters: vec![weighted_tcp_proxy(&cluster, &dests, mesh)],
                    ..Default::default()
                });
            }
        }
        let own = chain(
            &vip,
            &[],
            weighted_tcp_proxy(&cluster, &routes.default, mesh),
        );
        // A route on exactly this address already has it (Istio: no
        // second chain, which Envoy would refuse as a duplicate match).
        let own_ranges = own
            .filter_chain_match
            .as_ref()
            .map(|m| m.prefix_ranges.clone());
        if subnet_claims.insert(range_key(&own_ranges.unwrap_or_default())) {
            chains.push(own);
        }
    }
    if http {
        // Plaintext HTTP to an address no service owns: the route table's
        // catch-all virtual host applies the outbound traffic policy.
        chains.push(FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                application_protocols: HTTP_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            filters: vec![hcm()],
            ..Default::default()
        });
    }
    let unknown = unknown_destination_cluster(policy);
    Listener {
        name: outbound.listener_name(),
        address: Some(socket_address(&address, port)),
        // Reached only through virtualOutbound's hand-off.
        bind_to_port: Some(BoolValue { value: false }),
        listener_filters: inspectors(http, tls),
        listener_filters_timeout: (http || tls).then(|| seconds(SNIFF_TIMEOUT_SECS)),
        continue_on_listener_filters_timeout: http || tls,
        filter_chains: chains,
        default_filter_chain: Some(FilterChain {
            name: "PassthroughFilterChain".to_string(),
            filters: vec![tcp_proxy(unknown, unknown, mesh)],
            ..Default::default()
        }),
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

/// The chains TLS and HTTPS services on a port are matched by, on SNI
/// (how hosts without an address, like DNS ServiceEntries, are reached; and
/// the only way on a listener the application dials): VirtualService `tls`
/// routes first, each match's SNI names (on its destination subnets, if
/// any) to the route's destinations, then each remaining TLS service by its
/// own name. Envoy refuses two chains with one match, so a name is claimed
/// once per set of subnets (first route wins).
pub(super) fn sni_chains(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    port: u16,
    services: &[(&Service, &ServicePort)],
) -> Vec<FilterChain> {
    let mesh = &snapshot.mesh;
    let mut chains = Vec::new();
    let mut sni_hosts = BTreeSet::new();
    let mut claimed = BTreeSet::new();
    for (svc, p) in services
        .iter()
        .filter(|(_, p)| matches!(p.protocol, Protocol::Tls | Protocol::Https))
    {
        for route in crate::translate::tls_routes(snapshot, shape, svc, p.port) {
            let stat = names::outbound_cluster(port, "", &svc.host);
            for m in route.matches {
                let names: Vec<String> = m
                    .sni
                    .into_iter()
                    .filter(|n| claimed.insert((n.clone(), m.destination_subnets.clone())))
                    .collect();
                if names.is_empty() {
                    continue;
                }
                if m.destination_subnets.is_empty() {
                    sni_hosts.extend(names.iter().cloned());
                }
                let prefix_ranges = cidrs(&m.destination_subnets);
                chains.push(FilterChain {
                    filter_chain_match: Some(FilterChainMatch {
                        prefix_ranges,
                        server_names: names,
                        transport_protocol: "tls".to_string(),
                        ..Default::default()
                    }),
                    filters: vec![weighted_tcp_proxy(&stat, &route.clusters, mesh)],
                    ..Default::default()
                });
            }
        }
    }
    for (svc, p) in services {
        if matches!(p.protocol, Protocol::Tls | Protocol::Https) && sni_hosts.insert(svc.hostname())
        {
            let cluster = names::outbound_cluster(port, "", &svc.host);
            chains.push(FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    server_names: vec![svc.hostname()],
                    transport_protocol: "tls".to_string(),
                    ..Default::default()
                }),
                filters: vec![tcp_proxy(&cluster, &cluster, mesh)],
                ..Default::default()
            });
        }
    }
    chains
}

/// `destinationSubnets`, validated as IPs or CIDR blocks: none is dropped.
fn cidrs(subnets: &[String]) -> Vec<CidrRange> {
    subnets
        .iter()
        .filter_map(|s| crate::translate::filters::rbac::matchers::cidr(s).ok())
        .collect()
}

/// A set of ranges as Envoy compares them: order does not matter.
fn range_key(ranges: &[CidrRange]) -> BTreeSet<(String, u32)> {
    ranges
        .iter()
        .map(|r| {
            let len = r.prefix_len.map_or(0, |l| l.value);
            (r.address_prefix.clone(), len)
        })
        .collect()
}

pub(super) fn inspectors(
    http: bool,
    tls: bool,
) -> Vec<envoy_types::pb::envoy::config::listener::v3::ListenerFilter> {
    let mut out = Vec::new();
    if tls {
        out.push(tls_inspector());
    }
    if http {
        out.push(http_inspector());
    }
    out
}

fn chain(vip: &str, protocols: &[&str], filter: Filter) -> FilterChain {
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            prefix_ranges: vec![CidrRange {
                address_prefix: vip.to_string(),
                prefix_len: Some(UInt32Value {
                    value: if vip.contains(':') { 128 } else { 32 },
                }),
            }],
            application_protocols: protocols.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![filter],
        ..Default::default()
    }
}
