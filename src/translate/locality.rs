//! Locality load balancing, as Istio does it: failover priorities (same
//! subzone, zone, region, the `failover` region, the rest), priorities by
//! `failoverPriority` labels, and `distribute` weights, relative to the
//! proxy's locality and labels.
//!
//! EDS stays shared: a cluster whose policy applies names a per-locality
//! load assignment (`names::eds_variant`) that EDS serves for every known
//! locality. CDS ([`for_cluster`]) and EDS ([`variants`]) decide with the
//! same functions, so a proxy is never told a name EDS does not serve.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::ProxyShape;
use crate::model::failover_priority::{self, PriorityMatch};
use crate::model::routing::TrafficPolicy;
use crate::model::{Locality, LocalityLb, LocalityLbSetting, Snapshot};

/// What locality load balancing does for one cluster, whatever the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Priorities by proximity; `(from region, to region)` pairs.
    Failover(&'a [(String, String)]),
    /// `(from, to: {locality: weight})`, the first matching `from` wins.
    Distribute(&'a [(String, BTreeMap<String, u32>)]),
    /// Priorities by the `failoverPriority` labels (as written), then, when
    /// `failover` regions are listed too, by proximity within each.
    Priority {
        labels: &'a [String],
        regions: &'a [(String, String)],
    },
}

impl Mode<'_> {
    /// Istio sets `locality_weighted_lb_config` with `distribute`, and with
    /// explicit `failover` regions or `failoverPriority`.
    pub fn locality_weighted(&self) -> bool {
        match self {
            Mode::Failover(regions) => !regions.is_empty(),
            Mode::Distribute(_) | Mode::Priority { .. } => true,
        }
    }
}

/// The part of a [`Mode`] that matters to a proxy at `from`: two proxies
/// with equal variants get the same load assignment, so this names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    Failover {
        from: Locality,
        /// The `failover` target of the proxy's region, if one is listed.
        to_region: Option<String>,
    },
    Distribute {
        from: Locality,
        /// The first `distribute` entry matching `from`; None keeps weights.
        to: Option<BTreeMap<String, u32>>,
    },
    Priority {
        /// The proxy's `failoverPriority` values, reduced.
        labels: PriorityMatch,
        /// With `failover` regions too: the proxy's locality and its
        /// region's `failover` target (None for a proxy whose locality the
        /// mesh does not know: labels alone then).
        proximity: Option<(Locality, Option<String>)>,
    },
}

impl fmt::Display for Variant {
    /// `region/zone/subzone`, then what else decides the assignment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variant::Failover { from, to_region } => {
                write!(f, "{from}")?;
                if let Some(to) = to_region {
                    write!(f, "~failover={to}")?;
                }
                Ok(())
            }
            Variant::Distribute { from, to } => {
                write!(f, "{from}~distribute")?;
                if let Some(to) = to {
                    let parts: Vec<String> = to.iter().map(|(l, w)| format!("{l}:{w}")).collect();
                    write!(f, "={}", parts.join(","))?;
                }
                Ok(())
            }
            Variant::Priority { labels, proximity } => {
                if let Some((from, to_region)) = proximity {
                    Variant::Failover {
                        from: from.clone(),
                        to_region: to_region.clone(),
                    }
                    .fmt(f)?;
                    write!(f, "~")?;
                }
                write!(f, "priority={labels}")
            }
        }
    }
}

/// Istio's `GetLocalityLbSetting`: the rule's setting (its `loadBalancer`
/// replaced as a whole), else the mesh's; None when disabled.
fn setting<'a>(snapshot: &'a Snapshot, policy: &'a TrafficPolicy) -> Option<&'a LocalityLbSetting> {
    let s = match &policy.locality_lb {
        Some(LocalityLb::Rule(s)) => s,
        None | Some(LocalityLb::Mesh) => &snapshot.mesh.locality_lb,
    };
    (s.enabled != Some(false)).then_some(s)
}

/// The mode for a cluster with this (port- and subset-merged) policy.
/// Failover, by locality or by labels, needs outlier detection, or Envoy
/// never leaves priority 0.
pub fn mode<'a>(snapshot: &'a Snapshot, policy: &'a TrafficPolicy) -> Option<Mode<'a>> {
    let s = setting(snapshot, policy)?;
    if !s.distribute.is_empty() {
        return Some(Mode::Distribute(&s.distribute));
    }
    policy.outlier_detection.as_ref()?;
    if s.failover_priority.is_empty() {
        Some(Mode::Failover(&s.failover))
    } else {
        Some(Mode::Priority {
            labels: &s.failover_priority,
            regions: &s.failover,
        })
    }
}

fn to_region(regions: &[(String, String)], from: &Locality) -> Option<String> {
    regions
        .iter()
        .find(|(f, _)| *f == from.region)
        .map(|(_, t)| t.clone())
}

/// The variant of a locality-only mode (not `Priority`) for a proxy at `from`.
pub fn variant(mode: Mode, from: &Locality) -> Variant {
    match mode {
        Mode::Failover(regions) | Mode::Priority { regions, .. } => Variant::Failover {
            from: from.clone(),
            to_region: to_region(regions, from),
        },
        Mode::Distribute(rules) => Variant::Distribute {
            from: from.clone(),
            to: rules
                .iter()
                .find(|(f, _)| from.matches(f))
                .map(|(_, t)| t.clone()),
        },
    }
}

/// CDS: the variant this proxy uses for a cluster with `policy`; None (the
/// shared, plain assignment) when no policy applies, or when it depends on
/// a locality the mesh does not know (EDS serves only known ones).
pub fn for_cluster<'a>(
    snapshot: &'a Snapshot,
    shape: &ProxyShape,
    policy: &'a TrafficPolicy,
) -> Option<(Mode<'a>, Variant)> {
    let mode = mode(snapshot, policy)?;
    // The shape keeps only a known locality.
    let locality = shape.locality.as_ref();
    let Mode::Priority { labels, regions } = mode else {
        return Some((mode, variant(mode, locality?)));
    };
    let proximity = |l: &Locality| (l.clone(), to_region(regions, l));
    match shape.failover_priority.get(labels) {
        Some(m) => Some((
            mode,
            Variant::Priority {
                labels: m.clone(),
                proximity: (!regions.is_empty())
                    .then(|| locality.map(proximity))
                    .flatten(),
            },
        )),
        // A proxy without labels: Istio ranks by labels only when it has
        // some, then applies the listed regions alone.
        None if !regions.is_empty() => {
            let failover = Mode::Failover(regions);
            Some((failover, variant(failover, locality?)))
        }
        None => None,
    }
}

/// EDS: every variant some proxy's cluster `outbound|port|subset|host` may
/// use: each DestinationRule for the host (whichever a proxy picks), and
/// none, merged as CDS merges them, at every known locality and for every
/// reduction of `failoverPriority` values.
pub fn variants(snapshot: &Snapshot, host: &str, port: u16, subset: &str) -> BTreeSet<Variant> {
    let rules = snapshot.by_host.destination_rules.matching(host);
    let mut policies = Vec::new();
    if subset.is_empty() {
        policies.push(TrafficPolicy::default());
        policies.extend(rules.iter().map(|dr| dr.policy.for_port(port)));
    } else {
        for dr in rules {
            for s in dr.subsets.iter().filter(|s| s.name == subset) {
                policies.push(dr.policy.for_port(port).overlay(&s.policy.for_port(port)));
            }
        }
    }
    let mut out = BTreeSet::new();
    for policy in &policies {
        let Some(mode) = mode(snapshot, policy) else {
            continue;
        };
        let Mode::Priority { labels, regions } = mode else {
            out.extend(snapshot.localities.iter().map(|l| variant(mode, l)));
            continue;
        };
        let keys = failover_priority::keys(labels);
        let known = snapshot.failover_known.get(&keys);
        let reductions = PriorityMatch::all(&keys, known.unwrap_or(&BTreeSet::new()));
        let mut proximities = vec![None];
        if !regions.is_empty() {
            proximities.extend(
                snapshot
                    .localities
                    .iter()
                    .map(|l| Some((l.clone(), to_region(regions, l)))),
            );
            // Proxies without labels.
            out.extend(snapshot.localities.iter().map(|l| variant(mode, l)));
        }
        for m in &reductions {
            out.extend(proximities.iter().map(|p| Variant::Priority {
                labels: m.clone(),
                proximity: p.clone(),
            }));
        }
    }
    out
}

/// Istio's `applyLocalityFailover`: the priority of each endpoint locality
/// as seen from `from`, compacted to 0..n in order.
pub fn failover_priorities(
    from: &Locality,
    to_region: Option<&str>,
    endpoints: &[&Locality],
) -> Vec<u32> {
    let raw: Vec<u32> = endpoints
        .iter()
        .map(|ep| {
            if ep.region != from.region {
                // Listed failover for the proxy's region: only `to` is 3.
                match to_region {
                    Some(to) if ep.region != to => 4,
                    _ => 3,
                }
            } else if ep.zone != from.zone {
                2
            } else if ep.subzone != from.subzone {
                1
            } else {
                0
            }
        })
        .collect();
    // Envoy wants priorities from 0 without gaps.
    let present: BTreeSet<u32> = raw.iter().copied().collect();
    raw.iter()
        .map(|p| present.iter().position(|q| q == p).unwrap_or(0) as u32)
        .collect()
}

/// Istio's `applyLocalityWeights`: each `to` rule's weight is split over
/// the localities it matches in proportion to their endpoint counts
/// (rounded up). None: the locality matches no rule and gets no traffic.
pub fn distribute_weights(
    to: &BTreeMap<String, u32>,
    groups: &[(&Locality, u32)],
) -> Vec<Option<u32>> {
    let mut out = vec![None; groups.len()];
    for (rule, weight) in to {
        let matched: Vec<usize> = (0..groups.len())
            .filter(|i| out[*i].is_none() && groups[*i].0.matches(rule))
            .collect();
        let total: u64 = matched.iter().map(|i| u64::from(groups[*i].1)).sum();
        for i in matched {
            let share = (u64::from(groups[i].1) * u64::from(*weight)).div_ceil(total.max(1));
            out[i] = Some(share.max(1) as u32);
        }
    }
    out
}

#[cfg(test)]
#[path = "locality_tests.rs"]
mod tests;
