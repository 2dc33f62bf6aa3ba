//! Invalid VirtualServices: each case names the exact field path and part
//! of the reason `validate` must give.

use super::*;

/// A valid HTTP rule that cases extend with one bad field.
const ROUTE: &str = "route: [{destination: {host: reviews.prod.svc.cluster.local}}]";

/// (case, spec YAML, expected field, expected reason substring)
fn cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let host = "hosts: [reviews.prod.svc.cluster.local]";
    // One HTTP rule: the valid route plus `extra` fields.
    let http = |extra: &str| format!("{host}\nhttp:\n- {{{ROUTE}, {extra}}}");
    // One HTTP rule with `fields` only (no route).
    let bare = |fields: &str| format!("{host}\nhttp:\n- {{{fields}}}");
    let with_match = |m: &str| http(&format!("match: [{m}]"));
    vec![
        // Top level: hosts, gateways, delegate VirtualServices, exportTo.
        ("no routes", host.to_string(), "spec", "at least one of http, tls or tcp"),
        ("bad host", format!("hosts: [bad_host!]\nhttp: [{{{ROUTE}}}]"), "spec.hosts[0]", "not a valid host"),
        ("* for mesh", format!("hosts: ['*']\nhttp: [{{{ROUTE}}}]"), "spec.hosts[0]", "only allowed for VirtualServices bound to gateways"),
        ("overlapping hosts", format!("hosts: ['*.foo.com', bar.foo.com]\nhttp: [{{{ROUTE}}}]"), "spec.hosts[1]", "duplicate host: \"bar.foo.com\" overlaps hosts[0]"),
        ("delegate with gateways", format!("gateways: [gw]\nhttp: [{{{ROUTE}}}]"), "spec.gateways", "delegate VirtualService"),
        ("delegate with tcp", format!("http: [{{{ROUTE}}}]\ntcp: [{{{ROUTE}}}]"), "spec.tcp", "only http routes"),
        ("bad gateway", format!("{host}\ngateways: [ns/Bad_Name]\nhttp: [{{{ROUTE}}}]"), "spec.gateways[0]", "name \"Bad_Name\" is not a DNS label"),
        ("exportTo ~", format!("{host}\nexportTo: ['~']\nhttp: [{{{ROUTE}}}]"), "spec.exportTo[0]", "only allowed for ServiceEntry"),
        ("exportTo duplicate", format!("{host}\nexportTo: [a, a]\nhttp: [{{{ROUTE}}}]"), "spec.exportTo[1]", "duplicate exportTo entry \"a\""),
        ("exportTo * and .", format!("{host}\nexportTo: ['*', '.']\nhttp: [{{{ROUTE}}}]"), "spec.exportTo", "cannot be combined"),
        ("exportTo bad name", format!("{host}\nexportTo: [Team_A]\nhttp: [{{{ROUTE}}}]"), "spec.exportTo[0]", "namespace name"),
        // Actions and their combinations.
        ("no action", bare("match: [{uri: {prefix: /}}]"), "spec.http[0]", "needs one of route, redirect, directResponse or delegate"),
        ("route and redirect", http("redirect: {uri: /x}"), "spec.http[0].route", "redirect cannot also set route"),
        ("directResponse and fault", bare("directResponse: {status: 404}, fault: {abort: {httpStatus: 500}}"), "spec.http[0].fault", "directResponse cannot also set fault"),
        ("delegate and route", http("delegate: {name: other}"), "spec.http[0].route", "delegate must not also set route"),
        ("nested delegate", "http: [{delegate: {name: x}}]".to_string(), "spec.http[0].delegate", "cannot delegate again"),
        ("mirror and mirrors", http("mirror: {host: a}, mirrors: [{destination: {host: b}}]"), "spec.http[0].mirrors", "mirror and mirrors cannot both be set"),
        // Destinations and weights.
        ("negative weight", bare("route: [{destination: {host: a}, weight: 50}, {destination: {host: b}, weight: -1}]"), "spec.http[0].route[1].weight", "must not be negative, got -1"),
        ("zero weights", bare("route: [{destination: {host: a}, weight: 0}, {destination: {host: b}}]"), "spec.http[0].route", "all have weight 0"),
        ("destination *", bare("route: [{destination: {host: '*'}}]"), "spec.http[0].route[0].destination.host", "not a valid destination host"),
        ("bad subset", bare("route: [{destination: {host: a, subset: V1_x}}]"), "spec.http[0].route[0].destination.subset", "subset name \"V1_x\" must be a DNS label"),
        ("port out of range", bare("route: [{destination: {host: a, port: {number: 70000}}}]"), "spec.http[0].route[0].destination.port.number", "between 1 and 65535, got 70000"),
        ("bad mirror host", http("mirror: {host: 'a..b'}"), "spec.http[0].mirror.host", "not a valid host"),
        // Durations.
        ("timeout too short", http("timeout: 0.5ms"), "spec.http[0].timeout", "must be at least 1ms"),
        ("timeout not a duration", http("timeout: ten"), "spec.http[0].timeout", "is not a duration"),
        ("timeout sub-ms", http("timeout: 1001us"), "spec.http[0].timeout", "millisecond precision"),
        // Retries.
        ("negative attempts", http("retries: {attempts: -1}"), "spec.http[0].retries.attempts", "cannot be negative"),
        ("policy without attempts", http("retries: {retryOn: 5xx}"), "spec.http[0].retries.attempts", "attempts is 0"),
        ("unknown retryOn", http("retries: {attempts: 2, retryOn: '5xx,bogus'}"), "spec.http[0].retries.retryOn", "\"bogus\" is not a valid retryOn policy"),
        ("retryOn with space", http("retries: {attempts: 2, retryOn: '5xx, reset'}"), "spec.http[0].retries.retryOn", "\" reset\" is not a valid retryOn"),
        ("unknown status in retryOn", http("retries: {attempts: 2, retryOn: '599'}"), "spec.http[0].retries.retryOn", "\"599\""),
        ("perTryTimeout 0", http("retries: {attempts: 2, perTryTimeout: 0s}"), "spec.http[0].retries.perTryTimeout", "at least 1ms"),
        ("backoff 1us", http("retries: {attempts: 2, backoff: 1us}"), "spec.http[0].retries.backoff", "at least 1ms"),
        // Fault injection.
        ("empty fault", http("fault: {}"), "spec.http[0].fault", "needs an abort, a delay or both"),
        ("abort status", http("fault: {abort: {httpStatus: 700}}"), "spec.http[0].fault.abort.httpStatus", "700 is not in range 200-599"),
        ("abort percentage", http("fault: {abort: {httpStatus: 503, percentage: {value: 150}}}"), "spec.http[0].fault.abort.percentage.value", "between 0 and 100, got 150"),
        ("tiny delay percentage", http("fault: {delay: {fixedDelay: 1s, percentage: {value: 0.00001}}}"), "spec.http[0].fault.delay.percentage.value", "neither 0 nor at least 0.0001"),
        ("delay percent", http("fault: {delay: {fixedDelay: 1s, percent: 101}}"), "spec.http[0].fault.delay.percent", "between 0 and 100"),
        ("grpc status", http("fault: {abort: {grpcStatus: NOPE}}"), "spec.http[0].fault.abort.grpcStatus", "\"NOPE\" is not supported"),
        ("http2Error", http("fault: {abort: {http2Error: PROTOCOL_ERROR}}"), "spec.http[0].fault.abort.http2Error", "not supported yet"),
        ("two abort kinds", http("fault: {abort: {httpStatus: 503, grpcStatus: INTERNAL}}"), "spec.http[0].fault.abort", "only one of httpStatus, grpcStatus and http2Error"),
        ("exponentialDelay", http("fault: {delay: {exponentialDelay: 1s}}"), "spec.http[0].fault.delay.exponentialDelay", "not supported yet"),
        ("fixedDelay sub-ms", http("fault: {delay: {fixedDelay: 1.5ms}}"), "spec.http[0].fault.delay.fixedDelay", "millisecond precision"),
        // Matches.
        ("bad uri regex", with_match("{uri: {regex: '('}}"), "spec.http[0].match[0].uri.regex", "invalid RE2"),
        ("lookahead header regex", with_match("{headers: {x-user: {regex: '(?=x)'}}}"), "spec.http[0].match[0].headers[x-user].regex", "invalid RE2"),
        ("empty regex", with_match("{method: {regex: ''}}"), "spec.http[0].match[0].method.regex", "must not be empty"),
        ("empty header prefix", with_match("{headers: {x-user: {prefix: ''}}}"), "spec.http[0].match[0].headers[x-user]", "prefix string match must not be empty"),
        ("bad header name", with_match("{headers: {'bad header': {exact: x}}}"), "spec.http[0].match[0].headers[bad header]", "\"bad header\" is not a valid header name"),
        ("jwt claim on mesh", with_match("{headers: {'@request.auth.claims.group': {exact: admin}}}"), "spec.http[0].match[0].headers[@request.auth.claims.group]", "only supported for gateways"),
        ("long query regex", with_match(&format!("{{queryParams: {{q: {{regex: '{}'}}}}}}", "a".repeat(1025))), "spec.http[0].match[0].queryParams[q].regex", "too large"),
        ("bad label key", with_match("{sourceLabels: {-bad: x}}"), "spec.http[0].match[0].sourceLabels[-bad]", "invalid label key"),
        ("bad label value", with_match("{sourceLabels: {app: 'a b'}}"), "spec.http[0].match[0].sourceLabels[app]", "invalid label value"),
        ("bad sourceNamespace", with_match("{sourceNamespace: Bad_NS}"), "spec.http[0].match[0].sourceNamespace", "DNS label"),
        ("bad match port", with_match("{port: 70000}"), "spec.http[0].match[0].port", "between 1 and 65535"),
        ("bad match gateway", with_match("{gateways: ['a/']}"), "spec.http[0].match[0].gateways[0]", "namespace and name must both be given"),
        // Redirect, direct response, rewrite.
        ("empty redirect", bare("redirect: {}"), "spec.http[0].redirect", "must set at least one of uri, authority, scheme, port or derivePort"),
        ("redirect code", bare("redirect: {uri: /x, redirectCode: 200}"), "spec.http[0].redirect.redirectCode", "200 is not a valid redirect code"),
        ("redirect scheme", bare("redirect: {scheme: ftp}"), "spec.http[0].redirect.scheme", "must be \"http\" or \"https\""),
        ("port and derivePort", bare("redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}"), "spec.http[0].redirect.derivePort", "only one of port and derivePort"),
        ("redirect port", bare("redirect: {port: 65536}"), "spec.http[0].redirect.port", "between 1 and 65535"),
        ("direct status", bare("directResponse: {status: 99}"), "spec.http[0].directResponse.status", "99 is not in range 200-599"),
        ("direct bytes", bare("directResponse: {status: 200, body: {bytes: 'not base64!'}}"), "spec.http[0].directResponse.body.bytes", "base64"),
        ("direct string and bytes", bare("directResponse: {status: 200, body: {string: a, bytes: YQ==}}"), "spec.http[0].directResponse.body", "only one of string and bytes"),
        ("rewrite uri and regex", http("rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}"), "spec.http[0].rewrite.uriRegexRewrite", "only one of uri and uriRegexRewrite"),
        ("empty rewrite", http("rewrite: {}"), "spec.http[0].rewrite", "at least one of uri, uriRegexRewrite or authority"),
        ("regex rewrite half", http("rewrite: {uriRegexRewrite: {match: '^/a'}}"), "spec.http[0].rewrite.uriRegexRewrite", "needs both match and rewrite"),
        ("regex rewrite bad", http("rewrite: {uriRegexRewrite: {match: '[', rewrite: /}}"), "spec.http[0].rewrite.uriRegexRewrite.match", "invalid RE2"),
        ("rewrite from redirect", bare("redirect: {uri: /x}, rewrite: {uri: /y}"), "spec.http[0].rewrite", "redirect cannot also set rewrite"),
        // Header manipulation.
        ("authority twice", http("rewrite: {authority: a.com}, headers: {request: {set: {host: b.com}}}"), "spec.http[0].headers.request.set[host]", "authority can be set only once"),
        ("pseudo header", http("headers: {response: {set: {':status': '200'}}}"), "spec.http[0].headers.response.set[:status]", "pseudo-headers"),
        ("remove Host", bare(&format!("{ROUTE}, headers: {{request: {{remove: [Host]}}}}")), "spec.http[0].headers.request.remove[0]", "Host header"),
        ("lone percent", bare("route: [{destination: {host: a}, headers: {request: {add: {x-a: '100%'}}}}]"), "spec.http[0].route[0].headers.request.add[x-a]", "'%' must be doubled"),
        ("control character", http("headers: {request: {set: {x-a: \"a\\nb\"}}}"), "spec.http[0].headers.request.set[x-a]", "control character"),
        // CORS.
        ("cors method", http("corsPolicy: {allowMethods: [FETCH]}"), "spec.http[0].corsPolicy.allowMethods[0]", "\"FETCH\" is not a supported HTTP method"),
        ("cors maxAge", http("corsPolicy: {maxAge: 1500ms}"), "spec.http[0].corsPolicy.maxAge", "whole seconds"),
        ("cors empty origin", http("corsPolicy: {allowOrigins: [{}]}"), "spec.http[0].corsPolicy.allowOrigins[0]", "non-empty"),
        ("cors header", http("corsPolicy: {exposeHeaders: ['x y']}"), "spec.http[0].corsPolicy.exposeHeaders[0]", "not a valid header name"),
        // Mirroring.
        ("mirrorPercentage", http("mirror: {host: a}, mirrorPercentage: {value: 101}"), "spec.http[0].mirrorPercentage.value", "between 0 and 100, got 101"),
        ("mirror_percent", http("mirror: {host: a}, mirror_percent: 150"), "spec.http[0].mirrorPercent", "at most 100, got 150"),
        ("mirrors percentage", http("mirrors: [{destination: {host: a}, percentage: {value: -1}}]"), "spec.http[0].mirrors[0].percentage.value", "between 0 and 100"),
        // TCP and TLS.
        ("tcp without route", format!("{host}\ntcp: [{{match: [{{port: 5432}}]}}]"), "spec.tcp[0].route", "TCP route needs at least one destination"),
        ("tcp subnet", format!("{host}\ntcp: [{{match: [{{destinationSubnets: [10.0.0.0/33]}}], {ROUTE}}}]"), "spec.tcp[0].match[0].destinationSubnets[0]", "not an IP address or CIDR"),
        ("tcp zero weights", format!("{host}\ntcp: [{{route: [{{destination: {{host: a}}, weight: 0}}, {{destination: {{host: b}}, weight: 0}}]}}]"), "spec.tcp[0].route", "all have weight 0"),
        ("tls without match", format!("{host}\ntls: [{{match: [], {ROUTE}}}]"), "spec.tls[0].match", "at least one match"),
        ("tls without sni", format!("{host}\ntls: [{{match: [{{sniHosts: []}}], {ROUTE}}}]"), "spec.tls[0].match[0].sniHosts", "at least one SNI host"),
        ("sni outside hosts", format!("{host}\ntls: [{{match: [{{sniHosts: [ratings.prod.svc.cluster.local]}}], {ROUTE}}}]"), "spec.tls[0].match[0].sniHosts[0]", "not within any of the VirtualService's hosts"),
        ("tls without route", "hosts: ['*.example.com']\ntls: [{match: [{sniHosts: [a.example.com]}]}]".to_string(), "spec.tls[0].route", "TLS route needs at least one destination"),
    ]
}

#[test]
fn invalid_specs_name_the_field_and_the_rule() {
    let cases = cases();
    assert!(cases.len() >= 20);
    for (case, yaml, field, reason) in cases {
        let spec: VirtualServiceSpec = serde_yaml::from_str(&yaml)
            .unwrap_or_else(|e| panic!("case {case:?} does not parse: {e}\n{yaml}"));
        let err = validate(&spec).expect_err(&format!("case {case:?} should be invalid:\n{yaml}"));
        assert_eq!(
            err.field, field,
            "case {case:?}: wrong field (reason: {})",
            err.reason
        );
        assert!(
            err.reason.contains(reason),
            "case {case:?}: reason {:?} lacks {reason:?}",
            err.reason
        );
    }
}

#[test]
fn edge_cases_istio_accepts() {
    let host = "hosts: [reviews.prod.svc.cluster.local]";
    for (case, yaml) in [
        ("weights need not sum to 100", format!("{host}\nhttp: [{{route: [{{destination: {{host: a}}, weight: 1}}, {{destination: {{host: b}}, weight: 3}}]}}]")),
        ("one destination may omit its weight", format!("{host}\nhttp: [{{{ROUTE}}}]")),
        ("empty uri prefix", format!("{host}\nhttp: [{{match: [{{uri: {{prefix: ''}}}}], {ROUTE}}}]")),
        ("header presence", format!("{host}\nhttp: [{{match: [{{headers: {{x-a: {{}}}}}}], {ROUTE}}}]")),
        ("withoutHeaders *", format!("{host}\nhttp: [{{match: [{{withoutHeaders: {{x-a: {{regex: '*'}}}}}}], {ROUTE}}}]")),
        ("uppercase header name", format!("{host}\nhttp: [{{match: [{{headers: {{X-User: {{exact: a}}}}}}], {ROUTE}}}]")),
        ("jwt claim on a gateway", format!("{host}\ngateways: [istio-system/gw]\nhttp: [{{match: [{{headers: {{'@request.auth.claims.group': {{exact: a}}}}}}], {ROUTE}}}]")),
        ("* host on a gateway", format!("hosts: ['*']\ngateways: [gw]\nhttp: [{{{ROUTE}}}]")),
        ("IP host", format!("hosts: ['198.18.0.1', '2001:db8::1']\ngateways: [gw]\nhttp: [{{{ROUTE}}}]")),
        ("delegate VirtualService", format!("http: [{{{ROUTE}}}]")),
        ("abort without a code (Istio only warns)", format!("{host}\nhttp: [{{{ROUTE}, fault: {{abort: {{percentage: {{value: 1}}}}}}}}]")),
        ("request may set the authority", format!("{host}\nhttp: [{{{ROUTE}, headers: {{request: {{set: {{':authority': a.com}}}}}}}}]")),
        ("retryOn status code", format!("{host}\nhttp: [{{{ROUTE}, retries: {{attempts: 1, retryOn: '503,retriable-4xx,reset-before-request'}}}}]")),
        ("attempts 0 alone disables retries", format!("{host}\nhttp: [{{{ROUTE}, retries: {{attempts: 0}}}}]")),
        ("sni within a wildcard host", format!("hosts: ['*.example.com']\ntls: [{{match: [{{sniHosts: ['*.a.example.com']}}], {ROUTE}}}]")),
    ] {
        let spec: VirtualServiceSpec = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{case}: {e}\n{yaml}"));
        validate(&spec).unwrap_or_else(|e| panic!("{case}: {e}\n{yaml}"));
    }
}
