//! Envoy's ext_authz filters (HTTP and network) for a MeshConfig
//! `extensionProviders` entry, as Istio builds them
//! (`pilot/pkg/security/authz/builder/extauthz.go`). Which requests reach
//! the authorizer is CUSTOM's business (`filters/rbac/custom.rs`): these
//! filters run only where its shadow RBAC marked the request.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    grpc_service, http_uri, ApiVersion, GrpcService, HeaderValue, HttpUri,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ext_authz::Services, AuthorizationRequest, AuthorizationResponse, BufferSettings,
    ExtAuthz as HttpExtAuthz, HttpService,
};
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    metadata_matcher::path_segment::Segment, metadata_matcher::PathSegment, string_matcher,
    value_matcher, ListStringMatcher, MetadataMatcher, StringMatcher, ValueMatcher,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::util::pack_any;

use crate::model::mesh::{ExtAuthzBody, ExtAuthzGrpc, ExtAuthzHttp, ExtensionProviderKind};
use crate::model::{Protocol, Resolution, Snapshot};
use crate::translate::filters::rbac::{self, custom};
use crate::translate::{duration, names, ProxyShape};

pub const HTTP_FILTER: &str = "envoy.filters.http.ext_authz";
pub const NETWORK_FILTER: &str = "envoy.filters.network.ext_authz";
/// Istio's default when the provider sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A provider resolved to the cluster its authorizer is reached through.
#[derive(Debug)]
pub struct Authorizer<'a> {
    pub name: &'a str,
    kind: &'a ExtensionProviderKind,
    /// The service's hostname and its outbound cluster.
    host: String,
    cluster: String,
}

/// Finds provider `name` in MeshConfig and its service among the services
/// this proxy can reach (Istio's `LookupCluster`: `ns/host`, or `host` when
/// one namespace has it). `Err` says why it cannot be used.
pub fn resolve<'a>(
    snapshot: &'a Snapshot,
    shape: &ProxyShape,
    name: &str,
) -> Result<Authorizer<'a>, String> {
    let providers = &snapshot.mesh.extension_providers;
    let Some(provider) = providers.iter().find(|p| p.name == name) else {
        let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "extension provider {name:?} is not in MeshConfig extensionProviders {known:?}"
        ));
    };
    let (service, port) = match &provider.kind {
        ExtensionProviderKind::ExtAuthzHttp(h) => (&h.service, h.port),
        ExtensionProviderKind::ExtAuthzGrpc(g) => (&g.service, g.port),
        ExtensionProviderKind::Other(kind) => {
            return Err(format!(
                "extension provider {name:?} is a {kind} provider, not envoyExtAuthzHttp or envoyExtAuthzGrpc"
            ))
        }
    };
    let (host, protocol) = lookup(snapshot, shape, service, port)?;
    if matches!(provider.kind, ExtensionProviderKind::ExtAuthzGrpc(_)) && !protocol.is_http2() {
        // Not fatal: a DestinationRule may still upgrade the cluster to HTTP/2.
        tracing::warn!(
            provider = name, service = %service, port,
            "gRPC authorizer on a port not declared gRPC or HTTP/2 (name it grpc-* or set \
             appProtocol): checks will fail, and fail closed, unless its cluster speaks HTTP/2"
        );
    }
    Ok(Authorizer {
        name: &provider.name,
        kind: &provider.kind,
        cluster: names::outbound_cluster(port, "", &host),
        host,
    })
}

/// The hostname of `[ns/]host` and the port's protocol, checked to have
/// the cluster Envoy needs.
fn lookup(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    service: &str,
    port: u16,
) -> Result<(String, Protocol), String> {
    let (namespace, host) = match service.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, service),
    };
    let found: Vec<_> = snapshot
        .services
        .values()
        .filter(|s| s.host == host && namespace.is_none_or(|ns| s.key.namespace == ns))
        .collect();
    let mut namespaces: Vec<&str> = found.iter().map(|s| s.key.namespace.as_str()).collect();
    namespaces.dedup();
    let svc = match (found.first(), namespaces.len()) {
        (None, _) => return Err(format!("no service {service:?} in the mesh")),
        (Some(_), n) if n > 1 => {
            return Err(format!(
                "{host:?} is in several namespaces {namespaces:?}: write the service as <namespace>/{host}"
            ))
        }
        (Some(svc), _) => *svc,
    };
    if !shape.imports_port(snapshot, svc, port) {
        return Err(format!(
            "port {port} of service {service:?} is outside this proxy's Sidecar egress hosts"
        ));
    }
    let protocol = match svc.port(port) {
        None => return Err(format!("service {service:?} has no port {port}")),
        Some(p) if p.protocol == Protocol::Udp => {
            return Err(format!("port {port} of service {service:?} is UDP"))
        }
        Some(p) => p.protocol,
    };
    if svc.resolution == Resolution::Passthrough {
        return Err(format!(
            "service {service:?} has resolution NONE: there is no endpoint to send checks to"
        ));
    }
    Ok((svc.host.clone(), protocol))
}

impl Authorizer<'_> {
    /// Only gRPC authorizers have Envoy's network ext_authz filter.
    pub fn checks_connections(&self) -> bool {
        matches!(self.kind, ExtensionProviderKind::ExtAuthzGrpc(_))
    }

    pub fn http_filter(&self) -> HttpFilter {
        let config = match self.kind {
            ExtensionProviderKind::ExtAuthzHttp(h) => self.http_config(h),
            ExtensionProviderKind::ExtAuthzGrpc(g) => HttpExtAuthz {
                services: Some(Services::GrpcService(self.grpc_service(g))),
                failure_mode_allow: g.fail_open,
                status_on_error: g.status_on_error.map(status),
                with_request_body: g.include_request_body_in_check.as_ref().map(body),
                ..common(rbac::HTTP_FILTER)
            },
            ExtensionProviderKind::Other(_) => {
                unreachable!("resolve() accepts ext_authz kinds only")
            }
        };
        HttpFilter {
            name: HTTP_FILTER.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(config))),
            ..Default::default()
        }
    }

    /// The network filter, for gRPC authorizers only.
    pub fn network_filter(&self) -> Option<Filter> {
        let ExtensionProviderKind::ExtAuthzGrpc(g) = self.kind else {
            return None;
        };
        let config = NetworkExtAuthz {
            stat_prefix: "tcp.".to_string(),
            grpc_service: Some(self.grpc_service(g)),
            failure_mode_allow: g.fail_open,
            transport_api_version: ApiVersion::V3 as i32,
            filter_enabled_metadata: Some(enabled_by(rbac::NETWORK_FILTER)),
            ..Default::default()
        };
        Some(Filter {
            name: NETWORK_FILTER.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
        })
    }

    fn http_config(&self, h: &ExtAuthzHttp) -> HttpExtAuthz {
        let request =
            (!h.include_additional_headers_in_check.is_empty()).then(|| AuthorizationRequest {
                headers_to_add: h
                    .include_additional_headers_in_check
                    .iter()
                    .map(|(key, value)| HeaderValue {
                        key: key.clone(),
                        value: value.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            });
        let response = [
            &h.headers_to_upstream_on_allow,
            &h.headers_to_downstream_on_deny,
            &h.headers_to_downstream_on_allow,
        ]
        .iter()
        .any(|l| !l.is_empty())
        .then(|| AuthorizationResponse {
            allowed_upstream_headers: headers(&h.headers_to_upstream_on_allow),
            allowed_client_headers: headers(&h.headers_to_downstream_on_deny),
            allowed_client_headers_on_success: headers(&h.headers_to_downstream_on_allow),
            ..Default::default()
        });
        let service = HttpService {
            server_uri: Some(HttpUri {
                // Required, but ext_authz sends to the cluster; Istio sets this.
                uri: format!("http://{}", self.host),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(self.cluster.clone())),
                timeout: Some(duration(h.timeout.unwrap_or(DEFAULT_TIMEOUT))),
            }),
            path_prefix: h.path_prefix.clone(),
            authorization_request: request,
            authorization_response: response,
            ..Default::default()
        };
        HttpExtAuthz {
            services: Some(Services::HttpService(service)),
            failure_mode_allow: h.fail_open,
            status_on_error: h.status_on_error.map(status),
            allowed_headers: headers(&h.include_request_headers_in_check),
            with_request_body: h.include_request_body_in_check.as_ref().map(body),
            ..common(rbac::HTTP_FILTER)
        }
    }

    fn grpc_service(&self, g: &ExtAuthzGrpc) -> GrpcService {
        GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: self.cluster.clone(),
                    // `|` is not valid in an authority; Istio's replacement.
                    authority: self.cluster.replace('|', "_."),
                    ..Default::default()
                },
            )),
            timeout: Some(duration(g.timeout.unwrap_or(DEFAULT_TIMEOUT))),
            ..Default::default()
        }
    }
}

fn common(rbac_filter: &str) -> HttpExtAuthz {
    HttpExtAuthz {
        transport_api_version: ApiVersion::V3 as i32,
        filter_enabled_metadata: Some(enabled_by(rbac_filter)),
        ..Default::default()
    }
}

/// Runs only where CUSTOM's shadow RBAC matched a rule: its metadata key
/// (stat prefix + `shadow_effective_policy_id`) holds the rule's name.
fn enabled_by(rbac_filter: &str) -> MetadataMatcher {
    MetadataMatcher {
        filter: rbac_filter.to_string(),
        path: vec![PathSegment {
            segment: Some(Segment::Key(format!(
                "{}shadow_effective_policy_id",
                custom::SHADOW_STAT_PREFIX
            ))),
        }],
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix(
                    custom::POLICY_PREFIX.to_string(),
                )),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// Header name patterns, case-insensitive: `x`, `x*` or `*x` (Istio's
/// `generateHeaders`).
fn headers(names: &[String]) -> Option<ListStringMatcher> {
    if names.is_empty() {
        return None;
    }
    let pattern = |h: &str| match (h.strip_prefix('*'), h.strip_suffix('*')) {
        (Some(s), _) => string_matcher::MatchPattern::Suffix(s.to_string()),
        (None, Some(p)) => string_matcher::MatchPattern::Prefix(p.to_string()),
        (None, None) => string_matcher::MatchPattern::Exact(h.to_string()),
    };
    Some(ListStringMatcher {
        patterns: names
            .iter()
            .map(|h| StringMatcher {
                match_pattern: Some(pattern(h)),
                ignore_case: true,
            })
            .collect(),
    })
}

fn status(code: u16) -> HttpStatus {
    HttpStatus { code: code.into() }
}

fn body(b: &ExtAuthzBody) -> BufferSettings {
    BufferSettings {
        max_request_bytes: b.max_request_bytes,
        allow_partial_message: b.allow_partial_message,
        pack_as_bytes: b.pack_as_bytes,
    }
}
