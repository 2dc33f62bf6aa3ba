//! How each outbound port of a proxy is served, decided once for the
//! listeners, the route configurations and the inbound side's collision
//! checks. Istio's Sidecar `egress` semantics:
//! - an egress listener with a `port` serves its hosts on that port only,
//!   and owns the port: the catch-all adds nothing to it;
//! - the egress listener without a port (or, without a Sidecar, every
//!   service) serves every other port;
//! - a listener is reached through capture (a `0.0.0.0_PORT` listener, or
//!   `BIND_PORT` with a `bind`, that `virtualOutbound` hands connections
//!   to), or Envoy binds it itself: `captureMode: NONE`, or any listener of
//!   a proxy without capture, at `bind`, else 127.0.0.1.
//!
//! A listener Envoy could not serve as written is skipped, with the reason,
//! rather than sent for Envoy to refuse.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use super::listener::RESERVED_PORTS;
use super::{names, ProxyShape};
use crate::model::sidecar::{CaptureMode, EgressBind, EgressListener, EgressPort};
use crate::model::{Interception, Protocol, Service, ServicePort, Snapshot};

/// One outbound listener: a port, the services it carries, and how the
/// application's connections reach it.
#[derive(Debug)]
pub struct OutboundPort<'a> {
    pub port: u16,
    /// Each service with its port as this listener serves it: an egress
    /// listener's declared protocol replaces the service port's.
    pub services: Vec<(&'a Service, Cow<'a, ServicePort>)>,
    pub reach: Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Not bound: `virtualOutbound` hands it connections whose original
    /// destination is this address (0.0.0.0: any) and the port.
    Captured(IpAddr),
    /// Envoy binds this address and the port; the application dials it.
    Bound(IpAddr),
}

impl OutboundPort<'_> {
    pub fn address(&self) -> IpAddr {
        match self.reach {
            Egress::Captured(ip) | Egress::Bound(ip) => ip,
        }
    }

    /// Istio's listener name, `ADDRESS_PORT`.
    pub fn listener_name(&self) -> String {
        names::bound_listener(self.address(), self.port)
    }

    pub fn captured(&self) -> bool {
        matches!(self.reach, Egress::Captured(_))
    }

    /// The services as the listener builders take them.
    pub fn service_refs(&self) -> Vec<(&Service, &ServicePort)> {
        self.services
            .iter()
            .map(|(s, p)| (*s, p.as_ref()))
            .collect()
    }
}

/// An egress listener left out, and why.
#[derive(Debug)]
pub struct Skipped<'a> {
    pub listener: &'a EgressListener,
    /// Under `spec.egress[i]`, e.g. `.bind`.
    pub field: &'static str,
    pub why: String,
}

/// Every outbound listener of the proxy, by port, and the egress listeners
/// skipped.
pub fn ports<'a>(
    snapshot: &'a Snapshot,
    shape: &ProxyShape,
) -> (Vec<OutboundPort<'a>>, Vec<Skipped<'a>>) {
    let captured = shape.interception != Interception::None;
    let listeners: &'a [EgressListener] = shape
        .scope(snapshot)
        .map(|s| s.egress.as_slice())
        .unwrap_or_default();
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    // A port an egress listener names is its own, also when it is skipped:
    // the user said what that port carries.
    let mut claimed = BTreeSet::new();
    for l in listeners {
        let Some(port) = &l.port else { continue };
        if port.number != 0 && !port.http_proxy {
            claimed.insert(port.number);
        }
        match port_listener(snapshot, shape, l, port, captured) {
            Ok(p) => out.push(p),
            Err((field, why)) => skipped.push(Skipped {
                listener: l,
                field,
                why,
            }),
        }
    }
    // Validation keeps the catch-all last. With egress listeners but no
    // catch-all, no other port is served.
    let catch_all = match listeners.last() {
        None => Some(None),
        Some(l) if l.port.is_none() => Some(Some(l)),
        Some(_) => None,
    };
    if let Some(catch_all) = catch_all {
        match catch_all_ports(snapshot, shape, catch_all, captured, &claimed) {
            Ok(ports) => out.extend(ports),
            Err((l, field, why)) => skipped.push(Skipped {
                listener: l,
                field,
                why,
            }),
        }
    }
    out.sort_by_key(|p| p.port);
    (out, skipped)
}

/// The names of the outbound listeners, for the inbound side to avoid.
pub fn listener_names(snapshot: &Snapshot, shape: &ProxyShape) -> BTreeSet<String> {
    ports(snapshot, shape)
        .0
        .iter()
        .map(OutboundPort::listener_name)
        .collect()
}

type Refusal = (&'static str, String);

fn port_listener<'a>(
    snapshot: &'a Snapshot,
    shape: &ProxyShape,
    l: &'a EgressListener,
    declared: &EgressPort,
    captured: bool,
) -> Result<OutboundPort<'a>, Refusal> {
    let port = declared.number;
    if declared.http_proxy {
        return Err((
            ".port.protocol",
            "HTTP_PROXY egress listeners are not supported yet; skipped".to_string(),
        ));
    }
    let bind = match &l.bind {
        Some(EgressBind::Unix(_)) => {
            return Err((
                ".bind",
                "unix domain socket egress listeners are not supported yet; skipped".to_string(),
            ))
        }
        Some(EgressBind::Ip(ip)) => Some(*ip),
        None => None,
    };
    if RESERVED_PORTS.contains(&port) {
        return Err((
            ".port.number",
            format!("port {port} is one of the sidecar's own ports ({RESERVED_PORTS:?}); skipped"),
        ));
    }
    if declared.protocol == Protocol::Udp {
        return Err((
            ".port.protocol",
            "UDP is not proxied by the sidecar; skipped".to_string(),
        ));
    }
    let reach = reach(shape, bind, l.capture, captured, port)?;
    if matches!(reach, Egress::Bound(_)) && shape.holds_port(port) {
        return Err((
            ".port.number",
            format!(
                "port {port} is the workload's own (served inbound, or where its \
                 application listens): Envoy could not bind it for outbound traffic; skipped"
            ),
        ));
    }
    let services: Vec<(&Service, Cow<ServicePort>)> = snapshot
        .services
        .values()
        .map(|s| s.as_ref())
        .filter(|s| l.imports(&s.key.namespace, &s.host))
        .filter_map(|s| {
            let p = s.port(port).filter(|p| p.protocol != Protocol::Udp)?;
            let p = match declared.protocol {
                Protocol::Unknown => Cow::Borrowed(p),
                protocol => Cow::Owned(ServicePort {
                    protocol,
                    ..p.clone()
                }),
            };
            Some((s, p))
        })
        .collect();
    if services.is_empty() {
        return Err((
            ".port.number",
            format!("no service its hosts import has port {port}: nothing to serve; skipped"),
        ));
    }
    Ok(OutboundPort {
        port,
        services,
        reach,
    })
}

/// The catch-all's services on every port no egress listener names (skipping
/// UDP and the sidecar's own ports). Bound, it leaves alone the ports the
/// inbound side holds, as outbound loopback listeners always have.
fn catch_all_ports<'a>(
    snapshot: &'a Snapshot,
    shape: &ProxyShape,
    l: Option<&'a EgressListener>,
    captured: bool,
    claimed: &BTreeSet<u16>,
) -> Result<Vec<OutboundPort<'a>>, (&'a EgressListener, &'static str, String)> {
    let mut by_port: BTreeMap<u16, Vec<(&Service, Cow<ServicePort>)>> = BTreeMap::new();
    for svc in snapshot
        .services
        .values()
        .map(|s| s.as_ref())
        .filter(|s| l.is_none_or(|l| l.imports(&s.key.namespace, &s.host)))
    {
        for port in &svc.ports {
            if port.protocol != Protocol::Udp
                && !RESERVED_PORTS.contains(&port.port)
                && !claimed.contains(&port.port)
            {
                by_port
                    .entry(port.port)
                    .or_default()
                    .push((svc, Cow::Borrowed(port)));
            }
        }
    }
    // Validation admits only an IP as the catch-all's bind.
    let bind = l.and_then(|l| match &l.bind {
        Some(EgressBind::Ip(ip)) => Some(*ip),
        _ => None,
    });
    let capture = l.map_or(CaptureMode::Default, |l| l.capture);
    let mut out = Vec::new();
    for (port, services) in by_port {
        let reach = match (reach(shape, bind, capture, captured, port), l) {
            (Ok(r), _) => r,
            // Only a `bind` fails, and only a Sidecar's catch-all has one.
            (Err((field, why)), Some(l)) => return Err((l, field, why)),
            (Err(_), None) => continue,
        };
        // The application's own ports are simply not served outbound.
        if matches!(reach, Egress::Bound(_)) && shape.holds_port(port) {
            continue;
        }
        out.push(OutboundPort {
            port,
            services,
            reach,
        });
    }
    Ok(out)
}

/// Istio's `bindToPort`: a proxy without capture binds every egress
/// listener (whatever its `captureMode`); with capture, `captureMode: NONE`
/// does. A bound listener without `bind` listens on 127.0.0.1.
fn reach(
    shape: &ProxyShape,
    bind: Option<IpAddr>,
    capture: CaptureMode,
    captured: bool,
    port: u16,
) -> Result<Egress, Refusal> {
    if captured && capture != CaptureMode::None {
        return Ok(Egress::Captured(
            bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ));
    }
    let ip = bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let local = ip.is_loopback() || ip.is_unspecified() || Some(ip) == shape.instance_ip;
    if !local {
        let own = shape
            .instance_ip
            .map_or("unknown".to_string(), |ip| ip.to_string());
        return Err((
            ".bind",
            format!(
                "bind {ip} is not this proxy's address ({own}): Envoy could not bind \
                 {ip}:{port}; skipped"
            ),
        ));
    }
    Ok(Egress::Bound(ip))
}
