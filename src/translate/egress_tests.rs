//! Sidecar `egress` listeners with `port`, `bind` and `captureMode`,
//! translated through the real pipeline (YAML, index, translation) and
//! checked on the resources a proxy would get. The golden cases
//! sidecar_egress*.yaml pin the whole output; these tests state one rule
//! each.

use envoy_types::pb::envoy::config::core::v3::{address, Address};
use envoy_types::pb::envoy::config::listener::v3::Listener;

use super::golden::{translate_case, Resources};

const SERVICES: &str = "apiVersion: v1
kind: Service
metadata: {name: a, namespace: demo}
spec:
  clusterIP: 198.18.120.1
  ports: [{name: http, port: 80}, {name: http-alt, port: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: demo}
spec:
  clusterIP: 198.18.120.2
  ports: [{name: http, port: 80}, {name: tcp, port: 9000}]
";

const A: &str = "a.demo.svc.cluster.local";
const B: &str = "b.demo.svc.cluster.local";

/// A Sidecar for the whole namespace with these egress listeners (YAML
/// list items, indented by two spaces).
fn sidecar(egress: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: demo}}
spec:
  egress:
{egress}"
    )
}

fn translate(interception: &str, egress: &str) -> Resources {
    let yaml = format!(
        "# proxy: sidecar~198.18.20.1~client-0.demo~demo.svc.cluster.local interception={interception} labels=app=client\n{SERVICES}---\n{}",
        sidecar(egress)
    );
    translate_case("egress_test", &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .1
}

fn listener<'a>(res: &'a Resources, name: &str) -> Option<&'a Listener> {
    res.listeners.iter().find(|l| l.name == name)
}

fn names(res: &Resources) -> Vec<&str> {
    res.listeners.iter().map(|l| l.name.as_str()).collect()
}

fn bound(l: &Listener) -> bool {
    l.bind_to_port.is_none_or(|b| b.value)
}

fn ip(addr: &Option<Address>) -> String {
    match addr.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => s.address.clone(),
        other => panic!("not a socket address: {other:?}"),
    }
}

/// The virtual host names of route configuration `name`.
fn virtual_hosts(res: &Resources, name: &str) -> Vec<String> {
    let rc = res.routes.iter().find(|r| r.name == name);
    let rc = rc.unwrap_or_else(|| panic!("no route configuration {name}"));
    rc.virtual_hosts.iter().map(|v| v.name.clone()).collect()
}

fn has_cluster(res: &Resources, name: &str) -> bool {
    res.clusters.iter().any(|c| c.name == name)
}

#[test]
fn a_port_listener_carries_its_hosts_on_its_port_only() {
    let res = translate(
        "REDIRECT",
        "  - port: {number: 9000, protocol: HTTP}
    hosts: [./a.demo.svc.cluster.local]
  - hosts: [./b.demo.svc.cluster.local]
",
    );
    // Captured as usual: not bound.
    let l = listener(&res, "0.0.0.0_9000").expect("0.0.0.0_9000");
    assert!(!bound(l));
    // Only a is on it (b's 9000 is not imported there), routed by Host.
    assert_eq!(
        virtual_hosts(&res, "9000"),
        [format!("{A}:9000"), "allow_any".to_string()]
    );
    // a on 80 is not imported; b is, by the catch-all.
    assert_eq!(
        virtual_hosts(&res, "80"),
        [format!("{B}:80"), "allow_any".to_string()]
    );
    assert!(has_cluster(&res, &format!("outbound|9000||{A}")));
    assert!(!has_cluster(&res, &format!("outbound|80||{A}")));
    // The scope is the union: b keeps its 9000 cluster (no listener carries it).
    assert!(has_cluster(&res, &format!("outbound|9000||{B}")));
}

#[test]
fn capture_mode_none_binds_loopback_or_bind() {
    let res = translate(
        "REDIRECT",
        "  - port: {number: 9000, protocol: HTTP}
    captureMode: NONE
    hosts: [./a.demo.svc.cluster.local]
  - port: {number: 80, protocol: HTTP}
    captureMode: NONE
    bind: 127.0.0.9
    hosts: [./b.demo.svc.cluster.local]
",
    );
    let l = listener(&res, "127.0.0.1_9000").expect("127.0.0.1_9000");
    assert!(bound(l));
    assert_eq!(ip(&l.address), "127.0.0.1");
    let l = listener(&res, "127.0.0.9_80").expect("127.0.0.9_80");
    assert!(bound(l));
    // No catch-all: no other outbound port listener at all.
    assert_eq!(
        names(&res),
        [
            "127.0.0.1_9000",
            "127.0.0.9_80",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    // Bound: no catch-all virtual host (the application dialled the listener).
    assert_eq!(virtual_hosts(&res, "9000"), [format!("{A}:9000")]);
}

#[test]
fn a_bind_under_capture_is_a_captured_listener_for_that_address() {
    let res = translate(
        "REDIRECT",
        "  - port: {number: 9000, protocol: TCP}
    bind: 198.18.120.1
    hosts: [./a.demo.svc.cluster.local]
",
    );
    let l = listener(&res, "198.18.120.1_9000").expect("198.18.120.1_9000");
    assert!(
        !bound(l),
        "virtualOutbound hands it connections to that address"
    );
}

#[test]
fn without_capture_every_egress_listener_binds() {
    // captureMode is not read on a proxy without capture (Istio).
    let res = translate(
        "NONE",
        "  - port: {number: 9000, protocol: HTTP}
    captureMode: IPTABLES
    hosts: [./a.demo.svc.cluster.local]
  - bind: 127.0.0.3
    hosts: [./b.demo.svc.cluster.local]
",
    );
    assert_eq!(names(&res), ["127.0.0.1_9000", "127.0.0.3_80"]);
    assert!(res.listeners.iter().all(bound));
}

#[test]
fn listeners_envoy_could_not_serve_are_skipped() {
    let res = translate(
        "REDIRECT",
        "  - port: {number: 15001, protocol: TCP}
    captureMode: NONE
    hosts: [./a.demo.svc.cluster.local]
  - port: {number: 9000, protocol: HTTP}
    captureMode: NONE
    bind: 198.18.99.99
    hosts: [./a.demo.svc.cluster.local]
  - port: {number: 7000, protocol: TCP}
    hosts: [./a.demo.svc.cluster.local]
  - hosts: [./b.demo.svc.cluster.local]
",
    );
    // 15001 is the sidecar's own; 198.18.99.99 is not the pod's; no
    // service has 7000. The skipped 9000 still belongs to its listener.
    assert_eq!(
        names(&res),
        ["0.0.0.0_80", "virtualInbound", "virtualOutbound"]
    );
}
