//! The inbound side. With capture, iptables sends every inbound TCP
//! connection to 15006, where `virtualInbound` picks a filter chain by
//! original destination port: the ports the proxy serves (Service target
//! ports, or its Sidecar's `ingress` listeners) go through `inbound|PORT||`
//! (HTTP routed, or TCP proxied), any other port passes through to the
//! application unchanged. An ingress port Envoy binds itself gets a listener
//! of its own with the same chains. PeerAuthentication decides, per port,
//! whether those chains require, accept or refuse mesh mTLS (see
//! [`Inbound::mesh_chains`]); authorization runs in every one of them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
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
use crate::model::sidecar::{IngressListener, ServerTls};
use crate::model::{Interception, MeshConfig, Protocol, Snapshot};
use crate::translate::filters::security;
use crate::translate::reach::{self, app_protocol, Reach};
use crate::translate::shape::InboundPort;
use crate::translate::{mtls, names, seconds, server_tls, socket_address, ProxyShape};

pub const VIRTUAL_INBOUND: &str = "virtualInbound";
pub const INBOUND_CAPTURE_PORT: u16 = 15006;

/// `virtualInbound` (with capture) and a listener of its own for each port
/// that binds it (see `reach`).
pub fn listeners(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Listener> {
    let inbound = Inbound {
        mesh: &snapshot.mesh,
        shape,
        http_security: security::http_filters(snapshot, shape),
        tcp_security: security::network_filters(snapshot, shape),
    };
    let mut out = Vec::new();
    let (mut chains, mut captured, mut sniff) = (Vec::new(), BTreeSet::new(), false);
    for (port, served, reach) in reach::ports(snapshot, shape) {
        let reach = match (reach, &served.listener) {
            (Ok(reach), Some(l)) => {
                warn_ignored_tls(shape, port, served, l);
                reach
            }
            (Ok(reach), None) => reach,
            (Err(why), Some(l)) => {
                warn(shape, l, "", &why);
                continue;
            }
            (Err(_), None) => continue,
        };
        match reach {
            Reach::Captured => {
                sniff |= app_protocol(shape, port, served) == Protocol::Unknown;
                chains.extend(inbound.port_chains(port, served));
                captured.insert(port);
            }
            Reach::Bound(bind) => out.push(inbound.bound(bind, port, served)),
            Reach::Unserved => {}
        }
    }
    if shape.interception != Interception::None {
        out.push(inbound.virtual_inbound(chains, &captured, sniff));
    }
    out
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
    /// Captured inbound traffic: `chains` of the `captured` ports; port-level
    /// PeerAuthentication modes on other ports (their traffic passes through,
    /// but STRICT still refuses plaintext); and for the rest, as in Istio,
    /// the application unless the workload is STRICT. Authorization applies
    /// to passthrough traffic too.
    fn virtual_inbound(
        &self,
        mut chains: Vec<FilterChain>,
        captured: &BTreeSet<u16>,
        sniff: bool,
    ) -> Listener {
        let shape = self.shape;
        for (&port, &mode) in &shape.inbound_mtls.ports {
            if !captured.contains(&port) {
                chains.push(chain(port, &[], self.passthrough(mode)));
            }
        }
        let mut listener = with_inspectors(chains, sniff, vec![original_dst()]);
        listener.name = VIRTUAL_INBOUND.to_string();
        listener.address = Some(socket_address("0.0.0.0", INBOUND_CAPTURE_PORT));
        listener.default_filter_chain = Some(FilterChain {
            name: "InboundPassthroughFilterChain".to_string(),
            filters: self.passthrough(shape.inbound_mtls.mode),
            ..Default::default()
        });
        listener
    }

    /// A port Envoy binds itself (Istio's `BIND_PORT` listener): the same
    /// chains the port would have under capture, so PeerAuthentication and
    /// authorization apply alike. Nothing else arrives here, so there is no
    /// passthrough.
    fn bound(&self, bind: IpAddr, port: u16, served: &InboundPort) -> Listener {
        let sniff = app_protocol(self.shape, port, served) == Protocol::Unknown;
        let mut listener = with_inspectors(self.port_chains(port, served), sniff, Vec::new());
        listener.name = names::bound_listener(bind, port);
        listener.address = Some(socket_address(bind.to_string(), port));
        listener
    }

    /// The chains of one served port: TLS the Sidecar terminates, when it
    /// does (see `reach::terminated_tls`), else mesh mTLS per PeerAuthentication.
    fn port_chains(&self, port: u16, served: &InboundPort) -> Vec<FilterChain> {
        match reach::terminated_tls(self.shape, port, served) {
            Some(tls) => self.tls_chains(port, served, tls),
            None => self.mesh_chains(port, served.protocol),
        }
    }

    /// TLS with the Sidecar's certificate, then HTTP or TCP to the
    /// application; plaintext to the port is refused, not passed through.
    fn tls_chains(&self, port: u16, served: &InboundPort, tls: &ServerTls) -> Vec<FilterChain> {
        let protocol = app_protocol(self.shape, port, served);
        let (socket, unknown) = server_tls::socket(tls, protocol.is_http());
        if let (Some(l), false) = (&served.listener, unknown.is_empty()) {
            let why = format!("cipher suites Envoy does not know, left out: {unknown:?}");
            warn(self.shape, l, ".tls.cipherSuites", &why);
        }
        let filters = if protocol.is_http() {
            self.http(port, false)
        } else {
            self.tcp(port)
        };
        vec![
            FilterChain {
                transport_socket: Some(socket),
                ..tls_chain(port, &[], filters)
            },
            chain(port, &[], vec![refuse(self.mesh, "inbound_tls_required")]),
        ]
    }

    /// The chains of one served port under its PeerAuthentication mode: mesh
    /// mTLS (terminated here) unless DISABLE, plaintext unless STRICT, and
    /// under STRICT a catch-all that closes anything else. Without a
    /// certificate the proxy cannot terminate mTLS, so STRICT then refuses
    /// everything: closed, not open.
    fn mesh_chains(&self, port: u16, protocol: Protocol) -> Vec<FilterChain> {
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
            chains.push(chain(
                port,
                &[],
                vec![refuse(self.mesh, "inbound_mtls_required")],
            ));
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
            MtlsMode::Strict => vec![refuse(self.mesh, "inbound_mtls_required")],
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

/// Closes the connection: a plaintext or non-mesh client under STRICT, or
/// plaintext to a port that terminates TLS; `stat` says which.
fn refuse(mesh: &MeshConfig, stat: &str) -> Filter {
    tcp_proxy(stat, names::BLACKHOLE_CLUSTER, mesh)
}

/// A listener of `chains` with the inspectors they need: TLS first
/// (http_inspector leaves connections it sees as TLS alone), HTTP when the
/// protocol is sniffed.
fn with_inspectors(
    chains: Vec<FilterChain>,
    sniff: bool,
    mut listener_filters: Vec<ListenerFilter>,
) -> Listener {
    let tls = chains.iter().any(|c| c.transport_socket.is_some());
    if tls {
        listener_filters.push(tls_inspector());
    }
    if sniff {
        listener_filters.push(http_inspector());
    }
    let inspect = sniff || tls;
    Listener {
        listener_filters,
        continue_on_listener_filters_timeout: inspect,
        listener_filters_timeout: inspect.then(|| seconds(5)),
        filter_chains: chains,
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

/// An ingress listener's `tls` that mesh mTLS overrides (Istio ignores it
/// silently; we say so).
fn warn_ignored_tls(shape: &ProxyShape, port: u16, served: &InboundPort, l: &IngressListener) {
    if l.tls.is_some() && reach::terminated_tls(shape, port, served).is_none() {
        let mode = shape.inbound_mtls.at(port);
        let why = format!(
            "ignored: PeerAuthentication mode for port {port} is {mode:?}, and Istio \
             terminates a sidecar's own TLS only where mesh mTLS is DISABLE; the port \
             serves mesh mTLS and plaintext as for any other"
        );
        warn(shape, l, ".tls", &why);
    }
}

/// A Sidecar ingress listener not translated as written, with the reason.
fn warn(shape: &ProxyShape, l: &IngressListener, field: &str, why: &str) {
    let sidecar = shape.sidecar.as_ref().map(ToString::to_string);
    tracing::warn!(
        sidecar = sidecar.as_deref().unwrap_or_default(),
        field = %format!("spec.ingress[{}]{field}", l.index),
        port = l.port,
        "Sidecar ingress listener: {why}"
    );
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
