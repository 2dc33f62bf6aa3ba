//! The tonic ADS service: one task per stream, all sharing one context.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::{Request, Response, Status, Streaming};

use super::cache::ConfigCache;
use super::status::Registry;
use super::wire::{DeltaResponse, SotwResponse};
use crate::metrics::Metrics;
use crate::model::Snapshot;

/// A stream's outgoing queue. Small: a slow proxy should slow its own task,
/// not buffer many stale pushes (each push carries the latest state anyway).
const STREAM_QUEUE: usize = 4;

/// Envoy rejects messages over 4 MiB by default; we accept large requests too.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("xDS server on {0}: {1}")]
    Serve(SocketAddr, tonic::transport::Error),
}

pub struct XdsContext {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub cache: ConfigCache,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    connections: AtomicU64,
    nonces: AtomicU64,
}

impl XdsContext {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        metrics: Arc<Metrics>,
    ) -> Arc<XdsContext> {
        Arc::new(XdsContext {
            snapshots,
            cache: ConfigCache::default(),
            registry: Registry::default(),
            metrics,
            connections: AtomicU64::new(0),
            nonces: AtomicU64::new(0),
        })
    }

    pub fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Nonces are unique across the process, so a reply can never match a
    /// response it did not answer.
    pub fn next_nonce(&self) -> String {
        (self.nonces.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }
}

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The ADS gRPC service. Written out rather than generated so responses can
/// be the pre-encoded types of `wire.rs` (the generated service fixes the
/// response type to prost's `DiscoveryResponse`, which owns its bytes).
#[derive(Clone)]
struct Ads(Arc<XdsContext>);

impl tonic::server::NamedService for Ads {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<B> Service<http::Request<B>> for Ads
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ctx = self.0.clone();
        match req.uri().path() {
            SOTW_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<SotwResponse, DiscoveryRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec).apply_max_message_size_config(
                    Some(MAX_MESSAGE_BYTES),
                    Some(MAX_MESSAGE_BYTES),
                );
                Ok(grpc.streaming(Sotw(ctx), req).await)
            }),
            DELTA_PATH => Box::pin(async move {
                let codec =
                    tonic_prost::ProstCodec::<DeltaResponse, DeltaDiscoveryRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec).apply_max_message_size_config(
                    Some(MAX_MESSAGE_BYTES),
                    Some(MAX_MESSAGE_BYTES),
                );
                Ok(grpc.streaming(Delta(ctx), req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

struct Sotw(Arc<XdsContext>);

impl tonic::server::StreamingService<DiscoveryRequest> for Sotw {
    type Response = SotwResponse;
    type ResponseStream = ReceiverStream<Result<SotwResponse, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        let ctx = self.0.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            tokio::spawn(super::stream::run::<super::sotw::Sotw>(
                ctx,
                request.into_inner(),
                tx,
            ));
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

struct Delta(Arc<XdsContext>);

impl tonic::server::StreamingService<DeltaDiscoveryRequest> for Delta {
    type Response = DeltaResponse;
    type ResponseStream = ReceiverStream<Result<DeltaResponse, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        let ctx = self.0.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            tokio::spawn(super::stream::run::<super::delta::Delta>(
                ctx,
                request.into_inner(),
                tx,
            ));
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// Serves ADS on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<XdsContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), XdsError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let service = Ads(ctx);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| XdsError::Serve(addr, e))
}
