//! Sidecar `ingress` and `egress` listeners to the model. Called only on
//! validated objects: ports, addresses and endpoints already have Istio's
//! forms.

use std::net::IpAddr;

use crate::api::networking::selector::Protocol as ApiProtocol;
use crate::api::networking::sidecar::{
    CaptureMode as ApiCapture, IstioEgressListener, IstioIngressListener,
    ServerTlsMode as ApiTlsMode, ServerTlsSettings, TlsProtocol,
};
use crate::api::networking::Sidecar as ApiSidecar;
use crate::model::sidecar::{
    CaptureMode, DefaultEndpoint, EgressBind, EgressHost, EgressListener, EgressPort,
    IngressListener, NamespacePattern, ServerTls, ServerTlsMode, TlsVersion,
};
use crate::model::Protocol;

use super::convert_policy::connection_pool;

pub fn ingress(sc: &ApiSidecar) -> Vec<IngressListener> {
    sc.spec
        .ingress
        .iter()
        .enumerate()
        .filter_map(|(index, l)| listener(index, l))
        .collect()
}

fn listener(index: usize, l: &IstioIngressListener) -> Option<IngressListener> {
    // Validation admits only 1..=65535.
    let port = u16::try_from(l.port.number?).ok()?;
    Some(IngressListener {
        index,
        port,
        protocol: protocol(l.port.protocol.as_deref()),
        name: l.port.name.clone().unwrap_or_default(),
        bind: l.bind.as_deref().and_then(|b| b.parse::<IpAddr>().ok()),
        capture: capture(l.capture_mode),
        endpoint: l
            .default_endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
            .map_or(DefaultEndpoint::OriginalDestination, endpoint),
        tls: l.tls.as_ref().and_then(server_tls),
        connection_pool: l.connection_pool.as_ref().map(connection_pool),
    })
}

/// `egress` in order; `.` in a host is the Sidecar's own namespace.
pub fn egress(sc: &ApiSidecar, namespace: &str) -> Vec<EgressListener> {
    sc.spec
        .egress
        .iter()
        .enumerate()
        .map(|(index, e)| egress_listener(index, e, namespace))
        .collect()
}

fn egress_listener(index: usize, e: &IstioEgressListener, namespace: &str) -> EgressListener {
    let hosts = e
        .hosts
        .iter()
        .filter_map(|h| {
            let (n, host) = h.split_once('/')?;
            let namespace = match n {
                "*" => NamespacePattern::Any,
                "." => NamespacePattern::Named(namespace.to_string()),
                "~" => NamespacePattern::None,
                other => NamespacePattern::Named(other.to_string()),
            };
            Some(EgressHost {
                namespace,
                host: host.to_string(),
            })
        })
        .collect();
    let port = e.port.as_ref().map(|p| EgressPort {
        // Validation admits only 0..=65535.
        number: p.number.and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
        protocol: protocol(p.protocol.as_deref()),
        http_proxy: p.protocol.as_deref().and_then(ApiProtocol::parse)
            == Some(ApiProtocol::HttpProxy),
        name: p.name.clone().unwrap_or_default(),
    });
    let bind = e.bind.as_deref().filter(|b| !b.is_empty()).and_then(|b| {
        match b.strip_prefix(crate::api::networking::selector::UNIX_PREFIX) {
            Some(path) => Some(EgressBind::Unix(path.to_string())),
            None => b.parse().ok().map(EgressBind::Ip),
        }
    });
    EgressListener {
        index,
        hosts,
        port,
        bind,
        capture: capture(e.capture_mode),
    }
}

fn capture(mode: Option<ApiCapture>) -> CaptureMode {
    match mode.unwrap_or_default() {
        ApiCapture::Default => CaptureMode::Default,
        ApiCapture::Iptables => CaptureMode::Iptables,
        ApiCapture::None => CaptureMode::None,
    }
}

/// An unset protocol is sniffed, as for an unnamed Service port.
/// `HTTP_PROXY` is plain HTTP on the receiving side.
fn protocol(name: Option<&str>) -> Protocol {
    let Some(p) = name.and_then(ApiProtocol::parse) else {
        return Protocol::Unknown;
    };
    match p {
        ApiProtocol::Tcp => Protocol::Tcp,
        ApiProtocol::Udp => Protocol::Udp,
        ApiProtocol::Grpc => Protocol::Grpc,
        ApiProtocol::GrpcWeb => Protocol::GrpcWeb,
        ApiProtocol::Http | ApiProtocol::HttpProxy => Protocol::Http,
        ApiProtocol::Http2 => Protocol::Http2,
        ApiProtocol::Https => Protocol::Https,
        ApiProtocol::Tls => Protocol::Tls,
        ApiProtocol::Mongo => Protocol::Mongo,
        ApiProtocol::Redis => Protocol::Redis,
        ApiProtocol::MySql => Protocol::Mysql,
    }
}

/// `127.0.0.1:P`/`[::1]:P` (loopback), `0.0.0.0:P`/`[::]:P` (the instance
/// IP) or `unix://PATH`. `:P` (no host) is read as the instance IP too: the
/// address the connection came to, at P.
fn endpoint(e: &str) -> DefaultEndpoint {
    if let Some(path) = e.strip_prefix(crate::api::networking::selector::UNIX_PREFIX) {
        return DefaultEndpoint::Unix(path.to_string());
    }
    let (host, port) = e.rsplit_once(':').unwrap_or(("", e));
    let port = port.parse().unwrap_or(0);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => DefaultEndpoint::Loopback { ip, port },
        _ => DefaultEndpoint::InstanceIp { port },
    }
}

/// PASSTHROUGH (the default mode) terminates nothing: the port's TLS goes
/// to the application as it came.
fn server_tls(t: &ServerTlsSettings) -> Option<ServerTls> {
    let mode = match t.mode.unwrap_or_default() {
        ApiTlsMode::Simple => ServerTlsMode::Simple,
        ApiTlsMode::Mutual => ServerTlsMode::Mutual,
        ApiTlsMode::OptionalMutual => ServerTlsMode::OptionalMutual,
        // Refused by validation for sidecars (ISTIO_MUTUAL, AUTO_PASSTHROUGH).
        _ => return None,
    };
    let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    Some(ServerTls {
        mode,
        server_certificate: set(&t.server_certificate)?,
        private_key: set(&t.private_key)?,
        ca_certificates: set(&t.ca_certificates),
        ca_crl: set(&t.ca_crl),
        verify_certificate_spki: t.verify_certificate_spki.clone(),
        verify_certificate_hash: t.verify_certificate_hash.clone(),
        min_protocol_version: t.min_protocol_version.map(version),
        max_protocol_version: t.max_protocol_version.map(version),
        cipher_suites: t.cipher_suites.clone(),
    })
}

fn version(v: TlsProtocol) -> TlsVersion {
    match v {
        TlsProtocol::TlsAuto => TlsVersion::Auto,
        TlsProtocol::TlsV1_0 => TlsVersion::V1_0,
        TlsProtocol::TlsV1_1 => TlsVersion::V1_1,
        TlsProtocol::TlsV1_2 => TlsVersion::V1_2,
        TlsProtocol::TlsV1_3 => TlsVersion::V1_3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(yaml: &str) -> ApiSidecar {
        let doc = format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s, namespace: demo}}\nspec:\n{yaml}"
        );
        let sc: ApiSidecar = serde_yaml::from_str(&doc).expect("a Sidecar");
        crate::api::networking::sidecar::validate(&sc.spec).expect("a valid Sidecar");
        sc
    }

    #[test]
    fn endpoints_take_istio_forms() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let cases = [
            (
                "127.0.0.1:8080",
                DefaultEndpoint::Loopback {
                    ip: Ipv4Addr::LOCALHOST.into(),
                    port: 8080,
                },
            ),
            (
                "[::1]:81",
                DefaultEndpoint::Loopback {
                    ip: Ipv6Addr::LOCALHOST.into(),
                    port: 81,
                },
            ),
            ("0.0.0.0:9000", DefaultEndpoint::InstanceIp { port: 9000 }),
            ("[::]:9001", DefaultEndpoint::InstanceIp { port: 9001 }),
            (
                "unix:///var/run/app.sock",
                DefaultEndpoint::Unix("/var/run/app.sock".into()),
            ),
            (
                "unix://@abstract",
                DefaultEndpoint::Unix("@abstract".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(endpoint(text), want, "{text}");
        }
    }

    #[test]
    fn listeners_keep_port_protocol_capture_tls_and_pool() {
        let sc = sidecar(concat!(
            "  ingress:\n",
            "  - port: {number: 9080, protocol: HTTP_PROXY, name: web}\n",
            "    captureMode: NONE\n    bind: 198.18.0.7\n",
            "    connectionPool: {tcp: {maxConnections: 7}}\n",
            "  - port: {number: 8443, protocol: HTTPS}\n",
            "    defaultEndpoint: 127.0.0.1:8080\n",
            "    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, minProtocolVersion: TLSV1_2}\n",
            "  - port: {number: 9443, protocol: TLS}\n",
            "    tls: {mode: PASSTHROUGH}\n",
        ));
        let got = ingress(&sc);
        assert_eq!(got.len(), 3);
        let (web, https, passthrough) = (&got[0], &got[1], &got[2]);
        assert_eq!(
            (web.port, web.protocol, web.capture, web.index),
            (9080, Protocol::Http, CaptureMode::None, 0)
        );
        assert_eq!(web.bind, Some("198.18.0.7".parse().unwrap()));
        assert_eq!(web.endpoint, DefaultEndpoint::OriginalDestination);
        assert_eq!(
            web.connection_pool.as_ref().and_then(|p| p.max_connections),
            Some(7)
        );
        let tls = https.tls.as_ref().expect("MUTUAL terminates");
        assert_eq!(tls.mode, ServerTlsMode::Mutual);
        assert_eq!(tls.ca_certificates.as_deref(), Some("/ca.pem"));
        assert_eq!(tls.min_protocol_version, Some(TlsVersion::V1_2));
        assert_eq!(https.protocol, Protocol::Https);
        assert!(passthrough.tls.is_none(), "PASSTHROUGH terminates nothing");
    }

    #[test]
    fn egress_listeners_keep_port_bind_and_capture() {
        let sc = sidecar(concat!(
            "  egress:\n",
            "  - port: {number: 9000, protocol: HTTP, name: web}\n",
            "    captureMode: NONE\n    hosts: [./svc-a.demo.svc.cluster.local]\n",
            "  - port: {number: 0}\n    bind: unix:///var/run/egress.sock\n",
            "    hosts: ['*/*']\n",
            "  - port: {number: 3128, protocol: HTTP_PROXY}\n    bind: 127.0.0.2\n",
            "    hosts: ['*/*']\n",
            "  - hosts: ['~/*']\n",
        ));
        let got = egress(&sc, "demo");
        assert_eq!(got.len(), 4);
        let web = &got[0];
        let port = web.port.as_ref().expect("a port");
        assert_eq!((port.number, port.protocol), (9000, Protocol::Http));
        assert_eq!((web.capture, web.bind.as_ref()), (CaptureMode::None, None));
        assert_eq!(web.port_match(), Some(9000));
        assert!(web.imports_port("demo", "svc-a.demo.svc.cluster.local", 9000));
        assert!(!web.imports_port("demo", "svc-a.demo.svc.cluster.local", 80));
        assert!(!web.imports_port("other", "svc-a.demo.svc.cluster.local", 9000));
        let uds = &got[1];
        assert_eq!(
            uds.bind,
            Some(EgressBind::Unix("/var/run/egress.sock".into()))
        );
        assert_eq!(uds.port_match(), None, "a socket imports every port");
        let proxy = &got[2];
        assert!(proxy.port.as_ref().is_some_and(|p| p.http_proxy));
        assert_eq!(proxy.port_match(), None, "HTTP_PROXY imports every port");
        assert_eq!(
            proxy.bind,
            Some(EgressBind::Ip("127.0.0.2".parse().unwrap()))
        );
        assert!(got[3].port.is_none());
        assert_eq!(got[3].index, 3);
    }

    #[test]
    fn unset_protocol_is_sniffed() {
        assert_eq!(protocol(None), Protocol::Unknown);
        assert_eq!(protocol(Some("grpc")), Protocol::Grpc);
    }
}
