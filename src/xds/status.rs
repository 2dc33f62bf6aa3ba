//! Per-proxy, per-type sync state: what was sent, what was ACKed, and why a
//! response was refused. Read by /debug/syncz, /debug/config_dump and tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;

use super::resources::{ResourceMap, TypeUrl};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Nack {
    pub version: String,
    pub nonce: String,
    pub code: i32,
    pub message: String,
    #[serde(with = "humantime_serde_compat")]
    pub at: SystemTime,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TypeStatus {
    pub sent_version: String,
    pub sent_nonce: String,
    pub acked_version: String,
    pub acked_nonce: String,
    /// Resources the proxy holds (or was last sent) of this type.
    pub resource_count: usize,
    pub nack_count: u64,
    pub last_nack: Option<Nack>,
    /// What the stream holds, shared with it (weak: the stream owns it, and
    /// a copy per proxy per push would cost more than the config itself).
    #[serde(skip)]
    pub resources: std::sync::Weak<ResourceMap>,
    /// Snapshot creation time of the response awaiting an ACK, for convergence.
    #[serde(skip)]
    pub pending: Option<(String, Instant)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncStatus {
    pub proxy: String,
    pub connection: u64,
    pub protocol: &'static str,
    pub snapshot_version: u64,
    pub types: BTreeMap<TypeUrl, TypeStatus>,
}

/// Every connected proxy's status. Streams write their own entry only.
#[derive(Default)]
pub struct Registry {
    proxies: Mutex<BTreeMap<u64, Arc<Mutex<SyncStatus>>>>,
}

impl Registry {
    pub fn register(&self, status: SyncStatus) -> Arc<Mutex<SyncStatus>> {
        let conn = status.connection;
        let entry = Arc::new(Mutex::new(status));
        self.proxies.lock().insert(conn, entry.clone());
        entry
    }

    pub fn unregister(&self, connection: u64) {
        self.proxies.lock().remove(&connection);
    }

    /// A copy of every stream's status, for debug output.
    pub fn all(&self) -> Vec<SyncStatus> {
        let entries: Vec<_> = self.proxies.lock().values().cloned().collect();
        entries.iter().map(|e| e.lock().clone()).collect()
    }

    /// The streams of one proxy id (a reconnecting proxy may briefly have two).
    pub fn find(&self, proxy: &str) -> Vec<SyncStatus> {
        self.all()
            .into_iter()
            .filter(|s| s.proxy == proxy)
            .collect()
    }
}

/// RFC 3339 timestamps without another dependency.
mod humantime_serde_compat {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
    }
}
