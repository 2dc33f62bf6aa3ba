//! The TLS side of the authenticated xDS port: Rudder's serving certificate,
//! issued by its own CA and renewed in place, and a TLS accept loop that
//! hands finished handshakes to the gRPC server.
//!
//! Proxies trust Rudder's root from a mounted file, so the serving
//! certificate needs no outside CA. It is renewed at 80 % of its life the
//! first time a handshake finds it due: no timer, no restart, and open
//! streams keep the certificate they were established with.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::crypto::ring::sign::any_supported_type;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::ca::{Ca, CaError, WorkloadCert};

/// A client that has not finished its handshake by then is dropped, so a
/// stalled peer cannot hold a slot forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("issuing the xDS serving certificate: {0}")]
    Issue(#[from] CaError),
    #[error("loading the xDS serving certificate: {0}")]
    Load(String),
}

/// Rudder's own serving certificate, renewed when due.
#[derive(Debug)]
pub struct ServingCert {
    ca: Arc<Ca>,
    names: Vec<String>,
    ttl: Duration,
    current: RwLock<(WorkloadCert, Arc<CertifiedKey>)>,
}

impl ServingCert {
    pub fn new(ca: Arc<Ca>, names: Vec<String>, ttl: Duration) -> Result<ServingCert, TlsError> {
        let current = issue(&ca, &names, ttl)?;
        tracing::info!(?names, not_after = %humantime::format_rfc3339_seconds(current.0.not_after), "issued the xDS serving certificate");
        Ok(ServingCert {
            ca,
            names,
            ttl,
            current: RwLock::new(current),
        })
    }

    pub fn not_after(&self) -> SystemTime {
        self.current.read().0.not_after
    }

    fn renew_if_due(&self) {
        if !self
            .ca
            .rotation_due(&self.current.read().0, SystemTime::now())
        {
            return;
        }
        match issue(&self.ca, &self.names, self.ttl) {
            Ok(fresh) => {
                tracing::info!("renewed the xDS serving certificate");
                *self.current.write() = fresh;
            }
            // The old certificate still has a fifth of its life: keep it.
            Err(e) => tracing::error!("renewing the xDS serving certificate failed: {e}"),
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.renew_if_due();
        Some(Arc::clone(&self.current.read().1))
    }
}

fn issue(
    ca: &Ca,
    names: &[String],
    ttl: Duration,
) -> Result<(WorkloadCert, Arc<CertifiedKey>), TlsError> {
    let cert = ca.serving_cert(names, ttl, SystemTime::now())?;
    let key = certified_key(&cert)?;
    Ok((cert, Arc::new(key)))
}

fn certified_key(cert: &WorkloadCert) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Load(format!("certificate chain: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| TlsError::Load(format!("private key: {e}")))?;
    let signer = any_supported_type(&key).map_err(|e| TlsError::Load(e.to_string()))?;
    Ok(CertifiedKey::new(chain, signer))
}

/// ALPN of the xDS port: gRPC needs HTTP/2 and nothing else.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];

/// TLS 1.2+ with Rudder's serving certificate, offering `alpn`. Every TLS
/// port (xDS, webhooks) is built here.
pub fn server_config(cert: Arc<ServingCert>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Accepts TCP connections and yields them once their TLS handshake is done.
/// Handshakes run concurrently, so one slow client never delays another;
/// failed ones are logged and dropped (an error item would stop the server).
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl tokio_stream::Stream<Item = Result<TlsStream<TcpStream>, io::Error>> {
    use tokio_stream::StreamExt;
    let (handshaken, _accepting) = handshakes(listener, config, "xDS");
    ReceiverStream::new(handshaken).map(|(tls, _peer)| Ok(tls))
}

/// The accept loop behind every TLS port (xDS, webhooks): each accepted
/// connection is handed over with its peer address once its handshake
/// finished within [`HANDSHAKE_TIMEOUT`]. The loop ends when the receiver is
/// dropped (noticed at the next accept) or the returned task is aborted.
pub fn handshakes(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    port: &'static str,
) -> (
    mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let accepting = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: back off, don't spin.
                    tracing::warn!("{port} TLS accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, handshaken) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = handshaken.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, "{port} TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "{port} TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    (rx, accepting)
}
