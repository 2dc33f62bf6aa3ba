//! Generated resources, shared between proxies of the same shape and reused
//! across snapshots where the change set allows. Translation runs outside the
//! lock; concurrent streams of one shape wait for a single translation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::OnceCell;

use super::resources::{to_map, Name, ResourceMap, TypeUrl};
use super::wire::{frame, Framed};
use crate::model::{ServiceKey, Snapshot};
use crate::translate::{self, ProxyShape};

/// Everything one proxy shape is served, for one snapshot version.
#[derive(Debug)]
pub struct ProxyResources {
    pub version: u64,
    pub clusters: Arc<ResourceMap>,
    pub endpoints: Arc<ResourceMap>,
    pub listeners: Arc<ResourceMap>,
    pub routes: Arc<ResourceMap>,
    /// How `endpoints` differs from the map it replaced, so a stream that
    /// holds that map checks only these names instead of all of them.
    pub endpoints_delta: Option<EndpointsDelta>,
}

#[derive(Debug, Clone)]
pub struct EndpointsDelta {
    pub from: Arc<ResourceMap>,
    /// Names added, changed or removed.
    pub changed: Arc<std::collections::BTreeSet<Name>>,
}

impl ProxyResources {
    /// The shape's resources of type `t`; `None` for secrets, which belong
    /// to an identity rather than a shape (see `secrets.rs`).
    pub fn of(&self, t: TypeUrl) -> Option<&Arc<ResourceMap>> {
        match t {
            TypeUrl::Secret => None,
            TypeUrl::Cluster => Some(&self.clusters),
            TypeUrl::Endpoint => Some(&self.endpoints),
            TypeUrl::Listener => Some(&self.listeners),
            TypeUrl::Route => Some(&self.routes),
        }
    }
}

type Slot = Arc<OnceCell<Arc<ProxyResources>>>;

struct State {
    version: u64,
    /// EDS is proxy-independent: one map for everybody.
    endpoints: Arc<ResourceMap>,
    /// Which EDS resources each service produced, to replace them on change.
    eds_names: BTreeMap<ServiceKey, Vec<Name>>,
    shapes: HashMap<ProxyShape, Slot>,
    endpoints_delta: Option<EndpointsDelta>,
    /// The previous version's shapes, when only endpoints changed since: every
    /// shape, not just the first one asked for, reuses its CDS/LDS/RDS.
    reusable: HashMap<ProxyShape, Slot>,
}

pub struct ConfigCache {
    state: Mutex<State>,
    /// Maps sent whole, their resources framed once (`framed`), by address.
    framed: Mutex<HashMap<usize, (Weak<ResourceMap>, Framed)>>,
}

impl Default for ConfigCache {
    fn default() -> Self {
        ConfigCache {
            state: Mutex::new(State {
                version: 0,
                endpoints: Arc::default(),
                eds_names: BTreeMap::new(),
                shapes: HashMap::new(),
                endpoints_delta: None,
                reusable: HashMap::new(),
            }),
            framed: Mutex::default(),
        }
    }
}

impl ConfigCache {
    /// Every resource of `all`, in order, encoded as a response's field 2,
    /// once per map however many streams are sent all of it: their responses
    /// then share these bytes instead of each copying ~1,300 small clusters
    /// or load assignments into chunks of its own. Those copies, up to the
    /// 400 KiB hyper lets each stream queue, were most of the memory a cold
    /// connect of 1,000 proxies left behind in the allocator's arenas (see
    /// docs/performance.md).
    pub fn framed(&self, all: &Arc<ResourceMap>) -> Framed {
        let key = Arc::as_ptr(all) as usize;
        let mut table = self.framed.lock();
        if let Some((map, framed)) = table.get(&key) {
            // Alive at this address: the same map.
            if map.strong_count() > 0 {
                return framed.clone();
            }
        }
        table.retain(|_, (map, _)| map.strong_count() > 0);
        let framed = frame(all.values().map(|r| &r.sotw));
        table.insert(key, (Arc::downgrade(all), framed.clone()));
        framed
    }

    /// The resources for `shape` at `snapshot`'s version, translating at most
    /// once per (version, shape) however many proxies ask.
    pub async fn get(&self, snapshot: &Arc<Snapshot>, shape: &ProxyShape) -> Arc<ProxyResources> {
        let (slot, previous, endpoints) = {
            let mut state = self.state.lock();
            if snapshot.version > state.version {
                advance(&mut state, snapshot);
            }
            let slot = state.shapes.entry(shape.clone()).or_default().clone();
            let previous = state.reusable.get(shape).and_then(|s| s.get().cloned());
            (
                slot,
                previous,
                (state.endpoints.clone(), state.endpoints_delta.clone()),
            )
        };
        let (endpoints, endpoints_delta) = endpoints;
        if snapshot.version < self.state.lock().version {
            // A stream still on an older snapshot: translate for it alone.
            let endpoints = to_map(translate::endpoints(snapshot), |c| &c.cluster_name);
            return Arc::new(translate_all(snapshot, shape, Arc::new(endpoints)));
        }
        slot.get_or_init(|| async {
            match previous {
                // Only endpoints changed: CDS/LDS/RDS of this shape are unchanged.
                Some(prev) => Arc::new(ProxyResources {
                    version: snapshot.version,
                    clusters: prev.clusters.clone(),
                    listeners: prev.listeners.clone(),
                    routes: prev.routes.clone(),
                    endpoints,
                    endpoints_delta,
                }),
                None => {
                    let mut all = translate_all(snapshot, shape, endpoints);
                    all.endpoints_delta = endpoints_delta;
                    Arc::new(all)
                }
            }
        })
        .await
        .clone()
    }
}

/// Moves the cache to a newer snapshot, keeping the old shapes for reuse when
/// the change was endpoints-only and immediately follows the cached version.
fn advance(state: &mut State, snapshot: &Snapshot) {
    let consecutive = snapshot.version == state.version + 1 && state.version != 0;
    let changes = &snapshot.changes;
    // Subsets select endpoints by DestinationRule and pod labels: when either
    // changed, every service's load assignments may differ.
    if consecutive && !changes.routing && !changes.workloads {
        let touched = changes.services.iter().chain(changes.endpoints.iter());
        update_endpoints(state, snapshot, touched);
    } else {
        // A missed version (the change set can't be trusted) or a routing change.
        state.endpoints = Arc::default();
        state.eds_names.clear();
        update_endpoints(state, snapshot, snapshot.services.keys());
        state.endpoints_delta = None;
    }
    state.version = snapshot.version;
    let old = std::mem::take(&mut state.shapes);
    state.reusable = if consecutive && changes.endpoints_only() {
        old
    } else {
        HashMap::new()
    };
}

fn update_endpoints<'a>(
    state: &mut State,
    snapshot: &Snapshot,
    services: impl Iterator<Item = &'a ServiceKey>,
) {
    let before = Arc::clone(&state.endpoints);
    let mut map = (*state.endpoints).clone();
    let mut touched = std::collections::BTreeSet::new();
    for key in services {
        for name in state.eds_names.remove(key).unwrap_or_default() {
            map.remove(&name);
            touched.insert(name);
        }
        let fresh = to_map(translate::endpoints_for(snapshot, [key]), |c| {
            &c.cluster_name
        });
        if !fresh.is_empty() {
            state
                .eds_names
                .insert(key.clone(), fresh.keys().cloned().collect());
        }
        touched.extend(fresh.keys().cloned());
        map.extend(fresh);
    }
    // Only what really differs: a touched service often keeps most CLAs.
    let changed = touched
        .into_iter()
        .filter(|n| before.get(n).map(|r| &r.version) != map.get(n).map(|r| &r.version))
        .collect();
    state.endpoints = Arc::new(map);
    state.endpoints_delta = Some(EndpointsDelta {
        from: before,
        changed: Arc::new(changed),
    });
}

fn translate_all(
    snapshot: &Snapshot,
    shape: &ProxyShape,
    endpoints: Arc<ResourceMap>,
) -> ProxyResources {
    ProxyResources {
        version: snapshot.version,
        clusters: Arc::new(to_map(translate::clusters(snapshot, shape), |c| &c.name)),
        listeners: Arc::new(to_map(translate::listeners(snapshot, shape), |l| &l.name)),
        routes: Arc::new(to_map(translate::routes(snapshot, shape), |r| &r.name)),
        endpoints,
        endpoints_delta: None,
    }
}
