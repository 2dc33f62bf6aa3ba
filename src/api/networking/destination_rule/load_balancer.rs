//! `LoadBalancerSettings`: simple and consistent-hash load balancing,
//! locality-weighted distribution and failover, and slow-start warmup.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::OutlierDetection;
use crate::api::networking::selector::check_istio_duration;
use crate::api::{parse_duration, FieldError};

/// Load balancing policies to apply for a specific destination. See Envoy's
/// load balancing documentation for more details. Only one of `simple` or
/// `consistentHash` may be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// Standard load balancing algorithms that require no tuning. Valid
    /// Options: LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    /// Consistent hash-based load balancing for soft session affinity based on
    /// HTTP headers, cookies or other properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality load balancer settings; overrides the mesh-wide settings in
    /// entirety, without merging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Deprecated: use `warmup` instead. The warmup duration of the service:
    /// new endpoints receive progressively more traffic during this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<String>,
    /// Represents the warmup configuration of the service: new endpoints
    /// receive progressively more traffic for `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

// Standard load balancing algorithms that require no tuning.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// No algorithm specified by the user; Istio selects an appropriate default.
    Unspecified,
    /// Deprecated. Use LEAST_REQUEST instead.
    LeastConn,
    /// Selects a random healthy host.
    Random,
    /// Forwards the connection to the original IP address requested by the caller.
    Passthrough,
    /// A basic round robin load balancing policy.
    RoundRobin,
    /// Spreads load across endpoints, favoring those with the least outstanding requests.
    LeastRequest,
}

/// Consistent hash-based load balancing; the affinity to a host may be lost
/// when hosts are added or removed. At most one hash key (`httpHeaderName`,
/// `httpCookie`, `useSourceIp`, `httpQueryParameterName`) and at most one hash
/// algorithm (`ringHash`, `maglev`) may be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    /// Hash based on a specific HTTP header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// Hash based on HTTP cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash based on the source IP address. Applicable to TCP and HTTP connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    /// Hash based on a specific HTTP query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    /// The ring/modulo hash load balancer implements consistent hashing to backend hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// The Maglev load balancer implements consistent hashing to backend hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated. Use `ringHash` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// Describes a HTTP cookie that will be used as the hash key for the
/// consistent hash load balancer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpCookie {
    /// Name of the cookie.
    pub name: String,
    /// Path to set for the cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Lifetime of the cookie. If set, a cookie with this TTL is generated when
    /// absent; zero makes it a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Additional attributes for the cookie.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<CookieAttribute>,
}

/// An additional attribute of a generated cookie.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CookieAttribute {
    /// The name of the cookie attribute.
    pub name: String,
    /// The optional value of the cookie attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Ring hash settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    /// The minimum number of virtual nodes to use for the hash ring. Defaults to 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// Maglev settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MagLev {
    /// The table size for Maglev hashing: a prime number below 5000011.
    /// Defaults to 65537.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

/// Locality-weighted load balancing: how traffic is distributed over, or fails
/// over between, localities (`region/zone/sub-zone`). Only one of
/// `distribute`, `failover` or `failoverPriority` should be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalityLoadBalancerSetting {
    /// Explicitly specify loadbalancing weight across different zones and
    /// geographical locations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<Distribute>,
    /// Explicitly specify the region traffic will land on when endpoints in the
    /// local region become unhealthy. Needs outlier detection to take effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<Failover>,
    /// An ordered list of labels (`key` or `key=value`) used to sort endpoints
    /// for priority based load balancing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// Enable locality load balancing for this DestinationRule, overriding the
    /// mesh-wide setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// How traffic from the `from` locality is distributed over `to` localities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Distribute {
    /// Originating locality, '/' separated, e.g. 'region/zone/sub_zone'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Map of upstream localities to traffic distribution weights. The sum of
    /// all weights should be 100.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u32>,
}

/// Where traffic from a region fails over to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// Originating region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Destination region the traffic will fail over to when endpoints in the
    /// 'from' region becomes unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl LocalityLoadBalancerSetting {
    /// The model's view; validation (`check_locality`) has run.
    pub fn to_model(&self) -> crate::model::LocalityLbSetting {
        crate::model::LocalityLbSetting {
            enabled: self.enabled,
            distribute: self
                .distribute
                .iter()
                .map(|d| (d.from.clone().unwrap_or_default(), d.to.clone()))
                .collect(),
            failover: self
                .failover
                .iter()
                .map(|f| {
                    (
                        f.from.clone().unwrap_or_default(),
                        f.to.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            failover_priority: self.failover_priority.clone(),
        }
    }
}

/// Slow-start warmup of newly created endpoints.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WarmupConfiguration {
    /// Duration of the warmup window, e.g. `60s`.
    pub duration: String,
    /// Minimum percentage of traffic a warming endpoint receives, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    /// This parameter controls the speed of traffic increase over the warmup
    /// duration; at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

/// Envoy's largest `RingHashLbConfig.minimum_ring_size`; larger is a NACK.
const MAX_RING_SIZE: u64 = 8_388_608;
/// Maglev table sizes must be primes below this (Envoy's limit).
const MAGLEV_TABLE_LIMIT: u64 = 5_000_011;

/// Istio's `validateLoadBalancer` (and `ValidateLocalityLbSetting`).
pub(crate) fn check_load_balancer(
    field: &str,
    lb: &LoadBalancerSettings,
    outlier: Option<&OutlierDetection>,
) -> Result<(), FieldError> {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        return Err(FieldError::new(
            field,
            "only one of simple or consistentHash may be set",
        ));
    }
    if let Some(hash) = &lb.consistent_hash {
        check_consistent_hash(&format!("{field}.consistentHash"), hash)?;
    }
    if let Some(locality) = &lb.locality_lb_setting {
        check_locality(&format!("{field}.localityLbSetting"), locality, outlier)?;
    }
    if let Some(d) = &lb.warmup_duration_secs {
        check_istio_duration(&format!("{field}.warmupDurationSecs"), d)?;
    }
    if let Some(warmup) = &lb.warmup {
        let at = format!("{field}.warmup");
        if warmup.duration.is_empty() {
            return Err(FieldError::new(
                format!("{at}.duration"),
                "duration is required",
            ));
        }
        check_istio_duration(&format!("{at}.duration"), &warmup.duration)?;
        if let Some(p) = warmup
            .minimum_percent
            .filter(|p| !(0.0..=100.0).contains(p))
        {
            return Err(FieldError::new(
                format!("{at}.minimumPercent"),
                format!("must be between 0 and 100, got {p}"),
            ));
        }
        if let Some(a) = warmup.aggression.filter(|a| a.is_nan() || *a < 1.0) {
            return Err(FieldError::new(
                format!("{at}.aggression"),
                format!("must be greater than or equal to 1, got {a}"),
            ));
        }
    }
    Ok(())
}

fn check_consistent_hash(field: &str, hash: &ConsistentHashLb) -> Result<(), FieldError> {
    let keys = [
        hash.http_header_name.is_some(),
        hash.http_cookie.is_some(),
        hash.use_source_ip.is_some(),
        hash.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|set| **set).count() > 1 {
        return Err(FieldError::new(
            field,
            "only one hash key may be set: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
        ));
    }
    if hash.ring_hash.is_some() && hash.maglev.is_some() {
        return Err(FieldError::new(
            field,
            "only one hash algorithm may be set: ringHash or maglev",
        ));
    }
    for (name, value) in [
        ("httpHeaderName", &hash.http_header_name),
        ("httpQueryParameterName", &hash.http_query_parameter_name),
    ] {
        if value.as_deref() == Some("") {
            return Err(FieldError::new(
                format!("{field}.{name}"),
                "must not be empty",
            ));
        }
    }
    if let Some(cookie) = &hash.http_cookie {
        check_cookie(&format!("{field}.httpCookie"), cookie)?;
    }
    if let Some(size) = hash.minimum_ring_size {
        if hash.ring_hash.is_some() || hash.maglev.is_some() {
            return Err(FieldError::new(
                format!("{field}.minimumRingSize"),
                "only one of the deprecated minimumRingSize or ringHash/maglev can be specified",
            ));
        }
        check_ring_size(&format!("{field}.minimumRingSize"), size)?;
    }
    if let Some(size) = hash.ring_hash.as_ref().and_then(|r| r.minimum_ring_size) {
        check_ring_size(&format!("{field}.ringHash.minimumRingSize"), size)?;
    }
    if let Some(maglev) = &hash.maglev {
        let at = format!("{field}.maglev.tableSize");
        let size = maglev.table_size.unwrap_or(0);
        if size == 0 {
            return Err(FieldError::new(at, "tableSize must be set for maglev"));
        }
        if size >= MAGLEV_TABLE_LIMIT {
            return Err(FieldError::new(
                at,
                format!("tableSize must be less than {MAGLEV_TABLE_LIMIT} for maglev, got {size}"),
            ));
        }
        if !is_prime(size) {
            return Err(FieldError::new(
                at,
                format!("tableSize must be a prime number for maglev, got {size}"),
            ));
        }
    }
    Ok(())
}

fn check_cookie(field: &str, cookie: &HttpCookie) -> Result<(), FieldError> {
    if cookie.name.is_empty() {
        return Err(FieldError::new(
            format!("{field}.name"),
            "name required for httpCookie",
        ));
    }
    if let Some(ttl) = &cookie.ttl {
        // Any duration, including 0s (a session cookie).
        parse_duration(&format!("{field}.ttl"), ttl)?;
    }
    for (i, attr) in cookie.attributes.iter().enumerate() {
        if attr.name.is_empty() {
            return Err(FieldError::new(
                format!("{field}.attributes[{i}].name"),
                "cookie attribute name must not be empty",
            ));
        }
    }
    Ok(())
}

fn check_ring_size(field: &str, size: u64) -> Result<(), FieldError> {
    if size > MAX_RING_SIZE {
        return Err(FieldError::new(field, format!("ring size must be at most {MAX_RING_SIZE}, got {size} (Envoy rejects larger rings)")));
    }
    Ok(())
}

// Envoy's own primality check (source/common/common/utility.cc), as Istio copies it.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut factor = 3;
    while factor * factor <= x {
        if x.is_multiple_of(factor) {
            return false;
        }
        factor += 2;
    }
    true
}

use crate::model::failover_priority::{REGION_LABEL, SUBZONE_LABEL, ZONE_LABEL};

const TOPOLOGY_LABELS: [&str; 3] = [REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL];

/// Istio's `ValidateLocalityLbSetting`; also checks the mesh's setting.
pub(crate) fn check_locality(
    field: &str,
    lb: &LocalityLoadBalancerSetting,
    _outlier: Option<&OutlierDetection>,
) -> Result<(), FieldError> {
    // Istio only warns when failover has no outlier detection, so `_outlier` is unused.
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        return Err(FieldError::new(
            field,
            "can not simultaneously specify 'distribute' and 'failover'",
        ));
    }
    if !lb.failover.is_empty() {
        if let Some(i) = lb
            .failover_priority
            .iter()
            .position(|l| TOPOLOGY_LABELS.contains(&l.split('=').next().unwrap_or_default()))
        {
            let label = &lb.failover_priority[i];
            return Err(FieldError::new(
                format!("{field}.failoverPriority[{i}]"),
                format!("can not simultaneously set 'failover' and topology label {label:?} in 'failoverPriority'"),
            ));
        }
    }
    for (i, entry) in lb.failover_priority.iter().enumerate() {
        // `key` or `key=value`: a label key, and a label value to compare with.
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        let one = BTreeMap::from([(key.to_string(), value.to_string())]);
        crate::api::networking::selector::check_labels("", &one)
            .map_err(|e| FieldError::new(format!("{field}.failoverPriority[{i}]"), e.reason))?;
    }
    for (i, d) in lb.distribute.iter().enumerate() {
        let at = format!("{field}.distribute[{i}].to");
        let mut total = 0u64;
        for (locality, weight) in &d.to {
            if !(1..=100).contains(weight) {
                return Err(FieldError::new(
                    format!("{at}[{locality:?}]"),
                    format!("locality weight must be in range [1, 100], got {weight}"),
                ));
            }
            total += u64::from(*weight);
        }
        if total != 100 {
            return Err(FieldError::new(
                at,
                format!("total locality weight {total} != 100"),
            ));
        }
        check_localities(&at, d.to.keys().map(String::as_str))?;
    }
    check_localities(
        &format!("{field}.distribute"),
        lb.distribute
            .iter()
            .map(|d| d.from.as_deref().unwrap_or("")),
    )?;
    for (i, f) in lb.failover.iter().enumerate() {
        let at = format!("{field}.failover[{i}]");
        let (from, to) = (
            f.from.as_deref().unwrap_or(""),
            f.to.as_deref().unwrap_or(""),
        );
        if from == to {
            return Err(FieldError::new(at, format!("locality lb failover settings must specify different regions, got {from:?} twice")));
        }
        if from.contains('/') || to.contains('/') {
            return Err(FieldError::new(
                at,
                "locality lb failover must only specify regions (no '/')",
            ));
        }
        if from.contains('*') || to.contains('*') {
            return Err(FieldError::new(
                at,
                "locality lb failover regions must not contain the '*' wildcard",
            ));
        }
    }
    Ok(())
}

type Zones<'a> = BTreeMap<&'a str, BTreeSet<&'a str>>;

/// Istio's `validateLocalities`: well-formed `region[/zone[/subzone]]` with at
/// most one trailing `*`, and no locality covering another.
fn check_localities<'a>(
    field: &str,
    localities: impl IntoIterator<Item = &'a str>,
) -> Result<(), FieldError> {
    let mut regions: BTreeMap<&str, Zones> = BTreeMap::new();
    for locality in localities {
        let overlap = || {
            Err(FieldError::new(
                field,
                format!("locality {locality:?} overlaps with a previous one"),
            ))
        };
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Err(FieldError::new(
                field,
                format!("locality {locality:?}: at most one '*' wildcard, and only at the end"),
            ));
        }
        if regions.contains_key("*") {
            return overlap();
        }
        let items: Vec<&str> = locality.splitn(3, '/').collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(FieldError::new(
                field,
                format!("locality {locality:?} must not contain empty region/zone/subzone info"),
            ));
        }
        let all = || BTreeSet::from(["*"]);
        match items[..] {
            [region] => {
                if regions.contains_key(region) {
                    return overlap();
                }
                regions.insert(region, BTreeMap::from([("*", all())]));
            }
            [region, zone] => {
                let zones = regions.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return overlap();
                }
                zones.insert(zone, all());
            }
            [region, zone, subzone, ..] => {
                let zones = regions.entry(region).or_default();
                if zones.contains_key("*") {
                    return overlap();
                }
                let subzones = zones.entry(zone).or_default();
                if subzones.contains("*") || !subzones.insert(subzone) {
                    return overlap();
                }
            }
            // splitn always yields at least one item.
            [] => {}
        }
    }
    Ok(())
}
