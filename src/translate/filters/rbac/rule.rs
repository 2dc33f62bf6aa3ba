//! One AuthorizationPolicy rule as one Envoy RBAC policy (Istio's
//! `model.New` and `Model.Generate`).
//!
//! A rule matches when one of its `from` sources, one of its `to`
//! operations and all of its `when` conditions match. Envoy's policy
//! matches when one of its principals and one of its permissions match, so
//! each source becomes a principal and each operation a permission, and
//! every condition is ANDed into all of them, on the side it belongs to:
//! caller attributes (`source.*`, `remote.ip`, `request.*`) to principals,
//! the rest to permissions. Within one field, `values` are ORed and
//! `notValues` negate the OR of theirs.

use envoy_types::pb::envoy::config::rbac::v3::{Permission, Policy, Principal};

use super::{permission, principal, Chain};
use crate::model::authz::{AuthzPolicy, AuthzRule, Condition, OperationMatch, SourceMatch};

/// Why an attribute cannot become a matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// An HTTP attribute on a TCP chain: nothing there can match it.
    HttpOnly(String),
    /// A value validation should have refused; the policy fails closed.
    Malformed(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::HttpOnly(key) => write!(f, "{key} is HTTP only and this is a TCP chain"),
            Unusable::Malformed(why) => f.write_str(why),
        }
    }
}

/// What a rule is compiled for.
pub struct Ctx<'a> {
    pub policy: &'a AuthzPolicy,
    pub chain: Chain,
    /// Leave out attributes that cannot match (DENY, AUDIT, CUSTOM: the
    /// rule matches more); otherwise (ALLOW) refuse the whole rule.
    pub widen: bool,
}

pub fn compile(ctx: &Ctx, rule: &AuthzRule) -> Result<Policy, Unusable> {
    let (mut ids, mut perms) = (Vec::new(), Vec::new());
    for c in &rule.when {
        condition(ctx, c, &mut ids, &mut perms)?;
    }
    let principals = if rule.from.is_empty() {
        vec![principal::and(ids)]
    } else {
        rule.from
            .iter()
            .map(|s| Ok(principal::and([source(ctx, s)?, ids.clone()].concat())))
            .collect::<Result<_, Unusable>>()?
    };
    let permissions = if rule.to.is_empty() {
        vec![permission::and(perms)]
    } else {
        rule.to
            .iter()
            .map(|o| {
                Ok(permission::and(
                    [operation(ctx, o)?, perms.clone()].concat(),
                ))
            })
            .collect::<Result<_, Unusable>>()?
    };
    Ok(Policy {
        permissions,
        principals,
        ..Default::default()
    })
}

/// Adds one attribute's terms to `out`: its `values` (any of them) and its
/// `notValues` (none of them).
#[allow(clippy::too_many_arguments)]
fn terms<T>(
    ctx: &Ctx,
    key: &str,
    http_only: bool,
    values: &[String],
    not_values: &[String],
    f: impl Fn(&[String]) -> Result<T, Unusable>,
    not: fn(T) -> T,
    out: &mut Vec<T>,
) -> Result<(), Unusable> {
    if values.is_empty() && not_values.is_empty() {
        return Ok(());
    }
    if http_only && ctx.chain == Chain::Tcp {
        if !ctx.widen {
            return Err(Unusable::HttpOnly(key.to_string()));
        }
        tracing::debug!(
            policy = %ctx.policy.key, key,
            "HTTP-only attribute left out of the rule on a TCP chain, so the rule matches more"
        );
        return Ok(());
    }
    if !values.is_empty() {
        out.push(f(values)?);
    }
    if !not_values.is_empty() {
        out.push(not(f(not_values)?));
    }
    Ok(())
}

fn source(ctx: &Ctx, s: &SourceMatch) -> Result<Vec<Principal>, Unusable> {
    use principal::{any_of, not};
    let ns = ctx.policy.key.namespace.as_str();
    let mut out = Vec::new();
    let o = &mut out;
    let each = |f: fn(&str) -> Principal| move |v: &[String]| any_of(v, |x| Ok(f(x)));
    terms(
        ctx,
        "principals",
        false,
        &s.principals,
        &s.not_principals,
        each(principal::source_principal),
        not,
        o,
    )?;
    let (rp, nrp) = (&s.request_principals, &s.not_request_principals);
    terms(
        ctx,
        "requestPrincipals",
        true,
        rp,
        nrp,
        |v| Ok(principal::request_principals(v)),
        not,
        o,
    )?;
    terms(
        ctx,
        "namespaces",
        false,
        &s.namespaces,
        &s.not_namespaces,
        each(principal::source_namespace),
        not,
        o,
    )?;
    let sa = |v: &[String]| any_of(v, |x| Ok(principal::service_account(ns, x)));
    terms(
        ctx,
        "serviceAccounts",
        false,
        &s.service_accounts,
        &s.not_service_accounts,
        sa,
        not,
        o,
    )?;
    let ip = |v: &[String]| any_of(v, principal::direct_remote_ip);
    terms(
        ctx,
        "ipBlocks",
        false,
        &s.ip_blocks,
        &s.not_ip_blocks,
        ip,
        not,
        o,
    )?;
    let remote = |v: &[String]| any_of(v, principal::remote_ip);
    terms(
        ctx,
        "remoteIpBlocks",
        false,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        remote,
        not,
        o,
    )?;
    Ok(out)
}

fn operation(ctx: &Ctx, op: &OperationMatch) -> Result<Vec<Permission>, Unusable> {
    use permission::{any_of, not};
    let mut out = Vec::new();
    let o = &mut out;
    let each = |f: fn(&str) -> Result<Permission, Unusable>| move |v: &[String]| any_of(v, f);
    terms(
        ctx,
        "hosts",
        true,
        &op.hosts,
        &op.not_hosts,
        each(permission::host),
        not,
        o,
    )?;
    terms(
        ctx,
        "methods",
        true,
        &op.methods,
        &op.not_methods,
        each(permission::method),
        not,
        o,
    )?;
    terms(
        ctx,
        "paths",
        true,
        &op.paths,
        &op.not_paths,
        each(permission::path),
        not,
        o,
    )?;
    terms(
        ctx,
        "ports",
        false,
        &op.ports,
        &op.not_ports,
        each(permission::port),
        not,
        o,
    )?;
    Ok(out)
}

/// A `when` condition, to the side it belongs to (Istio's `model.New`).
fn condition(
    ctx: &Ctx,
    c: &Condition,
    ids: &mut Vec<Principal>,
    perms: &mut Vec<Permission>,
) -> Result<(), Unusable> {
    let key = c.key.as_str();
    let (v, nv) = (&c.values[..], &c.not_values[..]);
    let perm = |http_only, f: &dyn Fn(&[String]) -> Result<Permission, Unusable>, out| {
        terms(ctx, key, http_only, v, nv, f, permission::not, out)
    };
    let each_perm =
        |f: fn(&str) -> Result<Permission, Unusable>| move |v: &[String]| permission::any_of(v, f);
    let id = |http_only, f: &dyn Fn(&[String]) -> Result<Principal, Unusable>, out| {
        terms(ctx, key, http_only, v, nv, f, principal::not, out)
    };
    let each_id =
        |f: fn(&str) -> Result<Principal, Unusable>| move |v: &[String]| principal::any_of(v, f);
    let each_ok = |f: fn(&str) -> Principal| move |v: &[String]| principal::any_of(v, |x| Ok(f(x)));
    let ns = ctx.policy.key.namespace.as_str();
    match key {
        "destination.ip" => perm(false, &each_perm(permission::destination_ip), perms),
        "destination.port" => perm(false, &each_perm(permission::port), perms),
        "connection.sni" => perm(false, &each_perm(permission::sni), perms),
        _ if key.starts_with("experimental.envoy.filters.") => {
            perm(false, &|v| permission::envoy_filter_metadata(key, v), perms)
        }
        "source.ip" => id(false, &each_id(principal::direct_remote_ip), ids),
        "remote.ip" => id(false, &each_id(principal::remote_ip), ids),
        "source.namespace" => id(false, &each_ok(principal::source_namespace), ids),
        "source.principal" => id(false, &each_ok(principal::source_principal), ids),
        "source.serviceAccount" => id(
            false,
            &|v| principal::any_of(v, |x| Ok(principal::service_account(ns, x))),
            ids,
        ),
        "request.auth.principal" => id(true, &|v| Ok(principal::request_principals(v)), ids),
        "request.auth.audiences" => id(true, &|v| Ok(principal::jwt_claims(&["aud"], v)), ids),
        "request.auth.presenter" => id(true, &|v| Ok(principal::jwt_claims(&["azp"], v)), ids),
        _ if key.starts_with("request.auth.claims") => {
            let claims = claim_path(&key["request.auth.claims".len()..]);
            id(
                true,
                &|v| {
                    let claims = claims.clone().ok_or_else(|| bad_key(key))?;
                    let claims: Vec<&str> = claims.iter().map(String::as_str).collect();
                    Ok(principal::jwt_claims(&claims, v))
                },
                ids,
            )
        }
        _ if key.starts_with("request.headers") => {
            let name = header_name(&key["request.headers".len()..]);
            let f = |v: &[String]| {
                let name = name.ok_or_else(|| bad_key(key))?;
                principal::any_of(v, |x| Ok(principal::request_header(name, x)))
            };
            id(true, &f, ids)
        }
        _ if key.starts_with("request.experimental.inline.headers") => {
            let name = header_name(&key["request.experimental.inline.headers".len()..]);
            let f = |v: &[String]| {
                let name = name.ok_or_else(|| bad_key(key))?;
                principal::any_of(v, |x| Ok(principal::inline_header(name, x)))
            };
            id(true, &f, ids)
        }
        _ => Err(Unusable::Malformed(format!("unknown attribute {key:?}"))),
    }
}

fn bad_key(key: &str) -> Unusable {
    Unusable::Malformed(format!(
        "bad key {key:?}: expected the form name[key], with a valid header or claim name"
    ))
}

/// `[name]` -> `name`.
fn bracketed(s: &str) -> Option<&str> {
    s.strip_prefix('[')?
        .strip_suffix(']')
        .filter(|n| !n.is_empty())
}

/// `[name]` -> `name`, a header name Envoy accepts (an RFC 9110 token, or a
/// pseudo-header): anything else would be a NACK of the whole listener.
fn header_name(s: &str) -> Option<&str> {
    let name = bracketed(s)?;
    let token = name.strip_prefix(':').unwrap_or(name);
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    (!token.is_empty() && token.chars().all(tchar)).then_some(name)
}

/// `[a][b]` -> `[a, b]`; anything else in one pair of brackets is one name,
/// so `[a.b]` is the claim `a.b` (Istio's `extractNameInNestedBrackets`).
fn claim_path(s: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let nested = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .filter(|(name, _)| !name.contains('['));
        match nested {
            Some((name, tail)) if !name.is_empty() => {
                names.push(name.to_string());
                rest = tail;
            }
            _ => return bracketed(s).map(|n| vec![n.to_string()]),
        }
    }
    (!names.is_empty()).then_some(names)
}

#[cfg(test)]
pub(super) fn claim_path_for_test(s: &str) -> Option<Vec<String>> {
    claim_path(s)
}
