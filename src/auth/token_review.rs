//! In a cluster: the API server vouches for the token (TokenReview).
//!
//! Each unknown token is POSTed as an `authentication.k8s.io/v1` TokenReview
//! with the accepted audiences; the answer's `status.user.username`
//! (`system:serviceaccount:NS:SA`) is the caller. Rudder needs `create` on
//! `tokenreviews`. Anything short of a clear "authenticated, for one of our
//! audiences, as a service account" is a refusal: an API outage keeps
//! everyone out rather than letting anyone in.
//!
//! Accepted tokens are remembered for [`CACHE_TTL`] (never past the token's
//! own `exp`), so a reconnect storm (every sidecar after a Rudder restart)
//! costs one review per token, not one per stream. The cache key is the
//! token's SHA-256; the token itself is never stored. The price: a token the
//! cluster stops honouring (its service account or pod deleted) still works
//! for at most [`CACHE_TTL`] on this replica. Refusals are not cached, so a
//! token that failed during an API hiccup works on the next try.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::jwt::parse_subject;
use super::{AuthError, TokenIdentity};

/// How long an accepted token is taken on trust without asking again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries kept at most; past that, expired ones go, then everything.
const CACHE_MAX: usize = 10_000;
/// A review slower than this is a failure: the TLS handshake is waiting.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Authenticates tokens through the Kubernetes API server.
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    cache: ReviewCache,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Result<Self, AuthError> {
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            return Err(AuthError::Config(
                "TokenReview needs at least one non-empty audience".into(),
            ));
        }
        Ok(TokenReviewer {
            client,
            audiences,
            cache: ReviewCache::default(),
        })
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The service account `token` belongs to, per the API server.
    pub async fn review(&self, token: &str) -> Result<TokenIdentity, AuthError> {
        let now = SystemTime::now();
        if let Some(id) = self.cache.get(token, now) {
            return Ok(id);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(self.audiences.clone()),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| {
                    AuthError::ReviewFailed(format!("no answer within {REVIEW_TIMEOUT:?}"))
                })?
                .map_err(api_error)?;
        let id = identity_from_review(answer.status.as_ref(), &self.audiences)?;
        self.cache.put(token, &id, now);
        Ok(id)
    }
}

fn api_error(e: kube::Error) -> AuthError {
    AuthError::ReviewFailed(match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "{} (Rudder needs `create` on tokenreviews.authentication.k8s.io)",
            s.message
        ),
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    })
}

/// What a TokenReview's answer says about the caller. Pure; the API server
/// has already checked signature, expiry, audience and that the service
/// account (and bound pod) still exist.
pub fn identity_from_review(
    status: Option<&TokenReviewStatus>,
    audiences: &[String],
) -> Result<TokenIdentity, AuthError> {
    let status = status.ok_or_else(|| {
        AuthError::ReviewFailed("the TokenReview came back without a status".into())
    })?;
    if status.authenticated != Some(true) {
        let why = status
            .error
            .as_deref()
            .filter(|e| !e.is_empty())
            .unwrap_or("no reason given");
        return Err(AuthError::NotAuthenticated(why.to_string()));
    }
    // An audience-unaware authenticator answers with no (or other) audiences:
    // the token may be valid, but not for us.
    let got = status.audiences.clone().unwrap_or_default();
    if !got.iter().any(|a| audiences.contains(a)) {
        return Err(AuthError::WrongAudience {
            expected: audiences.to_vec(),
            got,
        });
    }
    let username = status
        .user
        .as_ref()
        .and_then(|u| u.username.as_deref())
        .unwrap_or_default();
    parse_subject(username)
}

/// Accepted tokens by SHA-256, with when to stop trusting the answer.
#[derive(Default)]
struct ReviewCache {
    entries: Mutex<HashMap<[u8; 32], (TokenIdentity, SystemTime)>>,
}

impl ReviewCache {
    fn get(&self, token: &str, now: SystemTime) -> Option<TokenIdentity> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&digest(token)) {
            Some((id, until)) if now < *until => Some(id.clone()),
            _ => None,
        }
    }

    /// Remembers `id` until [`CACHE_TTL`] from `now` or the token's `exp`,
    /// whichever is first. A token whose `exp` cannot be read is not cached.
    fn put(&self, token: &str, id: &TokenIdentity, now: SystemTime) {
        let Some(exp) = unverified_exp(token) else {
            return;
        };
        let until = exp.min(now + CACHE_TTL);
        if until <= now {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(digest(token), (id.clone(), until));
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The `exp` claim of a JWT, read without verifying anything: it only
/// shortens how long the API server's verdict is reused.
fn unverified_exp(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims.get("exp")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn aud() -> Vec<String> {
        vec!["rudder".to_string()]
    }

    fn status(authenticated: bool, user: &str, audiences: &[&str]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            user: Some(UserInfo {
                username: Some(user.to_string()),
                ..Default::default()
            }),
            error: None,
        }
    }

    #[test]
    fn an_authenticated_service_account_is_the_caller() {
        let s = status(true, "system:serviceaccount:demo:web", &["rudder"]);
        let id = identity_from_review(Some(&s), &aud()).unwrap();
        assert_eq!(
            id,
            TokenIdentity {
                namespace: "demo".into(),
                service_account: "web".into()
            }
        );
        // One shared audience is enough.
        let s = status(true, "system:serviceaccount:demo:web", &["other", "rudder"]);
        let both = ["x".to_string(), "rudder".to_string()];
        assert!(identity_from_review(Some(&s), &both).is_ok());
    }

    #[test]
    fn not_authenticated_carries_the_api_servers_reason() {
        let mut s = status(false, "", &[]);
        s.error = Some("token audiences [\"api\"] is invalid for the target audiences".into());
        let err = identity_from_review(Some(&s), &aud()).unwrap_err();
        assert!(matches!(err, AuthError::NotAuthenticated(_)), "{err}");
        assert!(
            err.to_string().contains("is invalid for the target"),
            "{err}"
        );

        s.error = None;
        s.authenticated = None;
        let err = identity_from_review(Some(&s), &aud()).unwrap_err();
        assert!(err.to_string().contains("no reason given"), "{err}");
    }

    #[test]
    fn an_audience_unaware_answer_is_refused() {
        for audiences in [&[][..], &["https://kubernetes.default.svc"][..]] {
            let s = status(true, "system:serviceaccount:demo:web", audiences);
            let err = identity_from_review(Some(&s), &aud()).unwrap_err();
            assert!(matches!(err, AuthError::WrongAudience { .. }), "{err}");
        }
        let mut s = status(true, "system:serviceaccount:demo:web", &[]);
        s.audiences = None;
        assert!(identity_from_review(Some(&s), &aud()).is_err());
    }

    #[test]
    fn only_service_accounts_are_callers() {
        for user in [
            "alice",
            "system:admin",
            "system:node:n1",
            "system:serviceaccount:demo",
            "system:serviceaccount::web",
            "",
        ] {
            let s = status(true, user, &["rudder"]);
            let err = identity_from_review(Some(&s), &aud()).unwrap_err();
            assert!(
                matches!(err, AuthError::NotAServiceAccount { .. }),
                "{user}: {err}"
            );
        }
        let mut s = status(true, "x", &["rudder"]);
        s.user = None;
        assert!(identity_from_review(Some(&s), &aud()).is_err());
    }

    #[test]
    fn no_status_is_a_failure_not_a_pass() {
        let err = identity_from_review(None, &aud()).unwrap_err();
        assert!(matches!(err, AuthError::ReviewFailed(_)), "{err}");
    }

    fn jwt_with_exp(exp: u64) -> String {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(&format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn the_cache_keeps_answers_briefly_and_never_past_exp() {
        let cache = ReviewCache::default();
        let id = TokenIdentity {
            namespace: "demo".into(),
            service_account: "web".into(),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let long = jwt_with_exp(1_000_000 + 3600);
        cache.put(&long, &id, now);
        assert_eq!(
            cache.get(&long, now + Duration::from_secs(59)),
            Some(id.clone())
        );
        assert_eq!(cache.get(&long, now + CACHE_TTL), None);
        assert_eq!(cache.get("another", now), None);

        let short = jwt_with_exp(1_000_000 + 10);
        cache.put(&short, &id, now);
        assert!(cache.get(&short, now + Duration::from_secs(9)).is_some());
        assert_eq!(cache.get(&short, now + Duration::from_secs(10)), None);

        // Not a JWT, or already expired: not remembered.
        cache.put("opaque", &id, now);
        assert_eq!(cache.get("opaque", now), None);
        let dead = jwt_with_exp(1_000_000 - 1);
        cache.put(&dead, &id, now);
        assert_eq!(cache.get(&dead, now), None);

        // Keyed by digest: the token is not kept.
        let entries = cache.entries.lock().unwrap();
        assert!(entries.contains_key(&digest(&long)));
    }
}
