//! Authorization and end-user authentication as the translators read them:
//! AuthorizationPolicy and RequestAuthentication, validated and with
//! defaults applied, plus Istio's rule for which of them apply to a workload.
//!
//! Match values stay Istio's strings (`*` prefix/suffix forms, CIDRs, port
//! numbers as text): how each becomes an Envoy matcher is translation's
//! business, and keeping them verbatim keeps error messages and golden files
//! readable.

use std::collections::BTreeMap;
use std::time::Duration;

use super::routing::ConfigKey;

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AuthzAction {
    Allow,
    Deny,
    /// Logged (Envoy's RBAC `LOG`), never enforced.
    Audit,
    /// Delegated to an ext_authz provider from MeshConfig `extensionProviders`.
    Custom {
        provider: String,
    },
}

/// One AuthorizationPolicy. No rules: with ALLOW it matches nothing (so it
/// denies everything, as an empty spec does in Istio); a rule with no
/// from/to/when matches everything.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthzPolicy {
    pub key: ConfigKey,
    pub created: i64,
    /// Empty: every workload of the namespace (of the mesh, in the root namespace).
    pub selector: BTreeMap<String, String>,
    /// Policies with `targetRef(s)` bind to gateways or waypoints, never to
    /// sidecars; they are kept for status and ignored by sidecar translation.
    pub targets_only: bool,
    pub action: AuthzAction,
    pub rules: Vec<AuthzRule>,
    /// `istio.io/dry-run: "true"`: evaluated in shadow mode, never enforced.
    pub dry_run: bool,
}

/// Rules AND their parts; a list within a part ORs its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuthzRule {
    pub from: Vec<SourceMatch>,
    pub to: Vec<OperationMatch>,
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceMatch {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OperationMatch {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

/// `when`: an attribute (`request.headers[x-token]`, `source.ip`, ...) and
/// the values it must, or must not, have.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

/// One RequestAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestAuthn {
    pub key: ConfigKey,
    pub created: i64,
    pub selector: BTreeMap<String, String>,
    pub targets_only: bool,
    pub rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Where Envoy fetches the key set (through a cluster Rudder generates)...
    pub jwks_uri: Option<String>,
    /// ...or the key set inline (JSON).
    pub jwks: Option<String>,
    /// (header name, value prefix); empty: Istio's default, `Authorization: Bearer`.
    pub from_headers: Vec<(String, String)>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    pub output_payload_to_header: Option<String>,
    pub forward_original_token: bool,
    /// (header, claim)
    pub output_claim_to_headers: Vec<(String, String)>,
    /// JWKS fetch timeout.
    pub timeout: Option<Duration>,
}

/// Istio's selection for sidecars: a policy applies to a workload when it is
/// in the root namespace or the workload's namespace, binds to no target
/// reference, and its selector (if any) matches the workload's labels.
pub fn applies_to(
    key: &ConfigKey,
    selector: &BTreeMap<String, String>,
    targets_only: bool,
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    !targets_only
        && (key.namespace == namespace || key.namespace == root_namespace)
        && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str) -> ConfigKey {
        ConfigKey {
            namespace: ns.into(),
            name: "p".into(),
        }
    }

    #[test]
    fn selection_follows_namespace_root_and_selector() {
        let labels: BTreeMap<String, String> = [("app".into(), "web".into())].into();
        let web: BTreeMap<String, String> = labels.clone();
        let db: BTreeMap<String, String> = [("app".into(), "db".into())].into();
        let none = BTreeMap::new();
        let ok = |k: &ConfigKey, sel: &BTreeMap<String, String>, targets: bool| {
            applies_to(k, sel, targets, "istio-system", "shop", &labels)
        };
        assert!(ok(&key("shop"), &none, false));
        assert!(ok(&key("shop"), &web, false));
        assert!(!ok(&key("shop"), &db, false));
        assert!(ok(&key("istio-system"), &none, false));
        assert!(ok(&key("istio-system"), &web, false));
        assert!(!ok(&key("other"), &none, false));
        assert!(
            !ok(&key("shop"), &none, true),
            "targetRef policies skip sidecars"
        );
    }
}
