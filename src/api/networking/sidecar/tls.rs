//! `ServerTLSSettings`: how a proxy terminates TLS. Istio defines it for
//! `Gateway` servers; `Sidecar` ingress listeners reuse it, so it lives here
//! until a Gateway kind needs it too.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::FieldError;

/// Set of TLS related options that enable TLS termination on the proxy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsSettings {
    /// If set to true, the load balancer will send a 301 redirect for all http
    /// connections, asking the clients to use HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// Optional: Indicates whether connections to this port should be secured
    /// using TLS. Valid Options: PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH,
    /// ISTIO_MUTUAL, OPTIONAL_MUTUAL. Default PASSTHROUGH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ServerTlsMode>,
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`. The path to the file holding
    /// the server-side TLS certificate to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`. The path to the file holding
    /// the server's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// REQUIRED if mode is `MUTUAL` or `OPTIONAL_MUTUAL`. The path to a file
    /// containing certificate authority certificates to use in verifying a
    /// presented client side certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// OPTIONAL: The path to the file containing the certificate revocation list
    /// (CRL) to use in verifying a presented client side certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// For gateways running on Kubernetes, the name of the secret that holds the
    /// TLS certs including the CA certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Same as credentialName but for multiple certificates (e.g. RSA and ECDSA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_names: Vec<String>,
    /// Only one of `serverCertificate`/`privateKey`, `credentialName`,
    /// `credentialNames` or `tlsCertificates` should be specified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_certificates: Vec<TlsCertificate>,
    /// A list of alternate names to verify the subject identity in the
    /// certificate presented by the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// An optional list of base64-encoded SHA-256 hashes of the SPKIs of
    /// authorized client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    /// An optional list of hex-encoded SHA-256 hashes of the authorized client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    /// Optional: Minimum TLS protocol version. Valid Options: TLS_AUTO,
    /// TLSV1_0, TLSV1_1, TLSV1_2, TLSV1_3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<TlsProtocol>,
    /// Optional: Maximum TLS protocol version. Valid Options: TLS_AUTO,
    /// TLSV1_0, TLSV1_1, TLSV1_2, TLSV1_3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<TlsProtocol>,
    /// Optional: If specified, only support the specified cipher list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// For mutual TLS, the name of the secret or the configmap that holds CA certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_credential_name: Option<String>,
}

/// A server certificate and key, for serving more than one certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsCertificate {
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`. The path to the file holding
    /// the server-side TLS certificate to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// REQUIRED if mode is `SIMPLE` or `MUTUAL`. The path to the file holding
    /// the server's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The path to a file containing certificate authority certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
}

// TLS modes enforced by the proxy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// The SNI string presented by the client is used as the match criterion.
    #[default]
    Passthrough,
    /// Secure connections with standard TLS semantics.
    Simple,
    /// Secure connections to the downstream using mutual TLS by presenting server certificates.
    Mutual,
    /// Like PASSTHROUGH, without a VirtualService; for cross-network gateways.
    AutoPassthrough,
    /// Mutual TLS with certificates generated by the mesh.
    IstioMutual,
    /// Like MUTUAL, but a client certificate is optional.
    OptionalMutual,
}

// TLS protocol versions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TlsProtocol {
    /// Automatically choose the optimal TLS version.
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    /// TLS version 1.0.
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    /// TLS version 1.1.
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    /// TLS version 1.2.
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    /// TLS version 1.3.
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}

fn set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.is_empty())
}

/// Istio's `validateTLSOptions` (errors only; what Istio merely warns about passes).
pub(crate) fn check_server_tls(field: &str, tls: &ServerTlsSettings) -> Result<(), FieldError> {
    let mode = tls.mode.unwrap_or_default();
    let err = |name: &str, reason: &str| {
        Err(FieldError::new(
            format!("{field}.{name}"),
            reason.to_string(),
        ))
    };
    if mode == ServerTlsMode::IstioMutual {
        // The mesh supplies the certificates; any given here would be ignored.
        for (name, given) in [
            ("serverCertificate", set(&tls.server_certificate)),
            ("privateKey", set(&tls.private_key)),
            ("caCertificates", set(&tls.ca_certificates)),
            ("tlsCertificates", !tls.tls_certificates.is_empty()),
            ("credentialName", set(&tls.credential_name)),
            ("credentialNames", !tls.credential_names.is_empty()),
        ] {
            if given {
                return err(
                    name,
                    &format!("ISTIO_MUTUAL TLS cannot have an associated {name}"),
                );
            }
        }
        return Ok(());
    }
    let sources = [
        set(&tls.server_certificate) && set(&tls.private_key),
        set(&tls.credential_name),
        !tls.credential_names.is_empty(),
        !tls.tls_certificates.is_empty(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(FieldError::new(
            field,
            "only one of credentialName, credentialNames, serverCertificate/privateKey or tlsCertificates may be specified",
        ));
    }
    let terminating = matches!(
        mode,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    );
    if terminating && (set(&tls.credential_name) || !tls.credential_names.is_empty()) {
        // Certificates come from the secret.
        return Ok(());
    }
    if terminating {
        let prefix = if mode == ServerTlsMode::Simple {
            "SIMPLE TLS"
        } else {
            "MUTUAL TLS"
        };
        if mode != ServerTlsMode::Simple && !set(&tls.ca_certificates) {
            return err(
                "caCertificates",
                &format!("{prefix} requires a client CA bundle"),
            );
        }
        if tls.tls_certificates.is_empty() {
            if !set(&tls.server_certificate) {
                return err(
                    "serverCertificate",
                    &format!("{prefix} requires a server certificate"),
                );
            }
            if !set(&tls.private_key) {
                return err("privateKey", &format!("{prefix} requires a private key"));
            }
        }
        for (i, cert) in tls.tls_certificates.iter().enumerate() {
            if !set(&cert.server_certificate) {
                return err(
                    &format!("tlsCertificates[{i}].serverCertificate"),
                    &format!("{prefix} requires a server certificate"),
                );
            }
            if !set(&cert.private_key) {
                return err(
                    &format!("tlsCertificates[{i}].privateKey"),
                    &format!("{prefix} requires a private key"),
                );
            }
        }
    }
    check_pins(field, tls)?;
    check_versions(field, tls)?;
    if set(&tls.ca_crl) {
        if set(&tls.credential_name) {
            return err(
                "caCrl",
                "CRL is not supported with credentialName; put the CRL in the credential",
            );
        }
        if mode == ServerTlsMode::Simple {
            return err("caCrl", "CRL is not supported with SIMPLE TLS");
        }
    }
    Ok(())
}

/// Envoy refuses pins it cannot decode, which would reject the whole
/// listener: a SHA-256 as hex (colons allowed), an SPKI hash as base64.
fn check_pins(field: &str, tls: &ServerTlsSettings) -> Result<(), FieldError> {
    use base64::Engine as _;
    for (i, hash) in tls.verify_certificate_hash.iter().enumerate() {
        let digits: String = hash.chars().filter(|c| *c != ':').collect();
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(FieldError::new(
                format!("{field}.verifyCertificateHash[{i}]"),
                format!("{hash:?} is not a hex-encoded SHA-256 (64 hex digits, colons allowed)"),
            ));
        }
    }
    for (i, spki) in tls.verify_certificate_spki.iter().enumerate() {
        let decoded = base64::engine::general_purpose::STANDARD.decode(spki);
        if decoded.map(|d| d.len()) != Ok(32) {
            return Err(FieldError::new(
                format!("{field}.verifyCertificateSpki[{i}]"),
                format!("{spki:?} is not a base64-encoded SHA-256"),
            ));
        }
    }
    Ok(())
}

/// A server's range defaults to TLS 1.2 through 1.3 (`TLS_AUTO` too); an
/// empty range is refused by Envoy.
fn check_versions(field: &str, tls: &ServerTlsSettings) -> Result<(), FieldError> {
    let rank = |v: Option<TlsProtocol>, auto: u8| match v {
        None | Some(TlsProtocol::TlsAuto) => auto,
        Some(TlsProtocol::TlsV1_0) => 0,
        Some(TlsProtocol::TlsV1_1) => 1,
        Some(TlsProtocol::TlsV1_2) => 2,
        Some(TlsProtocol::TlsV1_3) => 3,
    };
    if rank(tls.min_protocol_version, 2) > rank(tls.max_protocol_version, 3) {
        return Err(FieldError::new(
            format!("{field}.minProtocolVersion"),
            "minProtocolVersion is above maxProtocolVersion (unset or TLS_AUTO: TLSV1_2 to TLSV1_3)",
        ));
    }
    Ok(())
}
