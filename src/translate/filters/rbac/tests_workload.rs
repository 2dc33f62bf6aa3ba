//! Whole workloads: the policies a snapshot selects for a sidecar, as the
//! filters of its HTTP and TCP chains, CUSTOM included.

use serde_json::{json, Value};

use super::tests::policy;
use super::*;
use crate::model::authz::AuthzRule;
use crate::model::Proxy;
use crate::xds::json::any_to_json;

const WORKLOAD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: authz, namespace: shop}
spec:
  selector: {app: authz}
  ports: [{name: grpc, port: 9000}, {name: http, port: 8000}]
"#;

const PROVIDERS: &str = r#"
extensionProviders:
- name: grpc-authz
  envoyExtAuthzGrpc: {service: authz.shop.svc.cluster.local, port: 9000}
- name: http-authz
  envoyExtAuthzHttp: {service: shop/authz.shop.svc.cluster.local, port: 8000, headersToUpstreamOnAllow: [x-user]}
- name: missing
  envoyExtAuthzGrpc: {service: nowhere.shop.svc.cluster.local, port: 9000}
"#;

fn workload(policies: &str) -> (Snapshot, ProxyShape) {
    let yaml = format!("{WORKLOAD}---\n{policies}");
    let items = crate::source::file::parse_text(&yaml);
    let mesh = crate::api::parse_mesh_config(PROVIDERS).unwrap();
    let snap = crate::index::snapshot_of(vec![("t.yaml".into(), items)], mesh);
    assert!(
        snap.status.rejected.is_empty(),
        "{:?}",
        snap.status.rejected
    );
    let mut proxy =
        Proxy::from_node_id("sidecar~198.18.0.5~web-0.shop~shop.svc.cluster.local").unwrap();
    proxy.labels = [("app".to_string(), "web".to_string())].into();
    let shape = ProxyShape::of(&snap, &proxy);
    (snap, shape)
}

fn ap(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n---\n"
    )
}

/// (filter name, config as JSON) of each HTTP filter.
fn http_of(snap: &Snapshot, shape: &ProxyShape) -> Vec<(String, Value)> {
    let mut filters = custom_http_filters(snap, shape);
    filters.extend(http_filters(snap, shape));
    filters
        .iter()
        .map(|f| match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => {
                (f.name.clone(), any_to_json(any).unwrap())
            }
            _ => panic!("{f:?}"),
        })
        .collect()
}

fn tcp_of(snap: &Snapshot, shape: &ProxyShape) -> Vec<(String, Value)> {
    network_filters(snap, shape)
        .iter()
        .map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => {
                (f.name.clone(), any_to_json(any).unwrap())
            }
            _ => panic!("{f:?}"),
        })
        .collect()
}

fn actions(filters: &[(String, Value)]) -> Vec<String> {
    filters
        .iter()
        .map(|(name, v)| {
            // ALLOW is the enum's zero, which proto3 JSON leaves out.
            let action = match (v.get("rules"), v.get("shadow_rules")) {
                (Some(r), _) => r["action"].as_str().unwrap_or("ALLOW"),
                (None, Some(_)) => "shadow",
                (None, None) => "-",
            };
            format!("{name}:{action}")
        })
        .collect()
}

#[test]
fn no_policy_no_filter() {
    let (snap, shape) = workload("");
    assert!(custom_http_filters(&snap, &shape).is_empty());
    assert!(http_filters(&snap, &shape).is_empty());
    assert!(network_filters(&snap, &shape).is_empty());
}

#[test]
fn filters_run_custom_audit_deny_allow() {
    let policies = [
        ap("allow", "{rules: [{from: [{source: {namespaces: [shop]}}]}]}"),
        ap("deny", "{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}"),
        ap("audit", "{action: AUDIT, rules: [{}]}"),
        ap("ext", "{action: CUSTOM, provider: {name: grpc-authz}, rules: [{to: [{operation: {paths: [/check]}}]}]}"),
    ]
    .concat();
    let (snap, shape) = workload(&policies);
    let http = http_of(&snap, &shape);
    assert_eq!(
        actions(&http),
        [
            "envoy.filters.http.rbac:shadow",
            "envoy.filters.http.ext_authz:-",
            "envoy.filters.http.rbac:LOG",
            "envoy.filters.http.rbac:DENY",
            "envoy.filters.http.rbac:ALLOW"
        ]
    );
    let shadow = &http[0].1;
    assert_eq!(shadow["shadow_rules_stat_prefix"], "istio_ext_authz_");
    assert!(
        shadow["shadow_rules"]["policies"]["istio-ext-authz-ns[shop]-policy[ext]-rule[0]"]
            .is_object()
    );
    let ext = &http[1].1;
    assert_eq!(
        ext["filter_enabled_metadata"],
        json!({
            "filter": "envoy.filters.http.rbac",
            "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
            "value": {"string_match": {"prefix": "istio-ext-authz"}}
        })
    );
    assert_eq!(
        ext["grpc_service"]["envoy_grpc"],
        json!({
            "cluster_name": "outbound|9000||authz.shop.svc.cluster.local",
            "authority": "outbound_.9000_._.authz.shop.svc.cluster.local"
        })
    );
    // TCP: the DENY of an HTTP-only path denies every connection; the gRPC
    // authorizer checks connections too.
    let tcp = tcp_of(&snap, &shape);
    assert_eq!(
        actions(&tcp),
        [
            "envoy.filters.network.rbac:shadow",
            "envoy.filters.network.ext_authz:-",
            "envoy.filters.network.rbac:LOG",
            "envoy.filters.network.rbac:DENY",
            "envoy.filters.network.rbac:ALLOW"
        ]
    );
    assert_eq!(
        tcp[3].1["rules"]["policies"]["ns[shop]-policy[deny]-rule[0]"],
        json!({"permissions": [{"any": true}], "principals": [{"any": true}]})
    );
    assert_eq!(
        tcp[1].1["filter_enabled_metadata"]["filter"],
        "envoy.filters.network.rbac"
    );
}

/// The cluster ext_authz calls is one the proxy really has.
#[test]
fn ext_authz_calls_an_existing_cluster() {
    let (snap, shape) = workload(&ap(
        "ext",
        "{action: CUSTOM, provider: {name: http-authz}, rules: [{}]}",
    ));
    let http = http_of(&snap, &shape);
    let service = &http[1].1["http_service"];
    let cluster = service["server_uri"]["cluster"].as_str().unwrap();
    assert_eq!(cluster, "outbound|8000||authz.shop.svc.cluster.local");
    assert_eq!(
        service["server_uri"]["uri"],
        "http://authz.shop.svc.cluster.local"
    );
    assert_eq!(service["server_uri"]["timeout"], "600s");
    assert_eq!(
        service["authorization_response"]["allowed_upstream_headers"],
        json!({"patterns": [{"exact": "x-user", "ignore_case": true}]})
    );
    let clusters = crate::translate::clusters(&snap, &shape);
    assert!(clusters.iter().any(|c| c.name == cluster));
}

/// Unusable authorizers deny what the CUSTOM rules cover, never allow it.
#[test]
fn custom_fails_closed() {
    let deny_only = |policies: &str, tcp: bool| {
        let (snap, shape) = workload(policies);
        let filters = if tcp {
            tcp_of(&snap, &shape)
        } else {
            http_of(&snap, &shape)
        };
        assert_eq!(filters.len(), 1, "{filters:?}");
        let (name, config) = &filters[0];
        assert!(name.ends_with(".rbac"), "{name}");
        assert_eq!(config["rules"]["action"], "DENY");
        assert!(config.get("shadow_rules").is_none());
        config["rules"]["policies"].clone()
    };
    let custom = |name: &str, provider: &str| {
        ap(name, &format!("{{action: CUSTOM, provider: {{name: {provider}}}, rules: [{{to: [{{operation: {{ports: [\"8080\"]}}}}]}}]}}"))
    };
    let undefined = deny_only(&custom("ext", "undefined"), false);
    assert_eq!(
        undefined["istio-ext-authz-ns[shop]-policy[ext]-rule[0]"]["permissions"],
        json!([{"destination_port": 8080}])
    );
    deny_only(&custom("ext", "missing"), false);
    deny_only(&custom("ext", "missing"), true);
    let two = [custom("a", "grpc-authz"), custom("b", "http-authz")].concat();
    let both = deny_only(&two, false);
    assert_eq!(both.as_object().unwrap().len(), 2);
    // An HTTP authorizer serves HTTP chains; TCP chains deny instead.
    deny_only(&custom("ext", "http-authz"), true);
    let (snap, shape) = workload(&custom("ext", "http-authz"));
    assert_eq!(http_of(&snap, &shape).len(), 2);
}

/// Validation refuses dry-run CUSTOM policies (as Istio's does); were one
/// to get through, it would never call the authorizer nor deny.
#[test]
fn dry_run_custom_never_calls_the_authorizer() {
    let (snap, shape) = workload("");
    let mut dry = policy(
        AuthzAction::Custom {
            provider: "grpc-authz".into(),
        },
        vec![AuthzRule::default()],
    );
    dry.dry_run = true;
    let http = custom::http_filters(&snap, &shape, &[&dry]);
    assert_eq!(http.len(), 1);
    let Some(http_filter::ConfigType::TypedConfig(any)) = &http[0].config_type else {
        panic!()
    };
    let config = any_to_json(any).unwrap();
    assert_eq!(config["shadow_rules_stat_prefix"], "istio_dry_run_custom_");
    assert!(config["shadow_rules"]["policies"]["ns[shop]-policy[p]-rule[0]"].is_object());
    assert!(config.get("rules").is_none());
}

#[test]
fn envoy_knows_every_status_code_the_mesh_config_accepts() {
    use envoy_types::pb::envoy::r#type::v3::StatusCode;
    for code in 100..=599u16 {
        let text = format!("extensionProviders: [{{name: a, envoyExtAuthzGrpc: {{service: a, port: 1, statusOnError: \"{code}\"}}}}]");
        let accepted = crate::api::parse_mesh_config(&text).is_ok();
        assert_eq!(
            accepted,
            StatusCode::try_from(code as i32).is_ok(),
            "{code}"
        );
    }
}

/// Istio's HTTP order: CUSTOM, then RequestAuthentication, then the rest.
#[test]
fn custom_runs_before_jwt_authn_and_rbac_after() {
    let policies = [
        ap(
            "ext",
            "{action: CUSTOM, provider: {name: grpc-authz}, rules: [{}]}",
        ),
        ap(
            "allow",
            "{rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]}",
        ),
    ]
    .concat();
    let jwt = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
        metadata: {name: jwt, namespace: shop}\n\
        spec: {jwtRules: [{issuer: https://idp.example.com, jwks: '{\"keys\": []}'}]}\n";
    let (snap, shape) = workload(&format!("{policies}{jwt}"));
    let names: Vec<String> = crate::translate::filters::security::http_filters(&snap, &shape)
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.rbac",
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.jwt_authn",
            "envoy.filters.http.rbac"
        ]
    );
}
