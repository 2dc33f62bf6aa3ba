use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::Resource as WireResource;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use prost::Message;
use sha2::{Digest, Sha256};

/// The resource types served, in the order a push sends them: clusters before
/// their endpoints, listeners before their routes, so Envoy never references
/// something it has not been given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum TypeUrl {
    /// SDS: the proxy's certificate and trust bundle. First, so a listener or
    /// cluster that names a secret finds it already there.
    Secret,
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl TypeUrl {
    pub const PUSH_ORDER: [TypeUrl; 5] = [
        TypeUrl::Secret,
        TypeUrl::Cluster,
        TypeUrl::Endpoint,
        TypeUrl::Listener,
        TypeUrl::Route,
    ];

    pub fn url(self) -> &'static str {
        match self {
            TypeUrl::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
            TypeUrl::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            TypeUrl::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            TypeUrl::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            TypeUrl::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    pub fn parse(url: &str) -> Option<TypeUrl> {
        Self::PUSH_ORDER.into_iter().find(|t| t.url() == url)
    }

    /// Short name for metrics and debug output: sds, cds, eds, lds, rds.
    pub fn short(self) -> &'static str {
        match self {
            TypeUrl::Secret => "sds",
            TypeUrl::Cluster => "cds",
            TypeUrl::Endpoint => "eds",
            TypeUrl::Listener => "lds",
            TypeUrl::Route => "rds",
        }
    }

    /// Listeners and clusters are wildcard types: an empty subscription means
    /// "everything"; for the others it means "nothing".
    pub fn is_wildcard_type(self) -> bool {
        matches!(self, TypeUrl::Cluster | TypeUrl::Listener)
    }
}

/// A resource name, shared rather than copied: the cache's maps, every
/// stream's subscription and what each stream holds point at one allocation
/// (a thousand streams each owning ~1,300 endpoint names cost ~90 KB per
/// stream; see docs/performance.md).
pub type Name = Arc<str>;

/// One generated resource, serialized once and shared by every stream that
/// sends it. The version is a hash of the bytes, so equal content has equal
/// versions across proxies, restarts and streams.
#[derive(Debug, PartialEq)]
pub struct Resource {
    /// The same allocation as this resource's key in its `ResourceMap`.
    pub name: Name,
    pub version: String,
    pub body: Any,
    /// `body` encoded as a SotW response entry (an `Any`).
    pub sotw: Bytes,
    /// `body` with name and version, encoded as a Delta `Resource`.
    pub delta: Bytes,
}

impl Resource {
    pub fn new<M: Message + prost::Name>(name: Name, message: M) -> Arc<Resource> {
        let body = pack_any(message);
        let digest = Sha256::digest(&body.value);
        let version = hex::encode(&digest[..8]);
        let delta = WireResource {
            name: name.to_string(),
            version: version.clone(),
            resource: Some(body.clone()),
            ..Default::default()
        };
        Arc::new(Resource {
            sotw: body.encode_to_vec().into(),
            delta: delta.encode_to_vec().into(),
            name,
            version,
            body,
        })
    }
}

pub type ResourceMap = BTreeMap<Name, Arc<Resource>>;

pub fn to_map<M: Message + prost::Name>(items: Vec<M>, name: impl Fn(&M) -> &str) -> ResourceMap {
    items
        .into_iter()
        .map(|m| {
            let n: Name = name(&m).into();
            (Arc::clone(&n), Resource::new(n, m))
        })
        .collect()
}

/// `name` as the map's own allocation when the map has it, so a
/// subscription naming existing resources adds no copies.
pub fn intern(map: Option<&ResourceMap>, name: &str) -> Name {
    match map.and_then(|m| m.get_key_value(name)) {
        Some((key, _)) => Arc::clone(key),
        None => name.into(),
    }
}

/// Both maps hold the same versions of the same names, so a stream holding
/// `a` may hold the shared `b` instead.
pub fn same_entries(a: &ResourceMap, b: &ResourceMap) -> bool {
    a.len() == b.len()
        && a.values()
            .zip(b.values())
            .all(|(x, y)| Arc::ptr_eq(x, y) || (x.name == y.name && x.version == y.version))
}

/// Names added, removed or changed from `old` to `new`, in order. Both maps
/// come from the cache, which shares unchanged entries (and their names)
/// between versions, so walking them side by side mostly compares pointers:
/// far cheaper than looking every name of one up in the other.
pub fn changed_names(old: &ResourceMap, new: &ResourceMap) -> Vec<Name> {
    use std::cmp::Ordering;
    let mut out = Vec::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return out,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) if Arc::ptr_eq(ka, kb) => Ordering::Equal,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            Ordering::Less => out.extend(a.next().map(|(k, _)| Arc::clone(k))),
            Ordering::Greater => out.extend(b.next().map(|(k, _)| Arc::clone(k))),
            Ordering::Equal => {
                if let (Some((_, x)), Some((k, y))) = (a.next(), b.next()) {
                    if !Arc::ptr_eq(x, y) && x.version != y.version {
                        out.push(Arc::clone(k));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

    fn cla(name: &str, zone_count: usize) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![Default::default(); zone_count],
            ..Default::default()
        }
    }

    #[test]
    fn changed_names_lists_added_removed_and_changed_in_order() {
        let old = to_map(
            vec![cla("a", 1), cla("b", 1), cla("c", 1), cla("d", 1)],
            |c| &c.cluster_name,
        );
        // As the cache builds a new version: a copy sharing every entry, then
        // some replaced (one with equal content), added and removed.
        let mut new = old.clone();
        new.remove("a");
        let same_b = to_map(vec![cla("b", 1)], |c| &c.cluster_name);
        new.extend(same_b);
        new.extend(to_map(vec![cla("c", 2), cla("e", 1)], |c| &c.cluster_name));
        let names: Vec<String> = changed_names(&old, &new)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["a", "c", "e"]);
        assert!(changed_names(&new, &new).is_empty());
        assert_eq!(changed_names(&ResourceMap::new(), &old).len(), 4);
    }
}
