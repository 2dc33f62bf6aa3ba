//! Restarting the kube-apiserver under Rudder loses nothing (issue 8).
//!
//! Rudder watches a real API server holding kube_flow.rs's mesh. The API
//! server is killed (etcd and its data stay) and later started again on the
//! same address. While it is down, Rudder keeps serving its last good
//! config: it stays ready, publishes nothing new, and an Envoy that connects
//! only then still gets the whole mesh and routes real requests by the
//! VirtualService. Once the API server is back, edits made at once (before
//! the watchers are back) reach real traffic as the watchers reconnect by
//! themselves, and every object accepted before is still accepted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::kube_flow::{
    endpoint_slice, ns_path, pod, ready_envoy, route_web, service, wait_only, wait_only_at,
    KubeMesh, BACKEND_PORT, NS,
};
use crate::support::*;

/// How long Rudder may take to follow edits made right after the restart.
/// Its watchers retry with kube-rs's default backoff: 0.8s doubling up to
/// 30s, each wait stretched by up to 100% jitter, so up to 60s. A watcher
/// may sleep one such wait before it tries to resume its watch, which the
/// restarted API server may answer with 410 Gone (its fresh watch cache
/// starts after the version Rudder holds), and then another (the backoff
/// does not reset on that answer) before it relists.
const RECONNECT: Duration = Duration::from_secs(2 * 60 + 10);
/// For what needs Rudder alone: noticing the outage, serving a new Envoy.
const SERVE: Duration = Duration::from_secs(30);

/// Rudder's accepted objects (e.g. `VirtualService demo/web`) and its
/// snapshot version, from /debug/configz.
fn accepted(rudder: &Rudder) -> (BTreeSet<String>, Value) {
    let configz = rudder.configz();
    let objects = configz["accepted"].as_array().map_or_else(Vec::new, |a| {
        a.iter()
            .filter_map(|o| o["object"].as_str().map(str::to_string))
            .collect()
    });
    (objects.into_iter().collect(), configz["version"].clone())
}

/// Waits until every kind Rudder watches has logged a watch failure after
/// byte `offset` of its log (lines like `watch failed; ... kind="Service"`).
fn wait_every_watch_failed(rudder: &Rudder, offset: usize) {
    let all: BTreeSet<&str> = ::rudder::source::kube::watched_kinds()
        .iter()
        .map(|w| w.kind.name())
        .collect();
    let mut missing = BTreeSet::new();
    let done = poll(SERVE, || {
        rudder.proc.assert_running("the API server went away");
        let log = rudder.proc.log();
        let failed: BTreeSet<&str> = log
            .get(offset..)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("watch failed; retrying"))
            .filter_map(|line| line.split("kind=\"").nth(1)?.split('"').next())
            .collect();
        missing = all.difference(&failed).map(|k| k.to_string()).collect();
        missing.is_empty().then_some(())
    });
    assert!(
        done.is_some(),
        "within {SERVE:?} of stopping the API server, no watch failure logged for \
         {missing:?}{}",
        rudder.log_tail(40)
    );
}

#[test]
fn kube_apiserver_restart_loses_nothing() {
    let mut mesh = KubeMesh::start("kube_restart");
    let svc_port = mesh.svc_port;
    let rudder = spawn_rudder_kube(&mesh.kube.kubeconfig, &[]);
    let envoy = ready_envoy(&rudder);
    let context = || format!("{}{}", rudder.log_tail(30), envoy.log_tail(10));
    wait_only(svc_port, "web-v1", "before the restart, to v1", context);
    let (before, version) = accepted(&rudder);

    // Down: every watch breaks, and every watcher starts retrying.
    let offset = rudder.proc.log().len();
    mesh.kube.stop_apiserver();
    let stopped = Instant::now();
    wait_every_watch_failed(&rudder, offset);

    // A control plane that has synced keeps serving what it has: unready,
    // it would leave its Service's endpoints, and an API server outage
    // would become a mesh outage for every proxy that (re)connects.
    let (status, ready) = rudder.admin_get("/ready");
    assert_eq!(
        status,
        200,
        "/ready with the API server down: {ready}{}",
        rudder.log_tail(30)
    );
    let (during, during_version) = accepted(&rudder);
    assert_eq!(
        (&during, &during_version),
        (&before, &version),
        "the outage changed what Rudder serves{}",
        rudder.log_tail(30)
    );
    // The running Envoy would keep its config even without Rudder; a fresh
    // one shows that Rudder itself still serves all of it.
    drop(envoy);
    let envoy = ready_envoy(&rudder);
    let context = || format!("{}{}", rudder.log_tail(30), envoy.log_tail(10));
    wait_only_at(
        ("web", svc_port),
        SERVE,
        "web-v1",
        "a new Envoy while the API server is down",
        context,
    );
    rudder.proc.assert_running("the API server was down");

    // Back on the same address, certificates and etcd. The edits are made
    // at once, while the watchers most likely still back off, so they
    // arrive by resumed or relisted watches. Traffic shows three kinds: the VirtualService now sends to
    // every endpoint of `web`, whose slice loses v1, and a new Service
    // `web-next` has v1. The other kinds that hold objects get one new
    // object each, so /debug/configz shows when their watchers are back.
    let startup = mesh.kube.start_apiserver();
    let kube = &mesh.kube;
    let back = Instant::now();
    let downtime = back - stopped;
    route_web(kube, json!({"host": "web"}));
    let v2_only = [("web-v2", mesh.v2.ip())];
    kube.apply(
        &ns_path("endpointslices"),
        &endpoint_slice("web", BACKEND_PORT, &v2_only),
    );
    let next_port = free_port();
    kube.apply(
        &ns_path("services"),
        &service("web-next", next_port, BACKEND_PORT),
    );
    let v1_only = [("web-v1", mesh.v1.ip())];
    kube.apply(
        &ns_path("endpointslices"),
        &endpoint_slice("web-next", BACKEND_PORT, &v1_only),
    );
    kube.apply(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo-next"}}),
    );
    kube.apply(&ns_path("pods"), &pod("web-v3", "v3"));
    kube.apply(
        &ns_path("destinationrules"),
        &json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web-next", "namespace": NS},
            "spec": {"host": "web-next"},
        }),
    );
    let created: BTreeSet<String> = [
        format!("Service {NS}/web-next"),
        format!("EndpointSlice {NS}/web-next-1"),
        "Namespace demo-next".to_string(),
        format!("Pod {NS}/web-v3"),
        format!("DestinationRule {NS}/web-next"),
    ]
    .into();

    let context = || {
        let configz = rudder.admin_get("/debug/configz").1;
        format!(
            "\n/debug/configz: {configz}{}{}{}",
            rudder.log_tail(40),
            envoy.log_tail(10),
            kube.log_tails()
        )
    };
    let left = || RECONNECT.saturating_sub(back.elapsed());
    // Only v2: the VirtualService edit alone would also reach v1, the
    // slice edit alone would leave subset v1 without endpoints (503).
    wait_only_at(
        ("web", svc_port),
        left(),
        "web-v2",
        "edits right after the API server restart",
        context,
    );
    wait_only_at(
        ("web-next", next_port),
        left(),
        "web-v1",
        "a Service created right after the API server restart",
        context,
    );
    let followed = back.elapsed();

    // Nothing lost: once every kind holding objects shows its new one
    // (its watch resumed, or it relisted), everything accepted before is
    // still accepted.
    let expected: BTreeSet<String> = before.union(&created).cloned().collect();
    let mut after = BTreeSet::new();
    let complete = poll(left(), || {
        after = accepted(&rudder).0;
        (after == expected).then_some(())
    });
    assert!(
        complete.is_some(),
        "within {RECONNECT:?} of the restart: lost {:?}, created but not seen {:?}, \
         unexpected {:?}{}",
        before.difference(&after).collect::<Vec<_>>(),
        created.difference(&after).collect::<Vec<_>>(),
        after.difference(&expected).collect::<Vec<_>>(),
        context()
    );
    let caught_up = back.elapsed();
    let (status, ready) = rudder.admin_get("/ready");
    assert_eq!(
        status,
        200,
        "/ready after the restart: {ready}{}",
        context()
    );
    println!(
        "kube-apiserver down {downtime:?} (its restart took {startup:?}); once it was back, \
         traffic followed the edits in {followed:?} and every kind was caught up in \
         {caught_up:?}"
    );
}
