//! The webhook server itself: HTTPS with Rudder's certificate, HTTP/1.1 and
//! HTTP/2, as the API server calls it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::{review_json, yaml, UID};
use crate::ca::Ca;
use crate::webhook::{serve, server_config, Template};
use crate::xds::ServingCert;

struct Server {
    url: String,
    root_pem: String,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::load_or_create(dir.path(), "cluster.local").unwrap());
    let root_pem = ca.trust_bundle();
    let cert = ServingCert::new(ca, vec!["localhost".into()], Duration::from_secs(3600)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let template = Template {
        proxy_image: "envoyproxy/envoy:v1.40.0".into(),
        init_image: "ghcr.io/rudder-mesh/rudder:test".into(),
        xds_addr: "rudder.rudder-system.svc:15012".into(),
        token_audience: "rudder".into(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        server_config(Arc::new(cert)),
        Arc::new(template),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        url: format!("https://localhost:{port}"),
        root_pem,
        _dir: dir,
        _stop: stop,
    }
}

fn client(server: &Server, http1_only: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(server.root_pem.as_bytes()).unwrap();
    let builder = reqwest::Client::builder()
        .add_root_certificate(root)
        .timeout(Duration::from_secs(10));
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().unwrap()
}

fn pod_review() -> Value {
    let pod = yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers: [{name: app, image: example/web}]\n");
    review_json(("", "v1", "Pod"), "CREATE", "shop", pod, Value::Null)
}

fn bad_vs_review() -> Value {
    let vs = yaml("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: shop}\nspec:\n  hosts: [web]\n  http:\n  - route:\n    - destination: {host: web}\n      weight: -1\n");
    review_json(
        ("networking.istio.io", "v1", "VirtualService"),
        "CREATE",
        "shop",
        vs,
        Value::Null,
    )
}

#[tokio::test]
async fn reviews_over_https_with_http2_and_http1() {
    let server = start().await;
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let client = client(&server, http1_only);
        let resp = client
            .post(format!("{}/inject", server.url))
            .json(&pod_review())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), version);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], UID);
        assert_eq!(body["response"]["allowed"], true);
        assert_eq!(body["response"]["patchType"], "JSONPatch");
        assert!(body["response"]["patch"].is_string(), "{body}");

        let resp = client
            .post(format!("{}/validate", server.url))
            .json(&bad_vs_review())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["response"]["allowed"], false);
        assert_eq!(
            body["response"]["status"]["message"],
            "VirtualService shop/web: spec.http[0].route[0].weight: weight must not be negative, got -1"
        );
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_review_is_a_bad_request() {
    let server = start().await;
    let resp = client(&server, true)
        .post(format!("{}/validate", server.url))
        .body("{\"kind\": \"Pod\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("the body is not an AdmissionReview"),
        "{text}"
    );
}

#[tokio::test]
async fn clients_that_do_not_trust_rudders_root_are_refused() {
    let server = start().await;
    let plain = reqwest::Client::builder().build().unwrap();
    let err = plain
        .post(format!("{}/validate", server.url))
        .json(&bad_vs_review())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}
