//! Envoy's node (id + metadata) to the model's Proxy, by Istio's conventions.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind, Struct};

use crate::model::{Interception, Proxy};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the first request on a stream must carry a node")]
    Missing,
    #[error(transparent)]
    Id(#[from] crate::model::proxy::ProxyIdError),
    #[error("node metadata INTERCEPTION_MODE {0:?} must be REDIRECT, TPROXY or NONE")]
    Interception(String),
}

pub fn proxy_from_node(node: Option<&Node>) -> Result<Proxy, NodeError> {
    let node = node.ok_or(NodeError::Missing)?;
    let mut proxy = Proxy::from_node_id(&node.id)?;
    let empty = Struct::default();
    let meta = node.metadata.as_ref().unwrap_or(&empty);
    if let Some(ns) = string(meta, "NAMESPACE") {
        proxy.namespace = ns;
    }
    if let Some(sa) = string(meta, "SERVICE_ACCOUNT") {
        proxy.service_account = sa;
    }
    if let Some(mode) = string(meta, "INTERCEPTION_MODE") {
        proxy.interception = Interception::parse(&mode).ok_or(NodeError::Interception(mode))?;
    }
    if let Some(Kind::StructValue(labels)) = meta.fields.get("LABELS").and_then(|v| v.kind.as_ref())
    {
        proxy.labels = labels
            .fields
            .iter()
            .filter_map(|(k, v)| match &v.kind {
                Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect::<BTreeMap<_, _>>();
    }
    // Envoy's own locality (bootstrap `node.locality`), when it has one.
    proxy.locality = node
        .locality
        .as_ref()
        .map(|l| crate::model::Locality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            subzone: l.sub_zone.clone(),
        })
        .filter(|l| !l.is_empty());
    Ok(proxy)
}

fn string(meta: &Struct, key: &str) -> Option<String> {
    match meta.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}
