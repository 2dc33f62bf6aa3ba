//! Subcommands. Each file owns one subcommand's arguments and behaviour.
pub mod bootstrap;
pub mod crds;
pub mod inject;
pub mod iptables;
pub mod offline;
pub mod serve;
pub mod token;

#[derive(clap::Parser, Debug)]
#[command(
    name = "rudder",
    version,
    about = "A service-mesh control plane that drives stock Envoy with Istio's API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the control plane: watch config, serve xDS and the admin endpoint.
    Serve(Box<serve::ServeArgs>),
    /// Print an Envoy bootstrap that connects a proxy to Rudder.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Print, apply or remove the pod's traffic-capture iptables rules (Istio's istio-iptables).
    Iptables(iptables::IptablesArgs),
    /// Print the Envoy resources a proxy would receive, without a server.
    Translate(offline::TranslateArgs),
    /// Check a config directory as `rudder serve` would; non-zero exit on errors.
    Validate(offline::ValidateArgs),
    /// Print (or write with --out) the CRDs of the Istio kinds Rudder serves.
    Crds(crds::CrdsArgs),
    /// Make the key pair and service-account tokens that file mode authenticates proxies with.
    Token(token::TokenArgs),
    /// Add the sidecar to Pods and workload templates in YAML, as the injection webhook would.
    Inject(inject::InjectArgs),
}
