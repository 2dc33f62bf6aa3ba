//! Envoy resources as canonical proto3 JSON, the way Envoy's admin
//! `/config_dump` prints them: proto field names (snake_case), default values
//! left out, enums by name, 64-bit integers as strings, durations as `"1.5s"`,
//! and every nested `google.protobuf.Any` (`typed_config`, ...) expanded in
//! place with an `"@type"` key. Used for golden files and `/debug` output.
//!
//! prost types carry no reflection, so the schema comes from the vendored
//! .proto files under `proto/` (listed in `proto/roots.txt`), compiled by
//! `build.rs` into a descriptor set embedded in the binary. A message type
//! missing from there renders as [`JsonError::UnknownType`]; add its file to
//! `proto/roots.txt` and run `proto/vendor.sh`.
//!
//! The result is a [`serde_json::Value`], whose object keys are sorted by name
//! (serde_json's default map; `"@type"` sorts first). Envoy prints message
//! fields in field-number order instead; the content is the same, and sorted
//! keys are stable for golden files even for proto `map` fields, whose order
//! prost-reflect (a HashMap) would not keep. Print with
//! `serde_json::to_string_pretty` for Envoy's two-space layout.

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, SerializeOptions,
    Value as PValue,
};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(DESCRIPTORS).expect("build.rs wrote an invalid envoy_descriptors.bin")
});

const ANY: &str = "google.protobuf.Any";

/// Envoy's config_dump settings: `preserving_proto_field_name`, no defaults.
const OPTIONS: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .skip_default_fields(true)
    .use_enum_numbers(false)
    .stringify_64_bit_integers(true);

/// Why a message could not be rendered. `type_url` is the message that failed,
/// which may be an `Any` nested inside the one asked for; `at` is then the
/// field path to it (e.g. `filter_chains[0].filters[0].typed_config`), empty
/// for the top-level message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The type URL has no `/` (expected `type.googleapis.com/<full name>`).
    #[error("malformed type url {type_url:?}{}", at_suffix(.at))]
    BadTypeUrl { type_url: String, at: String },
    /// The message type is not among the vendored protos.
    #[error(
        "unknown message type {type_url}{}: not in proto/roots.txt's closure \
         (add its .proto there and run proto/vendor.sh)",
        at_suffix(.at)
    )]
    UnknownType { type_url: String, at: String },
    /// The bytes do not decode as the named type.
    #[error("cannot decode {type_url}{}: {source}", at_suffix(.at))]
    Decode {
        type_url: String,
        at: String,
        #[source]
        source: prost::DecodeError,
    },
    /// Serialization failed otherwise (e.g. a Duration out of range).
    #[error("cannot render {type_url} as JSON: {message}")]
    Serialize { type_url: String, message: String },
}

impl JsonError {
    /// The type URL of the message that failed.
    pub fn type_url(&self) -> &str {
        match self {
            JsonError::BadTypeUrl { type_url, .. }
            | JsonError::UnknownType { type_url, .. }
            | JsonError::Decode { type_url, .. }
            | JsonError::Serialize { type_url, .. } => type_url,
        }
    }
}

fn at_suffix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!(" at {at}")
    }
}

/// The descriptor pool compiled from `proto/` (Envoy, xds, validate, ... and
/// the google.protobuf well-known types).
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// Renders an `Any` as Envoy does: `{"@type": "<type_url>", ...fields}`, with
/// nested `Any`s expanded the same way.
pub fn any_to_json(any: &Any) -> Result<serde_json::Value, JsonError> {
    let msg = any_message(any)?;
    to_value(&msg, &any.type_url)
}

/// Renders a message's own fields (no `"@type"` at the top level; nested
/// `Any`s get one).
pub fn message_to_json<M: prost::Message + prost::Name>(
    m: &M,
) -> Result<serde_json::Value, JsonError> {
    let msg = decode(&M::full_name(), &M::type_url(), &m.encode_to_vec(), "")?;
    to_value(&msg, &M::type_url())
}

/// Checks the payload, then wraps it as a dynamic `google.protobuf.Any`, which
/// prost-reflect serializes with `"@type"` (and `"value"` for well-known types).
fn any_message(any: &Any) -> Result<DynamicMessage, JsonError> {
    let name = message_name(&any.type_url, "")?;
    decode(name, &any.type_url, &any.value, "")?;
    let desc = POOL
        .get_message_by_name(ANY)
        .expect("google.protobuf.Any is in the pool");
    let mut msg = DynamicMessage::new(desc);
    msg.set_field_by_name("type_url", PValue::String(any.type_url.clone()));
    msg.set_field_by_name("value", PValue::Bytes(any.value.clone().into()));
    Ok(msg)
}

fn message_name<'a>(type_url: &'a str, at: &str) -> Result<&'a str, JsonError> {
    match type_url.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => Ok(name),
        _ => Err(JsonError::BadTypeUrl {
            type_url: type_url.to_owned(),
            at: at.to_owned(),
        }),
    }
}

fn descriptor(name: &str, type_url: &str, at: &str) -> Result<MessageDescriptor, JsonError> {
    POOL.get_message_by_name(name)
        .ok_or_else(|| JsonError::UnknownType {
            type_url: type_url.to_owned(),
            at: at.to_owned(),
        })
}

fn decode(name: &str, type_url: &str, bytes: &[u8], at: &str) -> Result<DynamicMessage, JsonError> {
    let desc = descriptor(name, type_url, at)?;
    DynamicMessage::decode(desc, bytes).map_err(|source| JsonError::Decode {
        type_url: type_url.to_owned(),
        at: at.to_owned(),
        source,
    })
}

fn to_value(msg: &DynamicMessage, type_url: &str) -> Result<serde_json::Value, JsonError> {
    match msg.serialize_with_options(serde_json::value::Serializer, &OPTIONS) {
        Ok(mut v) => {
            integral_floats(&mut v);
            Ok(v)
        }
        Err(e) => Err(explain(msg, type_url, e.to_string())),
    }
}

/// Serialization failed: find the nested `Any` to blame, if one is, so the
/// error names its type URL and where it sits. Only runs on the error path.
fn explain(msg: &DynamicMessage, type_url: &str, message: String) -> JsonError {
    let mut at = String::new();
    match check_anys(msg, &mut at) {
        Err(e) => e,
        Ok(()) => JsonError::Serialize {
            type_url: type_url.to_owned(),
            message,
        },
    }
}

fn check_anys(msg: &DynamicMessage, at: &mut String) -> Result<(), JsonError> {
    if msg.descriptor().full_name() == ANY {
        let type_url = msg
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let value = msg
            .get_field_by_name("value")
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default();
        let name = message_name(&type_url, at)?;
        let inner = decode(name, &type_url, &value, at)?;
        return check_anys(&inner, at);
    }
    for (field, value) in msg.fields() {
        let len = at.len();
        if !at.is_empty() {
            at.push('.');
        }
        at.push_str(field.name());
        check_value(value, at)?;
        at.truncate(len);
    }
    Ok(())
}

fn check_value(value: &PValue, at: &mut String) -> Result<(), JsonError> {
    match value {
        PValue::Message(m) => check_anys(m, at),
        PValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                check_value(item, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        PValue::Map(entries) => {
            for (key, item) in entries {
                let len = at.len();
                match key {
                    MapKey::String(k) => at.push_str(&format!("[{k:?}]")),
                    other => at.push_str(&format!("[{other:?}]")),
                }
                check_value(item, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Envoy (protobuf C++) prints an integral double as `50`, not `50.0`. Plain
/// notation only below 1e15, where C++ switches to `1e+15` style.
fn as_integral(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
}

fn integral_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_f64().filter(|_| n.is_f64()).and_then(as_integral) {
                *n = i.into();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
    use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
    use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
    use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
    };
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
        http_protocol_options, HttpProtocolOptions,
    };
    use envoy_types::pb::envoy::r#type::v3::Percent;
    use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
    use envoy_types::util::pack_any;
    use serde_json::json;

    const HPO: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

    fn cluster() -> Cluster {
        let hpo = HttpProtocolOptions {
            upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            )),
            ..Default::default()
        };
        Cluster {
            name: "outbound|80||reviews.default.svc.cluster.local".into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            connect_timeout: Some(Duration {
                seconds: 1,
                nanos: 0,
            }),
            per_connection_buffer_limit_bytes: Some(UInt32Value { value: 32768 }),
            common_lb_config: Some(cluster::CommonLbConfig {
                healthy_panic_threshold: Some(Percent { value: 50.0 }),
                ..Default::default()
            }),
            typed_extension_protocol_options: [(HPO.to_string(), pack_any(hpo))].into(),
            ..Default::default()
        }
    }

    fn listener() -> Listener {
        let hcm = HttpConnectionManager {
            stat_prefix: "outbound_0.0.0.0_80".into(),
            codec_type: http_connection_manager::CodecType::Auto as i32,
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                route_config_name: "80".into(),
                ..Default::default()
            })),
            http_filters: vec![HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                    Router::default(),
                ))),
                ..Default::default()
            }],
            ..Default::default()
        };
        Listener {
            name: "0.0.0.0_80".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn cluster_as_envoy_prints_it() {
        let v = any_to_json(&pack_any(cluster())).unwrap();
        assert_eq!(
            v,
            json!({
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": "outbound|80||reviews.default.svc.cluster.local",
                "type": "EDS",
                "connect_timeout": "1s",
                "per_connection_buffer_limit_bytes": 32768,
                "common_lb_config": { "healthy_panic_threshold": { "value": 50 } },
                "typed_extension_protocol_options": {
                    HPO: {
                        "@type": format!("type.googleapis.com/{HPO}"),
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                }
            })
        );
        // Same content, minus the top-level "@type".
        let mut without = v.clone();
        without.as_object_mut().unwrap().remove("@type");
        assert_eq!(message_to_json(&cluster()).unwrap(), without);
    }

    #[test]
    fn durations_and_64_bit_integers_use_proto3_json_forms() {
        let c = Cluster {
            connect_timeout: Some(Duration {
                seconds: 0,
                nanos: 250_000_000,
            }),
            cleanup_interval: Some(Duration {
                seconds: 5,
                nanos: 1_000,
            }),
            ..Default::default()
        };
        let v = message_to_json(&c).unwrap();
        assert_eq!(v["connect_timeout"], "0.250s");
        assert_eq!(v["cleanup_interval"], "5.000001s");
        // Enums by name; int64 / uint64 as strings.
        let d = envoy_types::pb::envoy::r#type::v3::FractionalPercent {
            numerator: 7,
            denominator: 1,
        };
        assert_eq!(
            message_to_json(&d).unwrap(),
            json!({"numerator": 7, "denominator": "TEN_THOUSAND"})
        );
        let r = envoy_types::pb::envoy::r#type::v3::Int64Range {
            start: 1,
            end: 1 << 40,
        };
        assert_eq!(
            message_to_json(&r).unwrap(),
            json!({"start": "1", "end": "1099511627776"})
        );
    }

    #[test]
    fn listener_expands_nested_typed_configs() {
        let v = any_to_json(&pack_any(listener())).unwrap();
        let filter = &v["filter_chains"][0]["filters"][0];
        assert_eq!(
            filter["name"],
            "envoy.filters.network.http_connection_manager"
        );
        let hcm = &filter["typed_config"];
        assert_eq!(
            hcm["@type"],
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        );
        assert_eq!(hcm["stat_prefix"], "outbound_0.0.0.0_80");
        assert_eq!(hcm["rds"], json!({"route_config_name": "80"}));
        // AUTO is the enum's default: left out, as Envoy does.
        assert!(hcm.get("codec_type").is_none());
        assert_eq!(
            hcm["http_filters"],
            json!([{
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
            }])
        );
    }

    #[test]
    fn well_known_type_payload_gets_a_value_key() {
        let any = pack_any(Duration {
            seconds: 3,
            nanos: 0,
        });
        assert_eq!(
            any_to_json(&any).unwrap(),
            json!({"@type": "type.googleapis.com/google.protobuf.Duration", "value": "3s"})
        );
    }

    #[test]
    fn unknown_top_level_type_names_the_url() {
        let any = Any {
            type_url: "type.googleapis.com/envoy.nope.v3.Nope".into(),
            value: vec![],
        };
        let err = any_to_json(&any).unwrap_err();
        assert!(
            matches!(&err, JsonError::UnknownType { at, .. } if at.is_empty()),
            "{err:?}"
        );
        assert_eq!(err.type_url(), "type.googleapis.com/envoy.nope.v3.Nope");
        assert!(
            err.to_string()
                .contains("type.googleapis.com/envoy.nope.v3.Nope"),
            "{err}"
        );

        let bad = Any {
            type_url: "no-slash".into(),
            value: vec![],
        };
        assert!(matches!(
            any_to_json(&bad),
            Err(JsonError::BadTypeUrl { .. })
        ));
    }

    #[test]
    fn garbage_bytes_are_a_decode_error() {
        let any = Any {
            type_url: <Cluster as prost::Name>::type_url(),
            value: vec![0x0a, 0xff],
        };
        let err = any_to_json(&any).unwrap_err();
        assert!(matches!(err, JsonError::Decode { .. }), "{err:?}");
        assert!(
            err.to_string().contains("envoy.config.cluster.v3.Cluster"),
            "{err}"
        );
    }

    #[test]
    fn unknown_nested_type_names_the_url_and_the_field() {
        let mut l = listener();
        l.filter_chains[0].filters[0].config_type = Some(filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/acme.Filter".into(),
            value: vec![],
        }));
        for err in [
            any_to_json(&pack_any(l.clone())).unwrap_err(),
            message_to_json(&l).unwrap_err(),
        ] {
            match &err {
                JsonError::UnknownType { type_url, at } => {
                    assert_eq!(type_url, "type.googleapis.com/acme.Filter");
                    assert_eq!(at, "filter_chains[0].filters[0].typed_config");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                err.to_string().split(':').next().unwrap(),
                "unknown message type type.googleapis.com/acme.Filter at filter_chains[0].filters[0].typed_config"
            );
        }
    }

    /// Every resource and extension type the translator emits must be in the
    /// pool, under the name envoy-types gives it.
    #[test]
    fn pool_has_every_emitted_type() {
        use envoy_types::pb::envoy::{config, extensions as ext, service};
        macro_rules! names {
            ($($t:ty),* $(,)?) => { vec![$(<$t as prost::Name>::full_name()),*] };
        }
        let names = names![
            config::cluster::v3::Cluster,
            config::listener::v3::Listener,
            config::route::v3::RouteConfiguration,
            config::endpoint::v3::ClusterLoadAssignment,
            ext::transport_sockets::tls::v3::Secret,
            ext::transport_sockets::tls::v3::UpstreamTlsContext,
            ext::transport_sockets::tls::v3::DownstreamTlsContext,
            ext::filters::network::http_connection_manager::v3::HttpConnectionManager,
            ext::filters::network::tcp_proxy::v3::TcpProxy,
            ext::filters::network::rbac::v3::Rbac,
            ext::filters::http::router::v3::Router,
            ext::filters::http::rbac::v3::Rbac,
            ext::filters::http::rbac::v3::RbacPerRoute,
            ext::filters::http::jwt_authn::v3::JwtAuthentication,
            ext::filters::http::fault::v3::HttpFault,
            ext::filters::http::cors::v3::Cors,
            ext::filters::http::cors::v3::CorsPolicy,
            ext::filters::http::ext_authz::v3::ExtAuthz,
            ext::filters::http::ext_authz::v3::ExtAuthzPerRoute,
            ext::filters::listener::original_dst::v3::OriginalDst,
            ext::filters::listener::http_inspector::v3::HttpInspector,
            ext::filters::listener::tls_inspector::v3::TlsInspector,
            ext::upstreams::http::v3::HttpProtocolOptions,
            ext::retry::host::previous_hosts::v3::PreviousHostsPredicate,
            ext::access_loggers::file::v3::FileAccessLog,
            ext::access_loggers::stream::v3::StdoutAccessLog,
            ext::access_loggers::stream::v3::StderrAccessLog,
            service::discovery::v3::DiscoveryRequest,
            service::discovery::v3::DiscoveryResponse,
            service::discovery::v3::DeltaDiscoveryRequest,
            service::discovery::v3::DeltaDiscoveryResponse,
        ];
        let missing: Vec<_> = names
            .iter()
            .filter(|n| descriptor_pool().get_message_by_name(n).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "missing from proto/roots.txt's closure: {missing:?}"
        );
    }
}
