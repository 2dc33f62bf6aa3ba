//! Responses built from resources encoded once. A `DiscoveryResponse` holds
//! its resources by value, so sending one config to a thousand proxies would
//! copy every resource's bytes a thousand times and queue those copies per
//! stream. These types write the same wire format from shared, refcounted
//! encodings instead: the only per-proxy copy is into the socket buffer.

use bytes::{BufMut, Bytes};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

/// `DiscoveryResponse` (SotW): version_info = 1, resources = 2, type_url = 4, nonce = 5.
#[derive(Debug, Default, Clone)]
pub struct SotwResponse {
    pub version_info: String,
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

/// A response's encoding in three parts, so that it can be written in
/// pieces (`body.rs`) as well as whole: the fields before the resources,
/// the resources (field 2, each shared), and the fields after them.
pub trait Pieces {
    fn head(&self, buf: &mut impl BufMut);
    fn resources(&self) -> &[Bytes];
    fn tail(&self, buf: &mut impl BufMut);
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
