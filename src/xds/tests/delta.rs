//! Delta (incremental) ADS, as Envoy drives it.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;

use super::harness::*;
use crate::xds::TypeUrl;

const NOPE: &str = "outbound|1234||nope.demo.svc.cluster.local";
const GONE: &str = "outbound|80||retired.demo.svc.cluster.local";

fn load_assignment(r: &DeltaDiscoveryResponse, name: &str) -> ClusterLoadAssignment {
    let res = r
        .resources
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("{name} not in {}", describe_delta(r)));
    decode(res.resource.as_ref().expect("a resource body"))
}

/// Subscribes to one type, takes the response and ACKs it.
async fn subscribe_and_ack(
    envoy: &mut DeltaEnvoy,
    t: TypeUrl,
    names: &[&str],
) -> DeltaDiscoveryResponse {
    envoy.subscribe(t, names, &[]).await;
    let r = envoy.recv_type(t).await;
    envoy.ack(&r).await;
    r
}

#[tokio::test]
async fn wildcard_subscriptions_receive_everything_with_names_and_versions() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.delta(NODE).await;

    envoy.subscribe(CDS, &[], &[]).await;
    let cds = envoy.recv_type(CDS).await;
    assert_clusters(&delta_names(&cds), &[API, WEB]);
    assert!(cds.removed_resources.is_empty());
    assert!(!cds.nonce.is_empty());
    for r in &cds.resources {
        assert!(!r.version.is_empty(), "{} has no version", r.name);
        assert_eq!(
            name_of(r.resource.as_ref().expect("a body")),
            r.name,
            "wire name matches the resource"
        );
    }
    envoy.ack(&cds).await;
    envoy.assert_silent("after the CDS ACK").await;

    envoy.subscribe(LDS, &[], &[]).await;
    let lds = envoy.recv_type(LDS).await;
    assert_eq!(delta_names(&lds), ["127.0.0.1_8080", "127.0.0.1_9090"]);
    for r in &lds.resources {
        assert!(!r.version.is_empty(), "{} has no version", r.name);
        assert_eq!(name_of(r.resource.as_ref().expect("a body")), r.name);
    }
    envoy.ack(&lds).await;
    envoy.assert_silent("after the LDS ACK").await;

    let status = h.only_status(NODE);
    assert_eq!(status.protocol, "delta");
    assert_eq!(status.types[&CDS].acked_nonce, cds.nonce);
    assert_eq!(status.types[&LDS].acked_nonce, lds.nonce);
    assert_eq!(status.types[&CDS].resource_count, cds.resources.len());
    assert_eq!(status.types[&LDS].resource_count, lds.resources.len());
}

#[tokio::test]
async fn nack_is_recorded_and_the_refused_resources_are_not_resent() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.delta(NODE).await;
    envoy.subscribe(CDS, &[], &[]).await;
    let refused = envoy.recv_type(CDS).await;
    const REASON: &str =
        "Error adding/updating cluster(s) outbound|9090||api.demo.svc.cluster.local: bad";
    envoy.nack(&refused, REASON).await;
    envoy
        .assert_silent("after a NACK, with nothing changed")
        .await;

    let s = h.only_status(NODE).types[&CDS].clone();
    assert_eq!(s.nack_count, 1);
    let nack = s.last_nack.expect("the NACK is recorded");
    assert_eq!(nack.message, REASON);
    assert_eq!(nack.nonce, refused.nonce);
    assert_eq!(s.acked_nonce, "");
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("rudder_xds_nacks_total{type=\"cds\"} 1"),
        "{metrics}"
    );

    // A new Service: only its clusters are sent, not the refused ones again.
    h.apply(&mesh_of(Some(WEB_IPS), Some(API_IPS), true)).await;
    let next = envoy.recv_type(CDS).await;
    assert_eq!(
        delta_names(&next),
        sorted(&[SHOP, SHOP_ADMIN]),
        "{}",
        describe_delta(&next)
    );
    envoy.ack(&next).await;
    envoy.assert_silent("after the ACK").await;
    assert_eq!(h.only_status(NODE).types[&CDS].acked_nonce, next.nonce);
}

#[tokio::test]
async fn endpoint_change_sends_only_the_changed_load_assignment() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.delta(NODE).await;
    subscribe_and_ack(&mut envoy, CDS, &[]).await;
    let eds = subscribe_and_ack(&mut envoy, EDS, &[WEB, API]).await;
    assert_eq!(delta_names(&eds), sorted(&[API, WEB]));
    subscribe_and_ack(&mut envoy, LDS, &[]).await;
    let rds = subscribe_and_ack(&mut envoy, RDS, &["8080", "9090"]).await;
    assert_eq!(delta_names(&rds), ["8080", "9090"]);
    envoy.assert_silent("after warm-up").await;

    h.apply(&mesh(&["198.18.1.10", "198.18.1.12"], API_IPS))
        .await;
    let pushed = envoy.recv_burst().await;
    let seen: Vec<String> = pushed.iter().map(describe_delta).collect();
    assert_eq!(delta_types(&pushed), ["eds"], "{seen:?}");
    let r = &pushed[0];
    assert_eq!(delta_names(r), [WEB], "exactly one resource: {seen:?}");
    assert!(r.removed_resources.is_empty());
    assert_eq!(
        addresses(&load_assignment(r, WEB)),
        ["198.18.1.10:9080", "198.18.1.12:9080"]
    );
    assert_ne!(versions(r)[WEB], versions(&eds)[WEB]);
}

#[tokio::test]
async fn removed_service_is_named_in_removed_resources() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.delta(NODE).await;
    let before = subscribe_and_ack(&mut envoy, CDS, &[]).await;
    subscribe_and_ack(&mut envoy, EDS, &[WEB, API]).await;

    h.apply(&mesh_of(Some(WEB_IPS), None, false)).await;
    let pushed = envoy.recv_burst().await;
    let seen: Vec<String> = pushed.iter().map(describe_delta).collect();
    assert_eq!(
        delta_types(&pushed),
        ["cds", "eds"],
        "clusters go before their endpoints: {seen:?}"
    );
    let (cds, eds) = (&pushed[0], &pushed[1]);
    assert_eq!(cds.removed_resources, [API]);
    assert!(cds.resources.is_empty(), "nothing else changed: {seen:?}");
    assert_eq!(eds.removed_resources, [API]);
    assert!(eds.resources.is_empty(), "{seen:?}");
    envoy.ack(cds).await;
    envoy.ack(eds).await;
    envoy.assert_silent("after ACKing the removals").await;
    assert_eq!(
        h.only_status(NODE).types[&CDS].resource_count,
        before.resources.len() - 1
    );
}

#[tokio::test]
async fn missing_names_are_reported_removed_and_unsubscribed_names_are_not_pushed() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.delta(NODE).await;

    // A name that does not exist comes back as removed, so Envoy stops waiting.
    envoy.subscribe(EDS, &[WEB, NOPE], &[]).await;
    let first = envoy.recv_type(EDS).await;
    assert_eq!(delta_names(&first), [WEB]);
    assert_eq!(first.removed_resources, [NOPE]);
    envoy.ack(&first).await;

    let added = subscribe_and_ack(&mut envoy, EDS, &[API]).await;
    assert_eq!(delta_names(&added), [API], "only the newly subscribed name");
    assert!(added.removed_resources.is_empty());

    envoy.subscribe(EDS, &[], &[API]).await;
    envoy
        .assert_silent("an unsubscription needs no answer")
        .await;

    h.apply(&mesh(WEB_IPS, &["198.18.2.11"])).await;
    envoy
        .assert_silent("api's endpoints changed, but nobody subscribes to them")
        .await;

    h.apply(&mesh(&["198.18.1.12"], &["198.18.2.11"])).await;
    let pushed = envoy.recv_burst().await;
    let seen: Vec<String> = pushed.iter().map(describe_delta).collect();
    assert_eq!(pushed.len(), 1, "{seen:?}");
    assert_eq!(delta_names(&pushed[0]), [WEB]);
    assert!(pushed[0].removed_resources.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn reconnect_with_initial_versions_resends_only_what_changed() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut first = h.delta(NODE).await;
    let cds = subscribe_and_ack(&mut first, CDS, &[]).await;
    let eds = subscribe_and_ack(&mut first, EDS, &[WEB, API]).await;
    first.assert_silent("after warm-up").await;
    drop(first);
    let held: BTreeMap<String, String> = versions(&cds).into_iter().chain(versions(&eds)).collect();

    // While the proxy is away, only web's endpoints change.
    h.apply(&mesh(&["198.18.1.12"], API_IPS)).await;

    // The proxy also claims a cluster the mesh no longer has.
    let mut cds_held = versions(&cds);
    cds_held.insert(GONE.to_string(), "0123456789abcdef".to_string());
    let mut second = h.delta(NODE).await;
    second.resume(CDS, &[], &cds_held).await;
    second.resume(EDS, &[WEB, API], &versions(&eds)).await;
    let pushed = second.recv_burst().await;
    let seen: Vec<String> = pushed.iter().map(describe_delta).collect();
    assert_eq!(delta_types(&pushed), ["cds", "eds"], "{seen:?}");
    for r in &pushed {
        for res in &r.resources {
            assert_ne!(
                held.get(&res.name),
                Some(&res.version),
                "{} resent unchanged: {seen:?}",
                res.name
            );
        }
    }
    let (cds2, eds2) = (&pushed[0], &pushed[1]);
    assert!(cds2.resources.is_empty(), "no cluster changed: {seen:?}");
    assert_eq!(
        cds2.removed_resources,
        [GONE],
        "what the proxy holds and the mesh lacks is removed"
    );
    assert_eq!(
        delta_names(eds2),
        [WEB],
        "the changed assignment is sent: {seen:?}"
    );
    assert!(eds2.removed_resources.is_empty(), "{seen:?}");
    assert_eq!(addresses(&load_assignment(eds2, WEB)), ["198.18.1.12:9080"]);
    second.ack(cds2).await;
    second.ack(eds2).await;
    second.assert_silent("after ACKs").await;
}

#[tokio::test]
async fn explicit_wildcard_name_subscribes_to_everything() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.delta(NODE).await;
    envoy.subscribe(CDS, &["*"], &[]).await;
    let cds = envoy.recv_type(CDS).await;
    assert_clusters(&delta_names(&cds), &[API, WEB]);
    envoy.ack(&cds).await;
    h.apply(&mesh_of(Some(WEB_IPS), Some(API_IPS), true)).await;
    let next = envoy.recv_type(CDS).await;
    assert_eq!(delta_names(&next), sorted(&[SHOP, SHOP_ADMIN]));
}

#[tokio::test]
async fn ack_records_the_version_of_the_response_it_acknowledges() {
    let h = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
    let mut envoy = h.delta(NODE).await;
    envoy.subscribe(CDS, &[], &[]).await;
    let cds = envoy.recv_type(CDS).await;
    subscribe_and_ack(&mut envoy, EDS, &[WEB]).await;
    // An endpoints-only change: a new snapshot version, an EDS push, no CDS push.
    h.apply(&mesh(&["198.18.1.12"], API_IPS)).await;
    let eds = envoy.recv_type(EDS).await;
    assert_ne!(eds.system_version_info, cds.system_version_info);

    // Envoy now ACKs the CDS response, which is still the current one.
    envoy.ack(&cds).await;
    envoy.ack(&eds).await;
    envoy.assert_silent("after ACKs").await;
    let status = h.only_status(NODE);
    let s = &status.types[&CDS];
    assert_eq!(s.acked_nonce, cds.nonce);
    assert_eq!(s.sent_version, cds.system_version_info);
    assert_eq!(
        s.acked_version, cds.system_version_info,
        "the proxy ACKed CDS as sent at version {}, not the session's later snapshot",
        cds.system_version_info
    );
}
