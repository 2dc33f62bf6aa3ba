//! The validating webhook: an object is judged by exactly `api::parse` and
//! `api::validate`, the functions the file source and the index use, so the
//! API server refuses what Rudder would otherwise reject (and keep serving
//! the previous version of) later.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use serde_json::Value;

use crate::api::{self, DocumentError, Parsed};
use crate::model::ObjectRef;

/// Answers one review: allowed, or denied with the object, field and reason.
pub fn review(review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return AdmissionResponse::invalid("the review has no request").into_review(),
    };
    let response = AdmissionResponse::from(&request);
    match judge(&request) {
        Ok(()) => response.into_review(),
        Err(reason) => {
            tracing::info!(uid = %request.uid, %reason, "validation webhook: denied");
            response.deny(reason).into_review()
        }
    }
}

/// `Err` holds the message the user sees, e.g.
/// `VirtualService shop/reviews: spec.http[0].route[0].weight: ...`.
fn judge(request: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
    // A deletion cannot make the config invalid; CONNECT carries no object.
    if matches!(request.operation, Operation::Delete | Operation::Connect) {
        return Ok(());
    }
    let Some(object) = &request.object else {
        return Ok(());
    };
    let mut doc = serde_json::to_value(object).map_err(|e| format!("unreadable object: {e}"))?;
    fill_identity(&mut doc, request);
    let doc = serde_yaml::to_value(&doc).map_err(|e| format!("unreadable object: {e}"))?;
    match api::parse(doc) {
        Ok(Parsed::Object(key, object)) => {
            api::validate(&object).map_err(|error| format!("{}: {error}", key.to_ref()))
        }
        // Kinds Rudder does not serve are not its business.
        Ok(Parsed::Ignored(_) | Parsed::Empty) => Ok(()),
        Err(DocumentError { object, error }) => {
            let object = object.unwrap_or_else(|| ObjectRef {
                kind: request.kind.kind.clone(),
                namespace: request.namespace.clone().unwrap_or_default(),
                name: request.name.clone(),
            });
            Err(format!("{object}: {error}"))
        }
    }
}

/// The API server's request names what the object may leave implicit:
/// its type (from `kind`), namespace, and a name not yet generated.
fn fill_identity(doc: &mut Value, request: &AdmissionRequest<DynamicObject>) {
    let Some(map) = doc.as_object_mut() else {
        return;
    };
    let gvk = &request.kind;
    let api_version = if gvk.group.is_empty() {
        gvk.version.clone()
    } else {
        format!("{}/{}", gvk.group, gvk.version)
    };
    map.entry("apiVersion").or_insert(api_version.into());
    map.entry("kind").or_insert(gvk.kind.clone().into());
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if let Some(ns) = &request.namespace {
        meta.entry("namespace").or_insert(ns.clone().into());
    }
    let unnamed = meta
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if unnamed {
        // generateName: the validators do not look at the name, so the
        // prefix stands in for the one the API server will make up.
        let name = match meta.get("generateName").and_then(Value::as_str) {
            _ if !request.name.is_empty() => request.name.clone(),
            Some(prefix) if !prefix.is_empty() => prefix.to_string(),
            _ => return,
        };
        meta.insert("name".into(), name.into());
    }
}
