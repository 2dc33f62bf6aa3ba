//! Conflicts between individually valid objects. Kubernetes prevents some of
//! them (cluster IPs are allocated uniquely); a config directory cannot, so
//! Rudder resolves them deterministically (first by namespace/name wins) and
//! says so, rather than dropping anything silently.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{Protocol, Service, ServiceKey};

pub fn find(services: &BTreeMap<ServiceKey, Arc<Service>>) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut vips: BTreeMap<_, &ServiceKey> = BTreeMap::new();
    for svc in services.values() {
        let Some(vip) = svc.vip else { continue };
        match vips.get(&vip) {
            Some(first) => warnings.push(format!(
                "Service {} has clusterIP {vip}, already used by Service {first}: {first} keeps the address in routing",
                svc.key
            )),
            None => {
                vips.insert(vip, &svc.key);
            }
        }
    }
    // Without capture (INTERCEPTION_MODE=NONE) Envoy listens on 127.0.0.1:PORT
    // and cannot tell TCP services on one port apart (TLS ones it tells
    // apart by SNI).
    let mut tcp_by_port: BTreeMap<u16, Vec<&ServiceKey>> = BTreeMap::new();
    let mut http_ports = std::collections::BTreeSet::new();
    for svc in services.values() {
        for p in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            if p.protocol.is_http() {
                http_ports.insert(p.port);
            } else if !matches!(p.protocol, Protocol::Tls | Protocol::Https) {
                tcp_by_port.entry(p.port).or_default().push(&svc.key);
            }
        }
    }
    for (port, keys) in tcp_by_port.iter().filter(|(p, _)| http_ports.contains(*p)) {
        let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        warnings.push(format!(
            "non-HTTP services {} use port {port}, which HTTP services also use: proxies without capture (INTERCEPTION_MODE=NONE) treat that port as HTTP",
            names.join(", ")
        ));
    }
    for (port, keys) in tcp_by_port
        .iter()
        .filter(|(p, k)| k.len() > 1 && !http_ports.contains(*p))
    {
        let others: Vec<String> = keys[1..].iter().map(|k| k.to_string()).collect();
        warnings.push(format!(
            "non-HTTP services {} and {} share port {port}: proxies without capture (INTERCEPTION_MODE=NONE) reach only {} there",
            keys[0],
            others.join(", "),
            keys[0]
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServicePort, TargetPort};

    fn svc(name: &str, vip: &str, port: u16, protocol: Protocol) -> (ServiceKey, Arc<Service>) {
        let key = ServiceKey::new("demo", name);
        let service = Service {
            key: key.clone(),
            vip: Some(vip.parse().unwrap()),
            ports: vec![ServicePort {
                name: "p".into(),
                port,
                target_port: TargetPort::Number(port),
                protocol,
            }],
            selector: Default::default(),
            resolution: crate::model::Resolution::Endpoints,
            from_service_entry: false,
            mesh_external: false,
            host: format!("{name}.demo.svc.cluster.local"),
        };
        (key, Arc::new(service))
    }

    #[test]
    fn reports_shared_cluster_ips_and_loopback_port_clashes() {
        let services = BTreeMap::from([
            svc("a", "198.18.128.1", 80, Protocol::Http),
            svc("b", "198.18.128.1", 81, Protocol::Http),
            svc("c", "198.18.128.2", 5432, Protocol::Tcp),
            svc("d", "198.18.128.3", 5432, Protocol::Unknown),
            svc("e", "198.18.128.4", 80, Protocol::Tcp),
        ]);
        let w = find(&services);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[1].contains("non-HTTP services demo/e use port 80"),
            "{}",
            w[1]
        );
        let w = [w[0].clone(), w[2].clone()];
        assert!(
            w[0].contains(
                "Service demo/b has clusterIP 198.18.128.1, already used by Service demo/a"
            ),
            "{}",
            w[0]
        );
        assert!(
            w[1].contains("demo/c and demo/d share port 5432"),
            "{}",
            w[1]
        );
    }

    #[test]
    fn a_clean_mesh_has_no_warnings() {
        let services = BTreeMap::from([
            svc("a", "198.18.128.1", 80, Protocol::Http),
            svc("b", "198.18.128.2", 80, Protocol::Http),
            // TLS services share a port by SNI, also with HTTP or TCP ones.
            svc("c", "198.18.128.3", 443, Protocol::Tls),
            svc("d", "198.18.128.4", 443, Protocol::Https),
            svc("e", "198.18.128.5", 443, Protocol::Tcp),
            svc("f", "198.18.128.6", 80, Protocol::Tls),
        ]);
        assert!(find(&services).is_empty(), "{:?}", find(&services));
    }
}
