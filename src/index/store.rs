//! The index's state: every accepted object, who reported it, what was
//! refused, and the model derived from it. Only the index task touches this.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::{self, Kind, Object, ObjectKey};
use crate::model::authz::{AuthzPolicy, RequestAuthn};
use crate::model::routing::{self, ConfigKey};
use crate::model::security::PeerAuthn;
use crate::model::{self, ChangeSet, ConfigStatus, ObjectRef, Origin, Rejection, ServiceKey};
use crate::source::Item;

use super::convert;

struct Stored {
    origin: Origin,
    object: Arc<Object>,
}

#[derive(Default)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Stored>,
    /// Keys each unit (file) currently provides, to find deletions.
    owned: BTreeMap<String, BTreeSet<ObjectKey>>,
    rejected: BTreeMap<String, Vec<Rejection>>,
    ignored: BTreeMap<String, Vec<(ObjectRef, Origin)>>,
    // The model, kept up to date incrementally.
    pub services: BTreeMap<ServiceKey, Arc<model::Service>>,
    pub endpoints: BTreeMap<ServiceKey, Arc<model::ServiceEndpoints>>,
    pub workloads: BTreeMap<model::WorkloadKey, Arc<model::Workload>>,
    /// Each Node's locality, from its topology labels (Nodes without any
    /// are left out): a Pod's locality unless its own label says otherwise.
    nodes: BTreeMap<String, model::Locality>,
    pub namespaces: BTreeMap<String, Arc<model::Namespace>>,
    pub virtual_services: BTreeMap<ConfigKey, Arc<routing::VirtualService>>,
    pub destination_rules: BTreeMap<ConfigKey, Arc<routing::DestinationRule>>,
    /// See `Snapshot::by_host`; rebuilt at a publish after either changed.
    pub by_host: Arc<model::by_host::RulesByHost>,
    by_host_dirty: bool,
    pub sidecars: BTreeMap<ConfigKey, Arc<routing::SidecarScope>>,
    pub peer_authentications: BTreeMap<ConfigKey, Arc<PeerAuthn>>,
    pub authorization_policies: BTreeMap<ConfigKey, Arc<AuthzPolicy>>,
    pub request_authentications: BTreeMap<ConfigKey, Arc<RequestAuthn>>,
    /// EndpointSlices by the Service they belong to, so rebuilding one
    /// Service's endpoints reads only its own slices.
    slices: BTreeMap<ServiceKey, BTreeSet<ObjectKey>>,
    /// Services each ServiceEntry contributed, to replace them on change.
    entry_services: BTreeMap<ObjectKey, Vec<ServiceKey>>,
    /// Changes not yet published.
    pub pending: ChangeSet,
    /// Known localities (see `Snapshot::localities`), recomputed only after
    /// a Pod or WorkloadEntry changed.
    pub localities: Arc<BTreeSet<model::Locality>>,
    localities_dirty: bool,
    /// See `Snapshot::failover_known`; recomputed at every publish while
    /// some `failoverPriority` is configured.
    pub failover_known: Arc<model::failover_priority::KnownValues>,
}

impl Store {
    /// Folds in the full content of one unit. Invalid documents are recorded
    /// and the objects they name keep their previous good version.
    pub fn replace(&mut self, unit: &str, items: Vec<Item>) {
        let before = self.owned.remove(unit).unwrap_or_default();
        let mut kept = BTreeSet::new();
        // A document whose identity we could not read might hold any of the
        // unit's objects, so none of them may be deleted this round.
        let mut unsure = false;
        let mut rejections = Vec::new();
        let mut ignored = Vec::new();
        for item in items {
            match item {
                Item::Object {
                    document,
                    key,
                    object,
                } => {
                    let origin = origin(unit, document);
                    match api::validate(&object) {
                        Ok(()) => {
                            self.put(key.clone(), origin, object);
                            kept.insert(key);
                        }
                        Err(error) => {
                            rejections.push(reject(origin, Some(key.to_ref()), error));
                            if before.contains(&key) {
                                kept.insert(key);
                            }
                        }
                    }
                }
                Item::Invalid { document, error } => {
                    let origin = origin(unit, document);
                    match &error.object {
                        Some(r) => kept.extend(before.iter().filter(|k| k.to_ref() == *r).cloned()),
                        None => unsure = true,
                    }
                    rejections.push(reject(origin, error.object, error.error));
                }
                Item::Ignored { document, object } => {
                    tracing::debug!(%object, unit, "ignoring a kind Rudder does not serve");
                    ignored.push((object, origin(unit, document)));
                }
            }
        }
        for r in &rejections {
            tracing::error!("rejected {r}; the previous version, if any, stays in service");
        }
        let dropped: Vec<ObjectKey> = before.difference(&kept).cloned().collect();
        for key in &dropped {
            if unsure {
                kept.insert(key.clone());
            } else if self
                .objects
                .get(key)
                .is_some_and(|s| s.origin.source == unit)
            {
                self.remove(key);
            }
        }
        if !kept.is_empty() {
            self.owned.insert(unit.to_string(), kept);
        }
        set_or_clear(&mut self.rejected, unit, rejections);
        set_or_clear(&mut self.ignored, unit, ignored);
    }

    fn put(&mut self, key: ObjectKey, origin: Origin, object: Arc<Object>) {
        // A slice relabelled to another Service leaves its old Service's endpoints.
        let old_service = match self.objects.get(&key).map(|s| s.object.as_ref()) {
            Some(Object::EndpointSlice(slice)) => slice_service(&key, slice),
            _ => None,
        };
        if let Some(old) = self.objects.get(&key) {
            if old.origin.source != origin.source {
                tracing::warn!(object = %key.to_ref(), first = %old.origin, now = %origin, "object defined twice; the later one wins");
            }
            if old.object == object {
                self.objects.insert(key, Stored { origin, object });
                return;
            }
        }
        let new_service = match object.as_ref() {
            Object::EndpointSlice(slice) => slice_service(&key, slice),
            _ => None,
        };
        if let Some(svc) = &old_service {
            self.unindex_slice(svc, &key);
        }
        if let Some(svc) = new_service {
            self.slices.entry(svc).or_default().insert(key.clone());
        }
        self.objects.insert(key.clone(), Stored { origin, object });
        self.refresh(&key);
        if let Some(svc) = old_service {
            self.refresh_endpoints(svc);
        }
    }

    fn unindex_slice(&mut self, svc: &ServiceKey, key: &ObjectKey) {
        if let Some(set) = self.slices.get_mut(svc) {
            set.remove(key);
            if set.is_empty() {
                self.slices.remove(svc);
            }
        }
    }

    fn remove(&mut self, key: &ObjectKey) {
        let removed = self.objects.remove(key);
        if let Some(stored) = &removed {
            // The slice's Service label is only readable from the object.
            if let Object::EndpointSlice(slice) = stored.object.as_ref() {
                if let Some(svc) = slice_service(key, slice) {
                    self.unindex_slice(&svc, key);
                    self.refresh_endpoints(svc);
                }
            }
        }
        self.refresh(key);
    }

    /// Recomputes the model entry an object contributes to.
    fn refresh(&mut self, key: &ObjectKey) {
        let object = self.objects.get(key).map(|s| s.object.clone());
        match key.kind {
            Kind::Service => {
                let skey = ServiceKey::new(&key.namespace, &key.name);
                let new = match object.as_deref() {
                    Some(Object::Service(svc)) => {
                        Some(Arc::new(convert::service(svc, skey.clone())))
                    }
                    _ => None,
                };
                if update(&mut self.services, skey.clone(), new) {
                    self.pending.services.insert(skey.clone());
                    // Its selector picks WorkloadEntries (and its ports map them).
                    self.refresh_endpoints(skey);
                }
            }
            Kind::EndpointSlice => {
                if let Some(Object::EndpointSlice(slice)) = object.as_deref() {
                    if let Some(svc) = slice_service(key, slice) {
                        self.refresh_endpoints(svc);
                    }
                }
            }
            Kind::Endpoints => self.refresh_endpoints(ServiceKey::new(&key.namespace, &key.name)),
            Kind::Pod => {
                self.localities_dirty = true;
                let wkey = model::WorkloadKey {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                };
                let nodes = &self.nodes;
                let new = match object.as_deref() {
                    Some(Object::Pod(pod)) => {
                        Some(Arc::new(convert::workload(pod, wkey.clone(), |n| {
                            nodes.get(n).cloned()
                        })))
                    }
                    _ => None,
                };
                if update(&mut self.workloads, wkey, new) {
                    self.pending.workloads = true;
                    self.refresh_selecting_entries();
                }
            }
            Kind::Node => {
                let locality = match object.as_deref() {
                    Some(Object::Node(node)) => node
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(model::Locality::from_node_labels),
                    _ => None,
                };
                self.refresh_node(&key.name, locality);
            }
            Kind::VirtualService => {
                let new = match object.as_deref() {
                    Some(Object::VirtualService(vs)) => {
                        Some(Arc::new(super::convert_routing::virtual_service(vs)))
                    }
                    _ => None,
                };
                let changed = update(&mut self.virtual_services, config_key(key), new);
                self.pending.routing |= changed;
                self.by_host_dirty |= changed;
            }
            Kind::DestinationRule => {
                let new = match object.as_deref() {
                    Some(Object::DestinationRule(dr)) => {
                        Some(Arc::new(super::convert_policy::destination_rule(dr)))
                    }
                    _ => None,
                };
                let changed = update(&mut self.destination_rules, config_key(key), new);
                self.pending.routing |= changed;
                self.by_host_dirty |= changed;
            }
            Kind::Sidecar => {
                let new = match object.as_deref() {
                    Some(Object::Sidecar(sc)) => Some(Arc::new(super::convert_policy::sidecar(sc))),
                    _ => None,
                };
                self.pending.routing |= update(&mut self.sidecars, config_key(key), new);
            }
            Kind::ServiceEntry => self.refresh_entry(key),
            // Entries with a workloadSelector may select this one.
            Kind::WorkloadEntry => {
                self.localities_dirty = true;
                self.refresh_selecting_entries();
                let services: Vec<ServiceKey> = self
                    .services
                    .values()
                    .filter(|svc| svc.key.namespace == key.namespace && !svc.from_service_entry)
                    .map(|svc| svc.key.clone())
                    .collect();
                for svc in services {
                    self.refresh_endpoints(svc);
                }
            }
            Kind::PeerAuthentication => {
                let new = match object.as_deref() {
                    Some(Object::PeerAuthentication(pa)) => {
                        Some(Arc::new(super::convert_security::peer_authentication(pa)))
                    }
                    _ => None,
                };
                // Changes inbound chains and which endpoints get auto mTLS.
                self.pending.routing |=
                    update(&mut self.peer_authentications, config_key(key), new);
            }
            Kind::AuthorizationPolicy => {
                let new = match object.as_deref() {
                    Some(Object::AuthorizationPolicy(ap)) => {
                        Some(Arc::new(super::convert_security::authorization_policy(ap)))
                    }
                    _ => None,
                };
                self.pending.routing |=
                    update(&mut self.authorization_policies, config_key(key), new);
            }
            Kind::RequestAuthentication => {
                let new = match object.as_deref() {
                    Some(Object::RequestAuthentication(ra)) => Some(Arc::new(
                        super::convert_security::request_authentication(ra),
                    )),
                    _ => None,
                };
                self.pending.routing |=
                    update(&mut self.request_authentications, config_key(key), new);
            }
            Kind::Namespace => {
                let new = match object.as_deref() {
                    Some(Object::Namespace(ns)) => Some(Arc::new(convert::namespace(ns))),
                    _ => None,
                };
                self.pending.workloads |= update(&mut self.namespaces, key.name.clone(), new);
            }
        }
    }

    /// Replaces the services and endpoints one ServiceEntry contributes.
    fn refresh_entry(&mut self, key: &ObjectKey) {
        let old = self.entry_services.remove(key).unwrap_or_default();
        let entry = match self.objects.get(key).map(|s| s.object.clone()) {
            Some(obj) => match obj.as_ref() {
                Object::ServiceEntry(se) => Some(super::convert_entry::service_entry(
                    se,
                    &self.selectable(&key.namespace),
                )),
                _ => None,
            },
            None => None,
        };
        let mut now = Vec::new();
        for (svc, eps) in entry.map(|e| e.services).unwrap_or_default() {
            let skey = svc.key.clone();
            if update(&mut self.services, skey.clone(), Some(Arc::new(svc))) {
                self.pending.services.insert(skey.clone());
            }
            if update(&mut self.endpoints, skey.clone(), eps.map(Arc::new)) {
                self.pending.endpoints.insert(skey.clone());
            }
            now.push(skey);
        }
        for gone in old.iter().filter(|k| !now.contains(k)) {
            if update(&mut self.services, gone.clone(), None) {
                self.pending.services.insert(gone.clone());
            }
            update(&mut self.endpoints, gone.clone(), None);
        }
        if !now.is_empty() {
            self.entry_services.insert(key.clone(), now);
        }
    }

    fn refresh_selecting_entries(&mut self) {
        let entries: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, s)| matches!(s.object.as_ref(), Object::ServiceEntry(se) if se.spec.workload_selector.is_some()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in entries {
            self.refresh_entry(&key);
        }
    }

    /// A Node's locality changed: so did that of its Pods without an
    /// `istio-locality` label of their own.
    fn refresh_node(&mut self, name: &str, locality: Option<model::Locality>) {
        if self.nodes.get(name) == locality.as_ref() {
            return;
        }
        match locality.clone() {
            Some(l) => self.nodes.insert(name.to_string(), l),
            None => self.nodes.remove(name),
        };
        let mut changed = false;
        for w in self.workloads.values_mut() {
            if w.node.as_deref() != Some(name) {
                continue;
            }
            let own = super::convert_entry::Selectable::label_locality(&w.labels);
            let now = own.or_else(|| locality.clone());
            if w.locality != now {
                Arc::make_mut(w).locality = now;
                changed = true;
            }
        }
        if changed {
            self.pending.workloads = true;
            self.localities_dirty = true;
            self.refresh_selecting_entries();
        }
    }

    /// Pods and WorkloadEntries of a namespace, for ServiceEntry selectors.
    fn selectable(&self, namespace: &str) -> Vec<super::convert_entry::Selectable> {
        use super::convert_entry::Selectable;
        let mut out = Vec::new();
        for (k, s) in &self.objects {
            if k.namespace != namespace {
                continue;
            }
            match s.object.as_ref() {
                Object::WorkloadEntry(we) => {
                    if let Some(addr) = &we.spec.address {
                        out.push(Selectable {
                            labels: we.spec.labels.clone(),
                            address: addr.clone(),
                            ports: we.spec.ports.clone(),
                            locality: Selectable::entry_locality(&we.spec),
                        });
                    }
                }
                Object::Pod(pod) => {
                    if let Some(ip) = pod.status.as_ref().and_then(|st| st.pod_ip.clone()) {
                        let labels = pod.metadata.labels.clone().unwrap_or_default();
                        // The workload's locality includes its Node's.
                        let wkey = model::WorkloadKey {
                            namespace: k.namespace.clone(),
                            name: k.name.clone(),
                        };
                        out.push(Selectable {
                            locality: self.workloads.get(&wkey).and_then(|w| w.locality.clone()),
                            labels,
                            address: ip,
                            ports: BTreeMap::new(),
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// EndpointSlices win; legacy Endpoints count only for a Service without slices.
    fn refresh_endpoints(&mut self, svc: ServiceKey) {
        let slices: Vec<_> = self
            .slices
            .get(&svc)
            .into_iter()
            .flatten()
            .filter_map(|k| match self.objects.get(k).map(|s| s.object.as_ref()) {
                Some(Object::EndpointSlice(slice)) => Some(slice),
                _ => None,
            })
            .collect();
        let mut new = if !slices.is_empty() {
            Some(convert::endpoints_from_slices(slices.into_iter()))
        } else {
            let legacy = ObjectKey {
                kind: Kind::Endpoints,
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
            };
            match self.objects.get(&legacy).map(|s| s.object.as_ref()) {
                Some(Object::Endpoints(eps)) => Some(convert::endpoints_from_legacy(eps)),
                _ => None,
            }
        };
        let entries = self.selected_workload_entries(&svc);
        if !entries.is_empty() {
            let all = new.get_or_insert_with(model::ServiceEndpoints::default);
            all.endpoints.extend(entries);
        }
        if update(&mut self.endpoints, svc.clone(), new.map(Arc::new)) {
            self.pending.endpoints.insert(svc);
        }
    }

    /// WorkloadEntries a Kubernetes Service's selector picks, as Istio's
    /// (PILOT_ENABLE_K8S_SELECT_WORKLOAD_ENTRIES, on by default): VMs
    /// behind a Service, next to its Pods. ServiceEntries select theirs in
    /// `convert_entry`.
    fn selected_workload_entries(&self, svc: &ServiceKey) -> Vec<model::Endpoint> {
        let Some(service) = self.services.get(svc).filter(|s| !s.from_service_entry) else {
            return Vec::new();
        };
        // Keys sort by kind, then namespace: read just this namespace's entries.
        let first = ObjectKey {
            kind: Kind::WorkloadEntry,
            namespace: svc.namespace.clone(),
            name: String::new(),
        };
        let entries = self
            .objects
            .range(first..)
            .take_while(|(k, _)| k.kind == Kind::WorkloadEntry && k.namespace == svc.namespace)
            .filter_map(|(_, s)| match s.object.as_ref() {
                Object::WorkloadEntry(we) => Some(&we.spec),
                _ => None,
            });
        entries
            .filter(|we| service.selects(&svc.namespace, &we.labels))
            .filter_map(|we| convert::workload_entry_endpoint(service, we))
            .collect()
    }

    /// Recomputes the known localities after Pods or WorkloadEntries
    /// changed. A new or vanished locality changes which EDS names proxies
    /// use, so it counts as a workload change (every shape recomputed).
    pub fn refresh_localities(&mut self) {
        if !std::mem::take(&mut self.localities_dirty) {
            return;
        }
        let entries = self
            .objects
            .values()
            .filter_map(|s| match s.object.as_ref() {
                Object::WorkloadEntry(we) => Some(&we.spec),
                _ => None,
            });
        let known = super::locality::known(&self.workloads, entries);
        if known != *self.localities {
            self.localities = Arc::new(known);
            self.pending.workloads = true;
        }
    }

    /// Rebuilds the rules-by-host index after a VirtualService or
    /// DestinationRule changed.
    pub fn refresh_by_host(&mut self) {
        if !std::mem::take(&mut self.by_host_dirty) {
            return;
        }
        self.by_host = Arc::new(model::by_host::RulesByHost {
            virtual_services: model::by_host::ByHost::new(self.virtual_services.values()),
            destination_rules: model::by_host::ByHost::new(self.destination_rules.values()),
        });
    }

    /// A change of these values changes which load assignment a proxy's
    /// cluster names, so it counts as a workload change (CDS is recomputed):
    /// ServiceEntry endpoints may change them with no other change. Reads
    /// every endpoint, so only while some `failoverPriority` is configured.
    pub fn refresh_failover_known(&mut self, mesh: &model::MeshConfig) {
        let known = super::locality::failover_known(
            self.destination_rules.values().map(|d| d.as_ref()),
            &mesh.locality_lb,
            &self.workloads,
            // Endpoints without a Pod: ServiceEntry endpoints and WorkloadEntries.
            self.endpoints
                .values()
                .flat_map(|e| e.endpoints.iter())
                .filter(|e| e.pod.is_none()),
        );
        if known != *self.failover_known {
            self.failover_known = Arc::new(known);
            self.pending.workloads = true;
        }
    }

    /// Accepted fields Rudder does not apply, one warning each, so a user
    /// is told rather than left guessing.
    fn unsupported(&self) -> Vec<String> {
        let rules = self
            .objects
            .values()
            .filter_map(|s| match s.object.as_ref() {
                Object::DestinationRule(dr) => Some(dr),
                _ => None,
            });
        rules
            .flat_map(|dr| {
                let name = format!(
                    "DestinationRule {}/{}",
                    dr.metadata.namespace.as_deref().unwrap_or_default(),
                    dr.metadata.name.as_deref().unwrap_or_default()
                );
                let spec = &dr.spec;
                let top = spec
                    .traffic_policy
                    .iter()
                    .map(|p| ("spec.trafficPolicy".to_string(), p));
                let subsets = spec.subsets.iter().enumerate().filter_map(|(i, s)| {
                    Some((
                        format!("spec.subsets[{i}].trafficPolicy"),
                        s.traffic_policy.as_ref()?,
                    ))
                });
                top.chain(subsets)
                    .filter(|(_, p)| p.tunnel.is_some())
                    .map(move |(at, _)| {
                        format!("{name}: {at}.tunnel is not supported yet and is ignored")
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn status(&self) -> ConfigStatus {
        ConfigStatus {
            accepted: self
                .objects
                .iter()
                .map(|(k, s)| (k.to_ref(), s.origin.clone()))
                .collect(),
            rejected: self.rejected.values().flatten().cloned().collect(),
            ignored: self.ignored.values().flatten().cloned().collect(),
            warnings: [super::conflicts::find(&self.services), self.unsupported()].concat(),
        }
    }
}

fn config_key(key: &ObjectKey) -> ConfigKey {
    ConfigKey {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

fn origin(unit: &str, document: usize) -> Origin {
    Origin {
        source: unit.to_string(),
        document: Some(document),
    }
}

fn reject(origin: Origin, object: Option<ObjectRef>, error: api::FieldError) -> Rejection {
    Rejection {
        origin,
        object,
        field: error.field,
        reason: error.reason,
    }
}

fn set_or_clear<T>(map: &mut BTreeMap<String, Vec<T>>, unit: &str, list: Vec<T>) {
    if list.is_empty() {
        map.remove(unit);
    } else {
        map.insert(unit.to_string(), list);
    }
}

/// Replaces or removes a model entry; true when it actually changed.
fn update<K: Ord, V: PartialEq>(
    map: &mut BTreeMap<K, Arc<V>>,
    key: K,
    new: Option<Arc<V>>,
) -> bool {
    match new {
        Some(v) => match map.get(&key) {
            Some(old) if **old == *v => false,
            _ => {
                map.insert(key, v);
                true
            }
        },
        None => map.remove(&key).is_some(),
    }
}

fn slice_service(
    key: &ObjectKey,
    slice: &k8s_openapi::api::discovery::v1::EndpointSlice,
) -> Option<ServiceKey> {
    let labels = slice.metadata.labels.as_ref()?;
    let name = labels.get(api::SERVICE_NAME_LABEL)?;
    Some(ServiceKey::new(&key.namespace, name))
}
