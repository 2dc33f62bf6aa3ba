//! Criterion benchmarks: one proxy's full translation at mesh sizes of 100,
//! 1,000 and 10,000 services (plain, and with routing rules for one service
//! in ten), and the index folding endpoint churn.
//! Run with `cargo bench --bench translate`; figures go to docs/performance.md.

use std::fmt::Write;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rudder::index::snapshot_of;
use rudder::model::{Interception, MeshConfig, Proxy, Snapshot};
use rudder::source::file::parse_text;
use rudder::source::Item;
use rudder::translate::{self, ProxyShape};

const ENDPOINTS: usize = 10;

/// `n` services of 10 endpoints over 10 namespaces, one unit per service.
fn mesh(n: usize) -> Vec<(String, Vec<Item>)> {
    (0..n)
        .map(|i| (format!("svc-{i}.yaml"), parse_text(&service(i, 0))))
        .collect()
}

/// The same, with a DestinationRule (two subsets) and a VirtualService
/// (a 90/10 split between them) for one service in ten, as the load
/// generator's mesh has: lookups of the rules for each service count.
fn routed_mesh(n: usize) -> Vec<(String, Vec<Item>)> {
    let mut units = mesh(n);
    for i in (0..n).step_by(10) {
        let host = format!("svc-{i}.ns-{}.svc.cluster.local", i % 10);
        let meta = format!("metadata: {{name: svc-{i}, namespace: ns-{}}}", i % 10);
        let rules = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n{meta}\nspec:\n  host: {host}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n{meta}\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - {{destination: {{host: {host}, subset: v1}}, weight: 90}}\n    - {{destination: {{host: {host}, subset: v2}}, weight: 10}}\n"
        );
        units.push((format!("rules-{i}.yaml"), parse_text(&rules)));
    }
    units
}

fn service(i: usize, generation: usize) -> String {
    let ns = format!("ns-{}", i % 10);
    let vip = format!("198.18.{}.{}", 128 + i / 250, i % 250 + 1);
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: {ns}}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: svc-{i}}}\n  ports: [{{name: http, port: 8080, targetPort: 9080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{i}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: svc-{i}}}}}\naddressType: IPv4\nports: [{{name: http, port: 9080}}]\nendpoints:\n"
    );
    for e in 0..ENDPOINTS {
        let addr = i * ENDPOINTS + e + generation;
        let _ = writeln!(
            y,
            "- addresses: [\"198.{}.{}.{}\"]",
            18 + (addr >> 16) % 2,
            (addr >> 8) & 255,
            addr & 255
        );
    }
    y
}

fn proxy(interception: Interception) -> Proxy {
    let mut p =
        Proxy::from_node_id("sidecar~198.18.0.5~client-0.ns-0~ns-0.svc.cluster.local").unwrap();
    p.interception = interception;
    p
}

fn translate_all(snapshot: &Snapshot, shape: &ProxyShape) -> usize {
    translate::clusters(snapshot, shape).len()
        + translate::endpoints(snapshot).len()
        + translate::listeners(snapshot, shape).len()
        + translate::routes(snapshot, shape).len()
}

fn bench_translation(c: &mut Criterion) {
    let mut group = c.benchmark_group("translate_one_proxy");
    group.sample_size(10);
    for n in [100, 1_000, 10_000] {
        let snapshot = snapshot_of(mesh(n), MeshConfig::default());
        assert_eq!(
            snapshot.services.len(),
            n,
            "every generated service must be accepted"
        );
        let routed = snapshot_of(routed_mesh(n), MeshConfig::default());
        assert_eq!(
            (
                routed.virtual_services.len(),
                routed.destination_rules.len()
            ),
            (n / 10, n / 10),
            "every generated rule must be accepted: {:?}",
            routed.status
        );
        for (mode, interception, snapshot) in [
            ("redirect", Interception::Redirect, &snapshot),
            ("none", Interception::None, &snapshot),
            ("redirect-routed", Interception::Redirect, &routed),
        ] {
            let shape = ProxyShape::of(snapshot, &proxy(interception));
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(mode, n), &n, |b, _| {
                b.iter(|| black_box(translate_all(snapshot, &shape)))
            });
        }
    }
    group.finish();
}

fn bench_index_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_endpoint_change");
    group.sample_size(10);
    for n in [1_000, 10_000] {
        // Build once, then measure folding one changed EndpointSlice file and
        // producing the next snapshot, as the index does per debounce.
        let base = mesh(n);
        let changed: Vec<_> = (0..64)
            .map(|g| {
                (
                    format!("svc-{}.yaml", g % n),
                    parse_text(&service(g % n, g + 1)),
                )
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("services", n), &n, |b, _| {
            b.iter_batched(
                || base.clone(),
                |mut units| {
                    units.push(changed[0].clone());
                    black_box(
                        snapshot_of(units, MeshConfig::default())
                            .changes
                            .endpoints
                            .len(),
                    )
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_translation, bench_index_churn);
criterion_main!(benches);
