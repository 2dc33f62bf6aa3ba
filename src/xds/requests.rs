//! ADS requests decoded from the HTTP/2 body without a buffer kept for the
//! stream's life. tonic's `Streaming` keeps one decode buffer per stream,
//! grown to the largest request the stream ever received and never shrunk (an
//! EDS request naming ~1,300 clusters leaves ~64-128 KiB per proxy at rest;
//! tonic 0.14's `BufferSettings` only sets the initial capacity). Here DATA
//! frames are kept as received until a whole message is there; a message
//! inside one frame is decoded in place, a longer one is joined into a buffer
//! of exactly its size, and both are freed once decoded. Between requests a
//! stream holds no buffer. Errors are tonic's, word for word.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::Frame;
use tonic::codegen::{Body, StdError};
use tonic::{Code, Status};

/// gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

type BoxBody = Pin<Box<dyn Body<Data = Bytes, Error = Status> + Send>>;

/// The request messages of one call, in order.
pub struct Requests<T> {
    body: BoxBody,
    /// DATA frames not yet decoded, as received.
    frames: VecDeque<Bytes>,
    buffered: usize,
    max_message_bytes: usize,
    ended: bool,
    _message: PhantomData<fn() -> T>,
}

impl<T: prost::Message + Default> Requests<T> {
    pub fn new<B>(body: B, max_message_bytes: usize) -> Requests<T>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        Requests {
            body: Box::pin(Frames(Box::pin(body))),
            frames: VecDeque::new(),
            buffered: 0,
            max_message_bytes,
            ended: false,
            _message: PhantomData,
        }
    }

    /// The next request; `None` when the client ended (or cancelled) its
    /// side. Cancel-safe: what was read stays here for the next call.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        loop {
            if let Some(msg) = self.decode()? {
                return Ok(Some(msg));
            }
            if self.ended {
                return if self.buffered == 0 {
                    Ok(None)
                } else {
                    Err(Status::internal("Unexpected EOF decoding stream."))
                };
            }
            match std::future::poll_fn(|cx| self.body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    // Trailers on a request carry nothing ADS uses.
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            self.buffered += data.len();
                            self.frames.push_back(data);
                        }
                    }
                }
                Some(Err(status)) if status.code() == Code::Cancelled => return Ok(None),
                Some(Err(status)) => return Err(status),
                None => self.ended = true,
            }
        }
    }

    /// One whole message, if the frames hold one.
    fn decode(&mut self) -> Result<Option<T>, Status> {
        if self.buffered < PREFIX {
            return Ok(None);
        }
        let mut head = [0u8; PREFIX];
        for (to, from) in head
            .iter_mut()
            .zip(self.frames.iter().flat_map(|f| f.iter()))
        {
            *to = *from;
        }
        match head[0] {
            0 => {}
            1 => {
                return Err(Status::internal(
                    "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                ))
            }
            f => {
                return Err(Status::internal(format!(
                    "protocol error: received message with invalid compression flag: {f} (valid flags are 0 and 1), while sending request"
                )))
            }
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > self.max_message_bytes {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message_bytes
            )));
        }
        if self.buffered < PREFIX + len {
            return Ok(None);
        }
        self.take(PREFIX);
        let msg = self.take(len);
        T::decode(msg)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// The next `n` buffered bytes: a slice of one frame when they are in
    /// one, else a copy of exactly `n` bytes.
    fn take(&mut self, n: usize) -> Bytes {
        self.buffered -= n;
        if let Some(front) = self.frames.front_mut() {
            if front.len() >= n {
                let out = front.split_to(n);
                if front.is_empty() {
                    self.frames.pop_front();
                }
                return out;
            }
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let front = self
                .frames
                .front_mut()
                .expect("buffered counts these bytes");
            let k = (n - out.len()).min(front.len());
            out.extend_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.frames.pop_front();
            }
        }
        out.freeze()
    }
}

/// A request body as `Bytes` frames and `Status` errors, as tonic maps them.
struct Frames<B>(Pin<Box<B>>);

impl<B> Body for Frames<B>
where
    B: Body,
    B::Error: Into<StdError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.0.as_mut().poll_frame(cx).map(|f| {
            f.map(|r| {
                r.map(|frame| frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                    .map_err(|e| Status::from_error(e.into()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use prost::Message;

    /// A body yielding these DATA frames, then ending.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn grpc(m: &DiscoveryRequest) -> Vec<u8> {
        let body = m.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn request(names: usize, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            resource_names: (0..names)
                .map(|i| format!("outbound|80||svc-{i}"))
                .collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn requests(wire: &[u8], frame: usize) -> Requests<DiscoveryRequest> {
        let frames = wire.chunks(frame).map(Bytes::copy_from_slice).collect();
        Requests::new(Chunks(frames), 1 << 20)
    }

    #[tokio::test]
    async fn messages_split_and_joined_across_frames_decode_in_order() {
        let sent = [request(1300, "1"), request(0, "2"), request(3, "3")];
        let wire: Vec<u8> = sent.iter().flat_map(grpc).collect();
        // Frames shorter than a prefix, frames holding several messages.
        for frame in [1, 3, 7, 1000, 16 << 10, wire.len()] {
            let mut r = requests(&wire, frame);
            for want in &sent {
                assert_eq!(
                    r.message().await.unwrap().as_ref(),
                    Some(want),
                    "frame {frame}"
                );
            }
            assert_eq!(r.message().await.unwrap(), None);
            assert!(r.frames.is_empty() && r.buffered == 0);
        }
    }

    #[tokio::test]
    async fn a_truncated_message_is_an_error_as_with_tonic() {
        let wire = grpc(&request(5, "1"));
        let mut r = requests(&wire[..wire.len() - 1], 4);
        let err = r.message().await.unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert_eq!(err.message(), "Unexpected EOF decoding stream.");
    }

    #[tokio::test]
    async fn oversized_and_compressed_messages_are_refused() {
        let mut wire = grpc(&request(100, "1"));
        let mut r = requests(&wire, 64);
        r.max_message_bytes = 10;
        assert_eq!(r.message().await.unwrap_err().code(), Code::OutOfRange);
        wire[0] = 1;
        let err = requests(&wire, 64).message().await.unwrap_err();
        assert_eq!(err.code(), Code::Internal);
    }
}
