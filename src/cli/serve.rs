//! `rudder serve`: run the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Directory of Kubernetes YAML (Services, EndpointSlices, Istio kinds, ...),
    /// read recursively from *.yaml and *.yml files and watched for edits.
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Istio MeshConfig YAML (outboundTrafficPolicy, accessLogFile, ...): the
    /// content of Istio's `mesh` ConfigMap key. Read at start-up.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// Plaintext xDS (ADS) address. For local work: it authenticates nobody.
    #[arg(long, default_value = "0.0.0.0:15010")]
    pub xds_addr: SocketAddr,
    /// Mesh CA directory: Istio's plug-in `cacerts` files, or Rudder's own
    /// root, generated there on first start. Enables workload certificates
    /// (SDS), mutual TLS and the authenticated TLS xDS port.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Lifetime of workload certificates; each is replaced at 80 % of it.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub workload_cert_ttl: Duration,
    /// TLS xDS (ADS) address; every call must carry a service-account token.
    /// Served when --ca-dir is set.
    #[arg(long, default_value = "0.0.0.0:15012")]
    pub xds_tls_addr: SocketAddr,
    /// Extra DNS name or IP for the TLS xDS serving certificate, as proxies
    /// dial it (repeatable). Always included: rudder,
    /// rudder.rudder-system.svc, localhost, 127.0.0.1.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
    /// File mode: public key (PEM) that signs proxies' service-account JWTs.
    /// `rudder token keygen` makes a pair. Required with --ca-dir.
    #[arg(long, value_name = "FILE")]
    pub token_public_key: Option<PathBuf>,
    /// File mode: the `iss` every service-account token must carry.
    #[arg(long, default_value = "rudder-local")]
    pub token_issuer: String,
    /// File mode: an `aud` a token must carry (repeatable).
    #[arg(long = "token-audience", default_value = "rudder")]
    pub token_audiences: Vec<String>,
    /// Admin address: /healthz, /ready, /metrics, /debug/*.
    #[arg(long, default_value = "0.0.0.0:15014")]
    pub admin_addr: SocketAddr,
    /// Quiet period after a change before the new config is pushed, e.g. 100ms.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, default_value = "info", env = "RUDDER_LOG")]
    pub log_level: String,
}
