//! TLS a sidecar terminates for clients outside the mesh (a Sidecar
//! `ingress[].tls`): the certificate, key and client CA are files the proxy
//! reads, as in Istio without its agent.

use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, tls_parameters::TlsProtocol,
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, TlsCertificate,
    TlsParameters,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;

use super::policy::file_source;
use crate::model::sidecar::{ServerTls, ServerTlsMode, TlsVersion};

/// The cipher suite names Envoy's TLS stack knows (Istio's list); any other
/// would make Envoy refuse the listener.
const KNOWN_CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// The downstream TLS socket for `tls`; `http` offers h2 and http/1.1 by
/// ALPN, as Istio does for HTTP ports. Unknown cipher suites are dropped
/// (Istio: a validation warning), and returned for the caller to report.
pub fn socket(tls: &ServerTls, http: bool) -> (TransportSocket, Vec<String>) {
    let (ciphers, unknown): (Vec<String>, Vec<String>) = tls
        .cipher_suites
        .iter()
        .cloned()
        .partition(|c| KNOWN_CIPHER_SUITES.contains(&c.as_str()));
    let version = |v: Option<TlsVersion>| v.map_or(TlsProtocol::TlsAuto, protocol) as i32;
    let mut common = CommonTlsContext {
        tls_certificates: vec![TlsCertificate {
            certificate_chain: Some(file_source(&tls.server_certificate)),
            private_key: Some(file_source(&tls.private_key)),
            ..Default::default()
        }],
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: version(tls.min_protocol_version),
            tls_maximum_protocol_version: version(tls.max_protocol_version),
            cipher_suites: ciphers,
            ..Default::default()
        }),
        alpn_protocols: if http {
            vec!["h2".to_string(), "http/1.1".to_string()]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let verifies = tls.mode != ServerTlsMode::Simple;
    if verifies {
        common.validation_context_type = Some(ValidationContextType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: tls.ca_certificates.as_deref().map(file_source),
                crl: tls.ca_crl.as_deref().map(file_source),
                verify_certificate_spki: tls.verify_certificate_spki.clone(),
                verify_certificate_hash: tls.verify_certificate_hash.clone(),
                ..Default::default()
            },
        ));
    }
    let context = DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue {
            value: tls.mode == ServerTlsMode::Mutual,
        }),
        ..Default::default()
    };
    let socket = TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    };
    (socket, unknown)
}

fn protocol(v: TlsVersion) -> TlsProtocol {
    match v {
        TlsVersion::Auto => TlsProtocol::TlsAuto,
        TlsVersion::V1_0 => TlsProtocol::TlSv10,
        TlsVersion::V1_1 => TlsProtocol::TlSv11,
        TlsVersion::V1_2 => TlsProtocol::TlSv12,
        TlsVersion::V1_3 => TlsProtocol::TlSv13,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
    use prost::Message;

    fn tls(mode: ServerTlsMode) -> ServerTls {
        ServerTls {
            mode,
            server_certificate: "/etc/certs/cert.pem".into(),
            private_key: "/etc/certs/key.pem".into(),
            ca_certificates: Some("/etc/certs/ca.pem".into()),
            ca_crl: None,
            verify_certificate_spki: Vec::new(),
            verify_certificate_hash: Vec::new(),
            min_protocol_version: Some(TlsVersion::V1_2),
            max_protocol_version: None,
            cipher_suites: vec!["ECDHE-RSA-AES128-GCM-SHA256".into(), "NOT-A-CIPHER".into()],
        }
    }

    fn context(socket: &TransportSocket) -> DownstreamTlsContext {
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
            panic!("no typed config");
        };
        DownstreamTlsContext::decode(any.value.as_slice()).unwrap()
    }

    #[test]
    fn mutual_requires_and_verifies_the_client() {
        let (socket, unknown) = socket(&tls(ServerTlsMode::Mutual), true);
        assert_eq!(unknown, ["NOT-A-CIPHER"]);
        let ctx = context(&socket);
        assert_eq!(
            ctx.require_client_certificate,
            Some(BoolValue { value: true })
        );
        let common = ctx.common_tls_context.unwrap();
        assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
        let params = common.tls_params.unwrap();
        assert_eq!(params.cipher_suites, ["ECDHE-RSA-AES128-GCM-SHA256"]);
        assert_eq!(
            params.tls_minimum_protocol_version,
            TlsProtocol::TlSv12 as i32
        );
        assert!(matches!(
            common.validation_context_type,
            Some(ValidationContextType::ValidationContext(_))
        ));
    }

    #[test]
    fn simple_ignores_client_certificates_and_optional_mutual_does_not_require_them() {
        let (simple, _) = socket(&tls(ServerTlsMode::Simple), false);
        let simple = context(&simple);
        assert_eq!(
            simple.require_client_certificate,
            Some(BoolValue { value: false })
        );
        let common = simple.common_tls_context.unwrap();
        assert!(common.validation_context_type.is_none());
        assert!(common.alpn_protocols.is_empty(), "TCP offers no ALPN");
        let (optional, _) = socket(&tls(ServerTlsMode::OptionalMutual), true);
        let optional = context(&optional);
        assert_eq!(
            optional.require_client_certificate,
            Some(BoolValue { value: false })
        );
        assert!(optional
            .common_tls_context
            .unwrap()
            .validation_context_type
            .is_some());
    }
}
