//! What a simulated proxy needs from xDS resources: decode them as Envoy would
//! (a resource that does not decode is a NACK), and pull out the names that
//! drive the next subscriptions plus the change ids a resource carries.

use std::net::Ipv4Addr;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::plan;

/// The four resource types a sidecar subscribes to over ADS, in Envoy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Cds = 0,
    Eds = 1,
    Lds = 2,
    Rds = 3,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Cds, Kind::Eds, Kind::Lds, Kind::Rds];

    pub fn url(self) -> &'static str {
        match self {
            Kind::Cds => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Eds => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Kind::Lds => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Rds => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    pub fn from_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.url() == url)
    }

    pub fn short(self) -> &'static str {
        ["cds", "eds", "lds", "rds"][self as usize]
    }

    /// Listeners and clusters are subscribed by wildcard; the others by name.
    pub fn is_wildcard(self) -> bool {
        matches!(self, Kind::Cds | Kind::Lds)
    }
}

const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// What one decoded resource tells the proxy.
#[derive(Debug, Default)]
pub struct Facts {
    pub name: String,
    /// CDS: the EDS resource name to subscribe to, for EDS clusters.
    pub eds: Option<String>,
    /// LDS: route configuration names the listener's HTTP managers fetch by RDS.
    pub rds: Vec<String>,
    /// Change ids visible in this resource (see `plan`).
    pub change_ids: Vec<u32>,
}

/// Decodes one resource of `kind`. The error is the NACK's message.
pub fn decode(kind: Kind, any: &Any) -> Result<Facts, String> {
    if any.type_url != kind.url() {
        return Err(format!(
            "resource of type {:?} in a {} response",
            any.type_url,
            kind.short()
        ));
    }
    let bytes = any.value.as_slice();
    let bad = |e: prost::DecodeError| format!("cannot decode {}: {e}", kind.short());
    let facts = match kind {
        Kind::Cds => cluster_facts(Cluster::decode(bytes).map_err(bad)?),
        Kind::Eds => endpoint_facts(ClusterLoadAssignment::decode(bytes).map_err(bad)?),
        Kind::Lds => listener_facts(Listener::decode(bytes).map_err(bad)?)?,
        Kind::Rds => route_facts(RouteConfiguration::decode(bytes).map_err(bad)?),
    };
    if facts.name.is_empty() {
        return Err(format!("{} resource without a name", kind.short()));
    }
    Ok(facts)
}

/// The port of an Istio cluster name, `outbound|PORT|SUBSET|HOST`.
fn cluster_port(name: &str) -> Option<u32> {
    name.split('|').nth(1)?.parse().ok()
}

/// The HOST of `outbound|PORT|SUBSET|HOST` (also the EDS service name).
pub fn cluster_host(name: &str) -> Option<&str> {
    let host = name.split('|').nth(3)?;
    (!host.is_empty()).then_some(host)
}

fn cluster_facts(c: Cluster) -> Facts {
    let is_eds = matches!(c.cluster_discovery_type, Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32);
    let eds = is_eds.then(|| {
        c.eds_cluster_config
            .as_ref()
            .map(|e| e.service_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| c.name.clone())
    });
    let change_ids = cluster_port(&c.name)
        .and_then(plan::change_id_of_port)
        .into_iter()
        .collect();
    Facts {
        name: c.name,
        eds,
        rds: Vec::new(),
        change_ids,
    }
}

fn endpoint_facts(cla: ClusterLoadAssignment) -> Facts {
    let mut change_ids: Vec<u32> = cluster_port(&cla.cluster_name)
        .and_then(plan::change_id_of_port)
        .into_iter()
        .collect();
    for lb in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
        let Some(HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
            continue;
        };
        let Some(AddressKind::SocketAddress(sa)) =
            ep.address.as_ref().and_then(|a| a.address.as_ref())
        else {
            continue;
        };
        if let Some(id) = sa
            .address
            .parse::<Ipv4Addr>()
            .ok()
            .and_then(plan::change_id_of_address)
        {
            change_ids.push(id);
        }
    }
    Facts {
        name: cla.cluster_name,
        change_ids,
        ..Facts::default()
    }
}

fn listener_facts(l: Listener) -> Result<Facts, String> {
    let mut rds = Vec::new();
    for chain in l
        .filter_chains
        .iter()
        .chain(l.default_filter_chain.as_ref())
    {
        chain_rds(chain, &mut rds).map_err(|e| format!("listener {}: {e}", l.name))?;
    }
    rds.sort();
    rds.dedup();
    // Istio names port listeners ADDRESS_PORT (0.0.0.0_8080, 127.0.0.1_8080).
    let port = l.name.rsplit_once('_').and_then(|(_, p)| p.parse().ok());
    Ok(Facts {
        change_ids: port.and_then(plan::change_id_of_port).into_iter().collect(),
        name: l.name,
        eds: None,
        rds,
    })
}

/// Envoy decodes each HTTP connection manager's typed_config; so do we.
fn chain_rds(chain: &FilterChain, out: &mut Vec<String>) -> Result<(), String> {
    for f in &chain.filters {
        let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
            continue;
        };
        if f.name != HCM_FILTER && any.type_url != HCM_TYPE {
            continue;
        }
        let hcm = HttpConnectionManager::decode(any.value.as_slice())
            .map_err(|e| format!("cannot decode filter {}: {e}", f.name))?;
        if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            if rds.route_config_name.is_empty() {
                return Err(format!("filter {}: rds without route_config_name", f.name));
            }
            out.push(rds.route_config_name);
        }
    }
    Ok(())
}

/// A route configuration carries a service edit in its own name (the new
/// port) and VirtualService edits in its routes' names (`change-<id>`).
fn route_facts(r: RouteConfiguration) -> Facts {
    let port_change = r.name.parse().ok().and_then(plan::change_id_of_port);
    let route_changes = r
        .virtual_hosts
        .iter()
        .flat_map(|vh| &vh.routes)
        .filter_map(|route| plan::change_id_of_route_name(&route.name));
    Facts {
        change_ids: port_change.into_iter().chain(route_changes).collect(),
        name: r.name,
        ..Facts::default()
    }
}

/// A cheap content fingerprint, to notice resources re-sent unchanged.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::EdsClusterConfig;
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
    use envoy_types::pb::envoy::config::endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints};
    use envoy_types::pb::envoy::config::listener::v3::Filter;
    use envoy_types::pb::envoy::config::route::v3::{Route, VirtualHost};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds;
    use envoy_types::util::pack_any;

    #[test]
    fn clusters_name_their_eds_resource_and_change_port() {
        let c = Cluster {
            name: format!(
                "outbound|{}||web.demo.svc.cluster.local",
                plan::change_port(5)
            ),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: "eds-name".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = decode(Kind::Cds, &pack_any(c)).unwrap();
        assert_eq!(f.eds.as_deref(), Some("eds-name"));
        assert_eq!(f.change_ids, vec![5]);
        let passthrough = Cluster {
            name: "PassthroughCluster".into(),
            ..Default::default()
        };
        assert_eq!(decode(Kind::Cds, &pack_any(passthrough)).unwrap().eds, None);
    }

    #[test]
    fn endpoints_reveal_churned_addresses() {
        let ep = |ip: &str| LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: ip.into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let cla = ClusterLoadAssignment {
            cluster_name: "outbound|8080||web.demo.svc.cluster.local".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![ep("198.18.0.9"), ep(&plan::change_address(42).to_string())],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            decode(Kind::Eds, &pack_any(cla)).unwrap().change_ids,
            vec![42]
        );
    }

    #[test]
    fn listeners_name_their_routes() {
        let hcm = HttpConnectionManager {
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                route_config_name: "8080".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let l = Listener {
            name: "0.0.0.0_8080".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: HCM_FILTER.into(),
                    config_type: Some(ConfigType::TypedConfig(pack_any(hcm))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            decode(Kind::Lds, &pack_any(l)).unwrap().rds,
            vec!["8080".to_string()]
        );
    }

    #[test]
    fn route_configurations_reveal_change_routes_and_ports() {
        let route = |name: String| Route {
            name,
            ..Default::default()
        };
        let rc = RouteConfiguration {
            name: "8080".into(),
            virtual_hosts: vec![
                VirtualHost {
                    name: "svc-1.ns-1.svc.cluster.local:8080".into(),
                    routes: vec![
                        route(plan::change_route_name(9)),
                        route("svc-1.ns-1#0".into()),
                    ],
                    ..Default::default()
                },
                VirtualHost {
                    name: "svc-2.ns-2.svc.cluster.local:8080".into(),
                    routes: vec![route("default".into())],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            decode(Kind::Rds, &pack_any(rc)).unwrap().change_ids,
            vec![9]
        );
        let edited_port = RouteConfiguration {
            name: plan::change_port(4).to_string(),
            ..Default::default()
        };
        assert_eq!(
            decode(Kind::Rds, &pack_any(edited_port))
                .unwrap()
                .change_ids,
            vec![4]
        );
    }

    #[test]
    fn undecodable_or_mistyped_resources_are_errors() {
        let garbage = Any {
            type_url: Kind::Cds.url().into(),
            value: vec![0xff, 0xff, 0xff],
        };
        assert!(decode(Kind::Cds, &garbage).is_err());
        let route = pack_any(RouteConfiguration {
            name: "80".into(),
            ..Default::default()
        });
        assert!(decode(Kind::Cds, &route)
            .unwrap_err()
            .contains("RouteConfiguration"));
        assert_eq!(Kind::from_url(Kind::Rds.url()), Some(Kind::Rds));
    }
}
