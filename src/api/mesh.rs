//! Istio's MeshConfig, the subset Rudder acts on, with Istio's field names so a
//! user's `mesh` ConfigMap content works as a `--mesh-config` file. Fields
//! Rudder does not use are accepted and ignored.

use serde::Deserialize;

use super::FieldError;
use crate::model::{MeshConfig, OutboundPolicy};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeshConfig {
    #[serde(default)]
    outbound_traffic_policy: Option<RawOutboundTrafficPolicy>,
    #[serde(default)]
    access_log_file: Option<String>,
    #[serde(default)]
    root_namespace: Option<String>,
    #[serde(default)]
    trust_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawOutboundTrafficPolicy {
    #[serde(default)]
    mode: Option<String>,
}

/// Parses MeshConfig YAML. An empty document is the default mesh config.
pub fn parse_mesh_config(text: &str) -> Result<MeshConfig, FieldError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| FieldError::new("", format!("invalid YAML: {e}")))?;
    if value.is_null() {
        return Ok(MeshConfig::default());
    }
    let raw: RawMeshConfig = serde_path_to_error::deserialize(value)
        .map_err(|e| FieldError::new(e.path().to_string(), e.into_inner().to_string()))?;
    let mut mesh = MeshConfig::default();
    if let Some(mode) = raw.outbound_traffic_policy.and_then(|p| p.mode) {
        mesh.outbound_traffic_policy = match mode.as_str() {
            "ALLOW_ANY" => OutboundPolicy::AllowAny,
            "REGISTRY_ONLY" => OutboundPolicy::RegistryOnly,
            other => {
                return Err(FieldError::new(
                    "outboundTrafficPolicy.mode",
                    format!("must be ALLOW_ANY or REGISTRY_ONLY, got {other:?}"),
                ))
            }
        };
    }
    mesh.access_log_file = raw.access_log_file.filter(|f| !f.is_empty());
    if let Some(ns) = raw.root_namespace {
        super::field::check_dns_label("rootNamespace", &ns)?;
        mesh.root_namespace = ns;
    }
    if let Some(td) = raw.trust_domain {
        super::field::check_dns_subdomain("trustDomain", &td)?;
        mesh.trust_domain = td;
    }
    Ok(mesh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_istio_field_names_and_ignores_the_rest() {
        let text = "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\naccessLogFile: /dev/stdout\nenableTracing: true\ndefaultConfig: {concurrency: 2}\n";
        let mesh = parse_mesh_config(text).unwrap();
        assert_eq!(mesh.outbound_traffic_policy, OutboundPolicy::RegistryOnly);
        assert_eq!(mesh.access_log_file.as_deref(), Some("/dev/stdout"));
        assert_eq!(mesh.root_namespace, "istio-system");
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = parse_mesh_config("outboundTrafficPolicy: {mode: SOMETIMES}\n").unwrap_err();
        assert_eq!(err.field, "outboundTrafficPolicy.mode");
        let err = parse_mesh_config("accessLogFile: [1]\n").unwrap_err();
        assert_eq!(err.field, "accessLogFile");
        assert_eq!(parse_mesh_config("").unwrap(), MeshConfig::default());
    }
}
