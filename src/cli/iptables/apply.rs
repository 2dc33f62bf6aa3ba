//! The I/O half: look with `iptables-save`, change with `iptables-restore
//! --noflush`. Every change is one restore transaction per address family,
//! so a failure leaves that family's nat table as it was.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::{render_tables, CaptureConfig};

/// The command pair for one address family.
#[derive(Clone, Copy)]
struct Family {
    save: &'static str,
    restore: &'static str,
    label: &'static str,
}

const V4: Family = Family {
    save: "iptables-save",
    restore: "iptables-restore",
    label: "IPv4",
};
const V6: Family = Family {
    save: "ip6tables-save",
    restore: "ip6tables-restore",
    label: "IPv6",
};

pub fn apply(cfg: &CaptureConfig) -> anyhow::Result<()> {
    let tables = render_tables(cfg)?;
    let mut plan = vec![(V4, tables.v4)];
    if let Some(v6) = tables.v6 {
        plan.push((V6, v6));
    }
    // Look at every family before touching any, so a refusal changes nothing.
    for (family, _) in &plan {
        let existing = istio_chains(&save(*family)?);
        if !existing.is_empty() {
            let flag = if cfg.ipv6 { " --ipv6" } else { "" };
            bail!(
                "the {} nat table already has {}: capture rules are already installed \
                 (by an earlier --apply or Istio's init container). Run `rudder iptables --cleanup{flag}` \
                 first, then --apply again.",
                family.label,
                existing.join(", ")
            );
        }
    }
    if cfg.ipv6 {
        // IPv6 lo only holds ::1/128, so Envoy could not bind the ::6
        // passthrough source the rules exempt; Istio adds it the same way.
        // `replace` is idempotent where `add` fails on a second run.
        run(
            "ip",
            &["-6", "addr", "replace", "::6/128", "dev", "lo"],
            None,
        )?;
    }
    let mut applied = Vec::new();
    for (family, text) in &plan {
        if let Err(err) = restore(*family, text) {
            // Keep the families consistent: no IPv4 capture without the
            // IPv6 capture that was asked for alongside it.
            for done in applied {
                if let Err(undo) = cleanup_family(done) {
                    return Err(err.context(format!("also failed to roll back: {undo:#}")));
                }
            }
            return Err(err);
        }
        applied.push(*family);
    }
    let labels: Vec<&str> = applied.iter().map(|f| f.label).collect();
    println!(
        "capture rules installed ({}): outbound TCP -> :{}, inbound TCP -> :{}; undo with `rudder iptables --cleanup{}`",
        labels.join(" + "),
        cfg.outbound_port,
        cfg.inbound_port,
        if cfg.ipv6 { " --ipv6" } else { "" }
    );
    Ok(())
}

pub fn cleanup(ipv6: bool) -> anyhow::Result<()> {
    let families: &[Family] = if ipv6 { &[V4, V6] } else { &[V4] };
    for family in families {
        cleanup_family(*family)?;
    }
    Ok(())
}

fn cleanup_family(family: Family) -> anyhow::Result<()> {
    match cleanup_script(&save(family)?) {
        None => println!("{}: no capture rules to remove", family.label),
        Some(script) => {
            restore(family, &script.text)?;
            println!(
                "{}: removed {} jump rule(s) and chains {}",
                family.label,
                script.jumps,
                script.chains.join(", ")
            );
        }
    }
    Ok(())
}

fn save(family: Family) -> anyhow::Result<String> {
    run(family.save, &["-t", "nat"], None)
}

fn restore(family: Family, text: &str) -> anyhow::Result<()> {
    run(family.restore, &["--noflush"], Some(text)).map(drop)
}

/// Runs a command, feeding `stdin`; a failure names the command line, its
/// exit status and its stderr, and for a restore, the input line it
/// rejected.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let shown = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("could not run `{shown}` (is it installed and on PATH? run as root)")
        })?;
    if let Some(input) = stdin {
        // Dropping the handle closes the pipe so the command sees EOF.
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("writing the rules to `{shown}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{shown}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut msg = format!("`{shown}` failed ({}): {}", out.status, stderr.trim());
        if let Some(line) = stdin.and_then(|input| failed_line(&stderr, input)) {
            msg.push_str(&format!("\n  the rejected input line: {line}"));
        }
        bail!(msg);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// iptables-restore reports `line N failed`; quote that line so the user
/// sees the rule without re-rendering it.
fn failed_line<'a>(stderr: &str, input: &'a str) -> Option<&'a str> {
    let rest = &stderr[stderr.find("line ")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: usize = digits.parse().ok()?;
    input.lines().nth(n.checked_sub(1)?)
}

/// Chains named `ISTIO_*` in `iptables-save -t nat` output. The whole
/// prefix, not just our four: Istio's init container also creates e.g.
/// ISTIO_OUTPUT_DNS, and applying over it would double the capture.
fn istio_chains(save: &str) -> Vec<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("ISTIO_"))
        .map(str::to_string)
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
struct CleanupScript {
    text: String,
    jumps: usize,
    chains: Vec<String>,
}

/// The restore transaction that undoes capture: delete every rule outside
/// the ISTIO_* chains that jumps into them (PREROUTING, OUTPUT, whatever
/// else), then flush all ISTIO_* chains, then delete them; flushing all
/// first removes the references between them. `None` when nothing is there.
fn cleanup_script(save: &str) -> Option<CleanupScript> {
    let chains = istio_chains(save);
    let mut text = String::from("*nat\n");
    let mut jumps = 0;
    for line in save.lines() {
        let Some(spec) = line.strip_prefix("-A ") else {
            continue;
        };
        let mut words = spec.split_whitespace();
        let chain = words.next().unwrap_or_default();
        if chain.starts_with("ISTIO_") {
            continue;
        }
        let words: Vec<&str> = words.collect();
        let jumps_in = words
            .windows(2)
            .any(|w| matches!(w[0], "-j" | "-g") && chains.iter().any(|c| c == w[1]));
        if jumps_in {
            // iptables-save prints rules in the canonical form -D matches.
            text.push_str(&format!("-D {spec}\n"));
            jumps += 1;
        }
    }
    if chains.is_empty() && jumps == 0 {
        return None;
    }
    for chain in &chains {
        text.push_str(&format!("-F {chain}\n"));
    }
    for chain in &chains {
        text.push_str(&format!("-X {chain}\n"));
    }
    text.push_str("COMMIT\n");
    Some(CleanupScript {
        text,
        jumps,
        chains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
:KUBE-SOMETHING - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A OUTPUT -d 10.0.0.0/8 -j KUBE-SOMETHING
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
";

    #[test]
    fn finds_istio_chains_only() {
        let chains = istio_chains(SAVED);
        assert_eq!(
            chains,
            [
                "ISTIO_INBOUND",
                "ISTIO_IN_REDIRECT",
                "ISTIO_OUTPUT",
                "ISTIO_REDIRECT"
            ]
        );
    }

    #[test]
    fn cleanup_removes_every_jump_then_flushes_then_deletes() {
        let script = cleanup_script(SAVED).unwrap();
        assert_eq!(script.jumps, 3, "a doubled jump is removed twice");
        pretty_assertions::assert_eq!(
            script.text,
            "*nat\n\
             -D PREROUTING -p tcp -j ISTIO_INBOUND\n\
             -D OUTPUT -p tcp -j ISTIO_OUTPUT\n\
             -D OUTPUT -p tcp -j ISTIO_OUTPUT\n\
             -F ISTIO_INBOUND\n-F ISTIO_IN_REDIRECT\n-F ISTIO_OUTPUT\n-F ISTIO_REDIRECT\n\
             -X ISTIO_INBOUND\n-X ISTIO_IN_REDIRECT\n-X ISTIO_OUTPUT\n-X ISTIO_REDIRECT\n\
             COMMIT\n"
        );
    }

    #[test]
    fn cleanup_of_a_clean_table_is_nothing() {
        let clean = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(cleanup_script(clean), None);
        assert_eq!(cleanup_script(""), None);
    }

    #[test]
    fn failed_line_quotes_the_rejected_rule() {
        let input = "*nat\n-N ISTIO_INBOUND\nCOMMIT\n";
        let stderr = "iptables-restore: line 2 failed: Chain already exists.\n";
        assert_eq!(failed_line(stderr, input), Some("-N ISTIO_INBOUND"));
        assert_eq!(failed_line("no line number", input), None);
        assert_eq!(failed_line("line 0 failed", input), None);
    }
}
