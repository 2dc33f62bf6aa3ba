//! VirtualService `fault`: delays and aborts injected by the client's sidecar.

use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{fault_delay, FaultDelay};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort, FaultAbort, HttpFault,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;

use crate::model::routing::Fault;
use crate::translate::duration;

pub const FILTER_NAME: &str = "envoy.filters.http.fault";

/// The filter in the chain does nothing by itself; routes enable it.
pub fn http_filter() -> HttpFilter {
    HttpFilter {
        name: FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            HttpFault::default(),
        ))),
        ..Default::default()
    }
}

pub fn per_route(f: &Fault) -> Any {
    let percent = |millionths: u32| FractionalPercent {
        numerator: millionths,
        denominator: DenominatorType::Million as i32,
    };
    pack_any(HttpFault {
        delay: f.delay.map(|(d, p)| FaultDelay {
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(d))),
            percentage: Some(percent(p)),
        }),
        abort: f.abort.map(|(status, p)| FaultAbort {
            error_type: Some(fault_abort::ErrorType::HttpStatus(status.into())),
            percentage: Some(percent(p)),
            ..Default::default()
        }),
        ..Default::default()
    })
}
