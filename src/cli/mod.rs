//! Subcommands. Each file owns one subcommand's arguments and behaviour.
pub mod bootstrap;
pub mod serve;

#[derive(clap::Parser, Debug)]
#[command(name = "rudder", version, about = "A service-mesh control plane that drives stock Envoy with Istio's API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the control plane: watch config, serve xDS and the admin endpoint.
    Serve(serve::ServeArgs),
    /// Print an Envoy bootstrap that connects a proxy to Rudder.
    Bootstrap(bootstrap::BootstrapArgs),
}
