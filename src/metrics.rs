//! Prometheus metrics, registered once and shared. Names start `rudder_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub protocol: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~23 s, each bucket √2 wider than the last: a p99 read from the
    // buckets (as histogram_quantile and e2e/perf/run.sh do) is then within
    // a factor of √2, where doubling buckets could not tell 600 ms from 1 s.
    Histogram::new(exponential_buckets(0.001, std::f64::consts::SQRT_2, 30))
}

pub struct Metrics {
    pub registry: Registry,
    pub connected_proxies: Family<StreamLabel, Gauge>,
    pub pushes: Family<TypeLabel, Counter>,
    pub push_bytes: Family<TypeLabel, Counter>,
    pub nacks: Family<TypeLabel, Counter>,
    /// Snapshot published -> response written to the stream.
    pub push_latency: Family<TypeLabel, Histogram, fn() -> Histogram>,
    /// Snapshot published -> the proxy ACKed the resulting response.
    pub convergence: Family<TypeLabel, Histogram, fn() -> Histogram>,
    pub snapshot_version: Gauge,
    pub config_rejected: Gauge,
    pub config_accepted: Gauge,
    /// xDS calls refused for a missing or bad token.
    pub xds_auth_failures: Counter,
    /// Expiry (Unix seconds) of the CA's signing certificate.
    pub ca_cert_expiry: Gauge,
    /// Expiry (Unix seconds) of the xDS serving certificate.
    pub serving_cert_expiry: Gauge,
    /// Earliest expiry (Unix seconds) among issued workload certificates.
    pub workload_cert_expiry: Gauge,
    /// Certificates signed for CSRs (Istio's CreateCertificate).
    pub csr_issued: Counter,
    /// 1 while this replica makes the cluster-wide writes (holds the
    /// leader Lease, or leader election is off); 0 otherwise.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rudder");
        let m = Metrics {
            connected_proxies: Family::default(),
            pushes: Family::default(),
            push_bytes: Family::default(),
            nacks: Family::default(),
            push_latency: Family::new_with_constructor(latency_histogram),
            convergence: Family::new_with_constructor(latency_histogram),
            snapshot_version: Gauge::default(),
            config_rejected: Gauge::default(),
            config_accepted: Gauge::default(),
            xds_auth_failures: Counter::default(),
            ca_cert_expiry: Gauge::default(),
            serving_cert_expiry: Gauge::default(),
            workload_cert_expiry: Gauge::default(),
            csr_issued: Counter::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "xds_connected_proxies",
            "Proxies with an open ADS stream",
            m.connected_proxies.clone(),
        );
        registry.register("xds_pushes", "xDS responses sent", m.pushes.clone());
        registry.register(
            "xds_push_bytes",
            "Serialized resource bytes sent",
            m.push_bytes.clone(),
        );
        registry.register(
            "xds_nacks",
            "xDS responses a proxy rejected",
            m.nacks.clone(),
        );
        registry.register(
            "xds_push_latency_seconds",
            "Snapshot publish to response sent",
            m.push_latency.clone(),
        );
        registry.register(
            "xds_convergence_seconds",
            "Snapshot publish to proxy ACK",
            m.convergence.clone(),
        );
        registry.register(
            "snapshot_version",
            "Version of the latest mesh snapshot",
            m.snapshot_version.clone(),
        );
        registry.register(
            "config_rejected_documents",
            "Config documents currently rejected",
            m.config_rejected.clone(),
        );
        registry.register(
            "config_accepted_objects",
            "Config objects currently accepted",
            m.config_accepted.clone(),
        );
        registry.register(
            "xds_auth_failures",
            "xDS calls refused for a missing, invalid or mismatched token",
            m.xds_auth_failures.clone(),
        );
        registry.register(
            "ca_cert_expiry_timestamp",
            "Unix time the CA signing certificate expires",
            m.ca_cert_expiry.clone(),
        );
        registry.register(
            "xds_serving_cert_expiry_timestamp",
            "Unix time the xDS TLS serving certificate expires",
            m.serving_cert_expiry.clone(),
        );
        registry.register(
            "workload_cert_earliest_expiry_timestamp",
            "Unix time the first issued workload certificate expires",
            m.workload_cert_expiry.clone(),
        );
        registry.register(
            "csr_issued",
            "Certificates signed for workload CSRs (Istio CreateCertificate)",
            m.csr_issued.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica makes the cluster-wide Kubernetes writes (holds the leader Lease)",
            m.leader.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
