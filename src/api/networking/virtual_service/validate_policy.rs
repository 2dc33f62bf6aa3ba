//! Checks for the per-route HTTP policies of a VirtualService: header
//! changes, CORS, fault injection and retries, following Istio's validation.

use super::validate::{check_istio_duration, fail, Checked};
use super::validate_http::{check_string_match, is_token};
use super::{
    Abort, CorsPolicy, Delay, HeaderOperations, Headers, HttpFaultInjection, HttpRetry, HttpRoute,
    Percent,
};
use crate::api::check_percent;

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` policies, as Istio lists them.
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The status codes Go's `net/http` names: Istio accepts exactly these as
/// `retryOn` entries.
const KNOWN_STATUS_CODES: &[u16] = &[
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 510, 511,
];

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

/// gRPC status code names, each at the index of its code (`UNAVAILABLE` = 14).
const GRPC_STATUSES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code of a `grpcStatus` name, as Envoy's fault filter wants it.
pub fn grpc_status_code(name: &str) -> Option<u32> {
    GRPC_STATUSES
        .iter()
        .position(|s| *s == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// Header changes: names must be set, pseudo-headers and `Host` are off
/// limits except that a request may set the authority, and values must be
/// valid for Envoy (no control characters, `%` escaped as `%%`).
pub(super) fn check_headers(at: &str, headers: Option<&Headers>) -> Checked {
    let Some(headers) = headers else {
        return Ok(());
    };
    for (side, ops) in [
        ("request", &headers.request),
        ("response", &headers.response),
    ] {
        let Some(ops) = ops else { continue };
        check_header_ops(&format!("{at}.{side}"), ops, side == "request")?;
    }
    Ok(())
}

fn check_header_ops(at: &str, ops: &HeaderOperations, request: bool) -> Checked {
    for (verb, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let field = format!("{at}.{verb}[{name}]");
            check_header_op_name(&field, name, request)?;
            check_header_value(&field, value)?;
        }
    }
    for (k, name) in ops.remove.iter().enumerate() {
        check_header_op_name(&format!("{at}.remove[{k}]"), name, false)?;
    }
    Ok(())
}

fn check_header_op_name(field: &str, name: &str, may_set_authority: bool) -> Checked {
    if name.is_empty() {
        return fail(field, "header name must not be empty");
    }
    if may_set_authority && is_authority_header(name) {
        return Ok(());
    }
    if name.eq_ignore_ascii_case("host") {
        return fail(
            field,
            "the Host header cannot be changed here (use rewrite.authority)",
        );
    }
    if name.starts_with(':') {
        return fail(
            field,
            format!("invalid header {name:?}: pseudo-headers (\":\" prefix) cannot be changed"),
        );
    }
    Ok(())
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Envoy's header value syntax: no control characters but tab, and `%`
/// either doubled (`%%`) or enclosing a variable (`%HOSTNAME%`).
fn check_header_value(field: &str, value: &str) -> Checked {
    if value.chars().any(|c| c.is_ascii_control() && c != '\t') {
        return fail(
            field,
            format!("header value {value:?} contains a control character"),
        );
    }
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        if let Some(stripped) = after.strip_prefix('%') {
            rest = stripped;
            continue;
        }
        match after.find('%') {
            Some(end) if end > 0 => rest = &after[end + 1..],
            _ => {
                return fail(field, format!("header value {value:?}: a '%' must be doubled (%%) or enclose a variable like %HOSTNAME%"))
            }
        }
    }
    Ok(())
}

/// The Host/authority may be rewritten in one place only.
pub(super) fn check_authority_set_once(at: &str, route: &HttpRoute) -> Checked {
    let mut current = route
        .rewrite
        .as_ref()
        .and_then(|r| r.authority.clone())
        .filter(|a| !a.is_empty());
    let Some(ops) = route.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return Ok(());
    };
    for (verb, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map.iter().filter(|(name, _)| is_authority_header(name)) {
            if let Some(have) = &current {
                return fail(
                    format!("{at}.headers.request.{verb}[{name}]"),
                    format!("the authority can be set only once: have {have:?}, attempting to set {value:?}"),
                );
            }
            current = Some(value.clone());
        }
    }
    Ok(())
}

pub(super) fn check_cors(at: &str, cors: &CorsPolicy) -> Checked {
    for (k, origin) in cors.allow_origins.iter().enumerate() {
        let field = format!("{at}.allowOrigins[{k}]");
        if origin.value().is_none_or(str::is_empty) {
            return fail(
                field,
                "an allowed origin needs a non-empty exact, prefix or regex value",
            );
        }
        check_string_match(&field, origin, false)?;
    }
    for (k, method) in cors.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&method.as_str()) {
            return fail(
                format!("{at}.allowMethods[{k}]"),
                format!("{method:?} is not a supported HTTP method"),
            );
        }
    }
    for (key, names) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (k, name) in names.iter().enumerate() {
            if name != "*" && !is_token(name) {
                return fail(
                    format!("{at}.{key}[{k}]"),
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
    }
    if let Some(max_age) = &cors.max_age {
        let field = format!("{at}.maxAge");
        let age = check_istio_duration(&field, max_age)?;
        if age.subsec_nanos() != 0 {
            return fail(
                field,
                format!("{max_age:?}: maxAge is accurate only to whole seconds"),
            );
        }
    }
    Ok(())
}

pub(super) fn check_fault(at: &str, fault: &HttpFaultInjection) -> Checked {
    if fault.delay.is_none() && fault.abort.is_none() {
        return fail(at, "fault injection needs an abort, a delay or both");
    }
    if let Some(delay) = &fault.delay {
        check_delay(&format!("{at}.delay"), delay)?;
    }
    if let Some(abort) = &fault.abort {
        check_abort(&format!("{at}.abort"), abort)?;
    }
    Ok(())
}

/// Istio's fault percentage: 0, or between 0.0001 and 100.
fn check_fault_percentage(field: &str, p: Option<Percent>) -> Checked {
    let Some(Percent { value }) = p else {
        return Ok(());
    };
    check_percent(field, value)?;
    if value > 0.0 && value < 0.0001 {
        return fail(
            field,
            format!("percentage {value} is neither 0 nor at least 0.0001"),
        );
    }
    Ok(())
}

fn check_delay(at: &str, delay: &Delay) -> Checked {
    check_fault_percentage(&format!("{at}.percentage.value"), delay.percentage)?;
    if let Some(percent) = delay.percent {
        check_percent(&format!("{at}.percent"), f64::from(percent))?;
    }
    match (&delay.fixed_delay, &delay.exponential_delay) {
        (Some(_), Some(_)) => fail(
            format!("{at}.exponentialDelay"),
            "set only one of fixedDelay and exponentialDelay",
        ),
        (Some(fixed), None) => check_istio_duration(&format!("{at}.fixedDelay"), fixed).map(drop),
        (None, Some(_)) => fail(
            format!("{at}.exponentialDelay"),
            "exponentialDelay is not supported yet: use fixedDelay",
        ),
        (None, None) => Ok(()),
    }
}

fn check_abort(at: &str, abort: &Abort) -> Checked {
    check_fault_percentage(&format!("{at}.percentage.value"), abort.percentage)?;
    let set = [
        abort.http_status.is_some(),
        abort.grpc_status.is_some(),
        abort.http2_error.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return fail(at, "set only one of httpStatus, grpcStatus and http2Error");
    }
    if let Some(status) = abort.http_status {
        if !(200..=599).contains(&status) {
            return fail(
                format!("{at}.httpStatus"),
                format!("HTTP status {status} is not in range 200-599"),
            );
        }
    }
    if let Some(status) = &abort.grpc_status {
        if grpc_status_code(status).is_none() {
            return fail(
                format!("{at}.grpcStatus"),
                format!(
                    "gRPC status {status:?} is not supported: use a code name such as NOT_FOUND"
                ),
            );
        }
    }
    if abort.http2_error.is_some() {
        return fail(
            format!("{at}.http2Error"),
            "HTTP/2 abort fault injection is not supported yet",
        );
    }
    Ok(())
}

pub(super) fn check_retries(at: &str, r: &HttpRetry) -> Checked {
    let attempts = r.attempts.unwrap_or(0);
    if attempts < 0 {
        return fail(
            format!("{at}.attempts"),
            format!("attempts cannot be negative, got {attempts}"),
        );
    }
    let retry_on = r.retry_on.as_deref().unwrap_or_default();
    if attempts == 0
        && (r.per_try_timeout.is_some()
            || !retry_on.is_empty()
            || r.retry_remote_localities.is_some())
    {
        return fail(
            format!("{at}.attempts"),
            "retry policy configured while attempts is 0 (retries disabled): set attempts",
        );
    }
    if let Some(t) = &r.per_try_timeout {
        check_istio_duration(&format!("{at}.perTryTimeout"), t)?;
    }
    if !retry_on.is_empty() {
        for policy in retry_on.split(',') {
            let status_ok = policy
                .parse::<u16>()
                .is_ok_and(|code| KNOWN_STATUS_CODES.contains(&code));
            if !status_ok && !RETRY_ON_POLICIES.contains(&policy) {
                return fail(
                    format!("{at}.retryOn"),
                    format!("{policy:?} is not a valid retryOn policy: use Envoy's names (e.g. 5xx, connect-failure, unavailable) or HTTP status codes, comma-separated without spaces"),
                );
            }
        }
    }
    if let Some(b) = &r.backoff {
        check_istio_duration(&format!("{at}.backoff"), b)?;
    }
    Ok(())
}
