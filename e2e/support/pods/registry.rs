//! What the mesh registry of a test network holds, and the files made from
//! it: the Kubernetes YAML Rudder serves and each pod's hosts file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

#[derive(Default)]
pub(super) struct Registry {
    pub(super) services: Vec<ServiceDef>,
    pub(super) pods: Vec<PodDef>,
    pub(super) next_pod: u8,
}

pub(super) struct ServiceDef {
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) vip: Ipv4Addr,
    /// (port name, port, target port)
    pub(super) ports: Vec<(String, u16, u16)>,
}

pub(super) struct PodDef {
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) ip: Ipv4Addr,
    pub(super) netns: String,
    /// In the mesh registry (Pod object, EndpointSlices); false for
    /// "external" workloads the mesh knows nothing about.
    pub(super) registered: bool,
}

pub(super) fn mesh_yaml(reg: &Registry) -> String {
    let mut docs: Vec<Value> = Vec::new();
    for svc in &reg.services {
        docs.push(service_doc(svc));
        docs.push(slice_doc(svc, &reg.pods));
    }
    docs.extend(reg.pods.iter().filter(|p| p.registered).map(pod_doc));
    let docs: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).expect("JSON"))
        .collect();
    // JSON is YAML; one document per object.
    format!(
        "# Written by e2e/support/pods.rs.\n{}\n",
        docs.join("\n---\n")
    )
}

fn service_doc(svc: &ServiceDef) -> Value {
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|(name, port, target)| json!({"name": name, "port": port, "targetPort": target, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": svc.namespace},
        "spec": {"clusterIP": svc.vip.to_string(), "selector": {"app": svc.name}, "ports": ports},
    })
}

fn slice_doc(svc: &ServiceDef, pods: &[PodDef]) -> Value {
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|(name, _, target)| json!({"name": name, "port": target, "protocol": "TCP"}))
        .collect();
    let endpoints: Vec<Value> = pods
        .iter()
        .filter(|p| p.registered && p.namespace == svc.namespace)
        .filter(|p| p.labels.get("app") == Some(&svc.name))
        .map(|p| {
            json!({
                "addresses": [p.ip.to_string()],
                "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-e2e", svc.name),
            "namespace": svc.namespace,
            "labels": {"kubernetes.io/service-name": svc.name},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    })
}

fn pod_doc(pod: &PodDef) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": pod.labels},
        "spec": {
            "serviceAccountName": service_account(&pod.labels),
            "containers": [{"name": "app", "image": "rudder-echo"}],
        },
        "status": {"phase": "Running", "podIP": pod.ip.to_string(), "podIPs": [{"ip": pod.ip.to_string()}]},
    })
}

/// One service account per app, as is usual in a mesh.
pub(super) fn service_account(labels: &BTreeMap<String, String>) -> String {
    labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| "default".into())
}

/// The pod's own name, and every service by the names a Kubernetes pod in
/// its namespace could use (the bare name only within the same namespace).
pub(super) fn hosts_file(reg: &Registry, pod: &PodDef) -> String {
    let mut out = format!("127.0.0.1\tlocalhost\n{}\t{}\n", pod.ip, pod.name);
    for svc in &reg.services {
        let (name, ns) = (&svc.name, &svc.namespace);
        let bare = if *ns == pod.namespace {
            format!(" {name}")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{}\t{name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns}{bare}\n",
            svc.vip
        ));
    }
    out
}
