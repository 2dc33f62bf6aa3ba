//! Envoy matchers from Istio's match strings. One rule everywhere (Istio's
//! `matcher` package): `*` alone means "present, non-empty", a leading `*`
//! a suffix match, a trailing `*` a prefix match, anything else exact.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    list_matcher, metadata_matcher::path_segment::Segment, metadata_matcher::PathSegment,
    string_matcher::MatchPattern, value_matcher, ListMatcher, MetadataMatcher, OrMatcher,
    RegexMatcher, StringMatcher, ValueMatcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::rule::Unusable;

/// Where the jwt_authn filter (RequestAuthentication) leaves each verified
/// token's payload: dynamic metadata `envoy.filters.http.jwt_authn`, key
/// `payload` (its `payload_in_metadata`), as Istio's does.
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
pub const JWT_PAYLOAD: &str = "payload";

pub fn exact(s: &str) -> StringMatcher {
    pattern(MatchPattern::Exact(s.to_string()), false)
}

pub fn prefix(s: &str, ignore_case: bool) -> StringMatcher {
    pattern(MatchPattern::Prefix(s.to_string()), ignore_case)
}

/// An RE2 regex, matched against the whole value.
pub fn regex(re: &str) -> StringMatcher {
    pattern(
        MatchPattern::SafeRegex(RegexMatcher {
            regex: re.to_string(),
            ..Default::default()
        }),
        false,
    )
}

fn pattern(p: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

/// Istio's `StringMatcher(v)`: `*` is any non-empty value (regex `.+`).
pub fn string(v: &str) -> StringMatcher {
    string_with_prefix(v, "")
}

/// Istio's `StringMatcherWithPrefix`: the match string with `prefix` put in
/// front, e.g. `spiffe://` for principals. A suffix form becomes a regex so
/// the prefix still anchors it (Istio does the same, unescaped; we escape).
pub fn string_with_prefix(v: &str, pre: &str) -> StringMatcher {
    if v == "*" {
        regex(".+")
    } else if let Some(suffix) = v.strip_prefix('*') {
        if pre.is_empty() {
            pattern(MatchPattern::Suffix(suffix.to_string()), false)
        } else {
            regex(&format!(
                "{}.*{}",
                regex::escape(pre),
                regex::escape(suffix)
            ))
        }
    } else if let Some(p) = v.strip_suffix('*') {
        prefix(&format!("{pre}{p}"), false)
    } else {
        exact(&format!("{pre}{v}"))
    }
}

/// `v` with each `*` standing for any run of characters, as a regex body.
pub fn glob_regex(v: &str) -> String {
    v.split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(".*")
}

/// Istio's `HeaderMatcher`: case-sensitive; `*` means present.
pub fn header(name: &str, v: &str) -> HeaderMatcher {
    let spec = if v == "*" {
        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else {
        header_matcher::HeaderMatchSpecifier::StringMatch(string(v))
    };
    header_with(name, spec)
}

pub fn header_with(name: &str, spec: header_matcher::HeaderMatchSpecifier) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

/// An IP (a /32 or /128) or a CIDR block, as Envoy's `CidrRange`.
pub fn cidr(v: &str) -> Result<CidrRange, Unusable> {
    let net: ipnet::IpNet = match v.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.into(),
        Err(_) => v
            .parse::<ipnet::IpNet>()
            .map_err(|_| Unusable::Malformed(format!("{v:?} is not an IP address or CIDR block")))?
            .trunc(),
    };
    Ok(CidrRange {
        address_prefix: net.addr().to_string(),
        prefix_len: Some(UInt32Value {
            value: net.prefix_len().into(),
        }),
    })
}

/// A metadata matcher on `filter`'s dynamic metadata at `path`.
pub fn metadata(filter: &str, path: &[&str], value: ValueMatcher) -> MetadataMatcher {
    MetadataMatcher {
        filter: filter.to_string(),
        path: path
            .iter()
            .map(|k| PathSegment {
                segment: Some(Segment::Key(k.to_string())),
            })
            .collect(),
        value: Some(value),
        invert: false,
    }
}

pub fn string_value(m: StringMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// Any of `matchers` (the single one itself).
pub fn or_value(mut matchers: Vec<ValueMatcher>) -> ValueMatcher {
    if matchers.len() == 1 {
        return matchers.remove(0);
    }
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: matchers,
        })),
    }
}

/// A list with an element matching `v`.
pub fn list_value(v: ValueMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(v))),
            },
        ))),
    }
}

/// A JWT claim at `claims` (nested) in the verified payload, matching any of
/// `values`; a claim that is a list matches when one element does (Istio's
/// `MetadataListValueMatcherForJWTClaims`).
pub fn jwt_claim(claims: &[&str], values: &[String]) -> MetadataMatcher {
    let any = or_value(values.iter().map(|v| string_value(string(v))).collect());
    let mut path = vec![JWT_PAYLOAD];
    path.extend_from_slice(claims);
    metadata(
        JWT_FILTER,
        &path,
        or_value(vec![list_value(any.clone()), any]),
    )
}
