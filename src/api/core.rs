//! Validators for the core Kubernetes kinds. Schema errors (a string where a
//! number belongs) are caught while parsing; these check what a schema cannot.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::field::{check_dns_label, check_dns_subdomain, check_port, FieldError};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub fn validate_namespace(ns: &Namespace) -> Result<(), FieldError> {
    check_dns_label(
        "metadata.name",
        ns.metadata.name.as_deref().unwrap_or_default(),
    )
}

pub fn validate_service(svc: &Service) -> Result<(), FieldError> {
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    check_dns_label("metadata.name", name)?;
    let Some(spec) = &svc.spec else {
        return Err(FieldError::new("spec", "required object is missing"));
    };
    let external = spec.type_.as_deref() == Some("ExternalName");
    if external {
        let host = spec.external_name.as_deref().unwrap_or_default();
        if host.is_empty() {
            return Err(FieldError::new(
                "spec.externalName",
                "required for type ExternalName",
            ));
        }
        check_dns_subdomain("spec.externalName", host)?;
    }
    match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => {}
        Some(ip) => {
            check_ip("spec.clusterIP", ip)?;
        }
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !external {
        return Err(FieldError::new(
            "spec.ports",
            "at least one port is required",
        ));
    }
    let mut seen_names = BTreeSet::new();
    let mut seen_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        check_port(&at("port"), port.port)?;
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&protocol) {
            return Err(FieldError::new(
                at("protocol"),
                format!("must be TCP, UDP or SCTP, got {protocol:?}"),
            ));
        }
        let port_name = port.name.as_deref().unwrap_or_default();
        if ports.len() > 1 && port_name.is_empty() {
            return Err(FieldError::new(
                at("name"),
                "required when a Service has more than one port",
            ));
        }
        if !port_name.is_empty() {
            check_dns_label(&at("name"), port_name)?;
            if !seen_names.insert(port_name) {
                return Err(FieldError::new(
                    at("name"),
                    format!("duplicate port name {port_name:?}"),
                ));
            }
        }
        if !seen_ports.insert((port.port, protocol)) {
            return Err(FieldError::new(
                at("port"),
                format!("duplicate port {}/{protocol}", port.port),
            ));
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) => {
                check_port(&at("targetPort"), *n)?;
            }
            Some(IntOrString::String(s)) => check_port_name(&at("targetPort"), s)?,
            None => {}
        }
    }
    Ok(())
}

pub fn validate_endpoint_slice(slice: &EndpointSlice) -> Result<(), FieldError> {
    check_dns_subdomain(
        "metadata.name",
        slice.metadata.name.as_deref().unwrap_or_default(),
    )?;
    let has_service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .is_some_and(|s| !s.is_empty());
    if !has_service {
        return Err(FieldError::new(
            format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
            "required: it names the Service these endpoints belong to",
        ));
    }
    let kind = slice.address_type.as_str();
    if !["IPv4", "IPv6", "FQDN"].contains(&kind) {
        return Err(FieldError::new(
            "addressType",
            format!("must be IPv4, IPv6 or FQDN, got {kind:?}"),
        ));
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        if ep.addresses.is_empty() {
            return Err(FieldError::new(
                format!("endpoints[{i}].addresses"),
                "at least one address is required",
            ));
        }
        for (j, addr) in ep.addresses.iter().enumerate() {
            let field = format!("endpoints[{i}].addresses[{j}]");
            match kind {
                "FQDN" => check_dns_subdomain(&field, addr)?,
                _ => {
                    let ip = check_ip(&field, addr)?;
                    if ip.is_ipv4() != (kind == "IPv4") {
                        return Err(FieldError::new(
                            field,
                            format!("{addr:?} is not an {kind} address"),
                        ));
                    }
                }
            }
        }
    }
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        if let Some(p) = port.port {
            check_port(&format!("ports[{i}].port"), p)?;
        }
    }
    Ok(())
}

pub fn validate_endpoints(eps: &Endpoints) -> Result<(), FieldError> {
    check_dns_subdomain(
        "metadata.name",
        eps.metadata.name.as_deref().unwrap_or_default(),
    )?;
    for (i, subset) in eps.subsets.iter().flatten().enumerate() {
        let ready = subset.addresses.iter().flatten().map(|a| ("addresses", a));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| ("notReadyAddresses", a));
        for (j, (list, addr)) in ready.chain(not_ready).enumerate() {
            check_ip(&format!("subsets[{i}].{list}[{j}].ip"), &addr.ip)?;
        }
        for (j, port) in subset.ports.iter().flatten().enumerate() {
            check_port(&format!("subsets[{i}].ports[{j}].port"), port.port)?;
        }
    }
    Ok(())
}

pub fn validate_pod(pod: &Pod) -> Result<(), FieldError> {
    check_dns_subdomain(
        "metadata.name",
        pod.metadata.name.as_deref().unwrap_or_default(),
    )?;
    if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
        check_ip("status.podIP", ip)?;
    }
    Ok(())
}

/// Rudder reads a Node's name and topology labels only.
pub fn validate_node(node: &Node) -> Result<(), FieldError> {
    check_dns_subdomain(
        "metadata.name",
        node.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn check_ip(field: &str, value: &str) -> Result<IpAddr, FieldError> {
    value
        .parse()
        .map_err(|_| FieldError::new(field, format!("{value:?} is not a valid IP address")))
}

/// An IANA service name, as a container port name must be.
fn check_port_name(field: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("{name:?} must be a port number or a port name of at most 15 lowercase letters, digits or '-'")))
    }
}
