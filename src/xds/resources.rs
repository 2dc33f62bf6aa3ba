use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
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
/// versions across proxies, restarts and streams. Its bytes are held once:
/// the SotW encoding is a slice of the Delta one.
#[derive(Debug, PartialEq)]
pub struct Resource {
    /// The same allocation as this resource's key in its `ResourceMap`.
    pub name: Name,
    pub version: String,
    /// The resource encoded as a SotW response entry (an `Any`).
    pub sotw: Bytes,
    /// The same with name and version, encoded as a Delta `Resource`.
    pub delta: Bytes,
    /// The length of the resource's own encoding (the `Any`'s value).
    pub value_len: usize,
}

impl Resource {
    pub fn new<M: Message + prost::Name>(name: Name, message: M) -> Arc<Resource> {
        let body = pack_any(message);
        let digest = Sha256::digest(&body.value);
        let version = hex::encode(&digest[..8]);
        // A Delta `Resource` as prost writes it (fields in tag order):
        // version = 1, resource = 2, name = 3; the `Any` is field 2's value.
        let any_len = body.encoded_len();
        let mut delta = bytes::BytesMut::with_capacity(
            bytes_field_len(1, version.len())
                + bytes_field_len(2, any_len)
                + bytes_field_len(3, name.len()),
        );
        put_bytes_field(1, version.as_bytes(), &mut delta);
        encode_key(2, WireType::LengthDelimited, &mut delta);
        encode_varint(any_len as u64, &mut delta);
        let start = delta.len();
        body.encode_raw(&mut delta);
        let end = delta.len();
        put_bytes_field(3, name.as_bytes(), &mut delta);
        let delta = delta.freeze();
        Arc::new(Resource {
            value_len: body.value.len(),
            sotw: delta.slice(start..end),
            delta,
            name,
            version,
        })
    }

    /// The resource as a `google.protobuf.Any` (debug output, tests).
    pub fn body(&self) -> Any {
        Any::decode(&self.sotw[..]).expect("encoded from an Any")
    }
}

fn bytes_field_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }
}

/// A string or bytes field; proto3 leaves empty ones out.
fn put_bytes_field(tag: u32, value: &[u8], buf: &mut bytes::BytesMut) {
    if !value.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(value.len() as u64, buf);
        buf.extend_from_slice(value);
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
    use envoy_types::pb::envoy::service::discovery::v3::Resource as WireResource;

    fn cla(name: &str, zone_count: usize) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![Default::default(); zone_count],
            ..Default::default()
        }
    }

    #[test]
    fn one_encoding_serves_sotw_and_delta_as_prost_writes_them() {
        for name in ["a", "outbound|8080||svc-1.ns-1.svc.cluster.local"] {
            let message = cla(name, 3);
            let r = Resource::new(name.into(), message.clone());
            let any = pack_any(message);
            assert_eq!(r.sotw, any.encode_to_vec());
            assert_eq!(r.body(), any);
            assert_eq!(r.value_len, any.value.len());
            let wire = WireResource {
                name: name.to_string(),
                version: r.version.clone(),
                resource: Some(any),
                ..Default::default()
            };
            assert_eq!(r.delta, wire.encode_to_vec());
            // The SotW bytes are the Delta ones, not a copy.
            assert!(r.delta.as_ptr_range().contains(&r.sotw.as_ptr()));
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
