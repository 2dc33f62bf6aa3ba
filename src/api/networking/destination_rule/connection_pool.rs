//! `ConnectionPoolSettings`: circuit-breaker limits for upstream hosts (and,
//! in a `Sidecar`, for the connections a proxy accepts).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::networking::selector::check_istio_duration;
use crate::api::{parse_duration, FieldError};

/// Connection pool settings for an upstream host. The settings apply to each
/// individual host in the upstream service; see Envoy's circuit breaking.
/// Connection pool settings can be applied at the TCP level as well as at
/// HTTP level.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPoolSettings {
    /// Settings common to both HTTP and TCP upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP connection pool settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// Settings common to both HTTP and TCP upstream connections.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    /// Maximum number of HTTP1 /TCP connections to a destination host. Default 2^32-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i32>,
    /// TCP connection timeout, e.g. `30ms` or `10s`. Must be at least 1ms. Default is 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// If set then set SO_KEEPALIVE on the socket to enable TCP Keepalives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// The maximum duration of a connection, measured from when it was
    /// established. If not set, there is no max duration. At least 1ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<String>,
    /// The idle timeout for TCP connections: the period with no bytes sent or
    /// received. Default 1 hour; `0s` disables the timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

/// TCP keepalive.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepalive {
    /// Maximum number of keepalive probes to send without response before
    /// deciding the connection is dead. Default is the OS level configuration
    /// (Linux defaults to 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    /// The time duration a connection needs to be idle before keep-alive probes
    /// start being sent. Default is the OS level configuration (Linux defaults to 7200s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The time duration between keep-alive probes. Default is the OS level
    /// configuration (Linux defaults to 75s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// Settings applicable to HTTP1.1/HTTP2/GRPC connections.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Maximum number of requests that will be queued while waiting for a ready
    /// connection pool connection. Default 2^32-1. Applies to HTTP/1.1 and HTTP2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<i32>,
    /// Maximum number of active requests to a destination. Default 2^32-1.
    /// Applies to HTTP/1.1 and HTTP2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<i32>,
    /// Maximum number of requests per connection to a backend. Setting this
    /// parameter to 1 disables keep alive. Default 0, meaning "unlimited", up to 2^29.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i32>,
    /// Maximum number of retries that can be outstanding to all hosts in a
    /// cluster at a given time. Defaults to 2^32-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// The idle timeout for upstream connection pool connections: the period
    /// with no active requests. Default 1 hour. Applies to HTTP1.1 and HTTP2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Specify if http1.1 connection should be upgraded to http2 for the
    /// associated destination. Valid Options: DEFAULT, DO_NOT_UPGRADE, UPGRADE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// If set to true, client protocol will be preserved while initiating
    /// connection to backend; h2UpgradePolicy is then ineffective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_client_protocol: Option<bool>,
    /// The maximum number of concurrent streams allowed for a peer on one
    /// HTTP/2 connection. Defaults to 2^31-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<i32>,
}

// Policy for upgrading http1.1 connections to http2.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// Use the global default.
    Default,
    /// Do not upgrade the connection to http2. This opt-out overrides the default.
    DoNotUpgrade,
    /// Upgrade the connection to http2. This opt-in overrides the default.
    Upgrade,
}

/// Istio's `validateConnectionPool`.
pub(crate) fn check_connection_pool(
    field: &str,
    pool: &ConnectionPoolSettings,
) -> Result<(), FieldError> {
    if pool.http.is_none() && pool.tcp.is_none() {
        return Err(FieldError::new(
            field,
            "connection pool must have at least one field (tcp or http)",
        ));
    }
    if let Some(http) = &pool.http {
        check_http(&format!("{field}.http"), http)?;
    }
    if let Some(tcp) = &pool.tcp {
        check_tcp(&format!("{field}.tcp"), tcp)?;
    }
    Ok(())
}

fn non_negative(field: String, value: Option<i32>) -> Result<(), FieldError> {
    match value {
        Some(v) if v < 0 => Err(FieldError::new(
            field,
            format!("must be non-negative, got {v}"),
        )),
        _ => Ok(()),
    }
}

fn check_http(field: &str, http: &HttpSettings) -> Result<(), FieldError> {
    non_negative(
        format!("{field}.http1MaxPendingRequests"),
        http.http1_max_pending_requests,
    )?;
    non_negative(format!("{field}.http2MaxRequests"), http.http2_max_requests)?;
    non_negative(
        format!("{field}.maxRequestsPerConnection"),
        http.max_requests_per_connection,
    )?;
    non_negative(format!("{field}.maxRetries"), http.max_retries)?;
    if let Some(t) = &http.idle_timeout {
        check_istio_duration(&format!("{field}.idleTimeout"), t)?;
    }
    if http.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
        && http.use_client_protocol == Some(true)
    {
        return Err(FieldError::new(
            format!("{field}.useClientProtocol"),
            "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE",
        ));
    }
    non_negative(
        format!("{field}.maxConcurrentStreams"),
        http.max_concurrent_streams,
    )
}

fn check_tcp(field: &str, tcp: &TcpSettings) -> Result<(), FieldError> {
    non_negative(format!("{field}.maxConnections"), tcp.max_connections)?;
    if let Some(t) = &tcp.connect_timeout {
        check_istio_duration(&format!("{field}.connectTimeout"), t)?;
    }
    if let Some(t) = &tcp.max_connection_duration {
        check_istio_duration(&format!("{field}.maxConnectionDuration"), t)?;
    }
    if let Some(t) = &tcp.idle_timeout {
        let at = format!("{field}.idleTimeout");
        // `0s` turns the idle timeout off, so Istio skips the 1ms minimum for it.
        if parse_duration(&at, t)?.as_millis() != 0 {
            check_istio_duration(&at, t)?;
        }
    }
    if let Some(ka) = &tcp.tcp_keepalive {
        if let Some(t) = &ka.time {
            check_istio_duration(&format!("{field}.tcpKeepalive.time"), t)?;
        }
        if let Some(t) = &ka.interval {
            check_istio_duration(&format!("{field}.tcpKeepalive.interval"), t)?;
        }
    }
    Ok(())
}
