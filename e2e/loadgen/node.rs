//! Istio's sidecar identity: the node id and metadata istio-agent would send.
//! Only Istio conventions here, so the load generator works against istiod too.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind as ValueKind, Struct, Value};

use crate::plan;

#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub namespaces: u32,
    /// When non-zero, proxy i is a pod of service `svc-(i % apps)`, in that
    /// service's namespace, so the service selects it (inbound listeners).
    pub apps: u32,
    pub interception: String,
    pub istio_version: String,
    pub cluster_id: String,
}

/// Proxy `i`'s pod: (namespace, app label, pod name).
fn placement(i: u32, o: &NodeOptions) -> (String, String, String) {
    if o.apps > 0 {
        let svc = i % o.apps;
        let ns = plan::namespace_name(plan::namespace_of(svc, o.namespaces));
        let app = plan::service_name(svc);
        let pod = format!("{app}-p{i}");
        (ns, app, pod)
    } else {
        let ns = plan::namespace_name(i % o.namespaces.max(1));
        (ns, "loadgen".to_string(), format!("loadgen-{i}"))
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(ValueKind::StringValue(s.to_string())),
    }
}

fn fields(items: Vec<(&str, Value)>) -> Struct {
    Struct {
        fields: items.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

pub fn node(i: u32, o: &NodeOptions) -> Result<Node, String> {
    let ip = plan::proxy_ip(i)?;
    let (ns, app, pod) = placement(i, o);
    let labels = fields(vec![("app", string(&app)), ("version", string("v1"))]);
    let metadata = fields(vec![
        ("ISTIO_VERSION", string(&o.istio_version)),
        ("NAMESPACE", string(&ns)),
        ("NAME", string(&pod)),
        (
            "LABELS",
            Value {
                kind: Some(ValueKind::StructValue(labels)),
            },
        ),
        ("SERVICE_ACCOUNT", string(&app)),
        ("INTERCEPTION_MODE", string(&o.interception)),
        ("CLUSTER_ID", string(&o.cluster_id)),
        ("INSTANCE_IPS", string(&ip.to_string())),
    ]);
    Ok(Node {
        id: format!("sidecar~{ip}~{pod}.{ns}~{ns}.svc.cluster.local"),
        cluster: format!("{app}.{ns}"),
        metadata: Some(metadata),
        user_agent_name: "envoy".to_string(),
        ..Default::default()
    })
}
