//! The inbound authentication and authorization filters of one workload, in
//! the order Envoy must run them: JWT authentication (RequestAuthentication),
//! then CUSTOM (ext_authz), then DENY, then ALLOW, with AUDIT logging
//! alongside (AuthorizationPolicy).

use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

use crate::model::Snapshot;
use crate::translate::ProxyShape;

/// HTTP filters for the workload's inbound HTTP chains, before the router.
pub fn http_filters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<HttpFilter> {
    // RequestAuthentication first: authorization reads what it verified.
    super::jwt::http_filter(snapshot, shape)
        .into_iter()
        .collect()
}

/// Network filters for the workload's inbound TCP chains, before tcp_proxy.
pub fn network_filters(_snapshot: &Snapshot, _shape: &ProxyShape) -> Vec<Filter> {
    Vec::new()
}
