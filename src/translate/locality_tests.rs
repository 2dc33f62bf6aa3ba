use super::*;

fn loc(s: &str) -> Locality {
    Locality::parse(s).unwrap()
}

/// Istio's table (locality failover task): a proxy in region1/zone1; with
/// `failover: region1 -> region2`, region2 is tried before region3.
#[test]
fn failover_priorities_follow_istio() {
    let proxy = loc("region1/zone1/sub1");
    let eps = [
        loc("region1/zone1/sub1"),
        loc("region1/zone1/sub2"),
        loc("region1/zone2/sub1"),
        loc("region2/zone3/sub1"),
        loc("region3/zone4/sub1"),
    ];
    let refs: Vec<&Locality> = eps.iter().collect();
    assert_eq!(
        failover_priorities(&proxy, Some("region2"), &refs),
        vec![0, 1, 2, 3, 4]
    );
    // No failover listed for region1: every other region is equally far.
    assert_eq!(
        failover_priorities(&proxy, None, &refs),
        vec![0, 1, 2, 3, 3]
    );
    // Priorities are compacted: no subzone or zone peers, so 0, 1, 2.
    let far = [eps[0].clone(), eps[3].clone(), eps[4].clone()];
    let refs: Vec<&Locality> = far.iter().collect();
    assert_eq!(
        failover_priorities(&proxy, Some("region2"), &refs),
        vec![0, 1, 2]
    );
    // Only the listed region is 3: a proxy-less zone starts at 0.
    let refs = [&eps[2], &eps[4]];
    assert_eq!(
        failover_priorities(&proxy, Some("region2"), &refs),
        vec![0, 1]
    );
}

/// A zone-only endpoint (EndpointSlice `zone`, no Node watch) has no region,
/// so it is another region to a proxy that knows its own.
#[test]
fn zone_only_endpoints_are_another_region() {
    let proxy = loc("region1/zone1");
    let zone = Locality::zone_only("zone1").unwrap();
    assert_eq!(
        failover_priorities(&proxy, None, &[&proxy, &zone]),
        vec![0, 1]
    );
}

#[test]
fn distribute_splits_weights_by_endpoint_count() {
    let a = loc("region1/zone1/s1");
    let b = loc("region1/zone1/s2");
    let c = loc("region1/zone2/s1");
    let d = loc("region2/zone3/s1");
    let to = BTreeMap::from([
        ("region1/zone1/*".to_string(), 80),
        ("region1/zone2".to_string(), 20),
    ]);
    // a has 1 endpoint and b 3: their 80 splits 20/60.
    let w = distribute_weights(&to, &[(&a, 1), (&b, 3), (&c, 2), (&d, 5)]);
    assert_eq!(w, vec![Some(20), Some(60), Some(20), None]);
}

#[test]
fn variants_pick_the_proxy_region_and_first_matching_from() {
    let failover = [
        ("region1".to_string(), "region2".to_string()),
        ("region2".to_string(), "region1".to_string()),
    ];
    let v = variant(Mode::Failover(&failover), &loc("region2/z/s"));
    assert_eq!(v.to_string(), "region2/z/s~failover=region1");
    let v = variant(Mode::Failover(&failover), &loc("region3/z"));
    assert_eq!(v.to_string(), "region3/z/");
    let rules = [
        (
            "region1/*".to_string(),
            BTreeMap::from([("region1".to_string(), 100)]),
        ),
        (
            "*".to_string(),
            BTreeMap::from([("region2".to_string(), 100)]),
        ),
    ];
    let v = variant(Mode::Distribute(&rules), &loc("region1/z1"));
    assert_eq!(v.to_string(), "region1/z1/~distribute=region1:100");
    let v = variant(Mode::Distribute(&rules), &loc("region9/z1"));
    assert_eq!(v.to_string(), "region9/z1/~distribute=region2:100");
}

/// CDS names only load assignments EDS serves, whatever the proxy's
/// locality: known (by node locality or label), unknown, or none.
#[test]
fn cds_names_only_served_eds_resources() {
    use crate::model::Proxy;
    use crate::translate::{clusters, endpoints, ProxyShape};
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/translate/testdata/locality_lb.yaml"
    ))
    .unwrap();
    let (snap, _) = crate::translate::golden::translate_case("locality_lb", &yaml).unwrap();
    let served: BTreeSet<String> = endpoints(&snap)
        .into_iter()
        .map(|c| c.cluster_name)
        .collect();
    let cases = [
        (
            "client-0",
            None,
            Some(
                "outbound|9080||reviews.demo.svc.cluster.local~region1/zone1/sub1~failover=region2",
            ),
        ),
        (
            "other",
            Some("region2/zone3/sub1"),
            Some("outbound|9080||reviews.demo.svc.cluster.local~region2/zone3/sub1"),
        ),
        ("other", Some("region9/zone1/sub1"), None),
        ("other", None, None),
    ];
    for (pod, node_locality, want) in cases {
        let mut proxy = Proxy::from_node_id(&format!(
            "sidecar~198.18.9.99~{pod}.demo~demo.svc.cluster.local"
        ))
        .unwrap();
        proxy.locality = node_locality.map(loc);
        let shape = ProxyShape::of(&snap, &proxy);
        let names: Vec<String> = clusters(&snap, &shape)
            .into_iter()
            .filter_map(|c| c.eds_cluster_config.map(|e| e.service_name))
            .collect();
        for name in &names {
            assert!(
                served.contains(name),
                "{pod} {node_locality:?}: CDS names {name}, EDS does not serve it"
            );
        }
        let reviews = names
            .iter()
            .find(|n| n.starts_with("outbound|9080||reviews"))
            .unwrap();
        match want {
            Some(w) => assert_eq!(reviews, w),
            None => assert_eq!(reviews, "outbound|9080||reviews.demo.svc.cluster.local"),
        }
    }
}
