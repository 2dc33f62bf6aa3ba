//! `rudder iptables`: the pod's traffic-capture rules, as Istio's init
//! container (`istio-iptables`) writes them in REDIRECT mode.
//!
//! Same chains (ISTIO_INBOUND, ISTIO_IN_REDIRECT, ISTIO_REDIRECT,
//! ISTIO_OUTPUT), same rule order and same exemptions, so a pod that ran
//! Istio's init container and one that ran this look the same in
//! `iptables-save`, and Istio's troubleshooting habits still apply.
//!
//! - [`rules`] is pure: validated [`CaptureConfig`] in, `iptables-restore`
//!   text out (golden-tested).
//! - [`apply`] is the thin I/O: `iptables-save` to look, `iptables-restore
//!   --noflush` to change, one atomic transaction per address family.

mod apply;
mod rules;

use std::fmt;

use ipnet::IpNet;

pub use rules::{render, render_tables, Tables, CHAINS, PROXY_INBOUND_PORTS};

/// Flags mirror `istio-iptables` and the pod annotations Istio's injector
/// turns into them, so an annotated Istio pod maps one to one.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("mode").required(true).multiple(false)))]
pub struct IptablesArgs {
    /// Print the rules in iptables-restore format and change nothing.
    #[arg(long, group = "mode")]
    pub dry_run: bool,

    /// Install the rules atomically (iptables-restore --noflush). Refuses
    /// when ISTIO_* chains already exist: run --cleanup first.
    #[arg(long, group = "mode")]
    pub apply: bool,

    /// Remove the jump rules and the ISTIO_* chains. Succeeds when there is
    /// nothing to remove.
    #[arg(long, group = "mode")]
    pub cleanup: bool,

    /// Port of Envoy's outbound capture listener (istio-iptables `-p`).
    #[arg(long, value_name = "PORT", default_value_t = 15001,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub outbound_port: u16,

    /// Port of Envoy's inbound capture listener (istio-iptables `-z`).
    #[arg(long, value_name = "PORT", default_value_t = 15006,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub inbound_port: u16,

    /// UID(s) the proxy runs as; its own traffic is never captured
    /// (istio-iptables `-u`; comma-separated list allowed).
    #[arg(long, value_name = "UID[,UID...]", default_value = "1337")]
    pub proxy_uid: String,

    /// GID(s) the proxy runs as; its own traffic is never captured
    /// (istio-iptables `-g`; comma-separated list allowed).
    #[arg(long, value_name = "GID[,GID...]", default_value = "1337")]
    pub proxy_gid: String,

    /// Outbound destinations to capture: `*` or a comma-separated CIDR list;
    /// empty captures no outbound traffic.
    /// Annotation `traffic.sidecar.istio.io/includeOutboundIPRanges`.
    #[arg(long, value_name = "CIDRS", default_value = "*")]
    pub include_outbound_cidrs: String,

    /// Outbound destinations never captured (comma-separated CIDRs).
    /// Annotation `traffic.sidecar.istio.io/excludeOutboundIPRanges`.
    #[arg(long, value_name = "CIDRS")]
    pub exclude_outbound_cidrs: Option<String>,

    /// Inbound ports to capture: `*` or a comma-separated port list; empty
    /// disables inbound capture.
    /// Annotation `traffic.sidecar.istio.io/includeInboundPorts`.
    #[arg(long, value_name = "PORTS", default_value = "*")]
    pub include_inbound_ports: String,

    /// Inbound ports never captured when including `*`, on top of the
    /// proxy's own 15090, 15021, 15020 and 15000.
    /// Annotation `traffic.sidecar.istio.io/excludeInboundPorts`.
    #[arg(long, value_name = "PORTS")]
    pub exclude_inbound_ports: Option<String>,

    /// Outbound destination ports never captured (comma-separated).
    /// Annotation `traffic.sidecar.istio.io/excludeOutboundPorts`.
    #[arg(long, value_name = "PORTS")]
    pub exclude_outbound_ports: Option<String>,

    /// Also write ip6tables rules (IPv6 and dual-stack pods).
    #[arg(long)]
    pub ipv6: bool,
}

/// Which outbound destinations are captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrSelection {
    /// `*`: every destination not excluded.
    All,
    /// Only these (an empty list captures nothing).
    Only(Vec<IpNet>),
}

/// Which inbound ports are captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelection {
    /// `*`: every port not excluded.
    All,
    /// Only these (an empty list disables inbound capture).
    Only(Vec<u16>),
}

/// Validated settings. Build it with [`CaptureConfig::from_args`] or start
/// from `Default` (Istio's defaults) in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub proxy_uids: Vec<u32>,
    pub proxy_gids: Vec<u32>,
    pub include_outbound: CidrSelection,
    pub exclude_outbound: Vec<IpNet>,
    pub include_inbound: PortSelection,
    /// The user's exclusions; [`PROXY_INBOUND_PORTS`] are always added.
    pub exclude_inbound: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub ipv6: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            outbound_port: 15001,
            inbound_port: 15006,
            proxy_uids: vec![1337],
            proxy_gids: vec![1337],
            include_outbound: CidrSelection::All,
            exclude_outbound: Vec::new(),
            include_inbound: PortSelection::All,
            exclude_inbound: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            ipv6: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IptablesError {
    #[error(
        "{flag}: {value:?} is not a CIDR (want ADDRESS/PREFIX, e.g. 10.0.0.0/8 or 10.1.2.3/32)"
    )]
    BadCidr { flag: &'static str, value: String },
    #[error("{flag}: {value:?} is not a port (want a number in 1-65535)")]
    BadPort { flag: &'static str, value: String },
    #[error("{flag}: {value:?} is not a numeric id (want e.g. 1337)")]
    BadId { flag: &'static str, value: String },
    #[error("{flag}: needs at least one id")]
    NoIds { flag: &'static str },
    #[error("{flag}: '*' is only meaningful alone, in --include-outbound-cidrs or --include-inbound-ports")]
    MisplacedWildcard { flag: &'static str },
    #[error("{flag}: {value} is an IPv6 range; pass --ipv6 to also write ip6tables rules")]
    Ipv6WithoutFlag { flag: &'static str, value: String },
    #[error("--outbound-port and --inbound-port are both {0}; Envoy needs two distinct listeners")]
    SamePort(u16),
    #[error("{flag}: port 0 is not a valid port")]
    ZeroPort { flag: &'static str },
}

impl CaptureConfig {
    pub fn from_args(args: &IptablesArgs) -> Result<CaptureConfig, IptablesError> {
        let include_outbound = match args.include_outbound_cidrs.trim() {
            "*" => CidrSelection::All,
            v => CidrSelection::Only(parse_cidrs("--include-outbound-cidrs", v)?),
        };
        let include_inbound = match args.include_inbound_ports.trim() {
            "*" => PortSelection::All,
            v => PortSelection::Only(parse_ports("--include-inbound-ports", v)?),
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let cfg = CaptureConfig {
            outbound_port: args.outbound_port,
            inbound_port: args.inbound_port,
            proxy_uids: parse_ids("--proxy-uid", &args.proxy_uid)?,
            proxy_gids: parse_ids("--proxy-gid", &args.proxy_gid)?,
            include_outbound,
            exclude_outbound: parse_cidrs(
                "--exclude-outbound-cidrs",
                &opt(&args.exclude_outbound_cidrs),
            )?,
            include_inbound,
            exclude_inbound: parse_ports(
                "--exclude-inbound-ports",
                &opt(&args.exclude_inbound_ports),
            )?,
            exclude_outbound_ports: parse_ports(
                "--exclude-outbound-ports",
                &opt(&args.exclude_outbound_ports),
            )?,
            ipv6: args.ipv6,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Cross-field checks, also run by `render` so a hand-built config (tests,
    /// future callers) cannot produce rules iptables would reject.
    pub fn validate(&self) -> Result<(), IptablesError> {
        for (flag, port) in [
            ("--outbound-port", self.outbound_port),
            ("--inbound-port", self.inbound_port),
        ] {
            if port == 0 {
                return Err(IptablesError::ZeroPort { flag });
            }
        }
        if self.outbound_port == self.inbound_port {
            return Err(IptablesError::SamePort(self.outbound_port));
        }
        if self.proxy_uids.is_empty() {
            return Err(IptablesError::NoIds {
                flag: "--proxy-uid",
            });
        }
        if self.proxy_gids.is_empty() {
            return Err(IptablesError::NoIds {
                flag: "--proxy-gid",
            });
        }
        let ports = [
            ("--exclude-inbound-ports", &self.exclude_inbound),
            ("--exclude-outbound-ports", &self.exclude_outbound_ports),
        ];
        let included = match &self.include_inbound {
            PortSelection::Only(p) => Some(("--include-inbound-ports", p)),
            PortSelection::All => None,
        };
        for (flag, list) in ports.into_iter().chain(included) {
            if list.contains(&0) {
                return Err(IptablesError::ZeroPort { flag });
            }
        }
        if !self.ipv6 {
            let included = match &self.include_outbound {
                CidrSelection::Only(c) => Some(("--include-outbound-cidrs", c)),
                CidrSelection::All => None,
            };
            let lists = [("--exclude-outbound-cidrs", &self.exclude_outbound)];
            for (flag, list) in lists.into_iter().chain(included) {
                // Istio silently drops IPv6 ranges when IPv6 is off; saying so
                // loudly catches a forgotten --ipv6 on a dual-stack pod.
                if let Some(net) = list.iter().find(|n| matches!(n, IpNet::V6(_))) {
                    return Err(IptablesError::Ipv6WithoutFlag {
                        flag,
                        value: net.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Istio's list syntax: comma-separated, blanks around items ignored, empty
/// items skipped (so a trailing comma in an annotation is harmless).
fn split(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_cidrs(flag: &'static str, value: &str) -> Result<Vec<IpNet>, IptablesError> {
    let mut out: Vec<IpNet> = Vec::new();
    for item in split(value) {
        if item == "*" {
            return Err(IptablesError::MisplacedWildcard { flag });
        }
        // Bare addresses are rejected rather than widened to /32: Istio
        // ignores them, so accepting one would silently change meaning for
        // an annotation copied from an Istio pod.
        let net: IpNet = item.parse().map_err(|_| IptablesError::BadCidr {
            flag,
            value: item.to_string(),
        })?;
        // Host bits are cleared as iptables itself would, so the rendered
        // text matches what iptables-save prints back.
        let net = net.trunc();
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

fn parse_ports(flag: &'static str, value: &str) -> Result<Vec<u16>, IptablesError> {
    let mut out = Vec::new();
    for item in split(value) {
        if item == "*" {
            return Err(IptablesError::MisplacedWildcard { flag });
        }
        let port = match item.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(IptablesError::BadPort {
                    flag,
                    value: item.to_string(),
                })
            }
        };
        if !out.contains(&port) {
            out.push(port);
        }
    }
    Ok(out)
}

fn parse_ids(flag: &'static str, value: &str) -> Result<Vec<u32>, IptablesError> {
    let mut out = Vec::new();
    for item in split(value) {
        let id = item.parse::<u32>().map_err(|_| IptablesError::BadId {
            flag,
            value: item.to_string(),
        })?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() {
        return Err(IptablesError::NoIds { flag });
    }
    Ok(out)
}

/// Comma-joins for the dry-run header; `-` marks an empty list so the
/// header never has a dangling `=`.
struct Joined<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

pub fn run(args: IptablesArgs) -> anyhow::Result<()> {
    let cfg = CaptureConfig::from_args(&args)?;
    if args.dry_run {
        print!("{}", render(&cfg)?);
        Ok(())
    } else if args.apply {
        apply::apply(&cfg)
    } else {
        apply::cleanup(cfg.ipv6)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        args: IptablesArgs,
    }

    fn parse(argv: &[&str]) -> Result<CaptureConfig, String> {
        let cli = TestCli::try_parse_from(std::iter::once("rudder").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        CaptureConfig::from_args(&cli.args).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_istios() {
        assert_eq!(parse(&["--dry-run"]).unwrap(), CaptureConfig::default());
    }

    #[test]
    fn exactly_one_mode() {
        assert!(parse(&[]).unwrap_err().contains("required"));
        let both = parse(&["--apply", "--cleanup"]).unwrap_err();
        assert!(both.contains("cannot be used with"), "{both}");
    }

    #[test]
    fn lists_are_parsed_trimmed_deduplicated_and_normalized() {
        let cfg = parse(&[
            "--dry-run",
            "--proxy-gid=1337, 1338,1337",
            "--include-outbound-cidrs=10.1.2.3/8,192.168.0.0/16,",
            "--exclude-inbound-ports=8080, 9090",
            "--include-inbound-ports=",
        ])
        .unwrap();
        assert_eq!(cfg.proxy_gids, vec![1337, 1338]);
        let want: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ];
        assert_eq!(cfg.include_outbound, CidrSelection::Only(want));
        assert_eq!(cfg.exclude_inbound, vec![8080, 9090]);
        assert_eq!(cfg.include_inbound, PortSelection::Only(vec![]));
    }

    #[test]
    fn errors_name_the_flag_and_the_value() {
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["--exclude-outbound-cidrs=10.0.0.0/33"],
                "--exclude-outbound-cidrs",
                "10.0.0.0/33",
            ),
            (
                &["--include-outbound-cidrs=10.0.0.1"],
                "--include-outbound-cidrs",
                "10.0.0.1",
            ),
            (
                &["--exclude-inbound-ports=80,70000"],
                "--exclude-inbound-ports",
                "70000",
            ),
            (
                &["--exclude-outbound-ports=http"],
                "--exclude-outbound-ports",
                "http",
            ),
            (
                &["--include-inbound-ports=0"],
                "--include-inbound-ports",
                "\"0\"",
            ),
            (&["--proxy-uid=istio-proxy"], "--proxy-uid", "istio-proxy"),
            (&["--proxy-gid=1337,-1"], "--proxy-gid", "-1"),
            (&["--outbound-port=70000"], "--outbound-port", "70000"),
            (&["--inbound-port=0"], "--inbound-port", "0"),
            (
                &["--exclude-outbound-cidrs=*"],
                "--exclude-outbound-cidrs",
                "'*'",
            ),
            (
                &["--exclude-outbound-cidrs=fd00::/8"],
                "--exclude-outbound-cidrs",
                "--ipv6",
            ),
            (&["--proxy-uid=,"], "--proxy-uid", "at least one"),
        ];
        for (argv, flag, value) in cases {
            let mut full = vec!["--dry-run"];
            full.extend_from_slice(argv);
            let err = parse(&full).expect_err(&format!("{argv:?} should be rejected"));
            assert!(err.contains(flag) && err.contains(value), "{argv:?}: {err}");
        }
        let same = parse(&["--dry-run", "--outbound-port=15006"]).unwrap_err();
        assert!(
            same.contains("15006") && same.contains("distinct"),
            "{same}"
        );
    }

    #[test]
    fn ipv6_ranges_are_accepted_with_ipv6() {
        let cfg = parse(&[
            "--dry-run",
            "--ipv6",
            "--exclude-outbound-cidrs=fd00::/8,10.0.0.0/8",
        ])
        .unwrap();
        assert_eq!(cfg.exclude_outbound.len(), 2);
    }
}
