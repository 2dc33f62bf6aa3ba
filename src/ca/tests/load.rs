//! Plugged-in Istio `cacerts`, extra roots, and recovery of Rudder's own root.

use std::time::SystemTime;

use super::*;
use crate::ca::codec::load_key;
use crate::ca::{CaSource, CertInfo};

#[test]
fn plugged_cacerts_sign_as_the_intermediate() {
    let root = test_ca("Root CA", None);
    let inter = test_ca("Intermediate CA", Some(&root));
    let dir = write_cacerts(&inter, &root);
    let ca = Ca::load_or_create(dir.path(), TD).unwrap();
    assert_eq!(ca.source(), CaSource::Plugged);
    assert_eq!(ders(&ca.trust_bundle()), [root.der().to_vec()]);

    let now = SystemTime::now();
    let wc = ca.sign_workload(&identity(), DAY, now).unwrap();
    // leaf -> intermediate; the root from cert-chain.pem is not served.
    assert_eq!(assert_chain_verifies(&wc), 2);
    let chain = ders(&wc.cert_chain_pem);
    assert_eq!(chain[1], inter.der().to_vec());
    let leaf = parse(&chain[0]);
    assert_eq!(
        leaf.issuer().as_raw(),
        parse(inter.der()).subject().as_raw()
    );
    // Nothing was written into someone else's cacerts directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}

#[test]
fn plugged_cacerts_without_cert_chain_still_serve_the_intermediate() {
    let root = test_ca("Root CA", None);
    let inter = test_ca("Intermediate CA", Some(&root));
    let dir = write_cacerts(&inter, &root);
    std::fs::remove_file(dir.path().join("cert-chain.pem")).unwrap();
    let ca = Ca::load_or_create(dir.path(), TD).unwrap();
    let wc = ca
        .sign_workload(&identity(), DAY, SystemTime::now())
        .unwrap();
    assert_eq!(assert_chain_verifies(&wc), 2);
}

#[test]
fn two_level_intermediates_are_served_in_order() {
    let root = test_ca("Root CA", None);
    let mid = test_ca("Mid CA", Some(&root));
    let inter = test_ca("Cluster CA", Some(&mid));
    let dir = write_cacerts(&inter, &root);
    // Istio's order: signing CA, then upward, root last.
    write(
        dir.path(),
        "cert-chain.pem",
        &(inter.pem() + &mid.pem() + &root.pem()),
    );
    let ca = Ca::load_or_create(dir.path(), TD).unwrap();
    let wc = ca
        .sign_workload(&identity(), DAY, SystemTime::now())
        .unwrap();
    assert_eq!(assert_chain_verifies(&wc), 3);
}

/// OpenSSL-made, Istio-style files: RSA keys in PKCS#1 form (see testdata/gen.sh).
#[test]
fn openssl_istio_cacerts_with_pkcs1_rsa_key() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "ca-cert.pem",
        "ca-key.pem",
        "root-cert.pem",
        "cert-chain.pem",
    ] {
        std::fs::copy(testdata("istio-cacerts").join(name), dir.path().join(name)).unwrap();
    }
    let ca = Ca::load_or_create(dir.path(), TD).unwrap();
    let wc = ca
        .sign_workload(&identity(), DAY, SystemTime::now())
        .unwrap();
    assert_eq!(assert_chain_verifies(&wc), 2);
    let leaf_der = &ders(&wc.cert_chain_pem)[0];
    let leaf = parse(leaf_der);
    assert_eq!(
        leaf.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.11",
        "sha256WithRSAEncryption"
    );
    assert_eq!(
        leaf.issuer().to_string(),
        "O=Istio, CN=Intermediate CA, L=cluster1"
    );
}

#[test]
fn sec1_ec_key_loads() {
    let path = testdata("ec-sec1-key.pem");
    let key = load_key(&path, &std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
}

#[test]
fn extra_roots_join_the_bundle_after_the_signing_root() {
    let now = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let own = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    let next = test_ca("Next Root", None);
    write(dir.path(), "extra-roots.pem", &next.pem());
    let ca = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    let bundle = ders(&ca.trust_bundle());
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0], ders(&own.trust_bundle())[0]);
    assert_eq!(bundle[1], next.der().to_vec());
    // Signing did not switch: leaves from before the reload are not due.
    let wc = own.sign_workload(&identity(), DAY, now).unwrap();
    assert!(!ca.rotation_due(&wc, now));
    assert_eq!(
        ca.sign_workload(&identity(), DAY, now).unwrap().root_pem,
        ca.trust_bundle()
    );

    // A root listed twice is trusted once.
    write(
        dir.path(),
        "extra-roots.pem",
        &(next.pem() + &own.trust_bundle()),
    );
    let ca = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    assert_eq!(ders(&ca.trust_bundle()).len(), 2);
}

#[test]
fn expired_extra_root_is_skipped_not_fatal() {
    let now = SystemTime::now();
    let old_dir = tempfile::tempdir().unwrap();
    // Generated eleven years ago: expired a year ago.
    let old = Ca::load_or_create_at(old_dir.path(), TD, now - 11 * 365 * DAY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    write(dir.path(), "extra-roots.pem", &old.trust_bundle());
    let ca = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    assert_eq!(ders(&ca.trust_bundle()).len(), 1);
}

#[test]
fn root_key_without_cert_is_recertified() {
    let now = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    std::fs::remove_file(dir.path().join("root-cert.pem")).unwrap();
    let ca = Ca::load_or_create_at(dir.path(), TD, now).unwrap();
    assert_ne!(ca.trust_bundle(), first.trust_bundle());
    let (old, new) = (ders(&first.trust_bundle()), ders(&ca.trust_bundle()));
    // Same key, so same public key; a new serial.
    assert_eq!(
        parse(&old[0]).public_key().raw,
        parse(&new[0]).public_key().raw
    );
    assert_ne!(parse(&old[0]).raw_serial(), parse(&new[0]).raw_serial());
    let wc = ca.sign_workload(&identity(), DAY, now).unwrap();
    assert_chain_verifies(&wc);
    assert!(dir.path().join("root-cert.pem").exists());
    assert!(CertInfo::parse(&ca.trust_bundle()).is_ok());
}
