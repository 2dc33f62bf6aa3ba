//! rudder-loadgen: load and convergence measurements for an xDS control plane.
//!
//! - `proxies`: N simulated Envoy sidecars over ADS (SotW or Delta) that
//!   subscribe, decode and ACK as Envoy does, and report cold-connect time,
//!   bytes and responses per type, NACKs, and per-change convergence.
//! - `mesh`: writes a synthetic mesh (Kubernetes + Istio YAML) for
//!   `rudder serve --config-dir`.
//! - `churn`: edits that mesh at a steady rate and logs each change.
//!
//! The proxies speak only the xDS protocol with Istio's node conventions, so
//! they can be pointed at istiod's plaintext port 15010 as well.
//! e2e/perf/run.sh puts the three together into repeatable scenarios.

mod changes;
mod churn;
mod delta;
mod hist;
mod mesh;
mod node;
mod plan;
mod proxies;
mod record;
mod render;
mod report;
mod request;
mod shared;
mod sotw;
mod stream;
mod xds;

use clap::{Parser, Subcommand};

/// Each simulated proxy decodes ~1.2 MB of small protobuf messages on a cold
/// connect, and allocation was a fifth of the load generator's CPU with
/// glibc's allocator, on the cores it shares with the control plane
/// (docs/performance.md). Envoy itself uses tcmalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rudder-loadgen",
    about = "xDS load generator and synthetic mesh for Rudder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulated sidecars over ADS.
    Proxies(proxies::ProxiesArgs),
    /// Write a synthetic mesh as YAML.
    Mesh(mesh::MeshArgs),
    /// Edit a mesh at a steady rate, logging each change.
    Churn(churn::ChurnArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Proxies(args) => {
            let code = runtime.block_on(proxies::run(args))?;
            drop(runtime);
            std::process::exit(code);
        }
        Command::Mesh(args) => mesh::run(args),
        Command::Churn(args) => runtime.block_on(churn::run(args)),
    }
}
