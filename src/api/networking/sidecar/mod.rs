//! Istio's `Sidecar`: fine-tunes the ports a sidecar accepts and the services
//! it can reach, field for field as `istio.networking.v1alpha3.Sidecar`.

mod tls;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use tls::{ServerTlsMode, ServerTlsSettings, TlsCertificate, TlsProtocol};

use super::common::Destination;
use super::destination_rule::{check_connection_pool, check_subset_name, ConnectionPoolSettings};
use super::selector::{
    check_fqdn, check_ip, check_no_partial_wildcard, check_port_name, check_port_number,
    check_protocol, check_unix_address, check_wildcard_domain, check_workload_selector,
    is_dns1123_label, IstioStatus, Protocol, WorkloadSelector, UNIX_PREFIX,
};
use crate::api::FieldError;

/// Configuration affecting network reachability of a sidecar. See more details
/// at: https://istio.io/docs/reference/config/networking/sidecar.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "Sidecar",
    plural = "sidecars",
    namespaced,
    category = "istio-io",
    category = "networking-istio-io",
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Configuration affecting network reachability of a sidecar. See more details at: https://istio.io/docs/reference/config/networking/sidecar.html"
)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Criteria used to select the specific set of pods/VMs on which this
    /// `Sidecar` configuration should be applied. If omitted, it applies to all
    /// workload instances in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Ingress specifies the configuration of the sidecar for processing inbound
    /// traffic to the attached workload instance. If omitted, Istio configures
    /// it from the workload's services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IstioIngressListener>,
    /// Egress specifies the configuration of the sidecar for processing outbound
    /// traffic from the attached workload instance to other services in the mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<IstioEgressListener>,
    /// Settings controlling the volume of connections Envoy will accept from the
    /// network, for every inbound port without its own `connectionPool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// Set the default behavior of the sidecar for handling outbound traffic
    /// from the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// An inbound traffic listener on the sidecar proxy attached to a workload instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioIngressListener {
    /// The port associated with the listener.
    pub port: SidecarPort,
    /// The IP (IPv4 or IPv6) to which the listener should be bound. Unix domain
    /// socket addresses are not allowed for ingress listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// The captureMode option dictates how traffic to the listener is expected
    /// to be captured (or not). Valid Options: DEFAULT, IPTABLES, NONE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<CaptureMode>,
    /// The IP endpoint or Unix domain socket to which traffic should be
    /// forwarded: `127.0.0.1:PORT`, `[::1]:PORT`, `0.0.0.0:PORT`, `[::]:PORT`
    /// or `unix:///path/to/socket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<String>,
    /// Set of TLS related options that will enable TLS termination on the
    /// sidecar for requests originating from outside the mesh. Supports only
    /// SIMPLE and MUTUAL modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Settings controlling the volume of connections Envoy will accept from the
    /// network on this port; overrides `inboundConnectionPool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// An outbound traffic listener on the sidecar proxy attached to a workload instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioEgressListener {
    /// The port associated with the listener. If omitted, Istio infers the
    /// listener ports from the imported hosts. Use 0 with a Unix domain socket bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// The IP (IPv4 or IPv6) or the Unix domain socket (`unix:///path` or
    /// `unix://@name`) to which the listener should be bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// When the bind address is an IP, the captureMode option dictates how
    /// traffic to the listener is expected to be captured (or not). Valid
    /// Options: DEFAULT, IPTABLES, NONE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<CaptureMode>,
    /// One or more service hosts exposed by the listener in `namespace/dnsName`
    /// format. `namespace` may be `*` (any), `.` (the sidecar's) or `~` (none);
    /// `dnsName` an FQDN, optionally with a leading wildcard, or `*`.
    pub hosts: Vec<String>,
}

/// The port of a sidecar listener.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarPort {
    /// A valid non-negative integer port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    /// The protocol exposed on the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Label assigned to the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Deprecated: has no effect on Sidecars, and setting it is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

// How traffic to a listener is expected to be captured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    /// The default capture mode defined by the environment.
    #[default]
    Default,
    /// Capture traffic using IPtables redirection.
    Iptables,
    /// No traffic capture: the application talks to the listener directly.
    None,
}

/// The default behavior of the sidecar for handling outbound traffic from the application.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    /// Valid Options: REGISTRY_ONLY, ALLOW_ANY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<OutboundMode>,
    /// Where `ALLOW_ANY` sends traffic to unknown destinations, instead of
    /// passing it through to its original destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<Destination>,
}

// Outbound traffic policy modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// Only services in the service registry and ServiceEntries are reachable.
    #[default]
    RegistryOnly,
    /// Unknown destinations are reachable as well.
    AllowAny,
}

/// The one validator for `Sidecar` (Istio's `ValidateSidecar`).
pub fn validate(spec: &SidecarSpec) -> Result<(), FieldError> {
    if let Some(selector) = &spec.workload_selector {
        check_workload_selector("spec.workloadSelector", selector)?;
    }
    if spec.egress.is_empty()
        && spec.ingress.is_empty()
        && spec.outbound_traffic_policy.is_none()
        && spec.inbound_connection_pool.is_none()
    {
        return Err(FieldError::new(
            "spec",
            "empty Sidecar: set at least one of egress, ingress, outboundTrafficPolicy or inboundConnectionPool",
        ));
    }
    let mut ports = BTreeSet::new();
    for (i, listener) in spec.ingress.iter().enumerate() {
        let at = format!("spec.ingress[{i}]");
        check_ingress(&at, listener)?;
        if !ports.insert(listener.port.number.unwrap_or(0)) {
            return Err(FieldError::new(
                format!("{at}.port.number"),
                "ports on IP bound listeners must be unique",
            ));
        }
    }
    if let Some(pool) = &spec.inbound_connection_pool {
        check_connection_pool("spec.inboundConnectionPool", pool)?;
    }
    check_egress(&spec.egress)?;
    if let Some(policy) = &spec.outbound_traffic_policy {
        check_outbound_policy("spec.outboundTrafficPolicy", policy)?;
    }
    Ok(())
}

fn check_port_fields(field: &str, port: &SidecarPort) -> Result<Option<Protocol>, FieldError> {
    if port.target_port.unwrap_or(0) > 0 {
        return Err(FieldError::new(
            format!("{field}.targetPort"),
            "targetPort has no impact on Sidecars; remove it",
        ));
    }
    if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
        check_port_name(&format!("{field}.name"), name)?;
    }
    check_protocol(
        &format!("{field}.protocol"),
        port.protocol.as_deref().unwrap_or(""),
    )
}

fn check_ingress(field: &str, listener: &IstioIngressListener) -> Result<(), FieldError> {
    let protocol = check_port_fields(&format!("{field}.port"), &listener.port)?;
    check_port_number(
        &format!("{field}.port.number"),
        listener.port.number.unwrap_or(0),
    )?;
    if let Some(bind) = listener.bind.as_deref().filter(|b| !b.is_empty()) {
        check_ip(&format!("{field}.bind"), bind)?;
    }
    if let Some(endpoint) = listener
        .default_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        check_default_endpoint(&format!("{field}.defaultEndpoint"), endpoint)?;
    }
    if let Some(tls) = &listener.tls {
        check_ingress_tls(&format!("{field}.tls"), tls, protocol)?;
    }
    if let Some(pool) = &listener.connection_pool {
        check_connection_pool(&format!("{field}.connectionPool"), pool)?;
    }
    Ok(())
}

/// Where inbound traffic goes: loopback or the instance IP (Istio allows no
/// arbitrary IPs, which would turn the sidecar into an open relay), or a socket.
fn check_default_endpoint(field: &str, endpoint: &str) -> Result<(), FieldError> {
    if let Some(path) = endpoint.strip_prefix(UNIX_PREFIX) {
        return check_unix_address(field, path);
    }
    let bad = || {
        FieldError::new(
            field,
            format!("{endpoint:?}: defaultEndpoint must be 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix://<path>"),
        )
    };
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    // As Go's net.SplitHostPort: an IPv6 host must be bracketed.
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if !["", "127.0.0.1", "0.0.0.0", "::1", "::"].contains(&host) {
        return Err(bad());
    }
    let port: u32 = port.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("{endpoint:?}: defaultEndpoint port {port:?} is not a number"),
        )
    })?;
    check_port_number(field, port).map(|_| ())
}

fn check_ingress_tls(
    field: &str,
    tls: &ServerTlsSettings,
    protocol: Option<Protocol>,
) -> Result<(), FieldError> {
    let unsupported = [
        ("subjectAltNames", !tls.subject_alt_names.is_empty()),
        ("httpsRedirect", tls.https_redirect == Some(true)),
        (
            "credentialName",
            tls.credential_name
                .as_deref()
                .is_some_and(|c| !c.is_empty()),
        ),
        ("credentialNames", !tls.credential_names.is_empty()),
        ("tlsCertificates", !tls.tls_certificates.is_empty()),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(FieldError::new(
            format!("{field}.{name}"),
            format!("{name} is not supported in sidecar ingress tls"),
        ));
    }
    let mode = tls.mode.unwrap_or_default();
    if matches!(
        mode,
        ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough
    ) {
        return Err(FieldError::new(
            format!("{field}.mode"),
            format!("mode {mode:?} cannot be used in sidecar ingress tls"),
        ));
    }
    if !protocol.is_some_and(Protocol::is_tls) {
        return Err(FieldError::new(
            field,
            "TLS settings need an HTTPS or TLS port protocol",
        ));
    }
    tls::check_server_tls(field, tls)
}

fn check_egress(egress: &[IstioEgressListener]) -> Result<(), FieldError> {
    let mut ports = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    for (i, listener) in egress.iter().enumerate() {
        let at = format!("spec.egress[{i}]");
        match &listener.port {
            // The catch-all listener: at most one, and last, so specific ports win.
            None if i + 1 != egress.len() => {
                return Err(FieldError::new(
                    format!("{at}.port"),
                    "the egress listener without a port must be the last one",
                ));
            }
            None => check_catch_all_bind(&at, listener.bind.as_deref().unwrap_or(""))?,
            Some(port) => {
                let bind = listener.bind.as_deref().unwrap_or("");
                check_egress_port(&at, port, bind, listener.capture_mode.unwrap_or_default())?;
                let number = port.number.unwrap_or(0);
                let unique = if number == 0 {
                    sockets.insert(bind)
                } else {
                    ports.insert(number)
                };
                if !unique {
                    return Err(FieldError::new(
                        format!("{at}.port"),
                        "ports on IP bound listeners and unix domain socket binds must be unique",
                    ));
                }
            }
        }
        if listener.hosts.is_empty() {
            return Err(FieldError::new(
                format!("{at}.hosts"),
                "egress listener must contain at least one host",
            ));
        }
        for (j, host) in listener.hosts.iter().enumerate() {
            check_egress_host(&format!("{at}.hosts[{j}]"), host)?;
        }
    }
    Ok(())
}

/// The catch-all listener binds one address for every port: an IP (Istio
/// does not validate it, and Envoy would refuse anything else). A socket
/// serves one listener, so it needs a port of 0.
fn check_catch_all_bind(field: &str, bind: &str) -> Result<(), FieldError> {
    if bind.is_empty() {
        return Ok(());
    }
    if bind.starts_with(UNIX_PREFIX) {
        return Err(FieldError::new(
            format!("{field}.bind"),
            "a unix domain socket bind needs a port with number 0",
        ));
    }
    check_ip(&format!("{field}.bind"), bind).map(|_| ())
}

fn check_egress_port(
    field: &str,
    port: &SidecarPort,
    bind: &str,
    capture: CaptureMode,
) -> Result<(), FieldError> {
    check_port_fields(&format!("{field}.port"), port)?;
    let number = port.number.unwrap_or(0);
    if number == 0 {
        // Port 0 means the listener is a Unix domain socket.
        let Some(path) = bind.strip_prefix(UNIX_PREFIX) else {
            return Err(FieldError::new(
                format!("{field}.bind"),
                "a listener with port 0 must bind a unix domain socket (unix://...)",
            ));
        };
        check_unix_address(&format!("{field}.bind"), path)?;
        if !matches!(capture, CaptureMode::Default | CaptureMode::None) {
            return Err(FieldError::new(
                format!("{field}.captureMode"),
                "captureMode must be DEFAULT or NONE for unix domain socket listeners",
            ));
        }
        return Ok(());
    }
    check_port_number(&format!("{field}.port.number"), number)?;
    if !bind.is_empty() {
        check_ip(&format!("{field}.bind"), bind)?;
    }
    Ok(())
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for sidecars.
fn check_egress_host(field: &str, host: &str) -> Result<(), FieldError> {
    let Some((namespace, name)) = host.split_once('/') else {
        return Err(FieldError::new(
            field,
            format!("{host:?}: host must be of form namespace/dnsName"),
        ));
    };
    if namespace.is_empty() || name.is_empty() {
        return Err(FieldError::new(
            field,
            format!("{host:?}: namespace and dnsName cannot be empty"),
        ));
    }
    if !["*", ".", "~"].contains(&namespace) && !is_dns1123_label(namespace) {
        return Err(FieldError::new(
            field,
            format!("{host:?}: namespace must be *, ., ~ or a namespace name"),
        ));
    }
    if name != "*" && !name.contains('.') {
        return Err(FieldError::new(
            field,
            format!("{host:?}: short names (non FQDN) are not allowed"),
        ));
    }
    check_wildcard_domain(field, name)?;
    check_no_partial_wildcard(field, name)
}

fn check_outbound_policy(field: &str, policy: &OutboundTrafficPolicy) -> Result<(), FieldError> {
    let Some(proxy) = &policy.egress_proxy else {
        return Ok(());
    };
    let at = format!("{field}.egressProxy");
    if policy.mode != Some(OutboundMode::AllowAny) {
        return Err(FieldError::new(
            at,
            "egressProxy must be set only with mode ALLOW_ANY",
        ));
    }
    check_fqdn(&format!("{at}.host"), &proxy.host)?;
    let Some(number) = proxy.port.map(|p| p.number) else {
        return Err(FieldError::new(
            format!("{at}.port"),
            "egressProxy needs a port",
        ));
    };
    if let Some(subset) = &proxy.subset {
        check_subset_name(&format!("{at}.subset"), subset)?;
    }
    check_port_number(&format!("{at}.port.number"), number).map(|_| ())
}
