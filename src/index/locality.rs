//! The mesh's known localities, and warnings about locality settings Rudder
//! does not apply yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::convert_entry::Selectable;
use crate::api::networking::workload_entry::WorkloadEntrySpec;
use crate::model::routing::{ConfigKey, DestinationRule, TrafficPolicy};
use crate::model::{Locality, LocalityLb, Workload, WorkloadKey};

/// Every distinct locality of Pods (`istio-locality` label) and
/// WorkloadEntries (`locality`): where a proxy may run, so where EDS serves
/// locality-relative load assignments.
pub fn known<'a>(
    workloads: &BTreeMap<WorkloadKey, Arc<Workload>>,
    entries: impl Iterator<Item = &'a WorkloadEntrySpec>,
) -> BTreeSet<Locality> {
    let pods = workloads
        .values()
        .filter_map(|w| Selectable::label_locality(&w.labels));
    pods.chain(entries.filter_map(Selectable::entry_locality))
        .collect()
}

/// One warning per DestinationRule that sets `failoverPriority`, which
/// Rudder validates but does not apply yet.
pub fn warnings(rules: &BTreeMap<ConfigKey, Arc<DestinationRule>>) -> Vec<String> {
    rules
        .values()
        .filter(|dr| {
            std::iter::once(&dr.policy)
                .chain(dr.subsets.iter().map(|s| &s.policy))
                .any(sets_failover_priority)
        })
        .map(|dr| {
            format!(
                "DestinationRule {}/{}: localityLbSetting.failoverPriority is not supported yet; \
                 no locality failover is applied where it is set",
                dr.key.namespace, dr.key.name
            )
        })
        .collect()
}

fn sets_failover_priority(p: &TrafficPolicy) -> bool {
    let here =
        matches!(&p.locality_lb, Some(LocalityLb::Rule(s)) if !s.failover_priority.is_empty());
    here || p.port_level.values().any(sets_failover_priority)
}
