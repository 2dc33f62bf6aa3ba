//! The typed mesh model: what the index builds and the translator reads.
//! No Kubernetes and no Envoy types live here, so both ends can change alone.

pub mod authz;
pub mod by_host;
pub mod failover_priority;
pub mod locality;
pub mod mesh;
pub mod proxy;
pub mod routing;
pub mod security;
mod service;
pub mod sidecar;
mod snapshot;

pub use locality::{Locality, LocalityLb, LocalityLbSetting, LOCALITY_LABEL};
pub use mesh::{MeshConfig, OutboundPolicy};
pub use proxy::{Interception, Proxy, ProxyKind};
pub use service::{
    DnsTarget, Endpoint, Namespace, Protocol, Resolution, Service, ServiceEndpoints, ServiceKey,
    ServicePort, TargetPort, Workload, WorkloadKey,
};
pub use snapshot::{ChangeSet, ConfigStatus, ObjectRef, Origin, Rejection, Snapshot};

/// The cluster-local DNS suffix that makes a Service's fully qualified name.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
