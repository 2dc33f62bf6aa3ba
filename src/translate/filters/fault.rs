//! VirtualService `fault`: delays and aborts (an HTTP status, or a gRPC status
//! for gRPC callers) injected by the client's sidecar.

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

use crate::model::routing::{Abort, Fault};
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
        abort: f.abort.map(|(kind, p)| FaultAbort {
            error_type: Some(match kind {
                Abort::Http(status) => fault_abort::ErrorType::HttpStatus(status.into()),
                Abort::Grpc(code) => fault_abort::ErrorType::GrpcStatus(code),
            }),
            percentage: Some(percent(p)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn abort_of(fault: &Fault) -> Option<fault_abort::ErrorType> {
        let any = per_route(fault);
        HttpFault::decode(any.value.as_slice())
            .unwrap()
            .abort
            .and_then(|a| a.error_type)
    }

    #[test]
    fn aborts_answer_an_http_or_a_grpc_status() {
        let fault = |abort| Fault {
            delay: None,
            abort: Some((abort, 1_000_000)),
        };
        assert_eq!(
            abort_of(&fault(Abort::Http(503))),
            Some(fault_abort::ErrorType::HttpStatus(503))
        );
        let code = crate::api::networking::virtual_service::grpc_status_code("UNAVAILABLE");
        assert_eq!(code, Some(14), "gRPC's code for UNAVAILABLE");
        assert_eq!(
            abort_of(&fault(Abort::Grpc(14))),
            Some(fault_abort::ErrorType::GrpcStatus(14))
        );
    }
}
