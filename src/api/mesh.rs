//! Istio's MeshConfig, the subset Rudder acts on, with Istio's field names so a
//! user's `mesh` ConfigMap content works as a `--mesh-config` file. Fields
//! Rudder does not use are accepted and ignored.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::FieldError;
use crate::model::mesh::{
    ExtAuthzBody, ExtAuthzGrpc, ExtAuthzHttp, ExtensionProvider, ExtensionProviderKind,
};
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
    #[serde(default)]
    extension_providers: Vec<serde_yaml::Value>,
    #[serde(default)]
    locality_lb_setting:
        Option<crate::api::networking::destination_rule::LocalityLoadBalancerSetting>,
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
    mesh.extension_providers = extension_providers(raw.extension_providers)?;
    if let Some(lb) = raw.locality_lb_setting {
        crate::api::networking::destination_rule::check_locality("localityLbSetting", &lb, None)?;
        mesh.locality_lb = lb.to_model();
    }
    Ok(mesh)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExtAuthzHttp {
    #[serde(default)]
    service: String,
    #[serde(default)]
    port: u32,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    fail_open: bool,
    #[serde(default)]
    status_on_error: Option<StringOrNumber>,
    #[serde(default)]
    include_request_headers_in_check: Vec<String>,
    /// Deprecated in Istio; used only when the field above is empty.
    #[serde(default)]
    include_headers_in_check: Vec<String>,
    #[serde(default)]
    include_additional_headers_in_check: BTreeMap<String, String>,
    #[serde(default)]
    headers_to_upstream_on_allow: Vec<String>,
    #[serde(default)]
    headers_to_downstream_on_allow: Vec<String>,
    #[serde(default)]
    headers_to_downstream_on_deny: Vec<String>,
    #[serde(default)]
    include_request_body_in_check: Option<RawBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExtAuthzGrpc {
    #[serde(default)]
    service: String,
    #[serde(default)]
    port: u32,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    fail_open: bool,
    #[serde(default)]
    status_on_error: Option<StringOrNumber>,
    #[serde(default)]
    include_request_body_in_check: Option<RawBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBody {
    #[serde(default)]
    max_request_bytes: u32,
    #[serde(default)]
    allow_partial_message: bool,
    #[serde(default)]
    pack_as_bytes: bool,
}

/// `statusOnError` is a string in Istio's API; an unquoted number is taken too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(i64),
}

/// The HTTP status codes Envoy's `type.v3.StatusCode` defines: Istio accepts
/// only these for `statusOnError`, and Envoy refuses any other.
const ENVOY_STATUS_CODES: &[u16] = &[
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// `extensionProviders`: every entry needs a unique, non-empty name and one
/// provider field. Only the ext_authz kinds are read; other kinds are kept
/// by name. Errors are Istio's (`ValidateExtensionProviderEnvoyExtAuthz*`).
fn extension_providers(raw: Vec<serde_yaml::Value>) -> Result<Vec<ExtensionProvider>, FieldError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, value) in raw.into_iter().enumerate() {
        let at = format!("extensionProviders[{i}]");
        let serde_yaml::Value::Mapping(map) = value else {
            return Err(FieldError::new(at, "must be a mapping"));
        };
        let mut name = None;
        let mut kinds = Vec::new();
        for (k, v) in map {
            match k.as_str() {
                Some("name") => name = v.as_str().map(str::to_string),
                Some(kind) => kinds.push((kind.to_string(), v)),
                None => return Err(FieldError::new(&at, "keys must be strings")),
            }
        }
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| {
            FieldError::new(
                format!("{at}.name"),
                "extension provider name must not be empty",
            )
        })?;
        if !names.insert(name.clone()) {
            return Err(FieldError::new(
                format!("{at}.name"),
                format!("extension provider name must be unique, found duplicate: {name}"),
            ));
        }
        let [(kind, body)] = <[_; 1]>::try_from(kinds).map_err(|kinds| {
            let found: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
            FieldError::new(
                &at,
                format!("needs exactly one provider field besides `name`, found {found:?}"),
            )
        })?;
        let at = format!("{at}.{kind}");
        let kind = match kind.as_str() {
            "envoyExtAuthzHttp" => ExtensionProviderKind::ExtAuthzHttp(ext_authz_http(&at, body)?),
            "envoyExtAuthzGrpc" => ExtensionProviderKind::ExtAuthzGrpc(ext_authz_grpc(&at, body)?),
            _ => ExtensionProviderKind::Other(kind),
        };
        out.push(ExtensionProvider { name, kind });
    }
    Ok(out)
}

fn deserialize<T: serde::de::DeserializeOwned>(
    at: &str,
    v: serde_yaml::Value,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            at.to_string()
        } else {
            format!("{at}.{path}")
        };
        FieldError::new(field, e.into_inner().to_string())
    })
}

fn ext_authz_http(at: &str, body: serde_yaml::Value) -> Result<ExtAuthzHttp, FieldError> {
    let raw: RawExtAuthzHttp = deserialize(at, body)?;
    if !raw.path_prefix.is_empty() && !raw.path_prefix.starts_with('/') {
        return Err(FieldError::new(
            format!("{at}.pathPrefix"),
            format!(
                "pathPrefix must begin with `/`, found: {:?}",
                raw.path_prefix
            ),
        ));
    }
    let request_headers = if raw.include_request_headers_in_check.is_empty() {
        ("includeHeadersInCheck", raw.include_headers_in_check)
    } else {
        (
            "includeRequestHeadersInCheck",
            raw.include_request_headers_in_check,
        )
    };
    for (field, headers) in [
        request_headers.clone(),
        (
            "headersToUpstreamOnAllow",
            raw.headers_to_upstream_on_allow.clone(),
        ),
        (
            "headersToDownstreamOnAllow",
            raw.headers_to_downstream_on_allow.clone(),
        ),
        (
            "headersToDownstreamOnDeny",
            raw.headers_to_downstream_on_deny.clone(),
        ),
    ] {
        check_header_patterns(&format!("{at}.{field}"), &headers)?;
    }
    Ok(ExtAuthzHttp {
        service: check_service(at, &raw.service)?,
        port: check_provider_port(at, raw.port)?,
        timeout: timeout(at, raw.timeout.as_deref())?,
        path_prefix: raw.path_prefix,
        fail_open: raw.fail_open,
        status_on_error: status_on_error(at, raw.status_on_error)?,
        include_request_headers_in_check: request_headers.1,
        include_additional_headers_in_check: raw
            .include_additional_headers_in_check
            .into_iter()
            .collect(),
        headers_to_upstream_on_allow: raw.headers_to_upstream_on_allow,
        headers_to_downstream_on_allow: raw.headers_to_downstream_on_allow,
        headers_to_downstream_on_deny: raw.headers_to_downstream_on_deny,
        include_request_body_in_check: body_settings(at, raw.include_request_body_in_check)?,
    })
}

fn ext_authz_grpc(at: &str, body: serde_yaml::Value) -> Result<ExtAuthzGrpc, FieldError> {
    let raw: RawExtAuthzGrpc = deserialize(at, body)?;
    Ok(ExtAuthzGrpc {
        service: check_service(at, &raw.service)?,
        port: check_provider_port(at, raw.port)?,
        timeout: timeout(at, raw.timeout.as_deref())?,
        fail_open: raw.fail_open,
        status_on_error: status_on_error(at, raw.status_on_error)?,
        include_request_body_in_check: body_settings(at, raw.include_request_body_in_check)?,
    })
}

/// `[namespace/]hostname`; the host must name one service, so no wildcard.
fn check_service(at: &str, service: &str) -> Result<String, FieldError> {
    let field = format!("{at}.service");
    if service.is_empty() {
        return Err(FieldError::new(field, "service must not be empty"));
    }
    let host = match service.split_once('/') {
        Some((ns, host)) => {
            super::field::check_dns_label(&field, ns)?;
            host
        }
        None => service,
    };
    if host.contains(['*', '/']) {
        return Err(FieldError::new(
            field,
            format!("service must be [<namespace>/]<hostname> of one service, found {service:?}"),
        ));
    }
    super::field::check_host(&field, host)?;
    Ok(service.to_string())
}

fn check_provider_port(at: &str, port: u32) -> Result<u16, FieldError> {
    u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| {
        FieldError::new(
            format!("{at}.port"),
            format!("port must be in the range [1, 65535], found: {port}"),
        )
    })
}

fn timeout(at: &str, value: Option<&str>) -> Result<Option<std::time::Duration>, FieldError> {
    value
        .map(|v| {
            let min = std::time::Duration::from_millis(1);
            super::field::check_duration_min(&format!("{at}.timeout"), v, min)
        })
        .transpose()
}

fn status_on_error(at: &str, value: Option<StringOrNumber>) -> Result<Option<u16>, FieldError> {
    let text = match value {
        None => return Ok(None),
        Some(StringOrNumber::String(s)) if s.is_empty() => return Ok(None),
        Some(StringOrNumber::String(s)) => s,
        Some(StringOrNumber::Number(n)) => n.to_string(),
    };
    match text.parse::<u16>() {
        Ok(code) if ENVOY_STATUS_CODES.contains(&code) => Ok(Some(code)),
        _ => Err(FieldError::new(
            format!("{at}.statusOnError"),
            format!("unsupported statusOnError {text:?}: must be an HTTP status code Envoy knows, e.g. 403 or 503"),
        )),
    }
}

/// Header name patterns: exact, `prefix*` or `*suffix`; a lone `*` is refused.
fn check_header_patterns(field: &str, headers: &[String]) -> Result<(), FieldError> {
    match headers.iter().position(|h| h.is_empty() || h == "*") {
        Some(k) => Err(FieldError::new(
            format!("{field}[{k}]"),
            "a single wildcard (\"*\") or an empty name is not supported, change it to either prefix or suffix match",
        )),
        None => Ok(()),
    }
}

fn body_settings(at: &str, raw: Option<RawBody>) -> Result<Option<ExtAuthzBody>, FieldError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.max_request_bytes == 0 {
        return Err(FieldError::new(
            format!("{at}.includeRequestBodyInCheck.maxRequestBytes"),
            "must be greater than 0",
        ));
    }
    Ok(Some(ExtAuthzBody {
        max_request_bytes: raw.max_request_bytes,
        allow_partial_message: raw.allow_partial_message,
        pack_as_bytes: raw.pack_as_bytes,
    }))
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
    fn locality_lb_setting_defaults_to_enabled_and_is_validated() {
        let mesh = parse_mesh_config("").unwrap();
        assert_eq!(mesh.locality_lb.enabled, Some(true));
        let mesh =
            parse_mesh_config("localityLbSetting: {enabled: false, failover: [{from: a, to: b}]}")
                .unwrap();
        assert_eq!(mesh.locality_lb.enabled, Some(false));
        assert_eq!(
            mesh.locality_lb.failover,
            vec![("a".to_string(), "b".to_string())]
        );
        let err =
            parse_mesh_config("localityLbSetting: {failover: [{from: a, to: a}]}").unwrap_err();
        assert_eq!(err.field, "localityLbSetting.failover[0]");
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = parse_mesh_config("outboundTrafficPolicy: {mode: SOMETIMES}\n").unwrap_err();
        assert_eq!(err.field, "outboundTrafficPolicy.mode");
        let err = parse_mesh_config("accessLogFile: [1]\n").unwrap_err();
        assert_eq!(err.field, "accessLogFile");
        assert_eq!(parse_mesh_config("").unwrap(), MeshConfig::default());
    }

    const PROVIDERS: &str = r#"
extensionProviders:
- name: ext-http
  envoyExtAuthzHttp:
    service: foo/ext-authz.foo.svc.cluster.local
    port: 8000
    timeout: 2s
    pathPrefix: /check
    failOpen: true
    statusOnError: "503"
    includeRequestHeadersInCheck: [x-ext-authz, "x-b3-*"]
    includeAdditionalHeadersInCheck: {x-from: rudder}
    headersToUpstreamOnAllow: [x-user]
    headersToDownstreamOnDeny: [x-reason]
    includeRequestBodyInCheck: {maxRequestBytes: 1024, packAsBytes: true}
    clearRouteCache: true
- name: ext-grpc
  envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000, statusOnError: 403}
- name: tracing
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
"#;

    #[test]
    fn reads_ext_authz_providers_and_keeps_other_kinds_by_name() {
        let mesh = parse_mesh_config(PROVIDERS).unwrap();
        let [http, grpc, other] = &mesh.extension_providers[..] else {
            panic!("{:?}", mesh.extension_providers)
        };
        let ExtensionProviderKind::ExtAuthzHttp(h) = &http.kind else {
            panic!("{http:?}")
        };
        assert_eq!(http.name, "ext-http");
        assert_eq!(h.service, "foo/ext-authz.foo.svc.cluster.local");
        assert_eq!(
            (h.port, h.fail_open, h.status_on_error),
            (8000, true, Some(503))
        );
        assert_eq!(h.timeout, Some(std::time::Duration::from_secs(2)));
        assert_eq!(h.path_prefix, "/check");
        assert_eq!(
            h.include_request_headers_in_check,
            ["x-ext-authz", "x-b3-*"]
        );
        assert_eq!(
            h.include_additional_headers_in_check,
            [("x-from".to_string(), "rudder".to_string())]
        );
        assert_eq!(h.headers_to_upstream_on_allow, ["x-user"]);
        assert_eq!(h.headers_to_downstream_on_deny, ["x-reason"]);
        let body = h.include_request_body_in_check.as_ref().unwrap();
        assert_eq!((body.max_request_bytes, body.pack_as_bytes), (1024, true));
        let ExtensionProviderKind::ExtAuthzGrpc(g) = &grpc.kind else {
            panic!("{grpc:?}")
        };
        assert_eq!(
            (g.port, g.status_on_error, g.fail_open),
            (9000, Some(403), false)
        );
        assert_eq!(other.kind, ExtensionProviderKind::Other("zipkin".into()));
    }

    #[test]
    fn bad_extension_providers_name_the_field() {
        let cases = [
            ("extensionProviders: [{envoyExtAuthzGrpc: {service: a, port: 1}}]", "extensionProviders[0].name"),
            ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: a, port: 1}}, {name: a, zipkin: {}}]", "extensionProviders[1].name"),
            ("extensionProviders: [{name: a}]", "extensionProviders[0]"),
            ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: a, port: 0}}]", "extensionProviders[0].envoyExtAuthzGrpc.port"),
            ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {port: 80}}]", "extensionProviders[0].envoyExtAuthzGrpc.service"),
            ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: \"*.foo.com\", port: 80}}]", "extensionProviders[0].envoyExtAuthzGrpc.service"),
            ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: a/b/c, port: 80}}]", "extensionProviders[0].envoyExtAuthzGrpc.service"),
            ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: a, port: 80, statusOnError: \"999\"}}]", "extensionProviders[0].envoyExtAuthzGrpc.statusOnError"),
            ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: a, port: 80, timeout: soon}}]", "extensionProviders[0].envoyExtAuthzGrpc.timeout"),
            ("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a, port: 80, pathPrefix: check}}]", "extensionProviders[0].envoyExtAuthzHttp.pathPrefix"),
            ("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a, port: 80, headersToUpstreamOnAllow: [\"*\"]}}]", "extensionProviders[0].envoyExtAuthzHttp.headersToUpstreamOnAllow[0]"),
            ("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a, port: 80, includeRequestBodyInCheck: {}}}]", "extensionProviders[0].envoyExtAuthzHttp.includeRequestBodyInCheck.maxRequestBytes"),
            ("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a, port: [80]}}]", "extensionProviders[0].envoyExtAuthzHttp.port"),
        ];
        for (text, field) in cases {
            let err = parse_mesh_config(text).expect_err(text);
            assert_eq!(err.field, field, "{text}: {err}");
        }
    }
}
