//! The admission webhooks, called by a real kube-apiserver: a bad
//! VirtualService is refused with Rudder's message naming the field, and a
//! Pod created in an `istio-injection=enabled` namespace comes back with the
//! sidecar injected. The webhook configurations are the ones
//! docs/operating.md tells users to apply, pointed at a loopback Rudder.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{json, Value};

use crate::support::kube::KubeApi;
use crate::support::*;

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn webhook(name: &str, url: &str, ca: &str, rules: Value, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        hook[k] = v.clone();
    }
    hook
}

const VALIDATING: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
const MUTATING: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

/// `rudder-validator`, for VirtualServices and DestinationRules.
fn create_validator(kube: &KubeApi, hook_addr: SocketAddr, ca: &str) {
    let validate = format!("https://{hook_addr}/validate");
    kube.create(
        VALIDATING,
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "rudder-validator"},
            "webhooks": [webhook("validation.rudder.io", &validate, ca, json!([{
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": ["networking.istio.io"],
                "apiVersions": ["*"],
                "resources": ["virtualservices", "destinationrules"],
            }]), json!({}))],
        }),
    );
}

/// `rudder-sidecar-injector`, for pods in `istio-injection=enabled` namespaces.
fn create_injector(kube: &KubeApi, hook_addr: SocketAddr, ca: &str) {
    let inject = format!("https://{hook_addr}/inject");
    kube.create(
        MUTATING,
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "rudder-sidecar-injector"},
            "webhooks": [webhook("namespace.sidecar-injector.rudder.io", &inject, ca, json!([{
                "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
            }]), json!({
                "namespaceSelector": {"matchExpressions": [
                    {"key": "istio-injection", "operator": "In", "values": ["enabled"]}]},
                "reinvocationPolicy": "Never",
            }))],
        }),
    );
}

/// Creates a VirtualService Rudder's webhook must refuse in namespace `shop`
/// (which must exist), checks the refusal and returns the object.
fn bad_virtual_service_is_refused(kube: &KubeApi, rudder: &Rudder) -> Value {
    // A VirtualService matching on a regex RE2 cannot compile (the CRD
    // schema cannot tell): refused by the API server, with Rudder's reason
    // and field path. The API server starts calling a new webhook within a
    // moment; until then an accepted object is deleted and retried, as is a
    // refusal for failing to call it (the API server's webhook client may
    // still hold an older caBundle for a moment).
    let bad = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {"hosts": ["reviews"], "http": [{
            "match": [{"uri": {"regex": "/api/(v1"}}],
            "route": [{"destination": {"host": "reviews"}}],
        }]},
    });
    let vs = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";
    let mut last = (0, Value::Null);
    let refused = poll(std::time::Duration::from_secs(15), || {
        last = kube.request("POST", vs, Some(&bad));
        if last.0 == 201 {
            kube.request("DELETE", &format!("{vs}/reviews"), None);
        }
        let ours = last.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.http[0].match[0].uri"));
        (last.0 != 201 && ours).then_some(())
    });
    let (status, answer) = last;
    assert!(
        refused.is_some() || status != 201,
        "a bad VirtualService was accepted ({status}): {answer:#}{}",
        rudder.log_tail(20)
    );
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("rudder") || message.contains("validation.rudder.io"),
        "not refused by our webhook: {message}"
    );
    assert!(
        message.contains("spec.http[0].match[0].uri"),
        "no field path: {message}"
    );
    bad
}

#[test]
fn the_api_server_calls_rudders_webhooks() {
    let kube = KubeApi::start();
    kube.install_crds();
    let dir = workdir("webhooks");
    let tls_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let (tls, flags) = TlsXds::prepare(&dir.path().join("identity"), tls_addr, "24h");
    let hook_addr = tls.webhook_addr;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &flags);
    let ca = base64(&std::fs::read(&tls.root_cert).expect("root certificate"));

    create_validator(&kube, hook_addr, &ca);
    create_injector(&kube, hook_addr, &ca);
    for (ns, labels) in [
        ("shop", json!({"istio-injection": "enabled"})),
        ("plain", json!({})),
    ] {
        kube.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}),
        );
    }

    let bad = bad_virtual_service_is_refused(&kube, &rudder);
    let vs = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";
    // The same object, fixed, is admitted.
    let mut good = bad.clone();
    good["spec"]["http"][0]["match"][0]["uri"]["regex"] = json!("/api/(v1)");
    kube.create(vs, &good);

    // A pod in the labelled namespace is mutated by the API server's call.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "example/web"}]},
    });
    let injected = kube.create("/api/v1/namespaces/shop/pods", &pod);
    let names = |field: &str| -> Vec<String> {
        injected["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    assert!(
        containers.contains(&"app".to_string()) && containers.contains(&"rudder-proxy".to_string()),
        "containers: {containers:?}\n{injected:#}"
    );
    assert!(
        names("initContainers").contains(&"rudder-init".to_string()),
        "{injected:#}"
    );
    assert_eq!(
        injected["metadata"]["labels"]["security.istio.io/tlsMode"], "istio",
        "{injected:#}"
    );
    // ...and a pod elsewhere is left alone.
    let plain = kube.create("/api/v1/namespaces/plain/pods", &pod);
    let containers = plain["spec"]["containers"].as_array().map_or(0, Vec::len);
    assert_eq!(
        containers, 1,
        "injected outside the labelled namespace: {plain:#}"
    );
    assert!(plain["spec"]["initContainers"].is_null(), "{plain:#}");
}

/// Webhook configurations applied with an EMPTY caBundle (the Helm chart's
/// default) work once Rudder has set it: one exists before Rudder starts,
/// the other is created after.
#[test]
fn rudder_sets_the_webhooks_ca_bundle() {
    let kube = KubeApi::start();
    kube.install_crds();
    let dir = workdir("webhook-ca-bundle");
    let tls_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let (tls, flags) = TlsXds::prepare(&dir.path().join("identity"), tls_addr, "24h");
    let hook_addr = tls.webhook_addr;
    create_validator(&kube, hook_addr, "");
    kube.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}}),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &flags);
    create_injector(&kube, hook_addr, "");

    let ca = base64(&std::fs::read(&tls.root_cert).expect("root certificate"));
    for (collection, name) in [
        (VALIDATING, "rudder-validator"),
        (MUTATING, "rudder-sidecar-injector"),
    ] {
        let path = format!("{collection}/{name}");
        let mut stored = Value::Null;
        let set = poll(std::time::Duration::from_secs(15), || {
            stored = kube.get(&path);
            (stored["webhooks"][0]["clientConfig"]["caBundle"] == json!(ca)).then_some(())
        });
        assert!(
            set.is_some(),
            "{name}: caBundle not set to the root: {stored:#}{}",
            rudder.log_tail(20)
        );
        let managers: Vec<&str> = stored["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["manager"].as_str())
            .collect();
        assert!(
            managers.contains(&"rudder"),
            "{name}: managers {managers:?}"
        );
    }

    // The API server now trusts the webhooks' certificate: a bad
    // VirtualService is refused by Rudder, a pod is injected.
    bad_virtual_service_is_refused(&kube, &rudder);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0"},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "example/web"}]},
    });
    let injected = kube.create("/api/v1/namespaces/shop/pods", &pod);
    assert_eq!(
        injected["spec"]["containers"]
            .as_array()
            .map_or(0, Vec::len),
        2,
        "{injected:#}"
    );
}
