//! Istio's resource names, which users' dashboards and habits depend on.

use crate::model::Service;

pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Inbound traffic to ports no service declares, forwarded to the application.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The source address Envoy uses for inbound passthrough, which the capture
/// rules exempt so the forwarded connection is not captured again.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";

/// `outbound|PORT|SUBSET|HOST`; the subset is empty until DestinationRules.
pub fn outbound_cluster(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// The EDS name of a cluster's load assignment relative to a proxy
/// locality (`CLUSTER~region/zone/subzone[~...]`, see `locality::Variant`).
/// `~` appears in no cluster name, host or locality label value, so the
/// name cannot collide with a plain cluster name.
pub fn eds_variant(cluster: &str, variant: &super::locality::Variant) -> String {
    format!("{cluster}~{variant}")
}

/// `inbound|PORT||`, named by the port the application listens on.
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}

/// Route configurations are named by port, as Istio names them.
pub fn route_config(port: u16) -> String {
    port.to_string()
}

/// A listener at an address and port, Istio's `BIND_PORT`: outbound
/// (`0.0.0.0_PORT` under capture, `127.0.0.1_PORT` bound on loopback) or
/// an inbound one that binds its port.
pub fn bound_listener(bind: std::net::IpAddr, port: u16) -> String {
    format!("{bind}_{port}")
}

/// Every name a client may use for a service, as Istio's virtual hosts answer:
/// the FQDN, `name.ns.svc`, `name.ns`, the bare name (only from the same
/// namespace, where it resolves), and the cluster IP.
pub fn host_aliases(svc: &Service, client_namespace: &str) -> Vec<String> {
    let key = &svc.key;
    let mut names = vec![svc.hostname()];
    // Kubernetes DNS search paths make these resolve to a Service; a
    // ServiceEntry host is only ever its own name.
    if !svc.from_service_entry {
        names.push(format!("{}.{}.svc", key.name, key.namespace));
        names.push(format!("{}.{}", key.name, key.namespace));
        if key.namespace == client_namespace {
            names.push(key.name.clone());
        }
    }
    if let Some(vip) = svc.vip {
        names.push(vip.to_string());
    }
    names
}
