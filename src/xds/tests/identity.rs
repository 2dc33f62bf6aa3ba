//! The TLS xDS port: who may connect, and which secrets each caller gets.
//! A real CA, real tokens and a real TLS client; nothing is stubbed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::harness::{decode, mesh, names, Harness, API_IPS, NODE, WEB_IPS};
use super::harness::{DeltaEnvoy, Envoy, TypeUrl};
use crate::auth::{generate_key_pair, TokenIdentity, TokenMinter, TokenVerifier};
use crate::ca::Ca;
use crate::xds::{serve_tls, Authenticate, ServingCert, WorkloadSecrets};

const SDS: TypeUrl = TypeUrl::Secret;
const ISSUER: &str = "rudder-test";

/// The harness's mesh served on a TLS port that verifies tokens.
pub(super) struct Tls {
    pub(super) harness: Harness,
    pub(super) secrets: Arc<WorkloadSecrets>,
    url: String,
    pub(super) root_pem: String,
    minter: TokenMinter,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Tls {
    pub(super) async fn start(ttl: Duration) -> Tls {
        let harness = Harness::start(&mesh(WEB_IPS, API_IPS)).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(Ca::load_or_create(dir.path(), "cluster.local").unwrap());
        let root_pem = ca.trust_bundle();
        let secrets = WorkloadSecrets::new(ca.clone(), ttl);
        // The harness's context, with the CA's certificates attached.
        let ctx = crate::xds::XdsContext::new(
            harness.ctx.snapshots.clone(),
            Some(secrets.clone()),
            harness.ctx.metrics.clone(),
        );
        let serving = ServingCert::new(ca, vec!["localhost".into()], Duration::from_secs(3600))
            .expect("serving certificate");
        let (private, public) = generate_key_pair().unwrap();
        let verifier: Arc<dyn Authenticate> =
            Arc::new(TokenVerifier::new(ISSUER.into(), vec!["rudder".into()], &public).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve_tls(
            listener,
            ctx,
            Arc::new(serving),
            verifier,
            async move {
                let _ = stopped.await;
            },
        ));
        Tls {
            harness,
            secrets,
            url: format!("https://localhost:{}", addr.port()),
            root_pem,
            minter: TokenMinter::new(&private, ISSUER.into()).unwrap(),
            _dir: dir,
            _stop: stop,
        }
    }

    /// A plaintext server on the same mesh and with the same CA attached,
    /// as `rudder serve --ca-dir` runs beside the TLS port.
    pub(super) async fn plaintext_url(&self) -> String {
        let ctx = crate::xds::XdsContext::new(
            self.harness.ctx.snapshots.clone(),
            Some(self.secrets.clone()),
            self.harness.ctx.metrics.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(crate::xds::serve(listener, ctx, std::future::pending()));
        url
    }

    pub(super) fn endpoint(&self) -> Endpoint {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.root_pem))
            .domain_name("localhost");
        Endpoint::from_shared(self.url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
    }

    pub(super) fn token(
        &self,
        namespace: &str,
        sa: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> String {
        let id = TokenIdentity {
            namespace: namespace.into(),
            service_account: sa.into(),
        };
        self.minter
            .mint(&id, &["rudder".to_string()], ttl, now)
            .unwrap()
    }

    /// A token for the node the harness uses: namespace demo, account default.
    pub(super) fn node_token(&self) -> String {
        self.token(
            "demo",
            "default",
            Duration::from_secs(3600),
            SystemTime::now(),
        )
    }

    async fn sotw(&self, token: Option<&str>) -> Result<Envoy, tonic::Status> {
        Envoy::open(self.endpoint(), NODE, token).await
    }
}

/// The SPIFFE URI in the `default` secret's leaf certificate, and its serial.
fn leaf_of(secret: &Secret) -> (String, Vec<u8>) {
    let Some(secret::Type::TlsCertificate(cert)) = &secret.r#type else {
        panic!("{} is not a certificate secret", secret.name);
    };
    let Some(Specifier::InlineBytes(pem)) =
        cert.certificate_chain.as_ref().unwrap().specifier.clone()
    else {
        panic!("certificate chain is not inline");
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, x509) = X509Certificate::from_der(&pem.contents).unwrap();
    let san = x509.subject_alternative_name().unwrap().unwrap();
    let uri = san
        .value
        .general_names
        .iter()
        .find_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .expect("a URI SAN");
    (uri, x509.raw_serial().to_vec())
}

fn secrets_in(r: &[envoy_types::pb::google::protobuf::Any]) -> Vec<Secret> {
    r.iter().map(decode::<Secret>).collect()
}

#[tokio::test]
async fn an_authenticated_proxy_gets_its_own_identity_and_the_trust_bundle() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let mut envoy = tls.sotw(Some(&tls.node_token())).await.unwrap();
    envoy.request(SDS, &["default", "ROOTCA"]).await;
    let r = envoy.recv_type(SDS).await;
    assert_eq!(names(&r.resources), ["ROOTCA", "default"]);
    let secrets = secrets_in(&r.resources);
    let (uri, _) = leaf_of(&secrets[1]);
    assert_eq!(uri, "spiffe://cluster.local/ns/demo/sa/default");
    let Some(secret::Type::ValidationContext(root)) = &secrets[0].r#type else {
        panic!("ROOTCA is not a validation context");
    };
    let Some(Specifier::InlineBytes(bundle)) = root.trusted_ca.as_ref().unwrap().specifier.clone()
    else {
        panic!("bundle not inline");
    };
    assert_eq!(String::from_utf8(bundle).unwrap(), tls.root_pem);
    // The rest of the config flows on the same stream.
    envoy.request(TypeUrl::Cluster, &[]).await;
    assert!(!envoy.recv_type(TypeUrl::Cluster).await.resources.is_empty());
}

#[tokio::test]
async fn the_plaintext_port_never_sends_a_private_key() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let url = tls.plaintext_url().await;
    let mut envoy = Envoy::connect(Endpoint::from_shared(url).unwrap(), NODE).await;
    envoy.request(SDS, &["default", "ROOTCA"]).await;
    let r = envoy.recv_type(SDS).await;
    assert_eq!(names(&r.resources), ["ROOTCA"]);
    assert!(
        tls.secrets.status(SystemTime::now()).is_empty(),
        "nothing issued"
    );
}

#[tokio::test]
async fn a_token_for_another_service_account_is_refused() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let other = tls.token(
        "demo",
        "payments",
        Duration::from_secs(3600),
        SystemTime::now(),
    );
    let mut envoy = tls.sotw(Some(&other)).await.unwrap();
    envoy.request(SDS, &["default"]).await;
    let status = envoy.recv_status().await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("\"payments\""),
        "{}",
        status.message()
    );
    let other_ns = tls.token(
        "prod",
        "default",
        Duration::from_secs(3600),
        SystemTime::now(),
    );
    let mut envoy = tls.sotw(Some(&other_ns)).await.unwrap();
    envoy.request(SDS, &["default"]).await;
    assert_eq!(
        envoy.recv_status().await.code(),
        tonic::Code::PermissionDenied
    );
    assert!(
        tls.secrets.status(SystemTime::now()).is_empty(),
        "nothing issued"
    );
}

#[tokio::test]
async fn missing_expired_and_forged_tokens_are_refused() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let refused = |r: Result<Envoy, tonic::Status>| match r {
        Ok(_) => panic!("the stream was accepted"),
        Err(status) => status,
    };
    let status = refused(tls.sotw(None).await);
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("Bearer"), "{}", status.message());

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let expired = tls.token("demo", "default", Duration::from_secs(600), an_hour_ago);
    let status = refused(tls.sotw(Some(&expired)).await);
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());

    let (forger_key, _) = generate_key_pair().unwrap();
    let forger = TokenMinter::new(&forger_key, ISSUER.into()).unwrap();
    let id = TokenIdentity {
        namespace: "demo".into(),
        service_account: "default".into(),
    };
    let forged = forger
        .mint(
            &id,
            &["rudder".into()],
            Duration::from_secs(600),
            SystemTime::now(),
        )
        .unwrap();
    let status = refused(tls.sotw(Some(&forged)).await);
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        !status.message().contains(&forged),
        "the token must not be echoed"
    );
}

#[tokio::test]
async fn rotation_pushes_a_new_certificate_on_open_streams() {
    let tls = Tls::start(Duration::from_secs(60)).await;
    let token = tls.node_token();
    let mut sotw = tls.sotw(Some(&token)).await.unwrap();
    sotw.request(SDS, &["default", "ROOTCA"]).await;
    let first = sotw.recv_type(SDS).await;
    sotw.ack(&first).await;
    let mut delta = DeltaEnvoy::open(tls.endpoint(), NODE, Some(&token))
        .await
        .unwrap();
    delta.subscribe(SDS, &["default", "ROOTCA"], &[]).await;
    let d_first = delta.recv_type(SDS).await;
    delta.ack(&d_first).await;
    let (_, serial) = leaf_of(&secrets_in(&first.resources)[1]);

    // Not due yet: nothing moves.
    assert_eq!(tls.secrets.rotate_due(SystemTime::now()), 0);
    sotw.assert_silent("no rotation due").await;
    // Past 80 % of the 60 s life: one identity, one new certificate.
    let later = SystemTime::now() + Duration::from_secs(50);
    assert_eq!(tls.secrets.rotate_due(later), 1);
    let pushed = sotw.recv_type(SDS).await;
    // SotW resends only what changed: the new `default`, not ROOTCA.
    assert_eq!(names(&pushed.resources), ["default"]);
    let (uri, new_serial) = leaf_of(&secrets_in(&pushed.resources)[0]);
    assert_eq!(uri, "spiffe://cluster.local/ns/demo/sa/default");
    assert_ne!(serial, new_serial, "a fresh certificate");
    let d_pushed = delta.recv_type(SDS).await;
    let d_names: Vec<&str> = d_pushed.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(d_names, ["default"]);
}
