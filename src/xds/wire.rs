//! Responses built from resources encoded once. A `DiscoveryResponse` holds
//! its resources by value, so sending one config to a thousand proxies would
//! copy every resource's bytes a thousand times and queue those copies per
//! stream. These types write the same wire format from shared, refcounted
//! encodings instead: the only per-proxy copy is into the socket buffer.
//! SotW requests are read the other way round, their resource names left in
//! the request's bytes (`SotwRequest`).

use bytes::{BufMut, Bytes};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

/// Resources at least this large are written as their shared bytes, never
/// copied into a stream's chunks (`body.rs`) or into a framed run.
pub const SHARED_FROM: usize = 4 << 10;

/// `DiscoveryResponse` (SotW): version_info = 1, resources = 2, type_url = 4, nonce = 5.
#[derive(Debug, Default, Clone)]
pub struct SotwResponse {
    pub version_info: String,
    /// Resources already encoded as field 2 (`framed`), written before
    /// `resources`: a whole map, encoded once and shared by every stream
    /// that is sent all of it.
    pub framed: Option<Framed>,
    /// Each an encoded `google.protobuf.Any`.
    pub resources: Vec<Bytes>,
    pub type_url: String,
    pub nonce: String,
}

/// `DeltaDiscoveryResponse`: system_version_info = 1, resources = 2,
/// type_url = 4, nonce = 5, removed_resources = 6.
#[derive(Debug, Default, Clone)]
pub struct DeltaResponse {
    pub system_version_info: String,
    /// Each an encoded `envoy.service.discovery.v3.Resource`.
    pub resources: Vec<Bytes>,
    pub type_url: String,
    pub nonce: String,
    pub removed_resources: Vec<String>,
}

fn put_bytes(tag: u32, value: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

fn bytes_len(tag: u32, value: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
}

/// Proto3 omits empty strings.
fn put_string(tag: u32, value: &str, buf: &mut impl BufMut) {
    if !value.is_empty() {
        put_bytes(tag, value.as_bytes(), buf);
    }
}

fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        bytes_len(tag, value.as_bytes())
    }
}

/// A response's encoding in parts, so that it can be written in pieces
/// (`body.rs`) as well as whole: the fields before the resources, resources
/// already framed as field 2 (written as they are), the resources (field 2,
/// each shared), and the fields after them.
pub trait Pieces {
    fn head(&self, buf: &mut impl BufMut);
    fn framed(&self) -> &[Bytes] {
        &[]
    }
    fn resources(&self) -> &[Bytes];
    fn tail(&self, buf: &mut impl BufMut);
}

/// Resources encoded as consecutive field-2 entries of a response, in
/// pieces: runs of small resources copied together once, and each large one
/// (`SHARED_FROM`) as its own shared bytes after a piece ending with its key.
/// Concatenated, the pieces are exactly what `put_resource` writes for each.
pub type Framed = std::sync::Arc<[Bytes]>;

pub fn frame<'a>(resources: impl Iterator<Item = &'a Bytes> + Clone) -> Framed {
    let small: usize = resources
        .clone()
        .map(|r| {
            let key = key_len(2) + encoded_len_varint(r.len() as u64);
            if r.len() >= SHARED_FROM {
                key
            } else {
                key + r.len()
            }
        })
        .sum();
    let mut buf = bytes::BytesMut::with_capacity(small);
    let mut out = Vec::new();
    for r in resources {
        if r.len() >= SHARED_FROM {
            put_resource_key(r.len(), &mut buf);
            out.push(buf.split().freeze());
            out.push(r.clone());
        } else {
            put_resource(r, &mut buf);
        }
    }
    if !buf.is_empty() {
        out.push(buf.freeze());
    }
    out.into()
}

/// The key and length of one resource (field 2); its bytes follow.
pub fn put_resource_key(len: usize, buf: &mut impl BufMut) {
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// One resource as field 2.
pub fn put_resource(r: &[u8], buf: &mut impl BufMut) {
    put_resource_key(r.len(), buf);
    buf.put_slice(r);
}

/// Encode-only messages: the server never decodes its own responses.
macro_rules! encode_only {
    ($t:ty, |$l:ident| $len:block) => {
        impl prost::Message for $t {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                self.head(buf);
                for piece in self.framed() {
                    buf.put_slice(piece);
                }
                for r in self.resources() {
                    put_resource(r, buf);
                }
                self.tail(buf);
            }
            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl bytes::Buf,
                ctx: prost::encoding::DecodeContext,
            ) -> Result<(), prost::DecodeError> {
                // Never decoded; skip rather than misread.
                prost::encoding::skip_field(wire_type, tag, buf, ctx)
            }
            fn encoded_len(&self) -> usize {
                let $l = self;
                $len
            }
            fn clear(&mut self) {
                *self = Self::default();
            }
        }
    };
}

impl Pieces for SotwResponse {
    fn head(&self, buf: &mut impl BufMut) {
        put_string(1, &self.version_info, buf);
    }
    fn framed(&self) -> &[Bytes] {
        self.framed.as_deref().unwrap_or_default()
    }
    fn resources(&self) -> &[Bytes] {
        &self.resources
    }
    fn tail(&self, buf: &mut impl BufMut) {
        put_string(4, &self.type_url, buf);
        put_string(5, &self.nonce, buf);
    }
}

impl Pieces for DeltaResponse {
    fn head(&self, buf: &mut impl BufMut) {
        put_string(1, &self.system_version_info, buf);
    }
    fn resources(&self) -> &[Bytes] {
        &self.resources
    }
    fn tail(&self, buf: &mut impl BufMut) {
        put_string(4, &self.type_url, buf);
        put_string(5, &self.nonce, buf);
        for name in &self.removed_resources {
            put_bytes(6, name.as_bytes(), buf);
        }
    }
}

encode_only!(SotwResponse, |s| {
    string_len(1, &s.version_info)
        + s.framed().iter().map(|p| p.len()).sum::<usize>()
        + s.resources.iter().map(|r| bytes_len(2, r)).sum::<usize>()
        + string_len(4, &s.type_url)
        + string_len(5, &s.nonce)
});

encode_only!(DeltaResponse, |s| {
    string_len(1, &s.system_version_info)
        + s.resources.iter().map(|r| bytes_len(2, r)).sum::<usize>()
        + string_len(4, &s.type_url)
        + string_len(5, &s.nonce)
        + s.removed_resources
            .iter()
            .map(|n| bytes_len(6, n.as_bytes()))
            .sum::<usize>()
});

/// `DiscoveryRequest` (SotW) as the server reads it: version_info = 1,
/// node = 2, resource_names = 3, type_url = 4, response_nonce = 5,
/// error_detail = 6 (resource_locators, 7, is skipped: not supported).
/// Envoy repeats its whole subscription on every request of a type (each
/// EDS ACK names all ~1,300 clusters of the load generator's mesh); prost's
/// type would allocate a `String` per name per ACK, which was most of
/// Rudder's CPU per endpoint change once ACKs stopped being diffed (perf,
/// docs/performance.md). Here each name is a slice of the request's own
/// bytes, compared in place and copied only when a new name is kept. A name
/// that is not UTF-8 is kept as bytes: it matches no resource.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SotwRequest {
    pub version_info: String,
    pub node: Option<Node>,
    pub resource_names: Vec<Bytes>,
    pub type_url: String,
    pub response_nonce: String,
    pub error_detail: Option<RpcStatus>,
}

impl prost::Message for SotwRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_string(1, &self.version_info, buf);
        if let Some(node) = &self.node {
            prost::encoding::message::encode(2, node, buf);
        }
        for name in &self.resource_names {
            put_bytes(3, name, buf);
        }
        put_string(4, &self.type_url, buf);
        put_string(5, &self.response_nonce, buf);
        if let Some(error) = &self.error_detail {
            prost::encoding::message::encode(6, error, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        use prost::encoding::{bytes, message, skip_field, string};
        match tag {
            1 => string::merge(wire_type, &mut self.version_info, buf, ctx),
            2 => message::merge(
                wire_type,
                self.node.get_or_insert_with(Default::default),
                buf,
                ctx,
            ),
            3 => {
                // Zero-copy when `buf` is `Bytes`, as `requests.rs` decodes.
                let mut name = Bytes::new();
                bytes::merge(wire_type, &mut name, buf, ctx)?;
                self.resource_names.push(name);
                Ok(())
            }
            4 => string::merge(wire_type, &mut self.type_url, buf, ctx),
            5 => string::merge(wire_type, &mut self.response_nonce, buf, ctx),
            6 => message::merge(
                wire_type,
                self.error_detail.get_or_insert_with(Default::default),
                buf,
                ctx,
            ),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        string_len(1, &self.version_info)
            + self
                .node
                .as_ref()
                .map_or(0, |n| prost::encoding::message::encoded_len(2, n))
            + self
                .resource_names
                .iter()
                .map(|n| bytes_len(3, n))
                .sum::<usize>()
            + string_len(4, &self.type_url)
            + string_len(5, &self.response_nonce)
            + self
                .error_detail
                .as_ref()
                .map_or(0, |e| prost::encoding::message::encoded_len(6, e))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource as WireResource,
    };
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn any(n: u8) -> Any {
        Any {
            type_url: "type.googleapis.com/x".into(),
            value: vec![n; 3],
        }
    }

    #[test]
    fn sotw_encodes_exactly_like_prost() {
        let ours = SotwResponse {
            version_info: "7".into(),
            framed: None,
            resources: vec![any(1).encode_to_vec().into(), any(2).encode_to_vec().into()],
            type_url: "t".into(),
            nonce: "9".into(),
        };
        let theirs = DiscoveryResponse {
            version_info: "7".into(),
            resources: vec![any(1), any(2)],
            type_url: "t".into(),
            nonce: "9".into(),
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(ours.encoded_len(), theirs.encoded_len());
    }

    #[test]
    fn framed_resources_encode_like_the_same_resources_listed() {
        // Small ones run together; large ones stay their shared bytes.
        let items: Vec<Bytes> = [10, 5000, 3, 4096, 4095, 70_000, 1]
            .iter()
            .map(|n| Bytes::from(vec![7u8; *n]))
            .collect();
        let listed = SotwResponse {
            version_info: "3".into(),
            resources: items.clone(),
            type_url: "t".into(),
            nonce: "1".into(),
            ..Default::default()
        };
        let framed = SotwResponse {
            framed: Some(frame(items.iter())),
            resources: vec![],
            ..listed.clone()
        };
        assert_eq!(framed.encode_to_vec(), listed.encode_to_vec());
        assert_eq!(framed.encoded_len(), listed.encoded_len());
        let pieces = framed.framed.as_deref().unwrap();
        for big in [&items[1], &items[3], &items[5]] {
            assert!(pieces.iter().any(|p| p.as_ptr() == big.as_ptr()));
        }
        assert!(frame([].iter()).is_empty());
    }

    #[test]
    fn sotw_requests_decode_like_prost_with_names_as_slices() {
        use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, ResourceLocator};
        use envoy_types::pb::google::rpc::Status as RpcStatus;
        let theirs = DiscoveryRequest {
            version_info: "7".into(),
            node: Some(Node {
                id: "sidecar~198.18.0.1~a.b~b.svc.cluster.local".into(),
                ..Default::default()
            }),
            resource_names: vec!["outbound|80||a".into(), "outbound|80||b".into()],
            resource_locators: vec![ResourceLocator {
                name: "skipped".into(),
                ..Default::default()
            }],
            type_url: "t".into(),
            response_nonce: "9".into(),
            error_detail: Some(RpcStatus {
                code: 13,
                message: "refused".into(),
                details: vec![],
            }),
        };
        let wire = Bytes::from(theirs.encode_to_vec());
        let ours = SotwRequest::decode(wire.clone()).unwrap();
        assert_eq!(ours.version_info, "7");
        assert_eq!(ours.node, theirs.node);
        assert_eq!(ours.resource_names, ["outbound|80||a", "outbound|80||b"]);
        assert_eq!(
            (ours.type_url.as_str(), ours.response_nonce.as_str()),
            ("t", "9")
        );
        assert_eq!(ours.error_detail, theirs.error_detail);
        // The names point into the request's bytes.
        let range = wire.as_ptr_range();
        assert!(ours
            .resource_names
            .iter()
            .all(|n| range.contains(&n.as_ptr())));
        // What it encodes (locators aside) prost reads back the same.
        let again = DiscoveryRequest::decode(ours.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            again,
            DiscoveryRequest {
                resource_locators: vec![],
                ..theirs
            }
        );
        assert_eq!(ours.encoded_len(), ours.encode_to_vec().len());
    }

    #[test]
    fn delta_encodes_exactly_like_prost() {
        let res = WireResource {
            name: "a".into(),
            version: "v1".into(),
            resource: Some(any(3)),
            ..Default::default()
        };
        let ours = DeltaResponse {
            system_version_info: "2".into(),
            resources: vec![res.encode_to_vec().into()],
            type_url: "t".into(),
            nonce: "5".into(),
            removed_resources: vec!["gone".into(), "also".into()],
        };
        let theirs = DeltaDiscoveryResponse {
            system_version_info: "2".into(),
            resources: vec![res],
            type_url: "t".into(),
            nonce: "5".into(),
            removed_resources: vec!["gone".into(), "also".into()],
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        // Empty strings are left out, as proto3 does.
        let empty = SotwResponse::default();
        assert_eq!(
            empty.encode_to_vec(),
            DiscoveryResponse::default().encode_to_vec()
        );
    }
}
