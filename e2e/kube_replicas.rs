//! Two replicas against a real kube-apiserver, as the Helm chart runs them
//! (`replicas: 2`, `--ca-secret`): started at the same moment, they race to
//! create the CA Secret and both end up with the one root; both serve, one
//! holds the leader Lease and makes the cluster-wide writes. Those include
//! the status of an invalid VirtualService that reached the store (no
//! validating webhook here): a condition naming the field, removed when the
//! object is fixed. When the leader dies without releasing the Lease, the
//! other takes over and keeps writing; one stopped cleanly releases it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::kube_identity::{published_root, secret_root};
use crate::support::kube::KubeApi;
use crate::support::*;

const NS: &str = "rudder-system";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/rudder-system/leases/rudder-leader";
const VS: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";

fn start_replica(kube: &KubeApi, dir: &std::path::Path, name: &str) -> Rudder {
    let tls_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let (_, flags) = TlsXds::prepare_kube(&dir.join(name), tls_addr, "24h");
    // The Secret instead of a directory, as the chart runs it.
    assert_eq!(flags[0], "--ca-dir");
    let mut flags: Vec<&str> = flags[2..].iter().map(String::as_str).collect();
    flags.extend([
        "--ca-secret",
        "rudder-system/rudder-ca",
        "--leader-election-namespace",
        NS,
        // Short, so a takeover after a crash is quick to watch.
        "--leader-lease-duration",
        "3s",
    ]);
    launch_rudder_kube(&kube.kubeconfig, &flags)
}

/// `rudder_leader` from the replica's /metrics.
fn leads(rudder: &Rudder) -> bool {
    let (code, metrics) = rudder.admin_get("/metrics");
    assert_eq!(code, 200, "{metrics}");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("rudder_leader "))
        .unwrap_or_else(|| panic!("no rudder_leader in /metrics:\n{metrics}"));
    line.ends_with(" 1")
}

fn trust_bundle_digest(rudder: &Rudder) -> String {
    let (_, certz) = rudder.admin_get("/debug/certz");
    let certz: Value = serde_json::from_str(&certz).expect("certz is JSON");
    certz["ca"]["trust_bundle_sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no trust bundle digest: {certz}"))
        .to_string()
}

/// Waits until exactly one of `replicas` reports leading; its index.
fn the_leader(replicas: &[&Rudder], kube: &KubeApi) -> usize {
    let mut last = Vec::new();
    poll(Duration::from_secs(30), || {
        last = replicas.iter().map(|r| leads(r)).collect();
        match last.iter().filter(|l| **l).count() {
            1 => last.iter().position(|l| *l),
            _ => None,
        }
    })
    .unwrap_or_else(|| {
        panic!(
            "not exactly one leader within 30s: {last:?}; lease {}{}",
            kube.request("GET", LEASE, None).1,
            replicas.iter().map(|r| r.log_tail(15)).collect::<String>()
        )
    })
}

/// The condition Rudder writes on a refused object, once there.
fn refusal(kube: &KubeApi, name: &str, rudder: &Rudder) -> Value {
    let path = format!("{VS}/{name}");
    let mut last = Value::Null;
    poll(Duration::from_secs(20), || {
        last = kube.get(&path);
        last["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Accepted")
            .cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "no Accepted condition on {path} within 20s: {:#}{}",
            last["status"],
            rudder.log_tail(20)
        )
    })
}

fn invalid_virtual_service(name: &str) -> Value {
    // RE2 cannot compile this regex; the CRD schema cannot tell.
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"hosts": ["reviews"], "http": [{
            "match": [{"uri": {"regex": "/api/(v1"}}],
            "route": [{"destination": {"host": "reviews"}}],
        }]},
    })
}

#[test]
fn kube_replicas_share_one_ca_and_one_leader_writes() {
    let kube = KubeApi::start();
    kube.install_crds();
    for ns in [NS, "shop"] {
        kube.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    let dir = workdir("kube-replicas");

    // Both at once: each finds no Secret, and one loses the create (409)
    // and must load the winner's root instead of serving its own.
    let a = start_replica(&kube, dir.path(), "a");
    let b = start_replica(&kube, dir.path(), "b");
    a.wait_healthy();
    b.wait_healthy();
    let (root, _) = secret_root(&kube, "/api/v1/namespaces/rudder-system/secrets/rudder-ca");
    assert_eq!(
        trust_bundle_digest(&a),
        trust_bundle_digest(&b),
        "the replicas serve different roots{}{}",
        a.log_tail(20),
        b.log_tail(20)
    );
    assert_eq!(published_root(&kube, "shop").trim(), root.trim());

    // One leader, named in the Lease.
    let leader = the_leader(&[&a, &b], &kube);
    let lease = kube.get(LEASE);
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    let (leading, other) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    let own_identity = |r: &Rudder| {
        r.proc
            .log()
            .lines()
            .any(|l| l.contains("competing for the leader lease") && l.contains(holder))
    };
    assert!(
        own_identity(leading) && !own_identity(other),
        "the Lease holder {holder:?} is not the replica reporting leadership"
    );

    // An invalid object in the store (no webhook refused it) gets a status
    // naming the field and the reason, and Istio's IST0106.
    kube.create(VS, &invalid_virtual_service("reviews"));
    let condition = refusal(&kube, "reviews", leading);
    assert_eq!(condition["status"], "False", "{condition}");
    assert_eq!(condition["reason"], "Invalid", "{condition}");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.http[0].match[0].uri") && message.contains("regex"),
        "the message does not name the field and reason: {message}"
    );
    let stored = kube.get(&format!("{VS}/reviews"));
    assert_eq!(
        stored["status"]["validationMessages"][0]["type"]["code"], "IST0106",
        "{:#}",
        stored["status"]
    );
    assert_eq!(
        stored["status"]["observedGeneration"],
        stored["metadata"]["generation"]
    );

    // Fixed, the object's status loses Rudder's entries.
    let mut fixed = stored.clone();
    fixed["spec"]["http"][0]["match"][0]["uri"] = json!({"prefix": "/api/v1"});
    kube.expect("PUT", &format!("{VS}/reviews"), Some(&fixed), &[200]);
    let mut last = Value::Null;
    let cleared = poll(Duration::from_secs(20), || {
        last = kube.get(&format!("{VS}/reviews"));
        (last["status"]["conditions"].is_null() && last["status"]["validationMessages"].is_null())
            .then_some(())
    });
    assert!(
        cleared.is_some(),
        "status not cleared after the fix: {:#}{}",
        last["status"],
        leading.log_tail(20)
    );

    // The leader dies without releasing the Lease: the other replica takes
    // over once it expires, and makes the writes from then on.
    let leading_name = leading.proc.name().to_string();
    leading.proc.kill();
    assert!(
        poll(Duration::from_secs(30), || leads(other).then_some(())).is_some(),
        "{} did not take over after {leading_name} died; lease {}{}",
        other.proc.name(),
        kube.request("GET", LEASE, None).1,
        other.log_tail(20)
    );
    kube.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late"}}),
    );
    assert_eq!(published_root(&kube, "late").trim(), root.trim());
    kube.create(VS, &invalid_virtual_service("ratings"));
    let condition = refusal(&kube, "ratings", other);
    assert_eq!(condition["reason"], "Invalid", "{condition}");

    // Stopped cleanly, the new leader hands the Lease back rather than
    // leaving it to expire.
    assert!(
        other.proc.terminate(Duration::from_secs(10)).is_some(),
        "{} did not exit on SIGTERM{}",
        other.proc.name(),
        other.log_tail(20)
    );
    let lease = kube.get(LEASE);
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease is still held after a clean stop: {lease}{}",
        other.log_tail(20)
    );
}
