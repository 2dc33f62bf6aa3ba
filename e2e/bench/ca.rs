//! Criterion benchmarks: certificates issued per second by the mesh CA, with a
//! self-signed P-256 root. `sign_workload` includes generating the leaf's fresh
//! P-256 key (what every stock-Envoy proxy costs); `sign_csr` parses and checks
//! an Istio-style CSR and signs over its key.
//! Run with `cargo bench --bench ca`; figures go to docs/performance.md.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rcgen::{CertificateParams, KeyPair, SanType};
use rudder::ca::{Ca, Identity};

const TTL: Duration = Duration::from_secs(24 * 3600);

fn csr_pem() -> String {
    let key = KeyPair::generate().expect("P-256 key");
    let mut params = CertificateParams::default();
    let uri = "spiffe://cluster.local/ns/default/sa/productpage";
    params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("ASCII"))];
    params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .expect("CSR")
}

fn bench_issue(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    let ca = Ca::load_or_create_at(dir.path(), "cluster.local", now).expect("CA");
    let id = Identity::new("cluster.local", "default", "productpage").expect("identity");
    let csr = csr_pem();

    let mut group = c.benchmark_group("ca_issue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign_workload", |b| {
        b.iter(|| black_box(ca.sign_workload(&id, TTL, now).expect("signed")))
    });
    group.bench_function("sign_csr", |b| {
        b.iter(|| black_box(ca.sign_csr(&csr, &id, TTL, now).expect("signed")))
    });
    group.finish();
}

criterion_group!(benches, bench_issue);
criterion_main!(benches);
