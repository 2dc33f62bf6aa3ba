//! The tonic ADS service: one task per stream, all sharing one context.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::cache::ConfigCache;
use super::status::Registry;
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

struct Ads(Arc<XdsContext>);

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(super::sotw::run(self.0.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(super::delta::run(self.0.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
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
    let service = AggregatedDiscoveryServiceServer::new(Ads(ctx))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| XdsError::Serve(addr, e))
}
