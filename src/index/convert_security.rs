//! Security policies to the model.

use crate::api::security::authorization_policy::{Action, AuthorizationPolicy, Rule as ApiRule};
use crate::api::security::peer_authentication::{MtlsMode as ApiMode, PeerAuthentication};
use crate::api::security::request_authentication::RequestAuthentication;
use crate::api::security::DRY_RUN_ANNOTATION;
use crate::model::authz::{
    AuthzAction, AuthzPolicy, AuthzRule, Condition, JwtRule, OperationMatch, RequestAuthn,
    SourceMatch,
};
use crate::model::security::{MtlsMode, PeerAuthn};

use super::convert_routing::{created, duration, key};

pub fn peer_authentication(pa: &PeerAuthentication) -> PeerAuthn {
    let mode = |m: Option<&crate::api::security::peer_authentication::MutualTls>| match m
        .and_then(|m| m.mode)
        .unwrap_or_default()
    {
        ApiMode::Unset => MtlsMode::Unset,
        ApiMode::Disable => MtlsMode::Disable,
        ApiMode::Permissive => MtlsMode::Permissive,
        ApiMode::Strict => MtlsMode::Strict,
    };
    let spec = &pa.spec;
    let selector = spec
        .selector
        .as_ref()
        .map(|s| s.match_labels.clone())
        .unwrap_or_default();
    // Validation refuses port-level settings without a selector and ports
    // outside 1..=65535; Istio ignores the former anyway.
    let port_modes = match selector.is_empty() {
        true => Default::default(),
        false => spec
            .port_level_mtls
            .iter()
            .flatten()
            .filter_map(|(&port, m)| Some((u16::try_from(port).ok()?, mode(Some(m)))))
            .collect(),
    };
    PeerAuthn {
        key: key(&pa.metadata),
        created: created(&pa.metadata),
        selector,
        mode: mode(spec.mtls.as_ref()),
        port_modes,
    }
}

pub fn authorization_policy(ap: &AuthorizationPolicy) -> AuthzPolicy {
    let spec = &ap.spec;
    let action = match spec.action() {
        Action::Allow => AuthzAction::Allow,
        Action::Deny => AuthzAction::Deny,
        Action::Audit => AuthzAction::Audit,
        Action::Custom => AuthzAction::Custom {
            provider: spec
                .provider
                .as_ref()
                .and_then(|p| p.name.clone())
                .unwrap_or_default(),
        },
    };
    // Validation accepted only Go booleans here.
    let dry_run = ap
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "TRUE" | "true" | "True"));
    AuthzPolicy {
        key: key(&ap.metadata),
        created: created(&ap.metadata),
        selector: selector_of(spec.selector.as_ref()),
        targets_only: spec.target_ref.is_some() || !spec.target_refs.is_empty(),
        action,
        rules: spec.rules.iter().map(rule).collect(),
        dry_run,
    }
}

fn rule(r: &ApiRule) -> AuthzRule {
    AuthzRule {
        from: r
            .from
            .iter()
            .filter_map(|f| f.source.as_ref())
            .map(|s| SourceMatch {
                principals: s.principals.clone(),
                not_principals: s.not_principals.clone(),
                request_principals: s.request_principals.clone(),
                not_request_principals: s.not_request_principals.clone(),
                namespaces: s.namespaces.clone(),
                not_namespaces: s.not_namespaces.clone(),
                service_accounts: s.service_accounts.clone(),
                not_service_accounts: s.not_service_accounts.clone(),
                ip_blocks: s.ip_blocks.clone(),
                not_ip_blocks: s.not_ip_blocks.clone(),
                remote_ip_blocks: s.remote_ip_blocks.clone(),
                not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
            })
            .collect(),
        to: r
            .to
            .iter()
            .filter_map(|t| t.operation.as_ref())
            .map(|o| OperationMatch {
                hosts: o.hosts.clone(),
                not_hosts: o.not_hosts.clone(),
                ports: o.ports.clone(),
                not_ports: o.not_ports.clone(),
                methods: o.methods.clone(),
                not_methods: o.not_methods.clone(),
                paths: o.paths.clone(),
                not_paths: o.not_paths.clone(),
            })
            .collect(),
        when: r
            .when
            .iter()
            .map(|c| Condition {
                key: c.key.clone(),
                values: c.values.clone(),
                not_values: c.not_values.clone(),
            })
            .collect(),
    }
}

pub fn request_authentication(ra: &RequestAuthentication) -> RequestAuthn {
    let spec = &ra.spec;
    RequestAuthn {
        key: key(&ra.metadata),
        created: created(&ra.metadata),
        selector: selector_of(spec.selector.as_ref()),
        targets_only: spec.target_ref.is_some() || !spec.target_refs.is_empty(),
        rules: spec
            .jwt_rules
            .iter()
            .map(|r| JwtRule {
                issuer: r.issuer.clone().unwrap_or_default(),
                audiences: r.audiences.clone(),
                // Istio accepts the `jwks_uri` spelling too.
                jwks_uri: r.jwks_uri.clone().or_else(|| r.jwks_uri_field_name.clone()),
                jwks: r.jwks.clone(),
                from_headers: r
                    .from_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.prefix.clone().unwrap_or_default()))
                    .collect(),
                from_params: r.from_params.clone(),
                from_cookies: r.from_cookies.clone(),
                output_payload_to_header: r.output_payload_to_header.clone(),
                forward_original_token: r.forward_original_token.unwrap_or(false),
                output_claim_to_headers: r
                    .output_claim_to_headers
                    .iter()
                    .map(|c| (c.header.clone(), c.claim.clone()))
                    .collect(),
                timeout: duration("timeout", &r.timeout),
            })
            .collect(),
    }
}

fn selector_of(
    selector: Option<&crate::api::networking::selector::MatchLabelsSelector>,
) -> std::collections::BTreeMap<String, String> {
    selector.map(|s| s.match_labels.clone()).unwrap_or_default()
}
