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
