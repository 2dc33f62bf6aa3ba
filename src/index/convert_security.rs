//! Security policies to the model.

use crate::api::security::peer_authentication::{MtlsMode as ApiMode, PeerAuthentication};
use crate::model::security::{MtlsMode, PeerAuthn};

use super::convert_routing::{created, key};

pub fn peer_authentication(pa: &PeerAuthentication) -> PeerAuthn {
    let mode = |m: Option<&crate::api::security::peer_authentication::MutualTls>| match m
        .and_then(|m| m.mode)
        .unwrap_or_default()
    {
        ApiMode::Unset => MtlsMode::Unset,
        ApiMode::Disable => MtlsMode::Disable,
        ApiMode::Permissive => MtlsMode::Permissive,
        ApiMode::Strict => MtlsMode::Strict,
    };
    let spec = &pa.spec;
    let selector = spec
        .selector
        .as_ref()
        .map(|s| s.match_labels.clone())
        .unwrap_or_default();
    // Validation refuses port-level settings without a selector and ports
    // outside 1..=65535; Istio ignores the former anyway.
    let port_modes = match selector.is_empty() {
        true => Default::default(),
        false => spec
            .port_level_mtls
            .iter()
            .flatten()
            .filter_map(|(&port, m)| Some((u16::try_from(port).ok()?, mode(Some(m)))))
            .collect(),
    };
    PeerAuthn {
        key: key(&pa.metadata),
        created: created(&pa.metadata),
        selector,
        mode: mode(spec.mtls.as_ref()),
        port_modes,
    }
}
