//! The webhooks: reviews judged in-process, and the HTTPS server end to end.

mod https;
mod inject;
mod validate;

use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use serde_json::{json, Value};

pub(super) const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

/// An AdmissionReview as the API server sends it.
pub(super) fn review_json(
    (group, version, kind): (&str, &str, &str),
    operation: &str,
    namespace: &str,
    object: Value,
    old_object: Value,
) -> Value {
    let resource = format!("{}s", kind.to_ascii_lowercase());
    let name = object
        .pointer("/metadata/name")
        .or(old_object.pointer("/metadata/name"))
        .cloned()
        .unwrap_or(json!(""));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": { "group": group, "version": version, "kind": kind },
            "resource": { "group": group, "version": version, "resource": resource },
            "requestKind": { "group": group, "version": version, "kind": kind },
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": { "username": "admin", "groups": ["system:masters"] },
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" },
        },
    })
}

pub(super) fn review(
    gvk: (&str, &str, &str),
    operation: &str,
    namespace: &str,
    object: Value,
) -> AdmissionReview<DynamicObject> {
    // A deletion carries only the old object.
    let (object, old) = match operation {
        "DELETE" => (Value::Null, object),
        _ => (object, Value::Null),
    };
    serde_json::from_value(review_json(gvk, operation, namespace, object, old))
        .expect("a valid review")
}

/// The response part of a review, in wire form.
pub(super) fn response(review: AdmissionReview<DynamicObject>) -> Value {
    let wire = super::wire(review);
    assert_eq!(wire["apiVersion"], "admission.k8s.io/v1", "{wire}");
    assert_eq!(wire["kind"], "AdmissionReview", "{wire}");
    let response = wire["response"].clone();
    assert_eq!(response["uid"], UID, "{wire}");
    response
}

pub(super) fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("test YAML")
}
