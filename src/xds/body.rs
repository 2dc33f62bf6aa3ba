//! ADS responses written to HTTP/2 in bounded chunks rather than through
//! tonic's encoder. tonic copies each message whole into one buffer per
//! stream, and that buffer keeps the capacity of the largest response the
//! stream ever sent (a 545 KB RDS response leaves a 1 MiB allocation) for
//! the stream's life: 1.05 MB of the 1.3 MB each SotW proxy cost at rest
//! (heaptrack, see docs/performance.md). Here the small parts of a response
//! are copied into short-lived chunks of about `CHUNK` bytes, produced only
//! when HTTP/2 can take more, and large resources go out as their shared
//! encodings; between responses a stream holds no buffer. The bytes on the
//! wire are the same gRPC messages; only DATA frame boundaries differ.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use tokio::sync::mpsc;
use tonic::codegen::{http, Body, StdError};
use tonic::Status;

use super::requests::Requests;
use super::server::XdsContext;
use super::session::Caller;
use super::stream::{self, Protocol};
use super::wire::{put_resource, put_resource_key, Pieces, SHARED_FROM};

/// Copied parts of a response are sent in chunks of about this size.
const CHUNK: usize = 16 << 10;
/// gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// Serves one bidirectional ADS call: decodes requests (`requests.rs`), runs
/// the stream's task, and answers with a `ResponseBody` over its queue.
pub fn streaming<P, B>(
    ctx: Arc<XdsContext>,
    caller: Caller,
    req: http::Request<B>,
    queue: usize,
    max_message_bytes: usize,
) -> http::Response<tonic::body::Body>
where
    P: Protocol + 'static,
    P::Request: prost::Message + Default,
    P::Response: prost::Message + Pieces + Unpin,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    // No compression is offered, as with tonic's defaults.
    if let Some(enc) = req.headers().get("grpc-encoding") {
        if enc.as_bytes() != b"identity" {
            return Status::unimplemented(format!(
                "Content is compressed with `{}` which isn't supported",
                String::from_utf8_lossy(enc.as_bytes())
            ))
            .into_http();
        }
    }
    let requests = Requests::<P::Request>::new(req.into_body(), max_message_bytes);
    let (tx, rx) = mpsc::channel(queue);
    tokio::spawn(stream::run::<P>(ctx, caller, requests, tx));
    let mut resp = http::Response::new(tonic::body::Body::new(ResponseBody {
        rx,
        writing: None,
        shared: None,
        max_message_bytes,
        ended: false,
    }));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// A response being written: the next resource to write.
struct Writing<R> {
    response: R,
    next: usize,
}

/// The response stream of one call, as gRPC frames and final trailers.
struct ResponseBody<R> {
    rx: mpsc::Receiver<Result<R, Status>>,
    writing: Option<Writing<R>>,
    /// A large resource to send right after the chunk holding its key.
    shared: Option<Bytes>,
    max_message_bytes: usize,
    ended: bool,
}

impl<R: prost::Message + Pieces> ResponseBody<R> {
    /// Starts a response: its gRPC prefix and leading fields.
    fn start(&mut self, response: R, chunk: &mut BytesMut) -> Result<(), Status> {
        let len = response.encoded_len();
        if len > self.max_message_bytes || len > u32::MAX as usize {
            return Err(Status::out_of_range(format!(
                "Error, encoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message_bytes
            )));
        }
        chunk.put_u8(0);
        chunk.put_u32(len as u32);
        response.head(chunk);
        self.writing = Some(Writing { response, next: 0 });
        Ok(())
    }

    /// Fills `chunk` with what comes next, up to about `CHUNK` bytes or a
    /// large resource (left in `shared`).
    fn fill(&mut self, chunk: &mut BytesMut) {
        let Some(w) = &mut self.writing else { return };
        let framed = w.response.framed();
        if let Some(piece) = framed.get(w.next) {
            // Already encoded and shared: the next frame as it is.
            self.shared = Some(piece.clone());
            w.next += 1;
            return;
        }
        let skip = framed.len();
        while let Some(r) = w.response.resources().get(w.next - skip) {
            if r.len() >= SHARED_FROM {
                // Key and length here, the shared bytes as the next frame.
                put_resource_key(r.len(), chunk);
                self.shared = Some(r.clone());
                w.next += 1;
                return;
            }
            if !chunk.is_empty() && chunk.len() + r.len() + 8 > CHUNK {
                return;
            }
            put_resource(r, chunk);
            w.next += 1;
        }
        w.response.tail(chunk);
        self.writing = None;
    }

    /// What comes next of the response being written is copied into a
    /// chunk: a small resource, not a shared piece or only the tail.
    fn copies_next(&self) -> bool {
        self.writing.as_ref().is_some_and(|w| {
            let framed = w.response.framed().len();
            w.next >= framed && w.next < framed + w.response.resources().len()
        })
    }

    fn end(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.ended = true;
        self.writing = None;
        self.shared = None;
        let mut trailers = http::HeaderMap::new();
        Poll::Ready(Some(
            status
                .add_header(&mut trailers)
                .map(|()| Frame::trailers(trailers)),
        ))
    }
}

impl<R: prost::Message + Pieces + Unpin> Body for ResponseBody<R> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(shared) = this.shared.take() {
            return Poll::Ready(Some(Ok(Frame::data(shared))));
        }
        let mut chunk = BytesMut::new();
        if this.writing.is_none() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok(response)) => {
                    chunk.reserve(CHUNK.min(PREFIX + response.encoded_len()));
                    if let Err(status) = this.start(response, &mut chunk) {
                        return this.end(status);
                    }
                }
                Some(Err(status)) => return this.end(status),
                None => return this.end(Status::ok("")),
            }
        } else if this.copies_next() {
            chunk.reserve(CHUNK);
        }
        this.fill(&mut chunk);
        if chunk.is_empty() {
            if let Some(shared) = this.shared.take() {
                return Poll::Ready(Some(Ok(Frame::data(shared))));
            }
        }
        Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::wire::SotwResponse;
    use prost::Message;

    fn response(sizes: &[usize], nonce: &str) -> SotwResponse {
        SotwResponse {
            version_info: "3".into(),
            framed: None,
            resources: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| Bytes::from(vec![i as u8; *n]))
                .collect(),
            type_url: "t".into(),
            nonce: nonce.into(),
        }
    }

    /// Every frame of a body over these responses, then its trailers.
    async fn frames(responses: Vec<Result<SotwResponse, Status>>) -> (Vec<Bytes>, http::HeaderMap) {
        let (tx, rx) = mpsc::channel(responses.len().max(1));
        for r in responses {
            tx.send(r).await.unwrap();
        }
        drop(tx);
        let mut body = ResponseBody {
            rx,
            writing: None,
            shared: None,
            max_message_bytes: 64 << 20,
            ended: false,
        };
        let mut data = Vec::new();
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            let frame = frame.expect("trailers end the body").unwrap();
            match frame.into_data() {
                Ok(d) => data.push(d),
                Err(f) => return (data, f.into_trailers().unwrap()),
            }
        }
    }

    fn grpc_message(r: &SotwResponse) -> Vec<u8> {
        let body = r.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[tokio::test]
    async fn chunks_carry_exactly_the_grpc_messages_and_stay_small() {
        // Many small resources (several chunks), one shared large one, and
        // an empty response.
        let mut sizes = vec![300; 200];
        sizes.insert(50, 100_000);
        let a = response(&sizes, "1");
        let b = response(&[], "2");
        let (data, trailers) = frames(vec![Ok(a.clone()), Ok(b.clone())]).await;
        let wire: Vec<u8> = data.iter().flat_map(|d| d.iter().copied()).collect();
        assert_eq!(wire, [grpc_message(&a), grpc_message(&b)].concat());
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        // Copied chunks stay near CHUNK; the large resource is its shared bytes.
        for d in &data {
            assert!(
                d.len() <= CHUNK || d.len() == 100_000,
                "frame of {}",
                d.len()
            );
        }
        assert!(data.iter().any(|d| d.as_ptr() == a.resources[50].as_ptr()));
    }

    #[tokio::test]
    async fn framed_resources_go_out_as_their_shared_pieces() {
        let mut sizes = vec![300; 100];
        sizes.insert(20, 50_000);
        let listed = response(&sizes, "1");
        let framed = SotwResponse {
            framed: Some(crate::xds::wire::frame(listed.resources.iter())),
            resources: vec![],
            ..listed.clone()
        };
        let after = response(&[10, 20], "2");
        let (data, _) = frames(vec![Ok(framed.clone()), Ok(after.clone())]).await;
        let wire: Vec<u8> = data.iter().flat_map(|d| d.iter().copied()).collect();
        assert_eq!(wire, [grpc_message(&listed), grpc_message(&after)].concat());
        // Every piece is sent as it is: nothing of them copied, no empty frame.
        for piece in framed.framed.as_deref().unwrap() {
            assert!(data.iter().any(|d| d.as_ptr() == piece.as_ptr()));
        }
        assert!(data.iter().all(|d| !d.is_empty()));
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_with_its_status() {
        let (data, trailers) = frames(vec![
            Ok(response(&[10], "1")),
            Err(Status::invalid_argument("bad node")),
        ])
        .await;
        assert_eq!(data.len(), 1);
        assert_eq!(trailers.get("grpc-status").unwrap(), "3");
        assert_eq!(trailers.get("grpc-message").unwrap(), "bad%20node");
    }
}
