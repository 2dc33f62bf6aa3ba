use kube::CustomResourceExt;
use pretty_assertions::assert_eq;

use super::*;
use crate::api::networking::testing::{assert_rejected, assert_structural};
use crate::api::security::testing::assert_fixtures_round_trip;

fn spec(yaml: &str) -> PeerAuthenticationSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

#[test]
fn istio_examples_parse_validate_and_round_trip() {
    assert_fixtures_round_trip("peer_authentication", 11, |o: &PeerAuthentication| {
        validate(&o.spec)
    });
}

#[test]
fn invalid_peer_authentications() {
    let finance = "selector: {matchLabels: {app: finance}}";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "{mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}".into(),
            "spec.portLevelMtls",
            "portLevelMtls requires a selector",
        ),
        (
            "{selector: {}, portLevelMtls: {8080: {mode: DISABLE}}}".into(),
            "spec.portLevelMtls",
            "portLevelMtls requires a selector",
        ),
        (
            "{selector: {matchLabels: {}}, portLevelMtls: {8080: {mode: DISABLE}}}".into(),
            "spec.portLevelMtls",
            "portLevelMtls requires a selector",
        ),
        (
            format!("{{{finance}, portLevelMtls: {{}}}}"),
            "spec.portLevelMtls",
            "at least one element",
        ),
        (
            format!("{{{finance}, portLevelMtls: {{0: {{mode: DISABLE}}}}}}"),
            "spec.portLevelMtls[0]",
            "between 1 and 65535, got 0",
        ),
        (
            format!("{{{finance}, portLevelMtls: {{70000: {{mode: DISABLE}}}}}}"),
            "spec.portLevelMtls[70000]",
            "got 70000",
        ),
        (
            "{selector: {matchLabels: {app: 'fin*'}}, mtls: {mode: STRICT}}".into(),
            "spec.selector.matchLabels[\"app\"]",
            "wildcard",
        ),
        (
            "{selector: {matchLabels: {'': x}}}".into(),
            "spec.selector.matchLabels[\"\"]",
            "empty label key",
        ),
        (
            format!("{{selector: {{matchLabels: {{app: {}}}}}}}", "a".repeat(64)),
            "spec.selector.matchLabels[\"app\"]",
            "longer than 63",
        ),
    ];
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}

#[test]
fn schema_errors_name_the_field() {
    // Through `api::parse`, as the file source and the index see a document.
    let doc = |spec: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: foo}}\nspec: {spec}\n"
        )
    };
    for (spec, field, reason) in [
        ("{mtls: {mode: LOOSE}}", "spec.mtls.mode", "unknown variant"),
        (
            "{selector: {matchLabels: {a: b}}, portLevelMtls: {http: {mode: STRICT}}}",
            "spec.portLevelMtls",
            "not a port number",
        ),
        (
            "{selector: {matchLabels: {a: b}}, portLevelMtls: {-1: {mode: STRICT}}}",
            "spec.portLevelMtls",
            "negative",
        ),
    ] {
        let value: serde_yaml::Value = serde_yaml::from_str(&doc(spec)).unwrap();
        let err = crate::api::parse(value).expect_err(spec).error;
        assert!(err.field.starts_with(field), "{spec}: {err}");
        assert!(err.reason.contains(reason), "{spec}: {err}");
    }
}

#[test]
fn port_keys_read_as_numbers_or_strings() {
    let quoted =
        spec("{selector: {matchLabels: {app: a}}, portLevelMtls: {'8080': {mode: DISABLE}}}");
    let plain = spec("{selector: {matchLabels: {app: a}}, portLevelMtls: {8080: {mode: DISABLE}}}");
    assert_eq!(quoted, plain);
    let json: PeerAuthenticationSpec = serde_json::from_str(
        r#"{"selector":{"matchLabels":{"app":"a"}},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}"#,
    )
    .unwrap();
    assert_eq!(json, plain);
    assert_eq!(
        serde_json::to_value(&plain).unwrap()["portLevelMtls"],
        serde_json::json!({"8080": {"mode": "DISABLE"}})
    );
    let dup = serde_yaml::from_str::<PeerAuthenticationSpec>(
        "{portLevelMtls: {'8080': {mode: DISABLE}, 8080: {mode: STRICT}}}",
    );
    assert!(dup.unwrap_err().to_string().contains("duplicate port 8080"));
}

#[test]
fn istio_accepts_what_it_accepts() {
    for yaml in [
        "{}",
        // An empty selector is only a warning in Istio.
        "{selector: {}, mtls: {mode: STRICT}}",
        "{mtls: {}}",
        "{selector: {matchLabels: {app: a}}, portLevelMtls: {1: {}, 65535: {mode: STRICT}}}",
    ] {
        validate(&spec(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn crd_is_structural_and_istio_shaped() {
    let crd = PeerAuthentication::crd();
    assert_structural(&crd);
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("peerauthentications.security.istio.io")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["pa".to_string()]));
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let props = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        props["mtls"]["properties"]["mode"]["enum"],
        serde_json::json!(["UNSET", "DISABLE", "PERMISSIVE", "STRICT"])
    );
    let ports = &props["portLevelMtls"];
    assert_eq!(ports["type"], "object");
    assert!(ports.get("patternProperties").is_none(), "{ports}");
    assert_eq!(
        ports["additionalProperties"]["properties"]["mode"]["enum"],
        props["mtls"]["properties"]["mode"]["enum"]
    );
}
