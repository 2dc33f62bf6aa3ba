//! Documents Istio refuses, each refused here naming the field and the reason:
//! sources, operations and conditions of an AuthorizationPolicy's rules.

use super::*;
use crate::api::networking::testing::assert_rejected;

fn spec(yaml: &str) -> AuthorizationPolicySpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

#[test]
fn invalid_sources() {
    let from = |s: &str| format!("{{rules: [{{from: [{s}]}}]}}");
    let custom = |s: &str| {
        format!("{{action: CUSTOM, provider: {{name: opa}}, rules: [{{from: [{{source: {s}}}]}}]}}")
    };
    let at = "spec.rules[0].from[0].source";
    let cases: Vec<(String, String, &str)> = vec![
        (from("{}"), at.into(), "from.source must not be nil"),
        (
            from("{source: {}}"),
            at.into(),
            "from.source must not be empty",
        ),
        (
            from("{source: {principals: []}}"),
            at.into(),
            "from.source must not be empty",
        ),
        (
            from("{source: {principals: [a, '']}}"),
            format!("{at}.principals[1]"),
            "empty value not allowed",
        ),
        (
            from("{source: {notRequestPrincipals: ['']}}"),
            format!("{at}.notRequestPrincipals[0]"),
            "empty value",
        ),
        (
            from("{source: {ipBlocks: ['10.0.0.0/33']}}"),
            format!("{at}.ipBlocks[0]"),
            "not a valid CIDR",
        ),
        (
            from("{source: {notIpBlocks: [1.2.3.4, 'example.com']}}"),
            format!("{at}.notIpBlocks[1]"),
            "not a valid IP",
        ),
        (
            from("{source: {remoteIpBlocks: ['1.2.3.4/24/8']}}"),
            format!("{at}.remoteIpBlocks[0]"),
            "not a valid IP",
        ),
        (
            from("{source: {notRemoteIpBlocks: ['fe80::zz']}}"),
            format!("{at}.notRemoteIpBlocks[0]"),
            "not a valid IP",
        ),
        (
            from("{source: {serviceAccounts: [web], namespaces: [shop]}}"),
            format!("{at}.serviceAccounts"),
            "cannot set serviceAccounts with namespaces or principals",
        ),
        (
            from("{source: {notServiceAccounts: [web], notPrincipals: [x]}}"),
            format!("{at}.notServiceAccounts"),
            "cannot set serviceAccounts",
        ),
        (
            from("{source: {serviceAccounts: ['shop/*']}}"),
            format!("{at}.serviceAccounts[0]"),
            "wildcard not allowed",
        ),
        (
            from("{source: {serviceAccounts: ['a/b/c']}}"),
            format!("{at}.serviceAccounts[0]"),
            "expected format 'serviceAccount' or 'namespace/serviceAccount'",
        ),
        (
            from("{source: {serviceAccounts: ['/web']}}"),
            format!("{at}.serviceAccounts[0]"),
            "expected format",
        ),
        (
            from("{source: {notServiceAccounts: ['shop/']}}"),
            format!("{at}.notServiceAccounts[0]"),
            "expected format",
        ),
        (
            from(&format!(
                "{{source: {{serviceAccounts: ['{}']}}}}",
                "a".repeat(321)
            )),
            format!("{at}.serviceAccounts[0]"),
            "320 characters",
        ),
        (
            from(&format!(
                "{{source: {{serviceAccounts: [{}]}}}}",
                vec!["a"; 17].join(", ")
            )),
            format!("{at}.serviceAccounts"),
            "more than 16",
        ),
        (
            custom("{namespaces: [shop]}"),
            format!("{at}.namespaces"),
            "not supported with CUSTOM action",
        ),
        (
            custom("{principals: [x]}"),
            format!("{at}.principals"),
            "not supported with CUSTOM",
        ),
        (
            custom("{requestPrincipals: ['*']}"),
            format!("{at}.requestPrincipals"),
            "not supported with CUSTOM",
        ),
        (
            custom("{serviceAccounts: [web]}"),
            format!("{at}.serviceAccounts"),
            "not supported with CUSTOM",
        ),
        (
            from("{source: {principals: [a]}}, {source: {}}"),
            "spec.rules[0].from[1].source".into(),
            "must not be empty",
        ),
    ];
    let cases: Vec<(String, &str, &str)> = cases
        .iter()
        .map(|(y, f, r)| (y.clone(), f.as_str(), *r))
        .collect();
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}

#[test]
fn invalid_operations() {
    let to = |o: &str| format!("{{rules: [{{to: [{o}]}}]}}");
    let at = "spec.rules[0].to[0].operation";
    let cases: Vec<(String, String, &str)> = vec![
        (to("{}"), at.into(), "to.operation must not be nil"),
        (
            to("{operation: {}}"),
            at.into(),
            "to.operation must not be empty",
        ),
        (
            to("{operation: {methods: []}}"),
            at.into(),
            "to.operation must not be empty",
        ),
        (
            to("{operation: {hosts: ['']}}"),
            format!("{at}.hosts[0]"),
            "empty value not allowed",
        ),
        (
            to("{operation: {notMethods: [GET, '']}}"),
            format!("{at}.notMethods[1]"),
            "empty value",
        ),
        (
            to("{operation: {ports: ['80', '65536']}}"),
            format!("{at}.ports[1]"),
            "bad port (65536)",
        ),
        (
            to("{operation: {ports: ['http']}}"),
            format!("{at}.ports[0]"),
            "bad port",
        ),
        (
            to("{operation: {notPorts: ['-1']}}"),
            format!("{at}.notPorts[0]"),
            "bad port",
        ),
        (
            to("{operation: {notPorts: ['+80']}}"),
            format!("{at}.notPorts[0]"),
            "bad port",
        ),
        (
            to("{operation: {ports: ['']}}"),
            format!("{at}.ports[0]"),
            "empty value",
        ),
        (
            to("{operation: {paths: ['/foo/{**}/bar/{*}']}}"),
            format!("{at}.paths[0]"),
            "{**} is not the last operator",
        ),
        (
            to("{operation: {paths: ['/{**}/{**}']}}"),
            format!("{at}.paths[0]"),
            "not the last operator",
        ),
        (
            to("{operation: {paths: ['/foo/{bar}']}}"),
            format!("{at}.paths[0]"),
            "beyond a supported path template",
        ),
        (
            to("{operation: {notPaths: ['/foo/{*}x']}}"),
            format!("{at}.notPaths[0]"),
            "beyond a supported path template",
        ),
        (
            to("{operation: {paths: ['/{}']}}"),
            format!("{at}.paths[0]"),
            "beyond a supported path template",
        ),
        (
            to("{operation: {paths: ['/api/{*}/a*b']}}"),
            format!("{at}.paths[0]"),
            "segment \"a*b\" is not a valid literal",
        ),
        (
            to("{operation: {paths: ['/api/{*}/*']}}"),
            format!("{at}.paths[0]"),
            "not a valid literal",
        ),
        (
            to("{operation: {paths: ['/a//{*}']}}"),
            format!("{at}.paths[0]"),
            "segment \"\" is not a valid literal",
        ),
        (
            to("{operation: {paths: ['/ok']}}, {operation: {paths: ['/{x=*}']}}"),
            "spec.rules[0].to[1].operation.paths[0]".into(),
            "beyond a supported path template",
        ),
    ];
    let cases: Vec<(String, &str, &str)> = cases
        .iter()
        .map(|(y, f, r)| (y.clone(), f.as_str(), *r))
        .collect();
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}

#[test]
fn invalid_conditions() {
    let when = |c: &str| format!("{{rules: [{{when: [{c}]}}]}}");
    let custom =
        |c: &str| format!("{{action: CUSTOM, provider: {{name: opa}}, rules: [{{when: [{c}]}}]}}");
    let at = "spec.rules[0].when[0]";
    let cases: Vec<(String, String, &str)> = vec![
        (
            when("{key: '', values: [a]}"),
            format!("{at}.key"),
            "`key` must not be empty",
        ),
        (
            when("{key: source.ip}"),
            at.into(),
            "at least one of `values` or `notValues` must be set for key source.ip",
        ),
        (
            when("{key: source.ip, values: [], notValues: []}"),
            at.into(),
            "at least one of",
        ),
        (
            when("{key: source.nope, values: [a]}"),
            format!("{at}.key"),
            "unknown attribute: source.nope",
        ),
        (
            when("{key: request.auth.claims, values: [a]}"),
            format!("{at}.key"),
            "should have format a[b]",
        ),
        (
            when("{key: 'request.auth.claims[]', values: [a]}"),
            format!("{at}.key"),
            "should have format a[b]",
        ),
        (
            when("{key: 'request.headers[x', values: [a]}"),
            format!("{at}.key"),
            "should have format a[b]",
        ),
        (
            when("{key: experimental.envoy.filters.x, values: [a]}"),
            format!("{at}.key"),
            "should have format a[b]",
        ),
        (
            when("{key: destination.namespace, values: [a]}"),
            format!("{at}.key"),
            "replaced by the metadata.namespace",
        ),
        (
            when("{key: 'destination.labels[app]', values: [a]}"),
            format!("{at}.key"),
            "replaced by the workload selector",
        ),
        (
            when("{key: destination.name, values: [a]}"),
            format!("{at}.key"),
            "only supported in v1alpha1",
        ),
        (
            when("{key: destination.user, values: [a]}"),
            format!("{at}.key"),
            "deprecated attribute",
        ),
        (
            when("{key: source.ip, values: ['10.0.0.0/40']}"),
            format!("{at}.values[0]"),
            "not a valid CIDR",
        ),
        (
            when("{key: remote.ip, notValues: [localhost]}"),
            format!("{at}.notValues[0]"),
            "not a valid IP",
        ),
        (
            when("{key: destination.ip, values: ['1.2.3']}"),
            format!("{at}.values[0]"),
            "not a valid IP",
        ),
        (
            when("{key: destination.port, values: ['70000']}"),
            format!("{at}.values[0]"),
            "bad port (70000)",
        ),
        (
            when("{key: destination.port, notValues: ['80', x]}"),
            format!("{at}.notValues[1]"),
            "bad port",
        ),
        (
            when("{key: source.serviceAccount, values: ['ns/*']}"),
            format!("{at}.values[0]"),
            "wildcard not allowed",
        ),
        (
            when("{key: source.namespace, values: [a, '']}"),
            format!("{at}.values[1]"),
            "empty value not allowed",
        ),
        (
            when("{key: 'request.headers[x]', notValues: ['']}"),
            format!("{at}.notValues[0]"),
            "empty value",
        ),
        (
            custom("{key: source.namespace, values: [a]}"),
            format!("{at}.key"),
            "source.namespace is currently not supported with CUSTOM action",
        ),
        (
            custom("{key: source.principal, values: [a]}"),
            format!("{at}.key"),
            "not supported with CUSTOM",
        ),
        (
            custom("{key: source.serviceAccount, values: [a]}"),
            format!("{at}.key"),
            "not supported with CUSTOM",
        ),
        (
            custom("{key: 'request.auth.claims[iss]', values: [a]}"),
            format!("{at}.key"),
            "not supported with CUSTOM",
        ),
        (
            when("{key: source.ip, values: [1.2.3.4]}, {key: bogus, values: [a]}"),
            "spec.rules[0].when[1].key".into(),
            "unknown attribute",
        ),
    ];
    let cases: Vec<(String, &str, &str)> = cases
        .iter()
        .map(|(y, f, r)| (y.clone(), f.as_str(), *r))
        .collect();
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}
