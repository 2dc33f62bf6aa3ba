//! Certificate issuance: the signing CA, leaf profiles and the self-signed root.
//!
//! Pure: every function takes `now`; nothing here reads the clock or the disk.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::time::ASN1Time;

use super::CaError;

/// Backdating of `notBefore`, so a peer whose clock is a little behind ours
/// still accepts a certificate the moment it is issued. (Istio uses 2 minutes;
/// Rudder's design asks for 5.)
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Lifetime of a generated root.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A CA certificate and its key, checked to belong together and to be able to
/// sign; built once at load, then used for every leaf.
pub(crate) struct Signer {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) not_after: SystemTime,
    /// SHA-256 of the CA certificate: tells which signer issued a leaf.
    pub(crate) fingerprint: [u8; 32],
}

impl Signer {
    /// Checks `cert_der` is a CA valid at `now` whose key is `key`; the paths
    /// only name the files in errors.
    pub(crate) fn new(
        cert_der: Vec<u8>,
        key: KeyPair,
        cert_path: &Path,
        key_path: &Path,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let bad_cert = |reason: String| CaError::BadCert {
            path: cert_path.to_path_buf(),
            reason,
        };
        let (_, x509) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| bad_cert(e.to_string()))?;
        check_is_ca(&x509, cert_path)?;
        check_validity(&x509, cert_path, now)?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(CaError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
        }
        let not_after = asn1_to_system(x509.validity().not_after);
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| bad_cert(format!("cannot sign with it: {e}")))?;
        self_test(&issuer, &x509, now).map_err(bad_cert)?;
        Ok(Signer {
            issuer,
            fingerprint: Sha256::digest(&cert_der).into(),
            cert_der,
            not_after,
        })
    }

    /// Issues a leaf with a fresh ECDSA P-256 key; returns (cert PEM, PKCS#8 key
    /// PEM, notBefore, notAfter).
    pub(crate) fn issue_leaf(
        &self,
        leaf: Leaf,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Issued, CaError> {
        let key = generate_key()?;
        let (cert_pem, not_before, not_after) = self.issue_leaf_for(leaf, &key, ttl, now)?;
        Ok(Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
        })
    }

    /// Issues a leaf over `key`, a public key the caller holds (e.g. from a
    /// CSR); returns (cert PEM, notBefore, notAfter). `notAfter` is capped at
    /// the signer's own expiry, as Istio does, since a leaf outliving its
    /// issuer fails verification anyway.
    pub(crate) fn issue_leaf_for(
        &self,
        leaf: Leaf,
        key: &impl PublicKeyData,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(String, SystemTime, SystemTime), CaError> {
        if ttl.is_zero() {
            return Err(CaError::InvalidTtl("must be positive".into()));
        }
        let not_before = truncate(now - CLOCK_SKEW);
        let not_after = truncate(
            now.checked_add(ttl)
                .ok_or_else(|| CaError::InvalidTtl(format!("{ttl:?} overflows the clock")))?,
        )
        .min(self.not_after);
        if not_after <= now {
            return Err(CaError::SignerExpired(fmt_time(self.not_after)));
        }
        let mut params = CertificateParams::default();
        // Istio leaves an empty subject; rcgen then marks the SAN critical, as
        // RFC 5280 4.2.1.6 requires and Istio's BuildSANExtension does.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = leaf.sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = leaf.ekus;
        // AKI lets verifiers pick the right issuer when two roots share a
        // subject, which is exactly the state during a root rotation.
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(not_before);
        params.not_after = to_offset(not_after);
        params.serial_number = Some(serial_for(key, not_before));
        let cert = params.signed_by(key, &self.issuer)?;
        Ok((cert.pem(), not_before, not_after))
    }
}

/// rcgen rebuilds the issuer name from parsed parts; a subject it cannot
/// reproduce byte for byte (e.g. multi-valued RDNs) would yield leaves that
/// do not chain. Issue one throwaway leaf now rather than find out in Envoy.
fn self_test(
    issuer: &Issuer<'_, KeyPair>,
    ca: &X509Certificate<'_>,
    now: SystemTime,
) -> Result<(), String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "self-test");
    params.not_before = to_offset(now - CLOCK_SKEW);
    params.not_after = to_offset(now);
    let probe = params
        .signed_by(issuer.key(), issuer)
        .map_err(|e| format!("cannot sign with it: {e}"))?;
    let (_, probe) = x509_parser::parse_x509_certificate(probe.der()).map_err(|e| e.to_string())?;
    if probe.issuer().as_raw() != ca.subject().as_raw() {
        return Err("its subject name cannot be reproduced exactly when signing".into());
    }
    probe
        .verify_signature(Some(ca.public_key()))
        .map_err(|e| format!("self-test signature does not verify: {e}"))
}

/// What differs between the workload and the serving profile.
pub(crate) struct Leaf {
    pub(crate) sans: Vec<SanType>,
    pub(crate) ekus: Vec<ExtendedKeyUsagePurpose>,
}

pub(crate) struct Issued {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

/// A fresh ECDSA P-256 key, the algorithm of every key Rudder generates.
pub(crate) fn generate_key() -> Result<KeyPair, CaError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

/// A self-signed root certificate (DER) for `key`: CN "Rudder Root CA",
/// O = trust domain, 10 years.
pub(crate) fn generate_root(
    trust_domain: &str,
    key: &KeyPair,
    now: SystemTime,
) -> Result<Vec<u8>, CaError> {
    let not_before = truncate(now - CLOCK_SKEW);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain);
    params
        .distinguished_name
        .push(DnType::CommonName, "Rudder Root CA");
    // pathlen 1, not 0: leaves one level for the usual multi-cluster setup
    // (this root signs per-cluster intermediates plugged in as cacerts).
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = to_offset(not_before);
    params.not_after = to_offset(truncate(now + ROOT_TTL));
    params.serial_number = Some(serial_for(key, not_before));
    Ok(params.self_signed(key)?.der().to_vec())
}

fn check_is_ca(x509: &X509Certificate<'_>, path: &Path) -> Result<(), CaError> {
    let can_sign = match x509.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        // No keyUsage extension means no restriction (RFC 5280 4.2.1.3).
        Ok(None) => true,
        Err(_) => false,
    };
    if x509.is_ca() && can_sign {
        Ok(())
    } else {
        Err(CaError::NotCa {
            path: path.to_path_buf(),
        })
    }
}

pub(crate) fn check_validity(
    x509: &X509Certificate<'_>,
    path: &Path,
    now: SystemTime,
) -> Result<(), CaError> {
    let (not_before, not_after) = (
        asn1_to_system(x509.validity().not_before),
        asn1_to_system(x509.validity().not_after),
    );
    if now >= not_after {
        return Err(CaError::Expired {
            path: path.to_path_buf(),
            not_after: fmt_time(not_after),
        });
    }
    if now < not_before {
        return Err(CaError::NotYetValid {
            path: path.to_path_buf(),
            not_before: fmt_time(not_before),
        });
    }
    Ok(())
}

/// A 128-bit serial. For a key generated here the bits come from CSPRNG
/// output, so this is as unpredictable as a random draw without another RNG
/// dependency; for a CSR's key, which the client chose, it rests on the nonce,
/// hashed under std's secret random keys. The nonce also keeps serials unique
/// when a key is reused (a persisted root key re-certified, a CSR sent twice),
/// even within the same second.
fn serial_for(key: &impl PublicKeyData, not_before: SystemTime) -> SerialNumber {
    let mut h = Sha256::new();
    h.update(b"rudder-serial-v1\0");
    h.update(key.der_bytes());
    h.update(to_unix_secs(not_before).to_be_bytes());
    h.update(nonce().to_be_bytes());
    SerialNumber::from_slice(&h.finalize()[..16])
}

/// Never the same twice in a process (a counter), and unlike any other
/// process's (hashed with std's randomly seeded SipHash keys).
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// X.509 keeps whole seconds; truncating first makes the times we report
/// equal to the times in the certificate.
fn truncate(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(to_unix_secs(t).max(0) as u64)
}

fn to_unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(to_unix_secs(t)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn asn1_to_system(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

pub(crate) fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
