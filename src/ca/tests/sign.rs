//! The self-signed CA and the certificates it issues.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;
use x509_parser::extensions::GeneralName;

use super::*;
use crate::ca::{CaError, CaSource, CertInfo};

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn generates_root_then_reloads_the_same_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::load_or_create(dir.path(), TD).unwrap();
    assert_eq!(first.source(), CaSource::SelfSigned);
    let second = Ca::load_or_create(dir.path(), TD).unwrap();
    assert_eq!(first.trust_bundle(), second.trust_bundle());
    assert_eq!(first.signer_cert_pem(), second.signer_cert_pem());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("root-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temp files left behind by the atomic writes.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["root-cert.pem", "root-key.pem"]);
}

#[test]
fn root_profile() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let roots = ders(&ca.trust_bundle());
    assert_eq!(roots.len(), 1);
    let root = parse(&roots[0]);
    assert_eq!(
        root.subject().to_string(),
        "O=cluster.local, CN=Rudder Root CA"
    );
    let bc = root.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(1));
    let ku = root.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert!(crate::ca::verify::signed_by(&root, &root));
    let life = root.validity().not_after.timestamp() - root.validity().not_before.timestamp();
    assert!((3650 * 86400..3651 * 86400).contains(&life), "{life}");
}

#[test]
fn workload_cert_profile() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let ttl = DAY;
    let wc = ca.sign_workload(&identity(), ttl, now).unwrap();
    assert_eq!(assert_chain_verifies(&wc), 1, "self-signed root: leaf only");
    assert_eq!(wc.root_pem, ca.trust_bundle());

    let chain = ders(&wc.cert_chain_pem);
    let leaf = parse(&chain[0]);
    // Istio's profile: empty subject, so the SAN is critical.
    assert!(
        leaf.subject().as_raw().len() <= 2,
        "subject should be empty"
    );
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical);
    let want = "spiffe://cluster.local/ns/default/sa/productpage";
    assert_eq!(san.value.general_names, [GeneralName::URI(want)]);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any);
    assert!(!leaf.is_ca());
    assert!(
        leaf.basic_constraints().unwrap().is_some(),
        "explicit CA:FALSE"
    );

    // Validity: backdated 5 minutes for clock skew, whole seconds.
    let nb = leaf.validity().not_before.timestamp() as u64;
    let na = leaf.validity().not_after.timestamp() as u64;
    assert_eq!(nb, secs(now) - 300);
    assert_eq!(na, secs(now) + ttl.as_secs());
    assert_eq!((secs(wc.not_before), secs(wc.not_after)), (nb, na));

    // The key is PKCS#8 and belongs to the leaf.
    assert!(wc.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = KeyPair::from_pem(&wc.key_pem).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    assert_eq!(
        key.public_key_raw(),
        leaf.public_key().subject_public_key.data.as_ref()
    );

    let info = CertInfo::parse(&wc.cert_chain_pem).unwrap();
    assert_eq!(info.spiffe_id.as_deref(), Some(want));
    assert_eq!(info.not_after, wc.not_after);
    assert_eq!(info.serial, hex::encode(leaf.raw_serial()));
    assert!(leaf.raw_serial().len() <= 17 && leaf.raw_serial().len() >= 8);
}

#[test]
fn each_signing_has_a_fresh_key_and_serial() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let a = ca.sign_workload(&identity(), DAY, now).unwrap();
    let b = ca.sign_workload(&identity(), DAY, now).unwrap();
    assert_ne!(a.key_pem, b.key_pem);
    let (ia, ib) = (
        CertInfo::parse(&a.cert_chain_pem).unwrap(),
        CertInfo::parse(&b.cert_chain_pem).unwrap(),
    );
    assert_ne!(ia.serial, ib.serial);
    assert_eq!(ia.spiffe_id, ib.spiffe_id);
}

#[test]
fn rotation_due_at_80_percent() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let wc = ca.sign_workload(&identity(), DAY, now).unwrap();
    let life = wc.not_after.duration_since(wc.not_before).unwrap();
    assert!(!ca.rotation_due(&wc, wc.not_before + life * 79 / 100));
    assert!(ca.rotation_due(&wc, wc.not_before + life * 81 / 100));
    assert!(ca.rotation_due(&wc, wc.not_after + Duration::from_secs(1)));

    // A leaf from another signer (e.g. before a root rotation) is due at once.
    let (_other_dir, other) = new_ca(now);
    let foreign = other.sign_workload(&identity(), DAY, now).unwrap();
    assert!(ca.rotation_due(&foreign, now));
}

#[test]
fn short_lived_leaf_is_not_due_at_once() {
    // The 5-minute backdating is not lifetime: measured from notBefore, a 60 s
    // leaf would be 80 % through its life the moment it is issued.
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let wc = ca
        .sign_workload(&identity(), Duration::from_secs(60), now)
        .unwrap();
    assert!(!ca.rotation_due(&wc, now));
    assert!(!ca.rotation_due(&wc, now + Duration::from_secs(10)));
    assert!(ca.rotation_due(&wc, now + Duration::from_secs(49)));
}

#[test]
fn serving_cert_has_dns_and_ip_sans() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let names = ["rudder.rudder-system.svc", "localhost", "127.0.0.1"].map(String::from);
    let wc = ca.serving_cert(&names, DAY, now).unwrap();
    assert_chain_verifies(&wc);
    let chain = ders(&wc.cert_chain_pem);
    let leaf = parse(&chain[0]);
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        [
            GeneralName::DNSName("rudder.rudder-system.svc"),
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&[127, 0, 0, 1]),
        ]
    );
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let info = CertInfo::parse(&wc.cert_chain_pem).unwrap();
    assert_eq!(info.spiffe_id, None);
    assert_eq!(info.dns_names, ["rudder.rudder-system.svc", "localhost"]);

    for bad in [
        vec![],
        vec!["UPPER.example".to_string()],
        vec!["a..b".to_string()],
    ] {
        let err = ca.serving_cert(&bad, DAY, now).unwrap_err();
        assert!(matches!(err, CaError::InvalidName { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn refuses_other_trust_domains_bad_identities_and_zero_ttl() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let other = Identity::new("other.mesh", "default", "sa").unwrap();
    let err = ca.sign_workload(&other, DAY, now).unwrap_err();
    assert!(matches!(err, CaError::TrustDomainMismatch { .. }), "{err}");

    // Fields are public; signing re-validates them.
    let mut bad = identity();
    bad.namespace = "a/b".into();
    let err = ca.sign_workload(&bad, DAY, now).unwrap_err();
    assert!(matches!(err, CaError::InvalidName { .. }), "{err}");

    let err = ca
        .sign_workload(&identity(), Duration::ZERO, now)
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidTtl(_)), "{err}");
}

#[test]
fn leaf_lifetime_is_capped_at_the_signer_and_refused_after_it() {
    // A root generated ten years minus a day ago expires tomorrow.
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now - Duration::from_secs(3650 * 86400) + DAY);
    let wc = ca.sign_workload(&identity(), 30 * DAY, now).unwrap();
    assert_eq!(wc.not_after, ca.signer_not_after());
    assert_chain_verifies(&wc);

    let err = ca
        .sign_workload(&identity(), DAY, now + 2 * DAY)
        .unwrap_err();
    assert!(matches!(err, CaError::SignerExpired(_)), "{err}");
}

#[test]
fn debug_never_shows_the_key() {
    let now = SystemTime::now();
    let (_dir, ca) = new_ca(now);
    let wc = ca.sign_workload(&identity(), DAY, now).unwrap();
    let shown = format!("{wc:?} {ca:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("[elided]"));
}

#[test]
fn ca_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ca>();
}
