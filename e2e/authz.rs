//! Authorization decision by decision, through real Envoy: AuthorizationPolicy
//! (and RequestAuthentication) on a server sidecar, real requests from pods
//! with proven mesh identities (mTLS) and from a pod outside the mesh. Every
//! case states who sends what and the status it must get; a group of cases
//! runs under one set of policies, applied live and waited for until every
//! sidecar has ACKed it. All failures of a group are reported together.
//!
//! Needs root (the pods harness; see e2e/support/pods.rs).

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::jwt::{Claims, Idp};
use crate::support::pods::{Network, Pod};
use crate::support::*;

const NS: &str = "demo";
const TLS_MODE: (&str, &str) = ("security.istio.io/tlsMode", "istio");
const CONVERGE: Duration = Duration::from_secs(20);
/// A little more than the test Envoys' `--drain-time-s`.
const DRAIN: Duration = Duration::from_millis(1500);
const MESH_CONFIG: &str = "extensionProviders:
- name: echo-authz
  envoyExtAuthzHttp:
    service: authz.demo.svc.cluster.local
    port: 8000
    pathPrefix: /status
";

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Who {
    /// demo/client: `spiffe://cluster.local/ns/demo/sa/client`, mTLS.
    Client,
    /// other/other: another namespace's identity, mTLS.
    Other,
    /// No sidecar, no identity: plaintext straight to the server pod.
    Outsider,
}

/// What a case sends.
#[derive(Debug, Clone)]
pub enum Req {
    /// An HTTP request to `web` on 8080: method, path, extra headers.
    Http(&'static str, &'static str, Vec<(String, String)>),
    /// A line over TCP to `web` on 9000.
    Tcp,
}

/// What must come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    Status(u16),
    /// The TCP line was echoed back.
    Connected,
    /// The TCP connection was closed without a reply.
    Refused,
}

pub struct Case {
    pub name: &'static str,
    pub who: Who,
    pub req: Req,
    pub expect: Expect,
}

pub fn get(name: &'static str, who: Who, path: &'static str, status: u16) -> Case {
    Case {
        name,
        who,
        req: Req::Http("GET", path, Vec::new()),
        expect: Expect::Status(status),
    }
}

pub fn http(
    name: &'static str,
    who: Who,
    method: &'static str,
    path: &'static str,
    headers: &[(&str, &str)],
    status: u16,
) -> Case {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Case {
        name,
        who,
        req: Req::Http(method, path, headers),
        expect: Expect::Status(status),
    }
}

pub fn tcp(name: &'static str, who: Who, expect: Expect) -> Case {
    Case {
        name,
        who,
        req: Req::Tcp,
        expect,
    }
}

/// The server `web` (HTTP 8080, TCP 9000) with a sidecar, two mesh clients
/// and an outsider, under a Rudder that is the mesh CA.
pub struct Matrix {
    pub net: Network,
    pub rudder: Rudder,
    pub web: Pod,
    client: Pod,
    other: Pod,
    outsider: Pod,
    _authz: Pod,
    cases_run: usize,
}

impl Matrix {
    pub fn new(test: &str) -> Matrix {
        let net = Network::new(test);
        net.add_service("web", NS, &[("http", 8080, 8080), ("tcp-echo", 9000, 9000)]);
        net.add_service("authz", NS, &[("http", 8000, 8000)]);
        let web = net.pod("web-0", NS, &[("app", "web"), TLS_MODE]);
        let client = net.pod("client-0", NS, &[("app", "client"), TLS_MODE]);
        let other = net.pod("other-0", "other", &[("app", "other"), TLS_MODE]);
        let outsider = net.external_pod("outsider-0");
        // The CUSTOM provider: an HTTP ext_authz server outside the mesh's
        // sidecars. Envoy asks it GET /status<original path>, and rudder-echo
        // answers /status/NNN with NNN: so a request for /403 is refused by
        // it and one for /200 allowed.
        let authz = net.pod("authz-0", NS, &[("app", "authz")]);
        let rudder = net.rudder_with_identity_and_mesh_config("24h", Some(MESH_CONFIG));
        authz.serve_http(8000, &[]);
        web.serve_http(8080, &[]);
        web.serve_tcp(9000);
        for pod in [&web, &client, &other] {
            pod.start_sidecar(&rudder);
        }
        Matrix {
            net,
            rudder,
            web,
            client,
            other,
            outsider,
            _authz: authz,
            cases_run: 0,
        }
    }

    pub fn client_ip(&self) -> String {
        self.client.ip().to_string()
    }

    pub fn web_ip(&self) -> String {
        self.web.ip().to_string()
    }

    /// Replaces the policies under test with `yaml` (may be empty) and waits
    /// until every sidecar runs the resulting config.
    pub fn policies(&self, yaml: &str) {
        let before = self.snapshot_version();
        self.net.write_config("policies.yaml", yaml);
        let published = poll(CONVERGE, || {
            let v = self.snapshot_version();
            (v > before).then_some(v)
        });
        let version = published.unwrap_or_else(|| {
            panic!(
                "Rudder published no new snapshot for:\n{yaml}{}",
                self.net.rudder_log_tail(20)
            )
        });
        self.wait_acked(version);
        // Connections opened before the change run the old filter chain
        // until drained (test Envoys drain within 1 s); new policy governs
        // new connections, as in Istio.
        std::thread::sleep(DRAIN);
    }

    fn snapshot_version(&self) -> u64 {
        let (_, body) = self.rudder.admin_get("/ready");
        body.trim()
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Every proxy is on `version` and has ACKed all it was sent.
    fn wait_acked(&self, version: u64) {
        let mut last = String::new();
        let done = poll(CONVERGE, || {
            let (_, body) = self.rudder.admin_get("/debug/syncz");
            last = body;
            let proxies: Value = serde_json::from_str(&last).ok()?;
            let proxies = proxies.as_array()?;
            let converged = proxies.len() >= 3
                && proxies.iter().all(|p| {
                    p["snapshot_version"].as_u64() >= Some(version)
                        && p["types"].as_object().is_some_and(|types| {
                            types.values().all(|t| {
                                t["acked_nonce"] == t["sent_nonce"] && t["nack_count"] == 0
                            })
                        })
                });
            converged.then_some(())
        });
        assert!(
            done.is_some(),
            "sidecars did not converge on snapshot {version}: {last}"
        );
    }

    /// Runs every case; panics listing each one that got something else.
    pub fn run(&mut self, group: &str, cases: &[Case]) {
        let mut failures = String::new();
        for case in cases {
            self.cases_run += 1;
            let got = self.send(case);
            if got != case.expect {
                let _ = writeln!(
                    failures,
                    "  {}: {:?} {:?} expected {:?}, got {:?}",
                    case.name, case.who, case.req, case.expect, got
                );
            }
        }
        assert!(
            failures.is_empty(),
            "group {group:?}: wrong decisions:\n{failures}{}",
            self.web.context()
        );
        eprintln!("authz group {group:?}: {} cases as expected", cases.len());
    }

    pub fn cases_run(&self) -> usize {
        self.cases_run
    }

    fn pod(&self, who: Who) -> &Pod {
        match who {
            Who::Client => &self.client,
            Who::Other => &self.other,
            Who::Outsider => &self.outsider,
        }
    }

    fn send(&self, case: &Case) -> Expect {
        let pod = self.pod(case.who);
        // Mesh pods call the service by name; the outsider has no name for
        // it and dials the server pod directly (capture takes it inbound).
        let host = match case.who {
            Who::Outsider => self.web.ip().to_string(),
            _ => "web.demo".to_string(),
        };
        match &case.req {
            Req::Http(method, path, headers) => {
                let url = format!("http://{host}:8080{path}");
                let mut args = vec!["-X", method, "--max-time", "5"];
                let flat: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                for h in &flat {
                    args.extend(["-H", h.as_str()]);
                }
                args.push(&url);
                Expect::Status(pod.curl(&args).0)
            }
            Req::Tcp => match pod.tcp_send(&host, 9000, "ping") {
                Ok(reply) if reply.ends_with("ping") => Expect::Connected,
                _ => Expect::Refused,
            },
        }
    }
}

fn principal_policy(name: &str, action: &str, body: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {name}, namespace: {NS}}}\nspec:\n  selector:\n    matchLabels: {{app: web}}\n  action: {action}\n{body}"
    )
}

#[test]
fn authorization_decisions_through_real_envoy() {
    use Who::*;
    let mut m = Matrix::new("authz_matrix");

    m.wait_acked(m.snapshot_version());
    m.run(
        "no policy: everything allowed",
        &[
            get("client GET", Client, "/", 200),
            get("other GET", Other, "/", 200),
            get("outsider GET", Outsider, "/", 200),
            tcp("client TCP", Client, Expect::Connected),
        ],
    );

    m.policies(&principal_policy(
        "allow-client",
        "ALLOW",
        "  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/demo/sa/client]\n",
    ));
    m.run(
        "ALLOW by principal",
        &[
            get("the named principal", Client, "/", 200),
            get("another principal: default deny", Other, "/", 403),
            get("no principal (plaintext): default deny", Outsider, "/", 403),
            tcp("named principal over TCP", Client, Expect::Connected),
            tcp("another principal over TCP", Other, Expect::Refused),
        ],
    );

    m.policies(&principal_policy(
        "allow-other-ns",
        "ALLOW",
        "  rules:\n  - from:\n    - source:\n        namespaces: [other]\n",
    ));
    m.run(
        "ALLOW by namespace",
        &[
            get("from namespace other", Other, "/", 200),
            get("from namespace demo", Client, "/", 403),
        ],
    );

    m.policies(&principal_policy(
        "allow-not-ns",
        "ALLOW",
        "  rules:\n  - from:\n    - source:\n        notNamespaces: [other]\n        principals: [\"*\"]\n",
    ));
    m.run(
        "ALLOW notNamespaces with any principal",
        &[
            get("demo, authenticated", Client, "/", 200),
            get("excluded namespace", Other, "/", 403),
            get("unauthenticated: no principal", Outsider, "/", 403),
        ],
    );

    m.policies(&principal_policy(
        "allow-public-get",
        "ALLOW",
        "  rules:\n  - to:\n    - operation:\n        methods: [GET, HEAD]\n        paths: [/public/*, /exact]\n",
    ));
    m.run(
        "ALLOW by operation: methods and paths",
        &[
            get("GET under the prefix", Client, "/public/a/b", 200),
            get("GET the exact path", Other, "/exact", 200),
            get("GET the exact path plus a query", Other, "/exact?x=1", 200),
            http(
                "POST under the prefix",
                Client,
                "POST",
                "/public/a",
                &[],
                403,
            ),
            get("GET another path", Client, "/private", 403),
            get(
                "GET a path that only starts alike",
                Client,
                "/publicity",
                403,
            ),
            tcp(
                "TCP: HTTP-only rule dropped, ALLOW denies all",
                Client,
                Expect::Refused,
            ),
        ],
    );

    m.policies(&format!(
        "{}---\n{}",
        principal_policy(
            "deny-admin",
            "DENY",
            "  rules:\n  - to:\n    - operation:\n        paths: [/admin*]\n"
        ),
        principal_policy(
            "allow-client-everything",
            "ALLOW",
            "  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/demo/sa/client]\n"
        )
    ));
    m.run(
        "DENY before ALLOW",
        &[
            get("allowed principal, ordinary path", Client, "/x", 200),
            get(
                "allowed principal, denied path",
                Client,
                "/admin/users",
                403,
            ),
            get("not allowed at all", Other, "/x", 403),
            tcp(
                "TCP: DENY's HTTP-only field removed, so it denies",
                Client,
                Expect::Refused,
            ),
        ],
    );

    m.policies(&principal_policy(
        "allow-with-token-header",
        "ALLOW",
        "  rules:\n  - when:\n    - key: request.headers[x-token]\n      values: [alpha, \"beta*\"]\n      notValues: [beta-revoked]\n",
    ));
    m.run(
        "ALLOW when request header",
        &[
            http(
                "exact header value",
                Client,
                "GET",
                "/",
                &[("x-token", "alpha")],
                200,
            ),
            http(
                "prefix header value",
                Client,
                "GET",
                "/",
                &[("x-token", "beta-1")],
                200,
            ),
            http(
                "notValues excludes",
                Client,
                "GET",
                "/",
                &[("x-token", "beta-revoked")],
                403,
            ),
            http(
                "wrong header value",
                Client,
                "GET",
                "/",
                &[("x-token", "gamma")],
                403,
            ),
            get("no header", Client, "/", 403),
        ],
    );

    let ip = m.client_ip();
    m.policies(&principal_policy(
        "allow-client-ip",
        "ALLOW",
        &format!("  rules:\n  - from:\n    - source:\n        ipBlocks: [\"{ip}/32\"]\n"),
    ));
    m.run(
        "ALLOW by ipBlocks",
        &[
            get("from the block", Client, "/", 200),
            get("from elsewhere", Other, "/", 403),
            tcp("TCP from the block", Client, Expect::Connected),
            tcp("TCP from elsewhere", Other, Expect::Refused),
        ],
    );

    m.policies(&principal_policy(
        "deny-when-source-ns",
        "DENY",
        "  rules:\n  - when:\n    - key: source.namespace\n      values: [other]\n",
    ));
    m.run(
        "DENY when source.namespace (TCP too)",
        &[
            get("denied namespace", Other, "/", 403),
            get("other namespaces pass (no ALLOW policy)", Client, "/", 200),
            get("plaintext has no namespace: passes", Outsider, "/", 200),
            tcp("denied namespace over TCP", Other, Expect::Refused),
            tcp("allowed over TCP", Client, Expect::Connected),
        ],
    );

    m.policies(&principal_policy(
        "allow-ports",
        "ALLOW",
        "  rules:\n  - to:\n    - operation:\n        ports: [\"9000\"]\n",
    ));
    m.run(
        "ALLOW by destination port",
        &[
            tcp("the allowed port", Client, Expect::Connected),
            get("another port", Client, "/", 403),
        ],
    );

    m.policies(&principal_policy("deny-all", "ALLOW", ""));
    m.run(
        "ALLOW with no rules denies everything",
        &[
            get("mesh client", Client, "/", 403),
            get("outsider", Outsider, "/", 403),
            tcp("TCP", Client, Expect::Refused),
        ],
    );

    m.policies(&principal_policy(
        "audit-everything",
        "AUDIT",
        "  rules:\n  - {}\n",
    ));
    m.run(
        "AUDIT leaves traffic alone",
        &[
            get("client", Client, "/", 200),
            get("outsider", Outsider, "/", 200),
            tcp("TCP", Other, Expect::Connected),
        ],
    );

    m.policies(&principal_policy(
        "allow-all-rule",
        "ALLOW",
        "  rules:\n  - {}\n",
    ));
    m.run(
        "an empty ALLOW rule allows everything",
        &[
            get("client", Client, "/", 200),
            get("outsider", Outsider, "/", 200),
            tcp("TCP", Other, Expect::Connected),
        ],
    );

    more_source_and_operation_groups(&mut m);
    condition_groups(&mut m);
    jwt_groups(&mut m);
    custom_groups(&mut m);
    eprintln!("\n{} authorization decisions checked", m.cases_run());
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {token}"))]
}

fn with_token(name: &'static str, who: Who, token: &str, path: &'static str, status: u16) -> Case {
    Case {
        name,
        who,
        req: Req::Http("GET", path, bearer(token)),
        expect: Expect::Status(status),
    }
}

/// RequestAuthentication with an inline key set, and AuthorizationPolicies
/// on what the tokens say.
fn jwt_groups(m: &mut Matrix) {
    use Who::*;
    let idp = Idp::new("https://idp.example");
    let ra = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
         metadata: {{name: jwt, namespace: {NS}}}\nspec:\n  selector:\n    matchLabels: {{app: web}}\n\
         \x20 jwtRules:\n  - issuer: https://idp.example\n    audiences: [web]\n    jwks: '{}'\n",
        idp.jwks()
    );
    let alice = idp.mint(
        &Claims::new("alice", &["web"])
            .claim("groups", json!(["dev", "admin"]))
            .claim("azp", json!("frontend")),
    );
    let bob = idp.mint(&Claims::new("bob", &["web"]).claim("groups", json!(["dev"])));
    let expired = idp.mint(&Claims::new("alice", &["web"]).expires_in(-600));
    let wrong_aud = idp.mint(&Claims::new("alice", &["billing"]));
    let forged = idp.forger().mint(&Claims::new("alice", &["web"]));

    m.policies(&ra);
    m.run(
        "RequestAuthentication alone: bad tokens 401, missing passes",
        &[
            with_token("valid token", Client, &alice, "/", 200),
            with_token("expired token", Client, &expired, "/", 401),
            // Envoy's jwt_authn answers an audience mismatch with 403
            // ("Audiences in Jwt are not allowed"), as it does under Istio.
            with_token("wrong audience", Client, &wrong_aud, "/", 403),
            with_token("forged signature", Client, &forged, "/", 401),
            get("no token at all", Client, "/", 200),
        ],
    );

    m.policies(&format!(
        "{ra}---\n{}",
        principal_policy(
            "require-jwt",
            "ALLOW",
            "  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"https://idp.example/alice\"]\n"
        )
    ));
    m.run(
        "ALLOW by requestPrincipals",
        &[
            with_token("alice", Client, &alice, "/", 200),
            with_token("bob: another subject", Client, &bob, "/", 403),
            get("no token: no request principal", Client, "/", 403),
            with_token(
                "expired: rejected before authorization",
                Client,
                &expired,
                "/",
                401,
            ),
        ],
    );

    m.policies(&format!(
        "{ra}---\n{}",
        principal_policy(
            "admins-only",
            "ALLOW",
            "  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"*\"]\n    when:\n    - key: request.auth.claims[groups]\n      values: [admin]\n"
        )
    ));
    m.run(
        "ALLOW by a list claim",
        &[
            with_token("groups contains admin", Client, &alice, "/", 200),
            with_token("groups without admin", Client, &bob, "/", 403),
            get("no token", Client, "/", 403),
        ],
    );

    m.policies(&format!(
        "{ra}---\n{}",
        principal_policy(
            "deny-bob",
            "DENY",
            "  rules:\n  - when:\n    - key: request.auth.principal\n      values: [\"https://idp.example/bob\"]\n"
        )
    ));
    m.run(
        "DENY by request.auth.principal",
        &[
            with_token("bob denied", Client, &bob, "/", 403),
            with_token("alice passes", Client, &alice, "/", 200),
            get("no token passes (no ALLOW policy)", Client, "/", 200),
        ],
    );
    m.policies(&format!(
        "{ra}---\n{}---\n{}",
        principal_policy(
            "allow-audience",
            "ALLOW",
            "  rules:\n  - when:\n    - key: request.auth.audiences\n      values: [web]\n"
        ),
        principal_policy(
            "deny-presenter",
            "DENY",
            "  rules:\n  - when:\n    - key: request.auth.presenter\n      values: [frontend]\n"
        )
    ));
    m.run(
        "request.auth.audiences and request.auth.presenter",
        &[
            with_token(
                "audience web, presented by frontend: denied",
                Client,
                &alice,
                "/",
                403,
            ),
            with_token("audience web, no presenter", Client, &bob, "/", 200),
            get("no token: no audience", Client, "/", 403),
        ],
    );
}

/// CUSTOM: the ext_authz provider decides the requests the policy covers,
/// before DENY and ALLOW.
fn custom_groups(m: &mut Matrix) {
    use Who::*;
    let custom = principal_policy(
        "ext-authz",
        "CUSTOM",
        "  provider: {name: echo-authz}\n  rules:\n  - to:\n    - operation:\n        paths: [/200, /403, /custom/*]\n",
    );
    m.policies(&custom);
    m.run(
        "CUSTOM delegates to ext_authz",
        &[
            get("provider allows", Client, "/200", 200),
            get("provider denies", Client, "/403", 403),
            get("provider allows a prefix path", Other, "/custom/x", 200),
            get(
                "not covered by the policy: provider not asked",
                Client,
                "/elsewhere",
                200,
            ),
        ],
    );
    m.policies(&format!(
        "{custom}---\n{}",
        principal_policy(
            "deny-200",
            "DENY",
            "  rules:\n  - to:\n    - operation:\n        paths: [/200]\n"
        )
    ));
    m.run(
        "CUSTOM allowing does not override DENY",
        &[
            get("provider allows, DENY denies", Client, "/200", 403),
            get("provider denies", Client, "/403", 403),
            get("neither", Client, "/elsewhere", 200),
        ],
    );
}

/// The `not*` and host/service-account forms the first groups leave out.
fn more_source_and_operation_groups(m: &mut Matrix) {
    use Who::*;
    m.policies(&principal_policy(
        "allow-hosts-not-delete",
        "ALLOW",
        "  rules:\n  - to:\n    - operation:\n        hosts: [web.demo, \"web.demo.svc.*\"]\n        notMethods: [DELETE]\n",
    ));
    m.run(
        "ALLOW by hosts and notMethods",
        &[
            get("GET to the named host (any port)", Client, "/", 200),
            http("DELETE is excluded", Client, "DELETE", "/", &[], 403),
            get("a request whose Host is an IP", Outsider, "/", 403),
        ],
    );

    m.policies(&principal_policy(
        "allow-not-other-not-secret",
        "ALLOW",
        "  rules:\n  - from:\n    - source:\n        notPrincipals: [cluster.local/ns/other/sa/other]\n    to:\n    - operation:\n        notPaths: [/secret]\n",
    ));
    m.run(
        "ALLOW notPrincipals and notPaths",
        &[
            get("client, ordinary path", Client, "/", 200),
            get("client, the excluded path", Client, "/secret", 403),
            get("the excluded principal", Other, "/", 403),
            get("no principal is not the excluded one", Outsider, "/", 200),
        ],
    );

    m.policies(&principal_policy(
        "allow-service-account",
        "ALLOW",
        "  rules:\n  - from:\n    - source:\n        serviceAccounts: [demo/client]\n",
    ));
    m.run(
        "ALLOW by serviceAccounts",
        &[
            get("demo/client", Client, "/", 200),
            get("other/other", Other, "/", 403),
        ],
    );

    let ip = m.client_ip();
    m.policies(&principal_policy(
        "allow-remote-ip",
        "ALLOW",
        &format!("  rules:\n  - from:\n    - source:\n        remoteIpBlocks: [\"{ip}\"]\n"),
    ));
    m.run(
        "ALLOW by remoteIpBlocks",
        &[
            get("from the address", Client, "/", 200),
            get("from elsewhere", Other, "/", 403),
        ],
    );

    m.policies(&format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata:\n  name: dry-deny-all\n  namespace: {NS}\n  annotations: {{istio.io/dry-run: \"true\"}}\n\
         spec:\n  selector:\n    matchLabels: {{app: web}}\n  action: DENY\n  rules:\n  - {{}}\n"
    ));
    m.run(
        "a dry-run DENY is evaluated, not enforced",
        &[
            get("client", Client, "/", 200),
            tcp("TCP", Other, Expect::Connected),
        ],
    );
}

/// `when` keys on the connection and the workload.
fn condition_groups(m: &mut Matrix) {
    use Who::*;
    let (client_ip, web_ip) = (m.client_ip(), m.web_ip());
    m.policies(&principal_policy(
        "allow-source-ip",
        "ALLOW",
        &format!("  rules:\n  - when:\n    - key: source.ip\n      values: [\"{client_ip}\"]\n"),
    ));
    m.run(
        "ALLOW when source.ip",
        &[
            get("from the address", Client, "/", 200),
            get("from elsewhere", Other, "/", 403),
        ],
    );

    m.policies(&principal_policy(
        "allow-remote-ip-cond",
        "ALLOW",
        &format!(
            "  rules:\n  - when:\n    - key: remote.ip\n      notValues: [\"{client_ip}/32\"]\n"
        ),
    ));
    m.run(
        "ALLOW when remote.ip notValues",
        &[
            get("the excluded address", Client, "/", 403),
            get("another address", Other, "/", 200),
        ],
    );

    m.policies(&principal_policy(
        "deny-source-principal",
        "DENY",
        "  rules:\n  - when:\n    - key: source.principal\n      values: [cluster.local/ns/other/sa/other]\n",
    ));
    m.run(
        "DENY when source.principal",
        &[
            get("the named principal", Other, "/", 403),
            get("another principal", Client, "/", 200),
        ],
    );

    m.policies(&principal_policy(
        "deny-destination-port",
        "DENY",
        "  rules:\n  - when:\n    - key: destination.port\n      values: [\"9000\"]\n",
    ));
    m.run(
        "DENY when destination.port",
        &[
            tcp("the denied port", Client, Expect::Refused),
            get("another port", Client, "/", 200),
        ],
    );

    m.policies(&principal_policy(
        "allow-destination-ip",
        "ALLOW",
        &format!(
            "  rules:\n  - when:\n    - key: destination.ip\n      values: [\"{web_ip}/32\"]\n"
        ),
    ));
    m.run(
        "ALLOW when destination.ip",
        &[
            get("to the workload's address", Client, "/", 200),
            tcp("TCP to the workload's address", Other, Expect::Connected),
        ],
    );

    m.policies(&principal_policy(
        "deny-mesh-sni",
        "DENY",
        "  rules:\n  - when:\n    - key: connection.sni\n      values: [\"*.web.demo.svc.cluster.local\"]\n",
    ));
    m.run(
        "DENY when connection.sni (mesh clients send Istio's SNI)",
        &[
            get("mesh mTLS with the service's SNI", Client, "/", 403),
            get("plaintext has no SNI", Outsider, "/", 200),
        ],
    );
}
