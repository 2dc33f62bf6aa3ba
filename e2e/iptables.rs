//! `rudder iptables` against the real kernel, inside throwaway network
//! namespaces: the rules `--apply` installs are exactly the `--dry-run`
//! text, a second `--apply` is refused, `--cleanup` is idempotent, and the
//! rules really capture: outbound and inbound connections land on the
//! capture ports with SO_ORIGINAL_DST intact, while the proxy's own traffic
//! and excluded ports pass untouched.
//!
//! Needs root (netns, iptables). Without it the tests fail, never skip.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const RUDDER: &str = env!("CARGO_BIN_EXE_rudder");

/// A named network namespace, deleted on drop (also when the test panics),
/// which also deletes the veth ends inside it and every rule.
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("rudder-ipt-{}-{tag}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `ip netns add` ({e}); these tests need iproute2 and root")
            });
        assert!(
            out.status.success(),
            "`ip netns add {name}` failed: {}; these tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN). \
             Run them as root, e.g. `sudo -E cargo test --test e2e iptables_`",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn cmd(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        cmd
    }

    fn run(&self, argv: &[&str]) -> Output {
        self.cmd(argv)
            .output()
            .unwrap_or_else(|e| panic!("running {argv:?} in {}: {e}", self.name))
    }

    /// Runs and returns stdout; panics with stderr on failure.
    fn ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?} in netns {} failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn rudder(&self, args: &[&str]) -> Output {
        let mut argv = vec![RUDDER, "iptables"];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    fn rudder_ok(&self, args: &[&str]) -> String {
        let mut argv = vec![RUDDER, "iptables"];
        argv.extend_from_slice(args);
        self.ok(&argv)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `-A` rules grouped by chain, in order. Our rendering is written in
/// iptables-save's canonical form, so the two compare as text; the grouping
/// only absorbs that iptables-save lists rules chain by chain.
fn rules_by_chain(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((chain, rule)) = line.strip_prefix("-A ").and_then(|r| r.split_once(' ')) else {
            continue;
        };
        chains
            .entry(chain.to_string())
            .or_default()
            .push(rule.to_string());
    }
    chains
}

/// The IPv4 and IPv6 parts of `--dry-run` output.
fn split_dry_run(text: &str) -> (&str, &str) {
    text.split_once("# IPv6:").unwrap_or((text, ""))
}

#[test]
fn iptables_apply_refuses_twice_and_cleanup_is_idempotent() {
    let ns = Netns::create("lifecycle");
    let flags = [
        "--ipv6",
        "--exclude-outbound-ports=3306",
        "--exclude-inbound-ports=22",
    ];

    let dry = ns.rudder_ok(&[&["--dry-run"], &flags[..]].concat());
    let (want_v4, want_v6) = split_dry_run(&dry);
    assert!(
        !want_v6.is_empty(),
        "--ipv6 dry run has no IPv6 block:\n{dry}"
    );

    let applied = ns.rudder_ok(&[&["--apply"], &flags[..]].concat());
    assert!(applied.contains("installed"), "{applied}");
    let saved_v4 = ns.ok(&["iptables-save", "-t", "nat"]);
    let saved_v6 = ns.ok(&["ip6tables-save", "-t", "nat"]);
    for chain in [
        "ISTIO_INBOUND",
        "ISTIO_REDIRECT",
        "ISTIO_IN_REDIRECT",
        "ISTIO_OUTPUT",
    ] {
        assert!(
            saved_v4.contains(&format!(":{chain} ")),
            "{chain} missing:\n{saved_v4}"
        );
        assert!(
            saved_v6.contains(&format!(":{chain} ")),
            "{chain} missing (v6):\n{saved_v6}"
        );
    }
    // The kernel holds exactly what the dry run showed, rule for rule.
    pretty_assertions::assert_eq!(rules_by_chain(want_v4), rules_by_chain(&saved_v4));
    pretty_assertions::assert_eq!(rules_by_chain(want_v6), rules_by_chain(&saved_v6));
    assert!(
        saved_v4.contains("-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN"),
        "{saved_v4}"
    );
    assert!(
        saved_v6.contains("-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN"),
        "{saved_v6}"
    );
    assert!(ns
        .ok(&["ip", "-6", "addr", "show", "dev", "lo"])
        .contains("::6/128"));

    // A second --apply is refused, says why and what to do, changes nothing.
    let again = ns.rudder(&[&["--apply"], &flags[..]].concat());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success(),
        "second --apply succeeded: {stderr}"
    );
    assert!(
        stderr.contains("already") && stderr.contains("--cleanup"),
        "{stderr}"
    );
    assert_eq!(
        ns.ok(&["iptables-save", "-t", "nat"])
            .lines()
            .filter(|l| l.starts_with('-'))
            .count(),
        saved_v4.lines().filter(|l| l.starts_with('-')).count()
    );

    let cleaned = ns.rudder_ok(&["--cleanup", "--ipv6"]);
    assert!(cleaned.contains("removed"), "{cleaned}");
    for save in ["iptables-save", "ip6tables-save"] {
        let after = ns.ok(&[save, "-t", "nat"]);
        assert!(
            !after.contains("ISTIO_"),
            "{save} after --cleanup:\n{after}"
        );
    }

    let again = ns.rudder_ok(&["--cleanup", "--ipv6"]);
    assert!(again.contains("no capture rules"), "{again}");

    // Cleaned up means re-appliable.
    ns.rudder_ok(&["--apply"]);
    ns.rudder_ok(&["--cleanup"]);
}

/// A one-line-per-connection TCP listener inside a netns reporting each
/// accepted connection's SO_ORIGINAL_DST (what REDIRECT rewrote), the way
/// Envoy's original_dst listener filter reads it.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
}

const LISTENER: &str = r#"
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("READY", flush=True)
while True:
    c, peer = s.accept()
    raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
    port, = struct.unpack("!H", raw[2:4])
    print(f"{socket.inet_ntoa(raw[4:8])}:{port} from {peer[0]}", flush=True)
    c.close()
"#;

impl Listener {
    fn start(ns: &Netns, port: u16) -> Listener {
        let mut child = ns
            .cmd(&["python3", "-c", LISTENER, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the python3 listener: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut l = Listener { child, lines };
        assert_eq!(
            l.next(Duration::from_secs(10)).as_deref(),
            Some("READY"),
            "listener on {port}"
        );
        l
    }

    fn next(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects from inside `ns` (optionally as `uid`) and prints CONNECTED or
/// the error; a 1 s timeout keeps uncaptured, unanswered SYNs cheap.
fn connect(ns: &Netns, addr: &str, port: u16, uid: Option<u32>) -> String {
    // Imports come before setuid (python3 may live under /root, e.g. pyenv,
    // unreadable to the proxy uid); the socket comes after, because the
    // owner match tests the uid that created the socket.
    let setuid = uid.map(|u| format!("os.setuid({u})")).unwrap_or_default();
    let script = format!(
        "import os, socket\n\
         {setuid}\n\
         s = socket.socket()\n\
         s.settimeout(1)\n\
         try:\n    s.connect(('{addr}', {port})); print('CONNECTED')\n\
         except OSError as e:\n    print('FAILED', e)\n"
    );
    ns.ok(&["python3", "-c", &script]).trim().to_string()
}

#[test]
fn iptables_redirect_captures_with_original_destination() {
    // Two namespaces on a veth pair: "pod" (198.18.0.1) gets the rules,
    // "peer" (198.18.0.2) is the rest of the network.
    let pod = Netns::create("pod");
    let peer = Netns::create("peer");
    let (pod_if, peer_if) = (
        format!("rip{}a", std::process::id()),
        format!("rip{}b", std::process::id()),
    );
    pod.ok(&[
        "ip", "link", "add", &pod_if, "type", "veth", "peer", "name", &peer_if,
    ]);
    pod.ok(&["ip", "link", "set", &peer_if, "netns", &peer.name]);
    pod.ok(&["ip", "addr", "add", "198.18.0.1/24", "dev", &pod_if]);
    pod.ok(&["ip", "link", "set", &pod_if, "up"]);
    peer.ok(&["ip", "addr", "add", "198.18.0.2/24", "dev", &peer_if]);
    peer.ok(&["ip", "link", "set", &peer_if, "up"]);
    // Somewhere to send "remote" traffic, so connect() is not unreachable
    // before the nat OUTPUT hook gets to redirect it.
    pod.ok(&["ip", "route", "add", "198.18.200.0/24", "via", "198.18.0.2"]);

    pod.rudder_ok(&[
        "--apply",
        "--exclude-outbound-ports=3306",
        "--exclude-inbound-ports=8081",
    ]);
    let mut outbound = Listener::start(&pod, 15001);
    let mut inbound = Listener::start(&pod, 15006);
    let quiet = Duration::from_millis(300);

    // Outbound: the app's connection to a remote address lands on 15001,
    // which can still tell where it was going.
    assert_eq!(connect(&pod, "198.18.200.1", 80, None), "CONNECTED");
    let seen = outbound
        .next(Duration::from_secs(5))
        .expect("15001 saw no connection");
    assert!(
        seen.starts_with("198.18.200.1:80 "),
        "15001 saw original destination {seen}"
    );

    // The proxy's own traffic (uid 1337) and an excluded port go out as is.
    let as_proxy = connect(&pod, "198.18.200.1", 80, Some(1337));
    assert!(
        as_proxy.starts_with("FAILED"),
        "proxy uid traffic was captured: {as_proxy}"
    );
    let excluded = connect(&pod, "198.18.200.1", 3306, None);
    assert!(
        excluded.starts_with("FAILED"),
        "excluded port 3306 was captured: {excluded}"
    );
    assert_eq!(
        outbound.next(quiet),
        None,
        "uncaptured traffic reached 15001"
    );

    // Inbound: a peer's connection to the pod lands on 15006 with the port
    // it asked for...
    assert_eq!(connect(&peer, "198.18.0.1", 8080, None), "CONNECTED");
    let seen = inbound
        .next(Duration::from_secs(5))
        .expect("15006 saw no connection");
    assert_eq!(seen, "198.18.0.1:8080 from 198.18.0.2");
    // ...except excluded ports and the proxy's own, which nobody listens on
    // here, so they are refused rather than captured.
    for port in [8081, 15021, 15090] {
        let direct = connect(&peer, "198.18.0.1", port, None);
        assert!(
            direct.starts_with("FAILED"),
            "inbound port {port} was captured: {direct}"
        );
    }
    assert_eq!(
        inbound.next(quiet),
        None,
        "excluded inbound traffic reached 15006"
    );

    // The proxy calling its own pod IP (app -> VIP -> Envoy -> pod IP)
    // re-enters inbound; the app doing so stays direct.
    assert_eq!(connect(&pod, "198.18.0.1", 9000, Some(1337)), "CONNECTED");
    let seen = inbound
        .next(Duration::from_secs(5))
        .expect("15006 saw no proxy-to-self connection");
    assert!(seen.starts_with("198.18.0.1:9000 "), "{seen}");
    let app_self = connect(&pod, "198.18.0.1", 9000, None);
    assert!(
        app_self.starts_with("FAILED"),
        "app-to-self over lo was captured: {app_self}"
    );
    assert_eq!(inbound.next(quiet), None);
}
