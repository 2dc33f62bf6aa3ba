use kube::CustomResourceExt;
use pretty_assertions::assert_eq;

use super::*;
use crate::api::networking::testing::{
    assert_fixtures_round_trip, assert_rejected, assert_structural,
};

fn spec(yaml: &str) -> DestinationRuleSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

#[test]
fn istio_examples_parse_validate_and_round_trip() {
    assert_fixtures_round_trip("destination_rule", 15, |o: &DestinationRule| {
        validate(&o.spec)
    });
}

#[test]
fn invalid_destination_rules() {
    let tp = |policy: &str| format!("{{host: reviews, trafficPolicy: {policy}}}");
    let lb = |lb: &str| tp(&format!("{{loadBalancer: {lb}}}"));
    let cases: Vec<(String, &str, &str)> = vec![
        ("{host: ''}".into(), "spec.host", "required"),
        ("{host: 'foo..bar'}".into(), "spec.host", "is not a DNS label"),
        ("{host: 'foo.*.bar'}".into(), "spec.host", "is not a DNS label"),
        ("{host: r, subsets: [{name: ''}]}".into(), "spec.subsets[0].name", "subset name is required"),
        ("{host: r, subsets: [{name: 'v_1'}]}".into(), "spec.subsets[0].name", "\"v_1\" is invalid"),
        ("{host: r, subsets: [{name: v1}, {name: v1}]}".into(), "spec.subsets[1].name", "duplicate subset name \"v1\""),
        ("{host: r, subsets: [{name: v1, labels: {'bad key': x}}]}".into(), "spec.subsets[0].labels[\"bad key\"]", "invalid label key"),
        ("{host: r, subsets: [{name: v1, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 1us}}}}]}".into(), "spec.subsets[0].trafficPolicy.connectionPool.tcp.connectTimeout", "must be at least 1ms"),
        (tp("{}"), "spec.trafficPolicy", "at least one field"),
        (lb("{simple: RANDOM, consistentHash: {useSourceIp: true}}"), "spec.trafficPolicy.loadBalancer", "only one of simple or consistentHash"),
        (lb("{consistentHash: {useSourceIp: true, httpHeaderName: x-user}}"), "spec.trafficPolicy.loadBalancer.consistentHash", "only one hash key"),
        (lb("{consistentHash: {httpHeaderName: ''}}"), "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName", "must not be empty"),
        (lb("{consistentHash: {httpCookie: {name: ''}}}"), "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", "name required"),
        (lb("{consistentHash: {httpCookie: {name: u, ttl: soon}}}"), "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl", "not a duration"),
        (lb("{consistentHash: {useSourceIp: true, ringHash: {}, maglev: {tableSize: 7}}}"), "spec.trafficPolicy.loadBalancer.consistentHash", "only one hash algorithm"),
        (lb("{consistentHash: {useSourceIp: true, minimumRingSize: 1024, ringHash: {}}}"), "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "deprecated"),
        (lb("{consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 9000000}}}"), "spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize", "at most 8388608, got 9000000"),
        (lb("{consistentHash: {useSourceIp: true, maglev: {}}}"), "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "must be set"),
        (lb("{consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}"), "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "prime number for maglev, got 1000"),
        (lb("{consistentHash: {useSourceIp: true, maglev: {tableSize: 5000011}}}"), "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "less than 5000011"),
        (lb("{warmup: {duration: 10s, aggression: 0.5}}"), "spec.trafficPolicy.loadBalancer.warmup.aggression", "greater than or equal to 1, got 0.5"),
        (lb("{warmup: {duration: 10s, minimumPercent: 101}}"), "spec.trafficPolicy.loadBalancer.warmup.minimumPercent", "between 0 and 100"),
        (lb("{warmupDurationSecs: 0s}"), "spec.trafficPolicy.loadBalancer.warmupDurationSecs", "at least 1ms"),
        (lb("{localityLbSetting: {distribute: [{from: a, to: {b: 100}}], failover: [{from: a, to: b}]}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting", "'distribute' and 'failover'"),
        (lb("{localityLbSetting: {distribute: [{from: 'us/*', to: {'us/a/*': 60, 'us/b/*': 30}}]}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "total locality weight 90 != 100"),
        (lb("{localityLbSetting: {distribute: [{from: 'us/*', to: {'us/*': 50, 'us/a': 50}}]}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "overlaps"),
        (lb("{localityLbSetting: {distribute: [{from: 'us/*/a', to: {us: 100}}]}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute", "only at the end"),
        (lb("{localityLbSetting: {failover: [{from: us-east, to: us-east}]}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "different regions"),
        (lb("{localityLbSetting: {failover: [{from: us-east/a, to: us-west}]}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "only specify regions"),
        (lb("{localityLbSetting: {failover: [{from: a, to: b}], failoverPriority: [topology.kubernetes.io/zone]}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]", "topology label"),
        (lb("{localityLbSetting: {failoverPriority: [tier, 'bad key']}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[1]", "invalid label key"),
        (lb("{localityLbSetting: {failoverPriority: ['tier=-gold']}}"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]", "invalid label value"),
        (tp("{connectionPool: {}}"), "spec.trafficPolicy.connectionPool", "at least one field"),
        (tp("{connectionPool: {tcp: {connectTimeout: 0.5ms}}}"), "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "\"0.5ms\" must be at least 1ms"),
        (tp("{connectionPool: {tcp: {connectTimeout: 1.5ms}}}"), "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "millisecond precision"),
        (tp("{connectionPool: {tcp: {maxConnections: -1}}}"), "spec.trafficPolicy.connectionPool.tcp.maxConnections", "non-negative, got -1"),
        (tp("{connectionPool: {tcp: {tcpKeepalive: {interval: 1x}}}}"), "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.interval", "not a duration"),
        (tp("{connectionPool: {http: {maxRetries: -3}}}"), "spec.trafficPolicy.connectionPool.http.maxRetries", "non-negative, got -3"),
        (tp("{connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}"), "spec.trafficPolicy.connectionPool.http.useClientProtocol", "UPGRADE"),
        (tp("{outlierDetection: {maxEjectionPercent: 101}}"), "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "between 0 and 100, got 101"),
        (tp("{outlierDetection: {minHealthPercent: -1}}"), "spec.trafficPolicy.outlierDetection.minHealthPercent", "got -1"),
        (tp("{outlierDetection: {interval: 0s}}"), "spec.trafficPolicy.outlierDetection.interval", "at least 1ms"),
        (tp("{outlierDetection: {baseEjectionTime: 100us}}"), "spec.trafficPolicy.outlierDetection.baseEjectionTime", "at least 1ms"),
        (tp("{outlierDetection: {consecutiveLocalOriginFailures: 3}}"), "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors"),
        (tp("{tls: {mode: MUTUAL}}"), "spec.trafficPolicy.tls.clientCertificate", "client certificate required"),
        (tp("{tls: {mode: MUTUAL, clientCertificate: /c.pem}}"), "spec.trafficPolicy.tls.privateKey", "private key required"),
        (tp("{tls: {mode: SIMPLE, credentialName: s, caCertificates: /ca.pem}}"), "spec.trafficPolicy.tls.credentialName", "cannot specify"),
        (tp("{tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}}"), "spec.trafficPolicy.tls.insecureSkipVerify", "SIMPLE mode"),
        (tp("{portLevelSettings: [{tls: {mode: DISABLE}}]}"), "spec.trafficPolicy.portLevelSettings[0].port", "must select a port"),
        (tp("{portLevelSettings: [{port: {number: 70000}, tls: {mode: DISABLE}}]}"), "spec.trafficPolicy.portLevelSettings[0].port.number", "got 70000"),
        (tp("{portLevelSettings: [{port: {number: 80}, tls: {}}, {port: {number: 80}, tls: {}}]}"), "spec.trafficPolicy.portLevelSettings[1].port.number", "duplicate port 80"),
        (tp("{portLevelSettings: [{port: {number: 80}}]}"), "spec.trafficPolicy.portLevelSettings[0]", "at least one field"),
        (tp("{portLevelSettings: [{port: {number: 80}, outlierDetection: {maxEjectionPercent: 200}}]}"), "spec.trafficPolicy.portLevelSettings[0].outlierDetection.maxEjectionPercent", "got 200"),
        (tp("{tunnel: {targetHost: a.example.com, targetPort: 443}, proxyProtocol: {}}"), "spec.trafficPolicy", "tunnel and proxyProtocol"),
        (tp("{tunnel: {protocol: GET, targetHost: a.example.com, targetPort: 443}}"), "spec.trafficPolicy.tunnel.protocol", "\"CONNECT\" or \"POST\""),
        (tp("{tunnel: {targetHost: 'not a host', targetPort: 443}}"), "spec.trafficPolicy.tunnel.targetHost", "valid FQDN or IP"),
        (tp("{tunnel: {targetHost: 10.0.0.1, targetPort: 0}}"), "spec.trafficPolicy.tunnel.targetPort", "got 0"),
        (tp("{retryBudget: {percent: 150}}"), "spec.trafficPolicy.retryBudget.percent", "between 0 and 100, got 150"),
        ("{host: r, exportTo: ['~']}".into(), "spec.exportTo[0]", "only allowed for ServiceEntry"),
        ("{host: r, exportTo: ['.', '.']}".into(), "spec.exportTo[1]", "duplicate entry"),
        ("{host: r, exportTo: ['*'], workloadSelector: {matchLabels: {app: a}}}".into(), "spec.exportTo", "beyond its own namespace"),
        ("{host: r, workloadSelector: {matchLabels: {app: 'a*'}}}".into(), "spec.workloadSelector.matchLabels[\"app\"]", "wildcard is not supported"),
    ];
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
    assert!(cases.len() >= 10);
}

#[test]
fn istio_accepts_what_it_accepts() {
    // Istio allows these, so Rudder must too: a subset without labels (an SNI
    // subset at an egress gateway), a consistent hash without a key, a partial
    // wildcard host, a trailing-dot FQDN, TCP idle timeout 0s.
    for yaml in [
        "{host: egress.example.com, subsets: [{name: sni-a, trafficPolicy: {tls: {mode: SIMPLE, sni: a.example.com}}}]}",
        "{host: r, trafficPolicy: {loadBalancer: {consistentHash: {}}}}",
        "{host: '*foo.example.com'}",
        "{host: 'reviews.prod.svc.cluster.local.'}",
        "{host: r, trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}}",
        "{host: r, subsets: [{name: V1}]}",
        "{host: r, exportTo: ['.'], workloadSelector: {matchLabels: {app: a}}}",
        "{host: r, trafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: x.example.com}}}",
    ] {
        validate(&spec(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn crd_is_structural_and_istio_shaped() {
    let crd = DestinationRule::crd();
    assert_structural(&crd);
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("destinationrules.networking.istio.io")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["dr".to_string()]));
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["host"]));
    let lb = &spec["properties"]["trafficPolicy"]["properties"]["loadBalancer"]["properties"];
    assert_eq!(
        lb["simple"]["enum"],
        serde_json::json!([
            "UNSPECIFIED",
            "LEAST_CONN",
            "RANDOM",
            "PASSTHROUGH",
            "ROUND_ROBIN",
            "LEAST_REQUEST"
        ])
    );
    let od = &spec["properties"]["trafficPolicy"]["properties"]["outlierDetection"]["properties"];
    assert!(od["consecutive5xxErrors"].is_object(), "Istio's JSON name");
    let tls = &spec["properties"]["trafficPolicy"]["properties"]["tls"]["properties"];
    assert_eq!(
        tls["mode"]["enum"],
        serde_json::json!(["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"])
    );
}
