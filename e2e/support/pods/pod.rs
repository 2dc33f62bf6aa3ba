//! One test pod: a network namespace on its network's bridge, the processes
//! started in it, and its sidecar.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

use super::host::{
    add_tagged_link, disable_ipv6, etc_netns, host_lock, ip, ip_ok, kill_netns_pids, lock,
    nsswitch_files_only, owner, proxy_envoy_bin, set_mode,
};
use super::registry::{service_account, PodDef};
use super::*;
use crate::support::envoy::envoy_flags;
use crate::support::{poll, render_bootstrap, workdir, Proc, Rudder};

/// A network namespace with one veth (`eth0`) on its network's bridge, and
/// the processes started in it. Drop kills them and removes everything.
pub struct Pod {
    net: Arc<NetState>,
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    ip: Ipv4Addr,
    netns: String,
    veth: String,
    dir: TempDir,
    procs: Mutex<Vec<Proc>>,
    sidecar: Mutex<Option<Proc>>,
}

impl Pod {
    /// Allocates the pod's address, creates its namespace and link, and
    /// adds it to the registry (when `registered`).
    pub(super) fn create(
        net: &Arc<NetState>,
        name: &str,
        namespace: &str,
        labels: &[(&str, &str)],
        registered: bool,
    ) -> Pod {
        let n = net.n;
        let (idx, ip, netns) = {
            let mut reg = net.registry();
            let taken = reg
                .pods
                .iter()
                .any(|p| p.name == name && p.namespace == namespace);
            assert!(!taken, "pod {name}.{namespace} exists already");
            let idx = reg.next_pod;
            assert!(idx < 240, "too many pods in one network");
            reg.next_pod += 1;
            let ip = Ipv4Addr::new(198, 18, n, 10 + idx);
            (
                idx,
                ip,
                format!("{NETNS_PREFIX}{}-{n}-{idx}-{name}", owner()),
            )
        };
        let dir = workdir(&format!("pod-{name}"));
        // Envoy runs as the proxy user and must read its bootstrap here.
        set_mode(dir.path(), 0o755);
        let pod = Pod {
            net: Arc::clone(net),
            name: name.to_string(),
            namespace: namespace.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip,
            netns: netns.clone(),
            veth: format!("{VETH_PREFIX}{n}x{idx}"),
            dir,
            procs: Mutex::default(),
            sidecar: Mutex::default(),
        };
        // From here on, Pod's Drop undoes whatever part was done.
        pod.create_links();
        let mut reg = net.registry();
        reg.pods.push(PodDef {
            name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            ip,
            netns,
            registered,
        });
        net.write_files_locked(&reg)
            .expect("writing the mesh and hosts files");
        drop(reg);
        pod
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    fn create_links(&self) {
        let (netns, veth, n) = (self.netns.as_str(), self.veth.as_str(), self.net.n);
        let peer = veth.replacen(VETH_PREFIX, PEER_PREFIX, 1);
        {
            let _lock = host_lock();
            let etc = etc_netns(netns);
            std::fs::create_dir_all(&etc)
                .unwrap_or_else(|e| panic!("creating {}: {e}", etc.display()));
            // No DNS server: names come from the hosts file only.
            std::fs::write(
                etc.join("resolv.conf"),
                "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
            )
            .expect("writing resolv.conf");
            std::fs::write(etc.join("nsswitch.conf"), nsswitch_files_only())
                .expect("writing nsswitch.conf");
            std::fs::write(etc.join("hosts"), "127.0.0.1\tlocalhost\n").expect("writing hosts");
            if let Err(e) = ip(&["netns", "add", netns]) {
                panic!("cannot create network namespace {netns} (need root and `ip netns`): {e}");
            }
            add_tagged_link(
                &["link", "add", veth, "type", "veth", "peer", "name", &peer],
                &[veth, &peer],
            )
            .unwrap_or_else(|e| panic!("creating the veth pair of pod {}: {e}", self.name));
        }
        disable_ipv6(veth);
        ip_ok(&["link", "set", veth, "master", &self.net.bridge, "up"]);
        ip_ok(&["link", "set", &peer, "netns", netns]);
        let sysctl = [
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ];
        self.run_checked(&sysctl);
        let cidr = format!("{}/24", self.ip);
        let gateway = Ipv4Addr::new(198, 18, n, 1).to_string();
        let steps: [&[&str]; 5] = [
            &["link", "set", &peer, "name", "eth0"],
            &["addr", "add", &cidr, "dev", "eth0"],
            &["link", "set", "eth0", "up"],
            &["link", "set", "lo", "up"],
            &["route", "add", "default", "via", &gateway],
        ];
        for step in steps {
            let mut args = vec!["-n", netns];
            args.extend_from_slice(step);
            ip_ok(&args);
        }
    }

    /// Starts `args` in the pod as root (so its traffic IS captured); the
    /// caller keeps the process (killed on drop).
    pub fn exec(&self, name: &str, args: &[&str]) -> Proc {
        self.spawn(name, None, args)
    }

    /// Like [`Pod::exec`] as `uid:gid` with no supplementary groups.
    pub fn exec_as(&self, uid: u32, gid: u32, name: &str, args: &[&str]) -> Proc {
        self.spawn(name, Some((uid, gid)), args)
    }

    fn spawn(&self, name: &str, user: Option<(u32, u32)>, args: &[&str]) -> Proc {
        let mut cmd = Command::new("ip");
        // setpriv: the process dies with the test even if the test process is
        // killed outright; `ip netns exec` and setpriv exec, so the Proc's
        // pid is the program's own.
        cmd.args([
            "netns",
            "exec",
            &self.netns,
            "setpriv",
            "--pdeathsig",
            "KILL",
        ]);
        if let Some((uid, gid)) = user {
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
            ]);
        }
        cmd.arg("--").args(args);
        Proc::spawn(&format!("{}-{name}", self.name), cmd)
    }

    /// Runs a one-shot command in the pod as root (killed after 30s).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args([
                "-s",
                "KILL",
                RUN_TIMEOUT_SECS,
                "ip",
                "netns",
                "exec",
                &self.netns,
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {args:?} in pod {}: {e}", self.name))
    }

    fn run_checked(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} in pod {} failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a rudder-echo HTTP server on 0.0.0.0:`port` named after the
    /// pod, with `extra` flags (e.g. `--call-http URL`); the pod keeps it.
    pub fn serve_http(&self, port: u16, extra: &[&str]) {
        self.serve(port, false, extra)
    }

    /// Starts a rudder-echo TCP line server on 0.0.0.0:`port`.
    pub fn serve_tcp(&self, port: u16) {
        self.serve(port, true, &[])
    }

    /// Starts a rudder-echo HTTP server listening on 127.0.0.1:`port` only.
    pub fn serve_http_loopback(&self, port: u16) {
        self.serve_at(&format!("127.0.0.1:{port}"), port, false, &[])
    }

    fn serve(&self, port: u16, tcp: bool, extra: &[&str]) {
        self.serve_at(&format!("0.0.0.0:{port}"), port, tcp, extra)
    }

    fn serve_at(&self, listen: &str, port: u16, tcp: bool, extra: &[&str]) {
        let mut args = vec![
            env!("CARGO_BIN_EXE_rudder-echo"),
            "--listen",
            listen,
            "--name",
            &self.name,
        ];
        if tcp {
            args.push("--tcp");
        }
        args.extend_from_slice(extra);
        let proc = self.exec(&format!("echo-{port}"), &args);
        proc.wait_for_log(" listening on ", Duration::from_secs(10));
        lock(&self.procs).push(proc);
    }

    /// The sidecar with Istio's default capture.
    pub fn start_sidecar(&self, rudder: &Rudder) {
        self.start_sidecar_with(rudder, &[])
    }

    /// Renders the bootstrap with `rudder bootstrap`, installs the capture
    /// rules with `rudder iptables --apply IPTABLES_ARGS`, starts Envoy as
    /// 1337:1337 and waits until it is ready (it has its listeners).
    pub fn start_sidecar_with(&self, rudder: &Rudder, iptables_args: &[&str]) {
        assert!(
            lock(&self.sidecar).is_none(),
            "pod {} has a sidecar already",
            self.name
        );
        let bootstrap = self.render_bootstrap(rudder);
        let mut args = vec![env!("CARGO_BIN_EXE_rudder"), "iptables", "--apply"];
        args.extend_from_slice(iptables_args);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "`rudder iptables --apply {}` failed in pod {} ({}):\n{}{}\n--- iptables-save ---\n{}",
            iptables_args.join(" "),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.iptables_save()
        );
        let bin = proxy_envoy_bin().display().to_string();
        let bootstrap = bootstrap.display().to_string();
        let mut args = vec![bin.as_str(), "-c", &bootstrap];
        let flags = envoy_flags();
        args.extend(flags.iter().map(String::as_str));
        let envoy = self.exec_as(PROXY_UID, PROXY_UID, "envoy", &args);
        *lock(&self.sidecar) = Some(envoy);
        let ready = poll(READY_TIMEOUT, || {
            if let Some(status) = self.with_sidecar(Proc::exit_status) {
                return Some(Err(status));
            }
            matches!(self.try_envoy_admin("/ready"), Ok((200, _))).then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => {}
            Some(Err(status)) => panic!(
                "sidecar of pod {} exited ({status}) while starting{}",
                self.name,
                self.context()
            ),
            None => panic!(
                "sidecar of pod {} not ready within {READY_TIMEOUT:?}{}",
                self.name,
                self.context()
            ),
        }
    }

    fn render_bootstrap(&self, rudder: &Rudder) -> PathBuf {
        let node = format!(
            "sidecar~{}~{}.{ns}~{ns}.svc.cluster.local",
            self.ip,
            self.name,
            ns = self.namespace
        );
        let xds = rudder.xds_addr.to_string();
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let account = service_account(&self.labels);
        let sa = format!("SERVICE_ACCOUNT={account}");
        let mut args = vec!["--node-id", &node, "--meta", &sa];
        // With a CA: the TLS port, the mounted root and a projected token,
        // all readable by the proxy's uid, as the injector would mount them.
        let (root, token) = (
            self.dir.path().join("root-cert.pem"),
            self.dir.path().join("token"),
        );
        let (root_s, token_s) = (root.display().to_string(), token.display().to_string());
        let tls_addr = rudder.tls.as_ref().map(|t| t.addr.to_string());
        match (&rudder.tls, &tls_addr) {
            (Some(tls), Some(addr)) => {
                std::fs::copy(&tls.root_cert, &root).expect("copying the root certificate");
                set_mode(&root, 0o644);
                tls.mint_token(&self.namespace, &account, &token);
                set_mode(&token, 0o644);
                args.extend([
                    "--xds-addr",
                    addr,
                    "--xds-root-cert",
                    &root_s,
                    "--token-file",
                    &token_s,
                ]);
            }
            _ => args.extend(["--xds-addr", &xds]),
        }
        for label in &labels {
            args.extend(["--label", label]);
        }
        let path = render_bootstrap(&self.dir.path().join("envoy-bootstrap.json"), &args);
        set_mode(&path, 0o644);
        path
    }

    fn with_sidecar<T>(&self, f: impl FnOnce(&Proc) -> T) -> T {
        let sidecar = lock(&self.sidecar);
        let envoy = sidecar
            .as_ref()
            .unwrap_or_else(|| panic!("pod {} has no sidecar", self.name));
        f(envoy)
    }

    fn try_envoy_admin(&self, path: &str) -> Result<(u16, String), String> {
        let url = format!("http://127.0.0.1:15000{path}");
        let (status, body) = self.curl(&["--max-time", "5", &url]);
        if status == 0 {
            Err(body)
        } else {
            Ok((status, body))
        }
    }

    /// GET on the sidecar's admin (127.0.0.1:15000 in the pod); panics with
    /// context unless 200.
    pub fn envoy_admin(&self, path: &str) -> String {
        match self.try_envoy_admin(path) {
            Ok((200, body)) => body,
            other => panic!(
                "pod {} envoy admin GET {path}: {other:?}{}",
                self.name,
                self.context()
            ),
        }
    }

    /// A counter or gauge of the sidecar by exact name; None when absent.
    pub fn envoy_stat(&self, name: &str) -> Option<u64> {
        let Ok((200, stats)) = self.try_envoy_admin("/stats") else {
            return None;
        };
        let prefix = format!("{name}: ");
        let line = stats.lines().find(|l| l.starts_with(&prefix))?;
        line[prefix.len()..].trim().parse().ok()
    }

    /// [`Pod::envoy_stat`] with absent read as 0, for before/after counts.
    pub fn stat_or_zero(&self, name: &str) -> u64 {
        self.envoy_stat(name).unwrap_or(0)
    }

    /// The sidecar's stats lines containing `needle`, for messages.
    pub fn envoy_stats_matching(&self, needle: &str) -> String {
        match self.try_envoy_admin("/stats") {
            Ok((200, stats)) => stats
                .lines()
                .filter(|l| l.contains(needle))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("<stats unavailable: {other:?}>"),
        }
    }

    /// Waits until stat `name` is at least `min` (counters settle a moment
    /// after the response); panics with the matching stats and context.
    pub fn wait_stat_at_least(&self, name: &str, min: u64) -> u64 {
        let found = poll(STAT_TIMEOUT, || self.envoy_stat(name).filter(|v| *v >= min));
        found.unwrap_or_else(|| {
            let cluster = name.rsplit_once('.').map_or(name, |(c, _)| c);
            panic!(
                "pod {}: stat {name} did not reach {min} within {STAT_TIMEOUT:?} (now {:?}); stats of {cluster}:\n{}{}",
                self.name,
                self.envoy_stat(name),
                self.envoy_stats_matching(cluster),
                self.context()
            )
        })
    }

    /// curl ARGS in the pod as root (an application, so it IS captured):
    /// (status, body), or (0, curl's error) when no HTTP answer came.
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut all = vec![
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
        ];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        match code.trim().parse::<u16>() {
            Ok(code) if code != 0 => (code, body.to_string()),
            _ => (
                0,
                format!(
                    "curl {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ),
        }
    }

    /// Sends `line` to host:port from the pod as root and returns the first
    /// line back; Err with the client's message when refused, timed out, or
    /// closed without a reply.
    pub fn tcp_send(&self, host: &str, port: u16, line: &str) -> Result<String, String> {
        let target = format!("{host}:{port}");
        let out = self.run(&[
            env!("CARGO_BIN_EXE_rudder-echo"),
            "--send-tcp",
            &target,
            "--line",
            line,
        ]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ))
        }
    }

    /// Log files of the processes the pod keeps (its apps and sidecar).
    pub fn log_paths(&self) -> Vec<PathBuf> {
        let sidecar = lock(&self.sidecar);
        let procs = lock(&self.procs);
        let all = procs.iter().chain(sidecar.as_ref());
        all.map(|p| p.log_path().to_path_buf()).collect()
    }

    /// `iptables-save` in the pod.
    pub fn iptables_save(&self) -> String {
        let out = self.run(&["iptables-save"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Failure context: the sidecar's log tail, the pod's iptables rules and
    /// the network's Rudder log tail.
    pub fn context(&self) -> String {
        let envoy = match lock(&self.sidecar).as_ref() {
            Some(envoy) => envoy.log_tail(40),
            None => "\n(no sidecar)".to_string(),
        };
        format!(
            "\n=== pod {} ({}, {}) ==={envoy}\n--- iptables-save in {} ---\n{}{}",
            self.name,
            self.ip,
            self.netns,
            self.name,
            self.iptables_save(),
            self.net.rudder_log_tail(30)
        )
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Processes first, so their logs are printed while a test unwinds.
        drop(lock(&self.sidecar).take());
        lock(&self.procs).clear();
        kill_netns_pids(&self.netns);
        // Deleting the host end removes the pair at once (netns teardown is
        // asynchronous); it is already gone if setup failed early.
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = std::fs::remove_dir_all(etc_netns(&self.netns));
        self.net.forget_pod(&self.netns);
    }
}
