//! One simulated sidecar on an incremental (Delta) ADS stream: the same
//! subscription order as SotW, but the proxy keeps what it holds, applies
//! each response's additions and removals, ACKs by nonce alone, and changes
//! EDS/RDS subscriptions by naming only the difference.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;

use crate::record::{Decoded, Recorder};
use crate::sotw::{duplicate_check, Closed};
use crate::xds::Kind;

const NACK_CODE: i32 = 13;

#[derive(Default)]
struct TypeState {
    requested: bool,
    acked: bool,
}

pub struct Delta<'a> {
    rec: &'a mut Recorder,
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    node: Option<Node>,
    st: [TypeState; 4],
    /// Cluster name -> its EDS name, for EDS clusters.
    clusters: HashMap<String, Option<String>>,
    /// Listener name -> the route names it references.
    listeners: HashMap<String, Vec<String>>,
    /// Subscribed EDS and RDS names, and those of them the proxy holds.
    subscribed: [BTreeSet<String>; 2],
    held: [BTreeSet<String>; 2],
}

/// Index into `subscribed` / `held` for the by-name types.
fn named(kind: Kind) -> usize {
    usize::from(kind == Kind::Rds)
}

impl<'a> Delta<'a> {
    pub fn new(rec: &'a mut Recorder, tx: mpsc::Sender<DeltaDiscoveryRequest>, node: Node) -> Self {
        Delta {
            rec,
            tx,
            node: Some(node),
            st: Default::default(),
            clusters: HashMap::new(),
            listeners: HashMap::new(),
            subscribed: Default::default(),
            held: Default::default(),
        }
    }

    pub async fn start(&mut self) -> Result<(), Closed> {
        // No names on a wildcard type's first request: "everything", as Envoy sends it.
        self.send(Kind::Cds, Vec::new(), Vec::new(), String::new(), None)
            .await
    }

    async fn send(
        &mut self,
        kind: Kind,
        sub: Vec<String>,
        unsub: Vec<String>,
        nonce: String,
        error: Option<String>,
    ) -> Result<(), Closed> {
        self.st[kind as usize].requested = true;
        let req = DeltaDiscoveryRequest {
            node: self.node.take(),
            type_url: kind.url().to_string(),
            resource_names_subscribe: sub,
            resource_names_unsubscribe: unsub,
            response_nonce: nonce,
            error_detail: error.map(|message| RpcStatus {
                code: NACK_CODE,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        };
        self.tx.send(req).await.map_err(|_| Closed)
    }

    pub async fn on_response(&mut self, resp: DeltaDiscoveryResponse) -> Result<(), Closed> {
        let Some(kind) = Kind::from_url(&resp.type_url) else {
            self.rec
                .shared
                .warn(format_args!("unexpected type_url {:?}", resp.type_url));
            return Ok(());
        };
        let decoded = match self.decode(kind, &resp) {
            Ok(d) => d,
            Err(msg) => {
                self.rec.nacked(kind, &msg);
                return self
                    .send(kind, Vec::new(), Vec::new(), resp.nonce, Some(msg))
                    .await;
            }
        };
        let held = self.apply(kind, &decoded, &resp.removed_resources);
        self.send(kind, Vec::new(), Vec::new(), resp.nonce.clone(), None)
            .await?;
        self.st[kind as usize].acked = true;
        self.rec
            .acked(kind, &decoded, false, &resp.removed_resources, held);
        self.follow_up(kind).await?;
        if self.is_ready() {
            self.rec.mark_ready();
        }
        Ok(())
    }

    fn decode(&self, kind: Kind, resp: &DeltaDiscoveryResponse) -> Result<Decoded, String> {
        if let Some(r) = resp.resources.iter().find(|r| r.resource.is_none()) {
            return Err(format!(
                "{} resource {:?} without a body",
                kind.short(),
                r.name
            ));
        }
        let d = self.rec.decode(
            kind,
            resp.resources.iter().filter_map(|r| r.resource.as_ref()),
        )?;
        duplicate_check(kind, &d.facts)?;
        for (r, f) in resp.resources.iter().zip(&d.facts) {
            if r.name != f.name {
                self.rec.shared.warn(format_args!(
                    "delta {} resource named {:?} holds {:?}",
                    kind.short(),
                    r.name,
                    f.name
                ));
            }
        }
        Ok(d)
    }

    /// Folds the response into what the proxy holds; returns how many it holds.
    fn apply(&mut self, kind: Kind, d: &Decoded, removed: &[String]) -> usize {
        match kind {
            Kind::Cds => {
                for n in removed {
                    self.clusters.remove(n);
                }
                self.clusters
                    .extend(d.facts.iter().map(|f| (f.name.clone(), f.eds.clone())));
                self.clusters.len()
            }
            Kind::Lds => {
                for n in removed {
                    self.listeners.remove(n);
                }
                self.listeners
                    .extend(d.facts.iter().map(|f| (f.name.clone(), f.rds.clone())));
                self.listeners.len()
            }
            Kind::Eds | Kind::Rds => {
                let i = named(kind);
                let extra = d
                    .facts
                    .iter()
                    .filter(|f| !self.subscribed[i].contains(&f.name))
                    .count();
                self.rec.shared.unrequested.fetch_add(extra as u64, Relaxed);
                for n in removed {
                    self.held[i].remove(n);
                }
                self.held[i].extend(d.facts.iter().map(|f| f.name.clone()));
                self.held[i].len()
            }
        }
    }

    async fn follow_up(&mut self, kind: Kind) -> Result<(), Closed> {
        match kind {
            Kind::Cds => {
                let want: BTreeSet<String> = self.clusters.values().flatten().cloned().collect();
                if self.resubscribe(Kind::Eds, want).await? {
                    let set = self
                        .rec
                        .shared
                        .intern(self.subscribed[0].iter().cloned().collect());
                    *self.rec.shared.proxies[self.rec.idx].eds.lock() = Some(set);
                }
                if self.subscribed[0].is_empty() {
                    self.request_lds_once().await?;
                }
            }
            Kind::Eds => self.request_lds_once().await?,
            Kind::Lds => {
                let want: BTreeSet<String> = self.listeners.values().flatten().cloned().collect();
                if self.resubscribe(Kind::Rds, want).await? {
                    let set = self
                        .rec
                        .shared
                        .intern(self.subscribed[1].iter().cloned().collect());
                    self.rec.subscribed[1] = Some(set);
                }
            }
            Kind::Rds => {}
        }
        Ok(())
    }

    /// Subscribes to what is newly wanted and drops what is not. True when
    /// the subscription changed.
    async fn resubscribe(&mut self, kind: Kind, want: BTreeSet<String>) -> Result<bool, Closed> {
        let i = named(kind);
        let sub: Vec<String> = want.difference(&self.subscribed[i]).cloned().collect();
        let unsub: Vec<String> = self.subscribed[i].difference(&want).cloned().collect();
        if sub.is_empty() && unsub.is_empty() {
            return Ok(false);
        }
        for n in &unsub {
            self.held[i].remove(n);
        }
        self.subscribed[i] = want;
        self.send(kind, sub, unsub, String::new(), None).await?;
        Ok(true)
    }

    async fn request_lds_once(&mut self) -> Result<(), Closed> {
        if self.st[Kind::Lds as usize].requested {
            return Ok(());
        }
        self.send(Kind::Lds, Vec::new(), Vec::new(), String::new(), None)
            .await
    }

    fn is_ready(&self) -> bool {
        let acked = |k: Kind| self.st[k as usize].acked;
        acked(Kind::Cds)
            && acked(Kind::Lds)
            && (self.subscribed[0].is_empty() || acked(Kind::Eds))
            && (self.subscribed[1].is_empty() || acked(Kind::Rds))
    }
}
