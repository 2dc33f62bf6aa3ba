//! SotW requests with their resource names encoded once. A proxy repeats its
//! whole subscription on every request of a type (each EDS ACK names ~1,300
//! clusters in the 1,000-service mesh). Building a `DiscoveryRequest` per
//! ACK cloned and then encoded every name: ~40 % of the load generator's CPU
//! while 1,000 proxies ACKed one endpoint change, on the two cores Rudder
//! also runs on (perf, docs/performance.md). Here the names are encoded once
//! per distinct subscription (`NameSet`, shared by every proxy that has it)
//! and copied into each request whole. The bytes on the wire are the ones
//! prost writes for the same `DiscoveryRequest`.

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::encoding::{encoded_len_varint, key_len, message, skip_field, string, WireType};

/// `DiscoveryRequest`: version_info = 1, node = 2, resource_names = 3,
/// type_url = 4, response_nonce = 5, error_detail = 6. Encode-only.
#[derive(Debug, Default, Clone)]
pub struct SotwRequest {
    pub version_info: String,
    pub node: Option<Node>,
    /// `resource_names`, already encoded (see [`encode_names`]).
    pub names: Bytes,
    pub type_url: String,
    pub response_nonce: String,
    pub error_detail: Option<RpcStatus>,
}

/// The encoded `resource_names` field of a request naming `names`.
pub fn encode_names(names: &[String]) -> Bytes {
    let mut buf = BytesMut::new();
    for name in names {
        string::encode(3, name, &mut buf);
    }
    buf.freeze()
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
    }
}

impl prost::Message for SotwRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // Proto3 leaves empty strings out, as prost does.
        if !self.version_info.is_empty() {
            string::encode(1, &self.version_info, buf);
        }
        if let Some(node) = &self.node {
            message::encode(2, node, buf);
        }
        buf.put_slice(&self.names);
        if !self.type_url.is_empty() {
            string::encode(4, &self.type_url, buf);
        }
        if !self.response_nonce.is_empty() {
            string::encode(5, &self.response_nonce, buf);
        }
        if let Some(error) = &self.error_detail {
            message::encode(6, error, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded; skip rather than misread.
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        string_len(1, &self.version_info)
            + self.node.as_ref().map_or(0, |n| message::encoded_len(2, n))
            + self.names.len()
            + string_len(4, &self.type_url)
            + string_len(5, &self.response_nonce)
            + self
                .error_detail
                .as_ref()
                .map_or(0, |e| message::encoded_len(6, e))
    }

    fn clear(&mut self) {
        *self = SotwRequest::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use prost::Message;

    #[test]
    fn encodes_exactly_like_prost() {
        let names: Vec<String> = vec![
            "outbound|80||a.ns.svc".into(),
            "outbound|80||b.ns.svc".into(),
        ];
        let ours = SotwRequest {
            version_info: "3".into(),
            node: Some(Node {
                id: "sidecar~198.19.0.1~a.ns~ns.svc.cluster.local".into(),
                ..Default::default()
            }),
            names: encode_names(&names),
            type_url: "t".into(),
            response_nonce: "9".into(),
            error_detail: Some(RpcStatus {
                code: 13,
                message: "refused".into(),
                details: vec![],
            }),
        };
        let theirs = DiscoveryRequest {
            version_info: ours.version_info.clone(),
            node: ours.node.clone(),
            resource_names: names,
            type_url: "t".into(),
            response_nonce: "9".into(),
            error_detail: ours.error_detail.clone(),
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(ours.encoded_len(), theirs.encoded_len());
        let empty = SotwRequest::default();
        assert_eq!(
            empty.encode_to_vec(),
            DiscoveryRequest::default().encode_to_vec()
        );
    }
}
