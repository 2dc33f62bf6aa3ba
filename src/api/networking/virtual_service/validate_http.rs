//! Checks for one HTTP rule of a VirtualService, following Istio's
//! `validateHTTPRoute` and the helpers it calls.

use super::validate::{
    check_destination, check_gateway_names, check_istio_duration, check_labels, check_match_port,
    check_port_number, check_source_namespace, check_weights, fail, Checked,
};
use super::validate_policy::{
    check_authority_set_once, check_cors, check_fault, check_headers, check_retries,
};
use super::{
    HttpDirectResponse, HttpMatchRequest, HttpRedirect, HttpRewrite, HttpRoute, StringMatch,
};
use crate::api::{check_percent, check_regex, FieldError};

const PSEUDO_HEADERS: &[&str] = &[":method", ":scheme", ":authority", ":path", ":status"];

/// Header keys of this form route on a JWT claim (gateways only).
const JWT_CLAIM_PREFIX: &str = "@request.auth.claims";

/// Envoy limits regex program size; Istio approximates it by length.
const MAX_REGEX_LEN: usize = 1024;

/// Direct response bodies above this are refused (Istio: 1MB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Checks one HTTP rule at `at` (e.g. `spec.http[0]`). `in_delegate` is set
/// for the rules of a delegate VirtualService (one without hosts).
pub(super) fn check_http_route(
    at: &str,
    route: &HttpRoute,
    in_delegate: bool,
    for_gateway: bool,
) -> Checked {
    check_actions(at, route, in_delegate)?;
    for (j, m) in route.r#match.iter().enumerate() {
        check_match(&format!("{at}.match[{j}]"), m, for_gateway)?;
    }
    check_headers(&format!("{at}.headers"), route.headers.as_ref())?;
    if let Some(cors) = &route.cors_policy {
        check_cors(&format!("{at}.corsPolicy"), cors)?;
    }
    if let Some(fault) = &route.fault {
        check_fault(&format!("{at}.fault"), fault)?;
    }
    if let Some(percent) = route.mirror_percent.filter(|p| *p > 100) {
        return fail(
            format!("{at}.mirrorPercent"),
            format!("mirrorPercent must be at most 100, got {percent}"),
        );
    }
    if let Some(p) = route.mirror_percentage {
        check_percent(&format!("{at}.mirrorPercentage.value"), p.value)?;
    }
    if let Some(mirror) = &route.mirror {
        check_destination(&format!("{at}.mirror"), mirror)?;
    }
    for (k, mirror) in route.mirrors.iter().enumerate() {
        check_destination(
            &format!("{at}.mirrors[{k}].destination"),
            &mirror.destination,
        )?;
        if let Some(p) = mirror.percentage {
            check_percent(&format!("{at}.mirrors[{k}].percentage.value"), p.value)?;
        }
    }
    if let Some(redirect) = &route.redirect {
        check_redirect(&format!("{at}.redirect"), redirect)?;
    }
    if let Some(direct) = &route.direct_response {
        check_direct_response(&format!("{at}.directResponse"), direct)?;
    }
    if let Some(retries) = &route.retries {
        check_retries(&format!("{at}.retries"), retries)?;
    }
    if let Some(rewrite) = &route.rewrite {
        check_rewrite(&format!("{at}.rewrite"), rewrite)?;
    }
    check_authority_set_once(at, route)?;
    for (k, dest) in route.route.iter().enumerate() {
        check_destination(&format!("{at}.route[{k}].destination"), &dest.destination)?;
        check_headers(&format!("{at}.route[{k}].headers"), dest.headers.as_ref())?;
    }
    check_weights(&format!("{at}.route"), route.route.iter().map(|d| d.weight))?;
    if let Some(timeout) = &route.timeout {
        check_istio_duration(&format!("{at}.timeout"), timeout)?;
    }
    Ok(())
}

/// Exactly one kind of action: forward (`route`), `redirect`,
/// `directResponse` or `delegate`, and what may accompany each.
fn check_actions(at: &str, route: &HttpRoute, in_delegate: bool) -> Checked {
    if route.delegate.is_some() {
        if in_delegate {
            return fail(
                format!("{at}.delegate"),
                "a delegate VirtualService's routes cannot delegate again (one level only)",
            );
        }
        for (set, name) in [
            (!route.route.is_empty(), "route"),
            (route.redirect.is_some(), "redirect"),
            (route.direct_response.is_some(), "directResponse"),
        ] {
            if set {
                return fail(
                    format!("{at}.{name}"),
                    format!("a route with delegate must not also set {name}"),
                );
            }
        }
        return Ok(());
    }
    if route.redirect.is_some() {
        for (set, name) in [
            (!route.route.is_empty(), "route"),
            (route.direct_response.is_some(), "directResponse"),
            (route.fault.is_some(), "fault"),
            (route.rewrite.is_some(), "rewrite"),
        ] {
            if set {
                return fail(
                    format!("{at}.{name}"),
                    format!("a route with redirect cannot also set {name}"),
                );
            }
        }
    } else if route.direct_response.is_some() {
        for (set, name) in [
            (!route.route.is_empty(), "route"),
            (route.fault.is_some(), "fault"),
            (route.rewrite.is_some(), "rewrite"),
        ] {
            if set {
                return fail(
                    format!("{at}.{name}"),
                    format!("a route with directResponse cannot also set {name}"),
                );
            }
        }
    } else if route.route.is_empty() {
        return fail(
            at,
            "an HTTP route needs one of route, redirect, directResponse or delegate",
        );
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        return fail(
            format!("{at}.mirrors"),
            "mirror and mirrors cannot both be set: move mirror into mirrors",
        );
    }
    Ok(())
}

fn check_match(at: &str, m: &HttpMatchRequest, for_gateway: bool) -> Checked {
    for (key, maps) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, value) in maps {
            let field = format!("{at}.{key}[{name}]");
            check_match_header_name(&field, name, for_gateway)?;
            // `*` in withoutHeaders means "absent", not a regex.
            if key == "withoutHeaders" && *value == StringMatch::Regex("*".into()) {
                continue;
            }
            check_string_match(&field, value, false)?;
        }
    }
    if let Some(uri) = &m.uri {
        // Envoy allows an empty path prefix (and Istio does), not other empties.
        check_string_match(&format!("{at}.uri"), uri, true)?;
    }
    for (name, value) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(value) = value {
            check_string_match(&format!("{at}.{name}"), value, false)?;
        }
    }
    for (name, value) in &m.query_params {
        check_string_match(&format!("{at}.queryParams[{name}]"), value, false)?;
    }
    check_match_port(&format!("{at}.port"), m.port)?;
    check_labels(&format!("{at}.sourceLabels"), &m.source_labels)?;
    check_gateway_names(&format!("{at}.gateways"), &m.gateways)?;
    check_source_namespace(
        &format!("{at}.sourceNamespace"),
        m.source_namespace.as_deref(),
    )
}

/// A header name to match on: an RFC 7230 token, an HTTP/2 pseudo-header,
/// or (for gateways only) a JWT claim such as `@request.auth.claims.group`.
fn check_match_header_name(field: &str, name: &str, for_gateway: bool) -> Checked {
    if name.starts_with(JWT_CLAIM_PREFIX) {
        if !for_gateway {
            return fail(
                field,
                format!(
                    "JWT claim based routing ({name}) is only supported for gateways, not the mesh"
                ),
            );
        }
        return Ok(());
    }
    if PSEUDO_HEADERS.contains(&name) || is_token(name) {
        return Ok(());
    }
    fail(field, format!("{name:?} is not a valid header name"))
}

/// RFC 7230 `token`: the characters allowed in a header name.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A prefix must not be empty (except for the URI), and a regex must be a
/// valid RE2 expression of at most 1024 characters.
pub(super) fn check_string_match(field: &str, m: &StringMatch, empty_prefix_ok: bool) -> Checked {
    match m {
        StringMatch::Prefix(p) if p.is_empty() && !empty_prefix_ok => {
            fail(field, "prefix string match must not be empty")
        }
        StringMatch::Regex(re) => check_match_regex(&format!("{field}.regex"), re),
        _ => Ok(()),
    }
}

fn check_match_regex(field: &str, re: &str) -> Checked {
    if re.is_empty() {
        return fail(field, "regex string match must not be empty");
    }
    if re.len() > MAX_REGEX_LEN {
        return fail(
            field,
            format!(
                "regex is too large: {} characters, at most {MAX_REGEX_LEN}",
                re.len()
            ),
        );
    }
    check_regex(field, re)
}

fn check_redirect(at: &str, r: &HttpRedirect) -> Checked {
    let given = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.is_empty());
    if !given(&r.uri)
        && !given(&r.authority)
        && !given(&r.scheme)
        && r.port.is_none()
        && r.derive_port.is_none()
    {
        return fail(
            at,
            "a redirect must set at least one of uri, authority, scheme, port or derivePort",
        );
    }
    if r.port.is_some() && r.derive_port.is_some() {
        return fail(
            format!("{at}.derivePort"),
            "set only one of port and derivePort",
        );
    }
    if let Some(code) = r.redirect_code.filter(|c| *c != 0) {
        if !(300..=399).contains(&code) {
            return fail(
                format!("{at}.redirectCode"),
                format!("{code} is not a valid redirect code: must be 3xx"),
            );
        }
    }
    if let Some(scheme) = r.scheme.as_deref().filter(|s| !s.is_empty()) {
        if scheme != "http" && scheme != "https" {
            return fail(
                format!("{at}.scheme"),
                format!("invalid redirect scheme {scheme:?}: must be \"http\" or \"https\""),
            );
        }
    }
    match r.port {
        Some(port) if port > 0 => check_port_number(&format!("{at}.port"), port),
        _ => Ok(()),
    }
}

fn check_direct_response(at: &str, d: &HttpDirectResponse) -> Checked {
    if !(200..=599).contains(&d.status) {
        return fail(
            format!("{at}.status"),
            format!("HTTP status {} is not in range 200-599", d.status),
        );
    }
    let Some(body) = &d.body else { return Ok(()) };
    let (size, field) = match (&body.string, &body.bytes) {
        (Some(_), Some(_)) => {
            return fail(format!("{at}.body"), "set only one of string and bytes")
        }
        (Some(s), None) => (s.len(), "string"),
        (None, Some(b)) => (
            base64_decoded_len(b).ok_or_else(|| {
                FieldError::new(format!("{at}.body.bytes"), "bytes must be base64 encoded")
            })?,
            "bytes",
        ),
        (None, None) => return Ok(()),
    };
    if size > MAX_BODY_BYTES {
        return fail(
            format!("{at}.body.{field}"),
            format!("direct response body is {size} bytes, must be at most 1MB"),
        );
    }
    Ok(())
}

/// The decoded length of standard (or URL-safe) base64, or `None` if the
/// text is not base64. Written out to avoid a dependency for one check.
fn base64_decoded_len(text: &str) -> Option<usize> {
    let body: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let data = body
        .strip_suffix(b"==")
        .or_else(|| body.strip_suffix(b"="))
        .unwrap_or(&body);
    let valid = data
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"+/-_".contains(b));
    let padded_ok = body.len() == data.len() || body.len().is_multiple_of(4);
    (valid && padded_ok && data.len() % 4 != 1).then_some(data.len() * 3 / 4)
}

fn check_rewrite(at: &str, r: &HttpRewrite) -> Checked {
    let uri = r.uri.as_deref().is_some_and(|u| !u.is_empty());
    let authority = r.authority.as_deref().is_some_and(|a| !a.is_empty());
    if uri && r.uri_regex_rewrite.is_some() {
        return fail(
            format!("{at}.uriRegexRewrite"),
            "set only one of uri and uriRegexRewrite",
        );
    }
    if !uri && !authority && r.uri_regex_rewrite.is_none() {
        return fail(
            at,
            "a rewrite must set at least one of uri, uriRegexRewrite or authority",
        );
    }
    let Some(regex) = &r.uri_regex_rewrite else {
        return Ok(());
    };
    let field = format!("{at}.uriRegexRewrite");
    match (regex.r#match.as_deref(), regex.rewrite.as_deref()) {
        (Some(m), Some(rw)) if !m.is_empty() && !rw.is_empty() => {
            check_match_regex(&format!("{field}.match"), m)
        }
        _ => fail(field, "uriRegexRewrite needs both match and rewrite"),
    }
}
