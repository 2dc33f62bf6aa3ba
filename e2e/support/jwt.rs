//! End-user JWTs for RequestAuthentication tests: an identity provider with
//! an ES256 (P-256) key, its JWKS, and tokens with chosen claims.
//!
//! ```ignore
//! let idp = Idp::new("https://idp.example");
//! std::fs::write(&path, idp.jwks())?;                  // inline `jwks:` or a served file
//! let token = idp.mint(&Claims::new("alice", &["web"]).claim("groups", json!(["a", "b"])));
//! let expired = idp.mint(&Claims::new("alice", &["web"]).expires_in(-600));
//! let forged = idp.forger().mint(&Claims::new("alice", &["web"])); // same iss and kid, other key
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

/// An issuer with one signing key.
pub struct Idp {
    issuer: String,
    kid: String,
    key: EncodingKey,
    /// The public key as a JWK (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`).
    jwk: Value,
}

impl Idp {
    /// A fresh P-256 key for `issuer`, key id `key-1`.
    pub fn new(issuer: &str) -> Idp {
        Idp::with_kid(issuer, "key-1")
    }

    pub fn with_kid(issuer: &str, kid: &str) -> Idp {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generating a P-256 key");
        // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = pair.public_key_raw();
        assert_eq!((point.len(), point[0]), (65, 4), "unexpected P-256 point");
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": kid,
            "x": b64url(&point[1..33]),
            "y": b64url(&point[33..]),
        });
        Idp {
            issuer: issuer.to_string(),
            kid: kid.to_string(),
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `{"keys": [this key]}`, as a JWKS endpoint or an inline `jwks:` holds it.
    pub fn jwks(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    /// Another key claiming the same issuer and key id: its tokens carry the
    /// right `iss` and `kid` but a signature this issuer's JWKS refutes.
    pub fn forger(&self) -> Idp {
        Idp::with_kid(&self.issuer, &self.kid)
    }

    /// A signed ES256 token with `iss` set to this issuer and `claims`.
    pub fn mint(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let mut body = claims.extra.clone();
        let now = unix_now();
        body.insert("iss".into(), self.issuer.clone().into());
        body.insert("sub".into(), claims.sub.clone().into());
        body.insert("aud".into(), claims.aud.clone().into());
        body.insert("iat".into(), now.into());
        body.insert("nbf".into(), now.into());
        body.insert("exp".into(), (now + claims.expires_in).into());
        jsonwebtoken::encode(&header, &Value::Object(body), &self.key).expect("signing a token")
    }
}

/// The claims of one token: `sub`, `aud`, lifetime, and any others.
#[derive(Debug, Clone)]
pub struct Claims {
    sub: String,
    aud: Vec<String>,
    /// Seconds from now to `exp`; negative for an expired token.
    expires_in: i64,
    extra: Map<String, Value>,
}

impl Claims {
    /// Valid for 10 minutes.
    pub fn new(sub: &str, aud: &[&str]) -> Claims {
        Claims {
            sub: sub.to_string(),
            aud: aud.iter().map(|a| a.to_string()).collect(),
            expires_in: 600,
            extra: Map::new(),
        }
    }

    /// `exp` this many seconds from now (negative: already expired).
    pub fn expires_in(mut self, secs: i64) -> Claims {
        self.expires_in = secs;
        self
    }

    /// Any other claim, e.g. `("groups", json!(["a", "b"]))`.
    pub fn claim(mut self, name: &str, value: Value) -> Claims {
        self.extra.insert(name.to_string(), value);
        self
    }
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

/// Unpadded base64url (RFC 7515), as JWKs spell key material.
fn b64url(data: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    use super::*;

    /// Verifies `token` against `jwks` the way a relying party does.
    fn verify(jwks: &str, token: &str, aud: &str) -> Result<Value, jsonwebtoken::errors::Error> {
        let set: JwkSet = serde_json::from_str(jwks).expect("a JWKS");
        let kid = jsonwebtoken::decode_header(token)?.kid.expect("a kid");
        let jwk = set.find(&kid).expect("the token's key in the set");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[aud]);
        validation.set_issuer(&["https://idp.example"]);
        validation.leeway = 0;
        decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation).map(|d| d.claims)
    }

    #[test]
    fn jwt_helper_tokens_verify_against_their_jwks() {
        let idp = Idp::new("https://idp.example");
        let token = idp.mint(&Claims::new("alice", &["web"]).claim("groups", json!(["a", "b"])));
        let claims = verify(&idp.jwks(), &token, "web").expect("a valid token");
        assert_eq!(claims["iss"], "https://idp.example");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], json!(["web"]));
        assert_eq!(claims["groups"], json!(["a", "b"]));
        assert!(claims["exp"].as_i64().unwrap() > unix_now());
    }

    #[test]
    fn jwt_helper_bad_tokens_are_refused() {
        let idp = Idp::new("https://idp.example");
        let jwks = idp.jwks();
        let expired = idp.mint(&Claims::new("alice", &["web"]).expires_in(-600));
        assert!(verify(&jwks, &expired, "web").is_err(), "expired");
        let token = idp.mint(&Claims::new("alice", &["web"]));
        assert!(verify(&jwks, &token, "other").is_err(), "wrong audience");
        let forged = idp.forger().mint(&Claims::new("alice", &["web"]));
        assert!(verify(&jwks, &forged, "web").is_err(), "forged signature");
        assert!(verify(&idp.forger().jwks(), &token, "web").is_err());
    }

    #[test]
    fn jwt_helper_base64url_matches_rfc4648() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }
}
