//! CA tests. Certificates are checked by parsing them back with x509-parser
//! and verifying every signature in the chain with the issuer's public key.

mod csr;
mod errors;
mod load;
mod sign;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use x509_parser::certificate::X509Certificate;

use super::codec::cert_ders;
use super::verify::signed_by;
use super::{Ca, Identity, WorkloadCert};

pub(super) const TD: &str = "cluster.local";
pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) fn identity() -> Identity {
    Identity::new(TD, "default", "productpage").unwrap()
}

/// A fresh CA directory with a generated root.
pub(super) fn new_ca(now: SystemTime) -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    (dir, ca)
}

pub(super) fn ders(pem: &str) -> Vec<Vec<u8>> {
    cert_ders(Path::new("test"), pem.as_bytes()).unwrap()
}

pub(super) fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

/// Checks the served chain strictly in order: each certificate is signed by
/// the next, and the last by a root of the bundle. Returns the chain's length.
pub(super) fn assert_chain_verifies(wc: &WorkloadCert) -> usize {
    let chain = ders(&wc.cert_chain_pem);
    let roots = ders(&wc.root_pem);
    for pair in chain.windows(2) {
        assert!(
            signed_by(&parse(&pair[0]), &parse(&pair[1])),
            "chain link does not verify: {} <- {}",
            parse(&pair[0]).subject(),
            parse(&pair[1]).subject()
        );
    }
    let last = parse(chain.last().unwrap());
    assert!(
        roots.iter().any(|r| signed_by(&last, &parse(r))),
        "top of chain ({}) not signed by any root",
        last.issuer()
    );
    for der in &chain {
        let c = parse(der);
        assert!(
            !signed_by(&c, &c),
            "a self-signed root must not be in the served chain"
        );
    }
    chain.len()
}

/// An rcgen-made CA for plug-in tests: a root when `parent` is None, else an
/// intermediate under it.
pub(super) fn test_ca(
    cn: &str,
    parent: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = parent.is_some();
    let key = KeyPair::generate().unwrap();
    match parent {
        None => CertifiedIssuer::self_signed(params, key).unwrap(),
        Some(p) => CertifiedIssuer::signed_by(params, key, p).unwrap(),
    }
}

/// Writes Istio's four `cacerts` files for `ca` under `root` into a new dir.
pub(super) fn write_cacerts(
    ca: &CertifiedIssuer<'static, KeyPair>,
    root: &CertifiedIssuer<'static, KeyPair>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca-cert.pem", &ca.pem());
    write(dir.path(), "ca-key.pem", &ca.key().serialize_pem());
    write(dir.path(), "root-cert.pem", &root.pem());
    // Istio's tools/certs order: the CA first, the root last.
    write(dir.path(), "cert-chain.pem", &(ca.pem() + &root.pem()));
    dir
}

pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub(super) fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/ca/testdata")
        .join(name)
}
