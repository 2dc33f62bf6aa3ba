//! Istio's `ServiceEntry`: adds entries (external APIs, VMs, other
//! registries) to the mesh's service registry, field for field as
//! `istio.networking.v1alpha3.ServiceEntry`.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::selector::{
    check_export_to, check_fqdn, check_ip, check_ip_subnet, check_port_name, check_port_number,
    check_protocol, check_wildcard_domain, check_workload_selector, IstioStatus, Protocol,
    WorkloadSelector,
};
use super::workload_entry::{check_workload_entry, WorkloadEntrySpec};
use crate::api::FieldError;

/// Configuration affecting service registry. See more details at:
/// https://istio.io/docs/reference/config/networking/service-entry.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "ServiceEntry",
    plural = "serviceentries",
    namespaced,
    shortname = "se",
    category = "istio-io",
    category = "networking-istio-io",
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Configuration affecting service registry. See more details at: https://istio.io/docs/reference/config/networking/service-entry.html",
    // JSON form: clippy's duplicated_attributes flags repeated `type_ = "string"`.
    printcolumn = r#"{"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts", "description": "The hosts associated with the ServiceEntry"}"#,
    printcolumn = r#"{"name": "Location", "type": "string", "jsonPath": ".spec.location", "description": "Whether the service is external to the mesh or part of the mesh (MESH_EXTERNAL or MESH_INTERNAL)"}"#,
    printcolumn = r#"{"name": "Resolution", "type": "string", "jsonPath": ".spec.resolution", "description": "Service resolution mode for the hosts (NONE, STATIC, or DNS)"}"#,
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// The hosts associated with the ServiceEntry: DNS names, optionally with a
    /// wildcard prefix. Matched against VirtualService and DestinationRule
    /// hosts, the HTTP Host/Authority header, and TLS SNI.
    pub hosts: Vec<String>,
    /// The virtual IP addresses associated with the service; could be CIDR
    /// prefixes. Traffic to these IPs is identified as this service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The ports associated with the external service. If the endpoints are
    /// Unix domain socket addresses, there must be exactly one port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Specify whether the service should be considered external to the mesh or
    /// part of the mesh. Valid Options: MESH_EXTERNAL, MESH_INTERNAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Service resolution mode for the hosts. Valid Options: NONE, STATIC, DNS,
    /// DNS_ROUND_ROBIN, DYNAMIC_DNS. Default NONE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// One or more endpoints associated with the service. Only one of
    /// `endpoints` or `workloadSelector` can be specified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntrySpec>,
    /// Applicable only for MESH_INTERNAL services: selects pods or
    /// WorkloadEntries in this namespace by their labels. Only one of
    /// `endpoints` or `workloadSelector` can be specified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// A list of namespaces to which this service is exported: `.` for its own
    /// namespace, `*` (the default) for all, `~` for none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// If specified, the proxy will verify that the server certificate's subject
    /// alternate name matches one of the specified values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// ServicePort describes the properties of a specific port of a service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// A valid non-negative integer port number.
    pub number: u32,
    /// The protocol exposed on the port: one of HTTP, HTTPS, GRPC, HTTP2,
    /// MONGO, TCP, TLS (and the other protocols Istio knows). Empty means detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Label assigned to the port.
    pub name: String,
    /// The port number on the endpoint where the traffic will be received. If
    /// unset, defaults to `number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

// Whether the service is part of the mesh.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// The service is external to the mesh, typically consumed through APIs.
    #[default]
    MeshExternal,
    /// The service is part of the mesh, e.g. VMs added to a Kubernetes mesh.
    MeshInternal,
}

// How the proxy resolves the IP addresses of the service's endpoints.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Connections are already resolved; forward to the original destination IP.
    #[default]
    None,
    /// Use the static IP addresses specified in endpoints.
    Static,
    /// Resolve the endpoints' (or the hosts') DNS names asynchronously; use all addresses.
    Dns,
    /// Resolve DNS, but connect to the first address returned only.
    DnsRoundRobin,
    /// Resolve the Host header or SNI of each request; wildcard hosts, MESH_EXTERNAL only.
    DynamicDns,
}

/// The one validator for `ServiceEntry` (Istio's `ValidateServiceEntry`).
pub fn validate(spec: &ServiceEntrySpec) -> Result<(), FieldError> {
    if let Some(selector) = &spec.workload_selector {
        check_workload_selector("spec.workloadSelector", selector)?;
        if !spec.endpoints.is_empty() {
            return Err(FieldError::new(
                "spec.endpoints",
                "only one of workloadSelector or endpoints may be set",
            ));
        }
    }
    check_hosts(spec)?;
    let resolution = spec.resolution.unwrap_or_default();
    for (i, address) in spec.addresses.iter().enumerate() {
        let at = format!("spec.addresses[{i}]");
        check_ip_subnet(&at, address)?;
        if address.contains('/') && !matches!(resolution, Resolution::None | Resolution::Static) {
            return Err(FieldError::new(
                at,
                format!("CIDR address {address:?} is allowed only with NONE or STATIC resolution"),
            ));
        }
    }
    let port_names = check_ports(spec)?;
    match resolution {
        Resolution::None if !spec.endpoints.is_empty() => {
            return Err(FieldError::new(
                "spec.endpoints",
                "no endpoints may be given with resolution NONE",
            ));
        }
        Resolution::None => {}
        Resolution::Static => {
            for (i, endpoint) in spec.endpoints.iter().enumerate() {
                check_workload_entry(
                    &format!("spec.endpoints[{i}]"),
                    endpoint,
                    Some(&port_names),
                    false,
                )?;
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => check_dns(spec, resolution, &port_names)?,
        Resolution::DynamicDns => check_dynamic_dns(spec)?,
    }
    // Plain TCP carries no host name, so several hosts cannot be told apart
    // unless the proxy forwards to the original destination (NONE).
    if resolution != Resolution::None && spec.hosts.len() > 1 {
        for (i, port) in spec.ports.iter().enumerate() {
            let p = port.protocol.as_deref().and_then(Protocol::parse);
            if !p.is_some_and(|p| p.is_http() || p.is_tls()) {
                return Err(FieldError::new(
                    format!("spec.ports[{i}].protocol"),
                    "multiple hosts provided with a non-HTTP, non-TLS port: hosts can only be told apart by HTTP Host or TLS SNI",
                ));
            }
        }
    }
    check_export_to("spec.exportTo", &spec.export_to, true)
}

fn check_hosts(spec: &ServiceEntrySpec) -> Result<(), FieldError> {
    if spec.hosts.is_empty() {
        return Err(FieldError::new(
            "spec.hosts",
            "service entry must have at least one host",
        ));
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
        if host == "*" {
            return Err(FieldError::new(
                at,
                "invalid host \"*\": a service entry cannot match every host",
            ));
        }
        // Istio only warns about a partial wildcard (`*foo.com`) here, so it passes.
        check_wildcard_domain(&at, host)?;
    }
    Ok(())
}

/// Ports: unique names and numbers, valid names, protocols and target ports.
/// Returns the port names, which endpoint port maps must use.
fn check_ports(spec: &ServiceEntrySpec) -> Result<BTreeSet<&str>, FieldError> {
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        if !names.insert(port.name.as_str()) {
            return Err(FieldError::new(
                format!("{at}.name"),
                format!("port name {:?} is already defined", port.name),
            ));
        }
        if !numbers.insert(port.number) {
            return Err(FieldError::new(
                format!("{at}.number"),
                format!("port {} is already defined", port.number),
            ));
        }
        check_port_name(&format!("{at}.name"), &port.name)?;
        check_protocol(
            &format!("{at}.protocol"),
            port.protocol.as_deref().unwrap_or(""),
        )?;
        check_port_number(&format!("{at}.number"), port.number)?;
        if let Some(target) = port.target_port.filter(|t| *t != 0) {
            check_port_number(&format!("{at}.targetPort"), target)?;
        }
    }
    Ok(names)
}

fn check_dns(
    spec: &ServiceEntrySpec,
    resolution: Resolution,
    port_names: &BTreeSet<&str>,
) -> Result<(), FieldError> {
    let mode = if resolution == Resolution::Dns {
        "DNS"
    } else {
        "DNS_ROUND_ROBIN"
    };
    if spec.endpoints.is_empty() {
        // Without endpoints the proxy resolves the hosts themselves.
        for (i, host) in spec.hosts.iter().enumerate() {
            check_fqdn(&format!("spec.hosts[{i}]"), host).map_err(|_| {
                FieldError::new(format!("spec.hosts[{i}]"), format!("{host:?}: hosts must be FQDNs if no endpoints are provided for resolution {mode}"))
            })?;
        }
    }
    if resolution == Resolution::DnsRoundRobin && spec.endpoints.len() > 1 {
        return Err(FieldError::new(
            "spec.endpoints",
            "there must be only 0 or 1 endpoint for resolution DNS_ROUND_ROBIN",
        ));
    }
    for (i, endpoint) in spec.endpoints.iter().enumerate() {
        let at = format!("spec.endpoints[{i}]");
        // DNS resolution cannot reach a Unix socket: the address must be an IP or a name.
        let address = endpoint.address.as_deref().unwrap_or("");
        if check_ip("", address).is_err() && check_fqdn("", address).is_err() {
            return Err(FieldError::new(
                format!("{at}.address"),
                format!("endpoint address {address:?} is not a valid FQDN or IP address"),
            ));
        }
        check_workload_entry(&at, endpoint, Some(port_names), true)?;
    }
    Ok(())
}

fn check_dynamic_dns(spec: &ServiceEntrySpec) -> Result<(), FieldError> {
    if spec.location.unwrap_or_default() != Location::MeshExternal {
        return Err(FieldError::new(
            "spec.location",
            "resolution DYNAMIC_DNS is only supported for MESH_EXTERNAL services",
        ));
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if !host.starts_with("*.") {
            return Err(FieldError::new(
                format!("spec.hosts[{i}]"),
                format!("{host:?}: resolution DYNAMIC_DNS must be used with wildcard hosts"),
            ));
        }
    }
    Ok(())
}
