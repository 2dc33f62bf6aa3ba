//! VMs behind a Kubernetes Service: a Service's selector picks the
//! WorkloadEntries of its namespace (Istio's default), shown by real HTTP
//! through real Envoy configured by a real `rudder serve`. Loopback
//! pattern (see traffic_policy.rs); the "VMs" are echo servers on their own
//! loopback addresses.

use crate::support::*;
use crate::traffic_l4::{expect_answering, outside, workload_entry};
use crate::traffic_policy::{Mesh, NS};

fn service(port: u16, target: u16, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: {port}, targetPort: {target}}}]\n"
    )
}

#[test]
fn kubernetes_service_selects_workload_entries() {
    let (port, target) = (free_port(), free_port());
    let vms = outside(&["vm-1", "vm-2", "vm-3", "other"], target);
    let mut files = vec![("web.yaml".to_string(), service(port, target, "web"))];
    for (name, ip, _) in &vms[..2] {
        files.push((format!("{name}.yaml"), workload_entry(name, "web", *ip)));
    }
    files.push((
        "other.yaml".into(),
        workload_entry("other", "other", vms[3].1),
    ));
    let mesh = Mesh::start(&files);
    let cluster = format!("outbound|{port}||web.{NS}.svc.cluster.local");
    let expect = |names: &[&str], why: &str| {
        expect_answering(&mesh, (port, "web"), &cluster, names, why);
    };
    expect(&["vm-1", "vm-2"], "the Service's selector picks the VMs");

    mesh.write("vm-3.yaml", &workload_entry("vm-3", "web", vms[2].1));
    expect(&["vm-1", "vm-2", "vm-3"], "vm-3 added");
    mesh.remove("vm-1.yaml");
    expect(&["vm-2", "vm-3"], "vm-1 deleted");
    // The selector decides: now only the entry labelled `other`.
    mesh.write("web.yaml", &service(port, target, "other"));
    expect(&["other"], "the selector changed");
}
