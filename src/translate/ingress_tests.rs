//! Sidecar `ingress` and `inboundConnectionPool`, translated through the
//! real pipeline (YAML, index, translation) and checked on the resources a
//! proxy would get. The golden cases sidecar_ingress*.yaml pin the whole
//! output; these tests state one rule each.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use prost::Message;

use super::golden::{translate_case, Resources};

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: demo, labels: {app: web}}
status: {podIP: 198.18.20.1}
";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
";

/// A Sidecar selecting web-0 with `spec` (YAML indented by two spaces).
fn sidecar(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
{spec}"
    )
}

const INGRESS_9090: &str = "  ingress:
  - port: {number: 9090, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:9091
";

fn translate(interception: &str, docs: &[&str]) -> Resources {
    let header = format!(
        "# proxy: sidecar~198.18.20.1~web-0.demo~demo.svc.cluster.local interception={interception} labels=app=web mtls=true\n"
    );
    let yaml = header + &docs.join("---\n");
    translate_case("ingress_test", &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .1
}

fn listener<'a>(res: &'a Resources, name: &str) -> Option<&'a Listener> {
    res.listeners.iter().find(|l| l.name == name)
}

fn cluster<'a>(res: &'a Resources, name: &str) -> Option<&'a Cluster> {
    res.clusters.iter().find(|c| c.name == name)
}

/// The destination ports `virtualInbound` has chains for.
fn captured_ports(res: &Resources) -> Vec<u32> {
    let inbound = listener(res, "virtualInbound").expect("virtualInbound");
    let mut ports: Vec<u32> = inbound
        .filter_chains
        .iter()
        .filter_map(|c| {
            c.filter_chain_match
                .as_ref()?
                .destination_port
                .map(|p| p.value)
        })
        .collect();
    ports.dedup();
    ports
}

/// Does any chain's encoding mention `text` (a file name, say)?
fn mentions(chains: &[FilterChain], text: &str) -> bool {
    chains.iter().any(|c| {
        let bytes = c.encode_to_vec();
        bytes.windows(text.len()).any(|w| w == text.as_bytes())
    })
}

#[test]
fn ingress_listeners_replace_the_service_ports() {
    let plain = translate("REDIRECT", &[POD, SERVICE]);
    assert_eq!(captured_ports(&plain), [8080]);

    let scoped = translate("REDIRECT", &[POD, SERVICE, &sidecar(INGRESS_9090)]);
    assert_eq!(captured_ports(&scoped), [9090], "8080 now passes through");
    assert!(cluster(&scoped, "inbound|8080||").is_none());
    let to_app = cluster(&scoped, "inbound|9090||").expect("inbound|9090||");
    let endpoint = format!("{:?}", to_app.load_assignment);
    assert!(
        endpoint.contains("127.0.0.1") && endpoint.contains("9091"),
        "{endpoint}"
    );
}

#[test]
fn ingress_listeners_need_a_service_selecting_the_workload() {
    // Istio: "inbound ports are configured if and only if the workload
    // instance is associated with a service".
    let alone = translate("REDIRECT", &[POD, &sidecar(INGRESS_9090)]);
    assert_eq!(captured_ports(&alone), Vec::<u32>::new());
    assert!(cluster(&alone, "inbound|9090||").is_none());
}

#[test]
fn a_sidecar_without_egress_still_imports_every_service() {
    // Istio gives a Sidecar without `egress` the listener `*/*`.
    let res = translate("REDIRECT", &[POD, SERVICE, &sidecar(INGRESS_9090)]);
    assert!(cluster(&res, "outbound|80||web.demo.svc.cluster.local").is_some());
}

#[test]
fn inbound_connection_pool_covers_service_ports_and_yields_to_a_ports_own() {
    let pool = "  inboundConnectionPool: {tcp: {maxConnections: 7}}\n";
    let res = translate("REDIRECT", &[POD, SERVICE, &sidecar(pool)]);
    let limits = |c: &Cluster| {
        let t = &c
            .circuit_breakers
            .as_ref()
            .expect("circuit breakers")
            .thresholds[0];
        (
            t.max_connections.map(|v| v.value),
            t.max_pending_requests.map(|v| v.value),
        )
    };
    let service_port = cluster(&res, "inbound|8080||").expect("inbound|8080||");
    assert_eq!(limits(service_port), (Some(7), None));

    let own = format!(
        "{pool}{INGRESS_9090}    connectionPool: {{http: {{http1MaxPendingRequests: 3}}}}\n"
    );
    let res = translate("REDIRECT", &[POD, SERVICE, &sidecar(&own)]);
    let port = cluster(&res, "inbound|9090||").expect("inbound|9090||");
    assert_eq!(
        limits(port),
        (None, Some(3)),
        "the port's pool replaces the Sidecar's"
    );
}

#[test]
fn sidecar_tls_is_terminated_only_where_mesh_mtls_is_disabled() {
    let tls = "  ingress:
  - port: {number: 8443, protocol: HTTPS, name: https}
    defaultEndpoint: 127.0.0.1:8080
    tls: {mode: SIMPLE, serverCertificate: /certs/web.pem, privateKey: /certs/web-key.pem}
";
    let disable = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: demo}
spec:
  selector: {matchLabels: {app: web}}
  portLevelMtls: {8443: {mode: DISABLE}}
";
    let chains = |res: &Resources| {
        listener(res, "virtualInbound")
            .unwrap()
            .filter_chains
            .clone()
    };

    let permissive = translate("REDIRECT", &[POD, SERVICE, &sidecar(tls)]);
    assert!(
        !mentions(&chains(&permissive), "/certs/web.pem"),
        "mesh mTLS owns the port: the Sidecar's tls is ignored"
    );

    let disabled = translate("REDIRECT", &[POD, SERVICE, &sidecar(tls), disable]);
    let chains = chains(&disabled);
    let terminating: Vec<&FilterChain> = chains
        .iter()
        .filter(|c| mentions(std::slice::from_ref(*c), "/certs/web.pem"))
        .collect();
    assert_eq!(terminating.len(), 1, "one chain terminates TLS");
    let m = terminating[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(m.transport_protocol, "tls");
    // Plaintext to the TLS port is closed, not passed to the application.
    let plaintext = chains
        .iter()
        .find(|c| {
            let m = c.filter_chain_match.as_ref().unwrap();
            m.destination_port.map(|p| p.value) == Some(8443) && m.transport_protocol.is_empty()
        })
        .expect("a plaintext chain for 8443");
    assert!(mentions(
        std::slice::from_ref(plaintext),
        "BlackHoleCluster"
    ));
}

#[test]
fn ports_without_capture_get_listeners_of_their_own() {
    let none = translate("NONE", &[POD, SERVICE, &sidecar(INGRESS_9090)]);
    let bound = listener(&none, "0.0.0.0_9090").expect("a listener bound at 0.0.0.0:9090");
    assert!(
        !bound
            .listener_filters
            .iter()
            .any(|f| f.name.contains("original_dst")),
        "not captured: no original destination to restore"
    );
    assert!(listener(&none, "virtualInbound").is_none());

    let direct = format!("{INGRESS_9090}    captureMode: NONE\n");
    let mixed = translate("REDIRECT", &[POD, SERVICE, &sidecar(&direct)]);
    assert!(listener(&mixed, "0.0.0.0_9090").is_some());
    assert_eq!(captured_ports(&mixed), Vec::<u32>::new());
}

#[test]
fn only_an_instance_ip_endpoint_makes_a_shape_per_pod() {
    use crate::model::Proxy;
    use crate::translate::ProxyShape;
    let second_pod = "apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: demo, labels: {app: web}}
status: {podIP: 198.18.20.2}
";
    let shapes = |ingress: &str| {
        let docs = [POD, second_pod, SERVICE, &sidecar(ingress)];
        let header = "# proxy: sidecar~198.18.20.1~web-0.demo~demo.svc.cluster.local interception=REDIRECT labels=app=web\n";
        let (snap, _) = translate_case("shape_test", &(header.to_string() + &docs.join("---\n")))
            .unwrap_or_else(|e| panic!("{e}"));
        let shape = |node: &str| {
            let mut proxy = Proxy::from_node_id(node).unwrap();
            proxy.labels = [("app".to_string(), "web".to_string())].into();
            ProxyShape::of(&snap, &proxy)
        };
        (
            shape("sidecar~198.18.20.1~web-0.demo~demo.svc.cluster.local"),
            shape("sidecar~198.18.20.2~web-1.demo~demo.svc.cluster.local"),
        )
    };
    let (a, b) = shapes(INGRESS_9090);
    assert_eq!(
        a, b,
        "loopback endpoints: one shape, one config for both pods"
    );
    assert_eq!(a.instance_ip, None);

    let (a, b) = shapes(
        "  ingress:\n  - port: {number: 9090, protocol: TCP}\n    defaultEndpoint: 0.0.0.0:9091\n",
    );
    assert_ne!(a, b, "each pod forwards to its own address");
    assert_eq!(a.instance_ip, Some("198.18.20.1".parse().unwrap()));
}
