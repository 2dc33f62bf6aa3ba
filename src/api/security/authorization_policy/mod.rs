//! Istio's `AuthorizationPolicy`: which requests a workload allows, denies,
//! audits or hands to an external authorizer, field for field as
//! `istio.security.v1.AuthorizationPolicy`.

mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_invalid;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use validate::{validate, validate_object};

use super::target_ref::PolicyTargetReference;
use crate::api::networking::selector::{IstioStatus, MatchLabelsSelector};

/// Configuration for access control on workloads. See more details at:
/// https://istio.io/docs/reference/config/security/authorization-policy.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.istio.io",
    version = "v1",
    kind = "AuthorizationPolicy",
    plural = "authorizationpolicies",
    namespaced,
    shortname = "ap",
    category = "istio-io",
    category = "security-istio-io",
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Configuration for access control on workloads. See more details at: https://istio.io/docs/reference/config/security/authorization-policy.html",
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".spec.action",
        description = "The operation to take."
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// Optional. The selector decides where to apply the authorization policy:
    /// workloads in the policy's namespace (in the root namespace: in all
    /// namespaces). If not set, it matches all workloads. At most one of
    /// `selector`, `targetRef` and `targetRefs` can be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<MatchLabelsSelector>,
    /// Optional. The resource (a Gateway API `Gateway`, a `Service`, a
    /// `ServiceEntry`) the policy applies to, in the policy's namespace.
    /// Prefer `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Optional. The resources the policy applies to, in the policy's
    /// namespace. Waypoint proxies do not respect selectors even if they match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Optional. A list of rules to match the request. A match occurs when at
    /// least one rule matches the request. If not set, the match will never
    /// occur: with action ALLOW that denies every request to the targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Optional. The action to take if the request is matched with the rules.
    /// Default is ALLOW if not specified. Valid Options: ALLOW, DENY, AUDIT,
    /// CUSTOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Specifies detailed configuration of the CUSTOM action. Must be used
    /// only with CUSTOM action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

// Action specifies the operation to take.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow a request only if it matches the rules. This is the default type.
    #[default]
    Allow,
    /// Deny a request if it matches any of the rules.
    Deny,
    /// Audit a request if it matches any of the rules.
    Audit,
    /// The CUSTOM action allows an extension (a provider named in MeshConfig)
    /// to handle the user request if the matching rules evaluate to true.
    Custom,
}

impl Action {
    /// The action as written in YAML, e.g. `DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

impl AuthorizationPolicySpec {
    /// The action, ALLOW when none is set.
    pub fn action(&self) -> Action {
        self.action.unwrap_or_default()
    }
}

/// The extension that decides a CUSTOM policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    /// Specifies the name of the extension provider. The list of available
    /// providers is defined in the MeshConfig. At most 1 extension provider
    /// is allowed per workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Rule matches requests from a list of sources that perform a list of
/// operations subject to a list of conditions. A match occurs when at least
/// one source, one operation and all conditions match the request. An empty
/// rule is always matched. Any string field in the rule supports exact
/// (`abc`), prefix (`abc*`), suffix (`*abc`) and presence (`*`) match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Optional. from specifies the source of a request. If not set, any
    /// source is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    /// Optional. to specifies the operation of a request. If not set, any
    /// operation is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    /// Optional. when specifies a list of additional conditions of a request.
    /// If not set, any condition is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// From includes a list of sources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleFrom {
    /// Source specifies the source of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// To includes a list of operations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleTo {
    /// Operation specifies the operation of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Source specifies the source identities of a request. Fields in the source
/// are ANDed together; values within one field are ORed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Optional. A list of peer identities derived from the peer certificate,
    /// `<TRUST_DOMAIN>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>`, e.g.
    /// `cluster.local/ns/default/sa/productpage`. Requires mTLS; the same as
    /// the `source.principal` attribute. If not set, any principal is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Optional. A list of negative match of peer identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// Optional. A list of request identities derived from the JWT, `<ISS>/<SUB>`,
    /// e.g. `example.com/sub-1`. Requires request authentication; the same as
    /// the `request.auth.principal` attribute. If not set, any request
    /// principal is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// Optional. A list of negative match of request identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Optional. A list of namespaces derived from the peer certificate.
    /// Requires mTLS; the same as the `source.namespace` attribute. If not
    /// set, any namespace is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Optional. A list of negative match of namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Optional. A list of service accounts derived from the peer certificate,
    /// `<NAMESPACE>/<SERVICE_ACCOUNT>` or just `<SERVICE_ACCOUNT>` (in the
    /// policy's namespace); no wildcards, at most 16. Requires mTLS. Cannot be
    /// combined with namespaces or principals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Optional. A list of negative match of service accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// Optional. A list of IP blocks, populated from the source address of
    /// the IP packet: single IPs (`203.0.113.4`) or CIDRs (`203.0.113.0/24`).
    /// The same as the `source.ip` attribute. If not set, any IP is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// Optional. A list of negative match of IP blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// Optional. A list of IP blocks, populated from the X-Forwarded-For
    /// header or proxy protocol: single IPs or CIDRs. The same as the
    /// `remote.ip` attribute. If not set, any IP is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    /// Optional. A list of negative match of remote IP blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

/// Operation specifies the operations of a request. Fields in the operation
/// are ANDed together; values within one field are ORed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Optional. A list of hosts as specified in the HTTP request; case
    /// insensitive. If not set, any host is allowed. HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Optional. A list of negative match of hosts; case insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Optional. A list of ports as specified in the connection, e.g. `"8080"`.
    /// If not set, any port is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Optional. A list of negative match of ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// Optional. A list of methods as specified in the HTTP request; for gRPC
    /// always `POST`. If not set, any method is allowed. HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Optional. A list of negative match of methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Optional. A list of paths as specified in the HTTP request (for gRPC:
    /// `/package.service/method`), after normalization. Besides `*` as a
    /// prefix or suffix, path templates `{*}` (one segment) and `{**}` (the
    /// rest, last only) are supported, e.g. `/foo/{*}/bar/{**}`. If not set,
    /// any path is allowed. HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Optional. A list of negative match of paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// Condition specifies additional required attributes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The name of an Istio attribute, e.g. `request.headers[User-Agent]`,
    /// `source.ip`, `request.auth.claims[iss]` or `destination.port`. See
    /// https://istio.io/latest/docs/reference/config/security/conditions/
    pub key: String,
    /// Optional. A list of allowed values for the attribute. At least one of
    /// `values` or `notValues` must be set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Optional. A list of negative match of values for the attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}
