//! Istio's `WorkloadEntry`: one non-Kubernetes workload (a VM, a bare-metal
//! server) described for the mesh. The same shape is a `ServiceEntry` endpoint.

use std::collections::{BTreeMap, BTreeSet};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::selector::{
    check_fqdn, check_ip, check_labels, check_port_name, check_port_number, check_unix_address,
    IstioStatus, UNIX_PREFIX,
};
use crate::api::FieldError;

/// Configuration affecting VMs onboarded into the mesh. See more details at:
/// https://istio.io/docs/reference/config/networking/workload-entry.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "WorkloadEntry",
    plural = "workloadentries",
    namespaced,
    shortname = "we",
    category = "istio-io",
    category = "networking-istio-io",
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Configuration affecting VMs onboarded into the mesh. See more details at: https://istio.io/docs/reference/config/networking/workload-entry.html",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Address",
        type_ = "string",
        json_path = ".spec.address",
        description = "Address associated with the network endpoint."
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    /// Address associated with the network endpoint without the port: an IP,
    /// a fully-qualified domain name (only with DNS resolution), or
    /// `unix:///absolute/path/to/socket`. If empty, `network` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Set of ports associated with the endpoint: a map of service port name to
    /// this endpoint's port. Takes precedence over the service's `targetPort`.
    /// Not for `unix://` addresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// One or more labels associated with the endpoint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network enables Istio to group endpoints resident in the same L3
    /// domain/network. Required if address is not provided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The locality associated with the endpoint, e.g. `us/us-east-1/az-1/r11`:
    /// failure domains separated by `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// The load balancing weight associated with the endpoint. Endpoints with
    /// higher weights will receive proportionally higher traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The service account associated with the workload if a sidecar is present
    /// in the workload, in the same namespace as the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// The one validator for `WorkloadEntry` (Istio's `ValidateWorkloadEntry`).
pub fn validate(spec: &WorkloadEntrySpec) -> Result<(), FieldError> {
    check_workload_entry("spec", spec, None, true)
}

/// Istio's `validateWorkloadEntry`, shared with ServiceEntry endpoints:
/// `service_ports` are the port names the service defines (endpoint ports must
/// use them), and `allow_fqdn` is false for STATIC resolution, which needs IPs.
pub(crate) fn check_workload_entry(
    field: &str,
    we: &WorkloadEntrySpec,
    service_ports: Option<&BTreeSet<&str>>,
    allow_fqdn: bool,
) -> Result<(), FieldError> {
    let address = we.address.as_deref().unwrap_or("");
    let at = format!("{field}.address");
    if address.is_empty() && we.network.as_deref().unwrap_or("").is_empty() {
        return Err(FieldError::new(
            at,
            "address is required (it may be left empty only when network is set)",
        ));
    }
    // The limits Istio's CRD schema sets; a file-sourced object meets them too.
    for (name, value, max) in [
        ("address", &we.address, 256),
        ("network", &we.network, 2048),
        ("locality", &we.locality, 2048),
        ("serviceAccount", &we.service_account, 253),
    ] {
        if let Some(v) = value.as_deref().filter(|v| v.len() > max) {
            return Err(FieldError::new(
                format!("{field}.{name}"),
                format!("{v:?} is longer than {max} characters"),
            ));
        }
    }
    let unix = address.strip_prefix(UNIX_PREFIX);
    if let Some(path) = unix {
        check_unix_address(&at, path)?;
        if !we.ports.is_empty() {
            return Err(FieldError::new(
                format!("{field}.ports"),
                format!("unix endpoint {address} must not include ports"),
            ));
        }
    } else if !address.is_empty() && check_ip(&at, address).is_err() {
        if !allow_fqdn {
            return Err(FieldError::new(at, format!("endpoint address {address:?} is not a valid IP address (STATIC resolution needs IPs)")));
        }
        check_fqdn(&at, address).map_err(|_| {
            FieldError::new(
                &at,
                format!("endpoint address {address:?} is not a valid FQDN or IP address"),
            )
        })?;
    }
    for (name, port) in &we.ports {
        let port_at = format!("{field}.ports[{name:?}]");
        if service_ports.is_some_and(|ports| !ports.contains(name.as_str())) {
            return Err(FieldError::new(
                port_at,
                format!("endpoint port {name:?} is not defined by the service entry's ports"),
            ));
        }
        check_port_name(&port_at, name)?;
        check_port_number(&port_at, *port)?;
    }
    check_labels(&format!("{field}.labels"), &we.labels)?;
    if unix.is_some() && service_ports.is_some_and(|ports| ports.len() != 1) {
        return Err(FieldError::new(
            at,
            "exactly 1 service port is required for unix endpoints",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::networking::testing::{
        assert_fixtures_round_trip, assert_rejected, assert_structural,
    };
    use kube::CustomResourceExt;
    use pretty_assertions::assert_eq;

    fn parse(yaml: &str) -> WorkloadEntrySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn istio_examples_parse_validate_and_round_trip() {
        assert_fixtures_round_trip("workload_entry", 1, |o: &WorkloadEntry| validate(&o.spec));
    }

    #[test]
    fn invalid_workload_entries() {
        let cases = [
            ("{}", "spec.address", "address is required"),
            (
                "address: 'unix://relative/sock'",
                "spec.address",
                "absolute path",
            ),
            ("address: 'unix:///dir/'", "spec.address", "absolute path"),
            (
                "{address: 'unix:///var/run/a.sock', ports: {http: 80}}",
                "spec.ports",
                "must not include ports",
            ),
            (
                "address: 'not a host'",
                "spec.address",
                "not a valid FQDN or IP",
            ),
            (
                "address: '*.example.com'",
                "spec.address",
                "not a valid FQDN or IP",
            ),
            (
                "{address: 1.2.3.4, ports: {http: 0}}",
                "spec.ports[\"http\"]",
                "between 1 and 65535, got 0",
            ),
            (
                "{address: 1.2.3.4, ports: {http: 70000}}",
                "spec.ports[\"http\"]",
                "got 70000",
            ),
            (
                "{address: 1.2.3.4, ports: {'Bad_Name': 80}}",
                "spec.ports[\"Bad_Name\"]",
                "invalid port name",
            ),
            (
                "{address: 1.2.3.4, labels: {'bad key': x}}",
                "spec.labels[\"bad key\"]",
                "invalid label key",
            ),
            (
                "{address: 1.2.3.4, labels: {app: '-x'}}",
                "spec.labels[\"app\"]",
                "invalid label value",
            ),
        ];
        assert_rejected(&cases, |yaml| validate(&parse(yaml)));
        let long = format!("{{address: 1.2.3.4, serviceAccount: {}}}", "a".repeat(254));
        assert_eq!(
            validate(&parse(&long)).unwrap_err().field,
            "spec.serviceAccount"
        );
        // An empty address is fine for a workload reached through its network's gateway.
        validate(&parse("{network: cluster-2-network}")).unwrap();
    }

    #[test]
    fn crd_is_structural() {
        let crd = WorkloadEntry::crd();
        assert_structural(&crd);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("workloadentries.networking.istio.io")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["we".to_string()]));
    }
}
