use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::CLUSTER_DOMAIN;

/// A Service's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The fully qualified host, `name.ns.svc.cluster.local`, used in cluster names.
    pub fn hostname(&self) -> String {
        format!("{}.{}.svc.{CLUSTER_DOMAIN}", self.name, self.namespace)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The application protocol of a port, as Istio derives it from `appProtocol`
/// or the port name prefix (`http-web`, `grpc`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Mysql,
    Redis,
    Udp,
    /// Not declared: Istio sniffs these; without capture we treat them as TCP.
    Unknown,
}

impl Protocol {
    /// Istio's rule: `appProtocol` wins; otherwise the port name up to the first `-`.
    pub fn detect(app_protocol: Option<&str>, port_name: &str, l4: &str) -> Protocol {
        if l4.eq_ignore_ascii_case("UDP") {
            return Protocol::Udp;
        }
        if let Some(p) = app_protocol
            .map(Self::parse)
            .filter(|p| *p != Protocol::Unknown)
        {
            return p;
        }
        let prefix = port_name.split('-').next().unwrap_or_default();
        Self::parse(prefix)
    }

    fn parse(s: &str) -> Protocol {
        // Kubernetes' standard appProtocol values are prefixed with `kubernetes.io/`.
        let s = s.strip_prefix("kubernetes.io/").unwrap_or(s);
        match s.to_ascii_lowercase().as_str() {
            "http" | "http1" => Protocol::Http,
            "http2" | "h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" => Protocol::Tcp,
            "mongo" => Protocol::Mongo,
            "mysql" => Protocol::Mysql,
            "redis" => Protocol::Redis,
            "udp" => Protocol::Udp,
            _ => Protocol::Unknown,
        }
    }

    /// Traffic Envoy routes with an HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// Upstream connections must speak HTTP/2 (gRPC needs it end to end).
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

/// Where a Service port sends traffic on the pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TargetPort {
    Number(u16),
    /// A container port name, resolved per endpoint by EndpointSlice ports.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub target_port: TargetPort,
    pub protocol: Protocol,
}

/// How a service's endpoints are found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Resolution {
    /// Known addresses (EndpointSlices, ServiceEntry endpoints or selected
    /// workloads), served over EDS.
    Endpoints,
    /// Envoy resolves DNS names itself: every address (strict) or the first
    /// answer per connection (`round_robin`, Istio's DNS_ROUND_ROBIN).
    Dns {
        targets: Vec<DnsTarget>,
        round_robin: bool,
    },
    /// No resolution: connections go to the address the client dialled.
    Passthrough,
}

/// A DNS name Envoy resolves, with per-port-name port overrides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DnsTarget {
    pub host: String,
    pub ports: BTreeMap<String, u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Service {
    pub key: ServiceKey,
    /// The fully qualified host clients use: `name.ns.svc.cluster.local` for
    /// a Kubernetes Service, a ServiceEntry host otherwise.
    pub host: String,
    /// The cluster IP (or ServiceEntry address); `None` for headless services.
    pub vip: Option<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// Pods this Service selects; empty means endpoints are managed by hand.
    pub selector: BTreeMap<String, String>,
    pub resolution: Resolution,
    /// Defined by a ServiceEntry rather than a Kubernetes Service.
    pub from_service_entry: bool,
    /// A ServiceEntry with `location: MESH_EXTERNAL` (its default): never
    /// auto mTLS, whatever its endpoints' labels say, as in Istio.
    pub mesh_external: bool,
}

impl Service {
    pub fn hostname(&self) -> String {
        self.host.clone()
    }

    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// Kubernetes selector semantics: every selector label present and equal.
    /// An empty selector selects nothing (endpoints are then managed by hand).
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        namespace == self.key.namespace
            && !self.selector.is_empty()
            && self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// One network endpoint of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Endpoint {
    pub address: IpAddr,
    /// Port numbers by port name ("" for a single unnamed port).
    pub ports: BTreeMap<String, u16>,
    pub ready: bool,
    pub pod: Option<String>,
    /// The EndpointSlice endpoint's `zone`.
    pub zone: Option<String>,
    /// Set where the source names it: a ServiceEntry endpoint's or
    /// WorkloadEntry's `locality`, or a selected Pod's `istio-locality`.
    /// EndpointSlice endpoints get theirs from their Pod at translation.
    pub locality: Option<super::Locality>,
    /// The labels of an endpoint with no Pod behind it: a ServiceEntry
    /// endpoint's or WorkloadEntry's (or a Pod a ServiceEntry selects).
    /// DestinationRule subsets and auto mTLS read them as they read a Pod's.
    pub labels: Option<Arc<BTreeMap<String, String>>>,
}

/// All endpoints of one Service, merged from its EndpointSlices (or legacy Endpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServiceEndpoints {
    pub endpoints: Vec<Endpoint>,
}

impl ServiceEndpoints {
    /// The pod port a Service port reaches on one endpoint, by Kubernetes' rules:
    /// EndpointSlice ports carry the Service port's name.
    pub fn port_for(endpoint: &Endpoint, port: &ServicePort) -> Option<u16> {
        if let Some(p) = endpoint.ports.get(&port.name) {
            return Some(*p);
        }
        match &port.target_port {
            TargetPort::Number(n) if endpoint.ports.is_empty() => Some(*n),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct WorkloadKey {
    pub namespace: String,
    pub name: String,
}

/// A pod: where a sidecar runs and what its labels and identity are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Workload {
    pub key: WorkloadKey,
    pub ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// `spec.nodeName`: where the Pod was scheduled.
    pub node: Option<String>,
    /// Its `istio-locality` label, else its Node's topology labels.
    pub locality: Option<super::Locality>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_follows_istio_naming() {
        assert_eq!(Protocol::detect(None, "http-web", "TCP"), Protocol::Http);
        assert_eq!(Protocol::detect(None, "grpc", "TCP"), Protocol::Grpc);
        assert_eq!(Protocol::detect(None, "web", "TCP"), Protocol::Unknown);
        assert_eq!(
            Protocol::detect(Some("http2"), "tcp-x", "TCP"),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::detect(Some("kubernetes.io/h2c"), "", "TCP"),
            Protocol::Http2
        );
        // An unknown appProtocol falls back to the name, as Istio does.
        assert_eq!(
            Protocol::detect(Some("custom"), "http", "TCP"),
            Protocol::Http
        );
        assert_eq!(Protocol::detect(None, "http", "UDP"), Protocol::Udp);
    }

    #[test]
    fn empty_selector_selects_nothing() {
        let mut svc = Service {
            key: ServiceKey::new("ns", "a"),
            vip: None,
            ports: vec![],
            selector: BTreeMap::new(),
            resolution: Resolution::Endpoints,
            from_service_entry: false,
            mesh_external: false,
            host: "a.ns.svc.cluster.local".into(),
        };
        let labels = BTreeMap::from([("app".to_string(), "a".to_string())]);
        assert!(!svc.selects("ns", &labels));
        svc.selector = labels.clone();
        assert!(svc.selects("ns", &labels));
        assert!(!svc.selects("other", &labels));
    }
}
