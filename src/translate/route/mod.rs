//! RDS: one route configuration per HTTP port, one virtual host per service
//! answering to every name a client may use for it. A VirtualService for the
//! host supplies the routes; without one, all traffic goes to the service.

mod action;
pub(super) mod matching;

use std::collections::{HashMap, HashSet};

use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, DirectResponseAction, Route, RouteAction, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue};

use super::egress::{self, OutboundPort};
use super::filters::{cors, fault};
use super::{names, policy, seconds, ProxyShape};
use crate::model::routing::{Destination, HttpMatch, HttpRoute, VirtualService};
use crate::model::{OutboundPolicy, Protocol, ProxyKind, Service, ServicePort, Snapshot};

pub use action::header_options;

pub fn routes(snapshot: &Snapshot, shape: &ProxyShape) -> Vec<RouteConfiguration> {
    if shape.kind != ProxyKind::Sidecar {
        return Vec::new();
    }
    // One per outbound port with HTTP, named by the port as Istio names it
    // (also for a Sidecar egress listener's port: ports are unique there).
    egress::ports(snapshot, shape)
        .0
        .iter()
        .filter_map(|outbound| route_config(snapshot, shape, outbound))
        .collect()
}

fn route_config(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    outbound: &OutboundPort,
) -> Option<RouteConfiguration> {
    // Through capture, undeclared-protocol ports are sniffed and may carry
    // HTTP, and unknown hosts follow the outbound policy; on a listener the
    // application dials, neither applies.
    let captured = outbound.captured();
    let routed =
        |p: &ServicePort| p.protocol.is_http() || (captured && p.protocol == Protocol::Unknown);
    let port = outbound.port;
    let services = outbound.service_refs();
    if !services.iter().any(|(_, p)| routed(p)) {
        return None;
    }
    let mut virtual_hosts: Vec<VirtualHost> = services
        .iter()
        .filter(|(_, p)| routed(p))
        .map(|(svc, _)| virtual_host(snapshot, shape, svc, port))
        .collect();
    drop_taken_domains(&mut virtual_hosts);
    if captured {
        virtual_hosts.push(unknown_host(shape.outbound_policy(snapshot)));
    }
    Some(RouteConfiguration {
        name: names::route_config(port),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        // As Istio's sidecars since 1.16: `Host: web:8080` matches `web`
        // whatever the port, so no domain needs a `:port` twin (half the
        // domains, a fifth of the route bytes every proxy decodes).
        ignore_port_in_host_matching: true,
        ..Default::default()
    })
}

/// Envoy refuses a route configuration where two virtual hosts share a
/// domain (two Services claiming one cluster IP, say): the first keeps it,
/// and a virtual host left with no domain goes. Conflicts are rare, so
/// this looks domains up without copying them and edits only on a conflict.
fn drop_taken_domains(virtual_hosts: &mut Vec<VirtualHost>) {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    for (i, vh) in virtual_hosts.iter().enumerate() {
        for (j, domain) in vh.domains.iter().enumerate() {
            if !seen.insert(domain) {
                taken.push((i, j));
            }
        }
    }
    if taken.is_empty() {
        return;
    }
    // Last first, so earlier indices stay valid.
    for (i, j) in taken.into_iter().rev() {
        virtual_hosts[i].domains.remove(j);
    }
    virtual_hosts.retain(|vh| !vh.domains.is_empty());
}

fn virtual_host(snapshot: &Snapshot, shape: &ProxyShape, svc: &Service, port: u16) -> VirtualHost {
    let domains = names::host_aliases(svc, &shape.namespace);
    let namer = Namer {
        snapshot,
        shape,
        port,
    };
    let routes = virtual_service_for(snapshot, &svc.host, &shape.namespace)
        .map(|vs| vs_routes(vs, &namer))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| {
            let dest = Destination {
                host: svc.hostname(),
                subset: None,
                port: Some(port),
            };
            vec![default_route(&namer, &dest)]
        });
    VirtualHost {
        name: names::host_port(&svc.host, port),
        domains,
        routes,
        ..Default::default()
    }
}

/// Where TCP traffic for a service port goes on a listener the application
/// dials: the first VirtualService `tcp` route with a match that applies
/// (port, source namespace and labels) to any address, or the service
/// itself. Weighted destinations become a split. A match on
/// `destinationSubnets` is left out: the destination is the listener's own
/// address (Istio gives it a chain on the subnets, which that address
/// does not reach).
pub fn tcp_destinations(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    svc: &Service,
    port: u16,
) -> Vec<(String, u32)> {
    tcp_routes(snapshot, shape, svc, port, false).default
}

/// (cluster, weight) pairs, as Envoy's tcp_proxy takes them.
pub type Split = Vec<(String, u32)>;

/// A service port's VirtualService `tcp` routes as a captured listener
/// applies them, which sees each connection's destination address.
pub struct TcpRoutes {
    /// Routes whose applying matches all name `destinationSubnets`, in
    /// order: the subnets, and the (cluster, weight) list for them.
    pub by_subnet: Vec<(Vec<String>, Split)>,
    /// For the service's own address: the first route with an applying
    /// match on any address (Istio's terminal match), else the service.
    pub default: Split,
}

/// Istio's outbound TCP chains: routes in order; one whose applying match
/// has no subnets (or that has no matches) ends the list; before it, each
/// route whose applying matches all have subnets adds a chain on them
/// (`by_address`), or is passed over (a listener the application dials).
pub fn tcp_routes(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    svc: &Service,
    port: u16,
    by_address: bool,
) -> TcpRoutes {
    let namer = Namer {
        snapshot,
        shape,
        port,
    };
    let own = || vec![(names::outbound_cluster(port, "", &svc.host), 100)];
    let mut out = TcpRoutes {
        by_subnet: Vec::new(),
        default: own(),
    };
    let Some(vs) = virtual_service_for(snapshot, &svc.host, &shape.namespace) else {
        return out;
    };
    use action::ClusterNamer;
    for r in &vs.tcp {
        let applying: Vec<&crate::model::routing::L4Match> =
            r.matches.iter().filter(|m| namer.applies_l4(m)).collect();
        if !r.matches.is_empty() && applying.is_empty() {
            continue;
        }
        let dests = split(
            r.destinations
                .iter()
                .map(|d| (namer.cluster(&d.destination), d.weight))
                .collect(),
        );
        let subnets: Vec<String> = applying
            .iter()
            .flat_map(|m| m.destination_subnets.iter().cloned())
            .collect();
        let on_subnets =
            !applying.is_empty() && applying.iter().all(|m| !m.destination_subnets.is_empty());
        if !on_subnets {
            if !dests.is_empty() {
                out.default = dests;
            }
            return out;
        }
        if by_address && !dests.is_empty() {
            out.by_subnet.push((subnets, dests));
        }
    }
    out
}

/// A TCP or TLS route's (cluster, weight) list as Envoy's tcp_proxy takes
/// it. Istio leaves zero-weight destinations out of a split, and Envoy
/// refuses a weight of 0 there (NACKing the whole listener update); a lone
/// destination takes all traffic whatever its weight.
fn split(mut dests: Vec<(String, u32)>) -> Vec<(String, u32)> {
    if dests.len() > 1 {
        dests.retain(|(_, weight)| *weight > 0);
    }
    dests
}

/// One VirtualService `tls` route, resolved for a proxy and port.
pub struct TlsRoute {
    /// Each applicable match: its SNI names, and the destination subnets
    /// (empty: any address) they are matched on.
    pub matches: Vec<TlsMatch>,
    /// (cluster, weight)
    pub clusters: Vec<(String, u32)>,
}

pub struct TlsMatch {
    pub sni: Vec<String>,
    pub destination_subnets: Vec<String>,
}

/// VirtualService `tls` routes for a TLS service port, in order, for the
/// matches that apply to this proxy.
pub fn tls_routes(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    svc: &Service,
    port: u16,
) -> Vec<TlsRoute> {
    let Some(vs) = virtual_service_for(snapshot, &svc.host, &shape.namespace) else {
        return Vec::new();
    };
    let namer = Namer {
        snapshot,
        shape,
        port,
    };
    use action::ClusterNamer;
    vs.tls
        .iter()
        .filter_map(|r| {
            let matches: Vec<TlsMatch> = r
                .matches
                .iter()
                .filter(|m| namer.applies_l4(m) && !m.sni_hosts.is_empty())
                .map(|m| TlsMatch {
                    sni: m.sni_hosts.clone(),
                    destination_subnets: m.destination_subnets.clone(),
                })
                .collect();
            let dests = split(
                r.destinations
                    .iter()
                    .map(|d| (namer.cluster(&d.destination), d.weight))
                    .collect(),
            );
            (!matches.is_empty() && !dests.is_empty()).then_some(TlsRoute {
                matches,
                clusters: dests,
            })
        })
        .collect()
}

/// Istio's choice among VirtualServices for one host: visible from the
/// proxy's namespace and bound to sidecars; an exact host before a wildcard;
/// then the oldest; then by namespace/name.
pub fn virtual_service_for<'a>(
    snapshot: &'a Snapshot,
    host: &str,
    namespace: &str,
) -> Option<&'a VirtualService> {
    snapshot
        .by_host
        .virtual_services
        .matching(host)
        .into_iter()
        .filter(|vs| vs.for_sidecars && vs.visibility.visible_from(namespace))
        .filter_map(|vs| {
            let exact = vs.hosts.iter().any(|h| h == host);
            let wildcard = vs
                .hosts
                .iter()
                .filter(|h| crate::model::routing::host_matches(h, host))
                .map(|h| std::cmp::Reverse(h.len()))
                .min();
            match (exact, wildcard) {
                (true, _) => Some(((0, std::cmp::Reverse(usize::MAX)), vs)),
                (false, Some(len)) => Some(((1, len), vs)),
                _ => None,
            }
        })
        .min_by(|(a, x), (b, y)| {
            a.cmp(b)
                .then(x.created.cmp(&y.created))
                .then(x.key.cmp(&y.key))
        })
        .map(|(_, vs)| vs)
}

fn vs_routes(vs: &VirtualService, namer: &Namer) -> Vec<Route> {
    let mut out = Vec::new();
    for (i, r) in vs.http.iter().enumerate() {
        let name = if r.name.is_empty() {
            format!("{}.{}#{i}", vs.key.name, vs.key.namespace)
        } else {
            r.name.clone()
        };
        if let crate::model::routing::HttpAction::Delegate(key) = &r.action {
            // One level of delegation, as Istio supports; a missing delegate
            // contributes no routes.
            if let Some(delegate) = namer.snapshot.virtual_services.get(key) {
                out.extend(delegated_routes(delegate, &r.matches, namer));
            }
            continue;
        }
        if r.matches.is_empty() {
            out.push(envoy_route(&name, r, None, namer));
            continue;
        }
        for m in r.matches.iter().filter(|m| namer.applies(m)) {
            out.push(envoy_route(&name, r, Some(m), namer));
        }
    }
    out
}

/// A delegate's routes under its root's matches: each delegate match is
/// narrowed by each root match (a root without matches matches everything).
fn delegated_routes(
    delegate: &VirtualService,
    root_matches: &[HttpMatch],
    namer: &Namer,
) -> Vec<Route> {
    let any = [HttpMatch::default()];
    let roots = if root_matches.is_empty() {
        &any[..]
    } else {
        root_matches
    };
    let mut out = Vec::new();
    for (i, r) in delegate.http.iter().enumerate() {
        if matches!(r.action, crate::model::routing::HttpAction::Delegate(_)) {
            continue;
        }
        let name = if r.name.is_empty() {
            format!("{}.{}#{i}", delegate.key.name, delegate.key.namespace)
        } else {
            r.name.clone()
        };
        let own = if r.matches.is_empty() {
            &any[..]
        } else {
            &r.matches[..]
        };
        for root in roots {
            for m in own {
                let merged = m.within(root);
                if namer.applies(&merged) {
                    out.push(envoy_route(&name, r, Some(&merged), namer));
                }
            }
        }
    }
    out
}

fn envoy_route(name: &str, r: &HttpRoute, m: Option<&HttpMatch>, namer: &Namer) -> Route {
    let mut action = action::action(r, m, namer);
    if let route::Action::Route(ra) = &mut action {
        ra.hash_policy = namer.hash_policy(r);
    }
    let mut per_filter = Vec::new();
    if let Some(f) = &r.fault {
        per_filter.push((fault::FILTER_NAME.to_string(), fault::per_route(f)));
    }
    if let Some(c) = &r.cors {
        per_filter.push((cors::FILTER_NAME.to_string(), cors::per_route(c)));
    }
    Route {
        name: name.to_string(),
        r#match: Some(m.map(matching::route_match).unwrap_or_else(matching::any)),
        action: Some(action),
        request_headers_to_add: header_options(&r.headers.request),
        request_headers_to_remove: r.headers.request.remove.clone(),
        response_headers_to_add: header_options(&r.headers.response),
        response_headers_to_remove: r.headers.response.remove.clone(),
        typed_per_filter_config: per_filter_config(per_filter),
        ..Default::default()
    }
}

fn default_route(namer: &Namer, dest: &Destination) -> Route {
    use action::ClusterNamer;
    Route {
        name: "default".to_string(),
        r#match: Some(matching::any()),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(namer.cluster(dest))),
            // Istio disables Envoy's 15 s route timeout unless a VirtualService sets one.
            timeout: Some(seconds(0)),
            retry_policy: action::retry_policy(None),
            hash_policy: policy::hash_policy(namer.snapshot, &dest.host, namer.shape),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Builds a protobuf map field with a fixed hasher: prost encodes maps in
/// iteration order, and a per-map random hasher would make equal config
/// encode to different bytes (and look like a change to every proxy).
/// The order is stable within a process, which is what versions need.
fn per_filter_config(entries: Vec<(String, Any)>) -> HashMap<String, Any> {
    static STATE: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    let mut map = HashMap::with_hasher(STATE.clone());
    map.extend(entries);
    map
}

/// Resolves destinations for routes of one virtual host.
struct Namer<'a> {
    snapshot: &'a Snapshot,
    shape: &'a ProxyShape,
    /// The port of the listener the request came in on.
    port: u16,
}

impl Namer<'_> {
    /// `sourceLabels`/`sourceNamespace`/`port` restrict a match to some proxies and ports.
    fn applies(&self, m: &HttpMatch) -> bool {
        self.applies_to_proxy(m.port, m.source_namespace.as_deref(), &m.source_labels)
    }

    /// The same restrictions on a TCP or TLS route match.
    fn applies_l4(&self, m: &crate::model::routing::L4Match) -> bool {
        self.applies_to_proxy(m.port, m.source_namespace.as_deref(), &m.source_labels)
    }

    fn applies_to_proxy(
        &self,
        port: Option<u16>,
        source_namespace: Option<&str>,
        source_labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        port.is_none_or(|p| p == self.port)
            && source_namespace.is_none_or(|ns| ns == self.shape.namespace)
            && source_labels
                .iter()
                .all(|(k, v)| self.shape.labels.get(k) == Some(v))
    }

    /// Consistent hashing is configured on the route, from the DestinationRule
    /// of the (first) destination.
    fn hash_policy(
        &self,
        r: &HttpRoute,
    ) -> Vec<envoy_types::pb::envoy::config::route::v3::route_action::HashPolicy> {
        match &r.action {
            crate::model::routing::HttpAction::Route(dests) => dests
                .first()
                .map(|d| policy::hash_policy(self.snapshot, &d.destination.host, self.shape))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl action::ClusterNamer for Namer<'_> {
    /// Istio: an unset destination port means the service's only port, or
    /// else the port the request arrived on.
    fn cluster(&self, d: &Destination) -> String {
        // Only a destination without a port needs its service (a scan, so
        // not done for the common case: done per route it made translation
        // quadratic in the number of services).
        let port = d.port.unwrap_or_else(|| {
            match self.snapshot.services.values().find(|s| s.host == d.host) {
                Some(s) if s.ports.len() == 1 => s.ports[0].port,
                _ => self.port,
            }
        });
        names::outbound_cluster(port, d.subset.as_deref().unwrap_or(""), &d.host)
    }
}

/// Any other Host: Istio's `allow_any` (pass through to the original
/// destination) or `block_all` (502) virtual host.
fn unknown_host(policy: OutboundPolicy) -> VirtualHost {
    let (name, action) = match policy {
        OutboundPolicy::AllowAny => (
            "allow_any",
            route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                    names::PASSTHROUGH_CLUSTER.to_string(),
                )),
                timeout: Some(seconds(0)),
                ..Default::default()
            }),
        ),
        OutboundPolicy::RegistryOnly => (
            "block_all",
            route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        ),
    };
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            name: name.to_string(),
            r#match: Some(matching::any()),
            action: Some(action),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhost(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Two Services claiming one cluster IP: the first keeps the address,
    /// and a virtual host left without domains is dropped, so Envoy never
    /// sees a domain twice.
    #[test]
    fn the_first_virtual_host_keeps_a_shared_domain() {
        let mut hosts = vec![
            vhost("a", &["a.ns", "10.0.0.1"]),
            vhost("b", &["b.ns", "10.0.0.1", "b"]),
            vhost("c", &["a.ns", "10.0.0.1"]),
        ];
        drop_taken_domains(&mut hosts);
        let left: Vec<(&str, Vec<&str>)> = hosts
            .iter()
            .map(|h| {
                (
                    h.name.as_str(),
                    h.domains.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            left,
            [("a", vec!["a.ns", "10.0.0.1"]), ("b", vec!["b.ns", "b"])]
        );
    }
}
