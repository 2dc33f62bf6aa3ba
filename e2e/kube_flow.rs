//! Kubernetes as the source, end to end: a real kube-apiserver (with etcd)
//! holds the mesh; `rudder serve --kube` watches it; a real Envoy, configured
//! only by Rudder, sends real requests to real backends (in pods: the API
//! server refuses loopback endpoints). A VirtualService
//! edited through the API moves the traffic; restarting Rudder, and then the
//! API server, loses nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::kube::KubeApi;
use crate::support::pods::Network;
use crate::support::*;

const NS: &str = "demo";
const SETTLE: Duration = Duration::from_secs(30);

fn ns_path(kind_plural: &str) -> String {
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
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": svc_port, "targetPort": backend_port}]},
        }),
    );
    let mut endpoints = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let pod = format!("web-v{}", i + 1);
        kube.apply(
            &ns_path("pods"),
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": NS,
                             "labels": {"app": "web", "version": format!("v{}", i + 1)}},
                "spec": {"containers": [{"name": "app", "image": "example/web"}]},
            }),
        );
        endpoints.push(json!({
            "addresses": [ip.to_string()], "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": NS},
        }));
    }
    kube.apply(
        &ns_path("endpointslices"),
        &json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": backend_port, "protocol": "TCP"}],
            "endpoints": endpoints,
        }),
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

fn route_to(kube: &KubeApi, subset: &str) {
    kube.apply(&ns_path("virtualservices"), &json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web", "subset": subset}}]}]},
    }));
}

/// Which backends answered `n` requests through Envoy.
fn answers(svc_port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (status, body) = http_get(&format!("http://127.0.0.1:{svc_port}/"), Some("web"));
        let who = if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            v["backend"].as_str().unwrap_or("?").to_string()
        } else {
            format!("HTTP {status}")
        };
        *seen.entry(who).or_default() += 1;
    }
    seen
}

fn wait_only(svc_port: u16, backend: &str, what: &str, context: impl Fn() -> String) {
    let mut last = BTreeMap::new();
    let ok = poll(SETTLE, || {
        last = answers(svc_port, 6);
        (last.len() == 1 && last.contains_key(backend)).then_some(())
    });
    assert!(
        ok.is_some(),
        "{what}: expected only {backend}, last {last:?}{}",
        context()
    );
}

#[test]
fn config_from_the_api_server_drives_real_traffic() {
    let kube = KubeApi::start();
    kube.install_crds();
    // The API server refuses loopback endpoint addresses, so the backends
    // are pods (network namespaces on a bridge this host routes to).
    let net = Network::new("kube_flow");
    let backend_port = 9080;
    let (v1, v2) = (net.external_pod("web-v1"), net.external_pod("web-v2"));
    v1.serve_http(backend_port, &[]);
    v2.serve_http(backend_port, &[]);
    let ips = [v1.ip(), v2.ip()];
    let svc_port = free_port();
    apply_mesh(&kube, svc_port, backend_port, &ips);

    let rudder = spawn_rudder_kube(&kube.kubeconfig, &[]);
    let node = "sidecar~127.0.0.5~client-0.demo~demo.svc.cluster.local";
    let envoy = spawn_envoy(
        node,
        rudder.xds_addr,
        false,
        &["--meta", "INTERCEPTION_MODE=NONE"],
    );
    envoy.wait_ready();
    let context = || format!("{}{}", rudder.log_tail(30), envoy.log_tail(10));
    wait_only(svc_port, "web-v1", "VirtualService routes to v1", context);

    // An edit through the API moves the traffic.
    route_to(&kube, "v2");
    wait_only(svc_port, "web-v2", "after the edit, to v2", context);

    // A restarted Rudder relists everything: the same config, no loss.
    drop(rudder);
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &[]);
    let (_, ready) = poll(SETTLE, || {
        let r = rudder.admin_get("/ready");
        (r.0 == 200).then_some(r)
    })
    .unwrap_or_else(|| panic!("restarted rudder never ready{}", rudder.log_tail(30)));
    let envoy = spawn_envoy(
        node,
        rudder.xds_addr,
        false,
        &["--meta", "INTERCEPTION_MODE=NONE"],
    );
    envoy.wait_ready();
    let context = || format!("{ready}{}{}", rudder.log_tail(30), envoy.log_tail(10));
    wait_only(svc_port, "web-v2", "after restarting Rudder", context);
    route_to(&kube, "v1");
    wait_only(svc_port, "web-v1", "an edit after the restart", context);
}
