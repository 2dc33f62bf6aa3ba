//! VirtualService `match` -> Envoy RouteMatch.

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, route_match, HeaderMatcher, QueryParameterMatcher,
    RouteMatch,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::BoolValue;

use crate::model::routing::{HeaderCondition, HttpMatch, StringMatch};

/// The catch-all match of a route without `match` entries.
pub fn any() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
        ..Default::default()
    }
}

pub fn route_match(m: &HttpMatch) -> RouteMatch {
    let path_specifier = match &m.uri {
        None => route_match::PathSpecifier::Prefix("/".to_string()),
        Some(StringMatch::Exact(p)) => route_match::PathSpecifier::Path(p.clone()),
        Some(StringMatch::Prefix(p)) => route_match::PathSpecifier::Prefix(p.clone()),
        Some(StringMatch::Regex(r)) => route_match::PathSpecifier::SafeRegex(regex(r)),
    };
    let mut headers = Vec::new();
    // Istio matches method, authority and scheme as pseudo-headers.
    for (name, value) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(v) = value {
            headers.push(header(name, &HeaderCondition::Value(v.clone()), false));
        }
    }
    headers.extend(m.headers.iter().map(|(n, c)| header(n, c, false)));
    headers.extend(m.without_headers.iter().map(|(n, c)| header(n, c, true)));
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: m.ignore_uri_case.then_some(BoolValue { value: false }),
        headers,
        query_parameters: m
            .query_params
            .iter()
            .map(|(name, v)| QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(
                    query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                        string_matcher(v),
                    ),
                ),
            })
            .collect(),
        ..Default::default()
    }
}

fn header(name: &str, condition: &HeaderCondition, invert: bool) -> HeaderMatcher {
    let spec = match condition {
        HeaderCondition::Present => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        HeaderCondition::Value(v) => {
            header_matcher::HeaderMatchSpecifier::StringMatch(string_matcher(v))
        }
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(spec),
        invert_match: invert,
        ..Default::default()
    }
}

pub fn string_matcher(m: &StringMatch) -> StringMatcher {
    let pattern = match m {
        StringMatch::Exact(s) => string_matcher::MatchPattern::Exact(s.clone()),
        StringMatch::Prefix(s) => string_matcher::MatchPattern::Prefix(s.clone()),
        StringMatch::Regex(r) => string_matcher::MatchPattern::SafeRegex(regex(r)),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

/// RE2, Envoy's default regex engine.
pub fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.to_string(),
        ..Default::default()
    }
}
