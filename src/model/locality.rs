//! Where a workload runs (region/zone/subzone), and the locality load
//! balancing settings of a DestinationRule or the mesh.

use std::collections::BTreeMap;
use std::fmt;

/// The pod label naming a workload's locality, `region.zone.subzone` (dots:
/// `/` is not allowed in label values), as Istio reads it.
pub const LOCALITY_LABEL: &str = "istio-locality";

/// Envoy's and Istio's locality. Empty parts are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// `region/zone/subzone` (WorkloadEntry and ServiceEntry `locality`),
    /// any suffix optional; None when empty.
    pub fn parse(s: &str) -> Option<Locality> {
        Self::split(s, '/')
    }

    /// The `istio-locality` label value, `region.zone.subzone`.
    pub fn from_label(s: &str) -> Option<Locality> {
        Self::split(s, '.')
    }

    /// A Node's locality, from its topology labels (the `failure-domain`
    /// beta labels where the GA ones are missing), as Istio reads Nodes.
    pub fn from_node_labels(labels: &BTreeMap<String, String>) -> Option<Locality> {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(*k))
                .cloned()
                .unwrap_or_default()
        };
        let l = Locality {
            region: get(&[
                "topology.kubernetes.io/region",
                "failure-domain.beta.kubernetes.io/region",
            ]),
            zone: get(&[
                "topology.kubernetes.io/zone",
                "failure-domain.beta.kubernetes.io/zone",
            ]),
            subzone: get(&["topology.istio.io/subzone"]),
        };
        (!l.is_empty()).then_some(l)
    }

    /// An EndpointSlice endpoint's `zone`: the zone alone, for an endpoint
    /// whose Pod (and so Node) is unknown.
    pub fn zone_only(zone: &str) -> Option<Locality> {
        (!zone.is_empty()).then(|| Locality {
            zone: zone.to_string(),
            ..Default::default()
        })
    }

    fn split(s: &str, sep: char) -> Option<Locality> {
        let mut parts = s.trim().splitn(3, sep).map(str::to_string);
        let l = Locality {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            subzone: parts.next().unwrap_or_default(),
        };
        (!l.is_empty()).then_some(l)
    }

    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }

    /// Istio's `LocalityMatch`: `rule` is `region[/zone[/subzone]]`, where a
    /// missing part or `*` matches anything.
    pub fn matches(&self, rule: &str) -> bool {
        let mut parts = rule.splitn(3, '/');
        let mut part = |mine: &str| {
            let r = parts.next().unwrap_or("");
            r == "*" || r == mine
        };
        let region = part(&self.region);
        let mut rest = |mine: &str| {
            let r = parts.next().unwrap_or("");
            r.is_empty() || r == "*" || r == mine
        };
        region && rest(&self.zone) && rest(&self.subzone)
    }
}

impl fmt::Display for Locality {
    /// Always three parts, `region/zone/subzone`, so it reads back unambiguously.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.subzone)
    }
}

/// `localityLbSetting`, of a DestinationRule or of the mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct LocalityLbSetting {
    /// Unset means enabled, as in Istio.
    pub enabled: Option<bool>,
    /// `(from, to: {locality: weight})`, in order: the first matching `from` wins.
    pub distribute: Vec<(String, BTreeMap<String, u32>)>,
    /// `(from region, to region)`.
    pub failover: Vec<(String, String)>,
    /// Kept to report that Rudder does not apply it yet.
    pub failover_priority: Vec<String>,
}

impl LocalityLbSetting {
    /// Istio's default mesh setting: enabled, nothing else.
    pub fn mesh_default() -> Self {
        LocalityLbSetting {
            enabled: Some(true),
            ..Default::default()
        }
    }
}

/// One layer's (rule, port or subset) say on locality load balancing. Istio
/// replaces a DestinationRule's `loadBalancer` as a whole, so a layer that
/// sets `loadBalancer` without `localityLbSetting` falls back to the mesh's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum LocalityLb {
    /// `loadBalancer` set, `localityLbSetting` not: the mesh's applies.
    Mesh,
    Rule(LocalityLbSetting),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_entry_localities() {
        let l = Locality::from_label("us-east.us-east-1a.rack1").unwrap();
        assert_eq!(l.to_string(), "us-east/us-east-1a/rack1");
        assert_eq!(
            Locality::parse("us-east/us-east-1a"),
            Some(Locality {
                region: "us-east".into(),
                zone: "us-east-1a".into(),
                subzone: String::new(),
            })
        );
        assert_eq!(Locality::parse(""), None);
        assert_eq!(Locality::zone_only("z1").unwrap().to_string(), "/z1/");
        let node = |pairs: &[(&str, &str)]| {
            let labels = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Locality::from_node_labels(&labels).map(|l| l.to_string())
        };
        assert_eq!(
            node(&[
                ("topology.kubernetes.io/region", "r1"),
                ("topology.kubernetes.io/zone", "z1"),
                ("topology.istio.io/subzone", "rack2"),
                ("failure-domain.beta.kubernetes.io/zone", "old"),
            ]),
            Some("r1/z1/rack2".to_string())
        );
        assert_eq!(
            node(&[("failure-domain.beta.kubernetes.io/region", "r0")]),
            Some("r0//".to_string())
        );
        assert_eq!(node(&[("kubernetes.io/hostname", "n1")]), None);
    }

    #[test]
    fn matches_like_istio() {
        let l = Locality::parse("r1/z1/s1").unwrap();
        for rule in ["r1", "r1/z1", "r1/z1/s1", "r1/*", "r1/z1/*", "*"] {
            assert!(l.matches(rule), "{rule}");
        }
        for rule in ["r2", "r1/z2", "r1/z1/s2", "r2/*"] {
            assert!(!l.matches(rule), "{rule}");
        }
    }
}
