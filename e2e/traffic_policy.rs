//! Istio traffic management (VirtualService, DestinationRule, Sidecar) shown
//! by real requests through real Envoy configured by a real `rudder serve`.
//!
//! Same loopback pattern as traffic.rs: the client proxy runs with
//! INTERCEPTION_MODE=NONE and the test calls Envoy at 127.0.0.1:<service
//! port> with a Host header. Backends are rudder-echo processes on their own
//! 127.x addresses, one per Pod; subsets select them by the labels of the Pod
//! an EndpointSlice endpoint's `targetRef` names. Every test has its own
//! ports, config dir, control plane and Envoy. Failure messages carry the
//! control plane's log tail and what Envoy got (config_dump) next to what
//! Rudder would send (`rudder translate`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::*;

pub(crate) const NS: &str = "demo";
const CLIENT: &str = "sidecar~127.0.0.5~client-0.demo~demo.svc.cluster.local";
/// How long a config edit may take to reach Envoy.
pub(crate) const PROPAGATION: Duration = Duration::from_secs(15);
/// At most this much of a long JSON document goes into a failure message.
const EXCERPT_CHARS: usize = 12_000;

/// One Pod behind a Service: an echo backend named after the Pod, or nothing
/// at all (a dead endpoint: connections to it are refused).
struct Pod {
    name: String,
    ip: Ipv4Addr,
    version: String,
    _proc: Option<Proc>,
}

/// A Service with its Pods and EndpointSlice.
pub(crate) struct Svc {
    ns: String,
    name: String,
    /// The service port: Envoy's loopback listener.
    pub(crate) port: u16,
    /// Its name, which declares the protocol (`http`, `tcp-...`).
    port_name: String,
    /// Further ports (name, port) of the same Pods, see [`Svc::with_port`].
    more_ports: Vec<(String, u16)>,
    /// The port every Pod listens on, for every service port.
    target: u16,
    pods: Vec<Pod>,
}

impl Svc {
    /// `name` in `ns` with one echo Pod `NAME-VERSION` per version, labelled
    /// `app: NAME, version: VERSION`.
    fn new(ns: &str, name: &str, versions: &[&str]) -> Svc {
        Svc::serving(ns, name, versions, "http", spawn_echo)
    }

    /// Like [`Svc::new`], the Pods started by `spawn` (e.g. [`spawn_tcp_echo`])
    /// behind a port named `port_name`.
    pub(crate) fn serving(
        ns: &str,
        name: &str,
        versions: &[&str],
        port_name: &str,
        spawn: fn(&str, Ipv4Addr, u16) -> Proc,
    ) -> Svc {
        let target = free_port();
        let pods = versions
            .iter()
            .map(|v| {
                let pod = format!("{name}-{v}");
                let ip = loopback_ip();
                let proc = spawn(&pod, ip, target);
                Pod {
                    name: pod,
                    ip,
                    version: v.to_string(),
                    _proc: Some(proc),
                }
            })
            .collect();
        Svc {
            ns: ns.into(),
            name: name.into(),
            port: free_port(),
            port_name: port_name.into(),
            more_ports: Vec::new(),
            target,
            pods,
        }
    }

    /// Adds a service port named `port_name` (a fresh number, returned) to
    /// the same target port.
    pub(crate) fn with_port(&mut self, port_name: &str) -> u16 {
        let port = free_port();
        self.more_ports.push((port_name.into(), port));
        port
    }

    /// Adds a ready endpoint where nothing listens.
    fn with_dead_pod(mut self, version: &str) -> Svc {
        let name = format!("{}-{version}", self.name);
        self.pods.push(Pod {
            name,
            ip: loopback_ip(),
            version: version.into(),
            _proc: None,
        });
        self
    }

    pub(crate) fn host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.ns)
    }

    fn cluster(&self, subset: &str) -> String {
        format!("outbound|{}|{subset}|{}", self.port, self.host())
    }

    /// `cluster.outbound|P|SUBSET|HOST.STAT`
    fn stat(&self, subset: &str, stat: &str) -> String {
        format!("cluster.{}.{stat}", self.cluster(subset))
    }

    /// Service, Pods and EndpointSlice as Kubernetes YAML.
    pub(crate) fn yaml(&self) -> String {
        let (ns, name, target) = (&self.ns, &self.name, self.target);
        let ports: Vec<(&str, u16)> = std::iter::once((self.port_name.as_str(), self.port))
            .chain(self.more_ports.iter().map(|(n, p)| (n.as_str(), *p)))
            .collect();
        let service_ports: Vec<String> = ports
            .iter()
            .map(|(n, p)| format!("{{name: {n}, port: {p}, targetPort: {target}}}"))
            .collect();
        let slice_ports: Vec<String> = ports
            .iter()
            .map(|(n, _)| format!("{{name: {n}, port: {target}}}"))
            .collect();
        let mut docs = vec![format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{}]\n",
            service_ports.join(", ")
        )];
        let mut endpoints = String::new();
        for p in &self.pods {
            let (pod, ip, version) = (&p.name, p.ip, &p.version);
            docs.push(format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}, labels: {{app: {name}, version: {version}}}}}\nstatus: {{podIP: \"{ip}\"}}\n"
            ));
            endpoints.push_str(&format!(
                "- addresses: [\"{ip}\"]\n  targetRef: {{kind: Pod, name: {pod}, namespace: {ns}}}\n"
            ));
        }
        docs.push(format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{}]\nendpoints:\n{endpoints}",
            slice_ports.join(", ")
        ));
        docs.join("---\n")
    }
}

/// A DestinationRule with one subset per `version` label value.
pub(crate) fn subsets_rule(svc: &Svc, versions: &[&str]) -> String {
    let subsets: String = versions
        .iter()
        .map(|v| format!("  - {{name: {v}, labels: {{version: {v}}}}}\n"))
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  host: {name}\n  subsets:\n{subsets}",
        name = svc.name,
        ns = svc.ns
    )
}

/// A VirtualService for `svc` (short host, resolved in its namespace) with
/// the given `http:` list, indented by two spaces.
fn virtual_service(svc: &Svc, version: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/{version}\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{name}]\n  http:\n{http}",
        name = svc.name,
        ns = svc.ns
    )
}

/// The control plane on a config dir and one client proxy.
pub(crate) struct Mesh {
    dir: TempDir,
    pub(crate) rudder: Rudder,
    pub(crate) envoy: Envoy,
    node: String,
}

impl Mesh {
    /// Writes `files` (name, YAML), starts `rudder serve` and a client Envoy
    /// in `demo`, and waits until Envoy is ready.
    pub(crate) fn start<N: AsRef<str>>(files: &[(N, String)]) -> Mesh {
        let dir = workdir("policy");
        for (name, text) in files {
            write(dir.path(), name.as_ref(), text);
        }
        let rudder = spawn_rudder(dir.path(), &[]);
        let envoy = proxy(&rudder, CLIENT);
        let mesh = Mesh {
            dir,
            rudder,
            envoy,
            node: CLIENT.to_string(),
        };
        mesh.assert_no_nack();
        mesh
    }

    /// Replaces the client proxy by one for `node` (never two at once: both
    /// would listen on the same 127.0.0.1 ports).
    fn switch_proxy(&mut self, node: &str) {
        self.envoy.proc.kill();
        self.envoy = proxy(&self.rudder, node);
        self.node = node.to_string();
    }

    pub(crate) fn write(&self, file: &str, text: &str) {
        write(self.dir.path(), file, text);
    }

    /// Deletes `file` from the config dir, as `kubectl delete` would the objects.
    pub(crate) fn remove(&self, file: &str) {
        let path = self.dir.path().join(file);
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }

    /// Writes `file` and waits until Envoy's route configuration changes.
    fn edit_routes(&self, file: &str, text: &str) {
        let before = self.route_configs();
        self.write(file, text);
        let changed = poll(PROPAGATION, || {
            (self.route_configs() != before).then_some(())
        });
        self.assert_no_nack();
        assert!(
            changed.is_some(),
            "Envoy's routes did not change within {PROPAGATION:?} after editing {file}:\n{text}{}",
            self.routes_ctx()
        );
    }

    /// One request through the client proxy; panics (with context) on
    /// transport errors.
    fn send(&self, method: &str, svc: &Svc, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.try_send(method, svc, path, headers)
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {path} to {}: {e:#}{}",
                    svc.name,
                    self.routes_ctx()
                )
            })
    }

    fn try_send(
        &self,
        method: &str,
        svc: &Svc,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<HttpResponse> {
        let url = format!("http://127.0.0.1:{}{path}", svc.port);
        let mut all = vec![("host", svc.name.as_str())];
        all.extend_from_slice(headers);
        http_request_no_redirect(method, &url, &all, None)
    }

    fn get(&self, svc: &Svc, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.send("GET", svc, path, headers)
    }

    /// The backend (Pod name) that answered, or `status N` for non-200s.
    fn backend(&self, svc: &Svc, path: &str, headers: &[(&str, &str)]) -> String {
        let resp = self.get(svc, path, headers);
        if resp.status != 200 {
            return format!("status {}", resp.status);
        }
        resp.json()["backend"].as_str().unwrap_or("?").to_string()
    }

    /// Answers per backend over `n` requests.
    fn spread(
        &self,
        svc: &Svc,
        path: &str,
        headers: &[(&str, &str)],
        n: usize,
    ) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            *seen.entry(self.backend(svc, path, headers)).or_default() += 1;
        }
        seen
    }

    pub(crate) fn stat(&self, name: &str) -> u64 {
        self.envoy.stat(name).unwrap_or(0)
    }

    /// Envoy's dynamic route configurations, without versions and times.
    fn route_configs(&self) -> Value {
        let section = self.envoy.config_section("RoutesConfigDump");
        let configs = section["dynamic_route_configs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Value::Array(
            configs
                .into_iter()
                .map(|c| c["route_config"].clone())
                .collect(),
        )
    }

    /// `rudder translate` for this proxy on the same config dir.
    fn translate(&self, kind: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["translate", "--config-dir"])
            .arg(self.dir.path())
            .args([
                "--node-id",
                &self.node,
                "--interception",
                "NONE",
                "--type",
                kind,
            ])
            .output()
            .expect("running rudder translate");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Failure context for routing: rudder's log, Envoy's routes, translate's routes.
    pub(crate) fn routes_ctx(&self) -> String {
        let envoy = serde_json::to_string_pretty(&self.route_configs()).unwrap_or_default();
        format!(
            "{}\n--- Envoy config_dump: dynamic route configs ---\n{}\n--- rudder translate --type rds ---\n{}",
            self.rudder.log_tail(30),
            excerpt(&envoy),
            excerpt(&self.translate("rds"))
        )
    }

    /// Failure context for cluster policy: rudder's log, the cluster as Envoy
    /// has it and as translate prints it, and Envoy's /clusters for it.
    pub(crate) fn cluster_ctx(&self, cluster: &str) -> String {
        let section = self.envoy.config_section("ClustersConfigDump");
        let in_envoy = section["dynamic_active_clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["cluster"]["name"] == cluster).cloned())
            .unwrap_or(Value::Null);
        let translated: Value = serde_json::from_str(&self.translate("cds")).unwrap_or(Value::Null);
        let translated = translated["clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == cluster).cloned())
            .unwrap_or(Value::Null);
        let hosts: Vec<String> = self
            .envoy
            .admin_get("/clusters")
            .lines()
            .filter(|l| l.starts_with(&format!("{cluster}::")))
            .map(str::to_string)
            .collect();
        format!(
            "{}\n--- Envoy config_dump: cluster {cluster} ---\n{}\n--- rudder translate: cluster {cluster} ---\n{}\n--- Envoy /clusters ---\n{}\n{}",
            self.rudder.log_tail(30),
            excerpt(&serde_json::to_string_pretty(&in_envoy).unwrap_or_default()),
            excerpt(&serde_json::to_string_pretty(&translated).unwrap_or_default()),
            hosts.join("\n"),
            self.routes_ctx()
        )
    }

    /// Failure context for TCP and TLS routing, which lives in listeners:
    /// rudder's log and the loopback listener on `port` as Envoy has it and
    /// as translate prints it.
    pub(crate) fn listener_ctx(&self, port: u16) -> String {
        let name = format!("127.0.0.1_{port}");
        let section = self.envoy.config_section("ListenersConfigDump");
        let in_envoy = section["dynamic_listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name.as_str()).cloned())
            .unwrap_or(Value::Null);
        let translated: Value = serde_json::from_str(&self.translate("lds")).unwrap_or(Value::Null);
        let translated = translated["listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name.as_str()).cloned())
            .unwrap_or(Value::Null);
        format!(
            "{}\n--- Envoy config_dump: listener {name} ---\n{}\n--- rudder translate: listener {name} ---\n{}",
            self.rudder.log_tail(30),
            excerpt(&serde_json::to_string_pretty(&in_envoy).unwrap_or_default()),
            excerpt(&serde_json::to_string_pretty(&translated).unwrap_or_default()),
        )
    }

    /// NACKs this proxy sent, as `type: message`, from /debug/syncz.
    fn nacks(&self) -> Vec<String> {
        let syncz: Value =
            serde_json::from_str(&self.rudder.admin_get("/debug/syncz").1).expect("syncz is JSON");
        let streams = syncz.as_array().cloned().unwrap_or_default();
        let mine = streams.iter().filter(|p| p["proxy"] == self.node.as_str());
        let types = mine.flat_map(|p| p["types"].as_object().cloned().unwrap_or_default());
        types
            .filter(|(_, t)| !t["last_nack"].is_null())
            .map(|(ty, t)| format!("{ty}: {}", t["last_nack"]["message"]))
            .collect()
    }

    /// Panics when Envoy refused any of what Rudder sent.
    pub(crate) fn assert_no_nack(&self) {
        let nacks = self.nacks();
        assert!(
            nacks.is_empty(),
            "Envoy rejected Rudder's config:\n{}{}",
            nacks.join("\n"),
            self.rudder.log_tail(30)
        );
    }

    /// /debug/configz as JSON.
    fn configz(&self) -> Value {
        serde_json::from_str(&self.rudder.admin_get("/debug/configz").1).expect("configz is JSON")
    }
}

fn proxy(rudder: &Rudder, node: &str) -> Envoy {
    let envoy = spawn_envoy(
        node,
        rudder.xds_addr,
        false,
        &["--meta", "INTERCEPTION_MODE=NONE"],
    );
    envoy.wait_ready();
    envoy
}

fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_CHARS {
        return text.to_string();
    }
    let cut = (0..=EXCERPT_CHARS)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}\n... ({} more bytes)", &text[..cut], text.len() - cut)
}

fn write(dir: &Path, file: &str, text: &str) {
    // Write then rename so the watcher never reads a half-written file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

/// A backend that accepts connections and never answers: a slow service.
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn spawn(ip: Ipv4Addr, port: u16) -> Silent {
        let listener = TcpListener::bind((ip, port)).expect("binding the silent backend");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                held.extend(conn.ok());
            }
        });
        Silent { addr, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag and closes everything.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn v1_v2(name: &str) -> Svc {
    Svc::new(NS, name, &["v1", "v2"])
}

fn weights(svc: &Svc, v1: u32, v2: u32) -> String {
    virtual_service(
        svc,
        "v1",
        &format!(
            "  - route:\n    - {{destination: {{host: {n}, subset: v1}}, weight: {v1}}}\n    - {{destination: {{host: {n}, subset: v2}}, weight: {v2}}}\n",
            n = svc.name
        ),
    )
}

#[test]
fn policy_weighted_canary_split() {
    let web = v1_v2("web");
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("dr.yaml", subsets_rule(&web, &["v1", "v2"])),
        ("vs.yaml", weights(&web, 80, 20)),
    ]);
    let seen = mesh.spread(&web, "/canary", &[], 200);
    let (v1, v2) = (
        seen.get("web-v1").copied().unwrap_or(0),
        seen.get("web-v2").copied().unwrap_or(0),
    );
    eprintln!("80/20 split over 200 requests: {seen:?}");
    // Binomial(200, 0.2): 20..=60 is about 3.5 standard deviations either side.
    assert!(
        v1 + v2 == 200 && v1 > 0 && (20..=60).contains(&v2),
        "80/20 split: {seen:?}{}",
        mesh.routes_ctx()
    );

    mesh.edit_routes("vs.yaml", &weights(&web, 0, 100));
    let seen = mesh.spread(&web, "/canary", &[], 50);
    assert_eq!(
        seen,
        BTreeMap::from([("web-v2".to_string(), 50)]),
        "0/100: all to v2{}",
        mesh.routes_ctx()
    );
}

#[test]
fn policy_header_match_routes_to_subset() {
    let web = v1_v2("web");
    let http = "  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: web, subset: v2}}]\n  - route: [{destination: {host: web, subset: v1}}]\n";
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("dr.yaml", subsets_rule(&web, &["v1", "v2"])),
        ("vs.yaml", virtual_service(&web, "v1", http)),
    ]);
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("end-user", "jason")], "web-v2"),
        (&[], "web-v1"),
        (&[("end-user", "jasonx")], "web-v1"),
        (&[("end-user", "alice")], "web-v1"),
    ];
    for (headers, want) in cases {
        let seen = mesh.spread(&web, "/", headers, 20);
        assert_eq!(
            seen,
            BTreeMap::from([(want.to_string(), 20)]),
            "headers {headers:?}{}",
            mesh.routes_ctx()
        );
    }
}

#[test]
fn policy_uri_prefix_exact_regex_and_rewrite() {
    let web = v1_v2("web");
    let http = concat!(
        "  - match: [{uri: {exact: /exact}}]\n    route: [{destination: {host: web, subset: v2}}]\n",
        "  - match: [{uri: {prefix: /api/}}]\n    rewrite: {uri: /}\n    route: [{destination: {host: web, subset: v1}}]\n",
        "  - match: [{uri: {regex: '/r[0-9]+/.*'}}]\n    rewrite: {authority: rewritten.example}\n    route: [{destination: {host: web, subset: v2}}]\n",
        "  - match: [{uri: {prefix: /re/}}]\n    rewrite: {uriRegexRewrite: {match: '^/re/([^/]+)/(.*)$', rewrite: '/\\2/by/\\1'}}\n    route: [{destination: {host: web, subset: v1}}]\n",
        "  - route: [{destination: {host: web, subset: v1}}]\n",
    );
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("dr.yaml", subsets_rule(&web, &["v1", "v2"])),
        ("vs.yaml", virtual_service(&web, "v1", http)),
    ]);
    // (request path, backend, path the backend sees, host the backend sees)
    let cases = [
        ("/exact", "web-v2", "/exact", "web"),
        ("/exactly", "web-v1", "/exactly", "web"),
        ("/api/items?x=1", "web-v1", "/items?x=1", "web"),
        ("/api", "web-v1", "/api", "web"),
        ("/r42/x", "web-v2", "/r42/x", "rewritten.example"),
        ("/rx/x", "web-v1", "/rx/x", "web"),
        ("/re/alice/docs/1", "web-v1", "/docs/1/by/alice", "web"),
    ];
    for (path, backend, seen_path, seen_host) in cases {
        let resp = mesh.get(&web, path, &[]);
        let body = if resp.status == 200 {
            resp.json()
        } else {
            Value::Null
        };
        let got = (
            body["backend"].as_str(),
            body["path"].as_str(),
            body["host"].as_str(),
        );
        assert_eq!(
            (resp.status, got),
            (200, (Some(backend), Some(seen_path), Some(seen_host))),
            "GET {path}: {}{}",
            resp.body,
            mesh.routes_ctx()
        );
    }
}

#[test]
fn policy_redirect_and_direct_response() {
    let web = Svc::new(NS, "web", &["v1"]);
    let http = concat!(
        "  - match: [{uri: {exact: /old}}]\n    redirect: {uri: /new, authority: new.example, redirectCode: 302}\n",
        "  - match: [{uri: {exact: /moved}}]\n    redirect: {uri: /here}\n",
        "  - match: [{uri: {prefix: /maintenance}}]\n    directResponse: {status: 429, body: {string: \"slow down, please\"}}\n",
        "  - route: [{destination: {host: web}}]\n",
    );
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("vs.yaml", virtual_service(&web, "v1", http)),
    ]);
    let upstream = web.stat("", "upstream_rq_total");

    let resp = mesh.get(&web, "/old", &[]);
    assert_eq!(
        (resp.status, resp.header("location")),
        (302, Some("http://new.example/new")),
        "{resp:?}{}",
        mesh.routes_ctx()
    );
    // redirectCode defaults to 301; without authority the host stays.
    let resp = mesh.get(&web, "/moved", &[]);
    assert_eq!(
        (resp.status, resp.header("location")),
        (301, Some("http://web/here")),
        "{resp:?}{}",
        mesh.routes_ctx()
    );
    let resp = mesh.get(&web, "/maintenance/now", &[]);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (429, "slow down, please"),
        "{resp:?}{}",
        mesh.routes_ctx()
    );
    assert_eq!(
        mesh.stat(&upstream),
        0,
        "redirects and direct responses never reach a backend{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
    // Everything else still reaches the backend.
    assert_eq!(mesh.backend(&web, "/other", &[]), "web-v1");
}

#[test]
fn policy_fault_abort_and_delay() {
    let web = Svc::new(NS, "web", &["v1"]);
    let http = concat!(
        "  - match: [{headers: {x-fault: {exact: abort}}}]\n    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{headers: {x-fault: {exact: delay}}}]\n    fault: {delay: {fixedDelay: 500ms, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{headers: {x-fault: {exact: grpc}}}]\n    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
        "  - route: [{destination: {host: web}}]\n",
    );
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("vs.yaml", virtual_service(&web, "v1", http)),
    ]);
    let upstream = web.stat("", "upstream_rq_total");
    let faults = format!("http.outbound_127.0.0.1_{}.fault", web.port);
    assert_eq!(mesh.backend(&web, "/", &[]), "web-v1");
    let before = mesh.stat(&upstream);

    for _ in 0..5 {
        let resp = mesh.get(&web, "/", &[("x-fault", "abort")]);
        assert_eq!(resp.status, 418, "abort: {resp:?}{}", mesh.routes_ctx());
    }
    assert_eq!(
        mesh.stat(&upstream),
        before,
        "aborted requests must not reach the backend{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
    assert_eq!(
        mesh.stat(&format!("{faults}.aborts_injected")),
        5,
        "{}",
        mesh.routes_ctx()
    );

    // A gRPC abort answers a gRPC caller with the gRPC status (UNAVAILABLE
    // is 14), in a trailers-only response, and never reaches the backend.
    let grpc = [("x-fault", "grpc"), ("content-type", "application/grpc")];
    for _ in 0..3 {
        let resp = mesh.send("POST", &web, "/pkg.Svc/Call", &grpc);
        assert_eq!(
            resp.header("grpc-status"),
            Some("14"),
            "gRPC abort: {resp:?}{}",
            mesh.routes_ctx()
        );
    }
    assert_eq!(
        mesh.stat(&format!("{faults}.aborts_injected")),
        8,
        "{}",
        mesh.routes_ctx()
    );
    assert_eq!(
        mesh.stat(&upstream),
        before,
        "no gRPC abort reached the backend"
    );

    let started = Instant::now();
    let resp = mesh.get(&web, "/", &[("x-fault", "delay")]);
    let took = started.elapsed();
    eprintln!("fault delay 500ms: answered after {took:?}");
    assert_eq!(resp.status, 200, "delayed request still answered: {resp:?}");
    assert!(
        took >= Duration::from_millis(450),
        "fixedDelay 500ms, answered after {took:?}{}",
        mesh.routes_ctx()
    );
    assert_eq!(
        mesh.stat(&format!("{faults}.delays_injected")),
        1,
        "{}",
        mesh.routes_ctx()
    );
    assert_eq!(
        mesh.stat(&upstream),
        before + 1,
        "the delayed request reached the backend once"
    );
}

#[test]
fn policy_timeout_and_retries() {
    let web = Svc::new(NS, "web", &["v1"]);
    let slow_port = free_port();
    let slow_ip = loopback_ip();
    let _silent = Silent::spawn(slow_ip, slow_port);
    let slow = Svc {
        ns: NS.into(),
        name: "slow".into(),
        port: free_port(),
        target: slow_port,
        port_name: "http".into(),
        more_ports: Vec::new(),
        pods: vec![Pod {
            name: "slow-v1".into(),
            ip: slow_ip,
            version: "v1".into(),
            _proc: None,
        }],
    };
    // Istio rejects retryOn with `attempts: 0` (retries disabled), so the off switch is attempts alone.
    let retries = |policy: &str| {
        virtual_service(
            &web,
            "v1",
            &format!("  - retries: {{{policy}}}\n    route: [{{destination: {{host: web}}}}]\n"),
        )
    };
    let timeout = virtual_service(
        &slow,
        "v1",
        "  - timeout: 0.5s\n    route: [{destination: {host: slow}}]\n",
    );
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("slow.yaml", slow.yaml()),
        ("vs.yaml", retries("attempts: 3, retryOn: 5xx")),
        ("slow-vs.yaml", timeout),
    ]);

    // retries: attempts 3, retryOn 5xx: one request, three retries, then the 503.
    let retry = web.stat("", "upstream_rq_retry");
    let before = mesh.stat(&retry);
    let resp = mesh.get(&web, "/status/503", &[]);
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(
        mesh.stat(&retry) - before,
        3,
        "attempts: 3 -> 3 retries{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
    // Envoy counts the retried answers apart from the final one.
    let answers = (
        mesh.stat(&web.stat("", "retry.upstream_rq_503")),
        mesh.stat(&web.stat("", "upstream_rq_503")),
    );
    assert_eq!(
        answers,
        (3, 1),
        "the backend answered 503 four times{}",
        mesh.cluster_ctx(&web.cluster(""))
    );

    // attempts: 0 turns retries off.
    mesh.edit_routes("vs.yaml", &retries("attempts: 0"));
    let before = mesh.stat(&retry);
    let resp = mesh.get(&web, "/status/503", &[]);
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(
        mesh.stat(&retry),
        before,
        "attempts: 0 -> no retry{}",
        mesh.cluster_ctx(&web.cluster(""))
    );

    // timeout: 0.5s against a backend that never answers: Envoy gives up with a 504.
    let started = Instant::now();
    let resp = mesh.get(&slow, "/", &[]);
    let took = started.elapsed();
    eprintln!(
        "timeout 0.5s against a silent backend: {} after {took:?}",
        resp.status
    );
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (504, "upstream request timeout"),
        "{}",
        mesh.routes_ctx()
    );
    assert!(
        took >= Duration::from_millis(450),
        "answered after {took:?}"
    );
    assert_eq!(
        mesh.stat(&slow.stat("", "upstream_rq_timeout")),
        1,
        "{}",
        mesh.cluster_ctx(&slow.cluster(""))
    );
}

#[test]
fn policy_header_manipulation() {
    let web = Svc::new(NS, "web", &["v1"]);
    let http = concat!(
        "  - headers:\n",
        "      request: {set: {x-set: from-mesh}, add: {x-add: from-mesh}, remove: [x-remove]}\n",
        "      response: {set: {x-resp-set: from-mesh}, add: {x-resp-add: from-mesh}, remove: [x-powered-by]}\n",
        "    route: [{destination: {host: web}}]\n",
    );
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("vs.yaml", virtual_service(&web, "v1", http)),
    ]);
    let resp = mesh.get(
        &web,
        "/",
        &[
            ("x-set", "from-client"),
            ("x-add", "from-client"),
            ("x-remove", "secret"),
            ("x-keep", "1"),
        ],
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let headers = &resp.json()["headers"];
    let got = |h: &str| headers[h].as_str().map(str::to_string);
    let ctx = || format!("backend saw {headers}{}", mesh.routes_ctx());
    assert_eq!(
        got("x-set").as_deref(),
        Some("from-mesh"),
        "set overwrites: {}",
        ctx()
    );
    assert_eq!(
        got("x-add").as_deref(),
        Some("from-client, from-mesh"),
        "add appends: {}",
        ctx()
    );
    assert_eq!(got("x-remove"), None, "remove drops the header: {}", ctx());
    assert_eq!(got("x-keep").as_deref(), Some("1"), "{}", ctx());
    assert_eq!(
        resp.header("x-resp-set"),
        Some("from-mesh"),
        "response set: {resp:?}{}",
        mesh.routes_ctx()
    );
    assert_eq!(
        resp.header("x-resp-add"),
        Some("from-mesh"),
        "response add: {resp:?}{}",
        mesh.routes_ctx()
    );
}

#[test]
fn policy_mirror() {
    let web = Svc::new(NS, "web", &["v1"]);
    let shadow = Svc::new(NS, "shadow", &["v1"]);
    let http = "  - route: [{destination: {host: web}}]\n    mirror: {host: shadow}\n    mirrorPercentage: {value: 100}\n";
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("shadow.yaml", shadow.yaml()),
        ("vs.yaml", virtual_service(&web, "v1", http)),
    ]);
    let seen = mesh.spread(&web, "/mirrored", &[], 10);
    assert_eq!(
        seen,
        BTreeMap::from([("web-v1".to_string(), 10)]),
        "the client's answers come from the primary{}",
        mesh.routes_ctx()
    );
    // Mirrored requests are fire-and-forget: their counters may trail a little.
    let mirrored = shadow.stat("", "upstream_rq_200");
    let got = poll(Duration::from_secs(5), || {
        (mesh.stat(&mirrored) >= 10).then_some(())
    });
    assert!(
        got.is_some(),
        "{mirrored} = {} (want 10){}",
        mesh.stat(&mirrored),
        mesh.cluster_ctx(&shadow.cluster(""))
    );
    assert_eq!(mesh.stat(&web.stat("", "upstream_rq_200")), 10);
}

#[test]
fn policy_cors_preflight() {
    let web = Svc::new(NS, "web", &["v1"]);
    let http = concat!(
        "  - route: [{destination: {host: web}}]\n",
        "    corsPolicy:\n",
        "      allowOrigins: [{exact: \"https://good.example\"}, {regex: \"https://.*\\\\.trusted\\\\.example\"}]\n",
        "      allowMethods: [GET, POST]\n",
        "      allowHeaders: [x-custom]\n",
        "      maxAge: 24h\n",
    );
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("vs.yaml", virtual_service(&web, "v1", http)),
    ]);
    let preflight = |origin: &str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-custom"),
        ];
        mesh.send("OPTIONS", &web, "/cart", &headers)
    };
    for origin in ["https://good.example", "https://a.trusted.example"] {
        let resp = preflight(origin);
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some(origin),
            "preflight from {origin}: {resp:?}{}",
            mesh.routes_ctx()
        );
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("GET,POST"),
            "{resp:?}"
        );
        assert_eq!(
            resp.header("access-control-max-age"),
            Some("86400"),
            "{resp:?}"
        );
    }
    let resp = preflight("https://evil.example");
    assert_eq!(
        resp.header("access-control-allow-origin"),
        None,
        "a disallowed origin gets no ACAO: {resp:?}{}",
        mesh.routes_ctx()
    );
    // A simple cross-origin GET from an allowed origin gets ACAO too.
    let resp = mesh.get(&web, "/", &[("origin", "https://good.example")]);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://good.example"),
        "{resp:?}"
    );
}

#[test]
fn policy_consistent_hash_sticks() {
    let web = Svc::new(NS, "web", &["a", "b", "c"]);
    let dr = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {{httpHeaderName: x-user}}\n"
    );
    let mesh = Mesh::start(&[("web.yaml", web.yaml()), ("dr.yaml", dr)]);
    for user in ["alice", "bob"] {
        let seen = mesh.spread(&web, "/", &[("x-user", user)], 30);
        assert!(
            seen.len() == 1 && seen.keys().all(|k| k.starts_with("web-")),
            "user {user} must stick to one backend: {seen:?}{}",
            mesh.cluster_ctx(&web.cluster(""))
        );
    }
    let users: BTreeSet<String> = (0..20)
        .map(|i| mesh.backend(&web, "/", &[("x-user", &format!("user-{i}"))]))
        .collect();
    eprintln!("20 users over 3 backends: {users:?}");
    assert!(
        users.len() >= 2 && users.iter().all(|k| k.starts_with("web-")),
        "users spread: {users:?}{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
}

/// `connectionPool` DestinationRule for `web` with the given `http:` settings.
fn pool_rule(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  host: web\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: 1}}\n      http: {{{http}}}\n"
    )
}

/// Sends 20 requests at once; counts answers by status (0: transport error).
fn burst(mesh: &Mesh, svc: &Svc) -> BTreeMap<u16, usize> {
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    mesh.try_send("GET", svc, "/", &[])
                        .map(|r| r.status)
                        .unwrap_or(0)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut counts = BTreeMap::new();
    for s in statuses {
        *counts.entry(s).or_insert(0) += 1;
    }
    counts
}

#[test]
fn policy_circuit_breaker_overflows() {
    let web = Svc::new(NS, "web", &["v1"]);
    // The fault delay holds every request for 1s, then releases them to the
    // router together, so they compete for the one connection.
    let vs = virtual_service(&web, "v1", "  - fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}\n    retries: {attempts: 0}\n    route: [{destination: {host: web}}]\n");
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("dr.yaml", pool_rule("http1MaxPendingRequests: 1")),
        ("vs.yaml", vs),
    ]);
    let overflow = web.stat("", "upstream_rq_pending_overflow");
    let check = |what: &str| {
        let before = mesh.stat(&overflow);
        let counts = burst(&mesh, &web);
        let overflowed = mesh.stat(&overflow) - before;
        eprintln!("{what}: 20 concurrent requests -> {counts:?}, pending overflow +{overflowed}");
        let ctx = || {
            format!(
                "{what}: {counts:?}, overflow +{overflowed}{}",
                mesh.cluster_ctx(&web.cluster(""))
            )
        };
        assert!(
            counts.get(&200).is_some_and(|n| *n >= 1),
            "some requests succeed: {}",
            ctx()
        );
        assert!(
            counts.get(&503).is_some_and(|n| *n >= 1),
            "some requests overflow with 503: {}",
            ctx()
        );
        assert!(
            overflowed > 0,
            "upstream_rq_pending_overflow must grow: {}",
            ctx()
        );
        assert!(counts.keys().all(|s| [200, 503].contains(s)), "{}", ctx());
    };
    check("maxConnections 1, http1MaxPendingRequests 1");

    // Istio's http.maxRequestsPerConnection must reach Envoy too.
    let cluster = web.cluster("");
    mesh.write(
        "dr.yaml",
        &pool_rule("http1MaxPendingRequests: 1, maxRequestsPerConnection: 1"),
    );
    let applied = poll(PROPAGATION, || {
        if !mesh.nacks().is_empty() {
            return Some(false);
        }
        let section = mesh.envoy.config_section("ClustersConfigDump");
        let text = section["dynamic_active_clusters"].to_string();
        text.contains("\"max_requests_per_connection\":1")
            .then_some(true)
    });
    mesh.assert_no_nack();
    assert_eq!(
        applied,
        Some(true),
        "maxRequestsPerConnection never reached Envoy{}",
        mesh.cluster_ctx(&cluster)
    );
    check("maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1");
}

#[test]
fn policy_outlier_detection_ejects() {
    let web = Svc::new(NS, "web", &["v1"]).with_dead_pod("v2");
    let dead = web.pods[1].ip;
    let dr = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  host: web\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}}\n"
    );
    // No retries, so a request sent to the dead endpoint fails visibly.
    let vs = virtual_service(
        &web,
        "v1",
        "  - retries: {attempts: 0}\n    route: [{destination: {host: web}}]\n",
    );
    let mesh = Mesh::start(&[("web.yaml", web.yaml()), ("dr.yaml", dr), ("vs.yaml", vs)]);
    let ejected = web.stat("", "outlier_detection.ejections_enforced_total");
    let mut before = BTreeMap::new();
    for _ in 0..40 {
        if mesh.stat(&ejected) > 0 {
            break;
        }
        *before.entry(mesh.backend(&web, "/", &[])).or_insert(0) += 1;
    }
    eprintln!("before ejection: {before:?}");
    assert!(
        mesh.stat(&ejected) > 0,
        "the dead endpoint {dead} was never ejected; answers {before:?}{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
    let clusters = mesh.envoy.admin_get("/clusters");
    let flag = format!(
        "{}::{dead}:{}::health_flags::/failed_outlier_check",
        web.cluster(""),
        web.target
    );
    assert!(
        clusters.contains(&flag),
        "{flag} missing{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
    let after = mesh.spread(&web, "/", &[], 30);
    assert_eq!(
        after,
        BTreeMap::from([("web-v1".to_string(), 30)]),
        "after ejection every request succeeds{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
}

#[test]
fn policy_sidecar_scoping_shrinks_config() {
    let web = Svc::new(NS, "web", &["v1"]);
    let api = Svc::new(NS, "api", &["v1"]);
    let cart = Svc::new("shop", "cart", &["v1"]);
    let pay = Svc::new("shop", "pay", &["v1"]);
    let metrics = Svc::new("ops", "metrics", &["v1"]);
    let sidecar = format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: {NS}}}\nspec:\n  egress:\n  - hosts: [\"./*\"]\n");
    let all = [&web, &api, &cart, &pay, &metrics];
    let mut files: Vec<(String, String)> = all
        .iter()
        .map(|s| (format!("{}.yaml", s.name), s.yaml()))
        .collect();
    files.push(("sidecar.yaml".into(), sidecar));
    let mut mesh = Mesh::start(&files);
    let outbound = |mesh: &Mesh| -> BTreeSet<String> {
        mesh.envoy
            .dynamic_cluster_names()
            .into_iter()
            .filter(|c| c.starts_with("outbound|"))
            .collect()
    };
    let counts = |mesh: &Mesh| {
        let configs = mesh.route_configs();
        let vhosts: usize = configs
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| c["virtual_hosts"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0);
        let routes = configs.as_array().map_or(0, Vec::len);
        (
            mesh.envoy.dynamic_cluster_names().len(),
            routes,
            vhosts,
            mesh.envoy.dynamic_listener_names().len(),
        )
    };
    let cluster_names =
        |svcs: &[&Svc]| -> BTreeSet<String> { svcs.iter().map(|s| s.cluster("")).collect() };

    // Scoped: a proxy in `demo`, whose Sidecar imports `./*` only.
    let scoped = counts(&mesh);
    eprintln!("Sidecar egress ./* (proxy in demo): {} clusters, {} route configs, {} virtual hosts, {} listeners", scoped.0, scoped.1, scoped.2, scoped.3);
    assert_eq!(
        outbound(&mesh),
        cluster_names(&[&web, &api]),
        "only demo's services{}",
        mesh.cluster_ctx(&web.cluster(""))
    );
    assert_eq!(mesh.backend(&web, "/", &[]), "web-v1");
    for svc in [&cart, &pay, &metrics] {
        let result = mesh.try_send("GET", svc, "/", &[]);
        assert!(
            !matches!(&result, Ok(r) if r.status == 200),
            "{} is out of scope, yet answered: {result:?}{}",
            svc.name,
            mesh.routes_ctx()
        );
    }

    // Unscoped: a proxy in a namespace without a Sidecar sees everything.
    mesh.switch_proxy("sidecar~127.0.0.6~tester-0.qa~qa.svc.cluster.local");
    let unscoped = counts(&mesh);
    eprintln!(
        "no Sidecar (proxy in qa): {} clusters, {} route configs, {} virtual hosts, {} listeners",
        unscoped.0, unscoped.1, unscoped.2, unscoped.3
    );
    assert_eq!(
        outbound(&mesh),
        cluster_names(&all),
        "{}",
        mesh.cluster_ctx(&cart.cluster(""))
    );
    for svc in all {
        // From qa, other namespaces' services need NAME.NAMESPACE.
        let host = format!("{}.{}", svc.name, svc.ns);
        let (status, body) = http_get(&format!("http://127.0.0.1:{}/", svc.port), Some(&host));
        assert_eq!(status, 200, "{host}: {body}{}", mesh.routes_ctx());
    }
    assert!(
        scoped.0 < unscoped.0 && scoped.2 < unscoped.2,
        "scoping shrinks config: {scoped:?} vs {unscoped:?}"
    );
}

#[test]
fn policy_invalid_virtual_service_is_rejected_and_old_routing_stays() {
    let web = v1_v2("web");
    let only_v1 = virtual_service(
        &web,
        "v1",
        "  - route: [{destination: {host: web, subset: v1}}]\n",
    );
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("dr.yaml", subsets_rule(&web, &["v1", "v2"])),
        ("vs.yaml", only_v1),
    ]);
    let all_v1 = BTreeMap::from([("web-v1".to_string(), 20)]);
    assert_eq!(
        mesh.spread(&web, "/", &[], 20),
        all_v1,
        "{}",
        mesh.routes_ctx()
    );
    let routes_before = mesh.route_configs();

    let negative = weights(&web, 50, 1).replace("weight: 1}", "weight: -1}");
    let bad_regex = virtual_service(&web, "v1", "  - match: [{uri: {regex: '(unclosed'}}]\n    route: [{destination: {host: web, subset: v2}}]\n");
    let cases = [
        (
            negative,
            "spec.http[0].route[1].weight",
            "must not be negative",
        ),
        (bad_regex, "spec.http[0].match[0].uri.regex", "invalid RE2"),
    ];
    for (text, field, reason) in cases {
        mesh.write("vs.yaml", &text);
        let rejected = wait_for("the rejection on /debug/configz", PROPAGATION, || {
            let configz = mesh.configz();
            configz["rejected"]
                .as_array()?
                .iter()
                .find(|r| r["field"] == field)
                .cloned()
        });
        eprintln!("rejected: {rejected}");
        let message = rejected["message"].as_str().unwrap_or_default();
        assert!(
            rejected["reason"]
                .as_str()
                .unwrap_or_default()
                .contains(reason)
                && message.contains("vs.yaml")
                && message.contains(field),
            "{rejected}{}",
            mesh.rudder.log_tail(30)
        );
        assert!(
            mesh.rudder.log_tail(50).contains(field),
            "the rejection is logged too"
        );
        // The previous VirtualService keeps routing: all to v1 (without any
        // VirtualService, v2 would get traffic too).
        assert_eq!(
            mesh.spread(&web, "/", &[], 20),
            all_v1,
            "{}",
            mesh.routes_ctx()
        );
        assert_eq!(
            mesh.route_configs(),
            routes_before,
            "Envoy's routes must not change{}",
            mesh.routes_ctx()
        );
    }
}

#[test]
fn policy_v1beta1_and_v1alpha3_spellings_are_accepted() {
    let web = v1_v2("web");
    let to = |version: &str, subset: &str| {
        virtual_service(
            &web,
            version,
            &format!("  - route: [{{destination: {{host: web, subset: {subset}}}}}]\n"),
        )
    };
    let dr = subsets_rule(&web, &["v1", "v2"])
        .replace("networking.istio.io/v1\n", "networking.istio.io/v1beta1\n");
    let mesh = Mesh::start(&[
        ("web.yaml", web.yaml()),
        ("dr.yaml", dr),
        ("vs.yaml", to("v1beta1", "v2")),
    ]);
    assert_eq!(
        mesh.spread(&web, "/", &[], 20),
        BTreeMap::from([("web-v2".to_string(), 20)]),
        "v1beta1{}",
        mesh.routes_ctx()
    );
    mesh.edit_routes("vs.yaml", &to("v1alpha3", "v1"));
    assert_eq!(
        mesh.spread(&web, "/", &[], 20),
        BTreeMap::from([("web-v1".to_string(), 20)]),
        "v1alpha3{}",
        mesh.routes_ctx()
    );
    let configz = mesh.configz();
    assert_eq!(configz["rejected"], Value::Array(vec![]), "{configz}");
    let accepted = configz["accepted"].to_string();
    assert!(
        accepted.contains("VirtualService") && accepted.contains("DestinationRule"),
        "{accepted}"
    );
}
