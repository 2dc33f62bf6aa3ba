//! Istio's resource names, which users' dashboards and habits depend on.

use std::net::IpAddr;

use crate::model::Service;

pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Inbound traffic to ports no service declares, forwarded to the application.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The source address Envoy uses for inbound passthrough, which the capture
/// rules exempt so the forwarded connection is not captured again.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";

/// `outbound|PORT|SUBSET|HOST`; the subset is empty until DestinationRules.
pub fn outbound_cluster(port: u16, subset: &str, host: &str) -> String {
    // By hand, not `format!`: this is built for every service in every
    // proxy's clusters, listeners, routes and load assignments, and the
    // formatting machinery was a sixth of translation.
    let mut name = String::with_capacity(16 + subset.len() + host.len());
    name.push_str("outbound|");
    push_decimal(&mut name, port.into());
    name.push('|');
    name.push_str(subset);
    name.push('|');
    name.push_str(host);
    name
}

/// `HOST:PORT`, as virtual hosts are named (by hand, as above).
pub fn host_port(host: &str, port: u16) -> String {
    let mut name = String::with_capacity(6 + host.len());
    name.push_str(host);
    name.push(':');
    push_decimal(&mut name, port.into());
    name
}

fn push_decimal(text: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    text.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// The EDS name of a cluster's load assignment relative to a proxy
/// locality (`CLUSTER~region/zone/subzone[~...]`, see `locality::Variant`).
/// `~` appears in no cluster name, host or locality label value, so the
/// name cannot collide with a plain cluster name.
pub fn eds_variant(cluster: &str, variant: &super::locality::Variant) -> String {
    format!("{cluster}~{variant}")
}

/// `inbound|PORT||`, named by the port the application listens on.
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}

/// Route configurations are named by port, as Istio names them.
pub fn route_config(port: u16) -> String {
    port.to_string()
}

/// A listener at an address and port, Istio's `BIND_PORT`: outbound
/// (`0.0.0.0_PORT` under capture, `127.0.0.1_PORT` bound on loopback) or
/// an inbound one that binds its port.
pub fn bound_listener(bind: std::net::IpAddr, port: u16) -> String {
    format!("{bind}_{port}")
}

/// Every name a client may use for a service, as Istio's virtual hosts answer:
/// the FQDN, `name.ns.svc`, `name.ns`, the bare name (only from the same
/// namespace, where it resolves), and the cluster IP.
pub fn host_aliases(svc: &Service, client_namespace: &str) -> Vec<String> {
    let key = &svc.key;
    let mut names = vec![svc.hostname()];
    // Kubernetes DNS search paths make these resolve to a Service; a
    // ServiceEntry host is only ever its own name.
    if !svc.from_service_entry {
        names.push([&key.name, ".", &key.namespace, ".svc"].concat());
        names.push([&key.name, ".", &key.namespace].concat());
        if key.namespace == client_namespace {
            names.push(key.name.clone());
        }
    }
    if let Some(vip) = svc.vip {
        names.push(ip_text(vip));
    }
    names
}
/// An address as `IpAddr`'s `Display` writes it. IPv4 is written by hand:
/// translation writes one per endpoint and per service address, and each
/// `Display` call took ~1,400 instructions (half of EDS translation).
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        push_decimal(&mut text, octet.into());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_writes_what_display_writes() {
        let mut samples: Vec<IpAddr> = [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255]
            .iter()
            .flat_map(|&a| [0u8, 7, 10, 255].map(|b| IpAddr::from([a, b, 100 - a / 3, 255 - a])))
            .collect();
        samples.push("::1".parse().unwrap());
        samples.push("fd00::10:0:0:1".parse().unwrap());
        for ip in samples {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn names_written_by_hand_are_what_format_writes() {
        for port in [0u16, 7, 10, 80, 443, 8080, 9999, 10000, 65535] {
            assert_eq!(
                outbound_cluster(port, "v1", "web.demo.svc.cluster.local"),
                format!("outbound|{port}|v1|web.demo.svc.cluster.local")
            );
            assert_eq!(host_port("web", port), format!("web:{port}"));
        }
        assert_eq!(outbound_cluster(80, "", "h"), "outbound|80||h");
    }
}
