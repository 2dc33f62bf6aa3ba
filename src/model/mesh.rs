use std::time::Duration;

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
    /// `extensionProviders`, in the order given; names are unique.
    pub extension_providers: Vec<ExtensionProvider>,
    /// `localityLbSetting`; Istio's default is `{enabled: true}`.
    pub locality_lb: super::LocalityLbSetting,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            outbound_traffic_policy: OutboundPolicy::AllowAny,
            access_log_file: None,
            root_namespace: "istio-system".to_string(),
            trust_domain: "cluster.local".to_string(),
            extension_providers: Vec::new(),
            locality_lb: super::LocalityLbSetting::mesh_default(),
        }
    }
}

/// MeshConfig `extensionProviders`: the external authorizers CUSTOM
/// AuthorizationPolicies delegate to, by name. Other provider kinds (tracing,
/// logging) are kept by name only, so a policy naming one fails closed with a
/// clear reason instead of "not found".
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExtensionProvider {
    pub name: String,
    pub kind: ExtensionProviderKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ExtensionProviderKind {
    ExtAuthzHttp(ExtAuthzHttp),
    ExtAuthzGrpc(ExtAuthzGrpc),
    /// A provider Rudder does not act on (e.g. `zipkin`), by its field name.
    Other(String),
}

/// `envoyExtAuthzHttp`: Envoy's ext_authz filter calling an HTTP service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExtAuthzHttp {
    /// `[namespace/]hostname` of a mesh service or ServiceEntry.
    pub service: String,
    pub port: u16,
    pub timeout: Option<Duration>,
    pub path_prefix: String,
    pub fail_open: bool,
    /// HTTP status returned when the authorizer cannot be reached.
    pub status_on_error: Option<u16>,
    /// Header name patterns (`x`, `x*`, `*x`) sent to the authorizer.
    pub include_request_headers_in_check: Vec<String>,
    /// Headers added to the check request, (name, value).
    pub include_additional_headers_in_check: Vec<(String, String)>,
    pub headers_to_upstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_deny: Vec<String>,
    pub include_request_body_in_check: Option<ExtAuthzBody>,
}

/// `envoyExtAuthzGrpc`: Envoy's ext_authz filter calling a gRPC service;
/// the only kind that can also check TCP connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExtAuthzGrpc {
    pub service: String,
    pub port: u16,
    pub timeout: Option<Duration>,
    pub fail_open: bool,
    pub status_on_error: Option<u16>,
    pub include_request_body_in_check: Option<ExtAuthzBody>,
}

/// `includeRequestBodyInCheck`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExtAuthzBody {
    pub max_request_bytes: u32,
    pub allow_partial_message: bool,
    pub pack_as_bytes: bool,
}
