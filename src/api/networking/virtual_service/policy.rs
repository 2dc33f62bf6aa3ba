//! Per-route HTTP policies of a VirtualService: retries, CORS, fault
//! injection and mirroring.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Destination, Percent, StringMatch};

/// Retry policy for a failed HTTP request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries allowed for a request; 0 disables retries. The
    /// route `timeout` and `perTryTimeout` also bound how many happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Timeout per attempt, including the first (e.g. `2s`, at least 1ms).
    /// Defaults to the route's `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}]))]
    pub per_try_timeout: Option<String>,
    /// Comma-separated conditions that trigger a retry: Envoy's
    /// `x-envoy-retry-on` and `x-envoy-retry-grpc-on` policies (`5xx`,
    /// `gateway-error`, `connect-failure`, `unavailable`, ...) or HTTP status codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Whether retries may go to other localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    /// Whether retries avoid hosts that were already tried; Istio defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// The minimum time between retries (e.g. `25ms`, Envoy's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}]))]
    pub backoff: Option<String>,
}

/// Cross-Origin Resource Sharing policy for a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Deprecated exact origins allowed to make CORS requests; use `allowOrigins`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    /// String patterns that match allowed origins; a matching origin is
    /// echoed in `Access-Control-Allow-Origin`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// HTTP methods allowed (`Access-Control-Allow-Methods`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// HTTP headers allowed in the request (`Access-Control-Allow-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// HTTP headers browsers may read (`Access-Control-Expose-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long a preflight result may be cached (`Access-Control-Max-Age`),
    /// in whole seconds, e.g. `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}]))]
    pub max_age: Option<String>,
    /// Whether the actual request may use credentials (`Access-Control-Allow-Credentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Whether preflight requests from origins that are not allowed are
    /// forwarded upstream (`FORWARD`) or answered without CORS headers (`IGNORE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// What to do with a preflight request whose origin is not allowed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Default: forward (Envoy's default behaviour).
    Unspecified,
    /// Forward the preflight request upstream.
    Forward,
    /// Answer it without CORS headers instead of forwarding.
    Ignore,
}

/// Faults injected into HTTP traffic on the client side: a delay, an
/// abort, or both (each applied independently).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpFaultInjection {
    /// Delay requests before forwarding, emulating network issues or an
    /// overloaded upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Abort requests with an error code, emulating a faulty upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
}

/// Latency injected into the forwarding path. Set `fixedDelay` (or the
/// unsupported `exponentialDelay`), not both.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"not": {"anyOf": [{"required": ["fixedDelay"]}, {"required": ["exponentialDelay"]}]}},
    {"required": ["fixedDelay"]},
    {"required": ["exponentialDelay"]}
]))]
pub struct Delay {
    /// Deprecated integer percentage (0-100) of requests delayed; use `percentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// A fixed delay before forwarding (e.g. `5s`, at least 1ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}]))]
    pub fixed_delay: Option<String>,
    /// Hidden in Istio's docs and rejected by its validation: not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}]))]
    pub exponential_delay: Option<String>,
    /// Percentage of requests delayed; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// Abort requests early with an error. Set exactly one of `httpStatus`,
/// `grpcStatus` or `http2Error`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"not": {"anyOf": [{"required": ["httpStatus"]}, {"required": ["grpcStatus"]}, {"required": ["http2Error"]}]}},
    {"required": ["httpStatus"]},
    {"required": ["grpcStatus"]},
    {"required": ["http2Error"]}
]))]
pub struct Abort {
    /// HTTP status code returned to the caller (200-599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// gRPC status code name returned to the caller, e.g. `UNAVAILABLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// HTTP/2 error; not supported yet (Istio rejects it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    /// Percentage of requests aborted; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// One additional destination that traffic is mirrored to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMirrorPolicy {
    /// The target of the mirror operation.
    pub destination: Destination,
    /// Percentage of traffic mirrored to this destination; absent means 100%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}
