use std::time::Duration;

use super::*;
use crate::model::ServiceKey;
use crate::source::file::parse_text;

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";

fn slice(name: &str, ip: &str) -> String {
    format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nendpoints: [{{addresses: [{ip}]}}]\nports: [{{name: http, port: 8080}}]\n")
}

fn key() -> ServiceKey {
    ServiceKey::new("shop", "web")
}

fn addresses(store: &Store) -> Vec<String> {
    store.endpoints.get(&key()).map_or(vec![], |e| {
        e.endpoints.iter().map(|e| e.address.to_string()).collect()
    })
}

#[test]
fn invalid_edit_keeps_the_last_good_version_and_is_reported() {
    let mut store = Store::default();
    store.replace("a.yaml", parse_text(SVC));
    assert_eq!(store.services[&key()].ports[0].port, 80);
    store.pending = Default::default();

    store.replace("a.yaml", parse_text(&SVC.replace("port: 80", "port: 0")));
    assert_eq!(
        store.services[&key()].ports[0].port,
        80,
        "last good version stays"
    );
    assert!(store.pending.is_empty());
    let status = store.status();
    assert_eq!(status.rejected.len(), 1);
    let line = status.rejected[0].to_string();
    assert_eq!(line, "a.yaml document 0 (Service shop/web): spec.ports[0].port: port must be between 1 and 65535, got 0");

    // Fixing the file clears the rejection.
    store.replace("a.yaml", parse_text(&SVC.replace("port: 80", "port: 81")));
    assert_eq!(store.services[&key()].ports[0].port, 81);
    assert!(store.status().rejected.is_empty());
}

#[test]
fn unparseable_document_deletes_nothing_from_its_file() {
    let mut store = Store::default();
    let text = format!("{SVC}---\n{}", slice("web-1", "198.18.0.1"));
    store.replace("a.yaml", parse_text(&text));
    let broken = format!("{SVC}---\nkind: [oops\n");
    store.replace("a.yaml", parse_text(&broken));
    assert_eq!(
        addresses(&store),
        ["198.18.0.1"],
        "endpoints survive a broken edit"
    );
    assert_eq!(store.status().rejected.len(), 1);
}

#[test]
fn removed_documents_and_files_are_deleted() {
    let mut store = Store::default();
    store.replace(
        "a.yaml",
        parse_text(&format!("{SVC}---\n{}", slice("web-1", "198.18.0.1"))),
    );
    store.replace("a.yaml", parse_text(SVC));
    assert!(addresses(&store).is_empty());
    assert!(store.pending.endpoints.contains(&key()));
    store.replace("a.yaml", vec![]);
    assert!(store.services.is_empty());
}

#[test]
fn endpoint_change_is_an_endpoints_only_change() {
    let mut store = Store::default();
    store.replace("svc.yaml", parse_text(SVC));
    store.replace("eps.yaml", parse_text(&slice("web-1", "198.18.0.1")));
    store.pending = Default::default();
    store.replace("eps.yaml", parse_text(&slice("web-1", "198.18.0.2")));
    assert!(store.pending.endpoints_only(), "{:?}", store.pending);
    assert_eq!(addresses(&store), ["198.18.0.2"]);
}

#[test]
fn slices_merge_and_win_over_legacy_endpoints() {
    let mut store = Store::default();
    let legacy = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop}\nsubsets: [{addresses: [{ip: 198.18.0.9}], ports: [{name: http, port: 8080}]}]\n";
    store.replace("legacy.yaml", parse_text(legacy));
    assert_eq!(addresses(&store), ["198.18.0.9"]);
    store.replace(
        "s.yaml",
        parse_text(&format!(
            "{}---\n{}",
            slice("web-1", "198.18.0.1"),
            slice("web-2", "198.18.0.2")
        )),
    );
    assert_eq!(addresses(&store), ["198.18.0.1", "198.18.0.2"]);
    store.replace("s.yaml", vec![]);
    assert_eq!(
        addresses(&store),
        ["198.18.0.9"],
        "legacy Endpoints apply again"
    );
}

#[test]
fn relabelled_slice_leaves_its_old_service() {
    let mut store = Store::default();
    store.replace("s.yaml", parse_text(&slice("web-1", "198.18.0.1")));
    store.replace(
        "s.yaml",
        parse_text(&slice("web-1", "198.18.0.1").replace("service-name: web", "service-name: api")),
    );
    assert!(addresses(&store).is_empty());
    assert_eq!(
        store.endpoints[&ServiceKey::new("shop", "api")]
            .endpoints
            .len(),
        1
    );
}

#[tokio::test]
async fn a_burst_of_events_publishes_one_snapshot() {
    let (index, mut rx) = Index::new(1, Duration::from_millis(50));
    let (tx, events) = mpsc::channel(64);
    tokio::spawn(index.run(events));
    for i in 1..=5 {
        let items = parse_text(&slice("web-1", &format!("198.18.0.{i}")));
        tx.send(SourceEvent::Replace {
            unit: "s.yaml".into(),
            items,
        })
        .await
        .unwrap();
    }
    tx.send(SourceEvent::Synced).await.unwrap();
    rx.changed().await.unwrap();
    let snap = rx.borrow_and_update().clone();
    assert_eq!(snap.version, 1, "one publish for the whole burst");
    assert!(snap.synced);
    assert_eq!(
        snap.endpoints[&key()].endpoints[0].address.to_string(),
        "198.18.0.5"
    );
    // Nothing more arrives while idle.
    let idle = tokio::time::timeout(Duration::from_millis(300), rx.changed()).await;
    assert!(idle.is_err(), "an idle index must not publish");
}

#[test]
fn reapplying_an_unchanged_object_changes_nothing() {
    let unit = "kube:Service/shop/web";
    let mut store = Store::default();
    store.replace(unit, parse_text(SVC));
    store.pending = Default::default();
    store.replace(unit, parse_text(SVC));
    assert!(store.pending.is_empty(), "{:?}", store.pending);
    // A new resourceVersion with nothing Rudder reads changed (a label, a
    // status update) is a different object but the same model.
    let touched = SVC.replace(
        "namespace: shop}",
        "namespace: shop, resourceVersion: '7', labels: {team: a}}",
    );
    store.replace(unit, parse_text(&touched));
    assert!(store.pending.is_empty(), "{:?}", store.pending);
}

#[tokio::test]
async fn a_resent_unchanged_object_publishes_nothing() {
    // What a watch relist does when the source re-sends what the index holds.
    let (index, mut rx) = Index::new(1, Duration::from_millis(20));
    let (tx, events) = mpsc::channel(64);
    tokio::spawn(index.run(events));
    let send = |unit: &str, text: &str| SourceEvent::Replace {
        unit: unit.into(),
        items: parse_text(text),
    };
    let slice = slice("web-1", "198.18.0.1");
    tx.send(send("svc", SVC)).await.unwrap();
    tx.send(send("slice", &slice)).await.unwrap();
    tx.send(SourceEvent::Synced).await.unwrap();
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().version, 1);
    tx.send(send("svc", SVC)).await.unwrap();
    tx.send(send("slice", &slice)).await.unwrap();
    let idle = tokio::time::timeout(Duration::from_millis(300), rx.changed()).await;
    assert!(idle.is_err(), "an unchanged object must not publish");
}

#[tokio::test]
async fn a_mesh_config_edit_pushes_everything_but_keeps_the_trust_domain() {
    let (index, mut rx) = Index::new(1, Duration::from_millis(20));
    let (tx, events) = mpsc::channel(64);
    tokio::spawn(index.run(events));
    tx.send(SourceEvent::Synced).await.unwrap();
    rx.changed().await.unwrap();
    let first = rx.borrow_and_update().clone();

    let mut edited = crate::api::parse_mesh_config(
        "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\ntrustDomain: other.example",
    )
    .unwrap();
    tx.send(SourceEvent::Mesh(edited.clone())).await.unwrap();
    rx.changed().await.unwrap();
    let second = rx.borrow_and_update().clone();
    assert_eq!(second.version, first.version + 1);
    assert!(
        second.changes.routing && second.changes.workloads,
        "{:?}",
        second.changes
    );
    assert_eq!(
        second.mesh.trust_domain, first.mesh.trust_domain,
        "trust domain kept"
    );
    edited.trust_domain = first.mesh.trust_domain.clone();
    assert_eq!(*second.mesh, edited);

    // The same config again (as a relist resends it): nothing is pushed.
    tx.send(SourceEvent::Mesh(edited)).await.unwrap();
    let idle = tokio::time::timeout(Duration::from_millis(300), rx.changed()).await;
    assert!(idle.is_err(), "an unchanged mesh config must not publish");
}

/// Pods' `istio-locality` labels and WorkloadEntries' `locality` are the
/// known localities; a new one counts as a workload change (proxy shapes
/// and EDS names depend on it), an unchanged set does not.
#[test]
fn known_localities_come_from_pods_and_workload_entries() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop, labels: {istio-locality: r1.z1.s1}}\nstatus: {podIP: 10.0.0.1}\n";
    let we = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm, namespace: shop}\nspec: {address: 10.0.0.2, locality: r2/z2}\n";
    let mut store = Store::default();
    store.replace("a.yaml", parse_text(&format!("{pod}---\n{we}")));
    store.refresh_localities();
    let known: Vec<String> = store.localities.iter().map(|l| l.to_string()).collect();
    assert_eq!(known, ["r1/z1/s1", "r2/z2/"]);
    store.pending = Default::default();
    // The WorkloadEntry moves: a different set, so every shape is redone.
    store.replace(
        "a.yaml",
        parse_text(&format!("{pod}---\n{}", we.replace("r2/z2", "r3/z3"))),
    );
    store.refresh_localities();
    assert!(
        store.pending.workloads,
        "a new locality must recompute shapes"
    );
    store.pending = Default::default();
    store.replace(
        "a.yaml",
        parse_text(&format!("{pod}---\n{}", we.replace("r2/z2", "r3/z3"))),
    );
    store.refresh_localities();
    assert!(!store.pending.workloads);
}

/// A Kubernetes Service's selector picks WorkloadEntries of its namespace
/// as they come and go, and as the Service's selector changes.
#[test]
fn services_select_workload_entries_as_they_change() {
    let svc = |app: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n")
    };
    let we = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm-1, namespace: shop}\nspec: {address: 10.1.0.5, labels: {app: web}}\n";
    let key = ServiceKey::new("shop", "web");
    let addresses = |store: &Store| -> Vec<String> {
        store
            .endpoints
            .get(&key)
            .map(|e| e.endpoints.iter().map(|e| e.address.to_string()).collect())
            .unwrap_or_default()
    };
    let mut store = Store::default();
    store.replace("svc.yaml", parse_text(&svc("web")));
    assert!(addresses(&store).is_empty());
    let _ = std::mem::take(&mut store.pending);

    store.replace("we.yaml", parse_text(we));
    assert_eq!(addresses(&store), ["10.1.0.5"]);
    assert!(store.pending.endpoints.contains(&key));
    let port = store.services[&key].ports[0].clone();
    let ep = &store.endpoints[&key].endpoints[0];
    assert_eq!(
        crate::model::ServiceEndpoints::port_for(ep, &port),
        Some(8080),
        "the targetPort"
    );

    store.replace("svc.yaml", parse_text(&svc("api")));
    assert!(
        addresses(&store).is_empty(),
        "the selector no longer matches"
    );
    store.replace("svc.yaml", parse_text(&svc("web")));
    store.replace("we.yaml", Vec::new());
    assert!(addresses(&store).is_empty(), "the entry is gone");
}

/// A Pod's locality is its Node's unless its own label says otherwise,
/// whichever of the two arrives first, and follows the Node's labels.
#[test]
fn pods_take_their_nodes_locality() {
    let pod = |name: &str, labels: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{{labels}}}}}\nspec: {{nodeName: n1, containers: [{{name: a, image: a}}]}}\nstatus: {{podIP: 10.0.0.{}}}\n", name.len())
    };
    let node = |zone: &str| {
        format!("apiVersion: v1\nkind: Node\nmetadata: {{name: n1, labels: {{topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: {zone}}}}}\n")
    };
    let locality = |store: &Store, name: &str| {
        let key = crate::model::WorkloadKey {
            namespace: "shop".into(),
            name: name.into(),
        };
        store.workloads[&key]
            .locality
            .as_ref()
            .map(|l| l.to_string())
    };
    let mut store = Store::default();
    store.replace(
        "pods.yaml",
        parse_text(&format!(
            "{}---\n{}",
            pod("web", "app: web"),
            pod("own", "istio-locality: r9.z9")
        )),
    );
    assert_eq!(locality(&store, "web"), None, "no Node yet");
    assert_eq!(locality(&store, "own").as_deref(), Some("r9/z9/"));

    let _ = std::mem::take(&mut store.pending);
    store.replace("node.yaml", parse_text(&node("z1")));
    assert_eq!(locality(&store, "web").as_deref(), Some("r1/z1/"));
    assert_eq!(
        locality(&store, "own").as_deref(),
        Some("r9/z9/"),
        "the Pod's label wins"
    );
    assert!(store.pending.workloads);
    store.refresh_localities();
    assert!(store.localities.iter().any(|l| l.to_string() == "r1/z1/"));

    store.replace("node.yaml", parse_text(&node("z2")));
    assert_eq!(locality(&store, "web").as_deref(), Some("r1/z2/"));
    store.replace("node.yaml", Vec::new());
    assert_eq!(locality(&store, "web"), None, "the Node is gone");
}

/// ServiceEntry endpoints can change with no other change; when that
/// changes the known `failoverPriority` values, proxies' clusters may name
/// other load assignments, so it must not pass for an endpoints-only change.
#[test]
fn failover_priority_values_of_entry_endpoints_count_as_workload_changes() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec:\n  host: web.example.com\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n    loadBalancer: {localityLbSetting: {failoverPriority: [tier, topology.kubernetes.io/zone]}}\n";
    let se = |tier: &str| {
        format!("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: web, namespace: shop}}\nspec:\n  hosts: [web.example.com]\n  resolution: STATIC\n  ports: [{{number: 80, name: http}}]\n  endpoints: [{{address: 10.0.0.1, locality: r1/z1, labels: {{tier: {tier}}}}}]\n")
    };
    let mesh = crate::model::MeshConfig::default();
    let mut store = Store::default();
    store.replace("a.yaml", parse_text(&format!("{dr}{}", se("gold"))));
    store.refresh_failover_known(&mesh);
    let keys = vec![
        "tier".to_string(),
        "topology.kubernetes.io/zone".to_string(),
    ];
    let known = store.failover_known.get(&keys).expect("the list is known");
    assert!(
        known.contains(&vec!["gold".to_string(), "z1".to_string()]),
        "{known:?}"
    );
    assert!(
        known.contains(&vec![String::new(), String::new()]),
        "{known:?}"
    );
    let _ = std::mem::take(&mut store.pending);

    store.replace("a.yaml", parse_text(&format!("{dr}{}", se("silver"))));
    assert!(store.pending.endpoints_only(), "{:?}", store.pending);
    store.refresh_failover_known(&mesh);
    assert!(store.pending.workloads);
    let known = &store.failover_known[&keys];
    assert!(!known.contains(&vec!["gold".to_string(), "z1".to_string()]));
}

/// A synced index on `debounce` whose initial load (web, one endpoint) is
/// published; time is tokio's, paused in these tests, so "no time passed"
/// means the index did not wait, whatever the machine's speed.
async fn loaded_index(
    debounce: Duration,
) -> (mpsc::Sender<SourceEvent>, watch::Receiver<Arc<Snapshot>>) {
    let (index, mut rx) = Index::new(1, debounce);
    let (tx, events) = mpsc::channel(64);
    tokio::spawn(index.run(events));
    let items = parse_text(&format!("{SVC}---\n{}", slice("web-1", "198.18.0.1")));
    tx.send(SourceEvent::Replace {
        unit: "web.yaml".into(),
        items,
    })
    .await
    .unwrap();
    tx.send(SourceEvent::Synced).await.unwrap();
    rx.wait_for(|s| s.synced).await.unwrap();
    (tx, rx)
}

async fn flip(tx: &mpsc::Sender<SourceEvent>, i: usize) {
    let items = parse_text(&format!(
        "{SVC}---\n{}",
        slice("web-1", &format!("198.18.1.{i}"))
    ));
    tx.send(SourceEvent::Replace {
        unit: "web.yaml".into(),
        items,
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_change_after_a_quiet_spell_is_published_without_waiting() {
    let debounce = Duration::from_millis(100);
    let (tx, mut rx) = loaded_index(debounce).await;
    rx.borrow_and_update();
    tokio::time::sleep(debounce * 5).await;

    let before = tokio::time::Instant::now();
    flip(&tx, 7).await;
    rx.changed().await.unwrap();
    assert_eq!(tokio::time::Instant::now(), before, "the index waited");
    let snap = rx.borrow_and_update().clone();
    assert!(snap.changes.endpoints_only());
    assert_eq!(
        snap.endpoints[&key()].endpoints[0].address.to_string(),
        "198.18.1.7"
    );

    // A Service edit still waits for a quiet debounce period.
    tokio::time::sleep(debounce * 5).await;
    let before = tokio::time::Instant::now();
    let svc = SVC.replace("port: 80,", "port: 81,");
    let items = parse_text(&format!("{svc}---\n{}", slice("web-1", "198.18.1.7")));
    tx.send(SourceEvent::Replace {
        unit: "web.yaml".into(),
        items,
    })
    .await
    .unwrap();
    rx.changed().await.unwrap();
    assert!(tokio::time::Instant::now() - before >= debounce);
    assert!(!rx.borrow().changes.endpoints_only());
}

#[tokio::test(start_paused = true)]
async fn endpoint_churn_is_published_once_per_debounce_period() {
    let debounce = Duration::from_millis(100);
    let (tx, mut rx) = loaded_index(debounce).await;
    let first = rx.borrow_and_update().version;
    let publishes = tokio::spawn(async move {
        let mut at = Vec::new();
        while rx.changed().await.is_ok() {
            let snap = rx.borrow_and_update().clone();
            at.push((tokio::time::Instant::now(), snap));
        }
        at
    });
    // 100 changes, one every 10 ms: they never pause for a debounce period.
    let start = tokio::time::Instant::now();
    for i in 0..100 {
        flip(&tx, i).await;
        tokio::time::sleep(debounce / 10).await;
    }
    tokio::time::sleep(debounce * 3).await;
    drop(tx);
    let at = publishes.await.unwrap();

    let (last_at, last) = at.last().expect("published");
    assert_eq!(
        last.endpoints[&key()].endpoints[0].address.to_string(),
        "198.18.1.99",
        "the last change is published"
    );
    assert!(*last_at - start < debounce * 11);
    // Never more often than once per debounce period, and every change
    // waited at most one period (so there is a publish in every period).
    for pair in at.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= debounce, "published too often");
    }
    assert!(
        at.len() >= 9,
        "{} publishes for a second of churn",
        at.len()
    );
    assert_eq!(last.version - first, at.len() as u64);
}

/// `tunnel` is validated but not applied: a warning names the rule and
/// field rather than leaving the user guessing.
#[test]
fn an_unapplied_tunnel_is_reported() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec:\n  host: web\n  subsets:\n  - name: v1\n    labels: {version: v1}\n    trafficPolicy: {tunnel: {targetHost: proxy.example, targetPort: 3128}}\n";
    let mut store = Store::default();
    store.replace("a.yaml", parse_text(dr));
    let warnings = store.status().warnings;
    assert_eq!(
        warnings,
        ["DestinationRule shop/web: spec.subsets[0].trafficPolicy.tunnel is not supported yet and is ignored"]
    );
}
