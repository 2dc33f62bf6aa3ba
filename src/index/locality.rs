//! What the mesh's workloads tell locality load balancing: their localities,
//! and their `failoverPriority` label values.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::convert_entry::Selectable;
use crate::api::networking::workload_entry::WorkloadEntrySpec;
use crate::model::failover_priority::{self, KnownValues};
use crate::model::routing::DestinationRule;
use crate::model::{Endpoint, Locality, LocalityLbSetting, Workload, WorkloadKey};

/// Every distinct locality of Pods (`istio-locality` label, else their
/// Node's) and WorkloadEntries (`locality`): where a proxy may run, so
/// where EDS serves locality-relative load assignments.
pub fn known<'a>(
    workloads: &BTreeMap<WorkloadKey, Arc<Workload>>,
    entries: impl Iterator<Item = &'a WorkloadEntrySpec>,
) -> BTreeSet<Locality> {
    let pods = workloads.values().filter_map(|w| w.locality.clone());
    pods.chain(entries.filter_map(Selectable::entry_locality))
        .collect()
}

/// The `failoverPriority` values of every known workload (see
/// `model::failover_priority`): Pods (their labels and locality),
/// ServiceEntry endpoints and WorkloadEntries (their own labels and
/// locality), and an endpoint with neither (an EndpointSlice endpoint with
/// no Pod). Empty, at no cost, when no `failoverPriority` is configured.
pub fn failover_known<'a>(
    rules: impl Iterator<Item = &'a DestinationRule>,
    mesh: &'a LocalityLbSetting,
    workloads: &BTreeMap<WorkloadKey, Arc<Workload>>,
    entry_endpoints: impl Iterator<Item = &'a Endpoint> + Clone,
) -> KnownValues {
    let empty = BTreeMap::new();
    let mut out = KnownValues::new();
    let lists = failover_priority::lists(rules, mesh);
    if lists.is_empty() {
        return out;
    }
    for list in lists {
        let keys = failover_priority::keys(list);
        let mut known = BTreeSet::from([failover_priority::values(&keys, &empty, None)]);
        for w in workloads.values() {
            known.insert(failover_priority::values(
                &keys,
                &w.labels,
                w.locality.as_ref(),
            ));
        }
        for ep in entry_endpoints.clone() {
            let labels = ep.labels.as_deref().unwrap_or(&empty);
            known.insert(failover_priority::values(
                &keys,
                labels,
                ep.locality.as_ref(),
            ));
        }
        out.insert(keys, known);
    }
    out
}
