use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::authz::applies_to;
use crate::model::failover_priority::{self, PriorityMatch};
use crate::model::routing::{ConfigKey, ConnectionPool, SidecarScope};
use crate::model::security::InboundMtls;
use crate::model::sidecar::{DefaultEndpoint, EgressBind, EgressListener, IngressListener};
use crate::model::{
    Interception, Locality, OutboundPolicy, Protocol, Proxy, ProxyKind, Service, ServiceEndpoints,
    Snapshot, LOCALITY_LABEL,
};

/// Everything about a proxy that translation reads. Two proxies with equal
/// shapes get byte-identical config, so this is also the cache key; adding an
/// input to translation means adding it here, or the compiler will not let
/// the translator see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProxyShape {
    pub kind: ProxyKind,
    pub namespace: String,
    pub interception: Interception,
    /// The ports the proxy serves inbound (each through `inbound|PORT||`):
    /// the target ports of the Services selecting the workload, or, when its
    /// Sidecar lists `ingress` listeners, those listeners' ports instead.
    pub inbound: BTreeMap<u16, InboundPort>,
    /// The proxy's own IP, only when a Sidecar ingress listener needs it:
    /// to forward to it (`defaultEndpoint: 0.0.0.0:PORT`), or to check that
    /// a `bind` address is the proxy's. Unset otherwise, so proxies of
    /// different pods still share a shape.
    pub instance_ip: Option<IpAddr>,
    /// The workload's labels that some VirtualService `sourceLabels` or
    /// DestinationRule `workloadSelector` reads, and only those: proxies of
    /// different workloads still share a shape when no rule tells them apart.
    pub labels: BTreeMap<String, String>,
    /// The Sidecar resource that scopes this proxy, if any.
    pub sidecar: Option<ConfigKey>,
    /// The proxy holds a Rudder-issued certificate, so its config may ask
    /// for mutual TLS (client and server side).
    pub mtls: bool,
    /// What its inbound side accepts, by PeerAuthentication.
    pub inbound_mtls: InboundMtls,
    /// The AuthorizationPolicies that apply to the workload, by key.
    pub authz: Vec<ConfigKey>,
    /// The RequestAuthentications that apply to the workload, by key.
    pub request_authn: Vec<ConfigKey>,
    /// Where the proxy runs, when it is one of the mesh's known localities
    /// (EDS serves locality-relative assignments only for those).
    pub locality: Option<Locality>,
    /// For each `failoverPriority` list (as written) in the config, the
    /// proxy's label values reduced to what ranks endpoints differently;
    /// none for a proxy without labels, which Istio does not rank by label.
    pub failover_priority: BTreeMap<Vec<String>, PriorityMatch>,
}

/// One port the proxy serves inbound.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct InboundPort {
    /// As declared (by the Service port or the ingress listener).
    pub protocol: Protocol,
    /// The Sidecar `ingress` listener declaring the port; None for a
    /// Service's target port.
    pub listener: Option<IngressListener>,
    /// The listener's `connectionPool`, else the Sidecar's
    /// `inboundConnectionPool` (which also covers Service ports).
    pub connection_pool: Option<ConnectionPool>,
}

impl ProxyShape {
    pub fn of(snapshot: &Snapshot, proxy: &Proxy) -> ProxyShape {
        let sidecar = sidecar_for(snapshot, proxy);
        let scope = sidecar.as_ref().and_then(|k| snapshot.sidecars.get(k));
        let inbound = inbound(snapshot, proxy, scope.map(|s| s.as_ref()));
        let own_address = |b: &IpAddr| !b.is_unspecified() && !b.is_loopback();
        let to_instance = inbound.values().any(|p| {
            p.listener.as_ref().is_some_and(|l| {
                matches!(l.endpoint, DefaultEndpoint::InstanceIp { .. })
                    || l.bind.as_ref().is_some_and(own_address)
            })
        }) || scope.is_some_and(|s| {
            // An egress listener binding an address of the pod's: Envoy can
            // bind it only if it is this proxy's.
            s.egress
                .iter()
                .any(|e| matches!(&e.bind, Some(EgressBind::Ip(b)) if own_address(b)))
        });
        ProxyShape {
            kind: proxy.kind,
            namespace: proxy.namespace.clone(),
            interception: proxy.interception,
            inbound,
            instance_ip: to_instance.then_some(proxy.ip),
            labels: routing_labels(snapshot, proxy),
            sidecar,
            mtls: proxy.mtls,
            inbound_mtls: InboundMtls::resolve(
                snapshot.peer_authentications.values().map(|p| p.as_ref()),
                &snapshot.mesh.root_namespace,
                &proxy.namespace,
                workload_labels(snapshot, proxy),
            ),
            authz: applicable(
                snapshot
                    .authorization_policies
                    .values()
                    .map(|p| (&p.key, &p.selector, p.targets_only)),
                snapshot,
                proxy,
            ),
            request_authn: applicable(
                snapshot
                    .request_authentications
                    .values()
                    .map(|p| (&p.key, &p.selector, p.targets_only)),
                snapshot,
                proxy,
            ),
            locality: locality(snapshot, proxy),
            failover_priority: failover_priority(snapshot, proxy),
        }
    }

    /// Whether this shape still describes `proxy` at `snapshot`, which follows
    /// the snapshot it was computed from. After an endpoints-only change it
    /// does, unless an endpoint of a service selecting the proxy moved (named
    /// target ports resolve through the proxy's own endpoint).
    pub fn still_valid(&self, snapshot: &Snapshot, proxy: &Proxy) -> bool {
        let changes = &snapshot.changes;
        if !changes.endpoints_only() {
            return false;
        }
        let labels = workload_labels(snapshot, proxy);
        !changes
            .endpoints
            .iter()
            .filter_map(|k| snapshot.services.get(k))
            .any(|svc| svc.selects(&proxy.namespace, labels))
    }

    pub fn scope<'a>(&self, snapshot: &'a Snapshot) -> Option<&'a SidecarScope> {
        self.sidecar
            .as_ref()
            .and_then(|k| snapshot.sidecars.get(k))
            .map(|s| s.as_ref())
    }

    /// Is this service part of the proxy's world, on some port? Without a
    /// Sidecar resource, every service is; with one, only those its egress
    /// hosts import. A Sidecar without `egress` (only `ingress`, say)
    /// imports `*/*`, as Istio.
    pub fn imports(&self, snapshot: &Snapshot, svc: &Service) -> bool {
        self.egress_any(snapshot, |e| e.imports(&svc.key.namespace, &svc.host))
    }

    /// Is this port of the service imported? Istio's SidecarScope: an
    /// egress listener with a port imports only that port of its hosts,
    /// and the scope is the union over the listeners (so clusters exist
    /// for exactly these ports).
    pub fn imports_port(&self, snapshot: &Snapshot, svc: &Service, port: u16) -> bool {
        self.egress_any(snapshot, |e| {
            e.imports_port(&svc.key.namespace, &svc.host, port)
        })
    }

    /// Whether some egress listener of the proxy's Sidecar says yes: always
    /// without a Sidecar, or with one without `egress`.
    fn egress_any(&self, snapshot: &Snapshot, f: impl Fn(&EgressListener) -> bool) -> bool {
        match self.scope(snapshot) {
            Some(scope) if !scope.egress.is_empty() => scope.egress.iter().any(f),
            _ => true,
        }
    }

    /// Is `port` taken on this pod by the inbound side: served inbound (the
    /// application's own port, or one a Sidecar ingress listener binds), or
    /// where an ingress listener's application listens on loopback? Envoy's
    /// loopback listeners must leave such ports alone, or binding fails.
    pub fn holds_port(&self, port: u16) -> bool {
        self.inbound.contains_key(&port)
            || self.inbound.values().any(|p| {
                p.listener.as_ref().is_some_and(|l| {
                    matches!(l.endpoint, DefaultEndpoint::Loopback { port: to, .. } if to == port)
                })
            })
    }

    /// The Sidecar's outboundTrafficPolicy, else the mesh's.
    pub fn outbound_policy(&self, snapshot: &Snapshot) -> OutboundPolicy {
        self.scope(snapshot)
            .and_then(|s| s.outbound_policy)
            .unwrap_or(snapshot.mesh.outbound_traffic_policy)
    }
}

/// Istio's choice: a Sidecar in the proxy's namespace whose selector matches
/// its workload (oldest first); else the namespace's selector-less Sidecar;
/// else the root namespace's selector-less one.
fn sidecar_for(snapshot: &Snapshot, proxy: &Proxy) -> Option<ConfigKey> {
    let labels = workload_labels(snapshot, proxy);
    let in_ns = |ns: &str, selected: bool| {
        snapshot
            .sidecars
            .values()
            .filter(|s| s.key.namespace == ns && s.workload_selector.is_empty() != selected)
            .filter(|s| {
                s.workload_selector
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .min_by_key(|s| (s.created, s.key.clone()))
            .map(|s| s.key.clone())
    };
    in_ns(&proxy.namespace, true)
        .or_else(|| in_ns(&proxy.namespace, false))
        .or_else(|| in_ns(&snapshot.mesh.root_namespace, false))
}

/// Keys of the policies (AuthorizationPolicy or RequestAuthentication) that
/// bind to this sidecar's workload, in key order.
fn applicable<'a>(
    policies: impl Iterator<Item = (&'a ConfigKey, &'a BTreeMap<String, String>, bool)>,
    snapshot: &Snapshot,
    proxy: &Proxy,
) -> Vec<ConfigKey> {
    if proxy.kind != ProxyKind::Sidecar {
        return Vec::new();
    }
    let labels = workload_labels(snapshot, proxy);
    policies
        .filter(|(key, selector, targets_only)| {
            applies_to(
                key,
                selector,
                *targets_only,
                &snapshot.mesh.root_namespace,
                &proxy.namespace,
                labels,
            )
        })
        .map(|(key, _, _)| key.clone())
        .collect()
}

/// Envoy's `node.locality`, else the workload's (its `istio-locality`
/// label, else its Node's); kept only when known to the mesh, so other
/// proxies keep sharing shapes.
fn locality(snapshot: &Snapshot, proxy: &Proxy) -> Option<Locality> {
    own_locality(snapshot, proxy).filter(|l| snapshot.localities.contains(l))
}

/// The proxy's locality, known to the mesh or not. A proxy whose Pod is
/// not in the config may still claim an `istio-locality` label.
fn own_locality(snapshot: &Snapshot, proxy: &Proxy) -> Option<Locality> {
    proxy.locality.clone().or_else(
        || match snapshot.workload(&proxy.namespace, &proxy.pod_name) {
            Some(w) => w.locality.clone(),
            None => proxy
                .labels
                .get(LOCALITY_LABEL)
                .and_then(|l| Locality::from_label(l)),
        },
    )
}

/// Istio ranks by the proxy's labels, including the topology labels it
/// adds from the proxy's locality (whether or not the mesh knows it).
fn failover_priority(snapshot: &Snapshot, proxy: &Proxy) -> BTreeMap<Vec<String>, PriorityMatch> {
    let lists = failover_priority::lists(
        snapshot.destination_rules.values().map(|d| d.as_ref()),
        &snapshot.mesh.locality_lb,
    );
    if lists.is_empty() {
        return BTreeMap::new();
    }
    let labels = workload_labels(snapshot, proxy);
    let locality = own_locality(snapshot, proxy);
    if labels.is_empty() && locality.is_none() {
        return BTreeMap::new();
    }
    let none = BTreeSet::new();
    lists
        .into_iter()
        .map(|list| {
            let known = snapshot
                .failover_known
                .get(&failover_priority::keys(list))
                .unwrap_or(&none);
            let m = PriorityMatch::of(list, labels, locality.as_ref(), known);
            (list.clone(), m)
        })
        .collect()
}

fn workload_labels<'a>(snapshot: &'a Snapshot, proxy: &'a Proxy) -> &'a BTreeMap<String, String> {
    snapshot
        .workload(&proxy.namespace, &proxy.pod_name)
        .map(|w| &w.labels)
        .unwrap_or(&proxy.labels)
}

fn routing_labels(snapshot: &Snapshot, proxy: &Proxy) -> BTreeMap<String, String> {
    let mut keys = BTreeSet::new();
    for vs in snapshot.virtual_services.values() {
        let http = vs
            .http
            .iter()
            .flat_map(|r| r.matches.iter().map(|m| &m.source_labels));
        let l4 = vs
            .tcp
            .iter()
            .chain(&vs.tls)
            .flat_map(|r| r.matches.iter().map(|m| &m.source_labels));
        for labels in http.chain(l4) {
            keys.extend(labels.keys());
        }
    }
    for dr in snapshot.destination_rules.values() {
        keys.extend(dr.workload_selector.keys());
    }
    let labels = workload_labels(snapshot, proxy);
    keys.into_iter()
        .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

/// What the proxy serves inbound. Istio: a Sidecar's `ingress` listeners,
/// when it has any, replace the Services' ports, and are configured only
/// for a workload some Service selects.
fn inbound(
    snapshot: &Snapshot,
    proxy: &Proxy,
    scope: Option<&SidecarScope>,
) -> BTreeMap<u16, InboundPort> {
    let services = service_ports(snapshot, proxy);
    let pool = scope.and_then(|s| s.inbound_connection_pool.as_ref());
    let ingress = scope.map(|s| s.ingress.as_slice()).unwrap_or_default();
    if ingress.is_empty() {
        let port = |protocol| InboundPort {
            protocol,
            listener: None,
            connection_pool: pool.cloned(),
        };
        return services.into_iter().map(|(n, p)| (n, port(p))).collect();
    }
    if services.is_empty() {
        return BTreeMap::new();
    }
    // Validation keeps ingress ports unique.
    let port = |l: &IngressListener| InboundPort {
        protocol: l.protocol,
        listener: Some(l.clone()),
        connection_pool: l.connection_pool.as_ref().or(pool).cloned(),
    };
    ingress.iter().map(|l| (l.port, port(l))).collect()
}

/// The target ports of every Service selecting the workload. The Pod
/// object's labels win over the proxy's own claim when both exist.
fn service_ports(snapshot: &Snapshot, proxy: &Proxy) -> BTreeMap<u16, Protocol> {
    if proxy.kind != ProxyKind::Sidecar {
        return BTreeMap::new();
    }
    let labels = workload_labels(snapshot, proxy);
    let mut ports = BTreeMap::new();
    // A Service selects only in its own namespace: walk that one alone.
    for svc in snapshot.services_in(&proxy.namespace) {
        if !svc.selects(&proxy.namespace, labels) {
            continue;
        }
        let own_endpoint = snapshot
            .endpoints
            .get(&svc.key)
            .and_then(|eps| eps.endpoints.iter().find(|e| e.address == proxy.ip));
        for port in &svc.ports {
            if port.protocol == Protocol::Udp {
                continue;
            }
            let target = match (&port.target_port, own_endpoint) {
                (_, Some(ep)) => ServiceEndpoints::port_for(ep, port),
                (crate::model::TargetPort::Number(n), None) => Some(*n),
                // A named port we cannot resolve yet: no endpoint for this pod.
                (crate::model::TargetPort::Named(_), None) => None,
            };
            if let Some(t) = target {
                ports.entry(t).or_insert(port.protocol);
            }
        }
    }
    ports
}
