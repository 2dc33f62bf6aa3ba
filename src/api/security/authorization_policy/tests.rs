//! Istio's documented examples parse, validate and round-trip; policy-level
//! rules (actions, providers, targets); the generated CRD's shape.

use kube::CustomResourceExt;
use pretty_assertions::assert_eq;

use super::*;
use crate::api::networking::testing::{assert_rejected, assert_structural};
use crate::api::security::testing::assert_fixtures_round_trip;

fn spec(yaml: &str) -> AuthorizationPolicySpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

#[test]
fn istio_examples_parse_validate_and_round_trip() {
    assert_fixtures_round_trip("authorization_policy", 23, validate_object);
}

#[test]
fn invalid_actions_and_targets() {
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "{action: DENY}",
            "spec.rules",
            "DENY action without `rules` is meaningless",
        ),
        (
            "{action: DENY, rules: []}",
            "spec.rules",
            "DENY action without `rules`",
        ),
        (
            "{action: CUSTOM, provider: {name: opa}}",
            "spec.rules",
            "CUSTOM action without `rules`",
        ),
        (
            "{action: CUSTOM, rules: [{}]}",
            "spec.provider.name",
            "must not be empty",
        ),
        (
            "{action: CUSTOM, provider: {}, rules: [{}]}",
            "spec.provider.name",
            "must not be empty",
        ),
        (
            "{action: CUSTOM, provider: {name: ''}, rules: [{}]}",
            "spec.provider.name",
            "must not be empty",
        ),
        (
            "{provider: {name: opa}, rules: [{}]}",
            "spec.provider",
            "found ALLOW",
        ),
        (
            "{action: DENY, provider: {name: opa}, rules: [{}]}",
            "spec.provider",
            "only be set with the CUSTOM action, found DENY",
        ),
        (
            "{action: AUDIT, provider: {name: opa}, rules: [{}]}",
            "spec.provider",
            "found AUDIT",
        ),
        (
            "{selector: {matchLabels: {app: a}}, targetRefs: [{kind: Service, name: web}]}",
            "spec.targetRefs",
            "only one of selector, targetRef or targetRefs",
        ),
        (
            "{selector: {}, targetRef: {kind: Service, name: web}}",
            "spec.targetRef",
            "only one of",
        ),
        (
            "{targetRef: {kind: Service, name: web}, targetRefs: [{kind: Service, name: web}]}",
            "spec.targetRefs",
            "only one of",
        ),
        (
            "{selector: {matchLabels: {app: 'a*'}}}",
            "spec.selector.matchLabels[\"app\"]",
            "wildcard",
        ),
        (
            "{targetRefs: [{kind: Service, name: web, namespace: other}]}",
            "spec.targetRefs[0].namespace",
            "cross namespace",
        ),
        (
            "{targetRefs: [{kind: Deployment, group: apps, name: web}]}",
            "spec.targetRefs[0].kind",
            "but was apps/Deployment",
        ),
        (
            "{targetRef: {kind: Service, name: ''}}",
            "spec.targetRef.name",
            "must be set",
        ),
    ];
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}

#[test]
fn istio_accepts_what_it_accepts() {
    for yaml in [
        "{}",
        "{rules: [{}]}",
        "{action: AUDIT}",
        // Empty lists read as absent, as they do in istiod.
        "{rules: [{from: [], to: [], when: []}]}",
        // `*` anywhere outside a path template is an exact, prefix or suffix match.
        "{rules: [{to: [{operation: {paths: ['/a*b', '*', '*/x/*']}}]}]}",
        // A literal may follow {**}; only another operator may not.
        "{rules: [{to: [{operation: {paths: ['/{**}/edit', '{*}', '/a/{*}/b.json']}}]}]}",
        "{rules: [{to: [{operation: {ports: ['0', '65535']}}]}]}",
        "{rules: [{from: [{source: {ipBlocks: ['10.1.2.3/8', '::1', '::/0']}}]}]}",
        "{rules: [{when: [{key: 'request.headers[:authority]', values: ['*']}]}]}",
        "{rules: [{when: [{key: connection.sni, notValues: ['*.internal']}]}]}",
        // CUSTOM may match on addresses, operations and request headers.
        "{action: CUSTOM, provider: {name: opa}, rules: [{from: [{source: {remoteIpBlocks: [1.2.3.4]}}], when: [{key: remote.ip, values: [1.2.3.4]}]}]}",
        "{action: DENY, rules: [{}]}",
        // An empty selector is only a warning in Istio.
        "{selector: {}, rules: [{}]}",
    ] {
        validate(&spec(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn required_fields_are_schema_errors() {
    let err = serde_yaml::from_str::<AuthorizationPolicySpec>("{rules: [{when: [{values: [a]}]}]}")
        .unwrap_err();
    assert!(err.to_string().contains("missing field `key`"), "{err}");
    let err = serde_yaml::from_str::<AuthorizationPolicySpec>("{action: PERMIT}").unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `PERMIT`"),
        "{err}"
    );
}

#[test]
fn crd_is_structural_and_istio_shaped() {
    let crd = AuthorizationPolicy::crd();
    assert_structural(&crd);
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("authorizationpolicies.security.istio.io")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["ap".to_string()]));
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let props = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        props["action"]["enum"],
        serde_json::json!(["ALLOW", "DENY", "AUDIT", "CUSTOM"])
    );
    let rule = &props["rules"]["items"]["properties"];
    let source = &rule["from"]["items"]["properties"]["source"]["properties"];
    for field in [
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
        "serviceAccounts",
        "notServiceAccounts",
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
    ] {
        assert_eq!(source[field]["type"], "array", "{field}");
    }
    let operation = &rule["to"]["items"]["properties"]["operation"]["properties"];
    assert_eq!(operation.as_object().unwrap().len(), 8);
    assert_eq!(
        rule["when"]["items"]["required"],
        serde_json::json!(["key"])
    );
    let columns: Vec<_> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Action", "Age"]);
}
