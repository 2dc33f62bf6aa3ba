//! Sidecar `ingress` listeners, shown by real requests from a real client
//! pod through both pods' real Envoys (the pods harness, REDIRECT capture):
//! a port no Service declares reaches an application listening only on
//! loopback, and only through its sidecar; PeerAuthentication and
//! AuthorizationPolicy govern that port as they do Service ports; a
//! `captureMode: NONE` listener, bound by Envoy itself, forwards to the
//! instance IP; the sidecar terminates the port's own TLS where mesh mTLS
//! is disabled; and `connectionPool`/`inboundConnectionPool` shape the
//! inbound clusters.
//!
//! Needs root; see e2e/support/pods.rs.

use std::time::Duration;

use crate::capture::{assert_all_acked, cstat, get_json, peer_ip};
use crate::support::pods::{Network, Pod};
use crate::support::*;

const NS: &str = "demo";
/// How long a config edit may take to change what a request gets.
const CONVERGE: Duration = Duration::from_secs(20);

/// Polls `curl ARGS` from `pod` until the status is `want` and returns the
/// body; panics with the last answer and the server's context otherwise.
fn wait_status(pod: &Pod, args: &[&str], want: u16, server: &Pod, why: &str) -> String {
    let mut last = (0, String::new());
    let got = poll(CONVERGE, || {
        let mut all = vec!["--max-time", "5"];
        all.extend_from_slice(args);
        last = pod.curl(&all);
        (last.0 == want).then(|| last.1.clone())
    });
    got.unwrap_or_else(|| {
        panic!(
            "{why}: curl {args:?} from {} never answered {want}; last: {} {}{}",
            pod.name(),
            last.0,
            last.1,
            server.context()
        )
    })
}

/// A network with Service `app` (HTTP 8080) selecting pod `APP-0`, and a
/// client pod: the parts every test here starts from.
fn server_and_client(test: &str, app: &str) -> (Network, Pod, Pod) {
    let net = Network::new(test);
    net.add_service(app, NS, &[("http", 8080, 8080)]);
    let server = net.pod(&format!("{app}-0"), NS, &[("app", app)]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    (net, server, client)
}

fn sidecar(name: &str, app: &str, ingress: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
         metadata: {{name: {name}, namespace: {NS}}}\nspec:\n  \
         workloadSelector: {{labels: {{app: {app}}}}}\n  ingress:\n{ingress}"
    )
}

#[test]
fn sidecar_ingress_serves_a_loopback_only_app_on_a_port_no_service_declares() {
    // web is in a Service (Istio configures ingress listeners only then),
    // but not on 9090.
    let (net, web, client) = server_and_client("sidecar_ingress_loopback", "web");
    let rudder = net.rudder();
    web.serve_http(8080, &[]);
    // The application is reachable on 127.0.0.1:9091 only: from other pods
    // nothing but the sidecar can reach it.
    web.serve_http_loopback(9091);
    web.start_sidecar(&rudder);
    client.start_sidecar(&rudder);
    let url = |path: &str| format!("http://{}:9090{path}", web.ip());

    // No Sidecar yet: 9090 passes through to the pod IP, where nothing listens.
    let (status, body) = client.curl(&["--max-time", "5", &url("/before")]);
    assert_ne!(status, 200, "nothing may answer on 9090 yet: {body}");

    net.write_config(
        "sidecar.yaml",
        &sidecar(
            "web",
            "web",
            "  - port: {number: 9090, protocol: HTTP, name: http-ingress}\n    \
             defaultEndpoint: 127.0.0.1:9091\n",
        ),
    );
    wait_status(&client, &[&url("/hello")], 200, &web, "ingress listener");
    let body = get_json(&client, &url("/hello"));
    assert_eq!(body["listen"], "127.0.0.1:9091", "{body}");
    assert_eq!(body["path"], "/hello", "{body}");
    // The sidecar dialled the application on loopback.
    assert_eq!(peer_ip(&body), "127.0.0.1", "{body}");
    // It went through the port's own inbound cluster, routed as HTTP.
    web.wait_stat_at_least(&cstat("inbound|9090||", "upstream_rq_200"), 2);

    // AuthorizationPolicy governs the port as any other: DENY /private.
    net.write_config(
        "authz.yaml",
        &format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: deny-private, namespace: {NS}}}\nspec:\n  \
             selector: {{matchLabels: {{app: web}}}}\n  action: DENY\n  \
             rules: [{{to: [{{operation: {{paths: [/private]}}}}]}}]\n"
        ),
    );
    wait_status(
        &client,
        &[&url("/private")],
        403,
        &web,
        "DENY on the ingress port",
    );
    wait_status(
        &client,
        &[&url("/public")],
        200,
        &web,
        "other paths still allowed",
    );

    // PeerAuthentication STRICT: the client reaches a port no Service has
    // through its passthrough, in plaintext, and is now refused.
    net.write_config(
        "peer.yaml",
        &format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: web, namespace: {NS}}}\nspec:\n  \
             selector: {{matchLabels: {{app: web}}}}\n  mtls: {{mode: STRICT}}\n"
        ),
    );
    let refused = poll(CONVERGE, || {
        let (status, _) = client.curl(&["--max-time", "5", &url("/strict")]);
        (status != 200).then_some(status)
    });
    assert!(
        refused.is_some(),
        "STRICT must refuse plaintext on the ingress port{}",
        web.context()
    );
    web.wait_stat_at_least("tcp.inbound_mtls_required.downstream_cx_total", 1);
    assert_all_acked(&rudder);
}

#[test]
fn sidecar_ingress_capture_mode_none_binds_the_port_and_forwards_to_the_instance_ip() {
    let (net, api, client) = server_and_client("sidecar_ingress_bound", "api");
    // Envoy binds 9190 itself; the application listens on 9191.
    net.write_config(
        "sidecar.yaml",
        &sidecar(
            "api",
            "api",
            "  - port: {number: 9190, protocol: HTTP, name: http-direct}\n    \
             captureMode: NONE\n    defaultEndpoint: 0.0.0.0:9191\n",
        ),
    );
    let rudder = net.rudder();
    api.serve_http(9191, &[]);
    // Inbound capture left off 9190, as Istio asks of a NONE listener
    // (traffic.sidecar.istio.io/excludeInboundPorts): connections reach the
    // bound listener directly.
    api.start_sidecar_with(&rudder, &["--exclude-inbound-ports", "9190"]);
    client.start_sidecar(&rudder);

    let url = format!("http://{}:9190/direct", api.ip());
    wait_status(&client, &[&url], 200, &api, "bound ingress listener");
    let body = get_json(&client, &url);
    // The instance IP: the pod's own address, at the endpoint's port.
    assert_eq!(body["listen"], "0.0.0.0:9191", "{body}");
    // From 127.0.0.6, the source capture lets through.
    assert_eq!(peer_ip(&body), "127.0.0.6", "{body}");
    api.wait_stat_at_least("listener.0.0.0.0_9190.downstream_cx_total", 2);
    api.wait_stat_at_least(&cstat("inbound|9190||", "upstream_rq_200"), 2);
    // Not through the capture listener.
    assert_eq!(
        api.stat_or_zero("listener.0.0.0.0_15006.downstream_cx_total"),
        0,
        "{}",
        api.context()
    );
    assert_all_acked(&rudder);
}

/// Writes a self-signed certificate for `ip` and its key where the proxy's
/// user can read them; returns (dir, cert path, key path).
fn server_cert(ip: &str) -> (tempfile::TempDir, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = workdir("ingress-tls");
    let cert = rcgen::generate_simple_self_signed(vec![ip.to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    // Envoy runs as uid 1337: a test key may be world-readable.
    for (path, mode) in [(dir.path(), 0o755), (&cert_path, 0o644), (&key_path, 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let s = |p: &std::path::Path| p.display().to_string();
    (dir, s(&cert_path), s(&key_path))
}

#[test]
fn sidecar_ingress_terminates_tls_where_mesh_mtls_is_disabled() {
    let (net, web, client) = server_and_client("sidecar_ingress_tls", "web");
    let (_certs, cert, key) = server_cert(&web.ip().to_string());
    net.write_config(
        "sidecar.yaml",
        &sidecar(
            "web",
            "web",
            &format!(
                "  - port: {{number: 8443, protocol: HTTPS, name: https}}\n    \
                 defaultEndpoint: 127.0.0.1:8080\n    \
                 tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}\n"
            ),
        ),
    );
    // Istio terminates a Sidecar's own TLS only where mesh mTLS is off.
    net.write_config(
        "peer.yaml",
        &format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: web, namespace: {NS}}}\nspec:\n  \
             selector: {{matchLabels: {{app: web}}}}\n  \
             portLevelMtls: {{8443: {{mode: DISABLE}}}}\n"
        ),
    );
    let rudder = net.rudder();
    web.serve_http_loopback(8080);
    web.start_sidecar(&rudder);
    client.start_sidecar(&rudder);

    // The client trusts only this certificate, issued for the pod's IP:
    // the answer proves the sidecar presented it.
    let https = format!("https://{}:8443/secure", web.ip());
    let answer = wait_status(&client, &["--cacert", &cert, &https], 200, &web, "HTTPS");
    let body: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(body["listen"], "127.0.0.1:8080", "{body}");
    assert_eq!(body["path"], "/secure", "{body}");
    web.wait_stat_at_least(&cstat("inbound|8443||", "upstream_rq_200"), 1);

    // Plaintext to the TLS port is closed, never handed to the application.
    let (status, answer) = client.curl(&[
        "--max-time",
        "5",
        &format!("http://{}:8443/plain", web.ip()),
    ]);
    assert_eq!(status, 0, "plaintext must be refused: {answer}");
    web.wait_stat_at_least("tcp.inbound_tls_required.downstream_cx_total", 1);
    assert_all_acked(&rudder);
}

#[test]
fn sidecar_connection_pools_shape_the_inbound_clusters() {
    let (net, web, client) = server_and_client("sidecar_ingress_pools", "web");
    // inboundConnectionPool alone covers the Service's port: one request
    // per upstream connection to the application.
    let pool = "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
                metadata: {name: web, namespace: demo}\nspec:\n  \
                workloadSelector: {labels: {app: web}}\n  \
                inboundConnectionPool: {http: {maxRequestsPerConnection: 1}}\n";
    net.write_config("sidecar.yaml", pool);
    let rudder = net.rudder();
    web.serve_http(8080, &[]);
    web.serve_http_loopback(9091);
    web.start_sidecar(&rudder);
    client.start_sidecar(&rudder);

    for i in 0..3 {
        get_json(&client, &format!("http://web.demo:8080/pool/{i}"));
    }
    web.wait_stat_at_least(&cstat("inbound|8080||", "upstream_cx_max_requests"), 2);

    // An ingress port's own pool replaces the Sidecar's: idle upstream
    // connections close after 1s, and requests share them.
    net.write_config(
        "sidecar.yaml",
        &format!(
            "{pool}  ingress:\n  - port: {{number: 9090, protocol: HTTP, name: http}}\n    \
             defaultEndpoint: 127.0.0.1:9091\n    \
             connectionPool: {{http: {{idleTimeout: 1s}}}}\n"
        ),
    );
    let url = format!("http://{}:9090/idle", web.ip());
    wait_status(&client, &[&url], 200, &web, "ingress listener");
    get_json(&client, &url);
    web.wait_stat_at_least(&cstat("inbound|9090||", "upstream_cx_idle_timeout"), 1);
    assert_eq!(
        web.stat_or_zero(&cstat("inbound|9090||", "upstream_cx_max_requests")),
        0,
        "the Sidecar-wide limit must not apply to a port with its own pool{}",
        web.context()
    );
    assert_all_acked(&rudder);
}
