//! DestinationRule and Sidecar to the routing model.

use std::collections::BTreeMap;

use crate::api::networking::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, H2UpgradePolicy,
    LoadBalancerSettings, OutlierDetection as ApiOutlier, ProxyProtocolVersion, SimpleLb,
    TrafficPolicy as ApiPolicy,
};
use crate::api::networking::sidecar::OutboundMode;
use crate::api::networking::{DestinationRule as ApiRule, Sidecar as ApiSidecar};
use crate::model::routing::*;
use crate::model::OutboundPolicy;

use super::convert_routing::{created, duration, key, visibility};

pub fn destination_rule(dr: &ApiRule) -> DestinationRule {
    let key = key(&dr.metadata);
    let spec = &dr.spec;
    DestinationRule {
        host: resolve_host(&spec.host, &key.namespace),
        policy: spec.traffic_policy.as_ref().map(policy).unwrap_or_default(),
        subsets: spec
            .subsets
            .iter()
            .map(|s| Subset {
                name: s.name.clone(),
                labels: s.labels.clone(),
                policy: s.traffic_policy.as_ref().map(policy).unwrap_or_default(),
            })
            .collect(),
        visibility: visibility(&spec.export_to, &key.namespace),
        workload_selector: spec
            .workload_selector
            .as_ref()
            .map(|w| w.match_labels.clone())
            .unwrap_or_default(),
        created: created(&dr.metadata),
        key,
    }
}

fn policy(p: &ApiPolicy) -> TrafficPolicy {
    let port_level: BTreeMap<u16, TrafficPolicy> = p
        .port_level_settings
        .iter()
        .filter_map(|pl| {
            let port = u16::try_from(pl.port.as_ref()?.number).ok()?;
            Some((
                port,
                TrafficPolicy {
                    load_balancer: pl.load_balancer.as_ref().and_then(load_balancer),
                    connection_pool: pl.connection_pool.as_ref().map(connection_pool),
                    outlier_detection: pl.outlier_detection.as_ref().map(outlier),
                    tls: pl.tls.as_ref().map(tls),
                    locality_lb: pl.load_balancer.as_ref().map(locality_lb),
                    warmup: pl.load_balancer.as_ref().and_then(warmup),
                    retry_budget: None,
                    proxy_protocol: None,
                    port_level: BTreeMap::new(),
                },
            ))
        })
        .collect();
    TrafficPolicy {
        load_balancer: p.load_balancer.as_ref().and_then(load_balancer),
        connection_pool: p.connection_pool.as_ref().map(connection_pool),
        outlier_detection: p.outlier_detection.as_ref().map(outlier),
        tls: p.tls.as_ref().map(tls),
        locality_lb: p.load_balancer.as_ref().map(locality_lb),
        warmup: p.load_balancer.as_ref().and_then(warmup),
        retry_budget: p.retry_budget.as_ref().map(|b| RetryBudget {
            percent: b.percent.map(Float::new),
            min_retry_concurrency: b.min_retry_concurrency,
            interval: duration("retryBudget.budgetInterval", &b.budget_interval),
        }),
        proxy_protocol: p.proxy_protocol.as_ref().map(|pp| match pp.version {
            Some(ProxyProtocolVersion::V2) => 2,
            // V1 is the default.
            _ => 1,
        }),
        port_level,
    }
}

/// `warmup`, else the deprecated `warmupDurationSecs` (validated durations).
fn warmup(lb: &LoadBalancerSettings) -> Option<Warmup> {
    if let Some(w) = &lb.warmup {
        return Some(Warmup {
            window: duration("warmup.duration", &Some(w.duration.clone()))?,
            min_percent: w.minimum_percent.map(Float::new),
            aggression: w.aggression.map(Float::new),
        });
    }
    Some(Warmup {
        window: duration("warmupDurationSecs", &lb.warmup_duration_secs)?,
        min_percent: None,
        aggression: None,
    })
}

/// Istio replaces `loadBalancer` as a whole, so one without
/// `localityLbSetting` means the mesh's setting.
fn locality_lb(lb: &LoadBalancerSettings) -> crate::model::LocalityLb {
    match &lb.locality_lb_setting {
        Some(s) => crate::model::LocalityLb::Rule(s.to_model()),
        None => crate::model::LocalityLb::Mesh,
    }
}

fn load_balancer(lb: &LoadBalancerSettings) -> Option<LoadBalancer> {
    if let Some(ch) = &lb.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            HashKey::Header(h.clone())
        } else if let Some(c) = &ch.http_cookie {
            HashKey::Cookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl: duration("ttl", &c.ttl),
            }
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashKey::QueryParameter(q.clone())
        } else {
            HashKey::SourceIp
        };
        return Some(match &ch.maglev {
            Some(m) => LoadBalancer::Maglev {
                key,
                table_size: m.table_size,
            },
            None => LoadBalancer::RingHash {
                key,
                minimum_ring_size: ch
                    .ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size),
            },
        });
    }
    Some(LoadBalancer::Simple(match lb.simple.as_ref()? {
        SimpleLb::RoundRobin => LbSimple::RoundRobin,
        // Istio treats LEAST_CONN as LEAST_REQUEST (its deprecated name).
        SimpleLb::LeastConn | SimpleLb::LeastRequest | SimpleLb::Unspecified => {
            LbSimple::LeastRequest
        }
        SimpleLb::Random => LbSimple::Random,
        SimpleLb::Passthrough => LbSimple::Passthrough,
    }))
}

pub(super) fn connection_pool(p: &ConnectionPoolSettings) -> ConnectionPool {
    let pos = |v: Option<i32>| v.filter(|n| *n > 0).map(|n| n as u32);
    let tcp = p.tcp.as_ref();
    let http = p.http.as_ref();
    ConnectionPool {
        max_connections: pos(tcp.and_then(|t| t.max_connections)),
        connect_timeout: tcp.and_then(|t| duration("connectTimeout", &t.connect_timeout)),
        tcp_keepalive: tcp.and_then(|t| t.tcp_keepalive.as_ref()).map(|k| {
            (
                k.probes,
                duration("time", &k.time),
                duration("interval", &k.interval),
            )
        }),
        max_connection_duration: tcp
            .and_then(|t| duration("maxConnectionDuration", &t.max_connection_duration)),
        tcp_idle_timeout: tcp.and_then(|t| duration("idleTimeout", &t.idle_timeout)),
        http1_max_pending_requests: pos(http.and_then(|h| h.http1_max_pending_requests)),
        http2_max_requests: pos(http.and_then(|h| h.http2_max_requests)),
        max_requests_per_connection: pos(http.and_then(|h| h.max_requests_per_connection)),
        max_retries: pos(http.and_then(|h| h.max_retries)),
        http_idle_timeout: http.and_then(|h| duration("idleTimeout", &h.idle_timeout)),
        h2_upgrade: http.and_then(|h| match h.h2_upgrade_policy {
            Some(H2UpgradePolicy::Upgrade) => Some(true),
            Some(H2UpgradePolicy::DoNotUpgrade) => Some(false),
            _ => None,
        }),
        use_client_protocol: http.and_then(|h| h.use_client_protocol).unwrap_or(false),
        max_concurrent_streams: pos(http.and_then(|h| h.max_concurrent_streams)),
    }
}

fn outlier(o: &ApiOutlier) -> OutlierDetection {
    OutlierDetection {
        // `consecutiveErrors` is the deprecated spelling of gateway errors... Istio
        // maps it to 5xx; prefer the explicit field.
        consecutive_5xx: o
            .consecutive_5xx_errors
            .or(o.consecutive_errors.map(|n| n.max(0) as u32)),
        consecutive_gateway_errors: o.consecutive_gateway_errors,
        consecutive_local_origin_failures: o.consecutive_local_origin_failures,
        split_external_local_origin_errors: o.split_external_local_origin_errors.unwrap_or(false),
        interval: duration("interval", &o.interval),
        base_ejection_time: duration("baseEjectionTime", &o.base_ejection_time),
        max_ejection_percent: o.max_ejection_percent.map(|n| n.clamp(0, 100) as u32),
        min_health_percent: o.min_health_percent.map(|n| n.clamp(0, 100) as u32),
    }
}

fn tls(t: &ClientTlsSettings) -> ClientTls {
    ClientTls {
        mode: match t.mode {
            Some(ClientTlsMode::Simple) => TlsMode::Simple,
            Some(ClientTlsMode::Mutual) => TlsMode::Mutual,
            Some(ClientTlsMode::IstioMutual) => TlsMode::IstioMutual,
            _ => TlsMode::Disable,
        },
        client_certificate: t.client_certificate.clone(),
        private_key: t.private_key.clone(),
        ca_certificates: t.ca_certificates.clone(),
        subject_alt_names: t.subject_alt_names.clone(),
        sni: t.sni.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    }
}

pub fn sidecar(sc: &ApiSidecar) -> SidecarScope {
    let key = key(&sc.metadata);
    let ns = key.namespace.clone();
    let egress = super::convert_sidecar::egress(sc, &ns);
    SidecarScope {
        workload_selector: sc
            .spec
            .workload_selector
            .as_ref()
            .map(|w| w.labels.clone())
            .unwrap_or_default(),
        egress,
        outbound_policy: sc
            .spec
            .outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.mode.as_ref())
            .map(|m| match m {
                OutboundMode::RegistryOnly => OutboundPolicy::RegistryOnly,
                OutboundMode::AllowAny => OutboundPolicy::AllowAny,
            }),
        ingress: super::convert_sidecar::ingress(sc),
        inbound_connection_pool: sc
            .spec
            .inbound_connection_pool
            .as_ref()
            .map(connection_pool),
        created: created(&sc.metadata),
        key,
    }
}
