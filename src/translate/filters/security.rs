//! The inbound authentication and authorization filters of one workload, in
//! Istio's order: AuthorizationPolicy's CUSTOM (ext_authz), JWT
//! authentication (RequestAuthentication), then AuthorizationPolicy's
//! AUDIT, DENY and ALLOW (see `filters/rbac`).

use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

use crate::model::Snapshot;
use crate::translate::ProxyShape;

/// HTTP filters for the workload's inbound HTTP chains, before the router.
pub fn http_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<HttpFilter> {
    let mut out = Vec::new();
    // As Istio: CUSTOM's authorizer sees the request as the client sent it,
    // before jwt_authn checks it (and drops the token header by default).
    out.extend(super::rbac::custom_http_filters(snapshot, shape));
    // RequestAuthentication before the rest: authorization reads what it verified.
    out.extend(super::jwt::http_filter(snapshot, shape));
    out.extend(super::rbac::http_filters(snapshot, shape));
    out
}

/// Network filters for the workload's inbound TCP chains, before tcp_proxy.
pub fn network_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Filter> {
    super::rbac::network_filters(snapshot, shape)
}
