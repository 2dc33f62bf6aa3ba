//! The control plane under test: `rudder serve --config-dir DIR`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
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
}

/// Starts `rudder serve` on fresh loopback ports with a 50ms debounce and
/// debug logs, and waits until its admin `/healthz` answers 200.
pub fn spawn_rudder(config_dir: &Path, extra_args: &[&str]) -> Rudder {
    let xds_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rudder"));
    cmd.arg("serve")
        .arg("--config-dir")
        .arg(config_dir)
        .args(["--xds-addr", &xds_addr.to_string()])
        .args(["--admin-addr", &admin_addr.to_string()])
        .args(["--debounce", "50ms", "--log-level", "debug"])
        .args(extra_args);
    let rudder = Rudder {
        proc: Proc::spawn("rudder", cmd),
        xds_addr,
        admin_url: format!("http://{admin_addr}"),
    };
    rudder.wait_healthy();
    rudder
}

impl Rudder {
    fn wait_healthy(&self) {
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

    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }
}
