//! Issue 2's behaviour claims, each shown by real requests through real Envoy
//! configured by a real `rudder serve`: traffic reaches and spreads over a
//! Service's endpoints, follows endpoint edits, ignores invalid edits, and
//! keeps flowing when Envoy rejects a resource.
//!
//! Proxies run with INTERCEPTION_MODE=NONE: the "application" (this test)
//! calls Envoy at 127.0.0.1:<service port>. Every test picks its own service
//! ports so tests can run in parallel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const CLIENT: &str = "sidecar~127.0.0.5~client-0.demo~demo.svc.cluster.local";

/// A backend set of one Service: echo processes on their own loopback IPs.
struct Backends {
    port: u16,
    procs: Vec<(String, Ipv4Addr, Proc)>,
}

impl Backends {
    fn http(service: &str, count: usize) -> Backends {
        let port = free_port();
        let procs = (0..count)
            .map(|i| {
                let name = format!("{service}-{i}");
                let ip = loopback_ip();
                let proc = spawn_echo(&name, ip, port);
                (name, ip, proc)
            })
            .collect();
        Backends { port, procs }
    }

    fn ips(&self) -> Vec<Ipv4Addr> {
        self.procs.iter().map(|(_, ip, _)| *ip).collect()
    }
}

fn service_yaml(name: &str, port: u32, target: u16, port_name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: {port_name}, port: {port}, targetPort: {target}}}]\n"
    )
}

fn slice_yaml(service: &str, port_name: &str, port: u16, ips: &[Ipv4Addr]) -> String {
    let endpoints: String = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: demo\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: {port}}}]\nendpoints:\n{endpoints}"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    // Write then rename, as editors and kubectl-like tools do, so the watcher
    // never reads a half-written file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

fn client_envoy(rudder: &Rudder, delta: bool) -> Envoy {
    let envoy = spawn_envoy(
        CLIENT,
        rudder.xds_addr,
        delta,
        &["--meta", "INTERCEPTION_MODE=NONE"],
    );
    envoy.wait_ready();
    envoy
}

/// Sends `n` requests for `host` through Envoy's listener on `port`;
/// counts answers per backend name (non-200s under their status code).
pub(crate) fn spread(port: u16, host: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let url = format!("http://127.0.0.1:{port}/spread");
        let key = match try_http_get(&url, Some(host)) {
            Ok((200, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                v["backend"].as_str().unwrap_or("?").to_string()
            }
            Ok((status, _)) => format!("status {status}"),
            Err(e) => format!("error {e}"),
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

fn names(b: &Backends) -> Vec<String> {
    b.procs.iter().map(|(n, _, _)| n.clone()).collect()
}

fn requests_reach_and_spread(delta: bool) {
    let dir = workdir("spread");
    let web = Backends::http("web", 3);
    let svc_port = free_port();
    let store_ip = loopback_ip();
    let store_port = free_port();
    let _store = spawn_tcp_echo("store-0", store_ip, store_port);
    let store_svc_port = free_port();
    let mesh = [
        service_yaml("web", svc_port.into(), web.port, "http"),
        slice_yaml("web", "http", web.port, &web.ips()),
        service_yaml("store", store_svc_port.into(), store_port, "tcp-store"),
        slice_yaml("store", "tcp-store", store_port, &[store_ip]),
    ]
    .join("---\n");
    write(dir.path(), "mesh.yaml", &mesh);
    let rudder = spawn_rudder(dir.path(), &[]);
    let envoy = client_envoy(&rudder, delta);

    // Every Istio host form answers; traffic spreads over all three endpoints.
    for host in [
        "web",
        "web.demo",
        "web.demo.svc",
        "web.demo.svc.cluster.local",
        &format!("web:{svc_port}"),
    ] {
        let seen = spread(svc_port, host, 6);
        assert_eq!(seen.values().sum::<usize>(), 6);
        assert!(
            seen.keys().all(|k| names(&web).contains(k)),
            "host {host}: {seen:?}{}",
            envoy.log_tail(20)
        );
    }
    // Least request picks among idle hosts at random: with 60 requests the
    // chance that one of three endpoints gets none is about 1e-10.
    let seen = spread(svc_port, "web", 60);
    assert_eq!(seen.len(), 3, "all endpoints must serve: {seen:?}");
    assert_eq!(
        seen.values().sum::<usize>(),
        60,
        "every request answered by a backend: {seen:?}"
    );
    // Unknown hosts are not routed anywhere.
    let (status, _) = http_get(&format!("http://127.0.0.1:{svc_port}/"), Some("nope.demo"));
    assert_eq!(status, 404);

    // Plain TCP through Envoy's tcp_proxy.
    let reply =
        tcp_line(([127, 0, 0, 1], store_svc_port).into(), "ping").expect("tcp through envoy");
    assert_eq!(reply.trim(), "store-0: ping");

    // Envoy's own counters prove the requests went through the outbound cluster.
    let cluster =
        format!("cluster.outbound|{svc_port}||web.demo.svc.cluster.local.upstream_rq_200");
    assert!(
        envoy.stat(&cluster).unwrap_or(0) >= 90,
        "{cluster} = {:?}",
        envoy.stat(&cluster)
    );
}

#[test]
fn traffic_reaches_and_spreads_over_endpoints_sotw() {
    requests_reach_and_spread(false);
}

#[test]
fn traffic_reaches_and_spreads_over_endpoints_delta() {
    requests_reach_and_spread(true);
}

fn endpoint_edits_move_traffic(delta: bool) {
    let dir = workdir("edits");
    let web = Backends::http("web", 3);
    let svc_port = free_port();
    let ips = web.ips();
    write(
        dir.path(),
        "svc.yaml",
        &service_yaml("web", svc_port.into(), web.port, "http"),
    );
    write(
        dir.path(),
        "eps.yaml",
        &slice_yaml("web", "http", web.port, &ips[..2]),
    );
    let rudder = spawn_rudder(dir.path(), &[]);
    let envoy = client_envoy(&rudder, delta);
    let all = names(&web);
    assert_eq!(spread(svc_port, "web", 40).len(), 2);

    // Add the third endpoint: it starts taking traffic.
    let started = Instant::now();
    write(
        dir.path(),
        "eps.yaml",
        &slice_yaml("web", "http", web.port, &ips),
    );
    let listed = |ip: Ipv4Addr| {
        envoy
            .admin_get("/clusters")
            .contains(&format!("::{ip}:{}::", web.port))
    };
    wait_until(
        "Envoy to list the new endpoint",
        Duration::from_secs(10),
        || listed(ips[2]),
    );
    eprintln!("endpoint added -> in Envoy after {:?}", started.elapsed());
    assert!(
        spread(svc_port, "web", 60).contains_key(&all[2]),
        "the new endpoint takes traffic"
    );

    // Remove the first: it stops receiving traffic, and nothing fails meanwhile.
    let started = Instant::now();
    write(
        dir.path(),
        "eps.yaml",
        &slice_yaml("web", "http", web.port, &ips[1..]),
    );
    wait_until(
        "Envoy to drop the removed endpoint",
        Duration::from_secs(10),
        || !listed(ips[0]),
    );
    eprintln!(
        "endpoint removed -> gone from Envoy after {:?}",
        started.elapsed()
    );
    let seen = spread(svc_port, "web", 40);
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        all[1..].to_vec(),
        "{seen:?}"
    );
    // Only EDS moved: one CDS and one LDS response in the whole test.
    let (_, syncz) = rudder.admin_get("/debug/syncz");
    let syncz: Value = serde_json::from_str(&syncz).unwrap();
    let pushes = rudder.admin_get("/metrics").1;
    assert!(
        pushes.contains("rudder_xds_pushes_total{type=\"cds\"} 1"),
        "{pushes}\n{syncz}"
    );
    assert!(
        pushes.contains("rudder_xds_pushes_total{type=\"lds\"} 1"),
        "{pushes}"
    );
    drop(envoy);
}

#[test]
fn traffic_follows_endpoint_edits_sotw() {
    endpoint_edits_move_traffic(false);
}

#[test]
fn traffic_follows_endpoint_edits_delta() {
    endpoint_edits_move_traffic(true);
}

#[test]
fn invalid_edit_changes_nothing_and_is_reported() {
    let dir = workdir("invalid");
    let web = Backends::http("web", 2);
    let svc_port = free_port();
    write(
        dir.path(),
        "svc.yaml",
        &service_yaml("web", svc_port.into(), web.port, "http"),
    );
    write(
        dir.path(),
        "eps.yaml",
        &slice_yaml("web", "http", web.port, &web.ips()),
    );
    let rudder = spawn_rudder(dir.path(), &[]);
    let envoy = client_envoy(&rudder, false);
    assert_eq!(spread(svc_port, "web", 40).len(), 2);
    let version_before = rudder.admin_get("/debug/configz").1;
    let version_before: Value = serde_json::from_str(&version_before).unwrap();

    // Break the Service (port out of range) and add a file of garbage.
    write(
        dir.path(),
        "svc.yaml",
        &service_yaml("web", 70000, web.port, "http"),
    );
    write(dir.path(), "junk.yaml", "kind: [unclosed\n");
    let configz = wait_for(
        "both rejections on /debug/configz",
        Duration::from_secs(10),
        || {
            let v: Value = serde_json::from_str(&rudder.admin_get("/debug/configz").1).ok()?;
            (v["rejected"].as_array()?.len() == 2).then_some(v)
        },
    );
    let messages: Vec<&str> = configz["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    let svc_error = messages
        .iter()
        .find(|m| m.contains("svc.yaml"))
        .expect("svc.yaml rejection");
    assert!(
        svc_error.ends_with("svc.yaml document 0 (Service demo/web): spec.ports[0].port: port must be between 1 and 65535, got 70000"),
        "{svc_error}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("junk.yaml") && m.contains("invalid YAML")),
        "{messages:?}"
    );
    assert!(
        rudder.log_tail(50).contains("spec.ports[0].port"),
        "the error is logged too"
    );
    // Nothing was pushed: the snapshot version did not move, traffic flows as before.
    assert_eq!(configz["version"], version_before["version"]);
    assert_eq!(spread(svc_port, "web", 40).len(), 2);
    assert!(envoy.proc.is_running());

    // Fixing the file clears the rejection.
    write(
        dir.path(),
        "svc.yaml",
        &service_yaml("web", svc_port.into(), web.port, "http"),
    );
    std::fs::remove_file(dir.path().join("junk.yaml")).unwrap();
    wait_until("rejections to clear", Duration::from_secs(10), || {
        let v: Value = serde_json::from_str(&rudder.admin_get("/debug/configz").1).unwrap();
        v["rejected"].as_array().is_some_and(|r| r.is_empty())
    });
}

#[test]
fn envoy_nack_is_reported_and_old_config_keeps_serving() {
    let dir = workdir("nack");
    let web = Backends::http("web", 2);
    let svc_port = free_port();
    write(
        dir.path(),
        "svc.yaml",
        &service_yaml("web", svc_port.into(), web.port, "http"),
    );
    write(
        dir.path(),
        "eps.yaml",
        &slice_yaml("web", "http", web.port, &web.ips()),
    );
    let rudder = spawn_rudder(dir.path(), &[]);
    let envoy = client_envoy(&rudder, false);
    assert_eq!(spread(svc_port, "web", 40).len(), 2);

    // Another process already holds 127.0.0.1:<port>, so Envoy cannot bind the
    // listener Rudder sends for a new Service there, and NACKs the LDS update.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = squatter.local_addr().unwrap().port();
    write(
        dir.path(),
        "other.yaml",
        &service_yaml("other", taken.into(), 9, "tcp"),
    );
    let nack = wait_for(
        "an LDS NACK on /debug/syncz",
        Duration::from_secs(10),
        || {
            let v: Value = serde_json::from_str(&rudder.admin_get("/debug/syncz").1).ok()?;
            let nack = v.as_array()?.iter().find(|p| p["proxy"] == CLIENT)?["types"]["Listener"]
                ["last_nack"]
                .clone();
            (!nack.is_null()).then_some(nack)
        },
    );
    let message = nack["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{taken}")),
        "NACK detail names the address: {message}"
    );
    let metrics = rudder.admin_get("/metrics").1;
    assert!(
        metrics.contains("rudder_xds_nacks_total{type=\"lds\"} 1"),
        "{metrics}"
    );
    // Traffic continues on the previous listeners.
    assert_eq!(spread(svc_port, "web", 40).len(), 2);
    assert!(
        envoy
            .stat("listener_manager.lds.update_rejected")
            .unwrap_or(0)
            >= 1
    );
    drop(squatter);
}
