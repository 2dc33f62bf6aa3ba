//! Every load error names the file at fault.

use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair};

use super::*;
use crate::ca::CaError;

/// Loads `dir` expecting an error whose message names `file`.
fn load_err(dir: &Path, file: &str) -> CaError {
    load_err_at(dir, file, SystemTime::now())
}

fn load_err_at(dir: &Path, file: &str, now: SystemTime) -> CaError {
    let err = Ca::load_or_create_at(dir, TD, now).unwrap_err();
    assert!(
        err.to_string().contains(file),
        "error should name {file}: {err}"
    );
    err
}

fn plugged() -> tempfile::TempDir {
    let root = test_ca("Root CA", None);
    let inter = test_ca("Intermediate CA", Some(&root));
    write_cacerts(&inter, &root)
}

#[test]
fn corrupt_pem_names_the_file() {
    let dir = plugged();
    write(dir.path(), "ca-cert.pem", "this is not a certificate\n");
    let err = load_err(dir.path(), "ca-cert.pem");
    assert!(matches!(err, CaError::NotPem { .. }), "{err}");

    write(
        dir.path(),
        "ca-cert.pem",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    );
    let err = load_err(dir.path(), "ca-cert.pem");
    assert!(matches!(err, CaError::NotPem { .. }), "{err}");

    // Valid PEM, but the DER inside is not a certificate.
    let junk = crate::ca::codec::pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x00");
    write(dir.path(), "root-cert.pem", &junk);
    write(dir.path(), "ca-cert.pem", &junk);
    let err = load_err(dir.path(), "ca-cert.pem");
    assert!(matches!(err, CaError::BadCert { .. }), "{err}");
}

#[test]
fn mismatched_key_names_both_files() {
    let dir = plugged();
    write(
        dir.path(),
        "ca-key.pem",
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    let err = load_err(dir.path(), "ca-key.pem");
    assert!(err.to_string().contains("ca-cert.pem"), "{err}");
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
}

#[test]
fn corrupt_key_names_the_file() {
    let dir = plugged();
    write(
        dir.path(),
        "ca-key.pem",
        &crate::ca::codec::pem_encode("PRIVATE KEY", b"junk"),
    );
    let err = load_err(dir.path(), "ca-key.pem");
    assert!(matches!(err, CaError::BadKey { .. }), "{err}");
}

#[test]
fn non_ca_certificate_is_refused() {
    let dir = plugged();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["leaf.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    write(dir.path(), "ca-cert.pem", &leaf.pem());
    write(dir.path(), "ca-key.pem", &key.serialize_pem());
    let err = load_err(dir.path(), "ca-cert.pem");
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");

    // A leaf is no more welcome as a trusted root.
    let dir = plugged();
    write(dir.path(), "root-cert.pem", &leaf.pem());
    let err = load_err(dir.path(), "root-cert.pem");
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");
}

#[test]
fn intermediate_from_another_root_is_refused() {
    let dir = plugged();
    let stranger = test_ca("Unrelated Root", None);
    write(dir.path(), "root-cert.pem", &stranger.pem());
    let err = load_err(dir.path(), "ca-cert.pem");
    assert!(err.to_string().contains("root-cert.pem"), "{err}");
    assert!(matches!(err, CaError::Chain { .. }), "{err}");
}

#[test]
fn missing_plugged_file_is_named() {
    let dir = plugged();
    std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    let err = load_err(dir.path(), "ca-key.pem");
    assert!(matches!(err, CaError::Io { .. }), "{err}");
}

#[test]
fn expired_root_is_refused() {
    let now = SystemTime::now();
    let (dir, _) = new_ca(now);
    let later = now + Duration::from_secs(11 * 365 * 86400);
    let err = load_err_at(dir.path(), "root-cert.pem", later);
    assert!(matches!(err, CaError::Expired { .. }), "{err}");
}

#[test]
fn corrupt_own_root_key_names_the_file() {
    let (dir, _) = new_ca(SystemTime::now());
    write(dir.path(), "root-key.pem", "garbage");
    let err = load_err(dir.path(), "root-key.pem");
    assert!(matches!(err, CaError::NotPem { .. }), "{err}");
}

#[test]
fn lone_root_cert_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = test_ca("Someone's Root", None);
    let path = write(dir.path(), "root-cert.pem", &root.pem());
    let err = load_err(dir.path(), "root-key.pem");
    assert!(matches!(err, CaError::Layout { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(path).unwrap(), root.pem());
}

#[test]
fn non_ca_extra_root_is_refused() {
    let (dir, _) = new_ca(SystemTime::now());
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["leaf.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    write(dir.path(), "extra-roots.pem", &leaf.pem());
    let err = load_err(dir.path(), "extra-roots.pem");
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");
}

#[test]
fn invalid_trust_domain_is_refused_before_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::load_or_create(dir.path(), "Not A Domain").unwrap_err();
    assert!(matches!(err, CaError::InvalidName { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
