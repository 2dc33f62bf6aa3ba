//! `--kube`: the cluster's objects, from one kube-rs watcher per kind.
//!
//! Each object is its own unit (`kube:Kind/namespace/name`): an add or update
//! is a `Replace` with that one object, a deletion a `Replace` with none, so
//! the index treats a watched object exactly like a one-document file.
//! `Synced` is sent once every kind has completed its first list; until then
//! the index is not ready. Watch failures are logged with their kind and
//! retried with backoff, never fatal: a kind that cannot be listed (its CRD
//! not installed, RBAC missing) keeps Rudder not ready and says why.
//!
//! Mesh config: read at start-up ([`KubeSource::mesh_config`]), then
//! followed: valid edits reach the index as `SourceEvent::Mesh` (see mesh.rs).
//!
//! Secrets: with `--ca-secret` the CA is read from (or created as) one
//! Secret at start-up ([`load_or_create_ca`]); no other Secret is read.
//!
//! Writes: every replica reads and serves; the writes made for the whole
//! cluster (root-certificate ConfigMaps, webhook caBundles, status of
//! refused objects) run only on the replica holding the leader Lease
//! ([`Leadership`]).

mod ca_secret;
mod convert;
mod kinds;
mod leader;
mod mesh;
mod relist;
mod root_cert;
mod status;
mod watch;
mod webhook_ca;

use futures::stream::{self, BoxStream, StreamExt};
use kube::core::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use tokio::sync::mpsc;

pub use ca_secret::{load_or_create_ca, CaSecret};
pub use kinds::{all as watched_kinds, WatchedKind};
pub use leader::{identity as leader_identity, Leadership, LeaseConfig};
pub use mesh::MeshConfigMap;
pub use root_cert::{publish_root_cert, ROOT_CERT_CONFIG_MAP, ROOT_CERT_KEY};
pub use status::report_invalid_objects;
pub use webhook_ca::{patch_webhook_ca_bundles, WebhookConfigNames};

use super::SourceEvent;
use crate::model::MeshConfig;
use relist::KindState;

/// The field manager of every object Rudder writes by server-side apply or
/// patch, so `managedFields` name Rudder the same way everywhere.
const FIELD_MANAGER: &str = "rudder";

#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("reading the mesh config from ConfigMap {0}: {1}")]
    ReadMeshConfig(MeshConfigMap, Box<kube::Error>),
    #[error("mesh config in ConfigMap {0}: {1}")]
    MeshConfig(MeshConfigMap, crate::api::FieldError),
}

/// What the Kubernetes source reads besides the watched kinds.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// Istio's mesh ConfigMap, read by [`KubeSource::mesh_config`].
    pub mesh_config_map: MeshConfigMap,
    /// Whether [`KubeSource::run`] also follows the ConfigMap's edits.
    pub follow_mesh_config: bool,
}

/// Watches a cluster through any client: in-cluster, a kubeconfig, or a test's
/// API server.
pub struct KubeSource {
    client: kube::Client,
    events: mpsc::Sender<SourceEvent>,
    options: KubeOptions,
}

type KindEvents = BoxStream<'static, (usize, Result<Event<DynamicObject>, watcher::Error>)>;

impl KubeSource {
    pub fn new(
        client: kube::Client,
        events: mpsc::Sender<SourceEvent>,
        options: KubeOptions,
    ) -> Self {
        KubeSource {
            client,
            events,
            options,
        }
    }

    /// The client, for the other cluster work Rudder does (TokenReview, the
    /// root certificate ConfigMaps).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The mesh config from the cluster's ConfigMap; Istio's defaults when it
    /// does not exist. An unreadable or invalid one is an error.
    pub async fn mesh_config(&self) -> Result<MeshConfig, KubeSourceError> {
        mesh::read(self.client.clone(), &self.options.mesh_config_map).await
    }

    /// Watches every kind until the index goes away.
    pub async fn run(self) {
        // Aborted when the watches end: dropping the handle would not stop it.
        struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                if let Some(task) = &self.0 {
                    task.abort();
                }
            }
        }
        let _mesh = AbortOnDrop(self.options.follow_mesh_config.then(|| {
            tokio::spawn(mesh::follow(
                self.client.clone(),
                self.options.mesh_config_map.clone(),
                self.events.clone(),
            ))
        }));
        let mut states: Vec<KindState> = kinds::all().into_iter().map(KindState::new).collect();
        let streams: Vec<KindEvents> = states
            .iter()
            .enumerate()
            .map(|(i, state)| self.watch(i, state.kind()))
            .collect();
        let mut events = stream::select_all(streams);
        let mut synced = false;
        while let Some((i, result)) = events.next().await {
            let state = &mut states[i];
            let event = match result {
                Ok(event) => event,
                Err(e) => {
                    log_watch_error(state.kind(), &e);
                    continue;
                }
            };
            if matches!(event, Event::InitDone) {
                tracing::debug!(kind = state.kind().kind.name(), "listed");
            }
            for out in state.handle(event) {
                if self.events.send(out).await.is_err() {
                    return;
                }
            }
            if !synced && states.iter().all(KindState::listed) {
                synced = true;
                tracing::info!("every watched kind is listed");
                if self.events.send(SourceEvent::Synced).await.is_err() {
                    return;
                }
            }
        }
    }

    fn watch(&self, index: usize, kind: &WatchedKind) -> KindEvents {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind.resource);
        watch::watch(api, watcher::Config::default())
            .map(move |result| (index, result))
            .boxed()
    }
}

fn log_watch_error(kind: &WatchedKind, error: &watcher::Error) {
    let kind_name = kind.kind.name();
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.as_ref()),
        watcher::Error::WatchError(s) => Some(s.as_ref()),
        _ => None,
    };
    match status {
        // The resource version expired: the watcher relists at once (no
        // backoff, see watch.rs), losing nothing.
        Some(s) if s.code == 410 => tracing::info!(kind = kind_name, "watch expired; relisting"),
        Some(s) if s.code == 404 => tracing::error!(
            kind = kind_name,
            api = %kind.resource.api_version,
            "cannot list {kind_name}: the API server does not serve it (is its CRD installed?); retrying"
        ),
        Some(s) if s.code == 403 => tracing::error!(
            kind = kind_name,
            "cannot list or watch {kind_name}: {} (Rudder needs get, list and watch on it); retrying",
            s.message
        ),
        _ => tracing::warn!(kind = kind_name, "watch failed; retrying: {error}"),
    }
}
