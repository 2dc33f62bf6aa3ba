//! Sidecar `egress` listeners with a `port`, shown by real requests from a
//! real client pod through its real Envoy (the pods harness, REDIRECT
//! capture): a `captureMode: NONE` listener Envoy binds on 127.0.0.1, which
//! the application dials explicitly, carrying only its own hosts; and port
//! scoping, where a host imported by a port listener alone is reachable on
//! that port and on no other, while the catch-all serves every other port.
//!
//! Needs root; see e2e/support/pods.rs.

use std::time::Duration;

use crate::capture::{assert_all_acked, cstat, get_json};
use crate::support::pods::Pod;
use crate::support::*;

const NS: &str = "demo";
/// How long a config edit may take to change what a request gets.
const CONVERGE: Duration = Duration::from_secs(20);

const SVC_A: &str = "svc-a.demo.svc.cluster.local";
const SVC_B: &str = "svc-b.demo.svc.cluster.local";

/// Polls `curl ARGS` from `pod` until `done` holds for (status, body);
/// panics with the last answer and the client's context otherwise.
fn wait_curl(pod: &Pod, args: &[&str], why: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let mut last = (0, String::new());
    let got = poll(CONVERGE, || {
        let mut all = vec!["--max-time", "5"];
        all.extend_from_slice(args);
        last = pod.curl(&all);
        done(last.0, &last.1).then(|| last.1.clone())
    });
    got.unwrap_or_else(|| {
        panic!(
            "{why}: curl {args:?} from {}; last answer: {} {}{}",
            pod.name(),
            last.0,
            last.1,
            pod.context()
        )
    })
}

#[test]
fn sidecar_egress_port_listener_binds_loopback_and_scopes_its_hosts_to_its_port() {
    let net = crate::support::pods::Network::new("sidecar_egress_port");
    // Both services answer on 8080 and 9000 (both to the pod's 8080).
    for svc in ["svc-a", "svc-b"] {
        net.add_service(svc, NS, &[("http", 8080, 8080), ("http-alt", 9000, 8080)]);
    }
    let a = net.pod("svc-a-0", NS, &[("app", "svc-a")]);
    let b = net.pod("svc-b-0", NS, &[("app", "svc-b")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    let rudder = net.rudder();
    a.serve_http(8080, &[]);
    b.serve_http(8080, &[]);
    a.start_sidecar(&rudder);
    b.start_sidecar(&rudder);
    client.start_sidecar(&rudder);

    let host_a = format!("host: {SVC_A}");
    let loopback = "http://127.0.0.1:9000/egress";
    // No Sidecar: svc-a answers on its port 8080, and nothing listens on
    // the client's 127.0.0.1:9000.
    let body = get_json(&client, "http://svc-a.demo:8080/before");
    assert_eq!(body["backend"], "svc-a-0", "{body}");
    let (status, answer) = client.curl(&["--max-time", "5", "-H", &host_a, loopback]);
    assert_eq!(
        status, 0,
        "nothing may listen on 127.0.0.1:9000 yet: {answer}"
    );

    net.write_config(
        "sidecar.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
             metadata: {{name: client, namespace: {NS}}}\nspec:\n  \
             workloadSelector: {{labels: {{app: client}}}}\n  \
             outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\n  egress:\n  \
             - port: {{number: 9000, protocol: HTTP, name: http-egress}}\n    \
             captureMode: NONE\n    hosts: [./{SVC_A}]\n  \
             - hosts: [./{SVC_B}]\n"
        ),
    );

    // (a) The application dials 127.0.0.1:9000 with svc-a's Host: Envoy's
    // bound listener routes it to svc-a's backend, on svc-a's port 9000.
    let answer = wait_curl(
        &client,
        &["-H", &host_a, loopback],
        "bound listener",
        |s, _| s == 200,
    );
    let body: serde_json::Value = serde_json::from_str(&answer).expect("echo JSON");
    assert_eq!(body["backend"], "svc-a-0", "{body}");
    assert_eq!(body["path"], "/egress", "{body}");
    client.wait_stat_at_least("listener.127.0.0.1_9000.downstream_cx_total", 1);
    client.wait_stat_at_least(
        &cstat(&format!("outbound|9000||{SVC_A}"), "upstream_rq_200"),
        1,
    );
    // The listener carries its own hosts only: svc-b has a port 9000 too,
    // but no virtual host there (Envoy answers 404, no route).
    let (status, answer) =
        client.curl(&["--max-time", "5", "-H", &format!("host: {SVC_B}"), loopback]);
    assert_eq!(
        status, 404,
        "svc-b must not be served on the port listener: {answer}"
    );

    // (b) svc-a is imported on 9000 alone: its 8080 is now an unknown
    // destination (REGISTRY_ONLY: Envoy's block_all answers 502), and the
    // proxy has no cluster for it.
    wait_curl(
        &client,
        &["http://svc-a.demo:8080/after"],
        "svc-a on 8080 after the Sidecar",
        |s, _| s == 502,
    );
    let clusters = client.envoy_admin("/clusters");
    assert!(
        !clusters.contains(&format!("outbound|8080||{SVC_A}")),
        "svc-a:8080 must have no cluster:\n{clusters}"
    );
    // The catch-all serves svc-b on every other port: 8080 reaches it...
    let body = get_json(&client, "http://svc-b.demo:8080/catch-all");
    assert_eq!(body["backend"], "svc-b-0", "{body}");
    // ...but 9000 belongs to the port listener, which does not carry svc-b:
    // through capture nothing serves svc-b:9000.
    let (status, answer) = client.curl(&["--max-time", "5", "http://svc-b.demo:9000/owned"]);
    assert_ne!(status, 200, "svc-b:9000 must not be served: {answer}");
    let listeners = client.envoy_admin("/listeners");
    assert!(
        listeners.contains("127.0.0.1_9000::127.0.0.1:9000") && !listeners.contains("0.0.0.0_9000"),
        "port 9000 must have the bound listener only:\n{listeners}"
    );
    assert_all_acked(&rudder);
}

#[test]
fn sidecar_egress_bound_tls_port_routes_by_sni() {
    // A listener the application dials has no destination address to tell
    // TLS services apart: the ClientHello's SNI does, as Istio matches it
    // (the same builder serves every outbound port of a proxy without
    // capture, INTERCEPTION_MODE=NONE).
    let net = crate::support::pods::Network::new("sidecar_egress_sni");
    net.add_service("tls-a", NS, &[("tls", 9443, 8443)]);
    net.add_service("tls-b", NS, &[("https", 9443, 8443)]);
    let pod_a = net.pod("tls-a-0", NS, &[("app", "tls-a")]);
    let pod_b = net.pod("tls-b-0", NS, &[("app", "tls-b")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    net.write_config(
        "sidecar.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
             metadata: {{name: client, namespace: {NS}}}\nspec:\n  \
             workloadSelector: {{labels: {{app: client}}}}\n  egress:\n  \
             - port: {{number: 9443, protocol: TLS}}\n    captureMode: NONE\n    \
             hosts: [./tls-a.demo.svc.cluster.local, ./tls-b.demo.svc.cluster.local]\n"
        ),
    );
    let rudder = net.rudder();
    // Each backend terminates TLS with a certificate for its own name only,
    // so verification fails if a name reaches the other one.
    let (_certs, ca) = crate::traffic_l4::serve_tls_backends(
        "egress-sni-certs",
        &[
            (&pod_a, "tls-a.demo.svc.cluster.local"),
            (&pod_b, "tls-b.demo.svc.cluster.local"),
        ],
    );
    client.start_sidecar(&rudder);

    // tls-b first: without SNI chains the port would go to its first
    // service by name, tls-a, whatever the client asked for.
    for (host, backend) in [
        ("tls-b.demo.svc.cluster.local", "tls-b-0"),
        ("tls-a.demo.svc.cluster.local", "tls-a-0"),
    ] {
        let resolve = format!("{host}:9443:127.0.0.1");
        let url = format!("https://{host}:9443/sni");
        let answer = wait_curl(
            &client,
            &["--cacert", &ca, "--resolve", &resolve, &url],
            "TLS by SNI on the bound listener",
            |s, _| s == 200,
        );
        let body: serde_json::Value = serde_json::from_str(&answer).expect("echo JSON");
        assert_eq!(body["backend"], backend, "SNI {host}: {body}");
        // Passed through: the backend saw the client's own handshake.
        assert_eq!(body["sni"], host, "{body}");
    }
    client.wait_stat_at_least("listener.127.0.0.1_9443.downstream_cx_total", 2);
    assert_all_acked(&rudder);
}
