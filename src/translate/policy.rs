//! DestinationRules: which one applies to a proxy's traffic for a host, and
//! how its traffic policy shapes an Envoy cluster (load balancing, connection
//! pool limits, outlier detection, TLS) and a route (consistent hashing).

use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::thresholds;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CommonLbConfig, DiscoveryType, LbConfig, LbPolicy, LeastRequestLbConfig,
    MaglevLbConfig, RingHashLbConfig, RoundRobinLbConfig, SlowStartConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::UpstreamConnectionOptions;
use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers::Thresholds, CircuitBreakers, Cluster, OutlierDetection,
};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TcpKeepalive, TransportSocket,
};
use envoy_types::pb::envoy::config::core::v3::{
    proxy_protocol_config, ProxyProtocolConfig, RuntimeDouble,
};
use envoy_types::pb::envoy::config::route::v3::route_action::{hash_policy, HashPolicy};
use envoy_types::pb::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, subject_alt_name_matcher::SanType, CertificateValidationContext,
    CommonTlsContext, SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};
use envoy_types::util::pack_any;

use super::{duration, ProxyShape};
use crate::model::routing::{
    ClientTls, ConnectionPool, DestinationRule, HashKey, LbSimple, LoadBalancer, RetryBudget,
    TlsMode, TrafficPolicy, Warmup,
};
use crate::model::Snapshot;

/// Istio's lookup: rules visible from the proxy's namespace whose workload
/// selector (if any) matches it; an exact host beats a wildcard; a rule in the
/// proxy's own namespace beats one in the host's namespace, which beats the
/// root namespace; then oldest, then namespace/name.
pub fn destination_rule_for<'a>(
    snapshot: &'a Snapshot,
    host: &str,
    shape: &ProxyShape,
) -> Option<&'a DestinationRule> {
    let host_ns = host.split('.').nth(1).unwrap_or_default();
    snapshot
        .by_host
        .destination_rules
        .matching(host)
        .into_iter()
        .filter(|dr| dr.visibility.visible_from(&shape.namespace))
        .filter(|dr| {
            dr.workload_selector
                .iter()
                .all(|(k, v)| shape.labels.get(k) == Some(v))
        })
        .min_by_key(|dr| {
            let ns = &dr.key.namespace;
            let scope = if *ns == shape.namespace {
                0
            } else if ns == host_ns {
                1
            } else {
                2
            };
            (dr.host != host, scope, dr.created, dr.key.clone())
        })
}

/// Consistent-hash keys go on the route, not the cluster.
pub fn hash_policy(snapshot: &Snapshot, host: &str, shape: &ProxyShape) -> Vec<HashPolicy> {
    let Some(dr) = destination_rule_for(snapshot, host, shape) else {
        return Vec::new();
    };
    let key = match &dr.policy.load_balancer {
        Some(LoadBalancer::RingHash { key, .. } | LoadBalancer::Maglev { key, .. }) => key,
        _ => return Vec::new(),
    };
    let spec =
        match key {
            HashKey::Header(name) => hash_policy::PolicySpecifier::Header(hash_policy::Header {
                header_name: name.clone(),
                ..Default::default()
            }),
            HashKey::Cookie { name, path, ttl } => {
                hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                    name: name.clone(),
                    path: path.clone().unwrap_or_default(),
                    ttl: ttl.map(duration),
                    ..Default::default()
                })
            }
            HashKey::SourceIp => hash_policy::PolicySpecifier::ConnectionProperties(
                hash_policy::ConnectionProperties { source_ip: true },
            ),
            HashKey::QueryParameter(name) => {
                hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
                    name: name.clone(),
                })
            }
        };
    vec![HashPolicy {
        policy_specifier: Some(spec),
        ..Default::default()
    }]
}

/// Applies a (port-resolved) traffic policy to a cluster.
pub fn apply(
    cluster: &mut Cluster,
    policy: &TrafficPolicy,
    http_options: &mut envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions,
) {
    if let Some(lb) = &policy.load_balancer {
        apply_lb(cluster, lb);
    }
    if let Some(w) = &policy.warmup {
        apply_warmup(cluster, w);
    }
    if let Some(pool) = &policy.connection_pool {
        apply_pool(cluster, pool, http_options);
    }
    if let Some(budget) = &policy.retry_budget {
        apply_retry_budget(cluster, budget);
    }
    if let Some(o) = &policy.outlier_detection {
        let enforce = |n: Option<u32>| {
            n.map(|n| UInt32Value {
                value: if n > 0 { 100 } else { 0 },
            })
        };
        cluster.outlier_detection = Some(OutlierDetection {
            consecutive_5xx: o.consecutive_5xx.map(|value| UInt32Value { value }),
            enforcing_consecutive_5xx: enforce(o.consecutive_5xx),
            consecutive_gateway_failure: o
                .consecutive_gateway_errors
                .map(|value| UInt32Value { value }),
            enforcing_consecutive_gateway_failure: enforce(o.consecutive_gateway_errors),
            consecutive_local_origin_failure: o
                .consecutive_local_origin_failures
                .map(|value| UInt32Value { value }),
            enforcing_consecutive_local_origin_failure: enforce(
                o.consecutive_local_origin_failures,
            ),
            split_external_local_origin_errors: o.split_external_local_origin_errors,
            interval: o.interval.map(duration),
            base_ejection_time: o.base_ejection_time.map(duration),
            max_ejection_percent: o.max_ejection_percent.map(|value| UInt32Value { value }),
            ..Default::default()
        });
        if let Some(min) = o.min_health_percent {
            cluster
                .common_lb_config
                .get_or_insert_with(CommonLbConfig::default)
                .healthy_panic_threshold = Some(Percent { value: min.into() });
        }
    }
    if let Some(tls) = &policy.tls {
        cluster.transport_socket = transport_socket_for(tls);
    }
}

fn apply_lb(cluster: &mut Cluster, lb: &LoadBalancer) {
    match lb {
        LoadBalancer::Simple(LbSimple::RoundRobin) => {
            cluster.lb_policy = LbPolicy::RoundRobin as i32
        }
        LoadBalancer::Simple(LbSimple::LeastRequest) => {
            cluster.lb_policy = LbPolicy::LeastRequest as i32
        }
        LoadBalancer::Simple(LbSimple::Random) => cluster.lb_policy = LbPolicy::Random as i32,
        // Istio: PASSTHROUGH forwards to the address the client dialled.
        LoadBalancer::Simple(LbSimple::Passthrough) => {
            cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            ));
            cluster.lb_policy = LbPolicy::ClusterProvided as i32;
            cluster.eds_cluster_config = None;
        }
        LoadBalancer::RingHash {
            minimum_ring_size, ..
        } => {
            cluster.lb_policy = LbPolicy::RingHash as i32;
            cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: minimum_ring_size.map(|value| UInt64Value { value }),
                ..Default::default()
            }));
        }
        LoadBalancer::Maglev { table_size, .. } => {
            cluster.lb_policy = LbPolicy::Maglev as i32;
            cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                table_size: table_size.map(|value| UInt64Value { value }),
            }));
        }
    }
}

/// Istio's slow start: only round robin and least request (the default)
/// balancers have one; with the others warmup does nothing, as in Istio.
fn apply_warmup(cluster: &mut Cluster, w: &Warmup) {
    let slow_start = SlowStartConfig {
        slow_start_window: Some(duration(w.window)),
        aggression: w.aggression.map(|a| RuntimeDouble {
            default_value: a.get(),
            // Envoy requires a key; nothing sets it, so the default holds.
            runtime_key: "upstream.slow_start.aggression".to_string(),
        }),
        min_weight_percent: w.min_percent.map(|p| Percent { value: p.get() }),
    };
    if cluster.lb_policy == LbPolicy::RoundRobin as i32 {
        cluster.lb_config = Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
            slow_start_config: Some(slow_start),
        }));
    } else if cluster.lb_policy == LbPolicy::LeastRequest as i32 {
        cluster.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
            slow_start_config: Some(slow_start),
            ..Default::default()
        }));
    }
}

/// A retry budget replaces the fixed `max_retries` limit in Envoy.
fn apply_retry_budget(cluster: &mut Cluster, b: &RetryBudget) {
    let breakers = cluster
        .circuit_breakers
        .get_or_insert_with(CircuitBreakers::default);
    if breakers.thresholds.is_empty() {
        breakers.thresholds.push(Thresholds::default());
    }
    breakers.thresholds[0].retry_budget = Some(thresholds::RetryBudget {
        budget_percent: b.percent.map(|p| Percent { value: p.get() }),
        min_retry_concurrency: b.min_retry_concurrency.map(|value| UInt32Value { value }),
        budget_interval: b.interval.map(duration),
    });
}

/// `proxyProtocol`: a PROXY protocol header first on every upstream
/// connection, inside whatever socket the cluster already uses (plaintext,
/// TLS, or each auto mTLS choice), as Istio wraps them.
pub fn wrap_proxy_protocol(cluster: &mut Cluster, version: u8) {
    let wrap = |inner: TransportSocket| {
        let version = if version == 2 {
            proxy_protocol_config::Version::V2
        } else {
            proxy_protocol_config::Version::V1
        };
        TransportSocket {
            name: "envoy.transport_sockets.upstream_proxy_protocol".to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                ProxyProtocolUpstreamTransport {
                    config: Some(ProxyProtocolConfig {
                        version: version as i32,
                        ..Default::default()
                    }),
                    transport_socket: Some(inner),
                    ..Default::default()
                },
            ))),
        }
    };
    if cluster.transport_socket_matches.is_empty() {
        let inner = cluster
            .transport_socket
            .take()
            .unwrap_or_else(super::mtls::raw_buffer);
        cluster.transport_socket = Some(wrap(inner));
    } else {
        for m in &mut cluster.transport_socket_matches {
            let inner = m
                .transport_socket
                .take()
                .unwrap_or_else(super::mtls::raw_buffer);
            m.transport_socket = Some(wrap(inner));
        }
    }
}

pub fn apply_pool(
    cluster: &mut Cluster,
    pool: &ConnectionPool,
    http: &mut envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions,
) {
    let u32v = |v: Option<u32>| v.map(|value| UInt32Value { value });
    if pool.max_connections.is_some()
        || pool.http1_max_pending_requests.is_some()
        || pool.http2_max_requests.is_some()
        || pool.max_retries.is_some()
    {
        cluster.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                max_connections: u32v(pool.max_connections),
                max_pending_requests: u32v(pool.http1_max_pending_requests),
                max_requests: u32v(pool.http2_max_requests),
                max_retries: u32v(pool.max_retries),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    if let Some(t) = pool.connect_timeout {
        cluster.connect_timeout = Some(duration(t));
    }
    if let Some((probes, time, interval)) = pool.tcp_keepalive {
        cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
            tcp_keepalive: Some(TcpKeepalive {
                keepalive_probes: u32v(probes),
                keepalive_time: time.map(|t| UInt32Value {
                    value: t.as_secs() as u32,
                }),
                keepalive_interval: interval.map(|t| UInt32Value {
                    value: t.as_secs() as u32,
                }),
            }),
            ..Default::default()
        });
    }
    if pool.http_idle_timeout.is_some()
        || pool.max_requests_per_connection.is_some()
        || pool.max_connection_duration.is_some()
    {
        let common = http
            .common_http_protocol_options
            .get_or_insert_with(Default::default);
        common.idle_timeout = pool.http_idle_timeout.map(duration);
        common.max_requests_per_connection = u32v(pool.max_requests_per_connection);
        common.max_connection_duration = pool.max_connection_duration.map(duration);
    }
}

/// SIMPLE and MUTUAL originate TLS with files the proxy can read. DISABLE
/// leaves the connection as it is; ISTIO_MUTUAL is the mesh's own mTLS
/// (`cluster::mesh_tls`).
fn transport_socket_for(tls: &ClientTls) -> Option<TransportSocket> {
    if !matches!(tls.mode, TlsMode::Simple | TlsMode::Mutual) {
        return None;
    }
    let mut common = CommonTlsContext::default();
    if tls.mode == TlsMode::Mutual {
        if let (Some(cert), Some(key)) = (&tls.client_certificate, &tls.private_key) {
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: Some(file_source(cert)),
                private_key: Some(file_source(key)),
                ..Default::default()
            }];
        }
    }
    if !tls.insecure_skip_verify {
        if let Some(ca) = &tls.ca_certificates {
            common.validation_context_type = Some(
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(file_source(ca)),
                        match_typed_subject_alt_names: tls
                            .subject_alt_names
                            .iter()
                            .map(|san| SubjectAltNameMatcher {
                                san_type: SanType::Dns as i32,
                                matcher: Some(StringMatcher {
                                    match_pattern: Some(string_matcher::MatchPattern::Exact(
                                        san.clone(),
                                    )),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    },
                ),
            );
        }
    }
    let context = UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: tls.sni.clone().unwrap_or_default(),
        ..Default::default()
    };
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    })
}

/// A file the proxy reads (certificates, keys, CA bundles).
pub fn file_source(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}
