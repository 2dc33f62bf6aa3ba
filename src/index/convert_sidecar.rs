//! Sidecar `ingress` listeners to the model. Called only on validated
//! objects: ports, addresses and endpoints already have Istio's forms.

use std::net::IpAddr;

use crate::api::networking::selector::Protocol as ApiProtocol;
use crate::api::networking::sidecar::{
    CaptureMode as ApiCapture, IstioIngressListener, ServerTlsMode as ApiTlsMode,
    ServerTlsSettings, TlsProtocol,
};
use crate::api::networking::Sidecar as ApiSidecar;
use crate::model::sidecar::{
    CaptureMode, DefaultEndpoint, IngressListener, ServerTls, ServerTlsMode, TlsVersion,
};
use crate::model::Protocol;

use super::convert_policy::connection_pool;

pub fn ingress(sc: &ApiSidecar) -> Vec<IngressListener> {
    warn_unsupported_egress(sc);
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
        capture: match l.capture_mode.unwrap_or_default() {
            ApiCapture::Default => CaptureMode::Default,
            ApiCapture::Iptables => CaptureMode::Iptables,
            ApiCapture::None => CaptureMode::None,
        },
        endpoint: l
            .default_endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
            .map_or(DefaultEndpoint::OriginalDestination, endpoint),
        tls: l.tls.as_ref().and_then(server_tls),
        connection_pool: l.connection_pool.as_ref().map(connection_pool),
    })
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

/// Egress listeners are flattened into one set of imported hosts: a port,
/// bind or capture mode on one is not honoured. Said once per change of
/// the Sidecar, so the broader import is never silent.
fn warn_unsupported_egress(sc: &ApiSidecar) {
    let name = format!(
        "{}/{}",
        sc.metadata.namespace.as_deref().unwrap_or("default"),
        sc.metadata.name.as_deref().unwrap_or_default()
    );
    for (i, e) in sc.spec.egress.iter().enumerate() {
        let fields = [
            ("port", e.port.is_some()),
            ("bind", e.bind.as_deref().is_some_and(|b| !b.is_empty())),
            (
                "captureMode",
                e.capture_mode.is_some_and(|c| c != ApiCapture::Default),
            ),
        ];
        for (field, _) in fields.iter().filter(|(_, set)| *set) {
            tracing::warn!(
                sidecar = %name,
                field = %format!("spec.egress[{i}].{field}"),
                "not supported yet: ignored; this egress listener's hosts are imported on \
                 every port, through the proxy's usual outbound listeners"
            );
        }
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
    fn unset_protocol_is_sniffed() {
        assert_eq!(protocol(None), Protocol::Unknown);
        assert_eq!(protocol(Some("grpc")), Protocol::Grpc);
    }
}
