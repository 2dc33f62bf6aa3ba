//! Workload certificates for connected proxies, issued on demand and rotated
//! before they expire.
//!
//! The store is the only owner of issued keys. A stream that proved an
//! identity holds a [`SecretLease`] on it; the certificate lives while some
//! lease does, so proxies of one service account share one key pair (as
//! Istio's agents do per pod, but without an agent) and a disconnected
//! identity's key is dropped. Rotation replaces the identity's secrets and
//! bumps a generation that every stream watches; each stream then sends its
//! new `default` secret, which Envoy applies to new handshakes without
//! closing open connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::resources::{to_map, ResourceMap};
use crate::ca::{Ca, CaError, Identity, WorkloadCert};
use crate::translate;

/// Istio's default workload certificate lifetime.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

struct Issued {
    cert: WorkloadCert,
    secrets: Arc<ResourceMap>,
    leases: usize,
}

/// What /debug/certz and /metrics show of one issued certificate: never the key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertStatus {
    pub identity: String,
    pub not_before: String,
    pub not_after: String,
    pub rotation_due: bool,
    pub proxies: usize,
}

pub struct WorkloadSecrets {
    ca: Arc<Ca>,
    ttl: Duration,
    issued: Mutex<HashMap<Identity, Issued>>,
    /// ROOTCA alone, for streams without a proven identity.
    root_only: Arc<ResourceMap>,
    generation: watch::Sender<u64>,
}

/// A stream's hold on its identity's certificate; released on drop.
pub struct SecretLease {
    store: Arc<WorkloadSecrets>,
    identity: Identity,
}

impl WorkloadSecrets {
    pub fn new(ca: Arc<Ca>, ttl: Duration) -> Arc<WorkloadSecrets> {
        let root_only = Arc::new(to_map(
            vec![translate::root_secret(&ca.trust_bundle())],
            |s| &s.name,
        ));
        Arc::new(WorkloadSecrets {
            ca,
            ttl,
            issued: Mutex::new(HashMap::new()),
            root_only,
            generation: watch::Sender::new(0),
        })
    }

    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes a lease on `identity`, issuing its certificate if no stream holds one.
    pub fn acquire(self: &Arc<Self>, identity: Identity) -> Result<SecretLease, CaError> {
        if let Some(issued) = self.issued.lock().get_mut(&identity) {
            issued.leases += 1;
            return Ok(self.lease(identity));
        }
        // Sign outside the lock: key generation is the slow part.
        let cert = self
            .ca
            .sign_workload(&identity, self.ttl, SystemTime::now())?;
        let mut issued = self.issued.lock();
        // Another stream may have issued meanwhile; keep the first.
        let entry = issued.entry(identity.clone()).or_insert_with(|| Issued {
            secrets: secrets_of(&cert),
            cert,
            leases: 0,
        });
        entry.leases += 1;
        tracing::info!(%identity, "issued workload certificate");
        Ok(self.lease(identity))
    }

    fn lease(self: &Arc<Self>, identity: Identity) -> SecretLease {
        SecretLease {
            store: Arc::clone(self),
            identity,
        }
    }

    /// The trust bundle alone.
    pub fn root_only(&self) -> Arc<ResourceMap> {
        Arc::clone(&self.root_only)
    }

    /// Changes whenever some identity's certificate was replaced.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Replaces every certificate due at `now`. Returns how many were replaced.
    /// A failure keeps the old certificate (still valid for a fifth of its
    /// life) and is retried on the next tick.
    pub fn rotate_due(&self, now: SystemTime) -> usize {
        let due: Vec<Identity> = self
            .issued
            .lock()
            .iter()
            .filter(|(_, i)| self.ca.rotation_due(&i.cert, now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut rotated = 0;
        for identity in due {
            match self.ca.sign_workload(&identity, self.ttl, now) {
                Ok(cert) => {
                    if let Some(issued) = self.issued.lock().get_mut(&identity) {
                        issued.secrets = secrets_of(&cert);
                        issued.cert = cert;
                        rotated += 1;
                        tracing::info!(%identity, "rotated workload certificate");
                    }
                }
                Err(e) => tracing::error!(%identity, "rotating workload certificate failed: {e}"),
            }
        }
        if rotated > 0 {
            self.generation.send_modify(|g| *g += 1);
        }
        rotated
    }

    /// Checks for due certificates until the store is dropped by everyone else.
    /// The period is a small fraction of the TTL, so a rotation lands close
    /// to 80 % of a certificate's life however short the TTL.
    pub async fn run_rotation(self: Arc<Self>) {
        let period = (self.ttl / 20).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.rotate_due(SystemTime::now());
        }
    }

    pub fn status(&self, now: SystemTime) -> Vec<CertStatus> {
        let mut all: Vec<CertStatus> = self
            .issued
            .lock()
            .iter()
            .map(|(id, i)| CertStatus {
                identity: id.spiffe_id(),
                not_before: humantime::format_rfc3339_seconds(i.cert.not_before).to_string(),
                not_after: humantime::format_rfc3339_seconds(i.cert.not_after).to_string(),
                rotation_due: self.ca.rotation_due(&i.cert, now),
                proxies: i.leases,
            })
            .collect();
        all.sort_by(|a, b| a.identity.cmp(&b.identity));
        all
    }

    /// The earliest expiry among issued workload certificates, for /metrics.
    pub fn earliest_expiry(&self) -> Option<SystemTime> {
        self.issued.lock().values().map(|i| i.cert.not_after).min()
    }
}

impl SecretLease {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The identity's current secrets (`default` and `ROOTCA`).
    pub fn secrets(&self) -> Arc<ResourceMap> {
        self.store
            .issued
            .lock()
            .get(&self.identity)
            .map(|i| Arc::clone(&i.secrets))
            .expect("a leased identity stays issued")
    }
}

impl Drop for SecretLease {
    fn drop(&mut self) {
        let mut issued = self.store.issued.lock();
        if let Some(entry) = issued.get_mut(&self.identity) {
            entry.leases -= 1;
            if entry.leases == 0 {
                // Nobody holds it: forget the key rather than keep rotating it.
                issued.remove(&self.identity);
            }
        }
    }
}

fn secrets_of(cert: &WorkloadCert) -> Arc<ResourceMap> {
    Arc::new(to_map(translate::secrets(cert), |s| &s.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
    use prost::Message;

    fn store(ttl: Duration) -> (tempfile::TempDir, Arc<WorkloadSecrets>) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path(), "cluster.local").unwrap();
        (dir, WorkloadSecrets::new(Arc::new(ca), ttl))
    }

    fn id(sa: &str) -> Identity {
        Identity::new("cluster.local", "shop", sa).unwrap()
    }

    fn chain_of(map: &ResourceMap) -> Vec<u8> {
        let secret = Secret::decode(map["default"].body().value.as_slice()).unwrap();
        match secret.r#type {
            Some(secret::Type::TlsCertificate(t)) => match t.certificate_chain.unwrap().specifier {
                Some(
                    envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(
                        b,
                    ),
                ) => b,
                other => panic!("chain not inline: {other:?}"),
            },
            other => panic!("default is not a certificate: {other:?}"),
        }
    }

    #[test]
    fn leases_share_one_certificate_and_drop_it_when_released() {
        let (_dir, store) = store(DEFAULT_WORKLOAD_TTL);
        let a = store.acquire(id("web")).unwrap();
        let b = store.acquire(id("web")).unwrap();
        assert!(Arc::ptr_eq(&a.secrets(), &b.secrets()));
        let other = store.acquire(id("db")).unwrap();
        assert_ne!(chain_of(&a.secrets()), chain_of(&other.secrets()));
        assert_eq!(store.status(SystemTime::now()).len(), 2);
        drop(a);
        assert_eq!(store.status(SystemTime::now())[1].proxies, 1);
        drop(b);
        let left: Vec<String> = store
            .status(SystemTime::now())
            .into_iter()
            .map(|s| s.identity)
            .collect();
        assert_eq!(left, ["spiffe://cluster.local/ns/shop/sa/db"]);
    }

    #[test]
    fn rotation_replaces_due_certificates_and_bumps_the_generation() {
        let (_dir, store) = store(Duration::from_secs(60));
        let lease = store.acquire(id("web")).unwrap();
        let before = lease.secrets();
        let generation = store.generation();
        let now = SystemTime::now();
        assert_eq!(store.rotate_due(now + Duration::from_secs(10)), 0);
        assert!(!generation.has_changed().unwrap());
        assert_eq!(store.rotate_due(now + Duration::from_secs(55)), 1);
        assert!(generation.has_changed().unwrap());
        let after = lease.secrets();
        assert_ne!(chain_of(&before), chain_of(&after));
        assert_eq!(before["ROOTCA"].version, after["ROOTCA"].version);
    }

    #[test]
    fn root_only_has_no_key() {
        let (_dir, store) = store(DEFAULT_WORKLOAD_TTL);
        let names: Vec<&str> = store.root_only.keys().map(|n| &**n).collect();
        assert_eq!(names, ["ROOTCA"]);
    }
}
