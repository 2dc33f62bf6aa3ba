//! The smallest mesh with identities: `web` (HTTP on 8080, namespace demo)
//! and `client`, both pods with sidecars that hold certificates from a Rudder
//! acting as the mesh CA. Test files add their own methods in `impl` blocks.

use super::pods::{Network, Pod};
use super::Rudder;

pub const NS: &str = "demo";
/// The label injection puts on pods whose sidecar terminates mesh mTLS.
pub const TLS_MODE: (&str, &str) = ("security.istio.io/tlsMode", "istio");

pub struct WebAndClient {
    pub net: Network,
    pub rudder: Rudder,
    pub web: Pod,
    pub client: Pod,
}

/// Starts the mesh on a fresh network named after `test`; workload
/// certificates live `workload_ttl` (e.g. `24h`, `15s`).
pub fn web_and_client(test: &str, workload_ttl: &str) -> WebAndClient {
    let net = Network::new(test);
    net.add_service("web", NS, &[("http", 8080, 8080)]);
    let web = net.pod("web-0", NS, &[("app", "web"), TLS_MODE]);
    let client = net.pod("client-0", NS, &[("app", "client"), TLS_MODE]);
    let rudder = net.rudder_with_identity(workload_ttl);
    web.serve_http(8080, &[]);
    web.start_sidecar(&rudder);
    client.start_sidecar(&rudder);
    WebAndClient {
        net,
        rudder,
        web,
        client,
    }
}
