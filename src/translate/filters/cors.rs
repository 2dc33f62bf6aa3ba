//! VirtualService `corsPolicy`: Envoy's CORS filter answers preflights and
//! adds the response headers, per route.

use envoy_types::pb::envoy::extensions::filters::http::cors::v3::{Cors as CorsFilter, CorsPolicy};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use envoy_types::util::pack_any;

use crate::model::routing::Cors;
use crate::translate::route::matching::string_matcher;

pub const FILTER_NAME: &str = "envoy.filters.http.cors";

pub fn http_filter() -> HttpFilter {
    HttpFilter {
        name: FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            CorsFilter::default(),
        ))),
        ..Default::default()
    }
}

pub fn per_route(c: &Cors) -> Any {
    pack_any(CorsPolicy {
        allow_origin_string_match: c.allow_origins.iter().map(string_matcher).collect(),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(|value| BoolValue { value }),
        ..Default::default()
    })
}
