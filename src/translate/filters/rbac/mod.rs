//! AuthorizationPolicy as Envoy RBAC filters, HTTP and network, with
//! Istio's semantics (istio/istio `pilot/pkg/security/authz/builder` and
//! `model`):
//!
//! - Envoy runs, in order: CUSTOM (a shadow RBAC that marks the requests
//!   its rules match, then ext_authz for the marked ones; see [`custom`]),
//!   AUDIT (RBAC `LOG`), DENY, ALLOW. Istio's builder emits AUDIT before
//!   DENY and ALLOW, so a denied request is still audited. On HTTP chains
//!   Istio puts RequestAuthentication's jwt_authn between CUSTOM and the
//!   rest, hence two functions: [`custom_http_filters`], [`http_filters`].
//! - One RBAC filter per action present. Its policies are named as Istio
//!   names them, `ns[NS]-policy[NAME]-rule[N]`, so stats and logs read the same.
//! - ALLOW: once any ALLOW policy applies, a request matching none is
//!   denied. A policy without rules matches nothing; a rule without
//!   from/to/when matches everything.
//! - `istio.io/dry-run` policies go to `shadow_rules` only: counted and
//!   logged, never enforced.
//! - A rule that cannot be expressed fails closed: an ALLOW rule is left
//!   out (it allows nothing), a DENY, AUDIT or CUSTOM rule matches more
//!   (see `rule::Unusable`).

pub mod custom;
pub(crate) mod matchers;
mod permission;
mod principal;
mod rule;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_workload;

use std::collections::HashMap;

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::config::rbac::v3::{rbac::Action, Policy, Rbac};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::util::pack_any;

use crate::model::authz::{AuthzAction, AuthzPolicy};
use crate::model::Snapshot;
use crate::translate::ProxyShape;

pub const HTTP_FILTER: &str = "envoy.filters.http.rbac";
pub const NETWORK_FILTER: &str = "envoy.filters.network.rbac";
/// Istio's stat prefix for network RBAC (`tcp.rbac.allowed`, ...).
const TCP_STAT_PREFIX: &str = "tcp.";
const DRY_RUN_ALLOW_PREFIX: &str = "istio_dry_run_allow_";
const DRY_RUN_DENY_PREFIX: &str = "istio_dry_run_deny_";

/// The kind of filter chain: HTTP attributes exist only on HTTP chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    Http,
    Tcp,
}

/// CUSTOM's HTTP filters (shadow RBAC and ext_authz), which Istio runs
/// first, before jwt_authn: the authorizer sees the request as sent.
pub fn custom_http_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<HttpFilter> {
    let by = ByAction::of(snapshot, shape);
    custom::http_filters(snapshot, shape, &by.custom)
}

/// The RBAC filters of the workload's inbound HTTP chains: AUDIT, DENY,
/// ALLOW, each present only when a policy of that action applies.
pub fn http_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<HttpFilter> {
    let by = ByAction::of(snapshot, shape);
    let mut out = Vec::new();
    for (kind, policies) in by.enforcing() {
        if let Some(rules) = build(policies, kind, Chain::Http) {
            out.push(http_filter(HTTP_FILTER, pack_any(rules.http())));
        }
    }
    out
}

/// Network filters for the workload's inbound TCP chains: CUSTOM, AUDIT,
/// DENY, ALLOW.
pub fn network_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Filter> {
    let by = ByAction::of(snapshot, shape);
    let mut out = custom::network_filters(snapshot, shape, &by.custom);
    for (kind, policies) in by.enforcing() {
        if let Some(rules) = build(policies, kind, Chain::Tcp) {
            out.push(network_filter(NETWORK_FILTER, pack_any(rules.network())));
        }
    }
    out
}

/// The policies that apply to the workload, by action, in key order.
#[derive(Default)]
struct ByAction<'a> {
    custom: Vec<&'a AuthzPolicy>,
    audit: Vec<&'a AuthzPolicy>,
    deny: Vec<&'a AuthzPolicy>,
    allow: Vec<&'a AuthzPolicy>,
}

impl<'a> ByAction<'a> {
    fn of(snapshot: &'a Snapshot, shape: &ProxyShape) -> ByAction<'a> {
        let mut by = ByAction::default();
        for policy in shape
            .authz
            .iter()
            .filter_map(|k| snapshot.authorization_policies.get(k))
        {
            let list = match policy.action {
                AuthzAction::Custom { .. } => &mut by.custom,
                AuthzAction::Audit => &mut by.audit,
                AuthzAction::Deny => &mut by.deny,
                AuthzAction::Allow => &mut by.allow,
            };
            list.push(policy.as_ref());
        }
        by
    }

    /// The RBAC-only actions, in the order Envoy runs them.
    fn enforcing(&self) -> [(Kind, &[&'a AuthzPolicy]); 3] {
        [
            (Kind::Audit, &self.audit),
            (Kind::Deny, &self.deny),
            (Kind::Allow, &self.allow),
        ]
    }
}

/// How a policy's rules become RBAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Allow,
    Deny,
    Audit,
    /// Rules that decide which requests ext_authz checks: matched like DENY.
    Custom,
}

impl Kind {
    fn action(self) -> Action {
        match self {
            Kind::Allow => Action::Allow,
            Kind::Deny | Kind::Custom => Action::Deny,
            Kind::Audit => Action::Log,
        }
    }
}

/// One action's RBAC: enforced rules and dry-run (shadow) rules, each
/// present only when some policy asks for it.
struct Built {
    kind: Kind,
    enforced: Option<Rbac>,
    shadow: Option<Rbac>,
}

impl Built {
    fn shadow_prefix(&self) -> &'static str {
        match (self.shadow.is_some(), self.kind) {
            (false, _) | (true, Kind::Audit) => "",
            (true, Kind::Allow) => DRY_RUN_ALLOW_PREFIX,
            (true, Kind::Deny | Kind::Custom) => DRY_RUN_DENY_PREFIX,
        }
    }

    fn http(self) -> HttpRbac {
        HttpRbac {
            shadow_rules_stat_prefix: self.shadow_prefix().to_string(),
            rules: self.enforced,
            shadow_rules: self.shadow,
            ..Default::default()
        }
    }

    fn network(self) -> NetworkRbac {
        NetworkRbac {
            stat_prefix: TCP_STAT_PREFIX.to_string(),
            shadow_rules_stat_prefix: self.shadow_prefix().to_string(),
            rules: self.enforced,
            shadow_rules: self.shadow,
            ..Default::default()
        }
    }
}

/// The RBAC of `policies` (all of action `kind`) for one kind of chain;
/// `None` when there are none. An ALLOW set whose every rule was left out
/// still yields its (empty) RBAC: it then denies everything.
fn build(policies: &[&AuthzPolicy], kind: Kind, chain: Chain) -> Option<Built> {
    if policies.is_empty() {
        return None;
    }
    let (dry, enforced): (Vec<&AuthzPolicy>, Vec<&AuthzPolicy>) =
        policies.iter().partition(|p| p.dry_run);
    let rbac = |set: Vec<&AuthzPolicy>| {
        (!set.is_empty()).then(|| rbac(kind.action(), rules_of(&set, kind, chain, "")))
    };
    Some(Built {
        kind,
        enforced: rbac(enforced),
        shadow: rbac(dry),
    })
}

/// Envoy's RBAC from named policies. Envoy evaluates them in name order;
/// the map gets a fixed hasher so equal config encodes to equal bytes.
fn rbac(action: Action, policies: Vec<(String, Policy)>) -> Rbac {
    static STATE: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    let mut map = HashMap::with_hasher(STATE.clone());
    map.extend(policies);
    Rbac {
        action: action as i32,
        policies: map,
        ..Default::default()
    }
}

/// The named RBAC policies of `policies`' rules, `prefix` before each name.
fn rules_of(
    policies: &[&AuthzPolicy],
    kind: Kind,
    chain: Chain,
    prefix: &str,
) -> Vec<(String, Policy)> {
    let mut out = Vec::new();
    for policy in policies {
        let name = |i: usize| {
            let key = &policy.key;
            format!(
                "{prefix}ns[{}]-policy[{}]-rule[{i}]",
                key.namespace, key.name
            )
        };
        if policy.rules.is_empty() {
            out.push((name(0), match_never()));
            continue;
        }
        let ctx = rule::Ctx {
            policy,
            chain,
            widen: kind != Kind::Allow,
        };
        for (i, r) in policy.rules.iter().enumerate() {
            match rule::compile(&ctx, r) {
                Ok(p) => out.push((name(i), p)),
                Err(why @ rule::Unusable::HttpOnly(_)) => tracing::debug!(
                    policy = %policy.key, rule = i, %why,
                    "ALLOW rule left out of the TCP chain: it cannot match there"
                ),
                Err(why @ rule::Unusable::Malformed(_)) if kind == Kind::Allow => tracing::warn!(
                    policy = %policy.key, rule = i, %why,
                    "AuthorizationPolicy rule cannot be translated; it allows nothing"
                ),
                Err(why) => {
                    tracing::warn!(
                        policy = %policy.key, rule = i, %why,
                        "AuthorizationPolicy rule cannot be translated; it now matches every request"
                    );
                    out.push((name(i), match_all()));
                }
            }
        }
    }
    out
}

fn match_all() -> Policy {
    Policy {
        permissions: vec![permission::any()],
        principals: vec![principal::any()],
        ..Default::default()
    }
}

/// Istio's `rbacPolicyMatchNever`: a policy without rules.
fn match_never() -> Policy {
    Policy {
        permissions: vec![permission::not(permission::any())],
        principals: vec![principal::not(principal::any())],
        ..Default::default()
    }
}

fn http_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

fn network_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}
