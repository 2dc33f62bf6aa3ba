//! Identity in a cluster, against a real kube-apiserver: `rudder serve --kube
//! --ca-dir` with no token key publishes its root as ConfigMap
//! `rudder-ca-root-cert` in every namespace (also ones created later), and
//! authenticates proxies by Kubernetes TokenReview. A real Envoy that trusts
//! the published root and sends a real projected token (TokenRequest) for
//! demo/web gets web's SPIFFE certificate; a valid token for demo/other
//! cannot claim web.
//!
//! With `--ca-secret`, the CA lives in a Secret: the first Rudder generates
//! the root and creates the Secret, a restarted one loads the same root.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::mtls::assert_starved;
use crate::support::kube::KubeApi;
use crate::support::*;

const NS: &str = "demo";
const CONFIG_MAP: &str = "rudder-ca-root-cert";

/// The ConfigMap's `root-cert.pem` in `ns`, once it exists.
pub(crate) fn published_root(kube: &KubeApi, ns: &str) -> String {
    let path = format!("/api/v1/namespaces/{ns}/configmaps/{CONFIG_MAP}");
    wait_for(
        &format!("{CONFIG_MAP} in namespace {ns}"),
        Duration::from_secs(20),
        || match kube.request("GET", &path, None) {
            (200, cm) => cm["data"]["root-cert.pem"].as_str().map(str::to_string),
            _ => None,
        },
    )
}

/// A projected-style token for `sa` in [`NS`], audience `rudder`, from the
/// API server's TokenRequest.
fn token_for(kube: &KubeApi, sa: &str) -> String {
    let answer = kube.create(
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/{sa}/token"),
        &json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": ["rudder"], "expirationSeconds": 3600},
        }),
    );
    answer["status"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {answer:#}"))
        .to_string()
}

#[test]
fn kube_identity_root_cert_config_maps_and_token_review() {
    let kube = KubeApi::start();
    kube.install_crds();
    let dir = workdir("kube-identity");
    let tls_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let (mut tls, flags) = TlsXds::prepare_kube(&dir.path().join("identity"), tls_addr, "24h");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let rudder = spawn_rudder_kube(&kube.kubeconfig, &flags);
    let ca_root = std::fs::read_to_string(&tls.root_cert).expect("Rudder's root certificate");

    // Namespaces that exist at start, and one created afterwards.
    assert_eq!(published_root(&kube, "default").trim(), ca_root.trim());
    kube.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let published = published_root(&kube, NS);
    assert_eq!(published.trim(), ca_root.trim());
    let cm = kube.get(&format!("/api/v1/namespaces/{NS}/configmaps/{CONFIG_MAP}"));
    let managers: Vec<&Value> = cm["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| &f["manager"])
        .collect();
    assert!(
        managers.iter().all(|m| *m == "rudder"),
        "written by {managers:?}"
    );

    // The mesh: a Service, so the sidecar has a cluster that wants its
    // certificate; the accounts the tokens name.
    kube.create(
        &format!("/api/v1/namespaces/{NS}/services"),
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 8080, "targetPort": 9080}]},
        }),
    );
    for sa in ["web", "other"] {
        kube.create(
            &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": sa, "namespace": NS}}),
        );
    }

    // The sidecar trusts what the ConfigMap says, as a mounted one would.
    tls.root_cert = dir.path().join("mounted-root-cert.pem");
    std::fs::write(&tls.root_cert, &published).unwrap();

    let web = tls.spawn_envoy(dir.path(), "web", &token_for(&kube, "web"));
    web.wait_for("web's certificate", Duration::from_secs(30), |e| {
        e.try_admin_get("/certs")
            .is_ok_and(|(_, certs)| certs.contains("spiffe://cluster.local/ns/demo/sa/web"))
    });

    // A real token for demo/other, claiming web: refused.
    let intruder = tls.spawn_envoy(dir.path(), "web", &token_for(&kube, "other"));
    assert_starved(&intruder, "a token for demo/other claiming demo/web");
    rudder
        .proc
        .wait_for_log("checked by Kubernetes TokenReview", Duration::from_secs(1));
    let log = rudder.proc.log();
    assert!(
        log.contains("but its token is for namespace \"demo\" and service account \"other\""),
        "Rudder did not say why it refused:{}",
        rudder.log_tail(60)
    );

    // A token that is not a real token: the API server's refusal, not a pass.
    let forged = tls.spawn_envoy(dir.path(), "web", "not.a-token.at-all");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !forged.admin_get("/certs").contains("spiffe://"),
        "a forged token got a certificate"
    );
    rudder.proc.wait_for_log(
        "the Kubernetes API server did not authenticate the token",
        Duration::from_secs(10),
    );
    let (_, certz) = rudder.admin_get("/debug/certz");
    assert!(!certz.contains("sa/other"), "issued for other: {certz}");
}

/// The `root-cert.pem` and `root-key.pem` of the Secret at `path`, once it
/// exists.
pub(crate) fn secret_root(kube: &KubeApi, path: &str) -> (String, Value) {
    let secret = wait_for(
        &format!("Secret {path}"),
        Duration::from_secs(20),
        || match kube.request("GET", path, None) {
            (200, secret) => Some(secret),
            _ => None,
        },
    );
    let data = &secret["data"];
    assert!(
        data["root-key.pem"].is_string(),
        "no root-key.pem: {secret:#}"
    );
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data["root-cert.pem"].as_str().expect("root-cert.pem"))
        .unwrap();
    (String::from_utf8(pem).unwrap(), secret)
}

#[test]
fn kube_identity_ca_secret_is_created_once_and_reloaded() {
    let kube = KubeApi::start();
    kube.install_crds();
    kube.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rudder-system"}}),
    );
    let dir = workdir("kube-ca-secret");
    let start = || {
        let tls_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let (_, flags) = TlsXds::prepare_kube(&dir.path().join("identity"), tls_addr, "24h");
        // The Secret instead of a directory.
        assert_eq!(flags[0], "--ca-dir");
        let mut flags: Vec<&str> = flags[2..].iter().map(String::as_str).collect();
        flags.extend(["--ca-secret", "rudder-system/rudder-ca"]);
        spawn_rudder_kube(&kube.kubeconfig, &flags)
    };
    let secret_path = "/api/v1/namespaces/rudder-system/secrets/rudder-ca";
    assert_eq!(kube.request("GET", secret_path, None).0, 404);

    // First start: Rudder generates the root and stores it in a new Secret.
    let first = start();
    let (root, secret) = secret_root(&kube, secret_path);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "rudder"
    );
    assert_eq!(published_root(&kube, "default").trim(), root.trim());
    let created = secret["metadata"]["resourceVersion"].clone();
    assert!(
        !dir.path().join("identity/ca").exists(),
        "--ca-secret wrote the CA to --ca-dir's place"
    );
    drop(first);

    // Restart: the same root, from the Secret, which stays as it was.
    let cm = format!("/api/v1/namespaces/default/configmaps/{CONFIG_MAP}");
    kube.expect("DELETE", &cm, None, &[200]);
    let second = start();
    second.proc.wait_for_log(
        "loading the mesh CA from its Secret",
        Duration::from_secs(5),
    );
    assert_eq!(published_root(&kube, "default").trim(), root.trim());
    let (again, secret) = secret_root(&kube, secret_path);
    assert_eq!(again, root);
    assert_eq!(secret["metadata"]["resourceVersion"], created);
    let (_, certz) = second.admin_get("/debug/certz");
    assert!(certz.contains("\"source\":\"SelfSigned\""), "{certz}");
}
