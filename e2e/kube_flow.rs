//! Kubernetes as the source, end to end: a real kube-apiserver (with etcd)
//! holds the mesh; `rudder serve --kube` watches it; a real Envoy, configured
//! only by Rudder, sends real requests to real backends (in pods: the API
//! server refuses loopback endpoints). A VirtualService
//! edited through the API moves the traffic; restarting Rudder loses nothing
//! (restarting the API server: kube_restart.rs).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::kube::KubeApi;
use crate::support::pods::{Network, Pod};
use crate::support::*;

pub(crate) const NS: &str = "demo";
const SETTLE: Duration = Duration::from_secs(30);
/// Where the backends listen, in their pods.
pub(crate) const BACKEND_PORT: u16 = 9080;
const NODE: &str = "sidecar~127.0.0.5~client-0.demo~demo.svc.cluster.local";

pub(crate) fn ns_path(kind_plural: &str) -> String {
    match kind_plural {
        "services" | "pods" => format!("/api/v1/namespaces/{NS}/{kind_plural}"),
        "endpointslices" => format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
        other => format!("/apis/networking.istio.io/v1/namespaces/{NS}/{other}"),
    }
}

/// The mesh, as a user would `kubectl apply` it: Service `web` on
/// `svc_port`, two pods (v1, v2) whose endpoints are loopback backends,
/// subsets by version, and a VirtualService sending everything to `subset`.
fn apply_mesh(kube: &KubeApi, svc_port: u16, backend_port: u16, ips: &[Ipv4Addr; 2]) {
    kube.apply(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    kube.apply(
        &ns_path("services"),
        &service("web", svc_port, backend_port),
    );
    let pods = [("web-v1", ips[0]), ("web-v2", ips[1])];
    for (i, (name, _)) in pods.iter().enumerate() {
        kube.apply(&ns_path("pods"), &pod(name, &format!("v{}", i + 1)));
    }
    kube.apply(
        &ns_path("endpointslices"),
        &endpoint_slice("web", backend_port, &pods),
    );
    kube.apply(
        &ns_path("destinationrules"),
        &json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"host": "web", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ]},
        }),
    );
    route_to(kube, "v1");
}

/// Pod `name` of `web` (label `app=web`) at `version`.
pub(crate) fn pod(name: &str, version: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS,
                     "labels": {"app": "web", "version": version}},
        "spec": {"containers": [{"name": "app", "image": "example/web"}]},
    })
}

/// Service `name` in [`NS`], selecting `app=NAME`, on `port` to `target_port`.
pub(crate) fn service(name: &str, port: u16, target_port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": port, "targetPort": target_port}]},
    })
}

/// EndpointSlice `SERVICE-1` of `service`: `pods` (name, IP), ready, on `port`.
pub(crate) fn endpoint_slice(service: &str, port: u16, pods: &[(&str, Ipv4Addr)]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|(pod, ip)| {
            json!({
                "addresses": [ip.to_string()], "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": NS},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": NS,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

pub(crate) fn route_to(kube: &KubeApi, subset: &str) {
    route_web(kube, json!({"host": "web", "subset": subset}));
}

/// VirtualService `web`: every request for host `web` to `destination`.
pub(crate) fn route_web(kube: &KubeApi, destination: Value) {
    kube.apply(
        &ns_path("virtualservices"),
        &json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"hosts": ["web"], "http": [{"route": [{"destination": destination}]}]},
        }),
    );
}

/// Which backends answered `n` requests for `host` through Envoy's
/// listener on `port`. No listener there is an answer too (Envoy may not
/// have it yet, or Rudder may have dropped it), so callers keep polling and
/// fail with their context.
pub(crate) fn answers(host: &str, port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let who = match try_http_get(&format!("http://127.0.0.1:{port}/"), Some(host)) {
            Ok((200, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                v["backend"].as_str().unwrap_or("?").to_string()
            }
            Ok((status, _)) => format!("HTTP {status}"),
            Err(e) => format!("no HTTP answer: {}", e.root_cause()),
        };
        *seen.entry(who).or_default() += 1;
    }
    seen
}

pub(crate) fn wait_only(svc_port: u16, backend: &str, what: &str, context: impl Fn() -> String) {
    wait_only_at(("web", svc_port), SETTLE, backend, what, context);
}

/// Polls until only `backend` answers for (host, port), up to `timeout`;
/// panics with the last answers and `context()` otherwise.
pub(crate) fn wait_only_at(
    (host, port): (&str, u16),
    timeout: Duration,
    backend: &str,
    what: &str,
    context: impl Fn() -> String,
) {
    let mut last = BTreeMap::new();
    let ok = poll(timeout, || {
        last = answers(host, port, 6);
        (last.len() == 1 && last.contains_key(backend)).then_some(())
    });
    assert!(
        ok.is_some(),
        "{what}: expected only {backend} from {host} on port {port} within {timeout:?}, \
         last {last:?}{}",
        context()
    );
}

/// A real API server holding [`apply_mesh`]'s mesh, its backends running.
pub(crate) struct KubeMesh {
    pub kube: KubeApi,
    /// The processes behind `web-v1` and `web-v2`, answering with those
    /// names. Their network lives as long as they do.
    pub v1: Pod,
    pub v2: Pod,
    /// Where Envoy listens for `web`.
    pub svc_port: u16,
}

impl KubeMesh {
    /// The API server refuses loopback endpoint addresses, so the backends
    /// are pods (network namespaces on a bridge this host routes to) on a
    /// network named after `test`.
    pub(crate) fn start(test: &str) -> KubeMesh {
        let kube = KubeApi::start();
        kube.install_crds();
        let net = Network::new(test);
        let (v1, v2) = (net.external_pod("web-v1"), net.external_pod("web-v2"));
        v1.serve_http(BACKEND_PORT, &[]);
        v2.serve_http(BACKEND_PORT, &[]);
        let svc_port = free_port();
        apply_mesh(&kube, svc_port, BACKEND_PORT, &[v1.ip(), v2.ip()]);
        KubeMesh {
            kube,
            v1,
            v2,
            svc_port,
        }
    }
}

/// A loopback Envoy (INTERCEPTION_MODE=NONE) configured by `rudder`, ready.
pub(crate) fn ready_envoy(rudder: &Rudder) -> Envoy {
    let envoy = spawn_envoy(
        NODE,
        rudder.xds_addr,
        false,
        &["--meta", "INTERCEPTION_MODE=NONE"],
    );
    envoy.wait_ready();
    envoy
}

#[test]
fn config_from_the_api_server_drives_real_traffic() {
    let mesh = KubeMesh::start("kube_flow");
    let (kube, svc_port) = (&mesh.kube, mesh.svc_port);
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &[]);
    let envoy = ready_envoy(&rudder);
    let context = || format!("{}{}", rudder.log_tail(30), envoy.log_tail(10));
    wait_only(svc_port, "web-v1", "VirtualService routes to v1", context);

    // An edit through the API moves the traffic.
    route_to(kube, "v2");
    wait_only(svc_port, "web-v2", "after the edit, to v2", context);

    // A restarted Rudder relists everything: the same config, no loss.
    drop(rudder);
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &[]);
    let (_, ready) = poll(SETTLE, || {
        let r = rudder.admin_get("/ready");
        (r.0 == 200).then_some(r)
    })
    .unwrap_or_else(|| panic!("restarted rudder never ready{}", rudder.log_tail(30)));
    let envoy = ready_envoy(&rudder);
    let context = || format!("{ready}{}{}", rudder.log_tail(30), envoy.log_tail(10));
    wait_only(svc_port, "web-v2", "after restarting Rudder", context);
    route_to(kube, "v1");
    wait_only(svc_port, "web-v1", "an edit after the restart", context);
}

/// A Node's topology labels give the Pods on it their locality (the one
/// EDS groups their endpoints under, shown on /debug/endpointz), and a
/// relabelled Node moves them; no `istio-locality` label is needed.
#[test]
fn node_topology_labels_give_endpoints_their_locality() {
    let kube = KubeApi::start();
    kube.install_crds();
    kube.apply(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let node = |zone: &str| {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "labels": {
                "topology.kubernetes.io/region": "region1",
                "topology.kubernetes.io/zone": zone,
                "topology.istio.io/subzone": "rack7",
            }},
        })
    };
    kube.apply("/api/v1/nodes", &node("zone-a"));
    let mut web = pod("web-v1", "v1");
    web["spec"]["nodeName"] = json!("node-1");
    kube.apply(&ns_path("pods"), &web);
    kube.apply(&ns_path("services"), &service("web", 80, 8080));
    // Not a loopback address (the API server refuses those); no traffic here.
    let ip: Ipv4Addr = "10.77.0.10".parse().unwrap();
    kube.apply(
        &ns_path("endpointslices"),
        &endpoint_slice("web", 8080, &[("web-v1", ip)]),
    );
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &[]);
    let cluster = format!("outbound|80||web.{NS}.svc.cluster.local");
    let locality = || {
        let (status, body) = rudder.admin_get("/debug/endpointz");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("endpointz is JSON");
        v["clusters"][&cluster][0]["locality"]
            .as_str()
            .map(str::to_string)
    };
    let wait_for = |want: &str| {
        poll(SETTLE, || {
            (locality().as_deref() == Some(want)).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "endpoint locality never {want}: {:?}{}",
                locality(),
                rudder.log_tail(30)
            )
        })
    };
    wait_for("region1/zone-a/rack7");
    kube.apply("/api/v1/nodes", &node("zone-b"));
    wait_for("region1/zone-b/rack7");
}
