//! Loading the public key tokens are verified with.

use jsonwebtoken::{Algorithm, DecodingKey};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::{PublicKey, RSAPublicKey};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::AuthError;

/// The first PEM block of a public key file, and the algorithm it verifies.
pub(super) fn decoding_key(pem: &str) -> Result<(Algorithm, DecodingKey), AuthError> {
    let key_err = |m: &str| AuthError::Key(m.to_string());
    let block = Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or_else(|| key_err("no PEM block (-----BEGIN PUBLIC KEY-----)"))?
        .map_err(|e| AuthError::Key(format!("not PEM: {e}")))?;
    match block.label.as_str() {
        "PUBLIC KEY" => {
            let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents)
                .map_err(|e| AuthError::Key(format!("not a public key: {e}")))?;
            match spki.parsed() {
                Ok(PublicKey::EC(point)) => {
                    let curve = spki.algorithm.parameters.as_ref().map(|p| p.as_oid());
                    if !matches!(curve, Some(Ok(oid)) if oid == x509_parser::oid_registry::OID_EC_P256)
                    {
                        return Err(key_err(
                            "an ECDSA key on a curve other than P-256; ES256 needs P-256",
                        ));
                    }
                    Ok((Algorithm::ES256, DecodingKey::from_ec_der(point.data())))
                }
                Ok(PublicKey::RSA(rsa)) => {
                    rsa_size_ok(rsa.key_size())?;
                    let pkcs1 = &spki.subject_public_key.data;
                    Ok((Algorithm::RS256, DecodingKey::from_rsa_der(pkcs1)))
                }
                _ => Err(key_err(
                    "unsupported key type; expected ECDSA P-256 (ES256) or RSA (RS256)",
                )),
            }
        }
        "RSA PUBLIC KEY" => {
            let (_, rsa) = RSAPublicKey::from_der(&block.contents)
                .map_err(|e| AuthError::Key(format!("not an RSA public key: {e}")))?;
            rsa_size_ok(rsa.key_size())?;
            Ok((Algorithm::RS256, DecodingKey::from_rsa_der(&block.contents)))
        }
        label if label.ends_with("PRIVATE KEY") => Err(key_err(
            "this is a private key; verifying needs the public key (e.g. jwt-pub.pem)",
        )),
        other => Err(AuthError::Key(format!(
            "expected a PUBLIC KEY block, found {other:?}"
        ))),
    }
}

fn rsa_size_ok(bits: usize) -> Result<(), AuthError> {
    if bits < 2048 {
        return Err(AuthError::Key(format!(
            "an RSA key of {bits} bits; at least 2048 are required"
        )));
    }
    Ok(())
}
