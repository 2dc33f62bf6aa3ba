use super::*;

fn parse_one(text: &str) -> Result<Parsed, DocumentError> {
    let mut docs = split_documents(text);
    assert_eq!(docs.len(), 1, "expected one document");
    parse(docs.remove(0).expect("valid YAML"))
}

fn object(text: &str) -> Object {
    match parse_one(text).expect("parses") {
        Parsed::Object(_, o) => *o,
        other => panic!("expected an object, got {other:?}"),
    }
}

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 198.18.100.1
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc, port: 9090, targetPort: grpc-port}
"#;

#[test]
fn valid_service_parses_and_validates() {
    let obj = object(SERVICE);
    validate(&obj).expect("valid");
}

#[test]
fn schema_error_names_the_field() {
    let text = SERVICE.replace("port: 80,", "port: eighty,");
    let err = parse_one(&text).unwrap_err();
    assert_eq!(err.object.unwrap().to_string(), "Service shop/web");
    assert_eq!(err.error.field, "spec.ports[0].port");
}

#[test]
fn semantic_errors_name_field_and_reason() {
    let cases = [
        (
            "port: 80,",
            "port: 70000,",
            "spec.ports[0].port",
            "between 1 and 65535",
        ),
        (
            "name: grpc,",
            "name: http,",
            "spec.ports[1].name",
            "duplicate port name",
        ),
        (
            "198.18.100.1",
            "198.18.999.1",
            "spec.clusterIP",
            "not a valid IP",
        ),
        (
            "targetPort: grpc-port",
            "targetPort: GRPC_PORT",
            "spec.ports[1].targetPort",
            "port name",
        ),
        ("name: web,", "name: Web,", "metadata.name", "DNS label"),
    ];
    for (from, to, field, reason) in cases {
        let obj = object(&SERVICE.replace(from, to));
        let err = validate(&obj).expect_err(to);
        assert_eq!(err.field, field, "{to}");
        assert!(err.reason.contains(reason), "{to}: {}", err.reason);
    }
}

#[test]
fn endpoint_slice_needs_its_service_label_and_matching_addresses() {
    let slice = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: [198.18.0.10]
ports: [{name: http, port: 8080}]
"#;
    validate(&object(slice)).expect("valid");
    let no_label = slice.replace(", labels: {kubernetes.io/service-name: web}", "");
    let err = validate(&object(&no_label)).unwrap_err();
    assert_eq!(err.field, "metadata.labels[kubernetes.io/service-name]");
    let v6 = slice.replace("198.18.0.10", "fd00::1");
    let err = validate(&object(&v6)).unwrap_err();
    assert_eq!(err.field, "endpoints[0].addresses[0]");
}

#[test]
fn unknown_kinds_are_ignored_and_wrong_api_versions_rejected() {
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n";
    assert!(matches!(parse_one(deploy).unwrap(), Parsed::Ignored(_)));
    let svc = "apiVersion: v2\nkind: Service\nmetadata: {name: web}\n";
    let err = parse_one(svc).unwrap_err();
    assert_eq!(err.error.field, "apiVersion");
    assert_eq!(err.object.unwrap().to_string(), "Service default/web");
}

#[test]
fn missing_identity_is_reported() {
    let err = parse_one("apiVersion: v1\nkind: Service\nmetadata: {}\n").unwrap_err();
    assert_eq!(err.error.field, "metadata.name");
    let err = parse_one("kind: Service\n").unwrap_err();
    assert_eq!(err.error.field, "apiVersion");
    assert!(err.object.is_none());
}

#[test]
fn yaml_syntax_error_stops_the_stream_with_a_location() {
    let docs = split_documents("a: 1\n---\nb: [unclosed\n---\nc: 3\n");
    assert_eq!(docs.len(), 2);
    assert!(docs[0].is_ok());
    let err = docs[1].as_ref().unwrap_err();
    assert!(err.reason.contains("line"), "{}", err.reason);
}
