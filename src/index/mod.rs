//! The index: the single writer of mesh state. It folds source events into the
//! model, keeps the last good version of anything refused, and after a short
//! debounce publishes an immutable [`Snapshot`] on a `watch` channel.
//!
//! Two debounce policies. Configuration changes wait until no event came for
//! one debounce period (at most `MAX_DEBOUNCE_PERIODS`), as Istio does
//! (PILOT_DEBOUNCE_AFTER, 100 ms): the objects of one `kubectl apply` are
//! published together, and each such push costs every proxy CDS/LDS/RDS.
//! Changes to endpoints alone are published as soon as one debounce period
//! has passed since the last publish, at once after a quiet spell: an EDS
//! push carries only the changed load assignments, and a proxy still busy
//! with one is sent the latest state once (`xds`), so publishing early costs
//! little, while waiting for quiet cost every endpoint change 100 ms (and up
//! to 300 ms under churn). Istio can skip its debounce for EDS too
//! (PILOT_ENABLE_EDS_DEBOUNCE=false).

mod conflicts;
mod convert;
mod convert_entry;
mod convert_policy;
mod convert_routing;
mod convert_security;
mod convert_sidecar;
mod locality;
mod store;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant as TokioInstant;

use crate::model::{MeshConfig, Snapshot};
use crate::source::SourceEvent;
use store::Store;

/// Bursts of configuration edits longer than this many debounce periods
/// publish anyway, so a steady stream of edits cannot starve proxies of
/// updates.
const MAX_DEBOUNCE_PERIODS: u32 = 3;

pub struct Index {
    store: Store,
    /// How many sources must report `Synced` before the snapshot is ready.
    sources: usize,
    synced: usize,
    debounce: Duration,
    version: u64,
    mesh: Arc<MeshConfig>,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Index {
    pub fn new(sources: usize, debounce: Duration) -> (Index, watch::Receiver<Arc<Snapshot>>) {
        Self::with_mesh(sources, debounce, MeshConfig::default())
    }

    pub fn with_mesh(
        sources: usize,
        debounce: Duration,
        mesh: MeshConfig,
    ) -> (Index, watch::Receiver<Arc<Snapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::empty()));
        let index = Index {
            store: Store::default(),
            sources,
            synced: 0,
            debounce,
            version: 0,
            mesh: Arc::new(mesh),
            tx,
        };
        (index, rx)
    }

    /// Runs until every source has gone away.
    pub async fn run(mut self, mut events: mpsc::Receiver<SourceEvent>) {
        let mut published: Option<TokioInstant> = None;
        while let Some(event) = events.recv().await {
            self.apply(event);
            let start = TokioInstant::now();
            let burst_end = start + self.debounce * MAX_DEBOUNCE_PERIODS;
            let mut quiet_at = start + self.debounce;
            loop {
                // What already arrived belongs to this snapshot.
                while let Ok(e) = events.try_recv() {
                    self.apply(e);
                    quiet_at = TokioInstant::now() + self.debounce;
                }
                let deadline = match published {
                    Some(at) if self.endpoints_only() => at + self.debounce,
                    None if self.endpoints_only() => start,
                    _ => quiet_at.min(burst_end),
                };
                if TokioInstant::now() >= deadline {
                    break;
                }
                tokio::select! {
                    next = events.recv() => match next {
                        Some(e) => {
                            self.apply(e);
                            quiet_at = TokioInstant::now() + self.debounce;
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.publish();
            published = Some(TokioInstant::now());
        }
    }

    /// Only endpoints changed since the last snapshot, and proxies are being
    /// served (before the initial load is complete nothing is pushed anyway).
    fn endpoints_only(&self) -> bool {
        self.store.pending.endpoints_only() && self.synced() && self.tx.borrow().synced
    }

    fn apply(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Replace { unit, items } => self.store.replace(&unit, items),
            SourceEvent::Synced => self.synced += 1,
            SourceEvent::Mesh(mesh) => self.set_mesh(mesh),
        }
    }

    /// A live mesh config change: everything is recomputed for every proxy.
    /// The trust domain stays what it was at start-up: the CA issues for
    /// it, and certificates and peers' SAN checks would part ways.
    fn set_mesh(&mut self, mut mesh: MeshConfig) {
        if mesh.trust_domain != self.mesh.trust_domain {
            tracing::error!(
                running = %self.mesh.trust_domain,
                configured = %mesh.trust_domain,
                "mesh config: trustDomain changes take effect on restart only; keeping the running one"
            );
            mesh.trust_domain = self.mesh.trust_domain.clone();
        }
        if mesh == *self.mesh {
            return;
        }
        tracing::info!(
            ?mesh,
            "mesh config changed; recomputing every proxy's config"
        );
        self.mesh = Arc::new(mesh);
        self.store.pending.routing = true;
        self.store.pending.workloads = true;
    }

    fn synced(&self) -> bool {
        self.synced >= self.sources
    }

    /// Publishes when something changed, or when readiness flips, never otherwise:
    /// an idle mesh pushes nothing.
    fn publish(&mut self) {
        let previous = self.tx.borrow().clone();
        self.store.refresh_localities();
        self.store.refresh_failover_known(&self.mesh);
        self.store.refresh_by_host();
        let changes = std::mem::take(&mut self.store.pending);
        let status = Arc::new(self.store.status());
        let became_ready = self.synced() && !previous.synced;
        for w in status
            .warnings
            .iter()
            .filter(|w| !previous.status.warnings.contains(w))
        {
            tracing::warn!("{w}");
        }
        if changes.is_empty() && !became_ready {
            if status_differs(&previous.status, &status) {
                // Only the report changed (e.g. a new rejection): update it in place
                // without a version bump, so no proxy is pushed.
                let mut snap = (*previous).clone();
                snap.status = status;
                self.tx.send_replace(Arc::new(snap));
            }
            return;
        }
        self.version += 1;
        let snapshot = Snapshot {
            version: self.version,
            created: Instant::now(),
            synced: self.synced(),
            services: self.store.services.clone(),
            endpoints: self.store.endpoints.clone(),
            workloads: self.store.workloads.clone(),
            namespaces: self.store.namespaces.clone(),
            virtual_services: self.store.virtual_services.clone(),
            destination_rules: self.store.destination_rules.clone(),
            by_host: self.store.by_host.clone(),
            sidecars: self.store.sidecars.clone(),
            peer_authentications: self.store.peer_authentications.clone(),
            authorization_policies: self.store.authorization_policies.clone(),
            request_authentications: self.store.request_authentications.clone(),
            mesh: self.mesh.clone(),
            localities: self.store.localities.clone(),
            failover_known: self.store.failover_known.clone(),
            changes,
            status,
        };
        tracing::debug!(version = snapshot.version, changes = ?snapshot.changes, "publishing snapshot");
        self.tx.send_replace(Arc::new(snapshot));
    }
}

/// Builds a snapshot from file contents without a task or a debounce: the
/// same store and validators as `rudder serve`, for offline commands and tests.
pub fn snapshot_of(units: Vec<(String, Vec<crate::source::Item>)>, mesh: MeshConfig) -> Snapshot {
    let mut store = Store::default();
    for (unit, items) in units {
        store.replace(&unit, items);
    }
    store.refresh_localities();
    store.refresh_failover_known(&mesh);
    store.refresh_by_host();
    let changes = std::mem::take(&mut store.pending);
    Snapshot {
        version: 1,
        created: Instant::now(),
        synced: true,
        services: store.services.clone(),
        endpoints: store.endpoints.clone(),
        workloads: store.workloads.clone(),
        namespaces: store.namespaces.clone(),
        virtual_services: store.virtual_services.clone(),
        destination_rules: store.destination_rules.clone(),
        by_host: store.by_host.clone(),
        sidecars: store.sidecars.clone(),
        peer_authentications: store.peer_authentications.clone(),
        authorization_policies: store.authorization_policies.clone(),
        request_authentications: store.request_authentications.clone(),
        mesh: Arc::new(mesh),
        localities: store.localities.clone(),
        failover_known: store.failover_known.clone(),
        changes,
        status: Arc::new(store.status()),
    }
}

fn status_differs(a: &crate::model::ConfigStatus, b: &crate::model::ConfigStatus) -> bool {
    a.rejected != b.rejected
        || a.accepted != b.accepted
        || a.ignored != b.ignored
        || a.warnings != b.warnings
}
