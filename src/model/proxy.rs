use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Sidecars serve one workload; routers (gateways) serve traffic from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ProxyKind {
    Sidecar,
    Router,
}

/// How the sidecar receives traffic (Istio's `INTERCEPTION_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Interception {
    /// iptables REDIRECT to 15001/15006.
    Redirect,
    /// TPROXY, treated like REDIRECT for listener generation.
    Tproxy,
    /// No capture: the application talks to Envoy on 127.0.0.1:<service port>.
    None,
}

impl Interception {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "REDIRECT" => Some(Self::Redirect),
            "TPROXY" => Some(Self::Tproxy),
            "NONE" => Some(Self::None),
            _ => None,
        }
    }
}

/// A connected Envoy as the model sees it, from its node id and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Proxy {
    /// The full node id, as Envoy sent it.
    pub id: String,
    pub kind: ProxyKind,
    pub ip: IpAddr,
    pub pod_name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub interception: Interception,
    /// Rudder issued this proxy a workload certificate (SDS `default`): it
    /// proved its identity, so its config may use mutual TLS.
    pub mtls: bool,
    /// Envoy's `node.locality`, when it sent one.
    pub locality: Option<super::Locality>,
}

/// Why a node id or its metadata cannot describe a proxy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyIdError {
    #[error("node id {0:?} must have 4 '~'-separated parts: TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local")]
    Parts(String),
    #[error("node id {0:?}: type must be 'sidecar' or 'router'")]
    Kind(String),
    #[error("node id {0:?}: {1:?} is not an IP address")]
    Ip(String, String),
    #[error("node id {0:?}: third part must be POD.NAMESPACE")]
    PodName(String),
}

impl Proxy {
    /// Parses Istio's node id, `sidecar~10.0.0.1~web-0.shop~shop.svc.cluster.local`.
    /// Metadata (labels, service account, interception) is filled in by the caller.
    pub fn from_node_id(id: &str) -> Result<Proxy, ProxyIdError> {
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod, domain] = parts[..] else {
            return Err(ProxyIdError::Parts(id.to_string()));
        };
        let kind = match kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            _ => return Err(ProxyIdError::Kind(id.to_string())),
        };
        let ip = ip
            .parse()
            .map_err(|_| ProxyIdError::Ip(id.to_string(), ip.to_string()))?;
        let (pod_name, pod_ns) = pod
            .split_once('.')
            .filter(|(p, n)| !p.is_empty() && !n.is_empty())
            .ok_or_else(|| ProxyIdError::PodName(id.to_string()))?;
        // The domain's first label is the namespace; the pod part is authoritative.
        let namespace = if pod_ns.is_empty() {
            domain.split('.').next().unwrap_or_default()
        } else {
            pod_ns
        };
        Ok(Proxy {
            id: id.to_string(),
            kind,
            ip,
            pod_name: pod_name.to_string(),
            namespace: namespace.to_string(),
            labels: BTreeMap::new(),
            service_account: "default".to_string(),
            interception: Interception::Redirect,
            mtls: false,
            locality: None,
        })
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_node_id() {
        let p =
            Proxy::from_node_id("sidecar~10.1.2.3~web-7d9.shop~shop.svc.cluster.local").unwrap();
        assert_eq!(p.kind, ProxyKind::Sidecar);
        assert_eq!(p.ip.to_string(), "10.1.2.3");
        assert_eq!(p.pod_name, "web-7d9");
        assert_eq!(p.namespace, "shop");
    }

    #[test]
    fn rejects_bad_node_ids() {
        assert!(matches!(
            Proxy::from_node_id("sidecar~1.2.3.4~x"),
            Err(ProxyIdError::Parts(_))
        ));
        assert!(matches!(
            Proxy::from_node_id("pod~1.2.3.4~a.b~b.svc"),
            Err(ProxyIdError::Kind(_))
        ));
        assert!(matches!(
            Proxy::from_node_id("sidecar~nope~a.b~b.svc"),
            Err(ProxyIdError::Ip(..))
        ));
        assert!(matches!(
            Proxy::from_node_id("sidecar~1.2.3.4~ab~b.svc"),
            Err(ProxyIdError::PodName(_))
        ));
    }
}
