use prost::Message;
use serde_json::{json, Value};

use super::rule::{claim_path_for_test as claim_path, compile, Ctx, Unusable};
use super::*;
use crate::model::authz::{AuthzRule, Condition, OperationMatch, SourceMatch};
use crate::model::routing::ConfigKey;
use crate::xds::json::message_to_json;

pub(super) fn j<M: prost::Message + prost::Name>(m: &M) -> Value {
    message_to_json(m).unwrap()
}

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(super) fn policy(action: AuthzAction, rules: Vec<AuthzRule>) -> AuthzPolicy {
    AuthzPolicy {
        key: ConfigKey {
            namespace: "shop".into(),
            name: "p".into(),
        },
        created: 0,
        selector: Default::default(),
        targets_only: false,
        action,
        rules,
        dry_run: false,
    }
}

fn compiled(action: AuthzAction, chain: Chain, rule: AuthzRule) -> Result<Value, Unusable> {
    let widen = action != AuthzAction::Allow;
    let p = policy(action, vec![]);
    let ctx = Ctx {
        policy: &p,
        chain,
        widen,
    };
    compile(&ctx, &rule).map(|p| j(&p))
}

fn when(key: &str, values: &[&str], not_values: &[&str]) -> AuthzRule {
    AuthzRule {
        when: vec![Condition {
            key: key.into(),
            values: strings(values),
            not_values: strings(not_values),
        }],
        ..Default::default()
    }
}

/// The single principal of a rule with one `when` condition.
fn when_principal(key: &str, values: &[&str]) -> Value {
    let p = compiled(AuthzAction::Deny, Chain::Http, when(key, values, &[])).unwrap();
    p["principals"][0].clone()
}

fn when_permission(key: &str, values: &[&str]) -> Value {
    let p = compiled(AuthzAction::Deny, Chain::Http, when(key, values, &[])).unwrap();
    p["permissions"][0].clone()
}

fn authn(name: Value) -> Value {
    json!({"authenticated": {"principal_name": name}})
}

#[test]
fn principals_are_spiffe_ids_with_istios_star_forms() {
    let p = |v| j(&principal::source_principal(v));
    assert_eq!(
        p("cluster.local/ns/shop/sa/web"),
        authn(json!({"exact": "spiffe://cluster.local/ns/shop/sa/web"}))
    );
    assert_eq!(
        p("cluster.local/ns/shop/*"),
        authn(json!({"prefix": "spiffe://cluster.local/ns/shop/"}))
    );
    assert_eq!(
        p("*/sa/web"),
        authn(json!({"safe_regex": {"regex": "spiffe://.*/sa/web"}}))
    );
    assert_eq!(p("*"), authn(json!({"safe_regex": {"regex": ".+"}})));
}

#[test]
fn namespaces_and_service_accounts_match_the_identity() {
    assert_eq!(
        j(&principal::source_namespace("shop")),
        authn(json!({"safe_regex": {"regex": ".*/ns/shop/.*"}}))
    );
    assert_eq!(
        j(&principal::source_namespace("team-*")),
        authn(json!({"safe_regex": {"regex": ".*/ns/team\\-.*/.*"}}))
    );
    let sa = |v| j(&principal::service_account("shop", v));
    assert_eq!(
        sa("web"),
        authn(json!({"safe_regex": {"regex": "spiffe://.+/ns/shop/(.+/|)sa/web(/.+)?"}}))
    );
    assert_eq!(
        sa("other/api"),
        authn(json!({"safe_regex": {"regex": "spiffe://.+/ns/other/(.+/|)sa/api(/.+)?"}}))
    );
    let re = regex::Regex::new("^spiffe://.+/ns/shop/(.+/|)sa/web(/.+)?$").unwrap();
    assert!(re.is_match("spiffe://cluster.local/ns/shop/sa/web"));
    assert!(!re.is_match("spiffe://cluster.local/ns/shop/sa/web-admin"));
}

#[test]
fn ip_blocks_are_cidr_ranges() {
    let ip = |v| principal::direct_remote_ip(v).map(|p| j(&p));
    assert_eq!(
        ip("198.18.0.7").unwrap(),
        json!({"direct_remote_ip": {"address_prefix": "198.18.0.7", "prefix_len": 32}})
    );
    assert_eq!(
        ip("198.18.3.9/16").unwrap(),
        json!({"direct_remote_ip": {"address_prefix": "198.18.0.0", "prefix_len": 16}})
    );
    assert_eq!(
        j(&principal::remote_ip("2001:db8::/32").unwrap()),
        json!({"remote_ip": {"address_prefix": "2001:db8::", "prefix_len": 32}})
    );
    assert!(matches!(ip("10.0.0.0/40"), Err(Unusable::Malformed(_))));
    assert_eq!(
        when_permission("destination.ip", &["198.18.0.0/15"]),
        json!({"destination_ip": {"address_prefix": "198.18.0.0", "prefix_len": 15}})
    );
}

#[test]
fn hosts_ignore_case_and_accept_any_port_unless_one_is_given() {
    let host = |v| j(&permission::host(v).unwrap())["header"].clone();
    assert_eq!(
        host("web.shop"),
        json!({"name": ":authority", "string_match": {"safe_regex": {"regex": "(?i)web\\.shop(:[0-9]+)?"}}})
    );
    assert_eq!(
        host("*.shop.svc.cluster.local"),
        json!({"name": ":authority", "string_match": {"safe_regex": {"regex": "(?i).*\\.shop\\.svc\\.cluster\\.local(:[0-9]+)?"}}})
    );
    assert_eq!(
        host("web.*"),
        json!({"name": ":authority", "string_match": {"prefix": "web.", "ignore_case": true}})
    );
    assert_eq!(
        host("web.shop:8080"),
        json!({"name": ":authority", "string_match": {"exact": "web.shop:8080", "ignore_case": true}})
    );
    assert_eq!(
        host("*"),
        json!({"name": ":authority", "present_match": true})
    );
    let re = regex::Regex::new("^(?i)web\\.shop(:[0-9]+)?$").unwrap();
    for yes in ["web.shop", "WEB.Shop", "web.shop:80"] {
        assert!(re.is_match(yes), "{yes}");
    }
    for no in ["web.shop.evil", "xweb.shop", "web.shop:"] {
        assert!(!re.is_match(no), "{no}");
    }
}

#[test]
fn methods_paths_and_ports() {
    assert_eq!(
        j(&permission::method("GET").unwrap()),
        json!({"header": {"name": ":method", "string_match": {"exact": "GET"}}})
    );
    let path = |v| j(&permission::path(v).unwrap());
    assert_eq!(
        path("/api/v1"),
        json!({"url_path": {"path": {"exact": "/api/v1"}}})
    );
    assert_eq!(
        path("/api/*"),
        json!({"url_path": {"path": {"prefix": "/api/"}}})
    );
    assert_eq!(
        path("*/info"),
        json!({"url_path": {"path": {"suffix": "/info"}}})
    );
    assert_eq!(
        path("*"),
        json!({"url_path": {"path": {"safe_regex": {"regex": ".+"}}}})
    );
    assert_eq!(
        path("/store/{*}/items/{**}"),
        json!({"uri_template": {
            "name": "envoy.path.match.uri_template.uri_template_matcher",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
                "path_template": "/store/*/items/**"
            }
        }})
    );
    // Envoy aborts on templates it cannot parse: those fail closed here.
    for bad in [
        "api/{*}",
        "/a//{*}",
        "/{**}/x/{*}",
        "/a b/{*}",
        "/{**}/{**}",
    ] {
        assert!(
            matches!(permission::path(bad), Err(Unusable::Malformed(_))),
            "{bad}"
        );
    }
    for good in ["/{*}/", "/{**}/b.html", "/a=b/{**}", "/a/{*}/b/{*}/c"] {
        assert!(permission::path(good).is_ok(), "{good}");
    }
    assert_eq!(
        j(&permission::port("8080").unwrap()),
        json!({"destination_port": 8080})
    );
    for bad in ["http", "65536", "+80", "-1"] {
        assert!(
            matches!(permission::port(bad), Err(Unusable::Malformed(_))),
            "{bad}"
        );
    }
}

#[test]
fn request_headers_and_inline_headers() {
    assert_eq!(
        when_principal("request.headers[x-token]", &["abc"]),
        json!({"header": {"name": "x-token", "string_match": {"exact": "abc"}}})
    );
    assert_eq!(
        when_principal("request.headers[x-token]", &["*"]),
        json!({"header": {"name": "x-token", "present_match": true}})
    );
    assert_eq!(
        when_principal("request.headers[x-token]", &["ab*", "*yz"]),
        json!({"or_ids": {"ids": [
            {"header": {"name": "x-token", "string_match": {"prefix": "ab"}}},
            {"header": {"name": "x-token", "string_match": {"suffix": "yz"}}}
        ]}})
    );
    let bad = compiled(
        AuthzAction::Deny,
        Chain::Http,
        when("request.headers[x y]", &["1"], &[]),
    );
    assert!(matches!(bad, Err(Unusable::Malformed(_))), "{bad:?}");
    let inline = when_principal("request.experimental.inline.headers[x-team]", &["blue"]);
    let re = inline["header"]["string_match"]["safe_regex"]["regex"]
        .as_str()
        .unwrap();
    assert_eq!(re, "^blue$|^blue,.*|.*,blue,.*|.*,blue$");
    let re = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
    assert!(re.is_match("red,blue") && re.is_match("blue") && !re.is_match("blueish"));
}

/// `ISS/SUB` split at the last `/`, with Istio's `*` cases.
#[test]
fn request_principals_are_iss_and_sub_claims() {
    fn iss_sub(v: &str) -> (Value, Value) {
        let p = j(&principal::request_principals(&[v.to_string()]));
        let ids = &p["and_ids"]["ids"];
        let claim = |i: usize, name: &str| {
            let m = &ids[i]["sourced_metadata"]["metadata_matcher"];
            assert_eq!(m["filter"], "envoy.filters.http.jwt_authn");
            assert_eq!(m["path"], json!([{"key": "payload"}, {"key": name}]));
            m["value"]["string_match"].clone()
        };
        (claim(0, "iss"), claim(1, "sub"))
    }
    let any = json!({"safe_regex": {"regex": ".+"}});
    let cases = [
        (
            "https://idp.example.com/alice",
            json!({"exact": "https://idp.example.com"}),
            json!({"exact": "alice"}),
        ),
        ("*", any.clone(), any.clone()),
        (
            "https://idp.example.com/*",
            json!({"exact": "https://idp.example.com"}),
            any.clone(),
        ),
        (
            "https://idp.example.com/adm*",
            json!({"exact": "https://idp.example.com"}),
            json!({"prefix": "adm"}),
        ),
        ("*/alice", any.clone(), json!({"exact": "alice"})),
        (
            "*.example.com/alice",
            json!({"suffix": ".example.com"}),
            json!({"exact": "alice"}),
        ),
        ("*bob", any.clone(), json!({"suffix": "bob"})),
        (
            "idp.example.com*",
            json!({"prefix": "idp.example.com"}),
            any.clone(),
        ),
        // Still the last `/`, as in Istio: this is issuer `https:/`.
        (
            "https://idp*",
            json!({"exact": "https:/"}),
            json!({"prefix": "idp"}),
        ),
    ];
    for (value, iss, sub) in cases {
        assert_eq!(iss_sub(value), (iss, sub), "{value}");
    }
}

#[test]
fn jwt_claims_match_strings_or_list_elements() {
    let claim = |key, values: &[&str]| {
        when_principal(key, values)["sourced_metadata"]["metadata_matcher"].clone()
    };
    let groups = claim("request.auth.claims[realm][groups]", &["admin", "ops*"]);
    assert_eq!(
        groups["path"],
        json!([{"key": "payload"}, {"key": "realm"}, {"key": "groups"}])
    );
    let any = json!({"or_match": {"value_matchers": [
        {"string_match": {"exact": "admin"}},
        {"string_match": {"prefix": "ops"}}
    ]}});
    assert_eq!(
        groups["value"],
        json!({"or_match": {"value_matchers": [{"list_match": {"one_of": any}}, any]}})
    );
    let aud = claim("request.auth.audiences", &["shop"]);
    assert_eq!(aud["path"], json!([{"key": "payload"}, {"key": "aud"}]));
    let one = json!({"string_match": {"exact": "shop"}});
    assert_eq!(
        aud["value"],
        json!({"or_match": {"value_matchers": [{"list_match": {"one_of": one}}, one]}})
    );
    let azp = claim("request.auth.presenter", &["cli"]);
    assert_eq!(azp["path"], json!([{"key": "payload"}, {"key": "azp"}]));
    assert_eq!(claim_path("[a][b]"), Some(strings(&["a", "b"])));
    assert_eq!(claim_path("[a.b]"), Some(strings(&["a.b"])));
    assert_eq!(claim_path("[a[b]]"), Some(strings(&["a[b]"])));
    assert_eq!(claim_path("a"), None);
    assert_eq!(claim_path("[]"), None);
}

#[test]
fn other_conditions() {
    assert_eq!(
        when_permission("connection.sni", &["*.shop.example"]),
        json!({"requested_server_name": {"suffix": ".shop.example"}})
    );
    assert_eq!(
        when_permission("destination.port", &["8080", "9090"]),
        json!({"or_rules": {"rules": [{"destination_port": 8080}, {"destination_port": 9090}]}})
    );
    let meta = when_permission(
        "experimental.envoy.filters.network.mysql_proxy[db.table]",
        &["[update]", "x"],
    );
    assert_eq!(
        meta,
        json!({"sourced_metadata": {"metadata_matcher": {
            "filter": "envoy.filters.network.mysql_proxy",
            "path": [{"key": "db.table"}],
            "value": {"or_match": {"value_matchers": [
                {"list_match": {"one_of": {"string_match": {"exact": "update"}}}},
                {"string_match": {"exact": "x"}}
            ]}}
        }}})
    );
    assert_eq!(
        when_principal("source.serviceAccount", &["api"]),
        j(&principal::service_account("shop", "api"))
    );
    assert_eq!(
        when_principal("remote.ip", &["198.18.0.1"]),
        json!({"remote_ip": {"address_prefix": "198.18.0.1", "prefix_len": 32}})
    );
}

#[test]
fn rules_and_sources_operations_and_conditions() {
    let rule = AuthzRule {
        from: vec![
            SourceMatch {
                namespaces: strings(&["shop"]),
                ..Default::default()
            },
            SourceMatch {
                not_ip_blocks: strings(&["198.18.0.1", "198.18.0.2"]),
                ..Default::default()
            },
        ],
        to: vec![OperationMatch {
            methods: strings(&["GET"]),
            ports: strings(&["8080"]),
            ..Default::default()
        }],
        when: vec![
            Condition {
                key: "request.headers[x-env]".into(),
                values: strings(&["prod"]),
                not_values: vec![],
            },
            Condition {
                key: "destination.port".into(),
                values: vec![],
                not_values: strings(&["9090"]),
            },
        ],
    };
    let p = compiled(AuthzAction::Allow, Chain::Http, rule).unwrap();
    let env = json!({"header": {"name": "x-env", "string_match": {"exact": "prod"}}});
    assert_eq!(
        p["principals"],
        json!([
            {"and_ids": {"ids": [j(&principal::source_namespace("shop")), env]}},
            {"and_ids": {"ids": [
                {"not_id": {"or_ids": {"ids": [
                    {"direct_remote_ip": {"address_prefix": "198.18.0.1", "prefix_len": 32}},
                    {"direct_remote_ip": {"address_prefix": "198.18.0.2", "prefix_len": 32}}
                ]}}},
                env
            ]}}
        ])
    );
    assert_eq!(
        p["permissions"],
        json!([{"and_rules": {"rules": [
            {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
            {"destination_port": 8080},
            {"not_rule": {"destination_port": 9090}}
        ]}}])
    );
    let empty = compiled(AuthzAction::Allow, Chain::Http, AuthzRule::default()).unwrap();
    assert_eq!(
        empty,
        json!({"permissions": [{"any": true}], "principals": [{"any": true}]})
    );
}

/// Istio on TCP: an ALLOW rule naming HTTP attributes cannot match and is
/// refused whole; DENY and AUDIT rules keep the rest and match more.
#[test]
fn http_only_attributes_on_tcp() {
    let rule = AuthzRule {
        from: vec![SourceMatch {
            namespaces: strings(&["shop"]),
            request_principals: strings(&["*"]),
            ..Default::default()
        }],
        to: vec![OperationMatch {
            not_paths: strings(&["/public"]),
            ports: strings(&["5432"]),
            ..Default::default()
        }],
        when: vec![Condition {
            key: "request.auth.claims[role]".into(),
            values: strings(&["admin"]),
            not_values: vec![],
        }],
    };
    assert_eq!(
        compiled(AuthzAction::Allow, Chain::Tcp, rule.clone()),
        Err(Unusable::HttpOnly("request.auth.claims[role]".into()))
    );
    let widened = json!({
        "principals": [j(&principal::source_namespace("shop"))],
        "permissions": [{"destination_port": 5432}]
    });
    for action in [AuthzAction::Deny, AuthzAction::Audit] {
        assert_eq!(compiled(action, Chain::Tcp, rule.clone()).unwrap(), widened);
    }
    let only_http = AuthzRule {
        to: vec![OperationMatch {
            methods: strings(&["GET"]),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        compiled(AuthzAction::Deny, Chain::Tcp, only_http).unwrap(),
        json!({"permissions": [{"any": true}], "principals": [{"any": true}]}),
        "a DENY of HTTP-only fields denies every connection"
    );
}

/// Named as Istio names them; an ALLOW set whose rules all fell away
/// still denies everything; a rule that cannot be translated fails closed.
#[test]
fn policy_names_empty_policies_and_failing_closed() {
    let methods = AuthzRule {
        to: vec![OperationMatch {
            methods: strings(&["GET"]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let allow = policy(AuthzAction::Allow, vec![methods.clone()]);
    let tcp = build(&[&allow], Kind::Allow, Chain::Tcp).unwrap();
    let rbac = j(&tcp.network());
    assert_eq!(
        rbac,
        json!({"stat_prefix": "tcp.", "rules": {}}),
        "ALLOW with no usable rule: deny all"
    );
    let http = j(&build(&[&allow], Kind::Allow, Chain::Http).unwrap().http());
    assert!(http["rules"]["policies"]["ns[shop]-policy[p]-rule[0]"].is_object());

    let nothing = policy(AuthzAction::Allow, vec![]);
    let rules = rules_of(&[&nothing], Kind::Allow, Chain::Http, "");
    assert_eq!(rules[0].0, "ns[shop]-policy[p]-rule[0]");
    assert_eq!(
        j(&rules[0].1),
        json!({"permissions": [{"not_rule": {"any": true}}], "principals": [{"not_id": {"any": true}}]})
    );

    let unknown = when("destination.labels[app]", &["x"], &[]);
    let bad_deny = policy(AuthzAction::Deny, vec![methods.clone(), unknown.clone()]);
    let rules = rules_of(&[&bad_deny], Kind::Deny, Chain::Http, "");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1].0, "ns[shop]-policy[p]-rule[1]");
    assert_eq!(
        j(&rules[1].1),
        j(&match_all()),
        "DENY fails closed: deny all"
    );
    let bad_allow = policy(AuthzAction::Allow, vec![unknown, methods]);
    let rules = rules_of(&[&bad_allow], Kind::Allow, Chain::Http, "");
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["ns[shop]-policy[p]-rule[1]"],
        "ALLOW drops the bad rule"
    );
}

#[test]
fn dry_run_policies_are_shadow_rules_only() {
    let mut dry = policy(AuthzAction::Deny, vec![AuthzRule::default()]);
    dry.dry_run = true;
    let http = j(&build(&[&dry], Kind::Deny, Chain::Http).unwrap().http());
    assert!(http.get("rules").is_none(), "{http}");
    assert_eq!(http["shadow_rules"]["action"], "DENY");
    assert_eq!(http["shadow_rules_stat_prefix"], "istio_dry_run_deny_");
    let mut enforced = dry.clone();
    enforced.dry_run = false;
    enforced.key.name = "q".into();
    let mut dry_allow = dry.clone();
    dry_allow.action = AuthzAction::Allow;
    let both = j(&build(&[&dry, &enforced], Kind::Deny, Chain::Tcp)
        .unwrap()
        .network());
    assert!(both["rules"]["policies"]["ns[shop]-policy[q]-rule[0]"].is_object());
    assert!(both["shadow_rules"]["policies"]["ns[shop]-policy[p]-rule[0]"].is_object());
    let allow = j(&build(&[&dry_allow], Kind::Allow, Chain::Http)
        .unwrap()
        .http());
    assert_eq!(allow["shadow_rules_stat_prefix"], "istio_dry_run_allow_");
    assert!(
        allow.get("rules").is_none(),
        "a dry-run ALLOW enforces nothing"
    );
}

#[test]
fn many_policies_encode_the_same_every_time() {
    let policies: Vec<AuthzPolicy> = (0..20)
        .map(|i| {
            let mut p = policy(AuthzAction::Deny, vec![AuthzRule::default()]);
            p.key.name = format!("p{i}");
            p
        })
        .collect();
    let refs: Vec<&AuthzPolicy> = policies.iter().collect();
    let encode = || {
        build(&refs, Kind::Deny, Chain::Http)
            .unwrap()
            .http()
            .encode_to_vec()
    };
    assert_eq!(encode(), encode());
}
