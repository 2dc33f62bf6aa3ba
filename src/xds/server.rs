//! The tonic ADS service: one task per stream, all sharing one context.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::Status;

use super::cache::ConfigCache;
use super::resources::TypeUrl;
use super::secrets::WorkloadSecrets;
use super::session::Caller;
use super::status::Registry;
use super::tls::ServingCert;
use crate::auth::{AuthError, TokenIdentity};
use crate::metrics::Metrics;
use crate::model::Snapshot;

/// A stream's outgoing queue: room for one response per resource type and a
/// final status. A push waits for the proxy to answer the previous response
/// of its type (sotw.rs, delta.rs), so a conforming proxy never fills it and
/// the stream's task never stops reading requests. A task blocked here
/// leaves its requests unread, and their bytes hold the HTTP/2 connection's
/// receive window that other streams on the connection need: under churn,
/// with 1,000 streams on 16 connections, that deadlocked whole connections.
const STREAM_QUEUE: usize = TypeUrl::PUSH_ORDER.len() + 1;

/// Envoy rejects messages over 4 MiB by default; we accept large requests too.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Proves who a bearer token belongs to: a configured JWT issuer in file
/// mode, Kubernetes TokenReview in a cluster.
pub trait Authenticate: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<TokenIdentity, AuthError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("xDS server on {0}: {1}")]
    Serve(SocketAddr, tonic::transport::Error),
}

pub struct XdsContext {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Workload certificates; `None` when Rudder runs without a CA.
    pub secrets: Option<Arc<WorkloadSecrets>>,
    pub cache: ConfigCache,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    connections: AtomicU64,
    nonces: AtomicU64,
}

impl XdsContext {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        secrets: Option<Arc<WorkloadSecrets>>,
        metrics: Arc<Metrics>,
    ) -> Arc<XdsContext> {
        Arc::new(XdsContext {
            snapshots,
            secrets,
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
struct Ads {
    ctx: Arc<XdsContext>,
    /// Required on the TLS port; `None` on the plaintext one.
    auth: Option<Arc<dyn Authenticate>>,
}

impl tonic::server::NamedService for Ads {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

/// Istio's CSR service. tonic's router dispatches on the service name in the
/// path, so this is [`Ads`] again (same authentication, same [`route`])
/// registered under Istio's name.
#[derive(Clone)]
struct Certificates(Ads);

impl tonic::server::NamedService for Certificates {
    const NAME: &'static str = super::csr::SERVICE;
}

impl<B> Service<http::Request<B>> for Certificates
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Ads as Service<http::Request<B>>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.0.call(req)
    }
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
        let ctx = self.ctx.clone();
        let auth = self.auth.clone();
        Box::pin(async move {
            let caller = match authenticate(auth.as_deref(), req.headers()).await {
                Ok(caller) => caller,
                Err(status) => {
                    ctx.metrics.xds_auth_failures.inc();
                    tracing::warn!(
                        path = req.uri().path(),
                        "refusing xDS call: {}",
                        status.message()
                    );
                    return Ok(status.into_http());
                }
            };
            route(ctx, caller, req).await
        })
    }
}

/// Who the caller is: anonymous on the plaintext port; on the TLS port, the
/// service account its bearer token proves, or a refusal.
async fn authenticate(
    auth: Option<&dyn Authenticate>,
    headers: &http::HeaderMap,
) -> Result<Caller, Status> {
    let Some(auth) = auth else {
        return Ok(Caller::Anonymous);
    };
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Status::unauthenticated(
                "no service-account token: send `authorization: Bearer <token>` \
                 (Envoy: google_grpc with envoy.grpc_credentials.file_based_metadata)",
            )
        })?;
    auth.authenticate(token)
        .await
        .map(Caller::Authenticated)
        .map_err(|e| Status::unauthenticated(format!("service-account token refused: {e}")))
}

async fn route<B>(
    ctx: Arc<XdsContext>,
    caller: Caller,
    req: http::Request<B>,
) -> Result<http::Response<tonic::body::Body>, std::convert::Infallible>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    match req.uri().path() {
        SOTW_PATH => Ok(ads::<super::sotw::Sotw, B>(ctx, caller, req)),
        DELTA_PATH => Ok(ads::<super::delta::Delta, B>(ctx, caller, req)),
        super::csr::PATH => {
            let codec = tonic_prost::ProstCodec::<
                super::csr::IstioCertificateResponse,
                super::csr::IstioCertificateRequest,
            >::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_max_message_size_config(Some(super::csr::MAX_REQUEST_BYTES), None);
            Ok(grpc
                .unary(super::csr::CreateCertificate { ctx, caller }, req)
                .await)
        }
        _ => Ok(Status::unimplemented("unknown method").into_http()),
    }
}

/// An ADS call, answered through `body.rs` (bounded per-stream buffers).
fn ads<P, B>(
    ctx: Arc<XdsContext>,
    caller: Caller,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    P: super::stream::Protocol + 'static,
    P::Request: prost::Message + Default,
    P::Response: prost::Message + super::wire::Pieces + Unpin,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    super::body::streaming::<P, B>(ctx, caller, req, STREAM_QUEUE, MAX_MESSAGE_BYTES)
}

/// Serves plaintext ADS on an already-bound listener until `shutdown`
/// resolves. Nobody is authenticated, so no stream gets a private key, and
/// CreateCertificate refuses every call.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<XdsContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), XdsError> {
    let addr = local_addr(&listener);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let ads = Ads { ctx, auth: None };
    server()
        .add_service(Certificates(ads.clone()))
        .add_service(ads)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| XdsError::Serve(addr, e))
}

/// Serves ADS and Istio's CreateCertificate over TLS, every call
/// authenticated by its bearer token.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    ctx: Arc<XdsContext>,
    cert: Arc<ServingCert>,
    auth: Arc<dyn Authenticate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), XdsError> {
    let addr = local_addr(&listener);
    let incoming = super::tls::incoming(
        listener,
        super::tls::server_config(cert, super::tls::ALPN_GRPC),
    );
    let ads = Ads {
        ctx,
        auth: Some(auth),
    };
    server()
        .add_service(Certificates(ads.clone()))
        .add_service(ads)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| XdsError::Serve(addr, e))
}

fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
}

fn local_addr(listener: &tokio::net::TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
