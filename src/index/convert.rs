//! Kubernetes objects to model types. Called only on validated objects, so
//! anything still odd here is skipped rather than reported twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model;

pub fn service(svc: &Service, key: model::ServiceKey) -> model::Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let vip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let name = p.name.unwrap_or_default();
            let target_port = match p.target_port {
                Some(IntOrString::Int(n)) => model::TargetPort::Number(u16::try_from(n).ok()?),
                Some(IntOrString::String(s)) => model::TargetPort::Named(s),
                None => model::TargetPort::Number(port),
            };
            let l4 = p.protocol.as_deref().unwrap_or("TCP");
            let protocol = model::Protocol::detect(p.app_protocol.as_deref(), &name, l4);
            Some(model::ServicePort {
                name,
                port,
                target_port,
                protocol,
            })
        })
        .collect();
    // ExternalName: Envoy resolves the target name itself.
    let resolution = match (spec.type_.as_deref(), spec.external_name) {
        (Some("ExternalName"), Some(host)) => model::Resolution::Dns {
            targets: vec![model::DnsTarget {
                host,
                ports: BTreeMap::new(),
            }],
            round_robin: false,
        },
        _ => model::Resolution::Endpoints,
    };
    model::Service {
        host: key.hostname(),
        key,
        vip,
        ports,
        selector: spec.selector.unwrap_or_default(),
        resolution,
        from_service_entry: false,
        mesh_external: false,
    }
}

fn pod_ref(target: Option<&k8s_openapi::api::core::v1::ObjectReference>) -> Option<String> {
    target
        .filter(|t| t.kind.as_deref() == Some("Pod"))
        .and_then(|t| t.name.clone())
}

/// Endpoints from every slice of one Service, in a stable order.
pub fn endpoints_from_slices<'a>(
    slices: impl Iterator<Item = &'a EndpointSlice>,
) -> model::ServiceEndpoints {
    let mut endpoints = Vec::new();
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue; // Kubernetes itself never routes to FQDN slices.
        }
        let ports: BTreeMap<String, u16> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let n = u16::try_from(p.port?).ok()?;
                Some((p.name.clone().unwrap_or_default(), n))
            })
            .collect();
        for ep in &slice.endpoints {
            let conditions = ep.conditions.clone().unwrap_or_default();
            // Kubernetes: a missing `ready` means ready.
            let ready = conditions.ready.unwrap_or(true);
            for addr in &ep.addresses {
                let Ok(address) = addr.parse() else { continue };
                endpoints.push(model::Endpoint {
                    address,
                    ports: ports.clone(),
                    ready,
                    pod: pod_ref(ep.target_ref.as_ref()),
                    zone: ep.zone.clone(),
                    locality: None,
                    labels: None,
                });
            }
        }
    }
    sort_dedup(endpoints)
}

/// Endpoints from a legacy `v1/Endpoints` object.
pub fn endpoints_from_legacy(eps: &Endpoints) -> model::ServiceEndpoints {
    let mut endpoints = Vec::new();
    for subset in eps.subsets.iter().flatten() {
        let ports: BTreeMap<String, u16> = subset
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    u16::try_from(p.port).ok()?,
                ))
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        for (addr, ready) in ready.chain(not_ready) {
            let Ok(address) = addr.ip.parse() else {
                continue;
            };
            endpoints.push(model::Endpoint {
                address,
                ports: ports.clone(),
                ready,
                pod: pod_ref(addr.target_ref.as_ref()),
                zone: None,
                locality: None,
                labels: None,
            });
        }
    }
    sort_dedup(endpoints)
}

/// Stable order makes translation deterministic; an address listed in two
/// slices (they overlap during rollouts) is served once.
fn sort_dedup(mut endpoints: Vec<model::Endpoint>) -> model::ServiceEndpoints {
    endpoints.sort_by(|a, b| (a.address, &a.ports).cmp(&(b.address, &b.ports)));
    endpoints.dedup_by(|a, b| a.address == b.address && a.ports == b.ports);
    model::ServiceEndpoints { endpoints }
}

/// A WorkloadEntry a Kubernetes Service selects, as one of its endpoints:
/// each Service port reaches the entry's port of the same name, else the
/// Service's numeric `targetPort` (Istio's rule). Entries addressed by a
/// hostname are left out: EDS needs an IP.
pub fn workload_entry_endpoint(
    svc: &model::Service,
    we: &crate::api::networking::workload_entry::WorkloadEntrySpec,
) -> Option<model::Endpoint> {
    let address = we.address.as_deref()?.parse().ok()?;
    let ports = svc
        .ports
        .iter()
        .filter_map(|p| {
            let own = we.ports.get(&p.name).and_then(|n| u16::try_from(*n).ok());
            let target = match p.target_port {
                model::TargetPort::Number(n) => Some(n),
                model::TargetPort::Named(_) => None,
            };
            Some((p.name.clone(), own.or(target)?))
        })
        .collect();
    Some(model::Endpoint {
        address,
        ports,
        ready: true,
        pod: None,
        zone: None,
        locality: super::convert_entry::Selectable::entry_locality(we),
        labels: (!we.labels.is_empty()).then(|| Arc::new(we.labels.clone())),
    })
}

/// `node_locality`: the locality of the Node a Pod runs on, when known.
pub fn workload(
    pod: &Pod,
    key: model::WorkloadKey,
    node_locality: impl Fn(&str) -> Option<model::Locality>,
) -> model::Workload {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    // Istio: the Pod's own `istio-locality` label wins over its Node's.
    let locality = super::convert_entry::Selectable::label_locality(&labels)
        .or_else(|| node.as_deref().and_then(node_locality));
    model::Workload {
        key,
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok()),
        labels,
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_string()),
        node,
        locality,
    }
}

pub fn namespace(ns: &Namespace) -> model::Namespace {
    model::Namespace {
        name: ns.metadata.name.clone().unwrap_or_default(),
        labels: ns.metadata.labels.clone().unwrap_or_default(),
    }
}
