//! EDS: the ready endpoints of each service port, grouped by locality, and
//! the same relative to each known proxy locality where locality load
//! balancing applies (see `locality`).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality as EnvoyLocality};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};

use envoy_types::pb::google::protobuf::UInt32Value;

use super::locality::{self, Variant};
use super::mtls::{mtls_endpoint_metadata, TLS_MODE_LABEL};
use super::names;
use super::socket_address;
use crate::model::failover_priority;
use crate::model::routing::Subset;
use crate::model::security::{InboundMtls, MtlsMode};
use crate::model::{
    Endpoint as MeshEndpoint, Locality, Protocol, Service, ServiceEndpoints, ServiceKey,
    ServicePort, Snapshot,
};

/// Load assignments for every EDS cluster in the snapshot. They do not depend
/// on the proxy, so every proxy shares one set.
pub fn endpoints(snapshot: &Snapshot) -> Vec<ClusterLoadAssignment> {
    endpoints_for(snapshot, snapshot.services.keys())
}

/// Load assignments for the clusters of some services only: an endpoint change
/// regenerates just these.
pub fn endpoints_for<'a>(
    snapshot: &Snapshot,
    services: impl IntoIterator<Item = &'a ServiceKey>,
) -> Vec<ClusterLoadAssignment> {
    let empty = ServiceEndpoints::default();
    let services = services.into_iter();
    let mut out = Vec::with_capacity(services.size_hint().0);
    for key in services {
        let Some(svc) = snapshot.services.get(key) else {
            continue;
        };
        if svc.resolution != crate::model::Resolution::Endpoints {
            continue; // DNS and passthrough clusters need no EDS.
        }
        let eps = snapshot.endpoints.get(key).map_or(&empty, |e| e.as_ref());
        // Every subset any DestinationRule defines for this host: EDS is shared
        // by all proxies, and each subscribes only to the names its CDS lists.
        let host = &svc.host;
        let subsets: Vec<&Subset> = snapshot
            .by_host
            .destination_rules
            .matching(host)
            .into_iter()
            .flat_map(|dr| dr.subsets.iter())
            .collect();
        let mtls = |ep: &MeshEndpoint, target: u16| accepts_mtls(snapshot, svc, ep, target);
        let locality = |ep: &MeshEndpoint| endpoint_locality(snapshot, svc, ep);
        for port in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            let name = |subset: &str| names::outbound_cluster(port.port, subset, host);
            let groups = grouped(port, eps, |_| true, mtls, locality);
            let at = Cluster {
                svc,
                host,
                port: port.port,
                subset: "",
            };
            out.extend(assignments(snapshot, &name(""), at, groups));
            for subset in &subsets {
                let selects = |ep: &MeshEndpoint| {
                    endpoint_labels(snapshot, svc, ep)
                        .is_some_and(|l| subset.labels.iter().all(|(k, v)| l.get(k) == Some(v)))
                };
                let groups = grouped(port, eps, selects, mtls, locality);
                let name = name(&subset.name);
                let at = Cluster {
                    svc,
                    host,
                    port: port.port,
                    subset: &subset.name,
                };
                out.extend(assignments(snapshot, &name, at, groups));
            }
        }
    }
    out
}

/// Subsets and auto mTLS read an endpoint's labels: its Pod's, else those
/// its ServiceEntry or WorkloadEntry gives it.
fn endpoint_labels<'a>(
    snapshot: &'a Snapshot,
    svc: &Service,
    ep: &'a MeshEndpoint,
) -> Option<&'a BTreeMap<String, String>> {
    match ep.pod.as_deref() {
        Some(pod) => snapshot
            .workload(&svc.key.namespace, pod)
            .map(|w| &w.labels),
        None => ep.labels.as_deref(),
    }
}

/// Auto mTLS, as Istio decides it per endpoint: the pod runs a sidecar that
/// terminates mesh mTLS (injection's `security.istio.io/tlsMode: istio`
/// label) and its PeerAuthentication does not disable mTLS on that port.
fn accepts_mtls(snapshot: &Snapshot, svc: &Service, ep: &MeshEndpoint, target: u16) -> bool {
    let Some(labels) = endpoint_labels(snapshot, svc, ep) else {
        return false;
    };
    if labels.get(TLS_MODE_LABEL).map(String::as_str) != Some("istio") {
        return false;
    }
    let policies = snapshot.peer_authentications.values().map(|p| p.as_ref());
    let inbound = InboundMtls::resolve(
        policies,
        &snapshot.mesh.root_namespace,
        &svc.key.namespace,
        labels,
    );
    inbound.at(target) != MtlsMode::Disable
}

/// Which outbound cluster: `outbound|port|subset|host`.
#[derive(Clone, Copy)]
struct Cluster<'a> {
    svc: &'a Service,
    host: &'a str,
    port: u16,
    subset: &'a str,
}

/// Ready endpoints by locality, in locality order, each with the endpoint
/// it came from (`failoverPriority` ranks by its labels).
type Groups<'a> = Vec<(Locality, Vec<(LbEndpoint, &'a MeshEndpoint)>)>;

fn grouped<'a>(
    port: &ServicePort,
    eps: &'a ServiceEndpoints,
    selects: impl Fn(&MeshEndpoint) -> bool,
    mtls: impl Fn(&MeshEndpoint, u16) -> bool,
    locality: impl Fn(&MeshEndpoint) -> Locality,
) -> Groups<'a> {
    // A service has endpoints in a few localities at most: a list searched
    // from its last group (endpoints usually come grouped) is cheaper than
    // an ordered map, which this was, at one owned key per endpoint.
    let mut groups: Groups<'a> = Vec::new();
    // Not-ready endpoints are left out, as Kubernetes Services do.
    for ep in eps.endpoints.iter().filter(|e| e.ready && selects(e)) {
        let Some(target) = ServiceEndpoints::port_for(ep, port) else {
            continue;
        };
        let lb = LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(names::ip_text(ep.address), target)),
                ..Default::default()
            })),
            health_status: HealthStatus::Healthy as i32,
            metadata: mtls(ep, target).then(mtls_endpoint_metadata),
            ..Default::default()
        };
        let at = locality(ep);
        // Mostly no locality at all: check that without comparing strings.
        let same = |l: &Locality| (l.is_empty() && at.is_empty()) || *l == at;
        match groups.iter_mut().rev().find(|(l, _)| same(l)) {
            Some((_, group)) => group.push((lb, ep)),
            None => groups.push((at, vec![(lb, ep)])),
        }
    }
    // In locality order, as Envoy's priorities and the golden files expect.
    groups.sort_by(|(a, _), (b, _)| a.cmp(b));
    groups
}

/// The shared assignment (grouped by locality, no priorities), then one per
/// locality variant some proxy's cluster may name (see `locality`).
fn assignments(
    snapshot: &Snapshot,
    cluster: &str,
    at: Cluster,
    groups: Groups,
) -> Vec<ClusterLoadAssignment> {
    let variants = locality::variants(snapshot, at.host, at.port, at.subset);
    let mut out = Vec::with_capacity(1 + variants.len());
    out.extend(variants.iter().map(|v| ClusterLoadAssignment {
        cluster_name: names::eds_variant(cluster, v),
        endpoints: relative_to(snapshot, at.svc, v, &groups),
        ..Default::default()
    }));
    // Last, so its endpoints are moved rather than copied (most clusters
    // have no variants); the shared assignment goes first.
    out.insert(
        0,
        ClusterLoadAssignment {
            cluster_name: cluster.to_string(),
            endpoints: groups
                .into_iter()
                .map(|(l, eps)| locality_endpoints(&l, eps.into_iter().map(|(lb, _)| lb).collect()))
                .collect(),
            ..Default::default()
        },
    );
    out
}

fn lb_endpoints(eps: &[(LbEndpoint, &MeshEndpoint)]) -> Vec<LbEndpoint> {
    eps.iter().map(|(lb, _)| lb.clone()).collect()
}

/// The localities as a proxy at the variant's locality sees them: Envoy
/// priorities for failover, weights for distribute (a locality matching no
/// `to` gets no traffic, so it is left out). Every locality carries its
/// endpoint count as weight, as Istio's do, which locality-weighted load
/// balancing needs.
fn relative_to(
    snapshot: &Snapshot,
    svc: &Service,
    variant: &Variant,
    groups: &Groups,
) -> Vec<LocalityLbEndpoints> {
    let weighted =
        |l: &Locality, eps: &[(LbEndpoint, &MeshEndpoint)], priority: u32, weight: u32| {
            LocalityLbEndpoints {
                priority,
                load_balancing_weight: Some(UInt32Value { value: weight }),
                ..locality_endpoints(l, lb_endpoints(eps))
            }
        };
    let count = |eps: &[(LbEndpoint, &MeshEndpoint)]| eps.len() as u32;
    let localities = || groups.iter().map(|(l, _)| l).collect::<Vec<&Locality>>();
    match variant {
        Variant::Failover { from, to_region } => {
            let priorities =
                locality::failover_priorities(from, to_region.as_deref(), &localities());
            groups
                .iter()
                .zip(priorities)
                .map(|((l, eps), p)| weighted(l, eps, p, count(eps)))
                .collect()
        }
        Variant::Distribute { to: None, .. } => groups
            .iter()
            .map(|(l, eps)| weighted(l, eps, 0, count(eps)))
            .collect(),
        Variant::Distribute { to: Some(to), .. } => {
            let sizes: Vec<(&Locality, u32)> = groups.iter().map(|(l, e)| (l, count(e))).collect();
            let weights = locality::distribute_weights(to, &sizes);
            groups
                .iter()
                .zip(weights)
                .filter_map(|((l, eps), w)| Some(weighted(l, eps, 0, w?)))
                .collect()
        }
        Variant::Priority { labels, proximity } => {
            // Istio splits each locality by label rank, then (with regions
            // listed) ranks by proximity within each label rank: rank * 5 +
            // proximity, as there are five proximity levels.
            let near: Vec<u32> = match proximity {
                Some((from, to_region)) => {
                    locality::failover_priorities(from, to_region.as_deref(), &localities())
                }
                None => vec![0; groups.len()],
            };
            let keys: Vec<String> = labels.matched.iter().map(|(k, _)| k.clone()).collect();
            let empty = BTreeMap::new();
            let mut split: BTreeMap<(u32, usize), Vec<(LbEndpoint, &MeshEndpoint)>> =
                BTreeMap::new();
            for (i, (_, eps)) in groups.iter().enumerate() {
                for (lb, ep) in eps {
                    // Declared as the workloads' known values are, so the
                    // reduction holds (an EndpointSlice zone is not).
                    let own = endpoint_labels(snapshot, svc, ep).unwrap_or(&empty);
                    let declared = declared_locality(snapshot, svc, ep);
                    let values = failover_priority::values(&keys, own, declared.as_ref());
                    let rank = labels.distance(&values) * 5 + near[i];
                    split.entry((rank, i)).or_default().push((lb.clone(), *ep));
                }
            }
            let ranks: std::collections::BTreeSet<u32> = split.keys().map(|(r, _)| *r).collect();
            split
                .iter()
                .map(|((rank, i), eps)| {
                    let compact = ranks.iter().position(|r| r == rank).unwrap_or(0) as u32;
                    weighted(&groups[*i].0, eps, compact, count(eps))
                })
                .collect()
        }
    }
}

fn locality_endpoints(l: &Locality, lb_endpoints: Vec<LbEndpoint>) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: (!l.is_empty()).then(|| EnvoyLocality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            sub_zone: l.subzone.clone(),
        }),
        lb_endpoints,
        ..Default::default()
    }
}

/// An endpoint's locality as declared: the source's (ServiceEntry,
/// WorkloadEntry), else its Pod's (`istio-locality` label, else its Node's).
fn declared_locality(snapshot: &Snapshot, svc: &Service, ep: &MeshEndpoint) -> Option<Locality> {
    ep.locality.clone().or_else(|| {
        let pod = ep.pod.as_deref()?;
        snapshot.workload(&svc.key.namespace, pod)?.locality.clone()
    })
}

/// An endpoint's locality: as declared, else the EndpointSlice zone alone
/// (its Pod is not known). The one EDS groups it under.
pub fn endpoint_locality(snapshot: &Snapshot, svc: &Service, ep: &MeshEndpoint) -> Locality {
    declared_locality(snapshot, svc, ep)
        .or_else(|| ep.zone.as_deref().and_then(Locality::zone_only))
        .unwrap_or_default()
}
