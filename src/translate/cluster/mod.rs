//! CDS: one EDS cluster per service port, the proxy's inbound clusters
//! (inbound.rs), and Istio's two fixed clusters.

mod inbound;

use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::{
    LocalityConfigSpecifier, LocalityWeightedLbConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CommonLbConfig, DiscoveryType, DnsLookupFamily, EdsClusterConfig,
    LbPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    Address, Http1ProtocolOptions, Http2ProtocolOptions,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config, ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::util::pack_any;

use super::names::{self, BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER};
use super::{ads_config_source, locality, mtls, policy, seconds, socket_address, ProxyShape};
use crate::model::routing::{ConnectionPool, TlsMode, TrafficPolicy};
use crate::model::{Protocol, ProxyKind, Resolution, Service, ServicePort, Snapshot};

/// Istio's default connect timeout for mesh clusters.
const CONNECT_TIMEOUT_SECS: i64 = 10;

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Every cluster this proxy needs, sorted by name.
pub fn clusters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Cluster> {
    let imported: Vec<&Service> = snapshot
        .services
        .values()
        .map(|s| s.as_ref())
        .filter(|s| shape.imports(snapshot, s))
        .collect();
    // At least one cluster per imported service: a `Cluster` is large, and
    // growing the list from empty copied ~2× its final size.
    let mut out: Vec<Cluster> = Vec::with_capacity(imported.len() + 4);
    for svc in imported {
        let rule = policy::destination_rule_for(snapshot, &svc.host, shape);
        let ports = svc
            .ports
            .iter()
            .filter(|p| p.protocol != Protocol::Udp && shape.imports_port(snapshot, svc, p.port));
        for port in ports {
            let top = rule
                .map(|r| r.policy.for_port(port.port))
                .unwrap_or_default();
            out.extend(outbound(svc, port, "", &top, shape, snapshot));
            for subset in rule.iter().flat_map(|r| r.subsets.iter()) {
                // Istio's MergeTrafficPolicy: the rule's policy for this port,
                // then the subset's (with its own port settings) on top.
                let merged = top.overlay(&subset.policy.for_port(port.port));
                out.extend(outbound(svc, port, &subset.name, &merged, shape, snapshot));
            }
        }
    }
    if shape.kind == ProxyKind::Sidecar {
        out.extend(inbound::clusters(snapshot, shape));
        out.push(inbound::passthrough());
    }
    out.push(passthrough());
    out.push(blackhole());
    super::filters::jwt::add_jwks_clusters(&mut out, snapshot, shape);
    // By cached key: a `Cluster` is a large struct, and sorting moves each
    // one log n times; this sorts (name, index) pairs and moves each once.
    out.sort_by_cached_key(|c| c.name.clone());
    out
}

fn outbound(
    svc: &Service,
    port: &ServicePort,
    subset: &str,
    policy: &TrafficPolicy,
    shape: &ProxyShape,
    snapshot: &Snapshot,
) -> Option<Cluster> {
    let name = names::outbound_cluster(port.port, subset, &svc.host);
    let mut cluster = match &svc.resolution {
        Resolution::Dns {
            targets,
            round_robin,
        } => {
            let kind = if *round_robin {
                DiscoveryType::LogicalDns
            } else {
                DiscoveryType::StrictDns
            };
            let endpoints = targets.iter().map(|t| {
                (
                    t.host.as_str(),
                    t.ports
                        .get(&port.name)
                        .copied()
                        .unwrap_or_else(|| target_number(port)),
                )
            });
            Cluster {
                cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
                dns_lookup_family: DnsLookupFamily::V4Only as i32,
                load_assignment: Some(assignment_of(&name, endpoints)),
                ..base(&name)
            }
        }
        Resolution::Passthrough => Cluster {
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            )),
            lb_policy: LbPolicy::ClusterProvided as i32,
            ..base(&name)
        },
        Resolution::Endpoints => Cluster {
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                eds_config: Some(ads_config_source()),
                service_name: name.clone(),
            }),
            ..base(&name)
        },
    };
    // Istio's default since 1.14: least request, which copes with uneven
    // backends better than round robin. Original-destination clusters choose
    // their own host.
    if svc.resolution != Resolution::Passthrough {
        cluster.lb_policy = LbPolicy::LeastRequest as i32;
    }
    let mut http = HttpProtocolOptions::default();
    policy::apply(&mut cluster, policy, &mut http);
    locality_lb(&mut cluster, policy, shape, snapshot);
    mesh_tls(&mut cluster, svc, port, subset, policy, shape, snapshot);
    if let Some(version) = policy.proxy_protocol {
        policy::wrap_proxy_protocol(&mut cluster, version);
    }
    let pool = policy.connection_pool.as_ref();
    let upgrade = pool.and_then(|p| p.h2_upgrade) == Some(true) && port.protocol.is_http();
    finish_http_options(&mut cluster, http, port.protocol, upgrade, pool);
    Some(cluster)
}

/// Locality load balancing: an EDS cluster whose policy applies reads the
/// load assignment relative to the proxy's locality (priorities or weights),
/// which EDS serves under its own name.
fn locality_lb(
    cluster: &mut Cluster,
    policy: &TrafficPolicy,
    shape: &ProxyShape,
    snapshot: &Snapshot,
) {
    let Some(eds) = cluster.eds_cluster_config.as_mut() else {
        return; // DNS, original destination and PASSTHROUGH: no EDS.
    };
    let Some((mode, variant)) = locality::for_cluster(snapshot, shape, policy) else {
        return;
    };
    eds.service_name = names::eds_variant(&cluster.name, &variant);
    if mode.locality_weighted() {
        cluster
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default)
            .locality_config_specifier = Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            LocalityWeightedLbConfig {},
        ));
    }
}

/// Sets the cluster's HTTP protocol options: HTTP/2 upstream for HTTP/2 and
/// gRPC ports (or when `upgrade`), and whatever a connection pool put in
/// `http`. HTTP settings mean nothing to a TCP proxy, and Envoy requires an
/// upstream protocol whenever these options are present.
fn finish_http_options(
    cluster: &mut Cluster,
    mut http: HttpProtocolOptions,
    protocol: Protocol,
    upgrade: bool,
    pool: Option<&ConnectionPool>,
) {
    if protocol.is_http2() || upgrade {
        http.upstream_protocol_options = Some(http2());
    }
    let may_be_http = protocol.is_http() || protocol == Protocol::Unknown;
    if http == HttpProtocolOptions::default()
        || !(may_be_http || http.upstream_protocol_options.is_some())
    {
        return;
    }
    if http.upstream_protocol_options.is_none() {
        http.upstream_protocol_options = Some(if pool.is_some_and(|p| p.use_client_protocol) {
            UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(Http2ProtocolOptions::default()),
                ..Default::default()
            })
        } else {
            UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                    Http1ProtocolOptions::default(),
                )),
            })
        });
    }
    set_protocol_options(cluster, http);
}

/// Mesh mTLS to a service: always with DestinationRule ISTIO_MUTUAL (even
/// from a proxy without a certificate: it fails closed rather than fall back
/// to plaintext); per endpoint (auto mTLS) when the rule says nothing about
/// TLS. DISABLE, SIMPLE and MUTUAL are the user's explicit choice.
fn mesh_tls(
    cluster: &mut Cluster,
    svc: &Service,
    port: &ServicePort,
    subset: &str,
    policy: &TrafficPolicy,
    shape: &ProxyShape,
    snapshot: &Snapshot,
) {
    let socket = || {
        let sni = format!("outbound_.{}_.{}_.{}", port.port, subset, svc.host);
        mtls::client_socket(&snapshot.mesh.trust_domain, &sni, port.protocol)
    };
    match policy.tls.as_ref().map(|t| &t.mode) {
        Some(TlsMode::IstioMutual) => cluster.transport_socket = Some(socket()),
        Some(_) => {}
        None if shape.mtls && svc.resolution == Resolution::Endpoints && !svc.mesh_external => {
            cluster.transport_socket_matches = mtls::auto_socket_matches(socket());
        }
        None => {}
    }
}

/// Sends to wherever the client was going (the original destination).
fn passthrough() -> Cluster {
    Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        ..base(PASSTHROUGH_CLUSTER)
    }
}

/// A cluster with no endpoints: traffic routed here fails fast.
fn blackhole() -> Cluster {
    Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: BLACKHOLE_CLUSTER.to_string(),
            ..Default::default()
        }),
        ..base(BLACKHOLE_CLUSTER)
    }
}

fn base(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(seconds(CONNECT_TIMEOUT_SECS)),
        ..Default::default()
    }
}

/// One endpoint at `address` (an IP and port, or a Unix socket).
fn static_assignment(cluster: &str, address: Address) -> ClusterLoadAssignment {
    addressed(cluster, [address].into_iter())
}

fn assignment_of<'a>(
    cluster: &str,
    endpoints: impl Iterator<Item = (&'a str, u16)>,
) -> ClusterLoadAssignment {
    addressed(
        cluster,
        endpoints.map(|(host, port)| socket_address(host, port)),
    )
}

fn addressed(cluster: &str, addresses: impl Iterator<Item = Address>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: addresses
                .map(|address| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(address),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The port a DNS endpoint is dialled on when it names no override.
fn target_number(port: &ServicePort) -> u16 {
    match port.target_port {
        crate::model::TargetPort::Number(n) => n,
        crate::model::TargetPort::Named(_) => port.port,
    }
}

/// gRPC and HTTP/2 upstreams need HTTP/2 end to end.
fn http2() -> UpstreamProtocolOptions {
    UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
        protocol_config: Some(explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
            Http2ProtocolOptions::default(),
        )),
    })
}

fn set_protocol_options(cluster: &mut Cluster, options: HttpProtocolOptions) {
    // A one-entry map, so its (unordered) encoding is still deterministic.
    cluster
        .typed_extension_protocol_options
        .insert(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(options));
}
