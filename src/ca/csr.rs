//! PKCS#10 certificate signing requests, as Istio's CreateCertificate sends.
//!
//! Only the public key is taken from a request, after its self-signature shows
//! the requester holds the private key. Subject, SANs and any requested
//! extensions are ignored: the certificate is for the authenticated identity,
//! as Istio issues it. That is also why the request is read with x509-parser
//! rather than rcgen's `CertificateSigningRequestParams`, which refuses requests
//! carrying extensions or subject strings it does not model.

use rcgen::SubjectPublicKeyInfo;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use super::CaError;

/// Real requests are about 1 KiB; refuse far larger ones before parsing.
const MAX_CSR_PEM_BYTES: usize = 64 * 1024;

/// The public key of a PEM CSR whose self-signature verifies.
pub(crate) fn public_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo, CaError> {
    let bad = |reason: String| CaError::InvalidCsr(reason);
    if csr_pem.len() > MAX_CSR_PEM_BYTES {
        return Err(bad(format!(
            "{} bytes, more than the {MAX_CSR_PEM_BYTES} accepted",
            csr_pem.len()
        )));
    }
    let pem = Pem::iter_from_buffer(csr_pem.as_bytes())
        .next()
        .ok_or_else(|| bad("no PEM block (-----BEGIN CERTIFICATE REQUEST-----)".into()))?
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
        return Err(bad(format!(
            "expected a CERTIFICATE REQUEST block, found {:?}",
            pem.label
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| bad(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the request".into()));
    }
    csr.verify_signature().map_err(|e| {
        bad(format!(
            "its signature does not verify with its own public key ({e})"
        ))
    })?;
    let spki = &csr.certification_request_info.subject_pki;
    match spki.parsed() {
        Ok(PublicKey::EC(_)) => {
            let curve = spki.algorithm.parameters.as_ref().map(|p| p.as_oid());
            if !matches!(curve, Some(Ok(oid)) if oid == OID_EC_P256 || oid == OID_NIST_EC_P384) {
                return Err(bad("ECDSA keys must be on P-256 or P-384".into()));
            }
        }
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() < 2048 => {
            return Err(bad(format!(
                "an RSA key of {} bits; at least 2048 are required",
                rsa.key_size()
            )));
        }
        Ok(PublicKey::RSA(_)) => {}
        _ => {
            return Err(bad(
                "unsupported key type; expected ECDSA (P-256, P-384) or RSA".into(),
            ))
        }
    }
    SubjectPublicKeyInfo::from_der(spki.raw).map_err(|e| bad(format!("its public key: {e}")))
}
