//! `rudder-loadgen churn`: edits the mesh written by `mesh` at a steady rate
//! and logs each change (id, wall-clock time, what) as a JSON line. The log
//! is also the churn driver's memory: a later run replays it to know the
//! current state and continues the ids.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::changes::{ChangeKind, ChangeRecord};
use crate::mesh::{self, MeshSpec, Rng, Svc};
use crate::plan;
use crate::shared::now_ns;

#[derive(clap::Args, Debug, Clone)]
pub struct ChurnArgs {
    /// A directory written by `mesh --out`.
    #[arg(long)]
    pub dir: PathBuf,
    /// Changes per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Stop after this long, e.g. 60s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many changes.
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value = "endpoints")]
    pub kind: ChangeKind,
    /// Changes log [default: DIR/changes.jsonl].
    #[arg(long, value_name = "FILE")]
    pub changes_log: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// An endpoint flip never replaces an address younger than this, so every
    /// change stays visible long enough for proxies to receive it.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
}

struct Churn {
    dir: PathBuf,
    spec: MeshSpec,
    svcs: Vec<Svc>,
    next_id: u32,
    /// (service, slot) -> when its address last changed (unix ns).
    changed_at: HashMap<(u32, u32), u64>,
    rng: Rng,
}

fn service_index(rec: &ChangeRecord) -> Option<u32> {
    rec.service.rsplit_once("/svc-")?.1.parse().ok()
}

impl Churn {
    fn open(dir: &Path, log: &Path, seed: u64) -> anyhow::Result<Churn> {
        let spec = MeshSpec::load(dir)?;
        let mut churn = Churn {
            dir: dir.to_path_buf(),
            svcs: spec.build(),
            spec,
            next_id: 1,
            changed_at: HashMap::new(),
            rng: Rng::new(seed),
        };
        if let Ok(text) = std::fs::read_to_string(log) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let rec: ChangeRecord = serde_json::from_str(line)
                    .with_context(|| format!("{}: bad line {line:?}", log.display()))?;
                churn.replay(&rec);
            }
        }
        // Different runs on one log draw different services.
        churn.rng = Rng::new(seed ^ u64::from(churn.next_id).wrapping_mul(0x9E37_79B9));
        Ok(churn)
    }

    fn replay(&mut self, rec: &ChangeRecord) {
        self.next_id = self.next_id.max(rec.id + 1);
        let Some(s) = service_index(rec).and_then(|i| self.svcs.get_mut(i as usize)) else {
            return;
        };
        match rec.kind {
            ChangeKind::Endpoints => {
                if let (Some(slot), Some(addr)) = (
                    rec.slot,
                    rec.address.as_deref().and_then(|a| a.parse().ok()),
                ) {
                    if let Some(a) = s.addrs.get_mut(slot as usize) {
                        *a = addr;
                        s.flips += 1;
                        self.changed_at.insert((s.index, slot), rec.at_unix_nanos);
                    }
                }
            }
            ChangeKind::Service => s.extra_port = rec.port,
            // The route name is a function of the id (plan::change_route_name).
            ChangeKind::VirtualService => s.vs_change = Some(rec.id),
        }
    }

    /// Picks a service whose next slot is old enough; falls back to any.
    fn pick_endpoint(&mut self, min_age: Duration) -> (u32, u32) {
        let n = self.spec.services;
        let first = self.rng.below(n);
        let now = now_ns();
        for step in 0..n {
            let i = (first + step) % n;
            let slot = self.svcs[i as usize].flips % self.spec.endpoints;
            let at = self.changed_at.get(&(i, slot)).copied().unwrap_or(0);
            if now.saturating_sub(at) >= min_age.as_nanos() as u64 {
                return (i, slot);
            }
        }
        (first, self.svcs[first as usize].flips % self.spec.endpoints)
    }

    /// Applies one change and writes the service's file; returns its log line.
    fn change(&mut self, kind: ChangeKind, min_age: Duration) -> anyhow::Result<ChangeRecord> {
        let id = self.next_id;
        anyhow::ensure!(
            id <= plan::MAX_CHANGE_ID,
            "change ids exhausted ({}); write a fresh mesh",
            plan::MAX_CHANGE_ID
        );
        let mut rec = ChangeRecord::new(id, kind);
        let i = match kind {
            ChangeKind::Endpoints => self.flip_endpoint(&mut rec, min_age)?,
            ChangeKind::Service => self.add_port(&mut rec),
            ChangeKind::VirtualService => self.add_change_route(&mut rec),
        };
        let s = &self.svcs[i as usize];
        rec.service = format!("{}/{}", s.ns, s.name);
        let text = crate::render::service_file(s);
        let path = mesh::service_file(&self.dir, s);
        let tmp = path.with_file_name(format!(".{}.yaml.tmp", s.name));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        // The change happens when the file appears under its real name.
        rec.at_unix_nanos = now_ns();
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming into {}", path.display()))?;
        if let Some(slot) = rec.slot {
            self.changed_at.insert((i, slot), rec.at_unix_nanos);
        }
        self.next_id += 1;
        Ok(rec)
    }

    /// Replaces the next endpoint address of an old-enough service with the
    /// change's own address; returns the service.
    fn flip_endpoint(&mut self, rec: &mut ChangeRecord, min_age: Duration) -> anyhow::Result<u32> {
        anyhow::ensure!(self.spec.endpoints > 0, "the mesh has no endpoints to flip");
        let (i, slot) = self.pick_endpoint(min_age);
        let s = &mut self.svcs[i as usize];
        let new = plan::change_address(rec.id);
        rec.replaced = Some(s.addrs[slot as usize].to_string());
        rec.address = Some(new.to_string());
        rec.slot = Some(slot);
        s.addrs[slot as usize] = new;
        s.flips += 1;
        Ok(i)
    }

    /// Gives a random service the change's port (replacing an earlier one).
    fn add_port(&mut self, rec: &mut ChangeRecord) -> u32 {
        let i = self.rng.below(self.spec.services);
        let port = plan::change_port(rec.id);
        self.svcs[i as usize].extra_port = Some(port);
        rec.port = Some(port);
        i
    }

    /// Leads a random service's VirtualService with the change's route
    /// (replacing an earlier one), creating the VirtualService if needed.
    fn add_change_route(&mut self, rec: &mut ChangeRecord) -> u32 {
        let i = self.rng.below(self.spec.services);
        let s = &mut self.svcs[i as usize];
        rec.created_virtual_service = !s.vs && s.vs_change.is_none();
        rec.route = Some(plan::change_route_name(rec.id));
        s.vs_change = Some(rec.id);
        i
    }
}

pub async fn run(args: ChurnArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let log_path = args
        .changes_log
        .clone()
        .unwrap_or_else(|| args.dir.join("changes.jsonl"));
    let mut churn = Churn::open(&args.dir, &log_path, args.seed)?;
    let first_id = churn.next_id;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    // Burst catches up after a slow tick, so the average rate stays exact.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let started = Instant::now();
    let signal = tokio::signal::ctrl_c();
    tokio::pin!(signal);
    let mut done = 0u64;
    let (mut first_at, mut last_at) = (None, started);
    loop {
        if args.count.is_some_and(|c| done >= c)
            || args.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut signal => break,
        }
        let rec = churn.change(args.kind, args.min_age)?;
        // One write per line: a reader never sees half of it.
        log.write_all(format!("{}\n", serde_json::to_string(&rec)?).as_bytes())?;
        done += 1;
        last_at = Instant::now();
        first_at.get_or_insert(last_at);
    }
    let secs = started.elapsed().as_secs_f64();
    // N changes span N-1 intervals.
    let span = first_at.map_or(0.0, |f| (last_at - f).as_secs_f64());
    let achieved = if done > 1 && span > 0.0 {
        (done - 1) as f64 / span
    } else {
        0.0
    };
    eprintln!(
        "churn: {done} {:?} changes in {secs:.2}s = {achieved:.1}/s (target {}/s), ids {first_id}..{}, log {}",
        args.kind,
        args.rate,
        churn.next_id.saturating_sub(1),
        log_path.display()
    );
    println!(
        "{}",
        serde_json::json!({"changes": done, "seconds": secs, "achieved_rate": achieved, "target_rate": args.rate, "first_id": first_id, "last_id": churn.next_id.saturating_sub(1)})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use envoy_types::util::pack_any;
    use serde::Deserialize;

    use super::*;
    use crate::xds::Kind;

    #[test]
    fn a_reopened_churn_replays_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("mesh");
        let args = crate::mesh::MeshArgs {
            out: out.clone(),
            services: 3,
            endpoints: 2,
            namespaces: 2,
            vs_share: 0.0,
            dr_share: 0.0,
            sidecar_share: 0.0,
            seed: 7,
        };
        crate::mesh::run(args).unwrap();
        let log = out.join("changes.jsonl");
        let mut churn = Churn::open(&out, &log, 1).unwrap();
        let mut lines = String::new();
        for kind in [
            ChangeKind::Endpoints,
            ChangeKind::Endpoints,
            ChangeKind::Service,
            ChangeKind::VirtualService,
        ] {
            let rec = churn.change(kind, Duration::ZERO).unwrap();
            lines += &format!("{}\n", serde_json::to_string(&rec).unwrap());
        }
        std::fs::write(&log, lines).unwrap();

        let again = Churn::open(&out, &log, 1).unwrap();
        assert_eq!(again.next_id, 5);
        for (a, b) in churn.svcs.iter().zip(&again.svcs) {
            assert_eq!(
                (&a.addrs, a.extra_port, a.flips, a.vs_change),
                (&b.addrs, b.extra_port, b.flips, b.vs_change)
            );
            // What is on disk is what the replayed state renders.
            let disk = std::fs::read_to_string(mesh::service_file(&out, b)).unwrap();
            assert_eq!(disk, crate::render::service_file(b));
        }
        let flipped: Vec<_> = again
            .svcs
            .iter()
            .flat_map(|s| &s.addrs)
            .filter(|a| plan::change_id_of_address(**a).is_some())
            .collect();
        assert_eq!(flipped.len(), 2);
    }
    /// A fresh mesh of three services in a temp dir; with `vs_share` 0 none
    /// has a VirtualService of its own, with 1 all have.
    fn small_mesh(vs_share: f64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("mesh");
        let args = crate::mesh::MeshArgs {
            out: out.clone(),
            services: 3,
            endpoints: 2,
            namespaces: 2,
            vs_share,
            dr_share: 0.5,
            sidecar_share: 0.0,
            seed: 7,
        };
        crate::mesh::run(args).unwrap();
        (dir, out)
    }

    /// The `http[].name`s of the VirtualService in a service file ("" for none).
    fn http_route_names(file: &str) -> Vec<String> {
        serde_yaml::Deserializer::from_str(file)
            .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
            .filter(|v| v["kind"].as_str() == Some("VirtualService"))
            .flat_map(|vs| {
                vs["spec"]["http"]
                    .as_sequence()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|route| route["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn a_virtual_service_edit_leads_with_its_route_and_replays() {
        for vs_share in [0.0, 1.0] {
            let (_tmp, out) = small_mesh(vs_share);
            let log = out.join("changes.jsonl");
            let mut churn = Churn::open(&out, &log, 1).unwrap();
            let mut lines = String::new();
            let mut edited = std::collections::HashSet::new();
            // Four edits of three services: at least one is edited twice.
            for _ in 0..4 {
                let rec = churn
                    .change(ChangeKind::VirtualService, Duration::ZERO)
                    .unwrap();
                let s = &churn.svcs[service_index(&rec).unwrap() as usize];
                let first_edit = edited.insert(s.index);
                assert_eq!(rec.created_virtual_service, !s.vs && first_edit, "{rec:?}");
                let disk = std::fs::read_to_string(mesh::service_file(&out, s)).unwrap();
                let names = http_route_names(&disk);
                // The change route, then the mesh's own /api/ route if any,
                // then the catch-all that keeps traffic going to the service.
                let want = plan::change_route_name(rec.id);
                assert_eq!(rec.route.as_deref(), Some(want.as_str()));
                let own = if s.vs { vec![""; 2] } else { vec![""] };
                assert_eq!(names, [vec![want.as_str()], own].concat(), "{disk}");
                lines += &format!("{}\n", serde_json::to_string(&rec).unwrap());
            }
            assert!(edited.len() < 4);
            std::fs::write(&log, lines).unwrap();

            let again = Churn::open(&out, &log, 1).unwrap();
            assert_eq!(again.next_id, 5);
            for (a, b) in churn.svcs.iter().zip(&again.svcs) {
                assert_eq!(a.vs_change, b.vs_change, "{}", a.name);
                let disk = std::fs::read_to_string(mesh::service_file(&out, b)).unwrap();
                assert_eq!(disk, crate::render::service_file(b));
            }
        }
    }

    /// Rudder's route configuration for the HTTP port, as one proxy of the
    /// mesh gets it, translated from the churned files by Rudder itself.
    fn http_route_config(svcs: &[Svc], namespaces: u32) -> RouteConfiguration {
        use rudder::model::{MeshConfig, Proxy};
        use rudder::source::file::parse_text;
        let mut units: Vec<_> = svcs
            .iter()
            .map(|s| (s.name.clone(), parse_text(&crate::render::service_file(s))))
            .collect();
        let namespaces: String = (0..namespaces)
            .map(|k| crate::render::namespace(&plan::namespace_name(k)))
            .collect();
        units.push(("namespaces".into(), parse_text(&namespaces)));
        let snapshot = rudder::index::snapshot_of(units, MeshConfig::default());
        let rejected: Vec<String> = snapshot
            .status
            .rejected
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert!(
            rejected.is_empty(),
            "Rudder rejects the churned mesh: {rejected:?}"
        );
        assert!(
            snapshot.status.warnings.is_empty(),
            "{:?}",
            snapshot.status.warnings
        );
        let proxy =
            Proxy::from_node_id("sidecar~198.19.128.0~client-0.ns-0~ns-0.svc.cluster.local")
                .unwrap();
        let shape = rudder::translate::ProxyShape::of(&snapshot, &proxy);
        let http_port = plan::HTTP_PORT.to_string();
        rudder::translate::routes(&snapshot, &shape)
            .into_iter()
            .find(|r| r.name == http_port)
            .expect("a route configuration for the HTTP port")
    }

    #[test]
    fn proxies_find_the_edit_in_rudders_route_configuration() {
        for vs_share in [0.0, 1.0] {
            let (_tmp, out) = small_mesh(vs_share);
            let mut churn = Churn::open(&out, &out.join("changes.jsonl"), 1).unwrap();
            for _ in 0..4 {
                churn
                    .change(ChangeKind::VirtualService, Duration::ZERO)
                    .unwrap();
            }
            let config = http_route_config(&churn.svcs, churn.spec.namespaces);
            // What the simulated proxies decode: every service's latest edit.
            let facts = crate::xds::decode(Kind::Rds, &pack_any(config.clone())).unwrap();
            let mut found = facts.change_ids;
            found.sort();
            let mut current: Vec<u32> = churn.svcs.iter().filter_map(|s| s.vs_change).collect();
            current.sort();
            assert_eq!(found, current);
            // Each change route is followed by the routes carrying the traffic.
            for vh in &config.virtual_hosts {
                if let Some(at) = vh
                    .routes
                    .iter()
                    .position(|r| plan::change_id_of_route_name(&r.name).is_some())
                {
                    assert_eq!(at, 0, "{}", vh.name);
                    assert!(vh.routes.len() > 1, "{} has only its change route", vh.name);
                }
            }
        }
    }
}
