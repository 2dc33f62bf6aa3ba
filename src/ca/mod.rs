//! The mesh certificate authority.
//!
//! Stock Envoy cannot write a CSR, so Rudder generates each workload's key and
//! certificate itself and hands both over SDS (see design.md, "Identity with
//! stock Envoy"). This module is the library half of that: load or create the
//! CA, sign SPIFFE workload certificates and Rudder's own serving certificate,
//! and publish the trust bundle. Signing is pure (the caller passes `now`);
//! only [`Ca::load_or_create`] touches the disk. Directory layout: [`store`].
//!
//! # Certificate profile
//! Workload leaves follow Istio's: empty subject, the SPIFFE URI as the only
//! SAN (critical, because the subject is empty), keyUsage digitalSignature +
//! keyEncipherment, extKeyUsage serverAuth + clientAuth, CA:FALSE, a random
//! 128-bit serial, a fresh ECDSA P-256 key (or, with [`Ca::sign_csr`], the
//! requester's own key), `notBefore` backdated by
//! [`issue::CLOCK_SKEW`]. The chain served is leaf first, then intermediates up
//! to (not including) the root, as Istio's cert-chain order.
//!
//! # Root rotation
//! A workload trusts every root in the bundle, so rotation overlaps two roots:
//! 1. Add the new root to `extra-roots.pem` and restart/reload Rudder. Every
//!    proxy now receives a bundle with both roots; wait until all have it.
//! 2. Switch signing to the new root (replace root-cert.pem/root-key.pem, or
//!    plug in a `cacerts` under the new root) and move the old root into
//!    `extra-roots.pem`. New leaves come from the new root; old leaves still
//!    verify because the old root is still trusted. [`Ca::rotation_due`] reports
//!    every leaf from a previous signer as due, so they are replaced promptly.
//! 3. Once every leaf has been re-issued (at most one leaf TTL later), remove
//!    the old root from `extra-roots.pem`.
//!
//! Generated roots all share a subject; leaves carry an authority key
//! identifier, so verifiers pick the right root while two are trusted.

mod codec;
mod csr;
mod error;
mod identity;
mod info;
mod issue;
pub mod store;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::string::Ia5String;
use rcgen::{ExtendedKeyUsagePurpose, SanType};

pub use error::CaError;
pub use identity::Identity;
pub use info::CertInfo;

use issue::{Leaf, Signer};

/// A leaf is due for rotation once this fraction of its lifetime has passed:
/// Istio's default `SECRET_GRACE_PERIOD_RATIO` of 0.2, without the jitter
/// (Rudder spreads renewals itself when it schedules them).
pub const ROTATE_AT_LIFETIME_PERCENT: u32 = 80;

/// Where the signing CA came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaSource {
    /// Istio's plug-in `cacerts`: intermediate signing.
    Plugged,
    /// Rudder's own self-signed root, generated or loaded.
    SelfSigned,
}

/// The loaded CA. Cheap to share behind an `Arc`; signing takes `&self`.
pub struct Ca {
    trust_domain: String,
    signer: Signer,
    /// Intermediates served after every leaf, one PEM each (none for a
    /// self-signed root).
    intermediates_pem: Vec<String>,
    /// Every trusted root, signing root(s) first.
    bundle_pem: String,
    source: CaSource,
}

/// A certificate and key for one proxy (or for Rudder's own listener).
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadCert {
    /// Leaf first, then intermediates; no root.
    pub cert_chain_pem: String,
    /// PKCS#8 "PRIVATE KEY".
    pub key_pem: String,
    /// The trust bundle at issue time.
    pub root_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SHA-256 of the signing CA certificate, to spot leaves from an old signer.
    pub signer_fingerprint: [u8; 32],
}

// Hand-written so the private key can never end up in a log line.
impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("not_before", &issue::fmt_time(self.not_before))
            .field("not_after", &issue::fmt_time(self.not_after))
            .field("signer", &hex::encode(&self.signer_fingerprint[..8]))
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("source", &self.source)
            .field("signer_not_after", &issue::fmt_time(self.signer.not_after))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, or generates and persists a root there.
    /// See [`store`] for which files mean what.
    pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Ca, CaError> {
        store::load_or_create(dir, trust_domain, SystemTime::now())
    }

    /// [`Ca::load_or_create`] with an explicit clock, for expiry checks in tests.
    pub fn load_or_create_at(
        dir: &Path,
        trust_domain: &str,
        now: SystemTime,
    ) -> Result<Ca, CaError> {
        store::load_or_create(dir, trust_domain, now)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn source(&self) -> CaSource {
        self.source
    }

    /// When the signing certificate expires (for /metrics and alerts).
    pub fn signer_not_after(&self) -> SystemTime {
        self.signer.not_after
    }

    /// The signing CA certificate, PEM.
    pub fn signer_cert_pem(&self) -> String {
        codec::pem_encode("CERTIFICATE", &self.signer.cert_der)
    }

    /// Every trusted root as concatenated PEM: what proxies verify peers
    /// against (SDS `ROOTCA`, the `rudder-ca-root-cert` ConfigMap).
    pub fn trust_bundle(&self) -> String {
        self.bundle_pem.clone()
    }

    /// Issues a workload certificate for `identity`, valid from `now` minus the
    /// clock-skew allowance until `now + ttl` (capped at the CA's own expiry).
    pub fn sign_workload(
        &self,
        identity: &Identity,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<WorkloadCert, CaError> {
        let leaf = self.workload_leaf(identity)?;
        self.issue(leaf, ttl, now)
    }

    /// Signs a PKCS#10 CSR (Istio's CreateCertificate) for `identity`, which
    /// the caller has authenticated. Only the request's public key is used,
    /// once its self-signature verifies; the subject and SANs it asks for are
    /// ignored, and the leaf has the [`Ca::sign_workload`] profile. Returns
    /// Istio's `cert_chain`: the leaf, each intermediate, and last the trust
    /// bundle (every trusted root in one PEM string, as Istio sends its
    /// root-cert.pem), which Istio's agent takes as its root.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Vec<String>, CaError> {
        let leaf = self.workload_leaf(identity)?;
        let key = csr::public_key(csr_pem)?;
        let (leaf_pem, _, _) = self.signer.issue_leaf_for(leaf, &key, ttl, now)?;
        let mut chain = Vec::with_capacity(self.intermediates_pem.len() + 2);
        chain.push(leaf_pem);
        chain.extend(self.intermediates_pem.iter().cloned());
        chain.push(self.bundle_pem.clone());
        Ok(chain)
    }

    /// The workload profile for `identity`, once it is valid and ours.
    fn workload_leaf(&self, identity: &Identity) -> Result<Leaf, CaError> {
        identity.validate()?;
        // A CA only vouches for its own trust domain; anything else would let
        // one mesh mint identities that another mesh's policies name.
        if identity.trust_domain != self.trust_domain {
            return Err(CaError::TrustDomainMismatch {
                ca: self.trust_domain.clone(),
                requested: identity.trust_domain.clone(),
            });
        }
        let uri = identity.spiffe_id();
        let san = SanType::URI(ia5("SPIFFE ID", &uri)?);
        Ok(Leaf {
            sans: vec![san],
            ekus: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        })
    }

    /// Issues Rudder's own xDS serving certificate. Each name is a DNS SAN
    /// (e.g. `rudder.rudder-system.svc`, `localhost`) or, if it parses as an
    /// IP address, an IP SAN (e.g. `127.0.0.1`).
    pub fn serving_cert(
        &self,
        names: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<WorkloadCert, CaError> {
        if names.is_empty() {
            return Err(CaError::InvalidName {
                field: "DNS name",
                value: String::new(),
                reason: "a serving certificate needs at least one name".into(),
            });
        }
        let sans = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => {
                    identity::validate_dns_name(name)?;
                    Ok(SanType::DnsName(ia5("DNS name", name)?))
                }
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let ekus = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(Leaf { sans, ekus }, ttl, now)
    }

    fn issue(&self, leaf: Leaf, ttl: Duration, now: SystemTime) -> Result<WorkloadCert, CaError> {
        let issued = self.signer.issue_leaf(leaf, ttl, now)?;
        let mut cert_chain_pem = issued.cert_pem;
        for pem in &self.intermediates_pem {
            cert_chain_pem.push_str(pem);
        }
        Ok(WorkloadCert {
            cert_chain_pem,
            key_pem: issued.key_pem,
            root_pem: self.bundle_pem.clone(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            signer_fingerprint: self.signer.fingerprint,
        })
    }

    /// Whether `cert` should be replaced at `now`: once
    /// [`ROTATE_AT_LIFETIME_PERCENT`] of its lifetime has passed, or right away
    /// if another signer issued it (root rotation). The lifetime runs from the
    /// issue time, not from the backdated notBefore: counting the clock-skew
    /// allowance would make a leaf whose TTL is under a quarter of it due the
    /// moment it is issued, and re-issued forever.
    pub fn rotation_due(&self, cert: &WorkloadCert, now: SystemTime) -> bool {
        if cert.signer_fingerprint != self.signer.fingerprint {
            return true;
        }
        let issued_at = (cert.not_before + issue::CLOCK_SKEW).min(cert.not_after);
        let lifetime = cert.not_after.duration_since(issued_at).unwrap_or_default();
        now >= issued_at + lifetime * ROTATE_AT_LIFETIME_PERCENT / 100
    }
}

/// Names are validated as ASCII before this, so failure here is only a guard.
fn ia5(field: &'static str, value: &str) -> Result<Ia5String, CaError> {
    Ia5String::try_from(value).map_err(|e| CaError::InvalidName {
        field,
        value: value.to_string(),
        reason: e.to_string(),
    })
}
