//! One simulated sidecar on a State-of-the-World ADS stream, subscribing as
//! Envoy does: CDS wildcard; EDS for every EDS cluster; LDS wildcard once
//! clusters are warm; RDS for every route name the listeners reference.
//! Every response is decoded and then ACKed (or NACKed) with the version,
//! nonce and the full current subscription, as SotW requires.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc;

use crate::record::Recorder;
use crate::request::SotwRequest;
use crate::shared::NameSet;
use crate::xds::{Facts, Kind};

/// gRPC INTERNAL, which Envoy puts in NACKs for rejected config.
const NACK_CODE: i32 = 13;

#[derive(Default)]
struct TypeState {
    version: String,
    nonce: String,
    requested: bool,
    acked: bool,
}

pub struct Sotw<'a> {
    rec: &'a mut Recorder,
    tx: mpsc::Sender<SotwRequest>,
    /// Sent on the first request only, as Envoy does with ADS.
    node: Option<Node>,
    st: [TypeState; 4],
    eds: Arc<NameSet>,
    rds: Arc<NameSet>,
}

/// The stream's request side went away: the stream is over.
pub struct Closed;

impl<'a> Sotw<'a> {
    pub fn new(rec: &'a mut Recorder, tx: mpsc::Sender<SotwRequest>, node: Node) -> Self {
        let empty = rec.shared.intern(Vec::new());
        Sotw {
            rec,
            tx,
            node: Some(node),
            st: Default::default(),
            eds: empty.clone(),
            rds: empty,
        }
    }

    pub async fn start(&mut self) -> Result<(), Closed> {
        self.request(Kind::Cds, None).await
    }

    fn names(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::Cds | Kind::Lds => &[],
            Kind::Eds => &self.eds.names,
            Kind::Rds => &self.rds.names,
        }
    }

    /// The subscription as a request carries it, encoded once per set.
    fn encoded_names(&self, kind: Kind) -> bytes::Bytes {
        match kind {
            Kind::Cds | Kind::Lds => bytes::Bytes::new(),
            Kind::Eds => self.eds.encoded.clone(),
            Kind::Rds => self.rds.encoded.clone(),
        }
    }

    async fn request(&mut self, kind: Kind, error: Option<String>) -> Result<(), Closed> {
        let names = self.encoded_names(kind);
        let st = &mut self.st[kind as usize];
        st.requested = true;
        let req = SotwRequest {
            version_info: st.version.clone(),
            node: self.node.take(),
            names,
            type_url: kind.url().to_string(),
            response_nonce: st.nonce.clone(),
            error_detail: error.map(|message| RpcStatus {
                code: NACK_CODE,
                message,
                details: Vec::new(),
            }),
        };
        self.tx.send(req).await.map_err(|_| Closed)
    }

    pub async fn on_response(&mut self, resp: DiscoveryResponse) -> Result<(), Closed> {
        let Some(kind) = Kind::from_url(&resp.type_url) else {
            self.rec
                .shared
                .warn(format_args!("unexpected type_url {:?}", resp.type_url));
            return Ok(());
        };
        let k = kind as usize;
        // Envoy NACKs with the last accepted version and the response's nonce.
        self.st[k].nonce = resp.nonce.clone();
        let checked = self
            .rec
            .decode(kind, resp.resources.iter())
            .and_then(|d| duplicate_check(kind, &d.facts).map(|()| d));
        let decoded = match checked {
            Ok(d) => d,
            Err(msg) => {
                self.rec.nacked(kind, &msg);
                return self.request(kind, Some(msg)).await;
            }
        };
        if !kind.is_wildcard() {
            let wanted = if kind == Kind::Eds {
                &self.eds
            } else {
                &self.rds
            };
            let extra = decoded
                .facts
                .iter()
                .filter(|f| wanted.names.binary_search(&f.name).is_err())
                .count();
            self.rec.shared.unrequested.fetch_add(extra as u64, Relaxed);
        }
        self.st[k].version = resp.version_info;
        self.request(kind, None).await?;
        self.st[k].acked = true;
        let held = if kind.is_wildcard() {
            decoded.facts.len()
        } else {
            self.names(kind).len()
        };
        self.rec
            .acked(kind, &decoded, kind.is_wildcard(), &[], held);
        self.follow_up(kind, &decoded.facts).await?;
        if self.is_ready() {
            self.rec.mark_ready();
        }
        Ok(())
    }

    /// What Envoy asks for next: EDS after clusters, LDS once clusters are
    /// warm, RDS after listeners.
    async fn follow_up(&mut self, kind: Kind, facts: &[Facts]) -> Result<(), Closed> {
        match kind {
            Kind::Cds => {
                let eds = self
                    .rec
                    .shared
                    .intern(facts.iter().filter_map(|f| f.eds.clone()).collect());
                let changed = eds.names != self.eds.names;
                self.eds = eds;
                *self.rec.shared.proxies[self.rec.idx].eds.lock() = Some(self.eds.clone());
                self.rec.subscribed[0] = Some(self.eds.clone());
                if changed || (!self.st[Kind::Eds as usize].requested && !self.eds.names.is_empty())
                {
                    self.request(Kind::Eds, None).await?;
                }
                if self.eds.names.is_empty() {
                    self.request_lds_once().await?;
                }
            }
            Kind::Eds => self.request_lds_once().await?,
            Kind::Lds => {
                let rds = self
                    .rec
                    .shared
                    .intern(facts.iter().flat_map(|f| f.rds.iter().cloned()).collect());
                if rds.names != self.rds.names {
                    self.rds = rds;
                    self.rec.subscribed[1] = Some(self.rds.clone());
                    self.request(Kind::Rds, None).await?;
                }
            }
            Kind::Rds => {}
        }
        Ok(())
    }

    async fn request_lds_once(&mut self) -> Result<(), Closed> {
        if self.st[Kind::Lds as usize].requested {
            return Ok(());
        }
        self.request(Kind::Lds, None).await
    }

    fn is_ready(&self) -> bool {
        let acked = |k: Kind| self.st[k as usize].acked;
        acked(Kind::Cds)
            && acked(Kind::Lds)
            && (self.eds.names.is_empty() || acked(Kind::Eds))
            && (self.rds.names.is_empty() || acked(Kind::Rds))
    }
}

/// Envoy rejects a CDS or LDS update that names a resource twice.
pub fn duplicate_check(kind: Kind, facts: &[Facts]) -> Result<(), String> {
    let mut names: Vec<&str> = facts.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    match names.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(format!(
            "duplicate {} resource {:?} in one response",
            kind.short(),
            w[0]
        )),
        None => Ok(()),
    }
}
