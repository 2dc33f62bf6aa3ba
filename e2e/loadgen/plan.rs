//! The address and naming plan shared by the mesh writer, the churn driver and
//! the simulated proxies. Everything lives in 198.18.0.0/15 (RFC 2544's
//! benchmark range), so nothing here can reach a real network.
//!
//! | range                         | use                                     |
//! |-------------------------------|-----------------------------------------|
//! | 198.18.0.0 - 198.19.127.255   | service VIPs, then endpoint addresses   |
//! | 198.19.128.0/18               | the simulated proxies' own pod IPs      |
//! | 198.19.192.0/18               | endpoint addresses churn introduces     |
//!
//! A churned endpoint address *is* its change id (198.19.192.0 + id), a
//! churned service port is 20000 + id, and a VirtualService edit adds an HTTP
//! route named `change-<id>`, so a proxy can tell which change a resource
//! carries without any side channel; only the change's timestamp comes from
//! the changes log.

use std::net::Ipv4Addr;

const BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// VIPs and endpoints: 198.18.0.0 up to 198.19.127.255.
const MESH_SPACE: u32 = 96 * 1024;
const PROXY_BASE: u32 = MESH_SPACE;
pub const MAX_PROXIES: u32 = 16 * 1024;
const CHANGE_BASE: u32 = PROXY_BASE + MAX_PROXIES;
/// Change ids run 1..=MAX_CHANGE_ID (0 is never used, so a zero is "none").
pub const MAX_CHANGE_ID: u32 = 16 * 1024 - 1;
const CHANGE_PORT_BASE: u32 = 20000;
const CHANGE_ROUTE_PREFIX: &str = "change-";

/// The port every service serves HTTP on; every 10th also serves TCP_PORT.
pub const HTTP_PORT: u16 = 8080;
pub const TCP_PORT: u16 = 9090;

fn addr(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(BASE + index)
}

/// Fails when `services` VIPs plus `services * endpoints` addresses do not fit.
pub fn check_mesh_fits(services: u32, endpoints: u32) -> Result<(), String> {
    let needed = u64::from(services) * (1 + u64::from(endpoints));
    if needed > u64::from(MESH_SPACE) {
        return Err(format!(
            "{services} services x (1 VIP + {endpoints} endpoints) = {needed} addresses, \
             but the plan has {MESH_SPACE} (198.18.0.0-198.19.127.255); use fewer endpoints per service"
        ));
    }
    Ok(())
}

pub fn vip(service: u32) -> Ipv4Addr {
    addr(service)
}

/// The original address of endpoint `slot` of `service`, laid out after all VIPs.
pub fn endpoint(services: u32, per_service: u32, service: u32, slot: u32) -> Ipv4Addr {
    addr(services + service * per_service + slot)
}

pub fn proxy_ip(proxy: u32) -> Result<Ipv4Addr, String> {
    if proxy >= MAX_PROXIES {
        return Err(format!(
            "at most {MAX_PROXIES} proxies fit the address plan"
        ));
    }
    Ok(addr(PROXY_BASE + proxy))
}

pub fn change_address(id: u32) -> Ipv4Addr {
    debug_assert!((1..=MAX_CHANGE_ID).contains(&id));
    addr(CHANGE_BASE + id)
}

pub fn change_id_of_address(ip: Ipv4Addr) -> Option<u32> {
    let index = u32::from(ip).checked_sub(BASE + CHANGE_BASE)?;
    (1..=MAX_CHANGE_ID).contains(&index).then_some(index)
}

pub fn change_port(id: u32) -> u16 {
    // MAX_CHANGE_ID + 20000 < 65536, checked by the test below.
    (CHANGE_PORT_BASE + id) as u16
}

pub fn change_id_of_port(port: u32) -> Option<u32> {
    let id = port.checked_sub(CHANGE_PORT_BASE)?;
    (1..=MAX_CHANGE_ID).contains(&id).then_some(id)
}

/// The name of the HTTP route a VirtualService edit adds (Istio's
/// `HTTPRoute.name`; Rudder gives the Envoy route the same name). The churn
/// driver writes it and the proxies read it back, so both use this format.
pub fn change_route_name(id: u32) -> String {
    debug_assert!((1..=MAX_CHANGE_ID).contains(&id));
    format!("{CHANGE_ROUTE_PREFIX}{id}")
}

/// The change id in a route name written by `change_route_name`; None for
/// any other name (the mesh's own routes, or "change-007").
pub fn change_id_of_route_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(CHANGE_ROUTE_PREFIX)?;
    let id: u32 = digits.parse().ok()?;
    // Only the exact spelling counts ("+7" and "07" parse as 7 too).
    let exact = (1..=MAX_CHANGE_ID).contains(&id) && digits == id.to_string();
    exact.then_some(id)
}

pub fn service_name(service: u32) -> String {
    format!("svc-{service}")
}

pub fn namespace_name(namespace: u32) -> String {
    format!("ns-{namespace}")
}

/// Services are spread round-robin over namespaces.
pub fn namespace_of(service: u32, namespaces: u32) -> u32 {
    service % namespaces.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_do_not_overlap_and_ids_round_trip() {
        assert_eq!(vip(0).to_string(), "198.18.0.0");
        assert_eq!(proxy_ip(0).unwrap().to_string(), "198.19.128.0");
        assert_eq!(change_address(1).to_string(), "198.19.192.1");
        assert_eq!(change_address(MAX_CHANGE_ID).to_string(), "198.19.255.255");
        assert_eq!(change_id_of_address(change_address(77)), Some(77));
        assert_eq!(
            change_id_of_address(proxy_ip(MAX_PROXIES - 1).unwrap()),
            None
        );
        assert_eq!(
            change_id_of_port(u32::from(change_port(MAX_CHANGE_ID))),
            Some(MAX_CHANGE_ID)
        );
        assert_eq!(change_id_of_port(u32::from(HTTP_PORT)), None);
        assert_eq!(change_route_name(12), "change-12");
        assert_eq!(change_id_of_route_name(&change_route_name(12)), Some(12));
        for other in [
            "svc-1.ns-1#0",
            "change-",
            "change-0",
            "change-012",
            "change-+12",
            "change-99999",
        ] {
            assert_eq!(change_id_of_route_name(other), None, "{other}");
        }
        assert!(check_mesh_fits(10_000, 8).is_ok());
        assert!(check_mesh_fits(10_000, 10).is_err());
        let last = endpoint(1000, 10, 999, 9);
        assert!(u32::from(last) < u32::from(proxy_ip(0).unwrap()));
    }
}
