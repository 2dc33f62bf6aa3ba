//! Leader election on a Lease, for the writes one replica should make for the
//! whole cluster: the root-certificate ConfigMaps, the webhooks' caBundle and
//! the status of invalid Istio objects. Every replica serves xDS and the
//! webhooks whether it leads or not; only these writers wait for the lease.
//!
//! The Lease is held through `kube-lease-manager` (server-side apply, so two
//! replicas can never both take a free lease). Its renewal loop keeps
//! retrying when the API server is unreachable and does not report a lost
//! lease until it can read it again, so a leader cut off from the API server
//! may briefly overlap with the one that replaces it. That is safe here:
//! every writer is idempotent and writes content every replica computes
//! alike (one CA, one config), and status writes carry a resourceVersion.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the lease lives and how long a holder keeps it without renewing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// A holder renews a third of this before it runs out; a replica takes
    /// over at most this long after its leader stopped renewing.
    pub duration: Duration,
}

/// Whether this replica holds the lease, as it changes. Without leader
/// election (`always`), it always does.
#[derive(Debug, Clone)]
pub struct Leadership {
    held: watch::Receiver<bool>,
    /// `always`'s sender, kept so the channel never reads as closed.
    _fixed: Option<Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// A replica that never competes: `--leader-election=false`.
    pub fn always() -> Leadership {
        let (tx, held) = watch::channel(true);
        Leadership {
            held,
            _fixed: Some(Arc::new(tx)),
        }
    }

    /// Competes for the lease in the background. Failures to reach or
    /// create the Lease are logged and retried; until it is held, this
    /// replica is not the leader. When every `Leadership` is dropped the
    /// lease is released, so a successor need not wait for it to expire:
    /// await the returned task at shutdown.
    pub fn elect(
        client: kube::Client,
        config: LeaseConfig,
        identity: String,
    ) -> (Leadership, JoinHandle<()>) {
        let (tx, held) = watch::channel(false);
        let election = tokio::spawn(compete(client, config, identity, tx));
        (Leadership { held, _fixed: None }, election)
    }

    pub fn is_leader(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits for the next change; `false` once the election has ended.
    pub async fn changed(&mut self) -> bool {
        self.held.changed().await.is_ok()
    }

    /// Runs `task` while this replica leads: started on winning the lease,
    /// aborted on losing it, started afresh on winning it again. Each task
    /// must therefore bring the cluster up to date from scratch (they all
    /// list what they watch first). Returns when the election ends.
    pub async fn run_while_leader<F, Fut>(mut self, what: &'static str, task: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            if self.held.wait_for(|held| *held).await.is_err() {
                return;
            }
            tracing::debug!(task = what, "leader: starting");
            let running = tokio::spawn(task());
            let lost = self.held.wait_for(|held| !*held).await.is_err();
            running.abort();
            if lost {
                return;
            }
            tracing::debug!(task = what, "no longer the leader: stopped");
        }
    }
}

async fn compete(
    client: kube::Client,
    config: LeaseConfig,
    identity: String,
    held: watch::Sender<bool>,
) {
    let lease = format!("{}/{}", config.namespace, config.name);
    let manager = tokio::select! {
        manager = build(client, &config, &identity, &lease) => manager,
        _ = held.closed() => return,
    };
    tracing::info!(%lease, %identity, "competing for the leader lease");
    let (mut changes, task) = manager.watch().await;
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() {
                // The manager's task ended: it logged why.
                break;
            },
            // Shutting down: release below.
            _ = held.closed() => break,
        }
        let leader = *changes.borrow_and_update();
        if leader {
            tracing::info!(%lease, %identity, "leader: this replica now makes the cluster-wide writes");
        } else {
            tracing::warn!(%lease, %identity, "lost the leader lease; another replica makes the cluster-wide writes");
        }
        if held.send(leader).is_err() {
            break;
        }
    }
    // Dropping our receiver makes the manager release the lease and end.
    drop(changes);
    match task.await {
        Ok(Ok(_)) => tracing::info!(%lease, "released the leader lease"),
        Ok(Err(e)) => tracing::warn!(%lease, "releasing the leader lease: {e}"),
        Err(_) => {}
    }
}

/// The manager, once the Lease can be read or created. Retried with backoff:
/// a missing namespace or missing RBAC is an operator's fix, not a reason to
/// stop serving xDS.
async fn build(
    client: kube::Client,
    config: &LeaseConfig,
    identity: &str,
    lease: &str,
) -> LeaseManager {
    let seconds = config.duration.as_secs().max(3);
    let mut backoff = Duration::from_secs(1);
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &config.name)
            .with_namespace(&config.namespace)
            .with_identity(identity)
            .with_duration(seconds)
            .with_grace(seconds / 3)
            .with_field_manager(super::FIELD_MANAGER)
            .build()
            .await;
        match built {
            Ok(manager) => return manager,
            Err(e) => {
                tracing::error!(%lease, "cannot use the leader Lease: {e} (Rudder needs get, create and patch on leases in namespace {}, which must exist); cluster-wide writes wait; retrying in {backoff:?}", config.namespace)
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// This replica's name in the Lease: the pod's name (HOSTNAME in a pod)
/// and a suffix unique to the process, as client-go adds a UUID, so two
/// processes on one host, or a restarted pod, never share an identity.
pub fn identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "rudder".to_string());
    // std seeds each RandomState from the OS's random source.
    let mut suffix = std::collections::hash_map::RandomState::new().build_hasher();
    suffix.write_u32(std::process::id());
    format!("{host}_{:08x}", suffix.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn identities_differ_between_processes_on_one_host() {
        let (a, b) = (identity(), identity());
        assert_ne!(a, b);
        let (host_a, _) = a.rsplit_once('_').unwrap();
        assert!(!host_a.is_empty());
    }

    #[tokio::test]
    async fn tasks_run_only_while_leading_and_restart_on_winning_again() {
        let (tx, held) = watch::channel(false);
        let leadership = Leadership { held, _fixed: None };
        let starts = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (s, r) = (starts.clone(), running.clone());
        let runner = tokio::spawn(leadership.run_while_leader("test", move || {
            let (s, r) = (s.clone(), r.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                // Counts itself running until aborted.
                struct Running(Arc<AtomicUsize>);
                impl Drop for Running {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                let _guard = Running(r);
                std::future::pending::<()>().await
            }
        }));
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        assert_eq!(starts.load(Ordering::SeqCst), 0, "not leader yet");
        tx.send(true).unwrap();
        settle().await;
        assert_eq!(
            (
                starts.load(Ordering::SeqCst),
                running.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        tx.send(false).unwrap();
        settle().await;
        assert_eq!(
            running.load(Ordering::SeqCst),
            0,
            "aborted on losing the lease"
        );
        tx.send(true).unwrap();
        settle().await;
        assert_eq!(
            (
                starts.load(Ordering::SeqCst),
                running.load(Ordering::SeqCst)
            ),
            (2, 1)
        );
        drop(tx);
        runner.await.unwrap();
        assert_eq!(
            running.load(Ordering::SeqCst),
            0,
            "stopped with the election"
        );
    }

    #[tokio::test]
    async fn always_leads() {
        let leadership = Leadership::always();
        assert!(leadership.is_leader());
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        tokio::spawn(leadership.run_while_leader("test", move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
