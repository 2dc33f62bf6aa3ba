//! RequestAuthentication: Envoy's `jwt_authn` filter on the workload's
//! inbound HTTP chains, built as Istio's `convertToEnvoyJwtConfig`
//! (pilot/pkg/security/authn/policy_applier.go) builds it, and the clusters
//! Envoy fetches remote key sets through.
//!
//! Istio's semantics, kept exactly:
//! - every `jwtRule` of every applicable policy is one provider, rules sorted
//!   by issuer, named `origins-N` in that order (no merging of equal issuers);
//! - a request with an invalid token (bad signature, expired, wrong issuer or
//!   audience, unknown key) is refused with 401; a request without a token
//!   passes (`allow_missing`, not `allow_missing_or_failed`): requiring a
//!   token is AuthorizationPolicy's job (`requestPrincipals`);
//! - no token location set: Envoy's default, `Authorization: Bearer` and the
//!   `access_token` query parameter;
//! - the verified payload is kept in dynamic metadata under
//!   [`FILTER_NAME`] / [`PAYLOAD_METADATA_KEY`], where authorization reads
//!   `request.auth.*` and `requestPrincipals`; `scope` and `permission` are
//!   split on spaces there, as Istio asks;
//! - CORS preflights bypass the filter.
//!
//! Key sets: inline `jwks` stays inline; `jwksUri` becomes `remote_jwks`
//! fetched by Envoy (Istio's `PILOT_JWT_ENABLE_REMOTE_JWKS=envoy` mode)
//! through the cluster `outbound|PORT||HOST`: the mesh's own cluster when the
//! host is a mesh service (as Istio reuses it), else one generated here
//! ([`jwks_clusters`]). A rule with neither needs OpenID discovery of the
//! issuer, which translation (pure, no I/O) cannot do: its provider gets a key
//! set that matches no token, so every token of that issuer is refused (401),
//! as Istio does while istiod has not fetched a key set.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    data_source, http_uri, transport_socket, DataSource, HttpUri, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::route::v3::{route_match, RouteMatch};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider::{JwksSourceSpecifier, NormalizePayload},
    jwt_requirement::RequiresType,
    requirement_rule::RequirementType,
    JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementAndList, JwtRequirementOrList, RemoteJwks, RequirementRule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::Empty;
use envoy_types::util::pack_any;

use crate::model::authz::JwtRule;
use crate::model::Snapshot;
use crate::translate::{duration, names, seconds, socket_address, ProxyShape};

pub const FILTER_NAME: &str = "envoy.filters.http.jwt_authn";
/// The dynamic-metadata key (in namespace [`FILTER_NAME`]) holding a verified
/// token's payload: what AuthorizationPolicy's `request.auth.*` and
/// `requestPrincipals` match. Istio's `filters.EnvoyJwtFilterPayload`.
pub const PAYLOAD_METADATA_KEY: &str = "payload";

/// Istio's JWKS fetch timeout when a rule sets none.
const DEFAULT_FETCH_TIMEOUT_SECS: i64 = 5;
/// How long Envoy keeps a fetched key set (Istio: 5 minutes).
const JWKS_CACHE_SECS: i64 = 5 * 60;
/// Claims Istio always splits on spaces in the metadata (`scope`, `permission`).
const SPACE_DELIMITED_CLAIMS: [&str; 2] = ["permission", "scope"];
/// System roots for TLS to a JWKS server outside the mesh. Envoy has no
/// portable "system trust store"; this is the Debian/Ubuntu/Alpine bundle,
/// which Envoy and Istio proxy images ship.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Istio's default connect timeout, as for mesh clusters.
const CONNECT_TIMEOUT_SECS: i64 = 10;
/// A key set no token verifies against, the way Istio's `CreateFakeJwks`
/// refuses tokens while it has no real key set. Envoy 1.40 rejects Istio's
/// junk RSA modulus, so this is a real P-256 point whose private key nobody
/// knows: x = SHA-256("rudder: no JWKS for this issuer"), which is on the
/// curve, and y its square root.
const NO_KEYS_JWKS: &str = concat!(
    r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"rudder-no-jwks","#,
    r#""x":"ATnO7BffQf-MebXfmT03QmXyfZ-WXcM8ywYYcqrFEkY","#,
    r#""y":"CwgjNdprI33Hh9ymOWO7lRvKFQcMVa9xbjfAyQqWe0I"}]}"#
);

/// The `jwt_authn` filter for the workload's inbound HTTP chains; `None`
/// when no RequestAuthentication applies to it.
pub fn http_filter(snapshot: &Snapshot, shape: &ProxyShape) -> Option<HttpFilter> {
    let rules = rules(snapshot, shape);
    if rules.is_empty() {
        return None;
    }
    let names: Vec<String> = (0..rules.len()).map(|i| format!("origins-{i}")).collect();
    let providers = fixed_order_map(
        names
            .iter()
            .zip(&rules)
            .map(|(name, rule)| (name.clone(), provider(rule))),
    );
    let config = JwtAuthentication {
        providers,
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(RequirementType::Requires(requirement(&names))),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    };
    Some(HttpFilter {
        name: FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(config))),
        ..Default::default()
    })
}

/// The jwtRules of every RequestAuthentication that applies, sorted by
/// issuer (stable, so equal issuers keep policy order), as Istio sorts them.
fn rules<'a>(snapshot: &'a Snapshot, shape: &ProxyShape) -> Vec<&'a JwtRule> {
    let mut rules: Vec<&JwtRule> = shape
        .request_authn
        .iter()
        .filter_map(|key| snapshot.request_authentications.get(key))
        .flat_map(|policy| policy.rules.iter())
        .collect();
    rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    rules
}

/// Istio's requirement: a token, if present, must be valid. One provider:
/// `any(P, allow_missing)`. Several: `any(P1, .., Pn, all(any(P1,
/// allow_missing), .., any(Pn, allow_missing)))`; the leading alternatives
/// let a token pass that one provider accepts when providers share a
/// location (the `all` would then fail on the other issuers).
fn requirement(names: &[String]) -> JwtRequirement {
    let provider = |name: &String| JwtRequirement {
        requires_type: Some(RequiresType::ProviderName(name.clone())),
    };
    let any = |requirements: Vec<JwtRequirement>| JwtRequirement {
        requires_type: Some(RequiresType::RequiresAny(JwtRequirementOrList {
            requirements,
        })),
    };
    let or_missing = |name: &String| {
        any(vec![
            provider(name),
            JwtRequirement {
                requires_type: Some(RequiresType::AllowMissing(Empty {})),
            },
        ])
    };
    if let [only] = names {
        return or_missing(only);
    }
    let mut alternatives: Vec<JwtRequirement> = names.iter().map(provider).collect();
    alternatives.push(JwtRequirement {
        requires_type: Some(RequiresType::RequiresAll(JwtRequirementAndList {
            requirements: names.iter().map(or_missing).collect(),
        })),
    });
    any(alternatives)
}

fn provider(rule: &JwtRule) -> JwtProvider {
    JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token,
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: PAYLOAD_METADATA_KEY.to_string(),
        normalize_payload_in_metadata: Some(NormalizePayload {
            space_delimited_claims: SPACE_DELIMITED_CLAIMS.map(String::from).to_vec(),
        }),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|(header, claim)| JwtClaimToHeader {
                header_name: header.clone(),
                claim_name: claim.clone(),
                ..Default::default()
            })
            .collect(),
        from_headers: rule
            .from_headers
            .iter()
            .map(|(name, prefix)| JwtHeader {
                name: name.clone(),
                value_prefix: prefix.clone(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        jwks_source_specifier: Some(jwks_source(rule)),
        ..Default::default()
    }
}

fn jwks_source(rule: &JwtRule) -> JwksSourceSpecifier {
    let inline = |jwks: &str| {
        JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(jwks.to_string())),
            ..Default::default()
        })
    };
    if let Some(jwks) = &rule.jwks {
        return inline(jwks);
    }
    let Some(uri) = &rule.jwks_uri else {
        tracing::warn!(
            issuer = %rule.issuer,
            "RequestAuthentication rule has neither jwks nor jwksUri; Rudder does not fetch \
             OpenID discovery documents, so every token of this issuer is refused (401)"
        );
        return inline(NO_KEYS_JWKS);
    };
    let Some(server) = JwksServer::parse(uri) else {
        // Validation admits only URLs that parse; fail closed all the same.
        tracing::warn!(issuer = %rule.issuer, jwks_uri = %uri, "unusable jwksUri; refusing its tokens");
        return inline(NO_KEYS_JWKS);
    };
    let timeout = rule
        .timeout
        .map(duration)
        .unwrap_or_else(|| seconds(DEFAULT_FETCH_TIMEOUT_SECS));
    JwksSourceSpecifier::RemoteJwks(RemoteJwks {
        http_uri: Some(HttpUri {
            uri: uri.clone(),
            http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(server.cluster_name())),
            timeout: Some(timeout),
        }),
        cache_duration: Some(seconds(JWKS_CACHE_SECS)),
        ..Default::default()
    })
}

/// Where a `jwksUri` points: Istio's `security.ParseJwksURI` (port 80 for
/// http, 443 for https, unless the URL names one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct JwksServer {
    host: String,
    port: u16,
    tls: bool,
}

impl JwksServer {
    fn parse(uri: &str) -> Option<JwksServer> {
        let parsed: http::Uri = uri.parse().ok()?;
        let tls = match parsed.scheme_str()?.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = parsed.host()?;
        // An IPv6 literal comes bracketed.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return None;
        }
        let port = parsed.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Some(JwksServer {
            host: host.to_ascii_lowercase(),
            port,
            tls,
        })
    }

    /// Istio's name for the cluster a key set is fetched through.
    fn cluster_name(&self) -> String {
        names::outbound_cluster(self.port, "", &self.host)
    }

    fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// STATIC to an IP literal, STRICT_DNS to a name; TLS (SNI and the
    /// server's name checked against the system roots) for https.
    fn cluster(&self) -> Cluster {
        let name = self.cluster_name();
        let kind = match self.ip() {
            Some(_) => DiscoveryType::Static,
            None => DiscoveryType::StrictDns,
        };
        let endpoint = LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(&self.host, self.port)),
                ..Default::default()
            })),
            ..Default::default()
        };
        Cluster {
            name: name.clone(),
            connect_timeout: Some(seconds(CONNECT_TIMEOUT_SECS)),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
            dns_lookup_family: if kind == DiscoveryType::StrictDns {
                DnsLookupFamily::V4Only as i32
            } else {
                0
            },
            load_assignment: Some(ClusterLoadAssignment {
                cluster_name: name,
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![endpoint],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            transport_socket: self.tls.then(|| self.tls_socket()),
            ..Default::default()
        }
    }

    fn tls_socket(&self) -> TransportSocket {
        let (san_type, sni) = match self.ip() {
            Some(_) => (SanType::IpAddress, String::new()),
            None => (SanType::Dns, self.host.clone()),
        };
        let server_name = SubjectAltNameMatcher {
            san_type: san_type as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(self.host.clone())),
                ..Default::default()
            }),
            ..Default::default()
        };
        let context = UpstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                validation_context_type: Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(DataSource {
                            specifier: Some(data_source::Specifier::Filename(
                                SYSTEM_CA_BUNDLE.to_string(),
                            )),
                            ..Default::default()
                        }),
                        match_typed_subject_alt_names: vec![server_name],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            sni,
            ..Default::default()
        };
        TransportSocket {
            name: "envoy.transport_sockets.tls".to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
        }
    }
}

/// One cluster per distinct `jwksUri` server (host, port) of the rules that
/// apply to this proxy, named `outbound|PORT||HOST`, sorted by name.
pub fn jwks_clusters(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<Cluster> {
    let servers: BTreeMap<String, JwksServer> = rules(snapshot, shape)
        .into_iter()
        .filter(|r| r.jwks.is_none())
        .filter_map(|r| r.jwks_uri.as_deref().and_then(JwksServer::parse))
        .map(|s| (s.cluster_name(), s))
        .collect();
    servers.values().map(JwksServer::cluster).collect()
}

/// Appends [`jwks_clusters`] to a proxy's clusters, except those whose name
/// a cluster already has: a mesh service's own cluster wins, as Istio uses
/// it for a `jwksUri` on that service.
pub fn add_jwks_clusters(clusters: &mut Vec<Cluster>, snapshot: &Snapshot, shape: &ProxyShape) {
    for cluster in jwks_clusters(snapshot, shape) {
        if clusters.iter().all(|c| c.name != cluster.name) {
            clusters.push(cluster);
        }
    }
}

/// A protobuf map with a process-wide fixed hasher: prost encodes maps in
/// iteration order, and equal config must encode to equal bytes.
fn fixed_order_map<V>(entries: impl Iterator<Item = (String, V)>) -> HashMap<String, V> {
    static STATE: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    let mut map = HashMap::with_hasher(STATE.clone());
    map.extend(entries);
    map
}

#[cfg(test)]
mod tests;
