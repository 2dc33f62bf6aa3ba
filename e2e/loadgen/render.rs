//! YAML text for the synthetic mesh. Written by hand (format!) rather than
//! through serde: it is faster for 10,000 files and reads like what users write.

use std::fmt::Write;

use crate::mesh::Svc;
use crate::plan::{self, HTTP_PORT, TCP_PORT};

pub fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{istio-injection: enabled}}\n---\n")
}

fn host(s: &Svc) -> String {
    format!("{}.{}.svc.cluster.local", s.name, s.ns)
}

/// The service's ports as (name, number); the extra port is churn's.
fn ports(s: &Svc) -> Vec<(String, u16)> {
    let mut p = vec![("http".to_string(), HTTP_PORT)];
    if s.tcp {
        p.push(("tcp".to_string(), TCP_PORT));
    }
    if let Some(extra) = s.extra_port {
        p.push(("http-extra".to_string(), extra));
    }
    p
}

pub fn service_file(s: &Svc) -> String {
    let mut out = service(s);
    out += &endpoint_slice(s);
    if s.vs || s.vs_change.is_some() {
        out += &virtual_service(s);
    }
    if s.dr {
        out += &destination_rule(s);
    }
    if s.sidecar {
        out += &sidecar(s);
    }
    out
}

fn service(s: &Svc) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {n}\n  namespace: {ns}\n  labels: {{app: {n}}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {n}}}\n  ports:\n",
        n = s.name,
        ns = s.ns,
        vip = s.vip
    );
    for (name, port) in ports(s) {
        let _ = writeln!(
            out,
            "  - {{name: {name}, port: {port}, targetPort: {port}, protocol: TCP}}"
        );
    }
    out + "---\n"
}

fn endpoint_slice(s: &Svc) -> String {
    let mut out = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {slice}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {n}}}\naddressType: IPv4\nports:\n",
        slice = s.slice,
        ns = s.ns,
        n = s.name
    );
    for (name, port) in ports(s) {
        let _ = writeln!(out, "- {{name: {name}, port: {port}, protocol: TCP}}");
    }
    out += "endpoints:\n";
    for (e, (addr, zone)) in s.addrs.iter().zip(&s.zones).enumerate() {
        let _ = write!(
            out,
            "- addresses: [{addr}]\n  conditions: {{ready: true}}\n  zone: {zone}\n  targetRef: {{kind: Pod, name: {n}-{e}, namespace: {ns}}}\n",
            n = s.name,
            ns = s.ns
        );
    }
    out + "---\n"
}

/// A request header no client of the mesh sends; the churn route matches on it.
const CHANGE_HEADER: &str = "x-loadgen-change";

/// The mesh's own routes (`vs`), led by churn's change route (`vs_change`).
/// A service with only a change route gets a VirtualService of its own,
/// with a catch-all route to itself after the change route.
fn virtual_service(s: &Svc) -> String {
    let h = host(s);
    let mut http = String::new();
    if let Some(id) = s.vs_change {
        http += &change_route(&h, id);
    }
    if s.vs {
        http += &api_route(s, &h);
    }
    http +=
        &format!("  - route:\n    - destination: {{host: {h}, port: {{number: {HTTP_PORT}}}}}\n");
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {n}, namespace: {ns}}}\nspec:\n  hosts: [{h}]\n  http:\n{http}---\n",
        n = s.name,
        ns = s.ns
    )
}

/// The route a VirtualService edit adds: its name carries the change id into
/// every proxy's route configuration for HTTP_PORT (every proxy imports every
/// service). It comes first and matches only requests carrying
/// `CHANGE_HEADER: change-<id>`, which no client sends, so all traffic still
/// falls through to the routes after it, exactly as before the edit. A later
/// edit of the same service replaces it (new name, new header value).
fn change_route(h: &str, id: u32) -> String {
    let name = plan::change_route_name(id);
    format!(
        "  - name: {name}\n    match:\n    - headers: {{{CHANGE_HEADER}: {{exact: {name}}}}}\n    route:\n    - destination: {{host: {h}, port: {{number: {HTTP_PORT}}}}}\n"
    )
}

/// The mesh's own first route: /api/ split 90/10, with a timeout and retries.
fn api_route(s: &Svc, h: &str) -> String {
    // Subsets only exist when the DestinationRule defines them.
    let (v1, v2) = if s.dr {
        (", subset: v1", ", subset: v2")
    } else {
        ("", "")
    };
    format!(
        "  - match:\n    - uri: {{prefix: /api/}}\n    route:\n    - destination: {{host: {h}{v1}, port: {{number: {HTTP_PORT}}}}}\n      weight: 90\n    - destination: {{host: {h}{v2}, port: {{number: {HTTP_PORT}}}}}\n      weight: 10\n    timeout: 5s\n    retries: {{attempts: 2, perTryTimeout: 2s, retryOn: \"5xx,reset,connect-failure\"}}\n"
    )
}

fn destination_rule(s: &Svc) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {n}, namespace: {ns}}}\nspec:\n  host: {h}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: 100}}\n      http: {{http1MaxPendingRequests: 64, maxRequestsPerConnection: 100}}\n    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n  - name: v2\n    labels: {{version: v2}}\n---\n",
        n = s.name,
        ns = s.ns,
        h = host(s)
    )
}

fn sidecar(s: &Svc) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {n}, namespace: {ns}}}\nspec:\n  workloadSelector:\n    labels: {{app: {n}}}\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n---\n",
        n = s.name,
        ns = s.ns
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde::Deserialize;

    use crate::mesh::MeshSpec;

    fn spec(seed: u64) -> MeshSpec {
        MeshSpec {
            services: 30,
            endpoints: 4,
            namespaces: 3,
            vs_share: 0.5,
            dr_share: 0.5,
            sidecar_share: 0.5,
            seed,
        }
    }

    #[test]
    fn every_document_is_valid_yaml_of_its_kind() {
        let mut kinds = std::collections::BTreeMap::new();
        for mut s in spec(1).build() {
            s.extra_port = Some(20001);
            for doc in serde_yaml::Deserializer::from_str(&super::service_file(&s)) {
                let v = serde_yaml::Value::deserialize(doc).unwrap();
                if v.is_null() {
                    continue; // after the closing `---`
                }
                let kind = v["kind"].as_str().unwrap().to_string();
                match kind.as_str() {
                    "Service" => {
                        let svc: Service = serde_yaml::from_value(v).unwrap();
                        assert_eq!(
                            svc.spec.unwrap().ports.unwrap().len(),
                            if s.tcp { 3 } else { 2 }
                        );
                    }
                    "EndpointSlice" => {
                        let slice: EndpointSlice = serde_yaml::from_value(v).unwrap();
                        assert_eq!(slice.endpoints.len(), 4);
                    }
                    _ => assert!(v["spec"].is_mapping(), "{kind}"),
                }
                *kinds.entry(kind).or_insert(0) += 1;
            }
        }
        assert_eq!(kinds["Service"], 30);
        assert!(
            kinds["VirtualService"] > 5 && kinds["DestinationRule"] > 5 && kinds["Sidecar"] > 5
        );
    }

    #[test]
    fn the_mesh_is_a_function_of_its_spec() {
        let render = |seed| {
            spec(seed)
                .build()
                .iter()
                .map(super::service_file)
                .collect::<String>()
        };
        assert_eq!(render(1), render(1));
        assert_ne!(render(1), render(2));
    }
}
