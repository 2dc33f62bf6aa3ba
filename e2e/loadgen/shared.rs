//! State shared by every simulated proxy and the reporter: lock-free counters
//! per proxy and type, the change book, and interned subscription sets (many
//! proxies of one shape subscribe to the same thousand EDS names; one copy).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::changes::{ChangeBook, ChangeKind, ChangeRecord, Entry};
use crate::xds::{cluster_host, fingerprint, Kind};

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

type PerType = [AtomicU64; 4];

/// One simulated proxy's figures. Times are unix nanoseconds, 0 = not yet.
#[derive(Default)]
pub struct ProxySlot {
    pub started_ns: AtomicU64,
    pub ready_ns: AtomicU64,
    pub first_response_ns: PerType,
    pub first_ack_ns: PerType,
    pub last_ack_ns: PerType,
    pub responses: PerType,
    pub bytes: PerType,
    /// Resources of each type the proxy holds now.
    pub held: PerType,
    pub nacks: AtomicU64,
    pub reconnects: AtomicU64,
    /// The proxy's current EDS subscription, for "which proxies should see
    /// this endpoint change".
    pub eds: Mutex<Option<Arc<NameSet>>>,
}

/// Counters of one phase: before a proxy was ready (cold start) or after.
#[derive(Default)]
pub struct PhaseTotals {
    pub responses: PerType,
    pub bytes: PerType,
    pub resources: PerType,
    /// Resources received with exactly the content already held.
    pub redundant: PerType,
    /// Responses in which nothing at all changed for the proxy.
    pub noop: PerType,
}

pub const COLD: usize = 0;
pub const STEADY: usize = 1;

pub struct Shared {
    pub delta: bool,
    pub start_ns: u64,
    pub proxies: Vec<ProxySlot>,
    pub phases: [PhaseTotals; 2],
    pub ready: AtomicU32,
    pub connected: AtomicU32,
    pub stream_errors: AtomicU64,
    /// SotW EDS/RDS resources the proxy did not ask for.
    pub unrequested: AtomicU64,
    /// Subscribed EDS / RDS names never delivered by the end of the run.
    pub unanswered: [AtomicU64; 2],
    pub book: Mutex<ChangeBook>,
    pub track_redundant: bool,
    /// `--trace`: one JSON line per response, for small debugging runs.
    pub trace: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    sets: Mutex<HashMap<u64, Arc<NameSet>>>,
    errors_shown: AtomicU32,
}

/// A sorted, deduplicated name list and the service hosts it covers.
pub struct NameSet {
    pub names: Vec<String>,
    pub hosts: HashSet<String>,
    /// The names as a request's `resource_names`, encoded once (request.rs).
    pub encoded: bytes::Bytes,
}

impl Shared {
    pub fn new(proxies: usize, delta: bool, track_redundant: bool) -> Shared {
        Shared {
            delta,
            start_ns: now_ns(),
            proxies: (0..proxies).map(|_| ProxySlot::default()).collect(),
            phases: Default::default(),
            ready: AtomicU32::new(0),
            connected: AtomicU32::new(0),
            stream_errors: AtomicU64::new(0),
            unrequested: AtomicU64::new(0),
            unanswered: Default::default(),
            book: Mutex::new(ChangeBook::default()),
            track_redundant,
            trace: None,
            sets: Mutex::new(HashMap::new()),
            errors_shown: AtomicU32::new(0),
        }
    }

    /// The shared copy of a name set (input need not be sorted).
    pub fn intern(&self, mut names: Vec<String>) -> Arc<NameSet> {
        names.sort_unstable();
        names.dedup();
        let key = fingerprint(names.join("\n").as_bytes());
        let mut sets = self.sets.lock();
        if let Some(set) = sets.get(&key).filter(|s| s.names == names) {
            return set.clone();
        }
        let hosts = names
            .iter()
            .filter_map(|n| cluster_host(n))
            .map(str::to_string)
            .collect();
        let encoded = crate::request::encode_names(&names);
        let set = Arc::new(NameSet {
            names,
            hosts,
            encoded,
        });
        sets.insert(key, set.clone());
        set
    }

    pub fn phase(&self, proxy: usize) -> usize {
        if self.proxies[proxy].ready_ns.load(Relaxed) == 0 {
            COLD
        } else {
            STEADY
        }
    }

    /// Prints the first few errors; the rest are only counted.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        if self.errors_shown.fetch_add(1, Relaxed) < 10 {
            eprintln!("loadgen: {msg}");
        }
    }

    /// Who is ready (since when) and what they subscribe to, gathered once per check.
    pub fn audience(&self) -> Audience {
        let mut by_set: HashMap<*const NameSet, (Arc<NameSet>, Vec<u64>)> = HashMap::new();
        let mut ready = Vec::new();
        for p in &self.proxies {
            let since = p.ready_ns.load(Relaxed);
            if since == 0 {
                continue;
            }
            ready.push(since);
            if let Some(set) = p.eds.lock().clone() {
                by_set
                    .entry(Arc::as_ptr(&set))
                    .or_insert((set, Vec::new()))
                    .1
                    .push(since);
            }
        }
        ready.sort_unstable();
        let mut sets: Vec<_> = by_set.into_values().collect();
        for (_, times) in &mut sets {
            times.sort_unstable();
        }
        Audience { ready, sets }
    }

    /// True when at least `min` changes are logged and each reached every
    /// proxy it should, for every type that carried it to anyone. `done`
    /// counts the leading changes already known to have converged (they
    /// stay converged), so each poll only looks at the rest.
    pub fn changes_converged(&self, min: usize, done: &mut usize) -> bool {
        let audience = self.audience();
        let book = self.book.lock();
        *done += book
            .entries()
            .skip(*done)
            .take_while(|e| audience.reached(e))
            .count();
        book.logged() >= min && *done == book.logged()
    }
}

/// Proxies a change should reach: those already ready when it was made (a
/// proxy that connects later gets it in its initial load, which is not
/// convergence).
pub struct Audience {
    /// Ready times, sorted.
    ready: Vec<u64>,
    sets: Vec<(Arc<NameSet>, Vec<u64>)>,
}

impl Audience {
    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// Whether any proxy was ready when the change was made.
    pub fn measurable(&self, rec: &ChangeRecord) -> bool {
        self.ready.first().is_some_and(|&t| t <= rec.at_unix_nanos)
    }

    /// Every such proxy for a service or VirtualService edit (every proxy
    /// imports every service of the synthetic mesh); for an endpoint flip,
    /// those subscribed to the service's clusters.
    pub fn expected(&self, rec: &ChangeRecord) -> u32 {
        let before = |times: &[u64]| times.partition_point(|&t| t <= rec.at_unix_nanos) as u32;
        match rec.kind {
            ChangeKind::Service | ChangeKind::VirtualService => before(&self.ready),
            ChangeKind::Endpoints => {
                let host = rec.host();
                self.sets
                    .iter()
                    .filter(|(s, _)| s.hosts.contains(&host))
                    .map(|(_, t)| before(t))
                    .sum()
            }
        }
    }

    /// Whether every expected proxy ACKed each type sure to carry the change,
    /// and every other type that carried it to anyone.
    pub fn reached(&self, e: &Entry) -> bool {
        let want = self.expected(&e.rec);
        let sure: &[Kind] = match e.rec.kind {
            ChangeKind::Endpoints => &[Kind::Eds],
            // A new HTTP port, as Istio names things: a cluster, its load
            // assignment, a listener and a route configuration named by the
            // port. All four, or a run could end between the new cluster and
            // its load assignment, with EDS never counted.
            ChangeKind::Service => &Kind::ALL,
            // Only route names carry it: a route configuration is all it changes.
            ChangeKind::VirtualService => &[Kind::Rds],
        };
        sure.iter().all(|k| e.observed[*k as usize] >= want)
            && e.observed.iter().all(|&n| n == 0 || n >= want)
    }
}

/// Adds to one of four per-type counters.
pub fn add(counters: &PerType, kind: Kind, n: u64) {
    counters[kind as usize].fetch_add(n, Relaxed);
}

/// Sets a time once: the first call wins.
pub fn set_once(cell: &AtomicU64, ns: u64) {
    let _ = cell.compare_exchange(0, ns, Relaxed, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: ChangeKind, observed: [u32; 4]) -> Entry {
        Entry {
            rec: ChangeRecord {
                at_unix_nanos: 100,
                service: "ns-0/svc-1".into(),
                ..ChangeRecord::new(1, kind)
            },
            observed,
            last_ack_ns: [0; 4],
        }
    }

    #[test]
    fn a_service_edit_is_reached_only_when_every_type_carrying_it_is() {
        // Two proxies ready before the change.
        let audience = Audience {
            ready: vec![10, 20],
            sets: Vec::new(),
        };
        let [cds, eds, lds, rds] = [0, 1, 2, 3];
        let mut seen = [0; 4];
        seen[cds] = 2;
        seen[lds] = 2;
        seen[rds] = 2;
        // CDS, LDS and RDS everywhere, the new load assignment nowhere yet.
        assert!(!audience.reached(&entry(ChangeKind::Service, seen)));
        seen[eds] = 1;
        assert!(!audience.reached(&entry(ChangeKind::Service, seen)));
        seen[eds] = 2;
        assert!(audience.reached(&entry(ChangeKind::Service, seen)));
        // A route edit needs RDS alone.
        assert!(audience.reached(&entry(ChangeKind::VirtualService, [0, 0, 0, 2])));
        assert!(!audience.reached(&entry(ChangeKind::VirtualService, [0, 0, 0, 1])));
    }
}
