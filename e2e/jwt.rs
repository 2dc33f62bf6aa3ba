//! RequestAuthentication through real Envoy: the server's sidecar verifies
//! end-user JWTs with `jwt_authn`, refusing a bad token with 401 and letting
//! a request without one through, as Istio does. Key sets inline, and
//! fetched by Envoy from a JWKS server that is itself a mesh service.
//!
//! Needs root (the pods harness; see e2e/support/pods.rs).

use std::time::Duration;

use serde_json::{json, Value};

use crate::capture::assert_all_acked;
use crate::support::jwt::{Claims, Idp};
use crate::support::mesh::{web_and_client, WebAndClient, NS, TLS_MODE};
use crate::support::*;

const WEB: &str = "http://web.demo:8080/";
const SETTLE: Duration = Duration::from_secs(20);

impl WebAndClient {
    /// A RequestAuthentication for `web` with `rules` (JSON is YAML).
    fn request_authentication(&self, name: &str, rules: Value) {
        let doc = json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "jwtRules": rules},
        });
        self.net
            .write_config(&format!("ra-{name}.yaml"), &doc.to_string());
    }

    /// GET web from the client, with `Authorization: Bearer TOKEN` if given
    /// and `headers` (`name: value`).
    fn get(&self, token: Option<&str>, headers: &[&str]) -> (u16, String) {
        let auth = token.map(|t| format!("authorization: Bearer {t}"));
        let mut args = Vec::new();
        for h in auth
            .iter()
            .map(String::as_str)
            .chain(headers.iter().copied())
        {
            args.extend(["-H", h]);
        }
        args.push(WEB);
        self.client.curl(&args)
    }

    /// Polls until `token` gets `status` (the policy has reached the sidecar).
    fn wait_status(&self, token: &str, status: u16, what: &str) {
        let mut last = (0, String::new());
        let reached = poll(SETTLE, || {
            last = self.get(Some(token), &[]);
            (last.0 == status).then_some(())
        });
        assert!(
            reached.is_some(),
            "{what}: expected {status}, last {} {}{}",
            last.0,
            last.1,
            self.web.context()
        );
    }

    fn expect(&self, token: Option<&str>, status: u16, what: &str) -> String {
        self.expect_with(token, &[], status, what)
    }

    fn expect_with(
        &self,
        token: Option<&str>,
        headers: &[&str],
        status: u16,
        what: &str,
    ) -> String {
        let (got, body) = self.get(token, headers);
        assert_eq!(got, status, "{what}: {body}{}", self.web.context());
        body
    }
}

#[test]
fn jwt_inline_jwks_refuses_bad_tokens_and_lets_missing_ones_pass() {
    let m = web_and_client("jwt_inline", "24h");
    let idp = Idp::new("https://idp.example");
    let good = Claims::new("alice", &["web"]).claim("groups", json!(["dev", "ops"]));
    // A token of an issuer with neither jwks nor jwksUri: Rudder cannot run
    // OpenID discovery, so that issuer fails closed.
    let discovery = Idp::new("https://discovery.example");
    m.request_authentication(
        "web",
        json!([
            {
                "issuer": idp.issuer(),
                "audiences": ["web"],
                "jwks": idp.jwks(),
                "outputClaimToHeaders": [
                    {"header": "x-jwt-sub", "claim": "sub"},
                    {"header": "x-jwt-groups", "claim": "groups"},
                ],
            },
            {"issuer": discovery.issuer()},
        ]),
    );
    let forged = idp.forger().mint(&good);
    m.wait_status(&forged, 401, "a forged signature");

    // The claim header replaces one the client wrote itself.
    let spoof = ["x-jwt-sub: mallory"];
    let body = m.expect_with(Some(&idp.mint(&good)), &spoof, 200, "a valid token");
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    let headers = &echo["headers"];
    assert_eq!(headers["x-jwt-sub"], "alice", "{echo:#}");
    // Envoy copies a list claim as base64 of its JSON: `["dev","ops"]`.
    assert_eq!(headers["x-jwt-groups"], "WyJkZXYiLCJvcHMiXQ==", "{echo:#}");
    // The token itself is not forwarded unless forwardOriginalToken is set.
    assert!(headers.get("authorization").is_none(), "{echo:#}");

    let expired = idp.mint(&good.clone().expires_in(-600));
    m.expect(Some(&expired), 401, "an expired token");
    // A verified token for another audience is Envoy's 403 ("Audiences in
    // Jwt are not allowed"), as under Istio, which uses the same filter.
    let other_audience = idp.mint(&Claims::new("alice", &["billing"]));
    let body = m.expect(Some(&other_audience), 403, "a token for another audience");
    assert!(body.contains("Audiences in Jwt are not allowed"), "{body}");
    let undiscoverable = discovery.mint(&Claims::new("bob", &["web"]));
    m.expect(Some(&undiscoverable), 401, "an issuer without a key set");
    let body = m.expect(None, 200, "no token at all");
    assert!(
        !body.contains("x-jwt-sub"),
        "a claim header without a token: {body}"
    );
    // Envoy removes the claim headers from every request it checks, so
    // the application never sees one the client wrote, token or not.
    let body = m.expect_with(None, &spoof, 200, "no token, a spoofed claim header");
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    assert!(echo["headers"].get("x-jwt-sub").is_none(), "{echo:#}");
    assert_all_acked(&m.rudder);
}

#[test]
fn jwt_remote_jwks_is_fetched_from_a_mesh_service() {
    let m = web_and_client("jwt_remote", "24h");
    let idp = Idp::new("https://keys.demo");
    let dir = workdir("jwks");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, idp.jwks()).unwrap();
    m.net.add_service("keys", NS, &[("http", 8080, 8080)]);
    let keys = m.net.pod("keys-0", NS, &[("app", "keys"), TLS_MODE]);
    keys.serve_http(8080, &["--jwks-file", jwks.to_str().unwrap()]);
    keys.start_sidecar(&m.rudder);
    m.request_authentication(
        "web",
        json!([{
            "issuer": idp.issuer(),
            "jwksUri": "http://keys.demo.svc.cluster.local:8080/jwks.json",
            "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}],
        }]),
    );
    // In force once a forged token is refused (which needs the key set too).
    let forged = idp.forger().mint(&Claims::new("carol", &["anything"]));
    m.wait_status(&forged, 401, "a forged signature");
    let token = idp.mint(&Claims::new("carol", &["anything"]));
    let body = m.expect(
        Some(&token),
        200,
        "a token verified with the fetched key set",
    );
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echo["headers"]["x-jwt-sub"], "carol", "{echo:#}");
    m.expect(None, 200, "no token");
    // Envoy fetched the keys through the mesh cluster, over mesh mTLS.
    let fetched = m
        .web
        .stat_or_zero("cluster.outbound|8080||keys.demo.svc.cluster.local.upstream_rq_completed");
    assert!(
        fetched >= 1,
        "no JWKS fetch through the mesh cluster{}",
        m.web.context()
    );
    m.web.wait_stat_at_least(
        "cluster.outbound|8080||keys.demo.svc.cluster.local.ssl.handshake",
        1,
    );
    assert_all_acked(&m.rudder);
}
