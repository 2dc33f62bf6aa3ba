//! Semantic checks for a VirtualService, following Istio's
//! `ValidateVirtualService` (pkg/config/validation). Every error names the
//! full field path from the object root, e.g. `spec.http[0].route[1].weight`,
//! and the first problem found (in document order) is returned.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::validate_http::check_http_route;
use super::{
    Destination, L4MatchAttributes, RouteDestination, TcpRoute, TlsMatchAttributes, TlsRoute,
    VirtualServiceSpec,
};
use crate::api::{
    check_dns_label, check_dns_subdomain, check_duration_min, check_host, FieldError,
};

pub(super) type Checked = Result<(), FieldError>;

/// The reserved gateway name for all sidecars in the mesh.
const MESH_GATEWAY: &str = "mesh";

pub(super) fn fail(field: impl Into<String>, reason: impl Into<String>) -> Checked {
    Err(FieldError::new(field, reason))
}

/// Checks a VirtualService spec the way Istio's validation webhook does.
///
/// A spec without `hosts` is a delegate VirtualService (Istio's rule): it
/// may then have only `http` rules and no `gateways`. Namespace-dependent
/// checks (`exportTo` listing both `.` and the own namespace) are left out
/// because the spec alone does not know its namespace.
pub fn validate(spec: &VirtualServiceSpec) -> Result<(), FieldError> {
    let delegate = spec.hosts.is_empty();
    if delegate {
        if !spec.gateways.is_empty() {
            return fail(
                "spec.gateways",
                "a delegate VirtualService (one without hosts) must not set gateways",
            );
        }
        if !spec.tls.is_empty() {
            return fail(
                "spec.tls",
                "a delegate VirtualService (one without hosts) supports only http routes, not tls",
            );
        }
        if !spec.tcp.is_empty() {
            return fail(
                "spec.tcp",
                "a delegate VirtualService (one without hosts) supports only http routes, not tcp",
            );
        }
    }
    check_gateway_names("spec.gateways", &spec.gateways)?;
    // Bound to gateways only when gateways are listed and `mesh` is not.
    let for_gateway = !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == MESH_GATEWAY);
    check_hosts(&spec.hosts, for_gateway)?;
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        return fail(
            "spec",
            "at least one of http, tls or tcp routes must be given",
        );
    }
    for (i, route) in spec.http.iter().enumerate() {
        check_http_route(&format!("spec.http[{i}]"), route, delegate, for_gateway)?;
    }
    for (i, route) in spec.tls.iter().enumerate() {
        check_tls_route(&format!("spec.tls[{i}]"), route, spec, for_gateway)?;
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        check_tcp_route(&format!("spec.tcp[{i}]"), route)?;
    }
    check_export_to(&spec.export_to)
}

fn check_hosts(hosts: &[String], for_gateway: bool) -> Checked {
    for (i, host) in hosts.iter().enumerate() {
        let field = format!("spec.hosts[{i}]");
        // IP addresses are accepted (they make sense for gateways).
        if host.parse::<IpAddr>().is_ok() {
            continue;
        }
        check_host(&field, host)?;
        if host == "*" && !for_gateway {
            return fail(field, "the wildcard host \"*\" is only allowed for VirtualServices bound to gateways, not to the mesh");
        }
    }
    // `*.foo.com` and `bar.foo.com` (or `*.com`) overlap: Istio calls that a duplicate.
    for (j, later) in hosts.iter().enumerate() {
        if let Some(i) = hosts[..j]
            .iter()
            .position(|earlier| hosts_overlap(earlier, later))
        {
            return fail(
                format!("spec.hosts[{j}]"),
                format!(
                    "duplicate host: {later:?} overlaps hosts[{i}] {:?}",
                    hosts[i]
                ),
            );
        }
    }
    Ok(())
}

/// Istio's `host.Name.Matches`: equal, or one wildcard covers the other.
pub(super) fn hosts_overlap(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb) || sb.ends_with(sa),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Istio's `host.Name.SubsetOf`: every name matched by `a` is matched by `b`.
pub(super) fn host_subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb),
        (Some(_), None) => false,
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Gateway references: `namespace/name` (both DNS labels), or a bare name,
/// `mesh`, or the legacy `name.namespace` form (a DNS name).
pub(super) fn check_gateway_names(field: &str, gateways: &[String]) -> Checked {
    for (i, gateway) in gateways.iter().enumerate() {
        let field = format!("{field}[{i}]");
        match gateway.split_once('/') {
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    return fail(field, format!("gateway {gateway:?}: namespace and name must both be given as namespace/name"));
                }
                check_dns_label(&field, ns).map_err(|_| {
                    FieldError::new(
                        &field,
                        format!("gateway {gateway:?}: namespace {ns:?} is not a DNS label"),
                    )
                })?;
                check_dns_label(&field, name).map_err(|_| {
                    FieldError::new(
                        &field,
                        format!("gateway {gateway:?}: name {name:?} is not a DNS label"),
                    )
                })?;
            }
            None => check_dns_subdomain(&field, gateway).map_err(|_| {
                FieldError::new(
                    &field,
                    format!(
                        "gateway {gateway:?} must be namespace/name, a gateway name or \"mesh\""
                    ),
                )
            })?,
        }
    }
    Ok(())
}

/// `exportTo`: `.` (own namespace), `*` (everyone) or namespace names,
/// without duplicates, and `*` only on its own.
fn check_export_to(export_to: &[String]) -> Checked {
    for (i, entry) in export_to.iter().enumerate() {
        let field = format!("spec.exportTo[{i}]");
        match entry.as_str() {
            "." | "*" => {}
            "~" => return fail(field, "exportTo \"~\" (no one) is only allowed for ServiceEntry"),
            ns => check_dns_label(&field, ns).map_err(|_| {
                FieldError::new(&field, format!("{ns:?}: exportTo entries must be \".\", \"*\" or a namespace name (DNS label)"))
            })?,
        }
        if export_to[..i].contains(entry) {
            return fail(field, format!("duplicate exportTo entry {entry:?}"));
        }
    }
    if export_to.len() > 1 && export_to.iter().any(|e| e == "*") {
        return fail(
            "spec.exportTo",
            "\"*\" exports to all namespaces and cannot be combined with other entries",
        );
    }
    Ok(())
}

fn check_tls_route(
    at: &str,
    route: &TlsRoute,
    spec: &VirtualServiceSpec,
    for_gateway: bool,
) -> Checked {
    if route.r#match.is_empty() {
        return fail(
            format!("{at}.match"),
            "a TLS route needs at least one match (with sniHosts)",
        );
    }
    for (j, m) in route.r#match.iter().enumerate() {
        check_tls_match(&format!("{at}.match[{j}]"), m, spec, for_gateway)?;
    }
    check_route_destinations(at, &route.route, "TLS")
}

fn check_tls_match(
    at: &str,
    m: &TlsMatchAttributes,
    spec: &VirtualServiceSpec,
    for_gateway: bool,
) -> Checked {
    if m.sni_hosts.is_empty() {
        return fail(
            format!("{at}.sniHosts"),
            "a TLS match needs at least one SNI host",
        );
    }
    for (k, sni) in m.sni_hosts.iter().enumerate() {
        let field = format!("{at}.sniHosts[{k}]");
        // Istio only warns about IP addresses (against the SNI spec, but accepted).
        if sni.parse::<IpAddr>().is_ok() {
            continue;
        }
        check_host(&field, sni)?;
        if sni == "*" && !for_gateway {
            return fail(
                field,
                "the wildcard SNI host \"*\" is only allowed for VirtualServices bound to gateways",
            );
        }
        if !spec.hosts.iter().any(|h| host_subset_of(sni, h)) {
            let hosts = spec.hosts.join(", ");
            return fail(
                field,
                format!(
                    "SNI host {sni:?} is not within any of the VirtualService's hosts [{hosts}]"
                ),
            );
        }
    }
    check_l4_common(
        at,
        &m.destination_subnets,
        m.port,
        &m.source_labels,
        &m.gateways,
        m.source_namespace.as_deref(),
    )
}

fn check_tcp_route(at: &str, route: &TcpRoute) -> Checked {
    for (j, m) in route.r#match.iter().enumerate() {
        check_tcp_match(&format!("{at}.match[{j}]"), m)?;
    }
    check_route_destinations(at, &route.route, "TCP")
}

fn check_tcp_match(at: &str, m: &L4MatchAttributes) -> Checked {
    check_l4_common(
        at,
        &m.destination_subnets,
        m.port,
        &m.source_labels,
        &m.gateways,
        m.source_namespace.as_deref(),
    )?;
    if let Some(subnet) = &m.source_subnet {
        check_subnet(&format!("{at}.sourceSubnet"), subnet)?;
    }
    Ok(())
}

fn check_l4_common(
    at: &str,
    subnets: &[String],
    port: Option<u32>,
    labels: &BTreeMap<String, String>,
    gateways: &[String],
    source_namespace: Option<&str>,
) -> Checked {
    for (k, subnet) in subnets.iter().enumerate() {
        check_subnet(&format!("{at}.destinationSubnets[{k}]"), subnet)?;
    }
    check_match_port(&format!("{at}.port"), port)?;
    check_labels(&format!("{at}.sourceLabels"), labels)?;
    check_gateway_names(&format!("{at}.gateways"), gateways)?;
    check_source_namespace(&format!("{at}.sourceNamespace"), source_namespace)
}

fn check_route_destinations(at: &str, route: &[RouteDestination], kind: &str) -> Checked {
    if route.is_empty() {
        return fail(
            format!("{at}.route"),
            format!("a {kind} route needs at least one destination"),
        );
    }
    for (k, dest) in route.iter().enumerate() {
        check_destination(&format!("{at}.route[{k}].destination"), &dest.destination)?;
    }
    check_weights(&format!("{at}.route"), route.iter().map(|d| d.weight))
}

/// A destination: a host that is not `*`, an optional DNS-label subset and
/// an optional port in 1..=65535.
pub(super) fn check_destination(at: &str, dest: &Destination) -> Checked {
    let field = format!("{at}.host");
    if dest.host == "*" {
        return fail(
            field,
            "\"*\" is not a valid destination host: name one service",
        );
    }
    if dest.host.is_empty() {
        return fail(field, "a destination host is required");
    }
    check_host(&field, &dest.host)?;
    if let Some(subset) = dest.subset.as_deref().filter(|s| !s.is_empty()) {
        check_dns_label(&format!("{at}.subset"), subset).map_err(|_| {
            FieldError::new(
                format!("{at}.subset"),
                format!("subset name {subset:?} must be a DNS label"),
            )
        })?;
    }
    if let Some(port) = dest.port {
        check_port_number(&format!("{at}.port.number"), port.number)?;
    }
    Ok(())
}

/// Weights are relative (Istio no longer requires a sum of 100): none may be
/// negative, and several destinations cannot all weigh 0.
pub(super) fn check_weights(
    at: &str,
    weights: impl ExactSizeIterator<Item = Option<i32>>,
) -> Checked {
    let count = weights.len();
    let mut total: i64 = 0;
    for (k, weight) in weights.enumerate() {
        let weight = weight.unwrap_or(0);
        if weight < 0 {
            return fail(
                format!("{at}[{k}].weight"),
                format!("weight must not be negative, got {weight}"),
            );
        }
        total += i64::from(weight);
    }
    if count > 1 && total == 0 {
        return fail(
            at,
            format!(
                "the {count} destinations all have weight 0: give at least one a positive weight"
            ),
        );
    }
    Ok(())
}

pub(super) fn check_port_number(field: &str, port: u32) -> Checked {
    if !(1..=65535).contains(&port) {
        return fail(
            field,
            format!("port must be between 1 and 65535, got {port}"),
        );
    }
    Ok(())
}

/// A match `port` of 0 means "any", as in Istio's proto.
pub(super) fn check_match_port(field: &str, port: Option<u32>) -> Checked {
    match port {
        Some(p) if p != 0 => check_port_number(field, p),
        _ => Ok(()),
    }
}

pub(super) fn check_source_namespace(field: &str, namespace: Option<&str>) -> Checked {
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) => check_dns_label(field, ns).map_err(|_| {
            FieldError::new(
                field,
                format!("sourceNamespace {ns:?} must be a namespace name (DNS label)"),
            )
        }),
        None => Ok(()),
    }
}

fn check_subnet(field: &str, subnet: &str) -> Checked {
    if subnet.parse::<IpAddr>().is_ok() || subnet.parse::<ipnet::IpNet>().is_ok() {
        return Ok(());
    }
    fail(
        field,
        format!("{subnet:?} is not an IP address or CIDR block (a.b.c.d/xx)"),
    )
}

/// Kubernetes label syntax, as Istio's `labels.Instance.Validate` checks it:
/// keys are `[prefix/]name`, values at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub(super) fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Checked {
    for (key, value) in labels {
        let field = format!("{field}[{key}]");
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        let prefix_ok = prefix.is_none_or(|p| check_dns_subdomain(&field, p).is_ok());
        if !prefix_ok || name.is_empty() || !is_qualified_name(name) {
            return fail(field, format!("invalid label key {key:?}: use [prefix/]name, name at most 63 alphanumerics, '-', '_' or '.'"));
        }
        if !value.is_empty() && !is_qualified_name(value) {
            return fail(field, format!("invalid label value {value:?}: at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"));
        }
    }
    Ok(())
}

fn is_qualified_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Istio's duration rule: at least 1ms and no finer than milliseconds.
pub(super) fn check_istio_duration(field: &str, value: &str) -> Result<Duration, FieldError> {
    let d = check_duration_min(field, value, Duration::from_millis(1))?;
    // Round to whole microseconds first: parsing goes through f64.
    let micros = (d.as_secs_f64() * 1e6).round() as u128;
    if !micros.is_multiple_of(1000) {
        return Err(FieldError::new(
            field,
            format!("{value:?}: only durations to millisecond precision are supported"),
        ));
    }
    Ok(d)
}
