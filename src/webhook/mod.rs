//! The admission webhooks, on Rudder's HTTPS port (15017): `POST /validate`
//! judges Istio objects with the same validators as the index, `POST /inject`
//! adds the sidecar to pods. Both take and return `admission.k8s.io/v1`
//! AdmissionReview JSON.
//!
//! The certificate is Rudder's serving certificate, issued by its own CA
//! (the xDS TLS port's, renewed in place), so the webhook configurations'
//! `caBundle` is Rudder's root.

pub mod inject;
pub mod template;
pub mod validate;

#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

pub use template::Template;

use crate::xds::ServingCert;

/// A review carries the object and, on updates, its old version; the API
/// server caps objects near 3 MiB, so this leaves room without being unbounded.
const MAX_REVIEW_BYTES: usize = 16 << 20;

/// `POST /validate` and `POST /inject`.
pub fn router(template: Arc<Template>) -> Router {
    Router::new()
        .route("/validate", post(validate_review))
        .route("/inject", post(inject_review))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(template)
}

async fn validate_review(body: Bytes) -> Response {
    match decode(&body) {
        Ok(review) => Json(wire(validate::review(review))).into_response(),
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

async fn inject_review(State(template): State<Arc<Template>>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(review) => Json(wire(inject::review(review, &template))).into_response(),
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

/// The review as the API server documents it: kube's type serializes the
/// patch as an array of byte values, the API's form is a base64 string.
pub fn wire(review: AdmissionReview<DynamicObject>) -> Value {
    let mut value = serde_json::to_value(review).expect("a review serializes");
    if let Some(patch) = value.pointer_mut("/response/patch") {
        let bytes: Vec<u8> = serde_json::from_value(patch.take()).unwrap_or_default();
        *patch = Value::String(STANDARD.encode(bytes));
    }
    value
}

/// A body that is not a review is the caller's error, answered as such
/// (the API server logs it and applies the webhook's failurePolicy).
fn decode(body: &[u8]) -> Result<AdmissionReview<DynamicObject>, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body is not an AdmissionReview: {e}\n"))
}

/// TLS with Rudder's serving certificate. The API server speaks HTTP/2 when
/// offered and HTTP/1.1 otherwise; both are served.
pub fn server_config(cert: Arc<ServingCert>) -> Arc<ServerConfig> {
    crate::xds::tls_server_config(cert, &[b"h2", b"http/1.1"])
}

/// Serves the webhooks over TLS on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    template: Arc<Template>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = TlsListener::new(listener, tls)?;
    axum::serve(listener, router(template))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Yields connections once their TLS handshake is done. Handshakes run
/// concurrently, so one slow client never holds up another.
struct TlsListener {
    local: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (handshaken, accepting) = crate::xds::tls_handshakes(listener, config, "webhook");
        Ok(TlsListener {
            local,
            handshaken,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
