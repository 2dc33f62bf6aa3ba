//! The auth module's one error type. A token is a bearer credential, so no
//! message ever includes it, whole or in part; claim values (issuer, audience,
//! subject) are shown, escaped with `{:?}`, because they are what an operator
//! needs to fix a mismatch.

use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a JWT, or its header or claims are not what a Kubernetes
    /// service-account token carries (e.g. no `exp`).
    #[error("malformed service-account token: {0}")]
    Malformed(String),
    #[error("token is signed with {got}, but the configured key verifies {expected} tokens")]
    WrongAlgorithm { expected: String, got: String },
    #[error(
        "token signature does not verify against the configured public key \
         (signed by another key, or altered)"
    )]
    BadSignature,
    #[error("token expired at {}", fmt_time(*exp))]
    Expired { exp: SystemTime },
    #[error("token is not valid before {}", fmt_time(*not_before))]
    NotYetValid { not_before: SystemTime },
    #[error("token issuer {got:?} is not the configured issuer {expected:?}")]
    WrongIssuer { expected: String, got: String },
    #[error("token audiences {got:?} include none of the accepted audiences {expected:?}")]
    WrongAudience {
        expected: Vec<String>,
        got: Vec<String>,
    },
    #[error(
        "token subject {sub:?} is not a service account \
         (expected system:serviceaccount:NAMESPACE:NAME)"
    )]
    NotAServiceAccount { sub: String },
    #[error(
        "token claims disagree: the subject names {subject:?} but the kubernetes.io claim \
         names {kubernetes:?}"
    )]
    ClaimsDisagree { subject: String, kubernetes: String },
    /// TokenReview: the API server answered, and did not accept the token.
    #[error("the Kubernetes API server did not authenticate the token: {0}")]
    NotAuthenticated(String),
    /// TokenReview: no usable answer (API server down, RBAC, a malformed
    /// reply). Never treated as a pass.
    #[error("could not review the token with the Kubernetes API server: {0}")]
    ReviewFailed(String),
    /// A key that cannot be used: not PEM, the wrong kind, an unsupported curve.
    #[error("unusable JWT key: {0}")]
    Key(String),
    /// A verifier or minter set up in a way that could never work
    /// (no audience, empty issuer, zero lifetime).
    #[error("invalid token settings: {0}")]
    Config(String),
}

fn fmt_time(t: SystemTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(t)
}
