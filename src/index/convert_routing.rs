//! Istio networking resources to the routing model: short hosts resolved in
//! the resource's namespace, durations and percentages parsed. Called only on
//! validated objects, so what validation allows but Rudder does not implement
//! is left out here and reported by `unsupported`.

use std::collections::BTreeMap;

use crate::api::networking::common::{
    Destination as ApiDestination, Percent, StringMatch as ApiMatch,
};
use crate::api::networking::virtual_service::{
    grpc_status_code, HeaderOperations, Headers, HttpMatchRequest, HttpRoute as ApiRoute,
    RedirectPortSelection, RouteDestination, VirtualService as ApiVirtualService,
};
use crate::api::parse_duration;
use crate::model::routing::*;

pub fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ConfigKey {
    ConfigKey {
        namespace: meta
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        name: meta.name.clone().unwrap_or_default(),
    }
}

pub fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second())
}

pub fn visibility(export_to: &[String], namespace: &str) -> Visibility {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return Visibility::Everywhere;
    }
    Visibility::Namespaces(
        export_to
            .iter()
            .map(|e| {
                if e == "." {
                    namespace.to_string()
                } else {
                    e.clone()
                }
            })
            .collect(),
    )
}

pub fn virtual_service(vs: &ApiVirtualService) -> VirtualService {
    let key = key(&vs.metadata);
    let ns = key.namespace.clone();
    let spec = &vs.spec;
    VirtualService {
        hosts: spec.hosts.iter().map(|h| resolve_host(h, &ns)).collect(),
        for_sidecars: spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh"),
        visibility: visibility(&spec.export_to, &ns),
        http: spec
            .http
            .iter()
            .enumerate()
            .filter_map(|(i, r)| http_route(r, i, &ns))
            .collect(),
        tcp: spec
            .tcp
            .iter()
            .map(|r| {
                l4_route(
                    &r.r#match.iter().map(l4_tcp).collect::<Vec<_>>(),
                    &r.route,
                    &ns,
                )
            })
            .collect(),
        tls: spec
            .tls
            .iter()
            .map(|r| {
                l4_route(
                    &r.r#match.iter().map(l4_tls).collect::<Vec<_>>(),
                    &r.route,
                    &ns,
                )
            })
            .collect(),
        created: created(&vs.metadata),
        key,
    }
}

fn http_route(r: &ApiRoute, _index: usize, ns: &str) -> Option<HttpRoute> {
    let action = if let Some(redirect) = &r.redirect {
        HttpAction::Redirect(Redirect {
            uri: redirect.uri.clone(),
            authority: redirect.authority.clone(),
            port: redirect.port.and_then(|p| u16::try_from(p).ok()),
            derive_port: matches!(
                redirect.derive_port,
                Some(RedirectPortSelection::FromRequestPort)
            ),
            scheme: redirect.scheme.clone(),
            code: redirect
                .redirect_code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(301),
        })
    } else if let Some(direct) = &r.direct_response {
        HttpAction::DirectResponse {
            status: u16::try_from(direct.status).unwrap_or(500),
            body: direct.body.as_ref().and_then(|b| b.string.clone()),
        }
    } else if let Some(delegate) = &r.delegate {
        HttpAction::Delegate(ConfigKey {
            namespace: delegate.namespace.clone().unwrap_or_else(|| ns.to_string()),
            name: delegate.name.clone().unwrap_or_default(),
        })
    } else {
        let single = r.route.len() == 1;
        HttpAction::Route(
            r.route
                .iter()
                .map(|d| WeightedDestination {
                    destination: destination(&d.destination, ns),
                    weight: if single {
                        100
                    } else {
                        d.weight.unwrap_or(0).max(0) as u32
                    },
                    headers: header_ops(d.headers.as_ref()),
                })
                .collect(),
        )
    };
    let mut mirrors: Vec<Mirror> = r
        .mirror
        .iter()
        .map(|d| Mirror {
            destination: destination(d, ns),
            percent: r
                .mirror_percentage
                .as_ref()
                .map(millionths)
                .or(r.mirror_percent.map(|p| p * 10_000))
                .unwrap_or(1_000_000),
        })
        .collect();
    mirrors.extend(r.mirrors.iter().map(|m| Mirror {
        destination: destination(&m.destination, ns),
        percent: m.percentage.as_ref().map(millionths).unwrap_or(1_000_000),
    }));
    Some(HttpRoute {
        name: r.name.clone().unwrap_or_default(),
        matches: r.r#match.iter().map(http_match).collect(),
        action,
        rewrite: r.rewrite.as_ref().map(|rw| Rewrite {
            uri: rw.uri.clone(),
            authority: rw.authority.clone(),
            uri_regex: rw.uri_regex_rewrite.as_ref().map(|x| {
                (
                    x.r#match.clone().unwrap_or_default(),
                    x.rewrite.clone().unwrap_or_default(),
                )
            }),
        }),
        timeout: duration("timeout", &r.timeout),
        retries: r.retries.as_ref().map(|x| Retry {
            attempts: x.attempts.unwrap_or(2).max(0) as u32,
            per_try_timeout: duration("perTryTimeout", &x.per_try_timeout),
            retry_on: x.retry_on.clone(),
            retry_remote_localities: x.retry_remote_localities.unwrap_or(false),
        }),
        fault: r.fault.as_ref().map(|f| Fault {
            delay: f.delay.as_ref().and_then(|d| {
                let fixed = duration("fixedDelay", &d.fixed_delay)?;
                let pct = d
                    .percentage
                    .as_ref()
                    .map(millionths)
                    .or(d.percent.map(|p| p.max(0) as u32 * 10_000));
                Some((fixed, pct.unwrap_or(1_000_000)))
            }),
            abort: f.abort.as_ref().and_then(|a| {
                let kind = match (a.http_status, &a.grpc_status) {
                    (Some(status), _) => Abort::Http(u16::try_from(status).ok()?),
                    (None, Some(name)) => Abort::Grpc(grpc_status_code(name)?),
                    (None, None) => return None,
                };
                Some((
                    kind,
                    a.percentage.as_ref().map(millionths).unwrap_or(1_000_000),
                ))
            }),
        }),
        mirrors,
        cors: r.cors_policy.as_ref().map(|c| Cors {
            allow_origins: c
                .allow_origins
                .iter()
                .filter_map(string_match)
                .chain(c.allow_origin.iter().map(|o| StringMatch::Exact(o.clone())))
                .collect(),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age: duration("maxAge", &c.max_age),
            allow_credentials: c.allow_credentials,
        }),
        headers: header_ops(r.headers.as_ref()),
    })
}

fn http_match(m: &HttpMatchRequest) -> HttpMatch {
    let conditions = |map: &BTreeMap<String, ApiMatch>| {
        map.iter()
            .map(|(k, v)| {
                let c = match string_match(v) {
                    // Istio: `{}` and `regex: "*"` mean "present".
                    None => HeaderCondition::Present,
                    Some(StringMatch::Regex(r)) if r == "*" => HeaderCondition::Present,
                    Some(s) => HeaderCondition::Value(s),
                };
                (k.to_ascii_lowercase(), c)
            })
            .collect()
    };
    HttpMatch {
        uri: m.uri.as_ref().and_then(string_match),
        scheme: m.scheme.as_ref().and_then(string_match),
        method: m.method.as_ref().and_then(string_match),
        authority: m.authority.as_ref().and_then(string_match),
        headers: conditions(&m.headers),
        without_headers: conditions(&m.without_headers),
        query_params: m
            .query_params
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), string_match(v)?)))
            .collect(),
        port: m.port.and_then(|p| u16::try_from(p).ok()),
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    }
}

fn l4_tcp(m: &crate::api::networking::virtual_service::L4MatchAttributes) -> L4Match {
    L4Match {
        destination_subnets: m.destination_subnets.clone(),
        port: m.port.and_then(|p| u16::try_from(p).ok()),
        sni_hosts: Vec::new(),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    }
}

fn l4_tls(m: &crate::api::networking::virtual_service::TlsMatchAttributes) -> L4Match {
    L4Match {
        destination_subnets: m.destination_subnets.clone(),
        port: m.port.and_then(|p| u16::try_from(p).ok()),
        sni_hosts: m.sni_hosts.clone(),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    }
}

fn l4_route(matches: &[L4Match], route: &[RouteDestination], ns: &str) -> L4Route {
    let single = route.len() == 1;
    L4Route {
        matches: matches.to_vec(),
        destinations: route
            .iter()
            .map(|d| WeightedDestination {
                destination: destination(&d.destination, ns),
                weight: if single {
                    100
                } else {
                    d.weight.unwrap_or(0).max(0) as u32
                },
                headers: HeaderOps::default(),
            })
            .collect(),
    }
}

pub fn destination(d: &ApiDestination, ns: &str) -> Destination {
    Destination {
        host: resolve_host(&d.host, ns),
        subset: d.subset.clone().filter(|s| !s.is_empty()),
        port: d
            .port
            .as_ref()
            .and_then(|p| u16::try_from(p.number).ok())
            .filter(|p| *p != 0),
    }
}

fn string_match(m: &ApiMatch) -> Option<StringMatch> {
    match m {
        ApiMatch::Exact(s) => Some(StringMatch::Exact(s.clone())),
        ApiMatch::Prefix(s) => Some(StringMatch::Prefix(s.clone())),
        ApiMatch::Regex(s) => Some(StringMatch::Regex(s.clone())),
        ApiMatch::Empty => None,
    }
}

fn header_ops(h: Option<&Headers>) -> HeaderOps {
    let edits = |o: Option<&HeaderOperations>| {
        o.map(|o| HeaderEdits {
            set: o.set.clone(),
            add: o.add.clone(),
            remove: o.remove.clone(),
        })
        .unwrap_or_default()
    };
    HeaderOps {
        request: edits(h.and_then(|h| h.request.as_ref())),
        response: edits(h.and_then(|h| h.response.as_ref())),
    }
}

/// An optional Go-style duration. Validation already accepted it, so a
/// parse failure cannot happen here; it reads as unset.
pub fn duration(field: &str, v: &Option<String>) -> Option<std::time::Duration> {
    v.as_deref().and_then(|s| parse_duration(field, s).ok())
}

/// Istio's Percent (0-100, fractional) in millionths of requests.
pub fn millionths(p: &Percent) -> u32 {
    (p.value.clamp(0.0, 100.0) * 10_000.0).round() as u32
}
