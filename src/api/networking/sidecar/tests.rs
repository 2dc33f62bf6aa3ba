use kube::CustomResourceExt;
use pretty_assertions::assert_eq;

use super::*;
use crate::api::networking::testing::{
    assert_fixtures_round_trip, assert_rejected, assert_structural,
};

fn spec(yaml: &str) -> SidecarSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

#[test]
fn istio_examples_parse_validate_and_round_trip() {
    assert_fixtures_round_trip("sidecar", 9, |o: &Sidecar| validate(&o.spec));
}

#[test]
fn invalid_sidecars() {
    let ingress = |l: &str| format!("{{ingress: [{l}]}}");
    let egress = |l: &str| format!("{{egress: [{l}]}}");
    let https = "port: {number: 8443, protocol: HTTPS, name: https}";
    let cases: Vec<(String, &str, &str)> = vec![
        ("{}".into(), "spec", "empty Sidecar"),
        ("{workloadSelector: {labels: {app: '*'}}, egress: [{hosts: ['*/*']}]}".into(), "spec.workloadSelector.labels[\"app\"]", "wildcard"),
        (egress("{hosts: []}"), "spec.egress[0].hosts", "at least one host"),
        (egress("{hosts: [foo.example.com]}"), "spec.egress[0].hosts[0]", "namespace/dnsName"),
        (egress("{hosts: ['/foo.example.com']}"), "spec.egress[0].hosts[0]", "cannot be empty"),
        (egress("{hosts: ['Bad_NS/*']}"), "spec.egress[0].hosts[0]", "namespace must be *, ., ~"),
        (egress("{hosts: ['prod/reviews']}"), "spec.egress[0].hosts[0]", "short names"),
        (egress("{hosts: ['prod/*foo.example.com']}"), "spec.egress[0].hosts[0]", "partial wildcard"),
        (egress("{hosts: ['prod/foo..com']}"), "spec.egress[0].hosts[0]", "is not a DNS label"),
        ("{egress: [{hosts: ['*/*']}, {port: {number: 80, protocol: HTTP}, hosts: ['*/*']}]}".into(), "spec.egress[0].port", "must be the last one"),
        ("{egress: [{port: {number: 80}, hosts: ['*/*']}, {port: {number: 80}, hosts: ['./*']}]}".into(), "spec.egress[1].port", "must be unique"),
        (egress("{port: {number: 0, protocol: HTTP}, hosts: ['*/*']}"), "spec.egress[0].bind", "unix domain socket"),
        (egress("{port: {number: 0}, bind: 'unix://rel/x', hosts: ['*/*']}"), "spec.egress[0].bind", "absolute path"),
        (egress("{port: {number: 0}, bind: 'unix:///x.sock', captureMode: IPTABLES, hosts: ['*/*']}"), "spec.egress[0].captureMode", "DEFAULT or NONE"),
        (egress("{port: {number: 80}, bind: example.com, hosts: ['*/*']}"), "spec.egress[0].bind", "not a valid IP"),
        (egress("{port: {number: 80, protocol: QUIC}, hosts: ['*/*']}"), "spec.egress[0].port.protocol", "unsupported protocol"),
        (egress("{port: {number: 80, name: 'not valid'}, hosts: ['*/*']}"), "spec.egress[0].port.name", "invalid port name"),
        (egress("{port: {number: 80, targetPort: 8080}, hosts: ['*/*']}"), "spec.egress[0].port.targetPort", "no impact on Sidecars"),
        (egress("{port: {number: 65536}, hosts: ['*/*']}"), "spec.egress[0].port.number", "got 65536"),
        (egress("{bind: 'unix:///x.sock', hosts: ['*/*']}"), "spec.egress[0].bind", "port with number 0"),
        (egress("{bind: localhost, hosts: ['*/*']}"), "spec.egress[0].bind", "not a valid IP"),
        (ingress("{port: {protocol: HTTP}}"), "spec.ingress[0].port.number", "got 0"),
        (ingress("{port: {number: 80}, bind: 'unix:///x.sock'}"), "spec.ingress[0].bind", "not a valid IP"),
        ("{ingress: [{port: {number: 80}}, {port: {number: 80}}]}".into(), "spec.ingress[1].port.number", "must be unique"),
        (ingress("{port: {number: 80}, defaultEndpoint: '10.0.0.1:8080'}"), "spec.ingress[0].defaultEndpoint", "must be 127.0.0.1:<port>"),
        (ingress("{port: {number: 80}, defaultEndpoint: '127.0.0.1:http'}"), "spec.ingress[0].defaultEndpoint", "is not a number"),
        (ingress("{port: {number: 80}, defaultEndpoint: '127.0.0.1:0'}"), "spec.ingress[0].defaultEndpoint", "got 0"),
        (ingress("{port: {number: 80}, defaultEndpoint: '::1:8080'}"), "spec.ingress[0].defaultEndpoint", "must be 127.0.0.1:<port>"),
        (ingress("{port: {number: 80}, defaultEndpoint: 'unix://'}"), "spec.ingress[0].defaultEndpoint", "must not be empty"),
        (ingress("{port: {number: 80, protocol: HTTP}, tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}}"), "spec.ingress[0].tls", "HTTPS or TLS port"),
        (ingress(&format!("{{{https}, tls: {{mode: ISTIO_MUTUAL}}}}")), "spec.ingress[0].tls.mode", "cannot be used in sidecar ingress"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, credentialName: c}}}}")), "spec.ingress[0].tls.credentialName", "not supported in sidecar"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, httpsRedirect: true}}}}")), "spec.ingress[0].tls.httpsRedirect", "not supported in sidecar"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, privateKey: /k}}}}")), "spec.ingress[0].tls.serverCertificate", "SIMPLE TLS requires a server certificate"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, serverCertificate: /c}}}}")), "spec.ingress[0].tls.privateKey", "requires a private key"),
        (ingress(&format!("{{{https}, tls: {{mode: MUTUAL, serverCertificate: /c, privateKey: /k}}}}")), "spec.ingress[0].tls.caCertificates", "client CA bundle"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCrl: /crl}}}}")), "spec.ingress[0].tls.caCrl", "not supported with SIMPLE"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, serverCertificate: /c, privateKey: /k, verifyCertificateHash: [abc]}}}}")), "spec.ingress[0].tls.verifyCertificateHash[0]", "not a hex-encoded SHA-256"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, serverCertificate: /c, privateKey: /k, verifyCertificateSpki: ['bm90IGEgaGFzaA==']}}}}")), "spec.ingress[0].tls.verifyCertificateSpki[0]", "not a base64-encoded SHA-256"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, serverCertificate: /c, privateKey: /k, maxProtocolVersion: TLSV1_1}}}}")), "spec.ingress[0].tls.minProtocolVersion", "above maxProtocolVersion"),
        (ingress(&format!("{{{https}, tls: {{mode: SIMPLE, serverCertificate: /c, privateKey: /k, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}}}}")), "spec.ingress[0].tls.minProtocolVersion", "above maxProtocolVersion"),
        (ingress("{port: {number: 80}, connectionPool: {tcp: {connectTimeout: 0s}}}"), "spec.ingress[0].connectionPool.tcp.connectTimeout", "at least 1ms"),
        ("{inboundConnectionPool: {}}".into(), "spec.inboundConnectionPool", "at least one field"),
        ("{outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: a.example.com, port: {number: 443}}}}".into(), "spec.outboundTrafficPolicy.egressProxy", "only with mode ALLOW_ANY"),
        ("{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: '*.example.com', port: {number: 443}}}}".into(), "spec.outboundTrafficPolicy.egressProxy.host", "is not a DNS label"),
        ("{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com}}}".into(), "spec.outboundTrafficPolicy.egressProxy.port", "needs a port"),
        ("{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com, subset: 'v_1', port: {number: 443}}}}".into(), "spec.outboundTrafficPolicy.egressProxy.subset", "invalid"),
        ("{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com, port: {number: 0}}}}".into(), "spec.outboundTrafficPolicy.egressProxy.port.number", "got 0"),
    ];
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}

#[test]
fn istio_accepts_what_it_accepts() {
    for yaml in [
        // Egress is optional in current Istio: any one of the four sections will do.
        "{ingress: [{port: {number: 80, protocol: HTTP}, defaultEndpoint: ':8080'}]}",
        "{outboundTrafficPolicy: {mode: ALLOW_ANY}}",
        "{inboundConnectionPool: {http: {maxRetries: 1}}}",
        // An empty workload selector is only a warning.
        "{workloadSelector: {}, egress: [{hosts: ['~/*']}]}",
        // Duplicate hosts are warnings too.
        "{egress: [{hosts: ['*/*', 'prod/a.example.com', 'prod/a.example.com']}]}",
        "{egress: [{port: {number: 0}, bind: 'unix://@abstract', hosts: ['./*']}]}",
        // Pins Envoy can decode, and a TLS 1.3-only range.
        "{ingress: [{port: {number: 8443, protocol: HTTPS}, tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, minProtocolVersion: TLSV1_3, verifyCertificateHash: ['DF:6F:F7:2F:E9:11:65:21:26:8F:6F:2D:D4:96:6F:51:DF:47:98:83:FE:70:37:B3:9F:75:91:6A:C3:04:9D:1A'], verifyCertificateSpki: ['AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=']}}]}",
    ] {
        validate(&spec(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn crd_is_structural_and_istio_shaped() {
    let crd = Sidecar::crd();
    assert_structural(&crd);
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("sidecars.networking.istio.io")
    );
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let props = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        props["ingress"]["items"]["required"],
        serde_json::json!(["port"])
    );
    assert_eq!(
        props["egress"]["items"]["required"],
        serde_json::json!(["hosts"])
    );
    assert_eq!(
        props["egress"]["items"]["properties"]["captureMode"]["enum"],
        serde_json::json!(["DEFAULT", "IPTABLES", "NONE"])
    );
    let tls = &props["ingress"]["items"]["properties"]["tls"]["properties"];
    assert_eq!(
        tls["minProtocolVersion"]["enum"],
        serde_json::json!(["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"])
    );
    assert_eq!(
        props["outboundTrafficPolicy"]["properties"]["mode"]["enum"],
        serde_json::json!(["REGISTRY_ONLY", "ALLOW_ANY"])
    );
}
