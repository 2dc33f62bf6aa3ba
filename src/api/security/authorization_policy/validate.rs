//! The one validator for `AuthorizationPolicy`: Istio's
//! `ValidateAuthorizationPolicy`, the `security` package helpers it calls
//! (`ValidateAttribute`, `ValidateIPs`, `ValidatePorts`, `CheckServiceAccount`,
//! `CheckValidPathTemplate`) and the rules of Istio's CRD schema.

use std::sync::LazyLock;

use regex::Regex;

use super::{
    Action, AuthorizationPolicy, AuthorizationPolicySpec, Condition, Rule, RuleFrom, RuleTo,
};
use crate::api::networking::selector::check_ip_subnet;
use crate::api::security::check_dry_run_annotation;
use crate::api::security::target_ref::check_policy_targets;
use crate::api::FieldError;

/// At most this many rules, and sources per rule (Istio's CRD schema).
const MAX_RULES: usize = 512;
const MAX_FROM: usize = 512;

/// Validates the whole object: its `istio.io/dry-run` annotation, then its spec.
pub fn validate_object(policy: &AuthorizationPolicy) -> Result<(), FieldError> {
    check_dry_run_annotation(&policy.metadata, Some(policy.spec.action()))?;
    validate(&policy.spec)
}

/// The one validator for an `AuthorizationPolicy` spec.
pub fn validate(spec: &AuthorizationPolicySpec) -> Result<(), FieldError> {
    check_policy_targets(
        spec.selector.as_ref(),
        spec.target_ref.as_ref(),
        &spec.target_refs,
    )?;
    check_action(spec)?;
    if spec.rules.len() > MAX_RULES {
        return Err(FieldError::new(
            "spec.rules",
            format!("at most {MAX_RULES} rules are allowed"),
        ));
    }
    let custom = spec.action() == Action::Custom;
    for (i, rule) in spec.rules.iter().enumerate() {
        check_rule(&format!("spec.rules[{i}]"), rule, custom)?;
    }
    Ok(())
}

// An empty `rules` list reads as no rules at all, as it does in istiod.
fn check_action(spec: &AuthorizationPolicySpec) -> Result<(), FieldError> {
    let action = spec.action();
    let never = |name: &str| {
        FieldError::new(
            "spec.rules",
            format!("{name} action without `rules` is meaningless as it will never be triggered, add an empty rule `{{}}` if you want it be triggered for every request"),
        )
    };
    match action {
        Action::Custom => {
            if spec.rules.is_empty() {
                return Err(never("CUSTOM"));
            }
            let name = spec.provider.as_ref().and_then(|p| p.name.as_deref());
            if name.unwrap_or("").is_empty() {
                return Err(FieldError::new(
                    "spec.provider.name",
                    "`provider.name` must not be empty for the CUSTOM action",
                ));
            }
        }
        _ if spec.provider.is_some() => {
            return Err(FieldError::new(
                "spec.provider",
                format!(
                    "`provider` must only be set with the CUSTOM action, found {}",
                    action.as_str()
                ),
            ));
        }
        Action::Deny if spec.rules.is_empty() => return Err(never("DENY")),
        _ => {}
    }
    Ok(())
}

fn check_rule(field: &str, rule: &Rule, custom: bool) -> Result<(), FieldError> {
    if rule.from.len() > MAX_FROM {
        return Err(FieldError::new(
            format!("{field}.from"),
            format!("at most {MAX_FROM} sources are allowed"),
        ));
    }
    for (j, from) in rule.from.iter().enumerate() {
        check_from(&format!("{field}.from[{j}]"), from, custom)?;
    }
    for (j, to) in rule.to.iter().enumerate() {
        check_to(&format!("{field}.to[{j}]"), to)?;
    }
    for (j, condition) in rule.when.iter().enumerate() {
        check_condition(&format!("{field}.when[{j}]"), condition, custom)?;
    }
    Ok(())
}

fn check_from(field: &str, from: &RuleFrom, custom: bool) -> Result<(), FieldError> {
    let at = format!("{field}.source");
    let Some(src) = &from.source else {
        return Err(FieldError::new(at, "from.source must not be nil"));
    };
    let lists: [(&str, &[String]); 12] = [
        ("principals", &src.principals),
        ("notPrincipals", &src.not_principals),
        ("requestPrincipals", &src.request_principals),
        ("notRequestPrincipals", &src.not_request_principals),
        ("namespaces", &src.namespaces),
        ("notNamespaces", &src.not_namespaces),
        ("serviceAccounts", &src.service_accounts),
        ("notServiceAccounts", &src.not_service_accounts),
        ("ipBlocks", &src.ip_blocks),
        ("notIpBlocks", &src.not_ip_blocks),
        ("remoteIpBlocks", &src.remote_ip_blocks),
        ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
    ];
    if lists.iter().all(|(_, values)| values.is_empty()) {
        return Err(FieldError::new(at, "from.source must not be empty"));
    }
    // The first eight are identities, which the CUSTOM action cannot match on.
    if custom {
        if let Some((name, _)) = lists[..8].iter().find(|(_, v)| !v.is_empty()) {
            return Err(FieldError::new(
                format!("{at}.{name}"),
                format!("from.source.{name} is currently not supported with CUSTOM action"),
            ));
        }
    }
    let identities = !(src.principals.is_empty()
        && src.not_principals.is_empty()
        && src.namespaces.is_empty()
        && src.not_namespaces.is_empty());
    let accounts = [
        ("serviceAccounts", &src.service_accounts),
        ("notServiceAccounts", &src.not_service_accounts),
    ];
    if let Some((name, _)) = accounts.iter().find(|(_, v)| !v.is_empty()) {
        if identities {
            return Err(FieldError::new(
                format!("{at}.{name}"),
                "cannot set serviceAccounts with namespaces or principals",
            ));
        }
    }
    for (name, values) in lists {
        let at = format!("{at}.{name}");
        check_no_empty_values(&at, values)?;
        match name {
            "serviceAccounts" | "notServiceAccounts" => check_service_accounts(&at, values)?,
            "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                check_ips(&at, values)?
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_to(field: &str, to: &RuleTo) -> Result<(), FieldError> {
    let at = format!("{field}.operation");
    let Some(op) = &to.operation else {
        return Err(FieldError::new(at, "to.operation must not be nil"));
    };
    let lists: [(&str, &[String]); 8] = [
        ("hosts", &op.hosts),
        ("notHosts", &op.not_hosts),
        ("ports", &op.ports),
        ("notPorts", &op.not_ports),
        ("methods", &op.methods),
        ("notMethods", &op.not_methods),
        ("paths", &op.paths),
        ("notPaths", &op.not_paths),
    ];
    if lists.iter().all(|(_, values)| values.is_empty()) {
        return Err(FieldError::new(at, "to.operation must not be empty"));
    }
    for (name, values) in lists {
        let at = format!("{at}.{name}");
        check_no_empty_values(&at, values)?;
        match name {
            "ports" | "notPorts" => check_ports(&at, values)?,
            "paths" | "notPaths" => check_path_templates(&at, values)?,
            _ => {}
        }
    }
    Ok(())
}

/// What the values of a condition's attribute must look like.
enum Values {
    Any,
    Ips,
    Ports,
    ServiceAccounts,
}

fn check_condition(field: &str, condition: &Condition, custom: bool) -> Result<(), FieldError> {
    let key = condition.key.as_str();
    let key_at = format!("{field}.key");
    if key.is_empty() {
        return Err(FieldError::new(key_at, "`key` must not be empty"));
    }
    if condition.values.is_empty() && condition.not_values.is_empty() {
        return Err(FieldError::new(
            field,
            format!("at least one of `values` or `notValues` must be set for key {key}"),
        ));
    }
    let kind = attribute(key).map_err(|why| FieldError::new(&key_at, why))?;
    let identity = matches!(
        key,
        "source.namespace" | "source.serviceAccount" | "source.principal"
    ) || key.starts_with("request.auth.");
    if custom && identity {
        return Err(FieldError::new(
            key_at,
            format!("{key} is currently not supported with CUSTOM action"),
        ));
    }
    for (name, values) in [
        ("values", &condition.values),
        ("notValues", &condition.not_values),
    ] {
        let at = format!("{field}.{name}");
        check_no_empty_values(&at, values)?;
        match kind {
            Values::Any => {}
            Values::Ips => check_ips(&at, values)?,
            Values::Ports => check_ports(&at, values)?,
            Values::ServiceAccounts => check_service_accounts(&at, values)?,
        }
    }
    Ok(())
}

/// The attributes a condition may name (Istio's `security.ValidateAttribute`).
fn attribute(key: &str) -> Result<Values, String> {
    let map_key = || {
        // `a[b]`: a name, then a non-empty key in brackets.
        match key.find('[') {
            Some(open) if key.ends_with(']') && open > 0 && open + 2 < key.len() => Ok(Values::Any),
            _ => Err(format!("bad key ({key}): should have format a[b]")),
        }
    };
    match key {
        _ if key.starts_with("request.headers") => map_key(),
        _ if key.starts_with("request.experimental.inline.headers") => map_key(),
        "source.ip" | "remote.ip" | "destination.ip" => Ok(Values::Ips),
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(Values::Any),
        "source.serviceAccount" => Ok(Values::ServiceAccounts),
        _ if key.starts_with("request.auth.claims") => map_key(),
        "destination.port" => Ok(Values::Ports),
        _ if key.starts_with("experimental.envoy.filters.") => map_key(),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        _ if key.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        _ => Err(format!(
            "unknown attribute: {key} (see https://istio.io/latest/docs/reference/config/security/conditions/)"
        )),
    }
}

fn check_no_empty_values(field: &str, values: &[String]) -> Result<(), FieldError> {
    match values.iter().position(String::is_empty) {
        Some(k) => Err(FieldError::new(
            format!("{field}[{k}]"),
            "empty value not allowed",
        )),
        None => Ok(()),
    }
}

/// IPs or CIDR blocks (Istio's `security.ValidateIPs`).
fn check_ips(field: &str, values: &[String]) -> Result<(), FieldError> {
    for (k, value) in values.iter().enumerate() {
        check_ip_subnet(&format!("{field}[{k}]"), value)?;
    }
    Ok(())
}

/// Port numbers as strings, 0 to 65535 (Istio's `security.ValidatePorts`).
fn check_ports(field: &str, values: &[String]) -> Result<(), FieldError> {
    for (k, value) in values.iter().enumerate() {
        let ok = !value.starts_with('+') && value.parse::<u32>().is_ok_and(|p| p <= 65535);
        if !ok {
            return Err(FieldError::new(
                format!("{field}[{k}]"),
                format!("bad port ({value}): must be a number from 0 to 65535"),
            ));
        }
    }
    Ok(())
}

/// Service accounts as `name` or `namespace/name`, no wildcards, at most 16
/// of at most 320 characters (Istio's `security.CheckServiceAccount`).
fn check_service_accounts(field: &str, values: &[String]) -> Result<(), FieldError> {
    if values.len() > 16 {
        return Err(FieldError::new(field, "may not have more than 16 values"));
    }
    for (k, value) in values.iter().enumerate() {
        let at = format!("{field}[{k}]");
        if value.contains('*') {
            return Err(FieldError::new(at, "wildcard not allowed"));
        }
        if value.len() > 320 {
            return Err(FieldError::new(at, "value cannot exceed 320 characters"));
        }
        let well_formed = match value.split_once('/') {
            Some((ns, sa)) => !ns.is_empty() && !sa.is_empty() && !sa.contains('/'),
            None => !value.is_empty(),
        };
        if !well_formed {
            return Err(FieldError::new(
                at,
                format!("expected format 'serviceAccount' or 'namespace/serviceAccount', found {value:?}"),
            ));
        }
    }
    Ok(())
}

// Envoy's valid path characters (RFC 3986 pchar), for literal segments of a template.
static LITERAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$").unwrap());

/// Paths with templates (Istio's `security.CheckValidPathTemplate`): `{*}`
/// and `{**}` are whole segments, nothing follows `{**}` but literals, no
/// other braces, and a templated path's literal segments are valid pchars.
fn check_path_templates(field: &str, paths: &[String]) -> Result<(), FieldError> {
    for (k, path) in paths.iter().enumerate() {
        let at = format!("{field}[{k}]");
        let templated = path.contains("{*}") || path.contains("{**}");
        let mut match_any = false;
        for glob in path.trim_matches('/').split('/') {
            match glob {
                "{*}" | "{**}" if match_any => {
                    return Err(FieldError::new(
                        at,
                        format!(
                            "invalid or unsupported path {path:?}: {{**}} is not the last operator"
                        ),
                    ));
                }
                "{*}" => continue,
                "{**}" => {
                    match_any = true;
                    continue;
                }
                _ => {}
            }
            if glob.contains(['{', '}']) {
                return Err(FieldError::new(
                    at,
                    format!("invalid or unsupported path {path:?}: contains '{{' or '}}' beyond a supported path template ({{*}} or {{**}} as a whole segment)"),
                ));
            }
            if templated && !LITERAL.is_match(glob) {
                return Err(FieldError::new(
                    at,
                    format!("invalid or unsupported path {path:?}: segment {glob:?} is not a valid literal in a path template"),
                ));
            }
        }
    }
    Ok(())
}
