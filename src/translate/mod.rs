//! Pure translation from the model to Envoy resources: no I/O, no clock, no
//! globals. A proxy's output depends only on the snapshot and its
//! [`ProxyShape`], so the shape is a complete cache key by construction:
//! proxies of the same shape share one generated resource set.

mod cluster;
mod egress;
mod endpoint;
mod filters;
mod listener;
mod locality;
mod mtls;
mod names;
mod policy;
mod reach;
mod route;
mod secret;
mod server_tls;
mod shape;

#[cfg(test)]
mod egress_tests;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod ingress_tests;

pub use cluster::clusters;
pub use endpoint::{endpoint_locality, endpoints, endpoints_for};
pub use listener::listeners;
pub use names::{
    inbound_cluster, outbound_cluster, BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
};
pub use route::{routes, tcp_destinations, tcp_routes, tls_routes};
pub use secret::{root_secret, sds_config, secrets, ROOT_SECRET, WORKLOAD_SECRET};
pub use shape::{InboundPort, ProxyShape};

use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion,
    ConfigSource, SocketAddress,
};
use envoy_types::pb::google::protobuf::Duration;

/// `{ads: {}}` with the v3 API: every dynamic resource rides the ADS stream.
fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// `ip` by value, so an address formatted for the call is not copied again.
fn socket_address(ip: impl Into<String>, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

fn seconds(s: i64) -> Duration {
    Duration {
        seconds: s,
        nanos: 0,
    }
}

fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
