//! Per-proxy bookkeeping common to SotW and Delta: decoding a response,
//! counting it, noticing resources re-sent unchanged, and turning change ids
//! into convergence observations at ACK time.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use crate::changes::Observation;
use crate::shared::{add, now_ns, set_once, NameSet, Shared};
use crate::xds::{self, fingerprint, Facts, Kind};

pub struct Recorder {
    pub shared: Arc<Shared>,
    pub idx: usize,
    /// Change ids already observed, per type (bitsets): the first sighting
    /// counts, later responses that still carry the change do not.
    seen: [Vec<u64>; 4],
    /// Service and VirtualService edits (any id seen outside EDS): their last
    /// ACK per id, over all types.
    multi: HashMap<u32, u64>,
    /// Name fingerprint -> content fingerprint of what the proxy holds.
    held: [HashMap<u64, u64>; 4],
    /// The current EDS and RDS subscriptions, to find names never answered.
    pub subscribed: [Option<Arc<NameSet>>; 2],
}

/// A decoded response, before it is ACKed.
pub struct Decoded {
    pub facts: Vec<Facts>,
    prints: Vec<(u64, u64)>,
    pub recv_ns: u64,
    pub bytes: u64,
}

impl Recorder {
    pub fn new(shared: Arc<Shared>, idx: usize) -> Recorder {
        Recorder {
            shared,
            idx,
            seen: Default::default(),
            multi: HashMap::new(),
            held: Default::default(),
            subscribed: Default::default(),
        }
    }

    /// A new stream starts from nothing: the server resends everything, and
    /// that is not redundancy.
    pub fn reconnected(&mut self) {
        self.held = Default::default();
    }

    /// Counts and decodes a response. Err is the NACK message.
    pub fn decode<'a>(
        &self,
        kind: Kind,
        resources: impl Iterator<Item = &'a Any>,
    ) -> Result<Decoded, String> {
        let recv_ns = now_ns();
        let slot = &self.shared.proxies[self.idx];
        set_once(&slot.first_response_ns[kind as usize], recv_ns);
        let mut facts = Vec::new();
        let mut prints = Vec::new();
        let mut bytes = 0;
        for any in resources {
            bytes += any.value.len() as u64;
            let f = xds::decode(kind, any);
            if self.shared.track_redundant {
                if let Ok(f) = &f {
                    prints.push((fingerprint(f.name.as_bytes()), fingerprint(&any.value)));
                }
            }
            facts.push(f);
        }
        add(&slot.responses, kind, 1);
        add(&slot.bytes, kind, bytes);
        let phase = &self.shared.phases[self.shared.phase(self.idx)];
        add(&phase.responses, kind, 1);
        add(&phase.bytes, kind, bytes);
        add(&phase.resources, kind, facts.len() as u64);
        let facts = facts.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Decoded {
            facts,
            prints,
            recv_ns,
            bytes,
        })
    }

    pub fn nacked(&self, kind: Kind, msg: &str) {
        self.shared.proxies[self.idx].nacks.fetch_add(1, Relaxed);
        self.shared.warn(format_args!(
            "proxy {} NACKs {}: {msg}",
            self.idx,
            kind.short()
        ));
        self.trace(kind, None, 0, true);
    }

    /// Records the ACK of `d`. `full_state` responses (SotW CDS/LDS) replace
    /// everything held; `removed` names resources a Delta response removed.
    pub fn acked(
        &mut self,
        kind: Kind,
        d: &Decoded,
        full_state: bool,
        removed: &[String],
        held_now: usize,
    ) {
        let ack_ns = now_ns();
        let k = kind as usize;
        let ready_ns = {
            let slot = &self.shared.proxies[self.idx];
            set_once(&slot.first_ack_ns[k], ack_ns);
            slot.last_ack_ns[k].store(ack_ns, Relaxed);
            slot.held[k].store(held_now as u64, Relaxed);
            slot.ready_ns.load(Relaxed)
        };
        if self.shared.track_redundant {
            self.redundancy(kind, d, full_state, removed);
        }
        let mut batch = Vec::new();
        for id in d.facts.iter().flat_map(|f| &f.change_ids) {
            // Ids seen while warming up still count as seen: they came with
            // the initial load, and a later response repeating them is no news.
            if !self.first_sighting(kind, *id) || ready_ns == 0 {
                continue;
            }
            batch.push(Observation {
                id: *id,
                kind,
                ack_ns,
                ready_ns,
            });
            // Ports carry service edits and route names VirtualService
            // edits, in CDS, LDS and RDS; EDS only follows a new cluster.
            if kind != Kind::Eds {
                let last = self.multi.entry(*id).or_default();
                *last = (*last).max(ack_ns);
            } else if let Some(last) = self.multi.get_mut(id) {
                *last = (*last).max(ack_ns);
            }
        }
        if !batch.is_empty() {
            self.shared.book.lock().observe(&batch);
        }
        self.trace(kind, Some(d), ack_ns, false);
    }

    fn first_sighting(&mut self, kind: Kind, id: u32) -> bool {
        let bits = &mut self.seen[kind as usize];
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let new = bits[word] & bit == 0;
        bits[word] |= bit;
        new
    }

    fn redundancy(&mut self, kind: Kind, d: &Decoded, full_state: bool, removed: &[String]) {
        let held = &mut self.held[kind as usize];
        let same = d
            .prints
            .iter()
            .filter(|(n, c)| held.get(n) == Some(c))
            .count();
        let nothing_new = same == d.prints.len()
            && removed
                .iter()
                .all(|n| !held.contains_key(&fingerprint(n.as_bytes())))
            && (!full_state || held.len() == d.prints.len());
        let phase = &self.shared.phases[self.shared.phase(self.idx)];
        add(&phase.redundant, kind, same as u64);
        if nothing_new && !held.is_empty() {
            add(&phase.noop, kind, 1);
        }
        if full_state {
            held.clear();
        }
        for n in removed {
            held.remove(&fingerprint(n.as_bytes()));
        }
        held.extend(d.prints.iter().copied());
    }

    pub fn mark_ready(&self) {
        let slot = &self.shared.proxies[self.idx];
        if slot.ready_ns.load(Relaxed) == 0 {
            slot.ready_ns.store(now_ns(), Relaxed);
            self.shared.ready.fetch_add(1, Relaxed);
        }
    }

    fn trace(&self, kind: Kind, d: Option<&Decoded>, ack_ns: u64, nack: bool) {
        let Some(trace) = &self.shared.trace else {
            return;
        };
        let line = serde_json::json!({
            "proxy": self.idx,
            "type": kind.short(),
            "recv_ns": d.map(|d| d.recv_ns),
            "ack_ns": ack_ns,
            "resources": d.map(|d| d.facts.len()),
            "bytes": d.map(|d| d.bytes),
            "nack": nack,
        });
        let _ = writeln!(trace.lock(), "{line}");
    }

    /// Counts subscribed EDS/RDS names the server never delivered: Envoy
    /// would keep such a cluster warming (or a listener waiting for its
    /// routes) until its initial fetch timeout.
    fn unanswered(&self) {
        if !self.shared.track_redundant {
            return;
        }
        for (i, kind) in [(0, Kind::Eds), (1, Kind::Rds)] {
            let Some(set) = &self.subscribed[i] else {
                continue;
            };
            let held = &self.held[kind as usize];
            let missing: Vec<&String> = set
                .names
                .iter()
                .filter(|n| !held.contains_key(&fingerprint(n.as_bytes())))
                .collect();
            if let Some(first) = missing.first() {
                self.shared.unanswered[i].fetch_add(missing.len() as u64, Relaxed);
                self.shared.warn(format_args!(
                    "proxy {}: {} subscribed {} names never answered, e.g. {first:?}",
                    self.idx,
                    missing.len(),
                    kind.short()
                ));
            }
        }
    }

    /// Hands the per-proxy "all types" convergence of service edits to the book.
    pub fn flush(&mut self) {
        self.unanswered();
        let ready_ns = self.shared.proxies[self.idx].ready_ns.load(Relaxed);
        let mut book = self.shared.book.lock();
        for (id, ack_ns) in self.multi.drain() {
            book.observe_full(id, ack_ns, ready_ns);
        }
    }
}
