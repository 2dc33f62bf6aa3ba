//! HTTP filters, one file each: the filter's entry in the connection
//! manager's chain and its per-route configuration.

pub mod cors;
pub mod ext_authz;
pub mod fault;
pub mod jwt;
pub mod rbac;
pub mod security;
