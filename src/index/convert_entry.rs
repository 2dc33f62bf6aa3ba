//! ServiceEntry (and the WorkloadEntries and Pods it selects) to model
//! services: one per host, sharing ports, addresses and endpoints.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::api::networking::service_entry::{Location, Resolution as ApiResolution};
use crate::api::networking::workload_entry::WorkloadEntrySpec;
use crate::api::networking::ServiceEntry;
use crate::model::routing::resolve_host;
use crate::model::{self, DnsTarget, Protocol, Resolution, ServiceKey, ServicePort, TargetPort};

/// What one ServiceEntry contributes: services and, for those resolved by
/// address, their endpoints.
pub struct Entry {
    pub services: Vec<(model::Service, Option<model::ServiceEndpoints>)>,
}

/// A Pod or WorkloadEntry a ServiceEntry's `workloadSelector` may pick.
pub struct Selectable {
    pub labels: BTreeMap<String, String>,
    pub address: String,
    /// Port overrides by port name (WorkloadEntry `ports`).
    pub ports: BTreeMap<String, u32>,
    /// WorkloadEntry `locality`, or the Pod's `istio-locality` label.
    pub locality: Option<model::Locality>,
}

impl Selectable {
    /// A WorkloadEntry's `locality` (`region/zone/subzone`).
    pub fn entry_locality(spec: &WorkloadEntrySpec) -> Option<model::Locality> {
        spec.locality.as_deref().and_then(model::Locality::parse)
    }

    /// A Pod's `istio-locality` label (`region.zone.subzone`).
    pub fn label_locality(labels: &BTreeMap<String, String>) -> Option<model::Locality> {
        labels
            .get(model::LOCALITY_LABEL)
            .and_then(|l| model::Locality::from_label(l))
    }
}

/// `selected`: WorkloadEntries and Pods in the entry's namespace.
pub fn service_entry(se: &ServiceEntry, selected: &[Selectable]) -> Entry {
    let ns = se
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let spec = &se.spec;
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .filter_map(|p| {
            let port = u16::try_from(p.number).ok()?;
            Some(ServicePort {
                name: p.name.clone(),
                port,
                target_port: TargetPort::Number(
                    p.target_port
                        .and_then(|t| u16::try_from(t).ok())
                        .unwrap_or(port),
                ),
                protocol: Protocol::detect(p.protocol.as_deref(), &p.name, "TCP"),
            })
        })
        .collect();
    // Istio assigns one address per entry; a CIDR can't be a listener match
    // target here, so only a single IP becomes the service's VIP.
    let vip = spec
        .addresses
        .first()
        .and_then(|a| a.trim_end_matches("/32").parse::<IpAddr>().ok());
    let selector = spec
        .workload_selector
        .as_ref()
        .map(|w| w.labels.clone())
        .unwrap_or_default();
    let inline: Vec<&WorkloadEntrySpec> = spec.endpoints.iter().collect();
    let resolution = spec.resolution.unwrap_or(ApiResolution::None);
    let mut services = Vec::new();
    for host in &spec.hosts {
        let host = resolve_host(host, &ns);
        let (resolution, endpoints) = match resolution {
            ApiResolution::Static => (
                Resolution::Endpoints,
                Some(static_endpoints(&inline, &selector, selected)),
            ),
            ApiResolution::Dns | ApiResolution::DnsRoundRobin | ApiResolution::DynamicDns => {
                let mut targets: Vec<DnsTarget> = inline
                    .iter()
                    .filter_map(|e| {
                        Some(DnsTarget {
                            host: e.address.clone()?,
                            ports: port_map(&e.ports),
                        })
                    })
                    .collect();
                if targets.is_empty() {
                    targets.push(DnsTarget {
                        host: host.clone(),
                        ports: BTreeMap::new(),
                    });
                }
                let round_robin = !matches!(resolution, ApiResolution::Dns);
                (
                    Resolution::Dns {
                        targets,
                        round_robin,
                    },
                    None,
                )
            }
            ApiResolution::None => (Resolution::Passthrough, None),
        };
        let service = model::Service {
            // Hosts contain dots, so these keys never collide with Kubernetes
            // Service names (DNS labels).
            key: ServiceKey::new(&ns, &host),
            host,
            vip,
            ports: ports.clone(),
            selector: selector.clone(),
            resolution,
            from_service_entry: true,
            mesh_external: spec.location.unwrap_or_default() == Location::MeshExternal,
        };
        services.push((service, endpoints));
    }
    Entry { services }
}

fn port_map(ports: &BTreeMap<String, u32>) -> BTreeMap<String, u16> {
    ports
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), u16::try_from(*v).ok()?)))
        .collect()
}

fn static_endpoints(
    inline: &[&WorkloadEntrySpec],
    selector: &BTreeMap<String, String>,
    selected: &[Selectable],
) -> model::ServiceEndpoints {
    let mut endpoints = Vec::new();
    let mut push = |address: &str,
                    ports: &BTreeMap<String, u32>,
                    locality,
                    labels: &BTreeMap<String, String>| {
        if let Ok(address) = address.parse() {
            endpoints.push(model::Endpoint {
                address,
                ports: port_map(ports),
                ready: true,
                pod: None,
                zone: None,
                locality,
                labels: (!labels.is_empty()).then(|| Arc::new(labels.clone())),
            });
        }
    };
    for e in inline {
        if let Some(a) = &e.address {
            push(a, &e.ports, Selectable::entry_locality(e), &e.labels);
        }
    }
    if !selector.is_empty() {
        for w in selected {
            if selector.iter().all(|(k, v)| w.labels.get(k) == Some(v)) {
                push(&w.address, &w.ports, w.locality.clone(), &w.labels);
            }
        }
    }
    endpoints.sort_by(|a, b| {
        (a.address, &a.ports, &a.locality, &a.labels).cmp(&(
            b.address,
            &b.ports,
            &b.locality,
            &b.labels,
        ))
    });
    endpoints.dedup();
    model::ServiceEndpoints { endpoints }
}
