//! Fake Envoys: a tonic client on each ADS variant that sends what Envoy sends
//! (node on the first request, ACK/NACK with version and nonce) and fails the
//! test, instead of hanging, when a response does not come.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use super::harness::{describe, describe_delta, eds_names, node, rds_names, QUIET, TIMEOUT};
use super::harness::{CDS, EDS, LDS, RDS};
use crate::xds::TypeUrl;

// ---------------------------------------------------------------------------
// A bidirectional ADS stream, either variant.

struct Wire<Req, Resp> {
    tx: mpsc::Sender<Req>,
    rx: Streaming<Resp>,
    _client: AggregatedDiscoveryServiceClient<Channel>,
}

impl<Req, Resp: Send + 'static> Wire<Req, Resp> {
    async fn send(&self, req: Req) {
        self.tx
            .send(req)
            .await
            .unwrap_or_else(|_| panic!("the request stream is closed"));
    }

    /// The next message, `None` if nothing arrives within `wait`; fails on a
    /// stream error or end.
    async fn next(&mut self, wait: Duration) -> Option<Resp> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(r),
            Ok(Ok(None)) => panic!("the server ended the stream"),
            Ok(Err(status)) => panic!("the stream failed: {status}"),
        }
    }

    async fn status(&mut self) -> tonic::Status {
        match tokio::time::timeout(TIMEOUT, self.rx.message()).await {
            Err(_) => panic!("the stream neither failed nor ended within {TIMEOUT:?}"),
            Ok(Ok(Some(_))) => panic!("expected the stream to fail, got a response"),
            Ok(Ok(None)) => panic!("the stream ended without an error status"),
            Ok(Err(status)) => status,
        }
    }
}

fn bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("token is ASCII");
        req.metadata_mut().insert("authorization", value);
    }
    req
}

async fn client(endpoint: Endpoint) -> AggregatedDiscoveryServiceClient<Channel> {
    let channel = tokio::time::timeout(TIMEOUT, endpoint.connect())
        .await
        .expect("connecting timed out")
        .expect("connect to the xDS server");
    AggregatedDiscoveryServiceClient::new(channel)
}

// ---------------------------------------------------------------------------
// State-of-the-World Envoy.

pub struct Envoy {
    pub id: String,
    wire: Wire<DiscoveryRequest, DiscoveryResponse>,
    sent_node: bool,
    /// Per type URL: current subscription, last accepted version, last nonce seen.
    names: BTreeMap<String, Vec<String>>,
    accepted: BTreeMap<String, String>,
    nonces: BTreeMap<String, String>,
}

impl Envoy {
    pub async fn connect(endpoint: Endpoint, id: &str) -> Envoy {
        Envoy::open(endpoint, id, None)
            .await
            .expect("open the ADS stream")
    }

    /// Opens a stream carrying `authorization: Bearer TOKEN` when given, as
    /// Envoy's file_based_metadata credentials do; a refusal is returned.
    pub async fn open(
        endpoint: Endpoint,
        id: &str,
        token: Option<&str>,
    ) -> Result<Envoy, tonic::Status> {
        let mut client = client(endpoint).await;
        let (tx, rx) = mpsc::channel(16);
        let response = tokio::time::timeout(
            TIMEOUT,
            client.stream_aggregated_resources(bearer(ReceiverStream::new(rx), token)),
        )
        .await
        .expect("opening the ADS stream timed out")?;
        Ok(Envoy {
            id: id.to_string(),
            wire: Wire {
                tx,
                rx: response.into_inner(),
                _client: client,
            },
            sent_node: false,
            names: BTreeMap::new(),
            accepted: BTreeMap::new(),
            nonces: BTreeMap::new(),
        })
    }

    /// Sends a request as is, adding the node to the stream's first one (as
    /// Envoy does with `set_node_on_first_message_only`).
    pub async fn send(&mut self, mut req: DiscoveryRequest) {
        if !self.sent_node {
            req.node = Some(node(&self.id));
            self.sent_node = true;
        }
        self.wire.send(req).await;
    }

    /// Subscribes to (or changes the subscription of) one type, carrying the
    /// last accepted version and the last nonce seen, as Envoy does.
    pub async fn request(&mut self, t: TypeUrl, names: &[&str]) {
        let url = t.url().to_string();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self.names.insert(url.clone(), names.clone());
        let req = DiscoveryRequest {
            version_info: self.accepted.get(&url).cloned().unwrap_or_default(),
            resource_names: names,
            type_url: url.clone(),
            response_nonce: self.nonces.get(&url).cloned().unwrap_or_default(),
            ..Default::default()
        };
        self.send(req).await;
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        let r = self
            .wire
            .next(TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{}: no response within {TIMEOUT:?}", self.id));
        self.nonces.insert(r.type_url.clone(), r.nonce.clone());
        r
    }

    /// The next response, or `None` if nothing comes within `wait`.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<DiscoveryResponse> {
        let r = self.wire.next(wait).await?;
        self.nonces.insert(r.type_url.clone(), r.nonce.clone());
        Some(r)
    }

    pub async fn recv_type(&mut self, t: TypeUrl) -> DiscoveryResponse {
        let r = self.recv().await;
        assert_eq!(
            r.type_url,
            t.url(),
            "expected a {} response, got {}",
            t.short(),
            describe(&r)
        );
        r
    }

    /// At least one response, then everything until the stream is quiet.
    pub async fn recv_burst(&mut self) -> Vec<DiscoveryResponse> {
        let first = self.recv().await;
        let mut out = vec![first];
        out.extend(self.recv_until_quiet().await);
        out
    }

    /// Everything that arrives until the stream has been quiet for `QUIET`.
    pub async fn recv_until_quiet(&mut self) -> Vec<DiscoveryResponse> {
        let mut out = Vec::new();
        while let Some(r) = self.wire.next(QUIET).await {
            self.nonces.insert(r.type_url.clone(), r.nonce.clone());
            out.push(r);
        }
        out
    }

    pub async fn assert_silent(&mut self, context: &str) {
        if let Some(r) = self.wire.next(QUIET).await {
            panic!("{context}: expected no response, got {}", describe(&r));
        }
    }

    pub async fn recv_status(&mut self) -> tonic::Status {
        self.wire.status().await
    }

    pub async fn ack(&mut self, r: &DiscoveryResponse) {
        self.accepted
            .insert(r.type_url.clone(), r.version_info.clone());
        let req = DiscoveryRequest {
            version_info: r.version_info.clone(),
            resource_names: self.names.get(&r.type_url).cloned().unwrap_or_default(),
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        };
        self.send(req).await;
    }

    /// Refuses a response: the version stays the last accepted one.
    pub async fn nack(&mut self, r: &DiscoveryResponse, message: &str) {
        let req = DiscoveryRequest {
            version_info: self.accepted.get(&r.type_url).cloned().unwrap_or_default(),
            resource_names: self.names.get(&r.type_url).cloned().unwrap_or_default(),
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: tonic::Code::InvalidArgument as i32,
                message: message.to_string(),
                details: vec![],
            }),
            ..Default::default()
        };
        self.send(req).await;
    }

    /// Envoy's start-up sequence: CDS, then EDS for the EDS clusters, LDS,
    /// then RDS for the listeners' route configs, ACKing each response.
    pub async fn warm_up(&mut self) -> Warm {
        self.request(CDS, &[]).await;
        let cds = self.recv_type(CDS).await;
        let eds_wanted = eds_names(&cds.resources);
        self.request(
            EDS,
            &eds_wanted.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        self.ack(&cds).await;
        let eds = self.recv_type(EDS).await;
        self.ack(&eds).await;
        self.request(LDS, &[]).await;
        let lds = self.recv_type(LDS).await;
        let rds_wanted = rds_names(&lds.resources);
        self.request(
            RDS,
            &rds_wanted.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        self.ack(&lds).await;
        let rds = self.recv_type(RDS).await;
        self.ack(&rds).await;
        Warm { cds, eds, lds, rds }
    }
}

/// The four responses of a warm-up.
pub struct Warm {
    pub cds: DiscoveryResponse,
    pub eds: DiscoveryResponse,
    pub lds: DiscoveryResponse,
    pub rds: DiscoveryResponse,
}

// ---------------------------------------------------------------------------
// Delta Envoy.

pub struct DeltaEnvoy {
    pub id: String,
    wire: Wire<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
    sent_node: bool,
}

impl DeltaEnvoy {
    pub async fn connect(endpoint: Endpoint, id: &str) -> DeltaEnvoy {
        DeltaEnvoy::open(endpoint, id, None)
            .await
            .expect("open the delta ADS stream")
    }

    pub async fn open(
        endpoint: Endpoint,
        id: &str,
        token: Option<&str>,
    ) -> Result<DeltaEnvoy, tonic::Status> {
        let mut client = client(endpoint).await;
        let (tx, rx) = mpsc::channel(16);
        let response = tokio::time::timeout(
            TIMEOUT,
            client.delta_aggregated_resources(bearer(ReceiverStream::new(rx), token)),
        )
        .await
        .expect("opening the delta ADS stream timed out")?;
        Ok(DeltaEnvoy {
            id: id.to_string(),
            wire: Wire {
                tx,
                rx: response.into_inner(),
                _client: client,
            },
            sent_node: false,
        })
    }

    pub async fn send(&mut self, mut req: DeltaDiscoveryRequest) {
        if !self.sent_node {
            req.node = Some(node(&self.id));
            self.sent_node = true;
        }
        self.wire.send(req).await;
    }

    /// Changes one type's subscription (no nonce: not an ACK).
    pub async fn subscribe(&mut self, t: TypeUrl, subscribe: &[&str], unsubscribe: &[&str]) {
        self.send(DeltaDiscoveryRequest {
            type_url: t.url().to_string(),
            resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await;
    }

    /// A first request on a new stream that says what the proxy already holds.
    pub async fn resume(
        &mut self,
        t: TypeUrl,
        subscribe: &[&str],
        initial: &BTreeMap<String, String>,
    ) {
        self.send(DeltaDiscoveryRequest {
            type_url: t.url().to_string(),
            resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            initial_resource_versions: initial.clone().into_iter().collect(),
            ..Default::default()
        })
        .await;
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        self.wire
            .next(TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{}: no delta response within {TIMEOUT:?}", self.id))
    }

    pub async fn recv_type(&mut self, t: TypeUrl) -> DeltaDiscoveryResponse {
        let r = self.recv().await;
        assert_eq!(
            r.type_url,
            t.url(),
            "expected a delta {} response, got {}",
            t.short(),
            describe_delta(&r)
        );
        r
    }

    /// At least one response, then everything until the stream is quiet.
    pub async fn recv_burst(&mut self) -> Vec<DeltaDiscoveryResponse> {
        let first = self.recv().await;
        let mut out = vec![first];
        out.extend(self.recv_until_quiet().await);
        out
    }

    pub async fn recv_until_quiet(&mut self) -> Vec<DeltaDiscoveryResponse> {
        let mut out = Vec::new();
        while let Some(r) = self.wire.next(QUIET).await {
            out.push(r);
        }
        out
    }

    pub async fn assert_silent(&mut self, context: &str) {
        if let Some(r) = self.wire.next(QUIET).await {
            panic!(
                "{context}: expected no response, got {}",
                describe_delta(&r)
            );
        }
    }

    pub async fn ack(&mut self, r: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    pub async fn nack(&mut self, r: &DeltaDiscoveryResponse, message: &str) {
        self.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: tonic::Code::InvalidArgument as i32,
                message: message.to_string(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await;
    }
}
