//! `ClientTLSSettings`: how a proxy originates TLS to an upstream.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::FieldError;

/// SSL/TLS related settings for upstream connections. These settings are
/// common to both HTTP and TCP upstreams.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// Indicates whether connections to this port should be secured using TLS.
    /// Valid Options: DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL. Default DISABLE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClientTlsMode>,
    /// REQUIRED if mode is `MUTUAL`. The path to the file holding the
    /// client-side TLS certificate to use. Should be empty if mode is `ISTIO_MUTUAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// REQUIRED if mode is `MUTUAL`. The path to the file holding the client's
    /// private key. Should be empty if mode is `ISTIO_MUTUAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// OPTIONAL: The path to the file containing certificate authority
    /// certificates to use in verifying a presented server certificate. If
    /// omitted, the proxy verifies the server's certificate with the OS CA certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// The name of the secret that holds the TLS certs for the client including
    /// the CA certificates; it must exist in the namespace of the proxy using
    /// it. Applies at sidecars only when the DestinationRule has a workloadSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// A list of alternate names to verify the subject identity in the
    /// certificate. Overrides the ServiceEntry's `subjectAltNames`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// SNI string to present to the server during TLS handshake. If
    /// unspecified, it is set from the downstream HTTP host/authority header
    /// for SIMPLE and MUTUAL modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `insecureSkipVerify` specifies whether the proxy should skip verifying
    /// the CA signature and SAN for the server certificate corresponding to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// OPTIONAL: The path to the file containing the certificate revocation
    /// list (CRL) to use in verifying a presented server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

// TLS connection mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    /// Do not setup a TLS connection to the upstream endpoint.
    #[default]
    Disable,
    /// Originate a TLS connection to the upstream endpoint.
    Simple,
    /// Secure connections to the upstream using mutual TLS by presenting client certificates.
    Mutual,
    /// Mutual TLS with the certificates Istio (here: Rudder) issues to the workload.
    IstioMutual,
}

fn set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.is_empty())
}

/// Istio's `agent.ValidateTLS`.
pub(crate) fn check_client_tls(field: &str, tls: &ClientTlsSettings) -> Result<(), FieldError> {
    let mode = tls.mode.unwrap_or_default();
    if tls.insecure_skip_verify == Some(true) {
        let conflict = match mode {
            // SIMPLE takes its CA from caCertificates or credentialName.
            ClientTlsMode::Simple
                if set(&tls.ca_certificates)
                    || set(&tls.credential_name)
                    || !tls.subject_alt_names.is_empty() =>
            {
                Some("caCertificates, credentialName or subjectAltNames in SIMPLE mode")
            }
            // MUTUAL's credentialName also carries the client certificate, so it may stay.
            ClientTlsMode::Mutual
                if set(&tls.ca_certificates) || !tls.subject_alt_names.is_empty() =>
            {
                Some("caCertificates or subjectAltNames in MUTUAL mode")
            }
            _ => None,
        };
        if let Some(what) = conflict {
            return Err(FieldError::new(
                format!("{field}.insecureSkipVerify"),
                format!("insecureSkipVerify: true cannot be combined with {what}"),
            ));
        }
    }
    let simple_or_mutual = matches!(mode, ClientTlsMode::Simple | ClientTlsMode::Mutual);
    if simple_or_mutual && set(&tls.credential_name) {
        // The secret carries the certificates; file paths alongside it are ambiguous.
        if set(&tls.client_certificate)
            || set(&tls.ca_certificates)
            || set(&tls.private_key)
            || set(&tls.ca_crl)
        {
            return Err(FieldError::new(
                format!("{field}.credentialName"),
                "cannot specify clientCertificate, privateKey, caCertificates or caCrl when credentialName is set",
            ));
        }
        return Ok(());
    }
    if mode == ClientTlsMode::Mutual {
        if !set(&tls.client_certificate) {
            return Err(FieldError::new(
                format!("{field}.clientCertificate"),
                "client certificate required for MUTUAL TLS (or set credentialName)",
            ));
        }
        if !set(&tls.private_key) {
            return Err(FieldError::new(
                format!("{field}.privateKey"),
                "private key required for MUTUAL TLS (or set credentialName)",
            ));
        }
    }
    Ok(())
}
