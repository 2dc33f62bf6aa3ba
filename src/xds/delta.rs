//! Delta (incremental) ADS: every stream is told only what changed, per
//! resource, with removals named explicitly.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::resources::{intern, same_entries, Name, Resource, ResourceMap, TypeUrl};
use super::session::Session;
use super::stream::{self, Held, Protocol};
use super::wire::DeltaResponse;

type Tx = stream::Tx<DeltaResponse>;

#[derive(Default)]
pub struct Subscription {
    wildcard: bool,
    /// Interned from the cache's map: no per-stream copies of names.
    names: BTreeSet<Name>,
    /// What the proxy holds, by name: its initial versions, then what we sent.
    /// A NACKed resource stays here, so the refused content is not resent.
    /// Holding all of the cache's map, it is that map (see sotw.rs).
    holds: Arc<ResourceMap>,
    /// The resource map last diffed (see sotw.rs).
    seen: Option<Arc<ResourceMap>>,
    /// Versions the proxy reported on reconnect, before we sent anything.
    initial: BTreeMap<String, String>,
    nonce: String,
    /// Snapshot version of the response carrying `nonce`, recorded on its ACK.
    nonce_version: String,
    answered: bool,
    /// The last response is not ACKed or NACKed yet: pushes wait for the
    /// answer and then send the latest state (see sotw.rs).
    awaiting: bool,
    /// A push is held back while `awaiting`, since this snapshot (sotw.rs).
    deferred: Option<Instant>,
}

/// The delta variant of an ADS stream (see `stream.rs`).
pub struct Delta;

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaResponse;
    type Sub = Subscription;
    const NAME: &'static str = "delta";

    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn on_request<'a>(
        s: &'a mut Session,
        subs: &'a mut BTreeMap<TypeUrl, Subscription>,
        req: DeltaDiscoveryRequest,
        tx: &'a Tx,
    ) -> impl Future<Output = Result<(), ()>> + Send + 'a {
        on_request(s, subs, req, tx)
    }

    fn push<'a>(
        s: &'a Session,
        t: TypeUrl,
        sub: &'a mut Subscription,
        tx: &'a Tx,
    ) -> impl Future<Output = Result<(), ()>> + Send + 'a {
        push(s, t, sub, tx)
    }
}

async fn push(s: &Session, t: TypeUrl, sub: &mut Subscription, tx: &Tx) -> Result<(), ()> {
    if sub.awaiting {
        // Sent when the proxy answers (see `on_request`).
        sub.deferred.get_or_insert(s.snapshot.created);
        return Ok(());
    }
    respond(s, t, sub, BTreeSet::new(), Some(s.snapshot.created), tx).await
}

impl Held for Subscription {
    fn held(&self) -> &Arc<ResourceMap> {
        &self.holds
    }

    fn forget(&mut self, name: &str) {
        if self.holds.contains_key(name) {
            Arc::make_mut(&mut self.holds).remove(name);
        }
        self.seen = None;
    }
}

async fn on_request(
    s: &mut Session,
    subs: &mut BTreeMap<TypeUrl, Subscription>,
    req: DeltaDiscoveryRequest,
    tx: &Tx,
) -> Result<(), ()> {
    let Some(t) = TypeUrl::parse(&req.type_url) else {
        tracing::warn!(proxy = %s.proxy, type_url = req.type_url, "unsupported resource type requested; ignoring");
        return Ok(());
    };
    let first = !subs.contains_key(&t);
    let sub = subs.entry(t).or_default();
    if !req.response_nonce.is_empty() && req.response_nonce == sub.nonce {
        sub.awaiting = false;
        let version = sub.nonce_version.clone();
        match &req.error_detail {
            Some(err) => s.record_nack(t, &version, &req.response_nonce, err.code, &err.message),
            None => s.record_ack(t, &version, &req.response_nonce),
        }
    }
    if first {
        // Envoy: a first request without names subscribes to everything.
        sub.wildcard = t.is_wildcard_type() && req.resource_names_subscribe.is_empty();
        sub.initial = req.initial_resource_versions.clone().into_iter().collect();
    }
    let mut added = BTreeSet::new();
    let all = s.resources_of(t).map(|m| &**m);
    for name in req.resource_names_subscribe {
        if name == "*" {
            sub.wildcard = true;
        } else if !sub.names.contains(name.as_str()) {
            let name = intern(all, &name);
            sub.names.insert(Arc::clone(&name));
            added.insert(name);
        }
    }
    for name in req.resource_names_unsubscribe {
        if name == "*" {
            sub.wildcard = false;
        } else {
            sub.names.remove(name.as_str());
            // Copy a shared map only to change it.
            if sub.holds.contains_key(name.as_str()) {
                Arc::make_mut(&mut sub.holds).remove(name.as_str());
            }
            sub.seen = None;
            sub.initial.remove(&name);
        }
    }
    // A push held back for this answer goes out now, with anything the
    // request added.
    if first || !added.is_empty() || (sub.deferred.is_some() && !sub.awaiting) {
        let pushed = sub.deferred.take();
        respond(s, t, sub, added, pushed, tx).await?;
    }
    Ok(())
}

/// Sends changed and new resources and names removed ones. Names in `added`
/// that do not exist are reported as removed, so the proxy stops waiting.
async fn respond(
    s: &Session,
    t: TypeUrl,
    sub: &mut Subscription,
    added: BTreeSet<Name>,
    pushed: Option<Instant>,
    tx: &Tx,
) -> Result<(), ()> {
    let (Some(resources), Some(all)) = (&s.resources, s.resources_of(t)) else {
        return Ok(());
    };
    if pushed.is_some()
        && added.is_empty()
        && sub.answered
        && sub.seen.as_ref().is_some_and(|m| Arc::ptr_eq(m, all))
    {
        return Ok(());
    }
    // Endpoints changed since the map this stream last diffed: only the
    // changed names can differ.
    let fast = match (
        t,
        pushed.is_some() && added.is_empty() && sub.answered,
        resources.endpoints_delta.as_ref(),
    ) {
        (TypeUrl::Endpoint, true, Some(d))
            if sub.seen.as_ref().is_some_and(|m| Arc::ptr_eq(m, &d.from)) =>
        {
            Some(d.clone())
        }
        _ => None,
    };
    sub.seen = Some(Arc::clone(all));
    let wanted = |name: &str| sub.wildcard || sub.names.contains(name);
    // Held all of the previous map, and every change is wanted and no name
    // came or went: afterwards it holds all of this one, shared, without
    // copying the shared map to update it.
    let whole = fast.as_ref().is_some_and(|d| {
        Arc::ptr_eq(&sub.holds, &d.from)
            && sub.initial.is_empty()
            && d.changed
                .iter()
                .all(|n| d.from.contains_key(n) && all.contains_key(n) && wanted(n))
    });
    let fast = fast.map(|d| d.changed);
    let mut send: Vec<Arc<Resource>> = Vec::new();
    let candidates: Box<dyn Iterator<Item = (&Name, &Arc<Resource>)>> = match &fast {
        Some(changed) => Box::new(changed.iter().filter_map(|n| all.get_key_value(n))),
        None => Box::new(all.iter()),
    };
    for (name, r) in candidates.filter(|(n, _)| wanted(n)) {
        let known = match sub.holds.get(name) {
            Some(held) => Some(&held.version),
            None => sub.initial.get(&**name),
        };
        if known != Some(&r.version) {
            send.push(Arc::clone(r));
        }
    }
    let mut removed: Vec<String> = match &fast {
        Some(changed) => changed
            .iter()
            .filter(|n| sub.holds.contains_key(*n) && !all.contains_key(*n))
            .map(|n| n.to_string())
            .collect(),
        None => sub
            .holds
            .keys()
            .map(|n| &**n)
            .chain(sub.initial.keys().map(String::as_str))
            .filter(|n| !all.contains_key(*n) || !wanted(n))
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .map(str::to_string)
            .collect(),
    };
    let missing: Vec<String> = added
        .iter()
        .filter(|n| !all.contains_key(*n) && !removed.iter().any(|r| r == &***n))
        .map(|n| n.to_string())
        .collect();
    removed.extend(missing);
    if send.is_empty() && removed.is_empty() && sub.answered {
        return Ok(());
    }
    if whole {
        sub.holds = Arc::clone(all);
    } else {
        let holds = Arc::make_mut(&mut sub.holds);
        for name in &removed {
            holds.remove(name.as_str());
            sub.initial.remove(name);
        }
        for r in &send {
            sub.initial.remove(&*r.name);
            holds.insert(Arc::clone(&r.name), Arc::clone(r));
        }
        if sub.initial.is_empty() && same_entries(holds, all) {
            // Holding exactly the cache's map: share it rather than keep a copy.
            sub.holds = Arc::clone(all);
        }
    }
    sub.nonce = s.next_nonce();
    sub.answered = true;
    sub.awaiting = true;
    let version = s.snapshot.version.to_string();
    sub.nonce_version = version.clone();
    let response = DeltaResponse {
        system_version_info: version.clone(),
        resources: send.iter().map(|r| r.delta.clone()).collect(),
        type_url: t.url().to_string(),
        removed_resources: removed,
        nonce: sub.nonce.clone(),
    };
    s.record_sent(t, &version, &sub.nonce, &send, &sub.holds, pushed);
    tx.send(Ok(response)).await.map_err(|_| ())
}
