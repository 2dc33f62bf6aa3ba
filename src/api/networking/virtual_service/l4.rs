//! The TLS (SNI) and TCP rules of a VirtualService.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Destination;

/// Match conditions and destinations for unterminated TLS/HTTPS traffic,
/// typically routed by the SNI of the ClientHello.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    /// Match conditions for the rule. All conditions in one block are
    /// ANDed, the blocks are ORed.
    #[serde(rename = "match")]
    pub r#match: Vec<TlsMatchAttributes>,
    /// The destinations the connection is forwarded to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// Match conditions and destinations for opaque TCP traffic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// Match conditions for the rule. All conditions in one block are
    /// ANDed, the blocks are ORed.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<L4MatchAttributes>,
    /// The destinations the connection is forwarded to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// A weighted destination of a TLS or TCP rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    /// The service (and optionally subset and port) to forward to.
    pub destination: Destination,
    /// Relative proportion of connections for this destination. With a
    /// single destination it gets all traffic whatever the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// L4 connection match attributes (support is incomplete in Istio too).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct L4MatchAttributes {
    /// IPv4 or IPv6 destination addresses, with optional subnet (`a.b.c.d/xx`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// Port on the host being addressed; only needed when the service
    /// exposes several ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// IPv4 or IPv6 source address with optional subnet (hidden in Istio's docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_subnet: Option<String>,
    /// Labels the source workload must have. If top-level `gateways` is
    /// set, it should include `mesh` for this to apply.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways where the rule applies; overrides the top-level
    /// `gateways` for this match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace the source workload must be in. If top-level `gateways` is
    /// set, it must include `mesh` for this to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// TLS connection match attributes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    /// SNI values to match; wildcard prefixes allowed (`*.com` matches
    /// `foo.example.com` and `example.com`). Each must fall within one of
    /// the VirtualService's hosts.
    pub sni_hosts: Vec<String>,
    /// IPv4 or IPv6 destination addresses, with optional subnet (`a.b.c.d/xx`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// Port on the host being addressed; only needed when the service
    /// exposes several ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels the source workload must have. If top-level `gateways` is
    /// set, it should include `mesh` for this to apply.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways where the rule applies; overrides the top-level
    /// `gateways` for this match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace the source workload must be in. If top-level `gateways` is
    /// set, it must include `mesh` for this to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}
