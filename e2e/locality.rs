//! Locality load balancing (DestinationRule `localityLbSetting`, Istio's
//! locality failover) through real Envoy configured by a real `rudder serve`.
//!
//! Loopback pattern (see traffic_policy.rs): a client proxy without capture
//! in region1/zone-a, labelled `tier: gold`; `web` has one echo backend in
//! zone-a (`tier: silver`) and one in zone-b (`tier: gold`), their
//! localities from their Pods' `istio-locality` labels.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use tempfile::TempDir;

use crate::support::*;

const NS: &str = "demo";
const CLIENT: &str = "sidecar~127.0.0.5~client-0.demo~demo.svc.cluster.local";

/// `web` with two backends, a client proxy, and the control plane.
struct Zones {
    _dir: TempDir,
    rudder: Rudder,
    envoy: Envoy,
    _backends: Vec<Proc>,
    port: u16,
}

/// How the client proxy learns its locality.
enum ClientLocality {
    /// Envoy's `node.locality` (`rudder bootstrap --locality`).
    Node,
    /// The `istio-locality` label in the node metadata.
    Label,
}

impl Zones {
    /// Starts everything; `dr` is the DestinationRule's `trafficPolicy`
    /// body (YAML flow), if any.
    fn start(traffic_policy: Option<&str>, client: ClientLocality) -> Zones {
        let dir = workdir("locality");
        let (port, target) = (free_port(), free_port());
        let pods = [
            ("web-a", "region1.zone-a", "silver"),
            ("web-b", "region1.zone-b", "gold"),
        ];
        let mut backends = Vec::new();
        let mut docs = vec![format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: {port}, targetPort: {target}}}]\n"
        )];
        let mut endpoints = String::new();
        for (pod, locality, tier) in pods {
            let ip: Ipv4Addr = loopback_ip();
            backends.push(spawn_echo(pod, ip, target));
            docs.push(format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {NS}, labels: {{app: web, tier: {tier}, istio-locality: {locality}}}}}\nstatus: {{podIP: \"{ip}\"}}\n"
            ));
            endpoints.push_str(&format!(
                "- addresses: [\"{ip}\"]\n  targetRef: {{kind: Pod, name: {pod}, namespace: {NS}}}\n"
            ));
        }
        docs.push(format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: {NS}\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: {target}}}]\nendpoints:\n{endpoints}"
        ));
        // No retries: a failed request shows, and is not retried elsewhere.
        docs.push(format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  hosts: [web]\n  http:\n  - retries: {{attempts: 0}}\n    route: [{{destination: {{host: web}}}}]\n"
        ));
        if let Some(policy) = traffic_policy {
            docs.push(format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  host: web\n  trafficPolicy: {policy}\n"
            ));
        }
        write(dir.path(), "web.yaml", &docs.join("---\n"));
        let rudder = spawn_rudder(dir.path(), &[]);
        let mut args = vec!["--meta", "INTERCEPTION_MODE=NONE", "--label", "tier=gold"];
        match client {
            ClientLocality::Label => args.extend(["--label", "istio-locality=region1.zone-a"]),
            // Envoy's node.locality, from `rudder bootstrap --locality`.
            ClientLocality::Node => args.extend(["--locality", "region1/zone-a"]),
        }
        let envoy = spawn_envoy(CLIENT, rudder.xds_addr, false, &args);
        envoy.wait_ready();
        Zones {
            _dir: dir,
            rudder,
            envoy,
            _backends: backends,
            port,
        }
    }

    fn cluster(&self) -> String {
        format!("outbound|{}||web.{NS}.svc.cluster.local", self.port)
    }

    /// The backend that answered `path`, or `status N`.
    fn backend(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let resp = http_request("GET", &url, &[("host", "web")], None)
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}{}", self.ctx()));
        if resp.status != 200 {
            return format!("status {}", resp.status);
        }
        resp.json()["backend"].as_str().unwrap_or("?").to_string()
    }

    fn spread(&self, n: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            *seen.entry(self.backend("/")).or_default() += 1;
        }
        seen
    }

    /// 20 requests, every one answered by `backend`.
    fn assert_all_to(&self, backend: &str, why: &str) {
        let seen = self.spread(20);
        assert_eq!(
            seen,
            BTreeMap::from([(backend.to_string(), 20)]),
            "{why}{}",
            self.ctx()
        );
    }

    /// Fails requests until the outlier detector ejects the backend in use
    /// (the only one answering, being alone at priority 0).
    fn eject_the_one_answering(&self) {
        let mut failures = 0;
        while self.stat("outlier_detection.ejections_enforced_total") == 0 && failures < 20 {
            assert_eq!(self.backend("/status/503"), "status 503");
            failures += 1;
        }
        assert!(
            self.stat("outlier_detection.ejections_enforced_total") > 0,
            "the backend answering was never ejected after {failures} failures{}",
            self.ctx()
        );
    }

    fn stat(&self, stat: &str) -> u64 {
        self.envoy
            .stat(&format!("cluster.{}.{stat}", self.cluster()))
            .unwrap_or(0)
    }

    /// What Envoy holds for the cluster, and the control plane's log.
    fn ctx(&self) -> String {
        let clusters = self.envoy.admin_get("/clusters");
        let mine: Vec<&str> = clusters
            .lines()
            .filter(|l| l.starts_with(&self.cluster()))
            .collect();
        format!(
            "\n--- Envoy /clusters for {} ---\n{}\n--- rudder log ---\n{}",
            self.cluster(),
            mine.join("\n"),
            self.rudder.log_tail(30)
        )
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

/// With outlier detection, the client's zone is priority 0: every request
/// goes there; once that backend fails and is ejected, requests fail over
/// to the other zone.
#[test]
fn locality_failover_prefers_own_zone_then_fails_over() {
    let z = Zones::start(
        Some("{outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}}"),
        ClientLocality::Node,
    );
    z.assert_all_to("web-a", "the client's own zone (zone-a) is priority 0");
    // Only zone-a is in use, so it alone answers these 503s and is ejected.
    z.eject_the_one_answering();
    z.assert_all_to("web-b", "with zone-a ejected, traffic fails over to zone-b");
}

/// `failoverPriority: [tier]`: the client (tier gold, in zone-a) prefers
/// the gold backend in zone-b to the silver one in its own zone, since the
/// labels rank endpoints instead of proximity. Once web-b is ejected,
/// traffic fails over to web-a.
#[test]
fn failover_priority_prefers_matching_labels_then_fails_over() {
    let z = Zones::start(
        Some("{outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}, loadBalancer: {localityLbSetting: {failoverPriority: [tier]}}}"),
        ClientLocality::Node,
    );
    z.assert_all_to(
        "web-b",
        "the backend sharing the client's tier is priority 0",
    );
    z.eject_the_one_answering();
    z.assert_all_to("web-a", "with web-b ejected, traffic fails over to web-a");
}

/// A `key=value` entry ranks by that value instead of the client's own:
/// `tier=silver` sends the gold client to the silver backend.
#[test]
fn failover_priority_override_value_wins_over_the_clients_label() {
    let z = Zones::start(
        Some("{outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}, loadBalancer: {localityLbSetting: {failoverPriority: [tier=silver]}}}"),
        ClientLocality::Node,
    );
    z.assert_all_to("web-a", "tier=silver makes the silver backend priority 0");
}

/// Without outlier detection Istio applies no priorities (Envoy could
/// never fail over), so both zones share the traffic. The client's
/// locality comes from its `istio-locality` label here.
#[test]
fn locality_without_outlier_detection_uses_both_zones() {
    let z = Zones::start(None, ClientLocality::Label);
    let seen = z.spread(40);
    assert!(
        seen.get("web-a").is_some_and(|n| *n > 0) && seen.get("web-b").is_some_and(|n| *n > 0),
        "both zones answer without outlier detection: {seen:?}{}",
        z.ctx()
    );
    assert_eq!(seen.values().sum::<usize>(), 40, "all succeed: {seen:?}");
}

/// The label path, with outlier detection: the zone-a backend alone
/// answers (it proves the label is read, not only `node.locality`).
#[test]
fn locality_from_label_prefers_own_zone() {
    let z = Zones::start(
        Some("{outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}"),
        ClientLocality::Label,
    );
    z.assert_all_to("web-a", "priority 0 is the label's zone");
}

/// `distribute`: from the client's zone, 20 % to its own zone and 80 % to
/// zone-b (Envoy's locality-weighted balancing, no outlier detection
/// needed). 200 requests land within 3.5 standard deviations of 160.
#[test]
fn locality_distribute_weights_zones() {
    let z = Zones::start(
        Some(
            r#"{loadBalancer: {simple: ROUND_ROBIN, localityLbSetting: {distribute: [{from: "region1/zone-a/*", to: {"region1/zone-a/*": 20, "region1/zone-b/*": 80}}]}}}"#,
        ),
        ClientLocality::Node,
    );
    let n = 200;
    let seen = z.spread(n);
    let b = seen.get("web-b").copied().unwrap_or(0);
    let a = seen.get("web-a").copied().unwrap_or(0);
    assert_eq!(
        a + b,
        n,
        "every request answered by a zone: {seen:?}{}",
        z.ctx()
    );
    // Binomial(200, 0.8): mean 160, standard deviation ~5.7.
    let tolerance = (3.5 * (n as f64 * 0.8 * 0.2).sqrt()).ceil() as usize;
    assert!(
        b.abs_diff(160) <= tolerance,
        "expected ~160 of {n} to zone-b (±{tolerance}), got {seen:?}{}",
        z.ctx()
    );
}
