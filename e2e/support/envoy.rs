//! Real Envoy processes bootstrapped by `rudder bootstrap`.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{envoy_bin, free_port, poll, try_http_get, workdir, Proc};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Envoy {
    pub proc: Proc,
    pub node_id: String,
    pub admin_port: u16,
    pub stats_port: u16,
    pub readiness_port: u16,
    pub bootstrap: PathBuf,
}

/// Runs the real `rudder bootstrap ARGS --output OUT`; panics with its stderr
/// when it fails.
pub fn render_bootstrap(out: &Path, args: &[&str]) -> PathBuf {
    let result = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .arg("bootstrap")
        .args(args)
        .arg("--output")
        .arg(out)
        .output()
        .expect("running `rudder bootstrap`");
    assert!(
        result.status.success() && out.is_file(),
        "`rudder bootstrap {}` failed ({}):\n{}{}",
        args.join(" "),
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    out.to_path_buf()
}

/// `envoy --mode validate -c CONFIG`: Ok(output) when Envoy accepts the file,
/// Err(output) with Envoy's reason otherwise.
pub fn envoy_validate(config: &Path) -> Result<String, String> {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(config)
        .output()
        .expect("running envoy --mode validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "envoy validate {} ({}):\n{text}",
            config.display(),
            out.status
        ))
    }
}

/// Bootstraps (via `rudder bootstrap`) and starts an Envoy for `node_id`
/// talking ADS to `xds_addr` (SotW, or delta when `delta`), with admin,
/// stats and readiness on fresh ports. Does not wait: see [`Envoy::wait_ready`].
pub fn spawn_envoy(
    node_id: &str,
    xds_addr: impl Display,
    delta: bool,
    extra_bootstrap_args: &[&str],
) -> Envoy {
    spawn_envoy_edited(node_id, xds_addr, delta, extra_bootstrap_args, |_| {})
}

/// Like [`spawn_envoy`], but `edit` may change the rendered bootstrap first,
/// for what `rudder bootstrap` has no flag for.
pub fn spawn_envoy_edited(
    node_id: &str,
    xds_addr: impl Display,
    delta: bool,
    extra_bootstrap_args: &[&str],
    edit: impl FnOnce(&mut Value),
) -> Envoy {
    let (admin_port, stats_port, readiness_port) = (free_port(), free_port(), free_port());
    let dir = workdir("envoy");
    let bootstrap = dir.path().join("bootstrap.json");
    let ports = [
        ("--admin-port", admin_port),
        ("--stats-port", stats_port),
        ("--readiness-port", readiness_port),
    ];
    let mut args: Vec<String> = vec!["--node-id".into(), node_id.into()];
    args.extend(["--xds-addr".into(), xds_addr.to_string()]);
    args.extend(
        ports
            .iter()
            .flat_map(|(f, p)| [f.to_string(), p.to_string()]),
    );
    args.extend(delta.then(|| "--delta".to_string()));
    args.extend(extra_bootstrap_args.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    render_bootstrap(&bootstrap, &args);
    edit_json(&bootstrap, edit);

    let mut cmd = Command::new(envoy_bin());
    cmd.arg("-c").arg(&bootstrap).args(envoy_flags());
    Envoy {
        proc: Proc::spawn_in("envoy", cmd, dir),
        node_id: node_id.to_string(),
        admin_port,
        stats_port,
        readiness_port,
        bootstrap,
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let text = std::fs::read_to_string(path).expect("reading the bootstrap");
    let mut doc: Value = serde_json::from_str(&text).expect("bootstrap is JSON");
    edit(&mut doc);
    let text = serde_json::to_string_pretty(&doc).expect("serializing the bootstrap");
    std::fs::write(path, text).expect("writing the bootstrap");
}

/// No hot restart means no shared memory, so concurrent Envoys need no
/// distinct --base-id. One worker thread is plenty for tests on a small box.
/// E2E_ENVOY_LOG_LEVEL (e.g. `debug`) helps when chasing a failure.
pub(crate) fn envoy_flags() -> Vec<String> {
    let level = std::env::var("E2E_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    [
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        &level,
        // A listener update keeps open connections on the old filter chain
        // until they drain (600 s by default). Tests that change policy
        // need the change on every connection soon after the ACK.
        "--drain-time-s",
        "1",
        "--drain-strategy",
        "immediate",
        // Access logs to files are flushed every 10 s by default; tests read
        // them from the log file soon after the request.
        "--file-flush-interval-msec",
        "100",
    ]
    .map(str::to_string)
    .to_vec()
}

impl Envoy {
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }

    /// GET an admin path (e.g. `/clusters`); Err on transport errors.
    pub fn try_admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        try_http_get(&format!("{}{path}", self.admin_url()), None)
    }

    /// GET an admin path and return the body; panics (with Envoy's log) unless 200.
    pub fn admin_get(&self, path: &str) -> String {
        match self.try_admin_get(path) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!(
                "envoy admin GET {path}: {status}: {body}{}",
                self.log_tail(30)
            ),
            Err(e) => panic!("envoy admin GET {path}: {e:#}{}", self.log_tail(30)),
        }
    }

    /// Waits until admin `/ready` is 200, i.e. Envoy received its initial
    /// CDS/LDS (the bootstrap's initial_fetch_timeout is 0).
    pub fn wait_ready(&self) {
        self.wait_for("admin /ready to answer 200", READY_TIMEOUT, |e| {
            matches!(e.try_admin_get("/ready"), Ok((200, _)))
        });
    }

    /// Polls `cond` until true; panics naming `what`, with Envoy's log tail,
    /// on timeout or if Envoy exits meanwhile.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Envoy) -> bool) {
        let done = poll(timeout, || {
            self.proc.assert_running(&format!("waiting for {what}"));
            cond(self).then_some(())
        });
        assert!(
            done.is_some(),
            "envoy {}: timed out after {timeout:?} waiting for {what}{}",
            self.node_id,
            self.log_tail(40)
        );
    }

    /// `/config_dump?include_eds` as JSON.
    pub fn config_dump(&self) -> Value {
        let body = self.admin_get("/config_dump?include_eds");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("envoy config_dump is not JSON: {e}\n{body}"))
    }

    /// The config_dump section whose `@type` ends with `.suffix`, e.g.
    /// `ClustersConfigDump`, `ListenersConfigDump`, `RoutesConfigDump`,
    /// `EndpointsConfigDump`; `Value::Null` when absent. The dot matters:
    /// `ScopedRoutesConfigDump` comes first and also ends with `RoutesConfigDump`.
    pub fn config_section(&self, suffix: &str) -> Value {
        let dump = self.config_dump();
        let configs = dump["configs"].as_array().cloned().unwrap_or_default();
        let dotted = format!(".{suffix}");
        let found = configs
            .into_iter()
            .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(&dotted)));
        found.unwrap_or(Value::Null)
    }

    /// Names of clusters received over xDS (CDS).
    pub fn dynamic_cluster_names(&self) -> Vec<String> {
        let section = self.config_section("ClustersConfigDump");
        names(&section["dynamic_active_clusters"], &["cluster", "name"])
    }

    /// Names of listeners received over xDS (LDS) that are active.
    pub fn dynamic_listener_names(&self) -> Vec<String> {
        let section = self.config_section("ListenersConfigDump");
        names(
            &section["dynamic_listeners"],
            &["active_state", "listener", "name"],
        )
    }

    /// Names of route configurations received over xDS (RDS).
    pub fn dynamic_route_names(&self) -> Vec<String> {
        let section = self.config_section("RoutesConfigDump");
        names(&section["dynamic_route_configs"], &["route_config", "name"])
    }

    /// A counter or gauge by its exact name (e.g.
    /// `cluster.xds-grpc.upstream_cx_total`); None if absent, a histogram,
    /// or admin is not up yet (so it can be polled right after spawning).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let (200, stats) = self.try_admin_get("/stats").ok()? else {
            return None;
        };
        let prefix = format!("{name}: ");
        let line = stats.lines().find(|l| l.starts_with(&prefix))?;
        line[prefix.len()..].trim().parse().ok()
    }
}

/// `items[*].path...` as strings, skipping items without that path.
fn names(items: &Value, path: &[&str]) -> Vec<String> {
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    let pick = |item: &Value| {
        let leaf = path.iter().fold(item, |v, key| &v[*key]);
        leaf.as_str().map(str::to_string)
    };
    items.iter().filter_map(pick).collect()
}
