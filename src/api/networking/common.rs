//! Types that several `networking.istio.io` kinds share: how to match a
//! string, where to send traffic (`Destination`, `PortSelector`) and a
//! fractional percentage. They mirror Istio's protos field for field, with
//! Istio's JSON (camelCase) names.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// How to match a string: Istio's `StringMatch` oneof. In YAML exactly one
/// key is set, e.g. `{exact: "/login"}`, `{prefix: "/api"}` or
/// `{regex: "^/v[0-9]+/"}`. Matching is case-sensitive.
///
/// Istio also accepts `{}` with no key at all: in `headers`,
/// `withoutHeaders` and `queryParams` that means "present with any value",
/// so it is kept as [`StringMatch::Empty`] rather than rejected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StringMatch {
    /// `exact: "value"`: the whole string equals the value.
    Exact(String),
    /// `prefix: "value"`: the string starts with the value.
    Prefix(String),
    /// `regex: "value"`: an RE2 regular expression matching the whole string.
    Regex(String),
    /// `{}`: no value given (presence match where Istio supports it).
    Empty,
}

impl StringMatch {
    /// The YAML key of this variant (`exact`, `prefix`, `regex`), for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            StringMatch::Exact(_) => "exact",
            StringMatch::Prefix(_) => "prefix",
            StringMatch::Regex(_) => "regex",
            StringMatch::Empty => "{}",
        }
    }

    /// The value to match, or `None` for [`StringMatch::Empty`].
    pub fn value(&self) -> Option<&str> {
        match self {
            StringMatch::Exact(v) | StringMatch::Prefix(v) | StringMatch::Regex(v) => Some(v),
            StringMatch::Empty => None,
        }
    }
}

impl Serialize for StringMatch {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let entry = self.value().map(|v| (self.kind(), v));
        let mut map = ser.serialize_map(Some(usize::from(entry.is_some())))?;
        if let Some((key, value)) = entry {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StringMatch {
    // Read all three keys, then insist on at most one: serde's externally
    // tagged enums cannot express Istio's "none set" state, and reading the
    // keys as a struct gives a clear error when two are set.
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Repr {
            exact: Option<String>,
            prefix: Option<String>,
            regex: Option<String>,
        }
        let Repr {
            exact,
            prefix,
            regex,
        } = Repr::deserialize(de)?;
        let mut set: Vec<StringMatch> = [
            exact.map(StringMatch::Exact),
            prefix.map(StringMatch::Prefix),
            regex.map(StringMatch::Regex),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.len() {
            0 => Ok(StringMatch::Empty),
            1 => Ok(set.remove(0)),
            _ => {
                let keys: Vec<&str> = set.iter().map(StringMatch::kind).collect();
                Err(D::Error::custom(format!(
                    "a string match takes exactly one of exact, prefix or regex, got {}",
                    keys.join(" and ")
                )))
            }
        }
    }
}

impl JsonSchema for StringMatch {
    fn schema_name() -> Cow<'static, str> {
        "StringMatch".into()
    }

    // The same structural schema Istio's CRD uses: one object with three
    // optional string properties, and a `oneOf` of `required` clauses (plus
    // "none set") so the apiserver enforces "at most one" without a `type`
    // inside `oneOf`, which structural schemas forbid.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "String match: set exactly one of exact, prefix or regex (all case-sensitive). An empty match ({}) checks only that a header or query parameter is present.",
            "properties": {
                "exact": {"type": "string", "description": "Exact string match."},
                "prefix": {"type": "string", "description": "Prefix-based match."},
                "regex": {"type": "string", "description": "RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)."}
            },
            "oneOf": [
                {"not": {"anyOf": [
                    {"required": ["exact"]},
                    {"required": ["prefix"]},
                    {"required": ["regex"]}
                ]}},
                {"required": ["exact"]},
                {"required": ["prefix"]},
                {"required": ["regex"]}
            ]
        })
    }
}

/// Where a request or connection is sent after routing: a service from the
/// registry (Kubernetes services and `ServiceEntry` hosts), optionally one
/// subset of it and one port. Short names like `reviews` are resolved in the
/// namespace of the rule, not of the service: prefer fully qualified names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// The name of a service from the service registry, e.g.
    /// `reviews.prod.svc.cluster.local`. Traffic to hosts found in neither
    /// the platform registry nor a ServiceEntry is dropped.
    pub host: String,
    /// The name of a subset within the service, defined in a corresponding
    /// DestinationRule. Applicable only to services within the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Specifies the port on the host that is being addressed. If a service
    /// exposes only a single port it is not required to explicitly select it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// The number of a port used for matching or for selecting the final route.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    /// Valid port number (1-65535).
    #[serde(default)]
    pub number: u32,
}

/// A percentage in the range [0.0, 100.0].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Percent {
    /// The percentage, 0.0 to 100.0 (fractions allowed, e.g. 0.1).
    #[serde(default)]
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_match_reads_and_writes_istio_yaml() {
        for (yaml, want) in [
            ("exact: /login", StringMatch::Exact("/login".into())),
            ("prefix: /api", StringMatch::Prefix("/api".into())),
            (
                "regex: '^/v[0-9]+/'",
                StringMatch::Regex("^/v[0-9]+/".into()),
            ),
            ("{}", StringMatch::Empty),
        ] {
            let got: StringMatch = serde_yaml::from_str(yaml).unwrap();
            assert_eq!(got, want, "{yaml}");
            let back = serde_yaml::to_string(&got).unwrap();
            assert_eq!(serde_yaml::from_str::<StringMatch>(&back).unwrap(), want);
        }
        assert_eq!(
            serde_json::to_string(&StringMatch::Exact("x".into())).unwrap(),
            r#"{"exact":"x"}"#
        );
        assert_eq!(serde_json::to_string(&StringMatch::Empty).unwrap(), "{}");
    }

    #[test]
    fn string_match_rejects_two_kinds() {
        let err = serde_yaml::from_str::<StringMatch>("{exact: a, regex: b}").unwrap_err();
        assert!(
            err.to_string()
                .contains("exactly one of exact, prefix or regex, got exact and regex"),
            "{err}"
        );
        assert!(serde_yaml::from_str::<StringMatch>("~").is_err());
    }
}
