//! One proxy's life: open an ADS stream on a shared HTTP/2 connection, play
//! the protocol until told to stop, and reconnect with backoff when the
//! stream fails, as Envoy would.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::delta::Delta;
use crate::record::Recorder;
use crate::request::SotwRequest;
use crate::shared::{now_ns, set_once, Shared};
use crate::sotw::Sotw;

/// Requests queued towards the server per stream; ACKs are small and the
/// HTTP/2 connection drains them quickly.
const REQUEST_QUEUE: usize = 16;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub struct Link {
    pub channel: Channel,
    pub max_message_bytes: usize,
}

enum Ending {
    Stopped,
    Closed(String),
}

/// Counts open streams while alive.
struct Open<'a>(&'a Shared);

impl<'a> Open<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.connected.fetch_add(1, Relaxed);
        Open(shared)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Relaxed);
    }
}

pub async fn run(
    shared: Arc<Shared>,
    idx: usize,
    node: Node,
    link: Arc<Link>,
    mut stop: watch::Receiver<bool>,
) {
    set_once(&shared.proxies[idx].started_ns, now_ns());
    let mut rec = Recorder::new(shared.clone(), idx);
    let mut backoff = Duration::from_millis(250);
    loop {
        let ending = if shared.delta {
            delta(&mut rec, node.clone(), &link, &mut stop).await
        } else {
            sotw(&mut rec, node.clone(), &link, &mut stop).await
        };
        let why = match ending {
            Ok(Ending::Stopped) => break,
            Ok(Ending::Closed(why)) => why,
            Err(status) => format!("{}: {}", status.code(), status.message()),
        };
        shared.stream_errors.fetch_add(1, Relaxed);
        shared.proxies[idx].reconnects.fetch_add(1, Relaxed);
        shared.warn(format_args!(
            "proxy {idx}: stream ended ({why}); reconnecting in {backoff:?}"
        ));
        // Jitter, so proxies cut off together do not come back together.
        let jitter = Duration::from_millis(now_ns() % 100);
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        rec.reconnected();
    }
    rec.flush();
}

fn client(link: &Link) -> AggregatedDiscoveryServiceClient<Channel> {
    AggregatedDiscoveryServiceClient::new(link.channel.clone())
        .max_decoding_message_size(link.max_message_bytes)
        .max_encoding_message_size(link.max_message_bytes)
}

/// StreamAggregatedResources as the generated client calls it, but sending
/// requests whose names are encoded once (request.rs).
async fn sotw_call(
    link: &Link,
    rx: mpsc::Receiver<SotwRequest>,
) -> Result<tonic::Streaming<DiscoveryResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(link.channel.clone())
        .max_decoding_message_size(link.max_message_bytes)
        .max_encoding_message_size(link.max_message_bytes);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<SotwRequest, DiscoveryResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    );
    let request = tonic::Request::new(ReceiverStream::new(rx));
    Ok(grpc.streaming(request, path, codec).await?.into_inner())
}

async fn sotw(
    rec: &mut Recorder,
    node: Node,
    link: &Link,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ending, tonic::Status> {
    let shared = rec.shared.clone();
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let mut proxy = Sotw::new(rec, tx, node);
    if proxy.start().await.is_err() {
        return Ok(Ending::Closed("request queue closed".into()));
    }
    let mut inbound = sotw_call(link, rx).await?;
    let _open = Open::new(&shared);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(Ending::Stopped),
            msg = inbound.message() => match msg? {
                Some(resp) => {
                    if proxy.on_response(resp).await.is_err() {
                        return Ok(Ending::Closed("request stream closed".into()));
                    }
                }
                None => return Ok(Ending::Closed("server ended the stream".into())),
            },
        }
    }
}

async fn delta(
    rec: &mut Recorder,
    node: Node,
    link: &Link,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ending, tonic::Status> {
    let shared = rec.shared.clone();
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let mut proxy = Delta::new(rec, tx, node);
    if proxy.start().await.is_err() {
        return Ok(Ending::Closed("request queue closed".into()));
    }
    let mut inbound = client(link)
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let _open = Open::new(&shared);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(Ending::Stopped),
            msg = inbound.message() => match msg? {
                Some(resp) => {
                    if proxy.on_response(resp).await.is_err() {
                        return Ok(Ending::Closed("request stream closed".into()));
                    }
                }
                None => return Ok(Ending::Closed("server ended the stream".into())),
            },
        }
    }
}
