//! Authenticating xDS clients by service-account token.
//!
//! Each sidecar sends its projected service-account JWT as
//! `authorization: Bearer <token>` on the TLS xDS port (design.md, "Identity
//! with stock Envoy"). In a cluster Rudder asks Kubernetes ([`TokenReviewer`]); in
//! file mode it verifies the token itself against a configured issuer and
//! public key, with [`TokenVerifier`]. [`TokenMinter`] makes such tokens for
//! local use and tests (`rudder token issue`).
//!
//! Tokens are ES256 (ECDSA P-256); RS256 tokens, which Kubernetes' own signer
//! makes, verify too given an RSA public key. Keys are PEM: PKCS#8 private,
//! SPKI public. Verification is pure: the caller passes `now`.
//!
//! The JWT crate is `jsonwebtoken` 9, which signs and verifies with ring,
//! already in the tree for rcgen: v10 and later would add either aws-lc or the
//! RustCrypto stack (rsa, p256, p384, ed25519-dalek, rand, hmac). Its claim
//! validation is not used; see [`jwt`] for why.

mod error;
pub mod jwt;
mod key;
pub mod token_review;

#[cfg(test)]
mod tests;

pub use error::AuthError;
pub use jwt::{TokenMinter, TokenVerifier, LEEWAY};
pub use token_review::TokenReviewer;

/// Who a verified token says the caller is: a Kubernetes service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    pub namespace: String,
    pub service_account: String,
}

/// A fresh ECDSA P-256 key pair for signing tokens: (PKCS#8 private key PEM,
/// SPKI public key PEM).
pub fn generate_key_pair() -> Result<(String, String), AuthError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AuthError::Key(format!("generating a P-256 key: {e}")))?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}
