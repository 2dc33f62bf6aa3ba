//! How each inbound port of a proxy is received, decided once for the
//! listeners and the clusters alike: as a chain of the capture listener
//! `virtualInbound`, on a listener that binds the port itself (Istio's
//! `captureMode: NONE`, or any Sidecar ingress port of a proxy without
//! capture), or not by Envoy at all. A Sidecar ingress port Envoy cannot
//! serve as asked is skipped, with the reason, rather than sent for Envoy
//! to refuse.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::listener::RESERVED_PORTS;
use super::shape::InboundPort;
use super::ProxyShape;
use crate::model::security::MtlsMode;
use crate::model::sidecar::{CaptureMode, DefaultEndpoint, IngressListener, ServerTls};
use crate::model::{Interception, Protocol, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A filter chain of `virtualInbound`, matched by destination port.
    Captured,
    /// A listener of its own, bound at this address and the port.
    Bound(IpAddr),
    /// No listener: a Service port of a proxy without capture, where the
    /// application takes its traffic directly.
    Unserved,
}

/// Every inbound port with how it is reached, or why it cannot be.
pub fn ports<'a>(
    snapshot: &Snapshot,
    shape: &'a ProxyShape,
) -> Vec<(u16, &'a InboundPort, Result<Reach, String>)> {
    let captured = shape.interception != Interception::None;
    // A bound ingress listener is named as Istio names it, `BIND_PORT`,
    // which an outbound listener may already be (`0.0.0.0_PORT`, say).
    let outbound = super::egress::listener_names(snapshot, shape);
    shape
        .inbound
        .iter()
        .map(|(&port, inbound)| {
            let reach = match &inbound.listener {
                None if captured => Ok(Reach::Captured),
                None => Ok(Reach::Unserved),
                Some(l) => ingress(l, captured, &outbound, shape.instance_ip),
            };
            (port, inbound, reach)
        })
        .collect()
}

/// The TLS the proxy terminates on an inbound port. Istio applies an
/// ingress listener's `tls` only where PeerAuthentication disables mesh
/// mTLS for the port: elsewhere mesh mTLS owns it, and `tls` is ignored.
pub fn terminated_tls<'a>(
    shape: &ProxyShape,
    port: u16,
    inbound: &'a InboundPort,
) -> Option<&'a ServerTls> {
    let tls = inbound.listener.as_ref()?.tls.as_ref()?;
    (shape.inbound_mtls.at(port) == MtlsMode::Disable).then_some(tls)
}

/// What the application receives on an inbound port: plaintext behind
/// terminated TLS (Istio's `AfterTLSTermination`), else the port's protocol.
pub fn app_protocol(shape: &ProxyShape, port: u16, inbound: &InboundPort) -> Protocol {
    match (terminated_tls(shape, port, inbound), inbound.protocol) {
        (Some(_), Protocol::Https) => Protocol::Http,
        (Some(_), Protocol::Tls) => Protocol::Tcp,
        (_, protocol) => protocol,
    }
}

/// Istio's rules for one ingress listener (`getBindToPort`, `CanBindToPort`),
/// plus the cases where Envoy would refuse the listener or loop.
fn ingress(
    l: &IngressListener,
    captured: bool,
    outbound: &BTreeSet<String>,
    instance_ip: Option<IpAddr>,
) -> Result<Reach, String> {
    let port = l.port;
    if RESERVED_PORTS.contains(&port) {
        return Err(format!(
            "port {port} is one of the sidecar's own ports ({RESERVED_PORTS:?}); skipped"
        ));
    }
    if l.protocol == Protocol::Udp {
        return Err("UDP is not proxied by the sidecar; skipped".to_string());
    }
    let binds = match l.capture {
        CaptureMode::None => true,
        CaptureMode::Default => !captured,
        CaptureMode::Iptables if captured => false,
        CaptureMode::Iptables => {
            return Err(
                "captureMode IPTABLES, but this proxy's traffic is not captured \
                 (interception NONE); skipped"
                    .to_string(),
            )
        }
    };
    if !binds {
        return Ok(Reach::Captured);
    }
    let bind = l.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match l.endpoint {
        DefaultEndpoint::OriginalDestination => {
            return Err(format!(
                "the listener binds port {port} itself (no capture), so it needs a \
                 defaultEndpoint: its original destination is the listener; skipped"
            ))
        }
        DefaultEndpoint::Loopback { port: to, .. }
            if to == port && (bind.is_unspecified() || bind.is_loopback()) =>
        {
            return Err(format!(
                "defaultEndpoint is the listener's own address ({bind}:{port}); skipped"
            ))
        }
        _ => {}
    }
    // Envoy cannot bind an address the pod does not have.
    let local = bind.is_unspecified() || bind.is_loopback() || Some(bind) == instance_ip;
    if !local {
        let own = instance_ip.map_or("unknown".to_string(), |ip| ip.to_string());
        return Err(format!(
            "bind {bind} is not this proxy's address ({own}): Envoy could not bind \
             {bind}:{port}; skipped"
        ));
    }
    if outbound.contains(&super::names::bound_listener(bind, port)) {
        return Err(format!(
            "a listener bound at {bind}:{port} would collide with the outbound listener \
             of service port {port}; set `bind` to the pod's IP, or use another port; skipped"
        ));
    }
    Ok(Reach::Bound(bind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(port: u16, capture: CaptureMode, endpoint: DefaultEndpoint) -> IngressListener {
        IngressListener {
            index: 0,
            port,
            protocol: Protocol::Http,
            name: String::new(),
            bind: None,
            capture,
            endpoint,
            tls: None,
            connection_pool: None,
        }
    }

    fn loopback(port: u16) -> DefaultEndpoint {
        DefaultEndpoint::Loopback {
            ip: Ipv4Addr::LOCALHOST.into(),
            port,
        }
    }

    #[test]
    fn capture_mode_decides_chain_or_own_listener() {
        let none = BTreeSet::new();
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let cases = [
            (CaptureMode::Default, true, Ok(Reach::Captured)),
            (CaptureMode::Default, false, Ok(Reach::Bound(any))),
            (CaptureMode::Iptables, true, Ok(Reach::Captured)),
            (CaptureMode::None, true, Ok(Reach::Bound(any))),
            (CaptureMode::None, false, Ok(Reach::Bound(any))),
        ];
        for (mode, captured, want) in cases {
            let l = listener(9080, mode, loopback(8080));
            assert_eq!(
                ingress(&l, captured, &none, None),
                want,
                "{mode:?} {captured}"
            );
        }
        let l = listener(9080, CaptureMode::Iptables, loopback(8080));
        assert!(ingress(&l, false, &none, None)
            .unwrap_err()
            .contains("IPTABLES"));
    }

    #[test]
    fn listeners_envoy_would_refuse_or_loop_are_skipped() {
        let none = BTreeSet::new();
        let skipped = |l: IngressListener, outbound: &BTreeSet<String>| {
            ingress(&l, true, outbound, None).expect_err("skipped")
        };
        let own = listener(15006, CaptureMode::Default, loopback(8080));
        assert!(skipped(own, &none).contains("sidecar's own"));
        let mut udp = listener(53, CaptureMode::Default, loopback(53));
        udp.protocol = Protocol::Udp;
        assert!(skipped(udp, &none).contains("UDP"));
        let loops = listener(
            9080,
            CaptureMode::None,
            DefaultEndpoint::OriginalDestination,
        );
        assert!(skipped(loops, &none).contains("needs a defaultEndpoint"));
        let itself = listener(9080, CaptureMode::None, loopback(9080));
        assert!(skipped(itself, &none).contains("own address"));
        let outbound = BTreeSet::from(["0.0.0.0_9080".to_string()]);
        let collides = listener(9080, CaptureMode::None, loopback(8080));
        assert!(skipped(collides, &outbound).contains("collide"));
        // Bound to the pod's own address, it no longer collides.
        let mut pod_ip = listener(9080, CaptureMode::None, loopback(9080));
        let ip: IpAddr = "198.18.0.7".parse().unwrap();
        pod_ip.bind = Some(ip);
        assert_eq!(
            ingress(&pod_ip, true, &outbound, Some(ip)),
            Ok(Reach::Bound(ip))
        );
        // An address the pod does not have cannot be bound.
        let other = Some("198.18.0.8".parse().unwrap());
        let err = ingress(&pod_ip, true, &outbound, other).unwrap_err();
        assert!(err.contains("not this proxy's address"), "{err}");
    }
}
