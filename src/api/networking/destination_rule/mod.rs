//! Istio's `DestinationRule`: policies applied to traffic for a service after
//! routing (load balancing, connection pools, outlier detection, client TLS),
//! field for field as `istio.networking.v1alpha3.DestinationRule`.

mod connection_pool;
mod load_balancer;
mod tls;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use connection_pool::check_connection_pool;
pub use connection_pool::{
    ConnectionPoolSettings, H2UpgradePolicy, HttpSettings, TcpKeepalive, TcpSettings,
};
pub(crate) use load_balancer::check_locality;
pub use load_balancer::{
    ConsistentHashLb, CookieAttribute, Distribute, Failover, HttpCookie, LoadBalancerSettings,
    LocalityLoadBalancerSetting, MagLev, RingHash, SimpleLb, WarmupConfiguration,
};
pub use tls::{ClientTlsMode, ClientTlsSettings};

use super::common::PortSelector;
use super::selector::{
    check_export_to, check_fqdn, check_ip, check_istio_duration, check_labels, check_match_labels,
    check_port_number, check_wildcard_domain, is_dns1123_label, IstioStatus, MatchLabelsSelector,
};
use crate::api::{check_percent, parse_duration, FieldError};

/// Configuration affecting load balancing, outlier detection, etc. See more
/// details at: https://istio.io/docs/reference/config/networking/destination-rule.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "DestinationRule",
    plural = "destinationrules",
    namespaced,
    shortname = "dr",
    category = "istio-io",
    category = "networking-istio-io",
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Configuration affecting load balancing, outlier detection, etc. See more details at: https://istio.io/docs/reference/config/networking/destination-rule.html",
    printcolumn(
        name = "Host",
        type_ = "string",
        json_path = ".spec.host",
        description = "The name of a service from the service registry"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The name of a service from the service registry (a Kubernetes service
    /// or a ServiceEntry host). Short names are interpreted in the rule's
    /// namespace; fully qualified names are recommended.
    pub host: String,
    /// Traffic policies to apply (load balancing policy, connection pool sizes,
    /// outlier detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// One or more named sets that represent individual versions of a service.
    /// Traffic policies can be overridden at subset level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// A list of namespaces to which this destination rule is exported: `.`
    /// for the rule's own namespace, `*` (the default) for all namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Criteria used to select the specific set of pods/VMs on which this
    /// `DestinationRule` configuration should be applied, in its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<MatchLabelsSelector>,
}

/// Traffic policies to apply for a specific destination, across all
/// destination ports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Settings controlling the load balancer algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Settings controlling the volume of connections to an upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Settings controlling eviction of unhealthy hosts from the load balancing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS related settings for connections to the upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Traffic policies specific to individual ports; they override (not
    /// merge with) the destination-level settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Configuration of tunneling TCP over other transport or application
    /// layers for the host configured in the DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// The upstream PROXY protocol settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Specifies a limit on concurrent retries in relation to the number of
    /// active requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// Traffic policies that apply to specific ports of the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    /// Specifies the number of a port on the destination service on which this
    /// policy is being applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    /// Settings controlling the load balancer algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Settings controlling the volume of connections to an upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Settings controlling eviction of unhealthy hosts from the load balancing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS related settings for connections to the upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// Tunneling of TCP over HTTP CONNECT or POST.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSettings {
    /// Specifies which protocol to use for tunneling the downstream connection:
    /// `CONNECT` (the default) or `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Specifies a host to which the downstream connection is tunneled: an
    /// FQDN or IP address.
    pub target_host: String,
    /// Specifies a port to which the downstream connection is tunneled.
    pub target_port: u32,
}

/// The upstream PROXY protocol settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyProtocol {
    /// The PROXY protocol version to use. Valid Options: V1, V2. Default V1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ProxyProtocolVersion>,
}

// PROXY protocol version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProxyProtocolVersion {
    /// PROXY protocol version 1. Human readable format.
    V1,
    /// PROXY protocol version 2. Binary format.
    V2,
}

/// A limit on concurrent retries relative to the number of active requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Specifies the limit on concurrent retries as a percentage of the sum of
    /// active requests and active pending requests, 0 to 100. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Specifies the minimum retry concurrency allowed for the retry budget. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
    /// Specifies the duration in which requests will be considered when
    /// calculating the budget for retries; by default only active requests count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<String>,
}

/// A Circuit breaker implementation that tracks the status of each individual
/// host in the upstream service and ejects hosts that keep failing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Deprecated: use consecutiveGatewayErrors or consecutive5xxErrors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<i32>,
    /// Determines whether to distinguish local origin failures from external
    /// errors. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// The number of consecutive locally originated failures before ejection
    /// occurs. Defaults to 5; needs splitExternalLocalOriginErrors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Number of gateway errors (502, 503, 504, or connect failures) before a
    /// host is ejected from the connection pool. Disabled by default or when 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Number of 5xx errors before a host is ejected from the connection pool.
    /// Defaults to 5; 0 disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Time interval between ejection sweep analysis, e.g. `1h`, `1m`, `1s`,
    /// `1ms`. At least 1ms. Default is 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Minimum ejection duration, multiplied by the number of times the host has
    /// been ejected. At least 1ms. Default is 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Maximum % of hosts in the load balancing pool for the upstream service
    /// that can be ejected. Defaults to 10%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
    /// Outlier detection is enabled as long as the pool has at least
    /// `minHealthPercent` hosts in healthy mode. Default 0%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<i32>,
}

/// A subset of endpoints of a service, e.g. one version. Traffic policies
/// defined at the service level can be overridden at subset level.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// Name of the subset. The service name and the subset name can be used for
    /// traffic splitting in a route rule.
    pub name: String,
    /// Labels apply a filter over the endpoints of a service in the service registry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Traffic policies that apply to this subset, overriding the ones set at
    /// the DestinationRule level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// The one validator for `DestinationRule` (Istio's `ValidateDestinationRule`).
pub fn validate(spec: &DestinationRuleSpec) -> Result<(), FieldError> {
    if spec.host.is_empty() {
        return Err(FieldError::new(
            "spec.host",
            "required: the name of a service from the service registry",
        ));
    }
    check_wildcard_domain("spec.host", &spec.host)?;
    if let Some(policy) = &spec.traffic_policy {
        check_traffic_policy("spec.trafficPolicy", policy)?;
    }
    let mut names = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let at = format!("spec.subsets[{i}]");
        check_subset_name(&format!("{at}.name"), &subset.name)?;
        if !names.insert(subset.name.as_str()) {
            return Err(FieldError::new(
                format!("{at}.name"),
                format!("duplicate subset name {:?}", subset.name),
            ));
        }
        check_labels(&format!("{at}.labels"), &subset.labels)?;
        if let Some(policy) = &subset.traffic_policy {
            check_traffic_policy(&format!("{at}.trafficPolicy"), policy)?;
        }
    }
    check_export_to("spec.exportTo", &spec.export_to, false)?;
    if let Some(selector) = &spec.workload_selector {
        // Istio confines a rule with a workload selector to its own namespace.
        // Without the namespace at hand only "." is known to be it, so only the
        // entries that can never mean "this namespace" are rejected.
        if spec.export_to.len() > 1 || spec.export_to.iter().any(|e| e == "*") {
            return Err(FieldError::new(
                "spec.exportTo",
                "a destination rule with a workload selector cannot be exported beyond its own namespace",
            ));
        }
        check_match_labels("spec.workloadSelector", selector)?;
    }
    Ok(())
}

/// A subset name (Istio's `validateSubsetName`), also used by route destinations.
pub(crate) fn check_subset_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(field, "subset name is required"));
    }
    if !is_dns1123_label(name) {
        return Err(FieldError::new(
            field,
            format!("subset name {name:?} is invalid: must be a DNS label"),
        ));
    }
    Ok(())
}

/// Istio's `validateTrafficPolicy`.
fn check_traffic_policy(field: &str, p: &TrafficPolicy) -> Result<(), FieldError> {
    if p.outlier_detection.is_none()
        && p.connection_pool.is_none()
        && p.load_balancer.is_none()
        && p.tls.is_none()
        && p.port_level_settings.is_empty()
        && p.tunnel.is_none()
        && p.proxy_protocol.is_none()
        && p.retry_budget.is_none()
    {
        return Err(FieldError::new(
            field,
            "traffic policy must have at least one field",
        ));
    }
    if p.tunnel.is_some() && p.proxy_protocol.is_some() {
        return Err(FieldError::new(
            field,
            "tunnel and proxyProtocol must not be set together",
        ));
    }
    check_policy_parts(
        field,
        &p.load_balancer,
        &p.connection_pool,
        &p.outlier_detection,
        &p.tls,
    )?;
    let mut ports = BTreeSet::new();
    for (i, port_policy) in p.port_level_settings.iter().enumerate() {
        let at = format!("{field}.portLevelSettings[{i}]");
        let Some(number) = port_policy.port.map(|p| p.number).filter(|n| *n != 0) else {
            return Err(FieldError::new(
                format!("{at}.port"),
                "portLevelSettings entries must select a port number",
            ));
        };
        // Istio keeps the first entry for a port and silently ignores the rest;
        // a duplicate is a mistake worth reporting.
        check_port_number(&format!("{at}.port.number"), number)?;
        if !ports.insert(number) {
            return Err(FieldError::new(
                format!("{at}.port.number"),
                format!("duplicate port {number} in portLevelSettings"),
            ));
        }
        let pp = port_policy;
        if pp.outlier_detection.is_none()
            && pp.connection_pool.is_none()
            && pp.load_balancer.is_none()
            && pp.tls.is_none()
        {
            return Err(FieldError::new(
                at,
                "port traffic policy must have at least one field",
            ));
        }
        check_policy_parts(
            &at,
            &pp.load_balancer,
            &pp.connection_pool,
            &pp.outlier_detection,
            &pp.tls,
        )?;
    }
    if let Some(tunnel) = &p.tunnel {
        check_tunnel(&format!("{field}.tunnel"), tunnel)?;
    }
    if let Some(budget) = &p.retry_budget {
        let at = format!("{field}.retryBudget");
        if let Some(percent) = budget.percent {
            check_percent(&format!("{at}.percent"), percent)?;
        }
        if let Some(interval) = &budget.budget_interval {
            parse_duration(&format!("{at}.budgetInterval"), interval)?;
        }
    }
    Ok(())
}

// The parts a port-level policy shares with the destination-level one.
fn check_policy_parts(
    field: &str,
    lb: &Option<LoadBalancerSettings>,
    pool: &Option<ConnectionPoolSettings>,
    outlier: &Option<OutlierDetection>,
    tls: &Option<ClientTlsSettings>,
) -> Result<(), FieldError> {
    if let Some(o) = outlier {
        check_outlier_detection(&format!("{field}.outlierDetection"), o)?;
    }
    if let Some(pool) = pool {
        check_connection_pool(&format!("{field}.connectionPool"), pool)?;
    }
    if let Some(lb) = lb {
        load_balancer::check_load_balancer(&format!("{field}.loadBalancer"), lb, outlier.as_ref())?;
    }
    if let Some(tls) = tls {
        tls::check_client_tls(&format!("{field}.tls"), tls)?;
    }
    Ok(())
}

/// Istio's `validateOutlierDetection`.
fn check_outlier_detection(field: &str, o: &OutlierDetection) -> Result<(), FieldError> {
    if let Some(t) = &o.base_ejection_time {
        check_istio_duration(&format!("{field}.baseEjectionTime"), t)?;
    }
    if o.split_external_local_origin_errors != Some(true)
        && o.consecutive_local_origin_failures.unwrap_or(0) > 0
    {
        return Err(FieldError::new(
            format!("{field}.consecutiveLocalOriginFailures"),
            "only takes effect with splitExternalLocalOriginErrors: true",
        ));
    }
    if let Some(t) = &o.interval {
        check_istio_duration(&format!("{field}.interval"), t)?;
    }
    for (name, value) in [
        ("maxEjectionPercent", o.max_ejection_percent),
        ("minHealthPercent", o.min_health_percent),
    ] {
        if let Some(v) = value {
            check_percent(&format!("{field}.{name}"), f64::from(v))?;
        }
    }
    Ok(())
}

/// Istio's `validateTunnelSettings`.
fn check_tunnel(field: &str, t: &TunnelSettings) -> Result<(), FieldError> {
    if let Some(p) = t
        .protocol
        .as_deref()
        .filter(|p| !p.is_empty() && *p != "CONNECT" && *p != "POST")
    {
        return Err(FieldError::new(
            format!("{field}.protocol"),
            format!("tunnel protocol must be \"CONNECT\" or \"POST\", got {p:?}"),
        ));
    }
    let host = &t.target_host;
    if check_fqdn("", host).is_err() && check_ip("", host).is_err() {
        return Err(FieldError::new(
            format!("{field}.targetHost"),
            format!("{host:?}: tunnel target host must be a valid FQDN or IP address"),
        ));
    }
    check_port_number(&format!("{field}.targetPort"), t.target_port)?;
    Ok(())
}
