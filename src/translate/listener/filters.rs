//! The network filters every listener is built from.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener_filter, Filter, ListenerFilter,
};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{
        CodecType, ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
        UpgradeConfig,
    },
    http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;

use crate::model::MeshConfig;
use crate::translate::{ads_config_source, names};

/// What http_inspector reports for plaintext HTTP; used to pick HTTP chains.
pub const HTTP_PROTOCOLS: &[&str] = &["http/1.0", "http/1.1", "h2c"];

pub enum RouteSource {
    /// A route configuration fetched over RDS, by name.
    Rds(String),
    /// A route configuration carried in the listener (inbound: one cluster).
    Inline(Box<RouteConfiguration>),
}

pub fn http_connection_manager(
    stat_prefix: &str,
    routes: RouteSource,
    mesh: &MeshConfig,
) -> Filter {
    network_filter(hcm(stat_prefix, routes, mesh, Vec::new()))
}

/// An inbound HTTP connection manager: `security` (authentication and
/// authorization filters, in order) runs before the router. Behind mesh mTLS
/// the application sees the caller's proven identity in
/// `x-forwarded-client-cert`: SANITIZE_SET, not Istio's APPEND_FORWARD, so a
/// header a client wrote itself never reaches the application as if this hop
/// had verified it.
pub fn inbound_http_connection_manager(
    stat_prefix: &str,
    routes: RouteConfiguration,
    mesh: &MeshConfig,
    security: Vec<HttpFilter>,
    mtls: bool,
) -> Filter {
    let mut manager = hcm(
        stat_prefix,
        RouteSource::Inline(Box::new(routes)),
        mesh,
        security,
    );
    if mtls {
        manager.forward_client_cert_details = ForwardClientCertDetails::SanitizeSet as i32;
        manager.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
            subject: Some(BoolValue { value: true }),
            uri: true,
            dns: true,
            ..Default::default()
        });
    }
    network_filter(manager)
}

fn network_filter(hcm: HttpConnectionManager) -> Filter {
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
    }
}

fn hcm(
    stat_prefix: &str,
    routes: RouteSource,
    mesh: &MeshConfig,
    mut http_filters: Vec<HttpFilter>,
) -> HttpConnectionManager {
    // Outbound (RDS) routes may carry VirtualService CORS and fault settings,
    // which need their filters in the chain, in Istio's order, before the router.
    let route_specifier = match routes {
        RouteSource::Rds(name) => {
            http_filters.push(crate::translate::filters::cors::http_filter());
            http_filters.push(crate::translate::filters::fault::http_filter());
            RouteSpecifier::Rds(Rds {
                config_source: Some(ads_config_source()),
                route_config_name: name,
            })
        }
        RouteSource::Inline(config) => RouteSpecifier::RouteConfig(*config),
    };
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            Router::default(),
        ))),
        ..Default::default()
    });
    HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(route_specifier),
        http_filters,
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        normalize_path: Some(BoolValue { value: true }),
        access_log: access_logs(mesh),
        ..Default::default()
    }
}

pub fn tcp_proxy(stat_prefix: &str, cluster: &str, mesh: &MeshConfig) -> Filter {
    weighted_tcp_proxy(stat_prefix, &[(cluster.to_string(), 100)], mesh)
}

/// A TCP proxy to one cluster, or split by weight over several (a
/// VirtualService `tcp` route).
pub fn weighted_tcp_proxy(
    stat_prefix: &str,
    clusters: &[(String, u32)],
    mesh: &MeshConfig,
) -> Filter {
    let specifier = match clusters {
        [(one, _)] => tcp_proxy::ClusterSpecifier::Cluster(one.clone()),
        many => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: many
                .iter()
                .map(
                    |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                        name: name.clone(),
                        weight: *weight,
                        ..Default::default()
                    },
                )
                .collect(),
        }),
    };
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(specifier),
        access_log: access_logs(mesh),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(proxy))),
    }
}

/// Where traffic to unknown destinations goes under the mesh's outbound policy.
pub fn unknown_destination_cluster(policy: crate::model::OutboundPolicy) -> &'static str {
    match policy {
        crate::model::OutboundPolicy::AllowAny => names::PASSTHROUGH_CLUSTER,
        crate::model::OutboundPolicy::RegistryOnly => names::BLACKHOLE_CLUSTER,
    }
}

/// Restores the pre-iptables destination address of a redirected connection.
pub fn original_dst() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.original_dst".to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            OriginalDst::default(),
        ))),
        ..Default::default()
    }
}

/// Reads SNI from a TLS ClientHello, for chains matching `server_names`.
pub fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// Sniffs whether a connection speaks plaintext HTTP (protocol detection).
pub fn http_inspector() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.http_inspector".to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            HttpInspector::default(),
        ))),
        ..Default::default()
    }
}

/// Istio's `accessLogFile`: one file log per proxy filter, Envoy's default format.
fn access_logs(mesh: &MeshConfig) -> Vec<AccessLog> {
    let Some(path) = &mesh.access_log_file else {
        return Vec::new();
    };
    let log = FileAccessLog {
        path: path.clone(),
        ..Default::default()
    };
    vec![AccessLog {
        name: "envoy.access_loggers.file".to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(pack_any(log))),
        ..Default::default()
    }]
}
