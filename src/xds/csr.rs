//! Istio's CSR API, `istio.v1.auth.IstioCertificateService/CreateCertificate`,
//! on the TLS xDS port: a workload that brings its own key (a VM, an Istio
//! agent) sends a PKCS#10 request and gets a certificate for the identity its
//! bearer token proves.
//!
//! The messages are hand-written to match `proto/istio/v1/auth/ca.proto`
//! (vendored from istio/api); the tests below pin their tags with known bytes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::google::protobuf::Struct;
use tonic::codegen::BoxFuture;
use tonic::{Request, Response, Status};

use super::server::XdsContext;
use super::session::Caller;
use crate::ca::{CaError, Identity};

/// The service name tonic's router dispatches on.
pub(super) const SERVICE: &str = "istio.v1.auth.IstioCertificateService";
pub(super) const PATH: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";
/// A request is a CSR of about 1 KiB and a little metadata; the CA refuses
/// CSRs over 64 KiB, so nothing larger is worth decoding.
pub(super) const MAX_REQUEST_BYTES: usize = 128 << 10;

/// `istio.v1.auth.IstioCertificateRequest`. Tag 2 (`subject_id`, in older
/// versions of the proto) is gone upstream; prost skips it if an old client
/// still sends it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded PKCS#10 request; only its public key is used.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested lifetime in seconds; zero or less means the default.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque node metadata. Read by nobody here: in particular Istio's
    /// `ImpersonatedIdentity` is not honoured (see [`create`]).
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<Struct>,
}

/// `istio.v1.auth.IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// Leaf, intermediates, then the whole trust bundle as one last entry.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
    /// The newer, optional roots field. Left unset, as istiod leaves it, so
    /// every agent version reads the root from the end of `cert_chain`.
    #[prost(message, optional, tag = "2")]
    pub root_cert: Option<Roots>,
}

/// `istio.v1.auth.Roots`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Roots {
    #[prost(string, repeated, tag = "1")]
    pub ca_cert: Vec<String>,
}

/// One `CreateCertificate` call, with the caller `authenticate()` proved.
pub(super) struct CreateCertificate {
    pub(super) ctx: Arc<XdsContext>,
    pub(super) caller: Caller,
}

impl tonic::server::UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<Response<IstioCertificateResponse>, Status>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        let (ctx, caller) = (self.ctx.clone(), self.caller.clone());
        Box::pin(async move {
            create(&ctx, &caller, request.into_inner())
                .await
                .map(Response::new)
        })
    }
}

/// Signs the request's public key for the caller's own identity.
///
/// The identity is the token's namespace and service account in the CA's
/// trust domain, whatever the CSR asks for. Istio lets some callers name
/// another identity in the `ImpersonatedIdentity` metadata (node agents
/// acting for pods); Rudder does not: nothing here trusts one workload to
/// speak for another, so the metadata is ignored.
async fn create(
    ctx: &XdsContext,
    caller: &Caller,
    request: IstioCertificateRequest,
) -> Result<IstioCertificateResponse, Status> {
    let token = match caller {
        Caller::Authenticated(token) => token,
        Caller::Anonymous => {
            return Err(Status::unauthenticated(
                "CreateCertificate needs a proven identity: call it on the TLS xDS port \
                 (--xds-tls-addr) with `authorization: Bearer <service-account token>`",
            ))
        }
    };
    let Some(secrets) = &ctx.secrets else {
        return Err(Status::unavailable(
            "cannot sign certificates: Rudder runs with no CA (--ca-dir)",
        ));
    };
    let ca = secrets.ca().clone();
    let identity = Identity::new(ca.trust_domain(), &token.namespace, &token.service_account)
        .map_err(|e| Status::internal(format!("the token's identity cannot be certified: {e}")))?;
    let ttl = ttl(request.validity_duration, secrets.ttl());
    let csr = request.csr;
    let signed = {
        let identity = identity.clone();
        // Verifying the request and signing (RSA, for a plugged-in CA) is CPU work.
        tokio::task::spawn_blocking(move || ca.sign_csr(&csr, &identity, ttl, SystemTime::now()))
            .await
            .map_err(|e| Status::internal(format!("signing task failed: {e}")))?
    };
    let cert_chain = signed.map_err(|e| match e {
        CaError::InvalidCsr(_) => Status::invalid_argument(e.to_string()),
        e => Status::internal(format!("signing a certificate for {identity}: {e}")),
    })?;
    ctx.metrics.csr_issued.inc();
    tracing::info!(
        %identity,
        ttl = %humantime::format_duration(ttl),
        "signed a CSR (CreateCertificate)"
    );
    Ok(IstioCertificateResponse {
        cert_chain,
        root_cert: None,
    })
}

/// The requested lifetime, capped at the configured one; the configured one
/// when none is requested. istiod refuses a request over its maximum TTL (a
/// separate setting, 90 days by default) instead; capping never fails a
/// workload for asking too much.
fn ttl(requested_secs: i64, configured: Duration) -> Duration {
    match u64::try_from(requested_secs) {
        Ok(secs) if secs > 0 => Duration::from_secs(secs).min(configured),
        _ => configured,
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::{value::Kind, Value};
    use prost::Message;

    use super::*;

    /// Encodings worked out by hand from the tags in `ca.proto`; a wrong tag
    /// or type in the structs above changes these bytes.
    #[test]
    fn messages_match_the_vendored_proto() {
        let request = IstioCertificateRequest {
            csr: "x".into(),
            validity_duration: 600,
            metadata: Some(Struct {
                fields: [(
                    "k".to_string(),
                    Value {
                        kind: Some(Kind::StringValue("v".into())),
                    },
                )]
                .into_iter()
                .collect(),
            }),
        };
        let request_bytes = [
            0x0a, 0x01, b'x', // csr = 1: "x"
            0x18, 0xd8, 0x04, // validity_duration = 3: varint 600
            0x22, 0x0a, // metadata = 4, 10 bytes: Struct
            0x0a, 0x08, // fields = 1, one map entry of 8 bytes
            0x0a, 0x01, b'k', // key
            0x12, 0x03, 0x1a, 0x01, b'v', // value: Value { string_value = 3: "v" }
        ];
        assert_eq!(request.encode_to_vec(), request_bytes);
        assert_eq!(
            IstioCertificateRequest::decode(&request_bytes[..]).unwrap(),
            request
        );

        let response = IstioCertificateResponse {
            cert_chain: vec!["a".into(), "b".into()],
            root_cert: Some(Roots {
                ca_cert: vec!["r".into()],
            }),
        };
        let response_bytes = [
            0x0a, 0x01, b'a', 0x0a, 0x01, b'b', // cert_chain = 1, repeated
            0x12, 0x03, 0x0a, 0x01, b'r', // root_cert = 2: Roots { ca_cert = 1 }
        ];
        assert_eq!(response.encode_to_vec(), response_bytes);
        assert_eq!(
            IstioCertificateResponse::decode(&response_bytes[..]).unwrap(),
            response
        );
    }

    #[test]
    fn an_old_clients_subject_id_is_skipped() {
        // subject_id = 2: "s", then csr = 1: "x".
        let bytes = [0x12, 0x01, b's', 0x0a, 0x01, b'x'];
        let request = IstioCertificateRequest::decode(&bytes[..]).unwrap();
        assert_eq!(request.csr, "x");
    }

    #[test]
    fn the_requested_lifetime_is_capped_at_the_configured_one() {
        let day = Duration::from_secs(86_400);
        assert_eq!(ttl(600, day), Duration::from_secs(600));
        assert_eq!(ttl(10 * 86_400, day), day);
        assert_eq!(ttl(0, day), day);
        assert_eq!(ttl(-5, day), day);
        assert_eq!(ttl(i64::MAX, day), day);
    }
}
