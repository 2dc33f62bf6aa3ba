//! Who is calling: `from.source` fields and the `when` keys about the
//! caller, as Envoy RBAC principals (Istio's `model/generator.go`).

use envoy_types::pb::envoy::config::rbac::v3::{
    principal::{Authenticated, Identifier, Set},
    Principal, SourcedMetadata,
};
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::r#type::matcher::v3::{MetadataMatcher, StringMatcher};

use super::matchers::{self, cidr, header, header_with, jwt_claim, regex, string_value};
use super::rule::Unusable;

const SPIFFE: &str = "spiffe://";

fn id(identifier: Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}

pub fn any() -> Principal {
    id(Identifier::Any(true))
}

/// All of `ids`; none is any caller, one is itself.
pub fn and(mut ids: Vec<Principal>) -> Principal {
    match ids.len() {
        0 => any(),
        1 => ids.remove(0),
        _ => id(Identifier::AndIds(Set { ids })),
    }
}

/// Any of `ids` (at least one).
pub fn or(mut ids: Vec<Principal>) -> Principal {
    match ids.len() {
        1 => ids.remove(0),
        _ => id(Identifier::OrIds(Set { ids })),
    }
}

pub fn not(p: Principal) -> Principal {
    id(Identifier::NotId(Box::new(p)))
}

/// Any of `values`, each mapped by `f`.
pub fn any_of(
    values: &[String],
    f: impl Fn(&str) -> Result<Principal, Unusable>,
) -> Result<Principal, Unusable> {
    Ok(or(values.iter().map(|v| f(v)).collect::<Result<_, _>>()?))
}

/// The peer's certificate, by the name its mTLS handshake proved. Plaintext
/// callers have none, so they never match (and always match a `not`).
fn authenticated(name: StringMatcher) -> Principal {
    id(Identifier::Authenticated(Authenticated {
        principal_name: Some(name),
    }))
}

/// `principals` / `source.principal`: SPIFFE identities written without
/// `spiffe://` (`cluster.local/ns/NS/sa/SA`), with Istio's `*` forms.
pub fn source_principal(v: &str) -> Principal {
    authenticated(matchers::string_with_prefix(v, SPIFFE))
}

/// `namespaces` / `source.namespace`: any identity of that namespace.
pub fn source_namespace(v: &str) -> Principal {
    authenticated(regex(&format!(".*/ns/{}/.*", matchers::glob_regex(v))))
}

/// `serviceAccounts` / `source.serviceAccount`: `ns/sa`, or `sa` in the
/// policy's namespace; Istio's regex, which takes any trust domain.
pub fn service_account(policy_namespace: &str, v: &str) -> Principal {
    let (ns, sa) = v.split_once('/').unwrap_or((policy_namespace, v));
    let (ns, sa) = (regex::escape(ns), regex::escape(sa));
    authenticated(regex(&format!("spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?")))
}

/// `ipBlocks` / `source.ip`: the connection's peer address.
pub fn direct_remote_ip(v: &str) -> Result<Principal, Unusable> {
    Ok(id(Identifier::DirectRemoteIp(cidr(v)?)))
}

/// `remoteIpBlocks` / `remote.ip`: the original client (X-Forwarded-For,
/// PROXY protocol), as Envoy determines it.
pub fn remote_ip(v: &str) -> Result<Principal, Unusable> {
    Ok(id(Identifier::RemoteIp(cidr(v)?)))
}

fn dynamic_metadata(m: MetadataMatcher) -> Principal {
    id(Identifier::SourcedMetadata(SourcedMetadata {
        metadata_matcher: Some(m),
        metadata_source: 0, // DYNAMIC
    }))
}

/// `requestPrincipals` / `request.auth.principal`: `ISS/SUB` of a verified
/// JWT, matched as the token's `iss` AND `sub` claims. The value is split at
/// its LAST `/` (issuers are often URLs, subjects rarely contain `/`):
/// `https://idp.example.com/alice` is iss `https://idp.example.com`, sub
/// `alice`. `*` alone needs both claims present; a leading `*` is a suffix
/// of the issuer with an exact subject (or, without `/`, a suffix of the
/// subject from any issuer); a trailing `*` an exact issuer and a subject
/// prefix (`ISS/*`: any subject), or without `/` an issuer prefix. This is
/// Istio's `requestPrincipalGenerator`, case for case, quirks included:
/// `https://idp*` splits at the `/` of `https://`, so write an issuer
/// prefix without the scheme or name the whole issuer (`https://idp.x/*`).
pub fn request_principals(values: &[String]) -> Principal {
    let present = || regex(".+");
    or(values
        .iter()
        .map(|value| {
            let split = value.rfind('/').map(|i| (&value[..i], &value[i + 1..]));
            let (iss, sub) = if value == "*" {
                (present(), present())
            } else if let Some(rest) = value.strip_prefix('*') {
                match split {
                    Some(("*", sub)) => (present(), matchers::exact(sub)),
                    Some((iss, sub)) => (suffix(&iss[1..]), matchers::exact(sub)),
                    None => (present(), suffix(rest)),
                }
            } else if let Some(rest) = value.strip_suffix('*') {
                match split {
                    Some((iss, "*")) => (matchers::exact(iss), present()),
                    Some((iss, sub)) => (
                        matchers::exact(iss),
                        matchers::prefix(&sub[..sub.len() - 1], false),
                    ),
                    None => (matchers::prefix(rest, false), present()),
                }
            } else {
                let (iss, sub) = split.unwrap_or((value, ""));
                (matchers::exact(iss), matchers::exact(sub))
            };
            let claim = |name, m| {
                dynamic_metadata(matchers::metadata(
                    matchers::JWT_FILTER,
                    &[matchers::JWT_PAYLOAD, name],
                    string_value(m),
                ))
            };
            and(vec![claim("iss", iss), claim("sub", sub)])
        })
        .collect())
}

fn suffix(s: &str) -> StringMatcher {
    matchers::string(&format!("*{s}"))
}

/// `request.auth.audiences` (`aud`), `request.auth.presenter` (`azp`) and
/// `request.auth.claims[a][b]`: list-aware claim matches.
pub fn jwt_claims(claims: &[&str], values: &[String]) -> Principal {
    dynamic_metadata(jwt_claim(claims, values))
}

/// `request.headers[name]`: Istio's header match, case-sensitive values.
pub fn request_header(name: &str, v: &str) -> Principal {
    id(Identifier::Header(header(name, v)))
}

/// `request.experimental.inline.headers[name]`: one value among the
/// comma-separated values Envoy joins repeated headers into (Istio's
/// `HeaderMatcherWithRegex`).
pub fn inline_header(name: &str, v: &str) -> Principal {
    if v == "*" {
        return request_header(name, v);
    }
    let r = match (v.strip_prefix('*'), v.strip_suffix('*')) {
        (Some(suffix), _) => format!(".*{}", regex::escape(suffix)),
        (None, Some(prefix)) => format!("{}.*", regex::escape(prefix)),
        (None, None) => regex::escape(v),
    };
    let re = format!("^{r}$|^{r},.*|.*,{r},.*|.*,{r}$");
    id(Identifier::Header(header_with(
        name,
        HeaderMatchSpecifier::StringMatch(regex(&re)),
    )))
}
