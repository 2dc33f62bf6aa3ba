//! Generated resources, shared between proxies of the same shape and reused
//! across snapshots where the change set allows. Translation runs outside the
//! lock; concurrent streams of one shape wait for a single translation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::OnceCell;

use super::resources::{changed_names, to_map, Name, Resource, ResourceMap, TypeUrl};
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
    /// Clusters, listeners and routes of the latest two versions, by name.
    pool: Mutex<Pool>,
}

/// What the latest translations produced, so a resource produced again (same
/// name, same bytes: same version) is the earlier allocation, whichever shape
/// or version made it first. Streams compare the maps they held with the new
/// ones side by side (`changed_names`, `same_entries`, re-warming); shared
/// entries compare by pointer there instead of by name and version. A
/// service edit retranslates every shape, and before this each of 1,000
/// proxies compared ~1,300 freshly allocated cluster names (a tenth of
/// Rudder's CPU in that push; docs/performance.md). Two generations, so the
/// pool holds at most the resources of the current and previous versions.
#[derive(Default)]
struct Pool {
    version: u64,
    current: HashMap<(TypeUrl, Name), Arc<Resource>>,
    previous: HashMap<(TypeUrl, Name), Arc<Resource>>,
}

impl Pool {
    /// `fresh` with every resource the pool already has (same name, same
    /// version) replaced by the pool's, keyed by its name.
    fn share(&mut self, version: u64, t: TypeUrl, fresh: ResourceMap) -> ResourceMap {
        if version > self.version {
            self.previous = std::mem::take(&mut self.current);
            self.version = version;
        }
        let mut out = ResourceMap::new();
        for (name, resource) in fresh {
            let key = (t, name);
            let known = self
                .current
                .get(&key)
                .or_else(|| self.previous.get(&key))
                .filter(|k| k.version == resource.version)
                .cloned();
            let resource = known.unwrap_or(resource);
            self.current
                .insert((t, Arc::clone(&resource.name)), Arc::clone(&resource));
            out.insert(Arc::clone(&resource.name), resource);
        }
        out
    }
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
            pool: Mutex::default(),
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
                    Arc::new(self.shared(all))
                }
            }
        })
        .await
        .clone()
    }
}

impl ConfigCache {
    /// `all` with its clusters, listeners and routes shared with the pool's.
    fn shared(&self, all: ProxyResources) -> ProxyResources {
        let mut pool = self.pool.lock();
        let version = all.version;
        let mut share = |t: TypeUrl, map: Arc<ResourceMap>| {
            let map = Arc::try_unwrap(map).unwrap_or_else(|m| (*m).clone());
            Arc::new(pool.share(version, t, map))
        };
        ProxyResources {
            clusters: share(TypeUrl::Cluster, all.clusters),
            listeners: share(TypeUrl::Listener, all.listeners),
            routes: share(TypeUrl::Route, all.routes),
            ..all
        }
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
        // A missed version (the change set can't be trusted) or a routing
        // change: every load assignment again, sharing those that came out
        // the same, so streams find what changed by pointer and through the
        // delta, as after an endpoint change.
        let before = std::mem::take(&mut state.endpoints);
        state.eds_names.clear();
        update_endpoints(state, snapshot, snapshot.services.keys());
        let fresh = std::mem::take(&mut state.endpoints);
        let mut map = ResourceMap::new();
        for (name, resource) in fresh.iter() {
            match before.get_key_value(name) {
                Some((key, old)) if old.version == resource.version => {
                    map.insert(Arc::clone(key), Arc::clone(old))
                }
                _ => map.insert(Arc::clone(name), Arc::clone(resource)),
            };
        }
        for names in state.eds_names.values_mut() {
            for name in names.iter_mut() {
                if let Some((key, _)) = map.get_key_value(name) {
                    *name = Arc::clone(key);
                }
            }
        }
        let map = Arc::new(map);
        state.endpoints_delta = Some(EndpointsDelta {
            changed: Arc::new(changed_names(&before, &map).into_iter().collect()),
            from: before,
        });
        state.endpoints = map;
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
