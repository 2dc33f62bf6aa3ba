//! What is being asked for: `to.operation` fields and the `when` keys about
//! the destination, as Envoy RBAC permissions (Istio's `model/generator.go`).

use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::rbac::v3::{
    permission::{Rule, Set},
    Permission, SourcedMetadata,
};
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{path_matcher, PathMatcher};
use envoy_types::util::pack_any;

use super::matchers::{
    self, cidr, header, header_with, list_value, or_value, string, string_value,
};
use super::rule::Unusable;

const URI_TEMPLATE_MATCHER: &str = "envoy.path.match.uri_template.uri_template_matcher";

fn rule(r: Rule) -> Permission {
    Permission { rule: Some(r) }
}

pub fn any() -> Permission {
    rule(Rule::Any(true))
}

/// All of `rules`; none is any request, one is itself.
pub fn and(mut rules: Vec<Permission>) -> Permission {
    match rules.len() {
        0 => any(),
        1 => rules.remove(0),
        _ => rule(Rule::AndRules(Set { rules })),
    }
}

/// Any of `rules` (at least one).
pub fn or(mut rules: Vec<Permission>) -> Permission {
    match rules.len() {
        1 => rules.remove(0),
        _ => rule(Rule::OrRules(Set { rules })),
    }
}

pub fn not(p: Permission) -> Permission {
    rule(Rule::NotRule(Box::new(p)))
}

/// Any of `values`, each mapped by `f`.
pub fn any_of(
    values: &[String],
    f: impl Fn(&str) -> Result<Permission, Unusable>,
) -> Result<Permission, Unusable> {
    Ok(or(values.iter().map(|v| f(v)).collect::<Result<_, _>>()?))
}

/// `hosts`: the `:authority` header, case-insensitive (Istio's
/// `HostMatcher`). Unlike Istio, a value without a port also matches the
/// same host with any port (`web.shop` matches `web.shop:8080`), so a
/// client cannot slip past a DENY by adding the port, and an ALLOW need not
/// list `host:*` too; a value with a `:` is taken as written.
pub fn host(v: &str) -> Result<Permission, Unusable> {
    let spec = if v == "*" {
        HeaderMatchSpecifier::PresentMatch(true)
    } else if v.contains(':') {
        let mut m = string(v);
        m.ignore_case = true;
        HeaderMatchSpecifier::StringMatch(m)
    } else if let Some(p) = v.strip_suffix('*') {
        HeaderMatchSpecifier::StringMatch(matchers::prefix(p, true))
    } else {
        // RE2 has no ignore_case flag in Envoy's safe_regex; `(?i)` is RE2's own.
        let body = match v.strip_prefix('*') {
            Some(suffix) => format!(".*{}", regex::escape(suffix)),
            None => regex::escape(v),
        };
        HeaderMatchSpecifier::StringMatch(matchers::regex(&format!("(?i){body}(:[0-9]+)?")))
    };
    Ok(rule(Rule::Header(header_with(":authority", spec))))
}

/// `methods`: the `:method` pseudo-header, case-sensitive.
pub fn method(v: &str) -> Result<Permission, Unusable> {
    Ok(rule(Rule::Header(header(":method", v))))
}

/// `paths`: the path without query or fragment, after the connection
/// manager's normalization. `{*}` (one segment) and `{**}` (the rest) make
/// an Envoy URI template, as Istio's path templates do.
pub fn path(v: &str) -> Result<Permission, Unusable> {
    if v.contains("{*}") || v.contains("{**}") {
        let template = v.replace("{**}", "**").replace("{*}", "*");
        check_template(&template)?;
        return Ok(rule(Rule::UriTemplate(TypedExtensionConfig {
            name: URI_TEMPLATE_MATCHER.to_string(),
            typed_config: Some(pack_any(UriTemplateMatchConfig {
                path_template: template,
            })),
        })));
    }
    Ok(rule(Rule::UrlPath(PathMatcher {
        rule: Some(path_matcher::Rule::Path(string(v))),
    })))
}

/// Envoy 1.40 aborts (not NACKs) on a URI template it cannot parse, so
/// only its grammar passes: `/`-separated segments, each `*`, `**` or a
/// literal of path characters; no empty segment but a trailing one; no
/// operator after `**`. Validation admits less; this is the backstop.
fn check_template(t: &str) -> Result<(), Unusable> {
    let bad = |why: &str| Err(Unusable::Malformed(format!("path template {t:?}: {why}")));
    let Some(rest) = t.strip_prefix('/') else {
        return bad("must start with /");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut match_any = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "" if i + 1 == segments.len() => {}
            "" => return bad("empty segment"),
            "*" | "**" if match_any => return bad("an operator after **"),
            "*" => {}
            "**" => match_any = true,
            literal => {
                let path_char =
                    |c: char| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@=".contains(c);
                if !literal.chars().all(path_char) {
                    return bad("a segment that is neither an operator nor a literal");
                }
            }
        }
    }
    Ok(())
}

/// `ports` / `destination.port`: the port the connection was made to (the
/// workload's port, restored by original_dst).
pub fn port(v: &str) -> Result<Permission, Unusable> {
    v.parse::<u16>()
        .ok()
        .filter(|_| !v.starts_with('+'))
        .map(|p| rule(Rule::DestinationPort(p.into())))
        .ok_or_else(|| Unusable::Malformed(format!("{v:?} is not a port number")))
}

/// `destination.ip`.
pub fn destination_ip(v: &str) -> Result<Permission, Unusable> {
    Ok(rule(Rule::DestinationIp(cidr(v)?)))
}

/// `connection.sni`: the TLS server name the client asked for.
pub fn sni(v: &str) -> Result<Permission, Unusable> {
    Ok(rule(Rule::RequestedServerName(string(v))))
}

/// `experimental.envoy.filters.NAME[KEY]`: dynamic metadata `KEY` of filter
/// `envoy.filters.NAME`; a value `[v]` matches a list holding `v`.
pub fn envoy_filter_metadata(key: &str, values: &[String]) -> Result<Permission, Unusable> {
    let malformed = || {
        Unusable::Malformed(format!(
            "bad key {key:?}: expected experimental.envoy.filters.NAME[KEY]"
        ))
    };
    let inner = key.strip_prefix("experimental.").ok_or_else(malformed)?;
    let (filter, field) = inner
        .strip_suffix(']')
        .and_then(|k| k.split_once('['))
        .filter(|(f, k)| !f.is_empty() && !k.is_empty())
        .ok_or_else(malformed)?;
    let matchers = values
        .iter()
        .map(
            |v| match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                Some(element) => list_value(string_value(string(element))),
                None => string_value(string(v)),
            },
        )
        .collect();
    let m = matchers::metadata(filter, &[field], or_value(matchers));
    Ok(rule(Rule::SourcedMetadata(SourcedMetadata {
        metadata_matcher: Some(m),
        metadata_source: 0, // DYNAMIC
    })))
}
