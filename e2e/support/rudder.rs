//! The control plane under test: `rudder serve --config-dir DIR`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, poll, try_http_get, Proc};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Rudder {
    pub proc: Proc,
    /// Plaintext xDS (what `rudder bootstrap --xds-addr` takes).
    pub xds_addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub admin_url: String,
    /// The authenticated TLS xDS port, when Rudder runs with a CA.
    pub tls: Option<TlsXds>,
}

/// What a sidecar needs to use the TLS xDS port: where it is, the root to
/// trust, and the key that signs service-account tokens Rudder accepts.
#[derive(Debug, Clone)]
pub struct TlsXds {
    pub addr: SocketAddr,
    /// Where the admission webhooks listen (HTTPS, the same certificate).
    pub webhook_addr: SocketAddr,
    pub root_cert: PathBuf,
    pub token_key: PathBuf,
}

impl TlsXds {
    /// Makes a token-signing key pair in `dir` (with `rudder token keygen`)
    /// and returns the `rudder serve` flags that make Rudder the mesh CA
    /// (CA in `dir/ca`), verifying tokens signed by that key, with its TLS
    /// xDS port on `addr` and workload certificates living `workload_ttl`.
    pub fn prepare(dir: &Path, addr: SocketAddr, workload_ttl: &str) -> (TlsXds, Vec<String>) {
        let status = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["token", "keygen", "--out-dir"])
            .arg(dir)
            .status()
            .expect("running rudder token keygen");
        assert!(status.success(), "rudder token keygen failed: {status}");
        let (tls, mut flags) = TlsXds::prepare_kube(dir, addr, workload_ttl);
        flags.extend([
            "--token-public-key".to_string(),
            dir.join("jwt-pub.pem").display().to_string(),
        ]);
        (tls, flags)
    }

    /// Like [`TlsXds::prepare`] without a token key: with `--kube`, Rudder
    /// then checks tokens by TokenReview. `token_key` names no file.
    pub fn prepare_kube(dir: &Path, addr: SocketAddr, workload_ttl: &str) -> (TlsXds, Vec<String>) {
        std::fs::create_dir_all(dir).expect("creating the identity directory");
        let ca = dir.join("ca");
        // With a CA Rudder also serves its webhooks; by default on 15017,
        // which tests running side by side would fight over.
        let webhook_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let flags = [
            "--ca-dir",
            &ca.display().to_string(),
            "--webhook-addr",
            &webhook_addr.to_string(),
            "--xds-tls-addr",
            &addr.to_string(),
            "--tls-san",
            &addr.ip().to_string(),
            "--workload-cert-ttl",
            workload_ttl,
        ]
        .map(str::to_string)
        .to_vec();
        let tls = TlsXds {
            addr,
            webhook_addr,
            root_cert: ca.join("root-cert.pem"),
            token_key: dir.join("jwt-key.pem"),
        };
        (tls, flags)
    }

    /// A loopback Envoy (INTERCEPTION_MODE=NONE) on this port whose node
    /// claims demo/`node_sa` and which sends `token` (written into `dir`).
    pub fn spawn_envoy(&self, dir: &Path, node_sa: &str, token: &str) -> super::Envoy {
        let file = dir.join(format!("token-{}", free_port()));
        std::fs::write(&file, token).expect("writing the token file");
        let mut args = self.bootstrap_args(&file);
        args.extend([
            "--meta".to_string(),
            "INTERCEPTION_MODE=NONE".to_string(),
            "--meta".to_string(),
            format!("SERVICE_ACCOUNT={node_sa}"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = format!("sidecar~127.0.0.5~{node_sa}-0.demo~demo.svc.cluster.local");
        super::spawn_envoy(&node, self.addr, false, &args)
    }

    /// `rudder bootstrap` flags for a proxy on this port with `token_file`.
    pub fn bootstrap_args(&self, token_file: &Path) -> Vec<String> {
        vec![
            "--xds-root-cert".into(),
            self.root_cert.display().to_string(),
            "--token-file".into(),
            token_file.display().to_string(),
        ]
    }

    /// Mints a service-account token with `rudder token issue`, into `out`.
    pub fn mint_token(&self, namespace: &str, service_account: &str, out: &Path) {
        let status = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["token", "issue", "--key"])
            .arg(&self.token_key)
            .args([
                "--namespace",
                namespace,
                "--service-account",
                service_account,
            ])
            .arg("--out")
            .arg(out)
            .status()
            .expect("running rudder token issue");
        assert!(status.success(), "rudder token issue failed: {status}");
    }
}

/// Starts `rudder serve` on fresh loopback ports with a 50ms debounce and
/// debug logs, and waits until its admin `/healthz` answers 200.
pub fn spawn_rudder(config_dir: &Path, extra_args: &[&str]) -> Rudder {
    let xds_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let cmd = Command::new(env!("CARGO_BIN_EXE_rudder"));
    start_rudder(cmd, config_dir, xds_addr, admin_addr, extra_args)
}

/// Like [`spawn_rudder`], bound where the caller says (test pods reach xDS on
/// their bridge's address). Runs under `setpriv --pdeathsig KILL`, so a test
/// process killed outright (no Drop) does not leave the control plane behind.
pub fn spawn_rudder_at(
    config_dir: &Path,
    xds_addr: SocketAddr,
    admin_addr: SocketAddr,
    extra_args: &[&str],
) -> Rudder {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", env!("CARGO_BIN_EXE_rudder")]);
    start_rudder(cmd, config_dir, xds_addr, admin_addr, extra_args)
}

/// `rudder serve --kube --kubeconfig KUBECONFIG` on fresh loopback ports:
/// the cluster, not a directory, is the source.
pub fn spawn_rudder_kube(kubeconfig: &Path, extra_args: &[&str]) -> Rudder {
    let rudder = launch_rudder_kube(kubeconfig, extra_args);
    rudder.wait_healthy();
    rudder
}

/// [`spawn_rudder_kube`] without waiting for health, to start replicas at
/// the same moment. Spawn from the test's own thread: the child is killed
/// when the thread that spawned it exits (`--pdeathsig`).
pub fn launch_rudder_kube(kubeconfig: &Path, extra_args: &[&str]) -> Rudder {
    let xds_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", env!("CARGO_BIN_EXE_rudder")]);
    let source = [
        "--kube".to_string(),
        "--kubeconfig".to_string(),
        kubeconfig.display().to_string(),
    ];
    launch(cmd, &source, xds_addr, admin_addr, extra_args)
}

fn start_rudder(
    cmd: Command,
    config_dir: &Path,
    xds_addr: SocketAddr,
    admin_addr: SocketAddr,
    extra_args: &[&str],
) -> Rudder {
    let source = ["--config-dir".to_string(), config_dir.display().to_string()];
    let rudder = launch(cmd, &source, xds_addr, admin_addr, extra_args);
    rudder.wait_healthy();
    rudder
}

fn launch(
    mut cmd: Command,
    source: &[String],
    xds_addr: SocketAddr,
    admin_addr: SocketAddr,
    extra_args: &[&str],
) -> Rudder {
    cmd.arg("serve")
        .args(source)
        .args(["--xds-addr", &xds_addr.to_string()])
        .args(["--admin-addr", &admin_addr.to_string()])
        .args(["--debounce", "50ms", "--log-level", "debug"])
        .args(extra_args)
        // A plain log file, without color codes between field names and
        // values, so tests (and people) can search it.
        .env("NO_COLOR", "1");
    let rudder = Rudder {
        proc: Proc::spawn("rudder", cmd),
        xds_addr,
        admin_url: format!("http://{admin_addr}"),
        tls: None,
    };
    rudder
}

impl Rudder {
    pub fn wait_healthy(&self) {
        let url = format!("{}/healthz", self.admin_url);
        let healthy = poll(STARTUP_TIMEOUT, || {
            self.proc.assert_running("starting up");
            matches!(try_http_get(&url, None), Ok((200, _))).then_some(())
        });
        assert!(
            healthy.is_some(),
            "rudder: GET {url} not 200 within {STARTUP_TIMEOUT:?}{}",
            self.proc.log_tail(40)
        );
    }

    /// GET on the admin server, e.g. `admin_get("/debug/syncz")`.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.admin_url);
        try_http_get(&url, None)
            .unwrap_or_else(|e| panic!("GET {url} failed: {e:#}{}", self.proc.log_tail(30)))
    }

    /// `/debug/configz` as JSON: the snapshot version, `synced`, and the
    /// accepted and rejected objects.
    pub fn configz(&self) -> serde_json::Value {
        let (status, body) = self.admin_get("/debug/configz");
        assert_eq!(
            status,
            200,
            "GET /debug/configz: {body}{}",
            self.log_tail(30)
        );
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/debug/configz is not JSON ({e}): {body}"))
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }
}
