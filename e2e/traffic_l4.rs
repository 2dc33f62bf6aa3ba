//! Layer-4 routing and ServiceEntries, shown by real traffic through real
//! Envoy configured by a real `rudder serve`: VirtualService `tcp` routes
//! (by port, by weight), `tls` routes (by SNI, TLS passed through to
//! backends that terminate it), and ServiceEntry hosts resolved STATIC
//! (inline endpoints, selected WorkloadEntries), DNS and NONE (the original
//! destination).
//!
//! Where loopback suffices, traffic_policy.rs's pattern: a client proxy with
//! INTERCEPTION_MODE=NONE and the test dialling 127.0.0.1:<service port>.
//! SNI chains and original-destination forwarding act on the address a
//! client dialled, which only capture preserves, so those tests use the
//! pods harness (needs root; see e2e/support/pods.rs).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::capture::{assert_all_acked, cstat, curl_json};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::pods::{Network, Pod};
use crate::support::*;
use crate::traffic::spread;
use crate::traffic_policy::{subsets_rule, Mesh, Svc, NS, PROPAGATION};

const REGISTRY_ONLY: &str = "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n";

/// A VirtualService in `demo` for `hosts` (a YAML list body) with `rules`
/// (`tcp:`/`tls:` blocks, indented by two).
fn virtual_service(name: &str, hosts: &str, rules: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  hosts: [{hosts}]\n{rules}"
    )
}

fn service_entry(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{spec}"
    )
}

/// Opens `n` TCP connections to Envoy's listener on `port`, one line each;
/// counts replies by the backend name the line echo puts first (errors
/// under `error ...`).
fn tcp_spread(port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let key = match tcp_line((Ipv4Addr::LOCALHOST, port).into(), "ping") {
            Ok(reply) => match reply.split_once(": ") {
                Some((backend, "ping")) => backend.to_string(),
                _ => format!("reply {reply:?}"),
            },
            Err(e) => format!("error {e}"),
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

fn only(backend: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(backend.to_string(), n)])
}

/// A `db` TCP service (line echo) with Pods db-v1 and db-v2, and their subsets.
fn db() -> Svc {
    Svc::serving(NS, "db", &["v1", "v2"], "tcp", spawn_tcp_echo)
}

#[test]
fn l4_tcp_route_by_port() {
    let mut db = db();
    let admin = db.with_port("tcp-admin");
    // Istio's TCPRoute: the first route whose match applies; `port` is the
    // service port addressed. A destination without a port keeps that port.
    let vs = virtual_service(
        "db",
        "db",
        &format!(
            "  tcp:\n  - match: [{{port: {admin}}}]\n    route: [{{destination: {{host: db, subset: v2}}}}]\n  - route: [{{destination: {{host: db, subset: v1}}}}]\n"
        ),
    );
    let mesh = Mesh::start(&[
        ("db.yaml", db.yaml()),
        ("dr.yaml", subsets_rule(&db, &["v1", "v2"])),
        ("vs.yaml", vs),
    ]);
    // Without the routes each port would spread over both Pods: 20
    // connections all to one of them is chance 2^-19.
    for (port, want) in [(admin, "db-v2"), (db.port, "db-v1")] {
        let seen = tcp_spread(port, 20);
        assert_eq!(
            seen,
            only(want, 20),
            "port {port}: every connection to {want}{}",
            mesh.listener_ctx(port)
        );
    }
    let cluster = |port: u16, subset: &str| {
        cstat(
            &format!("outbound|{port}|{subset}|{}", db.host()),
            "upstream_cx_total",
        )
    };
    for (port, subset) in [(admin, "v2"), (db.port, "v1")] {
        assert_eq!(
            mesh.stat(&cluster(port, subset)),
            20,
            "Envoy's own count for port {port}, subset {subset}{}",
            mesh.listener_ctx(port)
        );
    }
    mesh.assert_no_nack();
}

fn tcp_weights(v1: u32, v2: u32) -> String {
    virtual_service(
        "db",
        "db",
        &format!(
            "  tcp:\n  - route:\n    - {{destination: {{host: db, subset: v1}}, weight: {v1}}}\n    - {{destination: {{host: db, subset: v2}}, weight: {v2}}}\n"
        ),
    )
}

#[test]
fn l4_tcp_route_weighted_split() {
    let db = db();
    let mesh = Mesh::start(&[
        ("db.yaml", db.yaml()),
        ("dr.yaml", subsets_rule(&db, &["v1", "v2"])),
        ("vs.yaml", tcp_weights(80, 20)),
    ]);
    let seen = tcp_spread(db.port, 200);
    eprintln!("tcp 80/20 split over 200 connections: {seen:?}");
    let count = |k: &str| seen.get(k).copied().unwrap_or(0);
    let (v1, v2) = (count("db-v1"), count("db-v2"));
    // Binomial(200, 0.2): 20..=60 is about 3.5 standard deviations either side.
    assert!(
        v1 + v2 == 200 && v1 > 0 && (20..=60).contains(&v2),
        "80/20 split: {seen:?}{}",
        mesh.listener_ctx(db.port)
    );

    // The split lives in the listener's tcp_proxy: an edit is an LDS push,
    // and new connections take the new listener once Envoy has it.
    mesh.write("vs.yaml", &tcp_weights(0, 100));
    let moved = poll(PROPAGATION, || {
        (tcp_spread(db.port, 10) == only("db-v2", 10)).then_some(())
    });
    mesh.assert_no_nack();
    assert!(
        moved.is_some(),
        "0/100 never sent everything to v2 within {PROPAGATION:?}{}",
        mesh.listener_ctx(db.port)
    );
    assert_eq!(
        tcp_spread(db.port, 50),
        only("db-v2", 50),
        "0/100: all to v2{}",
        mesh.listener_ctx(db.port)
    );
}

/// A self-signed certificate for `host` and its key, written to `dir`:
/// (cert path, key path, cert PEM).
fn certificate(dir: &Path, host: &str) -> (String, String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()])
        .unwrap_or_else(|e| panic!("a certificate for {host}: {e}"));
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let cert_path = dir.join(format!("{host}.pem"));
    let key_path = dir.join(format!("{host}-key.pem"));
    std::fs::write(&cert_path, &cert_pem).expect("writing the certificate");
    std::fs::write(&key_path, key_pem).expect("writing the key");
    let path = |p: &Path| p.display().to_string();
    (path(&cert_path), path(&key_path), cert_pem)
}

/// Each pod serves HTTPS on 8443 with a self-signed certificate for its
/// host only, so a client verifying against the returned CA bundle fails
/// if a name reaches the wrong backend. The directory holds the files:
/// keep it while the backends and the client run.
pub(crate) fn serve_tls_backends(name: &str, backends: &[(&Pod, &str)]) -> (TempDir, String) {
    let certs = workdir(name);
    let mut bundle = String::new();
    for (pod, host) in backends {
        let (cert, key, pem) = certificate(certs.path(), host);
        pod.serve_http(8443, &["--tls-cert", &cert, "--tls-key", &key]);
        bundle.push_str(&pem);
    }
    let ca = certs.path().join("bundle.pem");
    std::fs::write(&ca, bundle).expect("writing the CA bundle");
    let ca = ca.display().to_string();
    (certs, ca)
}

#[test]
fn l4_tls_route_by_sni_passes_tls_through() {
    let net = Network::new("l4_tls_sni");
    // Both backends on the client's TLS port 443, one declared by each
    // protocol name prefix Istio treats as TLS.
    net.add_service("tls-a", NS, &[("tls", 443, 8443)]);
    net.add_service("tls-b", NS, &[("https", 443, 8443)]);
    let pod_a = net.pod("tls-a-0", NS, &[("app", "tls-a")]);
    let pod_b = net.pod("tls-b-0", NS, &[("app", "tls-b")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    // Two names the mesh knows from a ServiceEntry, routed by SNI.
    let entry = service_entry(
        "names",
        "  hosts: [a.example.com, b.example.com]\n  location: MESH_EXTERNAL\n  resolution: NONE\n  ports: [{number: 443, name: tls, protocol: TLS}]\n",
    );
    let vs = virtual_service(
        "names",
        "a.example.com, b.example.com",
        "  tls:\n  - match: [{port: 443, sniHosts: [a.example.com]}]\n    route: [{destination: {host: tls-a, port: {number: 443}}}]\n  - match: [{port: 443, sniHosts: [b.example.com]}]\n    route: [{destination: {host: tls-b, port: {number: 443}}}]\n",
    );
    net.write_config("sni.yaml", &[entry, vs].join("---\n"));
    let rudder = net.rudder();

    // Each backend terminates TLS with a certificate for its own name only,
    // so the client's verification fails if a name reaches the wrong one.
    let (_certs, ca) = serve_tls_backends(
        "l4-sni-certs",
        &[(&pod_a, "a.example.com"), (&pod_b, "b.example.com")],
    );
    client.start_sidecar(&rudder);

    // The client dials an address nobody has (in the VIP range, blackholed
    // on the host): only its sidecar, choosing by SNI, gets it anywhere.
    let nowhere = net.vip_cidr().replace(".0/24", ".250");
    for (host, backend, service) in [
        ("a.example.com", "tls-a-0", "tls-a"),
        ("b.example.com", "tls-b-0", "tls-b"),
    ] {
        let resolve = format!("{host}:443:{nowhere}");
        let url = format!("https://{host}/sni");
        let body = curl_json(&client, &["--cacert", &ca, "--resolve", &resolve, &url]);
        let ctx = || format!("answer {body}{}", client.context());
        assert_eq!(body["backend"], backend, "SNI {host}: {}", ctx());
        // The backend saw the client's own handshake: Envoy passed TLS
        // through rather than terminating it.
        assert_eq!(body["sni"], host, "{}", ctx());
        let cluster = format!("outbound|443||{service}.{NS}.svc.cluster.local");
        client.wait_stat_at_least(&cstat(&cluster, "upstream_cx_total"), 1);
    }
    assert_all_acked(&rudder);
}

/// Echo backends outside the mesh (no Pod, no Service) on their own
/// loopback addresses: (name, address, process).
pub(crate) fn outside(names: &[&str], port: u16) -> Vec<(String, Ipv4Addr, Proc)> {
    names
        .iter()
        .map(|name| {
            let ip = loopback_ip();
            (name.to_string(), ip, spawn_echo(name, ip, port))
        })
        .collect()
}

/// `cluster.outbound|PORT||HOST.STAT`
fn entry_stat(port: u16, host: &str, stat: &str) -> String {
    cstat(&format!("outbound|{port}||{host}"), stat)
}

#[test]
fn l4_service_entry_static_inline_endpoints() {
    let (port, target, other_target) = (free_port(), free_port(), free_port());
    let mut backends = outside(&["legacy-1"], target);
    backends.extend(outside(&["legacy-2"], other_target));
    let (ip1, ip2) = (backends[0].1, backends[1].1);
    let host = "legacy.example.com";
    // The second endpoint overrides the target port by port name.
    let entry = service_entry(
        "legacy",
        &format!(
            "  hosts: [{host}]\n  resolution: STATIC\n  ports: [{{number: {port}, name: http, protocol: HTTP, targetPort: {target}}}]\n  endpoints:\n  - {{address: \"{ip1}\"}}\n  - {{address: \"{ip2}\", ports: {{http: {other_target}}}}}\n"
        ),
    );
    let mesh = Mesh::start(&[("entry.yaml", entry)]);
    // Least request over two idle endpoints: 40 requests all to one is 2^-39.
    // legacy-2 listens on its override port only: any other would fail.
    let seen = spread(port, host, 40);
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["legacy-1", "legacy-2"],
        "both inline endpoints serve {host}, and only they: {seen:?}{}",
        mesh.cluster_ctx(&format!("outbound|{port}||{host}"))
    );
    assert_eq!(mesh.stat(&entry_stat(port, host, "upstream_rq_200")), 40);
    // The entry answers to its host only: another name gets no route.
    let (status, body) = http_get(
        &format!("http://127.0.0.1:{port}/"),
        Some("other.example.com"),
    );
    assert_eq!(status, 404, "{body}{}", mesh.routes_ctx());
    mesh.assert_no_nack();
}

#[test]
fn l4_service_entry_dns_mesh_external_http_host() {
    let (port, target) = (free_port(), free_port());
    // Envoy resolves the endpoint's name itself: `localhost` is 127.0.0.1.
    let _api = spawn_echo("external-api", Ipv4Addr::LOCALHOST, target);
    let host = "api.example.com";
    let entry = |resolution: &str| {
        service_entry(
            "external-api",
            &format!(
                "  hosts: [{host}]\n  location: MESH_EXTERNAL\n  resolution: {resolution}\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  endpoints: [{{address: localhost, ports: {{http: {target}}}}}]\n"
            ),
        )
    };
    let mesh = Mesh::start(&[("entry.yaml", entry("DNS"))]);
    let cluster = format!("outbound|{port}||{host}");
    let cluster_type = || {
        let section = mesh.envoy.config_section("ClustersConfigDump");
        let clusters = section["dynamic_active_clusters"].as_array().cloned();
        let found = clusters
            .unwrap_or_default()
            .into_iter()
            .find(|c| c["cluster"]["name"] == cluster.as_str());
        found.map_or(Value::Null, |c| c["cluster"]["type"].clone())
    };
    for (resolution, envoy_type) in [("DNS", "STRICT_DNS"), ("DNS_ROUND_ROBIN", "LOGICAL_DNS")] {
        mesh.write("entry.yaml", &entry(resolution));
        let converged = poll(PROPAGATION, || (cluster_type() == envoy_type).then_some(()));
        mesh.assert_no_nack();
        assert!(
            converged.is_some(),
            "{resolution}: Envoy's cluster type is {}, not {envoy_type}{}",
            cluster_type(),
            mesh.cluster_ctx(&cluster)
        );
        let url = format!("http://127.0.0.1:{port}/external");
        let mut last = String::new();
        let answered = poll(PROPAGATION, || {
            match http_request("GET", &url, &[("host", host)], None) {
                Ok(resp) if resp.status == 200 => Some(resp),
                other => {
                    last = format!("{other:?}");
                    None
                }
            }
        });
        let body = answered
            .unwrap_or_else(|| {
                panic!(
                    "{resolution}: GET {url} (Host {host}) never answered 200; last {last}{}",
                    mesh.cluster_ctx(&cluster)
                )
            })
            .json();
        assert_eq!(
            (body["backend"].as_str(), body["host"].as_str()),
            (Some("external-api"), Some(host)),
            "{resolution}: {body}"
        );
        assert_eq!(body["listen"], format!("127.0.0.1:{target}"), "{body}");
    }
}

/// Requests to `host` on the client's loopback `port` are answered by
/// exactly the backends `names`: after convergence (EDS may trail), a
/// clean sample of 40; and nothing was NACKed.
pub(crate) fn expect_answering(
    mesh: &Mesh,
    (port, host): (u16, &str),
    cluster: &str,
    names: &[&str],
    why: &str,
) {
    let want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    // Each sample is 40 requests: a smaller one can miss a backend that is
    // still in Envoy's old endpoints by chance ((2/3)^10 ≈ 2 % with three),
    // pass before the change has arrived, and leave the check below to fail.
    poll(PROPAGATION, || {
        (spread(port, host, 40).keys().cloned().collect::<Vec<_>>() == want).then_some(())
    });
    let seen = spread(port, host, 40);
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        want,
        "{why}: {seen:?}{}",
        mesh.cluster_ctx(cluster)
    );
    mesh.assert_no_nack();
}

pub(crate) fn workload_entry(name: &str, app: &str, ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{address: \"{ip}\", labels: {{app: {app}}}}}\n"
    )
}

#[test]
fn l4_service_entry_selects_workload_entries() {
    let (port, target) = (free_port(), free_port());
    let vms = outside(&["vm-1", "vm-2", "vm-3", "other"], target);
    let host = "vm-api.internal";
    let entry = service_entry(
        "vm-api",
        &format!(
            "  hosts: [{host}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: {port}, name: http, protocol: HTTP, targetPort: {target}}}]\n  workloadSelector: {{labels: {{app: vm-api}}}}\n"
        ),
    );
    let mut files = vec![("entry.yaml".to_string(), entry)];
    for (name, ip, _) in &vms[..2] {
        files.push((format!("{name}.yaml"), workload_entry(name, "vm-api", *ip)));
    }
    // Labelled for another app: never selected.
    let (_, other_ip, _) = &vms[3];
    files.push((
        "other.yaml".into(),
        workload_entry("other", "other", *other_ip),
    ));
    let mesh = Mesh::start(&files);
    let cluster = format!("outbound|{port}||{host}");
    let expect = |names: &[&str], why: &str| {
        expect_answering(&mesh, (port, host), &cluster, names, why);
    };
    expect(&["vm-1", "vm-2"], "the selected WorkloadEntries serve");

    // Selection follows the WorkloadEntries: a new one joins, a deleted one leaves.
    let (_, vm3_ip, _) = &vms[2];
    mesh.write("vm-3.yaml", &workload_entry("vm-3", "vm-api", *vm3_ip));
    expect(&["vm-1", "vm-2", "vm-3"], "vm-3 added");
    mesh.remove("vm-1.yaml");
    expect(&["vm-2", "vm-3"], "vm-1 deleted");
}

#[test]
fn l4_service_entry_resolution_none_forwards_to_the_original_destination() {
    let net = Network::new("l4_se_none");
    let client = net.pod("client-0", NS, &[("app", "client")]);
    // Outside the mesh: no Pod object, no Service.
    let external = net.external_pod("external");
    let rudder = net.rudder_with_mesh_config(REGISTRY_ONLY);
    external.serve_http(8000, &[]);
    external.serve_tcp(7000);
    client.start_sidecar(&rudder);
    let ext = external.ip().to_string();
    let host = "external.example.com";
    let resolve = format!("{host}:8000:{ext}");
    let url = format!("http://{host}:8000/none");

    // REGISTRY_ONLY: unknown to the mesh, so blocked.
    let (status, body) = client.curl(&["--resolve", &resolve, &url]);
    assert_ne!(status, 200, "REGISTRY_ONLY let {host} through: {body}");
    let reply = client.tcp_send(&ext, 7000, "hello");
    assert!(reply.is_err(), "REGISTRY_ONLY let TCP through: {reply:?}");

    // Declared with resolution NONE: each connection goes where the client
    // sent it. HTTP is matched by Host, TCP by the entry's address.
    net.write_config(
        "external.yaml",
        &service_entry(
            "external",
            &format!(
                "  hosts: [{host}]\n  addresses: [\"{ext}/32\"]\n  location: MESH_EXTERNAL\n  resolution: NONE\n  ports:\n  - {{number: 8000, name: http, protocol: HTTP}}\n  - {{number: 7000, name: tcp, protocol: TCP}}\n"
            ),
        ),
    );
    let body = curl_json(&client, &["--resolve", &resolve, &url]);
    assert_eq!(body["backend"], "external", "{body}{}", client.context());
    assert_eq!(body["host"], format!("{host}:8000"), "{body}");
    client.wait_stat_at_least(&entry_stat(8000, host, "upstream_rq_200"), 1);

    let reply = poll(PROPAGATION, || client.tcp_send(&ext, 7000, "hello").ok());
    assert_eq!(
        reply.as_deref(),
        Some("external: hello"),
        "TCP to the entry's address{}",
        client.context()
    );
    client.wait_stat_at_least(&entry_stat(7000, host, "upstream_cx_total"), 1);
    assert_all_acked(&rudder);
}

#[test]
fn l4_tcp_route_by_destination_subnets() {
    let net = Network::new("l4_tcp_subnets");
    let db = net.add_service("db", NS, &[("tcp", 7000, 7000)]);
    net.add_service("db-b", NS, &[("tcp", 7000, 7000)]);
    let pod = net.pod("db-0", NS, &[("app", "db")]);
    let pod_b = net.pod("db-b-0", NS, &[("app", "db-b")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    // An address nobody has (in the VIP range, blackholed on the host):
    // only the route on its subnet gets a connection to it anywhere.
    let nowhere = net.vip_cidr().replace(".0/24", ".250");
    let vs = virtual_service(
        "db",
        "db.demo.svc.cluster.local",
        &format!(
            "  tcp:\n  - match: [{{destinationSubnets: [{nowhere}/32]}}]\n    route: [{{destination: {{host: db-b.demo.svc.cluster.local}}}}]\n  - route: [{{destination: {{host: db.demo.svc.cluster.local}}}}]\n"
        ),
    );
    net.write_config("vs.yaml", &vs);
    let rudder = net.rudder();
    pod.serve_tcp(7000);
    pod_b.serve_tcp(7000);
    client.start_sidecar(&rudder);

    for (addr, want) in [(nowhere.as_str(), "db-b-0"), (&db.to_string(), "db-0")] {
        let got = poll(Duration::from_secs(20), || {
            client
                .tcp_send(addr, 7000, "ping")
                .ok()
                .filter(|r| r == &format!("{want}: ping"))
        });
        assert!(
            got.is_some(),
            "{addr}:7000 must reach {want}; last: {:?}{}",
            client.tcp_send(addr, 7000, "ping"),
            client.context()
        );
    }
    let cluster = format!("outbound|7000||db-b.{NS}.svc.cluster.local");
    client.wait_stat_at_least(&cstat(&cluster, "upstream_cx_total"), 1);
    assert_all_acked(&rudder);
}

/// DestinationRule `proxyProtocol`: Envoy opens every upstream connection
/// with a PROXY protocol header naming the client's connection, before the
/// client's own bytes; the line echo answers that header first.
#[test]
fn l4_proxy_protocol_header_precedes_the_stream() {
    let db = db();
    let dr = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: db, namespace: {NS}}}\nspec:\n  host: db\n  trafficPolicy: {{proxyProtocol: {{version: V1}}}}\n"
    );
    let mesh = Mesh::start(&[("db.yaml", db.yaml()), ("dr.yaml", dr)]);
    let reply = tcp_line((Ipv4Addr::LOCALHOST, db.port).into(), "ping")
        .unwrap_or_else(|e| panic!("connecting to db: {e}{}", mesh.listener_ctx(db.port)));
    // "db-vN: PROXY TCP4 <client ip> <dialled ip> <client port> <dialled port>"
    let header = reply.split_once(": ").map(|(_, h)| h).unwrap_or_default();
    assert!(
        header.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 ")
            && header.ends_with(&format!(" {}", db.port)),
        "the backend's first line is the PROXY v1 header, got {reply:?}{}",
        mesh.listener_ctx(db.port)
    );
    mesh.assert_no_nack();
}
