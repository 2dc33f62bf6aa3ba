//! The pieces every ADS test needs: a mesh in YAML, a running index + server,
//! and decoding of what the server sent. The fake Envoys live in `envoy.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Endpoint;

pub use super::envoy::{DeltaEnvoy, Envoy};
use crate::index::Index;
use crate::metrics::Metrics;
use crate::source::file::parse_text;
use crate::source::SourceEvent;
pub use crate::xds::TypeUrl;
use crate::xds::{serve, SyncStatus, XdsContext};

/// How long a response may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long to listen to conclude that nothing is being sent.
pub const QUIET: Duration = Duration::from_millis(300);

pub const NODE: &str = "sidecar~198.18.0.5~client-0.demo~demo.svc.cluster.local";
pub const NODE_2: &str = "sidecar~198.18.0.6~client-1.demo~demo.svc.cluster.local";

pub const WEB: &str = "outbound|8080||web.demo.svc.cluster.local";
pub const API: &str = "outbound|9090||api.demo.svc.cluster.local";
pub const SHOP: &str = "outbound|8080||shop.demo.svc.cluster.local";
pub const SHOP_ADMIN: &str = "outbound|7070||shop.demo.svc.cluster.local";
pub const PASSTHROUGH: &str = "PassthroughCluster";
pub const BLACKHOLE: &str = "BlackHoleCluster";

pub const CDS: TypeUrl = TypeUrl::Cluster;
pub const EDS: TypeUrl = TypeUrl::Endpoint;
pub const LDS: TypeUrl = TypeUrl::Listener;
pub const RDS: TypeUrl = TypeUrl::Route;

// ---------------------------------------------------------------------------
// The mesh, as a user would write it.

const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: demo
";

fn service(name: &str, cluster_ip: &str, port_name: &str, port: u16, target: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: demo
spec:
  clusterIP: {cluster_ip}
  selector:
    app: {name}
  ports:
  - name: {port_name}
    port: {port}
    targetPort: {target}
"
    )
}

/// One EndpointSlice; every address is a ready endpoint on `port`.
pub fn slice(name: &str, service: &str, port_name: &str, port: u16, ips: &[&str]) -> String {
    let mut endpoints = String::new();
    for ip in ips {
        let _ = write!(
            endpoints,
            "\n- addresses: [\"{ip}\"]\n  conditions:\n    ready: true"
        );
    }
    if ips.is_empty() {
        endpoints.push_str(" []");
    }
    format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: demo
  labels:
    kubernetes.io/service-name: {service}
addressType: IPv4
endpoints:{endpoints}
ports:
- name: {port_name}
  port: {port}
  protocol: TCP
"
    )
}

/// A third service, two HTTP ports: one shared with `web` (8080), one new (7070).
const SHOP_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: shop
  namespace: demo
spec:
  clusterIP: 198.19.0.12
  selector:
    app: shop
  ports:
  - name: http
    port: 8080
    targetPort: 9080
  - name: http-admin
    port: 7070
    targetPort: 7070
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: shop-8hq2d
  namespace: demo
  labels:
    kubernetes.io/service-name: shop
addressType: IPv4
endpoints:
- addresses: [\"198.18.3.10\"]
ports:
- name: http
  port: 9080
- name: http-admin
  port: 7070
";

/// Namespace `demo` with `web` (http 8080 -> 9080) and `api` (grpc 9090).
/// `None` leaves a service out entirely.
pub fn mesh_of(web: Option<&[&str]>, api: Option<&[&str]>, shop: bool) -> String {
    let mut docs = vec![NAMESPACE.to_string()];
    if let Some(ips) = web {
        docs.push(service("web", "198.19.0.10", "http", 8080, 9080));
        docs.push(slice("web-7x2kq", "web", "http", 9080, ips));
    }
    if let Some(ips) = api {
        docs.push(service("api", "198.19.0.11", "grpc", 9090, 9090));
        docs.push(slice("api-4m9zt", "api", "grpc", 9090, ips));
    }
    if shop {
        docs.push(SHOP_SERVICE.to_string());
    }
    docs.join("---\n")
}

pub const WEB_IPS: &[&str] = &["198.18.1.10", "198.18.1.11"];
pub const API_IPS: &[&str] = &["198.18.2.10"];

/// The standard mesh: web and api.
pub fn mesh(web: &[&str], api: &[&str]) -> String {
    mesh_of(Some(web), Some(api), false)
}

// ---------------------------------------------------------------------------
// The control plane under test.

pub struct Harness {
    pub ctx: Arc<XdsContext>,
    pub addr: SocketAddr,
    events: mpsc::Sender<SourceEvent>,
    _stop: oneshot::Sender<()>,
}

impl Harness {
    /// A server whose index has loaded `yaml` and is synced.
    pub async fn start(yaml: &str) -> Harness {
        let h = Harness::unsynced(yaml).await;
        h.sync().await;
        h
    }

    /// A server whose index has loaded `yaml` but not heard `Synced` yet.
    pub async fn unsynced(yaml: &str) -> Harness {
        let (index, snapshots) = Index::new(1, Duration::from_millis(10));
        let (events, rx) = mpsc::channel(64);
        tokio::spawn(index.run(rx));
        let ctx = XdsContext::new(snapshots, None, Arc::new(Metrics::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, ctx.clone(), async move {
            let _ = stopped.await;
        }));
        let h = Harness {
            ctx,
            addr,
            events,
            _stop: stop,
        };
        h.apply(yaml).await;
        h
    }

    /// The latest published snapshot version.
    pub fn version(&self) -> u64 {
        self.ctx.snapshots.borrow().version
    }

    /// Replaces the mesh file's content, as an editor saving it would, and
    /// waits until the index has published the result.
    pub async fn apply(&self, yaml: &str) {
        let before = self.version();
        let items = parse_text(yaml);
        let event = SourceEvent::Replace {
            unit: "mesh.yaml".to_string(),
            items,
        };
        self.events.send(event).await.expect("index is running");
        self.wait_for("a new snapshot", |s| s.version > before)
            .await;
        let status = self.ctx.snapshots.borrow().status.clone();
        assert!(
            status.rejected.is_empty(),
            "test YAML was rejected: {:?}",
            status.rejected
        );
    }

    pub async fn sync(&self) {
        self.events
            .send(SourceEvent::Synced)
            .await
            .expect("index is running");
        self.wait_for("a synced snapshot", |s| s.synced).await;
    }

    async fn wait_for(&self, what: &str, f: impl FnMut(&Arc<crate::model::Snapshot>) -> bool) {
        let mut rx = self.ctx.snapshots.clone();
        let outcome = tokio::time::timeout(TIMEOUT, rx.wait_for(f))
            .await
            .map(|r| r.map(drop));
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("the index stopped while waiting for {what}"),
            Err(_) => panic!("the index did not publish {what} within {TIMEOUT:?}"),
        }
    }

    /// The registry's entries for one proxy id.
    pub fn status_of(&self, node: &str) -> Vec<SyncStatus> {
        self.ctx
            .registry
            .all()
            .into_iter()
            .filter(|s| s.proxy == node)
            .collect()
    }

    /// The one stream of `node`, failing if there is not exactly one.
    pub fn only_status(&self, node: &str) -> SyncStatus {
        let mut all = self.status_of(node);
        assert_eq!(
            all.len(),
            1,
            "expected one registered stream for {node}, got {all:?}"
        );
        all.remove(0)
    }

    /// Polls the registry until `f` holds for `node`'s entries.
    pub async fn wait_registry(&self, node: &str, what: &str, f: impl Fn(&[SyncStatus]) -> bool) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let entries = self.status_of(node);
            if f(&entries) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "registry never showed {what}; it has {entries:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn sotw(&self, node: &str) -> Envoy {
        Envoy::connect(Endpoint::from_shared(self.url()).expect("url"), node).await
    }

    pub async fn delta(&self, node: &str) -> DeltaEnvoy {
        DeltaEnvoy::connect(Endpoint::from_shared(self.url()).expect("url"), node).await
    }
}

/// Envoy's node: Istio's id, plus metadata saying there is no traffic capture
/// (so listeners and routes are generated for 127.0.0.1).
pub fn node(id: &str) -> Node {
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    // `TYPE~IP~POD.NAMESPACE~...`: the namespace as the injector would put it.
    let namespace = id
        .split('~')
        .nth(2)
        .and_then(|p| p.split_once('.'))
        .map_or("", |(_, ns)| ns);
    let mut fields = BTreeMap::new();
    fields.insert("INTERCEPTION_MODE".to_string(), string("NONE"));
    fields.insert("NAMESPACE".to_string(), string(namespace));
    Node {
        id: id.to_string(),
        cluster: format!("client.{namespace}"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Decoding what the server sent.

pub fn decode<M: Message + Default>(any: &Any) -> M {
    M::decode(any.value.as_slice())
        .unwrap_or_else(|e| panic!("cannot decode {}: {e}", any.type_url))
}

/// The resource's own name, read from inside the resource.
pub fn name_of(any: &Any) -> String {
    match TypeUrl::parse(&any.type_url) {
        Some(TypeUrl::Cluster) => decode::<Cluster>(any).name,
        Some(TypeUrl::Endpoint) => decode::<ClusterLoadAssignment>(any).cluster_name,
        Some(TypeUrl::Listener) => decode::<Listener>(any).name,
        Some(TypeUrl::Route) => decode::<RouteConfiguration>(any).name,
        Some(TypeUrl::Secret) => decode::<Secret>(any).name,
        None => panic!("unexpected resource type {}", any.type_url),
    }
}

pub fn names(resources: &[Any]) -> Vec<String> {
    let mut out: Vec<String> = resources.iter().map(name_of).collect();
    out.sort();
    out
}

/// The `outbound|...` cluster (or load assignment) names among `names`: the
/// ones the mesh's Services produce, as opposed to Istio's fixed clusters.
pub fn outbound(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.starts_with("outbound|"))
        .cloned()
        .collect()
}

/// Asserts a CDS set: exactly these Service clusters, plus Istio's fixed ones.
pub fn assert_clusters(got: &[String], services: &[&str]) {
    assert_eq!(
        outbound(got),
        sorted(services),
        "Service clusters in {got:?}"
    );
    for fixed in [PASSTHROUGH, BLACKHOLE] {
        assert!(
            got.iter().any(|n| n == fixed),
            "{fixed} missing from {got:?}"
        );
    }
}

pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// `ip:port` of every endpoint of a load assignment, sorted.
pub fn addresses(cla: &ClusterLoadAssignment) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
    let mut out = Vec::new();
    for locality in &cla.endpoints {
        for lb in &locality.lb_endpoints {
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                continue;
            };
            let Some(address::Address::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                continue;
            };
            let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
                continue;
            };
            out.push(format!("{}:{port}", sa.address));
        }
    }
    out.sort();
    out
}

/// The load assignment named `name` in a response, failing if absent.
pub fn assignment(resources: &[Any], name: &str) -> ClusterLoadAssignment {
    resources
        .iter()
        .map(decode::<ClusterLoadAssignment>)
        .find(|c| c.cluster_name == name)
        .unwrap_or_else(|| panic!("no load assignment {name:?} among {:?}", names(resources)))
}

/// Clusters Envoy must fetch endpoints for (EDS clusters' service names).
pub fn eds_names(cds: &[Any]) -> Vec<String> {
    let mut out: Vec<String> = cds
        .iter()
        .map(decode::<Cluster>)
        .filter_map(|c| c.eds_cluster_config.map(|e| e.service_name))
        .collect();
    out.sort();
    out
}

/// Route configurations the listeners refer to through RDS.
pub fn rds_names(lds: &[Any]) -> Vec<String> {
    let mut out = Vec::new();
    for listener in lds.iter().map(decode::<Listener>) {
        for f in listener.filter_chains.iter().flat_map(|c| c.filters.iter()) {
            let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if !any.type_url.ends_with("HttpConnectionManager") {
                continue;
            }
            if let Some(RouteSpecifier::Rds(rds)) =
                decode::<HttpConnectionManager>(any).route_specifier
            {
                out.push(rds.route_config_name);
            }
        }
    }
    out.sort();
    out
}

pub fn describe(r: &DiscoveryResponse) -> String {
    let t = TypeUrl::parse(&r.type_url).map_or(r.type_url.as_str(), |t| t.short());
    format!(
        "{t} version {} nonce {} resources {:?}",
        r.version_info,
        r.nonce,
        names(&r.resources)
    )
}

pub fn describe_delta(r: &DeltaDiscoveryResponse) -> String {
    let t = TypeUrl::parse(&r.type_url).map_or(r.type_url.as_str(), |t| t.short());
    let sent: Vec<&str> = r.resources.iter().map(|x| x.name.as_str()).collect();
    format!(
        "delta {t} nonce {} resources {sent:?} removed {:?}",
        r.nonce, r.removed_resources
    )
}

fn short(t: &str) -> &str {
    TypeUrl::parse(t).map_or(t, |t| t.short())
}

/// Name -> version of the resources in a delta response.
pub fn versions(r: &DeltaDiscoveryResponse) -> BTreeMap<String, String> {
    r.resources
        .iter()
        .map(|x| (x.name.clone(), x.version.clone()))
        .collect()
}

/// Resource names of a delta response, sorted.
pub fn delta_names(r: &DeltaDiscoveryResponse) -> Vec<String> {
    let mut out: Vec<String> = r.resources.iter().map(|x| x.name.clone()).collect();
    out.sort();
    out
}

/// Short type names of a sequence of responses, for ordering assertions.
pub fn types(rs: &[DiscoveryResponse]) -> Vec<&str> {
    rs.iter().map(|r| short(&r.type_url)).collect()
}

pub fn delta_types(rs: &[DeltaDiscoveryResponse]) -> Vec<&str> {
    rs.iter().map(|r| short(&r.type_url)).collect()
}
