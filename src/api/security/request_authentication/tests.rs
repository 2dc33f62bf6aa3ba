use kube::CustomResourceExt;
use pretty_assertions::assert_eq;

use super::*;
use crate::api::networking::testing::{assert_rejected, assert_structural};
use crate::api::security::testing::assert_fixtures_round_trip;

fn spec(yaml: &str) -> RequestAuthenticationSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

#[test]
fn istio_examples_parse_validate_and_round_trip() {
    assert_fixtures_round_trip("request_authentication", 11, |o: &RequestAuthentication| {
        validate(&o.spec)
    });
}

#[test]
fn invalid_request_authentications() {
    let rule = |r: &str| format!("{{jwtRules: [{r}]}}");
    let iss = "issuer: https://example.com";
    let cases: Vec<(String, &str, &str)> = vec![
        (rule("{}"), "spec.jwtRules[0].issuer", "issuer or jwksUri must be set"),
        (rule("{audiences: [a]}"), "spec.jwtRules[0].issuer", "issuer or jwksUri must be set"),
        (rule("{issuer: ''}"), "spec.jwtRules[0].issuer", "must not be empty"),
        (rule("{issuer: '', jwksUri: 'https://k.example.com/jwks'}"), "spec.jwtRules[0].issuer", "must not be empty"),
        (rule(&format!("{{{iss}, audiences: [a, '']}}")), "spec.jwtRules[0].audiences[1]", "audience must be non-empty"),
        (rule(&format!("{{{iss}, jwksUri: 'https://a/k', jwks: '{{}}'}}")), "spec.jwtRules[0].jwks", "only one of jwks or jwksUri"),
        (rule(&format!("{{{iss}, jwksUri: 'https://a/k', jwks_uri: 'https://a/k'}}")), "spec.jwtRules[0].jwks_uri", "only one of jwks or jwksUri"),
        (rule(&format!("{{{iss}, jwksUri: 'ftp://example.com/jwks'}}")), "spec.jwtRules[0].jwksUri", "scheme http:// or https://"),
        (rule(&format!("{{{iss}, jwksUri: 'example.com/jwks.json'}}")), "spec.jwtRules[0].jwksUri", "scheme http:// or https://"),
        (rule(&format!("{{{iss}, jwksUri: 'https://exa mple.com/'}}")), "spec.jwtRules[0].jwksUri", "not a valid URL"),
        (rule(&format!("{{{iss}, jwksUri: ''}}")), "spec.jwtRules[0].jwksUri", "must not be empty"),
        (rule(&format!("{{{iss}, jwksUri: 'https://a.example.com/{}'}}", "k".repeat(2048))), "spec.jwtRules[0].jwksUri", "at most 2048"),
        (rule(&format!("{{{iss}, jwks_uri: 'gopher://a'}}")), "spec.jwtRules[0].jwks_uri", "scheme http:// or https://"),
        (rule(&format!("{{{iss}, jwks: 'not json'}}")), "spec.jwtRules[0].jwks", "jwks parse error"),
        (rule(&format!("{{{iss}, jwks: '{{\"keys\": {{}}}}'}}")), "spec.jwtRules[0].jwks", "must be an array"),
        (rule(&format!("{{{iss}, jwks: '{{\"keys\": [{{\"e\": \"AQAB\"}}]}}'}}")), "spec.jwtRules[0].jwks", "key 0 has no \"kty\""),
        (rule(&format!("{{{iss}, jwks: '[]'}}")), "spec.jwtRules[0].jwks", "expected a JSON object"),
        (rule(&format!("{{{iss}, fromHeaders: [{{name: x-a}}, {{name: ''}}]}}")), "spec.jwtRules[0].fromHeaders[1].name", "header name must be non-empty"),
        (rule(&format!("{{{iss}, fromParams: ['']}}")), "spec.jwtRules[0].fromParams[0]", "location query must be non-empty"),
        (rule(&format!("{{{iss}, fromCookies: [a, '']}}")), "spec.jwtRules[0].fromCookies[1]", "cookie name must be non-empty"),
        (rule(&format!("{{{iss}, outputClaimToHeaders: [{{header: '', claim: sub}}]}}")), "spec.jwtRules[0].outputClaimToHeaders[0].header", "must be non-empty"),
        (rule(&format!("{{{iss}, outputClaimToHeaders: [{{header: x-sub, claim: ''}}]}}")), "spec.jwtRules[0].outputClaimToHeaders[0].claim", "claim must be non-empty"),
        (rule(&format!("{{{iss}, outputClaimToHeaders: [{{header: ':authority', claim: sub}}]}}")), "spec.jwtRules[0].outputClaimToHeaders[0].header", "pseudo-header"),
        (rule(&format!("{{{iss}, outputClaimToHeaders: [{{header: 'x user', claim: sub}}]}}")), "spec.jwtRules[0].outputClaimToHeaders[0].header", "not a valid header name"),
        (rule(&format!("{{{iss}, timeout: 0s}}")), "spec.jwtRules[0].timeout", "at least 1ms"),
        (rule(&format!("{{{iss}, timeout: 1.5ms}}")), "spec.jwtRules[0].timeout", "millisecond precision"),
        (rule(&format!("{{{iss}, timeout: soon}}")), "spec.jwtRules[0].timeout", "not a duration"),
        (format!("{{jwtRules: [{{{iss}}}, {{}}]}}"), "spec.jwtRules[1].issuer", "issuer or jwksUri"),
        ("{selector: {matchLabels: {app: a}}, targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]}".into(), "spec.targetRefs", "only one of selector, targetRef or targetRefs"),
        ("{selector: {matchLabels: {app: a}}, targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}}".into(), "spec.targetRef", "only one of"),
        ("{selector: {matchLabels: {'*': a}}}".into(), "spec.selector.matchLabels[\"*\"]", "wildcard"),
        ("{targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g, namespace: other}}".into(), "spec.targetRef.namespace", "cross namespace"),
        ("{targetRefs: [{kind: Pod, name: p}]}".into(), "spec.targetRefs[0].kind", "targetRef must be to"),
        ("{targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: r}]}".into(), "spec.targetRefs[0].kind", "but was gateway.networking.k8s.io/HTTPRoute"),
        ("{targetRefs: [{kind: 'Ser vice', name: p}]}".into(), "spec.targetRefs[0].kind", "not a valid kind"),
    ];
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}

#[test]
fn required_fields_are_schema_errors() {
    for (yaml, missing) in [
        (
            "{jwtRules: [{issuer: a, fromHeaders: [{prefix: x}]}]}",
            "name",
        ),
        (
            "{jwtRules: [{issuer: a, outputClaimToHeaders: [{header: x}]}]}",
            "claim",
        ),
        ("{targetRef: {name: g}}", "kind"),
        ("{targetRefs: [{kind: Service}]}", "name"),
    ] {
        let err = serde_yaml::from_str::<RequestAuthenticationSpec>(yaml).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("missing field `{missing}`")),
            "{yaml}: {err}"
        );
    }
}

#[test]
fn istio_accepts_what_it_accepts() {
    for yaml in [
        "{}",
        "{jwtRules: [{jwksUri: 'https://keys.example.com/jwks.json'}]}",
        "{jwtRules: [{jwks_uri: 'http://keys.example.com/jwks.json'}]}",
        "{jwtRules: [{issuer: a, jwksUri: 'HTTPS://keys.example.com:8443/jwks?x=1'}]}",
        "{jwtRules: [{issuer: a, fromHeaders: [{name: authorization, prefix: ''}], forwardOriginalToken: false}]}",
        "{jwtRules: [{issuer: a, outputClaimToHeaders: [{header: X_Claim-1, claim: a.b}]}]}",
        // An empty selector is only a warning in Istio.
        "{selector: {}, jwtRules: [{issuer: a}]}",
        "{targetRef: {kind: Service, group: core, name: web}}",
    ] {
        validate(&spec(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn jwks_url_reads_either_spelling() {
    let rule = &spec("{jwtRules: [{jwks_uri: 'https://a/k'}]}").jwt_rules[0];
    assert_eq!(rule.jwks_url(), Some("https://a/k"));
    let back = serde_json::to_value(rule).unwrap();
    assert_eq!(back, serde_json::json!({"jwks_uri": "https://a/k"}));
}

#[test]
fn crd_is_structural_and_istio_shaped() {
    let crd = RequestAuthentication::crd();
    assert_structural(&crd);
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("requestauthentications.security.istio.io")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["ra".to_string()]));
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let props = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let rule = &props["jwtRules"]["items"]["properties"];
    for field in ["jwksUri", "jwks_uri", "jwks", "fromCookies", "timeout"] {
        assert!(rule[field].is_object(), "{field}");
    }
    assert_eq!(
        rule["fromHeaders"]["items"]["required"],
        serde_json::json!(["name"])
    );
    assert_eq!(
        rule["outputClaimToHeaders"]["items"]["required"],
        serde_json::json!(["claim", "header"])
    );
    assert_eq!(
        props["targetRefs"]["items"]["required"],
        serde_json::json!(["kind", "name"])
    );
}
