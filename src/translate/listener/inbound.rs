//! Captured inbound traffic. iptables sends every inbound TCP connection to
//! 15006; `virtualInbound` picks a filter chain by original destination port:
//! the workload's service ports go through `inbound|PORT||` (HTTP routed, or
//! TCP proxied), any other port passes through to the application unchanged.
//! PeerAuthentication decides, per port, whether those chains require,
//! accept or refuse mesh mTLS (see [`port_chains`]).

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

use super::filters::{
    http_inspector, inbound_http_connection_manager, original_dst, tcp_proxy, tls_inspector,
    HTTP_PROTOCOLS,
};
use crate::model::security::MtlsMode;
use crate::model::{MeshConfig, Protocol, Snapshot};
use crate::translate::filters::security;
use crate::translate::{mtls, names, seconds, socket_address, ProxyShape};

pub const VIRTUAL_INBOUND: &str = "virtualInbound";
pub const INBOUND_CAPTURE_PORT: u16 = 15006;

pub fn listener(snapshot: &Snapshot, shape: &ProxyShape) -> Listener {
    let inbound = Inbound {
        mesh: &snapshot.mesh,
        shape,
        http_security: security::http_filters(snapshot, shape),
        tcp_security: security::network_filters(snapshot, shape),
    };
    let mut chains = Vec::new();
    for (&port, &protocol) in &shape.inbound_ports {
        chains.extend(inbound.port_chains(port, protocol));
    }
    // Port-level modes on ports no service declares: their traffic passes
    // through, but STRICT still refuses plaintext.
    let workload_mode = shape.inbound_mtls.mode;
    for (&port, &mode) in &shape.inbound_mtls.ports {
        if !shape.inbound_ports.contains_key(&port) {
            chains.push(chain(port, &[], inbound.passthrough(mode)));
        }
    }
    let sniff = shape
        .inbound_ports
        .values()
        .any(|p| *p == Protocol::Unknown);
    let tls = chains.iter().any(|c| c.transport_socket.is_some());
    let mut listener_filters = vec![original_dst()];
    // TLS first: http_inspector leaves connections it sees as TLS alone.
    if tls {
        listener_filters.push(tls_inspector());
    }
    if sniff {
        listener_filters.push(http_inspector());
    }
    let inspect = sniff || tls;
    Listener {
        name: VIRTUAL_INBOUND.to_string(),
        address: Some(socket_address("0.0.0.0", INBOUND_CAPTURE_PORT)),
        listener_filters,
        continue_on_listener_filters_timeout: inspect,
        listener_filters_timeout: inspect.then(|| seconds(5)),
        filter_chains: chains,
        // Ports no service declares still reach the application, as in
        // Istio, unless the workload is STRICT; authorization applies there too.
        default_filter_chain: Some(FilterChain {
            name: "InboundPassthroughFilterChain".to_string(),
            filters: inbound.passthrough(workload_mode),
            ..Default::default()
        }),
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

/// What every inbound chain of one proxy shares: its mesh config, shape, and
/// the authentication and authorization filters its workload's policies
/// produce (HTTP chains run `http_security`, TCP chains `tcp_security`).
struct Inbound<'a> {
    mesh: &'a MeshConfig,
    shape: &'a ProxyShape,
    http_security: Vec<HttpFilter>,
    tcp_security: Vec<Filter>,
}

impl Inbound<'_> {
    /// The chains of one served port under its PeerAuthentication mode: mesh
    /// mTLS (terminated here) unless DISABLE, plaintext unless STRICT, and
    /// under STRICT a catch-all that closes anything else. Without a
    /// certificate the proxy cannot terminate mTLS, so STRICT then refuses
    /// everything: closed, not open.
    fn port_chains(&self, port: u16, protocol: Protocol) -> Vec<FilterChain> {
        let mode = self.shape.inbound_mtls.at(port);
        let mut chains = Vec::new();
        if mode != MtlsMode::Disable && self.shape.mtls {
            let socket = || Some(mtls::server_socket(&self.mesh.trust_domain));
            let any: Vec<&str> = [mtls::MESH_ALPN_HTTP, mtls::MESH_ALPN_TCP].concat();
            let tls = |alpn: &[&str], filters| FilterChain {
                transport_socket: socket(),
                ..tls_chain(port, alpn, filters)
            };
            if protocol.is_http() {
                chains.push(tls(&any, self.http(port, true)));
            } else if protocol == Protocol::Unknown {
                chains.push(tls(mtls::MESH_ALPN_HTTP, self.http(port, true)));
                chains.push(tls(mtls::MESH_ALPN_TCP, self.tcp(port)));
            } else {
                chains.push(tls(&any, self.tcp(port)));
            }
        }
        if mode == MtlsMode::Strict {
            chains.push(chain(port, &[], vec![refuse(self.mesh)]));
            return chains;
        }
        if protocol.is_http() {
            chains.push(chain(port, &[], self.http(port, false)));
        } else if protocol == Protocol::Unknown {
            chains.push(chain(port, HTTP_PROTOCOLS, self.http(port, false)));
            chains.push(chain(port, &[], self.tcp(port)));
        } else {
            chains.push(chain(port, &[], self.tcp(port)));
        }
        chains
    }

    fn http(&self, port: u16, mtls: bool) -> Vec<Filter> {
        vec![inbound_http_connection_manager(
            &format!("inbound_0.0.0.0_{port}"),
            local_routes(port),
            self.mesh,
            self.http_security.clone(),
            mtls,
        )]
    }

    fn tcp(&self, port: u16) -> Vec<Filter> {
        let cluster = names::inbound_cluster(port);
        self.with_tcp_security(tcp_proxy(&cluster, &cluster, self.mesh))
    }

    fn passthrough(&self, mode: MtlsMode) -> Vec<Filter> {
        match mode {
            MtlsMode::Strict => vec![refuse(self.mesh)],
            _ => self.with_tcp_security(tcp_proxy(
                names::INBOUND_PASSTHROUGH_CLUSTER,
                names::INBOUND_PASSTHROUGH_CLUSTER,
                self.mesh,
            )),
        }
    }

    fn with_tcp_security(&self, proxy: Filter) -> Vec<Filter> {
        let mut filters = self.tcp_security.clone();
        filters.push(proxy);
        filters
    }
}

/// Closes the connection: a plaintext or non-mesh client under STRICT.
fn refuse(mesh: &MeshConfig) -> Filter {
    tcp_proxy("inbound_mtls_required", names::BLACKHOLE_CLUSTER, mesh)
}

fn chain(port: u16, protocols: &[&str], filters: Vec<Filter>) -> FilterChain {
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value { value: port.into() }),
            application_protocols: protocols.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        filters,
        ..Default::default()
    }
}

/// A chain for mesh mTLS: TLS whose ALPN says a mesh client sent it. The
/// application's own TLS (other ALPN) falls to the plaintext chains.
fn tls_chain(port: u16, alpn: &[&str], filters: Vec<Filter>) -> FilterChain {
    let mut c = chain(port, alpn, filters);
    if let Some(m) = c.filter_chain_match.as_mut() {
        m.transport_protocol = "tls".to_string();
    }
    c
}

/// Inbound HTTP needs no RDS: every request goes to the local application.
fn local_routes(port: u16) -> RouteConfiguration {
    let cluster = names::inbound_cluster(port);
    RouteConfiguration {
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
    }
}
