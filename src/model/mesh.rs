/// What to do with traffic to destinations the mesh does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum OutboundPolicy {
    /// Pass it through to its original destination (Istio's default).
    #[default]
    AllowAny,
    /// Drop it: only registered services are reachable.
    RegistryOnly,
}

/// Mesh-wide settings (Istio's MeshConfig, the part Rudder uses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MeshConfig {
    pub outbound_traffic_policy: OutboundPolicy,
    /// Envoy access log path for every HTTP and TCP proxy filter; none when unset.
    pub access_log_file: Option<String>,
    pub root_namespace: String,
    pub trust_domain: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            outbound_traffic_policy: OutboundPolicy::AllowAny,
            access_log_file: None,
            root_namespace: "istio-system".to_string(),
            trust_domain: "cluster.local".to_string(),
        }
    }
}
