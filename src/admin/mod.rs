//! The admin endpoint: health, readiness, Prometheus metrics and JSON debug
//! views of the config, the registry and every proxy's sync state.

mod debug;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::xds::{ServingCert, XdsContext};

#[derive(Clone)]
pub struct AdminState {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub xds: Arc<XdsContext>,
    pub metrics: Arc<Metrics>,
    /// The TLS xDS port's certificate, when that port is on.
    pub serving_cert: Option<Arc<ServingCert>>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/debug/syncz", get(debug::syncz))
        .route("/debug/registryz", get(debug::registryz))
        .route("/debug/endpointz", get(debug::endpointz))
        .route("/debug/configz", get(debug::configz))
        .route("/debug/config_dump", get(debug::config_dump))
        .route("/debug/certz", get(debug::certz))
        .with_state(state)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Ready once the initial load has been published: before that, a proxy
/// would be served an empty mesh.
async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    let snap = s.snapshots.borrow().clone();
    if snap.synced {
        (
            StatusCode::OK,
            format!("ready: snapshot version {}\n", snap.version),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: initial config load in progress\n".to_string(),
        )
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    refresh_cert_gauges(&s);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Certificate expiries change on issue and rotation, which happen in several
/// places; reading them when scraped keeps one source of truth.
fn refresh_cert_gauges(s: &AdminState) {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    if let Some(store) = &s.xds.secrets {
        s.metrics
            .ca_cert_expiry
            .set(unix(store.ca().signer_not_after()));
        s.metrics
            .workload_cert_expiry
            .set(store.earliest_expiry().map_or(0, unix));
    }
    if let Some(cert) = &s.serving_cert {
        s.metrics.serving_cert_expiry.set(unix(cert.not_after()));
    }
}

/// Keeps snapshot-derived gauges current.
pub async fn track_snapshots(mut snapshots: watch::Receiver<Arc<Snapshot>>, metrics: Arc<Metrics>) {
    loop {
        {
            let snap = snapshots.borrow_and_update().clone();
            metrics.snapshot_version.set(snap.version as i64);
            metrics
                .config_rejected
                .set(snap.status.rejected.len() as i64);
            metrics
                .config_accepted
                .set(snap.status.accepted.len() as i64);
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}
