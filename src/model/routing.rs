//! Traffic management, resolved: VirtualServices and DestinationRules with
//! Istio's semantics already applied (short hosts made fully qualified in the
//! resource's namespace, durations parsed, precedence settled). Translation
//! maps these to Envoy without knowing Istio's YAML.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

// The Sidecar resource lives in model/sidecar.rs; these names stay
// importable from here, where egress scoping first lived.
pub use super::sidecar::{EgressHost, EgressListener, NamespacePattern, SidecarScope};

/// `namespace/name` of an Istio resource, for messages and precedence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ConfigKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// One `match` entry of an HTTP route: all conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HttpMatch {
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    /// Header name (lowercase) -> match; an empty `Exact("")`... see `present`.
    pub headers: BTreeMap<String, HeaderCondition>,
    pub without_headers: BTreeMap<String, HeaderCondition>,
    pub query_params: BTreeMap<String, StringMatch>,
    pub port: Option<u16>,
    pub ignore_uri_case: bool,
    /// Applies only to proxies whose workload has these labels.
    pub source_labels: BTreeMap<String, String>,
    /// Applies only to proxies in this namespace.
    pub source_namespace: Option<String>,
}

/// A header condition: a value match, or mere presence (Istio: `{}` or
/// `regex: "*"`-like forms are spelled as an empty match).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HeaderCondition {
    Present,
    Value(StringMatch),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Destination {
    /// Fully qualified host of a Service or ServiceEntry.
    pub host: String,
    pub subset: Option<String>,
    /// Required when the host has several ports.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct WeightedDestination {
    pub destination: Destination,
    /// Percent of traffic; a single destination gets 100.
    pub weight: u32,
    pub headers: HeaderOps,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HeaderOps {
    pub request: HeaderEdits,
    pub response: HeaderEdits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HeaderEdits {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    /// Keep the request's port (Istio `derivePort: FROM_REQUEST_PORT`).
    pub derive_port: bool,
    pub scheme: Option<String>,
    pub code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HttpAction {
    Route(Vec<WeightedDestination>),
    /// Istio delegation: the routes of another (host-less) VirtualService,
    /// each match narrowed by this route's match.
    Delegate(ConfigKey),
    Redirect(Redirect),
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Rewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    /// (RE2 pattern, substitution)
    pub uri_regex: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Retry {
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub retry_on: Option<String>,
    pub retry_remote_localities: bool,
}

/// Percentages are kept as millionths so the model stays `Eq` and `Hash`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Fault {
    pub delay: Option<(Duration, u32)>,
    /// (what the caller gets, percent in millionths)
    pub abort: Option<(Abort, u32)>,
}

/// What an injected abort answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Abort {
    /// An HTTP status code.
    Http(u16),
    /// A gRPC status code (`UNAVAILABLE` is 14), for gRPC callers.
    Grpc(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Mirror {
    pub destination: Destination,
    /// Percent in millionths; 100% when unset.
    pub percent: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Cors {
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HttpRoute {
    pub name: String,
    /// Any entry may match; empty matches everything.
    pub matches: Vec<HttpMatch>,
    pub action: HttpAction,
    pub rewrite: Option<Rewrite>,
    pub timeout: Option<Duration>,
    pub retries: Option<Retry>,
    pub fault: Option<Fault>,
    pub mirrors: Vec<Mirror>,
    pub cors: Option<Cors>,
    pub headers: HeaderOps,
}

/// L4 match for TCP and TLS routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct L4Match {
    /// CIDRs of the destination address.
    pub destination_subnets: Vec<String>,
    pub port: Option<u16>,
    /// TLS routes only: SNI host names (may start with `*.`).
    pub sni_hosts: Vec<String>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct L4Route {
    pub matches: Vec<L4Match>,
    pub destinations: Vec<WeightedDestination>,
}

/// Where a VirtualService is visible (Istio `exportTo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Visibility {
    Everywhere,
    /// Only these namespaces (`.` already replaced by the resource's own).
    Namespaces(Vec<String>),
}

impl Visibility {
    pub fn visible_from(&self, namespace: &str) -> bool {
        match self {
            Visibility::Everywhere => true,
            Visibility::Namespaces(list) => list.iter().any(|n| n == namespace),
        }
    }
}

/// One VirtualService, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct VirtualService {
    pub key: ConfigKey,
    /// Fully qualified hosts (or `*.suffix` wildcards) this applies to.
    pub hosts: Vec<String>,
    /// True when `gateways` is empty or includes `mesh`: applies to sidecars.
    pub for_sidecars: bool,
    pub visibility: Visibility,
    pub http: Vec<HttpRoute>,
    pub tcp: Vec<L4Route>,
    pub tls: Vec<L4Route>,
    /// Istio's precedence between VirtualServices for one host: oldest first,
    /// then namespace/name. Seconds since the epoch; 0 when unknown.
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum LbSimple {
    RoundRobin,
    LeastRequest,
    Random,
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HashKey {
    Header(String),
    Cookie {
        name: String,
        path: Option<String>,
        ttl: Option<Duration>,
    },
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum LoadBalancer {
    Simple(LbSimple),
    RingHash {
        key: HashKey,
        minimum_ring_size: Option<u64>,
    },
    Maglev {
        key: HashKey,
        table_size: Option<u64>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ConnectionPool {
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<Duration>,
    pub tcp_keepalive: Option<(Option<u32>, Option<Duration>, Option<Duration>)>,
    pub max_connection_duration: Option<Duration>,
    pub tcp_idle_timeout: Option<Duration>,
    pub http1_max_pending_requests: Option<u32>,
    pub http2_max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    pub http_idle_timeout: Option<Duration>,
    /// Some(true) = UPGRADE, Some(false) = DO_NOT_UPGRADE.
    pub h2_upgrade: Option<bool>,
    pub use_client_protocol: bool,
    pub max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub consecutive_local_origin_failures: Option<u32>,
    pub split_external_local_origin_errors: bool,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    pub min_health_percent: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TlsMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ClientTls {
    pub mode: TlsMode,
    pub client_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub sni: Option<String>,
    pub insecure_skip_verify: bool,
}

/// A traffic policy: whole-service settings plus per-port overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancer>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTls>,
    /// None when this layer sets no `loadBalancer` (the lower layer's holds).
    pub locality_lb: Option<super::LocalityLb>,
    /// `loadBalancer.warmup` (or `warmupDurationSecs`) of the layer that
    /// sets `loadBalancer`: it goes with it, replaced as a whole.
    pub warmup: Option<Warmup>,
    /// `retryBudget` (rule and subset level only).
    pub retry_budget: Option<RetryBudget>,
    /// `proxyProtocol` version, 1 or 2 (rule and subset level only).
    pub proxy_protocol: Option<u8>,
    pub port_level: BTreeMap<u16, TrafficPolicy>,
}

/// A float kept by its bits, so policies stay `Eq` and `Hash` (they key
/// the proxy-shape cache); validation has ruled out NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Float(u64);

impl Float {
    pub fn new(v: f64) -> Float {
        Float(v.to_bits())
    }

    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// Slow start: new endpoints' share ramps up over `window`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Warmup {
    pub window: Duration,
    /// Percent of its full weight a new endpoint starts at.
    pub min_percent: Option<Float>,
    /// How fast the share ramps up; 1 is linear.
    pub aggression: Option<Float>,
}

/// Concurrent retries limited to a share of active requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RetryBudget {
    pub percent: Option<Float>,
    pub min_retry_concurrency: Option<u32>,
    /// Requests started this long ago still count toward the budget.
    pub interval: Option<Duration>,
}

impl TrafficPolicy {
    /// Istio merges port-level settings over the top-level ones field by field
    /// group (a port's `connectionPool` replaces the top-level one, and so on).
    pub fn for_port(&self, port: u16) -> TrafficPolicy {
        let Some(p) = self.port_level.get(&port) else {
            return TrafficPolicy {
                port_level: BTreeMap::new(),
                ..self.clone()
            };
        };
        TrafficPolicy {
            load_balancer: p
                .load_balancer
                .clone()
                .or_else(|| self.load_balancer.clone()),
            connection_pool: p
                .connection_pool
                .clone()
                .or_else(|| self.connection_pool.clone()),
            outlier_detection: p
                .outlier_detection
                .clone()
                .or_else(|| self.outlier_detection.clone()),
            tls: p.tls.clone().or_else(|| self.tls.clone()),
            locality_lb: p.locality_lb.clone().or_else(|| self.locality_lb.clone()),
            // A port's `loadBalancer` replaces the rule's, warmup included.
            warmup: if p.locality_lb.is_some() {
                p.warmup.clone()
            } else {
                self.warmup.clone()
            },
            retry_budget: self.retry_budget.clone(),
            proxy_protocol: self.proxy_protocol,
            port_level: BTreeMap::new(),
        }
    }

    /// A subset's policy overrides the rule's, group by group.
    pub fn overlay(&self, over: &TrafficPolicy) -> TrafficPolicy {
        let mut port_level = self.port_level.clone();
        port_level.extend(over.port_level.clone());
        TrafficPolicy {
            load_balancer: over
                .load_balancer
                .clone()
                .or_else(|| self.load_balancer.clone()),
            connection_pool: over
                .connection_pool
                .clone()
                .or_else(|| self.connection_pool.clone()),
            outlier_detection: over
                .outlier_detection
                .clone()
                .or_else(|| self.outlier_detection.clone()),
            tls: over.tls.clone().or_else(|| self.tls.clone()),
            locality_lb: over
                .locality_lb
                .clone()
                .or_else(|| self.locality_lb.clone()),
            warmup: if over.locality_lb.is_some() {
                over.warmup.clone()
            } else {
                self.warmup.clone()
            },
            retry_budget: over
                .retry_budget
                .clone()
                .or_else(|| self.retry_budget.clone()),
            proxy_protocol: over.proxy_protocol.or(self.proxy_protocol),
            port_level,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub policy: TrafficPolicy,
}

/// One DestinationRule, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DestinationRule {
    pub key: ConfigKey,
    /// Fully qualified host, or a `*.suffix` wildcard.
    pub host: String,
    pub policy: TrafficPolicy,
    pub subsets: Vec<Subset>,
    pub visibility: Visibility,
    /// Applies only to proxies whose workload has these labels (empty: all).
    pub workload_selector: BTreeMap<String, String>,
    pub created: i64,
}

impl HttpMatch {
    /// A delegate's match inside its root's: the delegate's conditions, with
    /// the root's filling what the delegate leaves open (Istio requires the
    /// delegate's to be at least as specific).
    pub fn within(&self, root: &HttpMatch) -> HttpMatch {
        let mut m = self.clone();
        m.uri = m.uri.or_else(|| root.uri.clone());
        m.scheme = m.scheme.or_else(|| root.scheme.clone());
        m.method = m.method.or_else(|| root.method.clone());
        m.authority = m.authority.or_else(|| root.authority.clone());
        m.port = m.port.or(root.port);
        m.source_namespace = m.source_namespace.or_else(|| root.source_namespace.clone());
        m.ignore_uri_case |= root.ignore_uri_case;
        for (k, v) in &root.headers {
            m.headers.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &root.without_headers {
            m.without_headers
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        for (k, v) in &root.query_params {
            m.query_params.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &root.source_labels {
            m.source_labels
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        m
    }
}

/// Istio's short-name rule: a host without dots is a Service in the
/// resource's namespace; anything else is taken as written.
pub fn resolve_host(host: &str, namespace: &str) -> String {
    if host.contains('.') || host.contains('*') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{}", super::CLUSTER_DOMAIN)
    }
}

/// Does a VirtualService/DestinationRule host (maybe `*.suffix`) cover `fqdn`?
pub fn host_matches(pattern: &str, fqdn: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => fqdn.ends_with(suffix),
        None => pattern == fqdn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_level_settings_override_group_by_group() {
        let top = TrafficPolicy {
            load_balancer: Some(LoadBalancer::Simple(LbSimple::Random)),
            outlier_detection: Some(OutlierDetection {
                consecutive_5xx: Some(3),
                ..Default::default()
            }),
            port_level: BTreeMap::from([(
                80,
                TrafficPolicy {
                    load_balancer: Some(LoadBalancer::Simple(LbSimple::RoundRobin)),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let p80 = top.for_port(80);
        assert_eq!(
            p80.load_balancer,
            Some(LoadBalancer::Simple(LbSimple::RoundRobin))
        );
        assert_eq!(p80.outlier_detection, top.outlier_detection);
        assert_eq!(
            top.for_port(81).load_balancer,
            Some(LoadBalancer::Simple(LbSimple::Random))
        );
    }

    #[test]
    fn wildcard_hosts() {
        assert!(host_matches("*.svc.cluster.local", "a.b.svc.cluster.local"));
        assert!(host_matches("*", "anything"));
        assert!(!host_matches("*.example.com", "example.org"));
        assert!(host_matches(
            "a.b.svc.cluster.local",
            "a.b.svc.cluster.local"
        ));
    }
}
