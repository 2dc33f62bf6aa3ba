//! State-of-the-World ADS. Listeners and clusters are sent whole; endpoints and
//! routes are sent per resource, only those that changed, as the protocol allows.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;

use super::resources::{changed_names, intern, same_entries, Name, Resource, ResourceMap, TypeUrl};
use super::session::Session;
use super::stream::{self, Held, Protocol};
use super::wire::{SotwRequest, SotwResponse};

type Tx = stream::Tx<SotwResponse>;

/// A response carrying a whole map of at least this many resources shares
/// the map's framed encoding (`ConfigCache::framed`).
const FRAME_FROM: usize = 8;

/// One resource type's subscription on one stream.
#[derive(Default)]
pub struct Subscription {
    /// `None` is a wildcard subscription (all listeners or clusters).
    names: Option<Names>,
    /// Name -> version of everything sent and not since unsubscribed. When
    /// that is the whole of the cache's map (always for wildcard types, and
    /// for a proxy subscribed to every endpoint) it is that map, shared by
    /// every proxy.
    sent: Arc<ResourceMap>,
    /// The resource map last diffed: a push with the very same map (the
    /// cache reuses it when this type did not change) has nothing to send.
    seen: Option<Arc<ResourceMap>>,
    nonce: String,
    /// A first response is owed even if it is empty.
    answered: bool,
    /// The last response has not been ACKed or NACKed yet. Pushes wait for
    /// the answer, then send the latest state in one response (as
    /// go-control-plane's SotW server does, and Istio's
    /// PILOT_ENABLE_FLOW_CONTROL did): a busy proxy is not sent every
    /// intermediate state, and a push never waits on the stream's queue.
    awaiting: bool,
    /// A push is held back while `awaiting`, since the creation of the oldest
    /// snapshot it will carry (push latency and convergence count from then).
    deferred: Option<Instant>,
}

/// The names a stream subscribed to. Envoy repeats the whole list on every
/// request of a type (~1,300 endpoint names on each EDS ACK), and usually it
/// is every name the cache has: then nothing per stream is stored.
#[derive(Clone)]
enum Names {
    /// Exactly the keys of this map (never mutated: maps are shared).
    Keys(Arc<ResourceMap>),
    /// Any other set, its names interned from the cache's map.
    Set(Arc<BTreeSet<Name>>),
}

impl Names {
    fn contains(&self, name: &str) -> bool {
        match self {
            Names::Keys(m) => m.contains_key(name),
            Names::Set(s) => s.contains(name),
        }
    }

    fn len(&self) -> usize {
        match self {
            Names::Keys(m) => m.len(),
            Names::Set(s) => s.len(),
        }
    }

    /// In order, as the maps are.
    fn iter(&self) -> Box<dyn Iterator<Item = &Name> + Send + '_> {
        match self {
            Names::Keys(m) => Box::new(m.keys()),
            Names::Set(s) => Box::new(s.iter()),
        }
    }

    /// `requested`, in this order, is exactly these names.
    fn is(&self, requested: &[Bytes]) -> bool {
        self.len() == requested.len()
            && self
                .iter()
                .map(|n| n.as_bytes())
                .eq(requested.iter().map(|r| &r[..]))
    }

    /// The names of a request, sharing what can be shared: the map itself
    /// when they are all its names, the current subscription when unchanged.
    fn of(
        mut requested: Vec<Bytes>,
        all: Option<&Arc<ResourceMap>>,
        current: Option<&Names>,
    ) -> Names {
        let known = |requested: &[Bytes]| {
            if let Some(all) = all {
                let keys = Names::Keys(Arc::clone(all));
                if keys.is(requested) {
                    return Some(keys);
                }
            }
            current.filter(|c| c.is(requested)).cloned()
        };
        // Envoy lists names in order, without duplicates, and mostly the
        // same as last time: then a single comparison decides.
        if let Some(names) = known(&requested) {
            return names;
        }
        requested.sort_unstable();
        requested.dedup();
        if let Some(names) = known(&requested) {
            return names;
        }
        let all = all.map(|m| &**m);
        Names::Set(Arc::new(
            requested
                .iter()
                .map(|n| intern(all, &String::from_utf8_lossy(n)))
                .collect(),
        ))
    }
}

fn same_names(a: Option<&Names>, b: Option<&Names>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.len() == b.len() && a.iter().eq(b.iter()),
        _ => false,
    }
}

/// The sotw variant of an ADS stream (see `stream.rs`).
pub struct Sotw;

impl Protocol for Sotw {
    type Request = SotwRequest;
    type Response = SotwResponse;
    type Sub = Subscription;
    const NAME: &'static str = "sotw";

    fn node(req: &SotwRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn on_request<'a>(
        s: &'a mut Session,
        subs: &'a mut BTreeMap<TypeUrl, Subscription>,
        req: SotwRequest,
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
    respond(s, t, sub, Resend::Changed, Some(s.snapshot.created), tx).await
}

impl Held for Subscription {
    fn held(&self) -> &Arc<ResourceMap> {
        &self.sent
    }

    fn forget(&mut self, name: &str) {
        if self.sent.contains_key(name) {
            Arc::make_mut(&mut self.sent).remove(name);
        }
        self.seen = None;
    }
}

async fn on_request(
    s: &mut Session,
    subs: &mut BTreeMap<TypeUrl, Subscription>,
    req: SotwRequest,
    tx: &Tx,
) -> Result<(), ()> {
    let Some(t) = TypeUrl::parse(&req.type_url) else {
        tracing::warn!(proxy = %s.proxy, type_url = req.type_url, "unsupported resource type requested; ignoring");
        return Ok(());
    };
    let sub = subs.entry(t).or_default();
    // A nonce on a type this stream never answered comes from an earlier
    // stream (a client that kept it across a reconnect): treat it as initial.
    if !req.response_nonce.is_empty() && sub.answered {
        if req.response_nonce != sub.nonce {
            // A reply to a response we have since superseded: the newer one wins.
            return Ok(());
        }
        sub.awaiting = false;
        match &req.error_detail {
            Some(err) => s.record_nack(
                t,
                &req.version_info,
                &req.response_nonce,
                err.code,
                &err.message,
            ),
            None => s.record_ack(t, &req.version_info, &req.response_nonce),
        }
    }
    let requested = req.resource_names;
    let wildcard =
        t.is_wildcard_type() && (requested.is_empty() || requested.iter().any(|n| n == "*"));
    let names = (!wildcard).then(|| Names::of(requested, s.resources_of(t), sub.names.as_ref()));
    // A new stream must be answered with the whole subscribed set; a grown
    // endpoint or route subscription only with what it added (the protocol
    // delivers those types per resource); listeners and clusters always whole.
    let initial = req.response_nonce.is_empty() || !sub.answered;
    // A push held back for this answer goes out with whatever it answers.
    let pushed = sub.deferred.take();
    if !initial && same_names(names.as_ref(), sub.names.as_ref()) {
        // An ACK or NACK repeating the subscription (Envoy repeats all ~1,300
        // endpoint names on every EDS ACK) asks for nothing new: at most a
        // snapshot newer than the last push is owed, and that is a push. The
        // full diff below costs ~5 map lookups per subscribed name; on every
        // ACK of a one-endpoint change it was most of Rudder's CPU (perf,
        // docs/performance.md).
        sub.names = names;
        let since = pushed.unwrap_or(s.snapshot.created);
        return respond(s, t, sub, Resend::Changed, Some(since), tx).await;
    }
    let resend =
        if initial || (t.is_wildcard_type() && !same_names(names.as_ref(), sub.names.as_ref())) {
            Resend::All
        } else {
            let before = sub.names.iter().flat_map(|b| b.iter());
            Resend::Added(
                missing(names.iter().flat_map(|n| n.iter()), before)
                    .into_iter()
                    .cloned()
                    .collect(),
            )
        };
    if let Some(names) = &names {
        // Only when something was unsubscribed: a shared map is copied on write.
        if !missing(sub.sent.keys(), names.iter()).is_empty() {
            Arc::make_mut(&mut sub.sent).retain(|n, _| names.contains(n));
        }
    }
    sub.names = names;
    respond(s, t, sub, resend, pushed, tx).await
}

/// What a response must carry beyond resources that changed.
pub enum Resend {
    /// Nothing more: a push after a snapshot change.
    Changed,
    /// Newly subscribed names too, in order.
    Added(Vec<Name>),
    /// The whole subscribed set.
    All,
}

/// Sends what the proxy lacks of this type. `pushed` marks a response caused
/// by snapshot changes, with the oldest one's creation time (it counts
/// toward push latency and convergence).
async fn respond(
    s: &Session,
    t: TypeUrl,
    sub: &mut Subscription,
    resend: Resend,
    pushed: Option<Instant>,
    tx: &Tx,
) -> Result<(), ()> {
    // Not synced yet: the push after the initial load answers.
    let (Some(resources), Some(all)) = (&s.resources, s.resources_of(t)) else {
        return Ok(());
    };
    if matches!(resend, Resend::Changed)
        && sub.answered
        && sub.seen.as_ref().is_some_and(|m| Arc::ptr_eq(m, all))
    {
        return Ok(());
    }
    // Endpoints or routes after snapshot changes: only names whose resources
    // differ between the map this stream last diffed and this one can need
    // sending (by induction, it was sent all the others).
    if let (Resend::Changed, true, false, Some(names), Some(seen)) = (
        &resend,
        sub.answered,
        t.is_wildcard_type(),
        sub.names.as_ref(),
        sub.seen.clone(),
    ) {
        let changed: Vec<Name> = match resources.endpoints_delta.as_ref() {
            // One snapshot on: the cache knows what changed.
            Some(delta) if t == TypeUrl::Endpoint && Arc::ptr_eq(&seen, &delta.from) => {
                delta.changed.iter().cloned().collect()
            }
            // Several (the stream waited for its proxy's answer): compare the
            // maps side by side, by pointer where entries are shared.
            _ => changed_names(&seen, all),
        };
        sub.seen = Some(Arc::clone(all));
        let to_send: Vec<Arc<Resource>> = changed
            .iter()
            .filter(|n| names.contains(n))
            .filter_map(|n| all.get(n))
            .filter(|r| sub.sent.get(&r.name).map(|o| &o.version) != Some(&r.version))
            .cloned()
            .collect();
        if to_send.is_empty() {
            return Ok(());
        }
        // Held all of the previous map and no name came or went: once the
        // changes are sent it holds all of this one. Decided here so the
        // shared map is not copied just to be updated and compared.
        let whole = Arc::ptr_eq(&sub.sent, &seen)
            && changed
                .iter()
                .all(|n| seen.contains_key(n) && all.contains_key(n) && names.contains(n));
        return send(s, t, sub, all, to_send, whole, pushed, tx).await;
    }
    sub.seen = Some(Arc::clone(all));
    let whole = t.is_wildcard_type() && sub.names.is_none();
    let force = matches!(resend, Resend::All) || !sub.answered;
    if whole && !force && same_entries(&sub.sent, all) {
        // All listeners or clusters, already held: the same test as the
        // lookups below (nothing changed, nothing removed), as one walk of
        // both maps, by pointer where the cache shares entries. The lookups
        // cost ~11 name comparisons per cluster per proxy; on a service edit
        // they were a quarter of Rudder's CPU (perf, docs/performance.md).
        return Ok(());
    }
    // Names and maps are in the same order, so what follows walks them side
    // by side rather than looking each name up (~11 name comparisons per
    // lookup, and a proxy whose subscription grew by one cluster on a
    // service edit came here with ~1,300 names, several times over).
    let desired: Vec<&Arc<Resource>> = match &sub.names {
        None => all.values().collect(),
        Some(Names::Keys(keys)) if Arc::ptr_eq(keys, all) => all.values().collect(),
        Some(names) => join(names.iter(), all),
    };
    if whole {
        // Something differs (or the whole set is owed): a full state of the world.
        let to_send = desired.iter().map(|r| Arc::clone(r)).collect();
        return send(s, t, sub, all, to_send, whole, pushed, tx).await;
    }
    // Which of `desired` the stream does not hold as they are.
    let changed = differing(&desired, &sub.sent);
    // `sent` only holds subscribed names, so this covers wildcard and named
    // subscriptions alike.
    let removed = !missing(sub.sent.keys(), all.keys()).is_empty();
    let to_send: Vec<Arc<Resource>> = if t.is_wildcard_type() {
        // Listeners and clusters: any difference means a full state of the world.
        if !force && !changed.contains(&true) && !removed {
            return Ok(());
        }
        desired.iter().map(|r| Arc::clone(r)).collect()
    } else if force {
        desired.iter().map(|r| Arc::clone(r)).collect()
    } else {
        let added: &[Name] = match &resend {
            Resend::Added(names) => names,
            _ => &[],
        };
        let mut added = added.iter().peekable();
        desired
            .iter()
            .zip(changed)
            .filter(|(r, changed)| {
                while added.next_if(|a| order(a, &r.name).is_lt()).is_some() {}
                let is_added = added.next_if(|a| order(a, &r.name).is_eq()).is_some();
                is_added || *changed
            })
            .map(|(r, _)| Arc::clone(r))
            .collect()
    };
    // An empty listener or cluster response is meaningful: it deletes them all.
    if to_send.is_empty() && !(t.is_wildcard_type() && (force || removed)) {
        return Ok(());
    }
    send(s, t, sub, all, to_send, whole, pushed, tx).await
}

/// Two names in map order; shared allocations are equal without reading them.
fn order(a: &Name, b: &Name) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

/// The names of `names` that `from` lacks; both in map order.
fn missing<'a>(
    names: impl Iterator<Item = &'a Name>,
    from: impl Iterator<Item = &'a Name>,
) -> Vec<&'a Name> {
    let mut from = from.peekable();
    names
        .filter(|n| {
            while from.next_if(|f| order(f, n).is_lt()).is_some() {}
            from.next_if(|f| order(f, n).is_eq()).is_none()
        })
        .collect()
}

/// The resources of `all` that `names` (in map order) name, in that order.
fn join<'a>(names: impl Iterator<Item = &'a Name>, all: &'a ResourceMap) -> Vec<&'a Arc<Resource>> {
    let mut all = all.iter().peekable();
    names
        .filter_map(|n| {
            while all.next_if(|(k, _)| order(k, n).is_lt()).is_some() {}
            all.next_if(|(k, _)| order(k, n).is_eq()).map(|(_, r)| r)
        })
        .collect()
}

/// For each of `desired` (in map order): `sent` lacks it or holds another version.
fn differing(desired: &[&Arc<Resource>], sent: &ResourceMap) -> Vec<bool> {
    let mut sent = sent.iter().peekable();
    desired
        .iter()
        .map(|r| {
            while sent.next_if(|(k, _)| order(k, &r.name).is_lt()).is_some() {}
            match sent.next_if(|(k, _)| order(k, &r.name).is_eq()) {
                Some((_, old)) => !Arc::ptr_eq(old, r) && old.version != r.version,
                None => true,
            }
        })
        .collect()
}

/// Records what the stream now holds and writes the response. `whole`: the
/// stream will hold exactly `all`, known without comparing.
#[allow(clippy::too_many_arguments)]
async fn send(
    s: &Session,
    t: TypeUrl,
    sub: &mut Subscription,
    all: &Arc<ResourceMap>,
    to_send: Vec<Arc<Resource>>,
    whole: bool,
    pushed: Option<Instant>,
    tx: &Tx,
) -> Result<(), ()> {
    // Every resource of the map, in its order: a full state of the world,
    // or a first answer to a subscription naming everything (EDS on a cold
    // connect, ~1,300 names). Nothing else can be held then.
    let all_of_it = to_send.len() == all.len()
        && to_send
            .iter()
            .zip(all.values())
            .all(|(a, b)| Arc::ptr_eq(a, b));
    if whole || all_of_it {
        // The whole map is held: share it rather than copy it.
        sub.sent = Arc::clone(all);
    } else {
        let sent = Arc::make_mut(&mut sub.sent);
        if t.is_wildcard_type() {
            sent.clear();
        }
        for r in &to_send {
            sent.insert(Arc::clone(&r.name), Arc::clone(r));
        }
        if same_entries(sent, all) {
            sub.sent = Arc::clone(all);
        }
    }
    sub.nonce = s.next_nonce();
    sub.answered = true;
    sub.awaiting = true;
    let version = s.snapshot.version.to_string();
    // All of the map: encoded once for all streams.
    let framed = (all_of_it && to_send.len() >= FRAME_FROM).then(|| s.ctx.cache.framed(all));
    let resources = match framed {
        Some(_) => Vec::new(),
        None => to_send.iter().map(|r| r.sotw.clone()).collect(),
    };
    let response = SotwResponse {
        version_info: version.clone(),
        framed,
        resources,
        type_url: t.url().to_string(),
        nonce: sub.nonce.clone(),
    };
    s.record_sent(t, &version, &sub.nonce, &to_send, &sub.sent, pushed);
    tx.send(Ok(response)).await.map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

    fn map(names: &[(&str, usize)]) -> ResourceMap {
        super::super::resources::to_map(
            names
                .iter()
                .map(|(n, zones)| ClusterLoadAssignment {
                    cluster_name: n.to_string(),
                    endpoints: vec![Default::default(); *zones],
                    ..Default::default()
                })
                .collect(),
            |c| &c.cluster_name,
        )
    }

    fn names<'a>(v: impl IntoIterator<Item = &'a Name>) -> Vec<&'a str> {
        v.into_iter().map(|n| &**n).collect()
    }

    #[test]
    fn walks_agree_with_lookups() {
        let all = map(&[("a", 1), ("b", 1), ("d", 1), ("e", 1)]);
        let wanted: Vec<Name> = ["b", "c", "e", "f"].map(Name::from).to_vec();
        // Names not in the map are skipped; others come out in order.
        let joined = join(wanted.iter(), &all);
        assert_eq!(names(joined.iter().map(|r| &r.name)), ["b", "e"]);
        assert_eq!(names(missing(wanted.iter(), all.keys())), ["c", "f"]);
        assert_eq!(names(missing(all.keys(), wanted.iter())), ["a", "d"]);
        assert!(missing(all.keys(), all.keys()).is_empty());
        // Held: a shared entry, another version of "b", and no "e".
        let mut sent = map(&[("b", 2), ("c", 1)]);
        sent.insert(all.get_key_value("a").unwrap().0.clone(), all["a"].clone());
        let desired: Vec<&Arc<Resource>> = all.values().collect();
        assert_eq!(differing(&desired, &sent), [false, true, true, true]);
        let same: Vec<&Arc<Resource>> = sent.values().collect();
        assert_eq!(differing(&same, &sent), [false, false, false]);
    }
}
