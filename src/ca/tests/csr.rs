//! Signing CSRs (Istio's CreateCertificate): the requested names are ignored,
//! the requester's key is certified, and the chain ends with the roots.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, SanType};
use x509_parser::extensions::GeneralName;

use super::*;
use crate::ca::codec::{load_key, pem_encode};
use crate::ca::{CaError, CaSource};

const WANT: &str = "spiffe://cluster.local/ns/default/sa/productpage";

/// A CSR as a greedy client might send it: another identity's SPIFFE ID, a DNS
/// name, a subject, and an extension rcgen's own CSR parser does not know.
fn csr_for(key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "admin");
    params.subject_alt_names = vec![
        SanType::URI(
            "spiffe://cluster.local/ns/kube-system/sa/admin"
                .try_into()
                .unwrap(),
        ),
        SanType::DnsName("kubernetes.default.svc".try_into().unwrap()),
    ];
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 99999, 1],
            vec![0x05, 0x00],
        ));
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Checks Istio's `cert_chain`: each certificate signed by the next, the last
/// element the trust bundle; returns the leaf's DER.
fn assert_istio_chain(ca: &Ca, chain: &[String]) -> Vec<u8> {
    assert_eq!(chain.last().unwrap(), &ca.trust_bundle(), "roots last");
    let certs: Vec<Vec<u8>> = chain.iter().flat_map(|pem| ders(pem)).collect();
    for pair in certs.windows(2) {
        let (child, parent) = (parse(&pair[0]), parse(&pair[1]));
        assert!(
            signed_by(&child, &parent),
            "{} <- {}",
            child.subject(),
            parent.subject()
        );
    }
    let top = parse(certs.last().unwrap());
    assert!(
        signed_by(&top, &top),
        "the chain ends with a self-signed root"
    );
    certs[0].clone()
}

#[test]
fn csr_gets_the_authenticated_identity_not_what_it_asks_for() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ] {
        let key = KeyPair::generate_for(alg).unwrap();
        let csr = csr_for(&key);
        // rcgen's CSR parser refuses the unknown extension; ours ignores it.
        assert!(rcgen::CertificateSigningRequestParams::from_pem(&csr).is_err());

        let chain = ca.sign_csr(&csr, &identity(), DAY, now).unwrap();
        assert_eq!(chain.len(), 2, "leaf and root");
        let leaf_der = assert_istio_chain(&ca, &chain);
        let leaf = parse(&leaf_der);
        assert!(leaf.subject().as_raw().len() <= 2, "empty subject");
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        assert!(san.critical);
        assert_eq!(san.value.general_names, [GeneralName::URI(WANT)]);
        assert_eq!(
            leaf.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw(),
            "the requester's key is certified"
        );
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!leaf.is_ca());
        assert!(leaf
            .extensions()
            .iter()
            .all(|e| e.oid.to_id_string() != "1.3.6.1.4.1.99999.1"));
        let validity = leaf.validity();
        assert_eq!(validity.not_before.timestamp(), secs(now) - 300);
        assert_eq!(
            validity.not_after.timestamp(),
            secs(now) + DAY.as_secs() as i64
        );
    }
}

#[test]
fn rsa_csr_under_a_plugged_intermediate() {
    let root = test_ca("Root CA", None);
    let intermediate = test_ca("Intermediate CA", Some(&root));
    let dir = write_cacerts(&intermediate, &root);
    let now = SystemTime::now();
    let ca = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    assert_eq!(ca.source(), CaSource::Plugged);

    let path = testdata("istio-cacerts/ca-key.pem");
    let rsa = load_key(&path, &std::fs::read(&path).unwrap()).unwrap();
    let chain = ca.sign_csr(&csr_for(&rsa), &identity(), DAY, now).unwrap();
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(chain[1], intermediate.pem());
    let leaf_der = assert_istio_chain(&ca, &chain);
    let leaf = parse(&leaf_der);
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        rsa.public_key_raw()
    );
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names, [GeneralName::URI(WANT)]);
}

#[test]
fn invalid_csrs_are_refused() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let good = csr_for(&KeyPair::generate().unwrap());
    let der = x509_parser::pem::Pem::iter_from_buffer(good.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .contents;
    // The last byte is part of the signature.
    let mut forged = der.clone();
    *forged.last_mut().unwrap() ^= 1;
    let mut trailing = der.clone();
    trailing.push(0);
    let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    for (why, csr) in [
        ("empty", String::new()),
        ("garbage", "garbage".to_string()),
        ("a certificate", ca.trust_bundle()),
        ("not DER", pem_encode("CERTIFICATE REQUEST", b"nope")),
        ("bad signature", pem_encode("CERTIFICATE REQUEST", &forged)),
        (
            "trailing bytes",
            pem_encode("CERTIFICATE REQUEST", &trailing),
        ),
        ("ed25519 key", csr_for(&ed25519)),
        ("huge", "A".repeat(100_000)),
    ] {
        let err = ca.sign_csr(&csr, &identity(), DAY, now).unwrap_err();
        assert!(matches!(err, CaError::InvalidCsr(_)), "{why}: {err}");
    }
    // Istio's Go client writes this label; OpenSSL's old one is accepted too.
    let old_label = pem_encode("NEW CERTIFICATE REQUEST", &der);
    assert!(ca.sign_csr(&old_label, &identity(), DAY, now).is_ok());
}

#[test]
fn csr_identity_must_be_valid_and_in_our_trust_domain() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let csr = csr_for(&KeyPair::generate().unwrap());
    let other = Identity::new("other.mesh", "default", "productpage").unwrap();
    let err = ca.sign_csr(&csr, &other, DAY, now).unwrap_err();
    assert!(matches!(err, CaError::TrustDomainMismatch { .. }), "{err}");
    let mut bad = identity();
    bad.service_account = "a/b".into();
    let err = ca.sign_csr(&csr, &bad, DAY, now).unwrap_err();
    assert!(matches!(err, CaError::InvalidName { .. }), "{err}");
    let err = ca
        .sign_csr(&csr, &identity(), Duration::ZERO, now)
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidTtl(_)), "{err}");
}
