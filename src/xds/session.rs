//! What SotW and Delta streams share: who the proxy is, the snapshot it is on,
//! its resources, and its entry in the status registry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use parking_lot::Mutex;
use tonic::Status;

use super::cache::ProxyResources;
use super::resources::{Resource, ResourceMap, TypeUrl};
use super::secrets::SecretLease;
use super::server::XdsContext;
use super::status::{Nack, SyncStatus};
use crate::auth::TokenIdentity;
use crate::ca::Identity;
use crate::metrics::{StreamLabel, TypeLabel};
use crate::model::{Proxy, Snapshot};
use crate::translate::ProxyShape;

/// Who opened a stream, as far as the transport proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The plaintext port: nobody is proven, so no private key is ever sent.
    Anonymous,
    /// A verified service-account token (the TLS port).
    Authenticated(TokenIdentity),
}

pub struct Session {
    pub ctx: Arc<XdsContext>,
    pub proxy: Proxy,
    /// The proven identity's certificate, held while the stream lives.
    lease: Option<SecretLease>,
    /// What SDS serves this stream: the identity's secrets, or ROOTCA alone.
    secrets: Option<Arc<ResourceMap>>,
    pub protocol: &'static str,
    pub connection: u64,
    status: Arc<Mutex<SyncStatus>>,
    pub snapshot: Arc<Snapshot>,
    /// `None` until the mesh has finished its initial load: serving an empty
    /// config to a proxy that already has one would wipe it.
    pub resources: Option<Arc<ProxyResources>>,
    shape: Option<ProxyShape>,
}

impl Session {
    pub fn start(
        ctx: Arc<XdsContext>,
        node: Option<&Node>,
        protocol: &'static str,
        caller: &Caller,
    ) -> Result<Session, Status> {
        let mut proxy = super::node::proxy_from_node(node)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let lease = match caller {
            Caller::Anonymous => None,
            Caller::Authenticated(token) => Some(lease_for(&ctx, &proxy, token)?),
        }
        .flatten();
        // Only a proxy holding a certificate may be given TLS config that names it.
        proxy.mtls = lease.is_some();
        let secrets = match (&lease, &ctx.secrets) {
            (Some(lease), _) => Some(lease.secrets()),
            (None, Some(store)) => Some(store.root_only()),
            (None, None) => None,
        };
        let connection = ctx.next_connection();
        let status = ctx.registry.register(SyncStatus {
            proxy: proxy.id.clone(),
            connection,
            protocol,
            snapshot_version: 0,
            types: BTreeMap::new(),
        });
        ctx.metrics
            .connected_proxies
            .get_or_create(&StreamLabel { protocol })
            .inc();
        tracing::info!(proxy = %proxy, connection, protocol, "proxy connected");
        Ok(Session {
            snapshot: Arc::new(Snapshot::empty()),
            ctx,
            proxy,
            lease,
            secrets,
            protocol,
            connection,
            status,
            resources: None,
            shape: None,
        })
    }

    /// Moves to the latest snapshot. True when the proxy's resources may have changed.
    pub async fn refresh(&mut self) -> bool {
        let latest = self.ctx.snapshots.borrow().clone();
        if !latest.synced || (self.resources.is_some() && latest.version == self.snapshot.version) {
            return false;
        }
        // Computing a shape reads every service; endpoint changes rarely alter it.
        let reuse = latest.version == self.snapshot.version + 1
            && self
                .shape
                .as_ref()
                .is_some_and(|s| s.still_valid(&latest, &self.proxy));
        let shape = match self.shape.take() {
            Some(shape) if reuse => shape,
            _ => ProxyShape::of(&latest, &self.proxy),
        };
        let resources = self.ctx.cache.get(&latest, &shape).await;
        self.shape = Some(shape);
        self.snapshot = latest;
        self.status.lock().snapshot_version = self.snapshot.version;
        self.resources = Some(resources);
        true
    }

    /// Picks up a rotated certificate. True when the secrets changed.
    pub fn refresh_secrets(&mut self) -> bool {
        let Some(lease) = &self.lease else {
            return false;
        };
        let current = lease.secrets();
        if self
            .secrets
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &current))
        {
            return false;
        }
        self.secrets = Some(current);
        true
    }

    /// What this stream serves of type `t`, once the mesh is loaded.
    pub fn resources_of(&self, t: TypeUrl) -> Option<&Arc<ResourceMap>> {
        match t {
            TypeUrl::Secret => self.secrets.as_ref(),
            _ => self.resources.as_ref()?.of(t),
        }
    }

    /// `pushed`: caused by snapshot changes, the oldest it carries created
    /// then, so it counts toward push latency and convergence from then.
    /// Answers to requests (a proxy connecting late, a grown subscription)
    /// say nothing about how fast changes propagate.
    pub fn record_sent(
        &self,
        t: TypeUrl,
        version: &str,
        nonce: &str,
        sent: &[Arc<Resource>],
        holds: &Arc<ResourceMap>,
        pushed: Option<Instant>,
    ) {
        let label = TypeLabel { r#type: t.short() };
        let bytes: usize = sent.iter().map(|r| r.value_len).sum();
        self.ctx.metrics.pushes.get_or_create(&label).inc();
        self.ctx
            .metrics
            .push_bytes
            .get_or_create(&label)
            .inc_by(bytes as u64);
        // A rotated secret is not a config change: it says nothing of how
        // fast changes propagate.
        if let Some(created) = pushed.filter(|_| t != TypeUrl::Secret) {
            self.ctx
                .metrics
                .push_latency
                .get_or_create(&label)
                .observe(created.elapsed().as_secs_f64());
        }
        let mut status = self.status.lock();
        let entry = status.types.entry(t).or_default();
        entry.sent_version = version.to_string();
        entry.sent_nonce = nonce.to_string();
        entry.resource_count = holds.len();
        entry.resources = Arc::downgrade(holds);
        // Converged when this response is ACKed; measured from the oldest
        // change not yet ACKed, so a superseded push still counts.
        let oldest = entry.pending.as_ref().map(|(_, c)| *c);
        entry.pending = oldest.or(pushed).map(|c| (nonce.to_string(), c));
        tracing::debug!(proxy = %self.proxy, r#type = t.short(), version, nonce, resources = sent.len(), bytes, "sent");
    }

    pub fn record_ack(&self, t: TypeUrl, version: &str, nonce: &str) {
        let mut status = self.status.lock();
        let entry = status.types.entry(t).or_default();
        entry.acked_version = version.to_string();
        entry.acked_nonce = nonce.to_string();
        if let Some((pending_nonce, created)) = entry.pending.take() {
            if pending_nonce == nonce {
                let label = TypeLabel { r#type: t.short() };
                self.ctx
                    .metrics
                    .convergence
                    .get_or_create(&label)
                    .observe(created.elapsed().as_secs_f64());
            } else {
                entry.pending = Some((pending_nonce, created));
            }
        }
    }

    /// The proxy refused a response. It keeps running its last accepted config;
    /// we record why and do not resend the same content.
    pub fn record_nack(&self, t: TypeUrl, version: &str, nonce: &str, code: i32, message: &str) {
        tracing::warn!(proxy = %self.proxy, r#type = t.short(), nonce, "proxy rejected config: {message}");
        self.ctx
            .metrics
            .nacks
            .get_or_create(&TypeLabel { r#type: t.short() })
            .inc();
        let mut status = self.status.lock();
        let entry = status.types.entry(t).or_default();
        entry.pending = None;
        entry.nack_count += 1;
        entry.last_nack = Some(Nack {
            version: version.to_string(),
            nonce: nonce.to_string(),
            code,
            message: message.to_string(),
            at: SystemTime::now(),
        });
    }

    pub fn next_nonce(&self) -> String {
        self.ctx.next_nonce()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ctx.registry.unregister(self.connection);
        self.ctx
            .metrics
            .connected_proxies
            .get_or_create(&StreamLabel {
                protocol: self.protocol,
            })
            .dec();
        tracing::info!(proxy = %self.proxy, connection = self.connection, "proxy disconnected");
    }
}

/// Checks that the node claims the identity its token proves, and leases that
/// identity's certificate. Without a CA there is nothing to lease.
fn lease_for(
    ctx: &XdsContext,
    proxy: &Proxy,
    token: &TokenIdentity,
) -> Result<Option<SecretLease>, Status> {
    if proxy.namespace != token.namespace || proxy.service_account != token.service_account {
        return Err(Status::permission_denied(format!(
            "node {} claims namespace {:?} and service account {:?}, but its token is for \
             namespace {:?} and service account {:?}",
            proxy.id,
            proxy.namespace,
            proxy.service_account,
            token.namespace,
            token.service_account
        )));
    }
    let Some(store) = &ctx.secrets else {
        return Ok(None);
    };
    let identity = Identity::new(
        store.ca().trust_domain(),
        &token.namespace,
        &token.service_account,
    )
    .and_then(|id| store.acquire(id))
    .map_err(|e| Status::internal(format!("issuing a certificate for node {}: {e}", proxy.id)))?;
    Ok(Some(identity))
}
