use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::{data_source, http_uri};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType,
    requirement_rule::RequirementType, JwtAuthentication, JwtRequirement,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use prost::Message;

use super::*;
use crate::model::authz::RequestAuthn;
use crate::model::routing::ConfigKey;
use crate::model::Proxy;

fn rule(issuer: &str) -> JwtRule {
    JwtRule {
        issuer: issuer.into(),
        jwks: Some(r#"{"keys":[]}"#.into()),
        ..Default::default()
    }
}

fn snapshot(policies: &[(&str, Vec<JwtRule>)]) -> (Snapshot, ProxyShape) {
    let mut snap = Snapshot::empty();
    for (name, rules) in policies {
        let key = ConfigKey {
            namespace: "demo".into(),
            name: name.to_string(),
        };
        let policy = RequestAuthn {
            key: key.clone(),
            created: 0,
            selector: Default::default(),
            targets_only: false,
            rules: rules.clone(),
        };
        snap.request_authentications.insert(key, Arc::new(policy));
    }
    let proxy = Proxy::from_node_id("sidecar~198.18.0.5~web-0.demo~demo.svc.cluster.local")
        .expect("node id");
    let shape = ProxyShape::of(&snap, &proxy);
    (snap, shape)
}

fn config(policies: &[(&str, Vec<JwtRule>)]) -> JwtAuthentication {
    let (snap, shape) = snapshot(policies);
    let filter = http_filter(&snap, &shape).expect("a jwt_authn filter");
    assert_eq!(filter.name, FILTER_NAME);
    let Some(http_filter::ConfigType::TypedConfig(any)) = filter.config_type else {
        panic!("no typed config");
    };
    JwtAuthentication::decode(any.value.as_slice()).expect("JwtAuthentication")
}

fn requires(config: &JwtAuthentication) -> &JwtRequirement {
    let [rule] = &config.rules[..] else {
        panic!("one rule expected: {:?}", config.rules);
    };
    match &rule.requirement_type {
        Some(RequirementType::Requires(r)) => r,
        other => panic!("{other:?}"),
    }
}

fn any_of(r: &JwtRequirement) -> &[JwtRequirement] {
    match &r.requires_type {
        Some(RequiresType::RequiresAny(list)) => &list.requirements,
        other => panic!("not requires_any: {other:?}"),
    }
}

fn provider_or_missing(r: &JwtRequirement) -> String {
    match any_of(r) {
        [JwtRequirement {
            requires_type: Some(RequiresType::ProviderName(name)),
        }, JwtRequirement {
            requires_type: Some(RequiresType::AllowMissing(_)),
        }] => name.clone(),
        other => panic!("not any(provider, allow_missing): {other:?}"),
    }
}

#[test]
fn no_policy_no_filter_and_no_clusters() {
    let (snap, shape) = snapshot(&[]);
    assert!(http_filter(&snap, &shape).is_none());
    assert!(jwks_clusters(&snap, &shape).is_empty());
}

#[test]
fn one_provider_is_it_or_missing() {
    let c = config(&[("a", vec![rule("https://issuer.example")])]);
    assert_eq!(provider_or_missing(requires(&c)), "origins-0");
    assert!(c.bypass_cors_preflight);
    let p = &c.providers["origins-0"];
    assert_eq!(p.issuer, "https://issuer.example");
    assert_eq!(p.payload_in_metadata, PAYLOAD_METADATA_KEY);
    assert!(p.from_headers.is_empty() && p.from_params.is_empty() && p.from_cookies.is_empty());
    assert_eq!(
        p.normalize_payload_in_metadata
            .as_ref()
            .unwrap()
            .space_delimited_claims,
        ["permission", "scope"]
    );
}

#[test]
fn several_providers_sorted_by_issuer_across_policies() {
    let c = config(&[
        ("a", vec![rule("zeta"), rule("beta")]),
        ("b", vec![rule("alpha")]),
    ]);
    let issuers: Vec<&str> = (0..3)
        .map(|i| c.providers[&format!("origins-{i}")].issuer.as_str())
        .collect();
    assert_eq!(issuers, ["alpha", "beta", "zeta"]);
    let top = any_of(requires(&c));
    assert_eq!(top.len(), 4, "{top:?}");
    for (i, r) in top[..3].iter().enumerate() {
        assert_eq!(
            r.requires_type,
            Some(RequiresType::ProviderName(format!("origins-{i}")))
        );
    }
    let Some(RequiresType::RequiresAll(all)) = &top[3].requires_type else {
        panic!("last alternative is not requires_all: {:?}", top[3]);
    };
    let inner: Vec<String> = all.requirements.iter().map(provider_or_missing).collect();
    assert_eq!(inner, ["origins-0", "origins-1", "origins-2"]);
}

#[test]
fn rule_fields_map_to_the_provider() {
    let r = JwtRule {
        issuer: "iss".into(),
        audiences: vec!["a1".into(), "a2".into()],
        jwks_uri: Some("https://Keys.Example.com/jwks.json".into()),
        from_headers: vec![("x-jwt".into(), "Token ".into())],
        from_params: vec!["tok".into()],
        from_cookies: vec!["session".into()],
        output_payload_to_header: Some("x-payload".into()),
        forward_original_token: true,
        output_claim_to_headers: vec![("x-sub".into(), "sub".into())],
        timeout: Some(Duration::from_millis(1500)),
        ..Default::default()
    };
    let c = config(&[("a", vec![r])]);
    let p = &c.providers["origins-0"];
    assert_eq!(p.audiences, ["a1", "a2"]);
    assert!(p.forward);
    assert_eq!(p.forward_payload_header, "x-payload");
    assert_eq!(p.from_headers[0].name, "x-jwt");
    assert_eq!(p.from_headers[0].value_prefix, "Token ");
    assert_eq!(p.from_params, ["tok"]);
    assert_eq!(p.from_cookies, ["session"]);
    assert_eq!(p.claim_to_headers[0].header_name, "x-sub");
    assert_eq!(p.claim_to_headers[0].claim_name, "sub");
    let Some(JwksSourceSpecifier::RemoteJwks(remote)) = &p.jwks_source_specifier else {
        panic!("{:?}", p.jwks_source_specifier);
    };
    let uri = remote.http_uri.as_ref().unwrap();
    assert_eq!(uri.uri, "https://Keys.Example.com/jwks.json");
    assert_eq!(
        uri.http_upstream_type,
        Some(http_uri::HttpUpstreamType::Cluster(
            "outbound|443||keys.example.com".into()
        ))
    );
    let timeout = uri.timeout.unwrap();
    assert_eq!((timeout.seconds, timeout.nanos), (1, 500_000_000));
    assert_eq!(remote.cache_duration.unwrap().seconds, 300);
}

#[test]
fn no_key_source_fails_closed() {
    let r = JwtRule {
        issuer: "https://accounts.example".into(),
        ..Default::default()
    };
    let c = config(&[("a", vec![r])]);
    let Some(JwksSourceSpecifier::LocalJwks(local)) =
        &c.providers["origins-0"].jwks_source_specifier
    else {
        panic!("no local jwks");
    };
    let Some(data_source::Specifier::InlineString(jwks)) = &local.specifier else {
        panic!("not inline");
    };
    let jwks: serde_json::Value = serde_json::from_str(jwks).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "rudder-no-jwks");
    // A missing token still passes: only tokens of this issuer are refused.
    assert_eq!(provider_or_missing(requires(&c)), "origins-0");
}

#[test]
fn clusters_per_distinct_server() {
    let with_uri = |uri: &str| JwtRule {
        issuer: uri.into(),
        jwks_uri: Some(uri.into()),
        ..Default::default()
    };
    let (snap, shape) = snapshot(&[(
        "a",
        vec![
            with_uri("https://keys.example.com/a.json"),
            with_uri("https://keys.example.com:443/b.json"),
            with_uri("http://198.18.0.9:8080/jwks.json"),
            with_uri("http://[fd00::9]/jwks.json"),
            rule("inline"),
        ],
    )]);
    let clusters = jwks_clusters(&snap, &shape);
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "outbound|443||keys.example.com",
            "outbound|8080||198.18.0.9",
            "outbound|80||fd00::9",
        ]
    );
    let kind = |t: DiscoveryType| Some(ClusterDiscoveryType::Type(t as i32));
    let https = &clusters[0];
    assert_eq!(https.cluster_discovery_type, kind(DiscoveryType::StrictDns));
    let socket = https.transport_socket.as_ref().expect("TLS to https");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        panic!();
    };
    let tls = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    assert_eq!(tls.sni, "keys.example.com");
    let Some(ValidationContextType::ValidationContext(v)) =
        tls.common_tls_context.unwrap().validation_context_type
    else {
        panic!("no validation context");
    };
    assert_eq!(
        v.trusted_ca.unwrap().specifier,
        Some(data_source::Specifier::Filename(SYSTEM_CA_BUNDLE.into()))
    );
    assert_eq!(v.match_typed_subject_alt_names.len(), 1);
    for plain in &clusters[1..] {
        assert_eq!(plain.cluster_discovery_type, kind(DiscoveryType::Static));
        assert!(plain.transport_socket.is_none());
    }

    // A cluster of that name already there (a mesh service) is kept.
    let mut existing = vec![Cluster {
        name: "outbound|8080||198.18.0.9".into(),
        ..Default::default()
    }];
    add_jwks_clusters(&mut existing, &snap, &shape);
    assert_eq!(existing.len(), 3);
    assert!(
        existing[0].load_assignment.is_none(),
        "the existing one stays"
    );
}

#[test]
fn output_is_deterministic() {
    let rules: Vec<JwtRule> = (0..20).map(|i| rule(&format!("issuer-{i:02}"))).collect();
    let (snap, shape) = snapshot(&[("a", rules)]);
    let bytes = |_: usize| {
        let f = http_filter(&snap, &shape).unwrap();
        match f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => any.value,
            _ => unreachable!(),
        }
    };
    let first = bytes(0);
    assert!((1..5).all(|i| bytes(i) == first));
}
