//! Istio's `PeerAuthentication`: whether a workload accepts plaintext, mutual
//! TLS or both, field for field as `istio.security.v1.PeerAuthentication`.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

use crate::api::networking::selector::{
    check_match_labels, check_port_number, IstioStatus, MatchLabelsSelector,
};
use crate::api::FieldError;

/// Peer authentication configuration for workloads. See more details at:
/// https://istio.io/docs/reference/config/security/peer_authentication.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.istio.io",
    version = "v1",
    kind = "PeerAuthentication",
    plural = "peerauthentications",
    namespaced,
    shortname = "pa",
    category = "istio-io",
    category = "security-istio-io",
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Peer authentication configuration for workloads. See more details at: https://istio.io/docs/reference/config/security/peer_authentication.html",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mtls.mode",
        description = "Defines the mTLS mode used for peer authentication."
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// The selector determines the workloads to apply the PeerAuthentication
    /// on. The selector will match with workloads in the same namespace as the
    /// policy; if the policy is in the root namespace, with workloads in all
    /// namespaces. If not set, the policy applies to all workloads in the same
    /// namespace as the policy (in the root namespace: to the whole mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<MatchLabelsSelector>,
    /// Mutual TLS settings for workload. If not defined, inherit from parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Port specific mutual TLS settings, keyed by port number. These only
    /// apply when a workload selector is specified. The port refers to the
    /// port of the workload, not the port of the Kubernetes service.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "port_map"
    )]
    #[schemars(with = "Option<BTreeMap<String, MutualTls>>")]
    pub port_level_mtls: Option<BTreeMap<u32, MutualTls>>,
}

/// Mutual TLS settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutualTls {
    /// Defines the mTLS mode used for peer authentication.
    /// Valid Options: UNSET, DISABLE, PERMISSIVE, STRICT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

// The mTLS mode used for peer authentication.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from parent, if has one. Otherwise treated as `PERMISSIVE`.
    #[default]
    Unset,
    /// Connection is not tunneled.
    Disable,
    /// Connection can be either plaintext or mTLS tunnel.
    Permissive,
    /// Connection is an mTLS tunnel (TLS with client cert must be presented).
    Strict,
}

/// Reads `portLevelMtls`, whose keys are port numbers: written as YAML
/// integers (`8080:`) or strings (`"8080":`, and always in JSON).
fn port_map<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<BTreeMap<u32, MutualTls>>, D::Error> {
    struct PortKey(u32);

    impl<'de> Deserialize<'de> for PortKey {
        fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = PortKey;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a port number")
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortKey, E> {
                    u32::try_from(v)
                        .map(PortKey)
                        .map_err(|_| E::custom(format!("port {v} is out of range")))
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortKey, E> {
                    u64::try_from(v)
                        .map_err(|_| E::custom(format!("port {v} is negative")))
                        .and_then(|v| self.visit_u64(v))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortKey, E> {
                    v.parse::<u32>()
                        .map(PortKey)
                        .map_err(|_| E::custom(format!("{v:?} is not a port number")))
                }
            }
            de.deserialize_any(Visitor)
        }
    }

    // `8080` and `"8080"` are different YAML keys but the same port.
    struct Ports;
    impl<'de> serde::de::Visitor<'de> for Ports {
        type Value = BTreeMap<u32, MutualTls>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of port numbers to mutual TLS settings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut ports = BTreeMap::new();
            while let Some((PortKey(port), mtls)) = map.next_entry::<PortKey, MutualTls>()? {
                if ports.insert(port, mtls).is_some() {
                    return Err(A::Error::custom(format!("duplicate port {port}")));
                }
            }
            Ok(ports)
        }
    }

    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Map(#[serde(deserialize_with = "ports")] BTreeMap<u32, MutualTls>);
    fn ports<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<u32, MutualTls>, D::Error> {
        de.deserialize_map(Ports)
    }

    Ok(Option::<Map>::deserialize(de)?.map(|Map(ports)| ports))
}

/// The one validator for `PeerAuthentication` (Istio's
/// `ValidatePeerAuthentication` and the rules of its CRD schema).
///
/// Istio only warns when a selector-less policy in the root namespace is not
/// named `default`; Rudder cannot tell the root namespace here and accepts it.
pub fn validate(spec: &PeerAuthenticationSpec) -> Result<(), FieldError> {
    if let Some(selector) = &spec.selector {
        check_match_labels("spec.selector", selector)?;
    }
    let Some(ports) = &spec.port_level_mtls else {
        return Ok(());
    };
    if ports.is_empty() {
        return Err(FieldError::new(
            "spec.portLevelMtls",
            "port level mTLS, if defined, must have at least one element",
        ));
    }
    let selected = spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if !selected {
        return Err(FieldError::new(
            "spec.portLevelMtls",
            "portLevelMtls requires a selector with matchLabels: a mesh- or namespace-wide policy cannot have port level mTLS",
        ));
    }
    for port in ports.keys() {
        check_port_number(&format!("spec.portLevelMtls[{port}]"), *port)?;
    }
    Ok(())
}
