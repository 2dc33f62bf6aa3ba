//! `localityLbSetting.failoverPriority`: endpoints ranked by how many of an
//! ordered list of labels they share with the proxy, leading labels first
//! (Istio's `applyFailoverPriorities`). An entry `key=value` compares
//! endpoints with `value` instead of the proxy's own value.
//!
//! The ranks depend on the proxy, but EDS is shared by all proxies. So a
//! proxy's values are reduced to what can change a rank: the leading values
//! that some known workload shares, then the label where none does (every
//! endpoint is a known workload, so past that label every endpoint already
//! differs). Proxies with equal reductions get one load assignment, and EDS
//! serves one per reduction a proxy may have: each prefix of each known
//! workload's values ([`PriorityMatch::all`]).

use std::collections::{BTreeMap, BTreeSet};

use super::locality::{Locality, LocalityLb, LocalityLbSetting};
use super::routing::{DestinationRule, TrafficPolicy};

/// Istio adds these to proxy and endpoint labels from their locality.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// One `failoverPriority` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityLabel<'a> {
    pub key: &'a str,
    /// `key=value`: what endpoints are compared with instead of the proxy's value.
    pub value: Option<&'a str>,
}

impl<'a> PriorityLabel<'a> {
    pub fn parse(entry: &'a str) -> PriorityLabel<'a> {
        match entry.split_once('=') {
            Some((key, value)) => PriorityLabel {
                key,
                value: Some(value),
            },
            None => PriorityLabel {
                key: entry,
                value: None,
            },
        }
    }
}

/// The label keys of a `failoverPriority` list, overrides dropped.
pub fn keys(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .map(|e| PriorityLabel::parse(e).key.to_string())
        .collect()
}

/// A label's value for ranking: a topology label is the locality's part
/// where the locality has one (as Istio augments labels), else the label;
/// a missing label is "" (Istio compares map lookups).
pub fn value<'a>(
    key: &str,
    labels: &'a BTreeMap<String, String>,
    locality: Option<&'a Locality>,
) -> &'a str {
    let part = locality.and_then(|l| match key {
        REGION_LABEL => Some(&l.region),
        ZONE_LABEL => Some(&l.zone),
        SUBZONE_LABEL => Some(&l.subzone),
        _ => None,
    });
    match part.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => labels.get(key).map_or("", String::as_str),
    }
}

/// The values of `keys` for one workload or endpoint.
pub fn values(
    keys: &[String],
    labels: &BTreeMap<String, String>,
    locality: Option<&Locality>,
) -> Vec<String> {
    keys.iter()
        .map(|k| value(k, labels, locality).to_string())
        .collect()
}

/// For each `failoverPriority` key list in the config, the values of every
/// known workload (Pods, WorkloadEntries, ServiceEntry endpoints) and of an
/// unlabelled endpoint.
pub type KnownValues = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// Every distinct `failoverPriority` list (as written) of the mesh's and the
/// DestinationRules' locality settings, at every level.
pub fn lists<'a>(
    rules: impl Iterator<Item = &'a DestinationRule>,
    mesh: &'a LocalityLbSetting,
) -> BTreeSet<&'a Vec<String>> {
    fn walk<'a>(p: &'a TrafficPolicy, out: &mut BTreeSet<&'a Vec<String>>) {
        if let Some(LocalityLb::Rule(s)) = &p.locality_lb {
            if !s.failover_priority.is_empty() {
                out.insert(&s.failover_priority);
            }
        }
        for port in p.port_level.values() {
            walk(port, out);
        }
    }
    let mut out = BTreeSet::new();
    if !mesh.failover_priority.is_empty() {
        out.insert(&mesh.failover_priority);
    }
    for dr in rules {
        walk(&dr.policy, &mut out);
        for s in &dr.subsets {
            walk(&s.policy, &mut out);
        }
    }
    out
}

/// A proxy's `failoverPriority` values, reduced (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PriorityMatch {
    /// `(label, value)`, leading labels first, as far as some known
    /// workload shares every one of them.
    pub matched: Vec<(String, String)>,
    /// The next label: no such workload has the proxy's value for it.
    /// None when a known workload shares all of them.
    pub missed: Option<String>,
}

impl PriorityMatch {
    /// The reduction of a proxy with `labels` at `locality`, for the list
    /// `entries`, against the known values of its keys.
    pub fn of(
        entries: &[String],
        labels: &BTreeMap<String, String>,
        locality: Option<&Locality>,
        known: &BTreeSet<Vec<String>>,
    ) -> PriorityMatch {
        let parsed: Vec<PriorityLabel> = entries.iter().map(|e| PriorityLabel::parse(e)).collect();
        let mine: Vec<&str> = parsed
            .iter()
            .map(|p| p.value.unwrap_or_else(|| value(p.key, labels, locality)))
            .collect();
        let shared = known
            .iter()
            .map(|t| t.iter().zip(&mine).take_while(|(a, b)| a == *b).count())
            .max()
            .unwrap_or(0);
        PriorityMatch::prefix(&parsed, &mine, shared)
    }

    fn prefix(parsed: &[PriorityLabel], values: &[&str], len: usize) -> PriorityMatch {
        PriorityMatch {
            matched: parsed
                .iter()
                .zip(values)
                .take(len)
                .map(|(p, v)| (p.key.to_string(), v.to_string()))
                .collect(),
            missed: parsed.get(len).map(|p| p.key.to_string()),
        }
    }

    /// Every reduction some proxy may have for the key list `keys`: each
    /// prefix of each known workload's values.
    pub fn all(keys: &[String], known: &BTreeSet<Vec<String>>) -> BTreeSet<PriorityMatch> {
        let parsed: Vec<PriorityLabel> = keys
            .iter()
            .map(|k| PriorityLabel {
                key: k,
                value: None,
            })
            .collect();
        let mut out = BTreeSet::new();
        // A proxy no workload shares even the first value with.
        out.insert(PriorityMatch::prefix(&parsed, &[], 0));
        for tuple in known {
            let values: Vec<&str> = tuple.iter().map(String::as_str).collect();
            for len in 0..=values.len() {
                out.insert(PriorityMatch::prefix(&parsed, &values, len));
            }
        }
        out
    }

    /// How far an endpoint with `values` (for the same keys) is: 0 when it
    /// shares every label, else larger the earlier the first label it
    /// differs on. Istio's ranks, up to the compaction Envoy needs anyway.
    pub fn distance(&self, values: &[String]) -> u32 {
        let differs = self
            .matched
            .iter()
            .zip(values)
            .position(|((_, want), have)| want != have);
        let first = match (differs, &self.missed) {
            (Some(i), _) => i,
            (None, Some(_)) => self.matched.len(),
            (None, None) => return 0,
        };
        (self.matched.len() + 1 - first) as u32
    }
}

impl std::fmt::Display for PriorityMatch {
    /// `key:value,...`, then `key!` for the missed label. Label keys and
    /// values hold none of `:`, `,`, `!` or `~`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .matched
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        if let Some(k) = &self.missed {
            parts.push(format!("{k}!"));
        }
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn topology_labels_come_from_the_locality() {
        let l = Locality::parse("r1/z1").unwrap();
        let own = labels(&[(ZONE_LABEL, "label-zone"), (SUBZONE_LABEL, "s9")]);
        assert_eq!(value(REGION_LABEL, &own, Some(&l)), "r1");
        assert_eq!(value(ZONE_LABEL, &own, Some(&l)), "z1");
        // The locality has no subzone: the label's stands.
        assert_eq!(value(SUBZONE_LABEL, &own, Some(&l)), "s9");
        assert_eq!(value("app", &own, Some(&l)), "");
    }

    /// Labels [a, b], and the workloads known by them: (x, y), (x, z), (w, y).
    fn two_labels_three_workloads() -> (Vec<String>, BTreeSet<Vec<String>>) {
        let known = [
            strings(&["x", "y"]),
            strings(&["x", "z"]),
            strings(&["w", "y"]),
        ];
        (strings(&["a", "b"]), known.into())
    }

    /// Istio's ranks: with labels [a, b], sharing both is 0, only `a` next,
    /// neither last.
    #[test]
    fn distance_ranks_leading_labels_first() {
        let (keys, known) = two_labels_three_workloads();
        let m = PriorityMatch::of(&keys, &labels(&[("a", "x"), ("b", "y")]), None, &known);
        assert_eq!(m.missed, None);
        let d = |v: &[&str]| m.distance(&strings(v));
        assert_eq!(d(&["x", "y"]), 0);
        assert!(d(&["x", "y"]) < d(&["x", "z"]));
        assert!(d(&["x", "z"]) < d(&["w", "y"]));
        assert_eq!(d(&["w", "z"]), d(&["w", "y"]));
    }

    /// A proxy whose `b` no workload with its `a` has ranks every endpoint
    /// as the full proxy would, under a name shared with like proxies.
    #[test]
    fn reduction_keeps_the_ranks_of_every_known_endpoint() {
        let (keys, known) = two_labels_three_workloads();
        let full = PriorityMatch {
            matched: vec![("a".into(), "x".into()), ("b".into(), "q".into())],
            missed: None,
        };
        let m = PriorityMatch::of(&keys, &labels(&[("a", "x"), ("b", "q")]), None, &known);
        assert_eq!(m.to_string(), "a:x,b!");
        // Envoy sees priorities compacted to 0..n, so ranks are what count.
        let ranks = |m: &PriorityMatch| {
            let d: Vec<u32> = known.iter().map(|t| m.distance(t)).collect();
            let levels: BTreeSet<u32> = d.iter().copied().collect();
            d.iter()
                .map(|x| levels.iter().position(|l| l == x).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ranks(&m), ranks(&full));
        assert_eq!(ranks(&m), vec![1, 0, 0]); // [w,y], [x,y], [x,z]
        assert!(PriorityMatch::all(&keys, &known).contains(&m));
        // A proxy sharing nothing at all.
        let none = PriorityMatch::of(&keys, &labels(&[("a", "v")]), None, &known);
        assert_eq!(none.to_string(), "a!");
        assert!(PriorityMatch::all(&keys, &known).contains(&none));
        assert!(known.iter().all(|t| none.distance(t) == 1));
    }

    #[test]
    fn an_override_replaces_the_proxys_value() {
        let entries = strings(&["a=w", "b"]);
        let known: BTreeSet<Vec<String>> = [strings(&["x", "y"]), strings(&["w", "y"])].into();
        let m = PriorityMatch::of(&entries, &labels(&[("a", "x"), ("b", "y")]), None, &known);
        assert_eq!(m.to_string(), "a:w,b:y");
        assert_eq!(m.distance(&strings(&["w", "y"])), 0);
        assert!(m.distance(&strings(&["w", "z"])) < m.distance(&strings(&["x", "y"])));
        assert_eq!(keys(&entries), strings(&["a", "b"]));
    }
}
