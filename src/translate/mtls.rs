//! Mesh mutual TLS with Rudder-issued identities: the client side a cluster
//! uses (ISTIO_MUTUAL, or auto mTLS chosen per endpoint) and the server side
//! an inbound filter chain terminates. Both sides present SDS `default` and
//! verify the peer against SDS `ROOTCA`, accepting only SPIFFE identities of
//! the mesh's trust domain.

use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::{transport_socket, Metadata, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    subject_alt_name_matcher::SanType,
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{value, BoolValue, Struct, Value};
use envoy_types::util::pack_any;

use super::secret::{sds_config, ROOT_SECRET, WORKLOAD_SECRET};
use crate::model::Protocol;

/// The pod label injection sets when a sidecar can terminate mesh mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// Endpoint metadata filter Envoy reads for `transport_socket_matches`.
const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// ALPN a mesh client offers, as Istio's do. It tells the server's inbound
/// chain that this is mesh mTLS (to terminate), not the application's own
/// TLS (to pass through), and whether HTTP follows.
pub const MESH_ALPN_TCP: &[&str] = &["istio-peer-exchange", "istio"];
pub const MESH_ALPN_HTTP: &[&str] = &["istio-http/1.0", "istio-http/1.1", "istio-h2"];

/// The client socket for mesh mTLS to a service port (DestinationRule
/// ISTIO_MUTUAL, or auto mTLS to a sidecar). SNI is Istio's cluster-derived name.
pub fn client_socket(trust_domain: &str, sni: &str, protocol: Protocol) -> TransportSocket {
    let alpn = if protocol.is_http() {
        MESH_ALPN_HTTP
    } else {
        MESH_ALPN_TCP
    };
    let context = UpstreamTlsContext {
        common_tls_context: Some(common_context(trust_domain, alpn)),
        sni: sni.to_string(),
        ..Default::default()
    };
    tls_socket(pack_any(context))
}

/// Auto mTLS: mTLS to endpoints whose metadata says they run a sidecar that
/// accepts it, plaintext to the rest (workloads without a sidecar, or whose
/// PeerAuthentication disables mTLS). Decided per endpoint by Envoy.
pub fn auto_socket_matches(mtls: TransportSocket) -> Vec<TransportSocketMatch> {
    vec![
        TransportSocketMatch {
            name: "tlsMode-istio".to_string(),
            r#match: Some(Struct {
                fields: [("tlsMode".to_string(), string("istio"))].into(),
            }),
            transport_socket: Some(mtls),
        },
        TransportSocketMatch {
            name: "tlsMode-disabled".to_string(),
            r#match: Some(Struct::default()),
            transport_socket: Some(raw_buffer()),
        },
    ]
}

/// Plaintext: Envoy's default socket, named where one must be.
pub fn raw_buffer() -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.raw_buffer".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
            RawBuffer::default(),
        ))),
    }
}

/// The metadata that selects the `tlsMode-istio` socket for an endpoint.
pub fn mtls_endpoint_metadata() -> Metadata {
    Metadata {
        filter_metadata: [(
            TRANSPORT_SOCKET_MATCH.to_string(),
            Struct {
                fields: [("tlsMode".to_string(), string("istio"))].into(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

/// The server socket of an inbound mTLS chain: a client certificate from the
/// mesh is required.
pub fn server_socket(trust_domain: &str) -> TransportSocket {
    let mut common = common_context(trust_domain, &[]);
    // Offer HTTP/2 to clients that ask (ours speak the codec they are told).
    common.alpn_protocols = vec!["h2".to_string(), "http/1.1".to_string()];
    let context = DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    tls_socket(pack_any(context))
}

fn common_context(trust_domain: &str, alpn: &[&str]) -> CommonTlsContext {
    // Any identity of this mesh; authorization policy narrows it later.
    let spiffe_prefix = SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Prefix(format!(
                "spiffe://{trust_domain}/"
            ))),
            ..Default::default()
        }),
        ..Default::default()
    };
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds_config(WORKLOAD_SECRET)],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![spiffe_prefix],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds_config(ROOT_SECRET)),
                ..Default::default()
            },
        )),
        alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn tls_socket(config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.to_string())),
    }
}
