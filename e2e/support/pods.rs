//! Test "pods": network namespaces on a Linux bridge, each with the real
//! capture rules (`rudder iptables --apply`) and a real sidecar Envoy running
//! as uid 1337, so applications call each other by name, unaware of Envoy.
//!
//! Addressing (design.md, "Testing"): a [`Network`] owns 198.18.N.0/24 for
//! pods (its bridge `rdbrN` is .1) and 198.18.(128+N).0/24 for service VIPs,
//! N in 1..=127 and unique among all running tests (creating the bridge is
//! the claim). The host gets `blackhole 198.18.0.0/15`: a VIP no sidecar
//! captured goes nowhere. Names resolve through per-pod hosts files; pods have
//! no DNS server, and the host does not forward.
//!
//! Cleanup: Drop removes every namespace, link, file and process, also when a
//! test panics. Leftovers of runs that were killed outright are removed by the
//! next run ([`cleanup_stale`]): recognised by name prefix plus an owner tag
//! (pid and start time) whose process is gone.

mod host;
mod pod;
mod registry;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tempfile::TempDir;

use super::rudder::spawn_rudder_at;
use super::rudder::TlsXds;
use super::{free_port, workdir, Rudder};
use host::{
    assert_root, claim_bridge, disable_ipv6, etc_netns, host_lock, ip, ip_ok, lock, probe_netns,
    remove_blackhole_if_unused, write_atomic,
};
use registry::{hosts_file, mesh_yaml, Registry, ServiceDef};

pub use host::cleanup_stale;
pub use pod::Pod;

const NETNS_PREFIX: &str = "re2e-";
const BRIDGE_PREFIX: &str = "rdbr";
/// Host end of a pod's veth; the pod end is `rdp...` until it is renamed
/// `eth0` inside the pod.
const VETH_PREFIX: &str = "rdv";
const PEER_PREFIX: &str = "rdp";
/// Link alias `rudder-e2e OWNER` marks links as ours and names their owner.
const ALIAS_TAG: &str = "rudder-e2e";
const TEST_RANGE: &str = "198.18.0.0/15";
/// Routing protocol number marking the blackhole route as set by these tests.
const ROUTE_PROTO: &str = "77";
/// Serialises claims and cleanups of host-wide state among test processes.
const LOCK_FILE: &str = "/run/rudder-e2e.lock";
const PROXY_UID: u32 = 1337;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STAT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for one-shot commands in a pod (curl, clients).
const RUN_TIMEOUT_SECS: &str = "30";

/// One test's pod network: a bridge, its /24, its VIP range, and the mesh
/// config directory a `rudder serve` of this network reads.
pub struct Network {
    state: Arc<NetState>,
}

struct NetState {
    n: u8,
    bridge: String,
    dir: TempDir,
    config_dir: PathBuf,
    registry: Mutex<Registry>,
    rudder_log: Mutex<Option<PathBuf>>,
}

impl Network {
    /// Claims a /24 and its bridge. Panics (never skips) without root or
    /// network namespaces.
    pub fn new(test: &str) -> Network {
        assert_root();
        cleanup_stale();
        let dir = workdir(&format!("net-{test}"));
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).expect("creating the config dir");
        let n = claim_bridge();
        let net = Network {
            state: Arc::new(NetState {
                n,
                bridge: format!("{BRIDGE_PREFIX}{n}"),
                dir,
                config_dir,
                registry: Mutex::default(),
                rudder_log: Mutex::default(),
            }),
        };
        let bridge = net.state.bridge.as_str();
        disable_ipv6(bridge);
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/24", net.bridge_ip()),
            "dev",
            bridge,
        ]);
        ip_ok(&["link", "set", bridge, "up"]);
        probe_netns(n);
        net.state.write_files().expect("writing the empty mesh");
        net
    }

    /// The host's address on this network, where Rudder serves xDS.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.state.n, 1)
    }

    /// `198.18.N.0/24`: every pod of this network.
    pub fn pod_cidr(&self) -> String {
        format!("198.18.{}.0/24", self.state.n)
    }

    /// `198.18.(128+N).0/24`: every service VIP of this network.
    pub fn vip_cidr(&self) -> String {
        format!("198.18.{}.0/24", 128 + self.state.n)
    }

    /// The directory of Kubernetes YAML this network's Rudder serves.
    pub fn config_dir(&self) -> &Path {
        &self.state.config_dir
    }

    /// Adds (or replaces) a file of extra config, atomically.
    pub fn write_config(&self, file: &str, yaml: &str) {
        write_atomic(&self.state.config_dir.join(file), yaml)
            .unwrap_or_else(|e| panic!("writing {file}: {e}"));
    }

    /// A Service selecting `app=NAME` with a fresh VIP; ports are
    /// (name, port, target port). Its EndpointSlice lists the matching pods,
    /// and every pod's hosts file learns its names.
    pub fn add_service(&self, name: &str, namespace: &str, ports: &[(&str, u16, u16)]) -> Ipv4Addr {
        let mut reg = self.state.registry();
        let k = u8::try_from(reg.services.len() + 10).expect("too many services");
        assert!(k < 250, "too many services in one network");
        let vip = Ipv4Addr::new(198, 18, 128 + self.state.n, k);
        let ports = ports
            .iter()
            .map(|(p, port, target)| (p.to_string(), *port, *target))
            .collect();
        let (name, namespace) = (name.to_string(), namespace.to_string());
        reg.services.push(ServiceDef {
            name,
            namespace,
            vip,
            ports,
        });
        self.state
            .write_files_locked(&reg)
            .expect("writing the mesh and hosts files");
        vip
    }

    /// A pod in the registry: a Pod object, and an endpoint of every Service
    /// whose selector (`app=SERVICE`) matches `labels`.
    pub fn pod(&self, name: &str, namespace: &str, labels: &[(&str, &str)]) -> Pod {
        Pod::create(&self.state, name, namespace, labels, true)
    }

    /// A pod the mesh knows nothing about (no Pod object, no endpoints):
    /// an "external" destination that still never leaves the machine.
    pub fn external_pod(&self, name: &str) -> Pod {
        Pod::create(&self.state, name, "external", &[], false)
    }

    /// `rudder serve` for this network: xDS on the bridge address, admin on
    /// 127.0.0.1, default mesh config.
    pub fn rudder(&self) -> Rudder {
        self.spawn_rudder(None)
    }

    /// Like [`Network::rudder`] with `--mesh-config` holding `yaml`, e.g.
    /// `outboundTrafficPolicy: {mode: REGISTRY_ONLY}`.
    pub fn rudder_with_mesh_config(&self, yaml: &str) -> Rudder {
        self.spawn_rudder(Some(yaml))
    }

    /// `rudder serve` as the mesh CA: a fresh CA and token-signing key in this
    /// network's directory, the TLS xDS port on the bridge, and workload
    /// certificates living `workload_ttl` (e.g. `24h`, `15s`). Sidecars
    /// started from it connect over TLS with a service-account token minted
    /// for their pod, and so receive their identity.
    pub fn rudder_with_identity(&self, workload_ttl: &str) -> Rudder {
        self.rudder_with_identity_and_mesh_config(workload_ttl, None)
    }

    /// [`Network::rudder_with_identity`] with `--mesh-config` holding `yaml`.
    pub fn rudder_with_identity_and_mesh_config(
        &self,
        workload_ttl: &str,
        mesh_config: Option<&str>,
    ) -> Rudder {
        let tls_addr = SocketAddr::from((self.bridge_ip(), free_port()));
        let dir = self.state.dir.path().join("identity");
        let (tls, flags) = TlsXds::prepare(&dir, tls_addr, workload_ttl);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut rudder = self.spawn_rudder_args(mesh_config, &flags);
        rudder.tls = Some(tls);
        rudder
    }

    fn spawn_rudder(&self, mesh_config: Option<&str>) -> Rudder {
        self.spawn_rudder_args(mesh_config, &[])
    }

    fn spawn_rudder_args(&self, mesh_config: Option<&str>, more: &[&str]) -> Rudder {
        let xds = SocketAddr::from((self.bridge_ip(), free_port()));
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let mesh_path = self.state.dir.path().join("mesh-config.yaml");
        let mut extra = Vec::new();
        if let Some(yaml) = mesh_config {
            std::fs::write(&mesh_path, yaml).expect("writing the mesh config");
            extra = vec!["--mesh-config".to_string(), mesh_path.display().to_string()];
        }
        let mut extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        extra.extend_from_slice(more);
        let rudder = spawn_rudder_at(&self.state.config_dir, xds, admin, &extra);
        *lock(&self.state.rudder_log) = Some(rudder.proc.log_path().to_path_buf());
        rudder
    }

    /// The last `n` lines of this network's Rudder log, for failure messages.
    pub fn rudder_log_tail(&self, n: usize) -> String {
        self.state.rudder_log_tail(n)
    }
}

impl NetState {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    fn rudder_log_tail(&self, n: usize) -> String {
        let Some(path) = lock(&self.rudder_log).clone() else {
            return "\n(no rudder started on this network)".into();
        };
        let log = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("<{e}>"));
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        format!(
            "\n--- last {n} lines of rudder ({}) ---\n{tail}\n--- end of rudder ---",
            path.display()
        )
    }

    fn write_files(&self) -> std::io::Result<()> {
        self.write_files_locked(&self.registry())
    }

    /// Rewrites the mesh YAML (atomically) and every pod's hosts file (in
    /// place: `ip netns exec` bind-mounts it, so running apps see the edit).
    fn write_files_locked(&self, reg: &Registry) -> std::io::Result<()> {
        write_atomic(&self.config_dir.join("mesh.yaml"), &mesh_yaml(reg))?;
        for pod in &reg.pods {
            let dir = etc_netns(&pod.netns);
            if dir.is_dir() {
                std::fs::write(dir.join("hosts"), hosts_file(reg, pod))?;
            }
        }
        Ok(())
    }

    /// Drops a pod from the registry; never panics (runs in Drop).
    fn forget_pod(&self, netns: &str) {
        let mut reg = self.registry();
        reg.pods.retain(|p| p.netns != netns);
        if let Err(e) = self.write_files_locked(&reg) {
            eprintln!("rudder-e2e: rewriting the mesh after removing {netns}: {e}");
        }
    }
}

impl Drop for NetState {
    fn drop(&mut self) {
        let _lock = host_lock();
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("rudder-e2e: {e}");
        }
        remove_blackhole_if_unused();
        // Gone only when empty, i.e. when no other test has pods.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}
