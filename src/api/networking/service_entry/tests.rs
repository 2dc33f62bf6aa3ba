use kube::CustomResourceExt;
use pretty_assertions::assert_eq;

use super::*;
use crate::api::networking::testing::{
    assert_fixtures_round_trip, assert_rejected, assert_structural,
};

fn spec(yaml: &str) -> ServiceEntrySpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

#[test]
fn istio_examples_parse_validate_and_round_trip() {
    assert_fixtures_round_trip("service_entry", 12, |o: &ServiceEntry| validate(&o.spec));
}

const HTTP: &str = "ports: [{number: 80, name: http, protocol: HTTP}]";

#[test]
fn invalid_service_entries() {
    let cases: Vec<(String, &str, &str)> = vec![
        ("{hosts: []}".into(), "spec.hosts", "at least one host"),
        ("{hosts: ['*']}".into(), "spec.hosts[0]", "cannot match every host"),
        ("{hosts: [a.com, 'b..com']}".into(), "spec.hosts[1]", "is not a DNS label"),
        ("{hosts: [a.com], addresses: [300.1.1.1]}".into(), "spec.addresses[0]", "not a valid IP address"),
        ("{hosts: [a.com], addresses: [10.0.0.0/40]}".into(), "spec.addresses[0]", "not a valid CIDR block"),
        (format!("{{hosts: [a.com], addresses: [10.0.0.0/8], resolution: DNS, {HTTP}}}"), "spec.addresses[0]", "only with NONE or STATIC"),
        ("{hosts: [a.com], ports: [{number: 80, name: http}, {number: 81, name: http}]}".into(), "spec.ports[1].name", "port name \"http\" is already defined"),
        ("{hosts: [a.com], ports: [{number: 80, name: a}, {number: 80, name: b}]}".into(), "spec.ports[1].number", "port 80 is already defined"),
        ("{hosts: [a.com], ports: [{number: 80, name: ''}]}".into(), "spec.ports[0].name", "invalid port name"),
        ("{hosts: [a.com], ports: [{number: 0, name: p}]}".into(), "spec.ports[0].number", "got 0"),
        ("{hosts: [a.com], ports: [{number: 80, name: p, targetPort: 65536}]}".into(), "spec.ports[0].targetPort", "got 65536"),
        ("{hosts: [a.com], ports: [{number: 80, name: p, protocol: SCTP}]}".into(), "spec.ports[0].protocol", "unsupported protocol \"SCTP\""),
        (format!("{{hosts: [a.com], {HTTP}, endpoints: [{{address: 1.1.1.1}}]}}"), "spec.endpoints", "resolution NONE"),
        (format!("{{hosts: [a.com], {HTTP}, resolution: STATIC, endpoints: [{{address: vm.example.com}}]}}"), "spec.endpoints[0].address", "not a valid IP address (STATIC"),
        (format!("{{hosts: [a.com], {HTTP}, resolution: STATIC, endpoints: [{{address: 1.1.1.1, ports: {{grpc: 90}}}}]}}"), "spec.endpoints[0].ports[\"grpc\"]", "not defined by the service entry"),
        ("{hosts: [a.com], ports: [{number: 80, name: a}, {number: 81, name: b}], resolution: STATIC, endpoints: [{address: 'unix:///s.sock'}]}".into(), "spec.endpoints[0].address", "exactly 1 service port"),
        (format!("{{hosts: ['*.a.com'], {HTTP}, resolution: DNS}}"), "spec.hosts[0]", "hosts must be FQDNs"),
        (format!("{{hosts: [a.com], {HTTP}, resolution: DNS, endpoints: [{{address: 'unix:///s.sock'}}]}}"), "spec.endpoints[0].address", "not a valid FQDN or IP"),
        (format!("{{hosts: [a.com], {HTTP}, resolution: DNS_ROUND_ROBIN, endpoints: [{{address: a.b.com}}, {{address: c.d.com}}]}}"), "spec.endpoints", "only 0 or 1 endpoint"),
        (format!("{{hosts: [a.com], {HTTP}, resolution: DYNAMIC_DNS}}"), "spec.hosts[0]", "wildcard hosts"),
        (format!("{{hosts: ['*.a.com'], {HTTP}, location: MESH_INTERNAL, resolution: DYNAMIC_DNS}}"), "spec.location", "MESH_EXTERNAL"),
        ("{hosts: [a.com, b.com], ports: [{number: 5432, name: pg, protocol: TCP}], resolution: DNS}".into(), "spec.ports[0].protocol", "multiple hosts"),
        ("{hosts: [a.com, b.com], ports: [{number: 5432, name: pg}], resolution: STATIC}".into(), "spec.ports[0].protocol", "non-HTTP, non-TLS"),
        (format!("{{hosts: [a.com], {HTTP}, resolution: STATIC, workloadSelector: {{labels: {{app: a}}}}, endpoints: [{{address: 1.1.1.1}}]}}"), "spec.endpoints", "only one of workloadSelector or endpoints"),
        ("{hosts: [a.com], workloadSelector: {labels: {'app*': a}}}".into(), "spec.workloadSelector.labels[\"app*\"]", "wildcard"),
        ("{hosts: [a.com], exportTo: ['~', 'ns1']}".into(), "spec.exportTo", "no one (~) and to someone"),
        ("{hosts: [a.com], exportTo: [ns_1]}".into(), "spec.exportTo[0]", "namespace name"),
    ];
    assert_rejected(&cases, |yaml| validate(&spec(yaml)));
}

#[test]
fn istio_accepts_what_it_accepts() {
    for yaml in [
        // A partial wildcard is only a warning in Istio.
        "{hosts: ['*foo.com'], ports: [{number: 80, name: http, protocol: HTTP}]}",
        // Several hosts are fine with NONE (the original destination decides) and with HTTP/TLS.
        "{hosts: [a.com, b.com], ports: [{number: 5432, name: pg, protocol: TCP}], resolution: NONE}",
        "{hosts: [a.com, b.com], ports: [{number: 443, name: https, protocol: HTTPS}], resolution: DNS}",
        // No ports at all is accepted by Istio (the entry then only decorates the hosts).
        "{hosts: [a.com], subjectAltNames: ['spiffe://td/ns/a/sa/b']}",
        // Endpoints without addresses when a network is given (a remote network's gateway).
        "{hosts: [a.com], resolution: STATIC, endpoints: [{network: n2}], ports: [{number: 80, name: http, protocol: HTTP}]}",
        "{hosts: [a.com], ports: [{number: 80, name: Http, protocol: http}]}",
    ] {
        validate(&spec(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn crd_is_structural_and_istio_shaped() {
    let crd = ServiceEntry::crd();
    assert_structural(&crd);
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("serviceentries.networking.istio.io")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["se".to_string()]));
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["hosts"]));
    let props = &spec["properties"];
    assert_eq!(
        props["resolution"]["enum"],
        serde_json::json!(["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"])
    );
    assert_eq!(
        props["location"]["enum"],
        serde_json::json!(["MESH_EXTERNAL", "MESH_INTERNAL"])
    );
    assert_eq!(
        props["ports"]["items"]["required"],
        serde_json::json!(["name", "number"])
    );
    // Endpoints are WorkloadEntry specs, so both kinds share one shape.
    let we =
        serde_json::to_value(&crate::api::networking::WorkloadEntry::crd().spec.versions[0].schema)
            .unwrap();
    assert_eq!(
        props["endpoints"]["items"]["properties"],
        we["openAPIV3Schema"]["properties"]["spec"]["properties"]
    );
}
