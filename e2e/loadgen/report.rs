//! The run's figures: a progress line, the JSON report, and a short human
//! summary of it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{json, Value};

use crate::hist::Histogram;
use crate::proxies::ProxiesArgs;
use crate::shared::{Shared, COLD, STEADY};
use crate::xds::Kind;

const METHOD: &str = "Convergence = wall-clock time from the churn driver renaming an edited \
file into Rudder's config dir (changes log at_unix_nanos) to a proxy ACKing the first response \
of a type that carries the change. Changes identify themselves: an endpoint flip introduces \
address 198.19.192.0+id; a service edit adds port 20000+id (cluster outbound|P|..., listener *_P, \
route config P); a VirtualService edit adds an HTTP route named change-<id> (a route in route \
configs). 'all_types' is, per proxy, the last of those ACKs. Expected audience: ready proxies whose \
EDS subscription includes the service (endpoint flips) or all ready proxies (service and \
VirtualService edits).";

fn load(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

fn sum(
    shared: &Shared,
    k: Kind,
    f: impl Fn(&crate::shared::PhaseTotals) -> &[AtomicU64; 4],
) -> u64 {
    shared.phases.iter().map(|p| load(&f(p)[k as usize])).sum()
}

pub fn progress(shared: &Shared, n: u32) -> String {
    let secs = (crate::shared::now_ns() - shared.start_ns) as f64 / 1e9;
    let resp: Vec<String> = Kind::ALL
        .iter()
        .map(|&k| format!("{} {}", k.short(), sum(shared, k, |p| &p.responses)))
        .collect();
    let mb: u64 = Kind::ALL
        .iter()
        .map(|&k| sum(shared, k, |p| &p.bytes))
        .sum();
    let nacks: u64 = shared.proxies.iter().map(|p| load(&p.nacks)).sum();
    let logged = shared.book.lock().logged();
    format!(
        "[{secs:7.1}s] streams {}/{n} ready {} | responses {} | {:.1} MB | nacks {nacks} stream errors {} | changes logged {logged}",
        shared.connected.load(Relaxed),
        shared.ready.load(Relaxed),
        resp.join(" "),
        mb as f64 / 1e6,
        load(&shared.stream_errors),
    )
}

/// Mean and max over proxies of one per-type counter.
fn per_proxy(
    shared: &Shared,
    k: Kind,
    f: impl Fn(&crate::shared::ProxySlot) -> &[AtomicU64; 4],
) -> Value {
    let values: Vec<u64> = shared
        .proxies
        .iter()
        .map(|p| load(&f(p)[k as usize]))
        .collect();
    let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
    json!({"mean": (mean * 10.0).round() / 10.0, "min": values.iter().min(), "max": values.iter().max()})
}

fn phase(shared: &Shared, i: usize, k: Kind) -> Value {
    let p = &shared.phases[i];
    let k = k as usize;
    json!({
        "responses": load(&p.responses[k]),
        "bytes": load(&p.bytes[k]),
        "resources": load(&p.resources[k]),
        "redundant_resources": load(&p.redundant[k]),
        "noop_responses": load(&p.noop[k]),
    })
}

fn types(shared: &Shared) -> Value {
    let mut out = serde_json::Map::new();
    for k in Kind::ALL {
        out.insert(
            k.short().into(),
            json!({
                "responses_per_proxy": per_proxy(shared, k, |p| &p.responses),
                "bytes_per_proxy": per_proxy(shared, k, |p| &p.bytes),
                "held_per_proxy": per_proxy(shared, k, |p| &p.held),
                "cold": phase(shared, COLD, k),
                "steady": phase(shared, STEADY, k),
            }),
        );
    }
    Value::Object(out)
}

fn cold_connect(shared: &Shared, all_ready_ns: Option<u64>) -> Value {
    let mut ready = Histogram::default();
    let mut first = Histogram::default();
    for p in &shared.proxies {
        let started = load(&p.started_ns);
        let r = load(&p.ready_ns);
        if r > 0 {
            ready.record(r.saturating_sub(started) / 1000);
        }
        let f = load(&p.first_response_ns[Kind::Cds as usize]);
        if f > 0 {
            first.record(f.saturating_sub(started) / 1000);
        }
    }
    json!({
        "all_ready_seconds": all_ready_ns.map(|t| (t - shared.start_ns) as f64 / 1e9),
        "ready_proxies": load_u32(&shared.ready),
        "per_proxy_ready": ready.summary(),
        "per_proxy_first_cds_response": first.summary(),
    })
}

fn load_u32(a: &std::sync::atomic::AtomicU32) -> u32 {
    a.load(Relaxed)
}

fn changes(shared: &Shared) -> Value {
    let audience = shared.audience();
    let book = shared.book.lock();
    let mut last = Histogram::default();
    let (mut observed, mut complete, mut measurable) = (0, 0, 0);
    let mut incomplete = Vec::new();
    for e in book.entries() {
        measurable += usize::from(audience.measurable(&e.rec));
        if let Some(us) = e.last_latency_us() {
            observed += 1;
            last.record(us);
        }
        if audience.reached(e) {
            complete += 1;
        } else if incomplete.len() < 20 {
            let seen: serde_json::Map<String, Value> = Kind::ALL
                .iter()
                .map(|k| (k.short().to_string(), json!(e.observed[*k as usize])))
                .collect();
            incomplete.push(json!({"id": e.rec.id, "kind": e.rec.kind, "service": e.rec.service, "expected": audience.expected(&e.rec), "observed": seen}));
        }
    }
    let logged = book.logged();
    let convergence: serde_json::Map<String, Value> = Kind::ALL
        .iter()
        .map(|k| {
            (
                k.short().to_string(),
                json!(book.per_type[*k as usize].summary()),
            )
        })
        .chain([("all_types".to_string(), json!(book.full.summary()))])
        .collect();
    // Steady-state bytes over changes made while proxies were up.
    let denom = (measurable as f64 * audience.ready_count() as f64).max(1.0);
    let per_change: serde_json::Map<String, Value> = Kind::ALL
        .iter()
        .map(|&k| {
            (
                k.short().to_string(),
                json!((load(&shared.phases[STEADY].bytes[k as usize]) as f64 / denom).round()),
            )
        })
        .collect();
    json!({
        "method": METHOD,
        "logged": logged,
        "made_after_first_ready": measurable,
        "observed": observed,
        "complete": complete,
        "incomplete_first_20": incomplete,
        "convergence": convergence,
        "per_change_last_proxy": last.summary(),
        "steady_bytes_per_change_per_proxy": per_change,
        "unknown_observations": book.unknown,
        "early_observations": book.early,
        "preexisting_observations": book.preexisting,
    })
}

pub fn build(
    shared: &Shared,
    args: &ProxiesArgs,
    connections: u32,
    all_ready_ns: Option<u64>,
    end_ns: u64,
) -> Value {
    let nacks: u64 = shared.proxies.iter().map(|p| load(&p.nacks)).sum();
    json!({
        "config": {
            "xds_addr": args.xds_addr,
            "mode": if args.delta { "delta" } else { "sotw" },
            "proxies": args.proxies,
            "connections": connections,
            "ramp_per_second": args.ramp,
            "namespaces": args.namespace_count,
            "apps": args.apps,
            "interception": args.interception,
        },
        "duration_seconds": (end_ns - shared.start_ns) as f64 / 1e9,
        "cold_connect": cold_connect(shared, all_ready_ns),
        "types": types(shared),
        "errors": {
            "nacks": nacks,
            "stream_errors": load(&shared.stream_errors),
            "unrequested_resources": load(&shared.unrequested),
            "unanswered_eds_names": load(&shared.unanswered[0]),
            "unanswered_rds_names": load(&shared.unanswered[1]),
        },
        "changes": changes(shared),
    })
}

fn ms_line(v: &Value) -> String {
    if v.is_null() {
        return "-".into();
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    format!(
        "n={} p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        v["count"],
        f("p50_ms"),
        f("p90_ms"),
        f("p99_ms"),
        f("max_ms")
    )
}

/// A few lines for a terminal; the JSON has everything.
pub fn human(r: &Value) -> String {
    let mut out = String::new();
    let c = &r["config"];
    out += &format!(
        "loadgen: {} proxies, {}, {} connections, ran {:.1}s\n",
        c["proxies"],
        c["mode"].as_str().unwrap_or(""),
        c["connections"],
        r["duration_seconds"].as_f64().unwrap_or(0.0)
    );
    let cc = &r["cold_connect"];
    out += &format!(
        "  cold connect: all ready after {} s ({} ready); per proxy {}\n",
        cc["all_ready_seconds"],
        cc["ready_proxies"],
        ms_line(&cc["per_proxy_ready"])
    );
    for k in Kind::ALL {
        let t = &r["types"][k.short()];
        out += &format!(
            "  {}: per proxy {} responses, {} bytes, holds {}; steady: {} responses, {} bytes, {} redundant resources, {} no-op responses\n",
            k.short(),
            t["responses_per_proxy"]["mean"],
            t["bytes_per_proxy"]["mean"],
            t["held_per_proxy"]["mean"],
            t["steady"]["responses"],
            t["steady"]["bytes"],
            t["steady"]["redundant_resources"],
            t["steady"]["noop_responses"],
        );
    }
    let e = &r["errors"];
    out += &format!(
        "  errors: {} NACKs, {} stream errors, {} unrequested resources, never answered: {} EDS / {} RDS names\n",
        e["nacks"],
        e["stream_errors"],
        e["unrequested_resources"],
        e["unanswered_eds_names"],
        e["unanswered_rds_names"]
    );
    let ch = &r["changes"];
    if ch["logged"].as_u64().unwrap_or(0) > 0 {
        out += &format!(
            "  changes: {} logged, {} observed, {} reached every expected proxy\n",
            ch["logged"], ch["observed"], ch["complete"]
        );
        for k in ["eds", "cds", "lds", "rds", "all_types"] {
            if !ch["convergence"][k].is_null() {
                out += &format!("    convergence {k}: {}\n", ms_line(&ch["convergence"][k]));
            }
        }
        out += &format!(
            "    per change, last proxy: {}\n",
            ms_line(&ch["per_change_last_proxy"])
        );
        out += &format!(
            "    steady bytes per change per proxy: {}\n",
            ch["steady_bytes_per_change_per_proxy"]
        );
    }
    out
}
