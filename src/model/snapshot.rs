use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::authz::{AuthzPolicy, RequestAuthn};
use super::routing::{ConfigKey, DestinationRule, SidecarScope, VirtualService};
use super::security::PeerAuthn;
use super::{
    Locality, MeshConfig, Namespace, Service, ServiceEndpoints, ServiceKey, Workload, WorkloadKey,
};

/// Where a document came from: a file and its 0-based document index, or a watch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Origin {
    pub source: String,
    pub document: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(d) => write!(f, "{} document {}", self.source, d),
            None => f.write_str(&self.source),
        }
    }
}

/// `Kind namespace/name`, for messages and debug output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A document the index refused, and why. The previous good version stays.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub origin: Origin,
    pub object: Option<ObjectRef>,
    /// Dotted path of the offending field, e.g. `spec.ports[0].port`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What the index accepted and refused, for `/debug/configz`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConfigStatus {
    pub accepted: Vec<(ObjectRef, Origin)>,
    pub rejected: Vec<Rejection>,
    /// Documents of kinds Rudder does not serve (Deployments, ...), left alone.
    pub ignored: Vec<(ObjectRef, Origin)>,
    /// Accepted objects that conflict with each other, and how it is resolved.
    pub warnings: Vec<String>,
}

/// What changed between this snapshot and the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeSet {
    /// Service definitions added, changed or removed.
    pub services: BTreeSet<ServiceKey>,
    /// Services whose endpoints changed (and nothing else about them).
    pub endpoints: BTreeSet<ServiceKey>,
    /// Pods or namespaces changed: anything proxy-shaped may differ.
    pub workloads: bool,
    /// Routing or security policy changed: VirtualServices, DestinationRules,
    /// Sidecars, PeerAuthentications, AuthorizationPolicies or
    /// RequestAuthentications.
    pub routing: bool,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.endpoints.is_empty() && !self.workloads && !self.routing
    }

    /// Only endpoints moved: an EDS push for those services' clusters suffices.
    pub fn endpoints_only(&self) -> bool {
        self.services.is_empty() && !self.workloads && !self.routing && !self.endpoints.is_empty()
    }

    pub fn merge(&mut self, other: &ChangeSet) {
        self.services.extend(other.services.iter().cloned());
        self.endpoints.extend(other.endpoints.iter().cloned());
        self.workloads |= other.workloads;
        self.routing |= other.routing;
    }
}

/// An immutable view of the whole mesh, published by the index after each debounce.
/// Readers hold an `Arc<Snapshot>`; the index never mutates one once published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases by one per publish, starting at 1.
    pub version: u64,
    pub created: Instant,
    /// True once every source finished its initial load.
    pub synced: bool,
    pub services: BTreeMap<ServiceKey, Arc<Service>>,
    pub endpoints: BTreeMap<ServiceKey, Arc<ServiceEndpoints>>,
    pub workloads: BTreeMap<WorkloadKey, Arc<Workload>>,
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    pub virtual_services: BTreeMap<ConfigKey, Arc<VirtualService>>,
    pub destination_rules: BTreeMap<ConfigKey, Arc<DestinationRule>>,
    /// The two above by the hosts they name, for lookups per service.
    pub by_host: Arc<super::by_host::RulesByHost>,
    pub sidecars: BTreeMap<ConfigKey, Arc<SidecarScope>>,
    pub peer_authentications: BTreeMap<ConfigKey, Arc<PeerAuthn>>,
    pub authorization_policies: BTreeMap<ConfigKey, Arc<AuthzPolicy>>,
    pub request_authentications: BTreeMap<ConfigKey, Arc<RequestAuthn>>,
    pub mesh: Arc<MeshConfig>,
    /// Every distinct locality of the mesh's workloads (Pods' `istio-locality`
    /// labels, WorkloadEntries): the localities EDS serves per-proxy-locality
    /// load assignments for.
    pub localities: Arc<BTreeSet<Locality>>,
    /// The `failoverPriority` label values of every known workload, per
    /// key list: the reductions EDS serves per-proxy assignments for.
    pub failover_known: Arc<super::failover_priority::KnownValues>,
    /// Changes since version `version - 1`.
    pub changes: ChangeSet,
    pub status: Arc<ConfigStatus>,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            created: Instant::now(),
            synced: false,
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            workloads: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            virtual_services: BTreeMap::new(),
            destination_rules: BTreeMap::new(),
            by_host: Arc::default(),
            sidecars: BTreeMap::new(),
            peer_authentications: BTreeMap::new(),
            authorization_policies: BTreeMap::new(),
            request_authentications: BTreeMap::new(),
            mesh: Arc::default(),
            localities: Arc::default(),
            failover_known: Arc::default(),
            changes: ChangeSet::default(),
            status: Arc::default(),
        }
    }

    /// The pod a proxy runs in, found by namespace and pod name.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Arc<Workload>> {
        self.workloads.get(&WorkloadKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// The services of one namespace (keys sort by namespace first).
    pub fn services_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Arc<Service>> {
        self.services
            .range(ServiceKey::new(namespace, "")..)
            .take_while(move |(k, _)| k.namespace == namespace)
            .map(|(_, svc)| svc)
    }
}
