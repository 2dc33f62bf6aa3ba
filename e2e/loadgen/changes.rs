//! The changes log and convergence bookkeeping.
//!
//! Method: the churn driver writes one JSON line per change, with the
//! wall-clock time (unix nanoseconds) it renamed the edited file into place.
//! The change itself is self-identifying (see `plan`): an endpoint flip puts
//! the address 198.19.192.0+id into the EndpointSlice; a service edit adds
//! port 20000+id; a VirtualService edit adds an HTTP route named change-<id>.
//! Every simulated proxy decodes each resource it receives,
//! and the first time one of its resources of a given type carries change
//! `id`, the proxy's ACK time for that response is an observation. Latency =
//! ACK time - change time, i.e. file edit -> Rudder's debounce, translation and
//! push -> the proxy has decoded and ACKed it. Observations may arrive before
//! the log line is read; they wait in `pending` until it is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::hist::Histogram;
use crate::shared::Shared;
use crate::xds::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
// kebab-case, as clap spells the values: `virtual-service` in the log too.
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Replace one endpoint address of one service (EDS only).
    Endpoints,
    /// Add (or move) an extra HTTP port on one service: CDS, EDS, LDS and RDS
    /// change for every proxy.
    Service,
    /// Lead one service's VirtualService (created if it has none) with an
    /// HTTP route named change-<id>: every proxy's route configuration for
    /// the HTTP port changes (RDS), and nothing else should.
    VirtualService,
}

/// One line of the changes log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: u32,
    pub at_unix_nanos: u64,
    pub kind: ChangeKind,
    /// `namespace/name`.
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A VirtualService edit's route name (`plan::change_route_name(id)`),
    /// for readers of the log; replay derives it from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A VirtualService edit that created the service's VirtualService (the
    /// mesh gave it none): for readers, as creating may push more than editing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created_virtual_service: bool,
}

impl ChangeRecord {
    /// Change `id` of `kind`, before the churn driver fills in what it did:
    /// no service, time or kind-specific fields yet.
    pub fn new(id: u32, kind: ChangeKind) -> ChangeRecord {
        ChangeRecord {
            id,
            at_unix_nanos: 0,
            kind,
            service: String::new(),
            slot: None,
            address: None,
            replaced: None,
            port: None,
            route: None,
            created_virtual_service: false,
        }
    }

    /// The service's FQDN, the HOST part of its Istio cluster names.
    pub fn host(&self) -> String {
        let (ns, name) = self
            .service
            .split_once('/')
            .unwrap_or(("default", &self.service));
        format!("{name}.{ns}.svc.cluster.local")
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub id: u32,
    pub kind: Kind,
    pub ack_ns: u64,
    /// When the observing proxy became ready: a change made before that came
    /// with its initial load and is not counted as convergence.
    pub ready_ns: u64,
}

pub struct Entry {
    pub rec: ChangeRecord,
    /// Proxies that ACKed a response of each type carrying this change.
    pub observed: [u32; 4],
    pub last_ack_ns: [u64; 4],
}

impl Entry {
    /// Change -> the last observing proxy's ACK, over all types.
    pub fn last_latency_us(&self) -> Option<u64> {
        let last = *self.last_ack_ns.iter().max()?;
        (last > 0).then(|| last.saturating_sub(self.rec.at_unix_nanos) / 1000)
    }
}

#[derive(Default)]
pub struct ChangeBook {
    entries: Vec<Option<Entry>>,
    logged: usize,
    pending: Vec<Observation>,
    /// Every (change, proxy) latency, per resource type.
    pub per_type: [Histogram; 4],
    /// Every (change, proxy) latency to the last type that carried the change.
    pub full: Histogram,
    /// Observations of ids never logged (another run's leftovers, or no log).
    pub unknown: u64,
    /// Observations timestamped before their change: a clock or log problem.
    pub early: u64,
    /// Changes older than the observing proxy's readiness (not counted).
    pub preexisting: u64,
}

impl ChangeBook {
    pub fn logged(&self) -> usize {
        self.logged
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }

    pub fn add(&mut self, rec: ChangeRecord) {
        let id = rec.id as usize;
        if self.entries.len() <= id {
            self.entries.resize_with(id + 1, || None);
        }
        if self.entries[id].is_some() {
            return; // A re-read line; the first one counts.
        }
        self.entries[id] = Some(Entry {
            rec,
            observed: [0; 4],
            last_ack_ns: [0; 4],
        });
        self.logged += 1;
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|o| o.id as usize == id);
        self.pending = later;
        self.observe(&now);
    }

    pub fn observe(&mut self, batch: &[Observation]) {
        for o in batch {
            let Some(Some(e)) = self.entries.get_mut(o.id as usize) else {
                self.pending.push(*o);
                continue;
            };
            if o.ready_ns > e.rec.at_unix_nanos {
                self.preexisting += 1;
                continue;
            }
            let k = o.kind as usize;
            e.observed[k] += 1;
            e.last_ack_ns[k] = e.last_ack_ns[k].max(o.ack_ns);
            if o.ack_ns < e.rec.at_unix_nanos {
                self.early += 1;
            }
            let us = o.ack_ns.saturating_sub(e.rec.at_unix_nanos) / 1000;
            self.per_type[k].record(us);
            // An endpoint flip shows up in EDS only, so EDS is its whole story.
            if e.rec.kind == ChangeKind::Endpoints && o.kind == Kind::Eds {
                self.full.record(us);
            }
        }
    }

    /// A proxy's last ACK among all types carrying service change `id`.
    pub fn observe_full(&mut self, id: u32, ack_ns: u64, ready_ns: u64) {
        if let Some(Some(e)) = self.entries.get(id as usize) {
            if ready_ns <= e.rec.at_unix_nanos {
                self.full
                    .record(ack_ns.saturating_sub(e.rec.at_unix_nanos) / 1000);
            }
        } else {
            self.unknown += 1;
        }
    }

    /// Moves still-unmatched observations to `unknown`; call once, at the end.
    pub fn finish(&mut self) {
        self.unknown += self.pending.len() as u64;
        self.pending.clear();
    }
}

/// Follows the changes log as the churn driver appends to it.
pub async fn tail(path: PathBuf, shared: Arc<Shared>) {
    let mut file = loop {
        match tokio::fs::File::open(&path).await {
            Ok(f) => break f,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut chunk).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let lines: Vec<u8> = buf.drain(..complete).collect();
                add_lines(&shared, &lines);
            }
            Err(e) => {
                eprintln!("loadgen: reading {}: {e}", path.display());
                return;
            }
        }
    }
}

fn add_lines(shared: &Shared, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut book = shared.book.lock();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<ChangeRecord>(line) {
            Ok(rec) => book.add(rec),
            Err(e) => eprintln!("loadgen: bad changes-log line {line:?}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u32, at: u64) -> ChangeRecord {
        ChangeRecord {
            at_unix_nanos: at,
            service: "ns-1/svc-3".into(),
            slot: Some(0),
            ..ChangeRecord::new(id, ChangeKind::Endpoints)
        }
    }

    fn obs(id: u32, ack_ns: u64, ready_ns: u64) -> Observation {
        Observation {
            id,
            kind: Kind::Eds,
            ack_ns,
            ready_ns,
        }
    }

    #[test]
    fn observations_wait_for_their_log_line() {
        let mut book = ChangeBook::default();
        book.observe(&[obs(2, 5_000_000, 1)]);
        assert_eq!(
            book.per_type[Kind::Eds as usize].summary().map(|s| s.count),
            None
        );
        book.add(rec(2, 3_000_000));
        let s = book.full.summary().unwrap();
        assert_eq!((s.count, s.max_ms), (1, 2.0));
        assert_eq!(
            book.entries().next().unwrap().observed[Kind::Eds as usize],
            1
        );
        assert_eq!(rec(1, 0).host(), "svc-3.ns-1.svc.cluster.local");
    }

    #[test]
    fn changes_older_than_the_proxy_are_not_convergence() {
        let mut book = ChangeBook::default();
        book.add(rec(1, 1_000));
        book.observe(&[obs(1, 9_000, 2_000)]);
        assert_eq!(book.preexisting, 1);
        assert!(book.full.summary().is_none());
        book.observe(&[obs(7, 9_000, 1)]);
        book.finish();
        assert_eq!(book.unknown, 1);
    }
}
