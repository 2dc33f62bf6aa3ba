//! Rudder's CRDs on a real Kubernetes API server (upstream kube-apiserver +
//! etcd, see e2e/support/kube.rs): they install, become Established, store an
//! Istio sample unchanged under every served version, validate against their
//! schema, and publish their field docs to OpenAPI v3, where `kubectl
//! explain` reads them. Fails, never skips, without kube-apiserver or etcd:
//! e2e/kube/ensure.sh builds and installs both.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::kube::{condition_true, our_crds, KubeApi, CRDS};
use crate::support::poll;

/// Istio's samples/bookinfo/networking/virtual-service-reviews-90-10.yaml, as is.
const REVIEWS_90_10: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
";

/// Where two JSON values differ (numbers compared as f64: our YAML says
/// `minimum: 0.0`, Go sends back `0`), or `None` when they do not.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (l, r) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                first_difference(l, r, &format!("{at}.{k}"))
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("at {at}: served {a}, ours {b}")),
    }
}

#[test]
fn kube_apiserver_serves_our_crds_and_an_istio_sample() {
    let kube = KubeApi::start();
    eprintln!(
        "kube-apiserver ready in {:.1?} at {}",
        kube.startup, kube.url
    );
    let version = kube.get("/version");
    assert!(
        version["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "{version:#}"
    );

    // Install every CRD; each becomes Established with its schema as sent.
    let crds = our_crds();
    for crd in crds.values() {
        kube.create(CRDS, crd);
    }
    for (name, ours) in &crds {
        let path = format!("{CRDS}/{name}");
        let served = poll(Duration::from_secs(30), || {
            let crd = kube.get(&path);
            (condition_true(&crd, "Established") && condition_true(&crd, "NamesAccepted"))
                .then_some(crd)
        })
        .unwrap_or_else(|| panic!("{name} not Established within 30s: {:#}", kube.get(&path)));
        let versions = |crd: &Value| -> Vec<(Value, Value)> {
            let versions = crd["spec"]["versions"].as_array().expect("spec.versions");
            let pick = |v: &Value| (v["name"].clone(), v["schema"].clone());
            versions.iter().map(pick).collect()
        };
        if let Some(diff) = first_difference(&json!(versions(&served)), &json!(versions(ours)), "")
        {
            panic!("{name}: the API server changed a version's schema: {diff}");
        }
    }

    // The sample applies and reads back unchanged, from every served version.
    let sample: Value = serde_yaml::from_str(REVIEWS_90_10).unwrap();
    let collection = "/apis/networking.istio.io/v1/namespaces/default/virtualservices";
    let created = kube.create(collection, &sample);
    assert_eq!(
        created["spec"], sample["spec"],
        "the API server pruned or changed fields"
    );
    for version in ["v1", "v1beta1", "v1alpha3"] {
        let path = format!(
            "/apis/networking.istio.io/{version}/namespaces/default/virtualservices/reviews"
        );
        let got = kube.get(&path);
        assert_eq!(got["apiVersion"], format!("networking.istio.io/{version}"));
        assert_eq!(got["kind"], "VirtualService");
        assert_eq!(got["spec"], sample["spec"], "GET {path}");
    }
    let list = kube.get(collection);
    let names: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["metadata"]["name"])
        .collect();
    assert_eq!(names, [&json!("reviews")], "{list:#}");

    // The schema is enforced: a weight that is not an integer is refused.
    let mut bad = sample.clone();
    bad["metadata"]["name"] = "reviews-bad".into();
    bad["spec"]["http"][0]["route"][0]["weight"] = "ninety".into();
    let (status, answer) = kube.request("POST", collection, Some(&bad));
    assert_eq!(status, 422, "a string weight was accepted: {answer:#}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.http[0].route[0].weight") && message.contains("integer"),
        "{answer:#}"
    );

    // `kubectl explain virtualservice.spec.http` reads OpenAPI v3, published
    // a moment after the CRD is Established.
    let openapi_path = "/openapi/v3/apis/networking.istio.io/v1";
    let schemas = poll(Duration::from_secs(30), || {
        let (status, doc) = kube.request("GET", openapi_path, None);
        let schemas = doc["components"]["schemas"].as_object()?;
        (status == 200 && schemas.contains_key("io.istio.networking.v1.VirtualService"))
            .then(|| schemas.clone())
    })
    .unwrap_or_else(|| panic!("no VirtualService in {openapi_path} within 30s"));
    let vs_crd = &crds["virtualservices.networking.istio.io"];
    let ours = &vs_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let published = &schemas["io.istio.networking.v1.VirtualService"];
    for field in [
        &["spec"][..],
        &["spec", "http"],
        &["spec", "hosts"],
        &["spec", "tcp"],
    ] {
        let at = |mut schema: &Value| {
            for f in field {
                schema = &schema["properties"][*f];
            }
            schema["description"].clone()
        };
        let want = at(ours);
        assert!(
            want.as_str().is_some_and(|d| !d.is_empty()),
            "crds/: no description for {field:?}"
        );
        assert_eq!(at(published), want, "OpenAPI v3 description of {field:?}");
    }
    let http_items = &published["properties"]["spec"]["properties"]["http"]["items"];
    let weight = &http_items["properties"]["route"]["items"]["properties"]["weight"];
    assert!(
        weight["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Relative proportion of traffic")),
        "spec.http.route.weight in OpenAPI v3: {weight:#}"
    );
    for kind in [
        "DestinationRule",
        "ServiceEntry",
        "Sidecar",
        "WorkloadEntry",
    ] {
        let key = format!("io.istio.networking.v1.{kind}");
        assert!(
            schemas.contains_key(&key),
            "{key} missing from {openapi_path}"
        );
    }
}
