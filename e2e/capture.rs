//! Traffic capture in REDIRECT mode, shown by real traffic: applications in
//! network namespaces ("pods") call each other by name, unaware of Envoy; the
//! real `rudder iptables --apply` rules send every connection through the
//! pods' sidecars (real Envoy as uid 1337, configured by a real `rudder
//! serve`), and each test reads Envoy's own stats to prove which sidecar,
//! listener and cluster carried the traffic, so it fails if capture breaks.
//!
//! Needs root; see e2e/support/pods.rs for the network (198.18.0.0/15 only,
//! nothing leaves the machine, everything removed also on failure).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::pods::{Network, Pod};
use crate::support::*;

const NS: &str = "demo";
const REGISTRY_ONLY: &str = "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n";
/// Envoy's outbound capture listener; its connection counter moves for every
/// captured outbound connection and for nothing else.
const OUTBOUND_CX: &str = "listener.0.0.0.0_15001.downstream_cx_total";
const PASSTHROUGH_CX: &str = "cluster.PassthroughCluster.upstream_cx_total";
const BLACKHOLE_CX: &str = "cluster.BlackHoleCluster.upstream_cx_none_healthy";
/// Envoy answers while config is still arriving; a first request may race it.
const SETTLE: Duration = Duration::from_secs(20);

/// GET `url` from `pod` until 200 (or panic with context); the body as JSON.
pub(crate) fn get_json(pod: &Pod, url: &str) -> Value {
    curl_json(pod, &[url])
}

/// `curl ARGS` (a URL and options) from `pod` until 200, or panic with
/// context; the body as JSON.
pub(crate) fn curl_json(pod: &Pod, args: &[&str]) -> Value {
    let mut last = (0, String::new());
    let ok = poll(SETTLE, || {
        last = pod.curl(args);
        (last.0 == 200).then_some(())
    });
    let request = args.join(" ");
    assert!(
        ok.is_some(),
        "curl {request} from pod {} never answered 200; last: {} {}{}",
        pod.name(),
        last.0,
        last.1,
        pod.context()
    );
    serde_json::from_str(&last.1)
        .unwrap_or_else(|e| panic!("curl {request}: not JSON ({e}): {}", last.1))
}

/// The IP part of an echo answer's `peer` (`IP:PORT`).
pub(crate) fn peer_ip(body: &Value) -> String {
    let peer = body["peer"].as_str().unwrap_or_default();
    peer.rsplit_once(':').map_or(peer, |(ip, _)| ip).to_string()
}

/// Istio's cluster names, as Envoy's stats spell them.
fn outbound(port: u16, service: &str) -> String {
    format!("outbound|{port}||{service}.{NS}.svc.cluster.local")
}

fn inbound(port: u16) -> String {
    format!("inbound|{port}||")
}

/// No proxy rejected anything Rudder sent, so the traffic above ran on the
/// config Rudder meant.
pub(crate) fn assert_all_acked(rudder: &Rudder) {
    let (status, body) = rudder.admin_get("/debug/syncz");
    assert_eq!(status, 200, "/debug/syncz: {body}");
    let proxies: Value = serde_json::from_str(&body).expect("/debug/syncz is JSON");
    let proxies = proxies.as_array().cloned().unwrap_or_default();
    assert!(!proxies.is_empty(), "no proxy connected: {body}");
    for proxy in &proxies {
        for (kind, sync) in proxy["types"].as_object().into_iter().flatten() {
            assert!(
                sync["nack_count"] == 0 && sync["last_nack"].is_null(),
                "{} NACKed {kind}: {sync}{}",
                proxy["proxy"],
                rudder.log_tail(30)
            );
        }
    }
}

/// `cluster.CLUSTER.STAT`
pub(crate) fn cstat(cluster: &str, stat: &str) -> String {
    format!("cluster.{cluster}.{stat}")
}

#[test]
fn capture_three_service_mesh_traverses_both_sidecars() {
    let net = Network::new("capture_three");
    net.add_service("front", NS, &[("http", 8080, 8080)]);
    net.add_service("api", NS, &[("http", 9090, 9091)]);
    net.add_service("store", NS, &[("tcp-store", 7070, 7070)]);
    let front = net.pod("front-0", NS, &[("app", "front")]);
    let api = net.pod("api-0", NS, &[("app", "api")]);
    let store = net.pod("store-0", NS, &[("app", "store")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    let rudder = net.rudder();
    front.serve_http(8080, &["--call-http", "http://api.demo:9090/chain"]);
    api.serve_http(9091, &["--call-tcp", "store.demo:7070"]);
    store.serve_tcp(7070);
    for pod in [&front, &api, &store, &client] {
        pod.start_sidecar(&rudder);
    }

    let body = get_json(&client, "http://front.demo:8080/chain");
    let api_body = &body["upstream"]["body"];
    let context = || format!("answer: {body:#}{}{}", front.context(), api.context());
    assert_eq!(body["backend"], "front-0", "{}", context());
    assert_eq!(body["upstream"]["status"], 200, "{}", context());
    assert_eq!(api_body["backend"], "api-0", "{}", context());
    assert_eq!(
        api_body["tcp_upstream"]["reply"],
        "store-0: api-0",
        "{}",
        context()
    );
    // Each HTTP app was called by its own sidecar (over loopback), with the
    // request id the caller's sidecar added; not by the caller directly.
    for (who, hop) in [("front", &body), ("api", api_body)] {
        let peer = peer_ip(hop);
        assert!(
            peer.starts_with("127."),
            "{who} was called from {peer}, not its sidecar: {}",
            context()
        );
        assert!(
            hop["headers"]["x-request-id"].is_string(),
            "{who}: no x-request-id: {}",
            context()
        );
    }

    // Every hop left through the caller's outbound and entered through the
    // callee's inbound sidecar.
    client.wait_stat_at_least(&cstat(&outbound(8080, "front"), "upstream_rq_200"), 1);
    front.wait_stat_at_least(&cstat(&inbound(8080), "upstream_rq_200"), 1);
    front.wait_stat_at_least(&cstat(&outbound(9090, "api"), "upstream_rq_200"), 1);
    api.wait_stat_at_least(&cstat(&inbound(9091), "upstream_rq_200"), 1);
    api.wait_stat_at_least(&cstat(&outbound(7070, "store"), "upstream_cx_total"), 1);
    store.wait_stat_at_least(&cstat(&inbound(7070), "upstream_cx_total"), 1);
    assert_all_acked(&rudder);

    // What a newcomer should see (`-- --nocapture`): apps that only know names.
    eprintln!("\ntransparent capture, four pods (network namespaces), each with a sidecar:");
    eprintln!("  client-0 -> GET http://front.demo:8080/chain   (app knows only the name)");
    eprintln!(
        "  front-0 answered; it called http://api.demo:9090/chain -> {}",
        api_body["backend"]
    );
    eprintln!(
        "  api-0 called tcp store.demo:7070 -> {:?}",
        api_body["tcp_upstream"]["reply"]
    );
    for (pod, stat) in [
        (&client, cstat(&outbound(8080, "front"), "upstream_rq_200")),
        (&front, cstat(&inbound(8080), "upstream_rq_200")),
        (&front, cstat(&outbound(9090, "api"), "upstream_rq_200")),
        (&api, cstat(&inbound(9091), "upstream_rq_200")),
        (&api, cstat(&outbound(7070, "store"), "upstream_cx_total")),
        (&store, cstat(&inbound(7070), "upstream_cx_total")),
    ] {
        eprintln!(
            "  {:<9} envoy {stat} = {}",
            pod.name(),
            pod.stat_or_zero(&stat)
        );
    }
}

/// A client with a sidecar, a registered `web` service (HTTP on 8080, pod
/// without sidecar), and an "external" pod the mesh knows nothing about,
/// serving HTTP on 8080 (a port the mesh declares) and 8000, and TCP on 7000.
struct Unknown {
    client: Pod,
    web: Pod,
    external: Pod,
    rudder: Rudder,
    _net: Network,
}

impl Unknown {
    fn new(test: &str, mesh_config: Option<&str>, client_iptables_args: &[&str]) -> Unknown {
        let net = Network::new(test);
        net.add_service("web", NS, &[("http", 8080, 8080)]);
        let web = net.pod("web-0", NS, &[("app", "web")]);
        let client = net.pod("client-0", NS, &[("app", "client")]);
        let external = net.external_pod("external");
        let rudder = match mesh_config {
            Some(yaml) => net.rudder_with_mesh_config(yaml),
            None => net.rudder(),
        };
        web.serve_http(8080, &[]);
        for port in [8080, 8000, 8001] {
            external.serve_http(port, &[]);
        }
        external.serve_tcp(7000);
        client.start_sidecar_with(&rudder, client_iptables_args);
        Unknown {
            client,
            web,
            external,
            rudder,
            _net: net,
        }
    }

    fn external_url(&self, port: u16) -> String {
        format!("http://{}:{port}/", self.external.ip())
    }

    /// Runs `f` and returns how much each of `stats` of the client's sidecar
    /// moved meanwhile. The counters used here move before the client gets
    /// its answer; the waits only absorb scheduling noise.
    fn delta<const N: usize>(&self, stats: [&str; N], f: impl FnOnce()) -> [u64; N] {
        let before = stats.map(|s| self.client.stat_or_zero(s));
        f();
        let moved = || {
            let after = stats.map(|s| self.client.stat_or_zero(s));
            std::array::from_fn(|i| after[i] - before[i])
        };
        poll(Duration::from_secs(1), || {
            moved().iter().any(|d: &u64| *d > 0).then_some(())
        });
        std::thread::sleep(Duration::from_millis(200));
        moved()
    }
}

#[test]
fn capture_allow_any_passes_unknown_destinations() {
    let t = Unknown::new("capture_allow_any", None, &[]);
    let ext = t.external.ip().to_string();

    // An undeclared port: virtualOutbound's passthrough chain.
    let mut body = Value::Null;
    let [captured, passed] = t.delta([OUTBOUND_CX, PASSTHROUGH_CX], || {
        body = get_json(&t.client, &t.external_url(8000))
    });
    assert_eq!(body["backend"], "external", "{body}");
    // The original destination and the pod's own source address survive.
    assert_eq!(body["listen"], "0.0.0.0:8000", "{body}");
    assert_eq!(peer_ip(&body), t.client.ip().to_string(), "{body}");
    assert!(
        captured >= 1 && passed >= 1,
        "not through the sidecar: 15001 +{captured}, passthrough +{passed}{}",
        t.client.context()
    );

    // A port the mesh declares for HTTP: the route table's allow_any host.
    let rq = "cluster.PassthroughCluster.upstream_rq_200";
    let [passed] = t.delta([rq], || body = get_json(&t.client, &t.external_url(8080)));
    assert_eq!(body["backend"], "external", "{body}");
    assert!(
        passed >= 1,
        "{rq} +{passed}: {}{}",
        t.client.envoy_stats_matching("Passthrough"),
        t.client.context()
    );

    // Plain TCP.
    let mut reply = Err(String::new());
    let [passed] = t.delta([PASSTHROUGH_CX], || {
        reply = t.client.tcp_send(&ext, 7000, "hello")
    });
    assert_eq!(
        reply,
        Ok("external: hello".to_string()),
        "{}",
        t.client.context()
    );
    assert!(
        passed >= 1,
        "TCP not through the passthrough cluster{}",
        t.client.context()
    );
    assert_all_acked(&t.rudder);
}

#[test]
fn capture_registry_only_blocks_them() {
    let t = Unknown::new("capture_registry_only", Some(REGISTRY_ONLY), &[]);
    let ext = t.external.ip().to_string();

    // Registered destinations still work, and the external pod is reachable
    // for a pod without a sidecar: what follows is the sidecar's doing.
    get_json(&t.client, "http://web.demo:8080/");
    t.client
        .wait_stat_at_least(&cstat(&outbound(8080, "web"), "upstream_rq_200"), 1);
    assert_eq!(
        t.web.curl(&[&t.external_url(8000)]).0,
        200,
        "external pod unreachable without a sidecar"
    );

    // An undeclared port: virtualOutbound's chain goes to BlackHoleCluster.
    let mut got = (0, String::new());
    let [captured, blocked] = t.delta([OUTBOUND_CX, BLACKHOLE_CX], || {
        got = t.client.curl(&[&t.external_url(8000)])
    });
    assert_ne!(
        got.0, 200,
        "REGISTRY_ONLY let an unknown destination through: {}",
        got.1
    );
    assert!(
        captured >= 1 && blocked >= 1,
        "15001 +{captured}, {BLACKHOLE_CX} +{blocked}; got {got:?}: {}{}",
        t.client.envoy_stats_matching("BlackHole"),
        t.client.context()
    );

    // A port the mesh declares for HTTP: the route table's block_all host.
    let rq_5xx = "http.outbound_0.0.0.0_8080.downstream_rq_5xx";
    let [failed] = t.delta([rq_5xx], || got = t.client.curl(&[&t.external_url(8080)]));
    assert_eq!(
        got.0,
        502,
        "expected block_all's 502: {}{}",
        got.1,
        t.client.context()
    );
    assert!(failed >= 1, "{rq_5xx} +{failed}{}", t.client.context());

    // Plain TCP: the connection is closed without an answer.
    let mut reply = Ok(String::new());
    let [blocked] = t.delta([BLACKHOLE_CX], || {
        reply = t.client.tcp_send(&ext, 7000, "hello")
    });
    assert!(reply.is_err(), "REGISTRY_ONLY let TCP through: {reply:?}");
    assert!(
        blocked >= 1,
        "TCP not blackholed by the sidecar ({reply:?}){}",
        t.client.context()
    );
    assert_all_acked(&t.rudder);
}

#[test]
fn capture_excluded_port_bypasses_the_sidecar() {
    let t = Unknown::new(
        "capture_excluded_port",
        Some(REGISTRY_ONLY),
        &["--exclude-outbound-ports", "8000"],
    );
    let stats = [OUTBOUND_CX, PASSTHROUGH_CX, BLACKHOLE_CX];

    let mut body = Value::Null;
    let moved = t.delta(stats, || body = get_json(&t.client, &t.external_url(8000)));
    assert_eq!(body["backend"], "external", "{body}");
    assert_eq!(peer_ip(&body), t.client.ip().to_string(), "{body}");
    assert_eq!(
        moved,
        [0, 0, 0],
        "the sidecar saw traffic to an excluded port ({stats:?}){}",
        t.client.context()
    );

    // Any other port is still captured and, under REGISTRY_ONLY, blocked.
    let mut got = (0, String::new());
    let [captured, _, blocked] = t.delta(stats, || got = t.client.curl(&[&t.external_url(8001)]));
    assert_ne!(got.0, 200, "port 8001 was not blocked: {}", got.1);
    assert!(
        captured >= 1 && blocked >= 1,
        "8001 not captured: 15001 +{captured}, blackhole +{blocked}{}",
        t.client.context()
    );
    assert_all_acked(&t.rudder);
}

#[test]
fn capture_undeclared_inbound_port_reaches_the_app() {
    let net = Network::new("capture_undeclared_inbound");
    net.add_service("server", NS, &[("http", 8080, 8080)]);
    let server = net.pod("server-0", NS, &[("app", "server")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    let rudder = net.rudder();
    server.serve_http(8080, &[]);
    server.serve_http(8081, &[]);
    server.start_sidecar(&rudder);
    client.start_sidecar(&rudder);

    let passthrough = "cluster.InboundPassthroughCluster.upstream_cx_total";
    let before = server.stat_or_zero(passthrough);
    let body = get_json(&client, &format!("http://{}:8081/undeclared", server.ip()));
    assert_eq!(body["listen"], "0.0.0.0:8081", "{body}");
    // Istio's passthrough source address: the app was called by its sidecar.
    assert_eq!(peer_ip(&body), "127.0.0.6", "{body}{}", server.context());
    server.wait_stat_at_least(passthrough, before + 1);
    client.wait_stat_at_least(PASSTHROUGH_CX, 1);

    // The declared port keeps its own inbound cluster.
    get_json(&client, "http://server.demo:8080/declared");
    server.wait_stat_at_least(&cstat(&inbound(8080), "upstream_rq_200"), 1);
    assert_all_acked(&rudder);
}

/// Istio since 1.10: the inbound sidecar connects to the pod IP (from
/// 127.0.0.6), so an application listening only on localhost is not exposed
/// to the mesh even behind a Service port.
#[test]
fn capture_localhost_only_app_is_not_exposed() {
    let net = Network::new("capture_localhost_only");
    net.add_service("private", NS, &[("http", 8080, 8080)]);
    let server = net.pod("private-0", NS, &[("app", "private")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    let rudder = net.rudder();
    server.serve_http_loopback(8080);
    server.start_sidecar(&rudder);
    client.start_sidecar(&rudder);

    // The application works for its own pod, on loopback.
    let (status, body) = server.curl(&["http://127.0.0.1:8080/self"]);
    assert_eq!(status, 200, "{body}{}", server.context());

    // Through both sidecars it is refused: the server's sidecar dials the pod
    // IP, where nothing listens, and the client gets a 503.
    let refused = cstat(&inbound(8080), "upstream_cx_connect_fail");
    let mut last = (0, String::new());
    let failed = poll(SETTLE, || {
        last = client.curl(&["http://private.demo:8080/"]);
        (last.0 == 503 && server.stat_or_zero(&refused) > 0).then_some(())
    });
    assert!(
        failed.is_some(),
        "a localhost-only app must not be reachable through the mesh; last: {} {}{}",
        last.0,
        last.1,
        server.context()
    );
    assert_all_acked(&rudder);
}

#[test]
fn capture_sniffs_undeclared_protocol() {
    let net = Network::new("capture_sniffing");
    // Port names without a protocol prefix: Rudder must sniff.
    net.add_service("plain", NS, &[("web", 8080, 8080)]);
    net.add_service("lines", NS, &[("db", 7070, 7070)]);
    let plain = net.pod("plain-0", NS, &[("app", "plain")]);
    let lines = net.pod("lines-0", NS, &[("app", "lines")]);
    let client = net.pod("client-0", NS, &[("app", "client")]);
    let rudder = net.rudder();
    plain.serve_http(8080, &[]);
    lines.serve_tcp(7070);
    for pod in [&plain, &lines, &client] {
        pod.start_sidecar(&rudder);
    }

    let body = get_json(&client, "http://plain.demo:8080/sniffed");
    assert_eq!(body["backend"], "plain-0", "{body}");
    assert!(
        body["headers"]["x-request-id"].is_string(),
        "not handled as HTTP: {body}"
    );
    client.wait_stat_at_least(&cstat(&outbound(8080, "plain"), "upstream_rq_200"), 1);
    plain.wait_stat_at_least(&cstat(&inbound(8080), "upstream_rq_200"), 1);

    // Non-HTTP bytes on an undeclared protocol still get through: the
    // sniffer hands them to the TCP proxy (stat prefix = cluster name), and
    // the port's HTTP connection manager sees no request.
    let tcp_cluster = outbound(7070, "lines");
    let reply = client.tcp_send("lines.demo", 7070, "not http");
    assert_eq!(
        reply,
        Ok("lines-0: not http".to_string()),
        "{}",
        client.context()
    );
    client.wait_stat_at_least(&cstat(&tcp_cluster, "upstream_cx_total"), 1);
    client.wait_stat_at_least(&format!("tcp.{tcp_cluster}.downstream_cx_total"), 1);
    let http_requests = client.stat_or_zero("http.outbound_0.0.0.0_7070.downstream_rq_total");
    assert_eq!(
        http_requests,
        0,
        "TCP bytes were parsed as HTTP: {}",
        client.envoy_stats_matching("7070")
    );
    lines.wait_stat_at_least(&cstat(&inbound(7070), "upstream_cx_total"), 1);
    assert_all_acked(&rudder);
}

/// The harness itself: a test that panics half-way leaves no namespace,
/// link, hosts file or process behind.
#[test]
fn capture_harness_cleans_up_after_a_panic() {
    /// A link's ifindex, which the kernel does not soon reuse: another test
    /// may claim the same bridge name right after this one released it.
    fn ifindex(link: &str) -> Option<String> {
        std::fs::read_to_string(format!("/sys/class/net/{link}/ifindex")).ok()
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let net = Network::new("capture_panic");
        net.add_service("web", NS, &[("http", 8080, 8080)]);
        let pod = net.pod("web-0", NS, &[("app", "web")]);
        let rudder = net.rudder();
        pod.serve_http(8080, &[]);
        pod.start_sidecar(&rudder);
        let n = net.bridge_ip().octets()[2];
        let links: Vec<(String, Option<String>)> = [format!("rdbr{n}"), format!("rdv{n}x0")]
            .into_iter()
            .map(|l| (l.clone(), ifindex(&l)))
            .collect();
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", pod.netns()])
            .output()
            .expect("ip netns pids");
        let mut pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        pids.push(rudder.proc.pid().to_string());
        let mut logs = pod.log_paths();
        logs.push(rudder.proc.log_path().to_path_buf());
        tx.send((pod.netns().to_string(), links, pids, logs))
            .unwrap();
        panic!("deliberate panic with a live pod, sidecar and control plane");
    })
    .join();
    assert!(result.is_err(), "the inner test should have panicked");
    let (netns, links, pids, logs) = rx.recv().expect("the inner test got as far as a pod");
    // Logs are kept after a panic, for the reader; this one was on purpose.
    for dir in logs.iter().filter_map(|log| log.parent()) {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(pids.len() >= 3, "expected app, Envoy and rudder: {pids:?}");
    for (link, index) in links {
        assert!(index.is_some(), "{link} did not exist");
        assert_ne!(ifindex(&link), index, "link {link} left behind");
    }
    assert!(
        !Path::new("/run/netns").join(&netns).exists(),
        "netns {netns} left behind"
    );
    let etc = Path::new("/etc/netns").join(&netns);
    assert!(!etc.exists(), "{} left behind", etc.display());
    for pid in pids {
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        assert!(!alive, "process {pid} left behind");
    }
}
