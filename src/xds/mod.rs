//! The ADS server: State-of-the-World and Delta streams over one shared,
//! serialize-once resource cache. It knows the model and the translators but
//! nothing of Kubernetes.

mod cache;
mod delta;
pub mod json;
mod node;
mod resources;
mod server;
mod session;
mod sotw;
pub mod status;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

pub use cache::{ConfigCache, ProxyResources};
pub use resources::{Resource, ResourceMap, TypeUrl};
pub use server::{serve, XdsContext, XdsError};
pub use status::{Registry, SyncStatus};
