//! CUSTOM policies: external authorization, as Istio builds it. An RBAC
//! filter holds the CUSTOM rules as `shadow_rules` (never enforced) with
//! stat prefix `istio_ext_authz_`; when one matches, Envoy records its name
//! (`istio-ext-authz-ns[..]-policy[..]-rule[..]`) in dynamic metadata, and
//! the ext_authz filter that follows runs only for requests so marked
//! (`filter_enabled_metadata`). Requests no CUSTOM rule matches never reach
//! the authorizer.
//!
//! Fail closed, never open, when this cannot be built: two providers for
//! one workload (Istio allows one), a provider MeshConfig does not define or
//! that names no usable service, or an HTTP provider on a TCP chain (only
//! gRPC authorizers can check connections). The requests the CUSTOM rules
//! cover are then denied outright, and a warning says why.
//!
//! Dry-run CUSTOM policies are evaluated in their own shadow RBAC (stat
//! prefix `istio_dry_run_custom_`) and never call the authorizer.

use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::rbac::v3::{rbac::Action, Policy, Rbac};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::util::pack_any;

use super::{
    http_filter, network_filter, rbac, rules_of, Chain, Kind, HTTP_FILTER, NETWORK_FILTER,
    TCP_STAT_PREFIX,
};
use crate::model::authz::{AuthzAction, AuthzPolicy};
use crate::model::Snapshot;
use crate::translate::filters::ext_authz::{self, Authorizer};
use crate::translate::ProxyShape;

/// The shadow RBAC's stat prefix; Envoy prefixes its metadata keys with it.
pub const SHADOW_STAT_PREFIX: &str = "istio_ext_authz_";
/// Every CUSTOM rule's name starts with this; ext_authz runs when the
/// matched rule's name does.
pub const POLICY_PREFIX: &str = "istio-ext-authz";
const DRY_RUN_STAT_PREFIX: &str = "istio_dry_run_custom_";

/// What the enforced CUSTOM policies of one workload become on one chain.
enum Plan<'a> {
    /// Mark matching requests, then ask the authorizer about them.
    Check(Vec<(String, Policy)>, Authorizer<'a>),
    /// Deny the requests the rules cover: the authorizer is unusable.
    Deny(Vec<(String, Policy)>),
}

pub fn http_filters(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    policies: &[&AuthzPolicy],
) -> Vec<HttpFilter> {
    let (dry, plan) = plan(snapshot, shape, policies, Chain::Http);
    let mut out = Vec::new();
    if let Some(dry) = dry {
        let config = HttpRbac {
            shadow_rules: Some(dry),
            shadow_rules_stat_prefix: DRY_RUN_STAT_PREFIX.to_string(),
            ..Default::default()
        };
        out.push(http_filter(HTTP_FILTER, pack_any(config)));
    }
    match plan {
        None => {}
        Some(Plan::Deny(rules)) => {
            let config = HttpRbac {
                rules: Some(rbac(Action::Deny, rules)),
                ..Default::default()
            };
            out.push(http_filter(HTTP_FILTER, pack_any(config)));
        }
        Some(Plan::Check(rules, authorizer)) => {
            let config = HttpRbac {
                shadow_rules: Some(rbac(Action::Deny, rules)),
                shadow_rules_stat_prefix: SHADOW_STAT_PREFIX.to_string(),
                ..Default::default()
            };
            out.push(http_filter(HTTP_FILTER, pack_any(config)));
            out.push(authorizer.http_filter());
        }
    }
    out
}

pub fn network_filters(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    policies: &[&AuthzPolicy],
) -> Vec<Filter> {
    let (dry, plan) = plan(snapshot, shape, policies, Chain::Tcp);
    let mut out = Vec::new();
    let mut push = |rules: Option<Rbac>, shadow: Option<Rbac>, shadow_prefix: &str| {
        let config = NetworkRbac {
            stat_prefix: TCP_STAT_PREFIX.to_string(),
            rules,
            shadow_rules: shadow,
            shadow_rules_stat_prefix: shadow_prefix.to_string(),
            ..Default::default()
        };
        out.push(network_filter(NETWORK_FILTER, pack_any(config)));
    };
    if let Some(dry) = dry {
        push(None, Some(dry), DRY_RUN_STAT_PREFIX);
    }
    match plan {
        None => {}
        Some(Plan::Deny(rules)) => push(Some(rbac(Action::Deny, rules)), None, ""),
        Some(Plan::Check(rules, authorizer)) => {
            push(None, Some(rbac(Action::Deny, rules)), SHADOW_STAT_PREFIX);
            // plan() checked that the authorizer speaks gRPC.
            out.extend(authorizer.network_filter());
        }
    }
    out
}

/// The dry-run shadow RBAC, and the plan for the enforced policies.
fn plan<'a>(
    snapshot: &'a Snapshot,
    shape: &ProxyShape,
    policies: &[&AuthzPolicy],
    chain: Chain,
) -> (Option<Rbac>, Option<Plan<'a>>) {
    let (dry, enforced): (Vec<&AuthzPolicy>, Vec<&AuthzPolicy>) =
        policies.iter().partition(|p| p.dry_run);
    let dry =
        (!dry.is_empty()).then(|| rbac(Action::Deny, rules_of(&dry, Kind::Custom, chain, "")));
    if enforced.is_empty() {
        return (dry, None);
    }
    let prefix = format!("{POLICY_PREFIX}-");
    let rules = rules_of(&enforced, Kind::Custom, chain, &prefix);
    let mut providers: Vec<&str> = enforced.iter().filter_map(|p| provider(p)).collect();
    providers.sort_unstable();
    providers.dedup();
    let names = || -> Vec<String> { enforced.iter().map(|p| p.key.to_string()).collect() };
    let authorizer = match providers[..] {
        [one] => ext_authz::resolve(snapshot, shape, one),
        _ => Err(format!(
            "only one CUSTOM provider can be used per workload, found {providers:?}"
        )),
    };
    let plan = match authorizer {
        Ok(a) if chain == Chain::Tcp && !a.checks_connections() => {
            tracing::warn!(
                policies = ?names(), provider = a.name,
                "CUSTOM provider is an HTTP authorizer, which cannot check TCP connections: \
                 denying the TCP connections these policies cover"
            );
            Plan::Deny(rules)
        }
        Ok(a) => Plan::Check(rules, a),
        Err(why) => {
            tracing::warn!(
                policies = ?names(), %why,
                "CUSTOM authorization cannot be set up: denying the requests these policies cover"
            );
            Plan::Deny(rules)
        }
    };
    (dry, Some(plan))
}

fn provider(p: &AuthzPolicy) -> Option<&str> {
    match &p.action {
        AuthzAction::Custom { provider } => Some(provider.as_str()),
        _ => None,
    }
}
