//! EDS: the ready endpoints of each service port, grouped by zone.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};

use super::mtls::{mtls_endpoint_metadata, TLS_MODE_LABEL};
use super::names;
use super::socket_address;
use crate::model::routing::{host_matches, Subset};
use crate::model::security::{InboundMtls, MtlsMode};
use crate::model::{
    Endpoint as MeshEndpoint, Protocol, Service, ServiceEndpoints, ServiceKey, ServicePort,
    Snapshot,
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
    let mut out = Vec::new();
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
        let host = svc.hostname();
        let subsets: Vec<&Subset> = snapshot
            .destination_rules
            .values()
            .filter(|dr| host_matches(&dr.host, &host))
            .flat_map(|dr| dr.subsets.iter())
            .collect();
        let mtls = |ep: &MeshEndpoint, target: u16| accepts_mtls(snapshot, svc, ep, target);
        for port in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            out.push(assignment(svc, port, "", eps, |_| true, mtls));
            for subset in &subsets {
                let selects = |ep: &MeshEndpoint| {
                    endpoint_labels(snapshot, svc, ep)
                        .is_some_and(|l| subset.labels.iter().all(|(k, v)| l.get(k) == Some(v)))
                };
                out.push(assignment(svc, port, &subset.name, eps, selects, mtls));
            }
        }
    }
    out
}

/// Subsets select endpoints by their pod's labels.
fn endpoint_labels<'a>(
    snapshot: &'a Snapshot,
    svc: &Service,
    ep: &MeshEndpoint,
) -> Option<&'a BTreeMap<String, String>> {
    let pod = ep.pod.as_deref()?;
    snapshot
        .workload(&svc.key.namespace, pod)
        .map(|w| &w.labels)
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

fn assignment(
    svc: &Service,
    port: &ServicePort,
    subset: &str,
    eps: &ServiceEndpoints,
    selects: impl Fn(&MeshEndpoint) -> bool,
    mtls: impl Fn(&MeshEndpoint, u16) -> bool,
) -> ClusterLoadAssignment {
    let mut by_zone: BTreeMap<&str, Vec<LbEndpoint>> = BTreeMap::new();
    // Not-ready endpoints are left out, as Kubernetes Services do.
    for ep in eps.endpoints.iter().filter(|e| e.ready && selects(e)) {
        let Some(target) = ServiceEndpoints::port_for(ep, port) else {
            continue;
        };
        let lb = LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(&ep.address.to_string(), target)),
                ..Default::default()
            })),
            health_status: HealthStatus::Healthy as i32,
            metadata: mtls(ep, target).then(mtls_endpoint_metadata),
            ..Default::default()
        };
        by_zone
            .entry(ep.zone.as_deref().unwrap_or_default())
            .or_default()
            .push(lb);
    }
    ClusterLoadAssignment {
        cluster_name: names::outbound_cluster(port.port, subset, &svc.hostname()),
        endpoints: by_zone
            .into_iter()
            .map(|(zone, lb_endpoints)| LocalityLbEndpoints {
                locality: (!zone.is_empty()).then(|| Locality {
                    zone: zone.to_string(),
                    ..Default::default()
                }),
                lb_endpoints,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
