//! The mesh ConfigMap followed live, against a real kube-apiserver and a real
//! Envoy: creating `istio-system/istio` with `accessLogFile` turns Envoy's
//! access log on without restarting anything; an invalid edit is refused,
//! reported on `/debug/configz`, and the last good config stays; deleting
//! the ConfigMap goes back to Istio's defaults (no access log).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::kube::KubeApi;
use crate::support::*;

const CONFIG_MAP: &str = "/api/v1/namespaces/istio-system/configmaps";
const SETTLE: Duration = Duration::from_secs(30);

fn mesh_config_map(mesh: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": mesh},
    })
}

/// Sends one request with a path of its own through Envoy's listener for
/// `web` and reports whether Envoy logged it. The Service has no endpoints,
/// so the answer is Envoy's own 503: the log line is what is looked at.
fn logged(envoy: &Envoy, svc_port: u16, tag: &str) -> bool {
    let path = format!("/{tag}");
    let (status, body) = http_get(&format!("http://127.0.0.1:{svc_port}{path}"), Some("web"));
    assert_eq!(
        status, 503,
        "web has no endpoints, Envoy answers itself: {body}"
    );
    // Written as the request completes and flushed every 100 ms (the test
    // Envoys' --file-flush-interval-msec); allow it a moment.
    poll(Duration::from_secs(2), || {
        envoy
            .proc
            .log()
            .contains(&format!("\"GET {path} HTTP/1.1\" 503"))
            .then_some(())
    })
    .is_some()
}

#[test]
fn kube_mesh_config_edits_apply_live_and_bad_ones_are_refused() {
    let kube = KubeApi::start();
    kube.install_crds();
    for ns in ["istio-system", "demo"] {
        kube.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    let svc_port = free_port();
    kube.create(
        "/api/v1/namespaces/demo/services",
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"ports": [{"name": "http", "port": svc_port}]},
        }),
    );

    // No ConfigMap: Istio's defaults, so no access log.
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &[]);
    let envoy = spawn_envoy(
        "sidecar~127.0.0.5~client-0.demo~demo.svc.cluster.local",
        rudder.xds_addr,
        false,
        &["--meta", "INTERCEPTION_MODE=NONE"],
    );
    envoy.wait_ready();
    let context = || format!("{}{}", rudder.log_tail(30), envoy.log_tail(10));
    wait_until("Envoy has web's listener", SETTLE, || {
        matches!(
            try_http_get(&format!("http://127.0.0.1:{svc_port}/"), Some("web")),
            Ok((503, _))
        )
    });
    assert!(
        !logged(&envoy, svc_port, "before"),
        "an access log without a mesh config{}",
        context()
    );

    // Created: the access log comes on, with no restart.
    kube.create(CONFIG_MAP, &mesh_config_map("accessLogFile: /dev/stdout\n"));
    let mut n = 0;
    let on = poll(SETTLE, || {
        n += 1;
        logged(&envoy, svc_port, &format!("on-{n}")).then_some(())
    });
    assert!(
        on.is_some(),
        "accessLogFile did not take effect{}",
        context()
    );

    // An invalid edit: refused with the ConfigMap, field and reason; the
    // last good config (access log on) stays.
    let mut bad =
        mesh_config_map("accessLogFile: \"\"\noutboundTrafficPolicy: {mode: SOMETIMES}\n");
    bad["metadata"]["resourceVersion"] =
        kube.get(&format!("{CONFIG_MAP}/istio"))["metadata"]["resourceVersion"].clone();
    kube.expect("PUT", &format!("{CONFIG_MAP}/istio"), Some(&bad), &[200]);
    let mut configz = Value::Null;
    let refused = poll(SETTLE, || {
        let (_, body) = rudder.admin_get("/debug/configz");
        configz = serde_json::from_str(&body).unwrap_or_default();
        configz["rejected"]
            .as_array()?
            .iter()
            .find(|r| r["object"] == "ConfigMap istio-system/istio")
            .cloned()
    });
    let refused = refused
        .unwrap_or_else(|| panic!("no rejection on /debug/configz: {configz:#}{}", context()));
    assert_eq!(refused["field"], "data.mesh", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("outboundTrafficPolicy.mode"),
        "{refused}"
    );
    assert!(
        logged(&envoy, svc_port, "still-on"),
        "the refused edit replaced the last good config{}",
        context()
    );

    // Deleted: back to the defaults, and the refusal is gone with it.
    kube.expect("DELETE", &format!("{CONFIG_MAP}/istio"), None, &[200]);
    let mut n = 0;
    let off = poll(SETTLE, || {
        n += 1;
        (!logged(&envoy, svc_port, &format!("off-{n}"))).then_some(())
    });
    assert!(
        off.is_some(),
        "the access log stayed on after the ConfigMap went{}",
        context()
    );
    let (_, body) = rudder.admin_get("/debug/configz");
    assert!(
        !body.contains("kube:ConfigMap/istio-system/istio"),
        "{body}"
    );
}
