//! The capture rules as `iptables-restore` text. Pure: no I/O, same config,
//! same bytes, so the dry-run output is what `--apply` loads.
//!
//! Rule order and matches follow Istio's `tools/istio-iptables/pkg/capture`
//! (REDIRECT mode, no DNS capture); see `run.go` there for the reasoning
//! behind each exemption, summarized in the comments we emit. Each rule is
//! spelled the way `iptables-save` prints it back (`-s`/`-d` before `-o`,
//! `-m tcp` before `--dport`), so the dry run and the live table read the
//! same; Istio's text orders some of those matches differently.

use std::fmt::Write;

use ipnet::IpNet;

use super::{CaptureConfig, CidrSelection, IptablesError, Joined, PortSelection};

/// The chains we own, in creation order. `--cleanup` and the "already
/// applied" check also look for these names.
pub const CHAINS: [&str; 4] = [
    "ISTIO_INBOUND",
    "ISTIO_REDIRECT",
    "ISTIO_IN_REDIRECT",
    "ISTIO_OUTPUT",
];

/// The sidecar's own ports, never captured inbound: Prometheus stats,
/// readiness, Istio's agent status port and Envoy admin. Istio's injector
/// always passes the first three to istio-iptables `-d`; admin normally
/// listens on 127.0.0.1 only, and excluding it means an admin exposed on
/// the pod IP for debugging answers directly instead of via 15006.
pub const PROXY_INBOUND_PORTS: [u16; 4] = [15090, 15021, 15020, 15000];

/// One complete `*nat ... COMMIT` block per address family, each loadable by
/// `iptables-restore --noflush` (resp. `ip6tables-restore`) as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub v4: String,
    pub v6: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// Source address Envoy binds for inbound passthrough connections to the
    /// app (Istio's InboundPassthroughCluster upstream_bind_config).
    fn passthrough_source(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }
}

/// The rules of both families, for `--apply`.
pub fn render_tables(cfg: &CaptureConfig) -> Result<Tables, IptablesError> {
    cfg.validate()?;
    Ok(Tables {
        v4: table(cfg, Family::V4),
        v6: cfg.ipv6.then(|| table(cfg, Family::V6)),
    })
}

/// The `--dry-run` text: a header summarizing the settings, then each
/// family's block under a comment saying which restore command loads it.
pub fn render(cfg: &CaptureConfig) -> Result<String, IptablesError> {
    let tables = render_tables(cfg)?;
    let mut out = String::new();
    let include_outbound = match &cfg.include_outbound {
        CidrSelection::All => "*".to_string(),
        CidrSelection::Only(nets) => Joined(nets).to_string(),
    };
    let include_inbound = match &cfg.include_inbound {
        PortSelection::All => "*".to_string(),
        PortSelection::Only(ports) => Joined(ports).to_string(),
    };
    let _ = writeln!(
        out,
        "# rudder iptables: Istio-compatible sidecar traffic capture (REDIRECT mode)"
    );
    let _ = writeln!(out, "# settings ('-' = empty list):");
    let _ = writeln!(
        out,
        "# outbound-port={} inbound-port={} proxy-uid={} proxy-gid={} ipv6={}",
        cfg.outbound_port,
        cfg.inbound_port,
        Joined(&cfg.proxy_uids),
        Joined(&cfg.proxy_gids),
        cfg.ipv6
    );
    let _ = writeln!(
        out,
        "# include-outbound-cidrs={include_outbound} exclude-outbound-cidrs={} exclude-outbound-ports={}",
        Joined(&cfg.exclude_outbound),
        Joined(&cfg.exclude_outbound_ports)
    );
    let _ = writeln!(
        out,
        "# include-inbound-ports={include_inbound} exclude-inbound-ports={} (+ proxy ports {})",
        Joined(&cfg.exclude_inbound),
        Joined(&PROXY_INBOUND_PORTS)
    );
    let _ = writeln!(out, "#");
    let _ = writeln!(out, "# IPv4: load with `iptables-restore --noflush`");
    out.push_str(&tables.v4);
    if let Some(v6) = &tables.v6 {
        let _ = writeln!(out, "#");
        let _ = writeln!(out, "# IPv6: load with `ip6tables-restore --noflush`");
        out.push_str(v6);
    }
    Ok(out)
}

/// Collects lines; `rule` and `note` keep call sites one line each.
struct Block(String);

impl Block {
    fn rule(&mut self, line: impl AsRef<str>) {
        self.0.push_str(line.as_ref());
        self.0.push('\n');
    }

    fn note(&mut self, text: &str) {
        self.0.push_str("# ");
        self.0.push_str(text);
        self.0.push('\n');
    }
}

fn table(cfg: &CaptureConfig, family: Family) -> String {
    let mut b = Block(String::new());
    b.rule("*nat");
    // `-N` (not `:CHAIN - [0:0]`) so that loading over existing chains fails
    // inside the transaction instead of silently flushing and re-filling
    // them: a concurrent or repeated --apply cannot double the rules.
    for chain in CHAINS {
        b.rule(format!("-N {chain}"));
    }
    b.note("The two exits to Envoy: outbound listener and inbound listener.");
    b.rule(format!(
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        cfg.outbound_port
    ));
    b.rule(format!(
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        cfg.inbound_port
    ));

    inbound(cfg, &mut b);
    outbound(cfg, family, &mut b);

    b.rule("COMMIT");
    b.0
}

fn inbound(cfg: &CaptureConfig, b: &mut Block) {
    match &cfg.include_inbound {
        PortSelection::Only(ports) if ports.is_empty() => {
            b.note("Inbound: not captured (include-inbound-ports is empty).");
        }
        PortSelection::All => {
            b.note("Inbound: all TCP ports to Envoy, except the proxy's own and excluded ports.");
            b.rule("-A PREROUTING -p tcp -j ISTIO_INBOUND");
            let mut excluded: Vec<u16> = PROXY_INBOUND_PORTS.to_vec();
            excluded.extend(
                cfg.exclude_inbound
                    .iter()
                    .filter(|p| !PROXY_INBOUND_PORTS.contains(p)),
            );
            for port in excluded {
                b.rule(format!(
                    "-A ISTIO_INBOUND -p tcp -m tcp --dport {port} -j RETURN"
                ));
            }
            b.rule("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT");
        }
        PortSelection::Only(ports) => {
            // As in Istio, exclusions only refine `*`; a list is exact.
            b.note("Inbound: only the listed TCP ports to Envoy.");
            b.rule("-A PREROUTING -p tcp -j ISTIO_INBOUND");
            for port in ports {
                b.rule(format!(
                    "-A ISTIO_INBOUND -p tcp -m tcp --dport {port} -j ISTIO_IN_REDIRECT"
                ));
            }
        }
    }
}

fn outbound(cfg: &CaptureConfig, family: Family, b: &mut Block) {
    let lo = family.loopback();
    b.note("Outbound: TCP from the pod goes through ISTIO_OUTPUT.");
    b.rule("-A OUTPUT -p tcp -j ISTIO_OUTPUT");
    if !cfg.exclude_outbound_ports.is_empty() {
        // Before the loopback rules, as Istio does, so an excluded port is
        // never captured, not even on the app-to-self-via-VIP path.
        b.note("Excluded destination ports.");
        for port in &cfg.exclude_outbound_ports {
            b.rule(format!(
                "-A ISTIO_OUTPUT -p tcp -m tcp --dport {port} -j RETURN"
            ));
        }
    }
    b.note("Envoy's inbound passthrough connects to the app from this source: leave it alone.");
    b.rule(format!(
        "-A ISTIO_OUTPUT -s {} -o lo -j RETURN",
        family.passthrough_source()
    ));

    // Istio keeps app-to-self traffic on lo uncaptured unless the user asked
    // for loopback ranges to be captured explicitly.
    let include_loopback = match &cfg.include_outbound {
        CidrSelection::All => false,
        CidrSelection::Only(nets) => nets.iter().any(|n| n.addr().is_loopback()),
    };
    b.note("The proxy calling its own pod (app -> VIP -> Envoy -> pod IP) re-enters as inbound;");
    b.note("other lo traffic stays direct; the proxy's own traffic is never captured (no loops).");
    let owners = cfg
        .proxy_uids
        .iter()
        .map(|id| ("--uid-owner", id))
        .chain(cfg.proxy_gids.iter().map(|id| ("--gid-owner", id)));
    for (owner, id) in owners {
        b.rule(format!(
            "-A ISTIO_OUTPUT ! -d {lo} -o lo -m owner {owner} {id} -j ISTIO_IN_REDIRECT"
        ));
        if !include_loopback {
            b.rule(format!(
                "-A ISTIO_OUTPUT -o lo -m owner ! {owner} {id} -j RETURN"
            ));
        }
        b.rule(format!("-A ISTIO_OUTPUT -m owner {owner} {id} -j RETURN"));
    }
    b.note("Loopback destinations (Envoy-aware apps, container to container) stay direct.");
    b.rule(format!("-A ISTIO_OUTPUT -d {lo} -j RETURN"));

    let excluded: Vec<&IpNet> = cfg
        .exclude_outbound
        .iter()
        .filter(|n| family.holds(n))
        .collect();
    if !excluded.is_empty() {
        b.note("Excluded destination ranges (before inclusions).");
        for net in excluded {
            b.rule(format!("-A ISTIO_OUTPUT -d {net} -j RETURN"));
        }
    }
    match &cfg.include_outbound {
        CidrSelection::All => {
            b.note("Everything else to Envoy's outbound listener.");
            b.rule("-A ISTIO_OUTPUT -j ISTIO_REDIRECT");
        }
        CidrSelection::Only(nets) => {
            let included: Vec<&IpNet> = nets.iter().filter(|n| family.holds(n)).collect();
            if included.is_empty() {
                // Istio writes nothing here either: falling off the chain
                // returns, so nothing else is captured.
                b.note(
                    "No included ranges for this family: other outbound traffic is not captured.",
                );
            } else {
                b.note(
                    "Only the included ranges to Envoy's outbound listener; the rest stays direct.",
                );
                for net in included {
                    b.rule(format!("-A ISTIO_OUTPUT -d {net} -j ISTIO_REDIRECT"));
                }
                b.rule("-A ISTIO_OUTPUT -j RETURN");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const REGENERATE: &str = "UPDATE_GOLDEN=1 cargo test --lib cli::iptables";

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// Compares with src/cli/testdata/iptables/NAME.txt, or rewrites it when
    /// UPDATE_GOLDEN is set, so rule changes show up as reviewable diffs.
    fn golden(name: &str, cfg: &CaptureConfig) {
        let got = render(cfg).unwrap();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/cli/testdata/iptables")
            .join(format!("{name}.txt"));
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "reading {}: {e}; create it with {REGENERATE}",
                path.display()
            )
        });
        if want != got {
            pretty_assertions::assert_eq!(
                want,
                got,
                "{} is stale; if the change is intended, run {REGENERATE}",
                path.display()
            );
        }
    }

    #[test]
    fn golden_default() {
        golden("default", &CaptureConfig::default());
    }

    #[test]
    fn golden_excludes_and_includes() {
        let cfg = CaptureConfig {
            proxy_gids: vec![1337, 1338],
            include_outbound: CidrSelection::Only(nets(&["10.0.0.0/8", "172.16.0.0/12"])),
            exclude_outbound: nets(&["10.96.0.1/32", "10.200.0.0/16"]),
            exclude_inbound: vec![22, 15020, 8081],
            exclude_outbound_ports: vec![3306, 5432],
            ..CaptureConfig::default()
        };
        golden("excludes-includes", &cfg);
    }

    #[test]
    fn golden_inbound_ports_listed() {
        let cfg = CaptureConfig {
            include_inbound: PortSelection::Only(vec![8080, 9090]),
            // Ignored with a port list, as in Istio.
            exclude_inbound: vec![9090],
            ..CaptureConfig::default()
        };
        golden("inbound-ports", &cfg);
    }

    #[test]
    fn golden_inbound_disabled() {
        let cfg = CaptureConfig {
            include_inbound: PortSelection::Only(vec![]),
            ..CaptureConfig::default()
        };
        golden("inbound-disabled", &cfg);
    }

    #[test]
    fn golden_loopback_included() {
        let cfg = CaptureConfig {
            include_outbound: CidrSelection::Only(nets(&["127.1.2.3/32"])),
            ..CaptureConfig::default()
        };
        golden("loopback-included", &cfg);
    }

    #[test]
    fn golden_ipv6() {
        let cfg = CaptureConfig {
            ipv6: true,
            exclude_outbound: nets(&["10.96.0.0/12", "fd00:10:96::/112"]),
            include_outbound: CidrSelection::Only(nets(&["10.0.0.0/8"])),
            exclude_outbound_ports: vec![3306],
            ..CaptureConfig::default()
        };
        golden("ipv6", &cfg);
    }

    /// Each block must be loadable on its own: starts with `*nat`, ends
    /// with COMMIT, creates every chain it jumps to.
    #[test]
    fn blocks_are_self_contained() {
        let cfg = CaptureConfig {
            ipv6: true,
            ..CaptureConfig::default()
        };
        let tables = render_tables(&cfg).unwrap();
        for block in [&tables.v4, tables.v6.as_ref().unwrap()] {
            assert!(
                block.starts_with("*nat\n") && block.ends_with("COMMIT\n"),
                "{block}"
            );
            for chain in CHAINS {
                assert!(block.contains(&format!("-N {chain}\n")));
            }
        }
        assert!(tables
            .v6
            .unwrap()
            .contains("-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN"));
        assert_eq!(render_tables(&CaptureConfig::default()).unwrap().v6, None);
    }

    #[test]
    fn render_rejects_an_inconsistent_config() {
        let cfg = CaptureConfig {
            exclude_outbound: nets(&["fd00::/8"]),
            ..CaptureConfig::default()
        };
        assert!(matches!(
            render(&cfg),
            Err(IptablesError::Ipv6WithoutFlag { .. })
        ));
        let cfg = CaptureConfig {
            proxy_uids: vec![],
            ..CaptureConfig::default()
        };
        assert!(matches!(render(&cfg), Err(IptablesError::NoIds { .. })));
    }
}
