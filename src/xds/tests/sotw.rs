//! State-of-the-World ADS, as Envoy drives it.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::route::v3::{route, route_action, RouteConfiguration};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::harness::*;

const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

fn route_config(
    resources: &[envoy_types::pb::google::protobuf::Any],
    name: &str,
) -> RouteConfiguration {
    resources
        .iter()
        .map(decode::<RouteConfiguration>)
        .find(|r| r.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no route configuration {name:?} among {:?}",
                names(resources)
            )
        })
}

/// The cluster the virtual host answering to `domain` routes to.
fn routed_cluster(rc: &RouteConfiguration, domain: &str) -> String {
    let vhost = rc
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == domain))
        .unwrap_or_else(|| panic!("no virtual host for {domain:?} in route config {}", rc.name));
    match &vhost.routes[0].action {
        Some(route::Action::Route(action)) => match &action.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
            other => panic!("unexpected cluster specifier {other:?}"),
        },
        other => panic!("unexpected route action {other:?}"),
    }
}

#[tokio::test]
async fn initial_requests_get_istio_named_clusters_endpoints_listeners_and_routes() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;

    envoy.request(CDS, &[]).await;
    let cds = envoy.recv_type(CDS).await;
    assert_clusters(&names(&cds.resources), &[API, WEB]);
    assert!(
        !cds.version_info.is_empty() && !cds.nonce.is_empty(),
        "{}",
        describe(&cds)
    );
    let clusters: Vec<Cluster> = cds.resources.iter().map(decode).collect();
    let web = clusters
        .iter()
        .find(|c| c.name == WEB)
        .expect("web cluster");
    assert_eq!(
        web.eds_cluster_config
            .as_ref()
            .expect("an EDS cluster")
            .service_name,
        WEB
    );
    assert!(
        !web.typed_extension_protocol_options
            .contains_key(HTTP_OPTIONS),
        "http/1.1 upstream"
    );
    let api = clusters
        .iter()
        .find(|c| c.name == API)
        .expect("api cluster");
    assert!(
        api.typed_extension_protocol_options
            .contains_key(HTTP_OPTIONS),
        "grpc needs HTTP/2 upstream"
    );
    assert_eq!(eds_names(&cds.resources), sorted(&[API, WEB]));

    // Envoy asks for the EDS clusters' endpoints, then ACKs CDS.
    envoy.request(EDS, &[WEB, API]).await;
    envoy.ack(&cds).await;
    let eds = envoy.recv_type(EDS).await;
    assert_eq!(names(&eds.resources), sorted(&[API, WEB]));
    assert_eq!(
        addresses(&assignment(&eds.resources, WEB)),
        ["198.18.1.10:9080", "198.18.1.11:9080"]
    );
    assert_eq!(
        addresses(&assignment(&eds.resources, API)),
        ["198.18.2.10:9090"]
    );
    envoy.ack(&eds).await;

    envoy.request(LDS, &[]).await;
    let lds = envoy.recv_type(LDS).await;
    assert_eq!(names(&lds.resources), ["127.0.0.1_8080", "127.0.0.1_9090"]);
    assert_eq!(rds_names(&lds.resources), ["8080", "9090"]);

    envoy.request(RDS, &["8080", "9090"]).await;
    envoy.ack(&lds).await;
    let rds = envoy.recv_type(RDS).await;
    assert_eq!(names(&rds.resources), ["8080", "9090"]);
    let rc = route_config(&rds.resources, "8080");
    let vhost = rc
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == "web"))
        .expect("a virtual host for web");
    for domain in [
        "web",
        "web.demo",
        "web.demo.svc",
        "web.demo.svc.cluster.local",
        "198.19.0.10",
    ] {
        assert!(
            vhost.domains.iter().any(|d| d == domain),
            "{domain} missing from {:?}",
            vhost.domains
        );
    }
    // `Host: web.demo:8080` finds `web.demo`: the port is ignored, as in
    // Istio, so no domain carries one.
    assert!(rc.ignore_port_in_host_matching);
    assert!(
        vhost.domains.iter().all(|d| !d.ends_with(":8080")),
        "{:?}",
        vhost.domains
    );
    assert_eq!(routed_cluster(&rc, "web.demo"), WEB);
    assert_eq!(
        routed_cluster(&route_config(&rds.resources, "9090"), "api"),
        API
    );
    envoy.ack(&rds).await;
    envoy.assert_silent("after every response was ACKed").await;
}

#[tokio::test]
async fn ack_gets_no_response_and_is_recorded_per_type() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    let warm = envoy.warm_up().await;
    envoy.assert_silent("after ACKs").await;

    let status = h.only_status(NODE);
    assert_eq!(status.protocol, "sotw");
    assert_eq!(status.snapshot_version, h.version());
    for (t, r) in [
        (CDS, &warm.cds),
        (EDS, &warm.eds),
        (LDS, &warm.lds),
        (RDS, &warm.rds),
    ] {
        let s = &status.types[&t];
        assert_eq!(
            s.acked_version,
            r.version_info,
            "{} acked version",
            t.short()
        );
        assert_eq!(s.acked_nonce, r.nonce, "{} acked nonce", t.short());
        assert_eq!(s.sent_nonce, r.nonce, "{} sent nonce", t.short());
        assert_eq!(s.sent_version, r.version_info, "{} sent version", t.short());
        assert_eq!(
            s.resource_count,
            r.resources.len(),
            "{} resources held",
            t.short()
        );
        assert_eq!(s.nack_count, 0);
        assert!(s.last_nack.is_none());
    }
}

#[tokio::test]
async fn nack_is_recorded_and_the_refused_content_is_not_resent() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.request(CDS, &[]).await;
    let refused = envoy.recv_type(CDS).await;

    const REASON: &str =
        "Error adding/updating cluster(s) outbound|8080||web.demo.svc.cluster.local: \
                          Proto constraint validation failed";
    envoy.nack(&refused, REASON).await;
    envoy
        .assert_silent("after a NACK, with nothing changed")
        .await;

    let s = h.only_status(NODE).types[&CDS].clone();
    assert_eq!(s.nack_count, 1);
    let nack = s.last_nack.expect("the NACK is recorded");
    assert_eq!(nack.message, REASON);
    assert_eq!(nack.nonce, refused.nonce);
    assert_eq!(nack.code, tonic::Code::InvalidArgument as i32);
    assert_eq!(s.acked_nonce, "", "a NACK is not an ACK");
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("rudder_xds_nacks_total{type=\"cds\"} 1"),
        "{metrics}"
    );

    // New content is sent once the mesh changes.
    h.apply(&mesh_of(Some(WEB_IPS), Some(API_IPS), true)).await;
    let next = envoy.recv_type(CDS).await;
    assert!(
        names(&next.resources).contains(&SHOP.to_string()),
        "{}",
        describe(&next)
    );
    assert_ne!(next.version_info, refused.version_info);
    envoy.ack(&next).await;
    envoy.assert_silent("after ACKing the new content").await;
    let s = h.only_status(NODE).types[&CDS].clone();
    assert_eq!(s.acked_version, next.version_info);
    assert_eq!(s.nack_count, 1, "the old NACK stays counted");
}

#[tokio::test]
async fn endpoint_change_pushes_only_the_changed_load_assignment() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    let warm = envoy.warm_up().await;
    envoy.assert_silent("after warm-up").await;

    h.apply(&mesh(&["198.18.1.10", "198.18.1.12"], API_IPS))
        .await;
    let pushed = envoy.recv_burst().await;
    let seen: Vec<String> = pushed.iter().map(describe).collect();
    assert_eq!(
        types(&pushed),
        ["eds"],
        "one EDS push and nothing else: {seen:?}"
    );
    let eds = &pushed[0];
    assert_eq!(names(&eds.resources), [WEB], "only web's endpoints changed");
    assert_eq!(
        addresses(&assignment(&eds.resources, WEB)),
        ["198.18.1.10:9080", "198.18.1.12:9080"]
    );
    assert_ne!(eds.version_info, warm.eds.version_info);
    assert_ne!(eds.nonce, warm.eds.nonce);
}

#[tokio::test]
async fn new_service_pushes_clusters_first_then_endpoints_listeners_and_routes() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.warm_up().await;

    // Add `shop` (8080, shared with web, and a new 7070) and move web's endpoints.
    h.apply(&mesh_of(Some(&["198.18.1.12"]), Some(API_IPS), true))
        .await;
    let pushed = envoy.recv_burst().await;
    let seen: Vec<String> = pushed.iter().map(describe).collect();
    assert_eq!(types(&pushed), ["cds", "eds", "lds", "rds"], "{seen:?}");

    let cds = &pushed[0];
    // CDS is always the full set, unchanged clusters included.
    assert_clusters(&names(&cds.resources), &[API, WEB, SHOP, SHOP_ADMIN]);
    let eds = &pushed[1];
    assert_eq!(
        names(&eds.resources),
        [WEB],
        "shop's endpoints are not subscribed yet"
    );
    let lds = &pushed[2];
    assert_eq!(
        names(&lds.resources),
        ["127.0.0.1_7070", "127.0.0.1_8080", "127.0.0.1_9090"],
        "LDS is always the full set"
    );
    let rds = &pushed[3];
    assert_eq!(
        names(&rds.resources),
        ["8080"],
        "only the changed, subscribed route config"
    );
    assert_eq!(
        routed_cluster(&route_config(&rds.resources, "8080"), "shop.demo"),
        SHOP
    );

    // Envoy then asks for the new clusters' endpoints.
    let wanted = eds_names(&cds.resources);
    envoy
        .request(EDS, &wanted.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    envoy.ack(cds).await;
    let eds = envoy.recv_type(EDS).await;
    assert_eq!(
        addresses(&assignment(&eds.resources, SHOP)),
        ["198.18.3.10:9080"]
    );
    assert_eq!(
        addresses(&assignment(&eds.resources, SHOP_ADMIN)),
        ["198.18.3.10:7070"]
    );
}

#[tokio::test]
async fn request_with_a_stale_nonce_is_ignored() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.request(CDS, &[]).await;
    let first = envoy.recv_type(CDS).await;
    envoy.ack(&first).await;
    h.apply(&mesh_of(Some(WEB_IPS), Some(API_IPS), true)).await;
    let second = envoy.recv_type(CDS).await;
    assert_ne!(first.nonce, second.nonce);
    // Before Envoy answers `second`, the mesh changes again: that push waits
    // for the answer.
    h.apply(&mesh(WEB_IPS, API_IPS)).await;

    // A reply to `first`, which `second` superseded, is neither recorded nor
    // taken as the answer that releases the held-back push.
    let stale_ack = DiscoveryRequest {
        version_info: "stale".to_string(),
        type_url: CDS.url().to_string(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    };
    envoy.send(stale_ack.clone()).await;
    envoy.assert_silent("stale ACK").await;
    let stale_nack = DiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: tonic::Code::InvalidArgument as i32,
            message: "rejected".to_string(),
            details: vec![],
        }),
        version_info: String::new(),
        ..stale_ack
    };
    envoy.send(stale_nack).await;
    envoy.assert_silent("stale NACK").await;

    let s = h.only_status(NODE).types[&CDS].clone();
    assert_eq!(s.acked_nonce, first.nonce, "the stale ACK is not recorded");
    assert_eq!(s.acked_version, first.version_info);
    assert_eq!(s.nack_count, 0, "the stale NACK is not recorded");
    assert!(s.last_nack.is_none());
    assert_eq!(s.sent_nonce, second.nonce);
    assert!(!h
        .ctx
        .metrics
        .encode()
        .contains("rudder_xds_nacks_total{type=\"cds\"}"));

    // The current nonce is accepted, and releases the latest state.
    envoy.ack(&second).await;
    let third = envoy.recv_type(CDS).await;
    assert!(
        !names(&third.resources).contains(&SHOP.to_string()),
        "{}",
        describe(&third)
    );
    assert_eq!(h.only_status(NODE).types[&CDS].acked_nonce, second.nonce);
    envoy.ack(&third).await;
    envoy.assert_silent("current ACK").await;
}

#[tokio::test]
async fn a_busy_proxy_gets_the_latest_endpoints_once_it_answers() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.warm_up().await;

    h.apply(&mesh(&["198.18.1.12"], API_IPS)).await;
    let pushed = envoy.recv_type(EDS).await;
    // The proxy is still busy with `pushed` while the endpoints move twice.
    h.apply(&mesh(&["198.18.1.13"], API_IPS)).await;
    h.apply(&mesh(&["198.18.1.14", "198.18.1.15"], API_IPS))
        .await;
    envoy
        .assert_silent("until the proxy answers the previous EDS response")
        .await;

    // Its ACK is answered with the latest state, not each one in between.
    envoy.ack(&pushed).await;
    let latest = envoy.recv_burst().await;
    assert_eq!(types(&latest), ["eds"], "one response");
    assert_eq!(
        addresses(&assignment(&latest[0].resources, WEB)),
        ["198.18.1.14:9080", "198.18.1.15:9080"]
    );
    envoy.ack(&latest[0]).await;
    envoy.assert_silent("after ACKing the latest").await;
    // Both pushes count toward convergence: each was ACKed.
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("rudder_xds_convergence_seconds_count{type=\"eds\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn eds_unsubscribe_then_resubscribe_resends_the_readded_name() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.warm_up().await;

    // Narrowing needs no answer: Envoy drops what it no longer asks for.
    envoy.request(EDS, &[WEB]).await;
    envoy.assert_silent("after narrowing EDS").await;

    // Widening is answered with the re-added name only (EDS is per resource).
    envoy.request(EDS, &[WEB, API]).await;
    let widened = envoy.recv_type(EDS).await;
    assert_eq!(names(&widened.resources), [API], "{}", describe(&widened));
    assert_eq!(
        addresses(&assignment(&widened.resources, API)),
        ["198.18.2.10:9090"]
    );
    envoy.ack(&widened).await;
    envoy.assert_silent("after widening EDS").await;
}

#[tokio::test]
async fn reconnect_gets_full_config_and_registry_tracks_only_the_new_stream() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut first = h.sotw(NODE).await;
    let before = first.warm_up().await;
    let old = h.only_status(NODE).connection;
    drop(first);

    let mut second = h.sotw(NODE).await;
    let after = second.warm_up().await;
    for (t, a, b) in [
        (CDS, &before.cds, &after.cds),
        (EDS, &before.eds, &after.eds),
        (LDS, &before.lds, &after.lds),
        (RDS, &before.rds, &after.rds),
    ] {
        assert!(!b.resources.is_empty());
        assert_eq!(a.resources, b.resources, "{} after reconnect", t.short());
    }
    let acked = after.rds.nonce.clone();
    h.wait_registry(NODE, "only the new stream, with its RDS ACK", |e| {
        e.len() == 1
            && e[0].connection != old
            && e[0].types.get(&RDS).is_some_and(|s| s.acked_nonce == acked)
    })
    .await;
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("rudder_xds_connected_proxies{protocol=\"sotw\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn invalid_node_id_ends_the_stream_with_invalid_argument() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h
        .sotw("sidecar~not-an-ip~client-0.demo~demo.svc.cluster.local")
        .await;
    envoy.request(CDS, &[]).await;
    let status = envoy.recv_status().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("\"not-an-ip\" is not an IP address"),
        "{}",
        status.message()
    );
    assert!(
        h.ctx.registry.all().is_empty(),
        "a refused stream is not registered"
    );
}

#[tokio::test]
async fn nothing_is_served_until_the_index_is_synced() {
    let h = Harness::unsynced(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.request(CDS, &[]).await;
    envoy
        .assert_silent("before the initial load finished")
        .await;

    h.sync().await;
    let cds = envoy.recv_type(CDS).await;
    assert_clusters(&names(&cds.resources), &[API, WEB]);
}

#[tokio::test]
async fn proxies_of_the_same_shape_get_byte_identical_resources() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut one = h.sotw(NODE).await;
    let mut two = h.sotw(NODE_2).await;
    let a = one.warm_up().await;
    let b = two.warm_up().await;
    for (t, x, y) in [
        (CDS, &a.cds, &b.cds),
        (EDS, &a.eds, &b.eds),
        (LDS, &a.lds, &b.lds),
        (RDS, &a.rds, &b.rds),
    ] {
        let bytes = |r: &envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse| {
            r.resources
                .iter()
                .map(|any| any.value.clone())
                .collect::<Vec<_>>()
        };
        assert!(!x.resources.is_empty());
        assert_eq!(
            bytes(x),
            bytes(y),
            "{} bytes differ between proxies of one shape",
            t.short()
        );
    }
    assert_eq!(h.status_of(NODE).len() + h.status_of(NODE_2).len(), 2);
}

// Protocol corner cases where the server must speak although nothing "changed".

#[tokio::test]
async fn removing_the_last_listener_sends_an_empty_listener_response() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.warm_up().await;

    // Every Service goes away: no port needs a listener any more. In SotW the
    // absence of a listener from an LDS response is what deletes it in Envoy.
    h.apply(&mesh_of(None, None, false)).await;
    let pushed = envoy.recv_burst().await;
    let seen: Vec<String> = pushed.iter().map(describe).collect();
    let cds = pushed
        .iter()
        .find(|r| r.type_url == CDS.url())
        .expect("a CDS push");
    assert_clusters(&names(&cds.resources), &[]);
    let lds = pushed
        .iter()
        .find(|r| r.type_url == LDS.url())
        .unwrap_or_else(|| {
            panic!("no LDS response: Envoy keeps serving 127.0.0.1_8080 and _9090; got {seen:?}")
        });
    assert!(lds.resources.is_empty(), "{}", describe(lds));
}

#[tokio::test]
async fn named_cluster_subscription_is_told_when_a_cluster_goes_away() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.sotw(NODE).await;
    envoy.request(CDS, &[WEB, API]).await;
    let cds = envoy.recv_type(CDS).await;
    assert_eq!(names(&cds.resources), sorted(&[API, WEB]));
    envoy.ack(&cds).await;

    h.apply(&mesh_of(Some(WEB_IPS), None, false)).await;
    // SotW CDS carries the whole subscribed set; a response without `api` is
    // the only way Envoy learns that cluster is gone.
    let next = envoy.try_recv(TIMEOUT).await.unwrap_or_else(|| {
        panic!("no CDS response after Service api was deleted: Envoy keeps {API} (it was subscribed by name)")
    });
    assert_eq!(next.type_url, CDS.url());
    assert_eq!(names(&next.resources), [WEB]);
}
