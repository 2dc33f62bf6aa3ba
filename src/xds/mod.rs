//! The ADS server: State-of-the-World and Delta streams over one shared,
//! serialize-once resource cache. It knows the model and the translators but
//! nothing of Kubernetes.

mod body;
mod cache;
mod csr;
mod delta;
pub mod json;
mod node;
mod requests;
mod resources;
pub mod secrets;
mod server;
mod session;
mod sotw;
pub mod status;
mod stream;
mod tls;
mod wire;

#[cfg(test)]
mod tests;

pub use cache::{ConfigCache, ProxyResources};
pub use resources::{Resource, ResourceMap, TypeUrl};
pub use secrets::{CertStatus, WorkloadSecrets};
pub use server::{serve, serve_tls, Authenticate, XdsContext, XdsError};
pub use session::Caller;
pub use status::{Registry, SyncStatus};
pub use tls::{
    handshakes as tls_handshakes, server_config as tls_server_config, ServingCert, TlsError,
};
