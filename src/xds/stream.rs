//! What every ADS stream does, whichever protocol variant: start a session
//! on the first request, answer requests, and push in order on each new
//! snapshot. `sotw.rs` and `delta.rs` supply the variant-specific parts.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::mpsc;
use tonic::Status;

use super::requests::Requests;
use super::resources::{changed_names, Name, ResourceMap, TypeUrl};
use super::server::XdsContext;
use super::session::{Caller, Session};

pub type Tx<R> = mpsc::Sender<Result<R, Status>>;

/// One ADS protocol variant (State-of-the-World or Delta).
pub trait Protocol {
    type Request: prost::Message + Default + Send + 'static;
    type Response: Send + 'static;
    /// Per-type subscription state on one stream.
    type Sub: Held + Send;
    /// For logs and metrics: `sotw` or `delta`.
    const NAME: &'static str;

    fn node(req: &Self::Request) -> Option<&Node>;

    fn on_request<'a>(
        s: &'a mut Session,
        subs: &'a mut BTreeMap<TypeUrl, Self::Sub>,
        req: Self::Request,
        tx: &'a Tx<Self::Response>,
    ) -> impl Future<Output = Result<(), ()>> + Send + 'a;

    /// Sends what changed for one type after a snapshot change.
    fn push<'a>(
        s: &'a Session,
        t: TypeUrl,
        sub: &'a mut Self::Sub,
        tx: &'a Tx<Self::Response>,
    ) -> impl Future<Output = Result<(), ()>> + Send + 'a;
}

/// What a subscription holds, for bookkeeping shared by both variants.
pub trait Held {
    fn held(&self) -> &Arc<ResourceMap>;
    /// Forget that the proxy holds `name`, so the next push resends it.
    fn forget(&mut self, name: &str);
}

pub async fn run<P: Protocol>(
    ctx: Arc<XdsContext>,
    caller: Caller,
    mut requests: Requests<P::Request>,
    tx: Tx<P::Response>,
) {
    let mut snapshots = ctx.snapshots.clone();
    let mut rotations = ctx.secrets.as_ref().map(|s| s.generation());
    let mut session: Option<Session> = None;
    let mut subs: BTreeMap<TypeUrl, P::Sub> = BTreeMap::new();
    loop {
        tokio::select! {
            msg = requests.message() => {
                let req = match msg {
                    Ok(Some(req)) => req,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!("{} stream ended: {status}", P::NAME);
                        return;
                    }
                };
                if session.is_none() {
                    match Session::start(ctx.clone(), P::node(&req), P::NAME, &caller) {
                        Ok(s) => session = Some(s),
                        Err(status) => {
                            tracing::warn!("refusing {} ADS stream: {}", P::NAME, status.message());
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
                let s = session.as_mut().expect("session started above");
                s.refresh().await;
                // An answer can release a held-back cluster push (see sotw.rs).
                let before = held(subs.get(&TypeUrl::Cluster));
                if P::on_request(s, &mut subs, req, &tx).await.is_err() {
                    return;
                }
                if rewarm_endpoints(&mut subs, &before) {
                    if let Some(sub) = subs.get_mut(&TypeUrl::Endpoint) {
                        if P::push(s, TypeUrl::Endpoint, sub, &tx).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Ok(()) = snapshots.changed(), if session.is_some() => {
                let s = session.as_mut().expect("guarded by if");
                // A request may already have moved the session to this snapshot
                // while answering one type; diff every type regardless (cheap:
                // only differences are sent).
                s.refresh().await;
                for t in TypeUrl::PUSH_ORDER {
                    let before = (t == TypeUrl::Cluster).then(|| held(subs.get(&t)));
                    if let Some(sub) = subs.get_mut(&t) {
                        if P::push(s, t, sub, &tx).await.is_err() {
                            return;
                        }
                    }
                    if let Some(before) = before {
                        rewarm_endpoints(&mut subs, &before);
                    }
                }
            }
            Some(()) = rotated(&mut rotations), if session.is_some() => {
                let s = session.as_mut().expect("guarded by if");
                if s.refresh_secrets() {
                    if let Some(sub) = subs.get_mut(&TypeUrl::Secret) {
                        if P::push(s, TypeUrl::Secret, sub, &tx).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// What a subscription holds (shared, not copied: maps are never mutated
/// in place while shared).
fn held<S: Held>(sub: Option<&S>) -> Arc<ResourceMap> {
    sub.map(|s| Arc::clone(s.held())).unwrap_or_default()
}

/// Envoy warms a changed cluster again and waits for its load assignment,
/// even when the assignment itself did not change (Istio pushes EDS after
/// CDS for this reason). Forgetting that the proxy holds those assignments
/// makes the EDS push that follows resend them. True when it forgot any.
fn rewarm_endpoints<S: Held>(subs: &mut BTreeMap<TypeUrl, S>, before: &Arc<ResourceMap>) -> bool {
    let after = held(subs.get(&TypeUrl::Cluster));
    if Arc::ptr_eq(before, &after) {
        return false;
    }
    // Walking both maps side by side, not a lookup per cluster: on a
    // service edit every proxy comes here with ~1,300 clusters.
    let changed: Vec<Name> = changed_names(before, &after)
        .into_iter()
        .filter(|name| before.contains_key(name) && after.contains_key(name))
        .collect();
    match subs.get_mut(&TypeUrl::Endpoint) {
        Some(eds) if !changed.is_empty() => {
            for name in changed {
                eds.forget(&name);
            }
            true
        }
        _ => false,
    }
}

/// Resolves when some certificate was rotated; never without a CA.
async fn rotated(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}
