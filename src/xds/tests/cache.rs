//! The shared resource cache, seen through its public API: proxies of one
//! shape share one translation, and an endpoints-only change reuses the
//! clusters, listeners and routes already generated.

use std::sync::Arc;

use super::harness::*;
use crate::model::{Proxy, Snapshot};
use crate::translate::ProxyShape;
use crate::xds::node::proxy_from_node;

fn proxy(id: &str) -> Proxy {
    proxy_from_node(Some(&node(id))).expect("a valid node")
}

fn latest(h: &Harness) -> Arc<Snapshot> {
    h.ctx.snapshots.borrow().clone()
}

/// Two shapes: sidecars in different namespaces (their route domains differ).
fn two_shapes(snapshot: &Snapshot) -> (ProxyShape, ProxyShape) {
    let demo = ProxyShape::of(snapshot, &proxy(NODE));
    let tools = ProxyShape::of(
        snapshot,
        &proxy("sidecar~198.18.0.7~probe-0.tools~tools.svc.cluster.local"),
    );
    (demo, tools)
}

#[tokio::test]
async fn proxies_of_one_shape_share_one_translation() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let snap = latest(&h);
    let (a, b) = (proxy(NODE), proxy(NODE_2));
    let shape = ProxyShape::of(&snap, &a);
    assert_eq!(
        shape,
        ProxyShape::of(&snap, &b),
        "two sidecars of one namespace, no inbound ports"
    );
    let first = h.ctx.cache.get(&snap, &shape).await;
    let second = h.ctx.cache.get(&snap, &ProxyShape::of(&snap, &b)).await;
    assert!(Arc::ptr_eq(&first, &second), "one translation for both");
}

#[tokio::test]
async fn endpoint_change_reuses_clusters_listeners_and_routes_for_every_shape() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let v1 = latest(&h);
    let (demo, tools) = two_shapes(&v1);
    assert_ne!(demo, tools);
    let demo1 = h.ctx.cache.get(&v1, &demo).await;
    let tools1 = h.ctx.cache.get(&v1, &tools).await;

    h.apply(&mesh(&["198.18.1.12"], API_IPS)).await;
    let v2 = latest(&h);
    assert_eq!(v2.version, v1.version + 1);
    assert!(v2.changes.endpoints_only(), "{:?}", v2.changes);
    let demo2 = h.ctx.cache.get(&v2, &demo).await;
    let tools2 = h.ctx.cache.get(&v2, &tools).await;

    assert!(
        !Arc::ptr_eq(&demo1.endpoints, &demo2.endpoints),
        "endpoints were regenerated"
    );
    assert!(
        Arc::ptr_eq(&demo2.endpoints, &tools2.endpoints),
        "one EDS map for everybody"
    );
    for (which, before, after) in [("demo", &demo1, &demo2), ("tools", &tools1, &tools2)] {
        assert!(
            Arc::ptr_eq(&before.clusters, &after.clusters)
                && Arc::ptr_eq(&before.listeners, &after.listeners)
                && Arc::ptr_eq(&before.routes, &after.routes),
            "shape {which}: an endpoints-only change must reuse CDS/LDS/RDS, not translate them again"
        );
    }
}

#[tokio::test]
async fn a_routing_change_shares_what_came_out_the_same() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let v1 = latest(&h);
    let (demo, tools) = two_shapes(&v1);
    let demo1 = h.ctx.cache.get(&v1, &demo).await;

    // A new service: every shape is translated again.
    h.apply(&mesh_of(Some(WEB_IPS), Some(API_IPS), true)).await;
    let v2 = latest(&h);
    assert!(!v2.changes.endpoints_only(), "{:?}", v2.changes);
    let demo2 = h.ctx.cache.get(&v2, &demo).await;
    let tools2 = h.ctx.cache.get(&v2, &tools).await;
    assert!(!Arc::ptr_eq(&demo1.clusters, &demo2.clusters));
    assert!(demo2.clusters.contains_key(SHOP) && !demo1.clusters.contains_key(SHOP));

    // Unchanged clusters and load assignments are the earlier allocations,
    // names included, across versions and across shapes.
    for name in [WEB, API] {
        let (k1, c1) = demo1.clusters.get_key_value(name).unwrap();
        let (k2, c2) = demo2.clusters.get_key_value(name).unwrap();
        assert!(
            Arc::ptr_eq(c1, c2) && Arc::ptr_eq(k1, k2),
            "{name} across versions"
        );
        assert!(
            Arc::ptr_eq(c2, &tools2.clusters[name]),
            "{name} across shapes"
        );
        assert!(
            Arc::ptr_eq(&demo1.endpoints[name], &demo2.endpoints[name]),
            "{name}'s load assignment across versions"
        );
    }
    // The endpoint delta names only what differs.
    let delta = demo2
        .endpoints_delta
        .as_ref()
        .expect("a delta from v1's map");
    assert!(Arc::ptr_eq(&delta.from, &demo1.endpoints));
    let changed: Vec<&str> = delta.changed.iter().map(|n| &**n).collect();
    assert!(changed.contains(&SHOP), "{changed:?}");
    assert!(
        !changed.contains(&WEB) && !changed.contains(&API),
        "{changed:?}"
    );
}
