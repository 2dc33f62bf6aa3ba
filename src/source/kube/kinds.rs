//! The kinds the Kubernetes source watches, each with the API resource
//! (group, version, plural) its watch is made on.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::ApiResource;

use crate::api::networking::{
    DestinationRule, ServiceEntry, Sidecar, VirtualService, WorkloadEntry,
};
use crate::api::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use crate::api::Kind;

/// One watched kind: Rudder's name for it and where the API server serves it.
#[derive(Debug, Clone)]
pub struct WatchedKind {
    pub kind: Kind,
    pub resource: ApiResource,
}

impl WatchedKind {
    fn of<K: kube::Resource<DynamicType = ()>>(kind: Kind) -> Self {
        WatchedKind {
            kind,
            resource: ApiResource::erase::<K>(&()),
        }
    }
}

/// Every kind Rudder serves from a cluster. Legacy `Endpoints` are not
/// watched: Kubernetes mirrors them into EndpointSlices, which win anyway.
/// The Istio kinds are watched at the version of our CRD types (`v1`).
pub fn all() -> Vec<WatchedKind> {
    vec![
        WatchedKind::of::<Namespace>(Kind::Namespace),
        WatchedKind::of::<Service>(Kind::Service),
        WatchedKind::of::<EndpointSlice>(Kind::EndpointSlice),
        WatchedKind::of::<Pod>(Kind::Pod),
        // For their topology labels: a Pod's locality (see `model::Locality`).
        WatchedKind::of::<Node>(Kind::Node),
        WatchedKind::of::<VirtualService>(Kind::VirtualService),
        WatchedKind::of::<DestinationRule>(Kind::DestinationRule),
        WatchedKind::of::<ServiceEntry>(Kind::ServiceEntry),
        WatchedKind::of::<WorkloadEntry>(Kind::WorkloadEntry),
        WatchedKind::of::<Sidecar>(Kind::Sidecar),
        WatchedKind::of::<PeerAuthentication>(Kind::PeerAuthentication),
        WatchedKind::of::<RequestAuthentication>(Kind::RequestAuthentication),
        WatchedKind::of::<AuthorizationPolicy>(Kind::AuthorizationPolicy),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_watched_where_the_api_server_serves_it() {
        let kinds = all();
        let find = |k: Kind| kinds.iter().find(|w| w.kind == k).unwrap().resource.clone();
        let eps = find(Kind::EndpointSlice);
        assert_eq!(
            (eps.api_version.as_str(), eps.plural.as_str()),
            ("discovery.k8s.io/v1", "endpointslices")
        );
        let vs = find(Kind::VirtualService);
        assert_eq!(
            (vs.api_version.as_str(), vs.plural.as_str()),
            ("networking.istio.io/v1", "virtualservices")
        );
        let ap = find(Kind::AuthorizationPolicy);
        assert_eq!(
            (ap.api_version.as_str(), ap.plural.as_str()),
            ("security.istio.io/v1", "authorizationpolicies")
        );
        for w in &kinds {
            assert_eq!(w.resource.kind, w.kind.name(), "{w:?}");
        }
        // Every kind the index serves, except legacy Endpoints.
        assert_eq!(kinds.len(), 13);
    }
}
