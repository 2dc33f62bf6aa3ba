//! Istio's documented examples parse, validate and round-trip; the generated
//! CRD is a structural schema with Istio's field names.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kube::CustomResourceExt;
use pretty_assertions::assert_eq;
use serde::Deserialize;
use serde_yaml::Value;

use super::*;

fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/api/networking/testdata/virtual_service")
}

/// Every YAML document under testdata/virtual_service, with its file name.
fn documents() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata_dir())
        .expect("testdata dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("readable");
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            docs.push((
                format!("{name}#{i}"),
                serde_yaml::to_string(&value).unwrap(),
            ));
        }
    }
    docs
}

fn parse(name: &str, text: &str) -> VirtualService {
    serde_yaml::from_str::<VirtualService>(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load(file: &str) -> VirtualService {
    let text = std::fs::read_to_string(testdata_dir().join(file)).unwrap();
    parse(file, &text)
}

#[test]
fn istio_doc_examples_parse_and_validate() {
    let docs = documents();
    assert!(
        docs.len() >= 20,
        "expected at least 20 example documents, found {}",
        docs.len()
    );
    for (name, text) in &docs {
        let vs = parse(name, text);
        validate(&vs.spec).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn examples_read_into_the_expected_model() {
    let canary = load("canary-split.yaml");
    let weights: Vec<_> = canary.spec.http[0]
        .route
        .iter()
        .map(|d| (d.destination.subset.clone(), d.weight))
        .collect();
    assert_eq!(
        weights,
        vec![(Some("v2".into()), Some(25)), (Some("v1".into()), Some(75))]
    );

    let header = load("header-match.yaml");
    let m = &header.spec.http[0].r#match[0];
    assert_eq!(m.headers["end-user"], StringMatch::Exact("jason".into()));
    assert_eq!(m.uri, Some(StringMatch::Prefix("/ratings/v2/".into())));
    assert_eq!(m.ignore_uri_case, Some(true));

    let tcp = load("tcp-route.yaml");
    assert_eq!(tcp.spec.tcp[0].r#match[0].port, Some(27017));
    assert_eq!(
        tcp.spec.tcp[0].route[0].destination.port,
        Some(PortSelector { number: 5555 })
    );

    let redirect = load("redirect-port.yaml");
    let r = redirect.spec.http[0].redirect.as_ref().unwrap();
    assert_eq!(
        r.derive_port,
        Some(RedirectPortSelection::FromProtocolDefault)
    );
    assert_eq!(r.redirect_code, Some(308));

    let everything = load("everything.yaml");
    let api = &everything.spec.http[0];
    assert_eq!(api.r#match[0].headers["x-canary"], StringMatch::Empty);
    assert_eq!(
        api.mirror_percent,
        Some(10),
        "mirror_percent is read into mirrorPercent"
    );
    assert_eq!(
        api.fault
            .as_ref()
            .unwrap()
            .abort
            .as_ref()
            .unwrap()
            .grpc_status
            .as_deref(),
        Some("UNAVAILABLE")
    );

    // Istio's Headers example writes `test: true`, a YAML boolean.
    let headers = load("headers.yaml");
    let set = &headers.spec.http[0]
        .headers
        .as_ref()
        .unwrap()
        .request
        .as_ref()
        .unwrap()
        .set;
    assert_eq!(set["test"], "true");
}

/// The dotted key paths of a YAML tree (list indices dropped).
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                let path = format!("{prefix}.{key}");
                out.insert(path.clone());
                key_paths(v, &path, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| key_paths(v, prefix, out)),
        _ => {}
    }
}

#[test]
fn round_trip_keeps_the_spec_and_adds_no_fields() {
    for (name, text) in documents() {
        let vs = parse(&name, &text);
        let written = serde_yaml::to_string(&vs).unwrap();
        let again = parse(&name, &written);
        assert_eq!(again, vs, "{name}: re-parsed spec differs");

        let original: Value = serde_yaml::from_str(&text).unwrap();
        let rewritten: Value = serde_yaml::from_str(&written).unwrap();
        let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
        key_paths(&original["spec"], "spec", &mut before);
        key_paths(&rewritten["spec"], "spec", &mut after);
        // The deprecated snake_case spelling is written back in camelCase.
        let before: BTreeSet<String> = before
            .into_iter()
            .map(|p| p.replace("mirror_percent", "mirrorPercent"))
            .collect();
        let added: Vec<_> = after.difference(&before).collect();
        assert!(added.is_empty(), "{name}: serializing added {added:?}");
        let dropped: Vec<_> = before.difference(&after).collect();
        assert!(
            dropped.is_empty(),
            "{name}: serializing dropped {dropped:?}"
        );
    }
}

/// Kubernetes serves VirtualService as v1, v1beta1 and v1alpha3 with one
/// schema. The derived type does not look at apiVersion when reading, and
/// always writes v1: the parser must check the version itself.
#[test]
fn older_api_versions_read_the_same_and_are_written_as_v1() {
    let v1 = load("canary-split.yaml");
    for old in [
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1alpha3",
    ] {
        let text = std::fs::read_to_string(testdata_dir().join("canary-split.yaml"))
            .unwrap()
            .replace("networking.istio.io/v1\n", &format!("{old}\n"));
        assert!(text.contains(old));
        let vs = parse(old, &text);
        assert_eq!(vs, v1, "{old} reads into the same object");
        let written: Value = serde_yaml::to_value(&vs).unwrap();
        assert_eq!(written["apiVersion"], Value::from("networking.istio.io/v1"));
    }
    // Nor is a wrong group or kind rejected by the type itself.
    let text = std::fs::read_to_string(testdata_dir().join("canary-split.yaml"))
        .unwrap()
        .replace("networking.istio.io/v1\n", "example.com/v9\n")
        .replace("kind: VirtualService", "kind: Unrelated");
    assert!(serde_yaml::from_str::<VirtualService>(&text).is_ok());
}

#[test]
fn two_kinds_in_one_string_match_fail_at_parse_with_a_path() {
    let text = std::fs::read_to_string(testdata_dir().join("header-match.yaml"))
        .unwrap()
        .replace(
            "prefix: \"/ratings/v2/\"",
            "prefix: \"/ratings/v2/\"\n        exact: /ratings",
        );
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let err = serde_path_to_error::deserialize::<_, VirtualService>(doc).unwrap_err();
    assert_eq!(err.path().to_string(), "spec.http[0].match[0].uri");
    assert!(
        err.to_string()
            .contains("exactly one of exact, prefix or regex"),
        "{err}"
    );
}

/// Walks a CRD schema node and its children, checking Kubernetes'
/// structural-schema rules; `path` names the node in failure messages.
fn check_structural(node: &serde_json::Value, path: &str, in_junctor: bool) {
    let obj = node
        .as_object()
        .unwrap_or_else(|| panic!("{path}: schema is not an object"));
    assert!(!obj.contains_key("$ref"), "{path}: $ref is not allowed");
    if in_junctor {
        for banned in [
            "type",
            "description",
            "properties",
            "items",
            "additionalProperties",
            "default",
            "nullable",
        ] {
            assert!(
                !obj.contains_key(banned),
                "{path}: {banned} inside oneOf/anyOf/allOf/not"
            );
        }
    } else {
        let free_form = obj.contains_key("x-kubernetes-preserve-unknown-fields")
            || obj.contains_key("x-kubernetes-int-or-string");
        assert!(
            obj.contains_key("type") || free_form,
            "{path}: missing type"
        );
    }
    for (key, child) in obj {
        match key.as_str() {
            "properties" => {
                for (name, prop) in child.as_object().unwrap() {
                    check_structural(prop, &format!("{path}.{name}"), in_junctor);
                }
            }
            "items" | "additionalProperties" => {
                check_structural(child, &format!("{path}[]"), in_junctor)
            }
            "oneOf" | "anyOf" | "allOf" => {
                for (i, sub) in child.as_array().unwrap().iter().enumerate() {
                    check_structural(sub, &format!("{path}.{key}[{i}]"), true);
                }
            }
            "not" => check_structural(child, &format!("{path}.not"), true),
            _ => {}
        }
    }
}

fn property_names(schema: &serde_json::Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

fn names(list: &str) -> BTreeSet<String> {
    list.split_whitespace().map(str::to_string).collect()
}

#[test]
fn crd_is_structural_and_names_istio_fields() {
    let crd = VirtualService::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("virtualservices.networking.istio.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["vs".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1");
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, vec!["Gateways", "Hosts", "Age"]);

    // The shared checks every networking kind passes (descriptions too).
    crate::api::networking::testing::assert_structural(&crd);
    let root = serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    check_structural(&root, "root", false);

    // Field for field, as in Istio's own CRD.
    let spec = &root["properties"]["spec"];
    assert_eq!(
        property_names(spec),
        names("hosts gateways http tls tcp exportTo")
    );
    let http = &spec["properties"]["http"]["items"];
    assert_eq!(
        property_names(http),
        names("name match route redirect directResponse delegate rewrite timeout retries fault mirror mirrors mirrorPercentage mirrorPercent mirror_percent corsPolicy headers")
    );
    let m = &http["properties"]["match"]["items"];
    assert_eq!(
        property_names(m),
        names("name uri scheme method authority headers port sourceLabels gateways queryParams ignoreUriCase withoutHeaders sourceNamespace statPrefix")
    );
    assert_eq!(
        property_names(&m["properties"]["uri"]),
        names("exact prefix regex")
    );
    assert_eq!(
        property_names(&http["properties"]["redirect"]),
        names("uri authority port derivePort scheme redirectCode")
    );
    assert_eq!(
        property_names(&http["properties"]["rewrite"]),
        names("uri authority uriRegexRewrite")
    );
    assert_eq!(
        property_names(&http["properties"]["retries"]),
        names(
            "attempts perTryTimeout retryOn retryRemoteLocalities retryIgnorePreviousHosts backoff"
        )
    );
    assert_eq!(
        property_names(&http["properties"]["corsPolicy"]),
        names("allowOrigin allowOrigins allowMethods allowHeaders exposeHeaders maxAge allowCredentials unmatchedPreflights")
    );
    let fault = &http["properties"]["fault"]["properties"];
    assert_eq!(
        property_names(&fault["delay"]),
        names("percent fixedDelay exponentialDelay percentage")
    );
    assert_eq!(
        property_names(&fault["abort"]),
        names("httpStatus grpcStatus http2Error percentage")
    );
    assert_eq!(
        property_names(&http["properties"]["directResponse"]["properties"]["body"]),
        names("string bytes")
    );
    let tcp_match = &spec["properties"]["tcp"]["items"]["properties"]["match"]["items"];
    assert_eq!(
        property_names(tcp_match),
        names("destinationSubnets port sourceSubnet sourceLabels gateways sourceNamespace")
    );
    let tls = &spec["properties"]["tls"]["items"];
    assert_eq!(tls["required"], serde_json::json!(["match"]));
    assert_eq!(
        tls["properties"]["match"]["items"]["required"],
        serde_json::json!(["sniHosts"])
    );
    let dest = &tls["properties"]["route"]["items"]["properties"]["destination"];
    assert_eq!(property_names(dest), names("host subset port"));
    assert_eq!(dest["required"], serde_json::json!(["host"]));
}
