//! Istio's MeshConfig from its ConfigMap (`istio-system/istio`, key `mesh`),
//! read once at start-up, as `--mesh-config` is in file mode.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::KubeSourceError;
use crate::model::MeshConfig;

/// Where the mesh config lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfigMap {
    pub namespace: String,
    pub name: String,
    /// The data key holding MeshConfig YAML.
    pub key: String,
}

impl Default for MeshConfigMap {
    fn default() -> Self {
        MeshConfigMap {
            namespace: "istio-system".into(),
            name: "istio".into(),
            key: "mesh".into(),
        }
    }
}

impl fmt::Display for MeshConfigMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} key {}", self.namespace, self.name, self.key)
    }
}

/// `NAMESPACE/NAME`, for the command line; the key is Istio's `mesh`.
impl FromStr for MeshConfigMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(MeshConfigMap {
                    namespace: ns.into(),
                    name: name.into(),
                    ..MeshConfigMap::default()
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

/// The mesh config the ConfigMap holds; Istio's defaults when the ConfigMap
/// or its key does not exist.
pub async fn read(client: kube::Client, at: &MeshConfigMap) -> Result<MeshConfig, KubeSourceError> {
    let api: Api<ConfigMap> = Api::namespaced(client, &at.namespace);
    let map = api
        .get_opt(&at.name)
        .await
        .map_err(|e| KubeSourceError::ReadMeshConfig(at.clone(), Box::new(e)))?;
    match map.and_then(|m| m.data).and_then(|mut d| d.remove(&at.key)) {
        Some(text) => parse(at, &text),
        None => {
            tracing::info!(configmap = %at, "no mesh config in the cluster; using the defaults");
            Ok(MeshConfig::default())
        }
    }
}

fn parse(at: &MeshConfigMap, text: &str) -> Result<MeshConfig, KubeSourceError> {
    crate::api::parse_mesh_config(text).map_err(|e| KubeSourceError::MeshConfig(at.clone(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_from_the_command_line() {
        let at: MeshConfigMap = "mesh/cfg".parse().unwrap();
        assert_eq!(at.to_string(), "mesh/cfg key mesh");
        for bad in ["istio", "/istio", "ns/", "a/b/c"] {
            assert!(bad.parse::<MeshConfigMap>().is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_configmap_and_field() {
        let at = MeshConfigMap::default();
        let err = parse(&at, "outboundTrafficPolicy: {mode: SOMETIMES}").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "mesh config in ConfigMap istio-system/istio key mesh: outboundTrafficPolicy.mode"
            ),
            "{err}"
        );
        assert_eq!(parse(&at, "").unwrap(), MeshConfig::default());
    }
}
