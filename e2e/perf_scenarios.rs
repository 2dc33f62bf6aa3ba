//! The performance scenarios of e2e/perf/run.sh at a small size, on this
//! build's own binaries (BIN_DIR, so run.sh builds nothing).
//!
//! Nothing here is timed: targets live in the benchmarks and the performance
//! document. These tests check that the scenarios still run and that what they
//! report is a measurement: every proxy counted, every change followed to every
//! proxy it should reach, push counts read from real metrics snapshots. A
//! failure names the scenario, the file, the field and what was expected, and
//! keeps the scenario's OUT directory (reports, logs, snapshots) for a look.
//!
//! run.sh picks its own free ports and each test has its own OUT, so these run
//! in parallel with each other and with the rest of the suite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::workdir;

/// Simulated proxies in every scenario.
const PROXIES: u64 = 10;

/// 20 services of 3 endpoints in 2 namespaces. No Sidecar resources: every
/// proxy imports every service, so every change's audience is every proxy.
const SMALL_MESH: &[(&str, &str)] = &[
    ("SERVICES", "20"),
    ("ENDPOINTS", "3"),
    ("NAMESPACES", "2"),
    ("SIDECAR_SHARE", "0"),
];

/// Seconds run.sh waits for each goal (all proxies ready, changes converged):
/// a stuck scenario fails within a minute instead of run.sh's default ten.
const GOAL_TIMEOUT: &str = "60";

/// Every variable run.sh reads. All are cleared first, so a caller's
/// environment (a PROXIES=1000 left exported from a benchmark) cannot resize
/// the test.
const RUN_SH_VARIABLES: &[&str] = &[
    "SERVICES",
    "ENDPOINTS",
    "NAMESPACES",
    "PROXIES",
    "RATE",
    "DURATION",
    "RAMP",
    "CONNECTIONS",
    "DEBOUNCE",
    "SEED",
    "TIMEOUT",
    "VS_SHARE",
    "DR_SHARE",
    "SIDECAR_SHARE",
    "PROFILE",
    "OUT",
    "BIN_DIR",
];

/// The xDS types the loadgen and Rudder's push counters report on.
const TYPES: [&str; 4] = ["cds", "eds", "lds", "rds"];

// ---------------------------------------------------------------- scenarios

#[test]
fn perf_scenarios_cold() {
    let cold = Scenario::run("cold", &[]);
    let report = cold.report("cold");
    expect_all_ready(&report);
    expect_no_errors(&report);
    report.expect_latency(
        "cold_connect.per_proxy_first_cds_response",
        PROXIES,
        "every proxy got a first CDS response",
    );
    let pushes = cold.pushes("cold", "before", "after");
    for t in TYPES {
        pushes.expect_at_least(t, PROXIES, "each proxy's initial load of every type");
    }
    expect_loadgen_received(&report, &pushes, &["cold", "steady"]);
    // run.sh's RSS figures come from this sampler.
    cold.expect_sampled("rudder-cold.csv");
}

/// Runs `tag`, which makes one change of `kind` (named `what` in messages)
/// that only `pushed` carries: once per proxy, every push ACKed, no other
/// type pushed. Returns the changes log.
fn expect_one_change_of_one_type(
    tag: &'static str,
    kind: &str,
    pushed: &str,
    what: &str,
) -> Vec<Value> {
    let scenario = Scenario::run(tag, &[]);
    let report = scenario.report(tag);
    expect_all_ready(&report);
    expect_no_errors(&report);
    let log = expect_change_kinds(&scenario, tag, 1, kind);
    expect_changes_reached_every_proxy(&report, 1);
    expect_convergence(&report, 1, &[pushed]);
    let pushes = scenario.pushes(tag, "before", "after");
    let upper = pushed.to_uppercase();
    pushes.expect(
        pushed,
        PROXIES,
        &format!("{what} pushes {upper} once per proxy"),
    );
    for t in TYPES.into_iter().filter(|t| *t != pushed) {
        pushes.expect(t, 0, &format!("{what} pushes {upper} only"));
    }
    pushes.expect_every_push_acked(pushed);
    expect_loadgen_received(&report, &pushes, &["steady"]);
    log
}

#[test]
fn perf_scenarios_one_endpoint() {
    expect_one_change_of_one_type("one-endpoint", "endpoints", "eds", "an endpoint change");
}

#[test]
fn perf_scenarios_churn() {
    let (rate, seconds) = (20, 3);
    let changes = rate * seconds;
    let churn = Scenario::run(
        "churn",
        &[
            ("RATE", rate.to_string().as_str()),
            ("DURATION", seconds.to_string().as_str()),
        ],
    );
    let report = churn.report("churn");
    expect_all_ready(&report);
    expect_no_errors(&report);
    expect_change_kinds(&churn, "churn", changes, "endpoints");
    expect_changes_reached_every_proxy(&report, changes);
    expect_convergence(&report, changes, &["eds"]);
    let pushes = churn.pushes("churn", "before", "after");
    pushes.expect_at_least("eds", PROXIES, "endpoint churn pushes EDS to every proxy");
    for t in ["cds", "lds", "rds"] {
        pushes.expect(t, 0, "endpoint churn pushes EDS only");
    }
    expect_loadgen_received(&report, &pushes, &["steady"]);
}

#[test]
fn perf_scenarios_service_edit() {
    let edit = Scenario::run("service-edit", &[]);
    let report = edit.report("service-edit");
    expect_all_ready(&report);
    expect_no_errors(&report);
    expect_change_kinds(&edit, "service-edit", 1, "service");
    expect_changes_reached_every_proxy(&report, 1);
    // A new port: a cluster (CDS) with its endpoints (EDS), a listener (LDS)
    // and a route configuration (RDS), for every proxy.
    expect_convergence(&report, 1, &TYPES);
    let pushes = edit.pushes("service-edit", "before", "after");
    for t in TYPES {
        pushes.expect_at_least(
            t,
            PROXIES,
            "a new service port changes every type for every proxy",
        );
    }
    expect_loadgen_received(&report, &pushes, &["steady"]);
}

#[test]
fn perf_scenarios_vs_edit() {
    let log =
        expect_one_change_of_one_type("vs-edit", "virtual-service", "rds", "a route-only edit");
    let route = &log[0]["route"];
    assert_eq!(
        route, "change-1",
        "perf scenario vs-edit: changes log route = {route}, expected \"change-1\" (the route the proxies look for)"
    );
}

#[test]
fn perf_scenarios_idle() {
    let idle = Scenario::run("idle", &[("DURATION", "2")]);
    let report = idle.report("idle");
    expect_all_ready(&report);
    expect_no_errors(&report);
    report.expect_u64("changes.logged", 0, "nothing changes while idle");
    let pushes = idle.pushes("idle", "idle-start", "idle-end");
    for t in TYPES {
        pushes.expect(t, 0, "converged proxies and no changes: nothing to push");
    }
    // The loadgen's steady phase starts earlier (at ready), so this also
    // says nothing reached the proxies between ready and the idle window.
    expect_loadgen_received(&report, &pushes, &["steady"]);
}

#[test]
fn perf_scenarios_delta_vs_sotw() {
    let (rate, seconds) = (10, 2);
    let endpoint_changes = rate * seconds;
    let dvs = Scenario::run(
        "delta-vs-sotw",
        &[
            ("RATE", rate.to_string().as_str()),
            ("DURATION", seconds.to_string().as_str()),
        ],
    );
    for mode in ["sotw", "delta"] {
        let tag = format!("dvs-{mode}");
        let report = dvs.report(&tag);
        report.expect_str("config.mode", mode, "each mode on its own Rudder");
        expect_all_ready(&report);
        expect_no_errors(&report);
        // The endpoint churn, then one service edit.
        let log = dvs.changes_log(&tag);
        let kinds: Vec<&str> = log.iter().filter_map(|c| c["kind"].as_str()).collect();
        let mut want = vec!["endpoints"; endpoint_changes as usize];
        want.push("service");
        assert_eq!(
            kinds, want,
            "perf scenario delta-vs-sotw ({mode}): kinds in the changes log"
        );
        expect_changes_reached_every_proxy(&report, endpoint_changes + 1);
        // Each change reaches each proxy over EDS: the flipped address, or
        // the new port's cluster.
        report.expect_latency(
            "changes.convergence.eds",
            (endpoint_changes + 1) * PROXIES,
            "EDS convergence of every (change, proxy)",
        );
        expect_loadgen_received(&report, &dvs.pushes(&tag, "before", "after"), &["steady"]);
        expect_bytes_per_proxy(&dvs, &report, &tag, endpoint_changes);
    }
}

// ------------------------------------------------------------ expectations

/// Every proxy connected, got every type and counted it; the cold-connect
/// figures cover all of them.
fn expect_all_ready(report: &Report) {
    report.expect_u64("config.proxies", PROXIES, "PROXIES given to run.sh");
    report.expect_u64("cold_connect.ready_proxies", PROXIES, "every proxy ready");
    report.expect_latency(
        "cold_connect.per_proxy_ready",
        PROXIES,
        "cold-connect time of every proxy",
    );
    let all_ready = report.f64("cold_connect.all_ready_seconds");
    let ran = report.f64("duration_seconds");
    report.check(
        "cold_connect.all_ready_seconds",
        all_ready > 0.0 && all_ready <= ran,
        &format!("within the run (0, {ran}] s"),
    );
    for t in TYPES {
        report.expect_positive(
            &format!("types.{t}.bytes_per_proxy.min"),
            "bytes to every proxy",
        );
        report.expect_positive(
            &format!("types.{t}.held_per_proxy.min"),
            "resources every proxy holds",
        );
    }
}

fn expect_no_errors(report: &Report) {
    for field in [
        "nacks",
        "stream_errors",
        "unrequested_resources",
        "unanswered_eds_names",
        "unanswered_rds_names",
    ] {
        report.expect_u64(&format!("errors.{field}"), 0, "a clean run");
    }
}

/// The churn driver logged `count` changes, all of `kind`; the log's lines.
fn expect_change_kinds(scenario: &Scenario, tag: &str, count: u64, kind: &str) -> Vec<Value> {
    let log = scenario.changes_log(tag);
    assert_eq!(
        log.len() as u64,
        count,
        "perf scenario {}: changes in mesh-{tag}/changes.jsonl",
        scenario.name
    );
    for change in &log {
        assert_eq!(
            change["kind"], kind,
            "perf scenario {}: kind of change {change}",
            scenario.name
        );
    }
    log
}

/// The loadgen read every logged change, all made once proxies were up, and
/// saw each reach every proxy it should; no observation went unexplained.
fn expect_changes_reached_every_proxy(report: &Report, changes: u64) {
    report.expect_u64(
        "changes.logged",
        changes,
        "every change the churn driver made",
    );
    report.expect_u64(
        "changes.made_after_first_ready",
        changes,
        "changes made once proxies were ready",
    );
    let complete = report.u64("changes.complete");
    report.check(
        "changes.complete",
        complete == changes,
        &format!(
            "{changes}, every change reached every expected proxy; not reached: {}",
            report.get("changes.incomplete_first_20")
        ),
    );
    report.expect_u64("changes.observed", changes, "changes some proxy observed");
    report.expect_latency(
        "changes.per_change_last_proxy",
        changes,
        "one last-proxy time per change",
    );
    for field in [
        "unknown_observations",
        "early_observations",
        "preexisting_observations",
    ] {
        report.expect_u64(
            &format!("changes.{field}"),
            0,
            "observations all match a change",
        );
    }
}

/// One convergence sample per (change, proxy) for each type that carries the
/// change, none for the others; steady bytes where the change went.
fn expect_convergence(report: &Report, changes: u64, carried_by: &[&str]) {
    let samples = changes * PROXIES;
    for t in TYPES {
        let field = format!("changes.convergence.{t}");
        if carried_by.contains(&t) {
            report.expect_latency(&field, samples, "one per (change, proxy)");
            report.expect_positive(
                &format!("changes.steady_bytes_per_change_per_proxy.{t}"),
                "the change's bytes",
            );
        } else {
            report.expect_null(&field, "this type does not carry the change");
        }
    }
    report.expect_latency(
        "changes.convergence.all_types",
        samples,
        "one per (change, proxy)",
    );
}

/// Two independent counts agree: the responses and resource bytes the
/// loadgen's proxies received in `phases` (cold: before a proxy was ready,
/// steady: after) are what Rudder counted as pushed between the snapshots.
/// The windows match because the snapshots bracket the loadgen's phase:
/// "before" is taken once Rudder has stopped pushing after the cold connect
/// (or before the proxies start), "after" once the loadgen's goal is met.
fn expect_loadgen_received(report: &Report, pushes: &Pushes, phases: &[&str]) {
    for t in TYPES {
        let received = |what: &str| -> u64 {
            phases
                .iter()
                .map(|p| report.u64(&format!("types.{t}.{p}.{what}")))
                .sum()
        };
        let (responses, bytes) = (received("responses"), received("bytes"));
        assert!(
            (responses, bytes) == (pushes.pushes(t), pushes.bytes(t)),
            "perf scenario {}: {} types.{t}.{{{}}} says the proxies received {responses} responses, \
             {bytes} bytes; expected what Rudder pushed between {}: {} responses, {} bytes",
            report.scenario,
            report.file,
            phases.join(","),
            pushes.between,
            pushes.pushes(t),
            pushes.bytes(t)
        );
    }
}

/// run.sh's delta-vs-sotw table from the same inputs: bytes per proxy for
/// the cold connect (report), per endpoint change and for the service edit
/// (Rudder's push byte counters between the phases). All must be measured.
fn expect_bytes_per_proxy(scenario: &Scenario, report: &Report, tag: &str, endpoint_changes: u64) {
    let cold: u64 = TYPES
        .iter()
        .map(|t| report.u64(&format!("types.{t}.cold.bytes")))
        .sum();
    let per_endpoint_change =
        scenario.pushes(tag, "before", "churned").total_bytes() / (endpoint_changes * PROXIES);
    let service_edit = scenario.pushes(tag, "churned", "after").total_bytes() / PROXIES;
    for (what, bytes) in [
        ("cold connect", cold / PROXIES),
        ("endpoint change", per_endpoint_change),
        ("service edit", service_edit),
    ] {
        assert!(
            bytes > 0,
            "perf scenario {} ({tag}): {what} bytes per proxy = {bytes}, expected > 0",
            scenario.name
        );
    }
}

// ------------------------------------------------------------ running run.sh

/// One run.sh invocation and the directory it wrote.
struct Scenario {
    name: &'static str,
    out: TempDir,
    /// run.sh's stdout and stderr, shown when a check fails.
    output: String,
}

impl Scenario {
    /// Runs `e2e/perf/run.sh NAME` on the small mesh with this build's
    /// binaries; panics with its output if it fails.
    fn run(name: &'static str, extra_env: &[(&str, &str)]) -> Scenario {
        let out = workdir(&format!("perf-{name}"));
        let bin_dir = binaries_dir();
        // --pdeathsig TERM: a test process killed outright still stops run.sh,
        // whose exit trap stops the rudder and loadgen it started.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--", "bash", "e2e/perf/run.sh", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        for var in RUN_SH_VARIABLES {
            cmd.env_remove(var);
        }
        cmd.env("BIN_DIR", &bin_dir)
            .env("OUT", out.path())
            .env("PROXIES", PROXIES.to_string())
            .env("TIMEOUT", GOAL_TIMEOUT)
            .envs(SMALL_MESH.iter().copied())
            .envs(extra_env.iter().copied());
        let result = cmd
            .output()
            .unwrap_or_else(|e| panic!("perf scenario {name}: cannot run run.sh: {e}"));
        let output = format!(
            "--- run.sh stdout ---\n{}--- run.sh stderr ---\n{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        let scenario = Scenario { name, out, output };
        // Dropped while panicking, the scenario prints run.sh's output and keeps OUT.
        assert!(
            result.status.success(),
            "perf scenario {name}: run.sh failed ({}); its output is printed with this failure",
            result.status
        );
        scenario
    }

    fn path(&self, file: &str) -> PathBuf {
        self.out.path().join(file)
    }

    /// The loadgen's JSON report for run TAG.
    fn report(&self, tag: &str) -> Report {
        let file = format!("report-{tag}.json");
        let text = self.read(&file);
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("perf scenario {}: {file} is not JSON: {e}", self.name));
        Report {
            scenario: self.name,
            file,
            json,
        }
    }

    /// The churn driver's log for run TAG, one JSON value per change.
    fn changes_log(&self, tag: &str) -> Vec<Value> {
        let file = format!("mesh-{tag}/changes.jsonl");
        self.read(&file)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("perf scenario {}: {file}: bad line {l:?}: {e}", self.name)
                })
            })
            .collect()
    }

    /// Rudder's pushes between two of run.sh's metrics snapshots, as run.sh
    /// computes them for its summary.
    fn pushes(&self, tag: &str, from: &str, to: &str) -> Pushes {
        let before = self.snapshot(tag, from);
        let after = self.snapshot(tag, to);
        let mut counts = HashMap::new();
        for t in TYPES {
            let pushes = push_metric("rudder_xds_pushes_total", t);
            // By the end of any scenario every type has been pushed: a counter
            // missing there is a renamed metric, and every difference would
            // read 0.
            assert!(
                after.values.contains_key(&pushes),
                "perf scenario {}: {} has no {pushes}",
                self.name,
                after.file
            );
            let rise = |metric: &str| {
                let name = push_metric(metric, t);
                after.counter(&name) - before.counter(&name)
            };
            counts.insert(
                t,
                PushCounts {
                    pushes: rise("rudder_xds_pushes_total"),
                    bytes: rise("rudder_xds_push_bytes_total"),
                    acked: rise("rudder_xds_convergence_seconds_count"),
                },
            );
        }
        Pushes {
            scenario: self.name,
            between: format!("{} and {}", before.file, after.file),
            counts,
        }
    }

    fn snapshot(&self, tag: &str, phase: &str) -> Snapshot {
        let file = format!("metrics-{tag}-{phase}.txt");
        let text = self.read(&file);
        // run.sh ignores a failed curl (an empty file): all its counters would
        // then read 0, which passes for "nothing pushed".
        assert!(
            text.lines().any(|l| l == "# EOF"),
            "perf scenario {}: {file} is not a whole metrics snapshot:\n{text}",
            self.name
        );
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect();
        Snapshot { file, values }
    }

    /// A sampler CSV (elapsed_s,phase,rss_kb,cpu_s) has rows with a real RSS.
    fn expect_sampled(&self, file: &str) {
        let text = self.read(file);
        let peak_rss_kb = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(2)?.parse::<u64>().ok())
            .max();
        assert!(
            peak_rss_kb.is_some_and(|kb| kb > 0),
            "perf scenario {}: {file} has no RSS sample > 0:\n{text}",
            self.name
        );
    }

    fn read(&self, file: &str) -> String {
        let path = self.path(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "perf scenario {}: run.sh left no {file} ({}): {e}",
                self.name,
                path.display()
            )
        })
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.out.disable_cleanup(true);
            eprintln!(
                "perf scenario {}: results kept in {}\n{}",
                self.name,
                self.out.path().display(),
                self.output
            );
        }
    }
}

/// The directory of this build's binaries, given to run.sh as BIN_DIR.
fn binaries_dir() -> PathBuf {
    let rudder = Path::new(env!("CARGO_BIN_EXE_rudder"));
    let loadgen = Path::new(env!("CARGO_BIN_EXE_rudder-loadgen"));
    let dir = rudder.parent().expect("rudder binary has a directory");
    assert_eq!(
        Some(dir),
        loadgen.parent(),
        "run.sh takes rudder and rudder-loadgen from one directory"
    );
    dir.to_path_buf()
}

// ------------------------------------------------------------ reading results

/// A loadgen JSON report, with checks that name the scenario, file and field.
struct Report {
    scenario: &'static str,
    file: String,
    json: Value,
}

impl Report {
    /// The value at a dotted path (`changes.convergence.eds`); Null if absent.
    fn get(&self, path: &str) -> &Value {
        path.split('.')
            .try_fold(&self.json, |v, key| v.get(key))
            .unwrap_or(&Value::Null)
    }

    fn u64(&self, path: &str) -> u64 {
        let v = self.get(path);
        v.as_u64()
            .unwrap_or_else(|| self.fail(path, v, "an integer"))
    }

    fn f64(&self, path: &str) -> f64 {
        let v = self.get(path);
        v.as_f64()
            .filter(|f| f.is_finite())
            .unwrap_or_else(|| self.fail(path, v, "a finite number"))
    }

    fn check(&self, path: &str, ok: bool, expected: &str) {
        if !ok {
            self.fail(path, self.get(path), expected);
        }
    }

    fn fail(&self, path: &str, got: &Value, expected: &str) -> ! {
        panic!(
            "perf scenario {}: {} {path} = {got}, expected {expected}",
            self.scenario, self.file
        )
    }

    fn expect_u64(&self, path: &str, want: u64, why: &str) {
        let got = self.u64(path);
        self.check(path, got == want, &format!("{want} ({why})"));
    }

    fn expect_str(&self, path: &str, want: &str, why: &str) {
        let ok = self.get(path).as_str() == Some(want);
        self.check(path, ok, &format!("{want:?} ({why})"));
    }

    fn expect_positive(&self, path: &str, why: &str) {
        let got = self.f64(path);
        self.check(path, got > 0.0, &format!("> 0 ({why})"));
    }

    fn expect_null(&self, path: &str, why: &str) {
        self.check(path, self.get(path).is_null(), &format!("null ({why})"));
    }

    /// A latency summary of `count` samples, each positive, ordered, and
    /// within the loadgen's run (nothing it measured can outlast it).
    fn expect_latency(&self, path: &str, count: u64, why: &str) {
        self.expect_u64(&format!("{path}.count"), count, why);
        let ran_ms = self.f64("duration_seconds") * 1000.0;
        let ms = |p: &str| self.f64(&format!("{path}.{p}_ms"));
        let (p50, p90, p99, max) = (ms("p50"), ms("p90"), ms("p99"), ms("max"));
        let ordered = 0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max && max <= ran_ms;
        self.check(
            path,
            ordered,
            &format!("0 < p50 <= p90 <= p99 <= max <= the run's {ran_ms} ms ({why})"),
        );
    }
}

/// One metrics snapshot run.sh saved (`metrics-TAG-PHASE.txt`).
struct Snapshot {
    file: String,
    values: HashMap<String, f64>,
}

impl Snapshot {
    /// A counter's value; 0 when absent (never incremented), as run.sh reads it.
    fn counter(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0.0) as u64
    }
}

fn push_metric(name: &str, xds_type: &str) -> String {
    format!("{name}{{type=\"{xds_type}\"}}")
}

/// Rudder's pushes per type between two snapshots.
struct Pushes {
    scenario: &'static str,
    between: String,
    counts: HashMap<&'static str, PushCounts>,
}

/// How much three of Rudder's counters of one type rose.
struct PushCounts {
    pushes: u64,
    /// Resource bytes in those pushes.
    bytes: u64,
    /// ACKs of pushes made for a config change: Rudder's convergence
    /// histogram takes one sample per such ACK (not for answers to a new
    /// subscription, nor for a push superseded before its ACK).
    acked: u64,
}

impl Pushes {
    fn pushes(&self, xds_type: &str) -> u64 {
        self.counts[xds_type].pushes
    }

    fn bytes(&self, xds_type: &str) -> u64 {
        self.counts[xds_type].bytes
    }

    fn total_bytes(&self) -> u64 {
        self.counts.values().map(|c| c.bytes).sum()
    }

    /// Rudder, not only the loadgen, saw an ACK for each push of a single
    /// change (one push per proxy: none is superseded).
    fn expect_every_push_acked(&self, xds_type: &str) {
        let acked = self.counts[xds_type].acked;
        assert!(
            acked == self.pushes(xds_type),
            "perf scenario {}: rudder_xds_convergence_seconds_count{{type=\"{xds_type}\"}} rose by {acked} \
             between {}, expected {} (an ACK for every push)",
            self.scenario,
            self.between,
            self.pushes(xds_type)
        );
    }

    fn expect(&self, xds_type: &str, want: u64, why: &str) {
        self.check(
            xds_type,
            self.pushes(xds_type) == want,
            &format!("{want} ({why})"),
        );
    }

    fn expect_at_least(&self, xds_type: &str, min: u64, why: &str) {
        self.check(
            xds_type,
            self.pushes(xds_type) >= min,
            &format!(">= {min} ({why})"),
        );
    }

    fn check(&self, xds_type: &str, ok: bool, expected: &str) {
        assert!(
            ok,
            "perf scenario {}: {} rose by {} between {}, expected {expected}",
            self.scenario,
            push_metric("rudder_xds_pushes_total", xds_type),
            self.pushes(xds_type),
            self.between
        );
    }
}
