//! Istio's `networking.istio.io/v1` VirtualService, field for field.
//!
//! A VirtualService defines the routing rules applied when a host is
//! addressed: ordered HTTP, TLS (SNI) and TCP rules that match traffic and
//! send it to a destination, redirect it, answer it directly or delegate to
//! another VirtualService. Names follow Istio's JSON (camelCase) names; Rust
//! type names use Rust casing (`HttpRoute` for Istio's `HTTPRoute`).
//!
//! Optional fields are `Option`/empty collections that are skipped when
//! serializing, so a user's YAML round-trips without gaining fields.
//! Durations stay strings in Go syntax (`10s`, `100ms`) as Istio writes them;
//! [`validate`] checks them.

mod http;
mod l4;
mod policy;
mod validate;
mod validate_http;
mod validate_policy;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_invalid;

use kube::CustomResource;

use super::IstioStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::common::{Destination, Percent, PortSelector, StringMatch};
pub use http::{
    Delegate, HeaderOperations, Headers, HttpBody, HttpDirectResponse, HttpMatchRequest,
    HttpRedirect, HttpRewrite, HttpRouteDestination, RedirectPortSelection, RegexRewrite,
};
pub use l4::{L4MatchAttributes, RouteDestination, TcpRoute, TlsMatchAttributes, TlsRoute};
pub use policy::{
    Abort, CorsPolicy, Delay, HttpFaultInjection, HttpMirrorPolicy, HttpRetry, UnmatchedPreflights,
};
pub use validate::validate;
pub use validate_policy::grpc_status_code;

/// Configuration affecting traffic routing: the rules applied when a host is
/// addressed. See https://istio.io/docs/reference/config/networking/virtual-service.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "VirtualService",
    namespaced,
    // Rudder reports refusals there (source/kube/status.rs), as on every kind.
    status = "IstioStatus",
    // The index compares objects to skip no-op updates.
    derive = "PartialEq",
    derive = "Default",
    shortname = "vs",
    category = "istio-io",
    category = "networking-istio-io",
    doc = "Configuration affecting label/content routing, sni routing, etc. See more details at: https://istio.io/docs/reference/config/networking/virtual-service.html",
    // The JSON form: repeated `printcolumn(type_ = ...)` lists trip clippy's
    // duplicated-attribute lint.
    printcolumn = r#"{"name": "Gateways", "type": "string", "jsonPath": ".spec.gateways", "description": "The names of gateways and sidecars that should apply these routes"}"#,
    printcolumn = r#"{"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts", "description": "The destination hosts to which traffic is being sent"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = unwrap_descriptions)]
pub struct VirtualServiceSpec {
    /// The destination hosts to which traffic is being sent: DNS names,
    /// optionally with a wildcard prefix (`*.example.com`), or IP addresses
    /// (only for gateways). Short names are resolved in the rule's namespace;
    /// prefer FQDNs. Must be empty for a delegate VirtualService.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The names of gateways and sidecars that should apply these routes:
    /// `<gateway namespace>/<gateway name>`, a name in the VirtualService's
    /// namespace, or the reserved word `mesh` for all sidecars. Omitted means
    /// `mesh` only; listing gateways applies the rules only to them unless
    /// `mesh` is listed too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// An ordered list of route rules for HTTP traffic (HTTP/HTTP2/gRPC
    /// ports and TLS-terminated gateway ports). The first matching rule wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// An ordered list of route rules for non-terminated TLS and HTTPS
    /// traffic, routed by SNI. The first matching rule wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// An ordered list of route rules for opaque TCP traffic (any port that
    /// is not HTTP or TLS). The first matching rule wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// The namespaces this VirtualService is visible to: `.` (its own
    /// namespace), `*` (all, the default) or namespace names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

/// Match conditions and actions for routing HTTP/1.1, HTTP2 and gRPC
/// traffic. A rule forwards (`route`), redirects (`redirect`), answers
/// directly (`directResponse`) or hands over to a delegate VirtualService.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = legacy_mirror_percent_schema)]
pub struct HttpRoute {
    /// The name assigned to the route for debugging purposes; it is joined
    /// with the match's name in access logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions to be satisfied for the rule to be activated. All
    /// conditions in one block are ANDed, the blocks are ORed.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<HttpMatchRequest>,
    /// The destinations to forward to, with relative weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Send an HTTP redirect (301 by default) instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer with a fixed response instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// The VirtualService holding the rules for this match. Only when route,
    /// redirect and directResponse are empty; one level of delegation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite the URI and Authority header before forwarding; not with redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Timeout for HTTP requests (e.g. `5s`); default is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}]))]
    pub timeout: Option<String>,
    /// Retry policy for HTTP requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection policy applied on the client side. Timeouts and
    /// retries are not enabled when faults are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror traffic to another destination as well, best effort: the
    /// mirror's response is not awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// The destinations to mirror traffic to, in addition to the original
    /// destination. Cannot be combined with `mirror`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Percentage of the traffic to be mirrored by the `mirror` field;
    /// absent means 100%. At most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer percentage of traffic mirrored by `mirror`; use
    /// `mirrorPercentage`. Istio also accepts the spelling `mirror_percent`.
    #[serde(
        default,
        alias = "mirror_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror_percent: Option<u32>,
    /// Cross-Origin Resource Sharing policy (CORS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation rules for all destinations of this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// Istio's CRD lists the deprecated field under both `mirrorPercent` and its
/// proto name `mirror_percent`; serde reads both into one field, and the
/// schema must keep both or the apiserver would prune the snake_case one.
fn legacy_mirror_percent_schema(schema: &mut schemars::Schema) {
    let legacy = serde_json::json!({
        "description": "Deprecated spelling of mirrorPercent.",
        "type": "integer",
        "format": "uint32",
        "minimum": 0,
        "nullable": true
    });
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert("mirror_percent".into(), legacy);
    }
}

/// Doc comments keep their source line breaks; `kubectl explain` reads
/// better with one line per paragraph, as Istio's own CRD has.
fn unwrap_descriptions(schema: &mut schemars::Schema) {
    fn walk_map(map: &mut serde_json::Map<String, serde_json::Value>) {
        for (key, value) in map.iter_mut() {
            match value {
                serde_json::Value::String(text) if key == "description" => {
                    let paragraphs: Vec<String> =
                        text.split("\n\n").map(|p| p.replace('\n', " ")).collect();
                    *text = paragraphs.join("\n\n");
                }
                serde_json::Value::Object(inner) => walk_map(inner),
                serde_json::Value::Array(items) => items
                    .iter_mut()
                    .filter_map(|v| v.as_object_mut())
                    .for_each(walk_map),
                _ => {}
            }
        }
    }
    if let Some(map) = schema.as_object_mut() {
        walk_map(map);
    }
}
