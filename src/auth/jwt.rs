//! Kubernetes service-account JWTs: the claim shape, verification and minting.
//!
//! jsonwebtoken checks the structure, the algorithm and the signature only.
//! Every claim check (issuer, audience, times, subject) is done here, on claims
//! deserialized into strict types: the crate's own time checks read the system
//! clock (tests pass `now` instead) and, in v9, skip an `exp`/`nbf` of the wrong
//! JSON type (GHSA-h395-gr6q-cpjc). Here a claim of the wrong type is a
//! malformed token, and `exp` is required.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::key::decoding_key;
use super::{AuthError, TokenIdentity};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

/// Clock difference tolerated on `exp`, `nbf` and `iat`, as Kubernetes allows.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// Real service-account tokens are about 1 KiB; anything far larger is
/// refused before any parsing or signature work.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

const SA_PREFIX: &str = "system:serviceaccount:";

/// The claims of a Kubernetes projected service-account token. Unknown claims
/// (`jti`, `kubernetes.io.pod`, ...) are ignored.
#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    /// Missing means no audience, which no verifier accepts.
    #[serde(default)]
    aud: Audiences,
    sub: String,
    exp: NumericDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<NumericDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<NumericDate>,
    #[serde(
        rename = "kubernetes.io",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Serialize, Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: ServiceAccountRef,
}

#[derive(Serialize, Deserialize)]
struct ServiceAccountRef {
    name: String,
}

/// RFC 7519 allows `aud` as one string or an array; Kubernetes writes an array.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
}

impl Default for Audiences {
    fn default() -> Self {
        Audiences::Many(Vec::new())
    }
}

impl Audiences {
    fn as_slice(&self) -> &[String] {
        match self {
            Audiences::One(a) => std::slice::from_ref(a),
            Audiences::Many(v) => v,
        }
    }
}

/// Seconds since the epoch. RFC 7519 allows fractions; they are dropped. A
/// string or any other JSON type is an error, never "absent".
#[derive(Serialize, Clone, Copy)]
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        // `as` saturates, so an absurd float cannot wrap around.
        n.as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(NumericDate)
            .ok_or_else(|| serde::de::Error::custom("a date out of range"))
    }
}

/// Verifies service-account tokens from one issuer, signed by one key.
pub struct TokenVerifier {
    issuer: String,
    audiences: Vec<String>,
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// `public_key_pem`: an ECDSA P-256 public key (ES256 tokens) or an RSA
    /// public key of 2048 bits or more (RS256, what Kubernetes signs with), as a
    /// SPKI `PUBLIC KEY` block or, for RSA, a PKCS#1 `RSA PUBLIC KEY` block. A
    /// token is accepted if its `aud` names any of `audiences`.
    pub fn new(
        issuer: String,
        audiences: Vec<String>,
        public_key_pem: &str,
    ) -> Result<Self, AuthError> {
        if issuer.is_empty() {
            return Err(AuthError::Config("the issuer must not be empty".into()));
        }
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            return Err(AuthError::Config(
                "at least one non-empty audience is required".into(),
            ));
        }
        let (alg, key) = decoding_key(public_key_pem)?;
        // Signature and algorithm only; claims are checked in `check_claims`.
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Ok(TokenVerifier {
            issuer,
            audiences,
            alg,
            key,
            validation,
        })
    }

    /// The identity a token proves at `now`. Surrounding whitespace (a token
    /// file's trailing newline) is ignored.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenIdentity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed("empty token".into()));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "{} bytes, more than the {MAX_TOKEN_BYTES} accepted",
                token.len()
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("header: {e}")))?;
        if header.alg != self.alg {
            return Err(AuthError::WrongAlgorithm {
                expected: format!("{:?}", self.alg),
                got: format!("{:?}", header.alg),
            });
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(from_jwt)?
            .claims;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Claims, now: SystemTime) -> Result<TokenIdentity, AuthError> {
        if claims.iss != self.issuer {
            return Err(AuthError::WrongIssuer {
                expected: self.issuer.clone(),
                got: claims.iss.clone(),
            });
        }
        let aud = claims.aud.as_slice();
        if !aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(AuthError::WrongAudience {
                expected: self.audiences.clone(),
                got: aud.to_vec(),
            });
        }
        let now = unix_secs(now);
        let leeway = LEEWAY.as_secs() as i64;
        if now >= claims.exp.0.saturating_add(leeway) {
            return Err(AuthError::Expired {
                exp: from_unix(claims.exp.0),
            });
        }
        // A token issued in the future is as suspect as one not yet valid.
        for not_before in [claims.nbf, claims.iat].into_iter().flatten() {
            if now.saturating_add(leeway) < not_before.0 {
                return Err(AuthError::NotYetValid {
                    not_before: from_unix(not_before.0),
                });
            }
        }
        let id = parse_subject(&claims.sub)?;
        if let Some(k8s) = &claims.kubernetes {
            if k8s.namespace != id.namespace || k8s.serviceaccount.name != id.service_account {
                return Err(AuthError::ClaimsDisagree {
                    subject: claims.sub.clone(),
                    kubernetes: format!(
                        "namespace {}, service account {}",
                        k8s.namespace, k8s.serviceaccount.name
                    ),
                });
            }
        }
        Ok(id)
    }
}

/// Mints ES256 tokens in the shape Kubernetes gives projected service-account
/// tokens, for file mode and tests.
pub struct TokenMinter {
    issuer: String,
    key: EncodingKey,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("issuer", &self.issuer)
            .field("key", &"[elided]")
            .finish()
    }
}

impl TokenMinter {
    /// `private_key_pem`: a PKCS#8 `PRIVATE KEY` block holding an ECDSA P-256
    /// key, as [`super::generate_key_pair`] and `rudder token keygen` write.
    pub fn new(private_key_pem: &str, issuer: String) -> Result<Self, AuthError> {
        if issuer.is_empty() {
            return Err(AuthError::Config("the issuer must not be empty".into()));
        }
        let pair = rcgen::KeyPair::from_pem(private_key_pem).map_err(|e| {
            AuthError::Key(format!(
                "not a PKCS#8 PRIVATE KEY that can be loaded ({e}); \
                 `rudder token keygen` writes one"
            ))
        })?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(AuthError::Key(
                "tokens are signed with ES256, which needs an ECDSA P-256 key".into(),
            ));
        }
        Ok(TokenMinter {
            issuer,
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
        })
    }

    /// A token for `id`, valid from `now` for `ttl`, naming `audiences`.
    pub fn mint(
        &self,
        id: &TokenIdentity,
        audiences: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, AuthError> {
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            return Err(AuthError::Config(
                "at least one non-empty audience is required".into(),
            ));
        }
        if ttl < Duration::from_secs(1) {
            return Err(AuthError::Config(
                "the token lifetime must be at least 1s".into(),
            ));
        }
        let sub = id.subject();
        if !is_name(&id.namespace) || !is_name(&id.service_account) {
            return Err(AuthError::NotAServiceAccount { sub });
        }
        let iat = unix_secs(now);
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: Audiences::Many(audiences.to_vec()),
            sub,
            exp: NumericDate(iat.saturating_add(ttl)),
            nbf: Some(NumericDate(iat)),
            iat: Some(NumericDate(iat)),
            kubernetes: Some(KubernetesClaims {
                namespace: id.namespace.clone(),
                serviceaccount: ServiceAccountRef {
                    name: id.service_account.clone(),
                },
            }),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)
            .map_err(|e| AuthError::Key(format!("signing failed: {e}")))
    }
}

impl TokenIdentity {
    /// The token subject: `system:serviceaccount:NS:SA`.
    pub fn subject(&self) -> String {
        format!("{SA_PREFIX}{}:{}", self.namespace, self.service_account)
    }
}

pub(super) fn parse_subject(sub: &str) -> Result<TokenIdentity, AuthError> {
    let bad = || AuthError::NotAServiceAccount {
        sub: sub.to_string(),
    };
    let (namespace, service_account) = sub
        .strip_prefix(SA_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(bad)?;
    if !is_name(namespace) || !is_name(service_account) {
        return Err(bad());
    }
    Ok(TokenIdentity {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
    })
}

/// The characters of Kubernetes namespace and service-account names. The CA
/// checks the exact DNS rules again before it signs anything for the identity.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// jsonwebtoken's errors, after the header and algorithm passed.
fn from_jwt(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => AuthError::BadSignature,
        ErrorKind::Json(err) => AuthError::Malformed(format!("claims: {err}")),
        ErrorKind::InvalidToken => AuthError::Malformed("not three base64url parts".into()),
        _ => AuthError::Malformed(e.to_string()),
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn from_unix(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
    .unwrap_or(UNIX_EPOCH)
}
