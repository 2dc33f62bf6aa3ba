//! Facts read back from an issued certificate, for /metrics (expiry) and tests.

use std::time::SystemTime;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::issue::asn1_to_system;
use super::CaError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The first `spiffe://` URI SAN, if any.
    pub spiffe_id: Option<String>,
    pub dns_names: Vec<String>,
    /// Lower-case hex, no separators.
    pub serial: String,
}

impl CertInfo {
    /// Reads the first certificate of a PEM chain (the leaf, in a chain).
    pub fn parse(pem: &str) -> Result<CertInfo, CaError> {
        let block = Pem::iter_from_buffer(pem.as_bytes())
            .find(|b| b.as_ref().map_or(true, |b| b.label == "CERTIFICATE"))
            .ok_or_else(|| CaError::InvalidPem("no CERTIFICATE block".into()))?
            .map_err(|e| CaError::InvalidPem(e.to_string()))?;
        let cert = block
            .parse_x509()
            .map_err(|e| CaError::InvalidPem(e.to_string()))?;
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| CaError::InvalidPem(e.to_string()))?
            .map(|ext| ext.value.general_names.as_slice())
            .unwrap_or_default();
        let spiffe_id = sans.iter().find_map(|n| match n {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(uri.to_string()),
            _ => None,
        });
        let dns_names = sans
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect();
        Ok(CertInfo {
            not_before: asn1_to_system(cert.validity().not_before),
            not_after: asn1_to_system(cert.validity().not_after),
            spiffe_id,
            dns_names,
            serial: hex::encode(cert.raw_serial()),
        })
    }
}
