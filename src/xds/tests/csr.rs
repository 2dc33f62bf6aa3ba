//! Istio's CreateCertificate on the TLS xDS port: a real tonic client, a real
//! CA and real tokens. The certificate is for the token's identity, whatever
//! the CSR asks for.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, SanType};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::harness::TIMEOUT;
use super::identity::Tls;
use crate::auth::{AuthError, TokenIdentity};
use crate::ca::Ca;
use crate::xds::csr::{IstioCertificateRequest, IstioCertificateResponse, PATH};
use crate::xds::{serve_tls, Authenticate, ServingCert, XdsContext};

const NODE_ID: &str = "spiffe://cluster.local/ns/demo/sa/default";

/// A CSR from a greedy client: another identity's SPIFFE ID and a subject.
fn csr_for(key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "evil");
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://cluster.local/ns/other/sa/evil"
            .try_into()
            .unwrap(),
    )];
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn request(
    csr: String,
    validity_duration: i64,
    token: Option<&str>,
) -> tonic::Request<IstioCertificateRequest> {
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration,
        metadata: None,
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("token is ASCII");
        req.metadata_mut().insert("authorization", value);
    }
    req
}

/// One unary CreateCertificate call, as an Istio agent makes it.
async fn create_certificate(
    endpoint: Endpoint,
    req: tonic::Request<IstioCertificateRequest>,
) -> Result<IstioCertificateResponse, tonic::Status> {
    let call = async {
        let channel = endpoint.connect().await.expect("connect to the xDS port");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("channel ready");
        let codec =
            tonic_prost::ProstCodec::<IstioCertificateRequest, IstioCertificateResponse>::default();
        grpc.unary(req, PathAndQuery::from_static(PATH), codec)
            .await
            .map(tonic::Response::into_inner)
    };
    tokio::time::timeout(TIMEOUT, call)
        .await
        .expect("CreateCertificate timed out")
}

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .expect("PEM")
        .1
        .contents
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().expect("a SAN");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_csr_is_signed_for_the_tokens_identity_not_the_one_it_asks_for() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let metrics = tls.harness.ctx.metrics.clone();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let before = unix_now();
    let response = create_certificate(
        tls.endpoint(),
        request(csr_for(&key), 600, Some(&tls.node_token())),
    )
    .await
    .unwrap();
    let after = unix_now();

    let chain = &response.cert_chain;
    assert!(chain.len() >= 2, "leaf and roots at least: {chain:?}");
    assert_eq!(
        chain.last().unwrap(),
        &tls.root_pem,
        "the trust bundle last"
    );
    assert_eq!(response.root_cert, None);
    let leaf_der = der(&chain[0]);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    assert_eq!(uri_sans(&leaf), [NODE_ID]);
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info(),
        "the CSR's key is certified"
    );
    let issuer_der = der(&chain[1]);
    let (_, issuer) = X509Certificate::from_der(&issuer_der).unwrap();
    leaf.verify_signature(Some(issuer.public_key()))
        .expect("the leaf is signed by the next certificate in the chain");
    // validity_duration 600: notAfter is now + 600 s, to the second.
    let not_after = leaf.validity().not_after.timestamp();
    assert!(
        (before + 600 - 1..=after + 600).contains(&not_after),
        "notAfter {not_after}, requested around {before} + 600"
    );
    assert_eq!(metrics.csr_issued.get(), 1);
    assert!(metrics.encode().contains("rudder_csr_issued_total 1"));
    // A CSR is not a lease: the SDS store holds nothing for it.
    assert!(tls.secrets.status(SystemTime::now()).is_empty());
}

#[tokio::test]
async fn the_lifetime_is_capped_at_the_configured_one() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    for requested in [30 * 86_400, 0] {
        let before = unix_now();
        let response = create_certificate(
            tls.endpoint(),
            request(csr_for(&key), requested, Some(&tls.node_token())),
        )
        .await
        .unwrap();
        let after = unix_now();
        let leaf_der = der(&response.cert_chain[0]);
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        let not_after = leaf.validity().not_after.timestamp();
        assert!(
            (before + 3600 - 1..=after + 3600).contains(&not_after),
            "requested {requested} s: notAfter {not_after}, want about {before} + 3600"
        );
    }
}

#[tokio::test]
async fn callers_without_a_token_are_refused() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let status = create_certificate(tls.endpoint(), request(csr_for(&key), 0, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("Bearer"), "{}", status.message());
    assert_eq!(tls.harness.ctx.metrics.csr_issued.get(), 0);
}

#[tokio::test]
async fn a_garbage_csr_is_an_invalid_argument() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let status = create_certificate(
        tls.endpoint(),
        request("not a CSR".into(), 0, Some(&tls.node_token())),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("certificate signing request"),
        "{}",
        status.message()
    );
    // Far larger than any CSR: refused before it is decoded.
    let huge = "A".repeat(1 << 20);
    let status = create_certificate(tls.endpoint(), request(huge, 0, Some(&tls.node_token())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    assert_eq!(tls.harness.ctx.metrics.csr_issued.get(), 0);
}

#[tokio::test]
async fn the_plaintext_port_signs_nothing() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    // A plaintext server with the CA attached: refused for want of a proven
    // identity, not of a CA.
    let url = tls.plaintext_url().await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    // Even with a valid token: the plaintext port does not check tokens.
    let status = create_certificate(
        Endpoint::from_shared(url).unwrap(),
        request(csr_for(&key), 0, Some(&tls.node_token())),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("TLS"), "{}", status.message());
    assert_eq!(tls.harness.ctx.metrics.csr_issued.get(), 0);
}

/// Vouches for every token as demo/default: for a server without a CA, where
/// the token is not what is being tested.
struct AnyToken;

impl Authenticate for AnyToken {
    fn authenticate<'a>(
        &'a self,
        _token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<TokenIdentity, AuthError>> {
        Box::pin(async {
            Ok(TokenIdentity {
                namespace: "demo".into(),
                service_account: "default".into(),
            })
        })
    }
}

#[tokio::test]
async fn without_a_ca_the_call_is_unavailable() {
    let tls = Tls::start(Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::load_or_create(dir.path(), "cluster.local").unwrap());
    let root_pem = ca.trust_bundle();
    let serving = ServingCert::new(ca, vec!["localhost".into()], Duration::from_secs(3600))
        .expect("serving certificate");
    // The TLS port, but a context without workload secrets.
    let ctx = XdsContext::new(
        tls.harness.ctx.snapshots.clone(),
        None,
        tls.harness.ctx.metrics.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_tls(
        listener,
        ctx,
        Arc::new(serving),
        Arc::new(AnyToken),
        std::future::pending(),
    ));
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&root_pem))
                .domain_name("localhost"),
        )
        .unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let status = create_certificate(endpoint, request(csr_for(&key), 0, Some("any")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("--ca-dir"),
        "{}",
        status.message()
    );
}
