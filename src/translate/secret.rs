//! SDS secrets, by Istio's names: `default` is the proxy's own certificate
//! and key, `ROOTCA` the trust bundle it verifies peers against. Clusters and
//! listeners refer to them by name over ADS ([`sds_config`]), so a rotation
//! replaces the secret alone and Envoy keeps every open connection.

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, SdsSecretConfig, Secret, TlsCertificate,
};

use crate::ca::WorkloadCert;

/// The workload certificate secret's name (Istio's).
pub const WORKLOAD_SECRET: &str = "default";
/// The trust bundle secret's name (Istio's).
pub const ROOT_SECRET: &str = "ROOTCA";

/// Both secrets for one identity.
pub fn secrets(cert: &WorkloadCert) -> Vec<Secret> {
    vec![
        Secret {
            name: WORKLOAD_SECRET.to_string(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(&cert.cert_chain_pem)),
                private_key: Some(inline(&cert.key_pem)),
                ..Default::default()
            })),
        },
        root_secret(&cert.root_pem),
    ]
}

/// The trust bundle alone: all a proxy without a proven identity receives.
pub fn root_secret(bundle_pem: &str) -> Secret {
    Secret {
        name: ROOT_SECRET.to_string(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline(bundle_pem)),
                ..Default::default()
            },
        )),
    }
}

/// A reference to secret `name`, fetched over the proxy's ADS stream.
pub fn sds_config(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(super::ads_config_source()),
    }
}

fn inline(pem: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    }
}
