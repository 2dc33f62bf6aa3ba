//! Istio's `Sidecar`, resolved: which services a proxy sees (egress), how it
//! treats unknown destinations, and, when it lists `ingress` listeners, the
//! ports its inbound side serves instead of the Services' ports.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::routing::{host_matches, ConfigKey, ConnectionPool};
use super::Protocol;

/// The namespace part of a Sidecar egress host (`ns/host`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NamespacePattern {
    /// `*`: any namespace.
    Any,
    /// A namespace by name (`.` already replaced by the Sidecar's own).
    Named(String),
    /// `~`: no namespace (imports nothing).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EgressHost {
    pub namespace: NamespacePattern,
    /// `*`, `*.suffix` or a fully qualified host.
    pub host: String,
}

impl EgressHost {
    pub fn imports(&self, namespace: &str, fqdn: &str) -> bool {
        let ns_ok = match &self.namespace {
            NamespacePattern::Any => true,
            NamespacePattern::Named(n) => n == namespace,
            NamespacePattern::None => false,
        };
        ns_ok && host_matches(&self.host, fqdn)
    }
}

/// One `egress` listener: the hosts it imports, and, when it names a port,
/// the one port it serves them on (Istio's `IstioEgressListener`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EgressListener {
    /// Its position in `spec.egress`, for messages naming the field.
    pub index: usize,
    pub hosts: Vec<EgressHost>,
    /// None: the catch-all listener (every port no other listener names).
    pub port: Option<EgressPort>,
    pub bind: Option<EgressBind>,
    pub capture: CaptureMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EgressPort {
    /// 0 only with a Unix socket `bind`.
    pub number: u16,
    /// As declared; `Unknown` when unset (the services' ports decide).
    pub protocol: Protocol,
    /// `HTTP_PROXY`: Istio's generic egress HTTP proxy, which imports every
    /// port of its hosts.
    pub http_proxy: bool,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum EgressBind {
    Ip(IpAddr),
    /// `unix:///path` or `unix://@abstract`: the part after `unix://`.
    Unix(String),
}

impl EgressListener {
    /// Istio's `needsPortMatch`: a listener with a (non-zero, non
    /// HTTP_PROXY) port imports only that port of its hosts.
    pub fn port_match(&self) -> Option<u16> {
        self.port
            .as_ref()
            .filter(|p| p.number != 0 && !p.http_proxy)
            .map(|p| p.number)
    }

    pub fn imports(&self, namespace: &str, fqdn: &str) -> bool {
        self.hosts.iter().any(|h| h.imports(namespace, fqdn))
    }

    /// Does it import this port of the service?
    pub fn imports_port(&self, namespace: &str, fqdn: &str, port: u16) -> bool {
        self.port_match().is_none_or(|p| p == port) && self.imports(namespace, fqdn)
    }
}

/// A Sidecar resource, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SidecarScope {
    pub key: ConfigKey,
    /// Empty: every workload in the namespace without a more specific Sidecar.
    pub workload_selector: BTreeMap<String, String>,
    /// `egress`, in the resource's order (validation keeps the catch-all,
    /// if any, last). Empty: everything is imported, on every port.
    pub egress: Vec<EgressListener>,
    pub outbound_policy: Option<super::OutboundPolicy>,
    /// `ingress`, in the resource's order. Non-empty: these are the proxy's
    /// inbound ports, not the Services' (Istio).
    pub ingress: Vec<IngressListener>,
    /// `inboundConnectionPool`: for every inbound port without its own.
    pub inbound_connection_pool: Option<ConnectionPool>,
    pub created: i64,
}

/// One `ingress` listener: traffic arriving at `port` goes to `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct IngressListener {
    /// Its position in `spec.ingress`, for messages naming the field.
    pub index: usize,
    pub port: u16,
    /// As declared; unset is `Unknown` (sniffed), as for Service ports.
    pub protocol: Protocol,
    pub name: String,
    /// Where a listener that binds its port (no capture) listens; 0.0.0.0
    /// when unset. Captured traffic is matched by port alone.
    pub bind: Option<IpAddr>,
    pub capture: CaptureMode,
    pub endpoint: DefaultEndpoint,
    /// Server TLS terminated on this port (SIMPLE, MUTUAL, OPTIONAL_MUTUAL).
    pub tls: Option<ServerTls>,
    /// This port's `connectionPool` (the Sidecar's `inboundConnectionPool`
    /// is applied when this is unset).
    pub connection_pool: Option<ConnectionPool>,
}

/// `captureMode`: how traffic reaches the listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CaptureMode {
    /// As the proxy's interception mode says.
    #[default]
    Default,
    /// iptables capture: a chain of the capture listener.
    Iptables,
    /// No capture: Envoy binds the port itself.
    None,
}

/// `defaultEndpoint`: where the proxy forwards what the listener receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DefaultEndpoint {
    /// Unset: the address the connection was sent to (Istio's ORIGINAL_DST).
    OriginalDestination,
    /// `127.0.0.1:PORT` or `[::1]:PORT`.
    Loopback { ip: IpAddr, port: u16 },
    /// `0.0.0.0:PORT` or `[::]:PORT`: the workload's own address.
    InstanceIp { port: u16 },
    /// `unix:///path` or `unix://@abstract-name`: the path after `unix://`.
    Unix(String),
}

/// Istio's `ServerTLSSettings` for a sidecar ingress port: certificate
/// files the proxy reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    pub server_certificate: String,
    pub private_key: String,
    pub ca_certificates: Option<String>,
    pub ca_crl: Option<String>,
    pub verify_certificate_spki: Vec<String>,
    pub verify_certificate_hash: Vec<String>,
    pub min_protocol_version: Option<TlsVersion>,
    pub max_protocol_version: Option<TlsVersion>,
    pub cipher_suites: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ServerTlsMode {
    Simple,
    /// A client certificate signed by `ca_certificates` is required.
    Mutual,
    /// A client certificate is verified when presented, not required.
    OptionalMutual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TlsVersion {
    Auto,
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}
