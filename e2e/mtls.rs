//! Mesh identity through real Envoy: sidecars authenticate to Rudder's TLS
//! xDS port with a service-account token, receive their certificate over
//! SDS, and talk mutual TLS to each other as PeerAuthentication says. Every
//! claim is read off real traffic: the caller's SPIFFE identity in the
//! header the server's sidecar sets, Envoy's TLS handshake counters on both
//! ends, and connections a STRICT workload refuses.
//!
//! Needs root (the pods harness; see e2e/support/pods.rs).

use std::time::{Duration, Instant, SystemTime};

use crate::capture::{assert_all_acked, cstat, get_json};
use crate::support::mesh::{web_and_client, WebAndClient, NS};
use crate::support::pods::Pod;
use crate::support::*;

/// TLS handshakes the server's inbound capture listener completed.
const SERVER_HANDSHAKES: &str = "listener.0.0.0.0_15006.ssl.handshake";
const WEB_CLUSTER: &str = "outbound|8080||web.demo.svc.cluster.local";
const XFCC: &str = "x-forwarded-client-cert";
const SETTLE: Duration = Duration::from_secs(20);

impl WebAndClient {
    fn peer_authentication(&self, name: &str, selector: Option<&str>, mode: &str) {
        let selector = selector
            .map(|app| format!("  selector:\n    matchLabels: {{app: {app}}}\n"))
            .unwrap_or_default();
        self.net.write_config(
            &format!("pa-{name}.yaml"),
            &format!(
                "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
                 metadata: {{name: {name}, namespace: {NS}}}\nspec:\n{selector}  mtls: {{mode: {mode}}}\n"
            ),
        );
    }

    /// A plain GET from a pod outside the mesh (no sidecar, no certificate)
    /// straight to the web pod: status, or 0 when the connection failed.
    fn outsider_get(&self, outsider: &Pod) -> (u16, String) {
        outsider.curl(&[
            "--max-time",
            "3",
            &format!("http://{}:8080/", self.web.ip()),
        ])
    }
}

/// The `URI=` element of an XFCC header.
fn xfcc_uri(xfcc: &str) -> Option<&str> {
    xfcc.split(';').find_map(|part| part.strip_prefix("URI="))
}

#[test]
fn mtls_between_sidecars_proves_the_callers_identity() {
    let m = web_and_client("mtls_identity", "24h");
    let body = get_json(&m.client, "http://web.demo:8080/");
    let context = || format!("answer: {body:#}{}{}", m.web.context(), m.client.context());
    let xfcc = body["headers"][XFCC].as_str().unwrap_or_default();
    // The server's sidecar verified the client's certificate and says whose it was.
    assert_eq!(
        xfcc_uri(xfcc),
        Some("spiffe://cluster.local/ns/demo/sa/client"),
        "{}",
        context()
    );
    // TLS on the wire, at both ends.
    m.web.wait_stat_at_least(SERVER_HANDSHAKES, 1);
    m.client
        .wait_stat_at_least(&cstat(WEB_CLUSTER, "ssl.handshake"), 1);
    // The certificates are what Rudder issued, seen by Envoy itself.
    let certs = m.web.envoy_admin("/certs");
    assert!(
        certs.contains("spiffe://cluster.local/ns/demo/sa/web"),
        "web's Envoy holds no certificate for its identity: {certs}"
    );
    assert_all_acked(&m.rudder);
    let (status, certz) = m.rudder.admin_get("/debug/certz");
    assert_eq!(status, 200);
    for id in ["sa/web", "sa/client"] {
        assert!(certz.contains(id), "/debug/certz lacks {id}: {certz}");
    }
    assert!(!certz.contains("PRIVATE KEY"), "/debug/certz leaks a key");
}

#[test]
fn strict_refuses_plaintext_that_permissive_accepts() {
    let m = web_and_client("mtls_strict", "24h");
    let outsider = m.net.external_pod("outsider-0");
    // The default is PERMISSIVE: plaintext from outside the mesh is served...
    let (status, body) = m.outsider_get(&outsider);
    assert_eq!(
        status,
        200,
        "PERMISSIVE refused plaintext: {body}{}",
        m.web.context()
    );
    assert!(
        !body.contains(XFCC),
        "plaintext carries no identity: {body}"
    );
    // ...and so is mTLS from inside it.
    get_json(&m.client, "http://web.demo:8080/");
    m.web.wait_stat_at_least(SERVER_HANDSHAKES, 1);

    m.peer_authentication("default", None, "STRICT");
    let mut last = (0, String::new());
    let refused = poll(SETTLE, || {
        last = m.outsider_get(&outsider);
        (last.0 == 0).then_some(())
    });
    assert!(
        refused.is_some(),
        "STRICT still serves plaintext: {} {}{}",
        last.0,
        last.1,
        m.web.context()
    );
    // The mesh client still gets through, over mTLS (the server's sidecar
    // sets the identity header only for a verified client certificate).
    let body = get_json(&m.client, "http://web.demo:8080/");
    assert!(
        body["headers"][XFCC]
            .as_str()
            .is_some_and(|x| x.contains("sa/client")),
        "{body:#}"
    );
    assert_all_acked(&m.rudder);
}

#[test]
fn disable_is_plaintext_on_the_wire() {
    let m = web_and_client("mtls_disable", "24h");
    m.peer_authentication("web", Some("web"), "DISABLE");
    // Auto mTLS follows the server's policy: once the client's endpoints for
    // web lose their mTLS metadata, requests go out plaintext.
    let plain = poll(SETTLE, || {
        let (status, body) = m.client.curl(&["http://web.demo:8080/"]);
        (status == 200 && !body.contains(XFCC)).then_some(())
    });
    assert!(
        plain.is_some(),
        "web never served plaintext{}",
        m.web.context()
    );
    let server = m.web.stat_or_zero(SERVER_HANDSHAKES);
    let client = m.client.stat_or_zero(&cstat(WEB_CLUSTER, "ssl.handshake"));
    for _ in 0..5 {
        let (status, body) = m.client.curl(&["http://web.demo:8080/"]);
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains(XFCC),
            "DISABLE yet an identity arrived: {body}"
        );
    }
    // New connections, none of them TLS.
    assert_eq!(m.web.stat_or_zero(SERVER_HANDSHAKES), server);
    assert_eq!(
        m.client.stat_or_zero(&cstat(WEB_CLUSTER, "ssl.handshake")),
        client
    );
    // Plaintext from outside the mesh works too.
    let outsider = m.net.external_pod("outsider-0");
    assert_eq!(m.outsider_get(&outsider).0, 200);
    assert_all_acked(&m.rudder);
}

/// Serial numbers of the certificate chain Envoy currently holds.
fn serials(pod: &Pod) -> Vec<String> {
    let certs: serde_json::Value =
        serde_json::from_str(&pod.envoy_admin("/certs")).expect("/certs is JSON");
    certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["serial_number"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn short_lived_certificates_rotate_while_requests_keep_succeeding() {
    // 15 s certificates are replaced every ~12 s: several rotations in 40 s.
    let m = web_and_client("mtls_rotation", "15s");
    // One request per upstream connection: every request is a new mTLS
    // handshake, made with whatever certificates both sidecars hold then.
    m.net.write_config(
        "dr-web.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {name: web, namespace: demo}\nspec:\n  host: web\n  trafficPolicy:\n\
         \x20   connectionPool:\n      http: {maxRequestsPerConnection: 1}\n",
    );
    get_json(&m.client, "http://web.demo:8080/");
    let handshakes = m.web.stat_or_zero(SERVER_HANDSHAKES);
    let first = serials(&m.web);
    assert!(!first.is_empty(), "web holds no certificate");
    let start = Instant::now();
    let mut seen = vec![first.clone()];
    let mut requests: u64 = 0;
    while start.elapsed() < Duration::from_secs(40) {
        let (status, body) = m.client.curl(&["http://web.demo:8080/"]);
        assert_eq!(
            status,
            200,
            "request {requests} failed during rotation after {:?}: {body}{}{}",
            start.elapsed(),
            m.web.context(),
            m.net.rudder_log_tail(20)
        );
        assert!(body.contains("sa/client"), "no verified identity: {body}");
        requests += 1;
        let now = serials(&m.web);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.len() >= 3,
        "expected at least two rotations of web's certificate in 40 s, saw {} distinct: {seen:?}{}",
        seen.len(),
        m.net.rudder_log_tail(20)
    );
    // Allow a request or two that raced the DestinationRule.
    m.web
        .wait_stat_at_least(SERVER_HANDSHAKES, handshakes + requests.saturating_sub(2));
    eprintln!(
        "\n{requests} requests over {:?}, all 200, across {} certificates of web",
        start.elapsed(),
        seen.len()
    );
    assert_all_acked(&m.rudder);
}

/// A loopback Rudder acting as CA, with the demo mesh, and the means to
/// start Envoys that present any token.
struct Loopback {
    rudder: Rudder,
    tls: TlsXds,
    dir: tempfile::TempDir,
}

impl Loopback {
    fn start() -> Loopback {
        let dir = workdir("authn");
        let config = dir.path().join("mesh");
        std::fs::create_dir(&config).unwrap();
        let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo");
        for entry in std::fs::read_dir(demo).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, config.join(path.file_name().unwrap())).unwrap();
        }
        let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, free_port()));
        let (tls, flags) = TlsXds::prepare(&dir.path().join("identity"), addr, "24h");
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let rudder = spawn_rudder(&config, &flags);
        Loopback { rudder, tls, dir }
    }

    /// An Envoy whose node claims demo/`node_sa` and that sends `token`.
    fn envoy(&self, node_sa: &str, token: &str) -> Envoy {
        self.tls.spawn_envoy(self.dir.path(), node_sa, token)
    }

    fn token(&self, key: &std::path::Path, sa: &str, issued: SystemTime) -> String {
        let pem = std::fs::read_to_string(key).unwrap();
        let minter = rudder::auth::TokenMinter::new(&pem, "rudder-local".into()).unwrap();
        let id = rudder::auth::TokenIdentity {
            namespace: NS.into(),
            service_account: sa.into(),
        };
        minter
            .mint(&id, &["rudder".into()], Duration::from_secs(600), issued)
            .unwrap()
    }

    fn auth_failures(&self) -> u64 {
        let (_, metrics) = self.rudder.admin_get("/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("rudder_xds_auth_failures_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Envoy got no certificate and no listener from Rudder within a few seconds.
pub(crate) fn assert_starved(envoy: &Envoy, why: &str) {
    std::thread::sleep(Duration::from_secs(3));
    let certs = envoy.admin_get("/certs");
    assert!(
        !certs.contains("spiffe://"),
        "{why}: Envoy holds a certificate: {certs}"
    );
    assert!(
        envoy.dynamic_listener_names().is_empty(),
        "{why}: Envoy got listeners"
    );
    assert!(
        !matches!(envoy.try_admin_get("/ready"), Ok((200, _))),
        "{why}: Envoy went ready"
    );
}

#[test]
fn authenticated_xds_gives_each_token_its_own_identity_only() {
    let lb = Loopback::start();
    let now = SystemTime::now();
    // The rightful owner gets its identity and its config.
    let web = lb.envoy("web", &lb.token(&lb.tls.token_key, "web", now));
    web.wait_ready();
    web.wait_for("web's certificate", Duration::from_secs(10), |e| {
        e.admin_get("/certs")
            .contains("spiffe://cluster.local/ns/demo/sa/web")
    });

    // A valid token for another account cannot be used to claim `web`.
    let intruder = lb.envoy("web", &lb.token(&lb.tls.token_key, "intruder", now));
    assert_starved(&intruder, "a token for demo/intruder claiming demo/web");
    let log = lb.rudder.log_tail(200);
    assert!(
        log.contains("but its token is for namespace \"demo\" and service account \"intruder\""),
        "Rudder did not say why it refused: {log}"
    );
    let (_, certz) = lb.rudder.admin_get("/debug/certz");
    assert!(
        !certz.contains("sa/intruder"),
        "issued for the intruder: {certz}"
    );

    // Expired, and signed by a key Rudder does not trust: refused before
    // the node is even read.
    let before = lb.auth_failures();
    let an_hour_ago = now - Duration::from_secs(3600);
    let expired = lb.envoy("web", &lb.token(&lb.tls.token_key, "web", an_hour_ago));
    let forger = lb.dir.path().join("forger");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["token", "keygen", "--out-dir"])
        .arg(&forger)
        .status()
        .unwrap();
    assert!(status.success());
    let forged = lb.envoy("web", &lb.token(&forger.join("jwt-key.pem"), "web", now));
    assert_starved(&expired, "an expired token");
    assert_starved(&forged, "a forged token");
    assert!(
        lb.auth_failures() >= before + 2,
        "refusals not counted: {} -> {}",
        before,
        lb.auth_failures()
    );
    let log = lb.rudder.log_tail(300);
    for why in ["expired", "signature"] {
        assert!(log.contains(why), "no refusal mentioning {why:?}: {log}");
    }
    // The rightful proxy was never disturbed.
    assert!(web.admin_get("/certs").contains("sa/web"));
}
