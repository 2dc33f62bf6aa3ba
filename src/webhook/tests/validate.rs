//! `/validate`: the index's own validators, answered as admission.

use serde_json::Value;

use super::{response, review, yaml};
use crate::webhook::validate;

const VS: (&str, &str, &str) = ("networking.istio.io", "v1", "VirtualService");

fn reviews(weight: i32) -> Value {
    yaml(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {weight}
    - destination: {{host: reviews, subset: v2}}
      weight: 50
"#
    ))
}

fn judge(gvk: (&str, &str, &str), operation: &str, object: Value) -> Value {
    response(validate::review(review(gvk, operation, "shop", object)))
}

#[test]
fn a_valid_object_is_allowed() {
    let answer = judge(VS, "CREATE", reviews(50));
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(answer.get("patch").is_none(), "{answer}");
}

#[test]
fn an_invalid_object_is_denied_naming_object_field_and_reason() {
    let answer = judge(VS, "UPDATE", reviews(-5));
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(
        answer["status"]["message"],
        "VirtualService shop/reviews: spec.http[0].route[0].weight: weight must not be negative, got -5"
    );
}

#[test]
fn a_schema_error_is_denied_with_its_path() {
    let mut object = reviews(50);
    object["spec"]["http"][0]["route"][1]["weight"] = "heavy".into();
    let answer = judge(VS, "CREATE", object);
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("VirtualService shop/reviews: spec.http[0].route[1].weight: "),
        "{message}"
    );
}

#[test]
fn security_kinds_use_their_validators_too() {
    let policy = yaml(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: shop}\nspec:\n  mtls: {mode: STRICTEST}\n",
    );
    let gvk = ("security.istio.io", "v1", "PeerAuthentication");
    let answer = judge(gvk, "CREATE", policy);
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("PeerAuthentication shop/strict: spec.mtls.mode"),
        "{message}"
    );
}

#[test]
fn kinds_rudder_does_not_serve_are_allowed() {
    let gateway = yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: shop}\nspec: {servers: 7}\n",
    );
    let answer = judge(("networking.istio.io", "v1", "Gateway"), "CREATE", gateway);
    assert_eq!(answer["allowed"], true, "{answer}");
}

#[test]
fn deletions_are_allowed_whatever_the_old_object() {
    let answer = judge(VS, "DELETE", reviews(-5));
    assert_eq!(answer["allowed"], true, "{answer}");
}

#[test]
fn identity_the_object_leaves_implicit_comes_from_the_request() {
    // No apiVersion, kind or namespace in the object, and a generated name.
    let mut object = reviews(50);
    let object_map = object.as_object_mut().unwrap();
    object_map.remove("apiVersion");
    object_map.remove("kind");
    object["metadata"] = yaml("{generateName: reviews-}");
    let answer = judge(VS, "CREATE", object.clone());
    assert_eq!(answer["allowed"], true, "{answer}");
    object["spec"]["http"][0]["route"][0]["weight"] = (-1).into();
    let answer = judge(VS, "CREATE", object);
    let message = answer["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("VirtualService shop/reviews-: spec.http[0]"),
        "{message}"
    );
}
