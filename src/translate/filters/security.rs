//! The inbound authentication and authorization filters of one workload, in
//! the order Envoy must run them: JWT authentication (RequestAuthentication),
//! then AuthorizationPolicy: CUSTOM (ext_authz), AUDIT, DENY, ALLOW (see
//! `filters/rbac`).

use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

use crate::model::Snapshot;
use crate::translate::ProxyShape;

/// HTTP filters for the workload's inbound HTTP chains, before the router.
pub fn http_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<HttpFilter> {
    let mut out = Vec::new();
    // RequestAuthentication first: authorization reads what it verified.
    out.extend(super::jwt::http_filter(snapshot, shape));
    out.extend(super::rbac::http_filters(snapshot, shape));
    out
}

/// Network filters for the workload's inbound TCP chains, before tcp_proxy.
pub fn network_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Filter> {
    super::rbac::network_filters(snapshot, shape)
}
