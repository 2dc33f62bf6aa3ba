//! The resources Rudder reads, as typed Kubernetes objects, and one pure
//! validator per kind. The file source, the index and (later) the admission
//! webhook all call these same functions, so a document is judged the same way
//! wherever it arrives.

mod core;
mod field;
mod mesh;
pub mod networking;
pub mod security;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use networking::{DestinationRule, ServiceEntry, Sidecar, VirtualService, WorkloadEntry};
use security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use serde::de::DeserializeOwned;

pub use core::SERVICE_NAME_LABEL;
pub use field::FieldError;
pub use field::{
    check_dns_label, check_dns_subdomain, check_duration_min, check_host, check_percent,
    check_port, check_regex, parse_duration,
};
pub use mesh::parse_mesh_config;

use crate::model::ObjectRef;

/// A Kubernetes object Rudder understands.
// Objects are held behind `Arc` once parsed, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
    Pod(Pod),
    Node(Node),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    Sidecar(Sidecar),
    PeerAuthentication(PeerAuthentication),
    RequestAuthentication(RequestAuthentication),
    AuthorizationPolicy(AuthorizationPolicy),
}

/// The kinds Rudder serves, with the apiVersion each must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Service,
    EndpointSlice,
    Endpoints,
    Pod,
    Node,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
    PeerAuthentication,
    RequestAuthentication,
    AuthorizationPolicy,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Endpoints => "Endpoints",
            Kind::Pod => "Pod",
            Kind::Node => "Node",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }

    fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::EndpointSlice => &["discovery.k8s.io/v1"],
            // Istio serves every networking kind at three versions, one schema.
            Kind::VirtualService
            | Kind::DestinationRule
            | Kind::ServiceEntry
            | Kind::WorkloadEntry
            | Kind::Sidecar => &[
                "networking.istio.io/v1",
                "networking.istio.io/v1beta1",
                "networking.istio.io/v1alpha3",
            ],
            // Istio serves every security kind at two versions, one schema.
            Kind::PeerAuthentication | Kind::RequestAuthentication | Kind::AuthorizationPolicy => {
                &["security.istio.io/v1", "security.istio.io/v1beta1"]
            }
            _ => &["v1"],
        }
    }

    fn from_name(kind: &str) -> Option<Kind> {
        [
            Kind::Namespace,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::Endpoints,
            Kind::Pod,
            Kind::Node,
            Kind::VirtualService,
            Kind::DestinationRule,
            Kind::ServiceEntry,
            Kind::WorkloadEntry,
            Kind::Sidecar,
            Kind::PeerAuthentication,
            Kind::RequestAuthentication,
            Kind::AuthorizationPolicy,
        ]
        .into_iter()
        .find(|k| k.name() == kind)
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }
}

/// Identity of an object within the store: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn to_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind.name().to_string(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// What a document turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Object(ObjectKey, Box<Object>),
    /// A kind Rudder does not serve (a Deployment, say): left alone, not an error.
    Ignored(ObjectRef),
    /// An empty document (e.g. a trailing `---`).
    Empty,
}

/// A document that cannot be used. `object` is set when its identity was readable,
/// so the index can keep serving that object's previous good version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    pub object: Option<ObjectRef>,
    pub error: FieldError,
}

/// Turns one YAML document into a typed object. Does not validate semantics;
/// call [`validate`] for that.
pub fn parse(doc: serde_yaml::Value) -> Result<Parsed, DocumentError> {
    if doc.is_null() {
        return Ok(Parsed::Empty);
    }
    let no_object = |error| DocumentError {
        object: None,
        error,
    };
    if !doc.is_mapping() {
        return Err(no_object(FieldError::new(
            "",
            "document is not a YAML mapping",
        )));
    }
    let text = |field: &str| doc.get(field).and_then(|v| v.as_str()).map(str::to_string);
    let api_version = text("apiVersion")
        .ok_or_else(|| no_object(FieldError::new("apiVersion", "required string is missing")))?;
    let kind_name = text("kind")
        .ok_or_else(|| no_object(FieldError::new("kind", "required string is missing")))?;
    let meta = doc.get("metadata");
    let meta_text = |f: &str| meta.and_then(|m| m.get(f)).and_then(|v| v.as_str());
    let name = meta_text("name").unwrap_or_default().to_string();
    let Some(kind) = Kind::from_name(&kind_name) else {
        let namespace = meta_text("namespace").unwrap_or("default").to_string();
        return Ok(Parsed::Ignored(ObjectRef {
            kind: kind_name,
            namespace,
            name,
        }));
    };
    let namespace = if kind.namespaced() {
        meta_text("namespace").unwrap_or("default").to_string()
    } else {
        String::new()
    };
    let key = ObjectKey {
        kind,
        namespace,
        name,
    };
    let with_object = |error| DocumentError {
        object: Some(key.to_ref()),
        error,
    };
    if key.name.is_empty() {
        return Err(with_object(FieldError::new(
            "metadata.name",
            "required string is missing",
        )));
    }
    if !kind.api_versions().contains(&api_version.as_str()) {
        let reason = format!(
            "{kind_name} must have apiVersion {}, got {api_version:?}",
            kind.api_versions().join(" or ")
        );
        return Err(with_object(FieldError::new("apiVersion", reason)));
    }
    // Istio's security kinds do not require `spec` (an AuthorizationPolicy
    // without one allows nothing); the derived types do, so supply it.
    let mut doc = doc;
    if matches!(
        kind,
        Kind::PeerAuthentication | Kind::RequestAuthentication | Kind::AuthorizationPolicy
    ) {
        if let Some(map) = doc.as_mapping_mut().filter(|m| !m.contains_key("spec")) {
            map.insert("spec".into(), serde_yaml::Mapping::new().into());
        }
    }
    let object = match kind {
        Kind::Namespace => typed(doc).map(Object::Namespace),
        Kind::Service => typed(doc).map(Object::Service),
        Kind::EndpointSlice => typed(doc).map(Object::EndpointSlice),
        Kind::Endpoints => typed(doc).map(Object::Endpoints),
        Kind::Pod => typed(doc).map(Object::Pod),
        Kind::Node => typed(doc).map(Object::Node),
        Kind::VirtualService => typed(doc).map(Object::VirtualService),
        Kind::DestinationRule => typed(doc).map(Object::DestinationRule),
        Kind::ServiceEntry => typed(doc).map(Object::ServiceEntry),
        Kind::WorkloadEntry => typed(doc).map(Object::WorkloadEntry),
        Kind::Sidecar => typed(doc).map(Object::Sidecar),
        Kind::PeerAuthentication => typed(doc).map(Object::PeerAuthentication),
        Kind::RequestAuthentication => typed(doc).map(Object::RequestAuthentication),
        Kind::AuthorizationPolicy => typed(doc).map(Object::AuthorizationPolicy),
    }
    .map_err(with_object)?;
    Ok(Parsed::Object(key, Box::new(object)))
}

/// Deserializes with the path of the failing field, e.g. `spec.ports[0].port`.
fn typed<T: DeserializeOwned>(doc: serde_yaml::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(path, e.into_inner().to_string())
    })
}

/// The one validator for every kind: semantic checks beyond the schema.
pub fn validate(object: &Object) -> Result<(), FieldError> {
    match object {
        Object::Namespace(ns) => core::validate_namespace(ns),
        Object::Service(svc) => core::validate_service(svc),
        Object::EndpointSlice(slice) => core::validate_endpoint_slice(slice),
        Object::Endpoints(eps) => core::validate_endpoints(eps),
        Object::Pod(pod) => core::validate_pod(pod),
        Object::Node(node) => core::validate_node(node),
        Object::VirtualService(o) => networking::virtual_service::validate(&o.spec),
        Object::DestinationRule(o) => networking::destination_rule::validate(&o.spec),
        Object::ServiceEntry(o) => networking::service_entry::validate(&o.spec),
        Object::WorkloadEntry(o) => networking::workload_entry::validate(&o.spec),
        Object::Sidecar(o) => networking::sidecar::validate(&o.spec),
        Object::PeerAuthentication(o) => security::validate_peer_authentication(o),
        Object::RequestAuthentication(o) => security::validate_request_authentication(o),
        Object::AuthorizationPolicy(o) => security::authorization_policy::validate_object(o),
    }
}

/// Splits a multi-document YAML text into documents, keeping each one's index.
/// A syntax error ends the stream: later documents cannot be trusted.
pub fn split_documents(text: &str) -> Vec<Result<serde_yaml::Value, FieldError>> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        match serde::Deserialize::deserialize(de) {
            Ok(value) => docs.push(Ok(value)),
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or_default();
                docs.push(Err(FieldError::new("", format!("invalid YAML{at}: {e}"))));
                break;
            }
        }
    }
    docs
}

#[cfg(test)]
mod tests;
