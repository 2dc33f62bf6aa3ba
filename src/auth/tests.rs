//! Token tests. Odd tokens are built by signing hand-written claims with the
//! test key, so each check fails for exactly the reason under test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const ISS: &str = "rudder-local";
const AUD: &str = "rudder";
const T0: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

fn id() -> TokenIdentity {
    TokenIdentity {
        namespace: "default".into(),
        service_account: "productpage".into(),
    }
}

struct Keys {
    private: String,
    public: String,
}

fn keys() -> Keys {
    let (private, public) = generate_key_pair().unwrap();
    Keys { private, public }
}

fn verifier(k: &Keys) -> TokenVerifier {
    TokenVerifier::new(ISS.into(), vec![AUD.into()], &k.public).unwrap()
}

fn minter(k: &Keys) -> TokenMinter {
    TokenMinter::new(&k.private, ISS.into()).unwrap()
}

/// Claims as Kubernetes writes them, valid at T0 for an hour.
fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": [AUD],
        "sub": "system:serviceaccount:default:productpage",
        "exp": T0 + 3600,
        "nbf": T0,
        "iat": T0,
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {"name": "productpage", "uid": "5c4b0f"},
            "pod": {"name": "productpage-1", "uid": "a1b2"}
        },
        "jti": "0f6b"
    })
}

fn sign(k: &Keys, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(k.private.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

/// Unpadded base64url, to hand-build token parts.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    let bytes = decode_b64url(part);
    serde_json::from_slice(&bytes).unwrap()
}

fn decode_b64url(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (u32::from(val(c)) << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn round_trip_in_the_kubernetes_shape() {
    let k = keys();
    let token = minter(&k)
        .mint(&id(), &[AUD.to_string()], Duration::from_secs(3600), now())
        .unwrap();
    assert_eq!(verifier(&k).verify(&token, now()).unwrap(), id());
    // A token file's trailing newline is fine.
    assert_eq!(
        verifier(&k).verify(&format!("{token}\n"), now()).unwrap(),
        id()
    );
    assert_eq!(
        payload(&token),
        json!({
            "iss": ISS,
            "aud": [AUD],
            "sub": "system:serviceaccount:default:productpage",
            "exp": T0 + 3600,
            "nbf": T0,
            "iat": T0,
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "productpage"}}
        })
    );
    // A real Kubernetes claim set, extra claims and all, verifies too.
    assert_eq!(
        verifier(&k).verify(&sign(&k, &claims()), now()).unwrap(),
        id()
    );
}

#[test]
fn expiry_allows_leeway_and_no_more() {
    let k = keys();
    let v = verifier(&k);
    let token = sign(&k, &claims());
    let exp = now() + Duration::from_secs(3600);
    assert!(v.verify(&token, exp - Duration::from_secs(1)).is_ok());
    assert!(v
        .verify(&token, exp + LEEWAY - Duration::from_secs(1))
        .is_ok());
    for late in [exp + LEEWAY, exp + Duration::from_secs(86400)] {
        match v.verify(&token, late) {
            Err(AuthError::Expired { exp: e }) => assert_eq!(e, exp),
            other => panic!("{other:?}"),
        }
    }
    let msg = v.verify(&token, exp + LEEWAY).unwrap_err().to_string();
    assert_eq!(msg, "token expired at 2023-11-14T23:13:20Z");
}

#[test]
fn not_valid_before_nbf_or_iat() {
    let k = keys();
    let v = verifier(&k);
    for claim in ["nbf", "iat"] {
        let mut c = claims();
        c[claim] = json!(T0 + 120);
        let err = v.verify(&sign(&k, &c), now()).unwrap_err();
        assert!(
            matches!(err, AuthError::NotYetValid { .. }),
            "{claim}: {err}"
        );
        // Within the leeway, a little clock skew is tolerated.
        c[claim] = json!(T0 + 30);
        assert!(v.verify(&sign(&k, &c), now()).is_ok(), "{claim}");
    }
}

#[test]
fn wrong_issuer() {
    let k = keys();
    let mut c = claims();
    c["iss"] = json!("https://kubernetes.default.svc.cluster.local");
    match verifier(&k).verify(&sign(&k, &c), now()) {
        Err(AuthError::WrongIssuer { expected, got }) => {
            assert_eq!(expected, ISS);
            assert_eq!(got, "https://kubernetes.default.svc.cluster.local");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn audience_must_intersect_and_may_be_a_string() {
    let k = keys();
    let mut c = claims();
    c["aud"] = json!(["api", "vault"]);
    let err = verifier(&k).verify(&sign(&k, &c), now()).unwrap_err();
    assert!(matches!(err, AuthError::WrongAudience { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        r#"token audiences ["api", "vault"] include none of the accepted audiences ["rudder"]"#
    );

    c["aud"] = json!(["api", AUD]);
    assert!(verifier(&k).verify(&sign(&k, &c), now()).is_ok());
    c["aud"] = json!(AUD);
    assert!(verifier(&k).verify(&sign(&k, &c), now()).is_ok());
    let several = TokenVerifier::new(ISS.into(), vec!["x".into(), "api".into()], &k.public);
    c["aud"] = json!("api");
    assert!(several.unwrap().verify(&sign(&k, &c), now()).is_ok());

    c.as_object_mut().unwrap().remove("aud");
    let err = verifier(&k).verify(&sign(&k, &c), now()).unwrap_err();
    assert!(matches!(err, AuthError::WrongAudience { .. }), "{err}");
}

#[test]
fn forged_and_tampered_tokens_fail_the_signature() {
    let (k, other) = (keys(), keys());
    let forged = minter(&other)
        .mint(&id(), &[AUD.to_string()], Duration::from_secs(60), now())
        .unwrap();
    let err = verifier(&k).verify(&forged, now()).unwrap_err();
    assert!(matches!(err, AuthError::BadSignature), "{err}");

    // Same header and signature, payload promoted to another account.
    let token = sign(&k, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("system:serviceaccount:kube-system:admin");
    c["kubernetes.io"]["namespace"] = json!("kube-system");
    c["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    let body = b64(&serde_json::to_vec(&c).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], body, parts[2]);
    let err = verifier(&k).verify(&tampered, now()).unwrap_err();
    assert!(matches!(err, AuthError::BadSignature), "{err}");
}

#[test]
fn subject_must_be_a_service_account() {
    let k = keys();
    for sub in [
        "system:node:worker-1",
        "system:serviceaccount:default",
        "system:serviceaccount::productpage",
        "system:serviceaccount:default:a:b",
        "system:serviceaccount:Default:productpage",
        "alice",
    ] {
        let mut c = claims();
        c["sub"] = json!(sub);
        c.as_object_mut().unwrap().remove("kubernetes.io");
        match verifier(&k).verify(&sign(&k, &c), now()) {
            Err(AuthError::NotAServiceAccount { sub: got }) => assert_eq!(got, sub),
            other => panic!("{sub}: {other:?}"),
        }
    }
}

#[test]
fn kubernetes_claim_must_agree_with_the_subject() {
    let k = keys();
    for (path, value) in [("namespace", "kube-system"), ("name", "admin")] {
        let mut c = claims();
        match path {
            "namespace" => c["kubernetes.io"]["namespace"] = json!(value),
            _ => c["kubernetes.io"]["serviceaccount"]["name"] = json!(value),
        }
        let err = verifier(&k).verify(&sign(&k, &c), now()).unwrap_err();
        assert!(matches!(err, AuthError::ClaimsDisagree { .. }), "{err}");
    }
    // Without the kubernetes.io claim the subject alone decides.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("kubernetes.io");
    assert_eq!(verifier(&k).verify(&sign(&k, &c), now()).unwrap(), id());
}

#[test]
fn malformed_tokens_and_claims() {
    let k = keys();
    let v = verifier(&k);
    let huge = "a".repeat(20_000);
    for garbage in ["", "  ", "abc", "a.b", "a.b.c", "a.b.c.d", "...", &huge] {
        let err = v.verify(garbage, now()).unwrap_err();
        assert!(
            matches!(err, AuthError::Malformed(_)),
            "{garbage:.20}: {err}"
        );
    }
    // Wrongly typed or missing times are malformed, never "absent".
    for (claim, value) in [
        ("exp", json!(null)),
        ("exp", json!("99999999999")),
        ("nbf", json!("99999999999")),
        ("iat", json!({"t": 1})),
        ("aud", json!(42)),
        ("sub", json!(["system:serviceaccount:default:productpage"])),
    ] {
        let mut c = claims();
        c[claim] = value;
        let err = v.verify(&sign(&k, &c), now()).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{claim}: {err}");
    }
    // Fractional NumericDates are allowed by RFC 7519.
    let mut c = claims();
    c["exp"] = json!(T0 as f64 + 3600.5);
    assert!(v.verify(&sign(&k, &c), now()).is_ok());

    // alg "none" is not an algorithm jsonwebtoken knows: malformed header.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    let err = v.verify(&none, now()).unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err}");
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(k.public.as_bytes()),
    )
    .unwrap();
    let err = v.verify(&hs, now()).unwrap_err();
    assert!(matches!(err, AuthError::WrongAlgorithm { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "token is signed with HS256, but the configured key verifies ES256 tokens"
    );
}

#[test]
fn errors_never_echo_the_token() {
    let (k, other) = (keys(), keys());
    let v = verifier(&k);
    let mut expired = claims();
    expired["exp"] = json!(T0 - 3600);
    let mut bad_type = claims();
    bad_type["exp"] = json!("soon");
    let tokens = [
        sign(&k, &expired),
        sign(&other, &claims()),
        sign(&k, &bad_type),
        format!("{}x", sign(&k, &claims())),
        "not-a-token-at-all-secret-123".to_string(),
    ];
    for token in &tokens {
        let err = v.verify(token, now()).unwrap_err();
        let shown = format!("{err} {err:?}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!shown.contains(part), "{shown}");
        }
    }
}

#[test]
fn rs256_tokens_verify_with_an_rsa_public_key() {
    // testdata/rsa-pub*.pem: `openssl rsa -pubout` / `-RSAPublicKey_out` of the
    // CA fixture's test-only RSA key.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let read = |p: &str| std::fs::read_to_string(format!("{dir}/{p}")).unwrap();
    let private = read("ca/testdata/istio-cacerts/ca-key.pem");
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &key).unwrap();
    for public in [
        "auth/testdata/rsa-pub.pem",
        "auth/testdata/rsa-pub-pkcs1.pem",
    ] {
        let v = TokenVerifier::new(ISS.into(), vec![AUD.into()], &read(public)).unwrap();
        assert_eq!(v.verify(&token, now()).unwrap(), id(), "{public}");
        let es = keys();
        let err = v.verify(&sign(&es, &claims()), now()).unwrap_err();
        assert!(matches!(err, AuthError::WrongAlgorithm { .. }), "{err}");
    }
}

#[test]
fn bad_keys_and_settings_are_refused_up_front() {
    let k = keys();
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    for pem in [
        String::new(),
        "not pem".to_string(),
        k.private.clone(),
        p384.public_key_pem(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
    ] {
        let err = TokenVerifier::new(ISS.into(), vec![AUD.into()], &pem).unwrap_err();
        assert!(matches!(err, AuthError::Key(_)), "{err}");
    }
    let err = TokenMinter::new(&k.public, ISS.into()).unwrap_err();
    assert!(matches!(err, AuthError::Key(_)), "{err}");
    let err = TokenMinter::new(&p384.serialize_pem(), ISS.into()).unwrap_err();
    assert!(matches!(err, AuthError::Key(_)), "{err}");

    let err = TokenVerifier::new(ISS.into(), vec![], &k.public).unwrap_err();
    assert!(matches!(err, AuthError::Config(_)), "{err}");
    let err = TokenVerifier::new(String::new(), vec![AUD.into()], &k.public).unwrap_err();
    assert!(matches!(err, AuthError::Config(_)), "{err}");
    let m = minter(&k);
    let aud = [AUD.to_string()];
    let err = m.mint(&id(), &aud, Duration::ZERO, now()).unwrap_err();
    assert!(matches!(err, AuthError::Config(_)), "{err}");
    let err = m.mint(&id(), &[], Duration::from_secs(60), now());
    assert!(matches!(err, Err(AuthError::Config(_))));
    let mut bad = id();
    bad.namespace = "a:b".into();
    let err = m.mint(&bad, &aud, Duration::from_secs(60), now());
    assert!(matches!(err, Err(AuthError::NotAServiceAccount { .. })));
    assert!(!format!("{m:?}").contains("PRIVATE"));
}
